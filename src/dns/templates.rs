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
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

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
    /// Other types' responses: SOA and NS at a zone apex, nothing elsewhere.
    other: Box<[(RecordType, Box<[u8]>)]>,
}

#[derive(Debug)]
struct Negative {
    zone: ZoneId,
    /// The negative SOA after its owner name (type, class, TTL, RDATA with uncompressed
    /// names); `None` when the zone has delegations (a missing name may be below a cut).
    soa: Option<Box<[u8]>>,
}

/// What the fast path sends for a static name.
pub enum Static<'t> {
    /// A whole response as the full handler encodes it for the question asked in lower case
    /// without EDNS: ID, flags and question to patch.
    Response(&'t [u8]),
    /// NXDOMAIN: header and question from the query, then the zone's SOA, whose owner is
    /// the query name from byte `origin_at` of the name on.
    NxDomain { soa: &'t [u8], origin_at: usize },
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
                .then(|| negative_soa_tail(&zone.negative_soa, &Name::from(&zone.origin)))
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
                let other = [RecordType::SOA, RecordType::NS]
                    .into_iter()
                    .filter(|_| apex)
                    .filter_map(|t| Some((t, response(t)?)))
                    .collect();
                out.names.insert(
                    wire_name(&name),
                    Node {
                        zone: zone_id,
                        a: response(RecordType::A),
                        aaaa: response(RecordType::AAAA),
                        other,
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
                _ => node
                    .other
                    .iter()
                    .find(|(t, _)| *t == qtype)
                    .map(|(_, r)| &r[..]),
            }?;
            return Some((node.zone, Static::Response(response)));
        }
        // Not a name of ours: NXDOMAIN from the closest enclosing zone, if any.
        let mut at = 0;
        while at < name.len() {
            if let Some(zone) = self.zones.get(&name[at..]) {
                let soa = zone.soa.as_deref()?;
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

/// The record after its owner name, with every name in it uncompressed (it is copied into
/// responses at varying offsets).
fn negative_soa_tail(soa: &hickory_proto::rr::Record, origin: &Name) -> Option<Box<[u8]>> {
    let mut buf = Vec::with_capacity(128);
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_name_encoding(NameEncoding::Uncompressed);
    soa.emit(&mut enc).ok()?;
    let owner = wire_name(origin).len();
    buf.get(owner..).map(Into::into)
}
