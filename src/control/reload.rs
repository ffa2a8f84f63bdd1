//! Config reloads: read and compile the file again off the publisher's task, and on success
//! swap the new compiled config in, carrying health by target key and evacuations by region
//! name. On failure the old table keeps serving and the caller gets every problem.
use std::sync::Arc;
use std::time::SystemTime;

use tracing::{info, warn};

use super::Publisher;
use super::gauges::Gauges;
use super::history::{Cause, LatencySource};
use crate::config::{ConfigError, ConfigErrors};
use crate::dns::snapshot::Snapshot;
use crate::routing::{Compiled, RoutingTable};

/// A compiled config whose `[[assert]]` tables all hold, or each failure as a config error
/// at its table: a config whose routing contradicts its own assertions does not serve.
pub fn assertions_hold(compiled: Arc<Compiled>) -> Result<Arc<Compiled>, ConfigErrors> {
    let failed: Vec<ConfigError> = crate::explain::assertion_failures(&compiled)
        .into_iter()
        .map(|(a, message)| ConfigError {
            file: a.at.0.clone(),
            line: a.at.1,
            col: Some(a.at.2),
            message,
        })
        .collect();
    if failed.is_empty() {
        Ok(compiled)
    } else {
        Err(ConfigErrors(failed))
    }
}

impl Publisher {
    pub(super) async fn reload(&mut self, now: SystemTime) -> Result<u64, ConfigErrors> {
        let Some(path) = self.config_path.clone() else {
            return Err(ConfigErrors(Vec::new()));
        };
        let previous = self.compiled.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let text = std::fs::read_to_string(&path).ok();
            let compiled = match &text {
                Some(t) => crate::config::load_str_reusing(t, &path, Some(&previous)),
                None => crate::config::load_reusing(&path, Some(&previous)),
            };
            // The parse trees are gone: give their pages, and those of tables replaced
            // earlier and freed into this thread's heap, back now.
            crate::alloc::release_freed();
            compiled.map(|c| (c, text))
        })
        .await;
        let checked =
            loaded.map(|r| r.and_then(|(c, text)| assertions_hold(Arc::new(c)).map(|c| (c, text))));
        let (compiled, source) = match checked {
            Ok(Ok(loaded)) => loaded,
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
        self.history
            .keep_config(compiled.clone(), source.map(Arc::from));
        self.swap_config(compiled);
        self.metrics.reloads.with_label_values(&["success"]).inc();
        info!(
            config_generation = self.config_generation,
            "config reloaded"
        );
        let cause = Cause::Reload {
            config_hash: self.compiled.settings.config_hash.clone(),
        };
        let generation = self.publish(cause, now);
        // The old config's snapshot, templates and gauges were freed into this thread's heap.
        crate::alloc::release_freed();
        Ok(generation)
    }

    /// Makes `compiled` the config in force (a reload, a rollback): health carried by target
    /// key, the latency map the config's, probers restarted; the caller publishes.
    pub(super) fn swap_config(&mut self, compiled: Arc<Compiled>) {
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
        self.cold =
            Snapshot::first_sampled(RoutingTable::cold(compiled.clone()), self.sample.clone());
        self.latency_map = compiled.latency_map.clone();
        self.latency_source = LatencySource::Config;
        self.rate_seen = None;
        self.penalty = vec![None; compiled.service_region_slots];
        self.gauges = Gauges::new(&self.metrics, &compiled);
        self.compiled = compiled;
        self.config_generation += 1;
        self.state_dir = self.compiled.settings.state_dir.clone();
        if let Some(spawner) = &self.spawner {
            self.probers = spawner(self.compiled.clone(), self.config_generation);
        }
    }
}
