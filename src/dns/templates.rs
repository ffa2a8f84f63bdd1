//! Responses to static data, prepared once per compiled config for the UDP fast path.
//!
//! For every name of a zone that is not traffic-managed, the full handler's own response to
//! an A and an AAAA question (answer, NODATA or referral) is kept as bytes, and at each zone
//! apex its response to SOA and NS (what resolvers ask a zone's servers most after
//! addresses); for every zone without delegations, the tail of its negative SOA is kept for
//! NXDOMAIN. The fast path
//! copies a template, patches the ID, the flags it copies from the query and the question's
//! case, and adds the OPT: what the full handler would send, without parsing or encoding a
//! message per query. Anything that depends on the client (a CNAME into a traffic-managed
//! name), would be truncated, or lies below a delegation stays with the full handler.
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::counters::DnsCounters;
use super::handler::respond_udp;
use super::snapshot::Snapshot;
use crate::hash::FnvHasher;
use crate::metrics::Metrics;
use crate::routing::RoutingTable;
use crate::routing::answer::answer;
use crate::routing::query::Client;
use crate::routing::table::{ZoneId, wire_name};
use crate::routing::trace::NoTrace;

/// The prepared responses of one compiled config.
#[derive(Debug, Default)]
pub struct Templates {
    /// Lower-case wire names of the zones' static nodes (empty non-terminals included).
    names: HashMap<Box<[u8]>, Node, BuildHasherDefault<FnvHasher>>,
    /// Lower-case wire zone origins.
    zones: HashMap<Box<[u8]>, Negative, BuildHasherDefault<FnvHasher>>,
}

#[derive(Debug)]
struct Node {
    zone: ZoneId,
    a: Option<Box<[u8]>>,
    aaaa: Option<Box<[u8]>>,
    /// At a zone apex only.
    soa: Option<Box<[u8]>>,
    ns: Option<Box<[u8]>>,
}

#[derive(Debug)]
struct Negative {
    zone: ZoneId,
    /// The negative SOA after its owner name; `None` when the zone has delegations (a
    /// missing name may be below a cut).
    soa: Option<NegativeSoa>,
}

/// What the fast path sends for a static name.
pub enum Static<'t> {
    /// A whole response as the full handler encodes it for the question asked in lower case
    /// without EDNS: ID, flags and question to patch.
    Response(&'t [u8]),
    /// NXDOMAIN: header and question from the query, then the zone's SOA, whose owner is
    /// the query name from byte `origin_at` of the name on.
    NxDomain {
        soa: &'t NegativeSoa,
        origin_at: usize,
    },
}

impl Templates {
    /// Runs the full handler over every static name of `table`'s zones (against a snapshot
    /// of its own, whose counters are thrown away).
    pub fn build(table: &RoutingTable) -> Templates {
        let metrics = Metrics::new();
        let scratch = Snapshot {
            table: table.clone(),
            templates: Arc::default(),
            counters: Arc::new(DnsCounters::new(&table.compiled)),
            sample: Arc::new(super::sample::QuerySample::disabled()),
            sample_tag: 0,
        };
        let src: SocketAddr = ([127, 0, 0, 1], 53).into();
        let client = Client {
            addr: src.ip(),
            ecs_source: None,
        };
        let mut out = Templates::default();
        for (z, zone) in table.compiled.zones.iter().enumerate() {
            let zone_id = ZoneId(z as u32);
            // A missing name may be below a cut, or stood in for by a wildcard: the full
            // handler decides those.
            let soa = (!zone.has_delegations && !zone.has_wildcards)
                .then(|| NegativeSoa::new(&zone.negative_soa, &Name::from(&zone.origin)))
                .flatten();
            out.zones.insert(
                wire_name(&Name::from(&zone.origin)),
                Negative { zone: zone_id, soa },
            );
            for (name, node) in &zone.nodes {
                if node.service.is_some() {
                    continue;
                }
                let name = Name::from(name);
                let response = |qtype: RecordType| -> Option<Box<[u8]>> {
                    let lower = name.clone().into();
                    // Only what is the same for every client.
                    answer(table, &lower, qtype, &client, &mut NoTrace)
                        .decision
                        .is_none()
                        .then_some(())?;
                    let mut query = Message::new(0, MessageType::Query, OpCode::Query);
                    query.add_query(Query::query(name.clone(), qtype));
                    let query = query.to_vec().ok()?;
                    let bytes = respond_udp(&scratch, &query, src, &metrics)?;
                    // Truncated without EDNS: the full handler decides per query.
                    if bytes.len() < 12 || bytes[2] & 0x02 != 0 {
                        return None;
                    }
                    // Optional additional records left out to fit 512 bytes would be sent to
                    // a query with a larger EDNS size: then the full handler decides too.
                    let larger = respond_udp(&scratch, &with_opt(&query), src, &metrics)?;
                    let arcount = |b: &[u8]| u16::from_be_bytes([b[10], b[11]]);
                    (larger.len() >= 12
                        && larger[6..10] == bytes[6..10]
                        && arcount(&larger) == arcount(&bytes) + 1)
                        .then(|| bytes.into())
                };
                let apex = name == Name::from(&zone.origin);
                let at_apex = |t| if apex { response(t) } else { None };
                out.names.insert(
                    wire_name(&name),
                    Node {
                        zone: zone_id,
                        a: response(RecordType::A),
                        aaaa: response(RecordType::AAAA),
                        soa: at_apex(RecordType::SOA),
                        ns: at_apex(RecordType::NS),
                    },
                );
            }
        }
        out
    }

    /// Whether `name` (lower-case wire form) is a static name of ours (empty non-terminals
    /// included).
    pub fn has_node(&self, name: &[u8]) -> bool {
        self.names.contains_key(name)
    }

    /// The prepared response to `qtype` at `name` (lower-case wire form), with its zone;
    /// `None` when the full handler must answer.
    pub fn find(&self, name: &[u8], qtype: RecordType) -> Option<(ZoneId, Static<'_>)> {
        if let Some(node) = self.names.get(name) {
            let response = match qtype {
                RecordType::A => node.a.as_deref(),
                RecordType::AAAA => node.aaaa.as_deref(),
                RecordType::SOA => node.soa.as_deref(),
                RecordType::NS => node.ns.as_deref(),
                _ => None,
            }?;
            return Some((node.zone, Static::Response(response)));
        }
        // Not a name of ours: NXDOMAIN from the closest enclosing zone, if any.
        let mut at = 0;
        while at < name.len() {
            if let Some(zone) = self.zones.get(&name[at..]) {
                let soa = zone.soa.as_ref()?;
                return Some((zone.zone, Static::NxDomain { soa, origin_at: at }));
            }
            at += usize::from(name[at]) + 1;
        }
        None
    }
}

/// `query` (one question, nothing else) with an OPT record of a 4096-byte payload added.
fn with_opt(query: &[u8]) -> Vec<u8> {
    let mut out = query.to_vec();
    out[11] = 1;
    out.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    out
}

/// A zone's negative SOA as copied into an NXDOMAIN after its owner (a pointer to the zone
/// origin in the question): type, class, TTL and RDATA, with MNAME and RNAME ending in
/// pointers to that origin where they are below it, as the full handler compresses them.
#[derive(Debug)]
pub struct NegativeSoa {
    tail: Box<[u8]>,
    /// Offsets in `tail` of the pointers to the origin, set per response.
    pointers: Box<[usize]>,
}

impl NegativeSoa {
    fn new(record: &Record, origin: &Name) -> Option<NegativeSoa> {
        let RData::SOA(soa) = &record.data else {
            return None;
        };
        // Type, class, TTL, then RDLENGTH once the RDATA is known.
        let mut tail = Vec::with_capacity(64);
        tail.extend_from_slice(&u16::from(RecordType::SOA).to_be_bytes());
        tail.extend_from_slice(&u16::from(record.dns_class).to_be_bytes());
        tail.extend_from_slice(&record.ttl.to_be_bytes());
        tail.extend_from_slice(&[0, 0]);
        let mut pointers = Vec::new();
        for name in [&soa.mname, &soa.rname] {
            let below = !origin.is_root() && origin.zone_of(name);
            let own = if below {
                usize::from(name.num_labels() - origin.num_labels())
            } else {
                usize::from(name.num_labels())
            };
            for label in name.iter().take(own) {
                tail.push(u8::try_from(label.len()).ok()?);
                tail.extend_from_slice(label);
            }
            if below {
                pointers.push(tail.len());
                tail.extend_from_slice(&[0xC0, 0]);
            } else {
                tail.push(0);
            }
        }
        tail.extend_from_slice(&soa.serial.to_be_bytes());
        for n in [soa.refresh, soa.retry, soa.expire] {
            tail.extend_from_slice(&n.to_be_bytes());
        }
        tail.extend_from_slice(&soa.minimum.to_be_bytes());
        let rdlength = u16::try_from(tail.len() - 10).ok()?;
        tail[8..10].copy_from_slice(&rdlength.to_be_bytes());
        Some(NegativeSoa {
            tail: tail.into(),
            pointers: pointers.into(),
        })
    }

    /// Appends the SOA after its owner, its names pointing at `origin` (a compression
    /// pointer, as the owner's).
    pub fn write(&self, origin: [u8; 2], out: &mut Vec<u8>) {
        let base = out.len();
        out.extend_from_slice(&self.tail);
        for p in &self.pointers {
            out[base + p..base + p + 2].copy_from_slice(&origin);
        }
    }
}
