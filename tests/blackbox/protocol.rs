//! The DNS protocol as a resolver sees it (the checklist in DNS-BEHAVIOUR.md): header bits,
//! rcodes, negative answers, EDNS, ECS, truncation, TCP framing and timeouts, delegations.
//! Every test talks to the real binary over real sockets; malformed queries are built byte by
//! byte because no DNS library will encode them.
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::harness::*;

const TYPE_A: u16 = 1;
const TYPE_OPT: u16 = 41;
const OPTION_ECS: u16 = 8;
/// Header flags of a plain query with RD set (QR 0, opcode QUERY).
const FLAGS_RD: u16 = 0x0100;

// ---------------------------------------------------------------------------------------------
// Raw query building and response reading.

fn header(id: u16, flags: u16, qd: u16, ar: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(12);
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&flags.to_be_bytes());
    for count in [qd, 0, 0, ar] {
        h.extend_from_slice(&count.to_be_bytes());
    }
    h
}

/// A question in wire form, the name's letter case kept as given.
fn question(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::new();
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// A query for `name`/A with the given header flags and additional records appended.
fn raw_query(id: u16, flags: u16, name: &str, additional: &[Vec<u8>]) -> Vec<u8> {
    let mut q = header(id, flags, 1, additional.len() as u16);
    q.extend(question(name, TYPE_A));
    for rr in additional {
        q.extend_from_slice(rr);
    }
    q
}

/// An OPT record: root owner, payload size, extended rcode 0, the version, DO clear.
fn opt_rr(payload: u16, version: u8, options: &[u8]) -> Vec<u8> {
    let mut o = vec![0];
    o.extend_from_slice(&TYPE_OPT.to_be_bytes());
    o.extend_from_slice(&payload.to_be_bytes());
    o.extend_from_slice(&[0, version, 0, 0]);
    o.extend_from_slice(&(options.len() as u16).to_be_bytes());
    o.extend_from_slice(options);
    o
}

fn edns_option(code: u16, body: &[u8]) -> Vec<u8> {
    let mut o = code.to_be_bytes().to_vec();
    o.extend_from_slice(&(body.len() as u16).to_be_bytes());
    o.extend_from_slice(body);
    o
}

/// An ECS option body: FAMILY, SOURCE PREFIX-LENGTH, SCOPE 0, then the address bytes as given.
fn ecs_body(family: u16, source: u8, addr: &[u8]) -> Vec<u8> {
    let mut b = family.to_be_bytes().to_vec();
    b.extend_from_slice(&[source, 0]);
    b.extend_from_slice(addr);
    b
}

fn parse(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).expect("a parseable DNS response")
}

/// Sends raw bytes over UDP and parses the response, which must come.
fn udp_bytes(server: SocketAddr, bytes: &[u8]) -> (Vec<u8>, Message) {
    let raw = udp_raw(server, bytes, IO_TIMEOUT).expect("a UDP response");
    let msg = parse(&raw);
    (raw, msg)
}

fn rcode(m: &Message) -> ResponseCode {
    m.metadata.response_code
}

/// Skips a (possibly compressed) name in a message; returns the offset after it.
fn skip_name(buf: &[u8], mut pos: usize) -> usize {
    loop {
        let len = buf[pos];
        if len == 0 {
            return pos + 1;
        }
        if len & 0xC0 == 0xC0 {
            return pos + 2;
        }
        pos += 1 + len as usize;
    }
}

/// The question section of a message as raw bytes (QDCOUNT must be 1).
fn raw_question(buf: &[u8]) -> &[u8] {
    assert_eq!(u16::from_be_bytes([buf[4], buf[5]]), 1, "QDCOUNT");
    let end = skip_name(buf, 12) + 4;
    &buf[12..end]
}

/// The OPT record of a response exactly as it went on the wire.
#[derive(Debug)]
struct RawOpt {
    payload: u16,
    ext_rcode: u8,
    version: u8,
    /// The flags (DO is 0x8000).
    flags: u16,
    rdata: Vec<u8>,
}

fn raw_opt(buf: &[u8]) -> Option<RawOpt> {
    let count = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]) as usize;
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(buf, pos) + 4;
    }
    let mut found = None;
    for i in 0..an + ns + ar {
        pos = skip_name(buf, pos);
        let rtype = u16::from_be_bytes([buf[pos], buf[pos + 1]]);
        let class = u16::from_be_bytes([buf[pos + 2], buf[pos + 3]]);
        let ttl = &buf[pos + 4..pos + 8];
        let len = u16::from_be_bytes([buf[pos + 8], buf[pos + 9]]) as usize;
        let rdata = &buf[pos + 10..pos + 10 + len];
        if rtype == TYPE_OPT {
            assert!(i >= an + ns, "OPT outside the additional section");
            assert!(found.is_none(), "more than one OPT in a response");
            found = Some(RawOpt {
                payload: class,
                ext_rcode: ttl[0],
                version: ttl[1],
                flags: u16::from_be_bytes([ttl[2], ttl[3]]),
                rdata: rdata.to_vec(),
            });
        }
        pos += 10 + len;
    }
    assert_eq!(pos, buf.len(), "response has bytes after its last record");
    found
}

/// The options inside an OPT RDATA as (code, body) pairs.
fn options(rdata: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < rdata.len() {
        let code = u16::from_be_bytes([rdata[pos], rdata[pos + 1]]);
        let len = u16::from_be_bytes([rdata[pos + 2], rdata[pos + 3]]) as usize;
        out.push((code, rdata[pos + 4..pos + 4 + len].to_vec()));
        pos += 4 + len;
    }
    out
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip literal")
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("name literal")
}

/// Asserts a negative answer's authority section: exactly the example zone's SOA, TTL 60
/// (min of the SOA TTL 3600 and its minimum 60), and nothing in answer.
fn assert_example_negative_soa(m: &Message) {
    assert!(
        m.answers.is_empty(),
        "negative answer has records: {:?}",
        m.answers
    );
    assert_eq!(m.authorities.len(), 1, "authority: {:?}", m.authorities);
    let soa = &m.authorities[0];
    assert_eq!(soa.record_type(), RecordType::SOA);
    assert_eq!(soa.name, name("example.com."));
    assert_eq!(soa.ttl, 60, "negative TTL = min(SOA TTL 3600, minimum 60)");
    let RData::SOA(data) = &soa.data else {
        panic!("not SOA data: {soa:?}");
    };
    assert_eq!(data.minimum, 60);
    assert_eq!(data.serial, 2026112201);
}

/// A query with ECS `addr/prefix` over UDP.
fn ecs_query(m: &Meridian, qname: &str, rtype: RecordType, addr: &str, prefix: u8) -> Message {
    udp(m.v4(), &with_ecs(query(qname, rtype), addr, prefix))
}

// ---------------------------------------------------------------------------------------------
// Header bits and rcodes.

#[test]
fn aa_is_set_on_answers_nxdomain_and_nodata_and_ra_never() {
    let m = Meridian::start_example();
    let cases = [
        ("www.example.com.", RecordType::A, ResponseCode::NoError, 1),
        ("mail.example.com.", RecordType::A, ResponseCode::NoError, 1),
        (
            "nope.example.com.",
            RecordType::A,
            ResponseCode::NXDomain,
            0,
        ),
        (
            "mail.example.com.",
            RecordType::AAAA,
            ResponseCode::NoError,
            0,
        ),
    ];
    for (qname, rtype, want_rcode, want_answers) in cases {
        let mut q = query(qname, rtype);
        q.metadata.recursion_desired = true;
        let r = udp(m.v4(), &q);
        assert_eq!(rcode(&r), want_rcode, "{qname} {rtype}");
        assert_eq!(
            r.metadata.message_type,
            MessageType::Response,
            "{qname} {rtype}: QR"
        );
        assert!(r.metadata.authoritative, "{qname} {rtype}: AA");
        assert!(!r.metadata.recursion_available, "{qname} {rtype}: RA");
        assert!(!r.metadata.truncation, "{qname} {rtype}: TC");
        assert_eq!(
            r.answers.len(),
            want_answers,
            "{qname} {rtype}: {:?}",
            r.answers
        );
    }
}

#[test]
fn id_opcode_rd_and_mixed_case_question_are_echoed_exactly() {
    let m = Meridian::start_example();
    for (id, flags) in [(0xBEEF, FLAGS_RD), (0x0001, 0x0000)] {
        let q = raw_query(id, flags, "wWw.ExAmPlE.cOm.", &[]);
        let (raw, r) = udp_bytes(m.v4(), &q);
        assert_eq!(&raw[..2], &id.to_be_bytes(), "ID");
        assert_eq!(r.metadata.op_code, OpCode::Query);
        assert_eq!(r.metadata.recursion_desired, flags == FLAGS_RD, "RD echoed");
        assert!(!r.metadata.recursion_available);
        assert_eq!(
            raw_question(&raw),
            raw_question(&q),
            "question bytes (with the client's letter case) echoed"
        );
        assert_eq!(r.queries[0].name().to_ascii(), "wWw.ExAmPlE.cOm.");
        // Names match case-insensitively: still the geo answer. 127.0.0.1 is not in the
        // database, so routing falls to default_order (us-east first).
        assert_eq!(rcode(&r), ResponseCode::NoError);
        assert!(r.metadata.authoritative);
        assert_eq!(addrs(&r), vec![ip("192.0.2.10")]);
        assert_eq!(r.answers[0].ttl, 30);
    }
}

#[test]
fn mixed_case_static_name_is_answered() {
    let m = Meridian::start_example();
    let r = udp(m.v4(), &query("MaIl.EXAMPLE.com.", RecordType::A));
    assert_eq!(rcode(&r), ResponseCode::NoError);
    assert_eq!(r.queries[0].name().to_ascii(), "MaIl.EXAMPLE.com.");
    assert_eq!(addrs(&r), vec![ip("192.0.2.25")]);
    assert_eq!(r.answers[0].ttl, 3600);
}

#[test]
fn name_outside_every_zone_is_refused_without_aa() {
    let m = Meridian::start_example();
    for qname in ["www.example.org.", "com.", "example.com.evil.net."] {
        let r = udp(m.v4(), &query(qname, RecordType::A));
        assert_eq!(rcode(&r), ResponseCode::Refused, "{qname}");
        assert!(!r.metadata.authoritative, "{qname}: AA must be clear");
        assert!(!r.metadata.recursion_available);
        assert!(
            r.answers.is_empty() && r.authorities.is_empty(),
            "{qname}: {r:?}"
        );
        assert_eq!(r.queries[0].name(), &name(qname));
    }
}

#[test]
fn notify_and_status_opcodes_get_notimp() {
    let m = Meridian::start_example();
    for (opcode, want) in [(4u16, OpCode::Notify), (2u16, OpCode::Status)] {
        let flags = opcode << 11;
        let q = raw_query(0x4242, flags, "example.com.", &[]);
        let (raw, r) = udp_bytes(m.v4(), &q);
        assert_eq!(&raw[..2], &[0x42, 0x42], "{want}: ID");
        assert_eq!(rcode(&r), ResponseCode::NotImp, "{want}");
        assert_eq!(r.metadata.op_code, want, "opcode echoed");
        assert!(r.answers.is_empty(), "{want}: {:?}", r.answers);
    }
}

/// Sends `bytes` and asserts FORMERR with the query's ID and no answer records.
fn assert_formerr(server: SocketAddr, bytes: &[u8], what: &str) {
    let raw = udp_raw(server, bytes, IO_TIMEOUT)
        .unwrap_or_else(|| panic!("{what}: no response (FORMERR expected)"));
    let r = parse(&raw);
    assert_eq!(rcode(&r), ResponseCode::FormErr, "{what}");
    assert_eq!(&raw[..2], &bytes[..2], "{what}: ID echoed");
    assert_eq!(r.metadata.message_type, MessageType::Response, "{what}: QR");
    assert!(!r.metadata.recursion_available, "{what}: RA");
    assert!(r.answers.is_empty(), "{what}: answers {:?}", r.answers);
}

#[test]
fn qdcount_zero_is_formerr() {
    let m = Meridian::start_example();
    assert_formerr(m.v4(), &header(0x1000, FLAGS_RD, 0, 0), "QDCOUNT 0");
}

#[test]
fn qdcount_two_is_formerr() {
    let m = Meridian::start_example();
    let mut q = header(0x1001, FLAGS_RD, 2, 0);
    q.extend(question("www.example.com.", TYPE_A));
    q.extend(question("mail.example.com.", TYPE_A));
    assert_formerr(m.v4(), &q, "QDCOUNT 2");
}

#[test]
fn trailing_garbage_is_formerr() {
    let m = Meridian::start_example();
    let mut q = raw_query(0x1002, FLAGS_RD, "www.example.com.", &[]);
    q.extend_from_slice(&[0xDE, 0xAD, 0xBE, 0xEF]);
    assert_formerr(m.v4(), &q, "trailing bytes");
}

#[test]
fn two_opt_records_is_formerr() {
    let m = Meridian::start_example();
    let q = raw_query(
        0x1003,
        FLAGS_RD,
        "www.example.com.",
        &[opt_rr(1232, 0, &[]), opt_rr(1232, 0, &[])],
    );
    assert_formerr(m.v4(), &q, "two OPT records");
}

fn ecs_query_bytes(id: u16, body: &[u8]) -> Vec<u8> {
    let opt = opt_rr(1232, 0, &edns_option(OPTION_ECS, body));
    raw_query(id, FLAGS_RD, "www.example.com.", &[opt])
}

#[test]
fn ecs_with_unknown_family_is_formerr() {
    let m = Meridian::start_example();
    let q = ecs_query_bytes(0x1010, &ecs_body(3, 8, &[11]));
    assert_formerr(m.v4(), &q, "ECS family 3");
}

#[test]
fn ecs_source_prefix_longer_than_the_family_is_formerr() {
    let m = Meridian::start_example();
    let q = ecs_query_bytes(0x1011, &ecs_body(1, 33, &[11, 0, 130, 1, 0]));
    assert_formerr(m.v4(), &q, "ECS IPv4 source prefix 33");
    let q = ecs_query_bytes(0x1014, &ecs_body(2, 129, &[0x20; 17]));
    assert_formerr(m.v4(), &q, "ECS IPv6 source prefix 129");
}

#[test]
fn ecs_with_address_longer_than_prefix_needs_is_formerr() {
    let m = Meridian::start_example();
    // /24 needs three address bytes; four are sent.
    let q = ecs_query_bytes(0x1012, &ecs_body(1, 24, &[11, 0, 130, 0]));
    assert_formerr(m.v4(), &q, "ECS /24 with 4 address bytes");
}

#[test]
fn ecs_with_address_shorter_than_prefix_needs_is_formerr() {
    let m = Meridian::start_example();
    // /24 needs three address bytes; two are sent.
    let q = ecs_query_bytes(0x1015, &ecs_body(1, 24, &[11, 0]));
    assert_formerr(m.v4(), &q, "ECS /24 with 2 address bytes");
}

#[test]
fn ecs_with_bits_set_past_the_prefix_is_formerr() {
    let m = Meridian::start_example();
    // 11.0.129.0/20: 0x81 has bit 0x01 set beyond the 20-bit prefix.
    let q = ecs_query_bytes(0x1013, &ecs_body(1, 20, &[11, 0, 0x81]));
    assert_formerr(m.v4(), &q, "ECS /20 with host bits");
}

#[test]
fn truncated_question_is_formerr() {
    let m = Meridian::start_example();
    let q = raw_query(0x1020, FLAGS_RD, "www.example.com.", &[]);
    // Cut inside the name, and then inside QTYPE/QCLASS.
    assert_formerr(m.v4(), &q[..18], "question cut inside the name");
    assert_formerr(m.v4(), &q[..q.len() - 2], "question cut inside QCLASS");
}

/// Asserts the response carries our OPT (RFC 6891 6.1.1: every response to a query with OPT
/// does), with DO copied from the query.
fn assert_our_opt(raw: &[u8], dnssec_ok: bool, what: &str) {
    let opt = raw_opt(raw).unwrap_or_else(|| panic!("{what}: no OPT in the response"));
    assert_eq!(opt.version, 0, "{what}: EDNS version");
    assert_eq!(opt.payload, 1232, "{what}: our payload size");
    assert_eq!(opt.flags & 0x8000 != 0, dnssec_ok, "{what}: DO copied");
}

#[test]
fn error_responses_carry_an_opt_when_the_query_had_one() {
    let m = Meridian::start_example();
    let opt = || opt_rr(1232, 0, &[]);
    // NOTIMP for another opcode.
    let q = raw_query(0x3000, 4 << 11, "example.com.", &[opt()]);
    let (raw, r) = udp_bytes(m.v4(), &q);
    assert_eq!(rcode(&r), ResponseCode::NotImp);
    assert_our_opt(&raw, false, "NOTIMP");
    // FORMERR for QDCOUNT 0 and 2, and for a malformed ECS option.
    let mut zero = header(0x3001, FLAGS_RD, 0, 1);
    zero.extend(opt());
    let mut two = header(0x3002, FLAGS_RD, 2, 1);
    two.extend(question("www.example.com.", TYPE_A));
    two.extend(question("mail.example.com.", TYPE_A));
    two.extend(opt());
    let bad_ecs = ecs_query_bytes(0x3003, &ecs_body(3, 8, &[11]));
    for (what, q) in [
        ("QDCOUNT 0", zero),
        ("QDCOUNT 2", two),
        ("ECS family 3", bad_ecs),
    ] {
        let (raw, r) = udp_bytes(m.v4(), &q);
        assert_eq!(rcode(&r), ResponseCode::FormErr, "{what}");
        assert_our_opt(&raw, false, what);
    }
    // DO is copied into an error response's OPT too.
    let mut dnssec = opt_rr(1232, 0, &[]);
    dnssec[7] = 0x80;
    let q = raw_query(0x3004, 4 << 11, "example.com.", &[dnssec]);
    let (raw, _) = udp_bytes(m.v4(), &q);
    assert_our_opt(&raw, true, "NOTIMP with DO");
    // REFUSED outside our zones, over UDP and TCP.
    let q = raw_query(0x3005, FLAGS_RD, "www.example.org.", &[opt()]);
    let (raw, r) = udp_bytes(m.v4(), &q);
    assert_eq!(rcode(&r), ResponseCode::Refused);
    assert_our_opt(&raw, false, "REFUSED");
    // Without OPT in the query, none in the response.
    let q = raw_query(0x3006, 4 << 11, "example.com.", &[]);
    let (raw, _) = udp_bytes(m.v4(), &q);
    assert!(raw_opt(&raw).is_none(), "NOTIMP without OPT in the query");
}

/// The data of the response OPT's first option with `code`, if any.
fn raw_option(raw: &[u8], code: u16) -> Option<Vec<u8>> {
    let opt = raw_opt(raw)?;
    let mut rest = &opt.rdata[..];
    while rest.len() >= 4 {
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        if u16::from_be_bytes([rest[0], rest[1]]) == code {
            return Some(rest[4..4 + len].to_vec());
        }
        rest = &rest[4 + len..];
    }
    None
}

/// The Extended DNS Error (RFC 8914) in a response's OPT: (info code, text).
fn raw_ede(raw: &[u8]) -> Option<(u16, String)> {
    let data = raw_option(raw, 15)?;
    let info = u16::from_be_bytes([data[0], data[1]]);
    Some((info, String::from_utf8_lossy(&data[2..]).into_owned()))
}

#[test]
fn extended_dns_errors_explain_refusals_when_the_query_had_opt() {
    let m = Meridian::start_example();
    let opt = || opt_rr(1232, 0, &[]);
    // Outside our zones: 20, Not Authoritative.
    let q = raw_query(0x3020, FLAGS_RD, "www.example.org.", &[opt()]);
    let (raw, _) = udp_bytes(m.v4(), &q);
    assert_eq!(raw_ede(&raw), Some((20, String::new())));
    // Another opcode: 21, Not Supported, naming it.
    let q = raw_query(0x3021, 4 << 11, "example.com.", &[opt()]);
    let (raw, _) = udp_bytes(m.v4(), &q);
    let (code, text) = raw_ede(&raw).expect("EDE on NOTIMP");
    assert_eq!(code, 21);
    assert_eq!(text, "opcode NOTIFY is not supported");
    // Another class: 21 as well.
    let mut chaos = raw_query(0x3022, FLAGS_RD, "example.com.", &[opt()]);
    let qclass = 12 + "example.com.".len() + 1 + 2;
    chaos[qclass..qclass + 2].copy_from_slice(&3u16.to_be_bytes());
    let (raw, r) = udp_bytes(m.v4(), &chaos);
    assert_eq!(rcode(&r), ResponseCode::Refused);
    assert_eq!(raw_ede(&raw).map(|e| e.0), Some(21));
    // No OPT in the query: no EDE (there is nowhere to put it).
    let q = raw_query(0x3023, FLAGS_RD, "www.example.org.", &[]);
    let (raw, _) = udp_bytes(m.v4(), &q);
    assert_eq!(raw_ede(&raw), None);
    // Answers carry none.
    let q = raw_query(0x3024, FLAGS_RD, "www.example.com.", &[opt()]);
    let (raw, _) = udp_bytes(m.v4(), &q);
    assert_eq!(raw_ede(&raw), None);
}

#[test]
fn nsid_is_returned_when_asked_for() {
    let text = example_config().replacen("[server]\n", "[server]\nnsid = \"ns1.fra\"\n", 1);
    let m = Meridian::start(&text);
    let nsid_of = |raw: &[u8]| raw_option(raw, 3);
    let ask = opt_rr(1232, 0, &edns_option(3, &[]));
    // A traffic-managed name (which the fast path passes on) and static data.
    for (id, name) in [(0x3030, "www.example.com."), (0x3031, "mail.example.com.")] {
        let q = raw_query(id, FLAGS_RD, name, std::slice::from_ref(&ask));
        let (raw, r) = udp_bytes(m.v4(), &q);
        assert_eq!(rcode(&r), ResponseCode::NoError, "{name}");
        assert_eq!(nsid_of(&raw).as_deref(), Some(&b"ns1.fra"[..]), "{name}");
        // Not asked: not sent.
        let q = raw_query(id, FLAGS_RD, name, &[opt_rr(1232, 0, &[])]);
        let (raw, _) = udp_bytes(m.v4(), &q);
        assert_eq!(nsid_of(&raw), None, "{name}");
    }
}

#[test]
fn a_formerr_too_large_for_udp_goes_out_header_only() {
    let m = Meridian::start_example();
    // Three questions of about 250 bytes each: echoing them would take over 512 bytes.
    let long = |c: char| {
        let label: String = std::iter::repeat_n(c, 60).collect();
        format!("{label}.{label}.{label}.{label}.example.com.")
    };
    let mut q = header(0x3010, FLAGS_RD, 3, 0);
    for c in ['a', 'b', 'c'] {
        q.extend(question(&long(c), TYPE_A));
    }
    let raw = udp_raw(m.v4(), &q, IO_TIMEOUT).expect("a FORMERR, not silence");
    assert_eq!(raw.len(), 12, "header only: {raw:?}");
    assert_eq!(&raw[..2], &[0x30, 0x10], "ID echoed");
    assert_eq!(raw[3] & 0x0F, 1, "FORMERR");
    assert_eq!(&raw[4..12], &[0; 8], "no sections");
}

#[test]
fn header_shorter_than_12_bytes_gets_no_answer_and_serving_continues() {
    let m = Meridian::start_example();
    let short = &raw_query(0x2000, FLAGS_RD, "www.example.com.", &[])[..11];
    assert_eq!(
        udp_raw(m.v4(), short, Duration::from_millis(700)),
        None,
        "an 11-byte message must not be answered"
    );
    let r = udp(m.v4(), &query("www.example.com.", RecordType::A));
    assert_eq!(rcode(&r), ResponseCode::NoError);
    assert_eq!(addrs(&r), vec![ip("192.0.2.10")]);
}

// ---------------------------------------------------------------------------------------------
// Apex, negative answers, CNAMEs, ANY.

#[test]
fn apex_ns_query_has_in_zone_glue() {
    let m = Meridian::start_example();
    let r = udp(m.v4(), &query("example.com.", RecordType::NS));
    assert_eq!(rcode(&r), ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    let mut ns: Vec<String> = r
        .answers
        .iter()
        .map(|rec| {
            assert_eq!(rec.name, name("example.com."));
            assert_eq!(rec.ttl, 3600);
            match &rec.data {
                RData::NS(n) => n.0.to_ascii(),
                other => panic!("not NS: {other:?}"),
            }
        })
        .collect();
    ns.sort();
    assert_eq!(ns, ["ns1.example.com.", "ns2.example.com."]);
    let mut glue: Vec<(String, RecordType, IpAddr)> = r
        .additionals
        .iter()
        .map(|rec| {
            let addr = rec.data.ip_addr().expect("glue is an address");
            (rec.name.to_ascii(), rec.record_type(), addr)
        })
        .collect();
    glue.sort();
    assert_eq!(
        glue,
        vec![
            (
                "ns1.example.com.".to_string(),
                RecordType::A,
                ip("192.0.2.53")
            ),
            (
                "ns1.example.com.".to_string(),
                RecordType::AAAA,
                ip("2001:db8:53::1")
            ),
            (
                "ns2.example.com.".to_string(),
                RecordType::A,
                ip("198.51.100.53")
            ),
        ]
    );
}

#[test]
fn apex_soa_query_returns_the_zone_soa() {
    let m = Meridian::start_example();
    let r = udp(m.v4(), &query("example.com.", RecordType::SOA));
    assert_eq!(rcode(&r), ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert_eq!(r.answers.len(), 1, "{:?}", r.answers);
    let soa = &r.answers[0];
    assert_eq!(soa.name, name("example.com."));
    assert_eq!(soa.ttl, 3600, "a positive SOA answer keeps the SOA TTL");
    let RData::SOA(data) = &soa.data else {
        panic!("not SOA: {soa:?}");
    };
    assert_eq!(data.mname, name("ns1.example.com."));
    assert_eq!(data.rname, name("hostmaster.example.com."));
    assert_eq!(data.serial, 2026112201);
    assert_eq!(data.minimum, 60);
    assert!(r.authorities.is_empty(), "{:?}", r.authorities);
}

#[test]
fn nxdomain_carries_zone_soa_with_negative_ttl() {
    let m = Meridian::start_example();
    for qname in [
        "nope.example.com.",
        "deep.below.nope.example.com.",
        "x.mail.example.com.",
    ] {
        let r = udp(m.v4(), &query(qname, RecordType::A));
        assert_eq!(rcode(&r), ResponseCode::NXDomain, "{qname}");
        assert!(r.metadata.authoritative, "{qname}");
        assert_example_negative_soa(&r);
    }
}

#[test]
fn nodata_carries_zone_soa_with_negative_ttl() {
    let m = Meridian::start_example();
    for (qname, rtype) in [
        ("mail.example.com.", RecordType::AAAA),
        ("example.com.", RecordType::A),
        ("ns2.example.com.", RecordType::TXT),
    ] {
        let r = udp(m.v4(), &query(qname, rtype));
        assert_eq!(rcode(&r), ResponseCode::NoError, "{qname} {rtype}");
        assert!(r.metadata.authoritative, "{qname} {rtype}");
        assert_example_negative_soa(&r);
    }
}

#[test]
fn empty_non_terminal_is_nodata_not_nxdomain() {
    let m = Meridian::start_example();
    // `_tcp.www` exists only because `_https._tcp.www` does.
    for rtype in [RecordType::A, RecordType::SRV, RecordType::TXT] {
        let r = udp(m.v4(), &query("_tcp.www.example.com.", rtype));
        assert_eq!(rcode(&r), ResponseCode::NoError, "_tcp.www {rtype}");
        assert!(r.metadata.authoritative);
        assert_example_negative_soa(&r);
    }
    // The name below it is real data.
    let r = udp(
        m.v4(),
        &query("_https._tcp.www.example.com.", RecordType::SRV),
    );
    assert_eq!(rcode(&r), ResponseCode::NoError);
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].record_type(), RecordType::SRV);
    // And a sibling that does not exist is NXDOMAIN.
    let r = udp(m.v4(), &query("_udp.www.example.com.", RecordType::SRV));
    assert_eq!(rcode(&r), ResponseCode::NXDomain);
}

#[test]
fn cname_chain_is_followed_inside_the_zone() {
    let m = Meridian::start_example();
    let r = ecs_query(&m, "shop.example.com.", RecordType::A, "12.0.0.0", 24);
    assert_eq!(rcode(&r), ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert_eq!(r.answers.len(), 2, "{:?}", r.answers);
    let cname = &r.answers[0];
    assert_eq!(cname.name, name("shop.example.com."));
    assert_eq!(cname.ttl, 3600);
    match &cname.data {
        RData::CNAME(t) => assert_eq!(t.0, name("www.example.com.")),
        other => panic!("first answer is not the CNAME: {other:?}"),
    }
    let a = &r.answers[1];
    assert_eq!(a.name, name("www.example.com."));
    assert_eq!(a.ttl, 30);
    // A DE client: the geo answer for eu-west, scoped to the GeoIP network.
    assert_eq!(a.data.ip_addr(), Some(ip("198.51.100.10")));
    assert_eq!(ecs_of(&r).expect("ECS echoed").scope_prefix(), 16);
}

#[test]
fn cname_query_returns_just_the_cname() {
    let m = Meridian::start_example();
    let r = udp(m.v4(), &query("shop.example.com.", RecordType::CNAME));
    assert_eq!(rcode(&r), ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert_eq!(r.answers.len(), 1, "{:?}", r.answers);
    match &r.answers[0].data {
        RData::CNAME(t) => assert_eq!(t.0, name("www.example.com.")),
        other => panic!("not a CNAME: {other:?}"),
    }
    assert!(r.authorities.is_empty(), "{:?}", r.authorities);
}

#[test]
fn any_is_answered_with_one_rrset() {
    let m = Meridian::start_example();
    // The apex has SOA, NS, MX, TXT and CAA: RFC 8482 wants one RRset (or a synthesized
    // HINFO), not the whole node.
    for qname in ["example.com.", "www.example.com.", "ns1.example.com."] {
        let r = udp(m.v4(), &query(qname, RecordType::ANY));
        assert_eq!(rcode(&r), ResponseCode::NoError, "{qname}");
        assert!(r.metadata.authoritative, "{qname}");
        assert!(!r.answers.is_empty(), "{qname}: ANY got no answer");
        let first = r.answers[0].record_type();
        assert!(
            r.answers
                .iter()
                .all(|rec| rec.record_type() == first && rec.name == name(qname)),
            "{qname}: ANY answer spans more than one RRset: {:?}",
            r.answers
        );
    }
}

// ---------------------------------------------------------------------------------------------
// EDNS.

#[test]
fn opt_only_in_response_when_query_had_one_advertising_1232() {
    let m = Meridian::start_example();
    let cases: [(&str, RecordType); 4] = [
        ("www.example.com.", RecordType::A),
        ("mail.example.com.", RecordType::A),
        ("nope.example.com.", RecordType::A),
        ("www.example.org.", RecordType::A),
    ];
    for (qname, rtype) in cases {
        let plain = query(qname, rtype);
        let raw = udp_raw(m.v4(), &encode(&plain), IO_TIMEOUT).expect("response");
        assert!(
            raw_opt(&raw).is_none(),
            "{qname}: OPT without one in the query"
        );
        assert!(parse(&raw).edns.is_none());

        let raw = udp_raw(m.v4(), &encode(&with_edns(plain, 4096)), IO_TIMEOUT).expect("response");
        let opt = raw_opt(&raw).unwrap_or_else(|| panic!("{qname}: no OPT in response"));
        assert_eq!(opt.payload, 1232, "{qname}: our advertised payload");
        assert_eq!(opt.version, 0, "{qname}");
        assert_eq!(opt.ext_rcode, 0, "{qname}");
        // Only the refusal outside our zones explains itself (EDE 20, RFC 8914).
        let want: &[u8] = if qname.ends_with(".org.") {
            &[0, 15, 0, 2, 0, 20]
        } else {
            &[]
        };
        assert_eq!(opt.rdata, want, "{qname}: options");
    }
}

#[test]
fn edns_version_1_gets_badvers_with_opt_and_no_answer() {
    let m = Meridian::start_example();
    let q = raw_query(
        0x3001,
        FLAGS_RD,
        "www.example.com.",
        &[opt_rr(1232, 1, &[])],
    );
    let (raw, r) = udp_bytes(m.v4(), &q);
    // BADVERS shares the value 16 with BADSIG (RFC 6891, 8945): compare numbers.
    assert_eq!(
        u16::from(rcode(&r)),
        16,
        "extended rcode BADVERS, got {}",
        rcode(&r)
    );
    assert_eq!(
        raw[3] & 0x0F,
        0,
        "low four rcode bits of BADVERS (16) are 0"
    );
    let opt = raw_opt(&raw).expect("BADVERS carries our OPT");
    assert_eq!(opt.ext_rcode, 1, "upper rcode bits: 16 >> 4");
    assert_eq!(opt.version, 0, "our OPT is version 0");
    assert_eq!(opt.payload, 1232);
    assert!(r.answers.is_empty(), "{:?}", r.answers);
    assert!(r.authorities.is_empty(), "{:?}", r.authorities);
    assert_eq!(raw_question(&raw), raw_question(&q));
}

#[test]
fn unknown_edns_options_are_ignored_not_echoed() {
    let m = Meridian::start_example();
    let unknown = [edns_option(65001, &[1, 2, 3]), edns_option(10, &[7; 8])].concat();
    let q = raw_query(
        0x3002,
        FLAGS_RD,
        "mail.example.com.",
        &[opt_rr(1232, 0, &unknown)],
    );
    let (raw, r) = udp_bytes(m.v4(), &q);
    assert_eq!(rcode(&r), ResponseCode::NoError);
    assert_eq!(addrs(&r), vec![ip("192.0.2.25")]);
    let opt = raw_opt(&raw).expect("OPT");
    assert!(
        options_of_code(&opt, 65001).is_empty(),
        "unknown option echoed: {:?}",
        options(&opt.rdata)
    );
}

fn options_of_code(opt: &RawOpt, code: u16) -> Vec<Vec<u8>> {
    options(&opt.rdata)
        .into_iter()
        .filter(|(c, _)| *c == code)
        .map(|(_, b)| b)
        .collect()
}

/// A zone with one name (`big.`) whose TXT RRset is ~4.6 KB and one (`mid.`) of ~900 bytes:
/// the first never fits in UDP, the second fits in 1232 but not in 512.
pub fn large_answer_config() -> String {
    let long = |tag: usize| format!("{tag:03}-{}", "x".repeat(196));
    let mut records = String::new();
    for i in 0..20 {
        records.push_str(&format!(
            "  {{ name = \"big\", type = \"TXT\", data = \"{}\" }},\n",
            long(i)
        ));
    }
    for i in 0..4 {
        records.push_str(&format!(
            "  {{ name = \"mid\", type = \"TXT\", data = \"{}\" }},\n",
            long(i)
        ));
    }
    with_test_paths(&format!(
        r#"[server]
dns_listen = ["127.0.0.1:0", "[::1]:0"]
max_udp_payload = 1232

[[zones]]
origin = "large.test."
ns = ["ns1.large.test."]
soa = {{ mname = "ns1.large.test.", rname = "hostmaster.large.test.", serial = 1, minimum = 60 }}
ttl = 300
records = [
  {{ name = "ns1", type = "A", data = "192.0.2.1" }},
{records}]
"#
    ))
}

fn txt_strings(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .map(|rec| match &rec.data {
            RData::TXT(t) => t
                .txt_data
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<String>(),
            other => panic!("not TXT: {other:?}"),
        })
        .collect()
}

/// Asserts a truncated UDP response: TC, the question, no records in any section but OPT.
fn assert_truncated(raw: &[u8], q: &Message, what: &str) {
    let r = parse(raw);
    assert!(
        r.metadata.truncation,
        "{what}: TC must be set ({} bytes)",
        raw.len()
    );
    assert_eq!(rcode(&r), ResponseCode::NoError, "{what}");
    assert!(
        r.answers.is_empty(),
        "{what}: partial answer {:?}",
        r.answers.len()
    );
    assert!(
        r.authorities.is_empty(),
        "{what}: authority {:?}",
        r.authorities
    );
    assert!(
        r.additionals.is_empty(),
        "{what}: additional {:?}",
        r.additionals
    );
    assert_eq!(r.queries, q.queries, "{what}: question");
    assert_eq!(
        r.edns.is_some(),
        q.edns.is_some(),
        "{what}: OPT iff the query had one"
    );
}

#[test]
fn oversized_udp_answer_is_truncated_and_complete_over_tcp() {
    let m = Meridian::start(&large_answer_config());
    // Bigger than anything UDP allows here: the client asks for 4096 but we cap at 1232.
    for q in [
        with_edns(query("big.large.test.", RecordType::TXT), 4096),
        with_edns(query("big.large.test.", RecordType::TXT), 1232),
        query("big.large.test.", RecordType::TXT),
    ] {
        let raw = udp_raw(m.v4(), &encode(&q), IO_TIMEOUT).expect("a UDP response");
        assert!(raw.len() <= 1232, "UDP response of {} bytes", raw.len());
        assert_truncated(&raw, &q, "big");
    }
    let q = with_edns(query("big.large.test.", RecordType::TXT), 4096);
    let r = tcp(m.v4(), &q);
    assert!(!r.metadata.truncation);
    assert_eq!(rcode(&r), ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    let mut got = txt_strings(&r);
    got.sort();
    let want: Vec<String> = (0..20)
        .map(|i| format!("{i:03}-{}", "x".repeat(196)))
        .collect();
    assert_eq!(got, want, "the full RRset over TCP");
    assert!(r.answers.iter().all(|rec| rec.ttl == 300));
}

#[test]
fn udp_limit_is_512_without_edns_and_the_clients_size_with_it() {
    let m = Meridian::start(&large_answer_config());
    // ~900 bytes: over 512, under 1232.
    let plain = query("mid.large.test.", RecordType::TXT);
    let raw = udp_raw(m.v4(), &encode(&plain), IO_TIMEOUT).expect("response");
    assert!(raw.len() <= 512, "{} bytes without EDNS", raw.len());
    assert_truncated(&raw, &plain, "mid without EDNS");

    let small = with_edns(query("mid.large.test.", RecordType::TXT), 512);
    let raw = udp_raw(m.v4(), &encode(&small), IO_TIMEOUT).expect("response");
    assert!(raw.len() <= 512, "{} bytes with EDNS 512", raw.len());
    assert_truncated(&raw, &small, "mid with EDNS 512");

    let roomy = with_edns(query("mid.large.test.", RecordType::TXT), 1232);
    let raw = udp_raw(m.v4(), &encode(&roomy), IO_TIMEOUT).expect("response");
    let r = parse(&raw);
    assert!(raw.len() > 512 && raw.len() <= 1232, "{} bytes", raw.len());
    assert!(!r.metadata.truncation, "fits in 1232: TC must be clear");
    assert_eq!(txt_strings(&r).len(), 4);
}

// ---------------------------------------------------------------------------------------------
// EDNS Client Subnet.

#[test]
fn ecs_scope_is_the_geoip_network_prefix() {
    let m = Meridian::start_example();
    for (addr, source, scope, answer) in [
        ("11.0.130.0", 24, 20, "192.0.2.10"), // inside 11.0.128.0/20 (US-VA)
        ("12.0.0.0", 24, 16, "198.51.100.10"), // 12.0.0.0/16 DE
        ("15.0.0.0", 24, 16, "203.0.113.20"), // 15.0.0.0/16 BR
        // A source shorter than the GeoIP network: the network's length, which tells the
        // resolver its prefix was not specific enough (RFC 7871 7.2.1).
        ("12.0.0.0", 8, 16, "198.51.100.10"),
        ("11.0.128.0", 18, 20, "192.0.2.10"),
    ] {
        let r = ecs_query(&m, "www.example.com.", RecordType::A, addr, source);
        assert_eq!(rcode(&r), ResponseCode::NoError, "{addr}/{source}");
        assert_eq!(addrs(&r), vec![ip(answer)], "{addr}/{source}");
        let ecs = ecs_of(&r).unwrap_or_else(|| panic!("{addr}/{source}: no ECS"));
        assert_eq!(ecs.scope_prefix(), scope, "{addr}/{source}: scope");
        assert_eq!(
            ecs.source_prefix(),
            source,
            "{addr}/{source}: source echoed"
        );
        assert_eq!(ecs.addr(), ip(addr), "{addr}/{source}: address echoed");
    }
}

#[test]
fn ecs_family_source_and_address_are_echoed_on_the_wire() {
    let m = Meridian::start_example();
    for (family, source, addr, scope) in [
        (1u16, 24u8, vec![11u8, 0, 130], 20u8),
        (1, 20, vec![11, 0, 128], 20),
        (1, 32, vec![12, 0, 0, 1], 16),
        (2, 48, vec![0x20, 0x01, 0x0d, 0xb8, 0, 3], 48),
        (2, 56, vec![0x20, 0x01, 0x0d, 0xb8, 0, 3, 0x10], 48),
    ] {
        let q = ecs_query_bytes(0x5000 + u16::from(source), &ecs_body(family, source, &addr));
        let (raw, r) = udp_bytes(m.v4(), &q);
        assert_eq!(rcode(&r), ResponseCode::NoError, "{family}/{source}");
        let opt = raw_opt(&raw).expect("OPT");
        let ecs = options_of_code(&opt, OPTION_ECS);
        assert_eq!(ecs.len(), 1, "{family}/{source}: one ECS option");
        let mut want = ecs_body(family, source, &addr);
        want[3] = scope;
        assert_eq!(
            ecs[0], want,
            "{family}/{source}: FAMILY, SOURCE, ADDRESS as sent"
        );
    }
}

#[test]
fn ecs_source_prefix_zero_routes_on_packet_source_with_scope_zero() {
    let m = Meridian::start_example();
    for family in [1u16, 2] {
        let q = ecs_query_bytes(0x6000 + family, &ecs_body(family, 0, &[]));
        let (raw, r) = udp_bytes(m.v4(), &q);
        assert_eq!(rcode(&r), ResponseCode::NoError, "family {family}");
        // 127.0.0.1 is not in the database: default_order puts us-east first.
        assert_eq!(addrs(&r), vec![ip("192.0.2.10")], "family {family}");
        let opt = raw_opt(&raw).expect("OPT");
        let ecs = options_of_code(&opt, OPTION_ECS);
        assert_eq!(
            ecs,
            vec![ecs_body(family, 0, &[])],
            "family {family}: /0 echoed, scope 0"
        );
    }
}

#[test]
fn no_ecs_in_response_when_query_had_none() {
    let m = Meridian::start_example();
    for qname in ["www.example.com.", "mail.example.com.", "nope.example.com."] {
        let r = udp(m.v4(), &with_edns(query(qname, RecordType::A), 1232));
        assert!(r.edns.is_some(), "{qname}: OPT");
        assert!(
            ecs_of(&r).is_none(),
            "{qname}: ECS in response to a query without it"
        );
    }
}

#[test]
fn static_records_get_scope_zero() {
    let m = Meridian::start_example();
    for (qname, rtype, rc) in [
        ("mail.example.com.", RecordType::A, ResponseCode::NoError),
        ("example.com.", RecordType::MX, ResponseCode::NoError),
        ("nope.example.com.", RecordType::A, ResponseCode::NXDomain),
    ] {
        let r = ecs_query(&m, qname, rtype, "12.0.0.0", 24);
        assert_eq!(rcode(&r), rc, "{qname}");
        let ecs = ecs_of(&r).unwrap_or_else(|| panic!("{qname}: ECS echoed"));
        assert_eq!(
            ecs.scope_prefix(),
            0,
            "{qname}: static data does not depend on the client"
        );
        assert_eq!(ecs.source_prefix(), 24);
        assert_eq!(ecs.addr(), ip("12.0.0.0"));
    }
}

#[test]
fn ipv6_ecs_routes_and_scopes() {
    let m = Meridian::start_example();
    // 2001:db8:3::/48 is JP (AS): ap-southeast lists the continent.
    let r = ecs_query(&m, "www.example.com.", RecordType::A, "2001:db8:3::", 48);
    assert_eq!(addrs(&r), vec![ip("203.0.113.10")]);
    let ecs = ecs_of(&r).expect("ECS");
    assert_eq!(ecs.scope_prefix(), 48);
    assert_eq!(ecs.source_prefix(), 48);
    assert_eq!(ecs.addr(), ip("2001:db8:3::"));
    // 2001:db8:2::/48 is DE: eu-west.
    let r = ecs_query(&m, "www.example.com.", RecordType::AAAA, "2001:db8:2::", 56);
    assert_eq!(addrs(&r), vec![ip("2001:db8:20::10")]);
    assert_eq!(ecs_of(&r).expect("ECS").scope_prefix(), 48);
}

#[test]
fn answers_differ_by_client_location() {
    let m = Meridian::start_example();
    for (addr, rtype, want) in [
        ("11.0.130.0", RecordType::A, "192.0.2.10"), // US -> us-east
        ("11.0.130.0", RecordType::AAAA, "2001:db8:10::10"), // US -> us-east
        ("12.0.0.0", RecordType::A, "198.51.100.10"), // DE -> eu-west
        ("12.0.0.0", RecordType::AAAA, "2001:db8:20::10"), // DE -> eu-west
        ("15.0.0.0", RecordType::A, "203.0.113.20"), // BR -> sa-east
        ("13.1.0.0", RecordType::A, "203.0.113.10"), // SG -> ap-southeast
        ("14.0.0.0", RecordType::A, "203.0.113.10"), // AU (OC) -> ap-southeast
        ("16.0.0.0", RecordType::A, "198.51.100.10"), // ZA (AF) -> eu-west
        ("18.0.0.0", RecordType::A, "192.0.2.10"),   // MX, no location: NA continent
        // SG AAAA: ap-southeast has no IPv6, so the next region (eu-west is nearest).
        ("13.1.0.0", RecordType::AAAA, "2001:db8:20::10"),
    ] {
        let r = ecs_query(&m, "www.example.com.", rtype, addr, 24);
        assert_eq!(rcode(&r), ResponseCode::NoError, "{addr} {rtype}");
        assert_eq!(addrs(&r), vec![ip(want)], "{addr} {rtype}");
        assert!(
            r.answers.iter().all(|rec| rec.ttl == 30),
            "{addr}: service TTL 30"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// TCP.

#[test]
fn tcp_answers_several_queries_on_one_connection_in_order() {
    let m = Meridian::start_example();
    let mut s = tcp_connect(m.v4());
    // One at a time...
    for (qname, want) in [
        ("mail.example.com.", "192.0.2.25"),
        ("ns1.example.com.", "192.0.2.53"),
    ] {
        let q = query(qname, RecordType::A);
        let r = parse(&tcp_exchange(&mut s, &encode(&q)));
        assert_eq!(r.metadata.id, q.metadata.id);
        assert_eq!(addrs(&r), vec![ip(want)], "{qname}");
    }
    // ...then three pipelined in one write.
    let qs = [
        query("www.example.com.", RecordType::A),
        query("nope.example.com.", RecordType::A),
        query("ns2.example.com.", RecordType::A),
    ];
    let mut framed = Vec::new();
    for q in &qs {
        let b = encode(q);
        framed.extend_from_slice(&(b.len() as u16).to_be_bytes());
        framed.extend(b);
    }
    s.write_all(&framed).expect("pipelined write");
    let mut got = Vec::new();
    for _ in 0..qs.len() {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).expect("length");
        let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut body).expect("body");
        got.push(parse(&body));
    }
    let ids: Vec<u16> = got.iter().map(|r| r.metadata.id).collect();
    let want: Vec<u16> = qs.iter().map(|q| q.metadata.id).collect();
    assert_eq!(ids, want, "responses in query order");
    assert_eq!(addrs(&got[0]), vec![ip("192.0.2.10")]);
    assert_eq!(rcode(&got[1]), ResponseCode::NXDomain);
    assert_eq!(addrs(&got[2]), vec![ip("198.51.100.53")]);
}

fn short_idle_config() -> String {
    example_config()
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("tcp_idle_timeout") {
                "tcp_idle_timeout = \"1s\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads until the server closes the connection or `limit` passes; returns how long it took
/// for the close, or `None` if the connection was still open at the limit.
fn wait_for_close(s: &mut std::net::TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue, // stray bytes: keep waiting, still bounded by `limit`
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            Err(_) => return Some(start.elapsed()), // reset: closed
        }
    }
}

#[test]
fn idle_tcp_connection_is_closed_after_the_idle_timeout() {
    let m = Meridian::start(&short_idle_config());
    let mut s = tcp_connect(m.v4());
    let r = parse(&tcp_exchange(
        &mut s,
        &encode(&query("mail.example.com.", RecordType::A)),
    ));
    assert_eq!(addrs(&r), vec![ip("192.0.2.25")]);
    let closed = wait_for_close(&mut s, Duration::from_secs(5))
        .expect("an idle connection must be closed within 5 s (tcp_idle_timeout = 1s)");
    assert!(
        closed >= Duration::from_millis(500),
        "closed after {closed:?}: sooner than the 1 s idle timeout"
    );
}

#[test]
fn tcp_client_stalling_mid_length_prefix_is_closed() {
    let m = Meridian::start(&short_idle_config());
    let mut s = tcp_connect(m.v4());
    s.write_all(&[0x00]).expect("half a length prefix");
    wait_for_close(&mut s, Duration::from_secs(5))
        .expect("a connection stalled inside a length prefix must be closed within 5 s");
    // The server still serves new connections.
    let r = tcp(m.v4(), &query("mail.example.com.", RecordType::A));
    assert_eq!(addrs(&r), vec![ip("192.0.2.25")]);
}

// ---------------------------------------------------------------------------------------------
// IPv6 listener and address families.

#[test]
fn ipv6_listener_answers_over_udp_and_tcp() {
    let m = Meridian::start_example();
    let q = query("www.example.com.", RecordType::AAAA);
    for r in [udp(m.v6(), &q), tcp(m.v6(), &q)] {
        assert_eq!(rcode(&r), ResponseCode::NoError);
        assert!(r.metadata.authoritative);
        // ::1 is not in the database: default_order, us-east first.
        assert_eq!(addrs(&r), vec![ip("2001:db8:10::10")]);
        assert_eq!(r.answers[0].ttl, 30);
    }
}

#[test]
fn aaaa_for_service_without_v6_endpoints_is_nodata_with_soa() {
    let m = Meridian::start_example();
    // api.example.com. has IPv4 endpoints only.
    let r = ecs_query(&m, "api.example.com.", RecordType::AAAA, "12.0.0.0", 24);
    assert_eq!(rcode(&r), ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert_example_negative_soa(&r);
    // Over the IPv6 listener, without ECS, the same.
    let r = udp(m.v6(), &query("api.example.com.", RecordType::AAAA));
    assert_eq!(rcode(&r), ResponseCode::NoError);
    assert_example_negative_soa(&r);
    // While A has two answers (answers = 2).
    let r = ecs_query(&m, "api.example.com.", RecordType::A, "12.0.0.0", 24);
    let mut got = addrs(&r);
    got.sort();
    assert_eq!(got, vec![ip("198.51.100.20"), ip("198.51.100.21")]);
    assert!(r.answers.iter().all(|rec| rec.ttl == 20));
}

// ---------------------------------------------------------------------------------------------
// Delegation.

fn delegation_config() -> String {
    with_test_paths(
        r#"[server]
dns_listen = ["127.0.0.1:0", "[::1]:0"]

[[zones]]
origin = "example.com."
ns = ["ns1.example.com."]
soa = { mname = "ns1.example.com.", rname = "hostmaster.example.com.", serial = 7, minimum = 60 }
ttl = 3600
records = [
  { name = "ns1", type = "A", data = "192.0.2.53" },
  { name = "sub", type = "NS", data = "ns.sub" },
  { name = "ns.sub", type = "A", data = "192.0.2.99" },
  { name = "www", type = "A", data = "192.0.2.80" },
]
"#,
    )
}

fn assert_referral(r: &Message, what: &str) {
    assert_eq!(rcode(r), ResponseCode::NoError, "{what}");
    assert!(!r.metadata.authoritative, "{what}: a referral has AA clear");
    assert!(r.answers.is_empty(), "{what}: answers {:?}", r.answers);
    let ns: Vec<(&Name, &Record)> = r.authorities.iter().map(|rec| (&rec.name, rec)).collect();
    assert_eq!(ns.len(), 1, "{what}: authority {:?}", r.authorities);
    assert_eq!(ns[0].0, &name("sub.example.com."), "{what}");
    match &ns[0].1.data {
        RData::NS(t) => assert_eq!(t.0, name("ns.sub.example.com."), "{what}"),
        other => panic!("{what}: authority is not NS: {other:?}"),
    }
    let glue: Vec<(String, Option<IpAddr>)> = r
        .additionals
        .iter()
        .map(|rec| (rec.name.to_ascii(), rec.data.ip_addr()))
        .collect();
    assert_eq!(
        glue,
        vec![("ns.sub.example.com.".to_string(), Some(ip("192.0.2.99")))],
        "{what}: glue"
    );
}

#[test]
fn delegated_name_gets_a_referral_with_glue() {
    let m = Meridian::start(&delegation_config());
    for (qname, rtype) in [
        ("x.sub.example.com.", RecordType::A),
        ("deep.x.sub.example.com.", RecordType::AAAA),
        ("sub.example.com.", RecordType::A),
    ] {
        let r = udp(m.v4(), &query(qname, rtype));
        assert_referral(&r, qname);
    }
    // Names beside the cut are still answered authoritatively.
    let r = udp(m.v4(), &query("www.example.com.", RecordType::A));
    assert!(r.metadata.authoritative);
    assert_eq!(addrs(&r), vec![ip("192.0.2.80")]);
}
