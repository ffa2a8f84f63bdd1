//! Operator changes to admin state: evacuating, restoring and draining regions, locally or
//! through the fleet's shared store, saved in `state_dir`, each with an audit line.
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::Publisher;
use super::command::AdminError;
use super::history::{self, Cause};
use crate::clock::unix_seconds;
use crate::cluster::AdminDoc;
use crate::explain::whatif::{compare, hypothetical};
use crate::routing::admin::{AdminState, DRAIN_BUCKETS, Drain, Evacuation};
use crate::routing::scenario::SafetyRule;
use crate::routing::table::{AdminView, Compiled, RegionId, RoutingTable, ServiceRegion};
use crate::state::{SavedEvacuations, StateError};

/// What an operator asks to change about one region.
pub struct Change {
    pub region: String,
    pub reason: String,
    pub by: String,
    /// Go ahead even when a service would be left with no serving region.
    pub force: bool,
    /// Scheduled: when the change begins (absent or past: at once).
    pub start: Option<SystemTime>,
    /// When it lifts itself: at `end`, or `expires_in` after it begins (not both).
    pub end: Option<SystemTime>,
    pub expires_in: Option<Duration>,
}

impl Change {
    /// The change's window as unix seconds, `(start, expires)`, as seen at `at`.
    pub fn window(&self, at: u64) -> Result<(Option<u64>, Option<u64>), AdminError> {
        let start = self.start.map(unix_seconds).filter(|&s| s > at);
        let begins = start.unwrap_or(at);
        let expires = match (self.end.map(unix_seconds), self.expires_in) {
            (Some(_), Some(_)) => {
                return Err(AdminError::BadWindow(
                    "give \"end\" or \"expires_in\", not both".into(),
                ));
            }
            (Some(end), None) if end <= begins => {
                return Err(AdminError::BadWindow(
                    "\"end\" must come after the start".into(),
                ));
            }
            (Some(end), None) => Some(end),
            (None, Some(d)) => Some(begins + d.as_secs().max(1)),
            (None, None) => None,
        };
        Ok((start, expires))
    }
}

impl Publisher {
    pub(super) async fn evacuate(&mut self, c: Change, now: SystemTime) -> Result<u64, AdminError> {
        let rid = self.region_id(&c.region)?;
        let at = unix_seconds(now);
        let (start, expires) = c.window(at)?;
        let mut next = self.admin.pruned(at);
        if next.evacuations.contains_key(&c.region) {
            return Err(AdminError::AlreadyEvacuated(c.region));
        }
        let evacuation = Evacuation {
            region: c.region.clone(),
            reason: c.reason.clone(),
            by: c.by.clone(),
            since: at,
            start,
            expires,
        };
        next.evacuations.insert(c.region.clone(), evacuation);
        if start.is_none() {
            self.refuse_emptying(rid, &c)?;
            self.refuse_unsafe(&next, &c, at)?;
            self.refuse_over_capacity(&next, c.force, now)?;
        }
        self.commit(next).await?;
        audit(
            &c.region,
            scheduled("evacuate", start),
            &c.reason,
            &c.by,
            c.force,
        );
        let cause = Cause::Evacuate {
            region: c.region,
            by: c.by,
            reason: c.reason,
        };
        Ok(self.publish(cause, now))
    }

    /// Lifts an evacuation, or cancels a scheduled one.
    pub(super) async fn restore(
        &mut self,
        region: String,
        by: String,
        now: SystemTime,
    ) -> Result<u64, AdminError> {
        let mut next = self.admin.pruned(unix_seconds(now));
        if next.evacuations.remove(&region).is_none() {
            return Err(AdminError::NotEvacuated(region));
        }
        self.commit(next).await?;
        audit(&region, "restore", "", &by, false);
        Ok(self.publish(Cause::Restore { region, by }, now))
    }

    /// Drains `percent` of a region's clients (by bucket) to their next region; 0 lifts the
    /// drain (or cancels a scheduled one). A drain that reaches 100 % is refused, as an
    /// evacuation is, when it would leave a service with no serving region; a drain of a
    /// region whose ramp is under way is refused.
    pub(super) async fn drain(
        &mut self,
        c: Change,
        percent: f64,
        now: SystemTime,
    ) -> Result<u64, AdminError> {
        let rid = self.region_id(&c.region)?;
        if !(0.0..=100.0).contains(&percent) {
            return Err(AdminError::BadPercent(percent));
        }
        let at = unix_seconds(now);
        let (start, expires) = c.window(at)?;
        let mut next = self.admin.pruned(at);
        if let Some(ramp) = next
            .ramps
            .values()
            .find(|r| r.region == c.region && r.pending(at))
        {
            return Err(AdminError::RampUnderWay(ramp.id.clone()));
        }
        if percent == 0.0 {
            if next.drains.remove(&c.region).is_none() {
                return Err(AdminError::NotDrained(c.region));
            }
        } else {
            let drain = Drain {
                region: c.region.clone(),
                percent: (percent * 100.0).round() / 100.0,
                reason: c.reason.clone(),
                by: c.by.clone(),
                since: at,
                start,
                expires,
            };
            if drain.buckets() == DRAIN_BUCKETS && start.is_none() {
                self.refuse_emptying(rid, &c)?;
            }
            next.drains.insert(c.region.clone(), drain);
            if start.is_none() {
                self.refuse_unsafe(&next, &c, at)?;
            }
        }
        // A finished or aborted ramp of the region gives way to the new drain.
        next.ramps.retain(|_, r| r.region != c.region);
        if percent > 0.0 && start.is_none() {
            self.refuse_over_capacity(&next, c.force, now)?;
        }
        self.commit(next).await?;
        let action = format!("drain {percent} %");
        audit(
            &c.region,
            scheduled(&action, start),
            &c.reason,
            &c.by,
            c.force,
        );
        let cause = Cause::Drain {
            region: c.region,
            percent,
            by: c.by,
            reason: c.reason,
        };
        Ok(self.publish(cause, now))
    }

    pub(super) fn region_id(&self, region: &str) -> Result<usize, AdminError> {
        self.compiled
            .region_id(region)
            .map(RegionId::index)
            .ok_or_else(|| AdminError::UnknownRegion(region.to_owned()))
    }

    /// Refuses to close region `rid` when that would leave a service with no serving region,
    /// unless forced.
    pub(super) fn refuse_emptying(&self, rid: usize, c: &Change) -> Result<(), AdminError> {
        let emptied = would_empty(&self.compiled, &self.store.load_full().table, rid);
        if emptied.is_empty() || c.force {
            return Ok(());
        }
        Err(AdminError::WouldEmpty {
            region: c.region.clone(),
            services: emptied,
        })
    }

    /// Refuses admin state `next` when it would break a `[[safety]]` rule, unless forced: a
    /// rule is broken when a service (or group of regions) it covers ends up below its floor
    /// with fewer serving regions than now. A change that leaves a shortfall as it is (one a
    /// health change caused) or makes it smaller goes ahead.
    pub(super) fn refuse_unsafe(
        &self,
        next: &AdminState,
        c: &Change,
        at: u64,
    ) -> Result<(), AdminError> {
        if c.force || self.compiled.safety.is_empty() {
            return Ok(());
        }
        let current = self.store.load_full().table.clone();
        let mut after = current.clone();
        after.admin = std::sync::Arc::new(AdminView::new(&self.compiled, next, at));
        first_broken(&self.compiled.safety, &current, &after).map_or(Ok(()), |(rule, detail)| {
            Err(AdminError::BreaksSafety {
                region: c.region.clone(),
                rule,
                detail,
            })
        })
    }

    /// Refuses a change whose predicted load (the recent query sample replayed on the table it
    /// would make, at the measured query rate) exceeds a receiving region's `capacity_qps`,
    /// unless forced. Without capacities, a measured rate or a sample there is nothing to
    /// check.
    pub(super) fn refuse_over_capacity(
        &self,
        next: &AdminState,
        force: bool,
        now: SystemTime,
    ) -> Result<(), AdminError> {
        let snap = self.store.load_full();
        let qps = self.sample.rate();
        if force
            || qps <= 0.0
            || !snap
                .table
                .compiled
                .regions
                .iter()
                .any(|r| r.capacity_qps.is_some())
        {
            return Ok(());
        }
        let population = history::population(&snap, usize::MAX);
        if population.is_empty() {
            return Ok(());
        }
        let after = hypothetical(&snap.table, next, &[], unix_seconds(now));
        let regions = compare(&snap.table, &after, &population, qps).overloaded();
        if regions.is_empty() {
            return Ok(());
        }
        Err(AdminError::OverCapacity { regions })
    }

    /// The fleet's admin document changed: apply it, or seed an empty store from the local
    /// cache rather than forget an evacuation.
    pub(super) async fn on_cluster_admin(&mut self, doc: AdminDoc, revision: i64, now: SystemTime) {
        if revision == 0 && !self.admin.is_empty() {
            // The store has no admin state but our cache does (a wiped or new etcd): seed it
            // rather than forget an evacuation.
            if let Some(store) = self.cluster.clone() {
                match store.propose(&self.admin, 0).await {
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
        } else if revision > self.cluster_revision && doc.pruned(unix_seconds(now)) != self.admin {
            let doc = doc.pruned(unix_seconds(now));
            self.cluster_revision = revision;
            self.apply_admin(doc, "cluster", now).await;
        } else {
            self.cluster_revision = self.cluster_revision.max(revision);
        }
    }

    /// Makes `next` the admin state: in fleet mode through the shared store first (a
    /// compare-and-swap on the revision this instance last applied), then the local file,
    /// then this instance's table.
    pub(super) async fn commit(&mut self, next: AdminState) -> Result<(), AdminError> {
        if let Some(store) = &self.cluster {
            self.cluster_revision = store.propose(&next, self.cluster_revision).await?;
        }
        self.save_admin(&next).await?;
        self.admin = next;
        Ok(())
    }

    /// Applies admin state decided elsewhere (the fleet), caching it in `state_dir` so a
    /// restart without the store still honours it.
    async fn apply_admin(&mut self, next: AdminState, from: &str, now: SystemTime) {
        if let Err(e) = self.save_admin(&next).await {
            warn!(error = %e, "cannot cache the fleet's admin state locally");
        }
        for (region, e) in &next.evacuations {
            if !self.admin.evacuations.contains_key(region) {
                audit(region, "evacuate", &e.reason, &e.by, false);
            }
        }
        for region in self.admin.evacuations.keys() {
            if !next.evacuations.contains_key(region) {
                audit(region, "restore", "", from, false);
            }
        }
        for (region, d) in &next.drains {
            if self.admin.drains.get(region) != Some(d) {
                audit(
                    region,
                    &format!("drain {} %", d.percent),
                    &d.reason,
                    &d.by,
                    false,
                );
            }
        }
        for region in self.admin.drains.keys() {
            if !next.drains.contains_key(region) {
                audit(region, "drain 0 %", "", from, false);
            }
        }
        self.admin = next;
        self.publish(Cause::Fleet, now);
        self.sync_ramp_checks();
    }

    /// The clock reached a start, an expiry or a ramp's step: an audit line for each since
    /// the last look, and a new table. Nothing is written: every instance reads the schedule
    /// the same way, and the stored state drops expired entries at the next change.
    pub(super) fn on_schedule(&mut self, now: SystemTime) {
        let (from, to) = (self.schedule_seen, unix_seconds(now));
        let passed = |t: Option<u64>| t.is_some_and(|t| from < t && t <= to);
        for e in self.admin.evacuations.values() {
            if passed(e.start) {
                audit(&e.region, "evacuation began", &e.reason, &e.by, false);
            }
            if passed(e.expires) {
                audit(&e.region, "evacuation expired", &e.reason, &e.by, false);
            }
        }
        for d in self.admin.drains.values() {
            if passed(d.start) {
                audit(
                    &d.region,
                    &format!("drain {} % began", d.percent),
                    &d.reason,
                    &d.by,
                    false,
                );
            }
            if passed(d.expires) {
                audit(&d.region, "drain expired", &d.reason, &d.by, false);
            }
        }
        for r in self.admin.ramps.values() {
            if passed(r.expires) {
                audit(
                    &r.region,
                    &format!("ramp {} expired", r.id),
                    &r.reason,
                    &r.by,
                    false,
                );
            } else if r.aborted.is_none() && r.percent(from) != r.percent(to) {
                let step = format!("ramp {} at {} %", r.id, r.percent(to));
                audit(&r.region, &step, &r.reason, &r.by, false);
            }
        }
        self.schedule_seen = to;
        self.admin = self.admin.pruned(to);
        self.publish(Cause::Schedule, now);
    }

    async fn save_admin(&self, next: &AdminState) -> Result<(), StateError> {
        let Some(dir) = self.state_dir.clone() else {
            return Ok(());
        };
        let saved = SavedEvacuations::new(next);
        tokio::task::spawn_blocking(move || crate::state::save_evacuations(&dir, &saved))
            .await
            .unwrap_or_else(|e| {
                Err(StateError::Write {
                    path: PathBuf::new(),
                    source: std::io::Error::other(e.to_string()),
                })
            })
    }
}

/// An audit action, marked when it only schedules the change.
fn scheduled(action: &str, start: Option<u64>) -> &str {
    match start {
        Some(_) => "schedule",
        None => action,
    }
}

/// The services that serve from some region now and would serve from none once region
/// `rid` is evacuated too.
fn would_empty(compiled: &Compiled, current: &RoutingTable, rid: usize) -> Vec<String> {
    compiled
        .services
        .iter()
        .filter(|svc| {
            let serving = |sr: &&ServiceRegion| {
                !current.closed(sr.region)
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
        .collect()
}

/// The first `[[safety]]` rule `after` breaks that `before` kept (or kept better): its
/// `FILE:LINE` and what falls short.
pub(super) fn first_broken(
    rules: &[SafetyRule],
    before: &RoutingTable,
    after: &RoutingTable,
) -> Option<(String, String)> {
    rules.iter().find_map(|rule| {
        let was = rule.kind.broken(before);
        rule.kind
            .broken(after)
            .into_iter()
            .find(|(what, n, _)| {
                was.iter()
                    .find(|(w, _, _)| w == what)
                    .is_none_or(|(_, m, _)| n + 1e-9 < *m)
            })
            .map(|(what, n, min)| {
                (
                    rule.at.clone(),
                    format!("{what} would have {n:.2} serving region(s), below {min}"),
                )
            })
    })
}

/// One audit line per admin change, under its own log target so it can be routed apart.
pub(super) fn audit(region: &str, action: &str, reason: &str, by: &str, force: bool) {
    info!(target: "meridian::audit", region, action, reason, by, force, "admin change");
}
