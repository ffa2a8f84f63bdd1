//! The latency map parser (`routing::latency::LatencyMap::parse`), CSV and TOML, against a
//! config with two regions; a map that parses is then looked up.
//!
//! Input: UTF-8 text, parsed as both formats.
//!
//! Checks: never panics; every error is on a line of the text (>= 1) with a message; a map
//! that parses answers lookups for IPv4, IPv6, country and continent clients.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use meridian::geo::GeoInfo;
use meridian::routing::latency::{Format, LatencyMap};

/// The config's region names, in region id order.
const REGIONS: [&str; 2] = ["us-east", "eu-west"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.matches('\n').count() + 1;
    for format in [Format::Csv, Format::Toml] {
        match LatencyMap::parse(text, format, &REGIONS) {
            Ok(map) => lookups(&map),
            Err(errors) => {
                assert!(!errors.is_empty(), "{format:?}: rejected with no error");
                for e in &errors {
                    assert!(
                        (1..=lines).contains(&e.line),
                        "{format:?}: error on line {} of {lines}: {}",
                        e.line,
                        e.message
                    );
                    assert!(!e.message.is_empty(), "{format:?}: error with no message");
                }
            }
        }
    }
});

fn lookups(map: &LatencyMap) {
    let geo = GeoInfo {
        country: "DE".parse().ok(),
        continent: "EU".parse().ok(),
        ..GeoInfo::default()
    };
    for addr in [
        IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        IpAddr::V4(Ipv4Addr::new(12, 0, 5, 9)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1)),
    ] {
        for g in [GeoInfo::default(), geo] {
            let (row, scope) = map.lookup(addr, &g);
            assert!(
                scope <= if addr.is_ipv4() { 32 } else { 128 },
                "scope /{scope}"
            );
            if let Some(row) = row {
                for region in 0..REGIONS.len() {
                    if let Some(rtt) = row.rtt(region) {
                        assert!((0.0..=60_000.0).contains(&rtt), "rtt {rtt}");
                    }
                }
            }
        }
    }
}
