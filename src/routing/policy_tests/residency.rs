//! Residency: rules keep matching clients inside their allowed regions under every policy,
//! leave other clients alone, and are validated.
use crate::routing::RoutingTable;
use crate::routing::query::Reason;
use crate::routing::test_support::{
    candidate, candidates, ecs, load_err, region_name, region_of, run, src, with_down,
};
use crate::routing::trace::Outcome;

use super::{POLICIES, config, table, with_map};

/// An EU-only service of the given policy; us-east is nearest for nobody in the EU, but
/// heavily weighted and (with the map below) fastest for Germany.
pub(super) fn residency(policy: &str, on_all_down: &str) -> RoutingTable {
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
    let fallback = if on_all_down == "fallback" {
        "fallback = [\"203.0.113.9\"]\n"
    } else {
        ""
    };
    let t = table(&config(
        "",
        &[],
        &format!(
            r#"
[[services]]
name = "res.example.com."
policy = "{policy}"
check = "web"
on_all_down = "{on_all_down}"
{fallback}{regions}residency = [{{ continents = ["EU"], regions = ["eu-west"] }}]
endpoints = [
  {{ region = "us-east", address = "192.0.2.81"{a} }},
  {{ region = "eu-west", address = "192.0.2.82"{b} }},
  {{ region = "eu-west", address = "192.0.2.83"{b} }},
  {{ region = "ap-southeast", address = "192.0.2.84"{a} }},
]
"#,
            a = w(100),
            b = w(1),
        ),
    ));
    with_map(t, "country:DE,us-east,1\n")
}

pub(super) const RES: &str = "res.example.com.";
pub(super) const EU_CLIENTS: [&str; 4] = ["12.0.0.1", "12.1.0.1", "12.2.0.1", "2001:db8:2::1"];

#[test]
fn residency_keeps_eu_clients_in_eu_west() {
    for policy in POLICIES {
        let t = residency(policy, "fail-open");
        for client in EU_CLIENTS {
            let cands = candidates(&t, RES, src(client));
            let chosen = cands
                .iter()
                .position(|c| c.2 == Outcome::Chosen)
                .unwrap_or_else(|| panic!("{policy} {client}: {cands:?}"));
            assert_eq!(cands[chosen].0, "eu-west", "{policy} {client}");
            // Every region the client would have preferred is excluded by residency.
            for (region, _, outcome) in &cands[..chosen] {
                assert_eq!(
                    *outcome,
                    Outcome::Residency,
                    "{policy} {client} {region}: {cands:?}"
                );
            }
            assert_eq!(region_of(&t, RES, src(client)), "eu-west", "{policy}");
        }
        // Many German subnets, not just one lucky draw.
        for i in 0..200 {
            let c = ecs(&format!("12.0.{i}.0"), 24);
            assert_eq!(region_of(&t, RES, c), "eu-west", "{policy} {c:?}");
        }
    }
}

#[test]
fn residency_trace_marks_every_excluded_region() {
    // `explain` must say why us-east and ap-southeast are out for a German client, also when
    // they rank below the chosen region: "not needed" would suggest they could take over.
    let mut wrong = Vec::new();
    for policy in POLICIES {
        let t = residency(policy, "fail-open");
        for (region, _, outcome) in candidates(&t, RES, src("12.0.0.1")) {
            let want = if region == "eu-west" {
                Outcome::Chosen
            } else {
                Outcome::Residency
            };
            if outcome != want {
                wrong.push(format!("{policy}: {region} {outcome:?}, want {want:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn residency_leaves_other_clients_alone() {
    for policy in POLICIES {
        let t = residency(policy, "fail-open");
        for client in ["11.0.0.1", "13.0.0.1", "14.0.0.1", "15.0.0.1"] {
            let cands = candidates(&t, RES, src(client));
            assert!(
                cands.iter().all(|c| c.2 != Outcome::Residency),
                "{policy} {client}: {cands:?}"
            );
        }
    }
    // US clients still go to us-east, and may fail over to eu-west.
    let t = residency("geo", "fail-open");
    assert_eq!(region_of(&t, RES, src("11.0.0.1")), "us-east");
    assert_eq!(region_of(&t, RES, src("13.0.0.1")), "ap-southeast");
    let t = with_down(&t, &["192.0.2.81"]);
    let d = run(&t, RES, src("11.0.0.1"));
    assert_eq!(region_name(&t, &d).as_deref(), Some("eu-west"));
    assert_eq!(d.reason, Reason::Failover);
}

#[test]
fn residency_first_matching_rule_wins_and_countries_work() {
    let t = table(&config(
        "",
        &[],
        r#"
[[services]]
name = "asia.example.com."
residency = [
  { countries = ["JP"], regions = ["ap-southeast"] },
  { continents = ["AS"], regions = ["eu-west", "us-west"] },
]
endpoints = [
  { region = "us-west", address = "192.0.2.91" },
  { region = "eu-west", address = "192.0.2.92" },
  { region = "ap-southeast", address = "192.0.2.93" },
]
"#,
    ));
    let svc = "asia.example.com.";
    assert_eq!(region_of(&t, svc, src("13.0.0.1")), "ap-southeast"); // JP: first rule
    assert_eq!(region_of(&t, svc, src("13.1.0.1")), "eu-west"); // SG: second rule
    assert_eq!(region_of(&t, svc, src("13.2.0.1")), "eu-west"); // IN
    let cands = candidates(&t, svc, src("13.1.0.1"));
    assert_eq!(
        candidate(&cands, "ap-southeast").2,
        Outcome::Residency,
        "{cands:?}"
    );
    assert_eq!(region_of(&t, svc, src("14.0.0.1")), "ap-southeast"); // AU: no rule
    // A residency rule makes even a service that ignores location depend on the GeoIP network.
    assert_eq!(run(&t, svc, ecs("13.1.0.0", 24)).scope, 16);
}

#[test]
fn residency_rules_are_validated() {
    let rest = |rule: &str| {
        format!(
            r#"
[[services]]
name = "res.example.com."
residency = [{rule}]
endpoints = [
  {{ region = "us-east", address = "192.0.2.1" }},
  {{ region = "eu-west", address = "192.0.2.2" }},
]
"#
        )
    };
    let err = load_err(&config(
        "",
        &[],
        &rest(r#"{ continents = ["EU"], regions = ["ap-southeast"] }"#),
    ));
    assert!(
        err.contains("none of its regions has an endpoint of this service"),
        "{err}"
    );
    let err = load_err(&config(
        "",
        &[],
        &rest(r#"{ continents = ["EU"], regions = ["mars"] }"#),
    ));
    assert!(err.contains("undefined region \"mars\""), "{err}");
    let err = load_err(&config("", &[], &rest(r#"{ regions = ["eu-west"] }"#)));
    assert!(
        err.contains("needs subdivisions, countries or continents"),
        "{err}"
    );
    let err = load_err(&config(
        "",
        &[],
        &rest(r#"{ continents = ["XX"], regions = ["eu-west"] }"#),
    ));
    assert!(err.contains("\"XX\" is not a continent code"), "{err}");
}
