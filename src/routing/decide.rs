//! The one decision function: which endpoints of a service answer this client. Pure: it reads
//! the table and the query, allocates nothing, and reports its steps to a [`Trace`].
use std::net::IpAddr;

use super::latency::{Row, RowKind};
use super::table::{
    AllDown, EndpointId, Family, MAX_ANSWERS, MAX_SERVICE_REGIONS, Policy, RegionId, RoutingTable,
    Service, ServiceId, ServiceRegion, WeightMode,
};
use super::trace::{Outcome, Rank, RttSource, Trace};
use crate::geo::{GeoInfo, Point};
use crate::hash::{Fnv1a, mix64};

/// Who is asking: the ECS subnet when the query carried one, else the packet's source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    /// The address routed on (an ECS address is already cut to its source prefix).
    pub addr: IpAddr,
    /// The ECS source prefix, when routing on an ECS subnet.
    pub ecs_source: Option<u8>,
}

impl Client {
    /// How many bits of `addr` are meaningful.
    pub fn prefix(&self) -> u8 {
        self.ecs_source.unwrap_or(match self.addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    pub service: ServiceId,
    pub family: Family,
    pub client: Client,
}

/// Up to [`MAX_ANSWERS`] endpoints, without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Picks {
    ids: [EndpointId; MAX_ANSWERS],
    len: u8,
}

impl Picks {
    const EMPTY: Picks = Picks {
        ids: [EndpointId(0); MAX_ANSWERS],
        len: 0,
    };

    pub fn as_slice(&self) -> &[EndpointId] {
        &self.ids[..self.len as usize]
    }

    fn push(&mut self, id: EndpointId) {
        if (self.len as usize) < MAX_ANSWERS {
            self.ids[self.len as usize] = id;
            self.len += 1;
        }
    }
}

/// Why the decision came out as it did (also the label answers are counted under).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Geo: the client's first-ranked region (by country, continent or distance) answered.
    Geo,
    /// The database could not place the client; the default order's first region answered.
    NoGeo,
    /// Failover policy: the primary region answered.
    Primary,
    /// Latency policy: the region with the lowest expected RTT answered.
    Latency,
    /// Proximity policy: the nearest region (after bias) answered.
    Proximity,
    /// Weighted policy: drawn by weight.
    Weighted,
    /// A CIDR override sent the client to its region.
    Override,
    /// An earlier region was skipped as unhealthy; a later one answered.
    Failover,
    /// An earlier region was skipped as evacuated; a later one answered.
    Evacuated,
    /// Nothing was healthy; answered as if all were up.
    FailOpen,
    /// Nothing was healthy; the service's static fallback answered.
    Fallback,
    /// Nothing was healthy; SERVFAIL.
    ServFail,
    /// No region has an endpoint of the queried family.
    NoEndpoints,
}

impl Reason {
    pub const ALL: [Reason; 13] = [
        Reason::Geo,
        Reason::NoGeo,
        Reason::Primary,
        Reason::Latency,
        Reason::Proximity,
        Reason::Weighted,
        Reason::Override,
        Reason::Failover,
        Reason::Evacuated,
        Reason::FailOpen,
        Reason::Fallback,
        Reason::ServFail,
        Reason::NoEndpoints,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reason::Geo => "geo",
            Reason::NoGeo => "no-geo",
            Reason::Primary => "primary",
            Reason::Latency => "latency",
            Reason::Proximity => "proximity",
            Reason::Weighted => "weighted",
            Reason::Override => "cidr-override",
            Reason::Failover => "failover",
            Reason::Evacuated => "evacuated",
            Reason::FailOpen => "fail-open",
            Reason::Fallback => "fallback",
            Reason::ServFail => "servfail",
            Reason::NoEndpoints => "no-endpoints",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub service: ServiceId,
    pub region: Option<RegionId>,
    pub endpoints: Picks,
    /// ECS scope prefix: how many leading bits of the client address the answer depends on.
    pub scope: u8,
    pub ttl: u32,
    pub reason: Reason,
}

/// Everything about the client that ranking needs, worked out once per query.
struct Context<'a> {
    table: &'a RoutingTable,
    svc: &'a Service,
    q: &'a Query,
    geo: GeoInfo,
    /// Region a CIDR override names, and how many bits it depends on.
    overridden: Option<RegionId>,
    /// Bit i: the service's i-th region is allowed by residency.
    allowed: u64,
    scope: u8,
    /// The trace shows details (distances): compute them.
    detailed: bool,
}

impl Context<'_> {
    /// A decision with no endpoints yet.
    fn empty(&self, reason: Reason) -> Decision {
        Decision {
            service: self.q.service,
            region: None,
            endpoints: Picks::EMPTY,
            scope: self.scope,
            ttl: self.svc.ttl,
            reason,
        }
    }

    /// Chord length between the client and a region, when both locations are known.
    fn chord(&self, sr: &ServiceRegion) -> Option<f64> {
        match (self.table.compiled.region(sr.region).point, self.geo.point) {
            (Some(a), Some(b)) => Some(a.chord(b)),
            _ => None,
        }
    }
}

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

    let over = svc
        .cidr_map
        .map(|m| compiled.cidr_maps[m].lookup(q.client.addr));
    let allowed = svc
        .residency
        .iter()
        .find(|r| r.applies(geo.country, geo.continent))
        .map_or(u64::MAX, |r| r.allowed);

    // The answer depends on: the GeoIP network (ranking, residency), the override network,
    // the latency map's CIDR rows, and for stable weighting the hashed client subnet.
    let mut depends = if uses_geo { geo.network_prefix } else { 0 };
    if let Some(m) = over {
        depends = depends.max(m.scope);
    }
    if svc.policy == Policy::Latency {
        depends = depends.max(table.latency_map.lookup(q.client.addr, &geo).1);
    }
    let scope = match svc.policy {
        Policy::Weighted if svc.weight_mode == WeightMode::Stable && !svc.fixed => {
            depends.max(hash_prefix(&q.client))
        }
        _ if svc.fixed => 0,
        _ => depends,
    }
    .min(q.client.prefix());

    let cx = Context {
        table,
        svc,
        q,
        geo,
        overridden: over.and_then(|m| m.value.copied()),
        allowed,
        scope,
        detailed: trace.detailed(),
    };
    let decision = match svc.policy {
        Policy::Weighted => weighted(&cx, trace),
        _ => ordered(&cx, trace),
    };
    trace.decided(&decision);
    decision
}

/// A region's place in the client's order: (tier, metric, challenger, default position,
/// index), packed so that one integer comparison sorts best first (an incumbent wins exact
/// ties).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key(u64);

/// Tiers of [`Key`], best first.
const TIER_OVERRIDE: u8 = 0;
const TIER_COUNTRY: u8 = 1;
const TIER_CONTINENT: u8 = 2;
/// Ranked by a metric: distance, biased distance or expected RTT.
const TIER_METRIC: u8 = 3;
const TIER_DEFAULT: u8 = 4;
const TIER_FAILOVER: u8 = 5;

impl Key {
    fn new(tier: u8, metric: u32, challenger: bool, position: u16, index: usize) -> Key {
        Key(u64::from(tier) << 61
            | u64::from(metric) << 29
            | u64::from(challenger) << 28
            | u64::from(position) << 12
            | index as u64 & 0xFFF)
    }

    fn tier(self) -> u8 {
        (self.0 >> 61) as u8
    }

    /// The region's index in the service's list.
    fn index(self) -> usize {
        (self.0 & 0xFFF) as usize
    }
}

/// Where a region stands for this client; the rank says why, for the trace (when only the
/// key is used, inlining leaves the rank unbuilt).
#[inline(always)]
fn rank_region(
    cx: &Context<'_>,
    sr: &ServiceRegion,
    row: Option<&Row<'_>>,
    incumbent: Option<usize>,
    i: usize,
) -> (Key, Rank) {
    let compiled = &*cx.table.compiled;
    let region = compiled.region(sr.region);
    let chord = cx.chord(sr);
    // Rank by chord length (same order as distance, no trigonometry); km only when shown.
    let chord_key = |c: f64| (c * 1.0e9) as u32;
    let shown_km = |c: f64| {
        if cx.detailed {
            Point::km(c).round() as u32
        } else {
            0
        }
    };
    let key = |tier: u8, metric: u32| Key::new(tier, metric, true, sr.rank, i);
    let default = (
        key(TIER_DEFAULT, 0),
        Rank::DefaultOrder { position: sr.rank },
    );
    if cx.overridden == Some(sr.region) {
        return (key(TIER_OVERRIDE, 0), Rank::CidrOverride);
    }
    match cx.svc.policy {
        Policy::Failover => (
            key(TIER_FAILOVER, 0),
            Rank::FailoverOrder { position: sr.rank },
        ),
        Policy::Geo => {
            let km_key = chord.map_or(u32::MAX, chord_key);
            if cx
                .geo
                .country
                .is_some_and(|c| region.countries.contains(&c))
            {
                (key(TIER_COUNTRY, km_key), Rank::Country)
            } else if cx
                .geo
                .continent
                .is_some_and(|c| region.continents.contains(&c))
            {
                (key(TIER_CONTINENT, km_key), Rank::Continent)
            } else if let Some(c) = chord {
                (
                    key(TIER_METRIC, chord_key(c)),
                    Rank::Distance { km: shown_km(c) },
                )
            } else {
                default
            }
        }
        Policy::Proximity => match chord.map(Point::km) {
            Some(k) => {
                let biased = k * (1.0 - region.bias);
                (
                    key(TIER_METRIC, biased.round() as u32),
                    Rank::Proximity {
                        km: k.round() as u32,
                        biased_km: biased.round() as u32,
                    },
                )
            }
            None => default,
        },
        Policy::Latency => match expected_rtt(cx, sr, row, chord) {
            Some((rtt, source)) => {
                let penalty = cx
                    .table
                    .penalty_ms
                    .get(sr.slot as usize)
                    .copied()
                    .flatten()
                    .unwrap_or(0.0);
                let is_incumbent = incumbent == Some(i);
                // The incumbent keeps its clients until another region beats it by the margin.
                let margin = if is_incumbent {
                    cx.svc.latency_margin_ms
                } else {
                    0.0
                };
                let adjusted = f64::from(rtt) + f64::from(penalty) - f64::from(margin);
                let metric = ((adjusted.max(-1.0e5) + 1.0e5) * 1000.0) as u32;
                (
                    Key::new(TIER_METRIC, metric, !is_incumbent, sr.rank, i),
                    Rank::Latency {
                        rtt_ms: rtt,
                        penalty_ms: penalty,
                        source,
                        incumbent: is_incumbent,
                    },
                )
            }
            None => default,
        },
        Policy::Weighted => default,
    }
}

/// Expected RTT to a region in ms: from the latency map, else estimated from distance
/// (fibre: about 200 km per ms one way, so RTT = 2 x km / 200, plus the configured overhead).
fn expected_rtt(
    cx: &Context<'_>,
    sr: &ServiceRegion,
    row: Option<&Row<'_>>,
    chord: Option<f64>,
) -> Option<(f32, RttSource)> {
    if let Some(rtt) = row.and_then(|r| r.rtt(sr.region.index())) {
        return Some((rtt, RttSource::Map(row.map_or(RowKind::Cidr, |r| r.kind))));
    }
    chord.map(Point::km).map(|k| {
        (
            (2.0 * k / 200.0) as f32 + cx.table.compiled.latency_overhead_ms,
            RttSource::Estimate,
        )
    })
}

/// Policies that rank regions (geo, failover, latency, proximity) and answer from the first
/// one that is allowed, not evacuated and healthy.
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
    for &key in order.iter() {
        let i = key.index();
        let sr = &svc.regions[i];
        let endpoints = sr.endpoints(q.family);
        let outcome = if endpoints.is_empty() {
            Outcome::NoEndpointsOfFamily
        } else if cx.allowed & (1 << i) == 0 {
            Outcome::Residency
        } else if decision.region.is_some() {
            Outcome::NotNeeded
        } else if table.evacuated(sr.region) {
            skipped.get_or_insert(Reason::Evacuated);
            Outcome::Evacuated
        } else {
            first_with_family.get_or_insert(sr);
            let up = table.serving_count(endpoints);
            if !svc.enough_healthy(up, endpoints.len()) {
                skipped.get_or_insert(Reason::Failover);
                Outcome::Unhealthy {
                    up: up as u16,
                    total: endpoints.len() as u16,
                }
            } else {
                decision.region = Some(sr.region);
                decision.endpoints =
                    pick(table, svc, endpoints, &q.client, cx.scope, Healthy::Only);
                decision.reason = skipped.unwrap_or(match (key.tier(), svc.policy) {
                    (TIER_OVERRIDE, _) => Reason::Override,
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

    if decision.region.is_none() {
        // No allowed region is healthy. An operator may have evacuated them all (forced):
        // fail-open then still answers from the best allowed region with this family.
        let fallback_region = first_with_family.or_else(|| {
            order
                .iter()
                .map(|k| (k.index(), &svc.regions[k.index()]))
                .find(|(i, sr)| cx.allowed & (1 << i) != 0 && !sr.endpoints(q.family).is_empty())
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

/// What `on_all_down` says to do, reported to the trace.
fn all_down(svc: &Service, trace: &mut impl Trace) -> Reason {
    let reason = match &svc.on_all_down {
        AllDown::FailOpen => Reason::FailOpen,
        AllDown::ServFail => Reason::ServFail,
        AllDown::Fallback { .. } => Reason::Fallback,
    };
    trace.all_down(reason);
    reason
}

/// The weighted policy: endpoints drawn by weight from every allowed, not evacuated,
/// healthy region (only the override's region when a CIDR override names one with such
/// endpoints). Weight-0 endpoints are drawn only when no weighted one is up.
fn weighted(cx: &Context<'_>, trace: &mut impl Trace) -> Decision {
    let (table, svc, q) = (cx.table, cx.svc, cx.q);
    let mut decision = cx.empty(Reason::Weighted);
    // Fail-open (`Healthy::Any`) ignores health, and evacuations too when every allowed
    // region is evacuated (an operator forced it): something must still answer.
    let all_evacuated = svc
        .regions
        .iter()
        .enumerate()
        .filter(|(i, sr)| cx.allowed & (1 << i) != 0 && !sr.endpoints(q.family).is_empty())
        .all(|(_, sr)| table.evacuated(sr.region));
    let eligible_in = |only: Option<RegionId>, health: Healthy| {
        move |i: usize, sr: &ServiceRegion, e: EndpointId| {
            let evacuated =
                table.evacuated(sr.region) && !(health == Healthy::Any && all_evacuated);
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
        decision.reason = Reason::Override;
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
            Rank::CidrOverride
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
fn hash_prefix(client: &Client) -> u8 {
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

/// Whether [`pick`] skips endpoints that are down.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Healthy {
    Only,
    Any,
}

/// Up to `answers` endpoints of the region, rotated by a hash of the client's network so that
/// clients spread over a region's endpoints while each network keeps its answer.
fn pick(
    table: &RoutingTable,
    svc: &Service,
    endpoints: &[EndpointId],
    client: &Client,
    scope: u8,
    healthy: Healthy,
) -> Picks {
    let mut picks = Picks::EMPTY;
    let len = endpoints.len();
    let start = if len > svc.answers {
        (network_hash(client.addr, scope, 0) % len as u64) as usize
    } else {
        0
    };
    for k in 0..len {
        if picks.as_slice().len() >= svc.answers {
            break;
        }
        let id = endpoints[(start + k) % len];
        if healthy == Healthy::Any || table.serving(id) {
            picks.push(id);
        }
    }
    picks
}

/// FNV-1a over the first `prefix` bits of the address and a salt, finished with a 64-bit
/// mix so nearby networks spread evenly.
fn network_hash(addr: IpAddr, prefix: u8, salt: u64) -> u64 {
    let bits = match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let keep = u32::from(prefix).min(width);
    let masked = if keep == 0 { 0 } else { bits >> (width - keep) };
    let mut h = Fnv1a::default();
    h.bytes(&masked.to_le_bytes());
    h.byte(prefix);
    h.bytes(&salt.to_le_bytes());
    mix64(h.value())
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "policy_tests.rs"]
mod policy_tests;
