//! The committed GeoIP fixtures: they must be exactly what `geoip-fixtures/source.toml`
//! builds (so the readable source is the truth), and they must answer the lookups other
//! tests rely on.
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::{Reader, geoip2, path};
use meridian::geo::build::source::{CITY_FILE, COUNTRY_FILE, FLAT_FILE, build_from_source};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip-fixtures")
}

fn open(file: &str) -> Reader<Vec<u8>> {
    let path = fixtures_dir().join(file);
    let reader = Reader::open_readfile(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    reader.verify().expect("committed fixture verifies");
    reader
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn city<'r>(reader: &'r Reader<Vec<u8>>, addr: &str) -> (geoip2::City<'r>, u8) {
    let hit = reader.lookup(ip(addr)).expect("lookup");
    let prefix = hit.network().expect("network").prefix();
    (hit.decode().expect("decode").expect("has data"), prefix)
}

#[test]
fn committed_fixtures_match_the_source() {
    let built = build_from_source(&fixtures_dir().join("source.toml")).expect("source builds");
    let names: Vec<&str> = built.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, [CITY_FILE, COUNTRY_FILE, FLAT_FILE]);
    for (name, bytes) in &built {
        let committed = std::fs::read(fixtures_dir().join(name)).expect("committed file");
        assert!(
            committed == *bytes,
            "geoip-fixtures/{name} is stale; rebuild with \
             `cargo run -- geoip-build --source geoip-fixtures/source.toml --out-dir geoip-fixtures`"
        );
    }
}

#[test]
fn city_fixture_answers() {
    let reader = open(CITY_FILE);
    assert_eq!(reader.metadata().database_type, "Meridian-Fixture-City");

    let (rec, prefix) = city(&reader, "11.0.130.1");
    assert_eq!(prefix, 20, "the more specific /20 inside 11.0.0.0/16");
    assert_eq!(rec.country.iso_code, Some("US"));
    assert_eq!(rec.subdivisions[0].iso_code, Some("VA"));
    assert_eq!(rec.location.latitude, Some(38.90));

    let (rec, prefix) = city(&reader, "11.0.0.1");
    assert!(prefix >= 16);
    assert_eq!(rec.location.latitude, Some(39.04));

    let (rec, _) = city(&reader, "12.0.0.1");
    assert_eq!(rec.country.iso_code, Some("DE"));
    assert_eq!(rec.continent.code, Some("EU"));

    let (rec, prefix) = city(&reader, "2001:db8:3::1");
    assert_eq!(prefix, 48);
    assert_eq!(rec.country.iso_code, Some("JP"));

    let (rec, _) = city(&reader, "18.0.0.1");
    assert_eq!(rec.country.iso_code, Some("MX"));
    assert!(rec.location.is_empty(), "18.0.0.0/16 has no location");

    assert!(!reader.lookup(ip("127.0.0.1")).expect("lookup").has_data());
}

#[test]
fn country_fixture_answers() {
    let reader = open(COUNTRY_FILE);
    assert_eq!(reader.metadata().database_type, "Meridian-Fixture-Country");
    let code = |addr: &str| -> Option<String> {
        reader
            .lookup(ip(addr))
            .expect("lookup")
            .decode_path(&path!["country", "iso_code"])
            .expect("decode")
    };
    assert_eq!(code("11.0.130.1").as_deref(), Some("US"));
    assert_eq!(code("12.0.0.1").as_deref(), Some("DE"));
    assert_eq!(code("2001:db8:3::1").as_deref(), Some("JP"));
    assert_eq!(code("18.0.0.1").as_deref(), Some("MX"));
    let location: Option<serde_json::Value> = reader
        .lookup(ip("11.0.0.1"))
        .expect("lookup")
        .decode_path(&path!["location"])
        .expect("decode");
    assert_eq!(location, None, "the Country schema has no location");
    assert!(!reader.lookup(ip("127.0.0.1")).expect("lookup").has_data());
}

#[test]
fn flat_fixture_answers() {
    let reader = open(FLAT_FILE);
    assert_eq!(reader.metadata().database_type, "Meridian-Fixture-Flat");
    let field = |addr: &str, key: &str| -> Option<serde_json::Value> {
        reader
            .lookup(ip(addr))
            .expect("lookup")
            .decode_path(&path![key])
            .expect("decode")
    };
    assert_eq!(field("11.0.130.1", "country_code"), Some("US".into()));
    assert_eq!(field("11.0.130.1", "latitude"), Some(38.90.into()));
    assert_eq!(field("12.0.0.1", "country_code"), Some("DE".into()));
    assert_eq!(field("2001:db8:3::1", "country_code"), Some("JP".into()));
    assert_eq!(field("18.0.0.1", "country_code"), Some("MX".into()));
    assert_eq!(field("18.0.0.1", "latitude"), None);
    assert_eq!(field("18.0.0.1", "longitude"), None);
    assert!(!reader.lookup(ip("127.0.0.1")).expect("lookup").has_data());
}
