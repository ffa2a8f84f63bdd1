//! The single writer. It owns the `ArcSwap` the DNS path reads, folds probe events into
//! per-target state machines, and stores a new [`RoutingTable`] (with a higher generation)
//! whenever a verdict changes. The DNS path never waits on it.
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::table::{Compiled, Family, HealthView, RoutingTable, ServiceId, TargetHealth};
use crate::health::prober::ProbeEvent;
use crate::health::state::{Ewma, Health, Tracker};
use crate::state::{SavedHealth, save_health};

pub struct Publisher {
    store: Arc<ArcSwap<RoutingTable>>,
    compiled: Arc<Compiled>,
    config_generation: u64,
    trackers: Vec<Tracker>,
    latency: Vec<Ewma>,
    probed: Vec<bool>,
    generation: u64,
    state_dir: Option<PathBuf>,
    /// (service, family) pairs with no healthy region, as of the last publish.
    all_down: HashSet<(ServiceId, Family)>,
    /// How many times a service entered the all-down state.
    pub all_down_events: u64,
}

impl Publisher {
    /// Seeds health from what was saved (warm start) and publishes the first table.
    pub fn new(
        compiled: Arc<Compiled>,
        saved: &SavedHealth,
        state_dir: Option<PathBuf>,
    ) -> (Publisher, Arc<ArcSwap<RoutingTable>>) {
        let trackers = compiled
            .targets
            .iter()
            .map(|t| Tracker::new(saved.targets.get(&t.key).copied().unwrap_or(Health::Unknown)))
            .collect();
        let n = compiled.targets.len();
        let table = RoutingTable::cold(compiled.clone());
        let store = Arc::new(ArcSwap::from_pointee(table));
        let mut p = Publisher {
            store: store.clone(),
            compiled,
            config_generation: 1,
            trackers,
            latency: vec![Ewma::default(); n],
            probed: vec![false; n],
            generation: 0,
            state_dir,
            all_down: HashSet::new(),
            all_down_events: 0,
        };
        p.publish("start");
        (p, store)
    }

    pub fn compiled(&self) -> &Arc<Compiled> {
        &self.compiled
    }

    pub fn config_generation(&self) -> u64 {
        self.config_generation
    }

    /// Whether every target has been probed at least once since start.
    pub fn first_round_done(&self) -> bool {
        self.probed.iter().all(|p| *p)
    }

    /// Folds one probe result in; publishes and returns true when a verdict changed.
    pub fn on_probe(&mut self, ev: &ProbeEvent) -> bool {
        if ev.generation != self.config_generation {
            return false;
        }
        let i = ev.target.index();
        let (Some(tracker), Some(target)) = (self.trackers.get_mut(i), self.compiled.targets.get(i)) else {
            return false;
        };
        let check = &self.compiled.checks[target.check.index()];
        self.probed[i] = true;
        if let Some(l) = ev.outcome.latency.filter(|_| ev.outcome.ok) {
            self.latency[i].observe(l.as_secs_f64() * 1e6);
        }
        let Some(new) = tracker.observe(ev.outcome.ok, check.rise, check.fall) else {
            return false;
        };
        match (&ev.outcome.error, new) {
            (Some(err), Health::Down) => warn!(target = %target.key, health = new.name(), %err, "health changed"),
            _ => info!(target = %target.key, health = new.name(), "health changed"),
        }
        self.publish("health");
        true
    }

    fn publish(&mut self, why: &str) {
        self.generation += 1;
        let health = HealthView {
            targets: self
                .trackers
                .iter()
                .zip(&self.latency)
                .map(|(t, l)| TargetHealth {
                    health: t.health,
                    latency_us: l.get(),
                })
                .collect(),
        };
        let table = RoutingTable {
            compiled: self.compiled.clone(),
            health: Arc::new(health),
            generation: self.generation,
        };
        self.note_all_down(&table);
        self.store.store(Arc::new(table));
        tracing::debug!(generation = self.generation, why, "published routing table");
    }

    /// Logs services entering and leaving the state where no region is healthy.
    fn note_all_down(&mut self, table: &RoutingTable) {
        let mut now = HashSet::new();
        for (i, svc) in self.compiled.services.iter().enumerate() {
            for family in [Family::V4, Family::V6] {
                let mut any = false;
                let mut healthy = false;
                for sr in svc.regions.iter() {
                    let eps = sr.endpoints(family);
                    any |= !eps.is_empty();
                    let up = eps.iter().filter(|e| table.serving(**e)).count();
                    healthy |= up > 0 && up >= svc.min_healthy.min(eps.len());
                }
                if any && !healthy {
                    now.insert((ServiceId(i as u32), family));
                }
            }
        }
        for key in now.difference(&self.all_down) {
            let svc = self.compiled.service(key.0);
            self.all_down_events += 1;
            warn!(service = %svc.name, family = ?key.1, action = svc.on_all_down.name(), "no healthy region");
        }
        for key in self.all_down.difference(&now) {
            info!(service = %self.compiled.service(key.0).name, family = ?key.1, "healthy region again");
        }
        self.all_down = now;
    }

    /// What to save in `state_dir`.
    pub fn saved(&self) -> SavedHealth {
        SavedHealth {
            version: 1,
            targets: self
                .compiled
                .targets
                .iter()
                .zip(&self.trackers)
                .filter(|(_, t)| t.health != Health::Unknown)
                .map(|(target, t)| (target.key.clone(), t.health))
                .collect(),
        }
    }

    /// Applies probe events until the prober goes away, saving health after each change.
    pub async fn run(mut self, mut events: mpsc::Receiver<ProbeEvent>) {
        while let Some(ev) = events.recv().await {
            if self.on_probe(&ev) {
                self.persist().await;
            }
        }
    }

    async fn persist(&self) {
        let Some(dir) = self.state_dir.clone() else {
            return;
        };
        let saved = self.saved();
        let result = tokio::task::spawn_blocking(move || save_health(&dir, &saved)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "cannot save health state"),
            Err(e) => warn!(error = %e, "health state writer failed"),
        }
    }
}
