//! ASN routing on real data: ip-location-db's ASN CSV (npm `@ip-location-db/asn`, pinned,
//! cached under `target/ip-location-db/` like the GeoIP files) built into ASN databases by
//! `meridian geoip-build`, and the real server answering real ECS subnets of Comcast
//! (AS7922) and Deutsche Telekom (AS3320) by their ASN, with GeoLite2 Country for GeoIP.
use std::path::{Path, PathBuf};

use crate::geoip_files::{REAL_FILE_START, fetch};
use crate::harness::*;

const ASN_PACKAGE: &str = "@ip-location-db/asn";
const ASN_VERSION: &str = "2.3.2026061719";
const COUNTRY_PACKAGE: &str = "@ip-location-db/geolite2-country-mmdb";
const COUNTRY_VERSION: &str = "2.3.2026061719";

/// Builds the ASN database of one CSV with `meridian geoip-build`; its path.
fn build(csv: &Path, out_dir: &Path) -> PathBuf {
    let out = run(
        &[
            "geoip-build",
            "--source",
            csv.to_str().expect("path"),
            "--out-dir",
            out_dir.to_str().expect("path"),
        ],
        out_dir,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "geoip-build {}: {stdout}{}",
        csv.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stem = csv.file_stem().expect("stem").to_string_lossy();
    let mmdb = out_dir.join(format!("{stem}.mmdb"));
    assert!(
        stdout.contains(&format!("wrote {}", mmdb.display())),
        "{stdout}"
    );
    mmdb
}

/// The example config on GeoLite2 Country and the ASN databases, with `www` using the `isp`
/// map (a Comcast /24 to ap-southeast; AS7922 to eu-west, AS3320 to sa-east) and
/// `resident` keeping US clients in us-east whatever the map says.
fn config(country: &[PathBuf], asn: &[PathBuf]) -> String {
    let list = |paths: &[PathBuf]| {
        paths
            .iter()
            .map(|p| format!("\"{}\"", p.display()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let fixture = repo().join("geoip-fixtures/world-city.mmdb");
    let text = example_config()
        .replace(
            &format!("database = \"{}\"", fixture.display()),
            &format!(
                "database = [{}]\nasn_database = [{}]",
                list(country),
                list(asn)
            ),
        )
        .replacen(
            "policy = \"geo\"\nanswers = 1\n",
            "policy = \"geo\"\nanswers = 1\ncidr_map = \"isp\"\n",
            1,
        );
    assert!(text.contains("asn_database") && text.contains("cidr_map = \"isp\""));
    format!(
        r#"{text}

[cidr_maps.isp]
networks = [{{ network = "24.1.2.0/24", region = "ap-southeast" }}]
asns = [
  {{ asn = 7922, region = "eu-west" }},
  {{ asn = 3320, region = "sa-east" }},
]

[[services]]
name = "resident.example.com."
cidr_map = "isp"
residency = [{{ countries = ["US"], regions = ["us-east"] }}]
endpoints = [
  {{ region = "us-east", address = "192.0.2.30" }},
  {{ region = "eu-west", address = "198.51.100.30" }},
]
"#
    )
}

/// The answer's address and the ECS scope of a `dig +subnet` query.
fn ask(m: &Meridian, name: &str, qtype: &str, subnet: &str) -> (String, u8) {
    let out = dig(m.v4(), &[&format!("+subnet={subnet}"), name, qtype]);
    let answer = out
        .lines()
        .filter(|l| !l.starts_with(';') && l.contains(&format!("\tIN\t{qtype}\t")))
        .filter_map(|l| l.split_whitespace().last())
        .collect::<Vec<_>>()
        .join(" ");
    let line = format!("; CLIENT-SUBNET: {subnet}/");
    let scope = out
        .lines()
        .find_map(|l| l.trim_start_matches(';').trim().strip_prefix(&line[2..]))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("{subnet}: no scope in\n{out}"));
    (answer, scope)
}

fn explain(config: &Path, name: &str, qtype: &str, client: &str) -> String {
    let out = run(
        &[
            "explain",
            "--config",
            config.to_str().expect("path"),
            name,
            qtype,
            "--client",
            client,
        ],
        config.parent().expect("dir"),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The prefix length of explain's `asn  network A/N: ...` line.
fn asn_network_prefix(explained: &str) -> u8 {
    explained
        .lines()
        .find_map(|l| l.strip_prefix("asn        network "))
        .and_then(|l| l.split_once(": ").map(|(net, _)| net))
        .and_then(|net| net.rsplit('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no asn line in\n{explained}"))
}

#[test]
fn real_asn_data_routes_clients_by_their_autonomous_system() {
    let csv4 = fetch(ASN_PACKAGE, ASN_VERSION, "asn-ipv4.csv");
    let csv6 = fetch(ASN_PACKAGE, ASN_VERSION, "asn-ipv6.csv");
    let country = [
        fetch(
            COUNTRY_PACKAGE,
            COUNTRY_VERSION,
            "geolite2-country-ipv4.mmdb",
        ),
        fetch(
            COUNTRY_PACKAGE,
            COUNTRY_VERSION,
            "geolite2-country-ipv6.mmdb",
        ),
    ];
    let scratch = Scratch::new();
    let asn = [build(&csv4, &scratch.0), build(&csv6, &scratch.0)];
    let text = config(&country, &asn);
    let config = scratch.write("meridian.toml", &text);

    // check summarises each ASN file.
    let out = run(
        &["check", "--config", config.to_str().expect("path")],
        &scratch.0,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for db in &asn {
        assert!(
            stdout.contains(&format!("asn: {} (ASN schema", db.display())),
            "{stdout}"
        );
    }
    let summaries: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("asn: ") && l.contains(" networks, "))
        .collect();
    assert_eq!(summaries.len(), 2, "{stdout}");
    for s in &summaries {
        assert!(
            s.contains("all with an ASN") && s.contains("distinct ASNs"),
            "{s}"
        );
    }

    // Each file under the other key is a check error saying where it belongs.
    let swapped = text
        .replace("asn_database = [", "asn_database_was = [")
        .replace("database = [", "asn_database = [")
        .replace("asn_database_was = [", "database = [");
    let swapped = scratch.write("swapped.toml", &swapped);
    let out = run(
        &["check", "--config", swapped.to_str().expect("path")],
        &scratch.0,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "GeoIP database {} is an ASN database (autonomous_system_number, no country): name it in [geoip] asn_database",
            asn[0].display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "ASN database {} has no autonomous_system_number in its first records",
            country[0].display()
        )),
        "{stderr}"
    );

    let m = Meridian::start_within(&text, REAL_FILE_START);
    // Without the map these are US (us-east) and German (eu-west) clients; their ASNs send
    // them to eu-west and sa-east. The scope never covers more than the ASN network.
    for (subnet, qtype, want, asn) in [
        (
            "24.8.40.0/24",
            "A",
            "198.51.100.10",
            "AS7922 Comcast Cable Communications, LLC",
        ),
        (
            "2601:0:1::/48",
            "AAAA",
            "2001:db8:20::10",
            "AS7922 Comcast Cable Communications, LLC",
        ),
        (
            "2.160.7.0/24",
            "A",
            "203.0.113.20",
            "AS3320 Deutsche Telekom AG",
        ),
    ] {
        let (answer, scope) = ask(&m, "www.example.com", qtype, subnet);
        assert_eq!(answer, want, "{subnet}");
        let explained = explain(&config, "www.example.com", qtype, subnet);
        let asn_prefix = asn_network_prefix(&explained);
        assert!(
            scope >= asn_prefix,
            "{subnet}: scope /{scope} covers more than the ASN network /{asn_prefix}\n{explained}"
        );
        assert!(explained.contains(&format!(": {asn}\n")), "{explained}");
        assert!(
            explained.contains(&format!(
                "ASN override names it ({})",
                &asn[..asn.find(' ').expect("AS")]
            )) && explained.contains("(asn-override)"),
            "{explained}"
        );
        assert!(
            explained.contains(&format!("ecs scope  /{scope}\n")),
            "explain and DNS agree on the scope\n{explained}"
        );
    }
    // The Comcast /24 in the map's networks beats AS7922.
    let (answer, scope) = ask(&m, "www.example.com", "A", "24.1.2.0/24");
    assert_eq!(answer, "203.0.113.10");
    assert!(
        scope >= 24,
        "the /24's answer covers more than the /24: /{scope}"
    );
    // A client whose AS is in no map is placed by GeoIP: Google (AS15169) in the US.
    let (answer, _) = ask(&m, "www.example.com", "A", "8.8.8.0/24");
    assert_eq!(answer, "192.0.2.10");
    // Residency wins over the ASN: a US Comcast client stays in us-east.
    let (answer, _) = ask(&m, "resident.example.com", "A", "24.8.40.0/24");
    assert_eq!(answer, "192.0.2.30");
    let explained = explain(&config, "resident.example.com", "A", "24.8.40.0/24");
    let eu = explained
        .lines()
        .find(|l| l.contains("eu-west"))
        .unwrap_or_else(|| panic!("{explained}"));
    assert!(
        eu.contains("ASN override names it (AS7922)")
            && eu.contains("skipped: residency rule excludes it"),
        "{explained}"
    );
}
