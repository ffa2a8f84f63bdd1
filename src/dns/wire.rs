//! A zero-allocation pass over a query's wire bytes: everything hickory's parser lets through
//! that an authoritative server must still refuse (RFC 1035, 6891, 7871), and the EDNS and ECS
//! fields routing needs.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const HEADER_LEN: usize = 12;
const TYPE_OPT: u16 = 41;
const OPTION_ECS: u16 = 8;
const OPTION_NSID: u16 = 3;

/// Why a query gets FORMERR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("message ends inside a field")]
    Truncated,
    #[error("QDCOUNT is not 1")]
    QuestionCount,
    #[error("bad name encoding")]
    BadName,
    /// A question name is the first name in a message: a compression pointer in it can only
    /// point into the header, and echoing it would make the response mean something else.
    #[error("compression pointer in the question name")]
    CompressedQuestion,
    #[error("bytes after the last record")]
    TrailingBytes,
    #[error("more than one OPT record")]
    DuplicateOpt,
    #[error("OPT record not owned by the root")]
    OptOwner,
    #[error("malformed EDNS option")]
    BadOption,
    #[error("more than one ECS option")]
    DuplicateEcs,
    #[error("ECS family is not IPv4 or IPv6")]
    EcsFamily,
    #[error("ECS source prefix is longer than the address")]
    EcsPrefix,
    #[error("ECS address length does not match its source prefix")]
    EcsAddressLength,
    #[error("ECS address has bits set beyond its source prefix")]
    EcsHostBits,
}

/// An EDNS Client Subnet option as received (RFC 7871 section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ecs {
    pub addr: IpAddr,
    pub source_prefix: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    /// The requestor's UDP payload size, raised to 512 as RFC 6891 6.2.5 asks.
    pub payload: u16,
    pub version: u8,
    /// The DO bit, which a response copies (RFC 3225 3).
    pub dnssec_ok: bool,
    pub ecs: Option<Ecs>,
    /// The query asks for the server's NSID (RFC 5001).
    pub nsid: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scanned {
    pub edns: Option<Edns>,
    /// Offset just past the question (name, type, class).
    pub question_end: usize,
    pub qtype: u16,
    pub qclass: u16,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// The last name skipped ended with a compression pointer.
    pointer: bool,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.pos.checked_add(n).ok_or(Malformed::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(Malformed::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Skips a name; returns whether it was the root.
    fn skip_name(&mut self) -> Result<bool, Malformed> {
        let mut total = 0usize;
        let mut first = true;
        loop {
            let len = self.u8()?;
            match len & 0xC0 {
                0x00 if len == 0 => return Ok(first),
                0x00 => {
                    total += len as usize + 1;
                    if total > 254 {
                        return Err(Malformed::BadName);
                    }
                    self.take(len as usize)?;
                }
                // A compression pointer ends the name in this message.
                0xC0 => {
                    self.u8()?;
                    self.pointer = true;
                    return Ok(false);
                }
                _ => return Err(Malformed::BadName),
            }
            first = false;
        }
    }
}

/// Whether any question name in the message uses a compression pointer: questions come first,
/// so such a pointer can only point into the header, and echoing it would change its meaning.
pub fn question_compressed(buf: &[u8]) -> bool {
    if buf.len() < HEADER_LEN {
        return false;
    }
    let qd = u16::from_be_bytes([buf[4], buf[5]]);
    let mut c = Cursor {
        buf,
        pos: HEADER_LEN,
        pointer: false,
    };
    for _ in 0..qd {
        if c.skip_name().is_err() {
            return false;
        }
        if c.pointer {
            return true;
        }
        if c.take(4).is_err() {
            return false;
        }
    }
    false
}

/// What an error response needs of a query's OPT record (RFC 6891 6.1.1: a response to a
/// query with OPT carries one), read leniently from a message [`scan`] may have refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptIn {
    /// The requestor's UDP payload size, raised to 512.
    pub payload: u16,
    pub dnssec_ok: bool,
}

impl From<Edns> for OptIn {
    fn from(e: Edns) -> OptIn {
        OptIn {
            payload: e.payload,
            dnssec_ok: e.dnssec_ok,
        }
    }
}

/// The first OPT record owned by the root, found by walking the records without reading
/// their data; `None` when there is none or the walk cannot reach it.
pub fn opt_in(buf: &[u8]) -> Option<OptIn> {
    let count = |i: usize| buf.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let (qd, an, ns, ar) = (count(4)?, count(6)?, count(8)?, count(10)?);
    let mut c = Cursor {
        buf,
        pos: HEADER_LEN,
        pointer: false,
    };
    for _ in 0..qd {
        c.skip_name().ok()?;
        c.take(4).ok()?;
    }
    for i in 0..u32::from(an) + u32::from(ns) + u32::from(ar) {
        let root = c.skip_name().ok()?;
        let rtype = c.u16().ok()?;
        let class = c.u16().ok()?;
        let ttl = c.take(4).ok()?;
        let len = c.u16().ok()?;
        c.take(usize::from(len)).ok()?;
        if rtype == TYPE_OPT && root && i >= u32::from(an) + u32::from(ns) {
            return Some(OptIn {
                payload: class.max(512),
                dnssec_ok: ttl[2] & 0x80 != 0,
            });
        }
    }
    None
}

/// Checks a query's structure and reads its EDNS. The header is known to be present.
pub fn scan(buf: &[u8]) -> Result<Scanned, Malformed> {
    if buf.len() < HEADER_LEN {
        return Err(Malformed::Truncated);
    }
    let count = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    if qd != 1 {
        return Err(Malformed::QuestionCount);
    }
    let mut c = Cursor {
        buf,
        pos: HEADER_LEN,
        pointer: false,
    };
    c.skip_name()?;
    if c.pointer {
        return Err(Malformed::CompressedQuestion);
    }
    let qtype = c.u16()?;
    let qclass = c.u16()?;
    let question_end = c.pos;
    for _ in 0..u32::from(an) + u32::from(ns) {
        c.skip_name()?;
        c.take(8)?;
        let len = c.u16()?;
        c.take(len as usize)?;
    }
    let mut edns = None;
    for _ in 0..ar {
        let root = c.skip_name()?;
        let rtype = c.u16()?;
        let class = c.u16()?;
        let ttl = c.take(4)?;
        let len = c.u16()?;
        let rdata = c.take(len as usize)?;
        if rtype != TYPE_OPT {
            continue;
        }
        if edns.is_some() {
            return Err(Malformed::DuplicateOpt);
        }
        if !root {
            return Err(Malformed::OptOwner);
        }
        let (ecs, nsid) = options(rdata)?;
        edns = Some(Edns {
            payload: class.max(512),
            version: ttl[1],
            dnssec_ok: ttl[2] & 0x80 != 0,
            ecs,
            nsid,
        });
    }
    if c.pos != buf.len() {
        return Err(Malformed::TrailingBytes);
    }
    Ok(Scanned {
        edns,
        question_end,
        qtype,
        qclass,
    })
}

/// The ECS option, if any, and whether NSID was asked for.
fn options(rdata: &[u8]) -> Result<(Option<Ecs>, bool), Malformed> {
    let mut c = Cursor {
        buf: rdata,
        pos: 0,
        pointer: false,
    };
    let mut ecs = None;
    let mut nsid = false;
    while c.pos < rdata.len() {
        let code = c.u16().map_err(|_| Malformed::BadOption)?;
        let len = c.u16().map_err(|_| Malformed::BadOption)?;
        let data = c.take(len as usize).map_err(|_| Malformed::BadOption)?;
        if code == OPTION_ECS {
            if ecs.is_some() {
                return Err(Malformed::DuplicateEcs);
            }
            ecs = Some(parse_ecs(data)?);
        }
        nsid |= code == OPTION_NSID;
    }
    Ok((ecs, nsid))
}

/// Parses and checks an ECS option body (RFC 7871 section 6).
pub fn parse_ecs(data: &[u8]) -> Result<Ecs, Malformed> {
    let [f0, f1, source_prefix, _scope, addr @ ..] = data else {
        return Err(Malformed::BadOption);
    };
    let family = u16::from_be_bytes([*f0, *f1]);
    let width = match family {
        1 => 32,
        2 => 128,
        _ => return Err(Malformed::EcsFamily),
    };
    let source_prefix = *source_prefix;
    if source_prefix > width {
        return Err(Malformed::EcsPrefix);
    }
    if addr.len() != source_prefix.div_ceil(8) as usize {
        return Err(Malformed::EcsAddressLength);
    }
    if let Some(last) = addr.last() {
        let used = source_prefix % 8;
        if used != 0 && last & (0xFF >> used) != 0 {
            return Err(Malformed::EcsHostBits);
        }
    }
    let addr = if family == 1 {
        let mut o = [0u8; 4];
        o[..addr.len()].copy_from_slice(addr);
        IpAddr::V4(Ipv4Addr::from(o))
    } else {
        let mut o = [0u8; 16];
        o[..addr.len()].copy_from_slice(addr);
        IpAddr::V6(Ipv6Addr::from(o))
    };
    Ok(Ecs {
        addr,
        source_prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(extra_ar: &[u8], arcount: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
        q.extend_from_slice(&arcount.to_be_bytes());
        q.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        q.extend_from_slice(extra_ar);
        q
    }

    fn opt(options: &[u8]) -> Vec<u8> {
        let mut o = vec![0, 0, 41, 0x10, 0x00, 0, 0, 0, 0];
        o.extend_from_slice(&(options.len() as u16).to_be_bytes());
        o.extend_from_slice(options);
        o
    }

    fn ecs(body: &[u8]) -> Vec<u8> {
        let mut o = vec![0, 8];
        o.extend_from_slice(&(body.len() as u16).to_be_bytes());
        o.extend_from_slice(body);
        o
    }

    #[test]
    fn opt_in_is_found_where_the_scan_refuses_the_message() {
        // A malformed ECS option: scan says FORMERR, the OPT is still there to copy.
        let q = query(&opt(&ecs(&[0, 3, 8, 0, 11])), 1);
        assert_eq!(scan(&q), Err(Malformed::EcsFamily));
        let want = OptIn {
            payload: 4096,
            dnssec_ok: false,
        };
        assert_eq!(opt_in(&q), Some(want));
        // DO set; a payload under 512 is raised to 512.
        let mut small = opt(&[]);
        small[3..5].copy_from_slice(&100u16.to_be_bytes());
        small[7] = 0x80;
        let got = opt_in(&query(&small, 1));
        assert_eq!(got.map(|o| (o.payload, o.dnssec_ok)), Some((512, true)));
        // No OPT, or a walk that breaks before reaching it.
        assert_eq!(opt_in(&query(&[], 0)), None);
        assert_eq!(opt_in(&query(&opt(&[])[..5], 1)), None);
    }

    #[test]
    fn plain_query_has_no_edns() {
        let s = scan(&query(&[], 0)).unwrap();
        assert_eq!(
            (s.edns, s.question_end, s.qtype, s.qclass),
            (None, 33, 1, 1)
        );
    }

    #[test]
    fn reads_payload_version_and_ecs() {
        let q = query(&opt(&ecs(&[0, 1, 24, 0, 11, 0, 130])), 1);
        let s = scan(&q).unwrap();
        let e = s.edns.unwrap();
        assert_eq!(e.payload, 4096);
        assert_eq!(e.version, 0);
        assert_eq!(
            e.ecs,
            Some(Ecs {
                addr: "11.0.130.0".parse().unwrap(),
                source_prefix: 24
            })
        );
    }

    #[test]
    fn refuses_malformed_structure() {
        let mut two_opts = opt(&[]);
        two_opts.extend(opt(&[]));
        assert_eq!(scan(&query(&two_opts, 2)), Err(Malformed::DuplicateOpt));
        let mut trailing = query(&[], 0);
        trailing.push(0);
        assert_eq!(scan(&trailing), Err(Malformed::TrailingBytes));
        let mut q = query(&[], 0);
        q[5] = 2;
        assert_eq!(scan(&q), Err(Malformed::QuestionCount));
        let q = query(&[], 0);
        assert_eq!(scan(&q[..20]), Err(Malformed::Truncated));
        let q = query(&opt(&[0, 8, 0, 10, 0]), 1);
        assert_eq!(scan(&q), Err(Malformed::BadOption));
    }

    #[test]
    fn refuses_a_compressed_question() {
        // The question name is a pointer into the header (found by the fuzzer).
        let q = [
            0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 0x02, 0, 1, 0, 1,
        ];
        assert_eq!(scan(&q), Err(Malformed::CompressedQuestion));
    }

    #[test]
    fn finds_a_compressed_name_in_any_question() {
        let two = [
            0x12, 0x34, 0x01, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0xC0, 0x02, 0, 1, 0, 1, 0, 0, 1, 0, 1,
        ];
        assert!(question_compressed(&two));
        let plain = [
            0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1,
        ];
        assert!(!question_compressed(&plain));
    }

    #[test]
    fn refuses_malformed_ecs() {
        assert_eq!(parse_ecs(&[0, 3, 8, 0, 1]), Err(Malformed::EcsFamily));
        assert_eq!(
            parse_ecs(&[0, 1, 33, 0, 1, 2, 3, 4, 5]),
            Err(Malformed::EcsPrefix)
        );
        assert_eq!(
            parse_ecs(&[0, 1, 24, 0, 1, 2, 3, 4]),
            Err(Malformed::EcsAddressLength)
        );
        assert_eq!(
            parse_ecs(&[0, 1, 24, 0, 1, 2]),
            Err(Malformed::EcsAddressLength)
        );
        assert_eq!(
            parse_ecs(&[0, 1, 20, 0, 11, 0, 0x81]),
            Err(Malformed::EcsHostBits)
        );
        assert_eq!(parse_ecs(&[0, 1]), Err(Malformed::BadOption));
        let zero = parse_ecs(&[0, 2, 0, 0]).unwrap();
        assert_eq!(zero.source_prefix, 0);
        let v6 = parse_ecs(&[0, 2, 48, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 3]).unwrap();
        assert_eq!(v6.addr, "2001:db8:3::".parse::<IpAddr>().unwrap());
    }
}
