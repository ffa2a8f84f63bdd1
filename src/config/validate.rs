//! Raw config -> checked model. Collects every problem instead of stopping at the first; does
//! no I/O (the GeoIP database is opened by `compile`).
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::rr::rdata::{SOA, TXT};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;

use super::Problem;
use super::checked::{
    Checked, CheckedAllDown, CheckedCidrMap, CheckedEndpoint, CheckedService, CheckedZone,
};
use super::duration;
use super::raw::{RawCheck, RawCluster, RawConfig, RawEndpoint, RawRrl, RawService, RawZone, S};
use crate::geo::{Continent, CountryCode, LatLon};
use crate::routing::table::{
    MAX_ANSWERS, MAX_SERVICE_REGIONS, Policy, Region, RegionId, WeightMode,
};
use crate::settings::{
    self, CheckKind, CheckSpec, ClusterSettings, Quorum, RrlSettings, Settings, StatusMatch,
    TcpLimits, TlsVerify,
};

/// Largest TTL RFC 2181 allows.
const MAX_TTL: i64 = 2_147_483_647;
const DEFAULT_ZONE_TTL: u32 = 3600;
const DEFAULT_SERVICE_TTL: u32 = 30;
const DEFAULT_MAX_UDP_PAYLOAD: u16 = 1232;
const DEFAULT_TCP_IDLE: Duration = Duration::from_secs(10);
const DEFAULT_TCP_TOTAL: Duration = Duration::from_secs(120);
const DEFAULT_TCP_CONNECTIONS: usize = 1024;
const DEFAULT_TCP_QUERIES: usize = 1000;
const DEFAULT_DNS_LISTEN: &str = "127.0.0.1:5353";
const DEFAULT_LATENCY_OVERHEAD_MS: f32 = 5.0;
const DEFAULT_LATENCY_MARGIN_MS: f32 = 10.0;
const STATIC_TYPES: [RecordType; 9] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::TXT,
    RecordType::SRV,
    RecordType::CAA,
    RecordType::NS,
    RecordType::PTR,
];

struct Ctx<'a> {
    problems: Vec<Problem>,
    text: &'a str,
}

impl Ctx<'_> {
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

pub fn validate(raw: &RawConfig, text: &str, base: &Path) -> Result<Checked, Vec<Problem>> {
    let mut cx = Ctx {
        problems: Vec::new(),
        text,
    };
    let settings = server_settings(&mut cx, raw, base);
    let geoip = raw.geoip.as_ref().map(|g| {
        let p = Path::new(g.database.get_ref());
        (base.join(p), g.database.span())
    });

    let zones: Vec<CheckedZone> = raw.zones.iter().map(|z| zone(&mut cx, z)).collect();
    check_duplicate_zones(&mut cx, raw, &zones);

    let (regions, region_ids) = regions(&mut cx, raw);
    let default_order = region_list(
        &mut cx,
        &raw.routing.default_order,
        &region_ids,
        "routing.default_order",
    );
    let checks = checks(&mut cx, &raw.checks);
    let check_ids: HashMap<String, usize> = checks
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), i))
        .collect();
    let cidr_maps = cidr_maps(&mut cx, raw, &region_ids, base);
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

    let known = Known {
        zones: &zones,
        region_ids: &region_ids,
        checks: &checks,
        check_ids: &check_ids,
        cidr_map_ids: &cidr_map_ids,
        default_order: &default_order,
    };
    let mut services = Vec::new();
    let mut seen_services: HashMap<LowerName, Range<usize>> = HashMap::new();
    for s in &raw.services {
        let Some(svc) = service(&mut cx, s, &known) else {
            continue;
        };
        let key = LowerName::new(&svc.name);
        if let Some(first) = seen_services.get(&key) {
            let line_hint = cx.line_of(first.start);
            cx.err(
                s.get_ref().name.span(),
                format!(
                    "service {} is defined twice (first at line {line_hint})",
                    svc.name
                ),
            );
            continue;
        }
        seen_services.insert(key, s.get_ref().name.span());
        services.push(svc);
    }
    check_service_conflicts(&mut cx, raw, &zones, &services);

    if geoip.is_none() {
        for svc in &raw.services {
            let svc = svc.get_ref();
            let policy = svc.policy.as_ref().map_or("geo", |p| p.get_ref().as_str());
            if matches!(policy, "geo" | "proximity") {
                cx.err(
                    svc.name.span(),
                    format!(
                        "service {} uses policy {policy}, which needs a [geoip] database to place clients",
                        svc.name.get_ref()
                    ),
                );
            }
        }
    }

    if cx.problems.is_empty() {
        Ok(Checked {
            settings,
            geoip,
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

fn server_settings(cx: &mut Ctx, raw: &RawConfig, base: &Path) -> Settings {
    let s = &raw.server;
    let mut dns_listen = Vec::new();
    match &s.dns_listen {
        None => dns_listen
            .push(SocketAddr::from_str(DEFAULT_DNS_LISTEN).unwrap_or_else(|_| unreachable!())),
        Some(list) => {
            if list.get_ref().is_empty() {
                cx.err(
                    list.span(),
                    "server.dns_listen is empty: nothing would serve DNS",
                );
            }
            for a in list.get_ref() {
                match a.get_ref().parse::<SocketAddr>() {
                    Ok(addr) if dns_listen.contains(&addr) => {
                        cx.err(a.span(), format!("listen address {addr} is given twice"))
                    }
                    Ok(addr) => dns_listen.push(addr),
                    Err(_) => cx.err(
                        a.span(),
                        format!(
                            "{:?} is not an IP:port listen address (use [::1]:53 for IPv6)",
                            a.get_ref()
                        ),
                    ),
                }
            }
        }
    }
    let admin_listen = s
        .admin_listen
        .as_ref()
        .and_then(|a| match a.get_ref().parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                cx.err(
                    a.span(),
                    format!("{:?} is not an IP:port address", a.get_ref()),
                );
                None
            }
        });
    let max_udp_payload = match &s.max_udp_payload {
        None => DEFAULT_MAX_UDP_PAYLOAD,
        Some(v) => match u16::try_from(*v.get_ref()) {
            Ok(n) if n >= 512 => n,
            _ => {
                cx.err(
                    v.span(),
                    format!("max_udp_payload {} must be 512 to 65535", v.get_ref()),
                );
                DEFAULT_MAX_UDP_PAYLOAD
            }
        },
    };
    let mut positive = |v: &Option<S<String>>, default: Duration, what: &str| match v {
        None => default,
        Some(v) => match duration::parse(v.get_ref()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                cx.err(v.span(), format!("{what} must be above zero"));
                default
            }
            Err(e) => {
                cx.err(v.span(), e);
                default
            }
        },
    };
    let idle_timeout = positive(&s.tcp_idle_timeout, DEFAULT_TCP_IDLE, "tcp_idle_timeout");
    let total_timeout = positive(&s.tcp_total_timeout, DEFAULT_TCP_TOTAL, "tcp_total_timeout");
    let mut count = |v: &Option<S<i64>>, default: usize, max: i64, what: &str| match v {
        None => default,
        Some(v) if (1..=max).contains(v.get_ref()) => *v.get_ref() as usize,
        Some(v) => {
            cx.err(v.span(), format!("{what} must be 1 to {max}"));
            default
        }
    };
    let tcp = TcpLimits {
        max_connections: count(
            &s.tcp_max_connections,
            DEFAULT_TCP_CONNECTIONS,
            1_000_000,
            "tcp_max_connections",
        ),
        idle_timeout,
        total_timeout,
        max_queries: count(
            &s.tcp_max_queries,
            DEFAULT_TCP_QUERIES,
            1_000_000,
            "tcp_max_queries",
        ) as u32,
    };
    Settings {
        dns_listen,
        admin_listen,
        max_udp_payload,
        tcp,
        rrl: raw
            .rrl
            .as_ref()
            .map_or_else(RrlSettings::default, |r| rrl(cx, r.get_ref())),
        state_dir: s.state_dir.as_ref().map(|d| base.join(d.get_ref())),
        admin_token_file: s.admin_token_file.as_ref().map(|f| base.join(f.get_ref())),
        probe_source: s
            .probe_source
            .as_ref()
            .and_then(|a| match a.get_ref().parse() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    cx.err(
                        a.span(),
                        format!("probe_source {:?} is not an IP address", a.get_ref()),
                    );
                    None
                }
            }),
        cluster: raw.cluster.as_ref().and_then(|c| cluster(cx, c, base)),
        workers: match &s.workers {
            None => 0,
            Some(w) if (0..=256).contains(w.get_ref()) => *w.get_ref() as usize,
            Some(w) => {
                cx.err(w.span(), "workers must be 0 (one per core) to 256");
                0
            }
        },
        config_hash: String::new(),
    }
}

fn zone(cx: &mut Ctx, z: &S<RawZone>) -> CheckedZone {
    let z = z.get_ref();
    let origin = cx
        .name(&z.origin, None, "zone origin")
        .unwrap_or_else(Name::root);
    let default_ttl = z
        .ttl
        .as_ref()
        .map_or(DEFAULT_ZONE_TTL, |t| cx.ttl(t, "zone TTL"));

    let soa_raw = z.soa.get_ref();
    let mname = cx.name(&soa_raw.mname, Some(&origin), "SOA mname");
    let rname = cx.name(&soa_raw.rname, Some(&origin), "SOA rname");
    let mut num = |v: &Option<S<i64>>, default: i64, what: &str| -> i64 {
        match v {
            None => default,
            Some(v) if (0..=MAX_TTL).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                cx.err(
                    v.span(),
                    format!("SOA {what} {} is out of range", v.get_ref()),
                );
                default
            }
        }
    };
    let refresh = num(&soa_raw.refresh, 3600, "refresh");
    let retry = num(&soa_raw.retry, 600, "retry");
    let expire = num(&soa_raw.expire, 604_800, "expire");
    let serial = match u32::try_from(*soa_raw.serial.get_ref()) {
        Ok(s) => s,
        Err(_) => {
            cx.err(soa_raw.serial.span(), "SOA serial must be 0 to 4294967295");
            0
        }
    };
    let minimum = cx.ttl(&soa_raw.minimum, "SOA minimum");
    let soa_ttl = soa_raw
        .ttl
        .as_ref()
        .map_or(default_ttl, |t| cx.ttl(t, "SOA TTL"));
    let soa = Record::from_rdata(
        origin.clone(),
        soa_ttl,
        RData::SOA(SOA::new(
            mname.unwrap_or_else(Name::root),
            rname.unwrap_or_else(Name::root),
            serial,
            refresh as i32,
            retry as i32,
            expire as i32,
            minimum,
        )),
    );

    if z.ns.get_ref().is_empty() {
        cx.err(
            z.ns.span(),
            format!("zone {origin} needs at least one NS name"),
        );
    }
    let ns =
        z.ns.get_ref()
            .iter()
            .filter_map(|n| cx.name(n, Some(&origin), "NS name"))
            .map(|target| {
                Record::from_rdata(
                    origin.clone(),
                    default_ttl,
                    RData::NS(hickory_proto::rr::rdata::NS(target)),
                )
            })
            .collect();

    let mut records = Vec::new();
    for r in &z.records {
        let r = r.get_ref();
        let Some(name) = cx.name(&r.name, Some(&origin), "record name") else {
            continue;
        };
        if !origin.zone_of(&name) {
            cx.err(
                r.name.span(),
                format!("record name {name} is outside zone {origin}"),
            );
            continue;
        }
        let ttl = r
            .ttl
            .as_ref()
            .map_or(default_ttl, |t| cx.ttl(t, "record TTL"));
        let Ok(rtype) = RecordType::from_str(&r.rtype.get_ref().to_ascii_uppercase()) else {
            cx.err(
                r.rtype.span(),
                format!("unknown record type {:?}", r.rtype.get_ref()),
            );
            continue;
        };
        if !STATIC_TYPES.contains(&rtype) {
            cx.err(
                r.rtype.span(),
                format!("record type {rtype} is not served here (use A AAAA CNAME MX TXT SRV CAA NS PTR)"),
            );
            continue;
        }
        if rtype == RecordType::NS && name == origin {
            cx.err(
                r.name.span(),
                "apex NS records come from the zone's `ns` list",
            );
            continue;
        }
        match rdata(rtype, r.data.get_ref(), &origin) {
            Ok(data) => {
                let mut rec = Record::from_rdata(name, ttl, data);
                rec.dns_class = DNSClass::IN;
                if records.contains(&rec) {
                    cx.err(
                        r.name.span(),
                        format!(
                            "record {} {rtype} {} is given twice",
                            rec.name,
                            r.data.get_ref()
                        ),
                    );
                } else {
                    records.push(rec);
                }
            }
            Err(e) => cx.err(
                r.data.span(),
                format!("bad {rtype} data {:?}: {e}", r.data.get_ref()),
            ),
        }
    }

    // A CNAME owns its name alone (RFC 1034 3.6.2).
    let mut by_name: BTreeMap<&Name, Vec<RecordType>> = BTreeMap::new();
    for rec in &records {
        by_name
            .entry(&rec.name)
            .or_default()
            .push(rec.record_type());
    }
    for (name, types) in &by_name {
        let cnames = types.iter().filter(|t| **t == RecordType::CNAME).count();
        if cnames > 0 && (types.len() > 1 || *name == &origin) {
            let span = z
                .records
                .iter()
                .find(|r| {
                    r.get_ref().rtype.get_ref().eq_ignore_ascii_case("CNAME")
                        && parse_name(r.get_ref().name.get_ref(), Some(&origin))
                            .ok()
                            .as_ref()
                            == Some(*name)
                })
                .map_or(z.origin.span(), |r| r.span());
            let why = if *name == &origin {
                "the zone apex cannot be a CNAME".to_string()
            } else if cnames > 1 {
                format!("{name} has more than one CNAME")
            } else {
                format!("{name} has a CNAME beside other data")
            };
            cx.err(span, why);
        }
    }

    CheckedZone {
        origin,
        soa,
        ns,
        records,
    }
}

/// Record data in zone-file syntax, relative names under `origin`.
fn rdata(rtype: RecordType, data: &str, origin: &Name) -> Result<RData, String> {
    if data.contains(['\n', '\r']) {
        return Err("data must be on one line".into());
    }
    if rtype == RecordType::TXT && !data.trim_start().starts_with('"') {
        // Plain text is one string; split at 255 bytes as the wire format requires (bytes,
        // not characters: a UTF-8 character may straddle two strings).
        let bytes = data.as_bytes();
        let chunks: Vec<&[u8]> = if bytes.is_empty() {
            vec![&[]]
        } else {
            bytes.chunks(255).collect()
        };
        return Ok(RData::TXT(TXT::from_bytes(chunks)));
    }
    let line = format!("@ 0 IN {rtype} {data}\n");
    let (_, sets) = Parser::new(line, None, Some(origin.clone()))
        .parse()
        .map_err(|e| e.to_string())?;
    let mut records = sets
        .into_values()
        .flat_map(|set| set.records_without_rrsigs().cloned().collect::<Vec<_>>());
    let first = records.next().ok_or_else(|| "no data".to_string())?;
    if records.next().is_some() {
        return Err("one record per entry".into());
    }
    Ok(first.data)
}

fn check_duplicate_zones(cx: &mut Ctx, raw: &RawConfig, zones: &[CheckedZone]) {
    let mut seen = HashSet::new();
    for (z, raw_z) in zones.iter().zip(&raw.zones) {
        if !seen.insert(LowerName::new(&z.origin)) {
            cx.err(
                raw_z.get_ref().origin.span(),
                format!("zone {} is defined twice", z.origin),
            );
        }
    }
}

fn regions(cx: &mut Ctx, raw: &RawConfig) -> (Vec<Region>, HashMap<String, RegionId>) {
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
        let (countries, continents) = geo_codes(cx, &r.countries, &r.continents);
        let bias = match &r.bias {
            None => 0.0,
            Some(b) if (-99..=99).contains(b.get_ref()) => *b.get_ref() as f64 / 100.0,
            Some(b) => {
                cx.err(b.span(), format!("bias {} must be -99 to 99", b.get_ref()));
                0.0
            }
        };
        ids.insert(name.clone(), RegionId(out.len() as u32));
        out.push(Region {
            name,
            point: location.map(LatLon::point),
            location,
            countries,
            continents,
            bias,
        });
    }
    (out, ids)
}

/// Parses a list of country or continent codes, refusing bad and repeated ones.
/// A region's or residency rule's country and continent lists.
fn geo_codes(
    cx: &mut Ctx,
    countries: &[S<String>],
    continents: &[S<String>],
) -> (Vec<CountryCode>, Vec<Continent>) {
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
    (countries, continents)
}

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

fn region_list(
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

fn checks(cx: &mut Ctx, raw: &BTreeMap<String, S<RawCheck>>) -> Vec<CheckSpec> {
    let mut out = Vec::new();
    for (name, c) in raw {
        let c = c.get_ref();
        let kind = match c.kind.get_ref().as_str() {
            "http" => CheckKind::Http,
            "https" => CheckKind::Https,
            "tcp" => CheckKind::Tcp,
            other => {
                cx.err(
                    c.kind.span(),
                    format!("check kind {other:?} is not http, https or tcp"),
                );
                CheckKind::Tcp
            }
        };
        let mut dur = |v: &Option<S<String>>, default: Duration| match v {
            None => default,
            Some(v) => match duration::parse(v.get_ref()) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    cx.err(v.span(), "duration must be above zero");
                    default
                }
                Err(e) => {
                    cx.err(v.span(), e);
                    default
                }
            },
        };
        let interval = dur(&c.interval, settings::DEFAULT_INTERVAL);
        let timeout = dur(&c.timeout, settings::DEFAULT_TIMEOUT.min(interval / 2));
        if timeout >= interval {
            let span = c
                .timeout
                .as_ref()
                .or(c.interval.as_ref())
                .map(|v| v.span())
                .unwrap_or_default();
            cx.err(
                span,
                format!("check timeout {timeout:?} must be below its interval {interval:?}"),
            );
        }
        let mut count = |v: &Option<S<i64>>, default: u32, what: &str| match v {
            None => default,
            Some(v) if (1..=100).contains(v.get_ref()) => *v.get_ref() as u32,
            Some(v) => {
                cx.err(v.span(), format!("check {what} must be 1 to 100"));
                default
            }
        };
        let rise = count(&c.rise, settings::DEFAULT_RISE, "rise");
        let fall = count(&c.fall, settings::DEFAULT_FALL, "fall");
        let port = c
            .port
            .as_ref()
            .and_then(|p| match u16::try_from(*p.get_ref()) {
                Ok(p) if p > 0 => Some(p),
                _ => {
                    cx.err(
                        p.span(),
                        format!("check port {} is not 1 to 65535", p.get_ref()),
                    );
                    None
                }
            });
        let mut expect_status = Vec::new();
        for s in c.expect_status.iter().flat_map(|v| v.get_ref()) {
            match s.get_ref() {
                toml::Value::Integer(n) if (100..=599).contains(n) => {
                    expect_status.push(StatusMatch::Code(*n as u16))
                }
                toml::Value::String(t)
                    if matches!(t.as_str(), "1xx" | "2xx" | "3xx" | "4xx" | "5xx") =>
                {
                    expect_status.push(StatusMatch::Class(t.as_bytes()[0] - b'0'))
                }
                _ => cx.err(
                    s.span(),
                    "expect_status takes HTTP codes (200) or classes (\"2xx\")",
                ),
            }
        }
        if expect_status.is_empty() {
            expect_status = vec![StatusMatch::Class(2), StatusMatch::Class(3)];
        }
        let path = c
            .path
            .as_ref()
            .map_or("/".to_string(), |p| p.get_ref().clone());
        if !path.starts_with('/') {
            let span = c.path.as_ref().map(|p| p.span()).unwrap_or_default();
            cx.err(span, format!("check path {path:?} must start with '/'"));
        }
        if kind == CheckKind::Tcp
            && (c.path.is_some() || c.expect_body.is_some() || c.expect_status.is_some())
        {
            cx.err(
                c.kind.span(),
                "a tcp check only connects: path, expect_status and expect_body need http or https",
            );
        }
        let insecure = c
            .tls_insecure_skip_verify
            .as_ref()
            .is_some_and(|v| *v.get_ref());
        out.push(CheckSpec {
            name: name.clone(),
            kind,
            path,
            port,
            interval,
            timeout,
            rise,
            fall,
            expect_status,
            expect_body: c.expect_body.as_ref().map(|b| b.get_ref().clone()),
            headers: c
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tls_server_name: c.tls_server_name.as_ref().map(|v| v.get_ref().clone()),
            tls: if insecure {
                TlsVerify::InsecureSkipVerify
            } else {
                TlsVerify::Verify
            },
        });
    }
    out
}

/// The `[rrl]` section.
fn rrl(cx: &mut Ctx, r: &RawRrl) -> RrlSettings {
    let mut out = RrlSettings::default();
    let mut num = |v: &Option<S<i64>>, max: i64, what: &str| -> Option<i64> {
        let v = v.as_ref()?;
        if (0..=max).contains(v.get_ref()) {
            Some(*v.get_ref())
        } else {
            cx.err(v.span(), format!("{what} must be 0 to {max}"));
            None
        }
    };
    if let Some(n) = num(&r.responses_per_second, 1_000_000, "responses_per_second") {
        out.responses_per_second = n as u32;
    }
    if let Some(n) = num(&r.slip, 100, "slip") {
        out.slip = n as u32;
    }
    if let Some(n) = num(&r.ipv4_prefix, 32, "ipv4_prefix") {
        out.ipv4_prefix = n as u8;
    }
    if let Some(n) = num(&r.ipv6_prefix, 128, "ipv6_prefix") {
        out.ipv6_prefix = n as u8;
    }
    if let Some(list) = &r.exempt {
        out.exempt = list
            .get_ref()
            .iter()
            .filter_map(|n| match n.get_ref().parse::<ipnet::IpNet>() {
                Ok(net) => Some(net.trunc()),
                Err(_) => {
                    cx.err(
                        n.span(),
                        format!("{:?} is not a network (CIDR)", n.get_ref()),
                    );
                    None
                }
            })
            .collect();
    }
    out
}

/// The `[cluster]` section (fleet mode).
fn cluster(cx: &mut Ctx, c: &S<RawCluster>, base: &Path) -> Option<ClusterSettings> {
    let span = c.span();
    let c = c.get_ref();
    if c.backend.get_ref() != "etcd" {
        cx.err(
            c.backend.span(),
            format!(
                "cluster backend {:?} is not supported (etcd)",
                c.backend.get_ref()
            ),
        );
    }
    if !cfg!(feature = "etcd") {
        cx.err(span.clone(), "this meridian was built without etcd support: build with `--features etcd` (needs protoc)");
    }
    if c.endpoints.get_ref().is_empty() {
        cx.err(c.endpoints.span(), "cluster endpoints is empty");
    }
    let mut endpoints = Vec::new();
    for e in c.endpoints.get_ref() {
        let v = e.get_ref().trim();
        let hostport = v
            .strip_prefix("http://")
            .or_else(|| v.strip_prefix("https://"))
            .unwrap_or(v);
        if hostport
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            cx.err(
                e.span(),
                format!("etcd endpoint {v:?} must be host:port (optionally http:// or https://)"),
            );
        }
        endpoints.push(v.to_string());
    }
    let name = c.name.get_ref().clone();
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    {
        cx.err(
            c.name.span(),
            "cluster name must be letters, digits, '-', '_' or '.'",
        );
    }
    let mut prefix = c
        .prefix
        .as_ref()
        .map_or("/meridian/".to_string(), |p| p.get_ref().clone());
    if !prefix.ends_with('/') {
        prefix.push('/');
    }
    let mut dur = |v: &Option<S<String>>, default: Duration, min: Duration| match v {
        None => default,
        Some(v) => match duration::parse(v.get_ref()) {
            Ok(d) if d >= min => d,
            Ok(_) => {
                cx.err(v.span(), format!("must be at least {min:?}"));
                default
            }
            Err(e) => {
                cx.err(v.span(), e);
                default
            }
        },
    };
    let dial_timeout = dur(
        &c.dial_timeout,
        Duration::from_secs(2),
        Duration::from_millis(100),
    );
    let request_timeout = dur(
        &c.request_timeout,
        Duration::from_secs(2),
        Duration::from_millis(100),
    );
    let lease_ttl = dur(
        &c.lease_ttl,
        Duration::from_secs(10),
        Duration::from_secs(2),
    );
    let quorum = match c.quorum.as_ref().map(|q| (q.get_ref(), q.span())) {
        None => Quorum::Majority,
        Some((toml::Value::String(s), _)) if s == "majority" => Quorum::Majority,
        Some((toml::Value::Integer(n), _)) if (1..=255).contains(n) => Quorum::AtLeast(*n as u8),
        Some((_, span)) => {
            cx.err(
                span,
                "quorum is \"majority\" or a number of observers (1 to 255)",
            );
            Quorum::Majority
        }
    };
    let path = |v: &Option<S<String>>| v.as_ref().map(|p| base.join(p.get_ref()));
    if c.password_file.is_some() != c.username.is_some() {
        cx.err(span.clone(), "username and password_file go together");
    }
    if c.cert_file.is_some() != c.key_file.is_some() {
        cx.err(span, "cert_file and key_file go together");
    }
    Some(ClusterSettings {
        endpoints,
        prefix,
        name,
        dial_timeout,
        request_timeout,
        lease_ttl,
        quorum,
        username: c.username.as_ref().map(|u| u.get_ref().clone()),
        password_file: path(&c.password_file),
        ca_file: path(&c.ca_file),
        cert_file: path(&c.cert_file),
        key_file: path(&c.key_file),
    })
}

/// What a service may refer to, by name.
struct Known<'a> {
    zones: &'a [CheckedZone],
    region_ids: &'a HashMap<String, RegionId>,
    checks: &'a [CheckSpec],
    check_ids: &'a HashMap<String, usize>,
    cidr_map_ids: &'a HashMap<String, usize>,
    default_order: &'a [RegionId],
}

fn service(cx: &mut Ctx, s: &S<RawService>, known: &Known<'_>) -> Option<CheckedService> {
    let Known {
        zones,
        region_ids,
        checks,
        check_ids,
        cidr_map_ids,
        default_order: global_order,
    } = *known;
    let s = s.get_ref();
    let name = cx.name(&s.name, None, "service name");
    let zone = name.as_ref().and_then(|name| {
        let zone = zones
            .iter()
            .enumerate()
            .filter(|(_, z)| z.origin.zone_of(name))
            .max_by_key(|(_, z)| z.origin.num_labels())
            .map(|(i, _)| i);
        if zone.is_none() {
            cx.err(
                s.name.span(),
                format!("service {name} is in no configured zone"),
            );
        }
        zone
    });
    let ttl = s
        .ttl
        .as_ref()
        .map_or(DEFAULT_SERVICE_TTL, |t| cx.ttl(t, "service TTL"));
    let policy = match s.policy.as_ref().map(|p| p.get_ref().as_str()) {
        None | Some("geo") => Some(Policy::Geo),
        Some("failover") => Some(Policy::Failover),
        Some("latency") => Some(Policy::Latency),
        Some("proximity") => Some(Policy::Proximity),
        Some("weighted") => Some(Policy::Weighted),
        Some(other) => {
            let span = s.policy.as_ref().map(|p| p.span()).unwrap_or_default();
            cx.err(
                span,
                format!(
                    "unknown policy {other:?} (known: geo, failover, latency, proximity, weighted)"
                ),
            );
            None
        }
    };
    let min_healthy = match &s.min_healthy {
        None => 1,
        Some(v) if (1..=1000).contains(v.get_ref()) => *v.get_ref() as usize,
        Some(v) => {
            cx.err(v.span(), "min_healthy must be 1 or more");
            1
        }
    };
    let on_all_down = match s.on_all_down.as_ref().map(|v| v.get_ref().as_str()) {
        None | Some("fail-open") => CheckedAllDown::FailOpen,
        Some("servfail") => CheckedAllDown::ServFail,
        Some("fallback") => CheckedAllDown::Fallback(Vec::new()),
        Some(other) => {
            let span = s.on_all_down.as_ref().map(|v| v.span()).unwrap_or_default();
            cx.err(
                span,
                format!("on_all_down {other:?} is not fail-open, servfail or fallback"),
            );
            CheckedAllDown::FailOpen
        }
    };
    let mut fallback = Vec::new();
    for a in s.fallback.iter().flat_map(|l| l.get_ref()) {
        match a.get_ref().parse::<IpAddr>() {
            Ok(ip) => fallback.push(ip),
            Err(_) => cx.err(
                a.span(),
                format!("fallback {:?} is not an IP address", a.get_ref()),
            ),
        }
    }
    let on_all_down = match on_all_down {
        CheckedAllDown::Fallback(_) => {
            if s.fallback.is_none() {
                let span = s.on_all_down.as_ref().map(|v| v.span()).unwrap_or_default();
                cx.err(
                    span,
                    "on_all_down = \"fallback\" needs a `fallback` list of addresses",
                );
            }
            CheckedAllDown::Fallback(fallback)
        }
        other => {
            if let Some(f) = &s.fallback {
                cx.err(
                    f.span(),
                    "`fallback` is only used with on_all_down = \"fallback\"",
                );
            }
            other
        }
    };
    let answers = match &s.answers {
        None => 1,
        Some(a) if (1..=MAX_ANSWERS as i64).contains(a.get_ref()) => *a.get_ref() as usize,
        Some(a) => {
            cx.err(a.span(), format!("answers must be 1 to {MAX_ANSWERS}"));
            1
        }
    };
    let service_check = s.check.as_ref().and_then(|c| {
        let id = check_ids.get(c.get_ref()).copied();
        if id.is_none() {
            cx.err(
                c.span(),
                format!(
                    "service names undefined check {:?} (no [checks.{}] table)",
                    c.get_ref(),
                    c.get_ref()
                ),
            );
        }
        id
    });
    let default_order = match (policy, &s.regions, &s.default_order) {
        (Some(Policy::Failover), Some(list), _) => {
            region_list(cx, list.get_ref(), region_ids, "regions")
        }
        (Some(Policy::Failover), None, _) => {
            cx.err(
                s.name.span(),
                "a failover service needs `regions`, its regions in failover order",
            );
            Vec::new()
        }
        (_, Some(list), _) => {
            cx.err(
                list.span(),
                "`regions` is the failover order; geo services use `default_order`",
            );
            Vec::new()
        }
        (_, None, Some(list)) => region_list(cx, list.get_ref(), region_ids, "default_order"),
        (_, None, None) => global_order.to_vec(),
    };

    if s.endpoints.get_ref().is_empty() {
        cx.err(s.endpoints.span(), "a service needs at least one endpoint");
    }
    let mut endpoints = Vec::new();
    let mut seen = HashSet::new();
    for e in s.endpoints.get_ref() {
        if let Some(ep) = endpoint(
            cx,
            e.get_ref(),
            region_ids,
            checks,
            check_ids,
            service_check,
        ) {
            if policy == Some(Policy::Failover)
                && !default_order.is_empty()
                && !default_order.contains(&ep.region)
            {
                cx.err(
                    e.get_ref().region.span(),
                    "endpoint region is not in this failover service's `regions`",
                );
            }
            if !seen.insert((ep.region, ep.address)) {
                cx.err(
                    e.span(),
                    format!("endpoint {} is listed twice in this region", ep.address),
                );
                continue;
            }
            endpoints.push(ep);
        }
    }
    let mut used: Vec<RegionId> = endpoints.iter().map(|e| e.region).collect();
    used.sort();
    used.dedup();
    if used.len() > MAX_SERVICE_REGIONS {
        cx.err(
            s.endpoints.span(),
            format!("a service may span at most {MAX_SERVICE_REGIONS} regions"),
        );
    }
    let latency_margin_ms = match &s.latency_margin_ms {
        None => DEFAULT_LATENCY_MARGIN_MS,
        Some(v) if (0.0..=10_000.0).contains(v.get_ref()) => *v.get_ref() as f32,
        Some(v) => {
            cx.err(v.span(), "latency_margin_ms must be 0 to 10000");
            DEFAULT_LATENCY_MARGIN_MS
        }
    };
    let weight_mode = match s.weight_mode.as_ref().map(|v| v.get_ref().as_str()) {
        None | Some("stable") => WeightMode::Stable,
        Some("random") => WeightMode::Random,
        Some(other) => {
            let span = s.weight_mode.as_ref().map(|v| v.span()).unwrap_or_default();
            cx.err(
                span,
                format!("weight_mode {other:?} is not stable or random"),
            );
            WeightMode::Stable
        }
    };
    if policy != Some(Policy::Weighted)
        && let Some(e) = s
            .endpoints
            .get_ref()
            .iter()
            .find(|e| e.get_ref().weight.is_some())
    {
        cx.err(e.span(), "endpoint weights need policy = \"weighted\"");
    }
    if policy == Some(Policy::Weighted)
        && !endpoints.is_empty()
        && endpoints.iter().all(|e| e.weight == 0)
    {
        cx.err(
            s.endpoints.span(),
            "every endpoint has weight 0: nothing would ever be answered first",
        );
    }
    let cidr_map = s.cidr_map.as_ref().and_then(|m| {
        let id = cidr_map_ids.get(m.get_ref()).copied();
        if id.is_none() {
            cx.err(m.span(), format!("no [cidr_maps.{}] table", m.get_ref()));
        }
        id
    });
    let mut residency = Vec::new();
    for rule in &s.residency {
        let r = rule.get_ref();
        let (countries, continents) = geo_codes(cx, &r.countries, &r.continents);
        if r.countries.is_empty() && r.continents.is_empty() {
            cx.err(
                rule.span(),
                "a residency rule needs countries or continents to apply to",
            );
        }
        let allowed = region_list(cx, r.regions.get_ref(), region_ids, "residency regions");
        let served: Vec<RegionId> = endpoints.iter().map(|e| e.region).collect();
        if !allowed.is_empty() && !allowed.iter().any(|r| served.contains(r)) {
            cx.err(
                r.regions.span(),
                "this residency rule leaves its clients with no region: none of its regions has an endpoint of this service",
            );
        }
        residency.push((countries, continents, allowed));
    }
    Some(CheckedService {
        name: name?,
        zone: zone?,
        ttl,
        policy: policy?,
        answers,
        min_healthy,
        on_all_down,
        default_order,
        endpoints,
        latency_margin_ms,
        weight_mode,
        residency,
        cidr_map,
    })
}

/// `[cidr_maps.NAME]`: inline networks checked here; a `file` is read by `compile`.
fn cidr_maps(
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
            CheckedCidrMap {
                name: name.clone(),
                networks,
                file: m.file.as_ref().map(|f| (base.join(f.get_ref()), f.span())),
            }
        })
        .collect()
}

fn endpoint(
    cx: &mut Ctx,
    e: &RawEndpoint,
    region_ids: &HashMap<String, RegionId>,
    checks: &[CheckSpec],
    check_ids: &HashMap<String, usize>,
    service_check: Option<usize>,
) -> Option<CheckedEndpoint> {
    let region = region_ids.get(e.region.get_ref()).copied();
    if region.is_none() {
        cx.err(
            e.region.span(),
            format!("endpoint names undefined region {:?}", e.region.get_ref()),
        );
    }
    let address = e.address.get_ref().parse::<IpAddr>().map_err(|_| {
        cx.err(
            e.address.span(),
            format!("{:?} is not an IP address", e.address.get_ref()),
        );
    });
    let port = match &e.port {
        None => 0,
        Some(p) => match u16::try_from(*p.get_ref()) {
            Ok(p) if p > 0 => p,
            _ => {
                cx.err(p.span(), format!("port {} is not 1 to 65535", p.get_ref()));
                0
            }
        },
    };
    let own_check = e.check.as_ref().and_then(|c| {
        let id = check_ids.get(c.get_ref()).copied();
        if id.is_none() {
            cx.err(
                c.span(),
                format!("endpoint names undefined check {:?}", c.get_ref()),
            );
        }
        id
    });
    let check = own_check.or(service_check);
    let check_address =
        e.check_address
            .as_ref()
            .and_then(|a| match a.get_ref().parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    cx.err(
                        a.span(),
                        format!("check_address {:?} is not an IP address", a.get_ref()),
                    );
                    None
                }
            });
    if check_address.is_some() && check.is_none() && e.check.is_none() {
        let span = e
            .check_address
            .as_ref()
            .map(|a| a.span())
            .unwrap_or_default();
        cx.err(
            span,
            "check_address is set but no check probes this endpoint",
        );
    }
    let address = address.ok()?;
    let probe = match check {
        None => None,
        Some(id) => {
            let spec = &checks[id];
            let probe_port = spec
                .port
                .or((port != 0).then_some(port))
                .unwrap_or(spec.kind.default_port());
            if probe_port == 0 {
                cx.err(
                    e.address.span(),
                    format!(
                        "tcp check {:?} needs a port: set `port` on the check or the endpoint",
                        spec.name
                    ),
                );
            }
            Some((
                id,
                std::net::SocketAddr::new(check_address.unwrap_or(address), probe_port),
            ))
        }
    };
    let weight = match &e.weight {
        None => 1,
        Some(w) if (0..=1_000_000).contains(w.get_ref()) => *w.get_ref() as u32,
        Some(w) => {
            cx.err(
                w.span(),
                format!("weight {} must be 0 to 1000000", w.get_ref()),
            );
            1
        }
    };
    Some(CheckedEndpoint {
        region: region?,
        address,
        port,
        probe,
        weight,
    })
}

/// A traffic-managed name must not also hold static address records or a CNAME.
fn check_service_conflicts(
    cx: &mut Ctx,
    raw: &RawConfig,
    zones: &[CheckedZone],
    services: &[CheckedService],
) {
    for svc in services {
        let zone = &zones[svc.zone];
        let clash = zone.records.iter().find(|r| {
            r.name == svc.name
                && matches!(
                    r.record_type(),
                    RecordType::A | RecordType::AAAA | RecordType::CNAME
                )
        });
        if let Some(rec) = clash {
            let span = raw
                .services
                .iter()
                .find(|s| {
                    parse_name(s.get_ref().name.get_ref(), None).ok().as_ref() == Some(&svc.name)
                })
                .map(|s| s.get_ref().name.span())
                .unwrap_or_default();
            let kind = if rec.record_type() == RecordType::CNAME {
                "a CNAME beside a traffic-managed name"
            } else {
                "static address records beside a traffic-managed name"
            };
            cx.err(
                span,
                format!("{}: zone {} has {kind}", svc.name, zone.origin),
            );
        }
        if let Some(cut) = zone
            .records
            .iter()
            .find(|r| r.record_type() == RecordType::NS && r.name.zone_of(&svc.name))
        {
            let span = raw
                .services
                .iter()
                .find(|s| {
                    parse_name(s.get_ref().name.get_ref(), None).ok().as_ref() == Some(&svc.name)
                })
                .map(|s| s.get_ref().name.span())
                .unwrap_or_default();
            cx.err(
                span,
                format!(
                    "service {} is below the delegation at {}",
                    svc.name, cut.name
                ),
            );
        }
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

    #[test]
    fn rdata_parses_zone_syntax() {
        let origin = Name::from_ascii("example.com.").unwrap();
        assert!(matches!(
            rdata(RecordType::MX, "10 mail", &origin),
            Ok(RData::MX(_))
        ));
        assert!(matches!(
            rdata(RecordType::SRV, "0 5 443 www", &origin),
            Ok(RData::SRV(_))
        ));
        assert!(matches!(
            rdata(RecordType::CAA, "0 issue \"ca.example.net\"", &origin),
            Ok(RData::CAA(_))
        ));
        match rdata(RecordType::TXT, "v=spf1 -all", &origin) {
            Ok(RData::TXT(t)) => assert_eq!(t.txt_data.len(), 1),
            other => panic!("{other:?}"),
        }
        assert!(rdata(RecordType::A, "300.1.1.1", &origin).is_err());
        assert!(rdata(RecordType::MX, "mail", &origin).is_err());
    }
}
