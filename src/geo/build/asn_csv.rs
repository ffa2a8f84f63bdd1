//! An ASN database from ip-location-db's ASN CSV (`asn-ipv4.csv`, `asn-ipv6.csv`): rows of
//! `start,end,autonomous_system_number,autonomous_system_organization`, where start and end
//! are the first and last address of an inclusive range and the organisation may be quoted
//! (`"Comcast Cable Communications, LLC"`, `""` for a quote inside). Each range becomes the
//! CIDR networks that cover it exactly, with the record Meridian's ASN reader (and MaxMind's
//! GeoLite2-ASN) uses: `autonomous_system_number` (uint32) and
//! `autonomous_system_organization`.
//!
//! The output is a pure function of the input (no clock): building twice gives the same bytes.
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use super::source::SourceError;
use super::writer::{RecordSize, Value, Writer};

/// Builds the database from the CSV at `path`: `(file name, bytes)`, the name being the
/// CSV's with `.mmdb` in place of `.csv`.
pub fn build_from_csv(path: &Path) -> Result<Vec<(String, Vec<u8>)>, SourceError> {
    let text = std::fs::read_to_string(path).map_err(|source| SourceError::Read {
        path: path.to_owned(),
        source,
    })?;
    let stem = path
        .file_stem()
        .map_or("asn".into(), |s| s.to_string_lossy().into_owned());
    let file = path
        .file_name()
        .map_or("asn.csv".into(), |s| s.to_string_lossy().into_owned());
    let bytes = build(&text, &path.display().to_string(), &file)?;
    Ok(vec![(format!("{stem}.mmdb"), bytes)])
}

/// The database bytes for CSV `text`; `origin` names it in errors, `file` in the description.
pub fn build(text: &str, origin: &str, file: &str) -> Result<Vec<u8>, SourceError> {
    let mut writer = Writer::new("Meridian-ASN");
    writer.description(
        "en",
        &format!("ASN database built by meridian geoip-build from {file} (ip-location-db ASN CSV)"),
    );
    writer.record_size(RecordSize::Bits32);
    // Each distinct (number, organisation) is one value, shared by its networks.
    let mut values: HashMap<u32, Vec<(String, usize)>> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |message: String| SourceError::Csv {
            origin: origin.to_owned(),
            line: i + 1,
            message,
        };
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.splitn(4, ',');
        let (Some(start), Some(end), Some(asn), Some(org)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad("expected start,end,asn,organisation".into()));
        };
        let address = |s: &str| {
            s.trim()
                .parse::<IpAddr>()
                .map_err(|_| bad(format!("{s:?} is not an IP address")))
        };
        let (start, end) = (address(start)?, address(end)?);
        let asn: u32 = asn
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| bad(format!("{asn:?} is not an AS number (1 to 4294967295)")))?;
        let org = match org.strip_prefix('"') {
            Some(quoted) => {
                let inner = quoted
                    .strip_suffix('"')
                    .ok_or_else(|| bad("unterminated quoted organisation".into()))?;
                Cow::from(inner.replace("\"\"", "\""))
            }
            None => Cow::from(org),
        };
        let nets = cidrs(start, end)
            .ok_or_else(|| bad(format!("{start} to {end} is not a range of one family")))?;
        let same = values.entry(asn).or_default();
        let data = match same.iter().find(|(o, _)| *o == org) {
            Some((_, data)) => *data,
            None => {
                let data = writer.add_value(Value::Map(vec![
                    ("autonomous_system_number".into(), Value::U32(asn)),
                    (
                        "autonomous_system_organization".into(),
                        Value::String(org.to_string()),
                    ),
                ]));
                same.push((org.into_owned(), data));
                data
            }
        };
        for net in nets {
            writer.insert_value(net, data);
        }
    }
    writer.to_bytes().map_err(|source| SourceError::Write {
        file: "ASN database",
        source,
    })
}

/// The CIDR networks covering `start..=end` exactly, widest first; `None` when the two are
/// of different families or out of order.
fn cidrs(start: IpAddr, end: IpAddr) -> Option<Vec<IpNet>> {
    let (lo, hi, width) = match (start, end) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            (u128::from(u32::from(a)), u128::from(u32::from(b)), 32u32)
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128u32),
        _ => return None,
    };
    if lo > hi {
        return None;
    }
    let mut out = Vec::new();
    let mut cur = lo;
    loop {
        // The largest aligned block at `cur` that does not pass `hi`.
        let last_of = |bits: u32| {
            if bits >= 128 {
                u128::MAX
            } else {
                cur + ((1u128 << bits) - 1)
            }
        };
        let mut size_bits = cur.trailing_zeros().min(width);
        while size_bits > 0 && last_of(size_bits) > hi {
            size_bits -= 1;
        }
        let prefix = (width - size_bits) as u8;
        let net = match start {
            IpAddr::V4(_) => IpNet::V4(
                ipnet::Ipv4Net::new((cur as u32).into(), prefix).expect("prefix within 32"),
            ),
            IpAddr::V6(_) => {
                IpNet::V6(ipnet::Ipv6Net::new(cur.into(), prefix).expect("prefix within 128"))
            }
        };
        out.push(net);
        let last = last_of(size_bits);
        if last >= hi {
            break;
        }
        cur = last + 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::geo::AsnDb;

    #[test]
    fn ranges_become_exact_cidrs() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let nets = |a: &str, b: &str| {
            cidrs(ip(a), ip(b))
                .unwrap()
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(nets("1.0.0.0", "1.0.0.255"), ["1.0.0.0/24"]);
        assert_eq!(
            nets("1.0.128.0", "1.0.196.255"),
            ["1.0.128.0/18", "1.0.192.0/22", "1.0.196.0/24"]
        );
        assert_eq!(nets("0.0.0.0", "255.255.255.255"), ["0.0.0.0/0"]);
        assert_eq!(
            nets("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ["::/0"]
        );
        assert_eq!(
            nets("2001:200::", "2001:200:1b9:ffff:ffff:ffff:ffff:ffff").len(),
            6
        );
        assert!(cidrs(ip("1.0.0.1"), ip("1.0.0.0")).is_none());
        assert!(cidrs(ip("1.0.0.0"), ip("::1")).is_none());
    }

    #[test]
    fn ip_location_db_rows_build_an_asn_database() {
        let csv = "1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"\n\
                   24.0.0.0,24.23.255.255,7922,\"Comcast Cable Communications, LLC\"\n\
                   24.30.0.0,24.30.127.255,7922,\"Comcast Cable Communications, LLC\"\n\
                   81.2.64.0,81.2.127.255,20712,Andrews & Arnold Ltd\n\
                   2.2.0.0,2.2.0.255,64500,\"The \"\"Quoted\"\" Net\"\n";
        let bytes = build(csv, "asn-ipv4.csv", "asn-ipv4.csv").unwrap();
        assert_eq!(bytes, build(csv, "asn-ipv4.csv", "asn-ipv4.csv").unwrap());
        let db = AsnDb::from_bytes(bytes, Path::new("asn-ipv4.mmdb")).unwrap();
        // 24.0.0.0 to 24.23.255.255 is 24.0.0.0/12 and 24.16.0.0/13.
        let info = db.lookup("24.1.2.3".parse().unwrap());
        assert_eq!((info.asn, info.network_prefix), (Some(7922), 12));
        assert_eq!(
            db.organisation(&info),
            Some("Comcast Cable Communications, LLC")
        );
        let info = db.lookup("24.20.0.1".parse().unwrap());
        assert_eq!((info.asn, info.network_prefix), (Some(7922), 13));
        assert_eq!(db.lookup("24.24.0.1".parse().unwrap()).asn, None);
        let info = db.lookup("2.2.0.9".parse().unwrap());
        assert_eq!(db.organisation(&info), Some("The \"Quoted\" Net"));
        let info = db.lookup("1.0.0.1".parse().unwrap());
        assert_eq!(db.organisation(&info), Some("Cloudflare, Inc."));
        assert_eq!(
            db.coverage().to_string(),
            "6 networks, all with an ASN, all with an organisation; 4 distinct ASNs"
        );
    }

    #[test]
    fn bad_rows_are_refused_with_their_line() {
        for (csv, want) in [
            (
                "1.0.0.0,1.0.0.255,13335,X\n1.0.1.0,1.0.1.255,X\n",
                "asn.csv:2: expected start,end,asn,organisation",
            ),
            ("1.0.0.0,nope,13335,X\n", "\"nope\" is not an IP address"),
            ("1.0.0.0,1.0.0.255,AS1,X\n", "\"AS1\" is not an AS number"),
            ("1.0.0.0,1.0.0.255,0,X\n", "is not an AS number"),
            ("1.0.0.0,::1,1,X\n", "not a range of one family"),
            ("1.0.0.0,1.0.0.255,1,\"X\n", "unterminated"),
        ] {
            let err = build(csv, "asn.csv", "asn.csv").unwrap_err().to_string();
            assert!(
                err.contains(want) && err.starts_with("asn.csv:"),
                "{csv}: {err}"
            );
        }
    }
}
