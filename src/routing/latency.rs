//! The latency map: measured round-trip times from client networks (a CIDR, a country or a
//! continent) to regions, in the shape real-user-monitoring exports take. Parsed from CSV
//! (`client,region,rtt_ms`) or TOML (`[[rtt]] client = .., region = .., rtt_ms = ..`), where
//! `client` is `10.0.0.0/8`, `country:DE` or `continent:EU`.
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use super::prefix::PrefixTable;
use crate::geo::{Continent, CountryCode, GeoInfo};

const NONE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Toml,
}

impl Format {
    /// TOML for `.toml` files, CSV otherwise.
    pub fn of(path: &std::path::Path) -> Format {
        if path.extension().is_some_and(|e| e == "toml") {
            Format::Toml
        } else {
            Format::Csv
        }
    }
}

/// Which kind of client key a row matched, for `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    Cidr,
    Country,
    Continent,
}

/// Measured RTTs, compiled against a config's regions.
#[derive(Debug)]
pub struct LatencyMap {
    cidr: PrefixTable<u32>,
    /// Row by country, indexed by the two letters (26 x 26).
    countries: Box<[u32]>,
    continents: [u32; 7],
    /// Row -> RTT in ms per region id.
    rows: Vec<Box<[Option<f32>]>>,
    /// How many `client, region` entries the map holds.
    pub entries: usize,
}

impl Default for LatencyMap {
    /// The empty map: no row for anyone.
    fn default() -> Self {
        LatencyMap {
            cidr: PrefixTable::default(),
            countries: vec![NONE; 26 * 26].into(),
            continents: [NONE; 7],
            rows: Vec::new(),
            entries: 0,
        }
    }
}

/// A row found for a client.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub kind: RowKind,
    rtts: &'a [Option<f32>],
}

impl Row<'_> {
    pub fn rtt(&self, region: usize) -> Option<f32> {
        self.rtts.get(region).copied().flatten()
    }
}

/// One problem in a latency map: the 1-based line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for MapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlMap {
    #[serde(default)]
    rtt: Vec<toml::Spanned<TomlRow>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlRow {
    client: String,
    region: String,
    rtt_ms: f64,
}

enum Key {
    Cidr(IpNet),
    Country(CountryCode),
    Continent(Continent),
}

fn country_index(c: CountryCode) -> usize {
    let b = c.as_str().as_bytes();
    usize::from(b[0] - b'A') * 26 + usize::from(b[1] - b'A')
}

fn parse_key(s: &str) -> Result<Key, String> {
    let s = s.trim();
    if let Some(c) = s.strip_prefix("country:") {
        return c
            .parse()
            .map(Key::Country)
            .map_err(|_| format!("{c:?} is not a country code"));
    }
    if let Some(c) = s.strip_prefix("continent:") {
        return c
            .parse()
            .map(Key::Continent)
            .map_err(|_| format!("{c:?} is not a continent code"));
    }
    s.parse::<IpNet>()
        .map_err(|_| format!("client {s:?} is not a CIDR, country:CC or continent:XX"))
        .and_then(|n| {
            if n.network() == n.addr() {
                Ok(Key::Cidr(n))
            } else {
                Err(format!(
                    "{s} has host bits set (did you mean {}?)",
                    n.trunc()
                ))
            }
        })
}

impl LatencyMap {
    /// Parses and checks a map against the config's region names (in region id order);
    /// every problem is reported with its line.
    pub fn parse(
        text: &str,
        format: Format,
        regions: &[&str],
    ) -> Result<LatencyMap, Vec<MapError>> {
        let mut rows: Vec<(usize, String, String, f64)> = Vec::new();
        let mut errors = Vec::new();
        match format {
            Format::Csv => {
                for (i, line) in text.lines().enumerate() {
                    let line = line.split('#').next().unwrap_or("").trim();
                    if line.is_empty() || line.eq_ignore_ascii_case("client,region,rtt_ms") {
                        continue;
                    }
                    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
                    match fields.as_slice() {
                        [client, region, rtt] => match rtt.parse::<f64>() {
                            Ok(v) => rows.push((i + 1, client.to_string(), region.to_string(), v)),
                            Err(_) => errors.push(MapError {
                                line: i + 1,
                                message: format!("rtt_ms {rtt:?} is not a number"),
                            }),
                        },
                        _ => errors.push(MapError {
                            line: i + 1,
                            message: "expected client,region,rtt_ms".into(),
                        }),
                    }
                }
            }
            Format::Toml => match toml::from_str::<TomlMap>(text) {
                Ok(m) => {
                    for r in m.rtt {
                        let line = text[..r.span().start].matches('\n').count() + 1;
                        let r = r.into_inner();
                        rows.push((line, r.client, r.region, r.rtt_ms));
                    }
                }
                Err(e) => {
                    let line = e.span().map_or(1, |s| {
                        text[..s.start.min(text.len())].matches('\n').count() + 1
                    });
                    errors.push(MapError {
                        line,
                        message: e.message().to_string(),
                    });
                }
            },
        }
        let mut map = LatencyMap::default();
        let mut cidr_rows: Vec<(IpNet, u32)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (line, client, region, rtt) in rows {
            let err = |message: String| MapError { line, message };
            let key = match parse_key(&client) {
                Ok(k) => k,
                Err(e) => {
                    errors.push(err(e));
                    continue;
                }
            };
            let Some(rid) = regions.iter().position(|r| *r == region) else {
                errors.push(err(format!("no region named {region:?} in the config")));
                continue;
            };
            if !(rtt.is_finite() && (0.0..=60_000.0).contains(&rtt)) {
                errors.push(err(format!("rtt_ms {rtt} is not between 0 and 60000")));
                continue;
            }
            if !seen.insert((client.trim().to_string(), rid)) {
                errors.push(err(format!("{client} -> {region} is given twice")));
                continue;
            }
            let slot = match key {
                Key::Cidr(net) => match cidr_rows.iter().find(|(n, _)| *n == net) {
                    Some((_, row)) => *row,
                    None => {
                        cidr_rows.push((net, map.rows.len() as u32));
                        map.rows.len() as u32
                    }
                },
                Key::Country(c) => {
                    let i = country_index(c);
                    if map.countries[i] == NONE {
                        map.countries[i] = map.rows.len() as u32;
                    }
                    map.countries[i]
                }
                Key::Continent(c) => {
                    let i = c as usize;
                    if map.continents[i] == NONE {
                        map.continents[i] = map.rows.len() as u32;
                    }
                    map.continents[i]
                }
            } as usize;
            if slot == map.rows.len() {
                map.rows.push(vec![None; regions.len()].into());
            }
            map.rows[slot][rid] = Some(rtt as f32);
            map.entries += 1;
        }
        map.cidr = PrefixTable::new(cidr_rows);
        errors.sort_by_key(|e| e.line);
        if errors.is_empty() {
            Ok(map)
        } else {
            Err(errors)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The row for a client (most specific CIDR, else country, else continent) and how many
    /// address bits the CIDR rows make the outcome depend on.
    pub fn lookup(&self, addr: IpAddr, geo: &GeoInfo) -> (Option<Row<'_>>, u8) {
        let m = self.cidr.lookup(addr);
        let row = |i: u32, kind| {
            (i != NONE).then(|| Row {
                kind,
                rtts: &self.rows[i as usize],
            })
        };
        let found = m
            .value
            .and_then(|i| row(*i, RowKind::Cidr))
            .or_else(|| {
                geo.country
                    .and_then(|c| row(self.countries[country_index(c)], RowKind::Country))
            })
            .or_else(|| {
                geo.continent
                    .and_then(|c| row(self.continents[c as usize], RowKind::Continent))
            });
        (found, m.scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> Vec<&'static str> {
        vec!["us-east", "eu-west"]
    }

    fn geo(country: &str) -> GeoInfo {
        let c: CountryCode = country.parse().unwrap();
        GeoInfo {
            country: Some(c),
            continent: crate::geo::continent_of(c),
            found: true,
            network_prefix: 16,
            ..Default::default()
        }
    }

    #[test]
    fn csv_rows_resolve_most_specific_first() {
        let text = "client,region,rtt_ms\n# comment\n11.0.0.0/16,eu-west,70\ncountry:US,us-east,20\ncountry:US,eu-west,90\ncontinent:EU,eu-west,15\n";
        let m = LatencyMap::parse(text, Format::Csv, &regions()).unwrap();
        assert_eq!(m.entries, 4);
        let ip: IpAddr = "11.0.1.1".parse().unwrap();
        let (row, scope) = m.lookup(ip, &geo("US"));
        let row = row.unwrap();
        assert_eq!(
            (row.kind, row.rtt(1), row.rtt(0)),
            (RowKind::Cidr, Some(70.0), None)
        );
        assert_eq!(scope, 16);
        let (row, _) = m.lookup("12.0.0.1".parse().unwrap(), &geo("US"));
        assert_eq!(row.unwrap().rtt(0), Some(20.0));
        let (row, _) = m.lookup("12.0.0.1".parse().unwrap(), &geo("DE"));
        assert_eq!(
            (row.unwrap().kind, row.unwrap().rtt(1)),
            (RowKind::Continent, Some(15.0))
        );
        let (row, _) = m.lookup("12.0.0.1".parse().unwrap(), &geo("JP"));
        assert!(row.is_none());
    }

    #[test]
    fn toml_rows_and_every_error_with_its_line() {
        let text = "[[rtt]]\nclient = \"country:DE\"\nregion = \"eu-west\"\nrtt_ms = 12.5\n";
        let m = LatencyMap::parse(text, Format::Toml, &regions()).unwrap();
        assert_eq!(
            m.lookup("1.1.1.1".parse().unwrap(), &geo("DE"))
                .0
                .unwrap()
                .rtt(1),
            Some(12.5)
        );

        let bad = "10.0.0.1/8,us-east,10\ncountry:XYZ,us-east,10\ncountry:US,mars,10\ncountry:US,us-east,-1\ncountry:US,us-east,fast\nonly,two\ncountry:FR,us-east,5\ncountry:FR,us-east,6\n";
        let errs = LatencyMap::parse(bad, Format::Csv, &regions()).unwrap_err();
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4, 5, 6, 8], "{errs:?}");
        assert!(errs[0].message.contains("host bits"));
        assert!(errs[2].message.contains("no region named \"mars\""));
    }
}
