//! Latency: RTT estimated from distance plus overhead, the latency map's rows (country,
//! continent, CIDR; inline or from a file) replacing the estimate, measured penalties that
//! move a client only past the incumbent's margin, and regions without any RTT.
use crate::geo::LatLon;
use crate::routing::RoutingTable;
use crate::routing::latency::RowKind;
use crate::routing::query::{Client, Reason};
use crate::routing::test_support::{
    addresses, candidate, candidates, compile, ecs, ip, load_err, order, region_name, region_of,
    run, service, src, with_down,
};
use crate::routing::trace::{Outcome, Rank, RttSource};

use super::{TempDir, config, region_location, table, with_map};

/// Where the fixture puts a Frankfurt client (geoip-fixtures/README.md).
const FRANKFURT: LatLon = LatLon {
    lat: 50.11,
    lon: 8.68,
};

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

/// The expected RTT estimate: 2 x km / 200 (fibre) plus the overhead.
fn estimate(t: &RoutingTable, region: &str, client: LatLon, overhead: f64) -> f64 {
    2.0 * region_location(t, region).distance_km(client) / 200.0 + overhead
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.05
}

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
    // Longer than a resolver's /16 that covers the /24 (RFC 7871 7.2.1): the answer holds
    // only for the /22 around 12.0.0.0 (12.0.0 and 12.0.5 share 21 bits).
    assert_eq!(scope(ecs("12.0.0.0", 16)), 22);
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
