//! The DNS path's counters: dense arrays of atomics built with each compiled config and
//! indexed by ids, so counting a query takes no lock and hashes no label. They are rendered at
//! scrape time through [`crate::metrics`], and only the series that moved are exported.
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::metrics::{CounterFamily, Series};
use crate::routing::answer::rcode_name;
use crate::routing::query::{Decision, Reason};
use crate::routing::table::{Compiled, ZoneId};

/// Query types counted under their own label; the rest count as "other".
const QTYPES: [RecordType; 12] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::ANY,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::NS,
    RecordType::SOA,
    RecordType::TXT,
    RecordType::SRV,
    RecordType::CAA,
    RecordType::PTR,
    RecordType::HTTPS,
];
const QTYPE_SLOTS: usize = QTYPES.len() + 1;
/// Response codes counted under their own label; the rest count as "OTHER".
const RCODES: [ResponseCode; 7] = [
    ResponseCode::NoError,
    ResponseCode::FormErr,
    ResponseCode::ServFail,
    ResponseCode::NXDomain,
    ResponseCode::NotImp,
    ResponseCode::Refused,
    ResponseCode::BADVERS,
];
const RCODE_SLOTS: usize = RCODES.len() + 1;
const TRANSPORTS: [&str; 2] = ["udp", "tcp"];
const REASONS: [Reason; 17] = Reason::ALL;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

fn qtype_slot(t: RecordType) -> usize {
    QTYPES.iter().position(|q| *q == t).unwrap_or(QTYPES.len())
}

fn qtype_label(slot: usize) -> String {
    QTYPES
        .get(slot)
        .map_or("other".to_string(), |t| t.to_string())
}

fn rcode_slot(r: ResponseCode) -> usize {
    RCODES.iter().position(|c| *c == r).unwrap_or(RCODES.len())
}

fn rcode_label(slot: usize) -> &'static str {
    RCODES.get(slot).map_or("OTHER", |r| rcode_name(*r))
}

fn reason_slot(r: Reason) -> usize {
    REASONS.iter().position(|x| *x == r).unwrap_or(0)
}

/// Per-config DNS counters. Slot 0 of zones is "outside every zone"; slot 0 of regions is
/// "no region" (servfail, fallback, no endpoints).
#[derive(Debug)]
pub struct DnsCounters {
    zones: Box<[String]>,
    queries: Box<[AtomicU64]>,
    services: Box<[String]>,
    regions: Box<[String]>,
    answers: Box<[AtomicU64]>,
}

impl DnsCounters {
    pub fn new(c: &Compiled) -> DnsCounters {
        let zones: Box<[String]> = std::iter::once(String::new())
            .chain(c.zones.iter().map(|z| z.origin.to_string()))
            .collect();
        let regions: Box<[String]> = std::iter::once(String::new())
            .chain(c.regions.iter().map(|r| r.name.clone()))
            .collect();
        let services: Box<[String]> = c.services.iter().map(|s| s.name.to_ascii()).collect();
        let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>();
        DnsCounters {
            queries: zeros(zones.len() * QTYPE_SLOTS * RCODE_SLOTS * TRANSPORTS.len()),
            answers: zeros(services.len() * regions.len() * REASONS.len()),
            zones,
            services,
            regions,
        }
    }

    #[inline]
    pub fn count_query(
        &self,
        zone: Option<ZoneId>,
        qtype: RecordType,
        rcode: ResponseCode,
        t: Transport,
    ) {
        let z = zone.map_or(0, |z| z.index() + 1);
        let i = ((z * QTYPE_SLOTS + qtype_slot(qtype)) * RCODE_SLOTS + rcode_slot(rcode)) * 2
            + t as usize;
        if let Some(c) = self.queries.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[inline]
    pub fn count_answer(&self, d: &Decision) {
        let r = d.region.map_or(0, |r| r.index() + 1);
        let i =
            (d.service.index() * self.regions.len() + r) * REASONS.len() + reason_slot(d.reason);
        if let Some(c) = self.answers.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Answers counted per region slot (0: no region, then by [`crate::routing::table::RegionId`]
    /// + 1), over every service and reason.
    pub fn region_answers(&self) -> Vec<u64> {
        let mut out = vec![0; self.regions.len()];
        for (i, c) in self.answers.iter().enumerate() {
            let region = (i / REASONS.len()) % self.regions.len();
            out[region] += c.load(Ordering::Relaxed);
        }
        out
    }

    /// Every non-zero series, for rendering and for carrying over a reload.
    pub fn series(&self) -> Vec<Series> {
        let mut out = Vec::new();
        // Guard blocks by (service, action), summed over regions.
        let mut blocked = std::collections::BTreeMap::<(usize, &str), u64>::new();
        for (i, c) in self.queries.iter().enumerate() {
            let v = c.load(Ordering::Relaxed);
            if v == 0 {
                continue;
            }
            let t = i % 2;
            let r = (i / 2) % RCODE_SLOTS;
            let q = (i / 2 / RCODE_SLOTS) % QTYPE_SLOTS;
            let z = i / 2 / RCODE_SLOTS / QTYPE_SLOTS;
            let labels = vec![
                self.zones[z].clone(),
                qtype_label(q),
                rcode_label(r).to_string(),
                TRANSPORTS[t].to_string(),
            ];
            out.push(Series {
                family: QUERIES.name,
                labels,
                value: v,
            });
        }
        for (i, c) in self.answers.iter().enumerate() {
            let v = c.load(Ordering::Relaxed);
            if v == 0 {
                continue;
            }
            let reason = REASONS[i % REASONS.len()];
            let region = (i / REASONS.len()) % self.regions.len();
            let service = i / REASONS.len() / self.regions.len();
            let labels = vec![
                self.services[service].clone(),
                self.regions[region].clone(),
                reason.name().to_string(),
            ];
            out.push(Series {
                family: ANSWERS.name,
                labels,
                value: v,
            });
            let action = match reason {
                Reason::GuardHold => "hold",
                Reason::GuardServFail => "servfail",
                _ => continue,
            };
            *blocked.entry((service, action)).or_default() += v;
        }
        for ((service, action), value) in blocked {
            out.push(Series {
                family: GUARD_BLOCKED.name,
                labels: vec![self.services[service].clone(), action.to_string()],
                value,
            });
        }
        out
    }
}

const QUERIES: CounterFamily = CounterFamily {
    name: "meridian_dns_queries_total",
    help: "DNS queries by zone, query type, response code and transport.",
    labels: &["zone", "qtype", "rcode", "transport"],
};
const ANSWERS: CounterFamily = CounterFamily {
    name: "meridian_dns_answers_total",
    help: "Traffic-managed answers by service, region and decision reason.",
    labels: &["service", "region", "reason"],
};
const GUARD_BLOCKED: CounterFamily = CounterFamily {
    name: "meridian_guard_blocked_total",
    help: "Answers a promote_guard held on the client's first region or refused with SERVFAIL, by service and on_unsafe action.",
    labels: &["service", "action"],
};
/// The families [`DnsCounters::series`] reports, for [`crate::metrics::Metrics::render`].
pub const FAMILIES: [CounterFamily; 3] = [QUERIES, ANSWERS, GUARD_BLOCKED];
