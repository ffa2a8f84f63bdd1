//! `[[zones]]`: origin, SOA, apex NS and static records, each record's data in zone-file syntax,
//! merged with the records of the zone's `file` (see [`zonefile`]).
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;

use hickory_proto::rr::rdata::{SOA, TXT};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;

use super::{Ctx, MAX_TTL};
use crate::config::checked::CheckedZone;
use crate::config::raw::{RawConfig, RawSoa, RawZone, S};
use crate::config::zonefile::{self, STATIC_TYPES};
use crate::config::{FileLine, Place};

const DEFAULT_ZONE_TTL: u32 = 3600;

pub(super) fn zone(cx: &mut Ctx, z: &S<RawZone>, base: &Path) -> CheckedZone {
    let z = z.get_ref();
    let parsed_origin = cx.name(&z.origin, None, "zone origin");
    let origin = parsed_origin.clone().unwrap_or_else(Name::root);
    let default_ttl = z
        .ttl
        .as_ref()
        .map_or(DEFAULT_ZONE_TTL, |t| cx.ttl(t, "zone TTL"));

    // The zone file's records, each with its line; its SOA and apex NS set apart.
    let mut file_soa: Option<(Record, FileLine)> = None;
    let mut file_ns: Vec<(Record, FileLine)> = Vec::new();
    let mut file_records: Vec<(Record, FileLine)> = Vec::new();
    if let (Some(f), Some(origin)) = (&z.file, &parsed_origin) {
        for (rec, at) in zone_file(cx, f, origin, default_ttl, base) {
            match rec.record_type() {
                RecordType::SOA if rec.name != *origin => cx.err_at(
                    &Place::File(at),
                    format!(
                        "an SOA belongs at the zone apex {origin}, not at {}",
                        rec.name
                    ),
                ),
                RecordType::SOA => match &file_soa {
                    Some((_, first)) => cx.err_at(
                        &Place::File(at.clone()),
                        format!("zone {origin} has a second SOA (the first is at {first})"),
                    ),
                    None => file_soa = Some((rec, at)),
                },
                RecordType::NS if rec.name == *origin => file_ns.push((rec, at)),
                _ => file_records.push((rec, at)),
            }
        }
    }

    // One source each for the SOA and the apex NS: the config or the zone file.
    let soa = match (&z.soa, file_soa) {
        (Some(inline), Some((_, at))) => {
            let other = cx.place(&Place::Config(inline.span()));
            cx.err_at(
                &Place::File(at),
                format!("zone {origin} has an SOA here and `soa` at {other}: keep one of them"),
            );
            inline_soa(cx, inline.get_ref(), &origin, default_ttl)
        }
        (Some(inline), None) => inline_soa(cx, inline.get_ref(), &origin, default_ttl),
        (None, Some((rec, _))) => rec,
        (None, None) => {
            cx.err(
                z.origin.span(),
                format!("zone {origin} has no SOA: give `soa`, or an SOA record in its `file`"),
            );
            Record::from_rdata(
                origin.clone(),
                0,
                RData::SOA(SOA::new(Name::root(), Name::root(), 0, 0, 0, 0, 0)),
            )
        }
    };
    let ns = match (&z.ns, file_ns.first()) {
        (Some(inline), Some((_, at))) => {
            let other = cx.place(&Place::Config(inline.span()));
            cx.err_at(
                &Place::File(at.clone()),
                format!(
                    "zone {origin} has apex NS records here and `ns` at {other}: keep one of them"
                ),
            );
            inline_ns(cx, inline, &origin, default_ttl)
        }
        (Some(inline), None) => inline_ns(cx, inline, &origin, default_ttl),
        (None, Some(_)) => file_ns.into_iter().map(|(rec, _)| rec).collect(),
        (None, None) => {
            cx.err(
                z.origin.span(),
                format!("zone {origin} has no NS: give `ns`, or apex NS records in its `file`"),
            );
            Vec::new()
        }
    };

    // Each record with where it was given, for problems that name it; `seen` finds the first
    // of a duplicate without a scan (a zone file may hold many thousands of records).
    let mut records = Vec::new();
    let mut places: Vec<Place> = Vec::new();
    let mut seen: HashMap<(LowerName, RData), usize> = HashMap::new();
    for r in &z.records {
        let span = r.span();
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
                "apex NS records come from the zone's `ns` list or its `file`",
            );
            continue;
        }
        match rdata(rtype, r.data.get_ref(), &origin) {
            Ok(data) => {
                let mut rec = Record::from_rdata(name, ttl, data);
                rec.dns_class = DNSClass::IN;
                let key = (LowerName::new(&rec.name), rec.data.clone());
                if let Some(&i) = seen.get(&key) {
                    let first = cx.place(&places[i]);
                    cx.err(
                        r.name.span(),
                        format!(
                            "record {} {rtype} {} is given twice (also at {first})",
                            rec.name,
                            r.data.get_ref()
                        ),
                    );
                } else {
                    seen.insert(key, records.len());
                    records.push(rec);
                    places.push(Place::Config(span));
                }
            }
            Err(e) => cx.err(
                r.data.span(),
                format!("bad {rtype} data {:?}: {e}", r.data.get_ref()),
            ),
        }
    }
    // The zone file's records merge with the inline ones.
    for (rec, at) in file_records {
        let key = (LowerName::new(&rec.name), rec.data.clone());
        if let Some(&i) = seen.get(&key) {
            let first = cx.place(&places[i]);
            cx.err_at(
                &Place::File(at),
                format!(
                    "record {} {} {} is given twice (also at {first})",
                    rec.name,
                    rec.record_type(),
                    rec.data
                ),
            );
        } else {
            seen.insert(key, records.len());
            records.push(rec);
            places.push(Place::File(at));
        }
    }

    // A CNAME owns its name alone (RFC 1034 3.6.2).
    let mut by_name: BTreeMap<&Name, Vec<usize>> = BTreeMap::new();
    for (i, rec) in records.iter().enumerate() {
        by_name.entry(&rec.name).or_default().push(i);
    }
    for (name, at) in &by_name {
        let is_cname = |i: &&usize| records[**i].record_type() == RecordType::CNAME;
        let Some(&cname) = at.iter().find(is_cname) else {
            continue;
        };
        let other = at.iter().find(|i| **i != cname);
        let why = if *name == &origin {
            "the zone apex cannot be a CNAME".to_string()
        } else if let Some(&other) = other {
            let kind = if records[other].record_type() == RecordType::CNAME {
                format!("{name} has more than one CNAME")
            } else {
                format!("{name} has a CNAME beside other data")
            };
            format!(
                "{kind} ({} at {})",
                records[other].record_type(),
                cx.place(&places[other])
            )
        } else {
            continue;
        };
        cx.err_at(&places[cname], why);
    }

    cname_loops(cx, &records, &places);

    let dnssec = z
        .dnssec
        .as_ref()
        .zip(parsed_origin.as_ref())
        .and_then(|(d, o)| super::dnssec::dnssec(cx, d, o, base));
    CheckedZone {
        origin,
        soa,
        ns,
        records,
        places,
        dnssec,
    }
}

/// Reads and parses the zone's `file`: its records, each with its line; problems go to `cx`.
fn zone_file(
    cx: &mut Ctx,
    f: &S<String>,
    origin: &Name,
    default_ttl: u32,
    base: &Path,
) -> Vec<(Record, FileLine)> {
    let path = base.join(f.get_ref());
    match (cx.read)(&path) {
        Ok(text) => {
            let parsed = zonefile::parse(&path, &text, origin, default_ttl, &mut *cx.read);
            cx.problems.extend(parsed.problems);
            parsed.records
        }
        Err(e) => {
            cx.err(
                f.span(),
                format!("cannot read zone file {}: {e}", path.display()),
            );
            Vec::new()
        }
    }
}

/// The SOA given in the config.
fn inline_soa(cx: &mut Ctx, soa_raw: &RawSoa, origin: &Name, default_ttl: u32) -> Record {
    let mname = cx.name(&soa_raw.mname, Some(origin), "SOA mname");
    let rname = cx.name(&soa_raw.rname, Some(origin), "SOA rname");
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
    Record::from_rdata(
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
    )
}

/// The apex NS records the config's `ns` list gives.
fn inline_ns(cx: &mut Ctx, ns: &S<Vec<S<String>>>, origin: &Name, ttl: u32) -> Vec<Record> {
    if ns.get_ref().is_empty() {
        cx.err(
            ns.span(),
            format!("zone {origin} needs at least one NS name"),
        );
    }
    ns.get_ref()
        .iter()
        .filter_map(|n| cx.name(n, Some(origin), "NS name"))
        .map(|target| {
            Record::from_rdata(
                origin.clone(),
                ttl,
                RData::NS(hickory_proto::rr::rdata::NS(target)),
            )
        })
        .collect()
}

/// CNAME chains inside the zone must end (RFC 1034 3.6.2): every record of a loop is
/// reported at its own place, with the whole loop.
fn cname_loops(cx: &mut Ctx, records: &[Record], places: &[Place]) {
    let targets: BTreeMap<&Name, (&Name, &Place)> = records
        .iter()
        .zip(places)
        .filter_map(|(r, at)| match &r.data {
            RData::CNAME(target) => Some((&r.name, (&target.0, at))),
            _ => None,
        })
        .collect();
    let mut reported: Vec<&Name> = Vec::new();
    for start in targets.keys() {
        let mut path = vec![*start];
        while let Some((next, _)) = path.last().and_then(|n| targets.get(n)) {
            if let Some(at) = path.iter().position(|n| n == next) {
                let cycle = &path[at..];
                if cycle.iter().all(|n| !reported.contains(n)) {
                    let text: Vec<String> = cycle
                        .iter()
                        .chain(&cycle[..1])
                        .map(|n| n.to_string())
                        .collect();
                    for name in cycle {
                        if let Some((_, place)) = targets.get(name) {
                            cx.err_at(place, format!("CNAME loop: {}", text.join(" -> ")));
                        }
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
