//! Rollback: restore the operator state (evacuations, drains, ramps), the latency map and the
//! config of an earlier generation, as one more publish with a new generation. The config is
//! one of the compiled configs kept in memory with their source text (a table swap, not a
//! recompile, whatever the file on disk says now) or, after a restart, compiled again from the
//! source text saved in `state_dir/configs/`; a rollback to a config kept in neither is
//! refused, as is one to a latency map put through the API before a restart. Health is never
//! rolled back: the live verdicts apply.
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use tracing::info;

use super::Publisher;
use super::admin::audit;
use super::command::AdminError;
use super::history::{Cause, LatencySource};
use crate::clock::unix_seconds;
use crate::routing::table::Compiled;

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
    /// Compiles again the source text of a config no longer held in memory (from before a
    /// restart), saved in `state_dir/configs/`; relative paths in it are taken from the config
    /// file's directory, as at load.
    async fn compile_saved(&mut self, to: u64, hash: &str) -> Result<Arc<Compiled>, AdminError> {
        let not_kept = || {
            AdminError::NotKept(format!(
                "the config of generation {to} (hash {hash}) is no longer kept (the last {} configs are); nothing changed",
                super::history::KEEP_CONFIGS
            ))
        };
        let (Some(dir), Some(path)) = (self.state_dir.clone(), self.config_path.clone()) else {
            return Err(not_kept());
        };
        let source = crate::state::config_source_path(&dir, hash);
        let previous = self.compiled.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let text = std::fs::read_to_string(&source).ok()?;
            let compiled = crate::config::load_str_reusing(&text, &path, Some(&previous));
            Some((text, compiled))
        })
        .await
        .ok()
        .flatten();
        let Some((text, compiled)) = loaded else {
            return Err(not_kept());
        };
        let compiled = compiled.map_err(|e| {
            AdminError::NotKept(format!(
                "the saved config of generation {to} no longer compiles; nothing changed:\n{e}"
            ))
        })?;
        if compiled.settings.config_hash != hash {
            return Err(not_kept());
        }
        let compiled = Arc::new(compiled);
        self.history
            .keep_config(compiled.clone(), Some(Arc::from(text)));
        Ok(compiled)
    }

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
        } else if let Some(kept) = self.history.config(&entry.config_hash) {
            Some(kept.compiled.clone())
        } else {
            Some(self.compile_saved(to, &entry.config_hash).await?)
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
        match latency {
            Some(map) => {
                let entries = map.entries;
                self.latency_map = map;
                self.latency_source = LatencySource::Api(entries);
            }
            // The generation served its config's map: back to it, whether or not the config
            // changes (one put through the API since is not kept).
            None => {
                self.latency_map = self.compiled.latency_map.clone();
                self.latency_source = LatencySource::Config;
            }
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
