//! What validation hands to `compile`: the config with values parsed and names resolved to ids.
use std::net::IpAddr;
use std::ops::Range;
use std::path::PathBuf;

use hickory_proto::rr::{Name, Record};

use crate::config::Place;
use crate::geo::{Continent, CountryCode, Subdivision};
use crate::routing::table::{Address, OnUnsafe, Policy, ProbeAddr, Region, RegionId, WeightMode};
use crate::settings::{CheckSpec, Settings};

/// A config that passed every check, with values parsed and names resolved to ids.
#[derive(Debug)]
pub struct Checked {
    pub settings: Settings,
    /// Resolved path of the GeoIP database and the span of its `database` key.
    pub geoip: Option<(Vec<PathBuf>, Range<usize>)>,
    /// Resolved paths of the ASN databases and the span of their `asn_database` key.
    pub asn_database: Option<(Vec<PathBuf>, Range<usize>)>,
    pub zones: Vec<CheckedZone>,
    pub regions: Vec<Region>,
    pub services: Vec<CheckedService>,
    pub checks: Vec<CheckSpec>,
    pub cidr_maps: Vec<CheckedCidrMap>,
    /// Resolved path of the latency map and the span of its key.
    pub latency_map: Option<(PathBuf, Range<usize>)>,
    pub latency_overhead_ms: f32,
    /// `[[assert]]` tables and the spans they are reported at.
    pub asserts: Vec<(Range<usize>, crate::routing::scenario::Assertion)>,
    /// `[[safety]]` rules and their spans.
    pub safety: Vec<(Range<usize>, crate::routing::scenario::SafetyRule)>,
}

/// A CIDR map's inline networks and autonomous systems, and the file holding more (read by
/// `compile`).
#[derive(Debug)]
pub struct CheckedCidrMap {
    pub name: String,
    pub networks: Vec<(ipnet::IpNet, RegionId)>,
    pub asns: Vec<(u32, RegionId)>,
    pub file: Option<(PathBuf, Range<usize>)>,
}

#[derive(Debug)]
pub struct CheckedZone {
    pub origin: Name,
    pub soa: Record,
    pub ns: Vec<Record>,
    pub records: Vec<Record>,
    /// Where each record was given (in the config or a zone file), in the order of `records`.
    pub places: Vec<Place>,
    /// Signing keys and validity, when the zone is signed.
    pub dnssec: Option<CheckedDnssec>,
}

/// A signed zone's keys (read and checked against their public halves) and validity.
#[derive(Debug)]
pub struct CheckedDnssec {
    pub keys: Vec<std::sync::Arc<crate::routing::sign::ZoneKey>>,
    /// TTL of the DNSKEY, CDS and CDNSKEY RRsets.
    pub key_ttl: u32,
    pub validity: crate::routing::sign::Validity,
}

#[derive(Debug)]
pub struct CheckedService {
    pub name: Name,
    pub zone: usize,
    pub ttl: u32,
    pub policy: Policy,
    pub answers: usize,
    pub min_healthy: usize,
    pub on_all_down: CheckedAllDown,
    /// Region order for clients the database cannot place; for failover, the failover order.
    pub default_order: Vec<RegionId>,
    pub endpoints: Vec<CheckedEndpoint>,
    pub latency_margin_ms: f32,
    pub weight_mode: WeightMode,
    pub residency: Vec<CheckedResidency>,
    pub cidr_map: Option<usize>,
    /// `promote_guard` (a check index) and `on_unsafe`.
    pub guard: Option<(usize, OnUnsafe)>,
}

#[derive(Debug)]
pub enum CheckedAllDown {
    FailOpen,
    ServFail,
    Fallback(Vec<IpAddr>),
}

#[derive(Debug)]
pub struct CheckedEndpoint {
    pub region: RegionId,
    /// An address, or a hostname (answered with a CNAME).
    pub address: Address,
    pub port: u16,
    /// The check probing this endpoint (its own, else the service's) and the address:port
    /// (or hostname and port) it probes.
    pub probe: Option<(usize, ProbeAddr)>,
    /// The service's `promote_guard` check and the address:port it probes for this endpoint.
    pub guard: Option<(usize, ProbeAddr)>,
    pub weight: u32,
}

/// One residency rule: clients placed in these subdivisions, countries or continents only go
/// to the `allowed` regions.
#[derive(Debug)]
pub struct CheckedResidency {
    pub places: Places,
    pub allowed: Vec<RegionId>,
}

/// Subdivision, country and continent lists, as a region or a residency rule names them.
#[derive(Debug, Default, Clone)]
pub struct Places {
    pub subdivisions: Vec<Subdivision>,
    pub countries: Vec<CountryCode>,
    pub continents: Vec<Continent>,
}

impl Places {
    pub fn is_empty(&self) -> bool {
        self.subdivisions.is_empty() && self.countries.is_empty() && self.continents.is_empty()
    }
}
