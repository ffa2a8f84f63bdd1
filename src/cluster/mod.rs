//! Fleet mode: several Meridian instances share one truth through etcd.
//! - Admin state (evacuations) lives in etcd; changes are compare-and-swap transactions and
//!   every instance applies them from a watch. The local `state_dir` copy stays a cache.
//! - Each instance publishes its own health verdicts under a lease; every instance computes
//!   an endpoint's state from all live observers (`control::health::consensus`).
//!
//! This module holds what needs no etcd client (the shared documents and status); the client
//! itself is in `etcd.rs`, behind the `etcd` cargo feature.
#[cfg(feature = "etcd")]
pub mod etcd;

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::routing::table::{GuardVerdict, Health};

/// What an instance publishes about itself under its lease.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct InstanceRecord {
    pub name: String,
    /// FNV-1a of the config file, to spot drift between instances.
    pub config_hash: String,
    pub version: String,
    /// Target key (`check@addr`) -> this instance's verdict.
    pub health: BTreeMap<String, Health>,
    /// Target key -> this instance's `promote_guard` verdict, for the targets of checks that
    /// read a figure (absent in records of instances without guards, or of older versions).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub guards: BTreeMap<String, GuardVerdict>,
}

/// One instance's own verdicts, by target key: health, and `promote_guard` verdicts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdicts {
    pub health: BTreeMap<String, Health>,
    pub guards: BTreeMap<String, GuardVerdict>,
}

/// What the fleet watch tells the publisher.
#[derive(Debug, Clone, PartialEq)]
pub enum FleetUpdate {
    /// The fleet's admin document changed (revision 0: the store has none).
    Admin { doc: AdminDoc, revision: i64 },
    /// The live peers' own verdicts, by instance name.
    PeerViews(BTreeMap<String, Verdicts>),
}

/// The shared admin document: every evacuation and drain in the fleet.
pub type AdminDoc = crate::routing::admin::AdminState;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("the cluster store is unreachable ({0}); nothing changed")]
    Unavailable(String),
    #[error(
        "another instance changed the admin state first (now at revision {current}); nothing changed, read /v1/regions and retry"
    )]
    Conflict { current: i64 },
}

/// The writes the publisher makes to the cluster store.
#[async_trait::async_trait]
pub trait ClusterStore: Send + Sync {
    /// Writes the admin document if it is still at `base` (0: absent); returns the new
    /// revision.
    async fn propose(&self, doc: &AdminDoc, base: i64) -> Result<i64, ClusterError>;
    /// Publishes this instance's own verdicts (latest wins; never blocks).
    fn publish_health(&self, verdicts: Verdicts);
}

/// Connection state, for `/readyz`, `/v1/cluster` and metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterStatus {
    pub name: String,
    pub connected: bool,
    /// Why the last session ended, while disconnected.
    pub last_error: Option<String>,
    /// Revision of the admin document last applied.
    pub applied_revision: i64,
    /// The store's revision at the last check.
    pub store_revision: i64,
    /// Live peers (this instance excluded) and their config hashes.
    pub peers: BTreeMap<String, String>,
    pub config_hash: String,
}

impl ClusterStatus {
    /// Peers whose config differs from ours.
    pub fn drifted(&self) -> Vec<String> {
        self.peers
            .iter()
            .filter(|(_, h)| **h != self.config_hash)
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// Shared between the cluster task (writer) and the admin API (reader); never touched by
/// the DNS path.
#[derive(Debug, Default)]
pub struct SharedStatus(pub Mutex<ClusterStatus>);

impl SharedStatus {
    pub fn get(&self) -> ClusterStatus {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut ClusterStatus)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }
}
