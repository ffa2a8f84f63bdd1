//! The UDP fast path: the common query (one question for A or AAAA, or for SOA or NS at a
//! static name, QUERY opcode, at most an OPT with ECS) answered straight from the wire
//! bytes, with no allocation. Parse the
//! question and EDNS in place and look the name up; at a traffic-managed name run
//! [`decide`] and write the response from a fixed layout (ID, flags and the question copied
//! from the query, answers as pointers to the question name); at a static name, or for
//! NXDOMAIN, copy the response the full handler prepared for the compiled config (see
//! [`super::templates`]). Anything else returns `None` and goes to the full handler, which
//! answers every case the same way this does (the differential test and the `dns_request`
//! fuzz target hold them to it).
use std::net::IpAddr;

use super::counters::Transport;
use super::handler::{client_of, udp_limit};
use super::snapshot::Snapshot;
use super::templates::Static;
use super::wire::{self, Scanned};
use crate::clock::{self, Clock};
use crate::geo::Stage;
use crate::metrics::Metrics;
use crate::routing::decide::decide;
use crate::routing::query::{Client, Decision, Query};
use crate::routing::sign::rrset_key;
use crate::routing::table::{Address, Family, MAX_ANSWERS, ServiceId, ZoneId};
use crate::routing::trace::NoTrace;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_NS: u16 = 2;
const TYPE_SOA: u16 = 6;
const CLASS_IN: u16 = 1;
/// Longest wire-form name.
const MAX_NAME: usize = 255;

/// A query the fast path takes, after its first look at it.
#[derive(Clone, Copy, Debug)]
pub struct Parsed {
    scanned: Scanned,
    /// A or AAAA; `None` for SOA and NS, which only static names answer here.
    family: Option<Family>,
    client: Client,
}

/// Answers `req` into `out` (cleared first) when the fast path can; `None` sends it to the
/// full handler.
pub fn answer(
    snap: &Snapshot,
    req: &[u8],
    src: IpAddr,
    metrics: &Metrics,
    out: &mut Vec<u8>,
) -> Option<()> {
    let parsed = parse(snap, req, src).ok()?;
    respond(snap, req, &parsed, metrics, out).map(|_| ())
}

/// The first half of [`answer`]: whether the fast path takes `req`, and who asks. It starts
/// loading the client's GeoIP data, so that a caller with several queries can parse them
/// all first and have those loads overlap (see [`prefetch`]). A query the fast path does
/// not take comes back with its scan, when one was made, for the full handler to reuse.
pub fn parse(snap: &Snapshot, req: &[u8], src: IpAddr) -> Result<Parsed, Option<Scanned>> {
    if req.len() < 12 {
        return Err(None);
    }
    let flags = req[2];
    // QR clear, opcode QUERY; exactly one question, nothing in answer/authority, at most
    // one additional record (the OPT).
    if flags & 0xF8 != 0 || req[4..10] != [0, 1, 0, 0, 0, 0] || req[10] != 0 || req[11] > 1 {
        return Err(None);
    }
    let scanned = wire::scan(req).map_err(|_| None)?;
    // NSID requests, when we have one to give, are the full handler's.
    let nsid = snap.table.compiled.settings.nsid.is_some();
    if scanned.qclass != CLASS_IN
        || (req[11] == 1) != scanned.edns.is_some()
        || scanned
            .edns
            .is_some_and(|e| e.version != 0 || (e.nsid && nsid))
    {
        return Err(Some(scanned));
    }
    let family = match scanned.qtype {
        TYPE_A => Some(Family::V4),
        TYPE_AAAA => Some(Family::V6),
        TYPE_SOA | TYPE_NS => None,
        _ => return Err(Some(scanned)),
    };
    let client = client_of(src, &scanned);
    if let Some(db) = &snap.table.compiled.geo {
        db.prefetch(client.addr, Stage::Index);
    }
    Ok(Parsed {
        scanned,
        family,
        client,
    })
}

impl Parsed {
    /// The scan [`parse`] made, for the full handler when the fast path passes the query on.
    pub fn scanned(&self) -> Scanned {
        self.scanned
    }
}

/// Starts loading the next part of the client's GeoIP data (see [`Stage`]), once what
/// [`parse`] or the previous stage started has had time to arrive.
pub fn prefetch(snap: &Snapshot, parsed: &Parsed, stage: Stage) {
    if let Some(db) = &snap.table.compiled.geo {
        db.prefetch(parsed.client.addr, stage);
    }
}

/// The second half of [`answer`], for a query [`parse`] took. An answer comes back with
/// the routing decision behind it when the name is traffic-managed (for dnstap).
pub fn respond(
    snap: &Snapshot,
    req: &[u8],
    parsed: &Parsed,
    metrics: &Metrics,
    out: &mut Vec<u8>,
) -> Option<Option<Decision>> {
    let Parsed {
        scanned,
        family,
        client,
    } = *parsed;
    // `scan` has checked the name: labels only, no compression, at most 255 bytes. Its
    // length bytes are below 64, which ASCII lower-casing leaves alone.
    let qname = &req[12..scanned.question_end - 4];
    let mut buf = [0u8; MAX_NAME];
    let name = buf.get_mut(..qname.len())?;
    name.copy_from_slice(qname);
    name.make_ascii_lowercase();
    let table = &snap.table;
    let found = table.compiled.service_names.get(&*name).copied();
    // DO=1 when a zone is signed: static names and wildcard services are the full
    // handler's; an exact service name gets its RRSIGs from the signature cache here.
    let signing = table.compiled.signed && scanned.edns.is_some_and(|e| e.dnssec_ok);
    let Some((service, zone)) = found.or_else(|| wildcard_service(snap, name).filter(|_| !signing))
    else {
        if signing {
            return None;
        }
        return respond_static(snap, req, parsed, name, metrics, out).map(|()| None);
    };
    // SOA or NS at a traffic-managed name: NODATA, the full handler's.
    let family = family?;
    // A CNAME answer (a hostname service) may chase into our zones and compresses its
    // target against the question: the full handler's.
    if table.compiled.service(service).alias {
        return None;
    }
    let q = Query {
        service,
        family,
        client,
    };
    let d = decide(table, &q, &mut NoTrace);
    let endpoints = d.endpoints.as_slice();
    if endpoints.is_empty() {
        return None; // NODATA, SERVFAIL or static fallback: the full handler's business
    }

    // The RRSIGs of the answer, from the zone's signature cache (signed at load for a
    // service answering one endpoint; on first use for a combination of several).
    let signed = match &table.compiled.zone(zone).signer {
        Some(signer) if signing => {
            let mut records = [&table.compiled.endpoint(endpoints[0]).record; MAX_ANSWERS];
            for (slot, id) in records.iter_mut().zip(endpoints) {
                *slot = &table.compiled.endpoint(*id).record;
            }
            let set = &records[..endpoints.len()];
            let owner = &set[0].name;
            let key = rrset_key(owner, set[0].record_type(), set);
            let now = clock::unix_seconds(clock::SystemClock.now());
            Some(signer.rrsigs(key, owner, set, now))
        }
        _ => None,
    };
    let sigs = signed.as_ref().map_or(0, |s| s.rrsigs.len());

    // The header and question, copied in one piece and patched: flags for an authoritative
    // NOERROR; counts 1 / answers / 0 / OPT.
    out.clear();
    out.extend_from_slice(&req[..scanned.question_end]);
    patch_flags(req, 0x04, 0, out);
    out[6..12].copy_from_slice(&[
        0,
        (endpoints.len() + sigs) as u8,
        0,
        0,
        0,
        u8::from(scanned.edns.is_some()),
    ]);
    let mut rr = [0u8; 28];
    // Owner: a pointer to the question name; type, class and TTL as asked and decided.
    rr[..2].copy_from_slice(&[0xC0, 0x0C]);
    rr[2..4].copy_from_slice(&scanned.qtype.to_be_bytes());
    rr[4..6].copy_from_slice(&CLASS_IN.to_be_bytes());
    rr[6..10].copy_from_slice(&d.ttl.to_be_bytes());
    for id in endpoints {
        let len = match table.compiled.endpoint(*id).address {
            Address::Host(_) => return None,
            Address::Ip(IpAddr::V4(a)) => {
                rr[10..12].copy_from_slice(&4u16.to_be_bytes());
                rr[12..16].copy_from_slice(&a.octets());
                16
            }
            Address::Ip(IpAddr::V6(a)) => {
                rr[10..12].copy_from_slice(&16u16.to_be_bytes());
                rr[12..28].copy_from_slice(&a.octets());
                28
            }
        };
        out.extend_from_slice(&rr[..len]);
    }
    if let Some(signed) = &signed {
        out.extend_from_slice(&signed.wire);
    }
    push_opt(snap, &scanned, d.scope, out);
    finish(snap, parsed, zone, ResponseCode::NoError, metrics, out)?;
    snap.counters.count_answer(&d);
    snap.sample.record(snap.sample_tag, &q);
    Some(Some(d))
}

/// The traffic-managed wildcard `*.PARENT` that stands in for `name` (lower-case wire form),
/// which is no name of ours: its parent is then the closest encloser (it exists, as the
/// wildcard's empty non-terminal at least), so the wildcard applies (RFC 4592 3.3.1). Deeper
/// names, and zones with delegations, are left to the full handler.
fn wildcard_service(snap: &Snapshot, name: &[u8]) -> Option<(ServiceId, ZoneId)> {
    let compiled = &snap.table.compiled;
    if !compiled.wildcard_services || snap.templates.has_node(name) {
        return None;
    }
    let parent = name.get(usize::from(*name.first()?) + 1..)?;
    let mut buf = [0u8; MAX_NAME];
    let star = buf.get_mut(..parent.len() + 2)?;
    star[..2].copy_from_slice(&[1, b'*']);
    star[2..].copy_from_slice(parent);
    let (service, zone) = *compiled.service_names.get(&*star)?;
    (!compiled.zone(zone).has_delegations).then_some((service, zone))
}

/// A static answer from the table's prepared responses (see [`super::templates`]).
fn respond_static(
    snap: &Snapshot,
    req: &[u8],
    parsed: &Parsed,
    name: &[u8],
    metrics: &Metrics,
    out: &mut Vec<u8>,
) -> Option<()> {
    let qend = parsed.scanned.question_end;
    let qtype = RecordType::from(parsed.scanned.qtype);
    let (zone, found) = snap.templates.find(name, qtype)?;
    out.clear();
    let (aa, rcode) = match found {
        Static::Response(bytes) => {
            // The same question (but for case), so the sections follow at the same offset
            // and any compression pointer into the question still points at the same name.
            if bytes.len() < qend {
                return None;
            }
            out.extend_from_slice(bytes);
            out[12..qend].copy_from_slice(&req[12..qend]);
            (bytes[2] & 0x04, bytes[3] & 0x0F)
        }
        Static::NxDomain { soa, origin_at } => {
            out.extend_from_slice(&req[..qend]);
            out[6..12].copy_from_slice(&[0, 0, 0, 1, 0, 0]);
            // The SOA's owner is the zone origin: the tail of the question name.
            let origin = (0xC000 | (12 + origin_at) as u16).to_be_bytes();
            out.extend_from_slice(&origin);
            soa.write(origin, out);
            (0x04, 3)
        }
    };
    out[..2].copy_from_slice(&req[..2]);
    patch_flags(req, aa, rcode, out);
    if parsed.scanned.edns.is_some() {
        let additional = u16::from_be_bytes([out[10], out[11]]) + 1;
        out[10..12].copy_from_slice(&additional.to_be_bytes());
    }
    // Static data does not depend on the client: ECS scope 0.
    push_opt(snap, &parsed.scanned, 0, out);
    finish(
        snap,
        parsed,
        zone,
        ResponseCode::from(0, rcode),
        metrics,
        out,
    )
}

/// The response's flags: QR set, opcode and RD copied from the query, AA as given (0x04 or
/// 0), RA and AD clear, CD copied, and `rcode`.
fn patch_flags(req: &[u8], aa: u8, rcode: u8, out: &mut [u8]) {
    out[2] = 0x80 | (req[2] & 0x79) | aa;
    out[3] = (req[3] & 0x10) | rcode;
}

/// Appends the response's OPT record when the query had one: root owner, type OPT, our
/// payload size, extended rcode 0, version 0, DO copied from the query (RFC 3225 3), then
/// the ECS option with `scope` when asked (RFC 7871 7.2.1).
fn push_opt(snap: &Snapshot, scanned: &Scanned, scope: u8, out: &mut Vec<u8>) {
    let Some(edns) = scanned.edns else {
        return;
    };
    let mut opt = [0u8; 11 + 8 + 16];
    opt[1..3].copy_from_slice(&41u16.to_be_bytes());
    opt[3..5].copy_from_slice(&snap.table.compiled.settings.max_udp_payload.to_be_bytes());
    opt[7] = if edns.dnssec_ok { 0x80 } else { 0 };
    let len = match edns.ecs {
        Some(ecs) => {
            let addr_len = usize::from(ecs.source_prefix.div_ceil(8));
            let scope = if ecs.source_prefix == 0 { 0 } else { scope };
            let (family, bytes): (u16, [u8; 16]) = match ecs.addr {
                IpAddr::V4(a) => {
                    let mut b = [0u8; 16];
                    b[..4].copy_from_slice(&a.octets());
                    (1, b)
                }
                IpAddr::V6(a) => (2, a.octets()),
            };
            opt[9..11].copy_from_slice(&(8 + addr_len as u16).to_be_bytes());
            opt[11..13].copy_from_slice(&8u16.to_be_bytes());
            opt[13..15].copy_from_slice(&(4 + addr_len as u16).to_be_bytes());
            opt[15..17].copy_from_slice(&family.to_be_bytes());
            opt[17] = ecs.source_prefix;
            opt[18] = scope;
            opt[19..19 + addr_len].copy_from_slice(&bytes[..addr_len]);
            19 + addr_len
        }
        None => 11,
    };
    out.extend_from_slice(&opt[..len]);
}

/// Checks the response's size and counts it; `None` (the full handler truncates) when it
/// does not fit.
fn finish(
    snap: &Snapshot,
    parsed: &Parsed,
    zone: ZoneId,
    rcode: ResponseCode,
    metrics: &Metrics,
    out: &[u8],
) -> Option<()> {
    let scanned = &parsed.scanned;
    if out.len() > udp_limit(scanned, snap.table.compiled.settings.max_udp_payload) {
        return None;
    }
    snap.counters.count_query(
        Some(zone),
        RecordType::from(scanned.qtype),
        rcode,
        Transport::Udp,
    );
    if scanned.edns.is_some_and(|e| e.ecs.is_some()) {
        metrics.ecs_queries.inc();
    }
    Some(())
}

#[cfg(test)]
#[path = "fast_tests.rs"]
pub(super) mod tests;
