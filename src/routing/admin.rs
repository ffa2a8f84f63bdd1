//! Operators' overrides of routing, kept apart from health (an evacuated region may be
//! perfectly healthy): evacuations, where a region takes no clients, and drains, where a
//! stable share of a region's clients moves to their next region.
//!
//! Entries may carry an expiry. An expired entry is ignored wherever the state is read, so
//! every instance of a fleet lifts it at the same moment without anyone writing anything; it is
//! dropped from the stored state at the next change.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::table::{Compiled, RegionId};

/// A drain moves the clients whose bucket (a stable hash of service and client network, see
/// [`drain_bucket`]) is below its share of this many buckets.
pub const DRAIN_BUCKETS: u16 = 10_000;
/// The client network a drain buckets on: the address (or ECS subnet) cut to /24 or /56, so a
/// resolver's subnet stays together and its cached answer stays right.
pub const DRAIN_PREFIX_V4: u8 = 24;
pub const DRAIN_PREFIX_V6: u8 = 56;

/// An operator's evacuation of one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evacuation {
    pub region: String,
    pub reason: String,
    /// Who asked (the admin API records the caller).
    pub by: String,
    /// Unix time it started.
    pub since: u64,
    /// Unix time it lifts itself, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

/// An operator's partial drain of one region: `percent` of its clients, chosen by bucket,
/// go to their next region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drain {
    pub region: String,
    /// Above 0, at most 100, in steps of 0.01.
    pub percent: f64,
    pub reason: String,
    pub by: String,
    pub since: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

impl Drain {
    /// The buckets (of [`DRAIN_BUCKETS`]) this drain moves.
    pub fn buckets(&self) -> u16 {
        (self.percent.clamp(0.0, 100.0) * f64::from(DRAIN_BUCKETS) / 100.0).round() as u16
    }
}

/// Every evacuation and drain, by region name (regions the current config does not define
/// included): what `state_dir` and the fleet's shared store hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdminState {
    #[serde(default)]
    pub evacuations: BTreeMap<String, Evacuation>,
    #[serde(default)]
    pub drains: BTreeMap<String, Drain>,
}

fn live(expires: Option<u64>, now: u64) -> bool {
    expires.is_none_or(|at| now < at)
}

impl AdminState {
    /// The entries still in force at `now` (unix seconds).
    pub fn active(&self, now: u64) -> AdminState {
        AdminState {
            evacuations: self
                .evacuations
                .iter()
                .filter(|(_, e)| live(e.expires, now))
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect(),
            drains: self
                .drains
                .iter()
                .filter(|(_, d)| live(d.expires, now))
                .map(|(k, d)| (k.clone(), d.clone()))
                .collect(),
        }
    }

    /// The earliest expiry after `now`: when the table must be built again.
    pub fn next_expiry(&self, now: u64) -> Option<u64> {
        let evacuations = self.evacuations.values().filter_map(|e| e.expires);
        let drains = self.drains.values().filter_map(|d| d.expires);
        evacuations.chain(drains).filter(|&at| at > now).min()
    }

    pub fn is_empty(&self) -> bool {
        self.evacuations.is_empty() && self.drains.is_empty()
    }
}

/// The admin state in the form `decide` reads, built with each table.
#[derive(Debug, Clone, Default)]
pub struct AdminView {
    /// By [`RegionId`]: an operator evacuated the region.
    pub evacuated: Box<[bool]>,
    /// By [`RegionId`]: buckets drained, of [`DRAIN_BUCKETS`] (0: no drain).
    pub drained: Box<[u16]>,
    /// By service index: some region of the service is drained part-way, so its answers
    /// depend on the client's bucket.
    pub partly_drained: Box<[bool]>,
    /// Some region is drained: `decide` works out the client's bucket.
    pub any_drain: bool,
    /// The entries in force, by region name.
    pub evacuations: BTreeMap<String, Evacuation>,
    pub drains: BTreeMap<String, Drain>,
}

impl AdminView {
    /// The view of `state` at `now` (unix seconds): expired entries left out.
    pub fn new(compiled: &Compiled, state: &AdminState, now: u64) -> AdminView {
        let AdminState {
            evacuations,
            drains,
        } = state.active(now);
        let drained: Box<[u16]> = compiled
            .regions
            .iter()
            .map(|r| drains.get(&r.name).map_or(0, Drain::buckets))
            .collect();
        let partly = |r: RegionId| (1..DRAIN_BUCKETS).contains(&drained[r.index()]);
        AdminView {
            evacuated: compiled
                .regions
                .iter()
                .map(|r| evacuations.contains_key(&r.name))
                .collect(),
            partly_drained: compiled
                .services
                .iter()
                .map(|svc| svc.regions.iter().any(|sr| partly(sr.region)))
                .collect(),
            any_drain: drained.iter().any(|&b| b > 0),
            drained,
            evacuations,
            drains,
        }
    }
}

/// A client's drain bucket for a service, in `0..DRAIN_BUCKETS`: a hash of the service's
/// seed and the client network cut to [`DRAIN_PREFIX_V4`] or [`DRAIN_PREFIX_V6`]. The same
/// on every instance and across reloads, so a client stays put while a percentage holds and
/// a rising percentage only ever moves more clients.
pub fn drain_bucket(addr: std::net::IpAddr, seed: u64) -> u16 {
    let prefix = drain_prefix(addr);
    (super::pick::network_hash(addr, prefix, seed) % u64::from(DRAIN_BUCKETS)) as u16
}

/// The prefix a drain buckets clients of this family on.
pub fn drain_prefix(addr: std::net::IpAddr) -> u8 {
    if addr.is_ipv4() {
        DRAIN_PREFIX_V4
    } else {
        DRAIN_PREFIX_V6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(percent: f64, expires: Option<u64>) -> Drain {
        Drain {
            region: "eu".into(),
            percent,
            reason: String::new(),
            by: String::new(),
            since: 0,
            expires,
        }
    }

    #[test]
    fn expired_entries_are_not_in_force_and_the_next_expiry_is_the_earliest_ahead() {
        let mut state = AdminState::default();
        state.drains.insert("eu".into(), drain(25.0, Some(100)));
        state.evacuations.insert(
            "us".into(),
            Evacuation {
                region: "us".into(),
                reason: String::new(),
                by: String::new(),
                since: 0,
                expires: Some(50),
            },
        );
        assert_eq!(state.active(49), state);
        assert_eq!(state.next_expiry(10), Some(50));
        let later = state.active(50);
        assert!(later.evacuations.is_empty());
        assert_eq!(later.drains.len(), 1);
        assert_eq!(state.next_expiry(50), Some(100));
        assert!(state.active(100).is_empty());
        assert_eq!(state.next_expiry(100), None);
    }

    #[test]
    fn percentages_map_to_buckets() {
        assert_eq!(drain(25.0, None).buckets(), 2_500);
        assert_eq!(drain(0.01, None).buckets(), 1);
        assert_eq!(drain(100.0, None).buckets(), DRAIN_BUCKETS);
    }

    #[test]
    fn buckets_spread_evenly_and_keep_a_subnet_together() {
        let mut below = 0;
        for i in 0..20_000u32 {
            let addr = std::net::IpAddr::from((0x0b00_0000 + (i << 8)).to_be_bytes());
            let b = drain_bucket(addr, 7);
            assert!(b < DRAIN_BUCKETS);
            // Every address of the /24 shares its bucket.
            let host = std::net::IpAddr::from((0x0b00_0000 + (i << 8) + 77).to_be_bytes());
            assert_eq!(drain_bucket(host, 7), b);
            below += u32::from(b < 2_500);
        }
        // 25 % of 20,000 networks, within one point.
        assert!((4_800..=5_200).contains(&below), "{below}");
    }
}
