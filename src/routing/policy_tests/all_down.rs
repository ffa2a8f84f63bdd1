//! No allowed region can serve, because its targets are down or an operator evacuated it:
//! `on_all_down` (fail-open, servfail, fallback) answers, and never from outside a
//! residency boundary.
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::routing::query::Reason;
use crate::routing::test_support::{
    addresses, answer_name, region_name, run, src, with_down, with_evacuated,
};

use super::POLICIES;
use super::multivalue::multivalue;
use super::residency::{EU_CLIENTS, RES, residency};

#[test]
fn residency_region_down_never_leaves_the_boundary() {
    let down = ["192.0.2.82", "192.0.2.83"];
    for policy in POLICIES {
        // fail-open: answered from eu-west anyway.
        let t = with_down(&residency(policy, "fail-open"), &down);
        for client in EU_CLIENTS {
            let d = run(&t, RES, src(client));
            assert_eq!(d.reason, Reason::FailOpen, "{policy} {client}");
            assert_eq!(
                region_name(&t, &d).as_deref(),
                Some("eu-west"),
                "{policy} {client}"
            );
            let got = addresses(&t, &d);
            assert!(
                !got.is_empty() && got.iter().all(|a| down.contains(&a.to_string().as_str())),
                "{policy} {client}: {got:?}"
            );
        }
        // Clients outside the rule just fail over as usual.
        let d = run(&t, RES, src("11.0.0.1"));
        assert_ne!(d.reason, Reason::FailOpen, "{policy}");

        // servfail: nothing at all, never us-east.
        let t = with_down(&residency(policy, "servfail"), &down);
        for client in EU_CLIENTS {
            let d = run(&t, RES, src(client));
            assert_eq!(d.reason, Reason::ServFail, "{policy} {client}");
            assert!(d.endpoints.as_slice().is_empty(), "{policy} {client}");
        }
        let a = answer_name(&t, RES, RecordType::A, &src("12.0.0.1"));
        assert_eq!(a.rcode, ResponseCode::ServFail, "{policy}");
        assert!(a.answers.is_empty(), "{policy}");

        // fallback: the static address.
        let t = with_down(&residency(policy, "fallback"), &down);
        let d = run(&t, RES, src("12.0.0.1"));
        assert_eq!(d.reason, Reason::Fallback, "{policy}");
        let a = answer_name(&t, RES, RecordType::A, &src("12.0.0.1"));
        let got: Vec<String> = a.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(got, ["203.0.113.9"], "{policy}");
    }
}

#[test]
fn residency_region_evacuated_fail_open_still_answers_inside_the_boundary() {
    // An operator evacuated eu-west (forced): EU clients have no allowed region left, and
    // fail-open answers from eu-west rather than nothing or another region.
    let mut wrong = Vec::new();
    for policy in POLICIES {
        let t = with_evacuated(residency(policy, "fail-open"), &["eu-west"]);
        let d = run(&t, RES, src("12.0.0.1"));
        let got = (d.reason, region_name(&t, &d), addresses(&t, &d).len());
        if got != (Reason::FailOpen, Some("eu-west".to_string()), 1) {
            wrong.push(format!("{policy}: {got:?}"));
        }
        // Others are simply routed around the evacuated region.
        let d = run(&t, RES, src("11.0.0.1"));
        let us = region_name(&t, &d);
        if us.is_none() || us.as_deref() == Some("eu-west") {
            wrong.push(format!("{policy}: US client {d:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn every_region_evacuated_fail_open_answers_for_every_policy() {
    // Forced evacuation of every region: fail-open means a DNS answer, whatever the policy.
    let mut wrong = Vec::new();
    for policy in POLICIES {
        let t = with_evacuated(
            multivalue(policy),
            &["us-east", "us-west", "eu-west", "ap-southeast", "nowhere"],
        );
        let d = run(&t, "multi.example.com.", src("12.0.0.1"));
        if d.reason != Reason::FailOpen || d.endpoints.as_slice().is_empty() {
            wrong.push(format!("{policy}: {:?} {:?}", d.reason, addresses(&t, &d)));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
