//! Operator changes to admin state: evacuating and restoring regions, locally or through the
//! fleet's shared store, saved in `state_dir`, each with an audit line.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use tracing::{info, warn};

use super::Publisher;
use super::command::AdminError;
use crate::clock::unix_seconds;
use crate::cluster::AdminDoc;
use crate::routing::table::{Compiled, Evacuation, RoutingTable, ServiceRegion};
use crate::state::{SavedEvacuations, StateError};

impl Publisher {
    pub(super) async fn evacuate(
        &mut self,
        region: String,
        reason: String,
        by: String,
        force: bool,
        now: SystemTime,
    ) -> Result<u64, AdminError> {
        let Some(rid) = self.compiled.regions.iter().position(|r| r.name == region) else {
            return Err(AdminError::UnknownRegion(region));
        };
        if self.evacuations.contains_key(&region) {
            return Err(AdminError::AlreadyEvacuated(region));
        }
        let emptied = would_empty(&self.compiled, &self.store.load_full().table, rid);
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
            since: unix_seconds(now),
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
        Ok(self.publish(format!("evacuate {region}"), now))
    }

    pub(super) async fn restore(
        &mut self,
        region: String,
        by: String,
        now: SystemTime,
    ) -> Result<u64, AdminError> {
        if !self.evacuations.contains_key(&region) {
            return Err(AdminError::NotEvacuated(region));
        }
        let mut next = self.evacuations.clone();
        next.remove(&region);
        self.commit_evacuations(next).await?;
        audit(&region, "restore", "", &by, false);
        Ok(self.publish(format!("restore {region}"), now))
    }

    /// The fleet's admin document changed: apply it, or seed an empty store from the local
    /// cache rather than forget an evacuation.
    pub(super) async fn on_cluster_admin(&mut self, doc: AdminDoc, revision: i64, now: SystemTime) {
        if revision == 0 && !self.evacuations.is_empty() {
            // The store has no admin state but our cache does (a wiped or new etcd): seed it
            // rather than forget an evacuation.
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
            self.apply_evacuations(doc.evacuations, "cluster", now)
                .await;
        } else {
            self.cluster_revision = self.cluster_revision.max(revision);
        }
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
    async fn apply_evacuations(
        &mut self,
        next: BTreeMap<String, Evacuation>,
        from: &str,
        now: SystemTime,
    ) {
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
        self.publish(format!("evacuations from {from}"), now);
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
}

/// The services that serve from some region now and would serve from none once region
/// `rid` is evacuated too.
fn would_empty(compiled: &Compiled, current: &RoutingTable, rid: usize) -> Vec<String> {
    compiled
        .services
        .iter()
        .filter(|svc| {
            let serving = |sr: &&ServiceRegion| {
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
        .collect()
}

/// One audit line per admin change, under its own log target so it can be routed apart.
fn audit(region: &str, action: &str, reason: &str, by: &str, force: bool) {
    info!(target: "meridian::audit", region, action, reason, by, force, "admin change");
}
