//! A datagram (or a TCP message) through the server's own DNS path.
//!
//! Input: one selector byte, then the DNS message as it comes off the socket.
//! - bits 0-2: the packet's source address, from [`SOURCES`] (places in the GeoIP fixture);
//! - bit 3: the table: `config/meridian.toml` (0) or `config/policies.toml` (1);
//! - bit 4: transport: UDP (0) as `dns::udp`'s worker does it (the fast path, else
//!   `respond_udp`, then response rate limiting), or TCP (1) as `dns::tcp` does it
//!   (`respond`).
//!
//! Checks: every response parses, has QR set and echoes the ID; a UDP response fits 512 bytes
//! without an OPT in the query, else max(512, min(client payload, our max_udp_payload)), and
//! so does its truncated form (`rrl::slip`, what RRL sends instead), which has TC set; a TCP
//! response fits its two-byte length; whenever the fast path answers, the full handler gives
//! the same message (as `src/dns/fast_tests.rs` holds them to).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, OnceLock};

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::rdata::opt::EdnsCode;
use libfuzzer_sys::fuzz_target;
use meridian::dns::rrl::{self, Limiter};
use meridian::dns::{fast, handler};
use meridian::dns::counters::Transport;
use meridian::dns::snapshot::Snapshot;
use meridian::metrics::Metrics;
use meridian_fuzz::Example;

/// Where packets come from: no data, US, DE, JP, BR, DE over IPv6, US as IPv4-mapped IPv6,
/// and an address in policies.toml's corporate CIDR map.
const SOURCES: [IpAddr; 8] = [
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
    IpAddr::V4(Ipv4Addr::new(11, 0, 130, 7)),
    IpAddr::V4(Ipv4Addr::new(12, 0, 0, 1)),
    IpAddr::V4(Ipv4Addr::new(13, 0, 0, 9)),
    IpAddr::V4(Ipv4Addr::new(15, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x0b01, 0x0001)),
    IpAddr::V4(Ipv4Addr::new(12, 0, 5, 9)),
];

/// `dns::udp` reads at most this much; a longer datagram is dropped as truncated.
const RECV_SIZE: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, packet)) = data.split_first() else {
        return;
    };
    let example = if selector & 0x08 == 0 {
        Example::Meridian
    } else {
        Example::Policies
    };
    let metrics = meridian_fuzz::metrics();
    let src = SocketAddr::new(SOURCES[usize::from(selector & 7)], 53000);
    if selector & 0x10 == 0 {
        udp(example, packet, src, metrics);
    } else {
        tcp(meridian_fuzz::table(example), packet, src, metrics);
    }
});

fn udp(example: Example, packet: &[u8], src: SocketAddr, metrics: &Metrics) {
    let table = meridian_fuzz::table(example);
    if packet.len() > RECV_SIZE {
        return;
    }
    let mut out = Vec::with_capacity(1500);
    let response = if fast::answer(table, packet, src.ip(), metrics, &mut out).is_some() {
        let full = handler::respond_udp(table, packet, src, metrics)
            .expect("the full handler answers what the fast path answers");
        let (f, g) = (
            parse("fast path response", &out),
            parse("full handler response", &full),
        );
        assert_eq!(f, g, "the fast path and the full handler disagree");
        // The ECS option, with its scope, is part of the comparison.
        let ecs = |m: &Message| {
            m.edns
                .as_ref()
                .and_then(|e| e.option(EdnsCode::Subnet).cloned())
        };
        assert_eq!(
            ecs(&f),
            ecs(&g),
            "the fast path and the full handler disagree on ECS"
        );
        out
    } else {
        match handler::respond_udp(table, packet, src, metrics) {
            Some(bytes) => bytes,
            None => return,
        }
    };
    let limit = udp_limit(packet, table.table.compiled.settings.max_udp_payload);
    check("response", packet, &response, limit);
    // Rate limiting, as the worker does it. The verdict depends on what came before, so the
    // truncated form RRL would send is checked whatever the verdict.
    if let Some(limiter) = limiter(example) {
        let mut limiter = limiter.lock().unwrap_or_else(|e| e.into_inner());
        let _ = limiter.check(src.ip(), &response, 0);
    }
    let mut slipped = Vec::new();
    rrl::slip(&response, &mut slipped);
    check("rrl::slip of the response", packet, &slipped, limit);
    assert!(
        parse("rrl::slip of the response", &slipped)
            .metadata
            .truncation,
        "the slipped response has no TC"
    );
}

/// The worker's rate limiter for the example's `[rrl]` settings, one per process.
fn limiter(example: Example) -> Option<&'static Mutex<Limiter>> {
    static MERIDIAN: OnceLock<Option<Mutex<Limiter>>> = OnceLock::new();
    static POLICIES: OnceLock<Option<Mutex<Limiter>>> = OnceLock::new();
    let cell = match example {
        Example::Meridian => &MERIDIAN,
        Example::Policies => &POLICIES,
    };
    cell.get_or_init(|| {
        Limiter::new(&meridian_fuzz::table(example).table.compiled.settings.rrl).map(Mutex::new)
    })
    .as_ref()
}

fn tcp(table: &Snapshot, packet: &[u8], src: SocketAddr, metrics: &Metrics) {
    // `dns::tcp` reads a two-byte length, so no message is longer.
    if packet.len() > usize::from(u16::MAX) {
        return;
    }
    let Some(response) = handler::respond(table, packet, None, src, Transport::Tcp, metrics)
    else {
        return;
    };
    check("TCP response", packet, &response, usize::from(u16::MAX));
}

/// Parses a response; a response that does not parse is a bug.
fn parse(what: &str, bytes: &[u8]) -> Message {
    Message::from_vec(bytes).unwrap_or_else(|e| panic!("{what} does not parse: {e}"))
}

/// The largest UDP response allowed (RFC 1035 4.2.1, RFC 6891 6.2.5), read from the query
/// with hickory's parser rather than Meridian's.
fn udp_limit(query: &[u8], ours: u16) -> usize {
    match Message::from_vec(query).ok().and_then(|m| m.edns) {
        Some(e) => usize::from(e.max_payload().min(ours).max(512)),
        None => 512,
    }
}

fn check(what: &str, query: &[u8], response: &[u8], limit: usize) {
    let m = parse(what, response);
    assert_eq!(
        m.metadata.message_type,
        MessageType::Response,
        "{what}: QR is not set"
    );
    assert_eq!(
        m.metadata.id,
        u16::from_be_bytes([query[0], query[1]]),
        "{what}: the ID is not echoed"
    );
    assert!(
        response.len() <= limit,
        "{what} of {} bytes over the limit of {limit}",
        response.len()
    );
}
