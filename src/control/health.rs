//! Health as routing sees it, folded from probe events and the fleet's views: a pure
//! function of the rise/fall trackers, the smoothed probe latencies and the peers' verdicts,
//! tested without channels, sockets or clocks. The publisher owns one [`HealthState`] and asks
//! it for a [`HealthView`] at every publish.
use std::collections::{BTreeMap, HashMap};

use crate::cluster::Verdicts;
use crate::health::check::ProbeOutcome;
use crate::health::state::{Ewma, Tracker};
use crate::routing::table::{
    Compiled, GuardVerdict, Health, HealthView, Policy, TargetHealth, TargetId,
};
use crate::settings::{FigureSpec, FigureVerdict, Quorum};
use crate::state::SavedHealth;

/// Every probe target's tracker, smoothed latency and whether it was probed yet, indexed
/// by [`TargetId`] of one compiled config.
#[derive(Debug, Clone)]
pub struct HealthState {
    trackers: Vec<Tracker>,
    latency: Vec<Ewma>,
    probed: Vec<bool>,
    /// How many targets were not probed yet.
    unprobed: usize,
    /// The figure of each target whose check reads one, from its latest probe.
    figures: Vec<Option<f64>>,
}

/// What one probe result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// The target's new verdict, when it changed.
    pub changed: Option<Health>,
    /// This result completed the first probe round.
    pub first_round_completed: bool,
    /// The target's promotable verdict (its figure held to its check's bounds) flipped.
    pub promotable_changed: Option<bool>,
}

/// The peers' own verdicts (fleet mode): instance name -> target key -> verdict.
pub type PeerViews = BTreeMap<String, Verdicts>;

impl HealthState {
    /// Every target of `compiled`, seeded from saved verdicts (a warm start) or Unknown.
    pub fn seeded(compiled: &Compiled, saved: &SavedHealth) -> HealthState {
        let n = compiled.targets.len();
        HealthState {
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
            unprobed: n,
            figures: vec![None; n],
        }
    }

    /// The state for a new compiled config: targets carried over by key, new ones Unknown.
    pub fn carried(&self, old: &Compiled, new: &Compiled) -> HealthState {
        let by_key: HashMap<&str, usize> = old
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| (t.key.as_str(), i))
            .collect();
        let mut next = HealthState::seeded(new, &SavedHealth::default());
        for (j, t) in new.targets.iter().enumerate() {
            if let Some(&i) = by_key.get(t.key.as_str()) {
                next.trackers[j] = self.trackers[i];
                next.latency[j] = self.latency[i];
                next.probed[j] = self.probed[i];
                next.figures[j] = self.figures[i];
            }
        }
        next.unprobed = next.probed.iter().filter(|p| !**p).count();
        next
    }

    /// Folds one probe outcome in; `None` when `target` is not one of `compiled`'s.
    pub fn observe(
        &mut self,
        compiled: &Compiled,
        target: TargetId,
        outcome: &ProbeOutcome,
    ) -> Option<Observed> {
        let i = target.index();
        let check = &compiled.checks[compiled.targets.get(i)?.check.index()];
        let was_complete = self.first_round_done();
        if let (Some(l), true) = (outcome.latency, outcome.ok) {
            self.latency[i].observe(l.as_secs_f64() * 1e6);
        }
        // A guard's figure takes effect at once (no rise/fall): the bound is the hysteresis
        // an operator chooses, and an unsafe promotion must stop at the first sign.
        let promotable_changed = check.figure.as_ref().and_then(|spec| {
            let was = self.probed[i] && promotable(spec, self.figures[i]);
            self.figures[i] = if outcome.ok { outcome.figure } else { None };
            let now = promotable(spec, self.figures[i]);
            (was != now || !self.probed[i]).then_some(now)
        });
        if !self.probed[i] {
            self.probed[i] = true;
            self.unprobed -= 1;
        }
        let changed = self.trackers[i].observe(outcome.ok, check.rise, check.fall);
        Some(Observed {
            changed,
            first_round_completed: !was_complete && self.first_round_done(),
            promotable_changed,
        })
    }

    /// Whether every target has been probed at least once.
    pub fn first_round_done(&self) -> bool {
        self.unprobed == 0
    }

    /// This instance's own verdicts, by target key (Unknown left out), as saved in
    /// `state_dir` and published to the fleet.
    pub fn saved(&self, compiled: &Compiled) -> SavedHealth {
        SavedHealth {
            version: 1,
            targets: compiled
                .targets
                .iter()
                .zip(&self.trackers)
                .filter(|(_, t)| t.health != Health::Unknown)
                .map(|(target, t)| (target.key.clone(), t.health))
                .collect(),
        }
    }

    /// The verdicts routing uses: each target's own, combined with the peers' by `quorum`.
    pub fn view(&self, compiled: &Compiled, peers: &PeerViews, quorum: Quorum) -> HealthView {
        HealthView {
            targets: (0..compiled.targets.len())
                .map(|i| self.target_view(compiled, peers, quorum, i))
                .collect(),
        }
    }

    /// [`view`](Self::view) worked out from the last one, built from the same config and
    /// peers' views: the `touched` targets (whose verdict or figure may have changed since)
    /// again, every other target's entry as it was with its latency brought up to date.
    /// Linear in the targets with a copy per target, never a peer lookup for an untouched one.
    pub fn update_view(
        &self,
        compiled: &Compiled,
        peers: &PeerViews,
        quorum: Quorum,
        last: &HealthView,
        touched: &[TargetId],
    ) -> HealthView {
        let mut targets = last.targets.clone();
        for (t, l) in targets.iter_mut().zip(&self.latency) {
            t.latency_us = l.get();
        }
        for t in touched {
            if let Some(slot) = targets.get_mut(t.index()) {
                *slot = self.target_view(compiled, peers, quorum, t.index());
            }
        }
        HealthView { targets }
    }

    /// One target's entry of the view.
    fn target_view(
        &self,
        compiled: &Compiled,
        peers: &PeerViews,
        quorum: Quorum,
        i: usize,
    ) -> TargetHealth {
        let target = &compiled.targets[i];
        let theirs = peers
            .values()
            .filter_map(|v| v.health.get(&target.key).copied());
        let v = consensus(self.trackers[i].health, theirs, quorum);
        let spec = compiled.checks[target.check.index()].figure.as_ref();
        let own = spec.filter(|_| self.probed[i]).map(|spec| GuardVerdict {
            promotable: promotable(spec, self.figures[i]),
            figure: self.figures[i],
        });
        let theirs = peers.values().filter_map(|v| v.guards.get(&target.key));
        let (promotable, figure) = match spec {
            None => (true, None),
            Some(_) => guard_consensus(own, theirs.copied(), quorum),
        };
        TargetHealth {
            health: v.health,
            latency_us: self.latency[i].get(),
            observers: v.observers,
            down_votes: v.down,
            figure,
            promotable,
        }
    }
}

/// This instance's `promote_guard` verdicts, by target key, for the targets probed so far
/// (published to the fleet with the health verdicts).
impl HealthState {
    pub fn guards(&self, compiled: &Compiled) -> BTreeMap<String, GuardVerdict> {
        compiled
            .targets
            .iter()
            .enumerate()
            .filter(|(i, _)| self.probed[*i])
            .filter_map(|(i, t)| {
                let spec = compiled.checks[t.check.index()].figure.as_ref()?;
                Some((
                    t.key.clone(),
                    GuardVerdict {
                        promotable: promotable(spec, self.figures[i]),
                        figure: self.figures[i],
                    },
                ))
            })
            .collect()
    }
}

/// A guard target's verdict across the fleet, shared like health: not promotable when at
/// least the quorum of the instances with a verdict say so; with no verdict anywhere (nothing
/// probed yet), not promotable. The figure is this instance's, else a peer's.
pub fn guard_consensus(
    own: Option<GuardVerdict>,
    peers: impl IntoIterator<Item = GuardVerdict>,
    quorum: Quorum,
) -> (bool, Option<f64>) {
    let mut observers = 0u8;
    let mut against = 0u8;
    let mut figure = own.and_then(|v| v.figure);
    for v in own.into_iter().chain(peers) {
        observers = observers.saturating_add(1);
        against = against.saturating_add(u8::from(!v.promotable));
        figure = figure.or(v.figure);
    }
    if observers == 0 {
        return (false, None);
    }
    let needed = match quorum {
        Quorum::Majority => observers / 2 + 1,
        Quorum::AtLeast(n) => n.min(observers).max(1),
    };
    (against < needed, figure)
}

/// Whether a figure is within its check's bounds (a missing one is not).
pub fn promotable(spec: &FigureSpec, figure: Option<f64>) -> bool {
    spec.judge(figure) == FigureVerdict::Within
}

/// Measured service latency per (service, region) slot: the mean smoothed probe latency of
/// its serving endpoints, moved only when it changed by more than the service's
/// `latency_margin_ms` (a deadband, so probe noise never moves an answer).
pub fn update_penalties(compiled: &Compiled, health: &HealthView, penalty: &mut [Option<f32>]) {
    // Only the latency policy ranks by measured latency; other services' slots stay empty.
    for svc in compiled
        .services
        .iter()
        .filter(|s| s.policy == Policy::Latency)
    {
        for sr in svc.regions.iter() {
            let (sum, n) = sr
                .v4
                .iter()
                .chain(sr.v6.iter())
                .filter_map(|e| compiled.endpoint(*e).target)
                .filter_map(|t| health.targets.get(t.index()))
                .filter(|t| t.health.serving())
                .filter_map(|t| t.latency_us)
                .fold((0.0, 0u32), |(s, n), l| (s + l, n + 1));
            let measured = (n > 0).then(|| (sum / f64::from(n) / 1000.0) as f32);
            let slot = &mut penalty[sr.slot as usize];
            *slot = match (*slot, measured) {
                (Some(old), Some(new)) if (new - old).abs() <= svc.latency_margin_ms => Some(old),
                (_, new) => new,
            };
        }
    }
}

/// An endpoint's health as the fleet sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub health: Health,
    /// Live instances with a view of this target (this one included).
    pub observers: u8,
    /// How many of them see it down.
    pub down: u8,
}

/// Combines this instance's view with live peers' views of the same target. With no live
/// peer it is this instance's view; otherwise a target is down when at least the quorum of
/// observers sees it down, and serving otherwise (one broken path is not a failover).
pub fn consensus(own: Health, peers: impl IntoIterator<Item = Health>, quorum: Quorum) -> Verdict {
    let mut observers = 1u8;
    let mut down = u8::from(own == Health::Down);
    for h in peers {
        observers = observers.saturating_add(1);
        down = down.saturating_add(u8::from(h == Health::Down));
    }
    let needed = match quorum {
        Quorum::Majority => observers / 2 + 1,
        Quorum::AtLeast(n) => n.min(observers).max(1),
    };
    let health = if down >= needed {
        Health::Down
    } else if own == Health::Down {
        Health::Up
    } else {
        own
    };
    Verdict {
        health,
        observers,
        down,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Health::{Down, Unknown, Up};

    #[test]
    fn alone_an_instance_trusts_itself() {
        assert_eq!(consensus(Down, [], Quorum::Majority).health, Down);
        assert_eq!(consensus(Up, [], Quorum::Majority).health, Up);
        assert_eq!(consensus(Down, [], Quorum::AtLeast(2)).health, Down);
    }

    #[test]
    fn one_broken_path_is_not_a_failover() {
        // Seen down by one of three: up everywhere, including on the instance that sees it down.
        let v = consensus(Down, [Up, Up], Quorum::Majority);
        assert_eq!((v.health, v.observers, v.down), (Up, 3, 1));
        assert_eq!(consensus(Up, [Down, Up], Quorum::Majority).health, Up);
        // Seen down by two of three: down everywhere.
        let v = consensus(Up, [Down, Down], Quorum::Majority);
        assert_eq!((v.health, v.down), (Down, 2));
        assert_eq!(consensus(Down, [Down, Up], Quorum::Majority).health, Down);
    }

    #[test]
    fn quorum_can_be_a_number_and_unknown_is_not_down() {
        assert_eq!(
            consensus(Down, [Down, Up, Up], Quorum::AtLeast(2)).health,
            Down
        );
        assert_eq!(consensus(Down, [Up, Up, Up], Quorum::AtLeast(2)).health, Up);
        // Majority of four is three.
        assert_eq!(consensus(Down, [Down, Up, Up], Quorum::Majority).health, Up);
        assert_eq!(consensus(Unknown, [Up], Quorum::Majority).health, Unknown);
        assert_eq!(
            consensus(Unknown, [Down, Down], Quorum::Majority).health,
            Down
        );
    }

    #[test]
    fn peers_guard_verdicts_reach_the_view() {
        let text = format!(
            "{}\n[[regions]]\nname = \"a\"\n[[regions]]\nname = \"b\"\n\
             [checks.lag]\nkind = \"http\"\nport = 8008\nextract = {{ header = \"X-Lag\" }}\nmax = 5\n\
             [[services]]\nname = \"db.example.com.\"\npolicy = \"failover\"\n\
             regions = [\"a\", \"b\"]\npromote_guard = \"lag\"\nendpoints = [\n\
             {{ region = \"a\", address = \"192.0.2.1\" }},\n\
             {{ region = \"b\", address = \"192.0.2.2\" }},\n]\n",
            crate::routing::test_support::ZONE
        );
        let c = crate::routing::test_support::load(&text).expect("config");
        let mut state = HealthState::seeded(&c, &SavedHealth::default());
        let lagging = ProbeOutcome {
            ok: true,
            latency: None,
            error: None,
            figure: Some(42.0),
        };
        let seen = state.observe(&c, TargetId(1), &lagging).expect("a target");
        assert_eq!(seen.promotable_changed, Some(false));
        let key = c.targets[1].key.clone();
        assert_eq!(state.guards(&c)[&key].figure, Some(42.0));
        let alone = state.view(&c, &PeerViews::new(), Quorum::Majority);
        assert!(!alone.targets[1].promotable);
        // Two peers read 1 s: the majority says promotable, and this instance follows.
        let peer = Verdicts {
            health: BTreeMap::new(),
            guards: [(
                key,
                GuardVerdict {
                    promotable: true,
                    figure: Some(1.0),
                },
            )]
            .into(),
        };
        let peers: PeerViews = [("p1".to_string(), peer.clone()), ("p2".to_string(), peer)].into();
        let shared = state.view(&c, &peers, Quorum::Majority);
        assert!(shared.targets[1].promotable);
        assert_eq!(shared.targets[1].figure, Some(42.0));
    }

    #[test]
    fn the_guard_verdict_is_shared_like_health() {
        let yes = GuardVerdict {
            promotable: true,
            figure: Some(1.0),
        };
        let no = GuardVerdict {
            promotable: false,
            figure: Some(42.0),
        };
        // Alone, an instance trusts its own figure; nothing probed anywhere is not promotable.
        assert_eq!(
            guard_consensus(Some(no), [], Quorum::Majority),
            (false, Some(42.0))
        );
        assert!(guard_consensus(Some(yes), [], Quorum::Majority).0);
        assert_eq!(guard_consensus(None, [], Quorum::Majority), (false, None));
        // One instance that cannot read the figure does not block a promotion two others allow.
        assert!(guard_consensus(Some(no), [yes, yes], Quorum::Majority).0);
        assert!(!guard_consensus(Some(yes), [no, no], Quorum::Majority).0);
        // Before its first probe an instance goes by its peers'.
        assert_eq!(
            guard_consensus(None, [yes], Quorum::Majority),
            (true, Some(1.0))
        );
    }
}
