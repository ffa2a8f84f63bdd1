//! The single writer. It owns the `ArcSwap` the DNS path reads and is the only code that
//! stores into it. Probe results, admin commands (evacuate, restore) and reloads arrive as
//! messages; each change publishes a new [`RoutingTable`] with a higher generation. Admin
//! callers get the new generation back once it is being served. The DNS path never waits on
//! any of this.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::latency::{Format, LatencyMap, MapError};
use super::table::{
    AdminView, Compiled, EndpointId, Evacuation, Family, Health, HealthView, RoutingTable,
    ServiceId, TargetHealth,
};
use crate::cluster::{AdminDoc, ClusterError, ClusterStore, consensus};
use crate::config::ConfigErrors;
use crate::dns::templates::Templates;
use crate::health::prober::ProbeEvent;
use crate::health::state::{Ewma, Tracker};
use crate::metrics::{DnsCounters, Metrics};
use crate::settings::Quorum;
use crate::state::{SavedEvacuations, SavedHealth, StateError};
use prometheus::IntGauge;

/// Starts the probers for a compiled config; returns their task set (dropping it stops them).
pub type ProberSpawner = Box<dyn Fn(Arc<Compiled>, u64) -> JoinSet<()> + Send + Sync>;

/// What admin callers can ask of the publisher.
pub enum Command {
    Evacuate {
        region: String,
        reason: String,
        by: String,
        force: bool,
        reply: oneshot::Sender<Result<u64, AdminError>>,
    },
    Restore {
        region: String,
        by: String,
        reply: oneshot::Sender<Result<u64, AdminError>>,
    },
    /// Read the config file again; `reply` is `None` for SIGHUP.
    Reload {
        reply: Option<oneshot::Sender<Result<u64, ConfigErrors>>>,
    },
    /// The fleet's admin document changed (from the cluster watch).
    ClusterAdmin { doc: AdminDoc, revision: i64 },
    /// The live peers' own health verdicts (fleet mode), by instance name.
    PeerViews(BTreeMap<String, BTreeMap<String, Health>>),
    /// Replace the latency map (validated against the current regions) atomically.
    SetLatencyMap {
        text: String,
        format: Format,
        reply: oneshot::Sender<Result<(u64, usize), Vec<MapError>>>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no region named {0:?} in the current config")]
    UnknownRegion(String),
    #[error("region {0:?} is not evacuated")]
    NotEvacuated(String),
    #[error("region {0:?} is already evacuated")]
    AlreadyEvacuated(String),
    #[error(
        "evacuating {region:?} would leave these services with no serving region: {}; pass \"force\": true to do it anyway",
        services.join(", ")
    )]
    WouldEmpty {
        region: String,
        services: Vec<String>,
    },
    #[error("cannot save the evacuation state, nothing changed: {0}")]
    State(#[from] StateError),
    #[error("{0}")]
    Cluster(#[from] ClusterError),
}

/// Gauge handles for one compiled config, resolved once (a label lookup hashes and locks).
struct Gauges {
    endpoint_up: Vec<IntGauge>,
    /// By (service, region) slot.
    region_up: Vec<IntGauge>,
    /// By region: (evacuated, evacuated since).
    evacuated: Vec<(IntGauge, IntGauge)>,
    /// By service: [IPv4, IPv6], for the families the service has.
    all_down: Vec<[Option<IntGauge>; 2]>,
}

impl Gauges {
    /// Drops the series of any previous config and resolves this one's.
    fn new(m: &Metrics, c: &Compiled) -> Gauges {
        m.endpoint_up.reset();
        m.region_up.reset();
        m.region_evacuated.reset();
        m.evacuated_since.reset();
        m.service_all_down.reset();
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
            all_down,
        }
    }
}

pub struct Publisher {
    store: Arc<ArcSwap<RoutingTable>>,
    compiled: Arc<Compiled>,
    counters: Arc<DnsCounters>,
    templates: Arc<Templates>,
    config_generation: u64,
    config_path: Option<PathBuf>,
    trackers: Vec<Tracker>,
    latency: Vec<Ewma>,
    probed: Vec<bool>,
    evacuations: BTreeMap<String, Evacuation>,
    generation: u64,
    state_dir: Option<PathBuf>,
    metrics: Arc<Metrics>,
    /// (service, family) pairs with no healthy region, as of the last publish.
    all_down: HashSet<(ServiceId, Family)>,
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
    peers: BTreeMap<String, BTreeMap<String, Health>>,
    cluster_revision: i64,
}

impl Publisher {
    /// Seeds health (warm start) and evacuations from saved state and publishes the first
    /// table.
    pub fn new(
        compiled: Arc<Compiled>,
        saved: &SavedHealth,
        evacuations: SavedEvacuations,
        metrics: Arc<Metrics>,
    ) -> (Publisher, Arc<ArcSwap<RoutingTable>>) {
        let table = RoutingTable::cold(compiled.clone());
        let counters = table.counters.clone();
        let templates = table.templates.clone();
        let gauges = Gauges::new(&metrics, &compiled);
        let store = Arc::new(ArcSwap::from_pointee(table));
        let n = compiled.targets.len();
        let mut p = Publisher {
            store: store.clone(),
            trackers: compiled
                .targets
                .iter()
                .map(|t| {
                    Tracker::new(
                        saved
                            .targets
                            .get(&t.key)
                            .copied()
                            .unwrap_or(Health::Unknown),
                    )
                })
                .collect(),
            latency: vec![Ewma::default(); n],
            probed: vec![false; n],
            state_dir: compiled.settings.state_dir.clone(),
            compiled,
            counters,
            templates,
            config_generation: 1,
            config_path: None,
            evacuations: evacuations.regions,
            generation: 0,
            metrics,
            all_down: HashSet::new(),
            probers: JoinSet::new(),
            spawner: None,
            gauges,
            latency_map: Arc::new(LatencyMap::default()),
            penalty: Vec::new(),
            cluster: None,
            quorum: Quorum::Majority,
            peers: BTreeMap::new(),
            cluster_revision: 0,
        };
        p.latency_map = p.compiled.latency_map.clone();
        p.penalty = vec![None; p.compiled.service_region_slots];
        p.publish("start".into());
        (p, store)
    }

    /// Fleet mode: admin changes go through `store`, health is decided with the peers.
    pub fn with_cluster(mut self, store: Arc<dyn ClusterStore>, quorum: Quorum) -> Self {
        store.publish_health(self.own_view());
        self.cluster = Some(store);
        self.quorum = quorum;
        self
    }

    /// This instance's own verdicts, by target key.
    fn own_view(&self) -> BTreeMap<String, Health> {
        self.saved().targets
    }

    /// Where `Reload` reads the config from.
    pub fn with_config_path(mut self, path: PathBuf) -> Self {
        self.config_path = Some(path);
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
        self.probed.iter().all(|p| *p)
    }

    /// Folds one probe result in; publishes and returns true when a verdict changed (or the
    /// first probe round just completed).
    pub fn on_probe(&mut self, ev: &ProbeEvent) -> bool {
        if ev.generation != self.config_generation {
            return false;
        }
        let i = ev.target.index();
        let was_complete = self.first_round_done();
        let (Some(tracker), Some(target)) =
            (self.trackers.get_mut(i), self.compiled.targets.get(i))
        else {
            return false;
        };
        let check = &self.compiled.checks[target.check.index()];
        let labels = [target.key.as_str(), check.name.as_str()];
        let result = if ev.outcome.ok { "success" } else { "failure" };
        self.metrics
            .probe_results
            .with_label_values(&[labels[0], labels[1], result])
            .inc();
        if let Some(l) = ev.outcome.latency {
            self.metrics
                .probe_duration
                .with_label_values(&labels)
                .observe(l.as_secs_f64());
            if ev.outcome.ok {
                self.latency[i].observe(l.as_secs_f64() * 1e6);
            }
        }
        self.probed[i] = true;
        let changed = tracker.observe(ev.outcome.ok, check.rise, check.fall);
        if let Some(new) = changed {
            match (&ev.outcome.error, new) {
                (Some(err), Health::Down) => {
                    warn!(target = %target.key, health = new.name(), %err, "health changed")
                }
                _ => info!(target = %target.key, health = new.name(), "health changed"),
            }
        }
        let completed = !was_complete && self.first_round_done();
        if completed {
            info!("first probe round complete");
        }
        if changed.is_some()
            && let Some(store) = &self.cluster
        {
            store.publish_health(self.own_view());
        }
        if changed.is_some() || completed {
            self.publish(
                if changed.is_some() {
                    "health"
                } else {
                    "first probe round complete"
                }
                .into(),
            );
            return true;
        }
        false
    }

    /// Applies an admin command.
    pub async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Evacuate {
                region,
                reason,
                by,
                force,
                reply,
            } => {
                let r = self.evacuate(region, reason, by, force).await;
                let _ = reply.send(r);
            }
            Command::Restore { region, by, reply } => {
                let r = self.restore(region, by).await;
                let _ = reply.send(r);
            }
            Command::Reload { reply } => {
                let r = self.reload().await;
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
            Command::ClusterAdmin { doc, revision } => {
                if revision == 0 && !self.evacuations.is_empty() {
                    // The store has no admin state but our cache does (a wiped or new etcd):
                    // seed it rather than forget an evacuation.
                    if let Some(store) = self.cluster.clone() {
                        let doc = AdminDoc {
                            evacuations: self.evacuations.clone(),
                        };
                        match store.propose(&doc, 0).await {
                            Ok(rev) => {
                                info!(
                                    revision = rev,
                                    "seeded the fleet's admin state from the local cache"
                                );
                                self.cluster_revision = rev;
                            }
                            Err(e) => warn!(error = %e, "cannot seed the fleet's admin state"),
                        }
                    }
                } else if revision > self.cluster_revision && doc.evacuations != self.evacuations {
                    self.cluster_revision = revision;
                    self.apply_evacuations(doc.evacuations, "cluster").await;
                } else {
                    self.cluster_revision = self.cluster_revision.max(revision);
                }
            }
            Command::PeerViews(views) => {
                if views != self.peers {
                    self.peers = views;
                    self.publish("peer health".into());
                }
            }
            Command::SetLatencyMap {
                text,
                format,
                reply,
            } => {
                let r = LatencyMap::parse(&text, format, &self.compiled.regions).map(|map| {
                    let entries = map.entries;
                    self.latency_map = Arc::new(map);
                    info!(entries, "latency map replaced through the admin API");
                    (self.publish("latency map".into()), entries)
                });
                let _ = reply.send(r);
            }
        }
    }

    async fn evacuate(
        &mut self,
        region: String,
        reason: String,
        by: String,
        force: bool,
    ) -> Result<u64, AdminError> {
        let Some(rid) = self.compiled.regions.iter().position(|r| r.name == region) else {
            return Err(AdminError::UnknownRegion(region));
        };
        if self.evacuations.contains_key(&region) {
            return Err(AdminError::AlreadyEvacuated(region));
        }
        let current = self.store.load_full();
        let emptied: Vec<String> = self
            .compiled
            .services
            .iter()
            .filter(|svc| {
                let serving = |sr: &&super::table::ServiceRegion| {
                    !current.evacuated(sr.region)
                        && sr
                            .v4
                            .iter()
                            .chain(sr.v6.iter())
                            .any(|e| current.serving(*e))
                };
                let before = svc.regions.iter().filter(serving).count();
                let after = svc
                    .regions
                    .iter()
                    .filter(serving)
                    .filter(|sr| sr.region.index() != rid)
                    .count();
                before > 0 && after == 0
            })
            .map(|svc| svc.name.to_ascii())
            .collect();
        if !emptied.is_empty() && !force {
            return Err(AdminError::WouldEmpty {
                region,
                services: emptied,
            });
        }
        let evacuation = Evacuation {
            region: region.clone(),
            reason,
            by,
            since: unix_now(),
        };
        let mut next = self.evacuations.clone();
        next.insert(region.clone(), evacuation.clone());
        self.commit_evacuations(next).await?;
        audit(
            &evacuation.region,
            "evacuate",
            &evacuation.reason,
            &evacuation.by,
            force,
        );
        Ok(self.publish(format!("evacuate {region}")))
    }

    async fn restore(&mut self, region: String, by: String) -> Result<u64, AdminError> {
        if !self.evacuations.contains_key(&region) {
            return Err(AdminError::NotEvacuated(region));
        }
        let mut next = self.evacuations.clone();
        next.remove(&region);
        self.commit_evacuations(next).await?;
        audit(&region, "restore", "", &by, false);
        Ok(self.publish(format!("restore {region}")))
    }

    /// Makes `next` the evacuation state: in fleet mode through the shared store first (a
    /// compare-and-swap on the revision this instance last applied), then the local file,
    /// then this instance's table.
    async fn commit_evacuations(
        &mut self,
        next: BTreeMap<String, Evacuation>,
    ) -> Result<(), AdminError> {
        if let Some(store) = &self.cluster {
            let doc = AdminDoc {
                evacuations: next.clone(),
            };
            self.cluster_revision = store.propose(&doc, self.cluster_revision).await?;
        }
        self.save_evacuations(&next).await?;
        self.evacuations = next;
        Ok(())
    }

    /// Applies evacuations decided elsewhere (the fleet), caching them in `state_dir` so a
    /// restart without the store still honours them.
    async fn apply_evacuations(&mut self, next: BTreeMap<String, Evacuation>, from: &str) {
        if let Err(e) = self.save_evacuations(&next).await {
            warn!(error = %e, "cannot cache the fleet's evacuations locally");
        }
        for (region, e) in &next {
            if !self.evacuations.contains_key(region) {
                audit(region, "evacuate", &e.reason, &e.by, false);
            }
        }
        for region in self.evacuations.keys() {
            if !next.contains_key(region) {
                audit(region, "restore", "", from, false);
            }
        }
        self.evacuations = next;
        self.publish(format!("evacuations from {from}"));
    }

    async fn save_evacuations(
        &self,
        next: &BTreeMap<String, Evacuation>,
    ) -> Result<(), StateError> {
        let Some(dir) = self.state_dir.clone() else {
            return Ok(());
        };
        let saved = SavedEvacuations {
            version: 1,
            regions: next.clone(),
        };
        tokio::task::spawn_blocking(move || crate::state::save_evacuations(&dir, &saved))
            .await
            .unwrap_or_else(|e| {
                Err(StateError::Write {
                    path: PathBuf::new(),
                    source: std::io::Error::other(e.to_string()),
                })
            })
    }

    /// Reads and compiles the config again; on success swaps it in, carrying health by target
    /// key and evacuations by region name. On failure the old table keeps serving.
    async fn reload(&mut self) -> Result<u64, ConfigErrors> {
        let Some(path) = self.config_path.clone() else {
            return Err(ConfigErrors(Vec::new()));
        };
        let previous = self.compiled.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            crate::config::load_reusing(&path, Some(&previous))
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
        if compiled.settings.dns_listen != self.compiled.settings.dns_listen
            || compiled.settings.admin_listen != self.compiled.settings.admin_listen
        {
            warn!("listen addresses changed in the config; they take effect at the next restart");
        }
        let by_key: HashMap<&str, usize> = self
            .compiled
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| (t.key.as_str(), i))
            .collect();
        let carried: Vec<(Tracker, Ewma, bool)> = compiled
            .targets
            .iter()
            .map(|t| match by_key.get(t.key.as_str()) {
                Some(&i) => (self.trackers[i], self.latency[i], self.probed[i]),
                None => (Tracker::new(Health::Unknown), Ewma::default(), false),
            })
            .collect();
        self.trackers = carried.iter().map(|c| c.0).collect();
        self.latency = carried.iter().map(|c| c.1).collect();
        self.probed = carried.iter().map(|c| c.2).collect();
        for name in self.evacuations.keys() {
            if !compiled.regions.iter().any(|r| &r.name == name) {
                warn!(region = %name, "evacuated region is not in the new config; the evacuation is kept for when it returns");
            }
        }
        self.metrics.carry(&self.counters);
        let cold = RoutingTable::cold(compiled.clone());
        self.counters = cold.counters.clone();
        self.templates = cold.templates.clone();
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
        Ok(self.publish("reload".into()))
    }

    fn publish(&mut self, why: String) -> u64 {
        self.generation += 1;
        let health = HealthView {
            targets: self
                .compiled
                .targets
                .iter()
                .zip(self.trackers.iter().zip(&self.latency))
                .map(|(target, (t, l))| {
                    let peers = self
                        .peers
                        .values()
                        .filter_map(|v| v.get(&target.key).copied());
                    let v = consensus(t.health, peers, self.quorum);
                    TargetHealth {
                        health: v.health,
                        latency_us: l.get(),
                        observers: v.observers,
                        down_votes: v.down,
                    }
                })
                .collect(),
        };
        self.update_penalties(&health);
        let table = RoutingTable {
            latency_map: self.latency_map.clone(),
            penalty_ms: self.penalty.clone().into(),
            health: Arc::new(health),
            admin: Arc::new(AdminView::new(&self.compiled, self.evacuations.clone())),
            counters: self.counters.clone(),
            templates: self.templates.clone(),
            compiled: self.compiled.clone(),
            generation: self.generation,
            built_at: SystemTime::now(),
            built_for: why,
            probes_complete: self.first_round_done(),
        };
        self.update_gauges(&table);
        tracing::debug!(generation = self.generation, why = %table.built_for, "published routing table");
        self.store.store(Arc::new(table));
        self.generation
    }

    /// Measured service latency per (service, region): the mean smoothed probe latency of
    /// its serving endpoints, published only when it moved by more than the service's
    /// `latency_margin_ms` (a deadband, so probe noise never moves an answer).
    fn update_penalties(&mut self, health: &HealthView) {
        for svc in &self.compiled.services {
            for sr in svc.regions.iter() {
                let (sum, n) = sr
                    .v4
                    .iter()
                    .chain(sr.v6.iter())
                    .filter_map(|e| self.compiled.endpoint(*e).target)
                    .filter_map(|t| health.targets.get(t.index()))
                    .filter(|t| t.health.serving())
                    .filter_map(|t| t.latency_us)
                    .fold((0.0, 0u32), |(s, n), l| (s + l, n + 1));
                let measured = (n > 0).then(|| (sum / f64::from(n) / 1000.0) as f32);
                let slot = &mut self.penalty[sr.slot as usize];
                *slot = match (*slot, measured) {
                    (Some(old), Some(new)) if (new - old).abs() <= svc.latency_margin_ms => {
                        Some(old)
                    }
                    (_, new) => new,
                };
            }
        }
    }

    /// Health and evacuation gauges (handles resolved once per config), and the log lines
    /// for services entering and leaving the state where no region is healthy.
    fn update_gauges(&mut self, table: &RoutingTable) {
        let m = &self.metrics;
        m.generation.set(table.generation as i64);
        let g = &self.gauges;
        for (i, (evacuated, since)) in g.evacuated.iter().enumerate() {
            evacuated.set(i64::from(table.admin.evacuated[i]));
            let region = &self.compiled.regions[i].name;
            since.set(self.evacuations.get(region).map_or(0, |e| e.since as i64));
        }
        for (i, e) in g.endpoint_up.iter().enumerate() {
            e.set(i64::from(table.serving(EndpointId(i as u32))));
        }
        let mut now = HashSet::new();
        for (i, svc) in self.compiled.services.iter().enumerate() {
            for sr in svc.regions.iter() {
                let up = [Family::V4, Family::V6]
                    .into_iter()
                    .any(|f| !sr.endpoints(f).is_empty() && table.region_healthy(svc, sr, f));
                g.region_up[sr.slot as usize].set(i64::from(up));
            }
            for (f, family) in [Family::V4, Family::V6].into_iter().enumerate() {
                let Some(gauge) = &g.all_down[i][f] else {
                    continue;
                };
                let healthy = svc.regions.iter().any(|sr| {
                    !sr.endpoints(family).is_empty()
                        && !table.evacuated(sr.region)
                        && table.region_healthy(svc, sr, family)
                });
                gauge.set(i64::from(!healthy));
                if !healthy {
                    now.insert((ServiceId(i as u32), family));
                }
            }
        }
        for key in now.difference(&self.all_down) {
            let svc = self.compiled.service(key.0);
            m.all_down_total
                .with_label_values(&[&svc.name.to_ascii()])
                .inc();
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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One audit line per admin change, under its own log target so it can be routed apart.
fn audit(region: &str, action: &str, reason: &str, by: &str, force: bool) {
    info!(target: "meridian::audit", region, action, reason, by, force, "admin change");
}
