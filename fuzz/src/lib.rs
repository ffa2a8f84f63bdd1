//! What the fuzz targets share: the routing tables built once from the example configs, and
//! the metrics registry. Everything here panics on failure: a fuzz target that cannot set up
//! must stop at once, not fuzz an empty table.
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use meridian::dns::snapshot::Snapshot;
use meridian::metrics::Metrics;
use meridian::routing::RoutingTable;
use meridian::routing::table::Compiled;

/// The example configs under `config/` the DNS and admin targets serve from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Example {
    /// `config/meridian.toml`: geo routing, a static zone with every record type.
    Meridian,
    /// `config/policies.toml`: every routing policy, a latency map, a CIDR map.
    Policies,
}

/// The repository's root (the fuzz crate sits in `fuzz/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/ has a parent")
        .to_path_buf()
}

/// Compiles an example config as `meridian check` would, with the GeoIP fixture path made
/// absolute (as `src/dns/fast_tests.rs` does), so the targets run from any directory.
pub fn compile(example: Example) -> Compiled {
    let root = repo_root();
    let file = match example {
        Example::Meridian => "meridian.toml",
        Example::Policies => "policies.toml",
    };
    let path = root.join("config").join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .replace(
            "../geoip-fixtures",
            &root.join("geoip-fixtures").display().to_string(),
        );
    // Anchored at the real file, so `latency_map = "latency-map.csv"` is found beside it.
    meridian::config::load_str(&text, &path)
        .unwrap_or_else(|e| panic!("example config {} does not load:\n{e}", path.display()))
}

/// The compiled example, built once per process.
pub fn compiled(example: Example) -> Arc<Compiled> {
    static MERIDIAN: OnceLock<Arc<Compiled>> = OnceLock::new();
    static POLICIES: OnceLock<Arc<Compiled>> = OnceLock::new();
    let cell = match example {
        Example::Meridian => &MERIDIAN,
        Example::Policies => &POLICIES,
    };
    cell.get_or_init(|| Arc::new(compile(example))).clone()
}

/// A snapshot of a cold routing table (no health verdicts yet) for the example, built once
/// per process.
pub fn table(example: Example) -> &'static Snapshot {
    static MERIDIAN: OnceLock<Snapshot> = OnceLock::new();
    static POLICIES: OnceLock<Snapshot> = OnceLock::new();
    let cell = match example {
        Example::Meridian => &MERIDIAN,
        Example::Policies => &POLICIES,
    };
    cell.get_or_init(|| Snapshot::first(RoutingTable::cold(compiled(example))))
}

/// One metrics registry per process, as the server has.
pub fn metrics() -> &'static Arc<Metrics> {
    static METRICS: OnceLock<Arc<Metrics>> = OnceLock::new();
    METRICS.get_or_init(|| Arc::new(Metrics::new()))
}
