//! The single writer. It owns the `ArcSwap` the DNS path reads and is the only code that
//! stores into it. Probe results, admin commands (evacuate, restore), fleet updates and
//! reloads arrive as messages; each change publishes a new [`Snapshot`] with a higher
//! generation. Admin callers get the new generation back once it is being served. The DNS
//! path never waits on any of this.
pub mod admin;
pub mod command;
pub mod gauges;
pub mod health;
#[cfg(test)]
mod memory_tests;
pub mod ramps;
pub mod reload;

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
use crate::dns::snapshot::{Snapshot, Store};
use crate::health::prober::ProbeEvent;
use crate::metrics::Metrics;
use crate::routing::admin::{AdminState, AdminView};
use crate::routing::latency::LatencyMap;
use crate::routing::table::{Compiled, RoutingTable};
use crate::settings::Quorum;
use crate::state::{SavedEvacuations, SavedHealth};
use command::Command;
use gauges::Gauges;
use health::{HealthState, PeerViews, update_penalties};

/// Shortest time between two tables published for health changes: a storm is folded into
/// one table per gap.
pub const PUBLISH_GAP: Duration = Duration::from_millis(25);
/// Shortest time between two writes of the health file.
pub const SAVE_GAP: Duration = Duration::from_secs(1);
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

    /// Where wall-clock time comes from (publish times, evacuation starts, schedules).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        let now = self.clock.now();
        self.schedule_seen = crate::clock::unix_seconds(now);
        self.publish("clock".into(), now);
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
        self.publish(why.into(), now);
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
            if let Some(store) = &self.cluster {
                store.publish_health(self.saved().targets);
            }
        }
        if observed.first_round_completed {
            info!("first probe round complete");
        }
        match (observed.changed, observed.first_round_completed) {
            (Some(_), _) => Some("health"),
            (None, true) => Some("first probe round complete"),
            (None, false) => None,
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
        self.gauges.publish(&self.metrics, &table);
        tracing::debug!(generation = self.generation, why = %table.built_for, "published routing table");
        self.store.store(Arc::new(self.cold.next(table)));
        self.generation
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
        let mut stopped = None;
        // Ramps restored from state_dir get their Prometheus conditions polled again.
        self.sync_ramp_checks();
        loop {
            let publish_at = last_publish + PUBLISH_GAP;
            let change_at = self.next_change();
            tokio::select! {
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
        let at = self.admin.next_change(crate::clock::unix_seconds(now))?;
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
            self.publish(why.into(), now);
            *last_publish = Instant::now();
            save_at.get_or_insert(*last_publish + SAVE_GAP);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::health::check::ProbeOutcome;
    use crate::routing::table::{Health, TargetId};
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
            },
            at: Instant::now(),
        }
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
}
