//! The immutable routing table the DNS path reads: zones with prebuilt records, regions,
//! services and endpoints under dense ids. Built once per config load by `config::compile`.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name, Record, RecordType};

pub use super::admin::{AdminView, Evacuation};
use super::latency::LatencyMap;
use super::prefix::PrefixTable;
use crate::geo::{AsnSet, Continent, CountryCode, GeoInfo, GeoSet, LatLon, Point, Subdivision};
use crate::hash::FnvHasher;
use crate::settings::{CheckSpec, Settings};

macro_rules! id_type {
    ($($name:ident),*) => {$(
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);
        impl $name {
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    )*};
}
id_type!(ZoneId, RegionId, ServiceId, EndpointId, CheckId, TargetId);

/// Most endpoints one answer may carry (`answers` in the config).
pub const MAX_ANSWERS: usize = 16;
/// Most regions one service may span; ranking them happens on the stack.
pub const MAX_SERVICE_REGIONS: usize = 64;

/// Routing policy of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Country, then continent, then nearest region, then the default order.
    Geo,
    /// Active-passive: the service's `regions` list in order, the first healthy one answers.
    Failover,
    /// Lowest expected round-trip time: latency map, else distance estimate, plus the
    /// region's measured service latency.
    Latency,
    /// Nearest region by great-circle distance, scaled by each region's bias.
    Proximity,
    /// Endpoints by weight, stable per client subnet and name (or random).
    Weighted,
}

/// How the weighted policy draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightMode {
    /// The same client subnet and name always get the same draw (resolver caches stick).
    Stable,
    Random,
}

/// Clients from these subdivisions, countries or continents only ever go to the regions in
/// `allowed`.
#[derive(Debug, Clone)]
pub struct Residency {
    pub subdivisions: Vec<Subdivision>,
    pub countries: Vec<CountryCode>,
    pub continents: Vec<Continent>,
    /// Bit i set: the service's i-th region (in `Service::regions`) is allowed.
    pub allowed: u64,
}

impl Residency {
    pub fn applies(&self, geo: &GeoInfo) -> bool {
        geo.subdivision
            .is_some_and(|s| self.subdivisions.contains(&s))
            || geo.country.is_some_and(|c| self.countries.contains(&c))
            || geo.continent.is_some_and(|c| self.continents.contains(&c))
    }
}

impl Policy {
    pub const ALL: [Policy; 5] = [
        Policy::Geo,
        Policy::Failover,
        Policy::Latency,
        Policy::Proximity,
        Policy::Weighted,
    ];

    /// The name the config, `explain` and the admin API use.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Geo => "geo",
            Policy::Failover => "failover",
            Policy::Latency => "latency",
            Policy::Proximity => "proximity",
            Policy::Weighted => "weighted",
        }
    }
}

impl std::str::FromStr for Policy {
    type Err = ();

    /// The policy a config names (the inverse of [`Policy::name`]).
    fn from_str(s: &str) -> Result<Policy, ()> {
        Policy::ALL.into_iter().find(|p| p.name() == s).ok_or(())
    }
}

/// Address family of an A or AAAA answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn record_type(self) -> RecordType {
        match self {
            Family::V4 => RecordType::A,
            Family::V6 => RecordType::AAAA,
        }
    }

    /// The family an A or AAAA question asks for.
    pub fn of_record_type(t: RecordType) -> Option<Family> {
        match t {
            RecordType::A => Some(Family::V4),
            RecordType::AAAA => Some(Family::V6),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct Region {
    pub name: String,
    pub location: Option<LatLon>,
    /// ISO 3166-2 subdivisions this region serves first (a tier above countries).
    pub subdivisions: Vec<Subdivision>,
    pub countries: Vec<CountryCode>,
    pub continents: Vec<Continent>,
    /// Proximity bias as a fraction (-0.99 to 0.99): distance counts as km x (1 - bias).
    pub bias: f64,
    /// Queries per second the region can answer (`capacity_qps`), if declared.
    pub capacity_qps: Option<f64>,
    /// `location` as a unit vector.
    pub point: Option<Point>,
}

/// What an endpoint answers: an address (A or AAAA), or a hostname (a CNAME to it, for A and
/// AAAA questions alike).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    Ip(IpAddr),
    /// An absolute name (`lb-eu-1.example.net.`).
    Host(Name),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Ip(ip) => ip.fmt(f),
            Address::Host(name) => name.fmt(f),
        }
    }
}

/// Where a probe connects: an address, or a hostname resolved at probe time (up when any of
/// the addresses it resolves to passes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ProbeAddr {
    Ip(SocketAddr),
    Host(Name, u16),
}

impl std::fmt::Display for ProbeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeAddr::Ip(addr) => addr.fmt(f),
            ProbeAddr::Host(name, port) => write!(f, "{name}:{port}"),
        }
    }
}

#[derive(Debug)]
pub struct Endpoint {
    pub service: ServiceId,
    pub region: RegionId,
    pub address: Address,
    pub port: u16,
    /// The probe target whose health this endpoint follows; `None` when nothing probes it
    /// (then it always serves).
    pub target: Option<TargetId>,
    /// The A, AAAA or CNAME record answered for this endpoint, built at load time.
    pub record: Record,
    /// Weighted policy: relative share; 0 = only when no weighted endpoint is up.
    pub weight: u32,
    /// The probe target of the service's `promote_guard` for this endpoint.
    pub guard: Option<TargetId>,
}

/// A region's part in one service: its endpoints split by family.
#[derive(Debug)]
pub struct ServiceRegion {
    pub region: RegionId,
    /// Position in the service's default order (lower comes first).
    pub rank: u16,
    /// Index of this (service, region) pair across all services, for per-pair tables such as
    /// the measured latency penalty.
    pub slot: u32,
    pub v4: Box<[EndpointId]>,
    pub v6: Box<[EndpointId]>,
}

impl ServiceRegion {
    pub fn endpoints(&self, family: Family) -> &[EndpointId] {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}

#[derive(Debug)]
pub struct Service {
    pub name: Name,
    pub ttl: u32,
    pub policy: Policy,
    pub answers: usize,
    /// A region serves while at least this many of its endpoints (of the family) are up.
    pub min_healthy: usize,
    pub on_all_down: AllDown,
    /// The regions this service has endpoints in, in default order (failover: its order).
    pub regions: Box<[ServiceRegion]>,
    /// Latency policy: a region must be this much faster (ms) to take a client network over.
    pub latency_margin_ms: f32,
    pub weight_mode: WeightMode,
    /// First rule that applies to a client restricts its regions.
    pub residency: Box<[Residency]>,
    /// Index into `Compiled::cidr_maps`.
    pub cidr_map: Option<usize>,
    /// At most one region, with no more endpoints of a family than `answers`: every client
    /// gets the same endpoints (ECS scope 0).
    pub fixed: bool,
    /// A hash of the name: salts per-client hashes (drain buckets) the same way on every
    /// instance and across reloads.
    pub seed: u64,
    /// Every endpoint is a hostname: the name answers every question with a CNAME to the
    /// chosen endpoint (each endpoint is in both families' lists, `answers` is 1).
    pub alias: bool,
    /// `promote_guard`: the check a region other than the client's first must pass before
    /// clients move there, and what to do when it fails.
    pub guard: Option<PromoteGuard>,
}

/// A service's `promote_guard` and `on_unsafe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromoteGuard {
    pub check: CheckId,
    pub on_unsafe: OnUnsafe,
}

/// What a client gets when the region its policy would move it to is not promotable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnsafe {
    /// Try the next region that passes.
    Next,
    /// Keep answering the client's first region, down or not (fail static).
    Hold,
    /// SERVFAIL, with an Extended DNS Error naming the guard.
    ServFail,
}

impl OnUnsafe {
    pub fn name(self) -> &'static str {
        match self {
            OnUnsafe::Next => "next",
            OnUnsafe::Hold => "hold",
            OnUnsafe::ServFail => "servfail",
        }
    }
}

impl Service {
    /// Whether `up` of a region's `total` endpoints (of one family) are enough for it to serve.
    pub fn enough_healthy(&self, up: usize, total: usize) -> bool {
        up > 0 && up >= self.min_healthy.min(total)
    }
}

/// What a service answers when no region has enough healthy endpoints.
#[derive(Debug)]
pub enum AllDown {
    /// Answer as if every endpoint were up (the Route 53 and Azure default): a health-check
    /// outage must not become a DNS outage.
    FailOpen,
    /// SERVFAIL, for clients that have a fallback of their own.
    ServFail,
    /// Static addresses, built at load time.
    Fallback {
        v4: Box<[Record]>,
        v6: Box<[Record]>,
    },
}

impl AllDown {
    pub fn name(&self) -> &'static str {
        match self {
            AllDown::FailOpen => "fail-open",
            AllDown::ServFail => "servfail",
            AllDown::Fallback { .. } => "fallback",
        }
    }
}

/// One (address or hostname, check) pair. Probed once however many endpoints share it.
#[derive(Debug)]
pub struct Target {
    pub check: CheckId,
    pub addr: ProbeAddr,
    /// Stable identity (`check@addr`, `check@host.:port` for a hostname) for carrying health
    /// across reloads and restarts.
    pub key: String,
}

/// Everything stored at one owner name of a zone.
#[derive(Debug, Default)]
pub struct Node {
    /// Static RRsets, each non-empty, one per type.
    pub rrsets: Vec<(RecordType, Box<[Record]>)>,
    /// A traffic-managed name answers A/AAAA from its service.
    pub service: Option<ServiceId>,
}

impl Node {
    pub fn rrset(&self, rtype: RecordType) -> Option<&[Record]> {
        self.rrsets
            .iter()
            .find(|(t, _)| *t == rtype)
            .map(|(_, r)| &r[..])
    }

    /// Whether this name holds anything at all (an empty non-terminal holds nothing).
    pub fn is_empty(&self) -> bool {
        self.rrsets.is_empty() && self.service.is_none()
    }
}

#[derive(Debug)]
pub struct Zone {
    pub origin: LowerName,
    /// The SOA as answered to SOA queries.
    pub soa: Record,
    /// The SOA placed in negative answers: TTL = min(SOA TTL, minimum) per RFC 2308.
    pub negative_soa: Record,
    pub nodes: HashMap<LowerName, Node>,
    /// Whether any name below the apex carries NS records (a delegation point).
    pub has_delegations: bool,
    /// Whether any owner name starts with a `*` label (RFC 4592 wildcards).
    pub has_wildcards: bool,
    /// The zone's DNSSEC keys and signatures, when it is signed.
    pub signer: Option<super::sign::ZoneSigner>,
}

/// One compiled config: immutable, shared by every snapshot built from it.
#[derive(Debug)]
pub struct Compiled {
    pub settings: Settings,
    pub geo: Option<Arc<GeoSet>>,
    pub zones: Vec<Zone>,
    pub zone_by_origin: HashMap<LowerName, ZoneId>,
    pub regions: Vec<Region>,
    pub services: Vec<Service>,
    pub endpoints: Vec<Endpoint>,
    pub checks: Vec<CheckSpec>,
    pub targets: Vec<Target>,
    /// The ASN databases, for the ASN overrides of `cidr_maps`.
    pub asn: Option<Arc<AsnSet>>,
    /// Named overrides: networks (longest prefix wins), then autonomous systems.
    pub cidr_maps: Vec<CidrMap>,
    /// The latency map read with the config (the admin API can replace it live).
    pub latency_map: Arc<LatencyMap>,
    /// Where the latency map came from, so a reload or `PUT` can re-read it.
    pub latency_map_path: Option<std::path::PathBuf>,
    /// Added to distance-based RTT estimates, in ms.
    pub latency_overhead_ms: f32,
    /// How many (service, region) pairs exist (see `ServiceRegion::slot`).
    pub service_region_slots: usize,
    /// Traffic-managed names in lower-case wire form, for the UDP fast path.
    pub service_names: NameMap,
    /// Some traffic-managed name is a wildcard (`*.cdn.example.com.`).
    pub wildcard_services: bool,
    /// `[[assert]]` tables: `check` and every reload evaluate them.
    pub assertions: Vec<super::scenario::Assertion>,
    /// `[[safety]]` rules evacuations, drains and ramps must not break.
    pub safety: Vec<super::scenario::SafetyRule>,
    /// Some zone is signed (DO=1 queries then go to the full handler).
    pub signed: bool,
    /// What each probe target's health reaches.
    pub target_index: TargetIndex,
}

/// What each probe target's health reaches, built with the config: the services whose
/// endpoints follow it (for health or as their guard), so a health change re-examines only
/// the services it can move, and its endpoints per region, so per-region counts of serving
/// endpoints come from the targets down rather than from every endpoint.
#[derive(Debug)]
pub struct TargetIndex {
    services: Csr<ServiceId>,
    /// (region, endpoints following the target there, once per family list they are in).
    regions: Csr<(RegionId, u32)>,
    /// Endpoints per region, once per family list they are in.
    region_endpoints: Box<[usize]>,
}

/// Items grouped by a dense index: group i is `items[offsets[i]..offsets[i + 1]]`.
#[derive(Debug)]
struct Csr<T> {
    offsets: Box<[u32]>,
    items: Box<[T]>,
}

impl<T> Csr<T> {
    /// From (group, item) pairs sorted by group.
    fn new(groups: usize, pairs: Vec<(usize, T)>) -> Csr<T> {
        let mut offsets = vec![0u32; groups + 1];
        for (g, _) in &pairs {
            offsets[g + 1] += 1;
        }
        for i in 0..groups {
            offsets[i + 1] += offsets[i];
        }
        Csr {
            offsets: offsets.into(),
            items: pairs.into_iter().map(|(_, t)| t).collect(),
        }
    }

    fn of(&self, group: usize) -> &[T] {
        match (self.offsets.get(group), self.offsets.get(group + 1)) {
            (Some(&a), Some(&b)) => &self.items[a as usize..b as usize],
            _ => &[],
        }
    }
}

impl TargetIndex {
    pub fn new(
        targets: usize,
        regions: usize,
        services: &[Service],
        endpoints: &[Endpoint],
    ) -> TargetIndex {
        let mut by_service: Vec<(usize, ServiceId)> = endpoints
            .iter()
            .flat_map(|e| {
                (e.target.into_iter().chain(e.guard)).map(move |t| (t.index(), e.service))
            })
            .collect();
        by_service.sort_unstable();
        by_service.dedup();
        let mut region_endpoints = vec![0usize; regions];
        let mut by_region: HashMap<(usize, RegionId), u32> = HashMap::new();
        for sr in services.iter().flat_map(|s| s.regions.iter()) {
            for e in sr.v4.iter().chain(sr.v6.iter()) {
                region_endpoints[sr.region.index()] += 1;
                if let Some(t) = endpoints[e.index()].target {
                    *by_region.entry((t.index(), sr.region)).or_default() += 1;
                }
            }
        }
        let mut by_region: Vec<(usize, (RegionId, u32))> = by_region
            .into_iter()
            .map(|((t, r), n)| (t, (r, n)))
            .collect();
        by_region.sort_unstable();
        TargetIndex {
            services: Csr::new(targets, by_service),
            regions: Csr::new(targets, by_region),
            region_endpoints: region_endpoints.into(),
        }
    }

    /// The services with an endpoint that follows `target`.
    pub fn services(&self, target: TargetId) -> &[ServiceId] {
        self.services.of(target.index())
    }
}

/// A `[cidr_maps.NAME]` table: networks sent to a region (longest prefix wins), then
/// autonomous systems sent to a region, for clients in none of the networks.
#[derive(Debug, Default)]
pub struct CidrMap {
    pub networks: PrefixTable<RegionId>,
    /// (AS number, region), sorted by number.
    pub asns: Box<[(u32, RegionId)]>,
}

impl CidrMap {
    /// The map; an AS number given twice keeps its first region.
    pub fn new(networks: Vec<(ipnet::IpNet, RegionId)>, mut asns: Vec<(u32, RegionId)>) -> Self {
        asns.sort_by_key(|a| a.0);
        asns.dedup_by_key(|a| a.0);
        CidrMap {
            networks: PrefixTable::new(networks),
            asns: asns.into(),
        }
    }

    /// The region the map names for an autonomous system.
    #[inline]
    pub fn asn_region(&self, asn: u32) -> Option<RegionId> {
        self.asns
            .binary_search_by_key(&asn, |a| a.0)
            .ok()
            .map(|i| self.asns[i].1)
    }
}

/// Lower-case wire-form names -> (service, zone).
pub type NameMap =
    HashMap<Box<[u8]>, (ServiceId, ZoneId), std::hash::BuildHasherDefault<FnvHasher>>;

/// A name's lower-case wire form (length-prefixed labels, ending with the root).
pub fn wire_name(name: &Name) -> Box<[u8]> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out.into()
}

impl Compiled {
    pub fn zone(&self, id: ZoneId) -> &Zone {
        &self.zones[id.index()]
    }

    /// The region of that name.
    pub fn region_id(&self, name: &str) -> Option<RegionId> {
        self.regions
            .iter()
            .position(|r| r.name == name)
            .map(|i| RegionId(i as u32))
    }

    pub fn region(&self, id: RegionId) -> &Region {
        &self.regions[id.index()]
    }

    pub fn service(&self, id: ServiceId) -> &Service {
        &self.services[id.index()]
    }

    pub fn endpoint(&self, id: EndpointId) -> &Endpoint {
        &self.endpoints[id.index()]
    }

    /// The zone with the longest origin that contains `name`, if any.
    pub fn find_zone(&self, name: &LowerName) -> Option<ZoneId> {
        let mut cur = name.clone();
        loop {
            if let Some(id) = self.zone_by_origin.get(&cur) {
                return Some(*id);
            }
            if cur.is_root() {
                return None;
            }
            cur = cur.base_name();
        }
    }
}

/// A probe target's verdict, as the rise/fall state machine (or the fleet) decides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// No verdict yet (start-up without saved state). Routed as if up.
    Unknown,
    Up,
    Down,
}

impl Health {
    /// Unknown is treated as up everywhere, so a cold start answers as configured.
    pub fn serving(self) -> bool {
        self != Health::Down
    }

    pub fn name(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// An instance's `promote_guard` verdict on one probe target, as shared with the fleet.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GuardVerdict {
    pub promotable: bool,
    #[serde(default)]
    pub figure: Option<f64>,
}

/// Health of each probe target, indexed by [`TargetId`].
#[derive(Debug, Clone, Default)]
pub struct HealthView {
    pub targets: Box<[TargetHealth]>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetHealth {
    /// The verdict routing uses: this instance's own, or the fleet's consensus.
    pub health: Health,
    /// Smoothed probe latency in microseconds.
    pub latency_us: Option<f64>,
    /// Instances with a view of this target (1 outside fleet mode) and how many see it down.
    pub observers: u8,
    pub down_votes: u8,
    /// The figure its check reads (`extract`), from the latest probe.
    pub figure: Option<f64>,
    /// The figure is within its check's bounds (always true for a check without a figure).
    /// Before the first probe a guard's target is not promotable.
    pub promotable: bool,
}

impl HealthView {
    /// Every target Unknown: what a cold start serves with.
    pub fn unknown(targets: usize) -> HealthView {
        HealthView {
            targets: vec![
                TargetHealth {
                    health: Health::Unknown,
                    latency_us: None,
                    observers: 1,
                    down_votes: 0,
                    figure: None,
                    promotable: false,
                };
                targets
            ]
            .into(),
        }
    }
}

/// One generation of routing state: a compiled config plus health and admin state and the
/// latency inputs, with a generation number that grows with every publish. Everything
/// `decide` and `answer` read.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    pub compiled: Arc<Compiled>,
    pub health: Arc<HealthView>,
    pub admin: Arc<AdminView>,
    pub generation: u64,
    /// When and why this generation was published.
    pub built_at: std::time::SystemTime,
    pub built_for: String,
    /// Every probe target has been probed at least once.
    pub probes_complete: bool,
    /// The latency map in force (the config's, or one put through the admin API).
    pub latency_map: Arc<LatencyMap>,
    /// Measured service latency per (service, region) slot in ms, published with a deadband
    /// of the service's `latency_margin_ms` so noise never moves an answer.
    pub penalty_ms: Arc<[Option<f32>]>,
}

impl RoutingTable {
    /// A table with no health verdicts and no admin state yet: generation 1, as `explain`
    /// and the tests see a config before anything was published (`built_at` is the epoch).
    pub fn cold(compiled: Arc<Compiled>) -> RoutingTable {
        RoutingTable {
            health: Arc::new(HealthView::unknown(compiled.targets.len())),
            admin: Arc::new(AdminView::new(&compiled, &Default::default(), 0)),
            latency_map: compiled.latency_map.clone(),
            penalty_ms: vec![None; compiled.service_region_slots].into(),
            compiled,
            generation: 1,
            built_at: std::time::SystemTime::UNIX_EPOCH,
            built_for: "start".into(),
            probes_complete: false,
        }
    }

    /// Whether an operator evacuated the region.
    pub fn evacuated(&self, region: RegionId) -> bool {
        self.admin
            .evacuated
            .get(region.index())
            .copied()
            .unwrap_or(false)
    }

    /// Whether a drain of the region moves a client in `bucket` (see
    /// [`super::admin::drain_bucket`]).
    pub fn drained(&self, region: RegionId, bucket: u16) -> bool {
        self.admin
            .drained
            .get(region.index())
            .is_some_and(|&drained| bucket < drained)
    }

    /// Whether the region takes no client at all: evacuated, or drained to 100 %.
    pub fn closed(&self, region: RegionId) -> bool {
        self.evacuated(region) || self.drained(region, super::admin::DRAIN_BUCKETS - 1)
    }

    /// Health of an endpoint's probe target; `None` when nothing probes it.
    pub fn endpoint_health(&self, id: EndpointId) -> Option<Health> {
        let target = self.compiled.endpoint(id).target?;
        self.health.targets.get(target.index()).map(|t| t.health)
    }

    /// How many of `endpoints` serve.
    pub fn serving_count(&self, endpoints: &[EndpointId]) -> usize {
        endpoints.iter().filter(|e| self.serving(**e)).count()
    }

    /// Whether a region has enough serving endpoints of a family for a service (health only;
    /// evacuation and residency are separate).
    pub fn region_healthy(&self, svc: &Service, sr: &ServiceRegion, family: Family) -> bool {
        let eps = sr.endpoints(family);
        svc.enough_healthy(self.serving_count(eps), eps.len())
    }

    /// Whether a region passes its service's `promote_guard`: enough of its serving endpoints
    /// (by `min_healthy`, as for health) have a promotable figure. A service without a guard
    /// always passes.
    pub fn region_promotable(&self, svc: &Service, endpoints: &[EndpointId]) -> bool {
        if svc.guard.is_none() {
            return true;
        }
        let ok = endpoints
            .iter()
            .filter(|e| self.serving(**e) && self.endpoint_promotable(**e))
            .count();
        svc.enough_healthy(ok, endpoints.len())
    }

    /// Whether an endpoint's guard target is promotable (true when nothing guards it).
    pub fn endpoint_promotable(&self, id: EndpointId) -> bool {
        self.compiled
            .endpoint(id)
            .guard
            .and_then(|t| self.health.targets.get(t.index()))
            .is_none_or(|t| t.promotable)
    }

    /// The guard target of the first serving endpoint that is not promotable, for the trace.
    pub fn unpromotable_target(&self, endpoints: &[EndpointId]) -> Option<TargetId> {
        endpoints
            .iter()
            .find(|e| self.serving(**e) && !self.endpoint_promotable(**e))
            .and_then(|e| self.compiled.endpoint(*e).guard)
    }

    /// Per region: its endpoints and how many of them serve, counting an endpoint once per
    /// family list it is in. Linear in the probe targets, not in the endpoints.
    pub fn region_serving(&self) -> Vec<(usize, usize)> {
        let index = &self.compiled.target_index;
        let mut counts: Vec<(usize, usize)> =
            index.region_endpoints.iter().map(|&n| (n, n)).collect();
        for (t, h) in self.health.targets.iter().enumerate() {
            if !h.health.serving() {
                for (r, n) in index.regions.of(t) {
                    counts[r.index()].1 -= *n as usize;
                }
            }
        }
        counts
    }

    /// Whether an endpoint may be answered: unprobed, unknown and up endpoints serve.
    pub fn serving(&self, id: EndpointId) -> bool {
        self.endpoint_health(id).is_none_or(Health::serving)
    }
}
