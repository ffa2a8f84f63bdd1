//! The weighted policy: endpoints drawn by weight from every allowed, serving region, stable
//! per client subnet and name (resolver caches stick) or random.
use super::context::{Context, all_down};
use super::pick::{Healthy, network_hash};
use super::query::{Client, Decision, Reason};
use super::table::{EndpointId, MAX_ANSWERS, RegionId, RoutingTable, ServiceRegion, WeightMode};
use super::trace::{Outcome, Rank, Trace};

/// The weighted policy: endpoints drawn by weight from every allowed, not evacuated,
/// healthy region (only the override's region when a CIDR map names one, by network or by
/// ASN, with such endpoints). Weight-0 endpoints are drawn only when no weighted one is up.
pub(super) fn weighted(cx: &Context<'_>, trace: &mut impl Trace) -> Decision {
    let (table, svc, q) = (cx.table, cx.svc, cx.q);
    let mut decision = cx.empty(Reason::Weighted);
    // Fail-open (`Healthy::Any`) ignores health, and evacuations too when every allowed
    // region is evacuated (an operator forced it): something must still answer.
    let all_evacuated = svc
        .regions
        .iter()
        .enumerate()
        .filter(|(i, sr)| cx.allowed & (1 << i) != 0 && !sr.endpoints(q.family).is_empty())
        .all(|(_, sr)| table.closed(sr.region));
    let eligible_in = |only: Option<RegionId>, health: Healthy| {
        move |i: usize, sr: &ServiceRegion, e: EndpointId| {
            let evacuated = (table.evacuated(sr.region) || table.drained(sr.region, cx.bucket))
                && !(health == Healthy::Any && all_evacuated);
            cx.allowed & (1 << i) != 0
                && !evacuated
                && only.is_none_or(|r| r == sr.region)
                && (health == Healthy::Any || table.serving(e))
        }
    };
    let weight_of =
        |eligible: &dyn Fn(usize, &ServiceRegion, EndpointId) -> bool, zero: bool| -> u64 {
            svc.regions
                .iter()
                .enumerate()
                .flat_map(|(i, sr)| sr.endpoints(q.family).iter().map(move |e| (i, sr, *e)))
                .filter(|(i, sr, e)| eligible(*i, sr, *e))
                .map(|(_, _, e)| endpoint_weight(table, e, zero))
                .sum()
        };
    // Narrow to the override's region when it has something to offer.
    let mut only = cx.overridden;
    if only.is_some()
        && weight_of(&eligible_in(only, Healthy::Only), false)
            + weight_of(&eligible_in(only, Healthy::Only), true)
            == 0
    {
        only = None;
    }
    let mut health = Healthy::Only;
    let mut zero = false;
    if weight_of(&eligible_in(only, health), false) == 0 {
        zero = true;
        if weight_of(&eligible_in(only, health), true) == 0 {
            if svc
                .regions
                .iter()
                .all(|sr| sr.endpoints(q.family).is_empty())
            {
                decision.reason = Reason::NoEndpoints;
                return decision;
            }
            decision.reason = all_down(svc, trace);
            if decision.reason != Reason::FailOpen {
                return decision;
            }
            health = Healthy::Any;
            zero = weight_of(&eligible_in(only, health), false) == 0;
        }
    }
    let eligible = eligible_in(only, health);
    let mut remaining = weight_of(&eligible, zero);
    for k in 0..svc.answers.min(MAX_ANSWERS) {
        if remaining == 0 {
            break;
        }
        let draw = match svc.weight_mode {
            WeightMode::Stable => {
                network_hash(q.client.addr, cx.scope, q.service.0 as u64 * 64 + k as u64)
            }
            WeightMode::Random => random(),
        } % remaining;
        let mut acc = 0u64;
        let chosen = svc
            .regions
            .iter()
            .enumerate()
            .flat_map(|(i, sr)| sr.endpoints(q.family).iter().map(move |e| (i, sr, *e)))
            .filter(|(i, sr, e)| eligible(*i, sr, *e) && !decision.endpoints.as_slice().contains(e))
            .find(|(_, _, e)| {
                acc += endpoint_weight(table, *e, zero);
                acc > draw
            });
        let Some((_, sr, e)) = chosen else { break };
        remaining -= endpoint_weight(table, e, zero);
        decision.endpoints.push(e);
        decision.region.get_or_insert(sr.region);
    }
    if only.is_some() && decision.reason == Reason::Weighted {
        decision.reason = cx.override_reason();
    }
    for (i, sr) in svc.regions.iter().enumerate() {
        let endpoints = sr.endpoints(q.family);
        let weight: u64 = endpoints
            .iter()
            .filter(|e| eligible(i, sr, **e))
            .map(|e| endpoint_weight(table, *e, zero))
            .sum();
        let outcome = if endpoints.is_empty() {
            Outcome::NoEndpointsOfFamily
        } else if cx.allowed & (1 << i) == 0 {
            Outcome::Residency
        } else if table.evacuated(sr.region) {
            Outcome::Evacuated
        } else if table.drained(sr.region, cx.bucket) {
            Outcome::Drained
        } else if decision
            .endpoints
            .as_slice()
            .iter()
            .any(|e| endpoints.contains(e))
        {
            Outcome::Chosen
        } else if weight == 0 {
            let up = table.serving_count(endpoints);
            Outcome::Unhealthy {
                up: up as u16,
                total: endpoints.len() as u16,
            }
        } else {
            Outcome::NotNeeded
        };
        let rank = if only == Some(sr.region) {
            cx.override_rank()
        } else {
            Rank::Weight {
                weight: weight as u32,
            }
        };
        trace.candidate(sr.region, || rank, outcome);
    }
    decision
}

/// An endpoint's weight in a draw; in a weight-0 draw every endpoint counts as 1.
fn endpoint_weight(table: &RoutingTable, e: EndpointId, zero: bool) -> u64 {
    let w = u64::from(table.compiled.endpoint(e).weight);
    match (zero, w) {
        (true, _) => 1,
        (false, w) => w,
    }
}

/// Stable weighting hashes the client's /24 (IPv4) or /56 (IPv6), or less if that is all
/// the resolver sent: clients behind one resolver cache stick together.
pub(super) fn hash_prefix(client: &Client) -> u8 {
    let per_family = if client.addr.is_ipv4() { 24 } else { 56 };
    client.prefix().min(per_family)
}

/// A per-thread xorshift draw for `weight_mode = "random"` (the one impure input).
fn random() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(0u64) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}
