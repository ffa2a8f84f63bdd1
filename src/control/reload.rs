//! Config reloads: read and compile the file again off the publisher's task, and on success
//! swap the new compiled config in, carrying health by target key and evacuations by region
//! name. On failure the old table keeps serving and the caller gets every problem.
use std::sync::Arc;
use std::time::SystemTime;

use tracing::{info, warn};

use super::Publisher;
use super::gauges::Gauges;
use crate::config::ConfigErrors;
use crate::dns::snapshot::Snapshot;
use crate::routing::RoutingTable;

impl Publisher {
    pub(super) async fn reload(&mut self, now: SystemTime) -> Result<u64, ConfigErrors> {
        let Some(path) = self.config_path.clone() else {
            return Err(ConfigErrors(Vec::new()));
        };
        let previous = self.compiled.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let loaded = crate::config::load_reusing(&path, Some(&previous));
            // The parse trees are gone: give their pages, and those of tables replaced
            // earlier and freed into this thread's heap, back now.
            crate::alloc::release_freed();
            loaded
        })
        .await;
        let compiled = match loaded {
            Ok(Ok(c)) => Arc::new(c),
            Ok(Err(errors)) => {
                self.metrics.reloads.with_label_values(&["failure"]).inc();
                warn!(
                    problems = errors.0.len(),
                    "reload refused, still serving the old config:\n{errors}"
                );
                return Err(errors);
            }
            Err(e) => {
                self.metrics.reloads.with_label_values(&["failure"]).inc();
                warn!(error = %e, "reload failed");
                return Err(ConfigErrors(Vec::new()));
            }
        };
        let settings = (&compiled.settings, &self.compiled.settings);
        if settings.0.dns_listen != settings.1.dns_listen
            || settings.0.admin_listen != settings.1.admin_listen
        {
            warn!("listen addresses changed in the config; they take effect at the next restart");
        }
        if settings.0.probe_source != settings.1.probe_source
            || settings.0.health_resolver != settings.1.health_resolver
        {
            warn!(
                "probe_source or [health] resolver changed in the config; they take effect at the next restart"
            );
        }
        if settings.0.dnstap != settings.1.dnstap {
            warn!("[dnstap] changed in the config; it takes effect at the next restart");
        }
        self.health = self.health.carried(&self.compiled, &compiled);
        for name in self
            .admin
            .evacuations
            .keys()
            .chain(self.admin.drains.keys())
        {
            if !compiled.regions.iter().any(|r| &r.name == name) {
                warn!(region = %name, "an evacuated or drained region is not in the new config; the change is kept for when it returns");
            }
        }
        self.metrics.carry(self.cold.counters.series());
        self.cold = Snapshot::first(RoutingTable::cold(compiled.clone()));
        self.latency_map = compiled.latency_map.clone();
        self.penalty = vec![None; compiled.service_region_slots];
        self.gauges = Gauges::new(&self.metrics, &compiled);
        self.compiled = compiled;
        self.config_generation += 1;
        self.state_dir = self.compiled.settings.state_dir.clone();
        if let Some(spawner) = &self.spawner {
            self.probers = spawner(self.compiled.clone(), self.config_generation);
        }
        self.metrics.reloads.with_label_values(&["success"]).inc();
        info!(
            config_generation = self.config_generation,
            "config reloaded"
        );
        let generation = self.publish("reload".into(), now);
        // The old config's snapshot, templates and gauges were freed into this thread's heap.
        crate::alloc::release_freed();
        Ok(generation)
    }
}
