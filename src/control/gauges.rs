//! Metric handles for one compiled config, resolved once (a label lookup hashes and takes a
//! lock): health and evacuation gauges set at every publish, and each probe target's result
//! counters and latency histogram, counted at every probe event without a lookup.
use std::collections::HashSet;

use prometheus::{Gauge, Histogram, IntCounter, IntGauge};
use tracing::{info, warn};

use crate::health::check::ProbeOutcome;
use crate::metrics::Metrics;
use crate::routing::admin::DRAIN_BUCKETS;
use crate::routing::table::{Compiled, EndpointId, Family, RoutingTable, ServiceId, TargetId};

/// One probe target's series.
struct ProbeHandles {
    success: IntCounter,
    failure: IntCounter,
    duration: Histogram,
    /// When the target's check reads a figure: its series, made at the first figure (a
    /// target that never reported one has no series rather than a 0).
    figure: Option<(
        prometheus::GaugeVec,
        [String; 2],
        std::sync::OnceLock<Gauge>,
    )>,
}

pub struct Gauges {
    endpoint_up: Vec<IntGauge>,
    /// By endpoint, for the endpoints of services with a `promote_guard`.
    endpoint_promotable: Vec<Option<IntGauge>>,
    /// By (service, region) slot.
    region_up: Vec<IntGauge>,
    /// By region: (evacuated, evacuated since).
    evacuated: Vec<(IntGauge, IntGauge)>,
    /// By region: the drain's percentage.
    drained: Vec<Gauge>,
    /// By service: [IPv4, IPv6], for the families the service has.
    all_down: Vec<[Option<IntGauge>; 2]>,
    /// By target.
    probes: Vec<ProbeHandles>,
    /// (service, family) pairs with no healthy region, as of the last publish.
    no_healthy_region: HashSet<(ServiceId, Family)>,
    /// (safety rule, service or regions) pairs below the rule's floor, as of the last publish.
    safety_broken: HashSet<(usize, String)>,
}

impl Gauges {
    /// Drops the series of any previous config and resolves this one's.
    pub fn new(m: &Metrics, c: &Compiled) -> Gauges {
        m.endpoint_up.reset();
        m.region_up.reset();
        m.region_evacuated.reset();
        m.evacuated_since.reset();
        m.drain_percent.reset();
        m.service_all_down.reset();
        m.probe_figure.reset();
        m.endpoint_promotable.reset();
        let mut region_up = vec![None; c.service_region_slots];
        let mut all_down = Vec::new();
        for svc in &c.services {
            let name = svc.name.to_ascii();
            for sr in svc.regions.iter() {
                let region = &c.region(sr.region).name;
                region_up[sr.slot as usize] = Some(m.region_up.with_label_values(&[&name, region]));
            }
            let family = |f: Family, label: &str| {
                svc.regions
                    .iter()
                    .any(|sr| !sr.endpoints(f).is_empty())
                    .then(|| m.service_all_down.with_label_values(&[&name, label]))
            };
            all_down.push([family(Family::V4, "ipv4"), family(Family::V6, "ipv6")]);
        }
        Gauges {
            endpoint_up: c
                .endpoints
                .iter()
                .map(|e| {
                    let svc = c.service(e.service).name.to_ascii();
                    m.endpoint_up.with_label_values(&[
                        &svc,
                        &c.region(e.region).name,
                        &e.address.to_string(),
                    ])
                })
                .collect(),
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
            region_up: region_up.into_iter().flatten().collect(),
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
            all_down,
            probes: c
                .targets
                .iter()
                .map(|t| {
                    let check = c.checks[t.check.index()].name.as_str();
                    let labels = [t.key.as_str(), check];
                    ProbeHandles {
                        success: m
                            .probe_results
                            .with_label_values(&[labels[0], labels[1], "success"]),
                        failure: m
                            .probe_results
                            .with_label_values(&[labels[0], labels[1], "failure"]),
                        duration: m.probe_duration.with_label_values(&labels),
                        figure: c.checks[t.check.index()].figure.as_ref().map(|_| {
                            (
                                m.probe_figure.clone(),
                                [labels[0].to_string(), labels[1].to_string()],
                                std::sync::OnceLock::new(),
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
        if let Some(l) = outcome.latency {
            h.duration.observe(l.as_secs_f64());
        }
        if let (Some((vec, labels, gauge)), Some(v)) = (&h.figure, outcome.figure) {
            gauge
                .get_or_init(|| vec.with_label_values(&[&labels[0], &labels[1]]))
                .set(v);
        }
    }

    /// Health and evacuation gauges for a table being published, and the log lines for
    /// services entering and leaving the state where no region is healthy.
    pub fn publish(&mut self, m: &Metrics, table: &RoutingTable) {
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
        for (i, e) in self.endpoint_up.iter().enumerate() {
            e.set(i64::from(table.serving(EndpointId(i as u32))));
        }
        for (i, g) in self.endpoint_promotable.iter().enumerate() {
            if let Some(g) = g {
                g.set(i64::from(table.endpoint_promotable(EndpointId(i as u32))));
            }
        }
        let mut now = HashSet::new();
        for (i, svc) in c.services.iter().enumerate() {
            for sr in svc.regions.iter() {
                let up = [Family::V4, Family::V6]
                    .into_iter()
                    .any(|f| !sr.endpoints(f).is_empty() && table.region_healthy(svc, sr, f));
                self.region_up[sr.slot as usize].set(i64::from(up));
            }
            for (f, family) in [Family::V4, Family::V6].into_iter().enumerate() {
                let Some(gauge) = &self.all_down[i][f] else {
                    continue;
                };
                let healthy = svc.regions.iter().any(|sr| {
                    !sr.endpoints(family).is_empty()
                        && !table.evacuated(sr.region)
                        && table.region_healthy(svc, sr, family)
                });
                gauge.set(i64::from(!healthy));
                // A hostname service answers both families alike: one event, not two.
                let counted = !svc.alias || family == Family::V4;
                if !healthy && counted {
                    now.insert((ServiceId(i as u32), family));
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
