//! What-if previews: a hypothetical table (evacuations, drains, regions down, restores) and
//! the replay of a population of real queries through the same `decide()` on the table in
//! force and on the hypothetical one. Nothing is applied. The control plane uses the same
//! replay to record which answers a new table changed.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::routing::RoutingTable;
use crate::routing::admin::{AdminState, AdminView, Drain, Evacuation};
use crate::routing::decide::decide;
use crate::routing::query::Query;
use crate::routing::table::{Health, RegionId};
use crate::routing::trace::NoTrace;

/// Networks listed per service as moving.
const TOP_NETWORKS: usize = 10;
/// Country moves listed per service.
const TOP_MOVES: usize = 50;

/// A change to preview, by region name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatIf {
    /// Regions to evacuate.
    #[serde(default)]
    pub evacuate: Vec<String>,
    /// Region -> percent to drain (0 lifts a drain).
    #[serde(default)]
    pub drain: BTreeMap<String, f64>,
    /// Regions whose probed endpoints are taken as down.
    #[serde(default)]
    pub down: Vec<String>,
    /// Regions whose evacuation (and drain) is lifted.
    #[serde(default)]
    pub restore: Vec<String>,
}

impl WhatIf {
    pub fn is_empty(&self) -> bool {
        self.evacuate.is_empty()
            && self.drain.is_empty()
            && self.down.is_empty()
            && self.restore.is_empty()
    }
}

/// One query of the population, with how many real queries it stands for and its network.
#[derive(Debug, Clone, Copy)]
pub struct Replayed {
    pub query: Query,
    /// `network/prefix` of the client, for the top-networks list.
    pub network: IpAddr,
    pub prefix: u8,
}

/// The admin state a change makes of `state` at `now` (unix seconds).
pub fn changed_state(
    table: &RoutingTable,
    state: &AdminState,
    change: &WhatIf,
    now: u64,
) -> Result<AdminState, String> {
    let known = |r: &String| {
        if table.compiled.region_id(r).is_some() {
            Ok(())
        } else {
            Err(format!("no region named {r:?} in the current config"))
        }
    };
    let mut next = state.pruned(now);
    for r in &change.restore {
        known(r)?;
        next.evacuations.remove(r);
        next.drains.remove(r);
        next.ramps.retain(|_, x| &x.region != r);
    }
    for r in &change.evacuate {
        known(r)?;
        next.evacuations.insert(
            r.clone(),
            Evacuation {
                region: r.clone(),
                reason: "what-if".into(),
                by: "what-if".into(),
                since: now,
                start: None,
                expires: None,
            },
        );
    }
    for (r, &percent) in &change.drain {
        known(r)?;
        if !(0.0..=100.0).contains(&percent) {
            return Err(format!("a drain is 0 to 100 percent, not {percent}"));
        }
        next.ramps.retain(|_, x| &x.region != r);
        if percent == 0.0 {
            next.drains.remove(r);
        } else {
            next.drains.insert(
                r.clone(),
                Drain {
                    region: r.clone(),
                    percent,
                    reason: "what-if".into(),
                    by: "what-if".into(),
                    since: now,
                    start: None,
                    expires: None,
                },
            );
        }
    }
    for r in &change.down {
        known(r)?;
    }
    Ok(next)
}

/// `table` with `state` as its admin state (at `now`) and the probed endpoints of the `down`
/// regions down.
pub fn hypothetical(
    table: &RoutingTable,
    state: &AdminState,
    down: &[String],
    now: u64,
) -> RoutingTable {
    let c = &table.compiled;
    let mut health = (*table.health).clone();
    let down: BTreeSet<RegionId> = down.iter().filter_map(|d| c.region_id(d)).collect();
    for e in c.endpoints.iter().filter(|e| down.contains(&e.region)) {
        if let Some(t) = e.target.and_then(|t| health.targets.get_mut(t.index())) {
            t.health = Health::Down;
        }
    }
    RoutingTable {
        health: Arc::new(health),
        admin: Arc::new(AdminView::new(c, state, now)),
        ..table.clone()
    }
}

/// Where the population goes, on one table and on another.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Comparison {
    /// Queries replayed.
    pub sampled: usize,
    /// Queries per second the population stands for.
    pub qps: f64,
    pub services: Vec<ServiceShift>,
    /// Predicted load per region (over every service), against its capacity.
    pub regions: Vec<RegionLoad>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServiceShift {
    pub service: String,
    pub sampled: usize,
    pub qps: f64,
    pub regions: Vec<RegionShare>,
    /// Which clients move where, by country (largest first).
    pub moves: Vec<Move>,
    /// The client networks that move the most queries.
    pub networks: Vec<NetworkMove>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RegionShare {
    /// A region, or "none" (no region answered: SERVFAIL, fallback, no endpoints).
    pub region: String,
    /// Percent of the service's queries it answers now and would answer.
    pub now: f64,
    pub after: f64,
    pub now_qps: f64,
    pub after_qps: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Move {
    pub country: String,
    pub from: String,
    pub to: String,
    /// Percent of the service's queries.
    pub share: f64,
    pub qps: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NetworkMove {
    pub network: String,
    pub from: String,
    pub to: String,
    pub sampled: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RegionLoad {
    pub region: String,
    pub now_qps: f64,
    pub after_qps: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_qps: Option<f64>,
    /// The prediction exceeds the region's capacity.
    pub over_capacity: bool,
}

impl Comparison {
    /// The regions the change loads above capacity (and more than they are loaded now):
    /// name, predicted QPS, capacity.
    pub fn overloaded(&self) -> Vec<(String, f64, f64)> {
        self.regions
            .iter()
            .filter(|r| r.over_capacity && r.after_qps > r.now_qps)
            .filter_map(|r| Some((r.region.clone(), r.after_qps, r.capacity_qps?)))
            .collect()
    }

    /// Countries whose answers changed, per service (for history diffs).
    pub fn changed_countries(&self) -> BTreeMap<String, Vec<String>> {
        self.services
            .iter()
            .filter(|s| !s.moves.is_empty())
            .map(|s| {
                let set: BTreeSet<String> = s.moves.iter().map(|m| m.country.clone()).collect();
                (s.service.clone(), set.into_iter().collect())
            })
            .collect()
    }
}

/// Where a client went before and after (no region: `None`).
type Hop = (Option<RegionId>, Option<RegionId>);

/// One service's part of a replay: answers by region (index `regions` = none) now and
/// after, and the moves by country and by client network.
struct Tally {
    now: Vec<usize>,
    after: Vec<usize>,
    moves: BTreeMap<(String, Hop), usize>,
    nets: HashMap<(IpAddr, u8, Hop), usize>,
}

impl Tally {
    fn new(regions: usize) -> Tally {
        Tally {
            now: vec![0; regions + 1],
            after: vec![0; regions + 1],
            moves: BTreeMap::new(),
            nets: HashMap::new(),
        }
    }
}

fn region_name(table: &RoutingTable, r: Option<RegionId>) -> String {
    r.map_or_else(
        || "none".to_string(),
        |r| table.compiled.region(r).name.clone(),
    )
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Replays `population` through `decide()` on `before` and `after` (the same compiled
/// config) and says where it goes; `qps` is the query rate the population stands for.
pub fn compare(
    before: &RoutingTable,
    after: &RoutingTable,
    population: &[Replayed],
    qps: f64,
) -> Comparison {
    let c = &before.compiled;
    let geo = c.geo.clone();
    let n_regions = c.regions.len();
    // Only the services the population asks about, in the config's order: a table of tens
    // of thousands of names costs nothing for the names nobody queried.
    let mut tallies: BTreeMap<usize, Tally> = BTreeMap::new();
    let mut sampled = 0;
    for r in population {
        let s = r.query.service.index();
        if s >= c.services.len() {
            continue;
        }
        sampled += 1;
        let a = decide(before, &r.query, &mut NoTrace).region;
        let b = decide(after, &r.query, &mut NoTrace).region;
        let slot = |x: Option<RegionId>| x.map_or(n_regions, RegionId::index);
        let t = tallies.entry(s).or_insert_with(|| Tally::new(n_regions));
        t.now[slot(a)] += 1;
        t.after[slot(b)] += 1;
        if a != b {
            let country = geo
                .as_ref()
                .and_then(|g| g.lookup(r.network).country)
                .map_or_else(|| "??".to_string(), |cc| cc.as_str().to_string());
            *t.moves.entry((country, (a, b))).or_default() += 1;
            *t.nets.entry((r.network, r.prefix, (a, b))).or_default() += 1;
        }
    }
    let rate = |count: usize| {
        if sampled == 0 {
            0.0
        } else {
            qps * count as f64 / sampled as f64
        }
    };
    let mut load_now = vec![0.0; n_regions];
    let mut load_after = vec![0.0; n_regions];
    let mut services = Vec::new();
    for (s, t) in &tallies {
        let svc = &c.services[*s];
        let total: usize = t.now.iter().sum();
        let pct = |n: usize| round(100.0 * n as f64 / total as f64);
        let mut regions = Vec::new();
        for i in 0..=n_regions {
            let (a, b) = (t.now[i], t.after[i]);
            let in_svc = svc.regions.iter().any(|sr| sr.region.index() == i);
            if a == 0 && b == 0 && !in_svc {
                continue;
            }
            if i < n_regions {
                load_now[i] += rate(a);
                load_after[i] += rate(b);
            }
            regions.push(RegionShare {
                region: region_name(before, (i < n_regions).then_some(RegionId(i as u32))),
                now: pct(a),
                after: pct(b),
                now_qps: round(rate(a)),
                after_qps: round(rate(b)),
            });
        }
        let mut mv: Vec<Move> = t
            .moves
            .iter()
            .map(|((country, (a, b)), &n)| Move {
                country: country.clone(),
                from: region_name(before, *a),
                to: region_name(before, *b),
                share: pct(n),
                qps: round(rate(n)),
            })
            .collect();
        mv.sort_by(|x, y| {
            y.qps
                .total_cmp(&x.qps)
                .then(y.share.total_cmp(&x.share))
                .then(x.country.cmp(&y.country))
        });
        mv.truncate(TOP_MOVES);
        let mut nw: Vec<NetworkMove> = t
            .nets
            .iter()
            .map(|((net, p, (a, b)), &n)| NetworkMove {
                network: format!("{net}/{p}"),
                from: region_name(before, *a),
                to: region_name(before, *b),
                sampled: n,
            })
            .collect();
        nw.sort_by(|x, y| y.sampled.cmp(&x.sampled).then(x.network.cmp(&y.network)));
        nw.truncate(TOP_NETWORKS);
        services.push(ServiceShift {
            service: svc.name.to_ascii(),
            sampled: total,
            qps: round(rate(total)),
            regions,
            moves: mv,
            networks: nw,
        });
    }
    let regions = c
        .regions
        .iter()
        .enumerate()
        .map(|(i, r)| RegionLoad {
            region: r.name.clone(),
            now_qps: round(load_now[i]),
            after_qps: round(load_after[i]),
            capacity_qps: r.capacity_qps,
            over_capacity: r.capacity_qps.is_some_and(|cap| load_after[i] > cap),
        })
        .collect();
    Comparison {
        sampled,
        qps: round(qps),
        services,
        regions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::query::Client;
    use crate::routing::table::{Family, ServiceId};
    use crate::routing::test_support::{GEOIP, ZONE, load};

    fn table() -> RoutingTable {
        let text = format!(
            "{GEOIP}{ZONE}\n[[regions]]\nname = \"a\"\ncapacity_qps = 60\n\n\
             [[regions]]\nname = \"b\"\ncapacity_qps = 1000\n\n[[services]]\n\
             name = \"www.example.com.\"\npolicy = \"failover\"\nregions = [\"a\", \"b\"]\n\
             endpoints = [\n{{ region = \"a\", address = \"10.0.0.1\" }},\n\
             {{ region = \"b\", address = \"10.0.0.2\" }},\n]\n"
        );
        RoutingTable::cold(Arc::new(load(&text).expect("config")))
    }

    fn population(n: usize) -> Vec<Replayed> {
        (0..n)
            .map(|i| {
                let network: IpAddr = format!("10.{}.{}.0", i / 256, i % 256).parse().expect("ip");
                Replayed {
                    query: Query {
                        service: ServiceId(0),
                        family: Family::V4,
                        client: Client {
                            addr: network,
                            ecs_source: None,
                        },
                    },
                    network,
                    prefix: 24,
                }
            })
            .collect()
    }

    #[test]
    fn an_evacuation_moves_every_client_and_a_drain_its_share() {
        let t = table();
        let pop = population(2000);
        let change = WhatIf {
            evacuate: vec!["a".into()],
            ..Default::default()
        };
        let state = changed_state(&t, &t.admin.state, &change, 0).expect("state");
        let after = hypothetical(&t, &state, &change.down, 0);
        let cmp = compare(&t, &after, &pop, 100.0);
        let svc = &cmp.services[0];
        assert_eq!(svc.sampled, 2000);
        let a = svc.regions.iter().find(|r| r.region == "a").expect("a");
        assert_eq!((a.now, a.after), (100.0, 0.0));
        assert_eq!(cmp.regions[1].after_qps, 100.0);
        assert_eq!(svc.moves[0].from, "a");
        assert_eq!(svc.moves[0].to, "b");

        let change = WhatIf {
            drain: [("a".to_string(), 25.0)].into(),
            ..Default::default()
        };
        let state = changed_state(&t, &t.admin.state, &change, 0).expect("state");
        let cmp = compare(&t, &hypothetical(&t, &state, &[], 0), &pop, 100.0);
        let b = &cmp.services[0].regions[1];
        assert!((b.after - 25.0).abs() < 3.0, "{b:?}");
        // a takes 75 % of 100 qps: above its capacity of 60? No; b takes 25.
        assert!(cmp.overloaded().is_empty(), "{:?}", cmp.regions);
    }

    #[test]
    fn down_regions_fail_over_and_capacity_is_reported() {
        let text = format!(
            "{GEOIP}{ZONE}\n[checks.web]\nkind = \"tcp\"\nport = 80\n\n\
             [[regions]]\nname = \"a\"\n\n[[regions]]\nname = \"b\"\ncapacity_qps = 50\n\n\
             [[services]]\nname = \"www.example.com.\"\npolicy = \"failover\"\n\
             regions = [\"a\", \"b\"]\ncheck = \"web\"\nendpoints = [\n\
             {{ region = \"a\", address = \"10.0.0.1\" }},\n\
             {{ region = \"b\", address = \"10.0.0.2\" }},\n]\n"
        );
        let t = RoutingTable::cold(Arc::new(load(&text).expect("config")));
        let change = WhatIf {
            down: vec!["a".into()],
            ..Default::default()
        };
        let state = changed_state(&t, &t.admin.state, &change, 0).expect("state");
        let cmp = compare(
            &t,
            &hypothetical(&t, &state, &change.down, 0),
            &population(100),
            80.0,
        );
        assert_eq!(cmp.overloaded(), vec![("b".to_string(), 80.0, 50.0)]);
        assert_eq!(
            cmp.changed_countries().keys().collect::<Vec<_>>(),
            vec!["www.example.com."]
        );
        let unknown = WhatIf {
            evacuate: vec!["nowhere".into()],
            ..Default::default()
        };
        assert!(changed_state(&t, &t.admin.state, &unknown, 0).is_err());
    }
}
