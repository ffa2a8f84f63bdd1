//! Schedules probes on tokio time. Each target is probed once per its check's interval, the
//! targets of a check spread evenly over the interval (no thundering herd), at most
//! [`MAX_CONCURRENT_PROBES`] at once, each under a hard deadline. Results go to the publisher
//! as events; the prober never touches the routing table.
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::check::{Probe, ProbeOutcome};
use crate::routing::table::{Compiled, TargetId};

/// Probes in flight at once, across all targets.
pub const MAX_CONCURRENT_PROBES: usize = 64;

/// One probe result, for the publisher.
#[derive(Debug, Clone)]
pub struct ProbeEvent {
    /// Which compiled config the target id belongs to (ids change across reloads).
    pub generation: u64,
    pub target: TargetId,
    pub outcome: ProbeOutcome,
    pub at: Instant,
}

/// Starts one task per target. Dropping (or aborting) the returned set stops them all.
pub fn spawn<P: Probe>(
    compiled: Arc<Compiled>,
    config_generation: u64,
    probe: Arc<P>,
    events: mpsc::Sender<ProbeEvent>,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_PROBES));
    for (check_idx, check) in compiled.checks.iter().enumerate() {
        let targets: Vec<usize> = compiled
            .targets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.check.index() == check_idx)
            .map(|(i, _)| i)
            .collect();
        let n = targets.len().max(1) as u32;
        for (slot, target_idx) in targets.into_iter().enumerate() {
            // Target k of n starts k/n of the way into the interval.
            let offset = check.interval / n * slot as u32;
            let compiled = compiled.clone();
            let probe = probe.clone();
            let events = events.clone();
            let permits = permits.clone();
            set.spawn(async move {
                let target = &compiled.targets[target_idx];
                let check = &compiled.checks[target.check.index()];
                let mut ticks = tokio::time::interval_at(Instant::now() + offset, check.interval);
                ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    let Ok(_permit) = permits.acquire().await else {
                        return;
                    };
                    let outcome = match tokio::time::timeout(check.timeout, probe.probe(target.addr, check)).await {
                        Ok(outcome) => outcome,
                        Err(_) => ProbeOutcome::timed_out(check.timeout),
                    };
                    let event = ProbeEvent {
                        generation: config_generation,
                        target: TargetId(target_idx as u32),
                        outcome,
                        at: Instant::now(),
                    };
                    if events.send(event).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
    set
}
