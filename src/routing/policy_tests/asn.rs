//! ASN overrides: a client in none of a CIDR map's networks goes to the region the map names
//! for its autonomous system, under every policy; a network still beats an ASN; the ECS
//! scope never covers more than the ASN database's network; residency still wins; maps
//! from files; validation.
use std::path::PathBuf;

use crate::geo::build::writer::{Value, Writer};
use crate::routing::RoutingTable;
use crate::routing::query::{Client, Reason};
use crate::routing::test_support::{
    GEOIP, candidates, ecs, load_err, region_name, region_of, run, src,
};
use crate::routing::trace::{Outcome, Rank};

use super::{POLICIES, TempDir, config, table};

/// An ASN database over the fixture's networks (geoip-fixtures/README.md):
/// Ashburn's 11.0.0.0/16 and 2001:db8:1::/48 are AS7922; 13.0.0.0/20, inside Tokyo's /16,
/// is AS3320; 13.0.64.0/18 is AS64500, which no map names.
fn asn_db(dir: &TempDir) -> PathBuf {
    let mut w = Writer::new("GeoLite2-ASN");
    w.description("en", "ASN records over the GeoIP fixture's networks");
    let rec = |asn: u32, org: &str| {
        Value::Map(vec![
            ("autonomous_system_number".into(), Value::U32(asn)),
            (
                "autonomous_system_organization".into(),
                Value::String(org.into()),
            ),
        ])
    };
    w.insert("11.0.0.0/16".parse().unwrap(), rec(7922, "Comcast"));
    w.insert("2001:db8:1::/48".parse().unwrap(), rec(7922, "Comcast"));
    w.insert("12.0.0.0/16".parse().unwrap(), rec(7922, "Comcast"));
    w.insert(
        "13.0.0.0/20".parse().unwrap(),
        rec(3320, "Deutsche Telekom"),
    );
    w.insert("13.0.64.0/18".parse().unwrap(), rec(64500, "Documentation"));
    let path = dir.0.join("asn.mmdb");
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    path
}

const MAP: &str = r#"
[cidr_maps.corp]
networks = [{ network = "12.0.5.0/24", region = "us-east" }]
asns = [
  { asn = 7922, region = "eu-west" },
  { asn = 3320, region = "ap-southeast" },
]
"#;

fn service(policy: &str, extra: &str) -> String {
    let regions = if policy == "failover" {
        "regions = [\"us-east\", \"eu-west\", \"ap-southeast\"]\n"
    } else {
        ""
    };
    format!(
        r#"
[[services]]
name = "corp.example.com."
policy = "{policy}"
cidr_map = "corp"
{regions}{extra}endpoints = [
  {{ region = "us-east", address = "192.0.2.101" }},
  {{ region = "eu-west", address = "192.0.2.102" }},
  {{ region = "ap-southeast", address = "192.0.2.103" }},
]
"#
    )
}

const CORP: &str = "corp.example.com.";

/// The test config with `asn_database` next to the City fixture.
fn asn_config(db: &std::path::Path, rest: &str) -> String {
    config("", &[], rest).replacen(
        GEOIP,
        &format!("{GEOIP}asn_database = \"{}\"\n", db.display()),
        1,
    )
}

fn corp(dir: &TempDir, policy: &str, extra: &str) -> RoutingTable {
    table(&asn_config(
        &asn_db(dir),
        &format!("{MAP}{}", service(policy, extra)),
    ))
}

#[test]
fn an_asn_override_comes_after_networks_and_before_geoip() {
    let dir = TempDir::new();
    for policy in POLICIES {
        let t = corp(&dir, policy, "");
        for (client, region, asn) in [
            ("11.0.1.1", "eu-west", 7922),      // Ashburn, but AS7922 says eu-west
            ("2001:db8:1::1", "eu-west", 7922), // the same AS over IPv6
            ("13.0.1.1", "ap-southeast", 3320), // Tokyo's AS3320 part
        ] {
            let d = run(&t, CORP, src(client));
            assert_eq!(
                region_name(&t, &d).as_deref(),
                Some(region),
                "{policy} {client}"
            );
            assert_eq!(d.reason, Reason::AsnOverride, "{policy} {client}");
            let cands = candidates(&t, CORP, src(client));
            let first = cands
                .iter()
                .find(|c| c.1 == Rank::AsnOverride { asn })
                .unwrap_or_else(|| panic!("{policy} {client}: {cands:?}"));
            assert_eq!((first.0.as_str(), first.2), (region, Outcome::Chosen));
        }
        // 12.0.5.0/24 is in AS7922 too, but the map's network comes first.
        let d = run(&t, CORP, src("12.0.5.1"));
        assert_eq!(region_name(&t, &d).as_deref(), Some("us-east"), "{policy}");
        assert_eq!(d.reason, Reason::Override, "{policy}");
        // Elsewhere in 12.0.0.0/16, AS7922 decides.
        assert_eq!(region_of(&t, CORP, src("12.0.9.1")), "eu-west", "{policy}");
        // AS64500 is in no map, and 14.0.0.1 in no ASN network: the policy decides.
        for client in ["13.0.70.1", "14.0.0.1"] {
            let d = run(&t, CORP, src(client));
            assert!(
                d.reason != Reason::AsnOverride && d.reason != Reason::Override,
                "{policy} {client}: {d:?}"
            );
        }
    }
    let t = corp(&dir, "geo", "");
    assert_eq!(region_of(&t, CORP, src("13.0.70.1")), "ap-southeast");
    // San Jose has no ASN in the database: the nearest region with endpoints.
    assert_eq!(region_of(&t, CORP, src("11.1.0.1")), "us-east");
}

#[test]
fn the_scope_covers_at_most_the_asn_network() {
    let dir = TempDir::new();
    for policy in ["geo", "failover", "latency", "proximity"] {
        let t = corp(&dir, policy, "");
        let scope = |c: Client| run(&t, CORP, c).scope;
        // AS3320 is 13.0.0.0/20 inside Tokyo's /16: the answer holds for the /20 only.
        assert_eq!(scope(ecs("13.0.1.0", 24)), 20, "{policy}");
        assert_eq!(scope(ecs("13.0.0.0", 16)), 20, "{policy}");
        // An AS no map names still bounds the scope: the next network may be another AS.
        assert_eq!(scope(ecs("13.0.70.0", 24)), 18, "{policy}");
        // Inside the map's network, the ASN is not asked: the network's scope holds.
        assert_eq!(scope(ecs("12.0.5.0", 24)), 24, "{policy}");
        // IPv6: the /48.
        assert_eq!(scope(ecs("2001:db8:1::", 56)), 48, "{policy}");
    }
    // Without ASNs in the map, the ASN database is not asked and does not narrow the scope.
    let t = table(&asn_config(
        &asn_db(&dir),
        &format!(
            "[cidr_maps.corp]\nnetworks = [{{ network = \"12.0.5.0/24\", region = \"us-east\" }}]\n{}",
            service("failover", "")
        ),
    ));
    assert_eq!(run(&t, CORP, ecs("13.0.1.0", 24)).scope, 8);
}

#[test]
fn residency_wins_over_an_asn_override() {
    let dir = TempDir::new();
    // AS3320 sends 13.0.1.0 to ap-southeast, but Japanese clients may only use eu-west.
    let t = corp(
        &dir,
        "geo",
        "residency = [{ countries = [\"JP\"], regions = [\"eu-west\"] }]\n",
    );
    let cands = candidates(&t, CORP, src("13.0.1.1"));
    assert_eq!(
        cands[0],
        (
            "ap-southeast".to_string(),
            Rank::AsnOverride { asn: 3320 },
            Outcome::Residency
        )
    );
    let d = run(&t, CORP, src("13.0.1.1"));
    assert_eq!(region_name(&t, &d).as_deref(), Some("eu-west"));
    assert_ne!(d.reason, Reason::AsnOverride);
    // Ashburn is not restricted: its AS still applies.
    assert_eq!(region_of(&t, CORP, src("11.0.1.1")), "eu-west");
}

#[test]
fn asns_from_a_map_file() {
    let dir = TempDir::new();
    let db = asn_db(&dir);
    let file = dir.write(
        "corp.cidr",
        "# by network, then by AS\n12.0.5.0/24 us-east\nAS7922 eu-west\n3320\tap-southeast # bare number\n",
    );
    let t = table(&asn_config(
        &db,
        &format!(
            "[cidr_maps.corp]\nfile = \"{}\"\n{}",
            file.display(),
            service("geo", "")
        ),
    ));
    assert_eq!(region_of(&t, CORP, src("12.0.5.1")), "us-east");
    assert_eq!(region_of(&t, CORP, src("11.0.1.1")), "eu-west");
    assert_eq!(region_of(&t, CORP, src("13.0.1.1")), "ap-southeast");
    assert_eq!(run(&t, CORP, src("13.0.1.1")).reason, Reason::AsnOverride);

    // An ASN given inline and in the file: the inline one holds.
    let t = table(&asn_config(
        &db,
        &format!(
            "[cidr_maps.corp]\nfile = \"{}\"\nasns = [{{ asn = 7922, region = \"ap-southeast\" }}]\n{}",
            file.display(),
            service("geo", "")
        ),
    ));
    assert_eq!(region_of(&t, CORP, src("11.0.1.1")), "ap-southeast");

    // Every bad line is reported with the file and its number.
    let bad = dir.write(
        "bad.cidr",
        "AS7922 eu-west\nAS0 us-east\nASX us-east\nAS4294967296 eu-west\nAS3320 mars\n7922\n",
    );
    let err = load_err(&asn_config(
        &db,
        &format!(
            "[cidr_maps.corp]\nfile = \"{}\"\n{}",
            bad.display(),
            service("geo", "")
        ),
    ));
    assert!(err.contains("bad.cidr"), "{err}");
    for (line, what) in [
        ("line 2:", "0 is not an AS number"),
        (
            "line 3:",
            "\"ASX\" is neither a network (CIDR) nor an AS number",
        ),
        ("line 4:", "4294967296 is not an AS number"),
        ("line 5:", "no region named \"mars\""),
        ("line 6:", "expected NETWORK REGION or ASN REGION"),
    ] {
        assert!(err.contains(&format!("{line} {what}")), "{line}: {err}");
    }
    assert!(!err.contains("line 1:"), "{err}");

    // ASN lines with no ASN database to match them.
    let err = load_err(&config(
        "",
        &[],
        &format!(
            "[cidr_maps.corp]\nfile = \"{}\"\n{}",
            file.display(),
            service("geo", "")
        ),
    ));
    assert!(
        err.contains("corp.cidr lists ASNs, which need [geoip] asn_database"),
        "{err}"
    );
}

#[test]
fn asns_are_validated() {
    let dir = TempDir::new();
    let db = asn_db(&dir);
    let with = |asns: &str| {
        asn_config(
            &db,
            &format!("[cidr_maps.corp]\nasns = [{asns}]\n{}", service("geo", "")),
        )
    };
    for (asns, want) in [
        (
            r#"{ asn = 0, region = "us-east" }"#,
            "0 is not an AS number (1 to 4294967295)",
        ),
        (
            r#"{ asn = -7922, region = "us-east" }"#,
            "-7922 is not an AS number",
        ),
        (
            r#"{ asn = 4294967296, region = "us-east" }"#,
            "4294967296 is not an AS number",
        ),
        (
            r#"{ asn = 7922, region = "mars" }"#,
            "cidr map names undefined region \"mars\"",
        ),
        (
            r#"{ asn = 7922, region = "us-east" }, { asn = 7922, region = "eu-west" }"#,
            "AS7922 is listed twice",
        ),
        (r#"{ asn = "AS7922", region = "us-east" }"#, "invalid type"),
    ] {
        let err = load_err(&with(asns));
        assert!(err.contains(want), "{asns}: {err}");
    }
    // ASNs need an ASN database.
    let err = load_err(&config(
        "",
        &[],
        &format!(
            "[cidr_maps.corp]\nasns = [{{ asn = 7922, region = \"us-east\" }}]\n{}",
            service("geo", "")
        ),
    ));
    assert!(
        err.contains("[cidr_maps.corp] lists ASNs, which need [geoip] asn_database"),
        "{err}"
    );
}

#[test]
fn databases_in_the_wrong_key_are_refused() {
    let dir = TempDir::new();
    let db = asn_db(&dir);
    let city = GEOIP
        .trim()
        .trim_start_matches("[geoip]\ndatabase = ")
        .to_string();
    // The ASN file as the GeoIP database.
    let text = config("", &[], &service("geo", "")).replacen(
        GEOIP,
        &format!("\n[geoip]\ndatabase = \"{}\"\n", db.display()),
        1,
    );
    let text = text.replace("cidr_map = \"corp\"\n", "");
    let err = load_err(&text);
    assert!(
        err.contains("asn.mmdb is an ASN database") && err.contains("[geoip] asn_database"),
        "{err}"
    );
    // The City file as the ASN database.
    let text = asn_config(
        std::path::Path::new(city.trim_matches('"')),
        &format!("{MAP}{}", service("geo", "")),
    );
    let err = load_err(&text);
    assert!(
        err.contains("world-city.mmdb has no autonomous_system_number")
            && err.contains("belongs in [geoip] database"),
        "{err}"
    );
    // An ASN database alone serves a policy that needs no location.
    let text = config("", &[], &format!("{MAP}{}", service("failover", ""))).replacen(
        GEOIP,
        &format!("\n[geoip]\nasn_database = \"{}\"\n", db.display()),
        1,
    );
    let t = table(&text);
    assert!(t.compiled.geo.is_none());
    assert_eq!(region_of(&t, CORP, src("13.0.1.1")), "ap-southeast");
    assert_eq!(region_of(&t, CORP, src("14.0.0.1")), "us-east");
    // A [geoip] table naming neither file.
    let err = load_err(&config("", &[], "").replacen(GEOIP, "\n[geoip]\n", 1));
    assert!(
        err.contains("[geoip] names neither database nor asn_database"),
        "{err}"
    );
}
