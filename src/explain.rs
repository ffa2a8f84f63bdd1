//! `explain`: the steps `decide` took for one query, as text for people or JSON for machines.
//! Built from the same [`answer`] call the DNS handler makes, with a [`Recorder`] trace.
pub mod whatif;

use std::borrow::Cow;
use std::fmt::Write as _;

use hickory_proto::rr::{LowerName, Name, RecordType};
use serde::Serialize;

use crate::routing::RoutingTable;
use crate::routing::admin::DRAIN_BUCKETS;
use crate::routing::answer::{answer, rcode_name};
use crate::routing::latency::RowKind;
use crate::routing::prefix::mask;
use crate::routing::query::Client;
use crate::routing::scenario::{Assertion, Expect, Scenario};
use crate::routing::table::{Family, TargetId};
use crate::routing::trace::{Outcome, Rank, Recorder, RttSource, Step};
use crate::settings::FigureVerdict;

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Explanation {
    pub name: String,
    #[serde(rename = "type")]
    pub qtype: String,
    pub client: String,
    pub client_source: Cow<'static, str>,
    pub geoip: Option<GeoStep>,
    /// The client's autonomous system, when a CIDR map with ASNs looked it up.
    #[serde(default)]
    pub asn: Option<AsnStep>,
    pub service: Option<ServiceStep>,
    pub candidates: Vec<CandidateStep>,
    pub chosen_region: Option<String>,
    /// Why the decision came out this way (preferred, failover, fail-open, ...).
    pub reason: Option<Cow<'static, str>>,
    /// Set when no region was healthy: what `on_all_down` did.
    pub all_down: Option<Cow<'static, str>>,
    pub generation: u64,
    pub rcode: String,
    pub authoritative: bool,
    pub answers: Vec<String>,
    pub authority: Vec<String>,
    pub ttl: Option<u32>,
    /// The ECS scope prefix a query with this client subnet gets back.
    pub ecs_scope: Option<u8>,
    /// Some region is drained: the client's bucket as a percentage (0 to 100). A drain of
    /// p % moves the client when its bucket is below p.
    pub drain_bucket: Option<f64>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct GeoStep {
    /// The database file the result came from.
    pub database: Option<String>,
    /// The config names more than one database (the text output then names the file).
    #[serde(skip, default)]
    pub several: bool,
    pub network: String,
    pub found: bool,
    pub country: Option<String>,
    pub continent: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// The database's whole record, for context (subdivisions, names).
    pub record: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct AsnStep {
    /// The ASN database file the result came from.
    pub database: Option<String>,
    pub network: String,
    pub asn: Option<u32>,
    pub organisation: Option<String>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct ServiceStep {
    pub name: String,
    pub policy: Cow<'static, str>,
    pub answers: usize,
    pub ttl: u32,
    /// `promote_guard` and `on_unsafe`, when the service has a guard.
    #[serde(default)]
    pub promote_guard: Option<String>,
    #[serde(default)]
    pub on_unsafe: Option<String>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct CandidateStep {
    pub region: String,
    pub why: String,
    pub outcome: String,
    /// Each endpoint of the queried family with its health.
    pub endpoints: Vec<EndpointStep>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct EndpointStep {
    pub address: String,
    /// up, down, unknown (no verdict yet, served) or unmonitored (no check).
    pub health: Cow<'static, str>,
    /// Fleet mode: how many instances observe it and how many see it down.
    pub observers: Option<u8>,
    pub seen_down_by: Option<u8>,
    /// The service's `promote_guard` on this endpoint: its figure and whether it is
    /// promotable.
    #[serde(default)]
    pub guard: Option<GuardStep>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct GuardStep {
    pub check: String,
    pub figure: Option<f64>,
    pub promotable: bool,
    /// `lag 42 s > 5 s`, `lag 1.5 s`, `lag: no figure`.
    pub text: String,
}

/// A guard target's figure against its check's bounds, for people: `lag 42 s > 5 s`.
pub fn figure_text(rt: &RoutingTable, target: TargetId) -> String {
    let compiled = &rt.compiled;
    let check = &compiled.checks[compiled.targets[target.index()].check.index()];
    let figure = rt.health.targets.get(target.index()).and_then(|t| t.figure);
    let Some(spec) = &check.figure else {
        return check.name.clone();
    };
    let unit = if spec.unit.is_empty() {
        String::new()
    } else {
        format!(" {}", spec.unit)
    };
    match (figure, spec.judge(figure)) {
        (Some(v), FigureVerdict::Above(max)) => format!("{} {v}{unit} > {max}{unit}", check.name),
        (Some(v), FigureVerdict::Below(min)) => format!("{} {v}{unit} < {min}{unit}", check.name),
        (Some(v), _) => format!("{} {v}{unit}", check.name),
        (None, _) => format!("{}: no figure", check.name),
    }
}

/// Parses `IP` or `IP/PREFIX`. With a prefix the client is treated as an ECS subnet.
pub fn parse_client(s: &str) -> Result<Client, String> {
    Client::parse(s)
}

/// Explains a request given as text (the CLI's arguments, the admin API's query string).
pub fn explain_request(
    rt: &RoutingTable,
    name: &str,
    qtype: &str,
    client: &str,
) -> Result<Explanation, String> {
    let mut parsed =
        Name::from_ascii(name).map_err(|e| format!("{name:?} is not a domain name: {e}"))?;
    parsed.set_fqdn(true);
    let qtype: RecordType = qtype
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| format!("{qtype:?} is not a record type"))?;
    let client = parse_client(client).map_err(|e| format!("client: {e}"))?;
    Ok(explain(rt, &parsed, qtype, &client))
}

pub fn explain(rt: &RoutingTable, name: &Name, qtype: RecordType, client: &Client) -> Explanation {
    let table = &*rt.compiled;
    let mut rec = Recorder::default();
    let ans = answer(rt, &LowerName::new(name), qtype, client, &mut rec);
    let mut out = Explanation {
        name: name.to_ascii(),
        qtype: qtype.to_string(),
        client: match client.ecs_source {
            Some(p) => format!("{}/{p}", client.addr),
            None => client.addr.to_string(),
        },
        client_source: if client.ecs_source.is_some() {
            "ECS subnet".into()
        } else {
            "packet source address".into()
        },
        geoip: None,
        asn: None,
        service: None,
        candidates: Vec::new(),
        chosen_region: None,
        reason: None,
        all_down: None,
        generation: rt.generation,
        rcode: rcode_name(ans.rcode).to_string(),
        authoritative: ans.authoritative,
        answers: match ans.renamed() {
            Some(records) => records.iter().map(|r| r.to_string()).collect(),
            None => ans.answers.iter().map(|r| r.to_string()).collect(),
        },
        authority: ans.authority.iter().map(|r| r.to_string()).collect(),
        ttl: ans.decision.map(|d| d.ttl),
        ecs_scope: client.ecs_source.map(|_| ans.ecs_scope()),
        drain_bucket: None,
    };
    // The service is known only at the end of the trace; find it first for endpoint listings.
    let rec_service = rec.steps.iter().find_map(|s| match s {
        Step::Decided(d) => Some(d.service),
        _ => None,
    });
    for step in rec.steps {
        match step {
            Step::Geo { client, geo } => {
                // The database that answered, when the config names several.
                let set = table.geo.as_ref();
                let answered = set.and_then(|s| s.lookup_in(client.addr).1);
                out.geoip = Some(GeoStep {
                    database: answered.map(|db| db.path().display().to_string()),
                    several: set.is_some_and(|s| s.databases().len() > 1),
                    network: format!(
                        "{}/{}",
                        mask(client.addr, geo.network_prefix),
                        geo.network_prefix
                    ),
                    found: geo.found,
                    country: geo.country.map(|c| c.to_string()),
                    continent: geo.continent.map(|c| c.to_string()),
                    latitude: geo.location.map(|l| l.lat),
                    longitude: geo.location.map(|l| l.lon),
                    record: answered.and_then(|db| db.describe(client.addr)),
                });
            }
            Step::DrainBucket(bucket) => {
                out.drain_bucket = Some(percent_of_buckets(bucket));
            }
            Step::Asn { client, asn } => {
                let answered = table.asn.as_ref().and_then(|s| s.lookup_in(client.addr).1);
                out.asn = Some(AsnStep {
                    database: answered.map(|db| db.path().display().to_string()),
                    network: format!(
                        "{}/{}",
                        mask(client.addr, asn.network_prefix),
                        asn.network_prefix
                    ),
                    asn: asn.asn,
                    organisation: answered
                        .and_then(|db| db.organisation(&asn))
                        .map(str::to_string),
                });
            }
            Step::Candidate {
                region,
                rank,
                outcome,
            } => {
                let r = table.region(region);
                let why = match rank {
                    Rank::Subdivision => "lists the client's subdivision".to_string(),
                    Rank::Country => "lists the client's country".to_string(),
                    Rank::Continent => "lists the client's continent".to_string(),
                    Rank::Distance { km } => format!("{km} km from the client"),
                    Rank::DefaultOrder { position } => {
                        format!("default order position {}", position + 1)
                    }
                    Rank::FailoverOrder { position } => {
                        format!("failover order position {}", position + 1)
                    }
                    Rank::CidrOverride => "CIDR override names it".to_string(),
                    Rank::AsnOverride { asn } => format!("ASN override names it (AS{asn})"),
                    Rank::Proximity { km, biased_km } => {
                        format!("{km} km, {biased_km} km after bias")
                    }
                    Rank::Latency {
                        rtt_ms,
                        penalty_ms,
                        source,
                        incumbent,
                    } => {
                        let from = match source {
                            RttSource::Map(RowKind::Cidr) => "latency map (CIDR)",
                            RttSource::Map(RowKind::Country) => "latency map (country)",
                            RttSource::Map(RowKind::Continent) => "latency map (continent)",
                            RttSource::Estimate => "distance estimate",
                        };
                        let keep = if incumbent { ", incumbent" } else { "" };
                        format!("{rtt_ms:.1} ms ({from}) + {penalty_ms:.1} ms measured{keep}")
                    }
                    Rank::Weight { weight } => format!("weight {weight}"),
                };
                let family = Family::of_record_type(qtype).unwrap_or(Family::V4);
                let endpoints = step_endpoints(rt, region, family, &rec_service);
                out.candidates.push(CandidateStep {
                    region: r.name.clone(),
                    why,
                    outcome: match outcome {
                        Outcome::Chosen => "chosen".to_string(),
                        Outcome::NoEndpointsOfFamily => {
                            "skipped: no endpoint of this address family".to_string()
                        }
                        Outcome::Unhealthy { up, total } => {
                            format!("skipped: {up} of {total} endpoints up")
                        }
                        Outcome::Evacuated => "skipped: evacuated".to_string(),
                        Outcome::Drained => format!(
                            "skipped: drained {} %, moves this client",
                            drain_percent(rt, region)
                        ),
                        Outcome::Residency => "skipped: residency rule excludes it".to_string(),
                        Outcome::NotNeeded => "not needed".to_string(),
                        Outcome::NotPromotable { target } => format!(
                            "skipped: not promotable: {}",
                            target.map_or("guard fails".to_string(), |t| figure_text(rt, t))
                        ),
                    } + &match rt.admin.drained.get(region.index()) {
                        // A partial drain that leaves this client where it is.
                        Some(&b) if b > 0 && outcome != Outcome::Drained => {
                            format!(" (drained {} %, client stays)", drain_percent(rt, region))
                        }
                        _ => String::new(),
                    },
                    endpoints,
                });
            }
            Step::AllDown(action) => {
                out.all_down = Some(action.name().into());
            }
            Step::Decided(d) => {
                let svc = table.service(d.service);
                out.service = Some(ServiceStep {
                    name: svc.name.to_ascii(),
                    policy: svc.policy.name().into(),
                    answers: svc.answers,
                    ttl: svc.ttl,
                    promote_guard: svc
                        .guard
                        .map(|g| table.checks[g.check.index()].name.clone()),
                    on_unsafe: svc.guard.map(|g| g.on_unsafe.name().to_string()),
                });
                out.chosen_region = d.region.map(|r| table.region(r).name.clone());
                out.reason = Some(d.reason.name().into());
            }
        }
    }
    out
}

/// A drain bucket as a percentage of all buckets.
fn percent_of_buckets(buckets: u16) -> f64 {
    f64::from(buckets) * 100.0 / f64::from(DRAIN_BUCKETS)
}

/// How much of a region is drained, as the operator gave it.
fn drain_percent(rt: &RoutingTable, region: crate::routing::table::RegionId) -> f64 {
    percent_of_buckets(rt.admin.drained.get(region.index()).copied().unwrap_or(0))
}

fn step_endpoints(
    rt: &RoutingTable,
    region: crate::routing::table::RegionId,
    family: Family,
    service: &Option<crate::routing::table::ServiceId>,
) -> Vec<EndpointStep> {
    let Some(service) = service else {
        return Vec::new();
    };
    let svc = rt.compiled.service(*service);
    svc.regions
        .iter()
        .filter(|sr| sr.region == region)
        .flat_map(|sr| sr.endpoints(family).iter())
        .map(|id| {
            let e = rt.compiled.endpoint(*id);
            let votes = e.target.and_then(|t| rt.health.targets.get(t.index()));
            EndpointStep {
                address: e.address.to_string(),
                health: rt
                    .endpoint_health(*id)
                    .map_or("unmonitored", |h| h.name())
                    .into(),
                observers: votes.map(|v| v.observers),
                seen_down_by: votes.map(|v| v.down_votes),
                guard: e.guard.filter(|_| svc.guard.is_some()).map(|t| {
                    let th = rt.health.targets.get(t.index());
                    GuardStep {
                        check: rt.compiled.checks[rt.compiled.targets[t.index()].check.index()]
                            .name
                            .clone(),
                        figure: th.and_then(|h| h.figure),
                        promotable: th.is_some_and(|h| h.promotable),
                        text: figure_text(rt, t),
                    }
                }),
            }
        })
        .collect()
}

impl Explanation {
    /// The human-readable form `meridian explain` prints.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "query      {} {}", self.name, self.qtype);
        let _ = writeln!(s, "client     {} ({})", self.client, self.client_source);
        if let Some(g) = &self.geoip {
            let place = if g.found {
                let loc = match (g.latitude, g.longitude) {
                    (Some(a), Some(b)) => format!(", location {a:.2},{b:.2}"),
                    _ => ", no location".to_string(),
                };
                format!(
                    "country {}, continent {}{loc}",
                    g.country.as_deref().unwrap_or("-"),
                    g.continent.as_deref().unwrap_or("-"),
                )
            } else {
                "not in the database".to_string()
            };
            let _ = writeln!(s, "geoip      network {}: {place}", g.network);
            if let (true, Some(db)) = (g.several, &g.database) {
                let _ = writeln!(s, "           from {db}");
            }
            if let Some(sub) = g
                .record
                .as_ref()
                .and_then(|r| r.pointer("/subdivisions/0/iso_code"))
                .and_then(|v| v.as_str())
            {
                let _ = writeln!(s, "           subdivision {sub}");
            }
        }
        if let Some(a) = &self.asn {
            let what = match (a.asn, &a.organisation) {
                (Some(n), Some(org)) => format!("AS{n} {org}"),
                (Some(n), None) => format!("AS{n}"),
                (None, _) => "no ASN in the database".to_string(),
            };
            let _ = writeln!(s, "asn        network {}: {what}", a.network);
        }
        if self.geoip.is_none() && self.service.is_some() {
            let _ = writeln!(
                s,
                "geoip      not consulted (the policy does not depend on location)"
            );
        }
        if let Some(b) = self.drain_bucket {
            let _ = writeln!(
                s,
                "drain      bucket {b:.2} % (a drain of p % moves the client when p is above it)"
            );
        }
        if let Some(svc) = &self.service {
            let _ = writeln!(
                s,
                "service    {} (policy {}, answers {}, ttl {})",
                svc.name, svc.policy, svc.answers, svc.ttl
            );
        }
        if !self.candidates.is_empty() {
            let _ = writeln!(s, "candidates (in this client's order)");
            let width = self
                .candidates
                .iter()
                .map(|c| c.region.len())
                .max()
                .unwrap_or(0);
            for (i, c) in self.candidates.iter().enumerate() {
                let health = c
                    .endpoints
                    .iter()
                    .map(|e| {
                        let guard = e.guard.as_ref().map_or(String::new(), |g| {
                            let verdict = if g.promotable { "" } else { ", not promotable" };
                            format!(", {}{verdict}", g.text)
                        });
                        match (e.observers, e.seen_down_by) {
                            (Some(n), Some(d)) if n > 1 => {
                                format!("{} {} (down from {d} of {n}){guard}", e.address, e.health)
                            }
                            _ => format!("{} {}{guard}", e.address, e.health),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let _ = writeln!(
                    s,
                    "  {}. {:width$}  {:32}  {:40}  [{health}]",
                    i + 1,
                    c.region,
                    c.why,
                    c.outcome
                );
            }
        }
        if let Some(action) = &self.all_down {
            let _ = writeln!(s, "all down   no region is healthy: on_all_down = {action}");
        }
        if let Some(svc) = &self.service
            && let (Some(guard), Some(on_unsafe)) = (&svc.promote_guard, &svc.on_unsafe)
        {
            let what = match self.reason.as_deref() {
                Some("guard-hold") => {
                    ": no region to move to is promotable, the first region answers (fail static)"
                }
                Some("guard-servfail") => ": no region to move to is promotable, SERVFAIL",
                _ => "",
            };
            let _ = writeln!(
                s,
                "guard      promote_guard {guard}, on_unsafe = {on_unsafe}{what}"
            );
        }
        if let Some(r) = &self.chosen_region {
            let _ = writeln!(
                s,
                "chosen     {r} ({})",
                self.reason.as_deref().unwrap_or("-")
            );
        }
        let _ = writeln!(s, "table      generation {}", self.generation);
        let flags = if self.authoritative {
            " (authoritative)"
        } else {
            ""
        };
        let _ = writeln!(s, "rcode      {}{flags}", self.rcode);
        for a in &self.answers {
            let _ = writeln!(s, "answer     {a}");
        }
        for a in &self.authority {
            let _ = writeln!(s, "authority  {a}");
        }
        if let Some(ttl) = self.ttl {
            let _ = writeln!(s, "ttl        {ttl}");
        }
        match self.ecs_scope {
            Some(p) => {
                let _ = writeln!(s, "ecs scope  /{p}");
            }
            None => {
                let _ = writeln!(s, "ecs scope  none (no ECS in this query)");
            }
        }
        s
    }
}

/// Evaluates every `[[assert]]` of a config through the same `answer()` the DNS path runs,
/// each in its own scenario: the failed ones, each with `assertion failed: ... got ...
/// (because ...)`.
pub fn assertion_failures(
    compiled: &std::sync::Arc<crate::routing::Compiled>,
) -> Vec<(&Assertion, String)> {
    compiled
        .assertions
        .iter()
        .filter_map(|a| Some((a, assertion_failure(compiled, a)?)))
        .collect()
}

fn assertion_failure(
    compiled: &std::sync::Arc<crate::routing::Compiled>,
    a: &Assertion,
) -> Option<String> {
    let rt = a.scenario.table(compiled.clone());
    let e = explain(&rt, &a.name, a.qtype, &a.client);
    let mut wrong = Vec::new();
    for want in &a.expect {
        match want {
            Expect::Region(r) => {
                let want = &compiled.region(*r).name;
                if e.chosen_region.as_ref() != Some(want) {
                    wrong.push(format!(
                        "expected region {want}, got {}",
                        e.chosen_region.as_deref().unwrap_or("no region")
                    ));
                }
            }
            Expect::Answer(want) => {
                let got: Vec<String> = e.answers.iter().map(|r| rdata_of(r)).collect();
                let norm = |v: &[String]| {
                    let mut v: Vec<String> = v
                        .iter()
                        .map(|s| s.trim_end_matches('.').to_ascii_lowercase())
                        .collect();
                    v.sort();
                    v
                };
                if norm(want) != norm(&got) {
                    wrong.push(format!(
                        "expected answer [{}], got [{}]",
                        want.join(", "),
                        got.join(", ")
                    ));
                }
            }
            Expect::Rcode(r) => {
                if e.rcode != rcode_name(*r) {
                    wrong.push(format!("expected {}, got {}", rcode_name(*r), e.rcode));
                }
            }
            Expect::Scope(p) => {
                if e.ecs_scope != Some(*p) {
                    wrong.push(match e.ecs_scope {
                        Some(got) => format!("expected scope /{p}, got /{got}"),
                        None => format!(
                            "expected scope /{p}, got none (give the client as a subnet, \
                             IP/PREFIX, to ask with ECS)"
                        ),
                    });
                }
            }
        }
    }
    if wrong.is_empty() {
        return None;
    }
    let because = e
        .candidates
        .iter()
        .map(|c| format!("{}: {}", c.region, c.outcome))
        .chain(e.all_down.iter().map(|a| format!("on_all_down = {a}")))
        .chain(e.reason.iter().map(|r| format!("reason {r}")))
        .collect::<Vec<_>>()
        .join("; ");
    let because = if because.is_empty() {
        format!("rcode {}", e.rcode)
    } else {
        because
    };
    Some(format!(
        "assertion failed: {} {} from {}{}: {} (because {because})",
        e.name,
        e.qtype,
        e.client,
        scenario_text(compiled, &a.scenario),
        wrong.join("; "),
    ))
}

/// ` with evacuated us-east, down eu-west`, or nothing.
fn scenario_text(c: &crate::routing::Compiled, s: &Scenario) -> String {
    let names = |rs: &[crate::routing::table::RegionId]| {
        rs.iter()
            .map(|r| c.region(*r).name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !s.evacuated.is_empty() {
        parts.push(format!("evacuated {}", names(&s.evacuated)));
    }
    if !s.down.is_empty() {
        parts.push(format!("down {}", names(&s.down)));
    }
    for (r, p) in &s.drained {
        parts.push(format!("{} drained {p} %", c.region(*r).name));
    }
    if !s.not_promotable.is_empty() {
        parts.push(format!("not promotable {}", names(&s.not_promotable)));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" with {}", parts.join(", "))
    }
}

/// The data of a record as `explain` prints it (`www.example.com. 30 IN A 192.0.2.1`).
fn rdata_of(record: &str) -> String {
    record
        .split_whitespace()
        .skip(4)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    #[test]
    fn clients_parse_with_and_without_prefix() {
        let c = parse_client("11.0.130.7/24").unwrap();
        assert_eq!(c.addr, "11.0.130.0".parse::<IpAddr>().unwrap());
        assert_eq!(c.ecs_source, Some(24));
        let c = parse_client("::ffff:12.0.0.1").unwrap();
        assert_eq!(c.addr, "12.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(c.ecs_source, None);
        assert!(parse_client("12.0.0.1/33").is_err());
        assert!(parse_client("12.0.0.1/0").is_err());
        assert!(parse_client("nope").is_err());
    }
}
