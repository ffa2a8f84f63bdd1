//! The command line through the real binary: `check`, `explain` (text and JSON, and that it
//! agrees with what the server answers) and `geoip-build`.
use std::net::IpAddr;
use std::process::Output;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::harness::*;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the binary from the repository root.
fn meridian(args: &[&str]) -> Output {
    run(args, &repo())
}

fn explain_json(config: &str, name: &str, qtype: &str, client: &str) -> Value {
    let out = meridian(&[
        "explain", "--config", config, name, qtype, "--client", client, "--json",
    ]);
    assert!(
        out.status.success(),
        "explain {name} {qtype} {client} failed: {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("explain --json is not JSON ({e}):\n{}", stdout(&out)))
}

/// The addresses in explain's `answers` (each a record in presentation form, data last).
fn json_addrs(ex: &Value) -> Vec<IpAddr> {
    ex["answers"]
        .as_array()
        .expect("answers array")
        .iter()
        .map(|r| {
            let r = r.as_str().expect("answer string");
            let data = r.split_whitespace().last().expect("record data");
            data.parse()
                .unwrap_or_else(|_| panic!("answer {r:?} is not an address record"))
        })
        .collect()
}

#[test]
fn check_accepts_the_example_and_names_the_schema() {
    let out = meridian(&["check", "--config", "config/meridian.toml"]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("config/meridian.toml: ok"), "{text}");
    assert!(text.contains("MaxMind GeoIP2 City schema"), "{text}");
    assert!(text.contains("Meridian-Fixture-City"), "{text}");
}

#[test]
fn check_summarises_each_database_and_says_when_subdivisions_cannot_match() {
    let out = meridian(&["check", "--config", "config/meridian.toml"]);
    let text = stdout(&out);
    assert!(
        text.contains("geoip: 27 networks, all with a country, 26 (96.3%) with a location, 19 (70.4%) with a subdivision"),
        "{text}"
    );
    assert!(!text.contains("will not match"), "{text}");
    // The flat fixture carries no subdivision codes: a region listing some is told so.
    let scratch = Scratch::new();
    let config = example_config()
        .replace("world-city.mmdb", "world-flat.mmdb")
        .replacen(
            "countries = [\"US\", \"CA\"]",
            "subdivisions = [\"US-VA\"]\ncountries = [\"US\", \"CA\"]",
            1,
        );
    let path = scratch.write("meridian.toml", &config);
    let out = meridian(&["check", "--config", path.to_str().expect("path")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("no database gives subdivision codes")
            && text.contains("`subdivisions` will not match"),
        "{text}"
    );
}

#[test]
fn check_reports_every_problem_with_its_position() {
    let scratch = Scratch::new();
    let path = scratch.write(
        "broken.toml",
        r#"[server]
dns_listen = ["nowhere"]

[[zones]]
origin = "example.com."
ns = ["ns1.example.com."]
soa = { mname = "ns1", rname = "hostmaster", serial = 1, minimum = -5 }

[[regions]]
name = "us"
countries = ["USA"]

[[services]]
name = "www.example.com."
answers = 0
endpoints = [{ region = "mars", address = "192.0.2.300" }]
"#,
    );
    let file = path.display().to_string();
    let out = meridian(&["check", "--config", &file]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    let want = [
        format!(
            "{file}:2:15: \"nowhere\" is not an IP:port listen address (use [::1]:53 for IPv6)"
        ),
        format!("{file}:7:68: SOA minimum -5 is out of range (0 to 2147483647 seconds)"),
        format!("{file}:11:14: \"USA\" is not a two-letter ISO 3166 country code"),
        format!(
            "{file}:14:8: service www.example.com. uses policy geo, which needs a [geoip] database to place clients"
        ),
        format!("{file}:15:11: answers must be 1 to 16"),
        format!("{file}:16:25: endpoint names undefined region \"mars\""),
        format!("{file}:16:43: \"192.0.2.300\" is not an IP address"),
        format!("{file}: 7 problem(s)"),
    ];
    assert_eq!(lines, want, "stderr:\n{err}");
    assert!(
        stdout(&out).is_empty(),
        "nothing on stdout: {}",
        stdout(&out)
    );
}

#[test]
fn check_names_the_zone_file_and_line_of_each_problem() {
    let scratch = Scratch::new();
    let zone = scratch.write(
        "example.com.zone",
        r#"$ORIGIN example.com.
$TTL 1h
@ IN SOA ns1 hostmaster ( 1 3600 600
                          604800 60 )
  IN NS ns1
www IN A 192.0.2.99
ns1 IN A 192.0.2.300
mx IN MX mail
shop IN CNAME www
shop IN TXT "also here"
info IN HINFO "pc" "unix"
elsewhere.example.org. IN A 192.0.2.1
$INCLUDE missing.inc
what IN BOGUS data
"#,
    );
    let config = scratch.write(
        "broken.toml",
        r#"[[zones]]
origin = "example.com."
file = "example.com.zone"
soa = { mname = "ns1", rname = "hostmaster", serial = 2, minimum = 60 }

[[regions]]
name = "us"

[[services]]
name = "www.example.com."
policy = "failover"
regions = ["us"]
endpoints = [{ region = "us", address = "192.0.2.10" }]
"#,
    );
    let (file, zone) = (config.display().to_string(), zone.display().to_string());
    let out = meridian(&["check", "--config", &file]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    let dir = scratch.0.display();
    let want = [
        format!(
            "{zone}:3: zone example.com. has an SOA here and `soa` at {file}:4: keep one of them"
        ),
        format!(
            "{zone}:6: www.example.com. A: a static record at a traffic-managed name (the service at {file}:10 answers it)"
        ),
        format!("{zone}:7: bad A record: network address parse error: invalid IPv4 address syntax"),
        format!("{zone}:8: bad MX record: error parsing number: invalid digit found in string"),
        format!("{zone}:9: shop.example.com. has a CNAME beside other data (TXT at {zone}:10)"),
        format!(
            "{zone}:11: record type HINFO is not served (use SOA NS A AAAA CNAME MX TXT SRV CAA PTR)"
        ),
        format!("{zone}:12: elsewhere.example.org. is outside the zone example.com."),
        format!(
            "{zone}:13: cannot read $INCLUDE file {dir}/missing.inc: No such file or directory (os error 2)"
        ),
        format!("{zone}:14: unknown record type \"BOGUS\""),
        format!("{file}: 9 problem(s)"),
    ];
    assert_eq!(lines, want, "stderr:\n{err}");
}

#[test]
fn check_on_a_missing_file_says_so() {
    let scratch = Scratch::new();
    let path = scratch.0.join("nope.toml");
    let file = path.display().to_string();
    let out = meridian(&["check", "--config", &file]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{file}:1:1: cannot read config file")),
        "{err}"
    );
    assert!(err.contains("No such file"), "{err}");
}

#[test]
fn explain_shows_every_step_as_text() {
    let out = meridian(&[
        "explain",
        "www.example.com",
        "A",
        "--client",
        "11.0.130.7/24",
    ]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let line = |prefix: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{text}"))
            .to_string()
    };
    assert!(
        line("client").contains("11.0.130.0/24 (ECS subnet)"),
        "{text}"
    );
    let geo = line("geoip");
    assert!(geo.contains("network 11.0.128.0/20"), "{geo}");
    assert!(geo.contains("country US"), "{geo}");
    // The candidate list, in the client's order, us-east chosen.
    let cands: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("candidates"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert_eq!(cands.len(), 4, "{text}");
    assert!(cands[0].contains("1. us-east"), "{text}");
    assert!(cands[0].contains("lists the client's country"), "{text}");
    assert!(cands[0].contains("chosen"), "{text}");
    for (c, region) in cands[1..]
        .iter()
        .zip(["eu-west", "sa-east", "ap-southeast"])
    {
        assert!(c.contains(region) && c.contains("not needed"), "{text}");
    }
    assert!(line("chosen").contains("us-east"), "{text}");
    assert!(line("rcode").contains("NOERROR (authoritative)"), "{text}");
    assert_eq!(
        line("answer"),
        "answer     www.example.com. 30 IN A 192.0.2.10"
    );
    assert_eq!(line("ttl"), "ttl        30");
    assert_eq!(line("ecs scope"), "ecs scope  /20");
}

#[test]
fn explain_json_has_the_same_facts() {
    let ex = explain_json(
        "config/meridian.toml",
        "www.example.com",
        "A",
        "11.0.130.7/24",
    );
    assert_eq!(ex["client"], "11.0.130.0/24");
    assert_eq!(ex["geoip"]["network"], "11.0.128.0/20");
    assert_eq!(ex["geoip"]["found"], true);
    assert_eq!(ex["geoip"]["country"], "US");
    assert_eq!(ex["geoip"]["continent"], "NA");
    let cands: Vec<(&str, &str)> = ex["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .map(|c| {
            (
                c["region"].as_str().expect("region"),
                c["outcome"].as_str().expect("outcome"),
            )
        })
        .collect();
    assert_eq!(
        cands,
        [
            ("us-east", "chosen"),
            ("eu-west", "not needed"),
            ("sa-east", "not needed"),
            ("ap-southeast", "not needed"),
        ]
    );
    assert_eq!(ex["candidates"][0]["why"], "lists the client's country");
    assert_eq!(ex["chosen_region"], "us-east");
    assert_eq!(ex["rcode"], "NOERROR");
    assert_eq!(ex["authoritative"], true);
    assert_eq!(json_addrs(&ex), ["192.0.2.10".parse::<IpAddr>().unwrap()]);
    assert_eq!(ex["ttl"], 30);
    assert_eq!(ex["ecs_scope"], 20);
}

#[test]
fn explain_without_prefix_says_no_ecs() {
    let out = meridian(&["explain", "www.example.com", "A", "--client", "11.0.130.7"]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("11.0.130.7 (packet source address)"),
        "{text}"
    );
    assert!(
        text.contains("ecs scope  none (no ECS in this query)"),
        "{text}"
    );
    assert!(
        text.contains("answer     www.example.com. 30 IN A 192.0.2.10"),
        "{text}"
    );

    let ex = explain_json("config/meridian.toml", "www.example.com", "A", "11.0.130.7");
    assert_eq!(ex["client_source"], "packet source address");
    assert_eq!(ex["ecs_scope"], Value::Null);
}

#[test]
fn explain_outside_every_zone_is_refused() {
    let out = meridian(&["explain", "www.example.org", "A", "--client", "11.0.130.7"]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines().any(|l| l == "rcode      REFUSED"),
        "REFUSED without AA:\n{text}"
    );
    assert!(!text.contains("answer "), "{text}");

    let ex = explain_json("config/meridian.toml", "www.example.org", "A", "11.0.130.7");
    assert_eq!(ex["rcode"], "REFUSED");
    assert_eq!(ex["authoritative"], false);
    assert_eq!(ex["answers"], serde_json::json!([]));
}

#[test]
fn explain_agrees_with_the_server() {
    let m = Meridian::start_example();
    let config = m.config.display().to_string();
    // (name, type, ECS subnet): several countries, both families, both services.
    let table: &[(&str, RecordType, &str, u8)] = &[
        ("www.example.com.", RecordType::A, "11.0.128.0", 24), // US
        ("www.example.com.", RecordType::AAAA, "11.0.128.0", 24), // US over IPv6
        ("www.example.com.", RecordType::A, "12.0.0.0", 24),   // DE
        ("www.example.com.", RecordType::A, "13.1.0.0", 24),   // SG
        ("www.example.com.", RecordType::AAAA, "14.0.0.0", 24), // AU, region without IPv6
        ("www.example.com.", RecordType::A, "15.0.0.0", 24),   // BR
        ("www.example.com.", RecordType::A, "16.1.0.0", 24),   // NG
        ("www.example.com.", RecordType::A, "18.0.0.0", 24),   // MX, no location
        ("www.example.com.", RecordType::A, "127.0.0.0", 24),  // not in the database
        ("www.example.com.", RecordType::AAAA, "2001:db8:2::", 48), // DE
        ("www.example.com.", RecordType::A, "2001:db8:3::", 56), // JP
        ("www.example.com.", RecordType::AAAA, "2001:db8:5::", 48), // BR, region without IPv6
        ("api.example.com.", RecordType::A, "11.1.0.0", 24),   // US, 2 of 3
        ("api.example.com.", RecordType::A, "12.1.0.0", 24),   // GB
        ("api.example.com.", RecordType::AAAA, "12.1.0.0", 24), // no IPv6 at all
    ];
    let mut answered = 0;
    for &(name, rtype, addr, prefix) in table {
        let resp = udp(m.v4(), &with_ecs(query(name, rtype), addr, prefix));
        assert_eq!(
            resp.metadata.response_code,
            ResponseCode::NoError,
            "{name} {rtype} {addr}"
        );
        let client = format!("{addr}/{prefix}");
        let ex = explain_json(&config, name, &rtype.to_string(), &client);
        assert_eq!(
            addrs(&resp),
            json_addrs(&ex),
            "{name} {rtype} for {client}: server vs explain"
        );
        let scope = ecs_of(&resp).expect("ECS echoed").scope_prefix();
        assert_eq!(
            ex["ecs_scope"].as_u64(),
            Some(u64::from(scope)),
            "{name} {rtype} for {client}: ECS scope"
        );
        answered += usize::from(!addrs(&resp).is_empty());
    }
    assert!(
        answered >= 12,
        "most rows should have answers, {answered} did"
    );
}

#[test]
fn geoip_build_reproduces_the_committed_fixtures() {
    let scratch = Scratch::new();
    let out_dir = scratch.0.join("out");
    std::fs::create_dir_all(&out_dir).expect("out dir");
    let out = meridian(&[
        "geoip-build",
        "--source",
        "geoip-fixtures/source.toml",
        "--out-dir",
        &out_dir.display().to_string(),
    ]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let mut written: Vec<String> = std::fs::read_dir(&out_dir)
        .expect("read out dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(
        written,
        ["world-city.mmdb", "world-country.mmdb", "world-flat.mmdb"]
    );
    for name in &written {
        let built = std::fs::read(out_dir.join(name)).expect("built file");
        let committed = std::fs::read(fixture(name)).expect("committed file");
        assert!(
            built == committed,
            "{name} differs from geoip-fixtures/{name}"
        );
        assert!(
            stdout(&out).contains(name),
            "stdout names {name}: {}",
            stdout(&out)
        );
    }
}

#[test]
fn every_example_config_passes_check() {
    let dir = repo().join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = meridian(&["check", "--config", &path.display().to_string()]);
            assert!(out.status.success(), "{}: {}", path.display(), stderr(&out));
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "config/ holds the example configs ({checked} found)"
    );
}

#[test]
fn logs_are_plain_text_off_a_terminal_and_json_on_request() {
    // Text (the default): no colour codes when stderr is not a terminal, and each start-up
    // line logged once.
    let m = Meridian::start_example();
    let text = m.logs();
    assert!(!text.contains('\u{1b}'), "ANSI escapes in a pipe: {text:?}");
    let startup: Vec<Startup> = text.lines().filter_map(Startup::parse).collect();
    let mut want: Vec<Startup> = [m.v4(), m.v6()].into_iter().map(Startup::Dns).collect();
    want.extend([Startup::Admin(m.admin()), Startup::Ready]);
    assert_eq!(startup, want, "{text}");
    assert_eq!(text.matches("serving DNS").count(), 2, "{text}");
    drop(m);
    // A quieter filter keeps the start-up lines (scripts wait for them) and drops the rest.
    let scratch = Scratch::new();
    let config = scratch.write("meridian.toml", &example_config());
    let m = Meridian::start_with(scratch, config, &[("MERIDIAN_LOG", "warn")])
        .unwrap_or_else(|e| panic!("did not start: {e}"));
    let quiet = m.logs();
    assert!(!quiet.contains(" INFO meridian::cli"), "{quiet}");
    assert_eq!(
        quiet.lines().filter_map(Startup::parse).count(),
        4,
        "{quiet}"
    );
    drop(m);
    // JSON, from the config: every log line is one object with a level and a message.
    let m = Meridian::start(
        &example_config().replace("[server]\n", "[server]\nlog_format = \"json\"\n"),
    );
    let logs = m.logs();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log lines");
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    }
    let last = lines.iter().rev().find_map(|l| Startup::parse(l));
    assert_eq!(last, Some(Startup::Ready), "{logs}");
}

#[test]
fn an_unknown_log_format_is_a_check_error() {
    let scratch = Scratch::new();
    let path = scratch.write(
        "meridian.toml",
        &example_config().replace("[server]\n", "[server]\nlog_format = \"xml\"\n"),
    );
    let out = meridian(&["check", "--config", path.to_str().expect("path")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("log_format \"xml\" is not \"text\" or \"json\""),
        "{}",
        stderr(&out)
    );
}
