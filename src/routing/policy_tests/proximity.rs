//! Proximity: the nearest region by great-circle distance, scaled by each region's bias.
use crate::geo::LatLon;
use crate::routing::RoutingTable;
use crate::routing::query::{Client, Reason};
use crate::routing::test_support::{
    addresses, candidate, candidates, ip, load_err, order, region_name, region_of, run, src,
};
use crate::routing::trace::Rank;

use super::{config, region_location, table};

/// Where the fixture puts a few clients (geoip-fixtures/README.md).
const TOKYO: LatLon = LatLon {
    lat: 35.69,
    lon: 139.69,
};
const MUMBAI: LatLon = LatLon {
    lat: 19.08,
    lon: 72.88,
};

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
