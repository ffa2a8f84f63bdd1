//! The one decision function: which endpoints of a service answer this client. Pure: it reads
//! the table and the query, allocates nothing, and reports its steps to a [`Trace`].
use std::net::IpAddr;

use super::table::{
    AllDown, Compiled, EndpointId, Family, MAX_ANSWERS, MAX_SERVICE_REGIONS, Policy, RegionId,
    RoutingTable, Service, ServiceId, ServiceRegion,
};
use super::trace::{Outcome, Rank, Trace};
use crate::geo::GeoInfo;

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
    /// Geo: the database could not place the client; the default order's first region answered.
    NoGeo,
    /// Failover policy: the primary region answered.
    Primary,
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
    pub fn name(self) -> &'static str {
        match self {
            Reason::Geo => "geo",
            Reason::NoGeo => "no-geo",
            Reason::Primary => "primary",
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

/// Decides the answer for one query. The same function serves DNS and `explain`.
pub fn decide(table: &RoutingTable, q: &Query, trace: &mut impl Trace) -> Decision {
    let compiled = &*table.compiled;
    let svc = compiled.service(q.service);
    let geo = match (&compiled.geo, svc.policy) {
        (Some(db), Policy::Geo) => db.lookup(q.client.addr),
        _ => GeoInfo::default(),
    };
    trace.geo(&q.client, &geo);

    let mut decision = Decision {
        service: q.service,
        region: None,
        endpoints: Picks::EMPTY,
        scope: scope(svc, &q.client, &geo),
        ttl: svc.ttl,
        reason: Reason::NoEndpoints,
    };
    // Rank every region for this client: (tier, km, default position, index) sorts best first.
    let mut order = [(0u8, 0u32, 0u16, 0u16); MAX_SERVICE_REGIONS];
    let n = svc.regions.len().min(MAX_SERVICE_REGIONS);
    for (i, sr) in svc.regions.iter().take(n).enumerate() {
        let (tier, km) = match svc.policy {
            Policy::Geo => geo_rank(compiled, sr, &geo),
            Policy::Failover => (4, u32::MAX),
        };
        order[i] = (tier, km, sr.rank, i as u16);
    }
    let order = &mut order[..n];
    order.sort_unstable();

    let mut skipped: Option<Reason> = None;
    let mut first_with_family = None;
    for &(tier, km, position, i) in order.iter() {
        let sr = &svc.regions[i as usize];
        let rank = match tier {
            0 => Rank::Country,
            1 => Rank::Continent,
            2 => Rank::Distance { km },
            3 => Rank::DefaultOrder { position },
            _ => Rank::FailoverOrder { position },
        };
        let endpoints = sr.endpoints(q.family);
        let up = endpoints.iter().filter(|e| table.serving(**e)).count();
        let outcome = if decision.region.is_some() {
            Outcome::NotNeeded
        } else if endpoints.is_empty() {
            Outcome::NoEndpointsOfFamily
        } else if table.evacuated(sr.region) {
            skipped.get_or_insert(Reason::Evacuated);
            Outcome::Evacuated
        } else {
            first_with_family.get_or_insert(sr);
            if up < svc.min_healthy.min(endpoints.len()) || up == 0 {
                skipped.get_or_insert(Reason::Failover);
                Outcome::Unhealthy {
                    up: up as u16,
                    total: endpoints.len() as u16,
                }
            } else {
                decision.region = Some(sr.region);
                decision.endpoints = pick(
                    table,
                    svc,
                    endpoints,
                    &q.client,
                    decision.scope,
                    Healthy::Only,
                );
                decision.reason = skipped.unwrap_or(match (svc.policy, geo.found) {
                    (Policy::Failover, _) => Reason::Primary,
                    (Policy::Geo, true) => Reason::Geo,
                    (Policy::Geo, false) => Reason::NoGeo,
                });
                Outcome::Chosen
            }
        };
        trace.candidate(sr.region, rank, outcome);
    }

    // Every region with endpoints of this family is down (or evacuated).
    let first_with_family = first_with_family.or_else(|| {
        // Every such region is evacuated (an operator forced it): fail-open still answers.
        order
            .iter()
            .map(|o| &svc.regions[o.3 as usize])
            .find(|sr| !sr.endpoints(q.family).is_empty())
    });
    if decision.region.is_none()
        && let Some(sr) = first_with_family
    {
        decision.reason = match &svc.on_all_down {
            AllDown::FailOpen => {
                decision.region = Some(sr.region);
                decision.endpoints = pick(
                    table,
                    svc,
                    sr.endpoints(q.family),
                    &q.client,
                    decision.scope,
                    Healthy::Any,
                );
                Reason::FailOpen
            }
            AllDown::ServFail => Reason::ServFail,
            AllDown::Fallback { .. } => Reason::Fallback,
        };
        trace.all_down(decision.reason);
    }
    trace.decided(&decision);
    decision
}

/// Geo tier (0 country, 1 continent, 2 distance, 3 default order) and distance in km.
fn geo_rank(table: &Compiled, sr: &ServiceRegion, geo: &GeoInfo) -> (u8, u32) {
    let region = table.region(sr.region);
    let km = match (region.location, geo.location) {
        (Some(a), Some(b)) => a.distance_km(b).round() as u32,
        _ => u32::MAX,
    };
    if geo.country.is_some_and(|c| region.countries.contains(&c)) {
        (0, km)
    } else if geo
        .continent
        .is_some_and(|c| region.continents.contains(&c))
    {
        (1, km)
    } else if km != u32::MAX {
        (2, km)
    } else {
        (3, u32::MAX)
    }
}

/// The widest prefix for which every client gets the same answer: the GeoIP network the
/// address fell in, never longer than what the client sent. A service whose answer cannot
/// depend on the client at all gets scope 0.
fn scope(svc: &Service, client: &Client, geo: &GeoInfo) -> u8 {
    let fixed = svc.policy == Policy::Failover
        || svc.regions.len() <= 1
            && svc
                .regions
                .iter()
                .all(|r| r.v4.len() <= svc.answers && r.v6.len() <= svc.answers);
    if fixed {
        0
    } else {
        geo.network_prefix.min(client.prefix())
    }
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
        (network_hash(client.addr, scope) % len as u64) as usize
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

/// FNV-1a over the first `prefix` bits of the address.
fn network_hash(addr: IpAddr, prefix: u8) -> u64 {
    let bits = match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let keep = u32::from(prefix).min(width);
    let masked = if keep == 0 { 0 } else { bits >> (width - keep) };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in masked.to_le_bytes().iter().chain(&[prefix]) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
