//! Where the bytes of many traffic-managed names go: RSS after each step of loading and
//! serving a config of 10,000 geo names, 7 endpoints each (the shape of bench/scale.sh).
//! Ignored by default (it takes seconds and its figures are for reading):
//!
//!     cargo test --release --lib memory_per_name -- --ignored --nocapture
use std::sync::Arc;

use crate::control::gauges::{Gauges, TableFamilies};
use crate::dns::snapshot::Snapshot;
use crate::metrics::Metrics;
use crate::routing::table::RoutingTable;
use crate::routing::test_support::{GEOIP, load};

const NAMES: usize = 10_000;
const ENDPOINTS: usize = 7;

fn rss_kb() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn config() -> String {
    let mut text = format!(
        "{GEOIP}\n[routing]\ndefault_order = [\"na\", \"eu\", \"as\", \"sa\"]\n\n[[zones]]\n\
         origin = \"example.com.\"\nns = [\"ns1.example.com.\"]\n\
         soa = {{ mname = \"ns1\", rname = \"hostmaster\", serial = 1, minimum = 60 }}\n"
    );
    for (r, c) in [("na", "NA"), ("eu", "EU"), ("as", "AS"), ("sa", "SA")] {
        text.push_str(&format!(
            "\n[[regions]]\nname = \"{r}\"\ncontinents = [\"{c}\"]\n"
        ));
    }
    let regions = ["na", "eu", "as", "sa"];
    for i in 0..NAMES {
        text.push_str(&format!(
            "\n[[services]]\nname = \"g{i}.example.com.\"\nttl = 30\npolicy = \"geo\"\nendpoints = [\n"
        ));
        for j in 0..ENDPOINTS {
            let k = i * ENDPOINTS + j + 1;
            text.push_str(&format!(
                "  {{ region = \"{}\", address = \"10.{}.{}.{}\" }},\n",
                regions[j % 4],
                (k >> 16) & 255,
                (k >> 8) & 255,
                k & 255
            ));
        }
        text.push_str("]\n");
    }
    text
}

#[test]
#[ignore = "measures memory; run by hand with --ignored --nocapture"]
fn memory_per_name() {
    let per_name = |kb: i64| kb as f64 * 1024.0 / NAMES as f64;
    let text = config();
    let base = rss_kb();
    let mut report = Vec::new();
    let mut last = base;
    let mut step = |what: &str, report: &mut Vec<String>| {
        let now = rss_kb();
        report.push(format!(
            "{what:<40} {:>8} kB  {:>8.0} B/name",
            now - last,
            per_name(now - last)
        ));
        last = now;
    };
    let compiled = Arc::new(load(&text).expect("config"));
    step("load_str (parse, validate, compile)", &mut report);
    assert_eq!(compiled.services.len(), NAMES);
    assert_eq!(compiled.endpoints.len(), NAMES * ENDPOINTS);
    let snap = Snapshot::first(RoutingTable::cold(compiled.clone()));
    step("snapshot (table, templates, counters)", &mut report);
    let metrics = Metrics::new();
    let gauges = Gauges::new(&metrics, &compiled);
    step("gauges", &mut report);
    let mut families = TableFamilies::new(snap.table.clone());
    let mut scraped = 0;
    let mut chunk = String::new();
    while families.next_chunk(&mut chunk) {
        scraped += chunk.len();
        chunk.clear();
    }
    step("one scrape of the table families", &mut report);
    for _ in 0..3 {
        let again = Arc::new(load(&text).expect("config"));
        let next = Snapshot::first(RoutingTable::cold(again));
        drop(next);
    }
    step("3 more loads, dropped", &mut report);
    drop((gauges, snap, compiled));
    step("everything dropped", &mut report);
    let total = last - base;
    let sizes = [
        (
            "Service",
            std::mem::size_of::<crate::routing::table::Service>(),
        ),
        (
            "Endpoint",
            std::mem::size_of::<crate::routing::table::Endpoint>(),
        ),
        (
            "ServiceRegion",
            std::mem::size_of::<crate::routing::table::ServiceRegion>(),
        ),
        ("Node", std::mem::size_of::<crate::routing::table::Node>()),
        ("Name", std::mem::size_of::<hickory_proto::rr::Name>()),
        ("Record", std::mem::size_of::<hickory_proto::rr::Record>()),
    ];
    let text = format!(
        "{NAMES} names x {ENDPOINTS} endpoints, config text {} kB, scrape {} kB, left after drop {total} kB\n{}\nsizes: {sizes:?}",
        text.len() / 1024,
        scraped / 1024,
        report.join("\n")
    );
    eprintln!("{text}");
}
