//! What the routing tests share, and the DNS tests where they need the same thing: tables
//! compiled from config text (the City fixture's `[geoip]` section and the `example.com.`
//! zone as fragments), the same table with targets down or regions evacuated, clients, and
//! `decide()` / `answer()` asked about a service or a name with what the tests compare
//! pulled out. geoip-fixtures/README.md lists the networks the test clients fall in.
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name, RecordType};

use crate::config::load_str;
use crate::routing::admin::Drain;
use crate::routing::answer::{Answer, answer};
use crate::routing::decide::decide;
use crate::routing::query::{Client, Decision, Query};
use crate::routing::table::{
    Address, AdminView, Compiled, Evacuation, Family, Health, HealthView, RoutingTable, ServiceId,
};
use crate::routing::trace::{NoTrace, Outcome, Rank, Recorder, Step};

/// The `[geoip]` section that points at the City fixture.
pub(crate) const GEOIP: &str = concat!(
    "\n[geoip]\ndatabase = \"",
    env!("CARGO_MANIFEST_DIR"),
    "/geoip-fixtures/world-city.mmdb\"\n"
);

/// The zone the test services live in, with no records of its own.
pub(crate) const ZONE: &str = r#"
[[zones]]
origin = "example.com."
ns = ["ns1.example.com."]
soa = { mname = "ns1", rname = "hostmaster", serial = 1, minimum = 60 }
"#;

/// The config text loaded as if from /t/meridian.toml; its problems one per line.
pub(crate) fn load(text: &str) -> Result<Compiled, String> {
    load_str(text, Path::new("/t/meridian.toml")).map_err(|e| e.to_string())
}

/// A table as a cold start serves it: nothing probed, so every endpoint serves.
pub(crate) fn compile(text: &str) -> RoutingTable {
    match load(text) {
        Ok(c) => RoutingTable::cold(Arc::new(c)),
        Err(e) => panic!("test config must load:\n{e}\n---\n{text}"),
    }
}

/// The config's problems, one per line; panics when it loads.
pub(crate) fn load_err(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("config should be rejected:\n{text}"),
        Err(e) => e,
    }
}

/// A table like `t` with these endpoint addresses' probe targets Down and every other
/// target Unknown.
pub(crate) fn with_down(t: &RoutingTable, down: &[&str]) -> RoutingTable {
    let mut targets = HealthView::unknown(t.compiled.targets.len())
        .targets
        .to_vec();
    for a in down {
        let mut found = false;
        for e in t
            .compiled
            .endpoints
            .iter()
            .filter(|e| e.address.to_string() == *a)
        {
            let target = e.target.unwrap_or_else(|| panic!("{a} has no check"));
            targets[target.index()].health = Health::Down;
            found = true;
        }
        assert!(found, "no endpoint {a}");
    }
    let mut next = t.clone();
    next.health = Arc::new(HealthView {
        targets: targets.into(),
    });
    next
}

/// `t` with these regions evacuated by an operator (and no others; drains kept).
pub(crate) fn with_evacuated(mut t: RoutingTable, regions: &[&str]) -> RoutingTable {
    let mut state = t.admin.state.clone();
    state.evacuations = regions
        .iter()
        .map(|r| {
            let e = Evacuation {
                region: r.to_string(),
                reason: "test".into(),
                by: "tests".into(),
                since: 0,
                start: None,
                expires: None,
            };
            (r.to_string(), e)
        })
        .collect();
    t.admin = Arc::new(AdminView::new(&t.compiled, &state, 0));
    t
}

/// `t` with these regions drained by these percentages (and no others; evacuations kept).
pub(crate) fn with_drained(mut t: RoutingTable, drains: &[(&str, f64)]) -> RoutingTable {
    let mut state = t.admin.state.clone();
    state.drains = drains
        .iter()
        .map(|&(r, percent)| {
            let d = Drain {
                region: r.to_string(),
                percent,
                reason: "test".into(),
                by: "tests".into(),
                since: 0,
                start: None,
                expires: None,
            };
            (r.to_string(), d)
        })
        .collect();
    t.admin = Arc::new(AdminView::new(&t.compiled, &state, 0));
    t
}

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// A client seen by its packet source address.
pub(crate) fn src(addr: &str) -> Client {
    Client {
        addr: ip(addr),
        ecs_source: None,
    }
}

/// A client given as an ECS subnet (the address already cut to the prefix, as on the wire).
pub(crate) fn ecs(addr: &str, prefix: u8) -> Client {
    Client {
        addr: ip(addr),
        ecs_source: Some(prefix),
    }
}

pub(crate) fn service(t: &RoutingTable, name: &str) -> ServiceId {
    let name = Name::from_ascii(name).expect("name");
    let i = t
        .compiled
        .services
        .iter()
        .position(|s| s.name == name)
        .unwrap_or_else(|| panic!("no service {name}"));
    ServiceId(i as u32)
}

pub(crate) fn query(t: &RoutingTable, svc: &str, family: Family, client: Client) -> Query {
    Query {
        service: service(t, svc),
        family,
        client,
    }
}

/// The decision for an A query.
pub(crate) fn run(t: &RoutingTable, svc: &str, client: Client) -> Decision {
    run_family(t, svc, Family::V4, client)
}

pub(crate) fn run_family(t: &RoutingTable, svc: &str, family: Family, client: Client) -> Decision {
    decide(t, &query(t, svc, family, client), &mut NoTrace)
}

/// The decision and every step `decide` reported on the way.
pub(crate) fn record(
    t: &RoutingTable,
    svc: &str,
    family: Family,
    client: Client,
) -> (Decision, Recorder) {
    let mut rec = Recorder::default();
    let d = decide(t, &query(t, svc, family, client), &mut rec);
    (d, rec)
}

/// A candidate region as `decide` reported it: (region, rank, outcome).
pub(crate) type Candidate = (String, Rank, Outcome);

/// The candidates `decide` reported for an A query, in order.
pub(crate) fn candidates(t: &RoutingTable, svc: &str, client: Client) -> Vec<Candidate> {
    candidates_family(t, svc, Family::V4, client)
}

pub(crate) fn candidates_family(
    t: &RoutingTable,
    svc: &str,
    family: Family,
    client: Client,
) -> Vec<Candidate> {
    let (_, rec) = record(t, svc, family, client);
    rec.steps
        .iter()
        .filter_map(|s| match s {
            Step::Candidate {
                region,
                rank,
                outcome,
            } => Some((t.compiled.region(*region).name.clone(), *rank, *outcome)),
            _ => None,
        })
        .collect()
}

/// The candidates' region names, in order.
pub(crate) fn order(cands: &[Candidate]) -> Vec<&str> {
    cands.iter().map(|(r, _, _)| r.as_str()).collect()
}

/// The candidate for a region; panics when `decide` did not consider it.
pub(crate) fn candidate<'a>(cands: &'a [Candidate], region: &str) -> &'a Candidate {
    cands
        .iter()
        .find(|c| c.0 == region)
        .unwrap_or_else(|| panic!("no candidate {region} in {cands:?}"))
}

pub(crate) fn region_name(t: &RoutingTable, d: &Decision) -> Option<String> {
    d.region.map(|r| t.compiled.region(r).name.clone())
}

/// The region a client is sent to for an A query.
pub(crate) fn region_of(t: &RoutingTable, svc: &str, client: Client) -> String {
    let d = run(t, svc, client);
    region_name(t, &d).unwrap_or_else(|| panic!("{svc} {client:?}: no region in {d:?}"))
}

pub(crate) fn addresses(t: &RoutingTable, d: &Decision) -> Vec<IpAddr> {
    d.endpoints
        .as_slice()
        .iter()
        .map(|id| match t.compiled.endpoint(*id).address {
            Address::Ip(ip) => ip,
            Address::Host(ref name) => panic!("{name} is a hostname endpoint"),
        })
        .collect()
}

/// The one address a client is answered for an A query.
pub(crate) fn answer_of(t: &RoutingTable, svc: &str, client: Client) -> IpAddr {
    let d = run(t, svc, client);
    match addresses(t, &d)[..] {
        [a] => a,
        ref other => panic!("{svc} {client:?}: expected one address, got {other:?}"),
    }
}

/// What `answer()` gives a client asking for a name, untraced.
pub(crate) fn answer_name<'t>(
    t: &'t RoutingTable,
    name: &str,
    qtype: RecordType,
    client: &Client,
) -> Answer<'t> {
    let name = LowerName::new(&Name::from_ascii(name).expect("name"));
    answer(t, &name, qtype, client, &mut NoTrace)
}
