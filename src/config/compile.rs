//! Checked config -> [`Compiled`]: names become ids, records are built once, zones become
//! node maps with empty non-terminals filled in, and the GeoIP database is opened.
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use std::sync::Arc;

use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use super::Problem;
use super::checked::{Checked, CheckedAllDown, CheckedZone};
use crate::geo::{AsnDb, AsnSet, GeoDb, GeoSet};
use crate::routing::latency::{Format, LatencyMap};
use crate::routing::sign::{Signatures, ZoneSigner};
use crate::routing::table::{
    Address, AllDown, CheckId, CidrMap, Compiled, Endpoint, EndpointId, Family, Node, ProbeAddr,
    PromoteGuard, Region, RegionId, Residency, Service, ServiceId, ServiceRegion, Target, TargetId,
    TargetIndex, Zone, ZoneId, wire_name,
};

/// Databases already open, each kept by [`compile`] when the config names the same unchanged
/// file.
#[derive(Default)]
pub struct Reuse {
    pub geo: Option<Arc<GeoSet>>,
    pub asn: Option<Arc<AsnSet>>,
}

/// The probe target of (check, address), shared by every endpoint and service probing it.
fn target_id(
    targets: &mut Vec<Target>,
    ids: &mut HashMap<(usize, ProbeAddr), TargetId>,
    checks: &[crate::settings::CheckSpec],
    (check, addr): &(usize, ProbeAddr),
) -> TargetId {
    *ids.entry((*check, addr.clone())).or_insert_with(|| {
        targets.push(Target {
            check: CheckId(*check as u32),
            addr: addr.clone(),
            key: format!("{}@{addr}", checks[*check].name),
        });
        TargetId(targets.len() as u32 - 1)
    })
}

/// Compiles a checked config, reusing the databases in `reuse` that are unchanged.
pub fn compile(checked: Checked, reuse: Reuse) -> Result<Compiled, Vec<Problem>> {
    let mut problems = Vec::new();
    let geo = checked.geoip.as_ref().and_then(|(paths, span)| {
        let mut dbs = Vec::new();
        for path in paths {
            let kept = reuse
                .geo
                .iter()
                .flat_map(|set| set.databases())
                .find(|db| db.unchanged_at(path));
            match kept {
                Some(db) => dbs.push(db.clone()),
                None => match GeoDb::open(path) {
                    Ok(db) => dbs.push(Arc::new(db)),
                    Err(e) => problems.push(Problem::new(span.clone(), e.to_string())),
                },
            }
        }
        (dbs.len() == paths.len()).then(|| Arc::new(GeoSet::new(dbs)))
    });
    let asn = checked.asn_database.as_ref().and_then(|(paths, span)| {
        let mut dbs = Vec::new();
        for path in paths {
            let kept = reuse
                .asn
                .iter()
                .flat_map(|set| set.databases())
                .find(|db| db.unchanged_at(path));
            match kept {
                Some(db) => dbs.push(db.clone()),
                None => match AsnDb::open(path) {
                    Ok(db) => dbs.push(Arc::new(db)),
                    Err(e) => problems.push(Problem::new(span.clone(), e.to_string())),
                },
            }
        }
        (dbs.len() == paths.len()).then(|| Arc::new(AsnSet::new(dbs)))
    });
    let latency_map = match &checked.latency_map {
        None => Arc::new(LatencyMap::default()),
        Some((path, span)) => match read_latency_map(path, &checked.regions) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                problems.push(Problem::new(span.clone(), e));
                Arc::new(LatencyMap::default())
            }
        },
    };
    let mut cidr_maps = Vec::new();
    for m in &checked.cidr_maps {
        let mut networks = m.networks.clone();
        let mut asns = m.asns.clone();
        if let Some((path, span)) = &m.file {
            match read_cidr_file(path, &checked.regions) {
                Ok(more) => {
                    if checked.asn_database.is_none() && !more.asns.is_empty() {
                        problems.push(Problem::new(
                            span.clone(),
                            format!(
                                "CIDR map {} lists ASNs, which need [geoip] asn_database to match clients",
                                path.display()
                            ),
                        ));
                    }
                    networks.extend(more.networks);
                    asns.extend(more.asns);
                }
                Err(e) => problems.push(Problem::new(span.clone(), e)),
            }
        }
        cidr_maps.push(CidrMap::new(networks, asns));
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    let mut zones: Vec<Zone> = checked.zones.iter().map(zone).collect();
    let mut services = Vec::new();
    let mut endpoints = Vec::new();
    let mut targets: Vec<Target> = Vec::new();
    let mut target_ids: HashMap<(usize, ProbeAddr), TargetId> = HashMap::new();
    let mut slots = 0u32;
    let checked_zones: Vec<usize> = checked.services.iter().map(|s| s.zone).collect();
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
                // A hostname answers A and AAAA questions alike (with its CNAME).
                let record = match &e.address {
                    Address::Ip(ip) => {
                        match Family::of(*ip) {
                            Family::V4 => v4.push(eid),
                            Family::V6 => v6.push(eid),
                        }
                        RData::from(*ip)
                    }
                    Address::Host(name) => {
                        v4.push(eid);
                        v6.push(eid);
                        RData::CNAME(CNAME(name.clone()))
                    }
                };
                endpoints.push(Endpoint {
                    service: id,
                    region,
                    address: e.address.clone(),
                    port: e.port,
                    target: e
                        .probe
                        .as_ref()
                        .map(|p| target_id(&mut targets, &mut target_ids, &checked.checks, p)),
                    guard: e
                        .guard
                        .as_ref()
                        .map(|p| target_id(&mut targets, &mut target_ids, &checked.checks, p)),
                    record: Record::from_rdata(svc.name.clone(), svc.ttl, record),
                    weight: e.weight,
                });
            }
            if v4.is_empty() && v6.is_empty() {
                continue;
            }
            regions.push(ServiceRegion {
                region,
                rank: regions.len() as u16,
                slot: slots,
                v4: v4.into(),
                v6: v6.into(),
            });
            slots += 1;
        }
        let zone = &mut zones[svc.zone];
        node_at(zone, &svc.name).service = Some(id);
        let fixed = regions.len() <= 1
            && regions
                .iter()
                .all(|r| r.v4.len() <= svc.answers && r.v6.len() <= svc.answers);
        let alias = svc
            .endpoints
            .iter()
            .any(|e| matches!(e.address, Address::Host(_)));
        services.push(Service {
            alias,
            fixed,
            seed: crate::hash::mix64(crate::hash::fnv1a(
                svc.name.to_lowercase().to_ascii().as_bytes(),
            )),
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
            residency: svc
                .residency
                .iter()
                .map(|rule| Residency {
                    subdivisions: rule.places.subdivisions.clone(),
                    countries: rule.places.countries.clone(),
                    continents: rule.places.continents.clone(),
                    allowed: regions
                        .iter()
                        .enumerate()
                        .filter(|(_, sr)| rule.allowed.contains(&sr.region))
                        .fold(0u64, |m, (i, _)| m | 1 << i),
                })
                .collect(),
            regions: regions.into(),
            latency_margin_ms: svc.latency_margin_ms,
            weight_mode: svc.weight_mode,
            cidr_map: svc.cidr_map,
            guard: svc.guard.map(|(check, on_unsafe)| PromoteGuard {
                check: CheckId(check as u32),
                on_unsafe,
            }),
        });
    }

    let service_names = services
        .iter()
        .enumerate()
        .map(|(i, svc)| {
            let zone = checked_zones[i];
            (
                wire_name(&svc.name),
                (ServiceId(i as u32), ZoneId(zone as u32)),
            )
        })
        .collect();
    let wildcard_services = services.iter().any(|s| s.name.is_wildcard());
    let signed = zones.iter().any(|z| z.signer.is_some());
    let zone_by_origin = zones
        .iter()
        .enumerate()
        .map(|(i, z)| (z.origin.clone(), ZoneId(i as u32)))
        .collect();
    let target_index =
        TargetIndex::new(targets.len(), checked.regions.len(), &services, &endpoints);
    Ok(Compiled {
        assertions: checked.asserts.into_iter().map(|(_, a)| a).collect(),
        safety: checked.safety.into_iter().map(|(_, r)| r).collect(),
        settings: checked.settings,
        geo,
        asn,
        zones,
        zone_by_origin,
        regions: checked.regions,
        services,
        endpoints,
        checks: checked.checks,
        targets,
        cidr_maps,
        latency_map,
        latency_map_path: checked.latency_map.map(|(p, _)| p),
        latency_overhead_ms: checked.latency_overhead_ms,
        service_region_slots: slots as usize,
        service_names,
        wildcard_services,
        signed,
        target_index,
    })
}

/// Reads a latency map file; the error names the file and every bad line.
pub fn read_latency_map(path: &Path, regions: &[Region]) -> Result<LatencyMap, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read latency map {}: {e}", path.display()))?;
    let names: Vec<&str> = regions.iter().map(|r| r.name.as_str()).collect();
    LatencyMap::parse(&text, Format::of(path), &names).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        format!("latency map {}: {}", path.display(), lines.join("; "))
    })
}

/// What a CIDR map file lists.
#[derive(Debug, Default)]
struct CidrFile {
    networks: Vec<(IpNet, RegionId)>,
    asns: Vec<(u32, RegionId)>,
}

/// Reads the lines of a CIDR map file (`#` comments): `NETWORK REGION` (a CIDR) or
/// `ASN REGION`, the AS number written `AS7922` or `7922`.
fn read_cidr_file(path: &Path, regions: &[Region]) -> Result<CidrFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read CIDR map {}: {e}", path.display()))?;
    let mut out = CidrFile::default();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(key), Some(region), None) = (parts.next(), parts.next(), parts.next()) else {
            errors.push(format!(
                "line {}: expected NETWORK REGION or ASN REGION",
                i + 1
            ));
            continue;
        };
        let digits = key
            .strip_prefix("AS")
            .or_else(|| key.strip_prefix("as"))
            .unwrap_or(key);
        let key = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            match digits
                .parse::<i64>()
                .map_err(|_| format!("{digits} is not an AS number (1 to 4294967295)"))
                .and_then(super::validate::parse_asn_number)
            {
                Ok(asn) => Ok(asn),
                Err(e) => {
                    errors.push(format!("line {}: {e}", i + 1));
                    continue;
                }
            }
        } else {
            let Ok(net) = key.parse::<IpNet>() else {
                errors.push(format!(
                    "line {}: {key:?} is neither a network (CIDR) nor an AS number (AS7922)",
                    i + 1
                ));
                continue;
            };
            if net.trunc() != net {
                errors.push(format!("line {}: {net} has host bits set", i + 1));
                continue;
            }
            Err(net)
        };
        match (regions.iter().position(|r| r.name == region), key) {
            (Some(r), Ok(asn)) => out.asns.push((asn, RegionId(r as u32))),
            (Some(r), Err(net)) => out.networks.push((net, RegionId(r as u32))),
            (None, _) => errors.push(format!("line {}: no region named {region:?}", i + 1)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "CIDR map {}: {}",
            path.display(),
            errors.join("; ")
        ))
    }
}

/// Most RRsets whose signatures a signed zone keeps (static RRsets, answer combinations,
/// denial NSECs); a full shard of the cache starts over.
const SIGNATURE_CACHE: usize = 200_000;

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
        has_wildcards: false,
        signer: z.dnssec.as_ref().map(|d| ZoneSigner {
            origin: z.origin.clone(),
            keys: d.keys.clone(),
            validity: d.validity,
            cache: Signatures::new(SIGNATURE_CACHE),
        }),
    };
    // A signed zone publishes its keys at the apex: DNSKEY, CDS and CDNSKEY.
    let keys = match (&zone.signer, &z.dnssec) {
        (Some(signer), Some(d)) => signer.apex_records(d.key_ttl),
        _ => Vec::new(),
    };
    let apex = std::iter::once(z.soa.clone())
        .chain(z.ns.iter().cloned())
        .chain(keys);
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
    zone.has_wildcards |= name.is_wildcard();
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

#[cfg(test)]
mod reuse_tests {
    use std::sync::Arc;

    #[test]
    fn a_reload_keeps_an_unchanged_database_and_rereads_a_changed_one() {
        let dir = std::env::temp_dir().join(format!("meridian-reuse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("geo.mmdb");
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/geoip-fixtures/world-city.mmdb"
        );
        std::fs::copy(fixture, &db).unwrap();
        let text = format!(
            "[geoip]\ndatabase = \"{}\"\n[[zones]]\norigin = \"example.com.\"\nns = [\"ns1\"]\nsoa = {{ mname = \"ns1\", rname = \"h\", serial = 1, minimum = 60 }}\n",
            db.display()
        );
        let config = dir.join("meridian.toml");
        std::fs::write(&config, &text).unwrap();
        let first = crate::config::load(&config).unwrap();
        let second = crate::config::load_reusing(&config, Some(&first)).unwrap();
        let open = |c: &crate::routing::Compiled| c.geo.as_ref().unwrap().databases()[0].clone();
        assert!(Arc::ptr_eq(&open(&first), &open(&second)));
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/geoip-fixtures/world-country.mmdb"
            ),
            &db,
        )
        .unwrap();
        let third = crate::config::load_reusing(&config, Some(&second)).unwrap();
        assert!(!Arc::ptr_eq(&open(&second), &open(&third)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_reload_keeps_an_unchanged_asn_database() {
        use crate::geo::build::writer::{Value, Writer};
        let dir = std::env::temp_dir().join(format!("meridian-reuse-asn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |asn: u32| {
            let mut w = Writer::new("GeoLite2-ASN");
            w.description("en", "reuse test");
            w.insert(
                "11.0.0.0/16".parse().unwrap(),
                Value::Map(vec![("autonomous_system_number".into(), Value::U32(asn))]),
            );
            std::fs::write(dir.join("asn.mmdb"), w.to_bytes().unwrap()).unwrap();
        };
        write(7922);
        let text = "[geoip]\nasn_database = \"asn.mmdb\"\n[[zones]]\norigin = \"example.com.\"\nns = [\"ns1\"]\nsoa = { mname = \"ns1\", rname = \"h\", serial = 1, minimum = 60 }\n";
        let config = dir.join("meridian.toml");
        std::fs::write(&config, text).unwrap();
        let first = crate::config::load(&config).unwrap();
        let second = crate::config::load_reusing(&config, Some(&first)).unwrap();
        let open = |c: &crate::routing::Compiled| c.asn.as_ref().unwrap().databases()[0].clone();
        assert!(Arc::ptr_eq(&open(&first), &open(&second)));
        // A changed file (another size) is read again.
        std::fs::remove_file(dir.join("asn.mmdb")).unwrap();
        write(4_200_000_000);
        let third = crate::config::load_reusing(&config, Some(&second)).unwrap();
        assert!(!Arc::ptr_eq(&open(&second), &open(&third)));
        assert_eq!(
            open(&third).lookup("11.0.0.1".parse().unwrap()).asn,
            Some(4_200_000_000)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
