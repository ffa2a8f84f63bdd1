//! Rollback: restore the operator state (evacuations, drains, ramps), the latency map and the
//! config of an earlier generation, as one more publish with a new generation. The config is
//! one of the compiled configs kept in memory (a table swap, not a recompile) or, when it is
//! no longer held, compiled again from the source text kept with it. Health is never rolled
//! back: the live verdicts apply.
use std::time::SystemTime;

use serde::Serialize;
use tracing::info;

use super::Publisher;
use super::admin::audit;
use super::command::AdminError;
use super::history::{Cause, LatencySource};
use crate::clock::unix_seconds;

/// What a rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct RolledBack {
    /// The new generation, being served.
    pub generation: u64,
    pub to: u64,
    /// The config changed back (its hash), if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    pub evacuations: Vec<String>,
    pub drains: Vec<String>,
    pub ramps: Vec<String>,
}

impl Publisher {
    pub(super) async fn rollback(
        &mut self,
        to: u64,
        reason: String,
        by: String,
        now: SystemTime,
    ) -> Result<RolledBack, AdminError> {
        let entry = self
            .history
            .get(to)
            .cloned()
            .ok_or(AdminError::NoSuchGeneration(to))?;
        let config = if entry.config_hash == self.compiled.settings.config_hash {
            None
        } else {
            let kept = self.history.config(&entry.config_hash).ok_or_else(|| {
                AdminError::NotKept(format!(
                    "the config of generation {to} (hash {}) is no longer kept (the last {} configs are); nothing changed",
                    entry.config_hash,
                    super::history::KEEP_CONFIGS
                ))
            })?;
            Some(kept.compiled.clone())
        };
        let latency = match (&entry.latency_map, &entry.latency) {
            (LatencySource::Config, _) => None,
            (LatencySource::Api(_), Some(map)) => Some(map.clone()),
            (LatencySource::Api(_), None) => {
                return Err(AdminError::NotKept(format!(
                    "generation {to} served a latency map put through the API before a restart, which is not kept; put it again, then roll back; nothing changed"
                )));
            }
        };
        // Operator state: as it was, less what has expired since.
        let next = entry.admin.pruned(unix_seconds(now));
        self.commit(next).await?;
        let config_hash = config.as_ref().map(|c| c.settings.config_hash.clone());
        if let Some(compiled) = config {
            self.swap_config(compiled);
            self.metrics.reloads.with_label_values(&["success"]).inc();
        }
        if let Some(map) = latency {
            let entries = map.entries;
            self.latency_map = map;
            self.latency_source = LatencySource::Api(entries);
        }
        audit(
            "",
            &format!(
                "rollback to generation {to}{}",
                if config_hash.is_some() {
                    " (config too)"
                } else {
                    ""
                }
            ),
            &reason,
            &by,
            false,
        );
        info!(to, config = config_hash.is_some(), "rolled back");
        let cause = Cause::Rollback {
            to,
            by,
            reason,
            config: config_hash.is_some(),
        };
        let generation = self.publish(cause, now);
        self.sync_ramp_checks();
        let admin = &self.admin;
        Ok(RolledBack {
            generation,
            to,
            config_hash,
            evacuations: admin.evacuations.keys().cloned().collect(),
            drains: admin.drains.keys().cloned().collect(),
            ramps: admin.ramps.keys().cloned().collect(),
        })
    }
}
