//! What-if states for config assertions and safety rules: a table built from a compiled
//! config with chosen regions evacuated, drained, down or not promotable, and everything else
//! up and promotable. The same [`super::decide::decide`] then answers from it.
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};

use super::admin::{AdminState, AdminView, Drain, Evacuation};
use super::query::Client;
use super::table::{Compiled, Health, HealthView, RegionId, RoutingTable, ServiceId};

/// The state an assertion is evaluated in (`with = { ... }`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scenario {
    pub evacuated: Vec<RegionId>,
    /// Every probe target of the region's endpoints is down.
    pub down: Vec<RegionId>,
    /// Region and percentage (above 0, at most 100).
    pub drained: Vec<(RegionId, f64)>,
    /// Every `promote_guard` target of the region's endpoints is out of bounds.
    pub not_promotable: Vec<RegionId>,
}

/// One `[[assert]]`: a question, a client, what must come back, under a scenario.
#[derive(Debug, Clone)]
pub struct Assertion {
    /// Where the `[[assert]]` table is: file, line and column (1-based).
    pub at: (std::path::PathBuf, usize, usize),
    pub name: Name,
    pub qtype: RecordType,
    pub client: Client,
    pub expect: Vec<Expect>,
    pub scenario: Scenario,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// The decision's region (`None`: no region answered).
    Region(RegionId),
    /// The answer section's data, in any order (`192.0.2.1`, `lb.example.net.`).
    Answer(Vec<String>),
    Rcode(ResponseCode),
    /// The ECS scope prefix the answer carries.
    Scope(u8),
}

/// A `[[safety]]` rule: a floor under how many regions serve.
#[derive(Debug, Clone)]
pub struct SafetyRule {
    /// `FILE:LINE` of the `[[safety]]` table.
    pub at: String,
    pub kind: SafetyKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SafetyKind {
    /// Each of these services keeps at least `min` serving regions.
    MinServingRegions { services: Vec<ServiceId>, min: f64 },
    /// At least `min` of these regions serve.
    MinServing { regions: Vec<RegionId>, min: f64 },
}

impl Scenario {
    /// The table `decide` sees in this scenario: health up and promotable everywhere but in
    /// the regions named down or not promotable; the admin state is the scenario's alone.
    pub fn table(&self, compiled: Arc<Compiled>) -> RoutingTable {
        let mut health = HealthView::unknown(compiled.targets.len()).targets.to_vec();
        for t in &mut health {
            t.health = Health::Up;
            t.promotable = true;
        }
        for e in &compiled.endpoints {
            if self.down.contains(&e.region)
                && let Some(t) = e.target
            {
                health[t.index()].health = Health::Down;
            }
            if self.not_promotable.contains(&e.region)
                && let Some(t) = e.guard
            {
                health[t.index()].promotable = false;
            }
        }
        let name = |r: &RegionId| compiled.region(*r).name.clone();
        let state = AdminState {
            evacuations: self
                .evacuated
                .iter()
                .map(|r| {
                    let e = Evacuation {
                        region: name(r),
                        reason: "scenario".into(),
                        by: "check".into(),
                        since: 0,
                        start: None,
                        expires: None,
                    };
                    (name(r), e)
                })
                .collect(),
            drains: self
                .drained
                .iter()
                .map(|(r, percent)| {
                    let d = Drain {
                        region: name(r),
                        percent: *percent,
                        reason: "scenario".into(),
                        by: "check".into(),
                        since: 0,
                        start: None,
                        expires: None,
                    };
                    (name(r), d)
                })
                .collect(),
            ramps: Default::default(),
        };
        let mut table = RoutingTable::cold(compiled);
        table.admin = Arc::new(AdminView::new(&table.compiled, &state, 0));
        table.health = Arc::new(HealthView {
            targets: health.into(),
        });
        table.probes_complete = true;
        table.built_for = "scenario".into();
        table
    }
}

/// How many regions serve a service's clients: a region counts in proportion to the clients
/// it still takes (an evacuation or a 100 % drain: 0, a 30 % drain: 0.7) when it has enough
/// healthy endpoints of some family, and 0 otherwise.
pub fn serving_regions(table: &RoutingTable, service: ServiceId) -> f64 {
    let svc = table.compiled.service(service);
    svc.regions
        .iter()
        .filter(|sr| {
            [super::table::Family::V4, super::table::Family::V6]
                .into_iter()
                .any(|f| !sr.endpoints(f).is_empty() && table.region_healthy(svc, sr, f))
        })
        .map(|sr| region_share(table, sr.region))
        .sum()
}

/// How many of `regions` serve: each in proportion to the clients it still takes, when some
/// service has enough healthy endpoints there (a region no service uses counts when open).
pub fn serving_of(table: &RoutingTable, regions: &[RegionId]) -> f64 {
    let c = &table.compiled;
    regions
        .iter()
        .filter(|r| {
            let mut used = c
                .services
                .iter()
                .flat_map(|svc| svc.regions.iter().map(move |sr| (svc, sr)))
                .filter(|(_, sr)| sr.region == **r)
                .peekable();
            used.peek().is_none()
                || used.any(|(svc, sr)| {
                    [super::table::Family::V4, super::table::Family::V6]
                        .into_iter()
                        .any(|f| !sr.endpoints(f).is_empty() && table.region_healthy(svc, sr, f))
                })
        })
        .map(|r| region_share(table, *r))
        .sum()
}

/// The share of its clients a region still takes: 0 when evacuated, 1 - drain otherwise.
fn region_share(table: &RoutingTable, region: RegionId) -> f64 {
    if table.evacuated(region) {
        return 0.0;
    }
    let drained = table
        .admin
        .drained
        .get(region.index())
        .copied()
        .unwrap_or(0);
    1.0 - f64::from(drained) / f64::from(super::admin::DRAIN_BUCKETS)
}

impl SafetyKind {
    /// The rule's shortfalls in `table`: `(what, serving, min)` for each service or group
    /// below its floor.
    pub fn broken(&self, table: &RoutingTable) -> Vec<(String, f64, f64)> {
        match self {
            SafetyKind::MinServingRegions { services, min } => services
                .iter()
                .map(|s| (*s, serving_regions(table, *s)))
                .filter(|(_, n)| n + 1e-9 < *min)
                .map(|(s, n)| (table.compiled.service(s).name.to_ascii(), n, *min))
                .collect(),
            SafetyKind::MinServing { regions, min } => {
                let n = serving_of(table, regions);
                if n + 1e-9 < *min {
                    let names: Vec<&str> = regions
                        .iter()
                        .map(|r| table.compiled.region(*r).name.as_str())
                        .collect();
                    vec![(names.join(", "), n, *min)]
                } else {
                    Vec::new()
                }
            }
        }
    }
}
