//! Metric handles for one compiled config, resolved once (a label lookup hashes and takes a
//! lock): evacuation and drain gauges set at every publish, and the probe result counters and
//! latency histograms, counted at every probe event without a lookup. The families with a
//! series per service, per (service, region) or per endpoint are not held as gauges at all:
//! [`TableFamilies`] renders them at scrape time from the table being served, a few hundred
//! services at a time, so they cost no memory between scrapes and a reload resolves no
//! handles for them.
use std::collections::HashSet;
use std::fmt::Write as _;

use prometheus::{Gauge, Histogram, IntCounter, IntGauge};
use tracing::{info, warn};

use crate::health::check::ProbeOutcome;
use crate::metrics::{Metrics, write_label_value};
use crate::routing::admin::DRAIN_BUCKETS;
use crate::routing::table::{Compiled, EndpointId, Family, RoutingTable, ServiceId, TargetId};
use crate::settings::EndpointMetrics;

/// One probe target's series: its check's, and with `metrics_endpoints = "all"` its own.
struct ProbeHandles {
    success: IntCounter,
    failure: IntCounter,
    duration: Histogram,
    target: Option<(IntCounter, IntCounter, Histogram)>,
    /// When the target's check reads a figure: its series, made at the first figure (a
    /// target that never reported one has no series rather than a 0).
    figure: Option<(
        prometheus::GaugeVec,
        [String; 2],
        std::sync::OnceLock<Gauge>,
    )>,
}

pub struct Gauges {
    /// By endpoint, for the endpoints of services with a `promote_guard`.
    endpoint_promotable: Vec<Option<IntGauge>>,
    /// By region: (evacuated, evacuated since).
    evacuated: Vec<(IntGauge, IntGauge)>,
    /// By region: the drain's percentage.
    drained: Vec<Gauge>,
    /// By target.
    probes: Vec<ProbeHandles>,
    /// (service, family) pairs with no healthy region, as of the last publish.
    no_healthy_region: HashSet<(ServiceId, Family)>,
    /// (safety rule, service or regions) pairs below the rule's floor, as of the last publish.
    safety_broken: HashSet<(usize, String)>,
}

impl Gauges {
    /// The (service, family) pairs with no healthy region, as of the last publish.
    #[cfg(test)]
    pub fn no_healthy_region(&self) -> &HashSet<(ServiceId, Family)> {
        &self.no_healthy_region
    }

    /// Drops the series of any previous config and resolves this one's.
    pub fn new(m: &Metrics, c: &Compiled) -> Gauges {
        m.region_evacuated.reset();
        m.evacuated_since.reset();
        m.drain_percent.reset();
        m.probe_figure.reset();
        m.endpoint_promotable.reset();
        let per_target = c.settings.metrics_endpoints == EndpointMetrics::All;
        if !per_target {
            m.probe_target_results.reset();
            m.probe_target_duration.reset();
        }
        Gauges {
            endpoint_promotable: c
                .endpoints
                .iter()
                .map(|e| {
                    let svc = c.service(e.service);
                    svc.guard.and(e.guard).map(|_| {
                        m.endpoint_promotable.with_label_values(&[
                            &svc.name.to_ascii(),
                            &c.region(e.region).name,
                            &e.address.to_string(),
                        ])
                    })
                })
                .collect(),
            evacuated: c
                .regions
                .iter()
                .map(|r| {
                    (
                        m.region_evacuated.with_label_values(&[&r.name]),
                        m.evacuated_since.with_label_values(&[&r.name]),
                    )
                })
                .collect(),
            drained: c
                .regions
                .iter()
                .map(|r| m.drain_percent.with_label_values(&[&r.name]))
                .collect(),
            probes: c
                .targets
                .iter()
                .map(|t| {
                    let check = c.checks[t.check.index()].name.as_str();
                    let key = t.key.as_str();
                    ProbeHandles {
                        success: m.probe_results.with_label_values(&[check, "success"]),
                        failure: m.probe_results.with_label_values(&[check, "failure"]),
                        duration: m.probe_duration.with_label_values(&[check]),
                        figure: c.checks[t.check.index()].figure.as_ref().map(|_| {
                            (
                                m.probe_figure.clone(),
                                [key.to_string(), check.to_string()],
                                std::sync::OnceLock::new(),
                            )
                        }),
                        target: per_target.then(|| {
                            (
                                m.probe_target_results
                                    .with_label_values(&[key, check, "success"]),
                                m.probe_target_results
                                    .with_label_values(&[key, check, "failure"]),
                                m.probe_target_duration.with_label_values(&[key, check]),
                            )
                        }),
                    }
                })
                .collect(),
            no_healthy_region: HashSet::new(),
            safety_broken: HashSet::new(),
        }
    }

    /// Counts one probe result of `target`.
    pub fn probe(&self, target: TargetId, outcome: &ProbeOutcome) {
        let Some(h) = self.probes.get(target.index()) else {
            return;
        };
        if outcome.ok { &h.success } else { &h.failure }.inc();
        if let Some((success, failure, _)) = &h.target {
            if outcome.ok { success } else { failure }.inc();
        }
        if let Some(l) = outcome.latency {
            h.duration.observe(l.as_secs_f64());
            if let Some((_, _, duration)) = &h.target {
                duration.observe(l.as_secs_f64());
            }
        }
        if let (Some((vec, labels, gauge)), Some(v)) = (&h.figure, outcome.figure) {
            gauge
                .get_or_init(|| vec.with_label_values(&[&labels[0], &labels[1]]))
                .set(v);
        }
    }

    /// Evacuation and drain gauges for a table being published, and the log lines and counter
    /// for services entering and leaving the state where no region is healthy. With
    /// `touched`, only health changed since the last table, and only at those targets: the
    /// services they can move are examined again, not every one.
    pub fn publish(&mut self, m: &Metrics, table: &RoutingTable, touched: Option<&[TargetId]>) {
        let c = &table.compiled;
        m.generation.set(table.generation as i64);
        for (i, (evacuated, since)) in self.evacuated.iter().enumerate() {
            evacuated.set(i64::from(table.admin.evacuated[i]));
            let region = &c.regions[i].name;
            let started = table.admin.evacuations.get(region);
            since.set(started.map_or(0, |e| e.since as i64));
        }
        for (gauge, buckets) in self.drained.iter().zip(table.admin.drained.iter()) {
            gauge.set(f64::from(*buckets) * 100.0 / f64::from(DRAIN_BUCKETS));
        }
        for (i, g) in self.endpoint_promotable.iter().enumerate() {
            if let Some(g) = g {
                g.set(i64::from(table.endpoint_promotable(EndpointId(i as u32))));
            }
        }
        let mut now;
        let services: Vec<ServiceId> = match touched {
            Some(targets) => {
                let mut services: Vec<ServiceId> = targets
                    .iter()
                    .flat_map(|t| c.target_index.services(*t))
                    .copied()
                    .collect();
                services.sort_unstable();
                services.dedup();
                now = self.no_healthy_region.clone();
                now.retain(|(s, _)| services.binary_search(s).is_err());
                services
            }
            None => {
                now = HashSet::new();
                (0..c.services.len() as u32).map(ServiceId).collect()
            }
        };
        for id in services {
            let svc = c.service(id);
            for family in [Family::V4, Family::V6] {
                // A hostname service answers both families alike: one event, not two.
                let counted = !svc.alias || family == Family::V4;
                if counted && all_down(table, id, family) == Some(true) {
                    now.insert((id, family));
                }
            }
        }
        for key in now.difference(&self.no_healthy_region) {
            let svc = c.service(key.0);
            m.all_down_total
                .with_label_values(&[&svc.name.to_ascii()])
                .inc();
            warn!(service = %svc.name, family = ?key.1, action = svc.on_all_down.name(), "no healthy region");
        }
        for key in self.no_healthy_region.difference(&now) {
            info!(service = %c.service(key.0).name, family = ?key.1, "healthy region again");
        }
        self.no_healthy_region = now;
        // Safety rules: admin changes that would break one are refused, health changes never
        // are; a rule falling short is logged and counted once each time it starts to.
        let mut broken = HashSet::new();
        for (i, rule) in c.safety.iter().enumerate() {
            for (what, n, min) in rule.kind.broken(table) {
                if !self.safety_broken.contains(&(i, what.clone())) {
                    m.safety_violations.with_label_values(&[&rule.at]).inc();
                    warn!(rule = %rule.at, subject = %what, serving = n, min, "safety rule broken");
                }
                broken.insert((i, what));
            }
        }
        for (i, what) in self.safety_broken.difference(&broken) {
            info!(rule = %c.safety[*i].at, subject = %what, "safety rule holds again");
        }
        self.safety_broken = broken;
    }
}

/// Whether no region of a service that has endpoints of `family` is healthy and not
/// evacuated; `None` when the service has no endpoint of that family.
fn all_down(table: &RoutingTable, service: ServiceId, family: Family) -> Option<bool> {
    let svc = table.compiled.service(service);
    let mut has = false;
    let mut healthy = false;
    for sr in svc.regions.iter() {
        if sr.endpoints(family).is_empty() {
            continue;
        }
        has = true;
        healthy |= !table.evacuated(sr.region) && table.region_healthy(svc, sr, family);
    }
    has.then_some(!healthy)
}

/// The families rendered from the table at scrape time.
const FAMILIES: [(&str, &str); 3] = [
    (
        "meridian_region_up",
        "1 while a region has enough healthy endpoints for a service.",
    ),
    (
        "meridian_service_all_down",
        "1 while no region of a service is healthy (on_all_down in effect).",
    ),
    (
        "meridian_endpoint_up",
        "1 while an endpoint serves (up, unknown or unmonitored), 0 while down; by default \
         (server.metrics_endpoints = \"down\") only endpoints that are down have a series.",
    ),
];

/// Services, or endpoints, rendered per [`TableFamilies::next_chunk`]: some tens of kilobytes.
const SERVICES_PER_CHUNK: usize = 500;
const ENDPOINTS_PER_CHUNK: usize = 2000;

/// The per-service, per-(service, region) and per-endpoint families of one table, rendered a
/// chunk at a time: `meridian_region_up{region, service}`,
/// `meridian_service_all_down{family, service}` and, as `server.metrics_endpoints` says,
/// `meridian_endpoint_up{address, region, service}` (labels in name order).
pub struct TableFamilies {
    table: RoutingTable,
    detail: EndpointMetrics,
    family: usize,
    /// The next service (families 0 and 1) or endpoint (family 2) to render.
    next: usize,
}

impl TableFamilies {
    pub fn new(table: RoutingTable) -> TableFamilies {
        TableFamilies {
            detail: table.compiled.settings.metrics_endpoints,
            table,
            family: 0,
            next: 0,
        }
    }

    /// Appends the next chunk of text to `out`; false once everything has been rendered.
    pub fn next_chunk(&mut self, out: &mut String) -> bool {
        if self.family == 2 && self.detail == EndpointMetrics::None {
            self.family += 1;
        }
        let Some((name, help)) = FAMILIES.get(self.family) else {
            return false;
        };
        let c = &self.table.compiled;
        if self.next == 0 {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
        }
        let (len, step) = match self.family {
            0 | 1 => (c.services.len(), SERVICES_PER_CHUNK),
            _ => (c.endpoints.len(), ENDPOINTS_PER_CHUNK),
        };
        let end = (self.next + step).min(len);
        for i in self.next..end {
            match self.family {
                0 => {
                    let svc = &c.services[i];
                    let service = svc.name.to_ascii();
                    for sr in svc.regions.iter() {
                        let up = [Family::V4, Family::V6].into_iter().any(|f| {
                            !sr.endpoints(f).is_empty() && self.table.region_healthy(svc, sr, f)
                        });
                        let region = &c.region(sr.region).name;
                        series(out, name, &[("region", region), ("service", &service)], up);
                    }
                }
                1 => {
                    let service = c.services[i].name.to_ascii();
                    for (family, label) in [(Family::V4, "ipv4"), (Family::V6, "ipv6")] {
                        if let Some(down) = all_down(&self.table, ServiceId(i as u32), family) {
                            series(out, name, &[("family", label), ("service", &service)], down);
                        }
                    }
                }
                _ => {
                    let up = self.table.serving(EndpointId(i as u32));
                    if up && self.detail != EndpointMetrics::All {
                        continue;
                    }
                    let e = &c.endpoints[i];
                    let labels = [
                        ("address", e.address.to_string()),
                        ("region", c.region(e.region).name.clone()),
                        ("service", c.service(e.service).name.to_ascii()),
                    ];
                    let labels = labels.each_ref().map(|(k, v)| (*k, v.as_str()));
                    series(out, name, &labels, up);
                }
            }
        }
        self.next = end;
        if end == len {
            self.family += 1;
            self.next = 0;
        }
        true
    }
}

fn series(out: &mut String, name: &str, labels: &[(&str, &str)], value: bool) {
    out.push_str(name);
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        write_label_value(out, v);
        out.push('"');
    }
    out.push_str(if value { "} 1\n" } else { "} 0\n" });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::test_support::{GEOIP, ZONE, compile, with_down};

    fn table(detail: &str) -> RoutingTable {
        compile(&format!(
            r#"
[server]
{detail}
{GEOIP}
{ZONE}
[checks.web]
kind = "tcp"
port = 80

[[regions]]
name = "us-east"
countries = ["US"]

[[regions]]
name = "eu-west"
countries = ["DE"]

[[services]]
name = "www.example.com."
policy = "geo"
check = "web"
endpoints = [
  {{ region = "us-east", address = "192.0.2.1" }},
  {{ region = "us-east", address = "192.0.2.2" }},
  {{ region = "eu-west", address = "192.0.2.3" }},
]
"#
        ))
    }

    fn render(t: RoutingTable) -> String {
        let mut families = TableFamilies::new(t);
        let mut out = String::new();
        for _ in 0..100 {
            if !families.next_chunk(&mut out) {
                return out;
            }
        }
        panic!("rendering did not end:\n{out}");
    }

    fn endpoint_lines(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| l.starts_with("meridian_endpoint_up{"))
            .collect()
    }

    #[test]
    fn by_default_only_endpoints_that_are_down_have_a_series() {
        let t = table("");
        assert_eq!(t.compiled.settings.metrics_endpoints, EndpointMetrics::Down);
        let text = render(t.clone());
        assert!(endpoint_lines(&text).is_empty(), "{text}");
        assert!(
            text.contains(
                "meridian_region_up{region=\"us-east\",service=\"www.example.com.\"} 1\n"
            )
        );
        assert!(text.contains(
            "meridian_service_all_down{family=\"ipv4\",service=\"www.example.com.\"} 0\n"
        ));
        assert!(!text.contains("family=\"ipv6\""), "{text}");

        let text = render(with_down(&t, &["192.0.2.3"]));
        assert_eq!(
            endpoint_lines(&text),
            [
                "meridian_endpoint_up{address=\"192.0.2.3\",region=\"eu-west\",service=\"www.example.com.\"} 0"
            ]
        );
        assert!(
            text.contains(
                "meridian_region_up{region=\"eu-west\",service=\"www.example.com.\"} 0\n"
            )
        );
    }

    #[test]
    fn all_gives_every_endpoint_a_series_and_none_gives_none() {
        let t = table("metrics_endpoints = \"all\"");
        let text = render(with_down(&t, &["192.0.2.1"]));
        let lines = endpoint_lines(&text);
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines.contains(
            &"meridian_endpoint_up{address=\"192.0.2.1\",region=\"us-east\",service=\"www.example.com.\"} 0"
        ));
        assert!(lines.contains(
            &"meridian_endpoint_up{address=\"192.0.2.2\",region=\"us-east\",service=\"www.example.com.\"} 1"
        ));

        let t = table("metrics_endpoints = \"none\"");
        let text = render(with_down(&t, &["192.0.2.1"]));
        assert!(!text.contains("meridian_endpoint_up"), "{text}");
        assert!(text.contains("meridian_region_up{"), "{text}");
    }

    #[test]
    fn probes_count_per_check_and_per_target_only_when_asked() {
        let m = Metrics::new();
        let t = table("");
        let g = Gauges::new(&m, &t.compiled);
        let ok = ProbeOutcome {
            ok: true,
            latency: None,
            error: None,
            figure: None,
        };
        g.probe(TargetId(0), &ok);
        g.probe(TargetId(1), &ok);
        let text = m.render(&[], Vec::new());
        assert!(
            text.contains("meridian_probe_results_total{check=\"web\",result=\"success\"} 2"),
            "{text}"
        );
        assert!(
            !text.contains("meridian_probe_target_results_total{"),
            "{text}"
        );

        let t = table("metrics_endpoints = \"all\"");
        let g = Gauges::new(&m, &t.compiled);
        g.probe(TargetId(0), &ok);
        let text = m.render(&[], Vec::new());
        assert!(
            text.contains("meridian_probe_results_total{check=\"web\",result=\"success\"} 3"),
            "{text}"
        );
        let key = &t.compiled.targets[0].key;
        assert!(
            text.contains(&format!(
                "meridian_probe_target_results_total{{check=\"web\",result=\"success\",target=\"{key}\"}} 1"
            )),
            "{text}"
        );
    }
}
