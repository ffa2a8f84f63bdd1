//! Opening MaxMind-format databases: GeoIP2/GeoLite2 City and Country, and the flat schema of
//! ip-location-db / DB-IP lite files (`country_code`, optional `latitude`/`longitude`). It
//! detects the schema, decodes every record once at load, and answers a lookup from the
//! range index (`index.rs`), walking the maxminddb tree only for what the index leaves to it.
#![allow(
    unsafe_code,
    reason = "returns the build's freed memory to the system once the range tables are built"
)]
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::{Reader, WithinOptions};
use serde::Deserialize;

use super::codes::{Subdivision, continent_of};
use super::index::{OffsetHasher, RangeTables, Stage};
use super::model::{GeoInfo, LatLon, Place};

/// The record layout a database uses, detected when it is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    /// GeoIP2 / GeoLite2 City (and DB-IP City lite in the same layout): has `location`.
    MaxMindCity,
    /// GeoIP2 / GeoLite2 Country: `country` and `continent`, no `location`.
    MaxMindCountry,
    /// ip-location-db / DB-IP lite flat layout: `country_code`, maybe `latitude`/`longitude`.
    Flat,
}

impl Schema {
    pub fn describe(self) -> &'static str {
        match self {
            Schema::MaxMindCity => "MaxMind GeoIP2 City schema (country, continent, location)",
            Schema::MaxMindCountry => "MaxMind GeoIP2 Country schema (country, continent)",
            Schema::Flat => "flat ip-location-db / DB-IP lite schema (country_code)",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("cannot read GeoIP database {path}: {source}")]
    Open {
        path: PathBuf,
        source: maxminddb::MaxMindDbError,
    },
    #[error(
        "GeoIP database {path} has neither the MaxMind GeoIP2 schema (country.iso_code) nor the flat schema (country_code) in its first records"
    )]
    UnknownSchema { path: PathBuf },
    #[error(
        "GeoIP database {path} is an ASN database (autonomous_system_number, no country): name it in [geoip] asn_database"
    )]
    AsnAsGeo { path: PathBuf },
    #[error(
        "ASN database {path} has no autonomous_system_number in its first records: it is not an ASN database (a country or city database belongs in [geoip] database)"
    )]
    NotAsn { path: PathBuf },
    #[error(
        "ASN database {path} gives no AS number for any of its {networks} networks: it cannot match a client"
    )]
    NoAsn { path: PathBuf, networks: u64 },
    #[error(
        "GeoIP database {path} gives no country for any of its {networks} networks ({schema}): it cannot place a client"
    )]
    NoCountry {
        path: PathBuf,
        networks: u64,
        schema: &'static str,
    },
}

/// What a database gives routing, counted over its networks when it is opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Coverage {
    pub networks: u64,
    /// Of which IPv4 (including IPv4-mapped) and IPv6.
    pub v4_networks: u64,
    pub v6_networks: u64,
    pub with_country: u64,
    pub with_location: u64,
    /// Networks whose record gives a subdivision code (MaxMind City schemas only).
    pub with_subdivision: u64,
}

impl std::fmt::Display for Coverage {
    /// E.g. "1,010,885 networks, all with a country, none with a location: nearest-region
    /// ranking will fall back to the default order".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let share = |n: u64| share(n, self.networks);
        write!(
            f,
            "{} networks, {} with a country, {} with a location",
            thousands(self.networks),
            share(self.with_country),
            share(self.with_location)
        )?;
        if self.with_subdivision > 0 {
            write!(f, ", {} with a subdivision", share(self.with_subdivision))?;
        }
        if self.with_location == 0 {
            f.write_str(": nearest-region ranking will fall back to the default order")?;
        }
        Ok(())
    }
}

/// How many of `total` networks give something: "none", "all", or "1,234 (5.6%)".
pub(super) fn share(n: u64, total: u64) -> String {
    match n {
        0 => "none".to_string(),
        n if n == total => "all".to_string(),
        n => format!("{} ({:.1}%)", thousands(n), n as f64 * 100.0 / total as f64),
    }
}

/// For each address family, the indices of the files holding networks of it, in order:
/// `counts` gives each file's (IPv4, IPv6) network counts.
pub(super) fn by_family(counts: &[(u64, u64)]) -> (Box<[usize]>, Box<[usize]>) {
    let holding = |v6: bool| {
        (0..counts.len())
            .filter(|&i| (if v6 { counts[i].1 } else { counts[i].0 }) > 0)
            .collect()
    };
    (holding(false), holding(true))
}

/// `n` with thousands separators.
pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An opened GeoIP database. The file is read into memory, so replacing it on disk never
/// affects a running table. The tree, the records and the tables are visible to the rest of
/// `geo` for the range index's test, which checks the tables against the tree.
pub struct GeoDb {
    pub(super) reader: Reader<Vec<u8>>,
    schema: Schema,
    coverage: Coverage,
    path: PathBuf,
    /// Size and modification time of the file when it was read, to tell an unchanged file.
    stamp: Option<(u64, std::time::SystemTime)>,
    /// Every distinct record, decoded once at load and keyed by its data offset: a lookup on
    /// the DNS path walks the tree and reads this map, never the decoder.
    pub(super) records: HashMap<usize, Place, BuildHasherDefault<OffsetHasher>>,
    /// The tree as flat range tables, for the DNS path.
    pub(super) ranges: RangeTables,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("path", &self.path)
            .field("schema", &self.schema)
            .finish()
    }
}

#[derive(Deserialize)]
struct Code<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct ContinentCode<'a> {
    #[serde(borrow)]
    code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Location {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

/// The fields of a GeoIP2 record routing uses; everything else is skipped, not decoded.
#[derive(Deserialize)]
struct MaxMindRecord<'a> {
    #[serde(borrow)]
    country: Option<Code<'a>>,
    #[serde(borrow)]
    registered_country: Option<Code<'a>>,
    #[serde(borrow)]
    continent: Option<ContinentCode<'a>>,
    location: Option<Location>,
    /// Largest first (state, then county); only the first is used.
    #[serde(borrow)]
    subdivisions: Option<Vec<Code<'a>>>,
}

#[derive(Deserialize)]
struct FlatRecord<'a> {
    #[serde(borrow)]
    country_code: Option<&'a str>,
    latitude: Option<Coordinate>,
    longitude: Option<Coordinate>,
}

/// A latitude or longitude as the flat files store it: ip-location-db's City file writes
/// 32-bit floats, others doubles (and a few, text). Any of those reads as `f64`.
struct Coordinate(f64);

impl<'de> Deserialize<'de> for Coordinate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Coordinate, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Coordinate;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a coordinate (float, double, integer or decimal text)")
            }
            fn visit_f32<E: serde::de::Error>(self, v: f32) -> Result<Coordinate, E> {
                Ok(Coordinate(f64::from(v)))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Coordinate, E> {
                Ok(Coordinate(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Coordinate, E> {
                Ok(Coordinate(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Coordinate, E> {
                Ok(Coordinate(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Coordinate, E> {
                v.trim().parse().map(Coordinate).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// How many records schema detection looks at.
const SCHEMA_SAMPLE: usize = 256;

impl GeoDb {
    pub fn open(path: &Path) -> Result<GeoDb, GeoError> {
        let open_err = |source| GeoError::Open {
            path: path.to_owned(),
            source,
        };
        let stamp = file_stamp(path);
        let bytes = std::fs::read(path).map_err(|e| open_err(maxminddb::MaxMindDbError::Io(e)))?;
        let mut db = Self::from_bytes(bytes, path)?;
        db.stamp = stamp;
        Ok(db)
    }

    pub fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<GeoDb, GeoError> {
        let open_err = |source| GeoError::Open {
            path: path.to_owned(),
            source,
        };
        let reader = Reader::from_source(bytes).map_err(open_err)?;
        let schema = detect_schema(&reader).ok_or_else(|| {
            if super::asn::has_asn_schema(&reader) {
                GeoError::AsnAsGeo {
                    path: path.to_owned(),
                }
            } else {
                GeoError::UnknownSchema {
                    path: path.to_owned(),
                }
            }
        })?;
        let mut records: HashMap<usize, Place, _> = HashMap::default();
        let mut coverage = Coverage::default();
        if let Ok(networks) = reader.networks(WithinOptions::default()) {
            for item in networks.flatten() {
                let Some(offset) = item.offset() else {
                    continue;
                };
                let place = records
                    .entry(offset)
                    .or_insert_with(|| decode_place(&item, schema));
                coverage.networks += 1;
                match item.network() {
                    Ok(net) if net.network().to_canonical().is_ipv4() => coverage.v4_networks += 1,
                    Ok(_) => coverage.v6_networks += 1,
                    Err(_) => {}
                }
                coverage.with_country += u64::from(place.country.is_some());
                coverage.with_location += u64::from(place.location.is_some());
                coverage.with_subdivision += u64::from(place.subdivision.is_some());
            }
        }
        if coverage.with_country == 0 {
            return Err(GeoError::NoCountry {
                path: path.to_owned(),
                networks: coverage.networks,
                schema: schema.describe(),
            });
        }
        let ranges = RangeTables::build(&reader, &records);
        // The build's large temporaries (the range lists) went back to the allocator, which
        // keeps them: return the free pages to the system so a load or reload leaves only
        // the tables resident.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases memory that is free.
        unsafe {
            libc::malloc_trim(0);
        }
        Ok(GeoDb {
            reader,
            schema,
            coverage,
            path: path.to_owned(),
            stamp: None,
            records,
            ranges,
        })
    }

    /// Whether `path` is the file this database was read from, unchanged since.
    pub fn unchanged_at(&self, path: &Path) -> bool {
        self.path == path && self.stamp.is_some() && file_stamp(path) == self.stamp
    }

    /// How many networks the database has, and how many give a country and a location.
    pub fn coverage(&self) -> Coverage {
        self.coverage
    }

    pub fn schema(&self) -> Schema {
        self.schema
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// Starts loading what [`GeoDb::lookup`] of `ip` will read, so that the wait overlaps
    /// other work. Call it for each [`Stage`] in turn, leaving each time to arrive.
    pub fn prefetch(&self, ip: IpAddr, stage: Stage) {
        self.ranges.prefetch(ip, stage);
    }

    /// Looks an address up. Never fails: an address the database cannot answer for is
    /// "not found", with the prefix of the empty network it fell in.
    pub fn lookup(&self, ip: IpAddr) -> GeoInfo {
        if let Some((place, network_prefix)) = self.ranges.lookup(ip) {
            return Place::info(place, network_prefix);
        }
        let Ok(result) = self.reader.lookup(ip) else {
            return GeoInfo::default();
        };
        let network_prefix = result.network().map(|n| n.prefix()).unwrap_or(0);
        let place = result
            .offset()
            .map(|offset| match self.records.get(&offset) {
                Some(p) => *p,
                None => decode_place(&result, self.schema),
            });
        Place::info(place, network_prefix)
    }

    /// The whole record for an address, for `explain`; `None` when there is none.
    pub fn describe(&self, ip: IpAddr) -> Option<serde_json::Value> {
        self.reader.lookup(ip).ok()?.decode().ok().flatten()
    }
}

/// Decodes the fields routing needs from one record.
pub(super) fn decode_place<S: AsRef<[u8]>>(
    result: &maxminddb::LookupResult<'_, S>,
    schema: Schema,
) -> Place {
    let mut place = Place {
        country: None,
        subdivision: None,
        continent: None,
        location: None,
        point: None,
    };
    match schema {
        Schema::MaxMindCity | Schema::MaxMindCountry => {
            if let Ok(Some(rec)) = result.decode::<MaxMindRecord<'_>>() {
                place.country = rec
                    .country
                    .and_then(|c| c.iso_code)
                    .or(rec.registered_country.and_then(|c| c.iso_code))
                    .and_then(|c| c.parse().ok());
                place.continent = rec
                    .continent
                    .and_then(|c| c.code)
                    .and_then(|c| c.parse().ok());
                place.location = rec.location.and_then(|l| lat_lon(l.latitude, l.longitude));
                place.subdivision = match (place.country, rec.subdivisions) {
                    (Some(country), Some(subs)) => subs
                        .first()
                        .and_then(|s| s.iso_code)
                        .and_then(|code| Subdivision::new(country, code)),
                    _ => None,
                };
            }
        }
        Schema::Flat => {
            if let Ok(Some(rec)) = result.decode::<FlatRecord<'_>>() {
                place.country = rec.country_code.and_then(|c| c.parse().ok());
                place.location = lat_lon(rec.latitude.map(|c| c.0), rec.longitude.map(|c| c.0));
            }
        }
    }
    if place.continent.is_none() {
        place.continent = place.country.and_then(continent_of);
    }
    place.point = place.location.map(LatLon::point);
    place
}

fn file_stamp(path: &Path) -> Option<(u64, std::time::SystemTime)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

fn lat_lon(lat: Option<f64>, lon: Option<f64>) -> Option<LatLon> {
    match (lat, lon) {
        (Some(lat), Some(lon)) if lat.is_finite() && lon.is_finite() => Some(LatLon { lat, lon }),
        _ => None,
    }
}

fn detect_schema(reader: &Reader<Vec<u8>>) -> Option<Schema> {
    let networks = reader.networks(WithinOptions::default()).ok()?;
    let mut country_seen = false;
    for item in networks.take(SCHEMA_SAMPLE) {
        let Ok(item) = item else { continue };
        let Ok(Some(value)) = item.decode::<serde_json::Value>() else {
            continue;
        };
        if value.get("country_code").is_some_and(|v| v.is_string()) {
            return Some(Schema::Flat);
        }
        let has_country = value
            .get("country")
            .and_then(|c| c.get("iso_code"))
            .is_some_and(|v| v.is_string());
        if has_country {
            country_seen = true;
            if value.get("location").is_some() {
                return Some(Schema::MaxMindCity);
            }
        }
    }
    country_seen.then_some(Schema::MaxMindCountry)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::geo::build::writer::{Value, Writer};

    fn flat(records: &[(&str, Vec<(&str, Value)>)]) -> Result<GeoDb, GeoError> {
        let mut w = Writer::new("flat test");
        w.description("en", "flat records as ip-location-db ships them");
        for (net, fields) in records {
            let map = fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            w.insert(net.parse().expect("net"), Value::Map(map));
        }
        GeoDb::from_bytes(w.to_bytes().expect("mmdb"), Path::new("flat.mmdb"))
    }

    #[test]
    fn flat_city_coordinates_stored_as_floats_place_the_client() {
        let cc = |c: &str| ("country_code", Value::String(c.into()));
        let db = flat(&[
            (
                "81.2.69.0/24",
                vec![
                    cc("GB"),
                    ("city", Value::String("Reading".into())),
                    ("latitude", Value::Float(51.4)),
                    ("longitude", Value::Float(-0.97)),
                ],
            ),
            (
                "89.160.20.0/23",
                vec![
                    cc("SE"),
                    ("latitude", Value::Double(59.3)),
                    ("longitude", Value::Double(18.1)),
                ],
            ),
            ("2.2.0.0/16", vec![cc("FR")]),
        ])
        .unwrap();
        assert_eq!(db.schema(), Schema::Flat);
        let gb = db.lookup("81.2.69.142".parse().unwrap());
        assert_eq!(gb.country.map(|c| c.to_string()).as_deref(), Some("GB"));
        assert_eq!(gb.continent.map(|c| c.to_string()).as_deref(), Some("EU"));
        let loc = gb.location.expect("float coordinates read");
        assert!(
            (loc.lat - 51.4).abs() < 1e-4 && (loc.lon + 0.97).abs() < 1e-4,
            "{loc:?}"
        );
        assert!(db.lookup("89.160.20.1".parse().unwrap()).location.is_some());
        assert_eq!(
            db.coverage(),
            Coverage {
                networks: 3,
                v4_networks: 3,
                v6_networks: 0,
                with_country: 3,
                with_location: 2,
                with_subdivision: 0,
            }
        );
        assert_eq!(
            db.coverage().to_string(),
            "3 networks, all with a country, 2 (66.7%) with a location"
        );
    }

    #[test]
    fn a_database_that_gives_no_country_is_refused() {
        let no_country = vec![("country_code", Value::String(String::new()))];
        let err = match flat(&[
            ("11.0.0.0/16", no_country.clone()),
            ("12.0.0.0/16", no_country),
        ]) {
            Ok(_) => panic!("accepted a database with no country"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("flat.mmdb") && err.contains("no country for any of its 2 networks"),
            "{err}"
        );
    }

    #[test]
    fn coverage_reads_at_a_glance() {
        let c = Coverage {
            networks: 1_010_885,
            v4_networks: 1_010_885,
            v6_networks: 0,
            with_country: 1_010_885,
            with_location: 0,
            with_subdivision: 0,
        };
        assert_eq!(
            c.to_string(),
            "1,010,885 networks, all with a country, none with a location: nearest-region ranking will fall back to the default order"
        );
    }
}
