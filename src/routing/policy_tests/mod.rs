//! The policies beyond plain geo, through `decide()` and `answer()` on tables compiled from
//! config text with the City fixture, one file per policy or cross-cutting behaviour, over
//! the helpers in [`crate::routing::test_support`] and the five-region config below.
//! geoip-fixtures/README.md lists the networks the clients in these tests fall in.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::geo::LatLon;
use crate::routing::RoutingTable;
use crate::routing::latency::{Format, LatencyMap};
use crate::routing::test_support::{GEOIP, ZONE, compile};

mod all_down;
mod asn;
mod cidr;
mod drains;
mod ecs_scope;
mod guard;
mod hostname;
mod latency;
mod multivalue;
mod proximity;
mod residency;
mod weighted;

/// The policies a service can have, for the tests that hold for every one of them.
const POLICIES: [&str; 5] = ["geo", "failover", "latency", "proximity", "weighted"];

/// Five regions: four with a location and `nowhere` without one. None lists countries or
/// continents, so geo ranks by distance. The default order puts `us-west` before
/// `ap-southeast`, so a tie between them goes to `us-west`.
fn config(routing: &str, bias: &[(&str, i64)], rest: &str) -> String {
    let regions = [
        ("us-east", Some((39.0, -77.5))),
        ("us-west", Some((37.3, -121.9))),
        ("eu-west", Some((50.1, 8.7))),
        ("ap-southeast", Some((1.35, 103.8))),
        ("nowhere", None),
    ];
    let mut text = format!(
        r#"{GEOIP}
[routing]
default_order = ["nowhere", "us-west", "eu-west", "ap-southeast", "us-east"]
{routing}
{ZONE}
[checks.web]
kind = "http"
"#
    );
    for (name, location) in regions {
        text.push_str(&format!("\n[[regions]]\nname = \"{name}\"\n"));
        if let Some((lat, lon)) = location {
            text.push_str(&format!("location = {{ lat = {lat}, lon = {lon} }}\n"));
        }
        if let Some((_, b)) = bias.iter().find(|(r, _)| *r == name) {
            text.push_str(&format!("bias = {b}\n"));
        }
    }
    text.push('\n');
    text.push_str(rest);
    text
}

/// [`compile`], with a parsed empty latency map in place of the `LatencyMap::default()` a
/// config without `latency_map` gets: that default panics on lookup (see
/// `latency_service_without_a_latency_map_answers_located_clients`), and the tests that are
/// about something else should not stop there.
fn table(text: &str) -> RoutingTable {
    let t = compile(text);
    if t.latency_map.is_empty() {
        with_map(t, "")
    } else {
        t
    }
}

/// `t` with a latency map given as CSV text.
fn with_map(mut t: RoutingTable, csv: &str) -> RoutingTable {
    let regions: Vec<&str> = t.compiled.regions.iter().map(|r| r.name.as_str()).collect();
    let map = LatencyMap::parse(csv, Format::Csv, &regions)
        .unwrap_or_else(|e| panic!("test map must parse: {e:?}"));
    t.latency_map = Arc::new(map);
    t
}

fn region_location(t: &RoutingTable, name: &str) -> LatLon {
    t.compiled
        .regions
        .iter()
        .find(|r| r.name == name)
        .and_then(|r| r.location)
        .unwrap_or_else(|| panic!("region {name} has no location"))
}

/// A private directory under target/ for files a test writes, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("policy-tests")
            .join(format!(
                "{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
