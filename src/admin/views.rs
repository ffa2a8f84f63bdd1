//! JSON views of the live routing table for the admin API.
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::routing::RoutingTable;
use crate::routing::table::Family;

fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

/// `GET /v1/regions`: each region's evacuation and, per service, its health and latency.
pub fn regions(t: &RoutingTable) -> Value {
    let c = &t.compiled;
    let regions: Vec<Value> = c
        .regions
        .iter()
        .enumerate()
        .map(|(i, region)| {
            let evacuation = t.admin.evacuations.get(&region.name).map(|e| {
                json!({ "reason": e.reason, "by": e.by, "since": e.since, "since_rfc3339": rfc3339(e.since), "expires": e.expires, "expires_rfc3339": e.expires.map(rfc3339) })
            });
            let services: Vec<Value> = c
                .services
                .iter()
                .filter_map(|svc| {
                    let sr = svc.regions.iter().find(|sr| sr.region.index() == i)?;
                    // A hostname endpoint is in both families' lists: list it once.
                    let families: &[Family] = if svc.alias {
                        &[Family::V4]
                    } else {
                        &[Family::V4, Family::V6]
                    };
                    let endpoints: Vec<Value> = families
                        .iter()
                        .flat_map(|f| sr.endpoints(*f).iter())
                        .map(|id| {
                            let e = c.endpoint(*id);
                            let latency = e
                                .target
                                .and_then(|tid| t.health.targets.get(tid.index()))
                                .and_then(|h| h.latency_us)
                                .map(|us| us / 1000.0);
                            let votes = e.target.and_then(|tid| t.health.targets.get(tid.index()));
                            // The service's promote_guard on this endpoint: figure and verdict.
                            let guard = e.guard.filter(|_| svc.guard.is_some()).map(|tid| {
                                let h = t.health.targets.get(tid.index());
                                json!({
                                    "check": c.checks[c.targets[tid.index()].check.index()].name,
                                    "probe_target": c.targets[tid.index()].key,
                                    "figure": h.and_then(|h| h.figure),
                                    "promotable": h.is_some_and(|h| h.promotable),
                                    "text": crate::explain::figure_text(t, tid),
                                })
                            });
                            json!({
                                "guard": guard,
                                "address": e.address.to_string(),
                                "health": t.endpoint_health(*id).map_or("unmonitored", |h| h.name()),
                                "observers": votes.map(|v| v.observers),
                                "seen_down_by": votes.map(|v| v.down_votes),
                                "serving": t.serving(*id),
                                "probe_target": e.target.map(|tid| c.targets[tid.index()].key.clone()),
                                "latency_ms": latency,
                            })
                        })
                        .collect();
                    let up = endpoints.iter().filter(|e| e["serving"] == json!(true)).count();
                    let latencies: Vec<f64> = endpoints.iter().filter_map(|e| e["latency_ms"].as_f64()).collect();
                    let latency = (!latencies.is_empty()).then(|| latencies.iter().sum::<f64>() / latencies.len() as f64);
                    let promotable = svc.guard.map(|_| {
                        families.iter().any(|f| t.region_promotable(svc, sr.endpoints(*f)))
                    });
                    Some(json!({
                        "service": svc.name.to_ascii(),
                        "up": svc.enough_healthy(up, endpoints.len()),
                        "promotable": promotable,
                        "endpoints_up": up,
                        "endpoints_total": endpoints.len(),
                        "latency_ms": latency,
                        "endpoints": endpoints,
                    }))
                })
                .collect();
            // What is in force, and what is scheduled for later (cancel with restore, a 0 %
            // drain or a ramp abort).
            let state = &t.admin.state;
            let drain = t.admin.drains.get(&region.name).map(|(percent, from)| {
                let mut d = json!({ "percent": percent, "from": from });
                if let Some(m) = state.drains.get(&region.name).filter(|_| from == "drain") {
                    d["reason"] = json!(m.reason);
                    d["by"] = json!(m.by);
                    d["since"] = json!(m.since);
                    d["expires"] = json!(m.expires);
                    d["expires_rfc3339"] = json!(m.expires.map(rfc3339));
                }
                d
            });
            let later = |start: Option<u64>| start.is_some_and(|s| s > t.admin.at);
            let mut scheduled: Vec<Value> = Vec::new();
            if let Some(e) = state.evacuations.get(&region.name).filter(|e| later(e.start)) {
                scheduled.push(json!({ "kind": "evacuation", "start": e.start.map(rfc3339), "end": e.expires.map(rfc3339), "reason": e.reason, "by": e.by }));
            }
            if let Some(d) = state.drains.get(&region.name).filter(|d| later(d.start)) {
                scheduled.push(json!({ "kind": "drain", "percent": d.percent, "start": d.start.map(rfc3339), "end": d.expires.map(rfc3339), "reason": d.reason, "by": d.by }));
            }
            for r in state.ramps.values().filter(|r| r.region == region.name && later(Some(r.start))) {
                scheduled.push(json!({ "kind": "ramp", "id": r.id, "start": rfc3339(r.start), "end": r.expires.map(rfc3339), "reason": r.reason, "by": r.by }));
            }
            json!({
                "name": region.name,
                "evacuated": t.admin.evacuated[i],
                "evacuation": evacuation,
                "drain": drain,
                "scheduled": scheduled,
                "precedence": "an evacuation overrides a ramp, a ramp overrides a drain; scheduled entries apply from their start",
                "services": services,
            })
        })
        .collect();
    json!({ "generation": t.generation, "regions": regions })
}

/// `GET /v1/ramps`: every ramp with its state, step and percentage now, and how it ended.
pub fn ramps(t: &RoutingTable) -> Value {
    let at = t.admin.at;
    let ramps: Vec<Value> = t
        .admin
        .state
        .ramps
        .values()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            v["state"] = json!(r.state(at));
            v["step"] = json!(r.step(at) + 1);
            v["percent"] = json!(r.percent(at));
            v["next_step_at"] = json!(r.next_step_at(at).map(rfc3339));
            v["start_rfc3339"] = json!(rfc3339(r.start));
            v
        })
        .collect();
    json!({ "generation": t.generation, "ramps": ramps })
}

/// `GET /v1/routing-table`: the generation, when and why it was built, and its content.
pub fn routing_table(t: &RoutingTable) -> Value {
    let c = &t.compiled;
    let built = t
        .built_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    json!({
        "generation": t.generation,
        "built_at": rfc3339(built),
        "built_for": t.built_for,
        "probes_complete": t.probes_complete,
        "zones": c.zones.iter().map(|z| json!({
            "origin": z.origin.to_string(),
            "names": z.nodes.len(),
        })).collect::<Vec<_>>(),
        "services": c.services.iter().map(|svc| json!({
            "name": svc.name.to_ascii(),
            "policy": svc.policy.name(),
            "ttl": svc.ttl,
            "answers": svc.answers,
            "min_healthy": svc.min_healthy,
            "on_all_down": svc.on_all_down.name(),
            "regions": svc.regions.iter().map(|sr| json!({
                "region": c.region(sr.region).name,
                "evacuated": t.evacuated(sr.region),
                "ipv4": sr.v4.iter().map(|e| json!({
                    "address": c.endpoint(*e).address.to_string(),
                    "serving": t.serving(*e),
                })).collect::<Vec<_>>(),
                "ipv6": sr.v6.iter().map(|e| json!({
                    "address": c.endpoint(*e).address.to_string(),
                    "serving": t.serving(*e),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "evacuations": t.admin.evacuations.values().collect::<Vec<_>>(),
    })
}
