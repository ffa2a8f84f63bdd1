//! The single writer. It owns the `ArcSwap` the DNS path reads and is the only code that
//! stores into it. Probe results, admin commands (evacuate, restore), fleet updates and
//! reloads arrive as messages; each change publishes a new [`Snapshot`] with a higher
//! generation. Admin callers get the new generation back once it is being served. The DNS
//! path never waits on any of this.
pub mod admin;
pub mod command;
pub mod gauges;
pub mod health;
pub mod history;
#[cfg(test)]
mod memory_tests;
pub mod ramps;
pub mod reload;
pub mod rollback;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::clock::{Clock, SystemClock};
use crate::cluster::{ClusterStore, FleetUpdate};
use crate::dns::sample::{QuerySample, SAMPLE_EVERY, SAMPLE_SLOTS};
use crate::dns::snapshot::{Snapshot, Store};
use crate::health::prober::ProbeEvent;
use crate::metrics::Metrics;
use crate::routing::admin::{AdminState, AdminView};
use crate::routing::latency::LatencyMap;
use crate::routing::table::{Compiled, RoutingTable, TargetId};
use crate::settings::Quorum;
use crate::state::{SavedEvacuations, SavedHealth};
use command::Command;
use gauges::Gauges;
use health::{HealthState, PeerViews, update_penalties};
use history::{Cause, Entry, History, LatencySource};

/// Shortest time between two tables published for health changes: a storm is folded into
/// one table per gap.
pub const PUBLISH_GAP: Duration = Duration::from_millis(25);
/// Shortest time between two writes of the health file.
pub const SAVE_GAP: Duration = Duration::from_secs(1);
/// How often the query rate (of the sample, and answered per region) is measured.
pub const RATE_EVERY: Duration = Duration::from_secs(5);
/// Probe events folded in one go before the loop looks at its other inputs.
const PROBE_DRAIN: usize = 4096;

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
    /// Evacuations, drains and ramps, expired ones included until the next change.
    admin: AdminState,
    /// Unix time up to which the schedule (starts, expiries, ramp steps) has been audited.
    schedule_seen: u64,
    /// Ramps whose Prometheus condition is being polled, by id.
    ramp_checks: ramps::Checks,
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
    /// Published tables, configs kept for rollback, journal lines to write.
    history: History,
    /// Targets whose verdict changed since the last publish (the first few), and how many.
    changed_targets: Vec<String>,
    changed_count: usize,
    /// Targets whose verdict, guard verdict or figure may have changed since the last
    /// publish: the next table's health view is the last one with these worked out again.
    touched: Vec<TargetId>,
    /// The last table's health view is of the current health, config and peers' views
    /// except for `touched` (false after a peers' or quorum change, and before the first).
    view_current: bool,
    /// Fleet mode: this instance's verdicts changed since they were last shared.
    verdicts_changed: bool,
    latency_source: LatencySource,
    /// The sample of recent queries, shared by every snapshot.
    sample: Arc<QuerySample>,
    /// Answers per region (counter slot 0: none) and when, at the last rate measurement.
    rate_seen: Option<(Instant, u64, Vec<u64>)>,
    /// Answers per second per region, as last measured.
    region_rates: Vec<f64>,
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
        let sample = Arc::new(QuerySample::new(SAMPLE_SLOTS));
        let cold = Snapshot::first_sampled(RoutingTable::cold(compiled.clone()), sample.clone());
        let store = Arc::new(ArcSwap::from_pointee(cold.next(cold.table.clone())));
        let mut history = History::load(compiled.settings.state_dir.as_ref());
        history.keep_config(compiled.clone(), None);
        let mut p = Publisher {
            history,
            changed_targets: Vec::new(),
            changed_count: 0,
            touched: Vec::new(),
            view_current: false,
            verdicts_changed: false,
            latency_source: LatencySource::Config,
            sample,
            rate_seen: None,
            region_rates: Vec::new(),
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
            admin: evacuations.into_state(),
            schedule_seen: 0,
            ramp_checks: ramps::Checks::default(),
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
        p.schedule_seen = crate::clock::unix_seconds(now);
        // The generations go on from the history's, so a rollback target is never ambiguous.
        p.generation = p.history.entries.back().map_or(0, |e| e.generation);
        p.publish(Cause::Start, now);
        (p, store)
    }

    /// Fleet mode: admin changes go through `store`, health is decided with the peers.
    pub fn with_cluster(mut self, store: Arc<dyn ClusterStore>, quorum: Quorum) -> Self {
        store.publish_health(self.verdicts());
        self.cluster = Some(store);
        self.quorum = quorum;
        self.view_current = false;
        self
    }

    /// Where `Reload` reads the config from.
    pub fn with_config_path(mut self, path: PathBuf) -> Self {
        // The source text of the config in force, kept for rollback (it was just read). Should
        // the file have changed in between, a rollback that compiles this text again finds
        // another config hash and refuses.
        if let Ok(text) = std::fs::read_to_string(&path) {
            self.history
                .keep_config(self.compiled.clone(), Some(Arc::from(text)));
        }
        self.config_path = Some(path);
        self
    }

    /// Where wall-clock time comes from (publish times, evacuation starts, schedules).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        let now = self.clock.now();
        self.schedule_seen = crate::clock::unix_seconds(now);
        self.publish(Cause::Clock, now);
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
        let Some(why) = self.fold_probe(ev) else {
            return false;
        };
        let now = self.clock.now();
        let cause = self.probe_cause(why);
        self.publish(cause, now);
        true
    }

    /// Folds one probe result into the health state without publishing; says why a table
    /// is due when a verdict changed or the first probe round completed.
    fn fold_probe(&mut self, ev: &ProbeEvent) -> Option<&'static str> {
        if ev.generation != self.config_generation {
            return None;
        }
        let observed = self
            .health
            .observe(&self.compiled, ev.target, &ev.outcome)?;
        self.gauges.probe(ev.target, &ev.outcome);
        let key = &self.compiled.targets[ev.target.index()].key;
        if let Some(new) = observed.changed {
            match &ev.outcome.error {
                Some(err) if new == crate::routing::table::Health::Down => {
                    warn!(target = %key, health = new.name(), %err, "health changed")
                }
                _ => info!(target = %key, health = new.name(), "health changed"),
            }
        }
        if observed.changed.is_some() || observed.promotable_changed.is_some() {
            self.changed_count += 1;
            if self.changed_targets.len() < history::CAUSE_TARGETS {
                self.changed_targets.push(key.clone());
            }
        }
        let check = &self.compiled.checks[self.compiled.targets[ev.target.index()].check.index()];
        if observed.changed.is_some()
            || observed.promotable_changed.is_some()
            || check.figure.is_some()
        {
            self.touched.push(ev.target);
            // A guard's figure changes with every probe but publishes nothing by itself: a
            // quiet spell must not grow the list past one entry per target.
            if self.touched.len() > 2 * self.compiled.targets.len() {
                self.touched.sort_unstable();
                self.touched.dedup();
            }
        }
        // Shared with the fleet once per table, however many verdicts a storm changes.
        self.verdicts_changed |=
            observed.changed.is_some() || observed.promotable_changed.is_some();
        if observed.first_round_completed {
            info!("first probe round complete");
        }
        if let Some(promotable) = observed.promotable_changed {
            let figure = ev.outcome.figure;
            match &ev.outcome.error {
                Some(err) => info!(target = %key, promotable, ?figure, %err, "promotable changed"),
                None => info!(target = %key, promotable, ?figure, "promotable changed"),
            }
        }
        match (
            observed.changed,
            observed.first_round_completed,
            observed.promotable_changed,
        ) {
            (Some(_), _, _) => Some("health"),
            (None, true, _) => Some("first probe round complete"),
            (None, false, Some(_)) => Some("promotable"),
            (None, false, None) => None,
        }
    }

    /// Applies an admin command.
    pub async fn on_command(&mut self, cmd: Command) {
        let now = self.clock.now();
        match cmd {
            Command::Evacuate { change, reply } => {
                let r = self.evacuate(change, now).await;
                let _ = reply.send(r);
            }
            Command::Drain {
                change,
                percent,
                reply,
            } => {
                let r = self.drain(change, percent, now).await;
                let _ = reply.send(r);
            }
            Command::Ramp {
                change,
                spec,
                reply,
            } => {
                let r = self.ramp(change, spec, now).await;
                let _ = reply.send(r);
            }
            Command::RampAction {
                id,
                action,
                by,
                reply,
            } => {
                let r = self.ramp_action(&id, action, &by, now).await;
                let _ = reply.send(r);
            }
            Command::RampCheck { id, value } => {
                self.on_ramp_check(&id, value, now).await;
            }
            Command::Restore { region, by, reply } => {
                let r = self.restore(region, by, now).await;
                let _ = reply.send(r);
            }
            Command::History { reply } => {
                let _ = reply.send(self.history.entries.iter().cloned().collect());
            }
            Command::Rollback {
                to,
                reason,
                by,
                reply,
            } => {
                let r = self.rollback(to, reason, by, now).await;
                let _ = reply.send(r);
            }
            Command::Reload { reply } => {
                let r = self.reload(now).await;
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
            // Handled by the loop, which owns what is pending.
            Command::Shutdown { done } => {
                let _ = done.send(());
            }
            Command::Fleet(FleetUpdate::Admin { doc, revision }) => {
                self.on_cluster_admin(doc, revision, now).await;
            }
            Command::Fleet(FleetUpdate::PeerViews(views)) => {
                if views != self.peers {
                    self.peers = views;
                    self.view_current = false;
                    self.publish(Cause::PeerHealth, now);
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
                    self.latency_source = LatencySource::Api(entries);
                    info!(entries, "latency map replaced through the admin API");
                    (self.publish(Cause::LatencyMap { entries }, now), entries)
                });
                let _ = reply.send(r);
            }
        }
    }

    /// Builds the next table from the current compiled config, health and admin state, and
    /// swaps it in with the DNS side's templates and counters as one snapshot.
    fn publish(&mut self, cause: Cause, now: SystemTime) -> u64 {
        self.generation += 1;
        let why = cause.summary();
        if std::mem::take(&mut self.verdicts_changed)
            && let Some(store) = &self.cluster
        {
            store.publish_health(self.verdicts());
        }
        // A health change re-examines the targets and services it touched, not every one.
        let health_only = matches!(cause, Cause::Health { .. } | Cause::FirstProbeRound);
        let last = self.store.load_full();
        let touched = std::mem::take(&mut self.touched);
        let incremental = self.view_current && Arc::ptr_eq(&last.table.compiled, &self.compiled);
        let health = if incremental {
            let (peers, quorum) = (&self.peers, self.quorum);
            self.health
                .update_view(&self.compiled, peers, quorum, &last.table.health, &touched)
        } else {
            self.health.view(&self.compiled, &self.peers, self.quorum)
        };
        self.view_current = true;
        update_penalties(&self.compiled, &health, &mut self.penalty);
        let table = RoutingTable {
            latency_map: self.latency_map.clone(),
            penalty_ms: self.penalty.clone().into(),
            health: Arc::new(health),
            admin: Arc::new(AdminView::new(
                &self.compiled,
                &self.admin,
                crate::clock::unix_seconds(now),
            )),
            compiled: self.compiled.clone(),
            generation: self.generation,
            built_at: now,
            built_for: why,
            probes_complete: self.health.first_round_done(),
        };
        let only_touched =
            incremental && health_only && last.table.admin.evacuated == table.admin.evacuated;
        self.gauges
            .publish(&self.metrics, &table, only_touched.then_some(&touched[..]));
        drop(last);
        tracing::debug!(generation = self.generation, why = %table.built_for, "published routing table");
        let next = Arc::new(self.cold.next(table));
        let previous = self.store.swap(next.clone());
        self.record_history(&previous, &next, cause, now);
        self.generation
    }

    /// This instance's own verdicts, as published to the fleet.
    fn verdicts(&self) -> crate::cluster::Verdicts {
        crate::cluster::Verdicts {
            health: self.saved().targets,
            guards: self.health.guards(&self.compiled),
        }
    }

    /// The history entry of a publish: its cause, what it was built from, and what changed
    /// (replaying a bounded part of the query sample through both tables).
    fn record_history(
        &mut self,
        previous: &Snapshot,
        next: &Snapshot,
        cause: Cause,
        now: SystemTime,
    ) {
        let population = history::population(previous, history::DIFF_SAMPLES);
        let diff = if previous.table.generation == next.table.generation {
            history::Diff::default()
        } else {
            history::diff(&previous.table, &next.table, &population)
        };
        let entry = Entry {
            generation: self.generation,
            at: crate::clock::unix_seconds(now),
            cause,
            config_generation: self.config_generation,
            config_hash: self.compiled.settings.config_hash.clone(),
            admin: self.admin.pruned(crate::clock::unix_seconds(now)),
            latency_map: self.latency_source.clone(),
            diff,
            latency: Some(self.latency_map.clone()),
        };
        self.history.record(entry, self.state_dir.is_some());
    }

    /// Appends the pending history lines to the journal in the background; `None` when
    /// there is nothing to write or no `state_dir`.
    fn save_history(&mut self) -> Option<tokio::task::JoinHandle<usize>> {
        let dir = self.state_dir.clone()?;
        if self.history.pending.is_empty() {
            return None;
        }
        let lines = std::mem::take(&mut self.history.pending);
        let held = self.history.journaled;
        Some(tokio::task::spawn_blocking(move || {
            crate::state::append_history(&dir, &lines, held, history::JOURNAL_MAX, history::RING)
                .unwrap_or_else(|e| {
                    warn!(error = %e, "cannot append to the history journal");
                    held
                })
        }))
    }

    /// Measures the query rate: of the sample (for what-if estimates) and of the answers
    /// per region (for capacity); aborts ramps whose receiving regions answer above their
    /// capacity.
    async fn measure_rates(&mut self) {
        let snap = self.store.load_full();
        let answers = snap.counters.region_answers();
        let written = self.sample.written();
        let at = Instant::now();
        if let Some((then, seen, before)) = self.rate_seen.take()
            && before.len() == answers.len()
        {
            let secs = at.duration_since(then).as_secs_f64();
            if secs > 0.0 {
                let sampled = written.saturating_sub(seen) as f64 * f64::from(SAMPLE_EVERY);
                self.sample.set_rate(sampled / secs);
                self.region_rates = answers
                    .iter()
                    .zip(&before)
                    .skip(1)
                    .map(|(a, b)| a.saturating_sub(*b) as f64 / secs)
                    .collect();
            }
        }
        self.rate_seen = Some((at, written, answers));
        self.check_ramp_capacity(self.clock.now()).await;
    }

    /// What to save in `state_dir`.
    pub fn saved(&self) -> SavedHealth {
        self.health.saved(&self.compiled)
    }

    /// Applies probe events and commands until both channels close.
    ///
    /// Probe events are folded in as they come and published together: a change publishes at
    /// once when the last table is at least [`PUBLISH_GAP`] old, else when it is (so a storm
    /// of thousands of health changes costs a few tables, not one per change). Commands
    /// publish at once. The health file is written off this loop, at most every
    /// [`SAVE_GAP`], with the latest verdicts.
    pub async fn run(
        mut self,
        mut probes: mpsc::Receiver<ProbeEvent>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let mut due: Option<&'static str> = None;
        let mut last_publish = Instant::now();
        let mut save_at: Option<Instant> = None;
        let mut saving: Option<tokio::task::JoinHandle<()>> = None;
        let mut journaling: Option<tokio::task::JoinHandle<usize>> = None;
        let mut rates = tokio::time::interval(RATE_EVERY);
        rates.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopped = None;
        // Ramps restored from state_dir get their Prometheus conditions polled again.
        self.sync_ramp_checks();
        let mut resign_at = Instant::now() + resign_every(&self.compiled);
        loop {
            // One journal writer at a time, off this loop.
            if journaling.as_ref().is_none_or(|j| j.is_finished()) {
                if let Some(done) = journaling.take() {
                    self.history.journaled = done.await.unwrap_or(self.history.journaled);
                }
                journaling = self.save_history();
            }
            let publish_at = last_publish + PUBLISH_GAP;
            let change_at = self.next_change();
            tokio::select! {
                () = tokio::time::sleep_until(resign_at), if self.compiled.signed => {
                    // Signatures due before the next sweep are made again now, off the DNS
                    // path, so queries keep finding valid ones in the cache.
                    let every = resign_every(&self.compiled);
                    let compiled = self.compiled.clone();
                    let now = crate::clock::unix_seconds(self.clock.now());
                    tokio::task::spawn_blocking(move || {
                        for zone in &compiled.zones {
                            if let Some(signer) = &zone.signer {
                                signer.refresh(now, 2 * every.as_secs());
                            }
                        }
                    });
                    resign_at = Instant::now() + every;
                }
                () = tokio::time::sleep_until(change_at.unwrap_or(publish_at)), if change_at.is_some() => {
                    // Before a ramp's next step: its conditions against the table being
                    // served, so a failing receiving side stops it at the step it is on.
                    let now = self.clock.now();
                    self.check_ramps(now).await;
                    self.on_schedule(now);
                }
                Some(cmd) = self.ramp_checks.next() => {
                    self.on_command(cmd).await;
                }
                _ = rates.tick() => {
                    self.measure_rates().await;
                }
                ev = probes.recv() => match ev {
                    Some(ev) => {
                        // Fold in everything already queued, then see whether to publish.
                        let mut next = Some(ev);
                        for _ in 0..PROBE_DRAIN {
                            let Some(ev) = next.take() else { break };
                            if let Some(why) = self.fold_probe(&ev) {
                                due = due.or(Some(why));
                            }
                            next = probes.try_recv().ok();
                        }
                        if let Some(ev) = next
                            && let Some(why) = self.fold_probe(&ev)
                        {
                            due = due.or(Some(why));
                        }
                        if due.is_some() && Instant::now() >= publish_at {
                            self.publish_due(&mut due, &mut last_publish, &mut save_at);
                            self.check_ramps(self.clock.now()).await;
                        }
                    }
                    None => break,
                },
                () = tokio::time::sleep_until(publish_at), if due.is_some() => {
                    self.publish_due(&mut due, &mut last_publish, &mut save_at);
                    self.check_ramps(self.clock.now()).await;
                }
                () = tokio::time::sleep_until(save_at.unwrap_or(publish_at)), if save_at.is_some() => {
                    match saving.take() {
                        // One writer at a time, and the loop never waits for it: look again
                        // shortly; the next write carries the newest verdicts.
                        Some(previous) if !previous.is_finished() => {
                            saving = Some(previous);
                            save_at = Some(Instant::now() + PUBLISH_GAP);
                        }
                        _ => {
                            save_at = None;
                            saving = self.save_health();
                        }
                    }
                }
                cmd = commands.recv() => match cmd {
                    Some(Command::Shutdown { done }) => {
                        stopped = Some(done);
                        break;
                    }
                    Some(cmd) => {
                        // Health folded in so far goes out first, then the command's change.
                        self.publish_due(&mut due, &mut last_publish, &mut save_at);
                        self.on_command(cmd).await;
                    }
                    None => break,
                },
            }
        }
        self.publish_due(&mut due, &mut last_publish, &mut save_at);
        if let Some(previous) = saving.take() {
            let _ = previous.await;
        }
        if let Some(j) = journaling.take() {
            self.history.journaled = j.await.unwrap_or(self.history.journaled);
        }
        if let Some(last) = self.save_history() {
            let _ = last.await;
        }
        if save_at.is_some()
            && let Some(last) = self.save_health()
        {
            let _ = last.await;
        }
        if let Some(done) = stopped {
            let _ = done.send(());
        }
    }

    /// When the admin state in force next changes (a start, an expiry, a ramp's step), on
    /// the loop's clock (a moment after, so the wall clock has passed it).
    fn next_change(&self) -> Option<Instant> {
        let now = self.clock.now();
        // From the last look at the schedule, so a change due at the very second of another
        // wake-up (the rate measurement) is not passed over.
        let seen = self.schedule_seen.min(crate::clock::unix_seconds(now));
        let at = self.admin.next_change(seen)?;
        let at = std::time::UNIX_EPOCH + Duration::from_secs(at);
        let wait = at.duration_since(now).unwrap_or_default();
        Some(Instant::now() + wait + Duration::from_millis(1))
    }

    fn publish_due(
        &mut self,
        due: &mut Option<&'static str>,
        last_publish: &mut Instant,
        save_at: &mut Option<Instant>,
    ) {
        if let Some(why) = due.take() {
            let now = self.clock.now();
            let cause = self.probe_cause(why);
            self.publish(cause, now);
            *last_publish = Instant::now();
            save_at.get_or_insert(*last_publish + SAVE_GAP);
        }
    }

    /// The cause of a publish for probe results: the targets whose health or guard verdict
    /// changed, or the first round's completion.
    fn probe_cause(&mut self, why: &'static str) -> Cause {
        let targets = std::mem::take(&mut self.changed_targets);
        let changed = std::mem::take(&mut self.changed_count);
        if why == "first probe round complete" {
            Cause::FirstProbeRound
        } else {
            Cause::health(targets, changed)
        }
    }

    /// Writes the health file in the background (atomic, as every state file); `None`
    /// without a `state_dir`.
    fn save_health(&self) -> Option<tokio::task::JoinHandle<()>> {
        let dir = self.state_dir.clone()?;
        let saved = self.saved();
        Some(tokio::task::spawn_blocking(move || {
            if let Err(e) = crate::state::save_health(&dir, &saved) {
                warn!(error = %e, "cannot save health state");
            }
        }))
    }
}

/// How often the signature caches are swept for signatures due to be made again: a quarter
/// of the shortest refresh margin, between a second and an hour.
fn resign_every(compiled: &Compiled) -> Duration {
    let margin = compiled
        .zones
        .iter()
        .filter_map(|z| z.signer.as_ref())
        .map(|s| u64::from(s.validity.refresh) / 4)
        .min()
        .unwrap_or(3600);
    Duration::from_secs(margin.clamp(1, 3600))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::health::check::ProbeOutcome;
    use crate::routing::table::{Family, Health, TargetId};
    use crate::routing::test_support::{GEOIP, ZONE, load};

    /// A service with `n` endpoints in one region, each probed by a check that takes one
    /// failure to go down.
    fn publisher(n: usize) -> (Publisher, Arc<Store>) {
        let endpoints: String = (0..n)
            .map(|i| {
                format!(
                    "  {{ region = \"r\", address = \"10.0.{}.{}\" }},\n",
                    i / 250,
                    i % 250 + 1
                )
            })
            .collect();
        let text = format!(
            "{GEOIP}{ZONE}\n[checks.web]\nkind = \"tcp\"\nport = 80\nfall = 1\nrise = 1\n\n\
             [[regions]]\nname = \"r\"\n\n[[services]]\nname = \"storm.example.com.\"\n\
             check = \"web\"\nendpoints = [\n{endpoints}]\n"
        );
        let compiled = Arc::new(load(&text).expect("config"));
        Publisher::new(
            compiled,
            &Default::default(),
            Default::default(),
            Arc::new(Metrics::new()),
        )
    }

    fn failed(target: usize) -> ProbeEvent {
        ProbeEvent {
            generation: 1,
            target: TargetId(target as u32),
            outcome: ProbeOutcome {
                ok: false,
                latency: None,
                error: Some("refused".into()),
                figure: None,
            },
            at: Instant::now(),
        }
    }

    /// Services that share probe targets across regions and policies, one with latency
    /// ranking: what the incremental publish has to keep consistent.
    fn shared_targets_publisher() -> (Publisher, Arc<Store>) {
        let mut text = format!(
            "{GEOIP}{ZONE}\n[checks.web]\nkind = \"tcp\"\nport = 80\nfall = 1\nrise = 2\n\n\
             [[regions]]\nname = \"a\"\n\n[[regions]]\nname = \"b\"\n\n\
             [[regions]]\nname = \"c\"\n"
        );
        let policies = ["geo", "failover", "latency", "weighted"];
        for s in 0..12 {
            text.push_str(&format!(
                "\n[[services]]\nname = \"s{s}.example.com.\"\ncheck = \"web\"\n\
                 policy = \"{}\"\n{}endpoints = [\n",
                policies[s % policies.len()],
                if s % policies.len() == 1 {
                    "regions = [\"b\", \"a\", \"c\"]\n"
                } else {
                    ""
                }
            ));
            for (k, region) in ["a", "b", "c"].iter().enumerate() {
                // 30 addresses in all: each is an endpoint of several services.
                for e in 0..2 {
                    let n = (s * 7 + k * 3 + e) % 30;
                    text.push_str(&format!(
                        "  {{ region = \"{region}\", address = \"10.1.0.{}\" }},\n",
                        n + 1
                    ));
                }
            }
            text.push_str("]\n");
        }
        let compiled = Arc::new(load(&text).expect("config"));
        Publisher::new(
            compiled,
            &Default::default(),
            Default::default(),
            Arc::new(Metrics::new()),
        )
    }

    #[test]
    fn an_incremental_publish_matches_a_full_rebuild() {
        let (mut p, store) = shared_targets_publisher();
        let targets = p.compiled.targets.len();
        assert!(targets >= 20, "{targets} targets");
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut published = 0;
        let (mut all_down_seen, mut recovered) = (false, false);
        for step in 0..3000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let target = (rng % targets as u64) as usize;
            // Mostly down in the first half, mostly up in the second: services go all down
            // and come back.
            let ok =
                !(rng >> 32).is_multiple_of(4) && (step > 1500 || (rng >> 40).is_multiple_of(3));
            let ev = ProbeEvent {
                generation: 1,
                target: TargetId(target as u32),
                outcome: ProbeOutcome {
                    ok,
                    latency: ok.then(|| Duration::from_micros(500 + (rng >> 48) % 20_000)),
                    error: (!ok).then(|| "refused".into()),
                    figure: None,
                },
                at: Instant::now(),
            };
            if !p.on_probe(&ev) {
                continue;
            }
            published += 1;
            let table = store.load_full().table.clone();
            let full = p.health.view(&p.compiled, &p.peers, p.quorum);
            assert_eq!(table.health.targets, full.targets, "step {step}");
            let mut fresh = Gauges::new(&Metrics::new(), &p.compiled);
            fresh.publish(&Metrics::new(), &table, None);
            assert_eq!(
                p.gauges.no_healthy_region(),
                fresh.no_healthy_region(),
                "step {step}"
            );
            let mut serving = vec![(0, 0); p.compiled.regions.len()];
            for sr in p.compiled.services.iter().flat_map(|s| s.regions.iter()) {
                let (total, up) = &mut serving[sr.region.index()];
                for family in [Family::V4, Family::V6] {
                    *total += sr.endpoints(family).len();
                    *up += table.serving_count(sr.endpoints(family));
                }
            }
            assert_eq!(table.region_serving(), serving, "step {step}");
            if p.gauges.no_healthy_region().is_empty() {
                recovered |= all_down_seen;
            } else {
                all_down_seen = true;
            }
        }
        assert!(published > 100, "{published} tables");
        assert!(
            all_down_seen && recovered,
            "services went all down and came back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_health_storm_is_published_as_a_few_tables() {
        let (p, store) = publisher(1000);
        let (probe_tx, probe_rx) = mpsc::channel(4096);
        let (_cmd_tx, cmd_rx) = mpsc::channel(4);
        let task = tokio::spawn(p.run(probe_rx, cmd_rx));
        let start = store.load().table.generation;
        for i in 0..1000 {
            probe_tx.send(failed(i)).await.expect("send");
        }
        tokio::time::sleep(PUBLISH_GAP * 4).await;
        let snap = store.load();
        let down = snap
            .table
            .health
            .targets
            .iter()
            .filter(|t| t.health == Health::Down)
            .count();
        assert_eq!(down, 1000, "every change is in the table");
        let tables = snap.table.generation - start;
        assert!(
            (1..=3).contains(&tables),
            "1000 changes took {tables} tables"
        );
        drop(probe_tx);
        task.await.expect("run ends when its inputs close");
    }

    fn change(region: &str, expires_in: Option<Duration>) -> admin::Change {
        admin::Change {
            region: region.into(),
            reason: "test".into(),
            by: "tests".into(),
            force: false,
            start: None,
            end: None,
            expires_in,
        }
    }

    async fn drain(
        commands: &mpsc::Sender<Command>,
        percent: f64,
        expires_in: Option<Duration>,
    ) -> Result<u64, command::AdminError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let change = change("r", expires_in);
        commands
            .send(Command::Drain {
                change,
                percent,
                reply,
            })
            .await
            .expect("send");
        answer.await.expect("answered")
    }

    #[tokio::test(start_paused = true)]
    async fn drains_are_published_refused_when_they_would_empty_and_lift_when_they_expire() {
        let (p, store) = publisher(2);
        let start = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let p = p.with_clock(Arc::new(crate::clock::TokioClock::starting_at(start)));
        let (_probe_tx, probe_rx) = mpsc::channel(16);
        let (cmd_tx, cmd_rx) = mpsc::channel(4);
        let task = tokio::spawn(p.run(probe_rx, cmd_rx));
        let drained = || store.load().table.admin.drained[0];

        let generation = drain(&cmd_tx, 25.0, Some(Duration::from_secs(60)))
            .await
            .expect("a partial drain");
        assert_eq!(store.load().table.generation, generation);
        assert_eq!(drained(), 2_500);
        let d = &store.load().table.admin.state.drains["r"];
        assert_eq!(d.expires, Some(1_800_000_060));
        // The only region, drained fully: refused, nothing changed.
        let refused = drain(&cmd_tx, 100.0, None).await;
        assert!(
            matches!(refused, Err(command::AdminError::WouldEmpty { .. })),
            "{refused:?}"
        );
        assert_eq!(drained(), 2_500);
        assert!(matches!(
            drain(&cmd_tx, 101.0, None).await,
            Err(command::AdminError::BadPercent(_))
        ));
        // It lifts itself on time, with a new table.
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert_eq!(drained(), 2_500);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(drained(), 0);
        assert!(store.load().table.generation > generation);
        assert!(matches!(
            drain(&cmd_tx, 0.0, None).await,
            Err(command::AdminError::NotDrained(_))
        ));
        drop(cmd_tx);
        task.await.expect("stopped");
    }

    /// Regions a and b, one probed endpoint each (target 0 in a, 1 in b); a ramp of a moves
    /// clients to b.
    fn two_regions() -> (Publisher, Arc<Store>) {
        let text = format!(
            "{GEOIP}{ZONE}\n[checks.web]\nkind = \"tcp\"\nport = 80\nfall = 1\nrise = 1\n\n\
             [[regions]]\nname = \"a\"\n\n[[regions]]\nname = \"b\"\n\n[[services]]\n\
             name = \"www.example.com.\"\ncheck = \"web\"\nendpoints = [\n\
             {{ region = \"a\", address = \"10.0.0.1\" }},\n\
             {{ region = \"b\", address = \"10.0.0.2\" }},\n]\n"
        );
        let compiled = Arc::new(load(&text).expect("config"));
        Publisher::new(
            compiled,
            &Default::default(),
            Default::default(),
            Arc::new(Metrics::new()),
        )
    }

    async fn ask<T>(
        commands: &mpsc::Sender<Command>,
        command: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> Command,
    ) -> T {
        let (reply, answer) = tokio::sync::oneshot::channel();
        commands.send(command(reply)).await.expect("send");
        answer.await.expect("answered")
    }

    #[tokio::test(start_paused = true)]
    async fn safety_rules_refuse_drains_and_ramp_steps_that_would_break_them() {
        use crate::routing::admin::{AbortWhen, OnAbort};
        let text = format!(
            "{ZONE}\n[[regions]]\nname = \"a\"\n[[regions]]\nname = \"b\"\n[[regions]]\nname = \"c\"\n\n\
             [[services]]\nname = \"www.example.com.\"\npolicy = \"failover\"\n\
             regions = [\"a\", \"b\", \"c\"]\nendpoints = [\n\
             {{ region = \"a\", address = \"192.0.2.1\" }},\n\
             {{ region = \"b\", address = \"192.0.2.2\" }},\n\
             {{ region = \"c\", address = \"192.0.2.3\" }},\n]\n\n\
             [[safety]]\nservices = [\"*\"]\nmin_serving_regions = 2\n"
        );
        let compiled = Arc::new(load(&text).expect("config"));
        let (p, store) = Publisher::new(
            compiled,
            &Default::default(),
            Default::default(),
            Arc::new(Metrics::new()),
        );
        let (_probe_tx, probe_rx) = mpsc::channel(16);
        let (cmd_tx, cmd_rx) = mpsc::channel(4);
        let task = tokio::spawn(p.run(probe_rx, cmd_rx));
        let drain = |region: &str, percent: f64, force: bool| {
            let mut change = change(region, None);
            change.force = force;
            move |reply| Command::Drain {
                change,
                percent,
                reply,
            }
        };
        // a drained half-way: 2.5 regions serve.
        ask(&cmd_tx, drain("a", 50.0, false))
            .await
            .expect("allowed");
        // b drained 60 % more would leave 1.9: refused, naming the rule.
        let refused = ask(&cmd_tx, drain("b", 60.0, false)).await;
        match refused {
            Err(command::AdminError::BreaksSafety { rule, .. }) => {
                let line = text.lines().position(|l| l == "[[safety]]").expect("rule") + 1;
                assert_eq!(rule, format!("/t/meridian.toml:{line}"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(store.load().table.admin.drained[1], 0);
        // A ramp of b whose last step would break it is refused before its first step.
        let spec = ramps::RampSpec {
            steps: vec![10.0, 40.0, 60.0],
            step_every: Duration::from_secs(60),
            on_abort: OnAbort::Revert,
            abort_when: AbortWhen::default(),
        };
        let refused = ask(&cmd_tx, |reply| Command::Ramp {
            change: change("b", None),
            spec,
            reply,
        })
        .await;
        assert!(
            matches!(refused, Err(command::AdminError::BreaksSafety { .. })),
            "{refused:?}"
        );
        assert!(store.load().table.admin.state.ramps.is_empty());
        // Forced, it goes ahead; lifting a drain is never refused.
        ask(&cmd_tx, drain("b", 60.0, true)).await.expect("forced");
        ask(&cmd_tx, drain("a", 0.0, false)).await.expect("lifted");
        drop(cmd_tx);
        task.await.expect("stopped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_ramp_steps_on_the_clock_pauses_and_aborts_when_the_receiving_side_fails() {
        use crate::routing::admin::{AbortWhen, OnAbort};
        let (p, store) = two_regions();
        let start = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let p = p.with_clock(Arc::new(crate::clock::TokioClock::starting_at(start)));
        let (probe_tx, probe_rx) = mpsc::channel(16);
        let (cmd_tx, cmd_rx) = mpsc::channel(4);
        let task = tokio::spawn(p.run(probe_rx, cmd_rx));
        let drained = || store.load().table.admin.drained[0];

        let spec = ramps::RampSpec {
            steps: vec![10.0, 50.0, 100.0],
            step_every: Duration::from_secs(60),
            on_abort: OnAbort::Revert,
            abort_when: AbortWhen {
                receiving_unhealthy: true,
                ..Default::default()
            },
        };
        // Fully drained, a would be empty of nothing (b serves): allowed.
        let (_, id) = ask(&cmd_tx, |reply| Command::Ramp {
            change: change("a", None),
            spec,
            reply,
        })
        .await
        .expect("a ramp");
        assert_eq!(drained(), 1_000);
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(drained(), 5_000, "the second step, on time");
        // Paused for 10 minutes: it stays at 50 %, then goes on where it was.
        let action = |action| {
            let id = id.clone();
            move |reply| Command::RampAction {
                id,
                action,
                by: "tests".into(),
                reply,
            }
        };
        ask(&cmd_tx, action(ramps::RampAction::Pause))
            .await
            .expect("paused");
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(drained(), 5_000);
        ask(&cmd_tx, action(ramps::RampAction::Resume))
            .await
            .expect("resumed");
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(drained(), 5_000);
        // b fails: the ramp aborts by itself and, as asked, reverts to 0 %.
        probe_tx.send(failed(1)).await.expect("send");
        tokio::time::sleep(PUBLISH_GAP * 4).await;
        assert_eq!(drained(), 0, "reverted");
        let snap = store.load();
        let ramp = &snap.table.admin.state.ramps[&id];
        let why = &ramp.aborted.as_ref().expect("aborted").why;
        assert!(why.contains("b has fewer healthy endpoints"), "{why}");
        // Nothing more happens to it: aborted ramps do not step.
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(drained(), 0);
        let refused = ask(&cmd_tx, action(ramps::RampAction::Resume)).await;
        assert!(
            matches!(refused, Err(command::AdminError::BadRamp(_))),
            "{refused:?}"
        );
        drop(cmd_tx);
        drop(probe_tx);
        task.await.expect("stopped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_change_is_published_at_once() {
        let (p, store) = publisher(3);
        let (probe_tx, probe_rx) = mpsc::channel(16);
        let (cmd_tx, cmd_rx) = mpsc::channel(4);
        let task = tokio::spawn(p.run(probe_rx, cmd_rx));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = store.load().table.generation;
        let sent = Instant::now();
        probe_tx.send(failed(1)).await.expect("send");
        // No time passes: the table is published as soon as the loop has run.
        for _ in 0..100 {
            if store.load().table.generation > before {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(store.load().table.generation, before + 1);
        assert_eq!(Instant::now(), sent, "published without waiting");
        // Shutdown answers once pending work is written.
        let (done, stopped) = tokio::sync::oneshot::channel();
        cmd_tx.send(Command::Shutdown { done }).await.expect("send");
        stopped.await.expect("acknowledged");
        task.await.expect("stopped");
    }

    /// Failover from a to b, b able to take 50 qps; the config file at `path`.
    fn failover_file(path: &std::path::Path, ttl: u32) -> Publisher {
        let text = format!(
            "{GEOIP}{ZONE}\n[[regions]]\nname = \"a\"\n\n[[regions]]\nname = \"b\"\n\
             capacity_qps = 50\n\n[[services]]\nname = \"www.example.com.\"\nttl = {ttl}\n\
             policy = \"failover\"\nregions = [\"a\", \"b\"]\nendpoints = [\n\
             {{ region = \"a\", address = \"10.0.0.1\" }},\n\
             {{ region = \"b\", address = \"10.0.0.2\" }},\n]\n"
        );
        std::fs::write(path, &text).expect("write config");
        let compiled = Arc::new(load(&text).expect("config"));
        let (p, _) = Publisher::new(
            compiled,
            &Default::default(),
            Default::default(),
            Arc::new(Metrics::new()),
        );
        p.with_config_path(path.to_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn a_rollback_to_the_same_config_restores_its_latency_map() {
        let dir =
            std::env::temp_dir().join(format!("meridian-rollback-map-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut p = failover_file(&dir.join("meridian.toml"), 30);
        let start = p.store.load().table.generation;
        let (reply, answer) = tokio::sync::oneshot::channel();
        p.on_command(Command::SetLatencyMap {
            text: "0.0.0.0/0,a,10\n0.0.0.0/0,b,20\n".into(),
            format: crate::routing::latency::Format::Csv,
            reply,
        })
        .await;
        answer.await.expect("answered").expect("map accepted");
        assert!(matches!(p.latency_source, LatencySource::Api(2)));
        let now = p.clock.now();
        p.rollback(start, "map".into(), "tests".into(), now)
            .await
            .expect("rolled back");
        assert!(matches!(p.latency_source, LatencySource::Config));
        assert!(Arc::ptr_eq(&p.latency_map, &p.compiled.latency_map));
        assert!(Arc::ptr_eq(
            &p.store.load().table.latency_map,
            &p.compiled.latency_map
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rollback_restores_operator_state_and_the_config_even_after_the_file_changed() {
        let dir = std::env::temp_dir().join(format!("meridian-rollback-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("meridian.toml");
        let mut p = failover_file(&path, 30);
        let store = p.store.clone();
        let start = store.load().table.generation;
        let hash = p.compiled.settings.config_hash.clone();
        let now = p.clock.now();
        p.evacuate(change("a", None), now).await.expect("evacuated");
        // A new config (another TTL) is loaded; the file then changes again.
        let first = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, first.replace("ttl = 30", "ttl = 5")).expect("write");
        p.reload(now).await.expect("reloaded");
        std::fs::write(&path, first.replace("ttl = 30", "ttl = 7")).expect("write");
        assert_ne!(p.compiled.settings.config_hash, hash);
        let before = store.load().table.generation;
        let done = p
            .rollback(start, "bad ttl".into(), "tests".into(), now)
            .await
            .expect("rolled back");
        assert!(done.generation > before, "a new, higher generation");
        assert_eq!(done.config_hash.as_deref(), Some(hash.as_str()));
        let snap = store.load();
        assert_eq!(snap.table.generation, done.generation);
        assert_eq!(snap.table.compiled.settings.config_hash, hash);
        assert_eq!(
            snap.table.compiled.services[0].ttl, 30,
            "the file's 7 is not read"
        );
        assert!(
            snap.table.admin.evacuations.is_empty(),
            "the evacuation is undone"
        );
        let last = p.history.entries.back().expect("entry");
        assert!(matches!(last.cause, Cause::Rollback { to, config: true, .. } if to == start));
        assert!(last.diff.config_from.is_some());
        // Unknown generations are refused.
        assert!(matches!(
            p.rollback(999_999, String::new(), "tests".into(), now)
                .await,
            Err(command::AdminError::NoSuchGeneration(999_999))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_predicted_to_exceed_a_regions_capacity_is_refused_unless_forced() {
        let dir = std::env::temp_dir().join(format!("meridian-capacity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut p = failover_file(&dir.join("meridian.toml"), 30);
        let tag = p.store.load().sample_tag;
        for i in 0..200u32 {
            let q = crate::routing::query::Query {
                service: crate::routing::table::ServiceId(0),
                family: crate::routing::table::Family::V4,
                client: crate::routing::query::Client {
                    addr: std::net::IpAddr::from([10, 1, i as u8, 1]),
                    ecs_source: None,
                },
            };
            p.sample.write(tag, &q);
        }
        p.sample.set_rate(120.0);
        let now = p.clock.now();
        let refused = p.evacuate(change("a", None), now).await;
        let Err(command::AdminError::OverCapacity { regions }) = &refused else {
            panic!("{refused:?}")
        };
        assert_eq!(regions, &vec![("b".to_string(), 120.0, 50.0)]);
        assert!(p.admin.evacuations.is_empty(), "nothing changed");
        // A 25 % drain sends b about 30 qps: allowed.
        p.drain(change("a", None), 25.0, now)
            .await
            .expect("a drain within capacity");
        let mut forced = change("a", None);
        forced.force = true;
        p.evacuate(forced, now).await.expect("forced");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(start_paused = true)]
    async fn a_ramp_aborts_when_a_receiving_region_answers_above_its_capacity() {
        use crate::routing::admin::AbortWhen;
        use crate::routing::decide::decide;
        use crate::routing::query::{Client, Query};
        use crate::routing::table::{Family, ServiceId};
        use crate::routing::trace::NoTrace;
        let dir = std::env::temp_dir().join(format!("meridian-ramp-cap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut p = failover_file(&dir.join("meridian.toml"), 30);
        let now = p.clock.now();
        let spec = ramps::RampSpec {
            steps: vec![50.0, 100.0],
            step_every: Duration::from_secs(3600),
            on_abort: crate::routing::admin::OnAbort::Revert,
            abort_when: AbortWhen::default(),
        };
        let (_, id) = p.ramp(change("a", None), spec, now).await.expect("a ramp");
        p.measure_rates().await;
        // b answers the drained half: 600 answers in 5 s is 120 qps, above its 50.
        let snap = p.store.load_full();
        let mut counted = 0;
        for i in 0..10_000u32 {
            let q = Query {
                service: ServiceId(0),
                family: Family::V4,
                client: Client {
                    addr: std::net::IpAddr::from([10, (i >> 8) as u8, i as u8, 0]),
                    ecs_source: None,
                },
            };
            let d = decide(&snap.table, &q, &mut NoTrace);
            if d.region.map(|r| r.index()) == Some(1) {
                snap.counters.count_answer(&d);
                counted += 1;
                if counted == 600 {
                    break;
                }
            }
        }
        assert_eq!(counted, 600);
        tokio::time::advance(RATE_EVERY).await;
        p.measure_rates().await;
        let snap = p.store.load();
        let ramp = &snap.table.admin.state.ramps[&id];
        let why = &ramp.aborted.as_ref().expect("aborted").why;
        assert!(
            why.contains("b answers 120 qps, above its capacity_qps 50"),
            "{why}"
        );
        assert_eq!(snap.table.admin.drained[0], 0, "reverted");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
