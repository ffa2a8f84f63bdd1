//! The fast path and the full handler must give the same answer: a corpus of queries (random
//! ECS prefixes of both families, mixed-case names, with and without EDNS, small payloads,
//! unknown options, names and types the fast path passes on) goes through both, and every
//! response the fast path produces must parse to the same message as the full handler's.
use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RecordType};

use crate::dns::snapshot::Snapshot;
use crate::dns::{fast, handler};
use crate::hash::SplitMix64;
use crate::metrics::Metrics;
use crate::routing::test_support::compile;

/// The example config's table (also the property tests').
pub(in crate::dns) fn table() -> Snapshot {
    table_with(|text| text)
}

/// The example config, edited.
fn table_with(edit: impl FnOnce(String) -> String) -> Snapshot {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/meridian.toml"))
            .unwrap()
            .replace(
                "../geoip-fixtures",
                concat!(env!("CARGO_MANIFEST_DIR"), "/geoip-fixtures"),
            )
            .replace(
                "\"zones/",
                concat!("\"", env!("CARGO_MANIFEST_DIR"), "/config/zones/"),
            );
    Snapshot::first(compile(&edit(text)))
}

/// The example config with `records` (TOML inline tables, one a line) added to its zone.
fn with_records(text: &str, records: &str) -> String {
    assert_eq!(
        text.matches("records = [\n").count(),
        1,
        "the example zone has one records list"
    );
    text.replacen("records = [\n", &format!("records = [\n{records}"), 1)
}

/// A small deterministic generator (splitmix64).
struct Rng(SplitMix64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

fn mixed_case(name: &str, rng: &mut Rng) -> String {
    name.chars()
        .map(|c| {
            if rng.next().is_multiple_of(2) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

fn masked(addr: IpAddr, prefix: u8) -> IpAddr {
    crate::routing::prefix::mask(addr, prefix)
}

fn corpus(n: usize) -> Vec<Vec<u8>> {
    corpus_of(&NAMES, n)
}

/// The names the differential asks about in the example config.
const NAMES: [&str; 14] = [
    "www.example.com.",
    "www.example.com.",
    "www.example.com.",
    "api.example.com.",
    "api.example.com.",
    "shop.example.com.",
    "example.com.",
    "nope.example.com.",
    "www.other.org.",
    // Static data: an answer, NODATA, an empty non-terminal, NXDOMAIN below a name.
    "mail.example.com.",
    "ns1.example.com.",
    "ns2.example.com.",
    "_tcp.www.example.com.",
    "x.nope.example.com.",
];

fn corpus_of(names: &[&str], n: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(SplitMix64(42));
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::A,
        RecordType::AAAA,
        RecordType::A,
        RecordType::MX,
        RecordType::ANY,
        RecordType::SOA,
        RecordType::NS,
    ];
    let v4 = [
        "11.0.130.7",
        "12.0.0.1",
        "13.1.0.9",
        "14.0.3.3",
        "15.0.0.1",
        "16.1.2.3",
        "18.0.0.5",
        "20.1.2.3",
    ];
    let v6 = [
        "2001:db8:1::7",
        "2001:db8:3::1",
        "2001:db8:5::9",
        "2001:db8:99::1",
    ];
    let mut out = Vec::new();
    for i in 0..n {
        let mut m = Message::new(
            (rng.next() & 0xffff) as u16,
            MessageType::Query,
            OpCode::Query,
        );
        m.metadata.recursion_desired = rng.next().is_multiple_of(2);
        m.metadata.checking_disabled = rng.next().is_multiple_of(5);
        let picked: &&str = rng.pick(names);
        let name = mixed_case(picked, &mut rng);
        m.add_query(Query::query(
            Name::from_ascii(&name).unwrap(),
            *rng.pick(&types),
        ));
        match i % 4 {
            0 => {} // no EDNS
            _ => {
                let mut e = Edns::new();
                e.set_max_payload(*rng.pick(&[512u16, 700, 1232, 4096]));
                // DO=1 is copied by both paths; with a signed zone it is the full handler's.
                e.set_dnssec_ok(rng.next().is_multiple_of(3));
                if i % 4 != 1 {
                    let (addr, width) = if rng.next().is_multiple_of(4) {
                        (rng.pick(&v6).parse::<IpAddr>().unwrap(), 128)
                    } else {
                        (rng.pick(&v4).parse::<IpAddr>().unwrap(), 32)
                    };
                    let prefix = (rng.next() % (width as u64 + 1)) as u8;
                    e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
                        masked(addr, prefix),
                        prefix,
                        0,
                    )));
                }
                if i % 7 == 0 {
                    e.options_mut()
                        .insert(EdnsOption::Unknown(65001, vec![1, 2, 3]));
                }
                m.set_edns(e);
            }
        }
        out.push(m.to_vec().unwrap());
    }
    out
}

#[test]
fn fast_path_answers_as_the_full_handler_does() {
    differential(&table(), &corpus(4000), 1000);
}

#[test]
fn fast_path_answers_wildcards_as_the_full_handler_does() {
    let snap = table_with(|text| {
        with_records(
            &text,
            "  { name = \"*.wild\", type = \"A\", data = \"192.0.2.77\" },\n  \
             { name = \"real.wild\", type = \"TXT\", data = \"exists\" },\n  \
             { name = \"*.alias\", type = \"CNAME\", data = \"www\" },\n",
        ) + "\n[[services]]\nname = \"*.cdn.example.com.\"\nendpoints = [\n  \
             { region = \"us-east\", address = \"192.0.2.60\" },\n  \
             { region = \"eu-west\", address = \"198.51.100.60\" },\n  \
             { region = \"eu-west\", address = \"2001:db8:60::1\" },\n]\n\n\
             [[services]]\nname = \"edge.cdn.example.com.\"\n\
             endpoints = [{ region = \"us-east\", address = \"192.0.2.61\" }]\n"
    });
    let names = [
        "t1.cdn.example.com.",
        "t2.cdn.example.com.",
        "edge.cdn.example.com.",
        "deep.t1.cdn.example.com.",
        "cdn.example.com.",
        "foo.wild.example.com.",
        "deep.foo.wild.example.com.",
        "*.wild.example.com.",
        "real.wild.example.com.",
        "x.real.wild.example.com.",
        "x.alias.example.com.",
        "nope.example.com.",
        "www.example.com.",
    ];
    differential(&snap, &corpus_of(&names, 3000), 500);
    // The fast path does take a wildcard service's names, under the name asked for.
    assert!(snap.table.compiled.wildcard_services);
    let metrics = Metrics::new();
    let mut out = Vec::new();
    let mut q = Message::new(3, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(
        Name::from_ascii("T1.cdn.example.com.").unwrap(),
        RecordType::A,
    ));
    let src: IpAddr = "12.0.0.1".parse().unwrap();
    fast::answer(&snap, &q.to_vec().unwrap(), src, &metrics, &mut out).expect("fast");
    let r = Message::from_vec(&out).unwrap();
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].name.to_ascii(), "T1.cdn.example.com.");
    assert_eq!(r.answers[0].data.to_string(), "198.51.100.60");
}

/// The example zone signed with the test key in tests/fixtures/dnssec.
fn signed_table() -> Snapshot {
    table_with(|text| {
        text.replacen(
            "ttl = 3600\nrecords = [\n",
            concat!(
                "ttl = 3600\ndnssec = { keys = [\"",
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/dnssec/Kexample.com.+013+58259.private\"] }\nrecords = [\n"
            ),
            1,
        )
    })
}

#[test]
fn fast_path_answers_a_signed_zone_as_the_full_handler_does() {
    let snap = signed_table();
    assert!(snap.table.compiled.signed);
    differential(&snap, &corpus(4000), 500);
    // DO=1 gets the RRSIGs (on both paths); DO=0 the same response as unsigned.
    let metrics = Metrics::new();
    let src: SocketAddr = "12.0.0.1:5300".parse().unwrap();
    let ask = |dnssec_ok: bool| {
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(
            Name::from_ascii("www.example.com.").unwrap(),
            RecordType::A,
        ));
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.set_dnssec_ok(dnssec_ok);
        m.set_edns(e);
        let q = m.to_vec().unwrap();
        let mut out = Vec::new();
        let fast = fast::answer(&snap, &q, src.ip(), &metrics, &mut out).is_some();
        // The fast path's own response (the differential above holds it to the full one's).
        (fast, Message::from_vec(&out).unwrap())
    };
    let (fast, signed) = ask(true);
    assert!(fast, "a signed service answer goes fast");
    let types: Vec<RecordType> = signed.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types, [RecordType::A, RecordType::RRSIG]);
    let (fast, plain) = ask(false);
    assert!(fast, "DO=0 stays on the fast path");
    assert_eq!(plain.answers.len(), 1);
    // The cache signed the answer once: the same RRSIG the second time.
    let (_, again) = ask(true);
    assert_eq!(again.answers[1], signed.answers[1]);
}

/// Answers every query through both paths and requires the same response wherever the fast
/// path answers, and that it answers at least `at_least` of them.
fn differential(table: &Snapshot, queries: &[Vec<u8>], at_least: usize) {
    let metrics = Metrics::new();
    let src: SocketAddr = "127.0.0.1:5300".parse().unwrap();
    let mut out = Vec::with_capacity(1500);
    let mut fast_count = 0;
    for (i, q) in queries.iter().enumerate() {
        let full = handler::respond_udp(table, q, src, &metrics).expect("the full handler answers");
        if fast::answer(table, q, src.ip(), &metrics, &mut out).is_none() {
            continue;
        }
        fast_count += 1;
        let (f, g) = (
            Message::from_vec(&out).unwrap(),
            Message::from_vec(&full).unwrap(),
        );
        assert_eq!(
            f,
            g,
            "query {i} answered differently:\nquery {:?}",
            Message::from_vec(q).unwrap()
        );
        // The ECS option, with its scope, is part of the comparison.
        let ecs = |m: &Message| {
            m.edns
                .as_ref()
                .and_then(|e| e.option(EdnsCode::Subnet).cloned())
        };
        assert_eq!(ecs(&f), ecs(&g));
        assert!(
            out.len() <= full.len() + 16,
            "query {i}: the fast path should not be larger"
        );
    }
    // Most of the corpus is A/AAAA at traffic-managed names: the comparison is not vacuous.
    assert!(
        fast_count > at_least,
        "only {fast_count} of {} went through the fast path",
        queries.len()
    );
}

#[test]
fn fast_path_passes_on_what_it_does_not_handle() {
    let table = table();
    let metrics = Metrics::new();
    let src: IpAddr = "127.0.0.1".parse().unwrap();
    let mut out = Vec::new();
    let build = |name: &str, t: RecordType| {
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m
    };
    // Other types, a CNAME into a traffic-managed name, other opcodes, EDNS versions.
    for (name, t) in [
        ("www.example.com.", RecordType::SOA),
        ("mail.example.com.", RecordType::NS),
        ("shop.example.com.", RecordType::A),
        ("www.example.com.", RecordType::MX),
        ("www.example.com.", RecordType::ANY),
        ("api.example.com.", RecordType::AAAA),
    ] {
        let q = build(name, t).to_vec().unwrap();
        assert!(
            fast::answer(&table, &q, src, &metrics, &mut out).is_none(),
            "{name} {t}"
        );
    }
    let mut notify = build("www.example.com.", RecordType::A);
    notify.metadata.op_code = OpCode::Notify;
    assert!(fast::answer(&table, &notify.to_vec().unwrap(), src, &metrics, &mut out).is_none());
    let mut v1 = build("www.example.com.", RecordType::A);
    let mut e = Edns::new();
    e.set_version(1);
    v1.set_edns(e);
    assert!(fast::answer(&table, &v1.to_vec().unwrap(), src, &metrics, &mut out).is_none());
    // Trailing garbage and malformed ECS are the full handler's FORMERR.
    let mut bytes = build("www.example.com.", RecordType::A).to_vec().unwrap();
    bytes.push(0);
    assert!(fast::answer(&table, &bytes, src, &metrics, &mut out).is_none());
    // The common case does go fast, and so do SOA and NS at a zone apex, and either at a
    // name that does not exist.
    for (name, t) in [
        ("wWw.example.COM.", RecordType::A),
        ("Example.com.", RecordType::SOA),
        ("example.com.", RecordType::NS),
        ("nope.example.com.", RecordType::NS),
    ] {
        let q = build(name, t).to_vec().unwrap();
        assert!(
            fast::answer(&table, &q, src, &metrics, &mut out).is_some(),
            "{name} {t}"
        );
    }
}

fn query(name: &str, t: RecordType, edns: bool) -> Vec<u8> {
    let mut m = Message::new(9, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
            "11.0.130.0".parse().unwrap(),
            24,
            0,
        )));
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

/// Answers through the fast path, checked against the full handler; `None` when the fast
/// path passes the query on.
fn fast_and_checked(table: &Snapshot, q: &[u8]) -> Option<Message> {
    let metrics = Metrics::new();
    let src: SocketAddr = "127.0.0.1:5300".parse().unwrap();
    let mut out = Vec::new();
    fast::answer(table, q, src.ip(), &metrics, &mut out)?;
    let full = handler::respond_udp(table, q, src, &metrics).unwrap();
    let (f, g) = (
        Message::from_vec(&out).unwrap(),
        Message::from_vec(&full).unwrap(),
    );
    assert_eq!(f, g, "{:?}", Message::from_vec(q).unwrap());
    Some(f)
}

#[test]
fn static_answers_and_negative_answers_go_fast() {
    let table = table();
    for edns in [false, true] {
        for (name, t, rcode, answers) in [
            ("MAIL.example.com.", RecordType::A, ResponseCode::NoError, 1),
            (
                "ns1.example.com.",
                RecordType::AAAA,
                ResponseCode::NoError,
                1,
            ),
            (
                "ns2.example.com.",
                RecordType::AAAA,
                ResponseCode::NoError,
                0,
            ),
            (
                "_tcp.www.example.com.",
                RecordType::A,
                ResponseCode::NoError,
                0,
            ),
            (
                "nope.example.com.",
                RecordType::A,
                ResponseCode::NXDomain,
                0,
            ),
            (
                "a.b.Nope.example.COM.",
                RecordType::AAAA,
                ResponseCode::NXDomain,
                0,
            ),
        ] {
            let m = fast_and_checked(&table, &query(name, t, edns))
                .unwrap_or_else(|| panic!("{name} {t} passed on"));
            assert_eq!(m.metadata.response_code, rcode, "{name} {t}");
            assert_eq!(m.answers.len(), answers, "{name} {t}");
            assert!(m.metadata.authoritative, "{name} {t}");
            if answers == 0 {
                assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
            }
        }
    }
    // Out of zone: REFUSED is the full handler's.
    assert!(fast_and_checked(&table, &query("www.other.org.", RecordType::A, true)).is_none());
}

#[test]
fn below_a_delegation_the_full_handler_answers_or_the_fast_path_agrees() {
    let table = table_with(|text| {
        text.replacen(
            "records = [",
            "records = [\n  { name = \"sub\", type = \"NS\", data = \"ns.sub\" },\n  { name = \"ns.sub\", type = \"A\", data = \"192.0.2.99\" },",
            1,
        )
    });
    // A zone with a cut: a missing name may be below it, so no NXDOMAIN on the fast path.
    assert!(fast_and_checked(&table, &query("nope.example.com.", RecordType::A, false)).is_none());
    assert!(fast_and_checked(&table, &query("x.sub.example.com.", RecordType::A, false)).is_none());
    // Names at and below the cut are static: referrals, prepared like any static answer.
    for name in [
        "sub.example.com.",
        "ns.sub.example.com.",
        "mail.example.com.",
    ] {
        for edns in [false, true] {
            fast_and_checked(&table, &query(name, RecordType::A, edns))
                .unwrap_or_else(|| panic!("{name} passed on"));
        }
    }
    let referral = fast_and_checked(&table, &query("ns.sub.example.com.", RecordType::A, true))
        .expect("a prepared referral");
    assert!(!referral.metadata.authoritative);
    assert_eq!(referral.authorities[0].record_type(), RecordType::NS);
}

#[test]
fn optional_addresses_are_left_out_before_an_answer_is_truncated() {
    // An MX whose target has enough addresses that they do not fit in 512 bytes.
    let snap = table_with(|text| {
        // 39 more beside the zone file's 192.0.2.25.
        let many: String = (1..=40)
            .filter(|i| *i != 25)
            .map(|i| format!("  {{ name = \"mail\", type = \"A\", data = \"192.0.2.{i}\" }},\n"))
            .collect();
        with_records(&text, &many)
    });
    let metrics = Metrics::new();
    let src: SocketAddr = "127.0.0.1:5300".parse().unwrap();
    let ask = |edns: Option<u16>| {
        let mut q = Message::new(7, MessageType::Query, OpCode::Query);
        q.add_query(Query::query(
            Name::from_ascii("example.com.").unwrap(),
            RecordType::MX,
        ));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            q.set_edns(e);
        }
        let raw = handler::respond_udp(&snap, &q.to_vec().unwrap(), src, &metrics).unwrap();
        (raw.len(), Message::from_vec(&raw).unwrap())
    };
    // Without EDNS (512 bytes): the MX alone, not truncated.
    let (len, r) = ask(None);
    assert!(len <= 512, "{len} bytes");
    assert!(
        !r.metadata.truncation,
        "never truncated for additional data"
    );
    assert_eq!(r.answers.len(), 1);
    assert!(r.additionals.is_empty(), "{:?}", r.additionals);
    // With room for them (1232): the MX and all 40 addresses.
    let (_, r) = ask(Some(1232));
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.additionals.len(), 40);
}

#[test]
fn servfail_from_on_all_down_names_the_service_in_an_extended_error() {
    use crate::routing::test_support::{GEOIP, ZONE, with_down};
    let text = format!(
        r#"{GEOIP}{ZONE}
[checks.web]
kind = "tcp"
port = 80

[[regions]]
name = "us-east"

[[services]]
name = "down.example.com."
check = "web"
on_all_down = "servfail"
endpoints = [{{ region = "us-east", address = "192.0.2.81" }}]
"#
    );
    let snap = Snapshot::first(with_down(&compile(&text), &["192.0.2.81"]));
    let metrics = Metrics::new();
    let src: SocketAddr = "127.0.0.1:5300".parse().unwrap();
    let mut q = Message::new(7, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(
        Name::from_ascii("down.example.com.").unwrap(),
        RecordType::A,
    ));
    q.set_edns(Edns::new());
    let raw = handler::respond_udp(&snap, &q.to_vec().unwrap(), src, &metrics).unwrap();
    let r = Message::from_vec(&raw).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    let ede = r
        .edns
        .as_ref()
        .and_then(|e| e.option(EdnsCode::Unknown(15)).cloned())
        .expect("an EDE on SERVFAIL");
    let data = Vec::<u8>::try_from(&ede).unwrap();
    assert_eq!(&data[..2], &[0, 0], "info code 0 (Other)");
    let text = String::from_utf8(data[2..].to_vec()).unwrap();
    assert!(text.contains("down.example.com."), "{text}");
    let rendered = metrics.render(&[], Vec::new());
    assert!(
        rendered.contains("meridian_dns_extended_errors_total{code=\"0\"} 1"),
        "{rendered}"
    );
}

#[test]
fn hostname_services_go_to_the_full_handler_and_static_names_still_go_fast() {
    let snap = table_with(|text| {
        with_records(
            &text,
            "  { name = \"lb-eu\", type = \"A\", data = \"198.51.100.70\" },\n  \
             { name = \"to-lb\", type = \"CNAME\", data = \"lb\" },\n",
        ) + "\n[[services]]\nname = \"lb.example.com.\"\nendpoints = [\n  \
             { region = \"us-east\", target = \"lb-us.example.net.\" },\n  \
             { region = \"eu-west\", target = \"lb-eu.example.com.\" },\n]\n"
    });
    let names = [
        "lb.example.com.",
        "to-lb.example.com.",
        "lb-eu.example.com.",
        "www.example.com.",
        "mail.example.com.",
    ];
    differential(&snap, &corpus_of(&names, 2000), 300);
    let metrics = Metrics::new();
    let src: SocketAddr = "127.0.0.1:5300".parse().unwrap();
    let mut out = Vec::new();
    for name in ["lb.example.com.", "to-lb.example.com."] {
        for t in [RecordType::A, RecordType::AAAA] {
            let q = query(name, t, true);
            assert!(
                fast::answer(&snap, &q, src.ip(), &metrics, &mut out).is_none(),
                "{name} {t}"
            );
        }
    }
    // The full handler: Germany gets the in-zone target, followed to its address, with the
    // GeoIP network as the scope.
    let mut m = Message::new(9, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(
        Name::from_ascii("lb.example.com.").unwrap(),
        RecordType::A,
    ));
    let mut e = Edns::new();
    e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
        "12.0.0.0".parse().unwrap(),
        24,
        0,
    )));
    m.set_edns(e);
    let full = handler::respond_udp(&snap, &m.to_vec().unwrap(), src, &metrics).unwrap();
    let r = Message::from_vec(&full).unwrap();
    let got: Vec<String> = r.answers.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        got,
        [
            "lb.example.com. 30 IN CNAME lb-eu.example.com.",
            "lb-eu.example.com. 3600 IN A 198.51.100.70"
        ]
    );
    assert!(r.metadata.authoritative);
    let scope = r
        .edns
        .as_ref()
        .and_then(|e| e.option(EdnsCode::Subnet).cloned());
    let Some(EdnsOption::Subnet(ecs)) = scope else {
        panic!("no ECS in {r:?}");
    };
    assert_eq!(ecs.scope_prefix(), 16);
}

#[test]
fn an_nxdomain_names_its_soa_through_the_question_as_the_full_handler_does() {
    let snap = table();
    let metrics = Metrics::new();
    let src: SocketAddr = "127.0.0.1:5300".parse().unwrap();
    for name in ["nope.example.com.", "A.Deeper.Nope.EXAMPLE.com."] {
        for edns in [false, true] {
            let q = query(name, RecordType::A, edns);
            let mut out = Vec::new();
            assert!(fast::answer(&snap, &q, src.ip(), &metrics, &mut out).is_some());
            let full = handler::respond_udp(&snap, &q, src, &metrics).unwrap();
            let (f, g) = (
                Message::from_vec(&out).unwrap(),
                Message::from_vec(&full).unwrap(),
            );
            assert_eq!(f.metadata.response_code, ResponseCode::NXDomain);
            assert_eq!(f, g, "{name}");
            // The SOA's owner, MNAME (ns1) and RNAME (hostmaster) each end in a pointer to
            // the origin in the question: no larger than the full handler's response.
            let origin_at: usize = name
                .split('.')
                .take_while(|l| !l.eq_ignore_ascii_case("example"))
                .map(|l| l.len() + 1)
                .sum();
            let pointer = [0xC0, 12 + origin_at as u8];
            let pointers = out.windows(2).filter(|w| *w == pointer).count();
            assert_eq!(pointers, 3, "{name}, EDNS {edns}");
            assert!(out.len() <= full.len(), "{name}, EDNS {edns}");
        }
    }
}
