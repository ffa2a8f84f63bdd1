//! The single writer. It owns the `ArcSwap` the DNS path reads and is the only code that
//! stores into it. Probe results, admin commands (evacuate, restore), fleet updates and
//! reloads arrive as messages; each change publishes a new [`Snapshot`] with a higher
//! generation. Admin callers get the new generation back once it is being served. The DNS
//! path never waits on any of this.
pub mod admin;
pub mod command;
pub mod gauges;
pub mod health;
pub mod reload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::clock::{Clock, SystemClock};
use crate::cluster::{ClusterStore, FleetUpdate};
use crate::dns::snapshot::{Snapshot, Store};
use crate::health::prober::ProbeEvent;
use crate::metrics::Metrics;
use crate::routing::latency::LatencyMap;
use crate::routing::table::{AdminView, Compiled, Evacuation, RoutingTable};
use crate::settings::Quorum;
use crate::state::{SavedEvacuations, SavedHealth};
use command::Command;
use gauges::Gauges;
use health::{HealthState, PeerViews, update_penalties};

/// Starts the probers for a compiled config; returns their task set (dropping it stops them).
pub type ProberSpawner = Box<dyn Fn(Arc<Compiled>, u64) -> JoinSet<()> + Send + Sync>;

pub struct Publisher {
    store: Arc<Store>,
    compiled: Arc<Compiled>,
    /// The first snapshot of `compiled`: its templates and counters go into every later one.
    cold: Snapshot,
    config_generation: u64,
    config_path: Option<PathBuf>,
    health: HealthState,
    evacuations: BTreeMap<String, Evacuation>,
    generation: u64,
    state_dir: Option<PathBuf>,
    metrics: Arc<Metrics>,
    probers: JoinSet<()>,
    spawner: Option<ProberSpawner>,
    gauges: Gauges,
    /// The latency map in force: the config's, or one put through the admin API.
    latency_map: Arc<LatencyMap>,
    /// Latency penalty per (service, region) slot as last published (deadbanded).
    penalty: Vec<Option<f32>>,
    /// Fleet mode: the shared store, peers' verdicts, and the admin revision applied.
    cluster: Option<Arc<dyn ClusterStore>>,
    quorum: Quorum,
    peers: PeerViews,
    cluster_revision: i64,
    clock: Arc<dyn Clock>,
}

impl Publisher {
    /// Seeds health (warm start) and evacuations from saved state and publishes the first
    /// table.
    pub fn new(
        compiled: Arc<Compiled>,
        saved: &SavedHealth,
        evacuations: SavedEvacuations,
        metrics: Arc<Metrics>,
    ) -> (Publisher, Arc<Store>) {
        let cold = Snapshot::first(RoutingTable::cold(compiled.clone()));
        let store = Arc::new(ArcSwap::from_pointee(cold.next(cold.table.clone())));
        let mut p = Publisher {
            store: store.clone(),
            health: HealthState::seeded(&compiled, saved),
            gauges: Gauges::new(&metrics, &compiled),
            state_dir: compiled.settings.state_dir.clone(),
            latency_map: compiled.latency_map.clone(),
            penalty: vec![None; compiled.service_region_slots],
            compiled,
            cold,
            config_generation: 1,
            config_path: None,
            evacuations: evacuations.regions,
            generation: 0,
            metrics,
            probers: JoinSet::new(),
            spawner: None,
            cluster: None,
            quorum: Quorum::Majority,
            peers: BTreeMap::new(),
            cluster_revision: 0,
            clock: Arc::new(SystemClock),
        };
        let now = p.clock.now();
        p.publish("start".into(), now);
        (p, store)
    }

    /// Fleet mode: admin changes go through `store`, health is decided with the peers.
    pub fn with_cluster(mut self, store: Arc<dyn ClusterStore>, quorum: Quorum) -> Self {
        store.publish_health(self.saved().targets);
        self.cluster = Some(store);
        self.quorum = quorum;
        self
    }

    /// Where `Reload` reads the config from.
    pub fn with_config_path(mut self, path: PathBuf) -> Self {
        self.config_path = Some(path);
        self
    }

    /// Where wall-clock time comes from (publish times, evacuation starts).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Starts probing now and again after each reload.
    pub fn start_probers(&mut self, spawner: ProberSpawner) {
        self.probers = spawner(self.compiled.clone(), self.config_generation);
        self.spawner = Some(spawner);
    }

    pub fn config_generation(&self) -> u64 {
        self.config_generation
    }

    /// Whether every target has been probed at least once since start.
    pub fn first_round_done(&self) -> bool {
        self.health.first_round_done()
    }

    /// Folds one probe result in; publishes and returns true when a verdict changed (or the
    /// first probe round just completed).
    pub fn on_probe(&mut self, ev: &ProbeEvent) -> bool {
        if ev.generation != self.config_generation {
            return false;
        }
        let Some(observed) = self.health.observe(&self.compiled, ev.target, &ev.outcome) else {
            return false;
        };
        self.gauges.probe(ev.target, &ev.outcome);
        let key = &self.compiled.targets[ev.target.index()].key;
        if let Some(new) = observed.changed {
            match &ev.outcome.error {
                Some(err) if new == crate::routing::table::Health::Down => {
                    warn!(target = %key, health = new.name(), %err, "health changed")
                }
                _ => info!(target = %key, health = new.name(), "health changed"),
            }
            if let Some(store) = &self.cluster {
                store.publish_health(self.saved().targets);
            }
        }
        if observed.first_round_completed {
            info!("first probe round complete");
        }
        let why = match (observed.changed, observed.first_round_completed) {
            (Some(_), _) => "health",
            (None, true) => "first probe round complete",
            (None, false) => return false,
        };
        let now = self.clock.now();
        self.publish(why.into(), now);
        true
    }

    /// Applies an admin command.
    pub async fn on_command(&mut self, cmd: Command) {
        let now = self.clock.now();
        match cmd {
            Command::Evacuate {
                region,
                reason,
                by,
                force,
                reply,
            } => {
                let r = self.evacuate(region, reason, by, force, now).await;
                let _ = reply.send(r);
            }
            Command::Restore { region, by, reply } => {
                let r = self.restore(region, by, now).await;
                let _ = reply.send(r);
            }
            Command::Reload { reply } => {
                let r = self.reload(now).await;
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
            Command::Fleet(FleetUpdate::Admin { doc, revision }) => {
                self.on_cluster_admin(doc, revision, now).await;
            }
            Command::Fleet(FleetUpdate::PeerViews(views)) => {
                if views != self.peers {
                    self.peers = views;
                    self.publish("peer health".into(), now);
                }
            }
            Command::SetLatencyMap {
                text,
                format,
                reply,
            } => {
                let regions: Vec<&str> = self
                    .compiled
                    .regions
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect();
                let r = LatencyMap::parse(&text, format, &regions).map(|map| {
                    let entries = map.entries;
                    self.latency_map = Arc::new(map);
                    info!(entries, "latency map replaced through the admin API");
                    (self.publish("latency map".into(), now), entries)
                });
                let _ = reply.send(r);
            }
        }
    }

    /// Builds the next table from the current compiled config, health and admin state, and
    /// swaps it in with the DNS side's templates and counters as one snapshot.
    fn publish(&mut self, why: String, now: SystemTime) -> u64 {
        self.generation += 1;
        let health = self.health.view(&self.compiled, &self.peers, self.quorum);
        update_penalties(&self.compiled, &health, &mut self.penalty);
        let table = RoutingTable {
            latency_map: self.latency_map.clone(),
            penalty_ms: self.penalty.clone().into(),
            health: Arc::new(health),
            admin: Arc::new(AdminView::new(&self.compiled, self.evacuations.clone())),
            compiled: self.compiled.clone(),
            generation: self.generation,
            built_at: now,
            built_for: why,
            probes_complete: self.health.first_round_done(),
        };
        self.gauges.publish(&self.metrics, &table);
        tracing::debug!(generation = self.generation, why = %table.built_for, "published routing table");
        self.store.store(Arc::new(self.cold.next(table)));
        self.generation
    }

    /// What to save in `state_dir`.
    pub fn saved(&self) -> SavedHealth {
        self.health.saved(&self.compiled)
    }

    /// Applies probe events and commands until both channels close, saving health after
    /// each change.
    pub async fn run(
        mut self,
        mut probes: mpsc::Receiver<ProbeEvent>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        loop {
            tokio::select! {
                ev = probes.recv() => match ev {
                    Some(ev) => if self.on_probe(&ev) { self.persist_health().await },
                    None => break,
                },
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => break,
                },
            }
        }
    }

    async fn persist_health(&self) {
        let Some(dir) = self.state_dir.clone() else {
            return;
        };
        let saved = self.saved();
        let result =
            tokio::task::spawn_blocking(move || crate::state::save_health(&dir, &saved)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "cannot save health state"),
            Err(e) => warn!(error = %e, "health state writer failed"),
        }
    }
}
