//! The ECS scope each policy answers with.
use hickory_proto::rr::RecordType;

use crate::routing::test_support::{answer_name, ecs, run, src};

use super::{config, table};

#[test]
fn ecs_scope_per_policy() {
    let mut rest = String::new();
    for (name, policy, extra) in [
        ("geo", "geo", ""),
        ("latency", "latency", ""),
        ("proximity", "proximity", ""),
        (
            "failover",
            "failover",
            "regions = [\"us-east\", \"eu-west\", \"ap-southeast\"]\n",
        ),
        ("stable", "weighted", ""),
        ("random", "weighted", "weight_mode = \"random\"\n"),
    ] {
        rest.push_str(&format!(
            r#"
[[services]]
name = "{name}.example.com."
policy = "{policy}"
{extra}endpoints = [
  {{ region = "us-east", address = "192.0.2.111" }},
  {{ region = "eu-west", address = "192.0.2.112" }},
  {{ region = "ap-southeast", address = "192.0.2.113" }},
]
"#
        ));
    }
    let t = table(&config("", &[], &rest));
    let names = [
        "geo",
        "latency",
        "proximity",
        "failover",
        "stable",
        "random",
    ];
    for (client, want) in [
        // 11.0.130.0 lies in the fixture's 11.0.128.0/20.
        (ecs("11.0.130.0", 24), [20, 20, 20, 0, 24, 0]),
        (src("11.0.130.7"), [20, 20, 20, 0, 24, 0]),
        (ecs("12.0.0.0", 24), [16, 16, 16, 0, 24, 0]),
        // Germany's /16 is longer than a /12 source: the scope says so.
        (ecs("12.0.0.0", 12), [16, 16, 16, 0, 12, 0]),
        (ecs("13.0.0.0", 20), [16, 16, 16, 0, 20, 0]),
        (ecs("2001:db8:3::", 56), [48, 48, 48, 0, 56, 0]),
        (ecs("2001:db8:3::", 64), [48, 48, 48, 0, 56, 0]),
        (ecs("2001:db8:3::", 40), [48, 48, 48, 0, 40, 0]),
    ] {
        let got: Vec<u8> = names
            .iter()
            .map(|n| run(&t, &format!("{n}.example.com."), client).scope)
            .collect();
        assert_eq!(got, want, "{client:?} for {names:?}");
    }
    // What DNS returns is the decision's scope.
    let a = answer_name(
        &t,
        "stable.example.com.",
        RecordType::A,
        &ecs("12.0.0.0", 24),
    );
    assert_eq!(a.ecs_scope(), 24);
}
