//! The policies beyond plain geo, through `decide()` and `answer()` on tables compiled from
//! config text with the City fixture: latency (map, estimate, measured penalty, incumbent
//! margin), proximity with bias, weighted (stable, random, weight 0), multivalue answers,
//! residency and CIDR overrides, and the ECS scope each one answers with.
//! geoip-fixtures/README.md lists the networks the clients below fall in.
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RecordType};

use super::*;
use crate::config::load_str;
use crate::geo::LatLon;
use crate::routing::Compiled;
use crate::routing::answer::answer;
use crate::routing::latency::RowKind;
use crate::routing::latency::{Format, LatencyMap};
use crate::routing::query::*;
use crate::routing::table::Health;
use crate::routing::table::*;
use crate::routing::table::{AdminView, Evacuation, HealthView};
use crate::routing::trace::{NoTrace, Recorder, Step};
use crate::routing::trace::{Rank, RttSource};

const CITY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/geoip-fixtures/world-city.mmdb"
);

/// Where the fixture puts a few clients (geoip-fixtures/README.md).
const FRANKFURT: LatLon = LatLon {
    lat: 50.11,
    lon: 8.68,
};
const TOKYO: LatLon = LatLon {
    lat: 35.69,
    lon: 139.69,
};
const MUMBAI: LatLon = LatLon {
    lat: 19.08,
    lon: 72.88,
};

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
        r#"
[geoip]
database = "{CITY}"

[routing]
default_order = ["nowhere", "us-west", "eu-west", "ap-southeast", "us-east"]
{routing}

[[zones]]
origin = "example.com."
ns = ["ns1.example.com."]
soa = {{ mname = "ns1", rname = "hostmaster", serial = 1, minimum = 60 }}

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

fn load(text: &str) -> Result<Compiled, String> {
    load_str(text, Path::new("/t/meridian.toml")).map_err(|e| e.to_string())
}

/// A table as a cold start serves it: nothing probed, so every endpoint serves.
fn compile(text: &str) -> RoutingTable {
    match load(text) {
        Ok(c) => RoutingTable::cold(Arc::new(c)),
        Err(e) => panic!("test config must load:\n{e}\n---\n{text}"),
    }
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

/// The config's problems, one per line; panics when it loads.
fn load_err(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("config should be rejected:\n{text}"),
        Err(e) => e,
    }
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

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// A client seen by its packet source address.
fn src(addr: &str) -> Client {
    Client {
        addr: ip(addr),
        ecs_source: None,
    }
}

/// A client given as an ECS subnet (the address already cut to the prefix, as on the wire).
fn ecs(addr: &str, prefix: u8) -> Client {
    Client {
        addr: ip(addr),
        ecs_source: Some(prefix),
    }
}

fn service(t: &RoutingTable, name: &str) -> ServiceId {
    let name = Name::from_ascii(name).expect("name");
    let i = t
        .compiled
        .services
        .iter()
        .position(|s| s.name == name)
        .unwrap_or_else(|| panic!("no service {name}"));
    ServiceId(i as u32)
}

fn query(t: &RoutingTable, svc: &str, client: Client) -> Query {
    Query {
        service: service(t, svc),
        family: Family::V4,
        client,
    }
}

fn run(t: &RoutingTable, svc: &str, client: Client) -> Decision {
    decide(t, &query(t, svc, client), &mut NoTrace)
}

fn region_name(t: &RoutingTable, d: &Decision) -> Option<String> {
    d.region.map(|r| t.compiled.region(r).name.clone())
}

/// The region a client is sent to.
fn region_of(t: &RoutingTable, svc: &str, client: Client) -> String {
    let d = run(t, svc, client);
    region_name(t, &d).unwrap_or_else(|| panic!("{svc} {client:?}: no region in {d:?}"))
}

fn addresses(t: &RoutingTable, d: &Decision) -> Vec<IpAddr> {
    d.endpoints
        .as_slice()
        .iter()
        .map(|id| t.compiled.endpoint(*id).address)
        .collect()
}

/// The one address a client is answered.
fn answer_of(t: &RoutingTable, svc: &str, client: Client) -> IpAddr {
    let d = run(t, svc, client);
    match addresses(t, &d)[..] {
        [a] => a,
        ref other => panic!("{svc} {client:?}: expected one address, got {other:?}"),
    }
}

/// The candidates `decide` reported, in order, as (region, rank, outcome).
fn candidates(t: &RoutingTable, svc: &str, client: Client) -> Vec<(String, Rank, Outcome)> {
    let mut rec = Recorder::default();
    decide(t, &query(t, svc, client), &mut rec);
    rec.steps
        .iter()
        .filter_map(|s| match s {
            Step::Candidate {
                region,
                rank,
                outcome,
            } => Some((t.compiled.region(*region).name.clone(), *rank, *outcome)),
            _ => None,
        })
        .collect()
}

fn order(cands: &[(String, Rank, Outcome)]) -> Vec<&str> {
    cands.iter().map(|(r, _, _)| r.as_str()).collect()
}

fn candidate<'a>(
    cands: &'a [(String, Rank, Outcome)],
    region: &str,
) -> &'a (String, Rank, Outcome) {
    cands
        .iter()
        .find(|c| c.0 == region)
        .unwrap_or_else(|| panic!("no candidate {region} in {cands:?}"))
}

/// A table like `t` (same config, map and penalties) with these endpoint addresses' probe
/// targets Down and every other target Unknown.
fn with_down(t: &RoutingTable, down: &[&str]) -> RoutingTable {
    let mut targets = HealthView::unknown(t.compiled.targets.len())
        .targets
        .to_vec();
    for a in down {
        let a = ip(a);
        let mut found = false;
        for e in t.compiled.endpoints.iter().filter(|e| e.address == a) {
            let target = e.target.unwrap_or_else(|| panic!("{a} has no check"));
            targets[target.index()].health = Health::Down;
            found = true;
        }
        assert!(found, "no endpoint {a}");
    }
    let mut next = RoutingTable::cold(t.compiled.clone());
    next.health = Arc::new(HealthView {
        targets: targets.into(),
    });
    next.latency_map = t.latency_map.clone();
    next.penalty_ms = t.penalty_ms.clone();
    next
}

/// `t` with a latency map given as CSV text.
fn with_map(mut t: RoutingTable, csv: &str) -> RoutingTable {
    let map = LatencyMap::parse(csv, Format::Csv, &t.compiled.regions)
        .unwrap_or_else(|e| panic!("test map must parse: {e:?}"));
    t.latency_map = Arc::new(map);
    t
}

/// `t` with these measured penalties (ms) for a service's regions, none for the rest.
fn with_penalties(mut t: RoutingTable, svc: &str, penalties: &[(&str, f32)]) -> RoutingTable {
    let mut p = vec![None; t.compiled.service_region_slots];
    let s = t.compiled.service(service(&t, svc));
    for (region, ms) in penalties {
        let sr = s
            .regions
            .iter()
            .find(|sr| t.compiled.region(sr.region).name == *region)
            .unwrap_or_else(|| panic!("{svc} has no region {region}"));
        p[sr.slot as usize] = Some(*ms);
    }
    t.penalty_ms = p.into();
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

/// The expected RTT estimate: 2 x km / 200 (fibre) plus the overhead.
fn estimate(t: &RoutingTable, region: &str, client: LatLon, overhead: f64) -> f64 {
    2.0 * region_location(t, region).distance_km(client) / 200.0 + overhead
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.05
}

// ---- latency ----

const LATENCY: &str = r#"
[[services]]
name = "lat.example.com."
policy = "latency"
check = "web"
endpoints = [
  { region = "us-east", address = "192.0.2.11" },
  { region = "us-west", address = "192.0.2.21" },
  { region = "eu-west", address = "192.0.2.31" },
  { region = "ap-southeast", address = "192.0.2.41" },
  { region = "nowhere", address = "192.0.2.51" },
]
"#;

fn latency_table() -> RoutingTable {
    table(&config("", &[], LATENCY))
}

const LAT: &str = "lat.example.com.";

#[test]
fn latency_without_a_map_estimates_from_distance_plus_overhead() {
    let t = latency_table();
    let cands = candidates(&t, LAT, src("12.0.0.1")); // Frankfurt
    assert_eq!(
        order(&cands),
        ["eu-west", "us-east", "us-west", "ap-southeast", "nowhere"]
    );
    for (region, rank, _) in &cands[..4] {
        let Rank::Latency {
            rtt_ms,
            penalty_ms,
            source,
            incumbent,
        } = *rank
        else {
            panic!("{region} should rank by latency: {cands:?}");
        };
        let want = estimate(&t, region, FRANKFURT, 5.0);
        assert!(
            close(f64::from(rtt_ms), want),
            "{region}: {rtt_ms} vs {want}"
        );
        assert_eq!(penalty_ms, 0.0, "{region}");
        assert_eq!(source, RttSource::Estimate, "{region}");
        assert_eq!(incumbent, region == "eu-west", "{region}");
    }
    // `nowhere` has no location and no map row: no RTT at all, so it comes after every
    // ranked region, in the default order.
    assert_eq!(cands[4].1, Rank::DefaultOrder { position: 0 });
    assert_eq!(cands[0].2, Outcome::Chosen);
    let d = run(&t, LAT, src("12.0.0.1"));
    assert_eq!(d.reason, Reason::Latency);
    assert_eq!(addresses(&t, &d), [ip("192.0.2.31")]);

    for (client, region) in [
        ("11.0.0.1", "us-east"),
        ("11.1.0.1", "us-west"),
        ("13.0.0.1", "ap-southeast"),
        ("14.0.0.1", "ap-southeast"),
        ("15.0.0.1", "us-east"),
        ("16.1.0.1", "eu-west"),
    ] {
        assert_eq!(region_of(&t, LAT, src(client)), region, "{client}");
    }

    // A configured overhead replaces the default 5 ms.
    let t = table(&config("latency_overhead_ms = 20", &[], LATENCY));
    let cands = candidates(&t, LAT, src("12.0.0.1"));
    let Rank::Latency { rtt_ms, .. } = candidate(&cands, "us-east").1 else {
        panic!("{cands:?}");
    };
    let want = estimate(&t, "us-east", FRANKFURT, 20.0);
    assert!(close(f64::from(rtt_ms), want), "{rtt_ms} vs {want}");
}

#[test]
fn latency_map_rtt_replaces_the_estimate() {
    // Frankfurt to eu-west is ~2 km, but the map says 90 ms: us-east's estimate (~70.5 ms)
    // is now the lowest.
    let t = with_map(
        latency_table(),
        "client,region,rtt_ms\ncountry:DE,eu-west,90\n",
    );
    let cands = candidates(&t, LAT, src("12.0.0.1"));
    assert_eq!(
        order(&cands),
        ["us-east", "eu-west", "us-west", "ap-southeast", "nowhere"],
        "{cands:?}"
    );
    assert_eq!(
        cands[1].1,
        Rank::Latency {
            rtt_ms: 90.0,
            penalty_ms: 0.0,
            source: RttSource::Map(RowKind::Country),
            incumbent: false,
        }
    );
    let Rank::Latency {
        rtt_ms,
        source: RttSource::Estimate,
        incumbent: true,
        ..
    } = cands[0].1
    else {
        panic!("us-east is the estimated incumbent: {cands:?}");
    };
    assert!(close(
        f64::from(rtt_ms),
        estimate(&t, "us-east", FRANKFURT, 5.0)
    ));
    let d = run(&t, LAT, src("12.0.0.1"));
    assert_eq!(region_name(&t, &d).as_deref(), Some("us-east"));
    assert_eq!(d.reason, Reason::Latency);
    // The row is Germany's only: London keeps its estimate and eu-west.
    assert_eq!(region_of(&t, LAT, src("12.1.0.1")), "eu-west");
}

#[test]
fn latency_map_country_row_beats_continent_row() {
    let t = with_map(
        latency_table(),
        "continent:EU,eu-west,95\ncountry:DE,eu-west,4\n",
    );
    // Germany has its own row.
    let cands = candidates(&t, LAT, src("12.0.0.1"));
    assert_eq!(cands[0].0, "eu-west");
    assert!(
        matches!(
            cands[0].1,
            Rank::Latency {
                rtt_ms: 4.0,
                source: RttSource::Map(RowKind::Country),
                ..
            }
        ),
        "{cands:?}"
    );
    // France only matches the continent row: 95 ms, beaten by us-east's estimate.
    let cands = candidates(&t, LAT, src("12.2.0.1"));
    assert_eq!(cands[0].0, "us-east", "{cands:?}");
    assert!(
        matches!(
            candidate(&cands, "eu-west").1,
            Rank::Latency {
                rtt_ms: 95.0,
                source: RttSource::Map(RowKind::Continent),
                ..
            }
        ),
        "{cands:?}"
    );
}

#[test]
fn latency_map_cidr_row_beats_country_row_and_narrows_the_scope() {
    let t = with_map(
        latency_table(),
        "country:DE,eu-west,90\n12.0.5.0/24,eu-west,3\n",
    );
    // Inside the /24: the CIDR row.
    let cands = candidates(&t, LAT, ecs("12.0.5.0", 24));
    assert_eq!(cands[0].0, "eu-west", "{cands:?}");
    assert_eq!(
        cands[0].1,
        Rank::Latency {
            rtt_ms: 3.0,
            penalty_ms: 0.0,
            source: RttSource::Map(RowKind::Cidr),
            incumbent: true,
        }
    );
    // Elsewhere in Germany: the country row, and us-east wins.
    assert_eq!(region_of(&t, LAT, src("12.0.9.1")), "us-east");
    assert_eq!(region_of(&t, LAT, src("12.0.5.200")), "eu-west");

    // The answer depends on the /24: its clients get scope 24, and the rest of the /16
    // a scope that leaves the /24 out. 12.0.9 and 12.0.5 share 20 leading bits
    // (third octet 00001001 vs 00000101), so the scope is 21.
    let scope = |c: Client| run(&t, LAT, c).scope;
    assert_eq!(scope(ecs("12.0.5.0", 24)), 24);
    assert_eq!(scope(src("12.0.5.9")), 24);
    assert_eq!(scope(ecs("12.0.9.0", 24)), 21);
    assert_eq!(scope(ecs("12.0.128.0", 24)), 17);
    // Never longer than what the resolver sent.
    assert_eq!(scope(ecs("12.0.0.0", 16)), 16);
    assert_eq!(scope(ecs("12.0.8.0", 21)), 21);
}

#[test]
fn latency_map_from_the_config_file_csv_and_toml() {
    let dir = TempDir::new();
    let csv = dir.write(
        "rtt.csv",
        "client,region,rtt_ms\n# measured last week\ncountry:DE,eu-west,90\n",
    );
    let t = table(&config(
        &format!("latency_map = \"{}\"", csv.display()),
        &[],
        LATENCY,
    ));
    assert_eq!(t.latency_map.entries, 1);
    assert_eq!(region_of(&t, LAT, src("12.0.0.1")), "us-east");

    let toml = dir.write(
        "rtt.toml",
        "[[rtt]]\nclient = \"continent:AS\"\nregion = \"us-west\"\nrtt_ms = 1\n",
    );
    let t = table(&config(
        &format!("latency_map = \"{}\"", toml.display()),
        &[],
        LATENCY,
    ));
    assert_eq!(region_of(&t, LAT, src("13.2.0.1")), "us-west"); // Mumbai
    assert_eq!(region_of(&t, LAT, src("12.0.0.1")), "eu-west");

    // A bad map is a config error naming the file and every bad line.
    let bad = dir.write(
        "bad.csv",
        "client,region,rtt_ms\ncountry:DE,mars,10\n12.0.0.1/16,eu-west,5\n",
    );
    let err = load_err(&config(
        &format!("latency_map = \"{}\"", bad.display()),
        &[],
        LATENCY,
    ));
    assert!(err.contains("bad.csv"), "{err}");
    assert!(err.contains("line 2") && err.contains("mars"), "{err}");
    assert!(err.contains("line 3") && err.contains("host bits"), "{err}");
}

#[test]
fn latency_service_without_a_latency_map_answers_located_clients() {
    // No `[routing] latency_map`: every RTT is estimated. Asking must not panic for a client
    // the database places in a country or continent.
    let t = compile(&config("", &[], LATENCY));
    assert!(t.latency_map.is_empty());
    for (client, region) in [
        ("12.0.0.1", "eu-west"),
        ("11.0.0.1", "us-east"),
        ("13.0.0.1", "ap-southeast"),
        ("18.0.0.1", "nowhere"),
    ] {
        let got = std::panic::catch_unwind(|| region_of(&t, LAT, src(client)));
        assert_eq!(
            got.ok().as_deref(),
            Some(region),
            "{client}: decide() panicked or chose another region"
        );
    }
}

/// Tokyo: ap-southeast 50 ms (the incumbent), us-west 55 ms, the rest far behind.
const JP_MAP: &str = "country:JP,ap-southeast,50\ncountry:JP,us-west,55\ncountry:JP,us-east,150\ncountry:JP,eu-west,140\n";

#[test]
fn latency_penalty_moves_a_client_only_past_the_margin() {
    let base = || with_map(latency_table(), JP_MAP);
    let jp = src("13.0.0.1");

    let t = base();
    let cands = candidates(&t, LAT, jp);
    assert_eq!(cands[0].0, "ap-southeast");
    assert_eq!(
        cands[0].1,
        Rank::Latency {
            rtt_ms: 50.0,
            penalty_ms: 0.0,
            source: RttSource::Map(RowKind::Country),
            incumbent: true
        }
    );

    // 50 + 8 = 58 is slower than 55, but not by the 10 ms margin: stays.
    let t = with_penalties(base(), LAT, &[("ap-southeast", 8.0)]);
    let cands = candidates(&t, LAT, jp);
    assert_eq!(cands[0].0, "ap-southeast", "{cands:?}");
    assert_eq!(cands[0].2, Outcome::Chosen);
    assert!(matches!(
        cands[0].1,
        Rank::Latency {
            penalty_ms: 8.0,
            incumbent: true,
            ..
        }
    ));
    assert_eq!(region_of(&t, LAT, jp), "ap-southeast");

    // 64 vs 55: beaten by 9, still inside the margin.
    let t = with_penalties(base(), LAT, &[("ap-southeast", 14.0)]);
    assert_eq!(region_of(&t, LAT, jp), "ap-southeast");

    // 70 vs 55: beaten by 15, more than the margin: the client moves.
    let t = with_penalties(base(), LAT, &[("ap-southeast", 20.0)]);
    let cands = candidates(&t, LAT, jp);
    assert_eq!(order(&cands)[..2], ["us-west", "ap-southeast"], "{cands:?}");
    assert_eq!(cands[0].2, Outcome::Chosen);
    assert_eq!(
        cands[1].1,
        Rank::Latency {
            rtt_ms: 50.0,
            penalty_ms: 20.0,
            source: RttSource::Map(RowKind::Country),
            incumbent: true
        }
    );
    assert_eq!(cands[1].2, Outcome::NotNeeded);
    let d = run(&t, LAT, jp);
    assert_eq!(d.reason, Reason::Latency);
    assert_eq!(addresses(&t, &d), [ip("192.0.2.21")]);

    // The challenger's own penalty counts too: 70 vs 55 + 10.
    let t = with_penalties(base(), LAT, &[("ap-southeast", 20.0), ("us-west", 10.0)]);
    assert_eq!(region_of(&t, LAT, jp), "ap-southeast");

    // Penalties never change which region is the incumbent (static inputs only).
    let t = with_penalties(base(), LAT, &[("ap-southeast", 500.0)]);
    let cands = candidates(&t, LAT, jp);
    assert!(
        matches!(
            candidate(&cands, "ap-southeast").1,
            Rank::Latency {
                incumbent: true,
                ..
            }
        ),
        "{cands:?}"
    );
    assert!(
        cands
            .iter()
            .filter(|c| c.0 != "ap-southeast")
            .all(|c| !matches!(
                c.1,
                Rank::Latency {
                    incumbent: true,
                    ..
                }
            )),
        "{cands:?}"
    );
}

#[test]
fn latency_margin_is_per_service() {
    let text = config(
        "",
        &[],
        r#"
[[services]]
name = "eager.example.com."
policy = "latency"
latency_margin_ms = 0
endpoints = [
  { region = "us-west", address = "192.0.2.22" },
  { region = "ap-southeast", address = "192.0.2.42" },
]

[[services]]
name = "sticky.example.com."
policy = "latency"
latency_margin_ms = 30
endpoints = [
  { region = "us-west", address = "192.0.2.23" },
  { region = "ap-southeast", address = "192.0.2.43" },
]
"#,
    );
    let jp = src("13.0.0.1");
    let t = with_map(table(&text), JP_MAP);
    let t = with_penalties(t, "eager.example.com.", &[("ap-southeast", 6.0)]);
    // No margin: 56 vs 55 moves.
    assert_eq!(region_of(&t, "eager.example.com.", jp), "us-west");
    let t = with_map(table(&text), JP_MAP);
    let t = with_penalties(t, "sticky.example.com.", &[("ap-southeast", 30.0)]);
    // 30 ms margin: 80 vs 55 (beaten by 25) stays.
    assert_eq!(region_of(&t, "sticky.example.com.", jp), "ap-southeast");
}

#[test]
fn latency_beaten_by_exactly_the_margin_keeps_the_incumbent_whatever_the_region_order() {
    // 50 + 15 = 65 vs 55: beaten by exactly the 10 ms margin, which is not "more than" it.
    // The outcome must not depend on where the regions stand in the default order.
    let orders = [
        r#"["us-west", "ap-southeast", "us-east", "eu-west"]"#,
        r#"["ap-southeast", "us-west", "us-east", "eu-west"]"#,
    ];
    let mut got = Vec::new();
    for default_order in orders {
        let text = config(
            "",
            &[],
            &format!(
                r#"
[[services]]
name = "edge.example.com."
policy = "latency"
default_order = {default_order}
endpoints = [
  {{ region = "us-east", address = "192.0.2.24" }},
  {{ region = "us-west", address = "192.0.2.25" }},
  {{ region = "eu-west", address = "192.0.2.26" }},
  {{ region = "ap-southeast", address = "192.0.2.27" }},
]
"#
            ),
        );
        let t = with_map(table(&text), JP_MAP);
        let t = with_penalties(t, "edge.example.com.", &[("ap-southeast", 15.0)]);
        got.push((
            default_order,
            region_of(&t, "edge.example.com.", src("13.0.0.1")),
        ));
    }
    assert_eq!(
        got,
        orders.map(|o| (o, "ap-southeast".to_string())),
        "the incumbent must keep Tokyo in both orders"
    );
}

#[test]
fn latency_regions_without_rtt_follow_the_default_order() {
    // Mexico has no location: nothing to estimate from.
    let t = latency_table();
    let mx = src("18.0.0.1");
    let cands = candidates(&t, LAT, mx);
    assert_eq!(
        order(&cands),
        ["nowhere", "us-west", "eu-west", "ap-southeast", "us-east"]
    );
    assert!(
        cands
            .iter()
            .enumerate()
            .all(|(i, c)| c.1 == Rank::DefaultOrder { position: i as u16 }),
        "{cands:?}"
    );
    let d = run(&t, LAT, mx);
    assert_eq!(region_name(&t, &d).as_deref(), Some("nowhere"));
    assert_eq!(d.reason, Reason::NoGeo);

    // One map row for Mexico: that region is ranked, the rest follow in default order.
    let t = with_map(latency_table(), "country:MX,ap-southeast,80\n");
    let cands = candidates(&t, LAT, mx);
    assert_eq!(
        order(&cands),
        ["ap-southeast", "nowhere", "us-west", "eu-west", "us-east"]
    );
    assert_eq!(
        cands[0].1,
        Rank::Latency {
            rtt_ms: 80.0,
            penalty_ms: 0.0,
            source: RttSource::Map(RowKind::Country),
            incumbent: true
        }
    );
    assert!(
        cands[1..]
            .iter()
            .all(|c| matches!(c.1, Rank::DefaultOrder { .. }))
    );
    assert_eq!(run(&t, LAT, mx).reason, Reason::Latency);

    // A client the database does not know at all.
    let d = run(&t, LAT, src("127.0.0.1"));
    assert_eq!(region_name(&t, &d).as_deref(), Some("nowhere"));
    assert_eq!(d.reason, Reason::NoGeo);
}

#[test]
fn latency_skips_an_unhealthy_incumbent() {
    let t = with_down(&latency_table(), &["192.0.2.31"]);
    let cands = candidates(&t, LAT, src("12.0.0.1"));
    assert_eq!(cands[0].0, "eu-west");
    assert_eq!(cands[0].2, Outcome::Unhealthy { up: 0, total: 1 });
    assert_eq!(cands[1].0, "us-east");
    assert_eq!(cands[1].2, Outcome::Chosen);
    assert_eq!(run(&t, LAT, src("12.0.0.1")).reason, Reason::Failover);
}

// ---- proximity ----

const PROXIMITY: &str = r#"
[[services]]
name = "prox.example.com."
policy = "proximity"
endpoints = [
  { region = "us-east", address = "192.0.2.12" },
  { region = "us-west", address = "192.0.2.22" },
  { region = "eu-west", address = "192.0.2.32" },
  { region = "ap-southeast", address = "192.0.2.42" },
  { region = "nowhere", address = "192.0.2.52" },
]
"#;

const PROX: &str = "prox.example.com.";

fn proximity(bias: &[(&str, i64)]) -> RoutingTable {
    table(&config("", bias, PROXIMITY))
}

/// (km, biased km) the trace gives a region for a client.
fn proximity_rank(t: &RoutingTable, client: Client, region: &str) -> (u32, u32) {
    match candidate(&candidates(t, PROX, client), region).1 {
        Rank::Proximity { km, biased_km } => (km, biased_km),
        other => panic!("{region}: {other:?}"),
    }
}

#[test]
fn proximity_picks_the_nearest_region() {
    let t = proximity(&[]);
    for (client, region) in [
        ("11.0.0.1", "us-east"),
        ("11.1.0.1", "us-west"),
        ("12.0.0.1", "eu-west"),
        ("13.0.0.1", "ap-southeast"), // Tokyo: 5317 km vs us-west 8338 km
        ("14.0.0.1", "ap-southeast"),
        ("15.0.0.1", "us-east"),
        ("16.0.0.1", "ap-southeast"), // Johannesburg: 8657 km vs eu-west 8697 km
        ("2001:db8:4::1", "ap-southeast"),
    ] {
        let d = run(&t, PROX, src(client));
        assert_eq!(region_name(&t, &d).as_deref(), Some(region), "{client}");
        assert_eq!(d.reason, Reason::Proximity, "{client}");
    }
    let cands = candidates(&t, PROX, src("13.0.0.1"));
    assert_eq!(
        order(&cands),
        ["ap-southeast", "us-west", "eu-west", "us-east", "nowhere"]
    );
    let km = region_location(&t, "ap-southeast")
        .distance_km(TOKYO)
        .round() as u32;
    assert_eq!(cands[0].1, Rank::Proximity { km, biased_km: km });
    assert_eq!(cands[4].1, Rank::DefaultOrder { position: 0 });
}

#[test]
fn proximity_positive_bias_grows_a_catchment() {
    let tokyo = src("13.0.0.1");
    // us-west at 8338 km x 0.7 = 5837 km is still farther than ap-southeast's 5317 km.
    let t = proximity(&[("us-west", 30)]);
    assert_eq!(region_of(&t, PROX, tokyo), "ap-southeast");
    // x 0.6 = 5003 km: now nearer.
    let t = proximity(&[("us-west", 40)]);
    let d = run(&t, PROX, tokyo);
    assert_eq!(region_name(&t, &d).as_deref(), Some("us-west"));
    assert_eq!(d.reason, Reason::Proximity);
    let (km, biased) = proximity_rank(&t, tokyo, "us-west");
    let exact = region_location(&t, "us-west").distance_km(TOKYO);
    assert_eq!(km, exact.round() as u32);
    assert_eq!(biased, (exact * 0.6).round() as u32);
    // Unbiased regions report the same distance twice.
    let (km, biased) = proximity_rank(&t, tokyo, "ap-southeast");
    assert_eq!(km, biased);
    // Clients near another region keep it.
    assert_eq!(region_of(&t, PROX, src("12.0.0.1")), "eu-west");
    assert_eq!(region_of(&t, PROX, src("11.0.0.1")), "us-east");

    // Johannesburg sits 40 km nearer ap-southeast: a bias of 1 on eu-west flips it.
    let t = proximity(&[("eu-west", 1)]);
    assert_eq!(region_of(&t, PROX, src("16.0.0.1")), "eu-west");
}

#[test]
fn proximity_negative_bias_shrinks_a_catchment() {
    let mumbai = src("13.2.0.1");
    // ap-southeast 3902 km, eu-west 6562 km.
    let t = proximity(&[]);
    assert_eq!(region_of(&t, PROX, mumbai), "ap-southeast");
    // x 1.6 = 6243 km: still nearer.
    let t = proximity(&[("ap-southeast", -60)]);
    assert_eq!(region_of(&t, PROX, mumbai), "ap-southeast");
    // x 1.7 = 6633 km: eu-west is now nearer.
    let t = proximity(&[("ap-southeast", -70)]);
    let d = run(&t, PROX, mumbai);
    assert_eq!(region_name(&t, &d).as_deref(), Some("eu-west"));
    assert_eq!(d.reason, Reason::Proximity);
    let exact = region_location(&t, "ap-southeast").distance_km(MUMBAI);
    assert_eq!(
        proximity_rank(&t, mumbai, "ap-southeast"),
        (exact.round() as u32, (exact * 1.7).round() as u32)
    );
    // Singapore itself stays: a negative bias scales distance, it does not add to it.
    assert_eq!(region_of(&t, PROX, src("13.1.0.1")), "ap-southeast");
}

#[test]
fn proximity_bias_is_validated() {
    let err = load_err(&config("", &[("us-west", 100)], PROXIMITY));
    assert!(err.contains("bias 100 must be -99 to 99"), "{err}");
    let err = load_err(&config("", &[("us-west", -100)], PROXIMITY));
    assert!(err.contains("bias -100 must be -99 to 99"), "{err}");
}

#[test]
fn proximity_client_without_location_follows_the_default_order() {
    let t = proximity(&[("us-west", 40)]);
    let cands = candidates(&t, PROX, src("18.0.0.1"));
    assert_eq!(
        order(&cands),
        ["nowhere", "us-west", "eu-west", "ap-southeast", "us-east"]
    );
    assert!(
        cands
            .iter()
            .enumerate()
            .all(|(i, c)| c.1 == Rank::DefaultOrder { position: i as u16 }),
        "{cands:?}"
    );
    let d = run(&t, PROX, src("18.0.0.1"));
    assert_eq!(region_name(&t, &d).as_deref(), Some("nowhere"));
    assert_eq!(d.reason, Reason::NoGeo);
    assert_eq!(addresses(&t, &d), [ip("192.0.2.52")]);
}

// ---- weighted ----

const WEIGHTED: &str = r#"
[[services]]
name = "w.example.com."
policy = "weighted"
check = "web"
endpoints = [
  { region = "us-east", address = "192.0.2.13", weight = 70 },
  { region = "eu-west", address = "192.0.2.33", weight = 20 },
  { region = "ap-southeast", address = "192.0.2.43", weight = 10 },
]

[[services]]
name = "rand.example.com."
policy = "weighted"
weight_mode = "random"
endpoints = [
  { region = "us-east", address = "192.0.2.14", weight = 70 },
  { region = "eu-west", address = "192.0.2.34", weight = 20 },
  { region = "ap-southeast", address = "192.0.2.44", weight = 10 },
]

[[services]]
name = "backup.example.com."
policy = "weighted"
check = "web"
endpoints = [
  { region = "us-east", address = "192.0.2.15", weight = 0 },
  { region = "us-west", address = "192.0.2.25", weight = 0 },
  { region = "eu-west", address = "192.0.2.35", weight = 3 },
  { region = "ap-southeast", address = "192.0.2.45" },
]

[[services]]
name = "two.example.com."
policy = "weighted"
answers = 2
check = "web"
endpoints = [
  { region = "us-east", address = "192.0.2.16", weight = 70 },
  { region = "eu-west", address = "192.0.2.36", weight = 20 },
  { region = "ap-southeast", address = "192.0.2.46", weight = 10 },
]
"#;

fn weighted_table() -> RoutingTable {
    table(&config("", &[], WEIGHTED))
}

/// 10,000 distinct client /24s: 20.0.0.0/24, 20.0.1.0/24, ...
fn subnets() -> impl Iterator<Item = String> {
    (0..10_000u32).map(|i| format!("20.{}.{}.0", i / 256, i % 256))
}

/// Share of answers per address, in percent, over the given clients.
fn shares(t: &RoutingTable, svc: &str, clients: &[Client]) -> HashMap<IpAddr, f64> {
    let mut counts: HashMap<IpAddr, usize> = HashMap::new();
    for c in clients {
        *counts.entry(answer_of(t, svc, *c)).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(a, n)| (a, n as f64 * 100.0 / clients.len() as f64))
        .collect()
}

fn assert_shares(got: &HashMap<IpAddr, f64>, want: &[(&str, f64)]) {
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (a, pct) in want {
        let share = got.get(&ip(a)).copied().unwrap_or(0.0);
        assert!(
            (share - pct).abs() <= 3.0,
            "{a}: {share:.2}% of answers, want {pct}% +- 3 ({got:?})"
        );
    }
}

#[test]
fn weighted_stable_splits_subnets_by_weight() {
    let t = weighted_table();
    let clients: Vec<Client> = subnets().map(|s| ecs(&s, 24)).collect();
    let got = shares(&t, "w.example.com.", &clients);
    // The measured split, for the README: cargo test weighted_stable_splits -- --nocapture
    eprintln!("weighted 70/20/10 over 10,000 /24s: {got:?}");
    assert_shares(
        &got,
        &[
            ("192.0.2.13", 70.0),
            ("192.0.2.33", 20.0),
            ("192.0.2.43", 10.0),
        ],
    );
}

#[test]
fn weighted_stable_keeps_a_subnet_on_one_endpoint() {
    let t = weighted_table();
    let svc = "w.example.com.";
    for s in subnets().step_by(37).take(200) {
        let (base, _) = s.rsplit_once('.').expect("dotted quad");
        let want = answer_of(&t, svc, ecs(&s, 24));
        for c in [
            src(&format!("{base}.1")),
            src(&format!("{base}.254")),
            ecs(&s, 24),
            ecs(&format!("{base}.128"), 25),
        ] {
            let d = run(&t, svc, c);
            assert_eq!(addresses(&t, &d), [want], "{c:?}");
            assert_eq!(d.scope, 24, "{c:?}");
            assert_eq!(d.reason, Reason::Weighted);
        }
        // Asking again changes nothing.
        assert_eq!(answer_of(&t, svc, ecs(&s, 24)), want);
    }
    // A resolver that sends less than a /24 gets its own draw, scoped to what it sent.
    assert_eq!(run(&t, svc, ecs("20.1.0.0", 20)).scope, 20);
    assert_eq!(run(&t, svc, ecs("20.0.0.0", 8)).scope, 8);
    // IPv6 clients stick per /56.
    let v6 = answer_of(&t, svc, src("2001:db8:99:100::1"));
    for c in [
        src("2001:db8:99:100::1"),
        src("2001:db8:99:1ff:ffff::1"),
        ecs("2001:db8:99:100::", 64),
        ecs("2001:db8:99:100::", 56),
    ] {
        let d = run(&t, svc, c);
        assert_eq!(addresses(&t, &d), [v6], "{c:?}");
        assert_eq!(d.scope, 56, "{c:?}");
    }
    assert_eq!(run(&t, svc, ecs("2001:db8:99::", 48)).scope, 48);
    // And different /56s spread.
    let spread: HashSet<IpAddr> = (0..64)
        .map(|i| answer_of(&t, svc, ecs(&format!("2001:db8:99:{:x}00::", i), 56)))
        .collect();
    assert!(spread.len() > 1, "{spread:?}");
}

#[test]
fn weighted_trace_shows_each_regions_weight() {
    let t = weighted_table();
    let d = run(&t, "w.example.com.", ecs("20.0.0.0", 24));
    let cands = candidates(&t, "w.example.com.", ecs("20.0.0.0", 24));
    // Listed in the service's default order, each with the weight it can draw.
    assert_eq!(order(&cands), ["eu-west", "ap-southeast", "us-east"]);
    let weights: Vec<Rank> = cands.iter().map(|c| c.1).collect();
    assert_eq!(weights, [20, 10, 70].map(|weight| Rank::Weight { weight }));
    let chosen: Vec<&str> = cands
        .iter()
        .filter(|c| c.2 == Outcome::Chosen)
        .map(|c| c.0.as_str())
        .collect();
    assert_eq!(chosen, [region_name(&t, &d).expect("a region").as_str()]);
    assert!(
        cands
            .iter()
            .all(|c| c.2 == Outcome::Chosen || c.2 == Outcome::NotNeeded)
    );
}

#[test]
fn weighted_random_draws_per_query() {
    let t = weighted_table();
    let client = ecs("20.0.0.0", 24);
    let clients = vec![client; 5_000];
    let got = shares(&t, "rand.example.com.", &clients);
    assert_shares(
        &got,
        &[
            ("192.0.2.14", 70.0),
            ("192.0.2.34", 20.0),
            ("192.0.2.44", 10.0),
        ],
    );
    // The answer depends on no client bits at all.
    assert_eq!(run(&t, "rand.example.com.", client).scope, 0);
}

#[test]
fn weight_zero_answers_only_when_no_weighted_endpoint_is_up() {
    let svc = "backup.example.com.";
    let backups = [ip("192.0.2.15"), ip("192.0.2.25")];
    let t = weighted_table();
    let clients: Vec<Client> = subnets().take(2_000).map(|s| ecs(&s, 24)).collect();
    // Default weight is 1: eu-west 3, ap-southeast 1.
    let got = shares(&t, svc, &clients);
    assert_shares(&got, &[("192.0.2.35", 75.0), ("192.0.2.45", 25.0)]);

    // One weighted endpoint down: the other one takes everything, never a backup.
    let t = with_down(&weighted_table(), &["192.0.2.35"]);
    assert!(
        clients
            .iter()
            .all(|c| answer_of(&t, svc, *c) == ip("192.0.2.45"))
    );

    // Every weighted endpoint down: the weight-0 ones answer, shared evenly.
    let t = with_down(&weighted_table(), &["192.0.2.35", "192.0.2.45"]);
    let got = shares(&t, svc, &clients);
    assert_shares(&got, &[("192.0.2.15", 50.0), ("192.0.2.25", 50.0)]);
    let cands = candidates(&t, svc, clients[0]);
    assert_eq!(
        candidate(&cands, "eu-west").2,
        Outcome::Unhealthy { up: 0, total: 1 }
    );
    assert_eq!(
        candidate(&cands, "ap-southeast").2,
        Outcome::Unhealthy { up: 0, total: 1 }
    );

    // One backup down as well: the other backup answers.
    let t = with_down(
        &weighted_table(),
        &["192.0.2.35", "192.0.2.45", "192.0.2.15"],
    );
    assert!(
        clients
            .iter()
            .all(|c| answer_of(&t, svc, *c) == ip("192.0.2.25"))
    );

    // Everything down: fail-open answers as if all were up, still by weight.
    let t = with_down(
        &weighted_table(),
        &["192.0.2.35", "192.0.2.45", "192.0.2.15", "192.0.2.25"],
    );
    for c in &clients[..200] {
        let d = run(&t, svc, *c);
        assert_eq!(d.reason, Reason::FailOpen, "{c:?}");
        let got = addresses(&t, &d);
        assert_eq!(got.len(), 1, "{c:?}");
        assert!(!backups.contains(&got[0]), "{c:?}: {got:?}");
    }
}

#[test]
fn weighted_answers_two_gives_two_distinct_endpoints() {
    let t = weighted_table();
    let svc = "two.example.com.";
    let mut firsts: HashMap<IpAddr, usize> = HashMap::new();
    for s in subnets().take(2_000) {
        let d = run(&t, svc, ecs(&s, 24));
        let got = addresses(&t, &d);
        assert_eq!(got.len(), 2, "{s}: {got:?}");
        assert_ne!(got[0], got[1], "{s}");
        assert_eq!(addresses(&t, &run(&t, svc, ecs(&s, 24))), got, "{s}");
        *firsts.entry(got[0]).or_default() += 1;
    }
    // The first address is still drawn by weight.
    let heavy = firsts.get(&ip("192.0.2.16")).copied().unwrap_or(0);
    assert!((1_300..1_500).contains(&heavy), "{firsts:?}");

    // With one endpoint down only two remain, so every client gets both.
    let t = with_down(&weighted_table(), &["192.0.2.16"]);
    for s in subnets().take(100) {
        let got: HashSet<IpAddr> = addresses(&t, &run(&t, svc, ecs(&s, 24)))
            .into_iter()
            .collect();
        assert_eq!(got, [ip("192.0.2.36"), ip("192.0.2.46")].into(), "{s}");
    }
    // Two down: one healthy address, not two.
    let t = with_down(&weighted_table(), &["192.0.2.16", "192.0.2.36"]);
    assert_eq!(
        addresses(&t, &run(&t, svc, ecs("20.0.0.0", 24))),
        [ip("192.0.2.46")]
    );
}

#[test]
fn weights_are_validated() {
    let zero = config(
        "",
        &[],
        r#"
[[services]]
name = "w.example.com."
policy = "weighted"
endpoints = [
  { region = "us-east", address = "192.0.2.1", weight = 0 },
  { region = "eu-west", address = "192.0.2.2", weight = 0 },
]
"#,
    );
    let err = load_err(&zero);
    assert!(err.contains("every endpoint has weight 0"), "{err}");

    let not_weighted = config(
        "",
        &[],
        r#"
[[services]]
name = "g.example.com."
policy = "geo"
endpoints = [
  { region = "us-east", address = "192.0.2.1", weight = 5 },
  { region = "eu-west", address = "192.0.2.2" },
]
"#,
    );
    let err = load_err(&not_weighted);
    assert!(err.contains("endpoint weights need policy"), "{err}");

    let bad_mode = config(
        "",
        &[],
        r#"
[[services]]
name = "w.example.com."
policy = "weighted"
weight_mode = "sticky"
endpoints = [{ region = "us-east", address = "192.0.2.1" }]
"#,
    );
    let err = load_err(&bad_mode);
    assert!(err.contains("weight_mode \"sticky\""), "{err}");
}

// ---- multivalue ----

/// A service of the given policy with three eu-west endpoints and one in us-east.
fn multivalue(policy: &str) -> RoutingTable {
    let regions = if policy == "failover" {
        "regions = [\"eu-west\", \"us-east\"]\n"
    } else {
        ""
    };
    let weight = |w: u32| {
        if policy == "weighted" {
            format!(", weight = {w}")
        } else {
            String::new()
        }
    };
    table(&config(
        "",
        &[],
        &format!(
            r#"
[[services]]
name = "multi.example.com."
policy = "{policy}"
answers = 2
check = "web"
{regions}endpoints = [
  {{ region = "eu-west", address = "192.0.2.61"{w} }},
  {{ region = "eu-west", address = "192.0.2.62"{w} }},
  {{ region = "eu-west", address = "192.0.2.63"{w} }},
  {{ region = "us-east", address = "192.0.2.64"{z} }},
]
"#,
            w = weight(1),
            z = weight(0),
        ),
    ))
}

#[test]
fn every_policy_answers_up_to_n_healthy_addresses() {
    let eu: HashSet<IpAddr> = ["192.0.2.61", "192.0.2.62", "192.0.2.63"].map(ip).into();
    let svc = "multi.example.com.";
    for policy in ["geo", "failover", "latency", "proximity", "weighted"] {
        let t = multivalue(policy);
        let mut seen = HashSet::new();
        for client in ["12.0.0.1", "12.1.0.1", "12.2.0.1", "2001:db8:2::1"] {
            let d = run(&t, svc, src(client));
            let got = addresses(&t, &d);
            assert_eq!(got.len(), 2, "{policy} {client}: {got:?}");
            assert_ne!(got[0], got[1], "{policy} {client}");
            assert!(
                got.iter().all(|a| eu.contains(a)),
                "{policy} {client}: {got:?}"
            );
            // Deterministic: the same client gets the same pair.
            for _ in 0..3 {
                assert_eq!(addresses(&t, &run(&t, svc, src(client))), got, "{policy}");
            }
            seen.extend(got);
        }
        assert!(seen.len() >= 2, "{policy}: {seen:?}");

        // Two of three down: the one healthy address, not a down one to make up the count.
        let t = with_down(&t, &["192.0.2.61", "192.0.2.63"]);
        let d = run(&t, svc, src("12.0.0.1"));
        assert_eq!(addresses(&t, &d), [ip("192.0.2.62")], "{policy}");
    }
}

#[test]
fn answers_more_than_the_region_has_returns_what_there_is() {
    let text = config(
        "",
        &[],
        r#"
[[services]]
name = "many.example.com."
policy = "latency"
answers = 16
endpoints = [
  { region = "eu-west", address = "192.0.2.71" },
  { region = "eu-west", address = "192.0.2.72" },
  { region = "us-east", address = "192.0.2.73" },
]

[[services]]
name = "wmany.example.com."
policy = "weighted"
answers = 16
endpoints = [
  { region = "eu-west", address = "192.0.2.74", weight = 5 },
  { region = "us-east", address = "192.0.2.75", weight = 1 },
  { region = "ap-southeast", address = "192.0.2.76", weight = 0 },
]
"#,
    );
    let t = table(&text);
    let got: HashSet<IpAddr> = addresses(&t, &run(&t, "many.example.com.", src("12.0.0.1")))
        .into_iter()
        .collect();
    assert_eq!(got, [ip("192.0.2.71"), ip("192.0.2.72")].into());
    // Weighted: every positive-weight endpoint, the weight-0 one only as a backup.
    let got: HashSet<IpAddr> = addresses(&t, &run(&t, "wmany.example.com.", src("12.0.0.1")))
        .into_iter()
        .collect();
    assert_eq!(got, [ip("192.0.2.74"), ip("192.0.2.75")].into());

    let err = load_err(&text.replace("answers = 16", "answers = 17"));
    assert!(err.contains("answers must be 1 to 16"), "{err}");
}

// ---- residency ----

/// An EU-only service of the given policy; us-east is nearest for nobody in the EU, but
/// heavily weighted and (with the map below) fastest for Germany.
fn residency(policy: &str, on_all_down: &str) -> RoutingTable {
    let w = |n: u32| {
        if policy == "weighted" {
            format!(", weight = {n}")
        } else {
            String::new()
        }
    };
    let regions = if policy == "failover" {
        "regions = [\"us-east\", \"eu-west\", \"ap-southeast\"]\n"
    } else {
        ""
    };
    let fallback = if on_all_down == "fallback" {
        "fallback = [\"203.0.113.9\"]\n"
    } else {
        ""
    };
    let t = table(&config(
        "",
        &[],
        &format!(
            r#"
[[services]]
name = "res.example.com."
policy = "{policy}"
check = "web"
on_all_down = "{on_all_down}"
{fallback}{regions}residency = [{{ continents = ["EU"], regions = ["eu-west"] }}]
endpoints = [
  {{ region = "us-east", address = "192.0.2.81"{a} }},
  {{ region = "eu-west", address = "192.0.2.82"{b} }},
  {{ region = "eu-west", address = "192.0.2.83"{b} }},
  {{ region = "ap-southeast", address = "192.0.2.84"{a} }},
]
"#,
            a = w(100),
            b = w(1),
        ),
    ));
    with_map(t, "country:DE,us-east,1\n")
}

const RES: &str = "res.example.com.";
const POLICIES: [&str; 5] = ["geo", "failover", "latency", "proximity", "weighted"];
const EU_CLIENTS: [&str; 4] = ["12.0.0.1", "12.1.0.1", "12.2.0.1", "2001:db8:2::1"];

#[test]
fn residency_keeps_eu_clients_in_eu_west() {
    for policy in POLICIES {
        let t = residency(policy, "fail-open");
        for client in EU_CLIENTS {
            let cands = candidates(&t, RES, src(client));
            let chosen = cands
                .iter()
                .position(|c| c.2 == Outcome::Chosen)
                .unwrap_or_else(|| panic!("{policy} {client}: {cands:?}"));
            assert_eq!(cands[chosen].0, "eu-west", "{policy} {client}");
            // Every region the client would have preferred is excluded by residency.
            for (region, _, outcome) in &cands[..chosen] {
                assert_eq!(
                    *outcome,
                    Outcome::Residency,
                    "{policy} {client} {region}: {cands:?}"
                );
            }
            assert_eq!(region_of(&t, RES, src(client)), "eu-west", "{policy}");
        }
        // Many German subnets, not just one lucky draw.
        for i in 0..200 {
            let c = ecs(&format!("12.0.{i}.0"), 24);
            assert_eq!(region_of(&t, RES, c), "eu-west", "{policy} {c:?}");
        }
    }
}

#[test]
fn residency_trace_marks_every_excluded_region() {
    // `explain` must say why us-east and ap-southeast are out for a German client, also when
    // they rank below the chosen region: "not needed" would suggest they could take over.
    let mut wrong = Vec::new();
    for policy in POLICIES {
        let t = residency(policy, "fail-open");
        for (region, _, outcome) in candidates(&t, RES, src("12.0.0.1")) {
            let want = if region == "eu-west" {
                Outcome::Chosen
            } else {
                Outcome::Residency
            };
            if outcome != want {
                wrong.push(format!("{policy}: {region} {outcome:?}, want {want:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn residency_leaves_other_clients_alone() {
    for policy in POLICIES {
        let t = residency(policy, "fail-open");
        for client in ["11.0.0.1", "13.0.0.1", "14.0.0.1", "15.0.0.1"] {
            let cands = candidates(&t, RES, src(client));
            assert!(
                cands.iter().all(|c| c.2 != Outcome::Residency),
                "{policy} {client}: {cands:?}"
            );
        }
    }
    // US clients still go to us-east, and may fail over to eu-west.
    let t = residency("geo", "fail-open");
    assert_eq!(region_of(&t, RES, src("11.0.0.1")), "us-east");
    assert_eq!(region_of(&t, RES, src("13.0.0.1")), "ap-southeast");
    let t = with_down(&t, &["192.0.2.81"]);
    let d = run(&t, RES, src("11.0.0.1"));
    assert_eq!(region_name(&t, &d).as_deref(), Some("eu-west"));
    assert_eq!(d.reason, Reason::Failover);
}

#[test]
fn residency_region_down_never_leaves_the_boundary() {
    let down = ["192.0.2.82", "192.0.2.83"];
    for policy in POLICIES {
        // fail-open: answered from eu-west anyway.
        let t = with_down(&residency(policy, "fail-open"), &down);
        for client in EU_CLIENTS {
            let d = run(&t, RES, src(client));
            assert_eq!(d.reason, Reason::FailOpen, "{policy} {client}");
            assert_eq!(
                region_name(&t, &d).as_deref(),
                Some("eu-west"),
                "{policy} {client}"
            );
            let got = addresses(&t, &d);
            assert!(
                !got.is_empty() && got.iter().all(|a| down.contains(&a.to_string().as_str())),
                "{policy} {client}: {got:?}"
            );
        }
        // Clients outside the rule just fail over as usual.
        let d = run(&t, RES, src("11.0.0.1"));
        assert_ne!(d.reason, Reason::FailOpen, "{policy}");

        // servfail: nothing at all, never us-east.
        let t = with_down(&residency(policy, "servfail"), &down);
        for client in EU_CLIENTS {
            let d = run(&t, RES, src(client));
            assert_eq!(d.reason, Reason::ServFail, "{policy} {client}");
            assert!(d.endpoints.as_slice().is_empty(), "{policy} {client}");
        }
        let a = answer(
            &t,
            &LowerName::new(&Name::from_ascii(RES).expect("name")),
            RecordType::A,
            &src("12.0.0.1"),
            &mut NoTrace,
        );
        assert_eq!(a.rcode, ResponseCode::ServFail, "{policy}");
        assert!(a.answers.is_empty(), "{policy}");

        // fallback: the static address.
        let t = with_down(&residency(policy, "fallback"), &down);
        let d = run(&t, RES, src("12.0.0.1"));
        assert_eq!(d.reason, Reason::Fallback, "{policy}");
        let a = answer(
            &t,
            &LowerName::new(&Name::from_ascii(RES).expect("name")),
            RecordType::A,
            &src("12.0.0.1"),
            &mut NoTrace,
        );
        let got: Vec<String> = a.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(got, ["203.0.113.9"], "{policy}");
    }
}

/// `t` with these regions evacuated by an operator.
fn with_evacuated(mut t: RoutingTable, regions: &[&str]) -> RoutingTable {
    let evacuations = regions
        .iter()
        .map(|r| {
            (
                r.to_string(),
                Evacuation {
                    region: r.to_string(),
                    reason: "test".into(),
                    by: "policy_tests".into(),
                    since: 0,
                },
            )
        })
        .collect();
    t.admin = Arc::new(AdminView::new(&t.compiled, evacuations));
    t
}

#[test]
fn residency_region_evacuated_fail_open_still_answers_inside_the_boundary() {
    // An operator evacuated eu-west (forced): EU clients have no allowed region left, and
    // fail-open answers from eu-west rather than nothing or another region.
    let mut wrong = Vec::new();
    for policy in POLICIES {
        let t = with_evacuated(residency(policy, "fail-open"), &["eu-west"]);
        let d = run(&t, RES, src("12.0.0.1"));
        let got = (d.reason, region_name(&t, &d), addresses(&t, &d).len());
        if got != (Reason::FailOpen, Some("eu-west".to_string()), 1) {
            wrong.push(format!("{policy}: {got:?}"));
        }
        // Others are simply routed around the evacuated region.
        let d = run(&t, RES, src("11.0.0.1"));
        let us = region_name(&t, &d);
        if us.is_none() || us.as_deref() == Some("eu-west") {
            wrong.push(format!("{policy}: US client {d:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn every_region_evacuated_fail_open_answers_for_every_policy() {
    // Forced evacuation of every region: fail-open means a DNS answer, whatever the policy.
    let mut wrong = Vec::new();
    for policy in POLICIES {
        let t = with_evacuated(
            multivalue(policy),
            &["us-east", "us-west", "eu-west", "ap-southeast", "nowhere"],
        );
        let d = run(&t, "multi.example.com.", src("12.0.0.1"));
        if d.reason != Reason::FailOpen || d.endpoints.as_slice().is_empty() {
            wrong.push(format!("{policy}: {:?} {:?}", d.reason, addresses(&t, &d)));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn residency_first_matching_rule_wins_and_countries_work() {
    let t = table(&config(
        "",
        &[],
        r#"
[[services]]
name = "asia.example.com."
residency = [
  { countries = ["JP"], regions = ["ap-southeast"] },
  { continents = ["AS"], regions = ["eu-west", "us-west"] },
]
endpoints = [
  { region = "us-west", address = "192.0.2.91" },
  { region = "eu-west", address = "192.0.2.92" },
  { region = "ap-southeast", address = "192.0.2.93" },
]
"#,
    ));
    let svc = "asia.example.com.";
    assert_eq!(region_of(&t, svc, src("13.0.0.1")), "ap-southeast"); // JP: first rule
    assert_eq!(region_of(&t, svc, src("13.1.0.1")), "eu-west"); // SG: second rule
    assert_eq!(region_of(&t, svc, src("13.2.0.1")), "eu-west"); // IN
    let cands = candidates(&t, svc, src("13.1.0.1"));
    assert_eq!(
        candidate(&cands, "ap-southeast").2,
        Outcome::Residency,
        "{cands:?}"
    );
    assert_eq!(region_of(&t, svc, src("14.0.0.1")), "ap-southeast"); // AU: no rule
    // A residency rule makes even a service that ignores location depend on the GeoIP network.
    assert_eq!(run(&t, svc, ecs("13.1.0.0", 24)).scope, 16);
}

#[test]
fn residency_rules_are_validated() {
    let rest = |rule: &str| {
        format!(
            r#"
[[services]]
name = "res.example.com."
residency = [{rule}]
endpoints = [
  {{ region = "us-east", address = "192.0.2.1" }},
  {{ region = "eu-west", address = "192.0.2.2" }},
]
"#
        )
    };
    let err = load_err(&config(
        "",
        &[],
        &rest(r#"{ continents = ["EU"], regions = ["ap-southeast"] }"#),
    ));
    assert!(
        err.contains("none of its regions has an endpoint of this service"),
        "{err}"
    );
    let err = load_err(&config(
        "",
        &[],
        &rest(r#"{ continents = ["EU"], regions = ["mars"] }"#),
    ));
    assert!(err.contains("undefined region \"mars\""), "{err}");
    let err = load_err(&config("", &[], &rest(r#"{ regions = ["eu-west"] }"#)));
    assert!(err.contains("needs countries or continents"), "{err}");
    let err = load_err(&config(
        "",
        &[],
        &rest(r#"{ continents = ["XX"], regions = ["eu-west"] }"#),
    ));
    assert!(err.contains("\"XX\" is not a continent code"), "{err}");
}

// ---- CIDR overrides ----

const CORP_MAP: &str = r#"
[cidr_maps.corp]
networks = [
  { network = "12.0.5.0/24", region = "us-east" },
  { network = "13.0.0.0/8", region = "eu-west" },
  { network = "13.0.64.0/18", region = "us-east" },
  { network = "2001:db8:2:5::/64", region = "us-east" },
]
"#;

fn corp_service(policy: &str) -> String {
    let w = |n: u32| {
        if policy == "weighted" {
            format!(", weight = {n}")
        } else {
            String::new()
        }
    };
    let regions = if policy == "failover" {
        "regions = [\"us-east\", \"eu-west\", \"ap-southeast\"]\n"
    } else {
        ""
    };
    format!(
        r#"
[[services]]
name = "corp.example.com."
policy = "{policy}"
cidr_map = "corp"
check = "web"
{regions}endpoints = [
  {{ region = "us-east", address = "192.0.2.101"{a} }},
  {{ region = "eu-west", address = "192.0.2.102"{b} }},
  {{ region = "ap-southeast", address = "192.0.2.103"{b} }},
]
"#,
        a = w(1),
        b = w(100),
    )
}

const CORP: &str = "corp.example.com.";

fn corp(policy: &str) -> RoutingTable {
    table(&config(
        "",
        &[],
        &format!("{CORP_MAP}{}", corp_service(policy)),
    ))
}

#[test]
fn cidr_override_beats_geoip_longest_prefix_first() {
    for policy in POLICIES {
        let t = corp(policy);
        for (client, region) in [
            ("12.0.5.1", "us-east"),  // Germany, but the /24 says us-east
            ("13.0.1.1", "eu-west"),  // Japan, the /8
            ("13.0.70.1", "us-east"), // the /18 inside the /8
            ("13.1.0.1", "eu-west"),  // Singapore is in the /8 too
            ("2001:db8:2:5::1", "us-east"),
        ] {
            let d = run(&t, CORP, src(client));
            assert_eq!(
                region_name(&t, &d).as_deref(),
                Some(region),
                "{policy} {client}"
            );
            assert_eq!(d.reason, Reason::Override, "{policy} {client}");
            let cands = candidates(&t, CORP, src(client));
            let first = cands
                .iter()
                .find(|c| c.1 == Rank::CidrOverride)
                .unwrap_or_else(|| panic!("{policy} {client}: {cands:?}"));
            assert_eq!((first.0.as_str(), first.2), (region, Outcome::Chosen));
            if policy != "weighted" {
                assert_eq!(cands[0].1, Rank::CidrOverride, "{policy} {client}");
            }
        }
        // Outside every override network the policy decides as usual.
        let d = run(&t, CORP, src("12.0.9.1"));
        assert_ne!(d.reason, Reason::Override, "{policy}");
        let cands = candidates(&t, CORP, src("12.0.9.1"));
        assert!(
            cands.iter().all(|c| c.1 != Rank::CidrOverride),
            "{policy}: {cands:?}"
        );
    }
    let t = corp("geo");
    assert_eq!(region_of(&t, CORP, src("12.0.9.1")), "eu-west");
    assert_eq!(region_of(&t, CORP, src("14.0.0.1")), "ap-southeast");
}

#[test]
fn cidr_override_scope_covers_exactly_the_networks_that_share_the_answer() {
    for policy in ["geo", "latency", "proximity"] {
        let t = corp(policy);
        let scope = |c: Client| run(&t, CORP, c).scope;
        assert_eq!(scope(ecs("12.0.5.0", 24)), 24, "{policy}");
        assert_eq!(scope(src("12.0.5.77")), 24, "{policy}");
        // A narrower ECS source still gets /24: the answer holds for the whole /24.
        assert_eq!(scope(ecs("12.0.5.128", 25)), 24, "{policy}");
        // Elsewhere in Germany's /16: 12.0.9 and 12.0.5 share 20 bits, so /21 is the
        // widest scope that leaves the override out.
        assert_eq!(scope(ecs("12.0.9.0", 24)), 21, "{policy}");
        assert_eq!(scope(src("12.0.9.1")), 21, "{policy}");
        // 12.0.4 and 12.0.5 differ only in bit 24.
        assert_eq!(scope(ecs("12.0.4.0", 24)), 24, "{policy}");
        // Far from the /24: the GeoIP network (/16) bounds it.
        assert_eq!(scope(ecs("12.0.200.0", 24)), 17, "{policy}");
        // Never longer than the source prefix.
        assert_eq!(scope(ecs("12.0.0.0", 16)), 16, "{policy}");
        assert_eq!(scope(ecs("12.0.8.0", 20)), 20, "{policy}");
        // In the /8 but outside the /18: the two share 17 bits (13.0.0 vs 13.0.64).
        assert_eq!(scope(ecs("13.0.1.0", 24)), 18, "{policy}");
        assert_eq!(scope(ecs("13.0.70.0", 24)), 18, "{policy}");
        // IPv6: inside the /64, and next to it (2001:db8:2:0 vs 2001:db8:2:5 share 61 bits).
        assert_eq!(scope(ecs("2001:db8:2:5::", 64)), 64, "{policy}");
        assert_eq!(scope(ecs("2001:db8:2::", 64)), 62, "{policy}");
        assert_eq!(scope(ecs("2001:db8:2::", 56)), 56, "{policy}");
    }
    // Failover ignores location, so only the override networks count.
    let t = corp("failover");
    let scope = |c: Client| run(&t, CORP, c).scope;
    assert_eq!(scope(ecs("12.0.5.0", 24)), 24);
    assert_eq!(scope(ecs("12.0.9.0", 24)), 21);
    assert_eq!(scope(ecs("13.0.1.0", 24)), 18);
    // 11.0.130.0 and 12.0.5.0 first differ in bit 7 (00001011 vs 00001100).
    assert_eq!(scope(ecs("11.0.130.0", 24)), 6);
}

#[test]
fn cidr_override_region_down_falls_back_to_the_normal_order() {
    for policy in POLICIES {
        let t = with_down(&corp(policy), &["192.0.2.101"]);
        let d = run(&t, CORP, src("12.0.5.1"));
        assert_ne!(
            region_name(&t, &d).as_deref(),
            Some("us-east"),
            "{policy}: {d:?}"
        );
        assert!(d.region.is_some(), "{policy}: {d:?}");
        assert_ne!(d.reason, Reason::Override, "{policy}");
        if policy != "weighted" {
            let cands = candidates(&t, CORP, src("12.0.5.1"));
            assert_eq!(
                cands[0],
                (
                    "us-east".to_string(),
                    Rank::CidrOverride,
                    Outcome::Unhealthy { up: 0, total: 1 }
                ),
                "{policy}"
            );
            assert_eq!(d.reason, Reason::Failover, "{policy}");
        }
    }
    // Geo: Germany's normal first choice.
    let t = with_down(&corp("geo"), &["192.0.2.101"]);
    assert_eq!(region_of(&t, CORP, src("12.0.5.1")), "eu-west");
}

#[test]
fn cidr_map_from_a_file() {
    let dir = TempDir::new();
    let file = dir.write(
        "corp.cidr",
        "# corporate networks\n12.0.5.0/24 us-east\n\n13.0.0.0/8\teu-west  # all of 13/8\n",
    );
    let text = config(
        "",
        &[],
        &format!(
            "[cidr_maps.corp]\nfile = \"{}\"\n{}",
            file.display(),
            corp_service("geo")
        ),
    );
    let t = table(&text);
    let d = run(&t, CORP, ecs("12.0.5.0", 24));
    assert_eq!(region_name(&t, &d).as_deref(), Some("us-east"));
    assert_eq!((d.reason, d.scope), (Reason::Override, 24));
    assert_eq!(run(&t, CORP, ecs("12.0.9.0", 24)).scope, 21);
    assert_eq!(region_of(&t, CORP, src("13.0.70.1")), "eu-west");
    assert_eq!(region_of(&t, CORP, src("12.0.9.1")), "eu-west");
    assert_eq!(run(&t, CORP, src("12.0.9.1")).reason, Reason::Geo);

    // File and inline networks together: the inline /18 is longer than the file's /8.
    let text = config(
        "",
        &[],
        &format!(
            "[cidr_maps.corp]\nfile = \"{}\"\nnetworks = [{{ network = \"13.0.64.0/18\", region = \"ap-southeast\" }}]\n{}",
            file.display(),
            corp_service("geo")
        ),
    );
    let t = table(&text);
    assert_eq!(region_of(&t, CORP, src("13.0.70.1")), "ap-southeast");
    assert_eq!(region_of(&t, CORP, src("13.0.1.1")), "eu-west");

    // Every bad line is reported with its number.
    let bad = dir.write(
        "bad.cidr",
        "12.0.5.0/24 us-east\n12.0.5.0/33 us-east\n12.0.6.0/24 mars\n12.0.7.1/24 eu-west\nonly-one-field\n",
    );
    let err = load_err(&config(
        "",
        &[],
        &format!(
            "[cidr_maps.corp]\nfile = \"{}\"\n{}",
            bad.display(),
            corp_service("geo")
        ),
    ));
    assert!(err.contains("bad.cidr"), "{err}");
    for line in ["line 2", "line 3", "line 4", "line 5"] {
        assert!(err.contains(line), "{line}: {err}");
    }
    assert!(!err.contains("line 1:"), "{err}");
}

#[test]
fn cidr_maps_are_validated() {
    let with = |networks: &str, use_map: &str| {
        config(
            "",
            &[],
            &format!(
                "[cidr_maps.corp]\nnetworks = [{networks}]\n{}",
                corp_service("geo").replace("cidr_map = \"corp\"", use_map)
            ),
        )
    };
    let err = load_err(&with(
        r#"{ network = "12.0.5.1/24", region = "us-east" }"#,
        "cidr_map = \"corp\"",
    ));
    assert!(err.contains("host bits"), "{err}");
    let err = load_err(&with(
        r#"{ network = "12.0.5.0/24", region = "mars" }"#,
        "cidr_map = \"corp\"",
    ));
    assert!(err.contains("undefined region \"mars\""), "{err}");
    let err = load_err(&with(
        r#"{ network = "12.0.5.0/24", region = "us-east" }"#,
        "cidr_map = \"other\"",
    ));
    assert!(err.contains("no [cidr_maps.other] table"), "{err}");
}

#[test]
fn cidr_override_with_residency_stays_inside_the_boundary() {
    // The override sends 12.0.5.0/24 to us-east, but German clients may only use eu-west.
    let t = table(&config(
        "",
        &[],
        &format!(
            "{CORP_MAP}{}",
            corp_service("geo").replace(
                "check = \"web\"",
                "check = \"web\"\nresidency = [{ countries = [\"DE\"], regions = [\"eu-west\"] }]"
            )
        ),
    ));
    let cands = candidates(&t, CORP, src("12.0.5.1"));
    assert_eq!(
        cands[0],
        (
            "us-east".to_string(),
            Rank::CidrOverride,
            Outcome::Residency
        )
    );
    assert_eq!(region_of(&t, CORP, src("12.0.5.1")), "eu-west");
    // Japan is not restricted: its override still applies.
    assert_eq!(region_of(&t, CORP, src("13.0.70.1")), "us-east");
}

// ---- ECS scope per policy ----

#[test]
fn ecs_scope_per_policy() {
    let mut rest = String::new();
    for (name, policy, extra) in [
        ("geo", "geo", ""),
        ("latency", "latency", ""),
        ("proximity", "proximity", ""),
        (
            "failover",
            "failover",
            "regions = [\"us-east\", \"eu-west\", \"ap-southeast\"]\n",
        ),
        ("stable", "weighted", ""),
        ("random", "weighted", "weight_mode = \"random\"\n"),
    ] {
        rest.push_str(&format!(
            r#"
[[services]]
name = "{name}.example.com."
policy = "{policy}"
{extra}endpoints = [
  {{ region = "us-east", address = "192.0.2.111" }},
  {{ region = "eu-west", address = "192.0.2.112" }},
  {{ region = "ap-southeast", address = "192.0.2.113" }},
]
"#
        ));
    }
    let t = table(&config("", &[], &rest));
    let names = [
        "geo",
        "latency",
        "proximity",
        "failover",
        "stable",
        "random",
    ];
    for (client, want) in [
        // 11.0.130.0 lies in the fixture's 11.0.128.0/20.
        (ecs("11.0.130.0", 24), [20, 20, 20, 0, 24, 0]),
        (src("11.0.130.7"), [20, 20, 20, 0, 24, 0]),
        (ecs("12.0.0.0", 24), [16, 16, 16, 0, 24, 0]),
        (ecs("12.0.0.0", 12), [12, 12, 12, 0, 12, 0]),
        (ecs("13.0.0.0", 20), [16, 16, 16, 0, 20, 0]),
        (ecs("2001:db8:3::", 56), [48, 48, 48, 0, 56, 0]),
        (ecs("2001:db8:3::", 64), [48, 48, 48, 0, 56, 0]),
        (ecs("2001:db8:3::", 40), [40, 40, 40, 0, 40, 0]),
    ] {
        let got: Vec<u8> = names
            .iter()
            .map(|n| run(&t, &format!("{n}.example.com."), client).scope)
            .collect();
        assert_eq!(got, want, "{client:?} for {names:?}");
    }
    // What DNS returns is the decision's scope.
    let a = answer(
        &t,
        &LowerName::new(&Name::from_ascii("stable.example.com.").expect("name")),
        RecordType::A,
        &ecs("12.0.0.0", 24),
        &mut NoTrace,
    );
    assert_eq!(a.ecs_scope(), 24);
}
