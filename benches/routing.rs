//! Criterion benchmarks of the DNS path's pieces and of table rebuilds:
//! - `decide/geo_ecs`: one geo decision for an ECS client on a world-sized database;
//! - `fast_path/answer_ecs`: parse, decide and encode one ECS query on the UDP fast path;
//! - `publish/10k_services_50_regions`: rebuild and swap the routing table after a health
//!   change, with 10,000 services over 50 regions (5 regions x 2 endpoints each).
use std::hint::black_box;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query as DnsQuery};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use meridian::control::Publisher;
use meridian::dns::fast;
use meridian::dns::snapshot::Snapshot;
use meridian::health::check::ProbeOutcome;
use meridian::health::prober::ProbeEvent;
use meridian::metrics::Metrics;
use meridian::routing::RoutingTable;
use meridian::routing::decide::decide;
use meridian::routing::query::{Client, Query};
use meridian::routing::table::{Family, ServiceId, TargetId};
use meridian::routing::trace::NoTrace;

fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The geo service of the benchmark zone, on a 1M-network synthetic database.
fn geo_table() -> RoutingTable {
    let dir = scratch();
    let db = dir.join("synthetic-1m.mmdb");
    if !db.exists() {
        std::fs::write(
            &db,
            meridian::geo::build::synthetic::synthetic(1_000_000, 1).unwrap(),
        )
        .unwrap();
    }
    let text = format!(
        r#"
[geoip]
database = "{}"

[[zones]]
origin = "example.com."
ns = ["ns1.example.com."]
soa = {{ mname = "ns1", rname = "hostmaster", serial = 1, minimum = 60 }}

[[regions]]
name = "na"
continents = ["NA", "AN"]
[[regions]]
name = "eu"
continents = ["EU", "AF"]
[[regions]]
name = "as"
continents = ["AS", "OC"]
[[regions]]
name = "sa"
continents = ["SA"]

[[services]]
name = "geo.example.com."
endpoints = [
  {{ region = "na", address = "127.0.0.11" }},
  {{ region = "eu", address = "127.0.0.12" }},
  {{ region = "as", address = "127.0.0.13" }},
  {{ region = "sa", address = "127.0.0.14" }},
]
"#,
        db.display()
    );
    let compiled = meridian::config::load_str(&text, &dir.join("bench.toml")).unwrap();
    RoutingTable::cold(Arc::new(compiled))
}

/// Client /24s spread over the address space.
fn clients(n: u32) -> Vec<IpAddr> {
    (0..n)
        .map(|i| {
            let x = i.wrapping_mul(2_654_435_761);
            IpAddr::from([
                1 + (x >> 24) as u8 % 200,
                (x >> 16) as u8,
                (x >> 8) as u8,
                0,
            ])
        })
        .collect()
}

fn bench_geo_lookup(c: &mut Criterion) {
    let table = geo_table();
    let db = table.compiled.geo.clone().unwrap();
    let clients = clients(4096);
    let mut i = 0;
    c.bench_function("geo/lookup", |b| {
        b.iter(|| {
            i = (i + 1) % clients.len();
            black_box(db.lookup(clients[i]))
        })
    });
}

fn bench_decide(c: &mut Criterion) {
    let table = geo_table();
    let clients = clients(4096);
    let mut i = 0;
    c.bench_function("decide/geo_ecs", |b| {
        b.iter(|| {
            i = (i + 1) % clients.len();
            let q = Query {
                service: ServiceId(0),
                family: Family::V4,
                client: Client {
                    addr: clients[i],
                    ecs_source: Some(24),
                },
            };
            black_box(decide(&table, &q, &mut NoTrace))
        })
    });
}

fn bench_fast_path(c: &mut Criterion) {
    let snap = Snapshot::first(geo_table());
    let metrics = Metrics::new();
    let queries: Vec<Vec<u8>> = clients(4096)
        .into_iter()
        .map(|addr| {
            let mut m = Message::new(1, MessageType::Query, OpCode::Query);
            m.add_query(DnsQuery::query(
                Name::from_ascii("geo.example.com.").unwrap(),
                RecordType::A,
            ));
            let mut e = Edns::new();
            e.set_max_payload(1232);
            e.options_mut()
                .insert(EdnsOption::Subnet(ClientSubnet::new(addr, 24, 0)));
            m.set_edns(e);
            m.to_vec().unwrap()
        })
        .collect();
    let src: IpAddr = "127.0.0.1".parse().unwrap();
    let mut out = Vec::with_capacity(1500);
    let mut i = 0;
    c.bench_function("fast_path/answer_ecs", |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            black_box(fast::answer(&snap, &queries[i], src, &metrics, &mut out));
        })
    });
}

fn bench_publish(c: &mut Criterion) {
    let mut text = String::from(
        r#"
[[zones]]
origin = "example.com."
ns = ["ns1.example.com."]
soa = { mname = "ns1", rname = "hostmaster", serial = 1, minimum = 60 }

[checks.tcp]
kind = "tcp"
interval = "1s"
timeout = "500ms"
rise = 1
fall = 1
"#,
    );
    for r in 0..50 {
        text.push_str(&format!("\n[[regions]]\nname = \"r{r}\"\n"));
    }
    for s in 0..10_000u32 {
        text.push_str(&format!(
            "\n[[services]]\nname = \"s{s}.example.com.\"\npolicy = \"failover\"\ncheck = \"tcp\"\nregions = ["
        ));
        let regions: Vec<u32> = (0..5).map(|k| (s + k * 10) % 50).collect();
        text.push_str(
            &regions
                .iter()
                .map(|r| format!("\"r{r}\""))
                .collect::<Vec<_>>()
                .join(", "),
        );
        text.push_str("]\nendpoints = [\n");
        for r in &regions {
            for e in 0..2u32 {
                let n = s * 10 + r * 2 + e;
                text.push_str(&format!(
                    "  {{ region = \"r{r}\", address = \"10.{}.{}.{}\", port = 443 }},\n",
                    (n >> 16) & 255,
                    (n >> 8) & 255,
                    n & 255
                ));
            }
        }
        text.push_str("]\n");
    }
    let compiled =
        Arc::new(meridian::config::load_str(&text, &scratch().join("publish.toml")).unwrap());
    let targets = compiled.targets.len();
    let (mut publisher, _store) = Publisher::new(
        compiled,
        &Default::default(),
        Default::default(),
        Arc::new(Metrics::new()),
    );
    let mut ok = false;
    let mut group = c.benchmark_group("publish");
    group.sample_size(20);
    group.bench_function(format!("10k_services_50_regions_{targets}_targets"), |b| {
        b.iter(|| {
            // Flip one target: rise and fall 1, so every event is a health change and a publish.
            ok = !ok;
            let ev = ProbeEvent {
                generation: 1,
                target: TargetId(7),
                outcome: ProbeOutcome {
                    ok,
                    latency: None,
                    error: None,
                    figure: None,
                },
                at: tokio::time::Instant::now(),
            };
            assert!(publisher.on_probe(&ev));
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_geo_lookup,
    bench_decide,
    bench_fast_path,
    bench_publish
);
criterion_main!(benches);
