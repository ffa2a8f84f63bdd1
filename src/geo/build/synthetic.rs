//! A synthetic world-sized GeoIP database for benchmarks: about as many networks as a real
//! GeoLite2/DB-IP country database, in the GeoIP2 City schema, spread over every country
//! (with its real continent and a location near its continent's centre). Deterministic for
//! a seed.
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::writer::{Value, Writer, WriterError};
use crate::geo::{Continent, all_countries};
use crate::hash::SplitMix64;

fn centre(c: Continent) -> (f64, f64) {
    match c {
        Continent::Africa => (2.0, 20.0),
        Continent::Antarctica => (-80.0, 0.0),
        Continent::Asia => (30.0, 100.0),
        Continent::Europe => (50.0, 10.0),
        Continent::NorthAmerica => (40.0, -95.0),
        Continent::Oceania => (-25.0, 135.0),
        Continent::SouthAmerica => (-15.0, -60.0),
    }
}

/// splitmix64, so the output depends only on the seed.
struct Rng(SplitMix64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n
    }
}

/// `networks` IPv4 networks (/19 to /23) over 1.0.0.0-223.255.255.255 (none in 127/8),
/// plus a tenth as many IPv6 networks (/32 to /40, one per /32 block under 2000::/3), each
/// with a random country.
pub fn synthetic(networks: usize, seed: u64) -> Result<Vec<u8>, WriterError> {
    let countries: Vec<_> = all_countries().collect();
    let mut rng = Rng(SplitMix64(seed));
    let mut w = Writer::new("Meridian-Synthetic-City");
    w.description("en", "Synthetic GeoIP2 City schema database for benchmarks");
    w.languages(&["en"]);
    w.build_epoch(1_767_225_600);
    // One record per country: real databases share records across networks the same way.
    let records: Vec<Value> = countries
        .iter()
        .enumerate()
        .map(|(i, (cc, continent))| {
            let (lat, lon) = centre(*continent);
            let jitter = |k: u64| ((k % 200) as f64 - 100.0) / 10.0;
            Value::Map(vec![
                (
                    "continent".into(),
                    Value::Map(vec![(
                        "code".into(),
                        Value::String(continent.code().into()),
                    )]),
                ),
                (
                    "country".into(),
                    Value::Map(vec![("iso_code".into(), Value::String(cc.to_string()))]),
                ),
                (
                    "location".into(),
                    Value::Map(vec![
                        (
                            "latitude".into(),
                            Value::Double((lat + jitter(i as u64 * 7)).clamp(-90.0, 90.0)),
                        ),
                        (
                            "longitude".into(),
                            Value::Double(lon + jitter(i as u64 * 13)),
                        ),
                    ]),
                ),
            ])
        })
        .collect();
    let space_end: u64 = 224 << 24;
    let mut cursor: u64 = 1 << 24;
    let mut inserted = 0;
    while inserted < networks && cursor < space_end {
        let prefix = 19 + rng.below(5) as u8;
        let size = 1u64 << (32 - prefix);
        cursor = (cursor + size - 1) & !(size - 1);
        if cursor >> 24 == 127 {
            cursor = 128 << 24; // loopback stays out of the database
            continue;
        }
        if cursor + size > space_end {
            break;
        }
        let net = Ipv4Net::new(Ipv4Addr::from(cursor as u32), prefix)
            .map_err(|_| WriterError::NoDescription)?;
        let record = &records[rng.below(records.len() as u64) as usize];
        w.insert(IpNet::V4(net), record.clone());
        cursor += size;
        inserted += 1;
    }
    for i in 0..networks / 10 {
        let prefix = 32 + rng.below(9) as u8;
        let base = 0x2000_0000_0000_0000_0000_0000_0000_0000u128 + ((i as u128) << (128 - 32));
        let net =
            Ipv6Net::new(Ipv6Addr::from(base), prefix).map_err(|_| WriterError::NoDescription)?;
        let record = &records[rng.below(records.len() as u64) as usize];
        w.insert(IpNet::V6(net.trunc()), record.clone());
    }
    w.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_databases_are_deterministic_and_readable() {
        let a = synthetic(2000, 7).unwrap();
        assert_eq!(a, synthetic(2000, 7).unwrap());
        let db = crate::geo::GeoDb::from_bytes(a, std::path::Path::new("synthetic")).unwrap();
        assert_eq!(db.schema(), crate::geo::Schema::MaxMindCity);
        let info = db.lookup("1.0.0.1".parse().unwrap());
        assert!(
            info.found
                && info.country.is_some()
                && info.continent.is_some()
                && info.location.is_some()
        );
        assert!((19..=23).contains(&info.network_prefix));
        assert!(
            !db.lookup("127.0.0.1".parse().unwrap()).found,
            "loopback is not in it"
        );
    }
}
