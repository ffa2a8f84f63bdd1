//! DNSSEC for a query with DO=1 to a signed zone: the RRSIGs of every RRset of the answer and
//! authority sections (from the zone's signature cache), and online denial of existence:
//! compact denial (RFC 9824), where a name that does not exist is answered NODATA with an NSEC
//! at the name whose next name is `\000.name` and whose types are NXNAME, RRSIG and NSEC; a
//! name that exists without the type asked gets an NSEC at the name listing its types. A
//! referral carries the DS RRset and its RRSIGs, or an NSEC at the cut proving there is none.
//! No chain of NSECs exists, so the zone cannot be walked.
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::routing::RoutingTable;
use crate::routing::answer::{Answer, wildcard};
use crate::routing::sign::{NXNAME, Signed, ZoneSigner, compact_nsec, content_key, rrset_key};
use crate::routing::table::{Node, Zone};

/// What DNSSEC adds to one response.
#[derive(Default)]
pub struct Proof<'t> {
    /// The response code sent: NXDOMAIN becomes NOERROR under compact denial.
    pub rcode: Option<ResponseCode>,
    /// RRSIGs to place after the answer record at index `.0 - 1` (the end of an RRset).
    pub answer_sigs: Vec<(usize, Arc<Signed>)>,
    /// Likewise for the authority section.
    pub authority_sigs: Vec<(usize, Arc<Signed>)>,
    /// DS records of a referral, from the table.
    pub ds: Vec<&'t Record>,
    /// Denial NSECs, made for this response.
    pub nsec: Vec<Record>,
    /// RRSIGs of `ds` and `nsec`.
    pub more_sigs: Vec<Arc<Signed>>,
}

impl<'t> Proof<'t> {
    /// `records` with the RRSIGs of each RRset after it.
    pub fn interleave<'a>(
        records: &[&'a Record],
        sigs: &'a [(usize, Arc<Signed>)],
    ) -> Vec<&'a Record> {
        let mut out = Vec::with_capacity(records.len() + sigs.len() * 2);
        for (i, r) in records.iter().enumerate() {
            out.push(*r);
            for (end, s) in sigs {
                if *end == i + 1 {
                    out.extend(s.rrsigs.iter());
                }
            }
        }
        out
    }
}

/// The signer of the zone that holds `name`, if that zone is signed.
fn signer_of<'t>(rt: &'t RoutingTable, name: &Name) -> Option<(&'t Zone, &'t ZoneSigner)> {
    let table = &*rt.compiled;
    let zone = table.zone(table.find_zone(&LowerName::new(name))?);
    Some((zone, zone.signer.as_ref()?))
}

/// Signs each RRset (a run of records with one owner and type) of a section. `owners` are the
/// records as they go out (wildcard answers renamed), `originals` as the table holds them.
fn sign_section(
    rt: &RoutingTable,
    owners: &[&Record],
    originals: &[&Record],
    now: u64,
    skip: impl Fn(&Zone, &Record) -> bool,
) -> Vec<(usize, Arc<Signed>)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < owners.len() {
        let first = owners[start];
        let mut end = start + 1;
        while end < owners.len()
            && owners[end].record_type() == first.record_type()
            && owners[end].name == first.name
        {
            end += 1;
        }
        if let Some((zone, signer)) = signer_of(rt, &first.name)
            && !skip(zone, first)
        {
            let set = &originals[start..end];
            let key = rrset_key(&first.name, first.record_type(), set);
            out.push((end, signer.rrsigs(key, &first.name, set, now)));
        }
        start = end;
    }
    out
}

/// The types a node holds, as its NSEC lists them.
fn node_types(rt: &RoutingTable, node: &Node) -> Vec<RecordType> {
    let mut types: Vec<RecordType> = node.rrsets.iter().map(|(t, _)| *t).collect();
    if let Some(s) = node.service {
        let svc = rt.compiled.service(s);
        if svc.alias {
            types.push(RecordType::CNAME);
        } else {
            if svc.regions.iter().any(|r| !r.v4.is_empty()) {
                types.push(RecordType::A);
            }
            if svc.regions.iter().any(|r| !r.v6.is_empty()) {
                types.push(RecordType::AAAA);
            }
        }
    }
    types
}

/// The proof for an answer to `qname`: signatures and, for a negative answer or a referral,
/// the NSEC or DS that goes with it. `answers` are the records as they go out.
pub fn prove<'t>(
    rt: &'t RoutingTable,
    qname: &LowerName,
    ans: &Answer<'t>,
    answers: &[&Record],
    now: u64,
) -> Proof<'t> {
    let mut proof = Proof {
        answer_sigs: sign_section(rt, answers, &ans.answers, now, |_, _| false),
        ..Proof::default()
    };
    if !matches!(ans.rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
        return proof;
    }
    // NS records below the apex are a referral: the child signs them, not us.
    let cut = |zone: &Zone, r: &Record| {
        r.record_type() == RecordType::NS && LowerName::new(&r.name) != zone.origin
    };
    proof.authority_sigs = sign_section(rt, &ans.authority, &ans.authority, now, cut);

    let negative = ans
        .authority
        .iter()
        .any(|r| r.record_type() == RecordType::SOA);
    if let Some(ns) = ans.authority.iter().find(|r| {
        r.record_type() == RecordType::NS
            && signer_of(rt, &r.name).is_some_and(|(zone, _)| cut(zone, r))
    }) {
        // A referral: the DS RRset, or an NSEC at the cut without DS.
        let Some((zone, signer)) = signer_of(rt, &ns.name) else {
            return proof;
        };
        let Some(node) = zone.nodes.get(&LowerName::new(&ns.name)) else {
            return proof;
        };
        if let Some(ds) = node.rrset(RecordType::DS) {
            let set: Vec<&Record> = ds.iter().collect();
            let key = rrset_key(&ns.name, RecordType::DS, &set);
            proof
                .more_sigs
                .push(signer.rrsigs(key, &ns.name, &set, now));
            proof.ds = ds.iter().collect();
        } else {
            let types = node_types(rt, node);
            deny(
                signer,
                &ns.name,
                &types,
                zone.negative_soa.ttl,
                now,
                &mut proof,
            );
        }
        return proof;
    }
    if !negative {
        return proof;
    }
    // The name the answer ends at: the query name, or the last CNAME's target.
    let name: Name = match answers.last().map(|r| &r.data) {
        Some(RData::CNAME(target)) => target.0.clone(),
        _ => Name::from(qname),
    };
    let Some((zone, signer)) = signer_of(rt, &name) else {
        return proof;
    };
    let lower = LowerName::new(&name);
    let types = if ans.rcode == ResponseCode::NXDomain {
        proof.rcode = Some(ResponseCode::NoError);
        vec![RecordType::Unknown(NXNAME)]
    } else {
        match zone.nodes.get(&lower).or_else(|| wildcard(zone, &lower)) {
            Some(node) => node_types(rt, node),
            None => Vec::new(),
        }
    };
    deny(
        signer,
        &name,
        &types,
        zone.negative_soa.ttl,
        now,
        &mut proof,
    );
    proof
}

/// Adds a signed compact-denial NSEC at `name`.
fn deny(
    signer: &ZoneSigner,
    name: &Name,
    types: &[RecordType],
    ttl: u32,
    now: u64,
    proof: &mut Proof<'_>,
) {
    let nsec = compact_nsec(name, types, ttl);
    let key = content_key(&nsec);
    proof
        .more_sigs
        .push(signer.rrsigs(key, name, &[&nsec], now));
    proof.nsec.push(nsec);
}

/// Signs everything a signed zone can answer the same way for every client, when a compiled
/// config's first snapshot is built: each static RRset and negative SOA, and for services that
/// answer with one endpoint, each endpoint's record and the fallback sets (the only RRsets
/// they can answer). Answers with several endpoints are signed on first use. Returns how
/// many RRsets were signed (or found signed).
pub fn presign(rt: &RoutingTable, now: u64) -> usize {
    let table = &*rt.compiled;
    let mut n = 0;
    let mut sign = |signer: &ZoneSigner, set: &[&Record]| {
        if let Some(first) = set.first() {
            let key = rrset_key(&first.name, first.record_type(), set);
            signer.rrsigs(key, &first.name, set, now);
            n += 1;
        }
    };
    for zone in &table.zones {
        let Some(signer) = &zone.signer else {
            continue;
        };
        for (name, node) in &zone.nodes {
            if name.is_wildcard() {
                continue;
            }
            for (t, set) in &node.rrsets {
                if *t == RecordType::NS && *name != zone.origin {
                    continue;
                }
                let refs: Vec<&Record> = set.iter().collect();
                sign(signer, &refs);
            }
        }
        sign(signer, &[&zone.negative_soa]);
    }
    for svc in &table.services {
        if svc.name.is_wildcard() {
            continue;
        }
        let Some((_, signer)) = signer_of(rt, &svc.name) else {
            continue;
        };
        if svc.answers == 1 || svc.alias {
            for r in svc.regions.iter() {
                for id in r.v4.iter().chain(r.v6.iter()) {
                    sign(signer, &[&table.endpoint(*id).record]);
                }
            }
        }
        if let crate::routing::table::AllDown::Fallback { v4, v6 } = &svc.on_all_down {
            for set in [v4, v6] {
                let refs: Vec<&Record> = set.iter().collect();
                sign(signer, &refs);
            }
        }
    }
    n
}
