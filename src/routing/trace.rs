//! What `decide` reports as it works. The DNS path passes [`NoTrace`] (every hook is an empty
//! inline function); `explain` passes a [`Recorder`] and prints what it saw.
use super::query::{Client, Decision, Reason};
use super::table::RegionId;
use crate::geo::{AsnInfo, GeoInfo};

/// Why a region stands where it does in a client's order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rank {
    /// The region lists the client's subdivision (state, province).
    Subdivision,
    /// The region lists the client's country.
    Country,
    /// The region lists the client's continent.
    Continent,
    /// Ranked by great-circle distance from the client's location.
    Distance { km: u32 },
    /// Neither the database nor the region says more: the configured default order.
    DefaultOrder { position: u16 },
    /// Failover policy: position in the service's region list.
    FailoverOrder { position: u16 },
    /// A CIDR override names this region for the client's network.
    CidrOverride,
    /// A CIDR map names this region for the client's autonomous system.
    AsnOverride { asn: u32 },
    /// Proximity: distance, and distance after the region's bias.
    Proximity { km: u32, biased_km: u32 },
    /// Latency: expected RTT and where it came from, the measured penalty added, and whether
    /// the region is the incumbent (it keeps clients until beaten by the margin).
    Latency {
        rtt_ms: f32,
        penalty_ms: f32,
        source: RttSource,
        incumbent: bool,
    },
    /// Weighted: the total weight of the region's eligible endpoints.
    Weight { weight: u32 },
}

/// Where an expected RTT came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RttSource {
    /// A latency-map row, matched by CIDR, country or continent.
    Map(super::latency::RowKind),
    /// Great-circle distance at fibre speed plus overhead.
    Estimate,
}

/// What became of a candidate region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Chosen,
    /// The region has no endpoint of the queried address family.
    NoEndpointsOfFamily,
    /// Fewer endpoints up than the service's `min_healthy`.
    Unhealthy {
        up: u16,
        total: u16,
    },
    /// An operator evacuated the region.
    Evacuated,
    /// An operator's drain of the region moves this client (its bucket is below the drain).
    Drained,
    /// The client's residency rule does not allow the region.
    Residency,
    /// An earlier region was chosen.
    NotNeeded,
    /// Healthy, but its `promote_guard` fails: clients are not moved there. `target` is the
    /// guard target of the first endpoint whose figure is out of bounds or missing.
    NotPromotable {
        target: Option<super::table::TargetId>,
    },
}

pub trait Trace {
    /// Whether this trace shows details (distances in km) worth extra work to compute.
    fn detailed(&self) -> bool {
        false
    }
    fn geo(&mut self, _client: &Client, _geo: &GeoInfo) {}
    /// Some region is drained: the client's bucket, of [`super::admin::DRAIN_BUCKETS`].
    fn drain_bucket(&mut self, _bucket: u16) {}
    /// The client's autonomous system was looked up (a CIDR map lists ASNs).
    fn asn(&mut self, _client: &Client, _asn: &AsnInfo) {}
    /// A region considered; `rank` says why it stands where it does (worked out only when
    /// the trace keeps it).
    fn candidate(&mut self, _region: RegionId, _rank: impl FnOnce() -> Rank, _outcome: Outcome) {}
    /// No region was healthy; `action` is what `on_all_down` did.
    fn all_down(&mut self, _action: Reason) {}
    fn decided(&mut self, _decision: &Decision) {}
}

/// The DNS path's trace: records nothing.
pub struct NoTrace;
impl Trace for NoTrace {}

#[derive(Clone, Debug)]
pub enum Step {
    Geo {
        client: Client,
        geo: GeoInfo,
    },
    DrainBucket(u16),
    Asn {
        client: Client,
        asn: AsnInfo,
    },
    Candidate {
        region: RegionId,
        rank: Rank,
        outcome: Outcome,
    },
    AllDown(Reason),
    Decided(Decision),
}

/// Keeps every step, for `explain`.
#[derive(Default, Debug)]
pub struct Recorder {
    pub steps: Vec<Step>,
}

impl Trace for Recorder {
    fn detailed(&self) -> bool {
        true
    }

    fn geo(&mut self, client: &Client, geo: &GeoInfo) {
        self.steps.push(Step::Geo {
            client: *client,
            geo: *geo,
        });
    }

    fn drain_bucket(&mut self, bucket: u16) {
        self.steps.push(Step::DrainBucket(bucket));
    }

    fn asn(&mut self, client: &Client, asn: &AsnInfo) {
        self.steps.push(Step::Asn {
            client: *client,
            asn: *asn,
        });
    }

    fn candidate(&mut self, region: RegionId, rank: impl FnOnce() -> Rank, outcome: Outcome) {
        self.steps.push(Step::Candidate {
            region,
            rank: rank(),
            outcome,
        });
    }

    fn all_down(&mut self, action: Reason) {
        self.steps.push(Step::AllDown(action));
    }

    fn decided(&mut self, decision: &Decision) {
        self.steps.push(Step::Decided(*decision));
    }
}
