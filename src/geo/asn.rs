//! ASN databases: which autonomous system announces an address. Reads the MaxMind
//! GeoLite2-ASN schema and ip-location-db's ASN files (the same two keys,
//! `autonomous_system_number` and `autonomous_system_organization`; the number as an integer
//! or as decimal text). Like [`GeoDb`](super::GeoDb), a database is read into memory and
//! flattened at load into sorted range tables, so a lookup on the DNS path is a binary search
//! over plain slices: no tree walk, no decoding, no allocation.
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use maxminddb::{Reader, WithinOptions};
use serde::Deserialize;

use super::db::{GeoError, by_family, share, thousands};

/// What an ASN lookup tells routing about one address: a small `Copy` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AsnInfo {
    /// The autonomous system announcing the address, when the database knows it.
    pub asn: Option<u32>,
    /// Prefix length of the database network the address fell in (in its own family):
    /// every address of that network has the same ASN, so this bounds the ECS scope.
    pub network_prefix: u8,
    /// Index of the record in the database that answered (its organisation, for `explain`).
    record: u32,
}

/// What an ASN database holds, counted when it is opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsnCoverage {
    pub networks: u64,
    /// Of which IPv4 (including IPv4-mapped) and IPv6.
    pub v4_networks: u64,
    pub v6_networks: u64,
    pub with_asn: u64,
    pub with_organisation: u64,
    /// Distinct autonomous system numbers.
    pub asns: u64,
}

impl std::fmt::Display for AsnCoverage {
    /// E.g. "411,961 networks, all with an ASN, all with an organisation; 75,211 distinct ASNs".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let share = |n: u64| share(n, self.networks);
        write!(
            f,
            "{} networks, {} with an ASN, {} with an organisation; {} distinct ASNs",
            thousands(self.networks),
            share(self.with_asn),
            share(self.with_organisation),
            thousands(self.asns)
        )
    }
}

/// One distinct record: the number and the organisation's name.
#[derive(Debug)]
struct Record {
    asn: Option<u32>,
    organisation: Option<Box<str>>,
}

/// Per range: record index + 1 (0: no data) << 8 | network prefix.
type Info = u32;

/// Sorted starts of ranges covering a family's whole space, each with its [`Info`].
#[derive(Debug)]
struct Ranges<K> {
    starts: Box<[K]>,
    info: Box<[Info]>,
}

impl<K: Copy + Ord> Ranges<K> {
    fn new(mut ranges: Vec<(K, Info)>) -> Ranges<K> {
        ranges.sort_unstable_by_key(|r| r.0);
        Ranges {
            starts: ranges.iter().map(|r| r.0).collect(),
            info: ranges.iter().map(|r| r.1).collect(),
        }
    }

    /// The info of the range holding `key`; `None` when no range starts at or before it.
    fn find(&self, key: K) -> Option<Info> {
        let i = self.starts.partition_point(|s| *s <= key);
        i.checked_sub(1).map(|i| self.info[i])
    }
}

/// An opened ASN database.
pub struct AsnDb {
    path: PathBuf,
    database_type: String,
    /// Size and modification time of the file when it was read, to tell an unchanged file.
    stamp: Option<(u64, std::time::SystemTime)>,
    coverage: AsnCoverage,
    records: Vec<Record>,
    v4: Ranges<u32>,
    v6: Ranges<u128>,
}

impl std::fmt::Debug for AsnDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsnDb").field("path", &self.path).finish()
    }
}

/// The fields of an ASN record routing uses.
#[derive(Deserialize)]
struct RawRecord<'a> {
    autonomous_system_number: Option<Number>,
    #[serde(borrow)]
    autonomous_system_organization: Option<&'a str>,
}

/// An AS number as the files store it: an unsigned integer of any width, or decimal text.
struct Number(Option<u32>);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Number, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Number;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an AS number (integer or decimal text)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Number, E> {
                Ok(Number(u32::try_from(v).ok().filter(|n| *n > 0)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number(u32::try_from(v).ok().filter(|n| *n > 0)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Number, E> {
                let v = v.trim();
                let digits = v
                    .strip_prefix("AS")
                    .or_else(|| v.strip_prefix("as"))
                    .unwrap_or(v);
                Ok(Number(digits.parse().ok().filter(|n| *n > 0)))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// How many records schema detection looks at.
const SCHEMA_SAMPLE: usize = 256;

/// Whether the first records of a database carry `autonomous_system_number`.
pub(super) fn has_asn_schema<S: AsRef<[u8]>>(reader: &Reader<S>) -> bool {
    let Ok(networks) = reader.networks(WithinOptions::default()) else {
        return false;
    };
    networks.take(SCHEMA_SAMPLE).flatten().any(|item| {
        matches!(
            item.decode::<serde_json::Value>(),
            Ok(Some(v)) if v.get("autonomous_system_number").is_some()
        )
    })
}

impl AsnDb {
    pub fn open(path: &Path) -> Result<AsnDb, GeoError> {
        let stamp = file_stamp(path);
        let bytes = std::fs::read(path).map_err(|e| GeoError::Open {
            path: path.to_owned(),
            source: maxminddb::MaxMindDbError::Io(e),
        })?;
        let mut db = Self::from_bytes(bytes, path)?;
        db.stamp = stamp;
        Ok(db)
    }

    pub fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<AsnDb, GeoError> {
        let reader = Reader::from_source(bytes).map_err(|source| GeoError::Open {
            path: path.to_owned(),
            source,
        })?;
        if !has_asn_schema(&reader) {
            return Err(GeoError::NotAsn {
                path: path.to_owned(),
            });
        }
        let mut records: Vec<Record> = Vec::new();
        let mut ids: HashMap<usize, u32> = HashMap::new();
        let mut asns: HashSet<u32> = HashSet::new();
        let mut coverage = AsnCoverage::default();
        let mut info = |item: &maxminddb::LookupResult<'_, Vec<u8>>, v6: bool| -> Info {
            let prefix = item.network().map(|n| n.prefix()).unwrap_or(0);
            let Some(offset) = item.offset() else {
                return Info::from(prefix);
            };
            let id = *ids.entry(offset).or_insert_with(|| {
                let rec = item.decode::<RawRecord<'_>>().ok().flatten();
                records.push(Record {
                    asn: rec
                        .as_ref()
                        .and_then(|r| r.autonomous_system_number.as_ref())
                        .and_then(|n| n.0),
                    organisation: rec
                        .and_then(|r| r.autonomous_system_organization)
                        .filter(|o| !o.is_empty())
                        .map(Box::from),
                });
                records.len() as u32
            });
            let rec = &records[id as usize - 1];
            coverage.networks += 1;
            if v6 {
                coverage.v6_networks += 1;
            } else {
                coverage.v4_networks += 1;
            }
            if let Some(asn) = rec.asn {
                coverage.with_asn += 1;
                asns.insert(asn);
            }
            coverage.with_organisation += u64::from(rec.organisation.is_some());
            id << 8 | Info::from(prefix)
        };
        let opts = || WithinOptions::default().include_networks_without_data();

        let mut v4: Vec<(u32, Info)> = Vec::new();
        if let Ok(within) = reader.within("0.0.0.0/0".parse().expect("a network"), opts()) {
            for item in within.flatten() {
                if let Ok(net) = item.network()
                    && let IpAddr::V4(start) = net.network()
                {
                    v4.push((u32::from(start), info(&item, false)));
                }
            }
        }
        let mut v6: Vec<(u128, Info)> = Vec::new();
        if reader.metadata().ip_version == 6
            && let Ok(within) = reader.within("::/0".parse().expect("a network"), opts())
        {
            for item in within.flatten() {
                let Ok(net) = item.network() else { continue };
                let IpAddr::V6(start) = net.network() else {
                    continue;
                };
                let start = u128::from(start);
                if start >> 32 == 0 {
                    continue; // the IPv4 space (::/96), read above as IPv4
                }
                v6.push((start, info(&item, true)));
            }
        }
        coverage.asns = asns.len() as u64;
        if coverage.with_asn == 0 {
            return Err(GeoError::NoAsn {
                path: path.to_owned(),
                networks: coverage.networks,
            });
        }
        Ok(AsnDb {
            path: path.to_owned(),
            database_type: reader.metadata().database_type.clone(),
            stamp: None,
            coverage,
            records,
            v4: Ranges::new(v4),
            v6: Ranges::new(v6),
        })
    }

    /// Looks an address up: its ASN (if any) and the prefix of the network it fell in.
    /// Allocates nothing.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> AsnInfo {
        let info = match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.find(u32::from(a)),
            IpAddr::V6(a) => self.v6.find(u128::from(a)),
        };
        let Some(info) = info else {
            return AsnInfo::default();
        };
        let record = info >> 8;
        AsnInfo {
            asn: record
                .checked_sub(1)
                .and_then(|i| self.records[i as usize].asn),
            network_prefix: (info & 0xFF) as u8,
            record,
        }
    }

    /// The organisation the database names for a lookup's record.
    pub fn organisation(&self, info: &AsnInfo) -> Option<&str> {
        let i = info.record.checked_sub(1)?;
        self.records.get(i as usize)?.organisation.as_deref()
    }

    /// Whether `path` is the file this database was read from, unchanged since.
    pub fn unchanged_at(&self, path: &Path) -> bool {
        self.path == path && self.stamp.is_some() && file_stamp(path) == self.stamp
    }

    pub fn coverage(&self) -> AsnCoverage {
        self.coverage
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn database_type(&self) -> &str {
        &self.database_type
    }
}

fn file_stamp(path: &Path) -> Option<(u64, std::time::SystemTime)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// The ASN databases a config names, in order (ip-location-db ships IPv4 and IPv6 apart):
/// a lookup asks those holding networks of the address's family until one knows the ASN.
#[derive(Debug)]
pub struct AsnSet {
    dbs: Vec<Arc<AsnDb>>,
    v4: Box<[usize]>,
    v6: Box<[usize]>,
}

impl AsnSet {
    pub fn new(dbs: Vec<Arc<AsnDb>>) -> AsnSet {
        let counts: Vec<(u64, u64)> = dbs
            .iter()
            .map(|db| {
                let c = db.coverage();
                (c.v4_networks, c.v6_networks)
            })
            .collect();
        let (v4, v6) = by_family(&counts);
        AsnSet { v4, v6, dbs }
    }

    /// Every database, in config order.
    pub fn databases(&self) -> &[Arc<AsnDb>] {
        &self.dbs
    }

    /// What the first database knowing `ip`'s ASN says; "unknown" from the first of its
    /// family when none does.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> AsnInfo {
        self.lookup_in(ip).0
    }

    /// [`AsnSet::lookup`], and the database that answered (for `explain`).
    pub fn lookup_in(&self, ip: IpAddr) -> (AsnInfo, Option<&AsnDb>) {
        let family = match ip.to_canonical() {
            IpAddr::V4(_) => &self.v4,
            IpAddr::V6(_) => &self.v6,
        };
        let mut first = None;
        for &i in family.iter() {
            let info = self.dbs[i].lookup(ip);
            if info.asn.is_some() {
                return (info, Some(&self.dbs[i]));
            }
            first.get_or_insert((info, &*self.dbs[i]));
        }
        match first {
            Some((info, db)) => (info, Some(db)),
            None => (AsnInfo::default(), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::geo::GeoDb;
    use crate::geo::build::writer::{Value, Writer};

    fn asn_record(asn: Value, org: &str) -> Value {
        Value::Map(vec![
            ("autonomous_system_number".into(), asn),
            (
                "autonomous_system_organization".into(),
                Value::String(org.into()),
            ),
        ])
    }

    fn sample() -> Vec<u8> {
        let mut w = Writer::new("GeoLite2-ASN");
        w.description("en", "ASN test records");
        let comcast = || asn_record(Value::U32(7922), "Comcast Cable Communications, LLC");
        w.insert("24.0.0.0/12".parse().unwrap(), comcast());
        w.insert("2601::/20".parse().unwrap(), comcast());
        // ip-location-db writes some numbers as text.
        w.insert(
            "81.2.64.0/18".parse().unwrap(),
            asn_record(Value::String("20712".into()), "Andrews & Arnold Ltd"),
        );
        w.to_bytes().unwrap()
    }

    #[test]
    fn lookups_give_the_asn_organisation_and_network() {
        let db = AsnDb::from_bytes(sample(), Path::new("asn.mmdb")).unwrap();
        let info = db.lookup("24.1.2.3".parse().unwrap());
        assert_eq!((info.asn, info.network_prefix), (Some(7922), 12));
        assert_eq!(
            db.organisation(&info),
            Some("Comcast Cable Communications, LLC")
        );
        let info = db.lookup("::ffff:81.2.69.142".parse().unwrap());
        assert_eq!((info.asn, info.network_prefix), (Some(20712), 18));
        let info = db.lookup("2601:1c0::1".parse().unwrap());
        assert_eq!((info.asn, info.network_prefix), (Some(7922), 20));
        // Outside every network: no ASN, and the empty network it fell in.
        let info = db.lookup("24.16.0.1".parse().unwrap());
        assert_eq!((info.asn, info.network_prefix), (None, 12));
        assert_eq!(db.organisation(&info), None);
        assert_eq!(
            db.coverage().to_string(),
            "3 networks, all with an ASN, all with an organisation; 2 distinct ASNs"
        );
        let set = AsnSet::new(vec![Arc::new(db)]);
        assert_eq!(set.lookup("24.1.2.3".parse().unwrap()).asn, Some(7922));
    }

    #[test]
    fn an_asn_file_is_no_geoip_database_and_a_country_file_no_asn_database() {
        let err = GeoDb::from_bytes(sample(), Path::new("asn.mmdb")).unwrap_err();
        assert!(
            err.to_string().contains("asn.mmdb") && err.to_string().contains("asn_database"),
            "{err}"
        );
        let country = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/geoip-fixtures/world-country.mmdb"
        ))
        .unwrap();
        let err = AsnDb::from_bytes(country, Path::new("world-country.mmdb")).unwrap_err();
        assert!(
            err.to_string().contains("world-country.mmdb")
                && err.to_string().contains("[geoip] database"),
            "{err}"
        );
    }
}
