//! `[[zones]]`: origin, SOA, apex NS and static records, each record's data in zone-file syntax.
use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;

use hickory_proto::rr::rdata::{SOA, TXT};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;

use super::{Ctx, MAX_TTL, parse_name};
use crate::config::checked::CheckedZone;
use crate::config::raw::{RawConfig, RawZone, S};

const DEFAULT_ZONE_TTL: u32 = 3600;
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

pub(super) fn zone(cx: &mut Ctx, z: &S<RawZone>) -> CheckedZone {
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

    cname_loops(cx, z, &origin, &records);

    CheckedZone {
        origin,
        soa,
        ns,
        records,
    }
}

/// CNAME chains inside the zone must end (RFC 1034 3.6.2): every record of a loop is
/// reported at its own line, with the whole loop.
fn cname_loops(cx: &mut Ctx, z: &RawZone, origin: &Name, records: &[Record]) {
    let targets: BTreeMap<&Name, &Name> = records
        .iter()
        .filter_map(|r| match &r.data {
            RData::CNAME(target) => Some((&r.name, &target.0)),
            _ => None,
        })
        .collect();
    let mut reported: Vec<&Name> = Vec::new();
    for start in targets.keys() {
        let mut path = vec![*start];
        while let Some(next) = path.last().and_then(|n| targets.get(n)) {
            if let Some(at) = path.iter().position(|n| n == next) {
                let cycle = &path[at..];
                if cycle.iter().all(|n| !reported.contains(n)) {
                    let text: Vec<String> = cycle
                        .iter()
                        .chain(&cycle[..1])
                        .map(|n| n.to_string())
                        .collect();
                    for name in cycle {
                        let span = z
                            .records
                            .iter()
                            .find(|r| {
                                r.get_ref().rtype.get_ref().eq_ignore_ascii_case("CNAME")
                                    && parse_name(r.get_ref().name.get_ref(), Some(origin))
                                        .ok()
                                        .as_ref()
                                        == Some(*name)
                            })
                            .map_or(z.origin.span(), |r| r.span());
                        cx.err(span, format!("CNAME loop: {}", text.join(" -> ")));
                    }
                    reported.extend(cycle);
                }
                break;
            }
            path.push(next);
        }
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

pub(super) fn check_duplicate_zones(cx: &mut Ctx, raw: &RawConfig, zones: &[CheckedZone]) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
