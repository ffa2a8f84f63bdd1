//! The one decision function: which endpoints of a service answer this client. Pure: it reads
//! the table and the query, allocates nothing, and reports its steps to a [`Trace`]. The walk
//! lives here; how each policy ranks a region is in [`super::rank`], the weighted draw in
//! [`super::weighted`], and picking endpoints within a region in [`super::pick`].
use super::admin::{DRAIN_BUCKETS, drain_bucket, drain_prefix};
use super::context::{Context, all_down};
use super::pick::{Healthy, pick};
use super::query::{Decision, Query, Reason};
use super::rank::{Key, TIER_DEFAULT, TIER_OVERRIDE, expected_rtt, rank_region};
use super::table::{
    MAX_SERVICE_REGIONS, OnUnsafe, Policy, RoutingTable, ServiceRegion, WeightMode,
};
use super::trace::{Outcome, Trace};
use super::weighted::{hash_prefix, weighted};
use crate::geo::GeoInfo;

/// Decides the answer for one query. The same function serves DNS and `explain`.
pub fn decide(table: &RoutingTable, q: &Query, trace: &mut impl Trace) -> Decision {
    let compiled = &*table.compiled;
    let svc = compiled.service(q.service);
    let uses_geo = matches!(
        svc.policy,
        Policy::Geo | Policy::Latency | Policy::Proximity
    ) || !svc.residency.is_empty();
    let geo = match &compiled.geo {
        Some(db) if uses_geo => {
            let geo = db.lookup(q.client.addr);
            trace.geo(&q.client, &geo);
            geo
        }
        _ => GeoInfo::default(),
    };

    let map = svc.cidr_map.map(|m| &compiled.cidr_maps[m]);
    let over = map.map(|m| m.networks.lookup(q.client.addr));
    // A client in none of the map's networks is matched by its autonomous system, when the
    // map lists any.
    let asn = match (map, &compiled.asn) {
        (Some(map), Some(db)) if !map.asns.is_empty() && over.is_none_or(|m| m.value.is_none()) => {
            let info = db.lookup(q.client.addr);
            trace.asn(&q.client, &info);
            Some(info)
        }
        _ => None,
    };
    let by_asn = asn
        .and_then(|info| info.asn)
        .and_then(|a| Some((a, map?.asn_region(a)?)));
    let allowed = svc
        .residency
        .iter()
        .find(|r| r.applies(&geo))
        .map_or(u64::MAX, |r| r.allowed);

    // The answer depends on: the GeoIP network (ranking, residency), the override network,
    // the ASN network (when the ASN was looked up), the latency map's CIDR rows, and for
    // stable weighting the hashed client subnet.
    let mut depends = if uses_geo { geo.network_prefix } else { 0 };
    if let Some(m) = over {
        depends = depends.max(m.scope);
    }
    // Every address of the ASN database's network has the same ASN, and no more.
    if let Some(info) = asn {
        depends = depends.max(info.network_prefix);
    }
    if svc.policy == Policy::Latency {
        depends = depends.max(table.latency_map.lookup(q.client.addr, &geo).1);
    }
    // Not cut to the resolver's source prefix: a scope longer than it tells the resolver its
    // prefix was not specific enough (RFC 7871 7.2.1), where the answer depends on more bits
    // than it sent (a GeoIP, ASN, CIDR override or latency-map network inside its
    // subnet). Cutting it would let the resolver serve this answer to the whole subnet.
    let mut scope = match svc.policy {
        Policy::Weighted if svc.weight_mode == WeightMode::Stable && !svc.fixed => {
            depends.max(hash_prefix(&q.client))
        }
        _ if svc.fixed => 0,
        _ => depends,
    };
    // A drain part-way through one of the service's regions splits clients by bucket: the
    // answer depends on the bucketing network too.
    let admin = &table.admin;
    let bucket = if admin.any_drain {
        let bucket = drain_bucket(q.client.addr, svc.seed);
        trace.drain_bucket(bucket);
        if admin.partly_drained.get(q.service.0 as usize) == Some(&true) {
            scope = scope.max(drain_prefix(q.client.addr));
        }
        bucket
    } else {
        DRAIN_BUCKETS
    };

    let cx = Context {
        table,
        svc,
        q,
        geo,
        overridden: over
            .and_then(|m| m.value.copied())
            .or(by_asn.map(|(_, region)| region)),
        by_asn: by_asn.map(|(asn, _)| asn),
        allowed,
        scope,
        bucket,
        detailed: trace.detailed(),
    };
    let decision = match svc.policy {
        Policy::Weighted => weighted(&cx, trace),
        _ => ordered(&cx, trace),
    };
    trace.decided(&decision);
    decision
}

/// Policies that rank regions (geo, failover, latency, proximity) and answer from the first
/// one that is allowed, not evacuated and healthy.
#[allow(
    unsafe_code,
    reason = "ranks into uninitialised stack slots, read only once written"
)]
fn ordered(cx: &Context<'_>, trace: &mut impl Trace) -> Decision {
    let (table, svc, q) = (cx.table, cx.svc, cx.q);
    let mut decision = cx.empty(Reason::NoEndpoints);
    let n = svc.regions.len().min(MAX_SERVICE_REGIONS);
    let row = (svc.policy == Policy::Latency)
        .then(|| table.latency_map.lookup(q.client.addr, &cx.geo).0)
        .flatten();
    // Latency: the incumbent is the region the static inputs (map or distance) favour.
    let incumbent = (svc.policy == Policy::Latency)
        .then(|| {
            (0..n)
                .filter(|i| cx.allowed & (1 << i) != 0)
                .filter_map(|i| {
                    let sr = &svc.regions[i];
                    expected_rtt(cx, sr, row.as_ref(), cx.chord(sr))
                        .map(|(rtt, _)| (rtt, sr.rank, i))
                })
                .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
                .map(|(_, _, i)| i)
        })
        .flatten();
    // Only the first n slots are ever written or read: leave the rest uninitialised rather
    // than fill 64 entries on every query.
    let mut slots = [const { std::mem::MaybeUninit::<Key>::uninit() }; MAX_SERVICE_REGIONS];
    for (i, sr) in svc.regions.iter().take(n).enumerate() {
        slots[i].write(rank_region(cx, sr, row.as_ref(), incumbent, i).0);
    }
    // SAFETY: slots[..n] were all written just above; Key is Copy (nothing to drop).
    let order: &mut [Key] = unsafe { std::slice::from_raw_parts_mut(slots.as_mut_ptr().cast(), n) };
    order.sort_unstable();

    let mut skipped: Option<Reason> = None;
    let mut first_with_family = None;
    // The client's first region: the first its order ranks, before any health, evacuation
    // or drain skip. Moving clients anywhere else is what `promote_guard` guards.
    let mut first: Option<&ServiceRegion> = None;
    // The walk is over: a region answered, or the guard held or refused.
    let mut done = false;
    let mut blocked = false;
    for &key in order.iter() {
        let i = key.index();
        let sr = &svc.regions[i];
        let endpoints = sr.endpoints(q.family);
        let outcome = if endpoints.is_empty() {
            Outcome::NoEndpointsOfFamily
        } else if cx.allowed & (1 << i) == 0 {
            Outcome::Residency
        } else if done {
            Outcome::NotNeeded
        } else if table.evacuated(sr.region) {
            first.get_or_insert(sr);
            skipped.get_or_insert(Reason::Evacuated);
            Outcome::Evacuated
        } else if table.drained(sr.region, cx.bucket) {
            first.get_or_insert(sr);
            skipped.get_or_insert(Reason::Drained);
            Outcome::Drained
        } else {
            let moved = first.is_some_and(|f| f.region != sr.region);
            first.get_or_insert(sr);
            first_with_family.get_or_insert(sr);
            let up = table.serving_count(endpoints);
            if !svc.enough_healthy(up, endpoints.len()) {
                skipped.get_or_insert(Reason::Failover);
                Outcome::Unhealthy {
                    up: up as u16,
                    total: endpoints.len() as u16,
                }
            } else if let Some(guard) = svc.guard.filter(|_| moved)
                && !table.region_promotable(svc, endpoints)
            {
                blocked = true;
                match guard.on_unsafe {
                    OnUnsafe::Next => {}
                    OnUnsafe::Hold => {
                        done = true;
                        decision.reason = Reason::GuardHold;
                    }
                    OnUnsafe::ServFail => {
                        done = true;
                        decision.reason = Reason::GuardServFail;
                    }
                }
                Outcome::NotPromotable {
                    target: table.unpromotable_target(endpoints),
                }
            } else {
                done = true;
                decision.region = Some(sr.region);
                decision.endpoints =
                    pick(table, svc, endpoints, &q.client, cx.scope, Healthy::Only);
                decision.reason = skipped.unwrap_or(match (key.tier(), svc.policy) {
                    (TIER_OVERRIDE, _) => cx.override_reason(),
                    (_, Policy::Failover) => Reason::Primary,
                    (TIER_DEFAULT, _) => Reason::NoGeo,
                    (_, Policy::Latency) => Reason::Latency,
                    (_, Policy::Proximity) => Reason::Proximity,
                    _ => Reason::Geo,
                });
                Outcome::Chosen
            }
        };
        trace.candidate(
            sr.region,
            || rank_region(cx, sr, row.as_ref(), incumbent, i).1,
            outcome,
        );
    }

    match decision.reason {
        // Fail static: the client's first region keeps answering, down or not.
        Reason::GuardHold => {
            if let Some(sr) = first {
                decision.region = Some(sr.region);
                decision.endpoints = pick(
                    table,
                    svc,
                    sr.endpoints(q.family),
                    &q.client,
                    cx.scope,
                    Healthy::Any,
                );
            }
            return decision;
        }
        Reason::GuardServFail => return decision,
        _ => {}
    }
    if decision.region.is_none() {
        // No allowed region is healthy. An operator may have evacuated them all (forced):
        // fail-open then still answers from the best allowed region with this family. When
        // the guard refused a region, fail-open answers the client's first region instead:
        // answering as if all were up must not promote a region the guard refused.
        let fallback_region = if blocked { first } else { None }
            .or(first_with_family)
            .or_else(|| {
                order
                    .iter()
                    .map(|k| (k.index(), &svc.regions[k.index()]))
                    .find(|(i, sr)| {
                        cx.allowed & (1 << i) != 0 && !sr.endpoints(q.family).is_empty()
                    })
                    .map(|(_, sr)| sr)
            });
        if let Some(sr) = fallback_region {
            decision.reason = all_down(svc, trace);
            if decision.reason == Reason::FailOpen {
                decision.region = Some(sr.region);
                decision.endpoints = pick(
                    table,
                    svc,
                    sr.endpoints(q.family),
                    &q.client,
                    cx.scope,
                    Healthy::Any,
                );
            }
        }
    }
    decision
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
