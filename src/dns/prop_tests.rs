//! Properties of every UDP response, over generated queries (names, types, IDs, flags, EDNS
//! sizes, ECS of both families and every prefix): it parses back, echoes the ID and the
//! question, never exceeds the size the client can take, and echoes ECS with a scope that fits
//! the address family (longer than the source prefix only where the answer depends on more
//! bits than the resolver sent, RFC 7871 7.2.1), 0 for a source prefix of 0.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use proptest::prelude::*;

use crate::dns::snapshot::Snapshot;
use crate::dns::{fast, handler};
use crate::metrics::Metrics;

fn table() -> &'static Snapshot {
    static TABLE: OnceLock<Snapshot> = OnceLock::new();
    TABLE.get_or_init(fast::tests::table)
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// How the server answers a datagram: fast path, else the full handler.
fn answer(bytes: &[u8]) -> Option<Vec<u8>> {
    let src: SocketAddr = "127.0.0.1:5300".parse().unwrap();
    let mut out = Vec::new();
    match fast::answer(table(), bytes, src.ip(), metrics(), &mut out) {
        Some(()) => Some(out),
        None => handler::respond_udp(table(), bytes, src, metrics()),
    }
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("www.example.com.".to_string()),
        Just("api.example.com.".to_string()),
        Just("shop.example.com.".to_string()),
        Just("example.com.".to_string()),
        "[a-z0-9]{1,12}\\.example\\.com\\.",
        "[a-z]{1,10}\\.[a-z]{2,5}\\.",
    ]
    .prop_flat_map(|n| {
        // Random letter case, which must not change the answer.
        proptest::collection::vec(any::<bool>(), n.len()).prop_map(move |upper| {
            n.chars()
                .zip(upper)
                .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
                .collect::<String>()
        })
    })
}

fn rtype() -> impl Strategy<Value = RecordType> {
    prop_oneof![
        Just(RecordType::A),
        Just(RecordType::AAAA),
        Just(RecordType::ANY),
        Just(RecordType::MX),
        Just(RecordType::NS),
        Just(RecordType::SOA),
        Just(RecordType::TXT),
        Just(RecordType::CAA),
        (1u16..65535).prop_map(RecordType::from),
    ]
}

/// An ECS option: family, a masked address and its source prefix.
fn ecs() -> impl Strategy<Value = Option<(IpAddr, u8)>> {
    prop_oneof![
        Just(None),
        (any::<u32>(), 0u8..=32).prop_map(|(a, p)| {
            let ip = crate::routing::prefix::mask(IpAddr::V4(Ipv4Addr::from(a)), p);
            Some((ip, p))
        }),
        (any::<u128>(), 0u8..=128).prop_map(|(a, p)| {
            let ip = crate::routing::prefix::mask(IpAddr::V6(Ipv6Addr::from(a)), p);
            Some((ip, p))
        }),
    ]
}

prop_compose! {
    fn query()(
        id in any::<u16>(),
        rd in any::<bool>(),
        name in name(),
        rtype in rtype(),
        edns in proptest::option::of(512u16..=4096),
        ecs in ecs(),
    ) -> (Message, Option<u16>, Option<(IpAddr, u8)>) {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = rd;
        m.add_query(Query::query(Name::from_ascii(&name).unwrap(), rtype));
        let ecs = edns.and(ecs);
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            if let Some((addr, prefix)) = ecs {
                e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(addr, prefix, 0)));
            }
            m.set_edns(e);
        }
        (m, edns, ecs)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn every_udp_response_is_well_formed((q, edns, ecs) in query()) {
        let bytes = q.to_vec().unwrap();
        let reply = answer(&bytes).expect("a well-formed query always gets an answer");
        let r = Message::from_vec(&reply).expect("the response parses");
        prop_assert_eq!(r.metadata.message_type, MessageType::Response);
        prop_assert_eq!(r.metadata.id, q.metadata.id);
        prop_assert_eq!(r.metadata.recursion_desired, q.metadata.recursion_desired);
        // The question comes back byte for byte (letter case included).
        let qlen = bytes.len() - 12 - q.edns.as_ref().map_or(0, |_| 11 + ecs.map_or(0, |(_, p)| 8 + usize::from(p.div_ceil(8))));
        prop_assert_eq!(&reply[12..12 + qlen], &bytes[12..12 + qlen]);
        // Never larger than the client can take over UDP, nor than our 1232.
        let limit = edns.map_or(512, |size| usize::from(size.clamp(512, 1232)));
        prop_assert!(reply.len() <= limit, "{} bytes for a limit of {}", reply.len(), limit);
        // ECS comes back only when sent, with a scope that fits the family.
        let back = r.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet).cloned());
        match (ecs, back) {
            (None, None) => {}
            (Some((addr, prefix)), Some(EdnsOption::Subnet(s))) => {
                prop_assert_eq!(s.addr(), addr);
                prop_assert_eq!(s.source_prefix(), prefix);
                let width = if addr.is_ipv4() { 32 } else { 128 };
                prop_assert!(s.scope_prefix() <= width);
                if prefix == 0 {
                    prop_assert_eq!(s.scope_prefix(), 0);
                }
            }
            (sent, got) => prop_assert!(false, "ECS sent {:?}, got {:?}", sent, got),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Some(reply) = answer(&bytes) {
            prop_assert!(reply.len() >= 12);
            prop_assert_eq!(&reply[..2], &bytes[..2], "the ID is echoed");
            prop_assert!(reply[2] & 0x80 != 0, "QR set");
        }
    }
}
