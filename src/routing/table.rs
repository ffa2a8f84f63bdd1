//! The immutable routing table the DNS path reads: zones with prebuilt records, regions,
//! services and endpoints under dense ids. Built once per config load by `config::compile`.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::{LowerName, Name, Record, RecordType};

use crate::geo::{Continent, CountryCode, GeoDb, LatLon};

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
id_type!(ZoneId, RegionId, ServiceId, EndpointId);

/// Most endpoints one answer may carry (`answers` in the config).
pub const MAX_ANSWERS: usize = 16;
/// Most regions one service may span; ranking them happens on the stack.
pub const MAX_SERVICE_REGIONS: usize = 64;

/// Routing policy of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Country, then continent, then nearest region, then the default order.
    Geo,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Geo => "geo",
        }
    }
}

/// Address family of an A or AAAA answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

#[derive(Debug)]
pub struct Region {
    pub name: String,
    pub location: Option<LatLon>,
    pub countries: Vec<CountryCode>,
    pub continents: Vec<Continent>,
}

#[derive(Debug)]
pub struct Endpoint {
    pub service: ServiceId,
    pub region: RegionId,
    pub address: IpAddr,
    pub port: u16,
    /// Name of the health check, if any (the prober resolves it).
    pub check: Option<String>,
    /// Address the prober connects to, when it differs from the answered address.
    pub check_address: Option<IpAddr>,
    /// The A or AAAA record answered for this endpoint, built at load time.
    pub record: Record,
}

/// A region's part in one service: its endpoints split by family.
#[derive(Debug)]
pub struct ServiceRegion {
    pub region: RegionId,
    /// Position in the service's default order (lower comes first).
    pub rank: u16,
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
    /// The regions this service has endpoints in, in default order.
    pub regions: Box<[ServiceRegion]>,
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
}

/// Server settings carried with the table so a reload can report what would change.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dns_listen: Vec<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub max_udp_payload: u16,
    pub tcp_idle_timeout: Duration,
}

/// One compiled config: immutable, shared by every snapshot built from it.
#[derive(Debug)]
pub struct Compiled {
    pub settings: Settings,
    pub geo: Option<Arc<GeoDb>>,
    pub zones: Vec<Zone>,
    pub zone_by_origin: HashMap<LowerName, ZoneId>,
    pub regions: Vec<Region>,
    pub services: Vec<Service>,
    pub endpoints: Vec<Endpoint>,
}

impl Compiled {
    pub fn zone(&self, id: ZoneId) -> &Zone {
        &self.zones[id.index()]
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

/// What the DNS path loads once per query: a compiled config plus (in later stages) health
/// and admin state, with a generation number that grows with every publish.
#[derive(Debug)]
pub struct RoutingTable {
    pub compiled: Arc<Compiled>,
    pub generation: u64,
}
