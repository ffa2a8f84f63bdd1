//! `[[zones]] file`: a zone served from an RFC 1035 master file (with `$INCLUDE`, `$ORIGIN`
//! and parentheses), asked with dig; the file edited and reloaded (API and SIGHUP); a broken
//! file refused on reload while the old table keeps serving; the example config's file.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::harness::*;

const TOKEN: &str = "zone-file-token";

/// The zone file: SOA and NS across lines, a `$TTL`, a relative `$INCLUDE` with its own
/// origin, an `$ORIGIN` change, owners continued by a leading blank, comments everywhere.
const ZONE: &str = r#"; example.com from a zone file
$ORIGIN example.com.
$TTL 300
@   IN SOA ns1 hostmaster (
        2026113001 ; serial
        7200       ; refresh
        900        ; retry
        1209600    ; expire
        45 )       ; minimum
    IN NS  ns1
    IN NS  ns2.example.net.
    IN MX  ( 10    ; preference
             mail ) ; exchange, relative
    IN TXT "v=spf1 mx -all" "second string"
ns1 IN A   192.0.2.53
    IN AAAA 2001:db8:53::1
mail 60 IN A 192.0.2.25
$INCLUDE hosts/lab.inc lab
$ORIGIN svc.example.com.
_https._tcp IN SRV 0 5 443 web
web         IN CNAME www.example.com.
"#;

/// Included with origin lab.example.com.: its relative names are under it.
const LAB: &str = "; the lab hosts\n\
box1 IN A 192.0.2.101\n\
box2 IN A 192.0.2.102\n\
@    IN TXT \"lab\"\n";

/// A config serving `zone file` for example.com with a traffic-managed www, an admin API
/// with a token, and one inline record merged with the file's.
fn config(dir: &std::path::Path) -> String {
    format!(
        r#"[server]
dns_listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"
admin_token_file = "{token}"

[[zones]]
origin = "example.com."
file = "zones/example.com.zone"
records = [
  {{ name = "inline", type = "A", data = "192.0.2.200" }},
]

[[regions]]
name = "us"

[[services]]
name = "www.example.com."
policy = "failover"
regions = ["us"]
endpoints = [{{ region = "us", address = "192.0.2.10" }}]
"#,
        token = dir.join("admin-token").display()
    )
}

/// Writes the zone files and the config into a scratch directory and starts the server.
fn start() -> (Meridian, PathBuf) {
    let scratch = Scratch::new();
    std::fs::create_dir_all(scratch.0.join("zones/hosts")).unwrap();
    let zone = scratch.write("zones/example.com.zone", ZONE);
    scratch.write("zones/hosts/lab.inc", LAB);
    scratch.write("admin-token", &format!("{TOKEN}\n"));
    let config = scratch.write("meridian.toml", &config(&scratch.0));
    let m = Meridian::start_with(scratch, config, &[]).unwrap_or_else(|e| panic!("start: {e}"));
    (m, zone)
}

/// The answer section of `dig +norec NAME TYPE`, each record as one whitespace-joined line.
fn answers(m: &Meridian, name: &str, rtype: &str) -> Vec<String> {
    section(&dig(m.v4(), &["+norec", name, rtype]), "ANSWER")
}

fn section(out: &str, which: &str) -> Vec<String> {
    let header = format!(";; {which} SECTION:");
    out.lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn status(out: &str) -> String {
    out.lines()
        .find(|l| l.contains("->>HEADER<<-"))
        .and_then(|l| l.split("status: ").nth(1))
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no status in:\n{out}"))
        .to_string()
}

#[test]
fn a_zone_file_is_served_with_includes_origins_and_parentheses() {
    let (m, _) = start();
    assert_eq!(
        answers(&m, "example.com", "SOA"),
        [
            "example.com. 300 IN SOA ns1.example.com. hostmaster.example.com. 2026113001 7200 900 1209600 45"
        ]
    );
    assert_eq!(
        answers(&m, "example.com", "NS"),
        [
            "example.com. 300 IN NS ns1.example.com.",
            "example.com. 300 IN NS ns2.example.net."
        ]
    );
    assert_eq!(
        answers(&m, "example.com", "MX"),
        ["example.com. 300 IN MX 10 mail.example.com."]
    );
    assert_eq!(
        answers(&m, "example.com", "TXT"),
        ["example.com. 300 IN TXT \"v=spf1 mx -all\" \"second string\""]
    );
    assert_eq!(
        answers(&m, "ns1.example.com", "AAAA"),
        ["ns1.example.com. 300 IN AAAA 2001:db8:53::1"]
    );
    assert_eq!(
        answers(&m, "mail.example.com", "A"),
        ["mail.example.com. 60 IN A 192.0.2.25"]
    );
    // From the included file, under the origin the $INCLUDE gave it.
    assert_eq!(
        answers(&m, "box2.lab.example.com", "A"),
        ["box2.lab.example.com. 300 IN A 192.0.2.102"]
    );
    assert_eq!(
        answers(&m, "lab.example.com", "TXT"),
        ["lab.example.com. 300 IN TXT \"lab\""]
    );
    // After $ORIGIN svc.example.com.
    assert_eq!(
        answers(&m, "_https._tcp.svc.example.com", "SRV"),
        ["_https._tcp.svc.example.com. 300 IN SRV 0 5 443 web.svc.example.com."]
    );
    // A file CNAME leads to the traffic-managed name; the inline record merges in.
    assert_eq!(
        answers(&m, "web.svc.example.com", "A"),
        [
            "web.svc.example.com. 300 IN CNAME www.example.com.",
            "www.example.com. 30 IN A 192.0.2.10"
        ]
    );
    assert_eq!(
        answers(&m, "inline.example.com", "A"),
        ["inline.example.com. 3600 IN A 192.0.2.200"]
    );
    // Negative answers carry the file's SOA, TTL min(300, 45).
    let out = dig(m.v4(), &["+norec", "nothing.example.com", "A"]);
    assert_eq!(status(&out), "NXDOMAIN", "{out}");
    assert_eq!(
        section(&out, "AUTHORITY"),
        [
            "example.com. 45 IN SOA ns1.example.com. hostmaster.example.com. 2026113001 7200 900 1209600 45"
        ]
    );
}

/// POSTs /v1/reload; the status and body.
fn reload(m: &Meridian) -> (u16, serde_json::Value) {
    http_json(m.admin(), "POST", "/v1/reload", Some(TOKEN), "")
}

#[test]
fn an_edited_zone_file_is_served_after_reload_and_sighup() {
    let (m, zone) = start();
    let out = dig(m.v4(), &["+norec", "new.example.com", "A"]);
    assert_eq!(status(&out), "NXDOMAIN", "{out}");

    // A record added to the zone file, and one to the file it includes.
    std::fs::write(
        &zone,
        format!("{ZONE}$ORIGIN example.com.\nnew IN A 192.0.2.77\n"),
    )
    .unwrap();
    let lab = zone.parent().unwrap().join("hosts/lab.inc");
    std::fs::write(&lab, format!("{LAB}box3 IN A 192.0.2.103\n")).unwrap();
    let (code, body) = reload(&m);
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        answers(&m, "new.example.com", "A"),
        ["new.example.com. 300 IN A 192.0.2.77"]
    );
    assert_eq!(
        answers(&m, "box3.lab.example.com", "A"),
        ["box3.lab.example.com. 300 IN A 192.0.2.103"]
    );

    // SIGHUP re-reads it too.
    std::fs::write(&zone, ZONE.replace("192.0.2.25", "192.0.2.26")).unwrap();
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &m.child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while answers(&m, "mail.example.com", "A") != ["mail.example.com. 60 IN A 192.0.2.26"] {
        assert!(
            Instant::now() < deadline,
            "SIGHUP reload of the zone file did not take effect"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = dig(m.v4(), &["+norec", "new.example.com", "A"]);
    assert_eq!(status(&out), "NXDOMAIN", "{out}");
}

#[test]
fn a_broken_zone_file_on_reload_is_refused_and_the_old_table_serves() {
    let (m, zone) = start();
    let lab = zone.parent().unwrap().join("hosts/lab.inc");
    // A bad address in the zone file, a CNAME beside data in the included one.
    std::fs::write(
        &zone,
        ZONE.replace("mail 60 IN A 192.0.2.25", "mail 60 IN A 192.0.2.256"),
    )
    .unwrap();
    std::fs::write(&lab, format!("{LAB}box1 IN CNAME box2\n")).unwrap();
    let (code, body) = reload(&m);
    assert_eq!(code, 400, "{body}");
    let problems: Vec<String> = body["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        problems,
        [
            format!(
                "{}:17: bad A record: network address parse error: invalid IPv4 address syntax",
                zone.display()
            ),
            format!(
                "{}:5: box1.lab.example.com. has a CNAME beside other data (A at {}:2)",
                lab.display(),
                lab.display()
            ),
        ]
    );
    assert_eq!(
        answers(&m, "mail.example.com", "A"),
        ["mail.example.com. 60 IN A 192.0.2.25"],
        "the old table keeps serving"
    );
    assert_eq!(
        answers(&m, "box1.lab.example.com", "A"),
        ["box1.lab.example.com. 300 IN A 192.0.2.101"]
    );
    let metrics = http(m.admin(), "GET", "/metrics", None, "").1;
    assert!(
        metrics.contains("meridian_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
}

#[test]
fn the_example_zone_file_answers_as_the_inline_records_did() {
    let m = Meridian::start_example();
    let expect = [
        (
            "example.com",
            "SOA",
            vec![
                "example.com. 3600 IN SOA ns1.example.com. hostmaster.example.com. 2026112201 3600 600 604800 60",
            ],
        ),
        (
            "example.com",
            "NS",
            vec![
                "example.com. 3600 IN NS ns1.example.com.",
                "example.com. 3600 IN NS ns2.example.com.",
            ],
        ),
        (
            "example.com",
            "MX",
            vec!["example.com. 3600 IN MX 10 mail.example.com."],
        ),
        (
            "example.com",
            "TXT",
            vec!["example.com. 3600 IN TXT \"v=spf1 mx -all\""],
        ),
        (
            "example.com",
            "CAA",
            vec!["example.com. 3600 IN CAA 0 issue \"letsencrypt.org\""],
        ),
        (
            "ns1.example.com",
            "A",
            vec!["ns1.example.com. 3600 IN A 192.0.2.53"],
        ),
        (
            "ns1.example.com",
            "AAAA",
            vec!["ns1.example.com. 3600 IN AAAA 2001:db8:53::1"],
        ),
        (
            "ns2.example.com",
            "A",
            vec!["ns2.example.com. 3600 IN A 198.51.100.53"],
        ),
        (
            "mail.example.com",
            "A",
            vec!["mail.example.com. 3600 IN A 192.0.2.25"],
        ),
        (
            "_https._tcp.www.example.com",
            "SRV",
            vec!["_https._tcp.www.example.com. 3600 IN SRV 0 5 443 www.example.com."],
        ),
    ];
    for (name, rtype, want) in expect {
        assert_eq!(answers(&m, name, rtype), want, "{name} {rtype}");
    }
}
