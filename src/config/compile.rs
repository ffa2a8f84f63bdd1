//! Checked config -> [`Compiled`]: names become ids, records are built once, zones become
//! node maps with empty non-terminals filled in, and the GeoIP database is opened.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use super::Problem;
use super::validate::{Checked, CheckedAllDown, CheckedZone};
use crate::geo::GeoDb;
use crate::routing::table::{
    AllDown, CheckId, Compiled, Endpoint, EndpointId, Family, Node, Service, ServiceId,
    ServiceRegion, Target, TargetId, Zone, ZoneId,
};

pub fn compile(checked: Checked) -> Result<Compiled, Vec<Problem>> {
    let geo = match &checked.geoip {
        None => None,
        Some((path, span)) => match GeoDb::open(path) {
            Ok(db) => Some(Arc::new(db)),
            Err(e) => return Err(vec![Problem::new(span.clone(), e.to_string())]),
        },
    };

    let mut zones: Vec<Zone> = checked.zones.iter().map(zone).collect();
    let mut services = Vec::new();
    let mut endpoints = Vec::new();
    let mut targets: Vec<Target> = Vec::new();
    let mut target_ids: HashMap<(usize, SocketAddr), TargetId> = HashMap::new();
    for (i, svc) in checked.services.into_iter().enumerate() {
        let id = ServiceId(i as u32);
        let mut regions: Vec<ServiceRegion> = Vec::new();
        // Regions in the service's default order first, then the rest as configured.
        let mut order: Vec<_> = svc.default_order.clone();
        for e in &svc.endpoints {
            if !order.contains(&e.region) {
                order.push(e.region);
            }
        }
        for region in order {
            let mut v4 = Vec::new();
            let mut v6 = Vec::new();
            for e in svc.endpoints.iter().filter(|e| e.region == region) {
                let eid = EndpointId(endpoints.len() as u32);
                let family = Family::of(e.address);
                match family {
                    Family::V4 => v4.push(eid),
                    Family::V6 => v6.push(eid),
                }
                endpoints.push(Endpoint {
                    service: id,
                    region,
                    address: e.address,
                    port: e.port,
                    target: e.probe.map(|(check, addr)| {
                        *target_ids.entry((check, addr)).or_insert_with(|| {
                            targets.push(Target {
                                check: CheckId(check as u32),
                                addr,
                                key: format!("{}@{addr}", checked.checks[check].name),
                            });
                            TargetId(targets.len() as u32 - 1)
                        })
                    }),
                    record: Record::from_rdata(svc.name.clone(), svc.ttl, RData::from(e.address)),
                });
            }
            if v4.is_empty() && v6.is_empty() {
                continue;
            }
            regions.push(ServiceRegion {
                region,
                rank: regions.len() as u16,
                v4: v4.into(),
                v6: v6.into(),
            });
        }
        let zone = &mut zones[svc.zone];
        node_at(zone, &svc.name).service = Some(id);
        services.push(Service {
            name: svc.name.clone(),
            ttl: svc.ttl,
            policy: svc.policy,
            answers: svc.answers,
            min_healthy: svc.min_healthy,
            on_all_down: match svc.on_all_down {
                CheckedAllDown::FailOpen => AllDown::FailOpen,
                CheckedAllDown::ServFail => AllDown::ServFail,
                CheckedAllDown::Fallback(addrs) => {
                    let record = |ip: &IpAddr| {
                        Record::from_rdata(svc.name.clone(), svc.ttl, RData::from(*ip))
                    };
                    AllDown::Fallback {
                        v4: addrs.iter().filter(|a| a.is_ipv4()).map(record).collect(),
                        v6: addrs.iter().filter(|a| a.is_ipv6()).map(record).collect(),
                    }
                }
            },
            regions: regions.into(),
        });
    }

    let zone_by_origin = zones
        .iter()
        .enumerate()
        .map(|(i, z)| (z.origin.clone(), ZoneId(i as u32)))
        .collect();
    Ok(Compiled {
        settings: checked.settings,
        geo,
        zones,
        zone_by_origin,
        regions: checked.regions,
        services,
        endpoints,
        checks: checked.checks,
        targets,
    })
}

fn zone(z: &CheckedZone) -> Zone {
    let origin = LowerName::new(&z.origin);
    let mut negative_soa = z.soa.clone();
    if let RData::SOA(soa) = &z.soa.data {
        negative_soa.ttl = z.soa.ttl.min(soa.minimum);
    }
    let mut zone = Zone {
        origin,
        soa: z.soa.clone(),
        negative_soa,
        nodes: HashMap::new(),
        has_delegations: false,
    };
    let apex = std::iter::once(z.soa.clone()).chain(z.ns.iter().cloned());
    for rec in apex.chain(z.records.iter().cloned()) {
        if rec.record_type() == RecordType::NS && rec.name != z.origin {
            zone.has_delegations = true;
        }
        let rtype = rec.record_type();
        let node = node_at(&mut zone, &rec.name);
        match node.rrsets.iter_mut().find(|(t, _)| *t == rtype) {
            Some((_, set)) => {
                let mut v = std::mem::take(set).into_vec();
                v.push(rec);
                *set = v.into();
            }
            None => node.rrsets.push((rtype, vec![rec].into())),
        }
    }
    zone
}

/// The node for `name`, created with every missing ancestor up to the origin (empty
/// non-terminals answer NODATA rather than NXDOMAIN).
fn node_at<'z>(zone: &'z mut Zone, name: &Name) -> &'z mut Node {
    let key = LowerName::new(name);
    let mut cur = key.clone();
    while cur != zone.origin && !cur.is_root() {
        cur = cur.base_name();
        zone.nodes.entry(cur.clone()).or_default();
    }
    zone.nodes.entry(key).or_default()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn a_target_shared_by_services_is_probed_once() {
        let text = r#"
[[zones]]
origin = "example.com."
ns = ["ns1.example.com."]
soa = { mname = "ns1", rname = "hostmaster", serial = 1, minimum = 60 }

[[regions]]
name = "a"

[[regions]]
name = "b"

[checks.web]
kind = "http"

[checks.tcp]
kind = "tcp"

[[services]]
name = "www.example.com."
policy = "failover"
regions = ["a", "b"]
check = "web"
endpoints = [
  { region = "a", address = "192.0.2.1", port = 443, check_address = "10.0.0.1" },
  { region = "b", address = "192.0.2.2", port = 443 },
]

[[services]]
name = "api.example.com."
policy = "failover"
regions = ["a", "b"]
check = "web"
endpoints = [
  { region = "a", address = "192.0.2.9", port = 443, check_address = "10.0.0.1" },
  { region = "b", address = "192.0.2.2", port = 443, check = "tcp" },
]
"#;
        let c = crate::config::load_str(text, Path::new("/t/meridian.toml")).unwrap();
        let keys: Vec<&str> = c.targets.iter().map(|t| t.key.as_str()).collect();
        // web@10.0.0.1:443 serves two endpoints of two services; the same address under
        // another check is another target.
        assert_eq!(
            keys,
            ["web@10.0.0.1:443", "web@192.0.2.2:443", "tcp@192.0.2.2:443"]
        );
        assert_eq!(c.endpoints[0].target, c.endpoints[2].target);
        assert_ne!(c.endpoints[1].target, c.endpoints[3].target);
    }
}
