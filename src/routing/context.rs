//! What one decision knows about its client, worked out once per query by
//! [`super::decide::decide`] and read by the policies' ranking and the weighted draw.
use super::query::{Decision, Picks, Query, Reason};
use super::table::{AllDown, RegionId, RoutingTable, Service, ServiceRegion};
use super::trace::{Rank, Trace};
use crate::geo::GeoInfo;

/// Everything about the client that ranking needs, worked out once per query.
pub(super) struct Context<'a> {
    pub(super) table: &'a RoutingTable,
    pub(super) svc: &'a Service,
    pub(super) q: &'a Query,
    pub(super) geo: GeoInfo,
    /// Region a CIDR map names for the client: by network, else by autonomous system.
    pub(super) overridden: Option<RegionId>,
    /// The client's AS number, when the override came from it.
    pub(super) by_asn: Option<u32>,
    /// Bit i: the service's i-th region is allowed by residency.
    pub(super) allowed: u64,
    pub(super) scope: u8,
    /// The client's drain bucket for this service ([`super::admin::DRAIN_BUCKETS`] when no
    /// region is drained).
    pub(super) bucket: u16,
    /// The trace shows details (distances): compute them.
    pub(super) detailed: bool,
}

impl Context<'_> {
    /// A decision with no endpoints yet.
    pub(super) fn empty(&self, reason: Reason) -> Decision {
        Decision {
            service: self.q.service,
            region: None,
            endpoints: Picks::EMPTY,
            scope: self.scope,
            ttl: self.svc.ttl,
            reason,
        }
    }

    /// Why the overriding region ranks first, for the trace.
    pub(super) fn override_rank(&self) -> Rank {
        match self.by_asn {
            Some(asn) => Rank::AsnOverride { asn },
            None => Rank::CidrOverride,
        }
    }

    /// The reason of a decision the override region answered.
    pub(super) fn override_reason(&self) -> Reason {
        match self.by_asn {
            Some(_) => Reason::AsnOverride,
            None => Reason::Override,
        }
    }

    /// Chord length between the client and a region, when both locations are known.
    pub(super) fn chord(&self, sr: &ServiceRegion) -> Option<f64> {
        match (self.table.compiled.region(sr.region).point, self.geo.point) {
            (Some(a), Some(b)) => Some(a.chord(b)),
            _ => None,
        }
    }
}

/// What `on_all_down` says to do, reported to the trace.
pub(super) fn all_down(svc: &Service, trace: &mut impl Trace) -> Reason {
    let reason = match &svc.on_all_down {
        AllDown::FailOpen => Reason::FailOpen,
        AllDown::ServFail => Reason::ServFail,
        AllDown::Fallback { .. } => Reason::Fallback,
    };
    trace.all_down(reason);
    reason
}
