//! Partial drains: a stable share of a region's clients, chosen by bucket, moves to its next
//! region under every policy; raising the share only moves more clients, a client's /24 moves
//! together, the ECS scope covers the bucketing network, and evacuation still wins.
use std::net::{IpAddr, Ipv4Addr};

use crate::routing::RoutingTable;
use crate::routing::query::{Client, Reason};
use crate::routing::test_support::{
    candidates, ecs, region_name, run, with_drained, with_evacuated,
};
use crate::routing::trace::Outcome;

use super::{POLICIES, config, table};

const SVC: &str = "drain.example.com.";

fn service(policy: &str) -> RoutingTable {
    let w = if policy == "weighted" {
        ", weight = 1"
    } else {
        ""
    };
    // Weighted: eu-west carries almost every answer, so a drain is what moves a client.
    let tiny = if policy == "weighted" {
        ", weight = 0"
    } else {
        ""
    };
    let regions = if policy == "failover" {
        "regions = [\"eu-west\", \"us-east\"]\n"
    } else {
        ""
    };
    table(&config(
        "",
        &[],
        &format!(
            r#"
[[services]]
name = "{SVC}"
policy = "{policy}"
check = "web"
{regions}endpoints = [
  {{ region = "eu-west", address = "192.0.2.1"{w} }},
  {{ region = "us-east", address = "192.0.2.2"{tiny} }},
]
"#
        ),
    ))
}

/// German clients (12.0.0.0/16 in the fixture): eu-west first under every policy.
fn clients() -> impl Iterator<Item = Client> {
    (0..=255u8)
        .flat_map(|a| (0..8u8).map(move |b| (a, b)))
        .map(|(a, b)| ecs(&IpAddr::V4(Ipv4Addr::new(12, 0, a, b * 32)).to_string(), 27))
}

fn moved(t: &RoutingTable, client: Client) -> bool {
    region_name(t, &run(t, SVC, client)).as_deref() == Some("us-east")
}

#[test]
fn a_drain_moves_its_share_and_raising_it_only_moves_more() {
    for policy in POLICIES {
        let base = service(policy);
        assert!(
            clients().all(|c| !moved(&base, c)),
            "{policy}: nothing drained yet"
        );
        let mut before: Vec<bool> = clients().map(|_| false).collect();
        for percent in [10.0, 25.0, 50.0, 75.0, 100.0] {
            let t = with_drained(base.clone(), &[("eu-west", percent)]);
            let now: Vec<bool> = clients().map(|c| moved(&t, c)).collect();
            for (i, (was, is)) in before.iter().zip(&now).enumerate() {
                assert!(!was || *is, "{policy}: client {i} came back at {percent} %");
            }
            // 256 /24s (eight clients each, moving together): within 10 points.
            let share = now.iter().filter(|m| **m).count() as f64 * 100.0 / now.len() as f64;
            assert!(
                (share - percent).abs() <= 10.0,
                "{policy}: {share:.1} % moved at {percent} %"
            );
            before = now;
        }
    }
}

#[test]
fn a_subnet_moves_together_and_the_scope_covers_the_bucket() {
    let t = with_drained(service("geo"), &[("eu-west", 50.0)]);
    for c in clients() {
        let d = run(&t, SVC, c);
        assert!(d.scope >= 24, "scope /{} under a partial drain", d.scope);
        let net = match c.addr {
            IpAddr::V4(a) => a.octets(),
            IpAddr::V6(_) => unreachable!(),
        };
        let first = ecs(&format!("{}.{}.{}.0", net[0], net[1], net[2]), 24);
        assert_eq!(moved(&t, c), moved(&t, first), "{c:?} left its /24");
        if moved(&t, c) {
            assert_eq!(d.reason, Reason::Drained);
            let cands = candidates(&t, SVC, c);
            assert_eq!(cands[0].0, "eu-west");
            assert_eq!(cands[0].2, Outcome::Drained);
        }
    }
    // No drain: the scope is the GeoIP network's, as before.
    let plain = service("geo");
    let c = clients().next().expect("a client");
    assert!(run(&plain, SVC, c).scope < 24);
}

#[test]
fn evacuation_wins_over_a_drain_and_a_full_drain_moves_everyone() {
    let t = with_drained(service("geo"), &[("eu-west", 100.0)]);
    assert!(clients().all(|c| moved(&t, c)));
    let t = with_evacuated(
        with_drained(service("geo"), &[("eu-west", 10.0)]),
        &["eu-west"],
    );
    for c in clients() {
        assert_eq!(run(&t, SVC, c).reason, Reason::Evacuated);
    }
}
