//! Answer assembly: zone lookup, CNAME chains through our zones, delegations, negative
//! answers, and the call into [`decide`] for traffic-managed names (whose answer is a CNAME
//! when their endpoints are hostnames). Pure, like `decide`: the DNS handler
//! and `explain` both call [`answer`].
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use super::decide::decide;
use super::query::{Client, Decision, Query, Reason};
use super::table::{AllDown, Family, Node, RoutingTable, ServiceId, Zone, ZoneId};
use super::trace::Trace;

/// Longest CNAME chain followed through our zones before giving up (guards against loops).
const MAX_CNAME_HOPS: usize = 8;

/// `answers[from..to]` came from a wildcard and go out with `owner` (RFC 4592 3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synthesized {
    pub from: usize,
    pub to: usize,
    pub owner: Name,
}

#[derive(Debug)]
pub struct Answer<'t> {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<&'t Record>,
    pub authority: Vec<&'t Record>,
    /// Glue: addresses of in-zone name servers, which a referral needs.
    pub additional: Vec<&'t Record>,
    /// Addresses of in-zone MX and SRV targets (as Knot adds them): optional, left out first
    /// when the response would not fit.
    pub extra: Vec<&'t Record>,
    /// Runs of `answers` synthesized from a wildcard, whose owner is the name asked for.
    pub synthesized: Vec<Synthesized>,
    /// The routing decision, when a traffic-managed name was reached.
    pub decision: Option<Decision>,
    pub zone: Option<ZoneId>,
}

impl Answer<'_> {
    fn new(rcode: ResponseCode, authoritative: bool, zone: Option<ZoneId>) -> Self {
        Answer {
            rcode,
            authoritative,
            answers: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
            extra: Vec::new(),
            synthesized: Vec::new(),
            decision: None,
            zone,
        }
    }

    /// The answer records with the owners they go out under, when a wildcard synthesized
    /// any (copies, renamed); `None` when `answers` go out as they are.
    pub fn renamed(&self) -> Option<Vec<Record>> {
        if self.synthesized.is_empty() {
            return None;
        }
        let mut out: Vec<Record> = self.answers.iter().map(|r| (*r).clone()).collect();
        for s in &self.synthesized {
            for rec in &mut out[s.from..s.to] {
                rec.name = s.owner.clone();
            }
        }
        Some(out)
    }

    /// ECS scope prefix to return: what the decision depended on, 0 for static data.
    pub fn ecs_scope(&self) -> u8 {
        self.decision.map_or(0, |d| d.scope)
    }
}

/// Answers one question from the table.
pub fn answer<'t>(
    rt: &'t RoutingTable,
    qname: &LowerName,
    qtype: RecordType,
    client: &Client,
    trace: &mut impl Trace,
) -> Answer<'t> {
    let table = &*rt.compiled;
    let Some(zid) = table.find_zone(qname) else {
        return Answer::new(ResponseCode::Refused, false, None);
    };
    let mut zone = table.zone(zid);
    let mut ans = Answer::new(ResponseCode::NoError, true, Some(zid));
    let mut name = qname.clone();
    // Targets a CNAME chain has passed through (nothing is allocated until one is followed).
    let mut visited: Vec<LowerName> = Vec::new();
    for _ in 0..MAX_CNAME_HOPS {
        // DS lives on the parent side of a cut (RFC 4035 3.1.4.1): at the cut itself the
        // parent answers it, so look for a cut strictly above the name.
        let below = if qtype == RecordType::DS && name != zone.origin {
            name.base_name()
        } else {
            name.clone()
        };
        if zone.has_delegations
            && let Some(cut) = delegation(zone, &below)
        {
            referral(zone, cut, &mut ans);
            return ans;
        }
        let (node, synthesized) = match zone.nodes.get(&name) {
            Some(node) => (node, false),
            None => match wildcard(zone, &name) {
                Some(node) => (node, true),
                None => {
                    ans.rcode = ResponseCode::NXDomain;
                    ans.authority.push(&zone.negative_soa);
                    return ans;
                }
            },
        };
        let from = ans.answers.len();
        let next = at_node(rt, zone, node, qtype, client, trace, &mut ans);
        if synthesized && ans.answers.len() > from {
            ans.synthesized.push(Synthesized {
                from,
                to: ans.answers.len(),
                owner: Name::from(&name),
            });
        }
        match next {
            // Every RR appears once (RFC 2181 5): a target already passed through is a loop
            // (a wildcard can make one that `meridian check` cannot see).
            Some(target) if target == *qname || visited.contains(&target) => return ans,
            Some(target) => {
                // The target is answered from the most specific of our zones holding it,
                // which may be another one (RFC 1034 4.3.2 step 3a: back to step 1, which
                // searches every zone we hold).
                if let Some(next) = table.find_zone(&target) {
                    zone = table.zone(next);
                }
                visited.push(target.clone());
                name = target;
            }
            None => return ans,
        }
    }
    // A chain longer than we follow: answer with what we have, as resolvers will chase it.
    ans
}

/// Answers from one node (found, or the wildcard standing in for the name); returns the
/// in-zone CNAME target to go on with, if any.
fn at_node<'t>(
    rt: &'t RoutingTable,
    zone: &'t Zone,
    node: &'t Node,
    qtype: RecordType,
    client: &Client,
    trace: &mut impl Trace,
    ans: &mut Answer<'t>,
) -> Option<LowerName> {
    let table = &*rt.compiled;
    if let Some(service) = node.service
        && table.service(service).alias
    {
        return at_alias(rt, zone, service, qtype, client, trace, ans);
    }
    if let Some(service) = node.service {
        let svc = table.service(service);
        let family = match qtype {
            RecordType::ANY if svc.regions.iter().any(|r| !r.v4.is_empty()) => Some(Family::V4),
            RecordType::ANY => Some(Family::V6),
            t => Family::of_record_type(t),
        };
        if let Some(family) = family {
            let q = Query {
                service,
                family,
                client: *client,
            };
            let d = decide(rt, &q, trace);
            match (&svc.on_all_down, d.reason) {
                (_, Reason::ServFail | Reason::GuardServFail) => {
                    ans.rcode = ResponseCode::ServFail;
                    ans.authoritative = false;
                }
                (AllDown::Fallback { v4, v6 }, Reason::Fallback) => {
                    ans.answers.extend(match family {
                        Family::V4 => v4.iter(),
                        Family::V6 => v6.iter(),
                    });
                }
                _ => ans.answers.extend(
                    d.endpoints
                        .as_slice()
                        .iter()
                        .map(|id| &table.endpoint(*id).record),
                ),
            }
            if ans.answers.is_empty() && ans.rcode == ResponseCode::NoError {
                ans.authority.push(&zone.negative_soa);
            }
            record_decision(ans, d);
            return None;
        }
    }
    if qtype != RecordType::CNAME
        && let Some([cname, ..]) = node.rrset(RecordType::CNAME)
    {
        ans.answers.push(cname);
        // ANY at an alias is the alias alone (RFC 1034 4.3.2 step 3a: not chased).
        if qtype == RecordType::ANY {
            return None;
        }
        return cname_target(rt, cname);
    }
    let rrset = match qtype {
        // RFC 8482: one RRset, not the whole node.
        RecordType::ANY => node.rrsets.first().map(|(_, set)| &set[..]),
        _ => node.rrset(qtype),
    };
    match rrset {
        Some(set) => {
            ans.answers.extend(set.iter());
            match qtype {
                RecordType::NS => glue(zone, set, &mut ans.additional),
                RecordType::MX | RecordType::SRV => target_addresses(zone, set, &mut ans.extra),
                _ => {}
            }
        }
        None => ans.authority.push(&zone.negative_soa),
    }
    None
}

/// Keeps the latest decision of the answer; a chain through several traffic-managed names
/// depends on every decision in it, so its ECS scope is the longest of theirs.
fn record_decision(ans: &mut Answer<'_>, d: Decision) {
    let scope = ans
        .decision
        .map_or(d.scope, |first| first.scope.max(d.scope));
    ans.decision = Some(Decision { scope, ..d });
}

/// The target of a CNAME record, when it is a name of one of our zones (to be followed).
fn cname_target(rt: &RoutingTable, cname: &Record) -> Option<LowerName> {
    let RData::CNAME(target) = &cname.data else {
        return None;
    };
    let target = LowerName::new(&target.0);
    rt.compiled.find_zone(&target).map(|_| target)
}

/// A hostname service: every question gets a CNAME to the endpoint the policy picks (one),
/// followed like any CNAME when it leads into one of our zones. When nothing is healthy,
/// `on_all_down` applies as for addresses: SERVFAIL, or the static `fallback` addresses.
fn at_alias<'t>(
    rt: &'t RoutingTable,
    zone: &'t Zone,
    service: ServiceId,
    qtype: RecordType,
    client: &Client,
    trace: &mut impl Trace,
    ans: &mut Answer<'t>,
) -> Option<LowerName> {
    let table = &*rt.compiled;
    let svc = table.service(service);
    // Each endpoint is in both families' lists: the walk is the same for every question.
    let family = Family::of_record_type(qtype).unwrap_or(Family::V4);
    let q = Query {
        service,
        family,
        client: *client,
    };
    let d = decide(rt, &q, trace);
    record_decision(ans, d);
    match (&svc.on_all_down, d.reason) {
        (_, Reason::ServFail | Reason::GuardServFail) => {
            ans.rcode = ResponseCode::ServFail;
            ans.authoritative = false;
            None
        }
        (AllDown::Fallback { v4, v6 }, Reason::Fallback) => {
            match Family::of_record_type(qtype) {
                Some(Family::V4) => ans.answers.extend(v4.iter()),
                Some(Family::V6) => ans.answers.extend(v6.iter()),
                None => {}
            }
            if ans.answers.is_empty() {
                ans.authority.push(&zone.negative_soa);
            }
            None
        }
        _ => {
            let id = *d.endpoints.as_slice().first()?;
            let cname = &table.endpoint(id).record;
            ans.answers.push(cname);
            // The alias alone for CNAME and ANY questions (RFC 1034 4.3.2, RFC 8482).
            if matches!(qtype, RecordType::CNAME | RecordType::ANY) {
                return None;
            }
            cname_target(rt, cname)
        }
    }
}

/// The wildcard that stands in for `name`, which is not a node of `zone`: `*.` its closest
/// encloser, the longest ancestor that exists (RFC 4592 3.3.1), if that wildcard exists.
/// Names at or below an existing name or empty non-terminal are never synthesized.
pub fn wildcard<'z>(zone: &'z Zone, name: &LowerName) -> Option<&'z Node> {
    if !zone.has_wildcards {
        return None;
    }
    let mut encloser = name.base_name();
    while !zone.nodes.contains_key(&encloser) {
        if encloser == zone.origin || encloser.is_root() {
            return None;
        }
        encloser = encloser.base_name();
    }
    let star = Name::from(&encloser).prepend_label("*").ok()?;
    zone.nodes.get(&LowerName::new(&star))
}

/// The mnemonic `dig` prints for a response code ("OTHER" for codes Meridian never sends).
pub fn rcode_name(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::BADVERS => "BADVERS",
        _ => "OTHER",
    }
}

/// The closest zone cut at or above `name` (below the apex), if any.
fn delegation<'z>(zone: &'z Zone, name: &LowerName) -> Option<&'z Node> {
    let mut cur = name.clone();
    let mut cut = None;
    while cur != zone.origin && !cur.is_root() {
        if let Some(node) = zone.nodes.get(&cur)
            && node.rrset(RecordType::NS).is_some()
        {
            cut = Some(node);
        }
        cur = cur.base_name();
    }
    cut
}

/// A referral to the cut's name servers. Not authoritative, unless the answer already holds
/// our own CNAMEs that led below the cut (RFC 1035 4.1.1: AA covers the answer section).
fn referral<'t>(zone: &'t Zone, cut: &'t Node, ans: &mut Answer<'t>) {
    ans.authoritative = !ans.answers.is_empty();
    if let Some(ns) = cut.rrset(RecordType::NS) {
        ans.authority.extend(ns.iter());
        glue(zone, ns, &mut ans.additional);
    }
}

/// Addresses of in-zone name servers, for the additional section.
fn glue<'t>(zone: &'t Zone, ns: &'t [Record], out: &mut Vec<&'t Record>) {
    for rec in ns {
        if let RData::NS(target) = &rec.data {
            addresses_of(zone, &target.0, out);
        }
    }
}

/// Static addresses of the in-zone targets of MX or SRV records, each target once.
fn target_addresses<'t>(zone: &'t Zone, set: &'t [Record], out: &mut Vec<&'t Record>) {
    for rec in set {
        let target = match &rec.data {
            RData::MX(mx) => &mx.exchange,
            RData::SRV(srv) => &srv.target,
            _ => continue,
        };
        let seen = set
            .iter()
            .take_while(|r| !std::ptr::eq(*r, rec))
            .any(|r| match &r.data {
                RData::MX(mx) => &mx.exchange == target,
                RData::SRV(srv) => &srv.target == target,
                _ => false,
            });
        if !seen {
            addresses_of(zone, target, out);
        }
    }
}

/// The A and AAAA records stored at `name`, if it is a name of `zone`.
fn addresses_of<'t>(zone: &'t Zone, name: &Name, out: &mut Vec<&'t Record>) {
    if let Some(node) = zone.nodes.get(&LowerName::new(name)) {
        for t in [RecordType::A, RecordType::AAAA] {
            out.extend(node.rrset(t).into_iter().flatten());
        }
    }
}
