//! What the rest of Meridian asks of the publisher (the admin API, SIGHUP, the fleet watch)
//! and the errors it answers with. Callers that need an answer pass a oneshot `reply`; the
//! publisher answers once the change is being served.
use tokio::sync::oneshot;

use super::admin::Change;
use super::ramps::{RampAction, RampSpec};
use crate::cluster::{ClusterError, FleetUpdate};
use crate::config::ConfigErrors;
use crate::routing::latency::{Format, MapError};
use crate::state::StateError;

/// What admin callers can ask of the publisher.
pub enum Command {
    Evacuate {
        change: Change,
        reply: oneshot::Sender<Result<u64, AdminError>>,
    },
    /// Drain a share of a region's clients; 0 % lifts the drain.
    Drain {
        change: Change,
        percent: f64,
        reply: oneshot::Sender<Result<u64, AdminError>>,
    },
    /// Start a ramp: a drain that steps on the clock; answers with its id.
    Ramp {
        change: Change,
        spec: RampSpec,
        reply: oneshot::Sender<Result<(u64, String), AdminError>>,
    },
    /// Pause, resume or abort a ramp by id.
    RampAction {
        id: String,
        action: RampAction,
        by: String,
        reply: oneshot::Sender<Result<u64, AdminError>>,
    },
    /// A ramp's Prometheus condition was evaluated.
    RampCheck {
        id: String,
        value: Result<f64, String>,
    },
    Restore {
        region: String,
        by: String,
        reply: oneshot::Sender<Result<u64, AdminError>>,
    },
    /// Read the config file again; `reply` is `None` for SIGHUP.
    Reload {
        reply: Option<oneshot::Sender<Result<u64, ConfigErrors>>>,
    },
    /// Fleet mode: the shared admin document or the peers' verdicts changed.
    Fleet(FleetUpdate),
    /// The process is stopping: publish what is pending, write the health file, stop, and
    /// say so.
    Shutdown { done: oneshot::Sender<()> },
    /// The history ring, oldest first.
    History {
        reply: oneshot::Sender<Vec<super::history::Entry>>,
    },
    /// Restore the operator state, latency map and config of a generation.
    Rollback {
        to: u64,
        reason: String,
        by: String,
        reply: oneshot::Sender<Result<super::rollback::RolledBack, AdminError>>,
    },
    /// Replace the latency map (validated against the current regions) atomically.
    SetLatencyMap {
        text: String,
        format: Format,
        reply: oneshot::Sender<Result<(u64, usize), Vec<MapError>>>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no region named {0:?} in the current config")]
    UnknownRegion(String),
    #[error("region {0:?} is not evacuated")]
    NotEvacuated(String),
    #[error("region {0:?} is already evacuated")]
    AlreadyEvacuated(String),
    #[error("region {0:?} is not drained")]
    NotDrained(String),
    #[error("a drain is 0 to 100 percent, not {0}")]
    BadPercent(f64),
    #[error("{0}")]
    BadWindow(String),
    #[error("ramp {0:?} is under way for this region: pause or abort it first")]
    RampUnderWay(String),
    #[error("no ramp {0:?}")]
    NoSuchRamp(String),
    #[error("{0}")]
    BadRamp(String),
    #[error(
        "closing {region:?} would leave these services with no serving region: {}; pass \"force\": true to do it anyway",
        services.join(", ")
    )]
    WouldEmpty {
        region: String,
        services: Vec<String>,
    },
    #[error(
        "this change to {region:?} would break the safety rule at {rule}: {detail}; pass \"force\": true to do it anyway"
    )]
    BreaksSafety {
        region: String,
        /// The rule's `FILE:LINE`.
        rule: String,
        detail: String,
    },
    #[error(
        "the change would load these regions above their capacity: {}; pass \"force\": true to do it anyway",
        regions.iter().map(|(r, qps, cap)| format!("{r} {qps:.0} qps predicted > capacity_qps {cap}")).collect::<Vec<_>>().join(", ")
    )]
    OverCapacity { regions: Vec<(String, f64, f64)> },
    #[error("no generation {0} in the history")]
    NoSuchGeneration(u64),
    #[error("{0}")]
    NotKept(String),
    #[error("cannot save the evacuation state, nothing changed: {0}")]
    State(#[from] StateError),
    #[error("{0}")]
    Cluster(#[from] ClusterError),
}
