//! Weighted: stable per-subnet draws by weight, random draws per query, weight 0 as backup,
//! two answers, and the weights' validation.
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::routing::RoutingTable;
use crate::routing::query::{Client, Reason};
use crate::routing::test_support::{
    addresses, answer_of, candidate, candidates, ecs, ip, load_err, order, region_name, run, src,
    with_down,
};
use crate::routing::trace::{Outcome, Rank};

use super::{config, table};

const WEIGHTED: &str = r#"
[[services]]
name = "w.example.com."
policy = "weighted"
check = "web"
endpoints = [
  { region = "us-east", address = "192.0.2.13", weight = 70 },
  { region = "eu-west", address = "192.0.2.33", weight = 20 },
  { region = "ap-southeast", address = "192.0.2.43", weight = 10 },
]

[[services]]
name = "rand.example.com."
policy = "weighted"
weight_mode = "random"
endpoints = [
  { region = "us-east", address = "192.0.2.14", weight = 70 },
  { region = "eu-west", address = "192.0.2.34", weight = 20 },
  { region = "ap-southeast", address = "192.0.2.44", weight = 10 },
]

[[services]]
name = "backup.example.com."
policy = "weighted"
check = "web"
endpoints = [
  { region = "us-east", address = "192.0.2.15", weight = 0 },
  { region = "us-west", address = "192.0.2.25", weight = 0 },
  { region = "eu-west", address = "192.0.2.35", weight = 3 },
  { region = "ap-southeast", address = "192.0.2.45" },
]

[[services]]
name = "two.example.com."
policy = "weighted"
answers = 2
check = "web"
endpoints = [
  { region = "us-east", address = "192.0.2.16", weight = 70 },
  { region = "eu-west", address = "192.0.2.36", weight = 20 },
  { region = "ap-southeast", address = "192.0.2.46", weight = 10 },
]
"#;

fn weighted_table() -> RoutingTable {
    table(&config("", &[], WEIGHTED))
}

/// 10,000 distinct client /24s: 20.0.0.0/24, 20.0.1.0/24, ...
fn subnets() -> impl Iterator<Item = String> {
    (0..10_000u32).map(|i| format!("20.{}.{}.0", i / 256, i % 256))
}

/// Share of answers per address, in percent, over the given clients.
fn shares(t: &RoutingTable, svc: &str, clients: &[Client]) -> HashMap<IpAddr, f64> {
    let mut counts: HashMap<IpAddr, usize> = HashMap::new();
    for c in clients {
        *counts.entry(answer_of(t, svc, *c)).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(a, n)| (a, n as f64 * 100.0 / clients.len() as f64))
        .collect()
}

fn assert_shares(got: &HashMap<IpAddr, f64>, want: &[(&str, f64)]) {
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (a, pct) in want {
        let share = got.get(&ip(a)).copied().unwrap_or(0.0);
        assert!(
            (share - pct).abs() <= 3.0,
            "{a}: {share:.2}% of answers, want {pct}% +- 3 ({got:?})"
        );
    }
}

#[test]
fn weighted_stable_splits_subnets_by_weight() {
    let t = weighted_table();
    let clients: Vec<Client> = subnets().map(|s| ecs(&s, 24)).collect();
    let got = shares(&t, "w.example.com.", &clients);
    // The measured split, for the README: cargo test weighted_stable_splits -- --nocapture
    eprintln!("weighted 70/20/10 over 10,000 /24s: {got:?}");
    assert_shares(
        &got,
        &[
            ("192.0.2.13", 70.0),
            ("192.0.2.33", 20.0),
            ("192.0.2.43", 10.0),
        ],
    );
}

#[test]
fn weighted_stable_keeps_a_subnet_on_one_endpoint() {
    let t = weighted_table();
    let svc = "w.example.com.";
    for s in subnets().step_by(37).take(200) {
        let (base, _) = s.rsplit_once('.').expect("dotted quad");
        let want = answer_of(&t, svc, ecs(&s, 24));
        for c in [
            src(&format!("{base}.1")),
            src(&format!("{base}.254")),
            ecs(&s, 24),
            ecs(&format!("{base}.128"), 25),
        ] {
            let d = run(&t, svc, c);
            assert_eq!(addresses(&t, &d), [want], "{c:?}");
            assert_eq!(d.scope, 24, "{c:?}");
            assert_eq!(d.reason, Reason::Weighted);
        }
        // Asking again changes nothing.
        assert_eq!(answer_of(&t, svc, ecs(&s, 24)), want);
    }
    // A resolver that sends less than a /24 gets its own draw, scoped to what it sent.
    assert_eq!(run(&t, svc, ecs("20.1.0.0", 20)).scope, 20);
    assert_eq!(run(&t, svc, ecs("20.0.0.0", 8)).scope, 8);
    // IPv6 clients stick per /56.
    let v6 = answer_of(&t, svc, src("2001:db8:99:100::1"));
    for c in [
        src("2001:db8:99:100::1"),
        src("2001:db8:99:1ff:ffff::1"),
        ecs("2001:db8:99:100::", 64),
        ecs("2001:db8:99:100::", 56),
    ] {
        let d = run(&t, svc, c);
        assert_eq!(addresses(&t, &d), [v6], "{c:?}");
        assert_eq!(d.scope, 56, "{c:?}");
    }
    assert_eq!(run(&t, svc, ecs("2001:db8:99::", 48)).scope, 48);
    // And different /56s spread.
    let spread: HashSet<IpAddr> = (0..64)
        .map(|i| answer_of(&t, svc, ecs(&format!("2001:db8:99:{:x}00::", i), 56)))
        .collect();
    assert!(spread.len() > 1, "{spread:?}");
}

#[test]
fn weighted_trace_shows_each_regions_weight() {
    let t = weighted_table();
    let d = run(&t, "w.example.com.", ecs("20.0.0.0", 24));
    let cands = candidates(&t, "w.example.com.", ecs("20.0.0.0", 24));
    // Listed in the service's default order, each with the weight it can draw.
    assert_eq!(order(&cands), ["eu-west", "ap-southeast", "us-east"]);
    let weights: Vec<Rank> = cands.iter().map(|c| c.1).collect();
    assert_eq!(weights, [20, 10, 70].map(|weight| Rank::Weight { weight }));
    let chosen: Vec<&str> = cands
        .iter()
        .filter(|c| c.2 == Outcome::Chosen)
        .map(|c| c.0.as_str())
        .collect();
    assert_eq!(chosen, [region_name(&t, &d).expect("a region").as_str()]);
    assert!(
        cands
            .iter()
            .all(|c| c.2 == Outcome::Chosen || c.2 == Outcome::NotNeeded)
    );
}

#[test]
fn weighted_random_draws_per_query() {
    let t = weighted_table();
    let client = ecs("20.0.0.0", 24);
    let clients = vec![client; 5_000];
    let got = shares(&t, "rand.example.com.", &clients);
    assert_shares(
        &got,
        &[
            ("192.0.2.14", 70.0),
            ("192.0.2.34", 20.0),
            ("192.0.2.44", 10.0),
        ],
    );
    // The answer depends on no client bits at all.
    assert_eq!(run(&t, "rand.example.com.", client).scope, 0);
}

#[test]
fn weight_zero_answers_only_when_no_weighted_endpoint_is_up() {
    let svc = "backup.example.com.";
    let backups = [ip("192.0.2.15"), ip("192.0.2.25")];
    let t = weighted_table();
    let clients: Vec<Client> = subnets().take(2_000).map(|s| ecs(&s, 24)).collect();
    // Default weight is 1: eu-west 3, ap-southeast 1.
    let got = shares(&t, svc, &clients);
    assert_shares(&got, &[("192.0.2.35", 75.0), ("192.0.2.45", 25.0)]);

    // One weighted endpoint down: the other one takes everything, never a backup.
    let t = with_down(&weighted_table(), &["192.0.2.35"]);
    assert!(
        clients
            .iter()
            .all(|c| answer_of(&t, svc, *c) == ip("192.0.2.45"))
    );

    // Every weighted endpoint down: the weight-0 ones answer, shared evenly.
    let t = with_down(&weighted_table(), &["192.0.2.35", "192.0.2.45"]);
    let got = shares(&t, svc, &clients);
    assert_shares(&got, &[("192.0.2.15", 50.0), ("192.0.2.25", 50.0)]);
    let cands = candidates(&t, svc, clients[0]);
    assert_eq!(
        candidate(&cands, "eu-west").2,
        Outcome::Unhealthy { up: 0, total: 1 }
    );
    assert_eq!(
        candidate(&cands, "ap-southeast").2,
        Outcome::Unhealthy { up: 0, total: 1 }
    );

    // One backup down as well: the other backup answers.
    let t = with_down(
        &weighted_table(),
        &["192.0.2.35", "192.0.2.45", "192.0.2.15"],
    );
    assert!(
        clients
            .iter()
            .all(|c| answer_of(&t, svc, *c) == ip("192.0.2.25"))
    );

    // Everything down: fail-open answers as if all were up, still by weight.
    let t = with_down(
        &weighted_table(),
        &["192.0.2.35", "192.0.2.45", "192.0.2.15", "192.0.2.25"],
    );
    for c in &clients[..200] {
        let d = run(&t, svc, *c);
        assert_eq!(d.reason, Reason::FailOpen, "{c:?}");
        let got = addresses(&t, &d);
        assert_eq!(got.len(), 1, "{c:?}");
        assert!(!backups.contains(&got[0]), "{c:?}: {got:?}");
    }
}

#[test]
fn weighted_answers_two_gives_two_distinct_endpoints() {
    let t = weighted_table();
    let svc = "two.example.com.";
    let mut firsts: HashMap<IpAddr, usize> = HashMap::new();
    for s in subnets().take(2_000) {
        let d = run(&t, svc, ecs(&s, 24));
        let got = addresses(&t, &d);
        assert_eq!(got.len(), 2, "{s}: {got:?}");
        assert_ne!(got[0], got[1], "{s}");
        assert_eq!(addresses(&t, &run(&t, svc, ecs(&s, 24))), got, "{s}");
        *firsts.entry(got[0]).or_default() += 1;
    }
    // The first address is still drawn by weight.
    let heavy = firsts.get(&ip("192.0.2.16")).copied().unwrap_or(0);
    assert!((1_300..1_500).contains(&heavy), "{firsts:?}");

    // With one endpoint down only two remain, so every client gets both.
    let t = with_down(&weighted_table(), &["192.0.2.16"]);
    for s in subnets().take(100) {
        let got: HashSet<IpAddr> = addresses(&t, &run(&t, svc, ecs(&s, 24)))
            .into_iter()
            .collect();
        assert_eq!(got, [ip("192.0.2.36"), ip("192.0.2.46")].into(), "{s}");
    }
    // Two down: one healthy address, not two.
    let t = with_down(&weighted_table(), &["192.0.2.16", "192.0.2.36"]);
    assert_eq!(
        addresses(&t, &run(&t, svc, ecs("20.0.0.0", 24))),
        [ip("192.0.2.46")]
    );
}

#[test]
fn weights_are_validated() {
    let zero = config(
        "",
        &[],
        r#"
[[services]]
name = "w.example.com."
policy = "weighted"
endpoints = [
  { region = "us-east", address = "192.0.2.1", weight = 0 },
  { region = "eu-west", address = "192.0.2.2", weight = 0 },
]
"#,
    );
    let err = load_err(&zero);
    assert!(err.contains("every endpoint has weight 0"), "{err}");

    let not_weighted = config(
        "",
        &[],
        r#"
[[services]]
name = "g.example.com."
policy = "geo"
endpoints = [
  { region = "us-east", address = "192.0.2.1", weight = 5 },
  { region = "eu-west", address = "192.0.2.2" },
]
"#,
    );
    let err = load_err(&not_weighted);
    assert!(err.contains("endpoint weights need policy"), "{err}");

    let bad_mode = config(
        "",
        &[],
        r#"
[[services]]
name = "w.example.com."
policy = "weighted"
weight_mode = "sticky"
endpoints = [{ region = "us-east", address = "192.0.2.1" }]
"#,
    );
    let err = load_err(&bad_mode);
    assert!(err.contains("weight_mode \"sticky\""), "{err}");
}
