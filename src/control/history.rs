//! The history of published tables: every publish records an entry (generation, time, a typed
//! cause, the operator state and config it was built from, and a diff against the previous
//! entry) in a bounded ring, and appends it to a bounded journal in `state_dir` off the
//! publisher's loop, so the history survives restarts. Rollback (see `rollback.rs`) restores
//! an entry's operator state and config.
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::dns::snapshot::Snapshot;
use crate::explain::whatif::{Replayed, compare};
use crate::routing::RoutingTable;
use crate::routing::admin::AdminState;
use crate::routing::latency::LatencyMap;
use crate::routing::table::{Compiled, RegionId};

/// Entries the ring holds (and a restart reads back from the journal).
pub const RING: usize = 512;
/// The journal is compacted to its newest [`RING`] lines when it holds more than this.
pub const JOURNAL_MAX: usize = 2 * RING;
/// Compiled configs kept for rollback (by config hash).
pub const KEEP_CONFIGS: usize = 8;
/// Sampled queries replayed to find the answers a publish changed.
pub const DIFF_SAMPLES: usize = 2048;
/// Target keys named in a health cause; the rest are counted.
pub(super) const CAUSE_TARGETS: usize = 16;

/// Why a table was published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Cause {
    Start,
    /// The wall clock was set (tests and tools).
    Clock,
    Reload {
        config_hash: String,
    },
    /// Probe verdicts changed.
    Health {
        targets: Vec<String>,
        #[serde(default, skip_serializing_if = "is_zero")]
        more: usize,
    },
    FirstProbeRound,
    /// Fleet mode: the peers' verdicts changed.
    PeerHealth,
    Evacuate {
        region: String,
        by: String,
        reason: String,
    },
    Restore {
        region: String,
        by: String,
    },
    Drain {
        region: String,
        percent: f64,
        by: String,
        reason: String,
    },
    /// A ramp was created, paused, resumed or aborted.
    Ramp {
        id: String,
        region: String,
        action: String,
        by: String,
        reason: String,
    },
    /// The clock reached a start, an expiry or a ramp's step.
    Schedule,
    /// Fleet mode: another instance changed the shared operator state.
    Fleet,
    LatencyMap {
        entries: usize,
    },
    Rollback {
        to: u64,
        by: String,
        reason: String,
        config: bool,
    },
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Cause {
    /// One line, for the table's `built_for` and logs.
    pub fn summary(&self) -> String {
        match self {
            Cause::Start => "start".into(),
            Cause::Clock => "clock".into(),
            Cause::Reload { .. } => "reload".into(),
            Cause::Health { .. } => "health".into(),
            Cause::FirstProbeRound => "first probe round complete".into(),
            Cause::PeerHealth => "peer health".into(),
            Cause::Evacuate { region, .. } => format!("evacuate {region}"),
            Cause::Restore { region, .. } => format!("restore {region}"),
            Cause::Drain {
                region, percent, ..
            } => format!("drain {region} {percent} %"),
            Cause::Ramp { id, action, .. } if action == "start" => format!("ramp {id}"),
            Cause::Ramp { id, action, .. } => format!("ramp {id} {action}"),
            Cause::Schedule => "schedule".into(),
            Cause::Fleet => "admin state from cluster".into(),
            Cause::LatencyMap { .. } => "latency map".into(),
            Cause::Rollback { to, .. } => format!("rollback to {to}"),
        }
    }

    /// A health cause naming (up to a bound) the targets that changed, of `changed` in all.
    pub fn health(mut targets: Vec<String>, changed: usize) -> Cause {
        targets.truncate(CAUSE_TARGETS);
        let more = changed.saturating_sub(targets.len());
        Cause::Health { targets, more }
    }
}

/// What differs from the previous entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Diff {
    /// The config changed: the previous hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_from: Option<String>,
    /// Regions whose serving state changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionChange>,
    /// Services whose answers changed, with the client countries affected (from replaying
    /// the sample of recent queries through both tables; absent across a config change).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub answers: BTreeMap<String, Vec<String>>,
    /// Sampled queries replayed for `answers`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replayed: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionChange {
    pub region: String,
    pub from: String,
    pub to: String,
}

/// Where the latency map in force came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatencySource {
    Config,
    /// Put through the admin API, with this many entries.
    Api(usize),
}

/// One published table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub generation: u64,
    /// Unix time of the publish.
    pub at: u64,
    pub cause: Cause,
    pub config_generation: u64,
    pub config_hash: String,
    /// The operator state the table was built from (evacuations, drains, ramps).
    pub admin: AdminState,
    pub latency_map: LatencySource,
    pub diff: Diff,
    /// The latency map itself, while this process holds it (not journaled).
    #[serde(skip)]
    pub latency: Option<Arc<LatencyMap>>,
}

/// A compiled config kept for rollback.
#[derive(Debug, Clone)]
pub struct Kept {
    pub hash: String,
    pub compiled: Arc<Compiled>,
}

/// The ring, the journal lines not yet written, and the configs kept.
#[derive(Debug, Default)]
pub struct History {
    pub entries: VecDeque<Entry>,
    /// Lines waiting for the journal writer.
    pub pending: Vec<String>,
    /// Lines the journal holds.
    pub journaled: usize,
    pub configs: VecDeque<Kept>,
}

impl History {
    /// The history read back from the journal (a torn or unreadable line is skipped).
    pub fn load(dir: Option<&PathBuf>) -> History {
        let mut h = History::default();
        let Some(dir) = dir else { return h };
        match crate::state::load_history(dir) {
            Ok(lines) => {
                h.journaled = lines.len();
                let parsed = lines
                    .iter()
                    .filter_map(|l| serde_json::from_str::<Entry>(l).ok());
                for e in parsed {
                    h.push_ring(e);
                }
            }
            Err(e) => warn!(error = %e, "cannot read the history journal; starting a new one"),
        }
        h
    }

    fn push_ring(&mut self, e: Entry) {
        if self.entries.len() == RING {
            self.entries.pop_front();
        }
        self.entries.push_back(e);
    }

    /// Records an entry in the ring and queues it for the journal.
    pub fn record(&mut self, e: Entry, journal: bool) {
        if journal {
            match serde_json::to_string(&e) {
                Ok(line) => self.pending.push(line),
                Err(err) => warn!(error = %err, "cannot journal a history entry"),
            }
        }
        self.push_ring(e);
    }

    pub fn get(&self, generation: u64) -> Option<&Entry> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.generation == generation)
    }

    /// Keeps `compiled` for rollback (the newest [`KEEP_CONFIGS`] distinct configs); its
    /// source text is saved in `state_dir` (off the caller's thread) so a rollback after a
    /// restart can compile it again.
    pub fn keep_config(&mut self, compiled: Arc<Compiled>, source: Option<Arc<str>>) {
        let hash = compiled.settings.config_hash.clone();
        self.configs.retain(|k| k.hash != hash);
        if self.configs.len() == KEEP_CONFIGS {
            self.configs.pop_front();
        }
        if let (Some(text), Some(dir), Ok(rt)) = (
            &source,
            compiled.settings.state_dir.clone(),
            tokio::runtime::Handle::try_current(),
        ) {
            let (text, hash) = (text.clone(), hash.clone());
            rt.spawn_blocking(move || {
                if let Err(e) = crate::state::save_config_source(&dir, &hash, &text, KEEP_CONFIGS) {
                    warn!(error = %e, "cannot save the config's source for rollback");
                }
            });
        }
        self.configs.push_back(Kept { hash, compiled });
    }

    pub fn config(&self, hash: &str) -> Option<&Kept> {
        self.configs.iter().find(|k| k.hash == hash)
    }
}

/// Each region's serving state in a table, as history shows it, by name.
fn region_states(t: &RoutingTable) -> BTreeMap<String, String> {
    let c = &t.compiled;
    c.regions
        .iter()
        .zip(t.region_serving())
        .enumerate()
        .map(|(i, (region, (total, up)))| {
            let name = &region.name;
            if t.evacuated(RegionId(i as u32)) {
                return (name.clone(), "evacuated".into());
            }
            let serving = match (up, total) {
                (_, 0) => "no endpoints".to_string(),
                (0, _) => "down".into(),
                (u, n) if u < n => format!("serving {u}/{n} endpoints"),
                _ => "serving".into(),
            };
            let state = match t.admin.drains.get(name) {
                Some((p, _)) => format!("{serving}, drained {p} %"),
                None => serving,
            };
            (name.clone(), state)
        })
        .collect()
}

/// What changed from `before` to `after` (regions by name, so across configs too),
/// replaying `population` when both are of the same compiled config.
pub fn diff(before: &RoutingTable, after: &RoutingTable, population: &[Replayed]) -> Diff {
    let mut d = Diff::default();
    if before.compiled.settings.config_hash != after.compiled.settings.config_hash {
        d.config_from = Some(before.compiled.settings.config_hash.clone());
    }
    let (a, b) = (region_states(before), region_states(after));
    let absent = "not in the config".to_string();
    let names: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for name in names {
        let (x, y) = (
            a.get(name).unwrap_or(&absent),
            b.get(name).unwrap_or(&absent),
        );
        if x != y {
            d.regions.push(RegionChange {
                region: name.clone(),
                from: x.clone(),
                to: y.clone(),
            });
        }
    }
    if !Arc::ptr_eq(&before.compiled, &after.compiled) {
        return d;
    }
    let cmp = compare(before, after, population, 0.0);
    d.answers = cmp.changed_countries();
    d.replayed = cmp.sampled;
    d
}

/// The snapshot's sample of recent queries of its config, newest `limit` at most, as a
/// population to replay.
pub fn population(snap: &Snapshot, limit: usize) -> Vec<Replayed> {
    let n = snap.table.compiled.services.len();
    snap.sample
        .read_newest(snap.sample_tag, limit)
        .iter()
        .filter(|s| s.service.index() < n)
        .map(|s| Replayed {
            query: s.query(),
            network: s.network,
            prefix: s.prefix,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(generation: u64) -> Entry {
        Entry {
            generation,
            at: 1_800_000_000 + generation,
            cause: Cause::health(vec!["web@10.0.0.1:80".into()], 1),
            config_generation: 1,
            config_hash: "00ff".into(),
            admin: AdminState::default(),
            latency_map: LatencySource::Config,
            diff: Diff::default(),
            latency: None,
        }
    }

    #[test]
    fn the_ring_is_bounded_and_reads_back_from_the_journal_skipping_a_torn_line() {
        let dir = std::env::temp_dir().join(format!("meridian-ring-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut h = History::load(Some(&dir));
        assert!(h.entries.is_empty());
        for g in 1..=(RING as u64 + 10) {
            h.record(entry(g), true);
        }
        assert_eq!(h.entries.len(), RING);
        assert_eq!(h.entries.front().map(|e| e.generation), Some(11));
        assert!(h.get(5).is_none());
        assert_eq!(h.get(300).map(|e| e.at), Some(1_800_000_300));
        let lines = std::mem::take(&mut h.pending);
        let held =
            crate::state::append_history(&dir, &lines, 0, JOURNAL_MAX, RING).expect("journal");
        assert_eq!(held, RING + 10);
        // A torn last line is skipped.
        let mut text = std::fs::read_to_string(crate::state::history_path(&dir)).expect("read");
        text.push_str("{\"generation\": 99");
        std::fs::write(crate::state::history_path(&dir), text).expect("write");
        let back = History::load(Some(&dir));
        assert_eq!(back.entries.len(), RING);
        assert_eq!(
            back.entries.back().map(|e| e.generation),
            Some(RING as u64 + 10)
        );
        assert_eq!(
            back.entries.back().map(|e| e.cause.clone()),
            Some(entry(1).cause)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn causes_are_tagged_and_bounded() {
        let c = Cause::health((0..40).map(|i| format!("t{i}")).collect(), 40);
        let Cause::Health { targets, more } = &c else {
            panic!("{c:?}")
        };
        assert_eq!((targets.len(), *more), (16, 24));
        let v = serde_json::to_value(&Cause::Evacuate {
            region: "eu-west".into(),
            by: "admin@127.0.0.1".into(),
            reason: "maintenance".into(),
        })
        .expect("json");
        assert_eq!(v["kind"], "evacuate");
        assert_eq!(
            Cause::Rollback {
                to: 7,
                by: String::new(),
                reason: String::new(),
                config: true
            }
            .summary(),
            "rollback to 7"
        );
    }

    #[test]
    fn a_diff_across_configs_names_regions_by_name() {
        use crate::routing::test_support::{GEOIP, ZONE, load};
        let config = |regions: &[&str]| {
            let mut text = format!("{GEOIP}{ZONE}\n");
            for r in regions {
                text.push_str(&format!("[[regions]]\nname = \"{r}\"\n\n"));
            }
            text.push_str("[[services]]\nname = \"www.example.com.\"\nendpoints = [\n");
            for (i, r) in regions.iter().enumerate() {
                text.push_str(&format!(
                    "{{ region = \"{r}\", address = \"10.0.0.{}\" }},\n",
                    i + 1
                ));
            }
            text.push_str("]\n");
            RoutingTable::cold(Arc::new(load(&text).expect("config")))
        };
        let (a, b) = (config(&["r"]), config(&["r", "s"]));
        let d = diff(&a, &b, &[]);
        assert!(d.config_from.is_some());
        assert_eq!(
            d.regions,
            vec![RegionChange {
                region: "s".into(),
                from: "not in the config".into(),
                to: "serving".into(),
            }]
        );
        assert!(d.answers.is_empty(), "not replayed across configs");
    }
}
