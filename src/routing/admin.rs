//! Operators' overrides of routing, kept apart from health (an evacuated region may be
//! perfectly healthy): evacuations, where a region takes no clients, and drains, where a
//! stable share of a region's clients moves to their next region.
//!
//! Entries may carry an expiry. An expired entry is ignored wherever the state is read, so
//! every instance of a fleet lifts it at the same moment without anyone writing anything; it is
//! dropped from the stored state at the next change.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::table::{Compiled, RegionId};

/// A drain moves the clients whose bucket (a stable hash of service and client network, see
/// [`drain_bucket`]) is below its share of this many buckets.
pub const DRAIN_BUCKETS: u16 = 10_000;
/// The client network a drain buckets on: the address (or ECS subnet) cut to /24 or /56, so a
/// resolver's subnet stays together and its cached answer stays right.
pub const DRAIN_PREFIX_V4: u8 = 24;
pub const DRAIN_PREFIX_V6: u8 = 56;

/// An operator's evacuation of one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evacuation {
    pub region: String,
    pub reason: String,
    /// Who asked (the admin API records the caller).
    pub by: String,
    /// Unix time it was asked for.
    pub since: u64,
    /// Scheduled: unix time it begins (absent: at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<u64>,
    /// Unix time it lifts itself, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

/// An operator's partial drain of one region: `percent` of its clients, chosen by bucket,
/// go to their next region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drain {
    pub region: String,
    /// Above 0, at most 100, in steps of 0.01.
    pub percent: f64,
    pub reason: String,
    pub by: String,
    pub since: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

impl Drain {
    /// The buckets (of [`DRAIN_BUCKETS`]) this drain moves.
    pub fn buckets(&self) -> u16 {
        buckets(self.percent)
    }
}

/// The buckets (of [`DRAIN_BUCKETS`]) a percentage moves.
pub fn buckets(percent: f64) -> u16 {
    (percent.clamp(0.0, 100.0) * f64::from(DRAIN_BUCKETS) / 100.0).round() as u16
}

/// A drain that moves through `steps` on the clock, one every `step_every` seconds from
/// `start`, unless paused or aborted. Its percentage at any moment is a pure function of the
/// stored fields and the time, so every instance of a fleet applies the same step at the same
/// moment and a restart resumes exactly where the ramp stands: nobody has to step it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ramp {
    pub id: String,
    pub region: String,
    /// Percentages, rising (a drain) or falling (a ramp back).
    pub steps: Vec<f64>,
    /// Seconds between two steps.
    pub step_every: u64,
    /// Unix time of the first step.
    pub start: u64,
    pub reason: String,
    pub by: String,
    pub since: u64,
    pub on_abort: OnAbort,
    #[serde(default)]
    pub abort_when: AbortWhen,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    /// Paused since then (the clock of the steps stands still).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<u64>,
    /// Seconds spent paused before `paused_at`.
    #[serde(default)]
    pub paused_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<Aborted>,
    /// Serving endpoints of each receiving region when the ramp was created.
    #[serde(default)]
    pub baseline: BTreeMap<String, u32>,
}

/// What an aborted ramp does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnAbort {
    /// Stay at the step it reached.
    #[default]
    Hold,
    /// Go back to 0 %.
    Revert,
}

/// When a ramp aborts by itself. Receiving regions are the other regions of every service the
/// ramped region serves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortWhen {
    /// A receiving region has fewer healthy endpoints than a service's `min_healthy`.
    #[serde(default)]
    pub receiving_unhealthy: bool,
    /// A receiving region serves from fewer than this fraction of the endpoints it served
    /// when the ramp started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_healthy_fraction: Option<f64>,
    /// A receiving region's mean measured probe latency exceeds this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<f64>,
    /// A Prometheus instant query's value exceeds `max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PromCondition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromCondition {
    /// Base URL of the Prometheus server, `http://host:9090`.
    pub url: String,
    pub query: String,
    pub max: f64,
    /// Seconds between two evaluations (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
}

/// Why and when a ramp stopped, and the percentage it stays at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aborted {
    pub at: u64,
    /// The condition that fired, or who aborted it.
    pub why: String,
    pub percent: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RampState {
    Scheduled,
    Running,
    Paused,
    /// At its last step, holding it.
    Done,
    Aborted,
}

impl Ramp {
    /// Seconds the step clock has run by `now`.
    fn elapsed(&self, now: u64) -> u64 {
        let until = self.paused_at.unwrap_or(now).min(now);
        until
            .saturating_sub(self.start)
            .saturating_sub(self.paused_secs)
    }

    /// The index of the step in force at `now`.
    pub fn step(&self, now: u64) -> usize {
        let last = self.steps.len().saturating_sub(1);
        let n = self.elapsed(now) / self.step_every.max(1);
        usize::try_from(n).map_or(last, |n| n.min(last))
    }

    /// The percentage the ramp drains at `now`.
    pub fn percent(&self, now: u64) -> f64 {
        match &self.aborted {
            Some(a) => a.percent,
            None if now < self.start => 0.0,
            None => self.steps.get(self.step(now)).copied().unwrap_or(0.0),
        }
    }

    pub fn state(&self, now: u64) -> RampState {
        if self.aborted.is_some() {
            RampState::Aborted
        } else if now < self.start {
            RampState::Scheduled
        } else if self.paused_at.is_some() {
            RampState::Paused
        } else if self.step(now) + 1 >= self.steps.len() {
            RampState::Done
        } else {
            RampState::Running
        }
    }

    /// Unix time of the next step, while running.
    pub fn next_step_at(&self, now: u64) -> Option<u64> {
        match self.state(now) {
            RampState::Scheduled => Some(self.start),
            RampState::Running => {
                let next = self.step(now) as u64 + 1;
                Some(self.start + self.paused_secs + next * self.step_every.max(1))
            }
            _ => None,
        }
    }

    /// Still moving or about to: another ramp of the region must wait for it.
    pub fn pending(&self, now: u64) -> bool {
        matches!(
            self.state(now),
            RampState::Scheduled | RampState::Running | RampState::Paused
        )
    }
}

/// Every evacuation, drain and ramp, by region name (ramps by id), regions the current config
/// does not define included: what `state_dir` and the fleet's shared store hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdminState {
    #[serde(default)]
    pub evacuations: BTreeMap<String, Evacuation>,
    #[serde(default)]
    pub drains: BTreeMap<String, Drain>,
    #[serde(default)]
    pub ramps: BTreeMap<String, Ramp>,
}

/// In force at `now`: begun (or not scheduled) and not expired.
fn in_force(start: Option<u64>, expires: Option<u64>, now: u64) -> bool {
    start.is_none_or(|s| s <= now) && !ended(expires, now)
}

fn ended(expires: Option<u64>, now: u64) -> bool {
    expires.is_some_and(|at| at <= now)
}

impl AdminState {
    /// Without the entries that expired by `now` (scheduled ones kept).
    pub fn pruned(&self, now: u64) -> AdminState {
        let mut next = self.clone();
        next.evacuations.retain(|_, e| !ended(e.expires, now));
        next.drains.retain(|_, d| !ended(d.expires, now));
        next.ramps.retain(|_, r| !ended(r.expires, now));
        next
    }

    /// The evacuation of a region in force at `now`.
    pub fn evacuation(&self, region: &str, now: u64) -> Option<&Evacuation> {
        self.evacuations
            .get(region)
            .filter(|e| in_force(e.start, e.expires, now))
    }

    /// The ramp of a region that has begun and not expired at `now` (at most one is).
    pub fn ramp(&self, region: &str, now: u64) -> Option<&Ramp> {
        self.ramps
            .values()
            .filter(|r| r.region == region && in_force(Some(r.start), r.expires, now))
            .max_by_key(|r| r.since)
    }

    /// What drains a region at `now`: its ramp, else its drain; the percentage and where it
    /// comes from ("ramp ID" or "drain").
    pub fn drain_of(&self, region: &str, now: u64) -> Option<(f64, String)> {
        if let Some(r) = self.ramp(region, now) {
            return Some((r.percent(now), format!("ramp {}", r.id)));
        }
        self.drains
            .get(region)
            .filter(|d| in_force(d.start, d.expires, now))
            .map(|d| (d.percent, "drain".to_string()))
    }

    /// The next moment after `now` when what is in force changes (a start, an expiry, a
    /// ramp's step): when the table must be built again.
    pub fn next_change(&self, now: u64) -> Option<u64> {
        let evacuations = self.evacuations.values().flat_map(|e| [e.start, e.expires]);
        let drains = self.drains.values().flat_map(|d| [d.start, d.expires]);
        let ramps = self
            .ramps
            .values()
            .flat_map(|r| [r.next_step_at(now), r.expires]);
        evacuations
            .chain(drains)
            .chain(ramps)
            .flatten()
            .filter(|&at| at > now)
            .min()
    }

    pub fn is_empty(&self) -> bool {
        self.evacuations.is_empty() && self.drains.is_empty() && self.ramps.is_empty()
    }
}

/// The admin state in the form `decide` reads, built with each table.
#[derive(Debug, Clone, Default)]
pub struct AdminView {
    /// By [`RegionId`]: an operator evacuated the region.
    pub evacuated: Box<[bool]>,
    /// By [`RegionId`]: buckets drained, of [`DRAIN_BUCKETS`] (0: no drain).
    pub drained: Box<[u16]>,
    /// By service index: some region of the service is drained part-way, so its answers
    /// depend on the client's bucket.
    pub partly_drained: Box<[bool]>,
    /// Some region is drained: `decide` works out the client's bucket.
    pub any_drain: bool,
    /// The evacuations in force, by region name (regions of the current config).
    pub evacuations: BTreeMap<String, Evacuation>,
    /// The drain in force per region: percentage, and what set it ("drain" or "ramp ID").
    pub drains: BTreeMap<String, (f64, String)>,
    /// The whole state (scheduled and finished entries too), without what had expired at
    /// `at`, for the admin API's listings.
    pub state: AdminState,
    /// Unix time the view is of.
    pub at: u64,
}

impl AdminView {
    /// The view of `state` at `now` (unix seconds): what is in force then. An evacuation
    /// overrides a ramp or drain of the same region; a ramp overrides a drain.
    pub fn new(compiled: &Compiled, state: &AdminState, now: u64) -> AdminView {
        let evacuations: BTreeMap<String, Evacuation> = compiled
            .regions
            .iter()
            .filter_map(|r| state.evacuation(&r.name, now))
            .map(|e| (e.region.clone(), e.clone()))
            .collect();
        let drains: BTreeMap<String, (f64, String)> = compiled
            .regions
            .iter()
            .filter_map(|r| Some((r.name.clone(), state.drain_of(&r.name, now)?)))
            .filter(|(_, (percent, _))| *percent > 0.0)
            .collect();
        let drained: Box<[u16]> = compiled
            .regions
            .iter()
            .map(|r| drains.get(&r.name).map_or(0, |(p, _)| buckets(*p)))
            .collect();
        let partly = |r: RegionId| (1..DRAIN_BUCKETS).contains(&drained[r.index()]);
        let any_partly = drained.iter().any(|b| (1..DRAIN_BUCKETS).contains(b));
        AdminView {
            evacuated: compiled
                .regions
                .iter()
                .map(|r| evacuations.contains_key(&r.name))
                .collect(),
            partly_drained: if any_partly {
                compiled
                    .services
                    .iter()
                    .map(|svc| svc.regions.iter().any(|sr| partly(sr.region)))
                    .collect()
            } else {
                vec![false; compiled.services.len()].into()
            },
            any_drain: drained.iter().any(|&b| b > 0),
            drained,
            evacuations,
            drains,
            state: state.pruned(now),
            at: now,
        }
    }
}

/// A client's drain bucket for a service, in `0..DRAIN_BUCKETS`: a hash of the service's
/// seed and the client network cut to [`DRAIN_PREFIX_V4`] or [`DRAIN_PREFIX_V6`]. The same
/// on every instance and across reloads, so a client stays put while a percentage holds and
/// a rising percentage only ever moves more clients.
pub fn drain_bucket(addr: std::net::IpAddr, seed: u64) -> u16 {
    let prefix = drain_prefix(addr);
    (super::pick::network_hash(addr, prefix, seed) % u64::from(DRAIN_BUCKETS)) as u16
}

/// The prefix a drain buckets clients of this family on.
pub fn drain_prefix(addr: std::net::IpAddr) -> u8 {
    if addr.is_ipv4() {
        DRAIN_PREFIX_V4
    } else {
        DRAIN_PREFIX_V6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(percent: f64, start: Option<u64>, expires: Option<u64>) -> Drain {
        Drain {
            region: "eu".into(),
            percent,
            reason: String::new(),
            by: String::new(),
            since: 0,
            start,
            expires,
        }
    }

    fn ramp(steps: &[f64]) -> Ramp {
        Ramp {
            id: "r1".into(),
            region: "eu".into(),
            steps: steps.to_vec(),
            step_every: 60,
            start: 1_000,
            reason: String::new(),
            by: String::new(),
            since: 990,
            on_abort: OnAbort::Hold,
            abort_when: AbortWhen::default(),
            expires: None,
            paused_at: None,
            paused_secs: 0,
            aborted: None,
            baseline: BTreeMap::new(),
        }
    }

    #[test]
    fn windows_begin_and_end_on_time_and_the_next_change_is_the_earliest_ahead() {
        let mut state = AdminState::default();
        state
            .drains
            .insert("eu".into(), drain(25.0, Some(20), Some(100)));
        state.evacuations.insert(
            "us".into(),
            Evacuation {
                region: "us".into(),
                reason: String::new(),
                by: String::new(),
                since: 0,
                start: None,
                expires: Some(50),
            },
        );
        assert_eq!(state.drain_of("eu", 19), None, "scheduled, not begun");
        assert_eq!(state.drain_of("eu", 20), Some((25.0, "drain".into())));
        assert!(state.evacuation("us", 49).is_some());
        assert!(state.evacuation("us", 50).is_none());
        assert_eq!(state.next_change(10), Some(20));
        assert_eq!(state.next_change(20), Some(50));
        assert_eq!(state.next_change(50), Some(100));
        assert_eq!(state.next_change(100), None);
        assert_eq!(state.pruned(49), state, "nothing ended yet");
        let later = state.pruned(50);
        assert!(later.evacuations.is_empty());
        assert_eq!(later.drains.len(), 1);
        assert!(state.pruned(100).is_empty());
    }

    #[test]
    fn a_ramp_steps_on_the_clock_pauses_and_holds_or_reverts_when_aborted() {
        let mut r = ramp(&[10.0, 25.0, 50.0, 100.0]);
        assert_eq!(r.state(999), RampState::Scheduled);
        assert_eq!(r.percent(999), 0.0);
        assert_eq!(r.next_step_at(999), Some(1_000));
        assert_eq!(r.percent(1_000), 10.0);
        assert_eq!(r.next_step_at(1_000), Some(1_060));
        assert_eq!(r.percent(1_059), 10.0);
        assert_eq!(r.percent(1_060), 25.0);
        // Paused at 1,090 for 100 s: the clock of the steps stands still, then goes on.
        r.paused_at = Some(1_090);
        assert_eq!(r.state(1_150), RampState::Paused);
        assert_eq!(r.percent(1_150), 25.0);
        assert_eq!(r.next_step_at(1_150), None);
        r.paused_at = None;
        r.paused_secs = 100;
        assert_eq!(r.percent(1_190), 25.0);
        assert_eq!(r.percent(1_220), 50.0);
        assert_eq!(r.next_step_at(1_220), Some(1_280));
        assert_eq!(r.percent(1_280), 100.0);
        assert_eq!(r.state(1_280), RampState::Done);
        assert_eq!(r.percent(99_999), 100.0, "holds its last step");
        r.aborted = Some(Aborted {
            at: 1_230,
            why: "test".into(),
            percent: 50.0,
        });
        assert_eq!(r.state(1_300), RampState::Aborted);
        assert_eq!(r.percent(1_300), 50.0);
        assert!(!r.pending(1_300));
    }

    #[test]
    fn a_ramp_overrides_a_drain_of_its_region() {
        let mut state = AdminState::default();
        state.drains.insert("eu".into(), drain(100.0, None, None));
        state.ramps.insert("r1".into(), ramp(&[75.0, 50.0, 0.0]));
        assert_eq!(state.drain_of("eu", 999), Some((100.0, "drain".into())));
        assert_eq!(state.drain_of("eu", 1_000), Some((75.0, "ramp r1".into())));
        assert_eq!(state.drain_of("eu", 1_200), Some((0.0, "ramp r1".into())));
    }

    #[test]
    fn percentages_map_to_buckets() {
        assert_eq!(buckets(25.0), 2_500);
        assert_eq!(buckets(0.01), 1);
        assert_eq!(buckets(100.0), DRAIN_BUCKETS);
    }

    #[test]
    fn buckets_spread_evenly_and_keep_a_subnet_together() {
        let mut below = 0;
        for i in 0..20_000u32 {
            let addr = std::net::IpAddr::from((0x0b00_0000 + (i << 8)).to_be_bytes());
            let b = drain_bucket(addr, 7);
            assert!(b < DRAIN_BUCKETS);
            // Every address of the /24 shares its bucket.
            let host = std::net::IpAddr::from((0x0b00_0000 + (i << 8) + 77).to_be_bytes());
            assert_eq!(drain_bucket(host, 7), b);
            below += u32::from(b < 2_500);
        }
        // 25 % of 20,000 networks, within one point.
        assert!((4_800..=5_200).contains(&below), "{below}");
    }
}
