//! CIDR overrides: the longest matching network's region goes first under every policy, the
//! ECS scope covers exactly the networks that share the answer, a down override region falls
//! back to the normal order, maps from files, validation, and residency over overrides.
use crate::routing::RoutingTable;
use crate::routing::query::{Client, Reason};
use crate::routing::test_support::{
    candidates, ecs, load_err, region_name, region_of, run, src, with_down,
};
use crate::routing::trace::{Outcome, Rank};

use super::{POLICIES, TempDir, config, table};

const CORP_MAP: &str = r#"
[cidr_maps.corp]
networks = [
  { network = "12.0.5.0/24", region = "us-east" },
  { network = "13.0.0.0/8", region = "eu-west" },
  { network = "13.0.64.0/18", region = "us-east" },
  { network = "2001:db8:2:5::/64", region = "us-east" },
]
"#;

fn corp_service(policy: &str) -> String {
    let w = |n: u32| {
        if policy == "weighted" {
            format!(", weight = {n}")
        } else {
            String::new()
        }
    };
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
check = "web"
{regions}endpoints = [
  {{ region = "us-east", address = "192.0.2.101"{a} }},
  {{ region = "eu-west", address = "192.0.2.102"{b} }},
  {{ region = "ap-southeast", address = "192.0.2.103"{b} }},
]
"#,
        a = w(1),
        b = w(100),
    )
}

const CORP: &str = "corp.example.com.";

fn corp(policy: &str) -> RoutingTable {
    table(&config(
        "",
        &[],
        &format!("{CORP_MAP}{}", corp_service(policy)),
    ))
}

#[test]
fn cidr_override_beats_geoip_longest_prefix_first() {
    for policy in POLICIES {
        let t = corp(policy);
        for (client, region) in [
            ("12.0.5.1", "us-east"),  // Germany, but the /24 says us-east
            ("13.0.1.1", "eu-west"),  // Japan, the /8
            ("13.0.70.1", "us-east"), // the /18 inside the /8
            ("13.1.0.1", "eu-west"),  // Singapore is in the /8 too
            ("2001:db8:2:5::1", "us-east"),
        ] {
            let d = run(&t, CORP, src(client));
            assert_eq!(
                region_name(&t, &d).as_deref(),
                Some(region),
                "{policy} {client}"
            );
            assert_eq!(d.reason, Reason::Override, "{policy} {client}");
            let cands = candidates(&t, CORP, src(client));
            let first = cands
                .iter()
                .find(|c| c.1 == Rank::CidrOverride)
                .unwrap_or_else(|| panic!("{policy} {client}: {cands:?}"));
            assert_eq!((first.0.as_str(), first.2), (region, Outcome::Chosen));
            if policy != "weighted" {
                assert_eq!(cands[0].1, Rank::CidrOverride, "{policy} {client}");
            }
        }
        // Outside every override network the policy decides as usual.
        let d = run(&t, CORP, src("12.0.9.1"));
        assert_ne!(d.reason, Reason::Override, "{policy}");
        let cands = candidates(&t, CORP, src("12.0.9.1"));
        assert!(
            cands.iter().all(|c| c.1 != Rank::CidrOverride),
            "{policy}: {cands:?}"
        );
    }
    let t = corp("geo");
    assert_eq!(region_of(&t, CORP, src("12.0.9.1")), "eu-west");
    assert_eq!(region_of(&t, CORP, src("14.0.0.1")), "ap-southeast");
}

#[test]
fn cidr_override_scope_covers_exactly_the_networks_that_share_the_answer() {
    for policy in ["geo", "latency", "proximity"] {
        let t = corp(policy);
        let scope = |c: Client| run(&t, CORP, c).scope;
        assert_eq!(scope(ecs("12.0.5.0", 24)), 24, "{policy}");
        assert_eq!(scope(src("12.0.5.77")), 24, "{policy}");
        // A narrower ECS source still gets /24: the answer holds for the whole /24.
        assert_eq!(scope(ecs("12.0.5.128", 25)), 24, "{policy}");
        // Elsewhere in Germany's /16: 12.0.9 and 12.0.5 share 20 bits, so /21 is the
        // widest scope that leaves the override out.
        assert_eq!(scope(ecs("12.0.9.0", 24)), 21, "{policy}");
        assert_eq!(scope(src("12.0.9.1")), 21, "{policy}");
        // 12.0.4 and 12.0.5 differ only in bit 24.
        assert_eq!(scope(ecs("12.0.4.0", 24)), 24, "{policy}");
        // Far from the /24: the GeoIP network (/16) bounds it.
        assert_eq!(scope(ecs("12.0.200.0", 24)), 17, "{policy}");
        // A source prefix that covers the override gets a longer scope: the resolver's
        // prefix was not specific enough (RFC 7871 7.2.1), and cutting the scope to it would
        // let the resolver serve this answer to the override's clients. 12.0.0 and 12.0.5
        // share 21 bits; 12.0.8 and 12.0.5 share 20.
        assert_eq!(scope(ecs("12.0.0.0", 16)), 22, "{policy}");
        assert_eq!(scope(ecs("12.0.8.0", 20)), 21, "{policy}");
        // In the /8 but outside the /18: the two share 17 bits (13.0.0 vs 13.0.64).
        assert_eq!(scope(ecs("13.0.1.0", 24)), 18, "{policy}");
        assert_eq!(scope(ecs("13.0.70.0", 24)), 18, "{policy}");
        // IPv6: inside the /64, and next to it (2001:db8:2:0 vs 2001:db8:2:5 share 61 bits).
        assert_eq!(scope(ecs("2001:db8:2:5::", 64)), 64, "{policy}");
        assert_eq!(scope(ecs("2001:db8:2::", 64)), 62, "{policy}");
        // A /56 source covers the /64 override: the /62 around the address is what holds.
        assert_eq!(scope(ecs("2001:db8:2::", 56)), 62, "{policy}");
    }
    // Failover ignores location, so only the override networks count.
    let t = corp("failover");
    let scope = |c: Client| run(&t, CORP, c).scope;
    assert_eq!(scope(ecs("12.0.5.0", 24)), 24);
    assert_eq!(scope(ecs("12.0.9.0", 24)), 21);
    assert_eq!(scope(ecs("13.0.1.0", 24)), 18);
    // 11.0.130.0 and 12.0.5.0 first differ in bit 7 (00001011 vs 00001100).
    assert_eq!(scope(ecs("11.0.130.0", 24)), 6);
}

#[test]
fn cidr_override_region_down_falls_back_to_the_normal_order() {
    for policy in POLICIES {
        let t = with_down(&corp(policy), &["192.0.2.101"]);
        let d = run(&t, CORP, src("12.0.5.1"));
        assert_ne!(
            region_name(&t, &d).as_deref(),
            Some("us-east"),
            "{policy}: {d:?}"
        );
        assert!(d.region.is_some(), "{policy}: {d:?}");
        assert_ne!(d.reason, Reason::Override, "{policy}");
        if policy != "weighted" {
            let cands = candidates(&t, CORP, src("12.0.5.1"));
            assert_eq!(
                cands[0],
                (
                    "us-east".to_string(),
                    Rank::CidrOverride,
                    Outcome::Unhealthy { up: 0, total: 1 }
                ),
                "{policy}"
            );
            assert_eq!(d.reason, Reason::Failover, "{policy}");
        }
    }
    // Geo: Germany's normal first choice.
    let t = with_down(&corp("geo"), &["192.0.2.101"]);
    assert_eq!(region_of(&t, CORP, src("12.0.5.1")), "eu-west");
}

#[test]
fn cidr_map_from_a_file() {
    let dir = TempDir::new();
    let file = dir.write(
        "corp.cidr",
        "# corporate networks\n12.0.5.0/24 us-east\n\n13.0.0.0/8\teu-west  # all of 13/8\n",
    );
    let text = config(
        "",
        &[],
        &format!(
            "[cidr_maps.corp]\nfile = \"{}\"\n{}",
            file.display(),
            corp_service("geo")
        ),
    );
    let t = table(&text);
    let d = run(&t, CORP, ecs("12.0.5.0", 24));
    assert_eq!(region_name(&t, &d).as_deref(), Some("us-east"));
    assert_eq!((d.reason, d.scope), (Reason::Override, 24));
    assert_eq!(run(&t, CORP, ecs("12.0.9.0", 24)).scope, 21);
    assert_eq!(region_of(&t, CORP, src("13.0.70.1")), "eu-west");
    assert_eq!(region_of(&t, CORP, src("12.0.9.1")), "eu-west");
    assert_eq!(run(&t, CORP, src("12.0.9.1")).reason, Reason::Geo);

    // File and inline networks together: the inline /18 is longer than the file's /8.
    let text = config(
        "",
        &[],
        &format!(
            "[cidr_maps.corp]\nfile = \"{}\"\nnetworks = [{{ network = \"13.0.64.0/18\", region = \"ap-southeast\" }}]\n{}",
            file.display(),
            corp_service("geo")
        ),
    );
    let t = table(&text);
    assert_eq!(region_of(&t, CORP, src("13.0.70.1")), "ap-southeast");
    assert_eq!(region_of(&t, CORP, src("13.0.1.1")), "eu-west");

    // Every bad line is reported with its number.
    let bad = dir.write(
        "bad.cidr",
        "12.0.5.0/24 us-east\n12.0.5.0/33 us-east\n12.0.6.0/24 mars\n12.0.7.1/24 eu-west\nonly-one-field\n",
    );
    let err = load_err(&config(
        "",
        &[],
        &format!(
            "[cidr_maps.corp]\nfile = \"{}\"\n{}",
            bad.display(),
            corp_service("geo")
        ),
    ));
    assert!(err.contains("bad.cidr"), "{err}");
    for line in ["line 2", "line 3", "line 4", "line 5"] {
        assert!(err.contains(line), "{line}: {err}");
    }
    assert!(!err.contains("line 1:"), "{err}");
}

#[test]
fn cidr_maps_are_validated() {
    let with = |networks: &str, use_map: &str| {
        config(
            "",
            &[],
            &format!(
                "[cidr_maps.corp]\nnetworks = [{networks}]\n{}",
                corp_service("geo").replace("cidr_map = \"corp\"", use_map)
            ),
        )
    };
    let err = load_err(&with(
        r#"{ network = "12.0.5.1/24", region = "us-east" }"#,
        "cidr_map = \"corp\"",
    ));
    assert!(err.contains("host bits"), "{err}");
    let err = load_err(&with(
        r#"{ network = "12.0.5.0/24", region = "mars" }"#,
        "cidr_map = \"corp\"",
    ));
    assert!(err.contains("undefined region \"mars\""), "{err}");
    let err = load_err(&with(
        r#"{ network = "12.0.5.0/24", region = "us-east" }"#,
        "cidr_map = \"other\"",
    ));
    assert!(err.contains("no [cidr_maps.other] table"), "{err}");
}

#[test]
fn cidr_override_with_residency_stays_inside_the_boundary() {
    // The override sends 12.0.5.0/24 to us-east, but German clients may only use eu-west.
    let t = table(&config(
        "",
        &[],
        &format!(
            "{CORP_MAP}{}",
            corp_service("geo").replace(
                "check = \"web\"",
                "check = \"web\"\nresidency = [{ countries = [\"DE\"], regions = [\"eu-west\"] }]"
            )
        ),
    ));
    let cands = candidates(&t, CORP, src("12.0.5.1"));
    assert_eq!(
        cands[0],
        (
            "us-east".to_string(),
            Rank::CidrOverride,
            Outcome::Residency
        )
    );
    assert_eq!(region_of(&t, CORP, src("12.0.5.1")), "eu-west");
    // Japan is not restricted: its override still applies.
    assert_eq!(region_of(&t, CORP, src("13.0.70.1")), "us-east");
}
