//! `[[services]]`: policy and its options, region order, endpoints and their probes, all-down
//! handling and residency; then conflicts with the zones' static data.
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Range;

use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use super::regions::{geo_codes, region_list};
use super::{Ctx, parse_name};
use crate::config::Place;
use crate::config::checked::{
    CheckedAllDown, CheckedEndpoint, CheckedResidency, CheckedService, CheckedZone,
};
use crate::config::raw::{RawConfig, RawEndpoint, RawService, S};
use crate::routing::table::{
    Address, MAX_ANSWERS, MAX_SERVICE_REGIONS, OnUnsafe, Policy, ProbeAddr, RegionId, WeightMode,
};
use crate::settings::CheckSpec;

const DEFAULT_SERVICE_TTL: u32 = 30;
const DEFAULT_LATENCY_MARGIN_MS: f32 = 10.0;

/// What a service may refer to, by name.
pub(super) struct Known<'a> {
    pub(super) zones: &'a [CheckedZone],
    pub(super) region_ids: &'a HashMap<String, RegionId>,
    pub(super) checks: &'a [CheckSpec],
    pub(super) check_ids: &'a HashMap<String, usize>,
    pub(super) cidr_map_ids: &'a HashMap<String, usize>,
    pub(super) default_order: &'a [RegionId],
}

/// Every `[[services]]` entry, refusing a name defined twice.
pub(super) fn services(cx: &mut Ctx, raw: &RawConfig, known: &Known<'_>) -> Vec<CheckedService> {
    let mut services = Vec::new();
    let mut seen_services: HashMap<LowerName, Range<usize>> = HashMap::new();
    for s in &raw.services {
        let Some(svc) = service(cx, s, known) else {
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
    services
}

/// One `[[services]]` entry, step by step. `None` when its name, zone or policy is unusable;
/// every step still runs, so the rest of its problems are reported too. Problems are shown
/// by position, and those at one position (the service name, the endpoint list, one
/// endpoint) in the order found: keep the steps in this order.
fn service(cx: &mut Ctx, s: &S<RawService>, known: &Known<'_>) -> Option<CheckedService> {
    let s = s.get_ref();
    let (name, zone) = name_and_zone(cx, s, known.zones);
    let ttl = s
        .ttl
        .as_ref()
        .map_or(DEFAULT_SERVICE_TTL, |t| cx.ttl(t, "service TTL"));
    let options = policy_options(cx, s);
    let on_all_down = all_down(cx, s);
    let service_check = service_check(cx, s, known.check_ids);
    let guard = promote_guard(cx, s, options.policy, known);
    let default_order = region_order(cx, s, options.policy, known);
    let checks = Probes {
        health: service_check,
        guard: guard.map(|g| g.0),
    };
    let endpoints = endpoints(cx, s, options.policy, &default_order, checks, known);
    check_weights(cx, s, options.policy, &endpoints);
    let cidr_map = cidr_map(cx, s, known.cidr_map_ids);
    let residency = residency(cx, s, &endpoints, known.region_ids);
    Some(CheckedService {
        name: name?,
        zone: zone?,
        ttl,
        policy: options.policy?,
        answers: options.answers,
        min_healthy: options.min_healthy,
        on_all_down,
        default_order,
        endpoints,
        latency_margin_ms: options.latency_margin_ms,
        weight_mode: options.weight_mode,
        residency,
        cidr_map,
        guard,
    })
}

/// The checks a service runs on its endpoints: health (`check`) and `promote_guard`.
#[derive(Clone, Copy)]
struct Probes {
    health: Option<usize>,
    guard: Option<usize>,
}

/// `promote_guard` and `on_unsafe`: a check with `extract`, on a policy that ranks regions.
fn promote_guard(
    cx: &mut Ctx,
    s: &RawService,
    policy: Option<Policy>,
    known: &Known<'_>,
) -> Option<(usize, OnUnsafe)> {
    let on_unsafe = match s
        .on_unsafe
        .as_ref()
        .map(|v| (v.get_ref().as_str(), v.span()))
    {
        None | Some(("next", _)) => OnUnsafe::Next,
        Some(("hold", _)) => OnUnsafe::Hold,
        Some(("servfail", _)) => OnUnsafe::ServFail,
        Some((other, span)) => {
            cx.err(
                span,
                format!("on_unsafe {other:?} is not next, hold or servfail"),
            );
            OnUnsafe::Next
        }
    };
    let Some(g) = &s.promote_guard else {
        if let Some(v) = &s.on_unsafe {
            cx.err(v.span(), "`on_unsafe` needs a `promote_guard`");
        }
        return None;
    };
    let Some(&id) = known.check_ids.get(g.get_ref()) else {
        cx.err(
            g.span(),
            format!(
                "promote_guard names undefined check {:?} (no [checks.{}] table)",
                g.get_ref(),
                g.get_ref()
            ),
        );
        return None;
    };
    if known.checks[id].figure.is_none() {
        cx.err(
            g.span(),
            format!(
                "promote_guard check {:?} reads no figure: give it `extract` and a bound",
                g.get_ref()
            ),
        );
        return None;
    }
    if policy == Some(Policy::Weighted) {
        cx.err(
            g.span(),
            "promote_guard needs a policy that ranks regions (a weighted client has no first \
             region to be moved away from)",
        );
        return None;
    }
    Some((id, on_unsafe))
}

/// The service's name, and the most specific configured zone holding it.
fn name_and_zone(
    cx: &mut Ctx,
    s: &RawService,
    zones: &[CheckedZone],
) -> (Option<Name>, Option<usize>) {
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
    (name, zone)
}

/// The policy and the options that shape its answers.
struct PolicyOptions {
    /// `None` when the policy is unknown (reported).
    policy: Option<Policy>,
    min_healthy: usize,
    answers: usize,
    latency_margin_ms: f32,
    weight_mode: WeightMode,
}

fn policy_options(cx: &mut Ctx, s: &RawService) -> PolicyOptions {
    let policy = match &s.policy {
        None => Some(Policy::Geo),
        Some(p) => match p.get_ref().parse::<Policy>() {
            Ok(policy) => Some(policy),
            Err(()) => {
                let known: Vec<&str> = Policy::ALL.iter().map(|p| p.name()).collect();
                cx.err(
                    p.span(),
                    format!(
                        "unknown policy {:?} (known: {})",
                        p.get_ref(),
                        known.join(", ")
                    ),
                );
                None
            }
        },
    };
    let min_healthy = match &s.min_healthy {
        None => 1,
        Some(v) if (1..=1000).contains(v.get_ref()) => *v.get_ref() as usize,
        Some(v) => {
            cx.err(v.span(), "min_healthy must be 1 or more");
            1
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
    PolicyOptions {
        policy,
        min_healthy,
        answers,
        latency_margin_ms,
        weight_mode,
    }
}

/// `on_all_down`, and the `fallback` addresses that go with it (and only with it).
fn all_down(cx: &mut Ctx, s: &RawService) -> CheckedAllDown {
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
    match on_all_down {
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
    }
}

/// The service's `check`: it probes every endpoint that names none of its own.
fn service_check(
    cx: &mut Ctx,
    s: &RawService,
    check_ids: &HashMap<String, usize>,
) -> Option<usize> {
    s.check.as_ref().and_then(|c| {
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
    })
}

/// A failover service's `regions` (its failover order); any other service's `default_order`,
/// else the global one.
fn region_order(
    cx: &mut Ctx,
    s: &RawService,
    policy: Option<Policy>,
    known: &Known<'_>,
) -> Vec<RegionId> {
    match (policy, &s.regions, &s.default_order) {
        (Some(Policy::Failover), Some(list), _) => {
            region_list(cx, list.get_ref(), known.region_ids, "regions")
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
        (_, None, Some(list)) => region_list(cx, list.get_ref(), known.region_ids, "default_order"),
        (_, None, None) => known.default_order.to_vec(),
    }
}

/// The endpoints: each one checked, a failover one against the failover order, none listed
/// twice in a region, and no more regions than a service may span.
fn endpoints(
    cx: &mut Ctx,
    s: &RawService,
    policy: Option<Policy>,
    order: &[RegionId],
    checks: Probes,
    known: &Known<'_>,
) -> Vec<CheckedEndpoint> {
    if s.endpoints.get_ref().is_empty() {
        cx.err(s.endpoints.span(), "a service needs at least one endpoint");
    }
    let mut endpoints = Vec::new();
    let mut seen = HashSet::new();
    for e in s.endpoints.get_ref() {
        let Some(ep) = endpoint(cx, e, known, checks) else {
            continue;
        };
        if policy == Some(Policy::Failover) && !order.is_empty() && !order.contains(&ep.region) {
            cx.err(
                e.get_ref().region.span(),
                "endpoint region is not in this failover service's `regions`",
            );
        }
        if !seen.insert((ep.region, ep.address.clone())) {
            cx.err(
                e.span(),
                format!("endpoint {} is listed twice in this region", ep.address),
            );
            continue;
        }
        endpoints.push(ep);
    }
    hostname_endpoints(cx, s, &endpoints);
    let mut used: Vec<RegionId> = endpoints.iter().map(|e| e.region).collect();
    used.sort();
    used.dedup();
    if used.len() > MAX_SERVICE_REGIONS {
        cx.err(
            s.endpoints.span(),
            format!("a service may span at most {MAX_SERVICE_REGIONS} regions"),
        );
    }
    endpoints
}

/// A service answers addresses or a CNAME, never both: its endpoints are all addresses or all
/// hostnames; a CNAME answer carries one target, so `answers` stays 1.
fn hostname_endpoints(cx: &mut Ctx, s: &RawService, endpoints: &[CheckedEndpoint]) {
    let hosts = endpoints
        .iter()
        .filter(|e| matches!(e.address, Address::Host(_)))
        .count();
    if hosts == 0 {
        return;
    }
    if hosts < endpoints.len() {
        cx.err(
            s.endpoints.span(),
            "a service's endpoints are all addresses or all hostnames (`target`), not a mix: \
             a name cannot answer both addresses and a CNAME",
        );
    }
    if let Some(a) = s.answers.as_ref().filter(|a| *a.get_ref() != 1) {
        cx.err(
            a.span(),
            "a service with hostname endpoints answers one CNAME: `answers` must be 1",
        );
    }
}

/// Endpoint weights belong to the weighted policy, which needs one endpoint above weight 0.
fn check_weights(
    cx: &mut Ctx,
    s: &RawService,
    policy: Option<Policy>,
    endpoints: &[CheckedEndpoint],
) {
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
}

/// The `[cidr_maps.NAME]` table the service places its clients with first.
fn cidr_map(cx: &mut Ctx, s: &RawService, cidr_map_ids: &HashMap<String, usize>) -> Option<usize> {
    s.cidr_map.as_ref().and_then(|m| {
        let id = cidr_map_ids.get(m.get_ref()).copied();
        if id.is_none() {
            cx.err(m.span(), format!("no [cidr_maps.{}] table", m.get_ref()));
        }
        id
    })
}

/// Residency rules: the regions allowed to answer clients from some countries or continents;
/// each rule must leave those clients a region that has an endpoint.
fn residency(
    cx: &mut Ctx,
    s: &RawService,
    endpoints: &[CheckedEndpoint],
    region_ids: &HashMap<String, RegionId>,
) -> Vec<CheckedResidency> {
    let mut residency = Vec::new();
    for rule in &s.residency {
        let r = rule.get_ref();
        let places = geo_codes(cx, &r.subdivisions, &r.countries, &r.continents);
        if r.subdivisions.is_empty() && r.countries.is_empty() && r.continents.is_empty() {
            cx.err(
                rule.span(),
                "a residency rule needs subdivisions, countries or continents to apply to",
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
        residency.push(CheckedResidency { places, allowed });
    }
    residency
}

/// One endpoint: its region, address and port, and the check probing it (its own, else the
/// service's) with the address:port that check probes.
fn endpoint(
    cx: &mut Ctx,
    e: &S<RawEndpoint>,
    known: &Known<'_>,
    probes: Probes,
) -> Option<CheckedEndpoint> {
    let span = e.span();
    let e = e.get_ref();
    let Known {
        region_ids,
        checks,
        check_ids,
        ..
    } = *known;
    let region = region_ids.get(e.region.get_ref()).copied();
    if region.is_none() {
        cx.err(
            e.region.span(),
            format!("endpoint names undefined region {:?}", e.region.get_ref()),
        );
    }
    let address = endpoint_address(cx, e, span.clone());
    let address_span = e
        .address
        .as_ref()
        .or(e.target.as_ref())
        .map_or(span, |a| a.span());
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
    let check = own_check.or(probes.health);
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
    // The guard probes `check_address` too.
    if check_address.is_some() && check.is_none() && e.check.is_none() && probes.guard.is_none() {
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
    let address = address?;
    let probe_of = |cx: &mut Ctx, id: usize| {
        let spec = &checks[id];
        let probe_port = spec
            .port
            .or((port != 0).then_some(port))
            .unwrap_or(spec.kind.default_port());
        if probe_port == 0 {
            cx.err(
                address_span.clone(),
                format!(
                    "tcp check {:?} needs a port: set `port` on the check or the endpoint",
                    spec.name
                ),
            );
        }
        let probe = match (check_address, &address) {
            (Some(ip), _) | (None, &Address::Ip(ip)) => {
                ProbeAddr::Ip(std::net::SocketAddr::new(ip, probe_port))
            }
            (None, Address::Host(name)) => ProbeAddr::Host(name.clone(), probe_port),
        };
        (id, probe)
    };
    let probe = check.map(|id| probe_of(cx, id));
    let guard = probes.guard.map(|id| probe_of(cx, id));
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
        guard,
        weight,
    })
}

/// What an endpoint answers: its `address`, or its `target` hostname (exactly one of them).
fn endpoint_address(cx: &mut Ctx, e: &RawEndpoint, span: Range<usize>) -> Option<Address> {
    match (&e.address, &e.target) {
        (Some(_), Some(t)) => {
            cx.err(t.span(), "an endpoint has `address` or `target`, not both");
            None
        }
        (None, None) => {
            cx.err(
                span,
                "an endpoint needs `address` (an IP address) or `target` (a hostname)",
            );
            None
        }
        (Some(a), None) => match a.get_ref().parse::<IpAddr>() {
            Ok(ip) => Some(Address::Ip(ip)),
            Err(_) => {
                cx.err(a.span(), format!("{:?} is not an IP address", a.get_ref()));
                None
            }
        },
        (None, Some(t)) => {
            let text = t.get_ref();
            if text.trim_end_matches('.').parse::<IpAddr>().is_ok() {
                cx.err(
                    t.span(),
                    format!("target {text:?} is an IP address: give it as `address`"),
                );
                return None;
            }
            match parse_name(text, None) {
                Ok(name) if name.is_root() => {
                    cx.err(t.span(), "target must be a hostname, not the root");
                    None
                }
                Ok(name) if name.is_wildcard() => {
                    cx.err(
                        t.span(),
                        format!("target {name} is a wildcard: a CNAME needs a real name"),
                    );
                    None
                }
                Ok(name) => Some(Address::Host(name)),
                Err(why) => {
                    cx.err(
                        t.span(),
                        format!("target {text:?} is not a valid name: {why}"),
                    );
                    None
                }
            }
        }
    }
}

/// A traffic-managed name must not also hold static address records or a CNAME, nor sit below
/// a delegation.
pub(super) fn check_service_conflicts(
    cx: &mut Ctx,
    raw: &RawConfig,
    zones: &[CheckedZone],
    services: &[CheckedService],
) {
    // Each zone's records by owner name, once: a scan of every record per service would make
    // checking many names against a big zone quadratic.
    let index: Vec<RecordIndex> = zones.iter().map(RecordIndex::new).collect();
    for svc in services {
        let zone = &zones[svc.zone];
        let records = &index[svc.zone];
        if is_alias(svc) {
            alias_conflicts(cx, raw, zone, records, svc);
            alias_loops(cx, raw, zones, &index, services, svc);
            continue;
        }
        // Found only when there is something to report: a scan of every service per service
        // would make checking many names quadratic.
        let span = || name_span(raw, &svc.name);
        let clash = records.at(zone, &svc.name).find(|(r, _)| {
            matches!(
                r.record_type(),
                RecordType::A | RecordType::AAAA | RecordType::CNAME
            )
        });
        if let Some((rec, at)) = clash {
            let kind = if rec.record_type() == RecordType::CNAME {
                "a CNAME beside a traffic-managed name"
            } else {
                "static address records beside a traffic-managed name"
            };
            match at {
                // A zone file's record is reported at its line, naming the service.
                Place::File(_) => {
                    let service = cx.place(&Place::Config(span()));
                    cx.err_at(
                        at,
                        format!(
                            "{} {}: a static record at a traffic-managed name (the service at {service} answers it)",
                            rec.name,
                            rec.record_type()
                        ),
                    );
                }
                Place::Config(_) => {
                    let record = cx.place(at);
                    cx.err(
                        span(),
                        format!(
                            "{}: zone {} has {kind} (at {record})",
                            svc.name, zone.origin
                        ),
                    );
                }
            }
        }
        below_delegation(cx, zone, records, &svc.name, span);
    }
}

/// Each zone's records by owner name (lower case), in the order given.
struct RecordIndex {
    by_name: HashMap<LowerName, Vec<usize>>,
}

impl RecordIndex {
    fn new(zone: &CheckedZone) -> RecordIndex {
        let mut by_name: HashMap<LowerName, Vec<usize>> = HashMap::new();
        for (i, r) in zone.records.iter().enumerate() {
            by_name.entry(LowerName::new(&r.name)).or_default().push(i);
        }
        RecordIndex { by_name }
    }

    /// The zone's records at `name`, with where each was given.
    fn at<'z>(
        &'z self,
        zone: &'z CheckedZone,
        name: &Name,
    ) -> impl Iterator<Item = (&'z Record, &'z Place)> + 'z {
        self.by_name
            .get(&LowerName::new(name))
            .into_iter()
            .flatten()
            .map(|&i| (&zone.records[i], &zone.places[i]))
    }
}

/// Reports a service at or below a name of the zone with NS records (the first such record
/// given), looking up the service's name and each of its ancestors.
fn below_delegation(
    cx: &mut Ctx,
    zone: &CheckedZone,
    records: &RecordIndex,
    name: &Name,
    span: impl Fn() -> Range<usize>,
) {
    let cut = (0..=name.num_labels())
        .map(|n| name.trim_to(n as usize))
        .filter_map(|ancestor| records.by_name.get(&LowerName::new(&ancestor)))
        .flatten()
        .filter(|&&i| zone.records[i].record_type() == RecordType::NS)
        .min();
    if let Some(&i) = cut {
        let delegation = cx.place(&zone.places[i]);
        cx.err(
            span(),
            format!(
                "service {name} is below the delegation at {} ({delegation})",
                zone.records[i].name
            ),
        );
    }
}

/// Whether a service answers with a CNAME (its endpoints are hostnames).
fn is_alias(svc: &CheckedService) -> bool {
    svc.endpoints
        .first()
        .is_some_and(|e| matches!(e.address, Address::Host(_)))
}

/// A CNAME is the only data at its name (RFC 1034 3.6.2): a hostname service's name holds no
/// static records and is not a zone apex (whose SOA and NS it would hide); nor may it sit
/// below a delegation.
fn alias_conflicts(
    cx: &mut Ctx,
    raw: &RawConfig,
    zone: &CheckedZone,
    records: &RecordIndex,
    svc: &CheckedService,
) {
    let span = || name_span(raw, &svc.name);
    if svc.name == zone.origin {
        cx.err(
            span(),
            format!(
                "service {} has hostname endpoints, answered with a CNAME, which cannot be at the zone apex",
                svc.name
            ),
        );
        return;
    }
    if let Some((rec, at)) = records.at(zone, &svc.name).next() {
        let record = cx.place(at);
        cx.err(
            span(),
            format!(
                "{}: zone {} has {} records beside a hostname service (at {record}; a CNAME allows no other data at its name)",
                svc.name,
                zone.origin,
                rec.record_type()
            ),
        );
    }
    below_delegation(cx, zone, records, &svc.name, span);
}

/// The CNAME targets answered at `name`: a static CNAME's, or a hostname service's (exact, or
/// a wildcard service standing in for a name that holds nothing of its own).
fn cname_targets(
    zones: &[CheckedZone],
    index: &[RecordIndex],
    services: &[CheckedService],
    name: &Name,
) -> Vec<Name> {
    let mut out = Vec::new();
    let mut static_data = false;
    for (zone, records) in zones.iter().zip(index) {
        if !zone.origin.zone_of(name) {
            continue;
        }
        for (r, _) in records.at(zone, name) {
            static_data = true;
            if let RData::CNAME(target) = &r.data {
                out.push(target.0.clone());
            }
        }
    }
    for svc in services.iter().filter(|s| is_alias(s)) {
        let matches = &svc.name == name
            || (svc.name.is_wildcard()
                && !static_data
                && name.num_labels() > svc.name.base_name().num_labels()
                && svc.name.base_name().zone_of(name));
        if matches {
            out.extend(svc.endpoints.iter().filter_map(|e| match &e.address {
                Address::Host(target) => Some(target.clone()),
                Address::Ip(_) => None,
            }));
        }
    }
    out
}

/// A hostname service's targets must not lead back to it, directly or through static CNAMEs
/// and other hostname services: resolvers would chase the loop until they gave up.
fn alias_loops(
    cx: &mut Ctx,
    raw: &RawConfig,
    zones: &[CheckedZone],
    index: &[RecordIndex],
    services: &[CheckedService],
    svc: &CheckedService,
) {
    let own = LowerName::new(&svc.name);
    for e in &svc.endpoints {
        let Address::Host(target) = &e.address else {
            continue;
        };
        // Depth-first over the names the chain can reach, each once; `path` is the chain
        // that got there, for the message.
        let mut stack: Vec<Vec<Name>> = vec![vec![svc.name.clone(), target.clone()]];
        let mut seen: HashSet<LowerName> = HashSet::new();
        while let Some(path) = stack.pop() {
            let Some(last) = path.last() else { continue };
            let key = LowerName::new(last);
            if key == own || (svc.name.is_wildcard() && covered_by(&svc.name, last)) {
                let text: Vec<String> = path.iter().map(|n| n.to_string()).collect();
                cx.err(
                    name_span(raw, &svc.name),
                    format!(
                        "target {target} leads back to service {}: CNAME loop {}",
                        svc.name,
                        text.join(" -> ")
                    ),
                );
                return;
            }
            if !seen.insert(key) || path.len() > 64 {
                continue;
            }
            for next in cname_targets(zones, index, services, last) {
                let mut longer = path.clone();
                longer.push(next);
                stack.push(longer);
            }
        }
    }
}

/// Whether a wildcard service (`*.cdn.example.com.`) stands in for `name`.
fn covered_by(wildcard: &Name, name: &Name) -> bool {
    let parent = wildcard.base_name();
    name.num_labels() > parent.num_labels() && parent.zone_of(name)
}

/// Where the first service entry with this name gives it.
fn name_span(raw: &RawConfig, name: &Name) -> Range<usize> {
    raw.services
        .iter()
        .find(|s| parse_name(s.get_ref().name.get_ref(), None).ok().as_ref() == Some(name))
        .map(|s| s.get_ref().name.span())
        .unwrap_or_default()
}

/// Without a `[geoip]` database, the policies that place clients by location cannot work.
pub(super) fn check_placement_needs_geoip(cx: &mut Ctx, raw: &RawConfig) {
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
