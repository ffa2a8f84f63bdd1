//! Operator changes to admin state: evacuating, restoring and draining regions, locally or
//! through the fleet's shared store, saved in `state_dir`, each with an audit line.
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::Publisher;
use super::command::AdminError;
use crate::clock::unix_seconds;
use crate::cluster::AdminDoc;
use crate::routing::admin::{AdminState, DRAIN_BUCKETS, Drain, Evacuation};
use crate::routing::table::{Compiled, RoutingTable, ServiceRegion};
use crate::state::{SavedEvacuations, StateError};

/// What an operator asks to change about one region.
pub struct Change {
    pub region: String,
    pub reason: String,
    pub by: String,
    /// Go ahead even when a service would be left with no serving region.
    pub force: bool,
    /// Lift the change by itself after this long.
    pub expires_in: Option<Duration>,
}

impl Publisher {
    pub(super) async fn evacuate(&mut self, c: Change, now: SystemTime) -> Result<u64, AdminError> {
        let rid = self.region_id(&c.region)?;
        let at = unix_seconds(now);
        if self.admin.active(at).evacuations.contains_key(&c.region) {
            return Err(AdminError::AlreadyEvacuated(c.region));
        }
        self.refuse_emptying(rid, &c)?;
        let evacuation = Evacuation {
            region: c.region.clone(),
            reason: c.reason.clone(),
            by: c.by.clone(),
            since: at,
            expires: expiry(at, c.expires_in),
        };
        let mut next = self.admin.active(at);
        next.evacuations.insert(c.region.clone(), evacuation);
        self.commit(next).await?;
        audit(&c.region, "evacuate", &c.reason, &c.by, c.force);
        Ok(self.publish(format!("evacuate {}", c.region), now))
    }

    pub(super) async fn restore(
        &mut self,
        region: String,
        by: String,
        now: SystemTime,
    ) -> Result<u64, AdminError> {
        let mut next = self.admin.active(unix_seconds(now));
        if next.evacuations.remove(&region).is_none() {
            return Err(AdminError::NotEvacuated(region));
        }
        self.commit(next).await?;
        audit(&region, "restore", "", &by, false);
        Ok(self.publish(format!("restore {region}"), now))
    }

    /// Drains `percent` of a region's clients (by bucket) to their next region; 0 lifts the
    /// drain. A drain that reaches 100 % is refused, as an evacuation is, when it would leave
    /// a service with no serving region.
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
        let mut next = self.admin.active(at);
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
                expires: expiry(at, c.expires_in),
            };
            if drain.buckets() == DRAIN_BUCKETS {
                self.refuse_emptying(rid, &c)?;
            }
            next.drains.insert(c.region.clone(), drain);
        }
        self.commit(next).await?;
        let action = format!("drain {percent} %");
        audit(&c.region, &action, &c.reason, &c.by, c.force);
        Ok(self.publish(format!("drain {} {percent} %", c.region), now))
    }

    fn region_id(&self, region: &str) -> Result<usize, AdminError> {
        self.compiled
            .regions
            .iter()
            .position(|r| r.name == region)
            .ok_or_else(|| AdminError::UnknownRegion(region.to_owned()))
    }

    /// Refuses to close region `rid` when that would leave a service with no serving region,
    /// unless forced.
    fn refuse_emptying(&self, rid: usize, c: &Change) -> Result<(), AdminError> {
        let emptied = would_empty(&self.compiled, &self.store.load_full().table, rid);
        if emptied.is_empty() || c.force {
            return Ok(());
        }
        Err(AdminError::WouldEmpty {
            region: c.region.clone(),
            services: emptied,
        })
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
        } else if revision > self.cluster_revision && doc.active(unix_seconds(now)) != self.admin {
            let doc = doc.active(unix_seconds(now));
            self.cluster_revision = revision;
            self.apply_admin(doc, "cluster", now).await;
        } else {
            self.cluster_revision = self.cluster_revision.max(revision);
        }
    }

    /// Makes `next` the admin state: in fleet mode through the shared store first (a
    /// compare-and-swap on the revision this instance last applied), then the local file,
    /// then this instance's table.
    async fn commit(&mut self, next: AdminState) -> Result<(), AdminError> {
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
        self.publish(format!("admin state from {from}"), now);
    }

    /// Entries that expired by `now`: an audit line each. Nothing is written: every instance
    /// reads the expiry the same way, and the stored state drops them at the next change.
    pub(super) fn on_expiry(&mut self, now: SystemTime) {
        let at = unix_seconds(now);
        let gone = |expires: Option<u64>| expires.is_some_and(|e| e <= at);
        for e in self.admin.evacuations.values().filter(|e| gone(e.expires)) {
            audit(&e.region, "evacuation expired", &e.reason, &e.by, false);
        }
        for d in self.admin.drains.values().filter(|d| gone(d.expires)) {
            audit(&d.region, "drain expired", &d.reason, &d.by, false);
        }
        let active = self.admin.active(at);
        if active != self.admin {
            self.admin = active;
            self.publish("expiry".into(), now);
        }
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

/// The unix time a change made at `at` lifts itself.
fn expiry(at: u64, expires_in: Option<Duration>) -> Option<u64> {
    expires_in.map(|d| at + d.as_secs().max(1))
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

/// One audit line per admin change, under its own log target so it can be routed apart.
fn audit(region: &str, action: &str, reason: &str, by: &str, force: bool) {
    info!(target: "meridian::audit", region, action, reason, by, force, "admin change");
}
