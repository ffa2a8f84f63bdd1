//! `[[assert]]` and `[[safety]]`: names resolved to ids here; assertions are evaluated after
//! compile (by `meridian check` and every reload), safety rules by the admin API.
use std::collections::HashMap;
use std::ops::Range;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, RecordType};

use super::{Ctx, parse_name};
use crate::config::checked::CheckedService;
use crate::config::raw::{RawAssert, RawConfig, RawSafety, S};
use crate::routing::answer::rcode_name;
use crate::routing::query::Client;
use crate::routing::scenario::{Assertion, Expect, SafetyKind, SafetyRule, Scenario};
use crate::routing::table::{RegionId, ServiceId};

/// Every `[[assert]]`, with the span it is reported at (`at` is filled in by `load`).
pub(super) fn asserts(
    cx: &mut Ctx,
    raw: &RawConfig,
    region_ids: &HashMap<String, RegionId>,
) -> Vec<(Range<usize>, Assertion)> {
    raw.asserts
        .iter()
        .filter_map(|a| Some((a.span(), assertion(cx, a.get_ref(), region_ids)?)))
        .collect()
}

fn assertion(
    cx: &mut Ctx,
    a: &RawAssert,
    region_ids: &HashMap<String, RegionId>,
) -> Option<Assertion> {
    let name = cx.name(&a.name, None, "assertion name");
    let client = match Client::parse(a.client.get_ref()) {
        Ok(c) => Some(c),
        Err(e) => {
            cx.err(a.client.span(), format!("assertion client: {e}"));
            None
        }
    };
    let qtype = match a
        .qtype
        .as_ref()
        .map(|q| (q.get_ref().to_ascii_uppercase(), q.span()))
    {
        None => match client {
            Some(c) if c.addr.is_ipv6() => RecordType::AAAA,
            _ => RecordType::A,
        },
        Some((q, span)) => match q.parse::<RecordType>() {
            Ok(t) => t,
            Err(_) => {
                cx.err(span, format!("{q:?} is not a query type"));
                RecordType::A
            }
        },
    };
    let region = |cx: &mut Ctx, r: &S<String>| {
        let id = region_ids.get(r.get_ref()).copied();
        if id.is_none() {
            cx.err(r.span(), format!("undefined region {:?}", r.get_ref()));
        }
        id
    };
    let mut expect = Vec::new();
    if let Some(r) = &a.expect_region {
        expect.extend(region(cx, r).map(Expect::Region));
    }
    if let Some(list) = &a.expect_answer {
        expect.push(Expect::Answer(
            list.get_ref().iter().map(|v| v.get_ref().clone()).collect(),
        ));
    }
    if let Some(r) = &a.expect_rcode {
        let want = r.get_ref().to_ascii_uppercase();
        let codes = [
            ResponseCode::NoError,
            ResponseCode::ServFail,
            ResponseCode::NXDomain,
            ResponseCode::Refused,
            ResponseCode::NotImp,
            ResponseCode::FormErr,
        ];
        match codes.into_iter().find(|c| rcode_name(*c) == want) {
            Some(c) => expect.push(Expect::Rcode(c)),
            None => cx.err(
                r.span(),
                format!("{want:?} is not NOERROR, SERVFAIL, NXDOMAIN, REFUSED, NOTIMP or FORMERR"),
            ),
        }
    }
    if let Some(s) = &a.expect_scope {
        match u8::try_from(*s.get_ref()) {
            Ok(p) if p <= 128 => expect.push(Expect::Scope(p)),
            _ => cx.err(s.span(), "expect_scope is a prefix length, 0 to 128"),
        }
    }
    if a.expect_region.is_none()
        && a.expect_answer.is_none()
        && a.expect_rcode.is_none()
        && a.expect_scope.is_none()
    {
        cx.err(
            a.name.span(),
            "an assertion needs an expectation: expect_region, expect_answer, expect_rcode or \
             expect_scope",
        );
    }
    let mut scenario = Scenario::default();
    if let Some(w) = &a.with {
        let w = w.get_ref();
        let list = |cx: &mut Ctx, l: &[S<String>]| -> Vec<RegionId> {
            l.iter().filter_map(|r| region(cx, r)).collect()
        };
        scenario.evacuated = list(cx, &w.evacuated);
        scenario.down = list(cx, &w.down);
        scenario.not_promotable = list(cx, &w.not_promotable);
        for (r, percent) in &w.drained {
            let Some(&id) = region_ids.get(r) else {
                cx.err(percent.span(), format!("undefined region {r:?}"));
                continue;
            };
            match *percent.get_ref() {
                p @ 1..=100 => scenario.drained.push((id, p as f64)),
                p => cx.err(percent.span(), format!("drain {p} % is not 1 to 100")),
            }
        }
    }
    Some(Assertion {
        at: Default::default(),
        name: name?,
        qtype,
        client: client?,
        expect,
        scenario,
    })
}

/// Every `[[safety]]` rule, with its span (`at` is filled in by `load`).
pub(super) fn safety(
    cx: &mut Ctx,
    raw: &RawConfig,
    region_ids: &HashMap<String, RegionId>,
    services: &[CheckedService],
) -> Vec<(Range<usize>, SafetyRule)> {
    raw.safety
        .iter()
        .filter_map(|r| {
            let kind = rule(cx, r, region_ids, services)?;
            Some((
                r.span(),
                SafetyRule {
                    at: String::new(),
                    kind,
                },
            ))
        })
        .collect()
}

fn rule(
    cx: &mut Ctx,
    r: &S<RawSafety>,
    region_ids: &HashMap<String, RegionId>,
    services: &[CheckedService],
) -> Option<SafetyKind> {
    let span = r.span();
    let r = r.get_ref();
    let min = |cx: &mut Ctx, v: &S<i64>| match *v.get_ref() {
        n @ 1..=64 => Some(n as f64),
        n => {
            cx.err(v.span(), format!("{n} is not 1 to 64"));
            None
        }
    };
    match (
        &r.services,
        &r.min_serving_regions,
        &r.regions,
        &r.min_serving,
    ) {
        (Some(list), Some(n), None, None) => {
            let min = min(cx, n)?;
            // How many regions a service spans: a floor above that can never hold.
            let spans = |svc: &CheckedService| {
                let mut regions: Vec<RegionId> = svc.endpoints.iter().map(|e| e.region).collect();
                regions.sort();
                regions.dedup();
                regions.len() as f64
            };
            let mut ids = Vec::new();
            for s in list.get_ref() {
                if s.get_ref() == "*" {
                    // Every service that spans enough regions for the floor to mean something.
                    ids.extend(
                        services
                            .iter()
                            .enumerate()
                            .filter(|(_, svc)| spans(svc) >= min)
                            .map(|(i, _)| ServiceId(i as u32)),
                    );
                    continue;
                }
                let found = parse_name(s.get_ref(), None).ok().and_then(|name| {
                    let name = LowerName::new(&name);
                    services
                        .iter()
                        .position(|svc| LowerName::new(&svc.name) == name)
                });
                match found {
                    Some(i) if spans(&services[i]) < min => cx.err(
                        s.span(),
                        format!(
                            "service {} spans {} region(s): it can never have {min} serving",
                            services[i].name,
                            spans(&services[i])
                        ),
                    ),
                    Some(i) => ids.push(ServiceId(i as u32)),
                    None => cx.err(s.span(), format!("no service {:?}", s.get_ref())),
                }
            }
            ids.sort();
            ids.dedup();
            Some(SafetyKind::MinServingRegions { services: ids, min })
        }
        (None, None, Some(list), Some(n)) => {
            let mut ids = Vec::new();
            for reg in list.get_ref() {
                match region_ids.get(reg.get_ref()) {
                    Some(id) => ids.push(*id),
                    None => cx.err(reg.span(), format!("undefined region {:?}", reg.get_ref())),
                }
            }
            let min = min(cx, n)?;
            if min > ids.len() as f64 {
                cx.err(
                    n.span(),
                    format!(
                        "min_serving {min} is more than the {} regions listed",
                        ids.len()
                    ),
                );
            }
            Some(SafetyKind::MinServing { regions: ids, min })
        }
        _ => {
            cx.err(
                span,
                "a safety rule is `services` with `min_serving_regions`, or `regions` with \
                 `min_serving`",
            );
            None
        }
    }
}
