//! Prometheus metrics. Two kinds:
//! - DNS-path counters ([`DnsCounters`]): dense arrays of atomics built with each compiled
//!   config and indexed by ids, so counting a query takes no lock and hashes no label; they
//!   are rendered at scrape time, and only the series that moved are exported.
//! - Everything else (probes, health, evacuations, reloads): ordinary `prometheus` vectors,
//!   updated by the publisher off the DNS path.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::routing::decide::{Decision, Reason};
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
const RCODES: [&str; 8] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "OTHER",
];
const TRANSPORTS: [&str; 2] = ["udp", "tcp"];
const REASONS: [Reason; 13] = Reason::ALL;

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
    match r {
        ResponseCode::NoError => 0,
        ResponseCode::FormErr => 1,
        ResponseCode::ServFail => 2,
        ResponseCode::NXDomain => 3,
        ResponseCode::NotImp => 4,
        ResponseCode::Refused => 5,
        ResponseCode::BADVERS => 6,
        _ => 7,
    }
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
            queries: zeros(zones.len() * QTYPE_SLOTS * RCODES.len() * TRANSPORTS.len()),
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
        let i = ((z * QTYPE_SLOTS + qtype_slot(qtype)) * RCODES.len() + rcode_slot(rcode)) * 2
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

    /// Every non-zero series as (family, labels, value).
    fn series(&self) -> Vec<(&'static str, Vec<String>, u64)> {
        let mut out = Vec::new();
        for (i, c) in self.queries.iter().enumerate() {
            let v = c.load(Ordering::Relaxed);
            if v == 0 {
                continue;
            }
            let t = i % 2;
            let r = (i / 2) % RCODES.len();
            let q = (i / 2 / RCODES.len()) % QTYPE_SLOTS;
            let z = i / 2 / RCODES.len() / QTYPE_SLOTS;
            let labels = vec![
                self.zones[z].clone(),
                qtype_label(q),
                RCODES[r].to_string(),
                TRANSPORTS[t].to_string(),
            ];
            out.push((QUERIES, labels, v));
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
            out.push((ANSWERS, labels, v));
        }
        out
    }
}

const QUERIES: &str = "meridian_dns_queries_total";
const ANSWERS: &str = "meridian_dns_answers_total";

/// The process-wide registry and the metrics the publisher and admin API update.
pub struct Metrics {
    registry: Registry,
    pub ecs_queries: IntCounter,
    pub udp_duration: Histogram,
    pub tcp_duration: Histogram,
    pub probe_results: IntCounterVec,
    pub probe_duration: HistogramVec,
    pub endpoint_up: IntGaugeVec,
    pub region_up: IntGaugeVec,
    pub region_evacuated: IntGaugeVec,
    pub evacuated_since: IntGaugeVec,
    pub service_all_down: IntGaugeVec,
    pub all_down_total: IntCounterVec,
    pub generation: IntGauge,
    pub reloads: IntCounterVec,
    pub tcp_connections: IntGauge,
    pub tcp_rejected: IntCounter,
    pub tcp_query_limit: IntCounter,
    pub rrl: IntCounterVec,
    pub cluster_connected: IntGauge,
    pub cluster_applied_revision: IntGauge,
    pub cluster_store_revision: IntGauge,
    pub cluster_peers: IntGauge,
    pub cluster_config_drift: IntGauge,
    /// DNS counts of configs replaced by a reload, so counters never go backwards.
    carried: Mutex<BTreeMap<(&'static str, Vec<String>), u64>>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
            registry
                .register(Box::new(c.clone()))
                .unwrap_or_else(|e| panic!("metric {name}: {e}"));
            c
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| panic!("metric {name}: {e}"));
            registry
                .register(Box::new(c.clone()))
                .unwrap_or_else(|e| panic!("metric {name}: {e}"));
            c
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| panic!("metric {name}: {e}"));
            registry
                .register(Box::new(g.clone()))
                .unwrap_or_else(|e| panic!("metric {name}: {e}"));
            g
        };
        let histogram_vec = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
                .unwrap_or_else(|e| panic!("metric {name}: {e}"));
            registry
                .register(Box::new(h.clone()))
                .unwrap_or_else(|e| panic!("metric {name}: {e}"));
            h
        };
        let query_duration = histogram_vec(
            "meridian_dns_query_duration_seconds",
            "Time from a parsed query to its response being handed to the socket.",
            &["transport"],
            prometheus::exponential_buckets(0.000_005, 2.0, 16).unwrap_or_default(),
        );
        let generation = IntGauge::new(
            "meridian_routing_table_generation",
            "Generation of the routing table being served; grows with every publish.",
        )
        .unwrap_or_else(|e| panic!("generation: {e}"));
        registry
            .register(Box::new(generation.clone()))
            .unwrap_or_else(|e| panic!("generation: {e}"));
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
            registry
                .register(Box::new(g.clone()))
                .unwrap_or_else(|e| panic!("metric {name}: {e}"));
            g
        };
        let cluster_connected = gauge(
            "meridian_cluster_connected",
            "Fleet mode: 1 while connected to etcd.",
        );
        let cluster_applied_revision = gauge(
            "meridian_cluster_applied_revision",
            "Fleet mode: etcd revision of the admin state applied here.",
        );
        let cluster_store_revision = gauge(
            "meridian_cluster_store_revision",
            "Fleet mode: etcd's current revision at the last check (minus applied = watch lag).",
        );
        let cluster_peers = gauge("meridian_cluster_peers", "Fleet mode: live peer instances.");
        let cluster_config_drift = gauge(
            "meridian_cluster_config_drift_peers",
            "Fleet mode: live peers whose config differs from this instance's.",
        );
        let build = gauge_vec(
            "meridian_build_info",
            "Meridian build information.",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        #[cfg(target_os = "linux")]
        {
            let _ = registry.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ));
        }
        Metrics {
            ecs_queries: counter(
                "meridian_dns_ecs_queries_total",
                "Queries that carried EDNS Client Subnet.",
            ),
            udp_duration: query_duration.with_label_values(&["udp"]),
            tcp_duration: query_duration.with_label_values(&["tcp"]),
            probe_results: counter_vec(
                "meridian_probe_results_total",
                "Health probe results by target and check.",
                &["target", "check", "result"],
            ),
            probe_duration: histogram_vec(
                "meridian_probe_duration_seconds",
                "Health probe latency (to response headers, or to connect for tcp).",
                &["target", "check"],
                prometheus::exponential_buckets(0.000_5, 2.0, 14).unwrap_or_default(),
            ),
            endpoint_up: gauge_vec(
                "meridian_endpoint_up",
                "1 while an endpoint serves (up, unknown or unmonitored), 0 while down.",
                &["service", "region", "address"],
            ),
            region_up: gauge_vec(
                "meridian_region_up",
                "1 while a region has enough healthy endpoints for a service.",
                &["service", "region"],
            ),
            region_evacuated: gauge_vec(
                "meridian_region_evacuated",
                "1 while a region is evacuated.",
                &["region"],
            ),
            evacuated_since: gauge_vec(
                "meridian_region_evacuated_since_seconds",
                "Unix time an evacuation started; 0 when the region is not evacuated.",
                &["region"],
            ),
            service_all_down: gauge_vec(
                "meridian_service_all_down",
                "1 while no region of a service is healthy (on_all_down in effect).",
                &["service", "family"],
            ),
            all_down_total: counter_vec(
                "meridian_all_down_total",
                "Times a service entered the state where no region is healthy.",
                &["service"],
            ),
            generation,
            reloads: counter_vec(
                "meridian_config_reloads_total",
                "Config reloads by result.",
                &["result"],
            ),
            tcp_connections: gauge("meridian_tcp_connections", "Open DNS-over-TCP connections."),
            tcp_rejected: counter(
                "meridian_tcp_rejected_total",
                "TCP connections closed at once because the connection cap was reached.",
            ),
            tcp_query_limit: counter(
                "meridian_tcp_query_limit_total",
                "TCP connections closed after their maximum number of queries.",
            ),
            rrl: counter_vec(
                "meridian_rrl_responses_total",
                "UDP responses held back by response rate limiting, by action.",
                &["action"],
            ),
            cluster_connected,
            cluster_applied_revision,
            cluster_store_revision,
            cluster_peers,
            cluster_config_drift,
            registry,
            carried: Mutex::new(BTreeMap::new()),
        }
    }

    /// Folds the counts of a config being replaced into the carried totals.
    pub fn carry(&self, old: &DnsCounters) {
        let mut carried = self.carried.lock().unwrap_or_else(|e| e.into_inner());
        for (family, labels, v) in old.series() {
            *carried.entry((family, labels)).or_default() += v;
        }
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self, current: &DnsCounters) -> String {
        let mut out = String::new();
        let mut merged = self
            .carried
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (family, labels, v) in current.series() {
            *merged.entry((family, labels)).or_default() += v;
        }
        let families = [
            (
                QUERIES,
                "DNS queries by zone, query type, response code and transport.",
                &["zone", "qtype", "rcode", "transport"][..],
            ),
            (
                ANSWERS,
                "Traffic-managed answers by service, region and decision reason.",
                &["service", "region", "reason"][..],
            ),
        ];
        for (name, help, label_names) in families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for ((family, labels), v) in merged.iter().filter(|((f, _), _)| *f == name) {
                let _ = family;
                let pairs = label_names
                    .iter()
                    .zip(labels)
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect::<Vec<_>>()
                    .join(",");
                let _ = writeln!(out, "{name}{{{pairs}}} {v}");
            }
        }
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_ok()
        {
            out.push_str(&String::from_utf8_lossy(&buf));
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
