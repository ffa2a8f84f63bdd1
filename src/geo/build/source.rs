//! The readable source of the GeoIP test fixtures, and the build of three databases from it.
//!
//! The fixtures are committed as `.mmdb` files so tests need no build step, but a binary
//! file cannot be reviewed. `geoip-fixtures/source.toml` is the reviewable truth; this
//! module turns it into the three schemas Meridian reads, and the black-box tests check
//! that the committed files are exactly what this build produces.
//!
//! Source format (TOML, unknown keys are errors):
//!
//! ```toml
//! build_epoch = 1767225600
//!
//! [[networks]]
//! network = "11.0.0.0/16"   # CIDR, no host bits
//! country = "US"            # key of [countries]
//! continent = "NA"          # key of [continents]
//! subdivision = "VA"        # optional; "US-VA" must be a key of [subdivisions]
//! lat = 39.04               # optional, together with lon
//! lon = -77.49
//! name = "Ashburn"          # optional label for humans and error messages; not written
//!
//! [continents]
//! NA = "North America"
//! [countries]
//! US = "United States"
//! [subdivisions]
//! "US-VA" = "Virginia"
//! ```
//!
//! Overlapping networks mean "the more specific one wins", whatever their order in the file.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

use super::writer::{Value, Writer, WriterError};

/// GeoIP2-City schema: continent, country, subdivisions, location.
pub const CITY_FILE: &str = "world-city.mmdb";
/// GeoIP2-Country schema: continent and country.
pub const COUNTRY_FILE: &str = "world-country.mmdb";
/// Flat schema of ip-location-db / DB-IP lite files: `country_code`, `latitude`, `longitude`.
pub const FLAT_FILE: &str = "world-flat.mmdb";

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Syntax errors, unknown keys, missing fields and wrong types, with line and column.
    #[error("{origin}: {source}")]
    Parse {
        origin: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("[[networks]] #{row}: bad CIDR {text:?}: {source}")]
    BadNetwork {
        row: usize,
        text: String,
        #[source]
        source: ipnet::AddrParseError,
    },
    #[error("[[networks]] #{row}: {network} has host bits set (did you mean {expected}?)")]
    HostBits {
        row: usize,
        network: IpNet,
        expected: IpNet,
    },
    #[error("[[networks]] #{row} ({network}) repeats [[networks]] #{first}")]
    Duplicate {
        row: usize,
        first: usize,
        network: IpNet,
    },
    #[error("[[networks]] #{row} ({network}): {field} {code:?} has no name in [{table}]")]
    UnknownCode {
        row: usize,
        network: IpNet,
        field: &'static str,
        code: String,
        table: &'static str,
    },
    #[error("[[networks]] #{row} ({network}): lat and lon must be given together")]
    HalfLocation { row: usize, network: IpNet },
    #[error("[[networks]] #{row} ({network}): {field} = {value} is out of range")]
    OutOfRange {
        row: usize,
        network: IpNet,
        field: &'static str,
        value: f64,
    },
    /// A bad row of an ASN CSV.
    #[error("{origin}:{line}: {message}")]
    Csv {
        origin: String,
        line: usize,
        message: String,
    },
    #[error("writing {file}: {source}")]
    Write {
        file: &'static str,
        #[source]
        source: WriterError,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    build_epoch: u64,
    networks: Vec<RawNetwork>,
    continents: BTreeMap<String, String>,
    countries: BTreeMap<String, String>,
    /// Keyed by full ISO 3166-2 code ("US-VA"): subdivision codes repeat across countries.
    #[serde(default)]
    subdivisions: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    network: String,
    country: String,
    continent: String,
    subdivision: Option<String>,
    lat: Option<f64>,
    lon: Option<f64>,
    /// A label for people reading the source; accepted so rows can say what they stand for,
    /// never written to a database.
    #[expect(dead_code, reason = "read by humans, not by the build")]
    name: Option<String>,
}

/// One validated row, with its English names resolved.
#[derive(Debug)]
struct Row<'a> {
    network: IpNet,
    continent: (&'a str, &'a str),
    country: (&'a str, &'a str),
    subdivision: Option<(&'a str, &'a str)>,
    location: Option<(f64, f64)>,
}

/// Reads `path` and builds the three fixture databases: `(file name, bytes)` in the order
/// city, country, flat. A `.csv` file is an ip-location-db ASN CSV instead, built into one
/// ASN database (see [`super::asn_csv`]).
pub fn build_from_source(path: &Path) -> Result<Vec<(String, Vec<u8>)>, SourceError> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        return super::asn_csv::build_from_csv(path);
    }
    let text = std::fs::read_to_string(path).map_err(|source| SourceError::Read {
        path: path.to_owned(),
        source,
    })?;
    build(&text, &path.display().to_string())
}

/// Same as [`build_from_source`], from the source text.
pub fn build_from_str(text: &str) -> Result<Vec<(String, Vec<u8>)>, SourceError> {
    build(text, "<source text>")
}

fn build(text: &str, origin: &str) -> Result<Vec<(String, Vec<u8>)>, SourceError> {
    let raw: RawSource = toml::from_str(text).map_err(|source| SourceError::Parse {
        origin: origin.to_owned(),
        source,
    })?;
    let mut rows = validate(&raw)?;
    // Wider networks first, so a more specific one always splits the wider one, whatever
    // the order in the file. The sort is stable: the output still follows the file.
    rows.sort_by_key(|row| tree_prefix_len(row.network));

    let mut city = fixture_writer("Meridian-Fixture-City", "GeoIP2-City", raw.build_epoch);
    let mut country = fixture_writer(
        "Meridian-Fixture-Country",
        "GeoIP2-Country",
        raw.build_epoch,
    );
    let mut flat = fixture_writer(
        "Meridian-Fixture-Flat",
        "flat ip-location-db / DB-IP lite",
        raw.build_epoch,
    );
    flat.languages(&[]);
    for row in &rows {
        city.insert(row.network, city_value(row));
        country.insert(row.network, country_value(row));
        flat.insert(row.network, flat_value(row));
    }

    [
        (CITY_FILE, city),
        (COUNTRY_FILE, country),
        (FLAT_FILE, flat),
    ]
    .into_iter()
    .map(|(file, writer)| {
        let bytes = writer
            .to_bytes()
            .map_err(|source| SourceError::Write { file, source })?;
        Ok((file.to_owned(), bytes))
    })
    .collect()
}

fn validate<'s>(raw: &'s RawSource) -> Result<Vec<Row<'s>>, SourceError> {
    let mut seen: BTreeMap<IpNet, usize> = BTreeMap::new();
    let mut rows = Vec::with_capacity(raw.networks.len());
    for (index, n) in raw.networks.iter().enumerate() {
        let row = index + 1;
        let network: IpNet = n
            .network
            .parse()
            .map_err(|source| SourceError::BadNetwork {
                row,
                text: n.network.clone(),
                source,
            })?;
        if network.trunc() != network {
            return Err(SourceError::HostBits {
                row,
                network,
                expected: network.trunc(),
            });
        }
        if let Some(&first) = seen.get(&network) {
            return Err(SourceError::Duplicate {
                row,
                first,
                network,
            });
        }
        seen.insert(network, row);

        let lookup = |field, table, names: &'s BTreeMap<String, String>, key: &str| {
            names
                .get(key)
                .map(String::as_str)
                .ok_or_else(|| SourceError::UnknownCode {
                    row,
                    network,
                    field,
                    code: key.to_owned(),
                    table,
                })
        };
        let continent = (
            n.continent.as_str(),
            lookup("continent", "continents", &raw.continents, &n.continent)?,
        );
        let country = (
            n.country.as_str(),
            lookup("country", "countries", &raw.countries, &n.country)?,
        );
        let subdivision = match &n.subdivision {
            Some(code) => {
                let key = format!("{}-{}", n.country, code);
                let name = lookup("subdivision", "subdivisions", &raw.subdivisions, &key)?;
                Some((code.as_str(), name))
            }
            None => None,
        };
        let location = match (n.lat, n.lon) {
            (Some(lat), Some(lon)) => {
                check_range(row, network, "lat", lat, 90.0)?;
                check_range(row, network, "lon", lon, 180.0)?;
                Some((lat, lon))
            }
            (None, None) => None,
            _ => return Err(SourceError::HalfLocation { row, network }),
        };
        rows.push(Row {
            network,
            continent,
            country,
            subdivision,
            location,
        });
    }
    Ok(rows)
}

fn check_range(
    row: usize,
    network: IpNet,
    field: &'static str,
    value: f64,
    limit: f64,
) -> Result<(), SourceError> {
    if (-limit..=limit).contains(&value) {
        Ok(())
    } else {
        Err(SourceError::OutOfRange {
            row,
            network,
            field,
            value,
        })
    }
}

/// Prefix length in the MMDB tree, where IPv4 sits under `::/96`.
fn tree_prefix_len(network: IpNet) -> u8 {
    match network {
        IpNet::V4(v4) => 96 + v4.prefix_len(),
        IpNet::V6(v6) => v6.prefix_len(),
    }
}

fn fixture_writer(database_type: &str, schema: &str, build_epoch: u64) -> Writer {
    let mut writer = Writer::new(database_type);
    writer.description(
        "en",
        &format!(
            "Meridian GeoDNS test fixture ({schema} schema), built from geoip-fixtures/source.toml; not real data"
        ),
    );
    writer.languages(&["en"]);
    writer.build_epoch(build_epoch);
    writer
}

fn text(s: &str) -> Value {
    Value::String(s.to_owned())
}

/// `{"en": name}`, the GeoIP2 `names` map.
fn names(english: &str) -> Value {
    Value::Map(vec![("en".into(), text(english))])
}

fn continent_and_country(row: &Row<'_>) -> Vec<(String, Value)> {
    let (continent_code, continent_name) = row.continent;
    let (country_code, country_name) = row.country;
    vec![
        (
            "continent".into(),
            Value::Map(vec![
                ("code".into(), text(continent_code)),
                ("names".into(), names(continent_name)),
            ]),
        ),
        (
            "country".into(),
            Value::Map(vec![
                ("iso_code".into(), text(country_code)),
                ("names".into(), names(country_name)),
            ]),
        ),
    ]
}

fn city_value(row: &Row<'_>) -> Value {
    let mut map = continent_and_country(row);
    if let Some((code, name)) = row.subdivision {
        map.push((
            "subdivisions".into(),
            Value::Array(vec![Value::Map(vec![
                ("iso_code".into(), text(code)),
                ("names".into(), names(name)),
            ])]),
        ));
    }
    if let Some((lat, lon)) = row.location {
        map.push((
            "location".into(),
            Value::Map(vec![
                ("latitude".into(), Value::Double(lat)),
                ("longitude".into(), Value::Double(lon)),
            ]),
        ));
    }
    Value::Map(map)
}

fn country_value(row: &Row<'_>) -> Value {
    Value::Map(continent_and_country(row))
}

fn flat_value(row: &Row<'_>) -> Value {
    let mut map = vec![("country_code".into(), text(row.country.0))];
    if let Some((lat, lon)) = row.location {
        map.push(("latitude".into(), Value::Double(lat)));
        map.push(("longitude".into(), Value::Double(lon)));
    }
    Value::Map(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxminddb::{Reader, geoip2};
    use std::net::IpAddr;

    const NAMES: &str = r#"
[continents]
NA = "North America"
EU = "Europe"

[countries]
US = "United States"
DE = "Germany"

[subdivisions]
"US-VA" = "Virginia"
"#;

    /// The more specific row comes first on purpose: order must not matter.
    fn sample() -> String {
        format!(
            r#"
build_epoch = 1767225600

[[networks]]
network = "11.0.128.0/20"
country = "US"
continent = "NA"
subdivision = "VA"
lat = 38.90
lon = -77.04

[[networks]]
network = "11.0.0.0/16"
country = "US"
continent = "NA"
subdivision = "VA"
lat = 39.04
lon = -77.49
name = "Ashburn"

[[networks]]
network = "2001:db8:2::/48"
country = "DE"
continent = "EU"
{NAMES}"#
        )
    }

    fn with_row(row: &str) -> String {
        format!("build_epoch = 1\n\n[[networks]]\n{row}\n{NAMES}")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn file<'a>(built: &'a [(String, Vec<u8>)], name: &str) -> Reader<&'a [u8]> {
        let (_, bytes) = built.iter().find(|(n, _)| n == name).expect("file built");
        let reader = Reader::from_source(bytes.as_slice()).expect("open");
        reader.verify().expect("verify");
        reader
    }

    #[test]
    fn builds_the_three_schemas() {
        let built = build_from_str(&sample()).expect("build");
        let names: Vec<&str> = built.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [CITY_FILE, COUNTRY_FILE, FLAT_FILE]);

        let city = file(&built, CITY_FILE);
        assert_eq!(city.metadata().database_type, "Meridian-Fixture-City");
        assert_eq!(city.metadata().build_epoch, 1_767_225_600);
        let hit = city.lookup(ip("11.0.130.1")).expect("lookup");
        assert_eq!(hit.network().expect("network").prefix(), 20);
        let rec: geoip2::City = hit.decode().expect("decode").expect("data");
        assert_eq!(rec.continent.code, Some("NA"));
        assert_eq!(rec.continent.names.english, Some("North America"));
        assert_eq!(rec.country.iso_code, Some("US"));
        assert_eq!(rec.country.names.english, Some("United States"));
        assert_eq!(rec.subdivisions.len(), 1);
        assert_eq!(rec.subdivisions[0].iso_code, Some("VA"));
        assert_eq!(rec.subdivisions[0].names.english, Some("Virginia"));
        assert_eq!(rec.location.latitude, Some(38.90));
        assert_eq!(rec.location.longitude, Some(-77.04));

        let rec: geoip2::City = city
            .lookup(ip("11.0.0.1"))
            .expect("lookup")
            .decode()
            .expect("decode")
            .expect("data");
        assert_eq!(rec.location.latitude, Some(39.04));

        let rec: geoip2::City = city
            .lookup(ip("2001:db8:2::1"))
            .expect("lookup")
            .decode()
            .expect("decode")
            .expect("data");
        assert_eq!(rec.country.iso_code, Some("DE"));
        assert!(rec.subdivisions.is_empty());
        assert!(rec.location.is_empty());

        let country = file(&built, COUNTRY_FILE);
        assert_eq!(country.metadata().database_type, "Meridian-Fixture-Country");
        let rec: geoip2::Country = country
            .lookup(ip("11.0.0.1"))
            .expect("lookup")
            .decode()
            .expect("decode")
            .expect("data");
        assert_eq!(rec.country.iso_code, Some("US"));
        assert_eq!(rec.continent.code, Some("NA"));

        let flat = file(&built, FLAT_FILE);
        assert_eq!(flat.metadata().database_type, "Meridian-Fixture-Flat");
        let hit = flat.lookup(ip("11.0.0.1")).expect("lookup");
        let code: Option<String> = hit
            .decode_path(&maxminddb::path!["country_code"])
            .expect("decode");
        assert_eq!(code.as_deref(), Some("US"));
        let lat: Option<f64> = hit
            .decode_path(&maxminddb::path!["latitude"])
            .expect("decode");
        assert_eq!(lat, Some(39.04));
        let lat: Option<f64> = flat
            .lookup(ip("2001:db8:2::1"))
            .expect("lookup")
            .decode_path(&maxminddb::path!["latitude"])
            .expect("decode");
        assert_eq!(lat, None);

        for reader in [&city, &country, &flat] {
            assert!(!reader.lookup(ip("127.0.0.1")).expect("lookup").has_data());
        }
    }

    #[test]
    fn building_twice_gives_identical_bytes() {
        assert_eq!(
            build_from_str(&sample()).expect("build"),
            build_from_str(&sample()).expect("build")
        );
    }

    #[test]
    fn reads_from_a_file_and_names_it_in_errors() {
        let missing = Path::new("/nonexistent/meridian/source.toml");
        let err = build_from_source(missing).expect_err("missing file");
        assert!(matches!(err, SourceError::Read { .. }));
        assert!(
            err.to_string()
                .contains("/nonexistent/meridian/source.toml")
        );
    }

    fn error_of(text: &str) -> SourceError {
        build_from_str(text).expect_err("source should be rejected")
    }

    #[test]
    fn unknown_key_is_rejected() {
        let err = error_of(&with_row(
            "network = \"11.0.0.0/16\"\ncountry = \"US\"\ncontinent = \"NA\"\ncity = \"Ashburn\"",
        ));
        assert!(matches!(err, SourceError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("unknown field `city`"), "{err}");
    }

    #[test]
    fn missing_field_is_rejected() {
        let err = error_of(&with_row("network = \"11.0.0.0/16\"\ncountry = \"US\""));
        assert!(matches!(err, SourceError::Parse { .. }), "{err}");
        assert!(
            err.to_string().contains("missing field `continent`"),
            "{err}"
        );
    }

    #[test]
    fn bad_cidr_is_rejected() {
        let err = error_of(&with_row(
            "network = \"11.0.0/16\"\ncountry = \"US\"\ncontinent = \"NA\"",
        ));
        assert!(
            matches!(err, SourceError::BadNetwork { row: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("bad CIDR \"11.0.0/16\""), "{err}");
    }

    #[test]
    fn host_bits_are_rejected() {
        let err = error_of(&with_row(
            "network = \"11.0.0.1/16\"\ncountry = \"US\"\ncontinent = \"NA\"",
        ));
        assert!(matches!(err, SourceError::HostBits { .. }), "{err}");
        assert!(
            err.to_string().contains("did you mean 11.0.0.0/16"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_network_is_rejected() {
        let row = "network = \"11.0.0.0/16\"\ncountry = \"US\"\ncontinent = \"NA\"";
        let text = format!("build_epoch = 1\n[[networks]]\n{row}\n[[networks]]\n{row}\n{NAMES}");
        let err = error_of(&text);
        assert!(
            matches!(
                err,
                SourceError::Duplicate {
                    row: 2,
                    first: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn codes_without_names_are_rejected() {
        let err = error_of(&with_row(
            "network = \"11.0.0.0/16\"\ncountry = \"XX\"\ncontinent = \"NA\"",
        ));
        assert!(
            matches!(
                err,
                SourceError::UnknownCode {
                    field: "country",
                    ..
                }
            ),
            "{err}"
        );
        let err = error_of(&with_row(
            "network = \"11.0.0.0/16\"\ncountry = \"DE\"\ncontinent = \"EU\"\nsubdivision = \"VA\"",
        ));
        assert!(
            err.to_string()
                .contains("\"DE-VA\" has no name in [subdivisions]"),
            "{err}"
        );
    }

    #[test]
    fn location_must_be_whole_and_in_range() {
        let err = error_of(&with_row(
            "network = \"11.0.0.0/16\"\ncountry = \"US\"\ncontinent = \"NA\"\nlat = 1.0",
        ));
        assert!(matches!(err, SourceError::HalfLocation { .. }), "{err}");
        let err = error_of(&with_row(
            "network = \"11.0.0.0/16\"\ncountry = \"US\"\ncontinent = \"NA\"\nlat = 91.0\nlon = 0.0",
        ));
        assert!(
            matches!(err, SourceError::OutOfRange { field: "lat", .. }),
            "{err}"
        );
    }
}
