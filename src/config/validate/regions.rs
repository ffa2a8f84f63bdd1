//! `[[regions]]` and `[cidr_maps]`, and the region and geo-code lists other sections refer to.
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use super::Ctx;
use crate::config::checked::{CheckedCidrMap, Places};
use crate::config::raw::{RawConfig, S};
use crate::geo::LatLon;
use crate::routing::table::{Region, RegionId};

pub(super) fn regions(cx: &mut Ctx, raw: &RawConfig) -> (Vec<Region>, HashMap<String, RegionId>) {
    let mut out = Vec::new();
    let mut ids = HashMap::new();
    for r in &raw.regions {
        let r = r.get_ref();
        let name = r.name.get_ref().clone();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            cx.err(
                r.name.span(),
                format!("region name {name:?} must be non-empty letters, digits, '-', '_' or '.'"),
            );
        }
        if ids.contains_key(&name) {
            cx.err(r.name.span(), format!("region {name} is defined twice"));
            continue;
        }
        let location = r.location.as_ref().and_then(|l| {
            let l = l.get_ref();
            let (lat, lon) = (*l.lat.get_ref(), *l.lon.get_ref());
            let mut ok = true;
            if !(-90.0..=90.0).contains(&lat) {
                cx.err(l.lat.span(), format!("latitude {lat} is outside -90..90"));
                ok = false;
            }
            if !(-180.0..=180.0).contains(&lon) {
                cx.err(
                    l.lon.span(),
                    format!("longitude {lon} is outside -180..180"),
                );
                ok = false;
            }
            ok.then_some(LatLon { lat, lon })
        });
        let places = geo_codes(cx, &r.subdivisions, &r.countries, &r.continents);
        let bias = match &r.bias {
            None => 0.0,
            Some(b) if (-99..=99).contains(b.get_ref()) => *b.get_ref() as f64 / 100.0,
            Some(b) => {
                cx.err(b.span(), format!("bias {} must be -99 to 99", b.get_ref()));
                0.0
            }
        };
        let capacity_qps = match &r.capacity_qps {
            None => None,
            Some(c) if c.get_ref().is_finite() && *c.get_ref() > 0.0 => Some(*c.get_ref()),
            Some(c) => {
                cx.err(
                    c.span(),
                    format!("capacity_qps {} must be a positive number", c.get_ref()),
                );
                None
            }
        };
        ids.insert(name.clone(), RegionId(out.len() as u32));
        out.push(Region {
            name,
            point: location.map(LatLon::point),
            location,
            subdivisions: places.subdivisions,
            countries: places.countries,
            continents: places.continents,
            bias,
            capacity_qps,
        });
    }
    (out, ids)
}

/// A region's or residency rule's subdivision, country and continent lists.
pub(super) fn geo_codes(
    cx: &mut Ctx,
    subdivisions: &[S<String>],
    countries: &[S<String>],
    continents: &[S<String>],
) -> Places {
    let subdivisions = codes(
        cx,
        subdivisions,
        "subdivision",
        "an ISO 3166-2 subdivision code such as US-CA",
    );
    let countries = codes(
        cx,
        countries,
        "country",
        "a two-letter ISO 3166 country code",
    );
    let continents = codes(
        cx,
        continents,
        "continent",
        "a continent code (AF AN AS EU NA OC SA)",
    );
    Places {
        subdivisions,
        countries,
        continents,
    }
}

/// Parses a list of country or continent codes, refusing bad and repeated ones.
fn codes<T: FromStr<Err = ()> + PartialEq + std::fmt::Display>(
    cx: &mut Ctx,
    list: &[S<String>],
    what: &str,
    expected: &str,
) -> Vec<T> {
    let mut out = Vec::new();
    for c in list {
        match c.get_ref().parse::<T>() {
            Ok(code) if out.contains(&code) => {
                cx.err(c.span(), format!("{what} {code} is listed twice"))
            }
            Ok(code) => out.push(code),
            Err(()) => cx.err(c.span(), format!("{:?} is not {expected}", c.get_ref())),
        }
    }
    out
}

pub(super) fn region_list(
    cx: &mut Ctx,
    list: &[S<String>],
    ids: &HashMap<String, RegionId>,
    what: &str,
) -> Vec<RegionId> {
    let mut out = Vec::new();
    for r in list {
        match ids.get(r.get_ref()) {
            Some(id) if out.contains(id) => cx.err(
                r.span(),
                format!("{what} lists region {} twice", r.get_ref()),
            ),
            Some(id) => out.push(*id),
            None => cx.err(
                r.span(),
                format!("{what} names undefined region {:?}", r.get_ref()),
            ),
        }
    }
    out
}

/// `[cidr_maps.NAME]`: inline networks and ASNs checked here; a `file` is read by `compile`.
pub(super) fn cidr_maps(
    cx: &mut Ctx,
    raw: &RawConfig,
    region_ids: &HashMap<String, RegionId>,
    base: &Path,
) -> Vec<CheckedCidrMap> {
    raw.cidr_maps
        .iter()
        .map(|(name, m)| {
            let m = m.get_ref();
            let mut networks = Vec::new();
            for e in &m.networks {
                let e = e.get_ref();
                let net = match e.network.get_ref().parse::<ipnet::IpNet>() {
                    Ok(n) if n.trunc() == n => Some(n),
                    Ok(n) => {
                        cx.err(
                            e.network.span(),
                            format!("{n} has host bits set (did you mean {}?)", n.trunc()),
                        );
                        None
                    }
                    Err(_) => {
                        cx.err(
                            e.network.span(),
                            format!("{:?} is not a network (CIDR)", e.network.get_ref()),
                        );
                        None
                    }
                };
                let region = region_ids.get(e.region.get_ref()).copied();
                if region.is_none() {
                    cx.err(
                        e.region.span(),
                        format!("cidr map names undefined region {:?}", e.region.get_ref()),
                    );
                }
                if let (Some(net), Some(region)) = (net, region) {
                    if networks.iter().any(|(n, _)| *n == net) {
                        cx.err(e.network.span(), format!("network {net} is listed twice"));
                    } else {
                        networks.push((net, region));
                    }
                }
            }
            let mut asns: Vec<(u32, RegionId)> = Vec::new();
            for e in &m.asns {
                let e = e.get_ref();
                let asn = match parse_asn_number(*e.asn.get_ref()) {
                    Ok(n) => Some(n),
                    Err(message) => {
                        cx.err(e.asn.span(), message);
                        None
                    }
                };
                let region = region_ids.get(e.region.get_ref()).copied();
                if region.is_none() {
                    cx.err(
                        e.region.span(),
                        format!("cidr map names undefined region {:?}", e.region.get_ref()),
                    );
                }
                if let (Some(asn), Some(region)) = (asn, region) {
                    if asns.iter().any(|(a, _)| *a == asn) {
                        cx.err(e.asn.span(), format!("AS{asn} is listed twice"));
                    } else {
                        asns.push((asn, region));
                    }
                }
            }
            CheckedCidrMap {
                name: name.clone(),
                networks,
                asns,
                file: m.file.as_ref().map(|f| (base.join(f.get_ref()), f.span())),
            }
        })
        .collect()
}

/// An AS number as a config gives it: 1 to 4294967295 (0 is reserved and matches nothing).
pub(crate) fn parse_asn_number(n: i64) -> Result<u32, String> {
    u32::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{n} is not an AS number (1 to 4294967295)"))
}

/// ASN overrides match through `[geoip] asn_database`: a map listing ASNs without one is an
/// error, not a silently ignored table.
pub(super) fn check_asns_need_a_database(cx: &mut Ctx, raw: &RawConfig) {
    for (name, m) in &raw.cidr_maps {
        if let Some(first) = m.get_ref().asns.first() {
            cx.err(
                first.span(),
                format!(
                    "[cidr_maps.{name}] lists ASNs, which need [geoip] asn_database to match clients"
                ),
            );
        }
    }
}
