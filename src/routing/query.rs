//! The values a decision is made of and comes out as: who asks ([`Client`], [`Query`]), the
//! endpoints picked ([`Picks`]), why ([`Reason`]) and the result ([`Decision`]).
use std::net::IpAddr;

use super::table::{EndpointId, Family, MAX_ANSWERS, RegionId, ServiceId};

/// Who is asking: the ECS subnet when the query carried one, else the packet's source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    /// The address routed on (an ECS address is already cut to its source prefix).
    pub addr: IpAddr,
    /// The ECS source prefix, when routing on an ECS subnet.
    pub ecs_source: Option<u8>,
}

impl Client {
    /// Parses `IP` or `IP/PREFIX`. With a prefix the client is an ECS subnet (host bits cut).
    pub fn parse(s: &str) -> Result<Client, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IP address"))?;
        let addr = addr.to_canonical();
        let width = if addr.is_ipv4() { 32 } else { 128 };
        match prefix {
            None => Ok(Client {
                addr,
                ecs_source: None,
            }),
            Some(p) => {
                let p: u8 = p
                    .parse()
                    .ok()
                    .filter(|p| *p <= width)
                    .ok_or_else(|| format!("prefix {p:?} must be 0 to {width}"))?;
                if p == 0 {
                    return Err("an ECS prefix of 0 routes on the resolver's address: give that address instead".into());
                }
                Ok(Client {
                    addr: super::prefix::mask(addr, p),
                    ecs_source: Some(p),
                })
            }
        }
    }

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
    pub(super) const EMPTY: Picks = Picks {
        ids: [EndpointId(0); MAX_ANSWERS],
        len: 0,
    };

    pub fn as_slice(&self) -> &[EndpointId] {
        &self.ids[..self.len as usize]
    }

    pub(super) fn push(&mut self, id: EndpointId) {
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
    /// A CIDR map sent the client's autonomous system to its region.
    AsnOverride,
    /// An earlier region was skipped as unhealthy; a later one answered.
    Failover,
    /// An earlier region was skipped as evacuated; a later one answered.
    Evacuated,
    /// An earlier region's drain moved the client (by its bucket); a later one answered.
    Drained,
    /// Nothing was healthy; answered as if all were up.
    FailOpen,
    /// Nothing was healthy; the service's static fallback answered.
    Fallback,
    /// Nothing was healthy; SERVFAIL.
    ServFail,
    /// No region has an endpoint of the queried family.
    NoEndpoints,
    /// The region clients would move to failed the service's `promote_guard`; `on_unsafe =
    /// "hold"` kept answering the client's first region (fail static).
    GuardHold,
    /// The region clients would move to failed the `promote_guard`; `on_unsafe = "servfail"`.
    GuardServFail,
}

impl Reason {
    pub const ALL: [Reason; 17] = [
        Reason::Geo,
        Reason::NoGeo,
        Reason::Primary,
        Reason::Latency,
        Reason::Proximity,
        Reason::Weighted,
        Reason::Override,
        Reason::AsnOverride,
        Reason::Failover,
        Reason::Evacuated,
        Reason::Drained,
        Reason::FailOpen,
        Reason::Fallback,
        Reason::ServFail,
        Reason::NoEndpoints,
        Reason::GuardHold,
        Reason::GuardServFail,
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
            Reason::AsnOverride => "asn-override",
            Reason::Failover => "failover",
            Reason::Evacuated => "evacuated",
            Reason::Drained => "drained",
            Reason::FailOpen => "fail-open",
            Reason::Fallback => "fallback",
            Reason::ServFail => "servfail",
            Reason::NoEndpoints => "no-endpoints",
            Reason::GuardHold => "guard-hold",
            Reason::GuardServFail => "guard-servfail",
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
