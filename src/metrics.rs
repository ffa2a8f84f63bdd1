//! Prometheus metrics: the process-wide registry and the metrics the publisher, admin API and
//! listeners update, plus the rendering of counter families kept outside the registry (the
//! DNS path's dense per-config counters, [`crate::dns::counters`]), with totals carried
//! across reloads so counters never go backwards. A leaf: it knows no routing or DNS types.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// A counter family rendered from [`Series`] rather than held in the registry.
#[derive(Debug, Clone, Copy)]
pub struct CounterFamily {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

/// One counter series of a [`CounterFamily`]: label values in the family's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub family: &'static str,
    pub labels: Vec<String>,
    pub value: u64,
}

/// The process-wide registry and the metrics the publisher and admin API update.
pub struct Metrics {
    registry: Registry,
    pub ecs_queries: IntCounter,
    pub udp_duration: Histogram,
    pub tcp_duration: Histogram,
    /// Probe results and latency by check; by target as well only when
    /// `server.metrics_endpoints = "all"` (a series per target does not scale to many names).
    pub probe_results: IntCounterVec,
    pub probe_duration: HistogramVec,
    pub probe_target_results: IntCounterVec,
    pub probe_target_duration: HistogramVec,
    pub region_evacuated: IntGaugeVec,
    pub evacuated_since: IntGaugeVec,
    pub drain_percent: GaugeVec,
    pub probe_figure: GaugeVec,
    pub endpoint_promotable: IntGaugeVec,
    pub safety_violations: IntCounterVec,
    pub ramp_aborts: IntCounterVec,
    pub all_down_total: IntCounterVec,
    pub generation: IntGauge,
    pub reloads: IntCounterVec,
    pub tcp_connections: IntGauge,
    pub tcp_rejected: IntCounter,
    pub tcp_query_limit: IntCounter,
    pub rrl: IntCounterVec,
    /// Extended DNS Errors sent, by info code; handles for the codes Meridian sends.
    extended_errors: IntCounterVec,
    extended_error_codes: Vec<(u16, IntCounter)>,
    pub cluster_connected: IntGauge,
    pub cluster_applied_revision: IntGauge,
    pub cluster_store_revision: IntGauge,
    pub cluster_peers: IntGauge,
    pub cluster_config_drift: IntGauge,
    /// dnstap: messages written to the collector, queries not logged (by why), connections.
    pub dnstap_messages: IntCounter,
    pub dnstap_dropped_full: IntCounter,
    pub dnstap_dropped_lost: IntCounter,
    pub dnstap_connections: IntCounter,
    pub dnstap_connected: IntGauge,
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
        let drain_percent = GaugeVec::new(
            Opts::new(
                "meridian_region_drain_percent",
                "Share of a region's clients an operator's drain moves to their next region (0 to 100).",
            ),
            &["region"],
        )
        .unwrap_or_else(|e| panic!("metric meridian_region_drain_percent: {e}"));
        registry
            .register(Box::new(drain_percent.clone()))
            .unwrap_or_else(|e| panic!("metric meridian_region_drain_percent: {e}"));
        let probe_figure = GaugeVec::new(
            Opts::new(
                "meridian_probe_figure",
                "The figure a check reads from its probe's response (extract), from the latest probe that held one.",
            ),
            &["target", "check"],
        )
        .unwrap_or_else(|e| panic!("metric meridian_probe_figure: {e}"));
        registry
            .register(Box::new(probe_figure.clone()))
            .unwrap_or_else(|e| panic!("metric meridian_probe_figure: {e}"));
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
        let extended_errors = counter_vec(
            "meridian_dns_extended_errors_total",
            "Responses carrying an Extended DNS Error (RFC 8914), by info code.",
            &["code"],
        );
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
        let dnstap_dropped = counter_vec(
            "meridian_dnstap_dropped_total",
            "Queries not logged to dnstap: queue_full (the writer fell behind or the collector \
             is away) or write_failed (lost with a connection that failed).",
            &["reason"],
        );
        Metrics {
            dnstap_messages: counter(
                "meridian_dnstap_messages_total",
                "dnstap messages (AUTH_QUERY and AUTH_RESPONSE) written to the collector.",
            ),
            dnstap_dropped_full: dnstap_dropped.with_label_values(&["queue_full"]),
            dnstap_dropped_lost: dnstap_dropped.with_label_values(&["write_failed"]),
            dnstap_connections: counter(
                "meridian_dnstap_connections_total",
                "Connections made to the dnstap collector (the first, then every reconnect).",
            ),
            dnstap_connected: gauge(
                "meridian_dnstap_connected",
                "1 while connected to the dnstap collector.",
            ),
            ecs_queries: counter(
                "meridian_dns_ecs_queries_total",
                "Queries that carried EDNS Client Subnet.",
            ),
            udp_duration: query_duration.with_label_values(&["udp"]),
            tcp_duration: query_duration.with_label_values(&["tcp"]),
            probe_results: counter_vec(
                "meridian_probe_results_total",
                "Health probe results by check, over all its targets.",
                &["check", "result"],
            ),
            probe_duration: histogram_vec(
                "meridian_probe_duration_seconds",
                "Health probe latency (to response headers, or to connect for tcp), by check.",
                &["check"],
                prometheus::exponential_buckets(0.000_5, 2.0, 14).unwrap_or_default(),
            ),
            probe_target_results: counter_vec(
                "meridian_probe_target_results_total",
                "Health probe results by target and check (server.metrics_endpoints = \"all\").",
                &["target", "check", "result"],
            ),
            probe_target_duration: histogram_vec(
                "meridian_probe_target_duration_seconds",
                "Health probe latency by target and check (server.metrics_endpoints = \"all\").",
                &["target", "check"],
                prometheus::exponential_buckets(0.000_5, 2.0, 14).unwrap_or_default(),
            ),
            region_evacuated: gauge_vec(
                "meridian_region_evacuated",
                "1 while a region is evacuated.",
                &["region"],
            ),
            drain_percent,
            ramp_aborts: counter_vec(
                "meridian_ramp_aborts_total",
                "Ramps that aborted by themselves (an abort_when condition fired), by region.",
                &["region"],
            ),
            evacuated_since: gauge_vec(
                "meridian_region_evacuated_since_seconds",
                "Unix time an evacuation started; 0 when the region is not evacuated.",
                &["region"],
            ),
            probe_figure,
            endpoint_promotable: gauge_vec(
                "meridian_endpoint_promotable",
                "1 while an endpoint of a service with a promote_guard passes it (its figure within bounds), 0 otherwise.",
                &["service", "region", "address"],
            ),
            safety_violations: counter_vec(
                "meridian_safety_violations_total",
                "Times a health change broke a [[safety]] rule (the rule's file:line).",
                &["rule"],
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
            extended_error_codes: [0u16, 20, 21]
                .into_iter()
                .map(|code| {
                    let c = extended_errors.with_label_values(&[&code.to_string()]);
                    (code, c)
                })
                .collect(),
            extended_errors,
            cluster_connected,
            cluster_applied_revision,
            cluster_store_revision,
            cluster_peers,
            cluster_config_drift,
            registry,
            carried: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts one response sent with Extended DNS Error `code`.
    pub fn extended_error(&self, code: u16) {
        match self.extended_error_codes.iter().find(|(c, _)| *c == code) {
            Some((_, counter)) => counter.inc(),
            None => self
                .extended_errors
                .with_label_values(&[&code.to_string()])
                .inc(),
        }
    }

    /// Folds the counts of a config being replaced into the carried totals.
    pub fn carry(&self, old: Vec<Series>) {
        let mut carried = self.carried.lock().unwrap_or_else(|e| e.into_inner());
        for s in old {
            *carried.entry((s.family, s.labels)).or_default() += s.value;
        }
    }

    /// The Prometheus text exposition of everything: `families` from the carried totals plus
    /// `current`, then the registry.
    pub fn render(&self, families: &[CounterFamily], current: Vec<Series>) -> String {
        let mut out = String::new();
        let mut merged = self
            .carried
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for s in current {
            *merged.entry((s.family, s.labels)).or_default() += s.value;
        }
        for &CounterFamily {
            name,
            help,
            labels: label_names,
        } in families
        {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for ((family, labels), v) in merged.iter().filter(|((f, _), _)| *f == name) {
                let _ = family;
                out.push_str(name);
                out.push('{');
                for (i, (k, l)) in label_names.iter().zip(labels).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(k);
                    out.push_str("=\"");
                    write_label_value(&mut out, l);
                    out.push('"');
                }
                let _ = writeln!(out, "}} {v}");
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

/// Appends a label value to `out`, escaped for the text exposition format.
pub fn write_label_value(out: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}
