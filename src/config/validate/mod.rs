//! Raw config -> checked model: runs each section's checks in turn, collecting every problem
//! instead of stopping at the first. Its only I/O is reading zone files, through the reader it
//! is handed (their records are checked against the rest of the config); the GeoIP database
//! and the other data files are opened by `compile`.
mod asserts;
mod checks;
mod dnssec;
mod regions;
pub(crate) use regions::parse_asn_number;
mod server;
mod services;
mod zones;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use hickory_proto::rr::Name;

use super::checked::{Checked, CheckedZone};
use super::raw::{Paths, RawConfig, S};
use super::zonefile::ReadFile;
use super::{Place, Problem};

/// Largest TTL RFC 2181 allows.
const MAX_TTL: i64 = 2_147_483_647;
const DEFAULT_LATENCY_OVERHEAD_MS: f32 = 5.0;

/// The problems found so far, the config text and path (to name the line of an earlier
/// definition), and the reader of zone files.
struct Ctx<'a, 'r> {
    problems: Vec<Problem>,
    text: &'a str,
    path: &'a Path,
    read: &'a mut ReadFile<'r>,
}

impl Ctx<'_, '_> {
    /// `FILE:LINE` of a place, for messages that name a second one.
    fn place(&self, at: &Place) -> String {
        match at {
            Place::Config(span) => format!("{}:{}", self.path.display(), self.line_of(span.start)),
            Place::File(at) => at.to_string(),
        }
    }

    fn err_at(&mut self, at: &Place, message: impl Into<String>) {
        self.problems.push(Problem {
            at: at.clone(),
            message: message.into(),
        });
    }

    /// 1-based line of a byte offset, for messages that point at a second place.
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.problems.push(Problem::new(span, message));
    }

    fn ttl(&mut self, v: &S<i64>, what: &str) -> u32 {
        let ttl = *v.get_ref();
        if !(0..=MAX_TTL).contains(&ttl) {
            self.err(
                v.span(),
                format!("{what} {ttl} is out of range (0 to {MAX_TTL} seconds)"),
            );
            return 0;
        }
        ttl as u32
    }

    fn name(&mut self, v: &S<String>, origin: Option<&Name>, what: &str) -> Option<Name> {
        match parse_name(v.get_ref(), origin) {
            Ok(n) => Some(n),
            Err(e) => {
                self.err(
                    v.span(),
                    format!("{what} {:?} is not a valid name: {e}", v.get_ref()),
                );
                None
            }
        }
    }
}

/// Parses a domain name; relative names are taken under `origin`, `@` is the origin itself.
/// Without an origin every name is taken as absolute.
pub fn parse_name(s: &str, origin: Option<&Name>) -> Result<Name, String> {
    if s.is_empty() {
        return Err("empty".into());
    }
    if s.contains(|c: char| c.is_whitespace() || c == '$' || c == ';') {
        return Err("contains white space, '$' or ';'".into());
    }
    if s == "@" {
        return origin.cloned().ok_or_else(|| "'@' needs a zone".into());
    }
    let mut name = Name::from_ascii(s).map_err(|e| e.to_string())?;
    if !s.ends_with('.') {
        match origin {
            Some(origin) => name = name.append_domain(origin).map_err(|e| e.to_string())?,
            None => name.set_fqdn(true),
        }
    }
    Ok(name)
}

/// Checks every section, in the order later ones depend on (zones, regions and checks before
/// the services that name them); the checked model, or every problem found.
/// `path` is the config file's (relative paths in it are taken from its directory); `read`
/// reads the zone files it names.
pub fn validate(
    raw: &RawConfig,
    text: &str,
    path: &Path,
    read: &mut ReadFile<'_>,
) -> Result<Checked, Vec<Problem>> {
    let base = path.parent().unwrap_or(Path::new("."));
    let mut cx = Ctx {
        problems: Vec::new(),
        text,
        path,
        read,
    };
    let settings = server::server_settings(&mut cx, raw, base);
    let mut files = |key: &str, paths: &Option<S<Paths>>| {
        paths.as_ref().map(|d| {
            let paths: Vec<PathBuf> = d.get_ref().iter().map(|p| base.join(p)).collect();
            if paths.is_empty() {
                cx.err(d.span(), format!("[geoip] {key} lists no file"));
            }
            (paths, d.span())
        })
    };
    let geoip = raw
        .geoip
        .as_ref()
        .and_then(|g| files("database", &g.get_ref().database));
    let asn_database = raw
        .geoip
        .as_ref()
        .and_then(|g| files("asn_database", &g.get_ref().asn_database));
    if let Some(g) = &raw.geoip
        && geoip.is_none()
        && asn_database.is_none()
    {
        cx.err(g.span(), "[geoip] names neither database nor asn_database");
    }

    let zones: Vec<CheckedZone> = raw
        .zones
        .iter()
        .map(|z| zones::zone(&mut cx, z, base))
        .collect();
    zones::check_duplicate_zones(&mut cx, raw, &zones);

    let (regions, region_ids) = regions::regions(&mut cx, raw);
    let default_order = regions::region_list(
        &mut cx,
        &raw.routing.default_order,
        &region_ids,
        "routing.default_order",
    );
    let checks = checks::checks(&mut cx, &raw.checks);
    let check_ids: HashMap<String, usize> = checks
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), i))
        .collect();
    let cidr_maps = regions::cidr_maps(&mut cx, raw, &region_ids, base);
    if asn_database.is_none() {
        regions::check_asns_need_a_database(&mut cx, raw);
    }
    let cidr_map_ids: HashMap<String, usize> = cidr_maps
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.clone(), i))
        .collect();
    let latency_map = raw
        .routing
        .latency_map
        .as_ref()
        .map(|p| (base.join(p.get_ref()), p.span()));
    let latency_overhead_ms = match &raw.routing.latency_overhead_ms {
        None => DEFAULT_LATENCY_OVERHEAD_MS,
        Some(v) if (0.0..=10_000.0).contains(v.get_ref()) => *v.get_ref() as f32,
        Some(v) => {
            cx.err(v.span(), "latency_overhead_ms must be 0 to 10000");
            DEFAULT_LATENCY_OVERHEAD_MS
        }
    };

    let known = services::Known {
        zones: &zones,
        region_ids: &region_ids,
        checks: &checks,
        check_ids: &check_ids,
        cidr_map_ids: &cidr_map_ids,
        default_order: &default_order,
    };
    let services = services::services(&mut cx, raw, &known);
    services::check_service_conflicts(&mut cx, raw, &zones, &services);
    if geoip.is_none() {
        services::check_placement_needs_geoip(&mut cx, raw);
    }

    let asserts = asserts::asserts(&mut cx, raw, &region_ids);
    let safety = asserts::safety(&mut cx, raw, &region_ids, &services);

    if cx.problems.is_empty() {
        Ok(Checked {
            asserts,
            safety,
            settings,
            geoip,
            asn_database,
            zones,
            regions,
            services,
            checks,
            cidr_maps,
            latency_map,
            latency_overhead_ms,
        })
    } else {
        Err(cx.problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_against_origin() {
        let origin = Name::from_ascii("example.com.").unwrap();
        assert_eq!(
            parse_name("www", Some(&origin)).unwrap().to_ascii(),
            "www.example.com."
        );
        assert_eq!(parse_name("@", Some(&origin)).unwrap(), origin);
        assert_eq!(
            parse_name("other.org.", Some(&origin)).unwrap().to_ascii(),
            "other.org."
        );
        assert_eq!(
            parse_name("other.org", None).unwrap().to_ascii(),
            "other.org."
        );
        assert!(parse_name("", Some(&origin)).is_err());
        assert!(parse_name("a b", Some(&origin)).is_err());
    }
}
