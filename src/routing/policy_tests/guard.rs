//! `promote_guard`: clients move away from their first region only into a region whose
//! guard passes; `on_unsafe` says what happens otherwise. Also `[[assert]]` scenarios and
//! `[[safety]]` rules, which read the same tables.
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::routing::query::Reason;
use crate::routing::scenario::{Scenario, serving_regions};
use crate::routing::table::RoutingTable;
use crate::routing::test_support::{
    ZONE, answer_name, candidates, compile, load_err, region_of, run, service, src,
};
use crate::routing::trace::Outcome;

/// An active-passive database: primary `east`, standby `west` guarded by its lag.
fn config(on_unsafe: &str, policy_extra: &str) -> String {
    format!(
        r#"{ZONE}
[[regions]]
name = "east"
[[regions]]
name = "west"
[[regions]]
name = "south"

[checks.up]
kind = "tcp"
port = 5432

[checks.lag]
kind = "http"
port = 8008
path = "/replication"
extract = {{ json = "/replication/lag_seconds" }}
max = 5
unit = "s"

[[services]]
name = "db.example.com."
policy = "failover"
regions = ["east", "west", "south"]
check = "up"
promote_guard = "lag"
on_unsafe = "{on_unsafe}"
{policy_extra}
endpoints = [
  {{ region = "east", address = "192.0.2.1" }},
  {{ region = "west", address = "192.0.2.2" }},
  {{ region = "south", address = "192.0.2.3" }},
]
"#
    )
}

fn table(on_unsafe: &str, s: Scenario) -> RoutingTable {
    let t = compile(&config(on_unsafe, ""));
    s.table(t.compiled.clone())
}

fn region(t: &RoutingTable, name: &str) -> crate::routing::table::RegionId {
    let i = t
        .compiled
        .regions
        .iter()
        .position(|r| r.name == name)
        .unwrap();
    crate::routing::table::RegionId(i as u32)
}

/// A scenario over the guard config, by region names.
fn scenario(down: &[&str], evacuated: &[&str], not_promotable: &[&str]) -> Scenario {
    let t = compile(&config("next", ""));
    let ids = |names: &[&str]| names.iter().map(|n| region(&t, n)).collect();
    Scenario {
        down: ids(down),
        evacuated: ids(evacuated),
        not_promotable: ids(not_promotable),
        drained: Vec::new(),
    }
}

#[test]
fn failover_into_a_lagging_standby_moves_on_to_the_next_that_passes() {
    let client = src("198.51.100.7");
    let t = table("next", scenario(&["east"], &[], &["west"]));
    let d = run(&t, "db.example.com.", client);
    assert_eq!(region_of(&t, "db.example.com.", client), "south");
    assert_eq!(d.reason, Reason::Failover);
    let cands = candidates(&t, "db.example.com.", client);
    assert!(
        matches!(cands[1].2, Outcome::NotPromotable { target: Some(_) }),
        "{cands:?}"
    );
    // Once the standby catches up, failover goes there.
    let t = table("next", scenario(&["east"], &[], &[]));
    assert_eq!(region_of(&t, "db.example.com.", client), "west");
}

#[test]
fn the_first_region_is_never_guarded() {
    let client = src("198.51.100.7");
    // Its own figure is out of bounds, but returning (or staying) there is never blocked.
    let t = table("servfail", scenario(&[], &[], &["east", "west"]));
    assert_eq!(region_of(&t, "db.example.com.", client), "east");
    assert_eq!(run(&t, "db.example.com.", client).reason, Reason::Primary);
}

#[test]
fn hold_keeps_answering_the_first_region_though_it_is_down() {
    let client = src("198.51.100.7");
    let t = table("hold", scenario(&["east"], &[], &["west"]));
    let d = run(&t, "db.example.com.", client);
    assert_eq!(d.reason, Reason::GuardHold);
    assert_eq!(region_of(&t, "db.example.com.", client), "east");
    // An evacuation is a move too: held on the evacuated region.
    let t = table("hold", scenario(&[], &["east"], &["west"]));
    assert_eq!(run(&t, "db.example.com.", client).reason, Reason::GuardHold);
    assert_eq!(region_of(&t, "db.example.com.", client), "east");
}

#[test]
fn servfail_refuses_with_servfail() {
    let client = src("198.51.100.7");
    let t = table("servfail", scenario(&["east"], &[], &["west"]));
    let d = run(&t, "db.example.com.", client);
    assert_eq!((d.reason, d.region), (Reason::GuardServFail, None));
    let a = answer_name(&t, "db.example.com.", RecordType::A, &client);
    assert_eq!(a.rcode, ResponseCode::ServFail);
}

#[test]
fn next_with_nothing_promotable_fails_open_on_the_first_region() {
    let client = src("198.51.100.7");
    let t = table("next", scenario(&["east"], &[], &["west", "south"]));
    let d = run(&t, "db.example.com.", client);
    assert_eq!(d.reason, Reason::FailOpen);
    assert_eq!(region_of(&t, "db.example.com.", client), "east");
}

#[test]
fn a_cold_start_has_no_figure_yet_so_nothing_is_promotable() {
    let t = compile(&config("servfail", ""));
    let t = crate::routing::test_support::with_down(&t, &["192.0.2.1"]);
    let d = run(&t, "db.example.com.", src("198.51.100.7"));
    assert_eq!(d.reason, Reason::GuardServFail);
}

#[test]
fn a_drained_client_moving_on_is_guarded_too() {
    let client = src("198.51.100.7");
    let mut s = scenario(&[], &[], &["west", "south"]);
    s.drained = vec![(region(&compile(&config("hold", "")), "east"), 100.0)];
    let t = table("hold", s);
    assert_eq!(run(&t, "db.example.com.", client).reason, Reason::GuardHold);
}

#[test]
fn check_refuses_guards_that_cannot_work() {
    let weighted = config("next", "").replace("policy = \"failover\"", "policy = \"weighted\"");
    let weighted = weighted.replace("regions = [\"east\", \"west\", \"south\"]\n", "");
    assert!(
        load_err(&weighted).contains("promote_guard needs a policy that ranks regions"),
        "{}",
        load_err(&weighted)
    );
    let no_figure = config("next", "").replace("promote_guard = \"lag\"", "promote_guard = \"up\"");
    assert!(load_err(&no_figure).contains("reads no figure"));
    let bad = config("sometimes", "");
    assert!(load_err(&bad).contains("on_unsafe \"sometimes\""));
    let tcp = config("next", "").replace(
        "kind = \"http\"\nport = 8008\npath = \"/replication\"",
        "kind = \"tcp\"\nport = 8008",
    );
    assert!(load_err(&tcp).contains("needs an http or https check"));
    let unbounded = config("next", "").replace("max = 5\n", "");
    assert!(load_err(&unbounded).contains("needs a bound"));
    let selector = config("next", "").replace(
        "{ json = \"/replication/lag_seconds\" }",
        "{ prometheus = 'lag{db=\"main' }",
    );
    assert!(load_err(&selector).contains("not a Prometheus sample selector"));
}

#[test]
fn the_guard_probes_each_endpoint_as_its_own_target() {
    let t = compile(&config("next", ""));
    let keys: Vec<&str> = t.compiled.targets.iter().map(|t| t.key.as_str()).collect();
    assert!(keys.contains(&"up@192.0.2.2:5432"), "{keys:?}");
    assert!(keys.contains(&"lag@192.0.2.2:8008"), "{keys:?}");
    let e = &t.compiled.endpoints[1];
    assert_ne!(e.target, e.guard);
    assert!(e.guard.is_some());
}

#[test]
fn assertions_hold_or_fail_with_their_place_and_explanation() {
    let text = config("next", "")
        + r#"
[[assert]]
name = "db.example.com."
client = "198.51.100.0/24"
expect_region = "east"

[[assert]]
name = "db.example.com."
client = "198.51.100.0/24"
expect_region = "west"
with = { down = ["east"] }

[[assert]]
name = "db.example.com."
client = "198.51.100.7"
expect_answer = ["192.0.2.3"]
expect_rcode = "NOERROR"
with = { down = ["east"], not_promotable = ["west"] }

[[assert]]
name = "db.example.com."
client = "198.51.100.0/24"
expect_region = "west"
with = { evacuated = ["east"], not_promotable = ["west"] }
"#;
    let t = compile(&text);
    let failures = crate::explain::assertion_failures(&t.compiled);
    assert_eq!(failures.len(), 1, "{failures:?}");
    let (a, message) = &failures[0];
    let line = text
        .lines()
        .position(|l| l.contains("evacuated = [\"east\"]"))
        .unwrap();
    // The table starts three lines above its `with`.
    assert_eq!(a.at.1, line + 1 - 4, "{message}");
    assert!(
        message.starts_with(
            "assertion failed: db.example.com. A from 198.51.100.0/24 with evacuated east, \
             not promotable west: expected region west, got south"
        ),
        "{message}"
    );
    assert!(
        message.contains("west: skipped: not promotable: lag: no figure"),
        "{message}"
    );
}

#[test]
fn assertions_with_unknown_regions_are_config_errors() {
    let text = config("next", "")
        + r#"
[[assert]]
name = "db.example.com."
client = "198.51.100.7"
expect_region = "mars"
with = { drained = { "east" = 150 } }
"#;
    let e = load_err(&text);
    assert!(e.contains("undefined region \"mars\""), "{e}");
    assert!(e.contains("drain 150 % is not 1 to 100"), "{e}");
}

#[test]
fn a_safety_floor_a_service_cannot_reach_is_refused_by_name_and_skipped_by_star() {
    let base = config("next", "");
    let named =
        base.clone() + "\n[[safety]]\nservices = [\"db.example.com\"]\nmin_serving_regions = 4\n";
    let e = load_err(&named);
    assert!(
        e.contains("service db.example.com. spans 3 region(s): it can never have 4 serving"),
        "{e}"
    );
    let star = base + "\n[[safety]]\nservices = [\"*\"]\nmin_serving_regions = 4\n";
    let t = compile(&star);
    assert_eq!(
        t.compiled.safety[0].kind,
        crate::routing::scenario::SafetyKind::MinServingRegions {
            services: vec![],
            min: 4.0
        }
    );
}

#[test]
fn safety_rules_count_serving_regions_by_the_share_of_clients_they_take() {
    let text = config("next", "")
        + r#"
[[safety]]
services = ["*"]
min_serving_regions = 2

[[safety]]
regions = ["east", "west"]
min_serving = 1
"#;
    let t = compile(&text);
    let c = &t.compiled;
    assert_eq!(c.safety.len(), 2);
    let line = text.lines().position(|l| l == "[[safety]]").unwrap() + 1;
    assert_eq!(c.safety[0].at, format!("/t/meridian.toml:{line}"));
    let svc = service(&t, "db.example.com.");
    let mut s = scenario(&[], &["east"], &[]);
    assert_eq!(serving_regions(&s.table(c.clone()), svc), 2.0);
    s.down = vec![region(&t, "west")];
    let after = s.table(c.clone());
    assert_eq!(serving_regions(&after, svc), 1.0);
    assert_eq!(c.safety[0].kind.broken(&after).len(), 1);
    assert_eq!(c.safety[1].kind.broken(&after).len(), 1);
    s.down.clear();
    s.evacuated.clear();
    s.drained = vec![(region(&t, "east"), 50.0)];
    let half = s.table(Arc::clone(c));
    assert_eq!(serving_regions(&half, svc), 2.5);
    assert!(c.safety[0].kind.broken(&half).is_empty());
}
