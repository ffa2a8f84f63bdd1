//! Multivalue: `answers = N` gives up to N distinct healthy addresses under every policy.
use std::collections::HashSet;
use std::net::IpAddr;

use crate::routing::RoutingTable;
use crate::routing::test_support::{addresses, ip, load_err, run, src, with_down};

use super::{config, table};

pub(super) fn multivalue(policy: &str) -> RoutingTable {
    let regions = if policy == "failover" {
        "regions = [\"eu-west\", \"us-east\"]\n"
    } else {
        ""
    };
    let weight = |w: u32| {
        if policy == "weighted" {
            format!(", weight = {w}")
        } else {
            String::new()
        }
    };
    table(&config(
        "",
        &[],
        &format!(
            r#"
[[services]]
name = "multi.example.com."
policy = "{policy}"
answers = 2
check = "web"
{regions}endpoints = [
  {{ region = "eu-west", address = "192.0.2.61"{w} }},
  {{ region = "eu-west", address = "192.0.2.62"{w} }},
  {{ region = "eu-west", address = "192.0.2.63"{w} }},
  {{ region = "us-east", address = "192.0.2.64"{z} }},
]
"#,
            w = weight(1),
            z = weight(0),
        ),
    ))
}

#[test]
fn every_policy_answers_up_to_n_healthy_addresses() {
    let eu: HashSet<IpAddr> = ["192.0.2.61", "192.0.2.62", "192.0.2.63"].map(ip).into();
    let svc = "multi.example.com.";
    for policy in ["geo", "failover", "latency", "proximity", "weighted"] {
        let t = multivalue(policy);
        let mut seen = HashSet::new();
        for client in ["12.0.0.1", "12.1.0.1", "12.2.0.1", "2001:db8:2::1"] {
            let d = run(&t, svc, src(client));
            let got = addresses(&t, &d);
            assert_eq!(got.len(), 2, "{policy} {client}: {got:?}");
            assert_ne!(got[0], got[1], "{policy} {client}");
            assert!(
                got.iter().all(|a| eu.contains(a)),
                "{policy} {client}: {got:?}"
            );
            // Deterministic: the same client gets the same pair.
            for _ in 0..3 {
                assert_eq!(addresses(&t, &run(&t, svc, src(client))), got, "{policy}");
            }
            seen.extend(got);
        }
        assert!(seen.len() >= 2, "{policy}: {seen:?}");

        // Two of three down: the one healthy address, not a down one to make up the count.
        let t = with_down(&t, &["192.0.2.61", "192.0.2.63"]);
        let d = run(&t, svc, src("12.0.0.1"));
        assert_eq!(addresses(&t, &d), [ip("192.0.2.62")], "{policy}");
    }
}

#[test]
fn answers_more_than_the_region_has_returns_what_there_is() {
    let text = config(
        "",
        &[],
        r#"
[[services]]
name = "many.example.com."
policy = "latency"
answers = 16
endpoints = [
  { region = "eu-west", address = "192.0.2.71" },
  { region = "eu-west", address = "192.0.2.72" },
  { region = "us-east", address = "192.0.2.73" },
]

[[services]]
name = "wmany.example.com."
policy = "weighted"
answers = 16
endpoints = [
  { region = "eu-west", address = "192.0.2.74", weight = 5 },
  { region = "us-east", address = "192.0.2.75", weight = 1 },
  { region = "ap-southeast", address = "192.0.2.76", weight = 0 },
]
"#,
    );
    let t = table(&text);
    let got: HashSet<IpAddr> = addresses(&t, &run(&t, "many.example.com.", src("12.0.0.1")))
        .into_iter()
        .collect();
    assert_eq!(got, [ip("192.0.2.71"), ip("192.0.2.72")].into());
    // Weighted: every positive-weight endpoint, the weight-0 one only as a backup.
    let got: HashSet<IpAddr> = addresses(&t, &run(&t, "wmany.example.com.", src("12.0.0.1")))
        .into_iter()
        .collect();
    assert_eq!(got, [ip("192.0.2.74"), ip("192.0.2.75")].into());

    let err = load_err(&text.replace("answers = 16", "answers = 17"));
    assert!(err.contains("answers must be 1 to 16"), "{err}");
}
