//! What the one `ArcSwap` holds and the DNS path loads once per batch or connection: a routing
//! table with the DNS side's own per-config data, the prepared static responses and the
//! counters. Swapped as one unit, so a query never sees a table with another config's
//! templates or counts into another config's counters.
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::clock::Clock;

use super::counters::DnsCounters;
use super::sample::QuerySample;
use super::templates::Templates;
use crate::routing::RoutingTable;

#[derive(Debug)]
pub struct Snapshot {
    pub table: RoutingTable,
    /// The fast path's responses to static data of this compiled config (shared by every
    /// generation built from it).
    pub templates: Arc<Templates>,
    /// DNS counters for this compiled config (shared likewise).
    pub counters: Arc<DnsCounters>,
    /// The sample of recent queries (one ring for the process, carried across configs).
    pub sample: Arc<QuerySample>,
    /// The tag this compiled config's queries are sampled under.
    pub sample_tag: u16,
}

/// The store the publisher writes and everyone else reads.
pub type Store = ArcSwap<Snapshot>;

impl Snapshot {
    /// The first snapshot of a compiled config: its templates built, its counters at zero,
    /// its signed zones' fixed RRsets signed.
    pub fn first(table: RoutingTable) -> Snapshot {
        Snapshot::first_sampled(table, Arc::new(QuerySample::disabled()))
    }

    /// The first snapshot of a compiled config, sampling queries into `sample` under a new
    /// tag.
    pub fn first_sampled(table: RoutingTable, sample: Arc<QuerySample>) -> Snapshot {
        if table.compiled.signed {
            let now = crate::clock::unix_seconds(crate::clock::SystemClock.now());
            let started = crate::clock::monotonic();
            let signed = super::dnssec::presign(&table, now);
            let took = started.elapsed();
            let (entries, bytes) = table
                .compiled
                .zones
                .iter()
                .filter_map(|z| z.signer.as_ref())
                .fold((0, 0), |(n, b), s| {
                    (n + s.cache.len(), b + s.cache.approx_bytes())
                });
            tracing::info!(
                target: "meridian::dnssec",
                rrsets = signed,
                cached = entries,
                cache_bytes = bytes,
                ms = took.as_millis() as u64,
                "signed the fixed RRsets of the signed zones"
            );
        }
        Snapshot {
            templates: Arc::new(Templates::build(&table)),
            counters: Arc::new(DnsCounters::new(&table.compiled)),
            sample_tag: sample.new_tag(),
            sample,
            table,
        }
    }

    /// A later generation of the same compiled config: same templates and counters.
    pub fn next(&self, table: RoutingTable) -> Snapshot {
        debug_assert!(Arc::ptr_eq(&self.table.compiled, &table.compiled));
        Snapshot {
            table,
            templates: self.templates.clone(),
            counters: self.counters.clone(),
            sample: self.sample.clone(),
            sample_tag: self.sample_tag,
        }
    }
}
