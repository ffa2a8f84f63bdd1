//! A datagram (or a TCP message) through the server's own DNS path.
//!
//! Input: one selector byte, then the DNS message as it comes off the socket.
//! - bits 0-2: the packet's source address, from [`SOURCES`] (places in the GeoIP fixture);
//! - bit 3: the table: `config/meridian.toml` (0) or `config/policies.toml` (1);
//! - bit 4: transport: UDP (0) as `dns::udp`'s worker does it (the fast path, else
//!   `respond_udp`), or TCP (1) as hickory's server does it (parse, then `handler::serve`).
//!
//! Checks: every response parses, has QR set and echoes the ID; a UDP response fits 512 bytes
//! without an OPT in the query, else max(512, min(client payload, our max_udp_payload)); and
//! whenever the fast path answers, the full handler gives the same message (as
//! `src/dns/fast_tests.rs` holds them to).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};

use hickory_proto::op::{Header, HeaderCounts, Message, MessageType, Metadata, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::rr::rdata::opt::EdnsCode;
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::net::NetError;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use libfuzzer_sys::fuzz_target;
use meridian::dns::{fast, handler};
use meridian::metrics::Metrics;
use meridian::routing::RoutingTable;
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
    let table = meridian_fuzz::table(example);
    let metrics = meridian_fuzz::metrics();
    let src = SocketAddr::new(SOURCES[usize::from(selector & 7)], 53000);
    if selector & 0x10 == 0 {
        udp(table, packet, src, metrics);
    } else {
        tcp(table, packet, src, metrics);
    }
});

fn udp(table: &RoutingTable, packet: &[u8], src: SocketAddr, metrics: &Metrics) {
    if packet.len() > RECV_SIZE {
        return;
    }
    let mut out = Vec::with_capacity(1500);
    let response = if fast::answer(table, packet, src.ip(), metrics, &mut out).is_some() {
        let full = handler::respond_udp(table, packet, src, metrics)
            .expect("the full handler answers what the fast path answers");
        let (f, g) = (parse(&out), parse(&full));
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
    let ours = table.compiled.settings.max_udp_payload;
    check(packet, &response, udp_limit(packet, ours));
}

fn tcp(table: &RoutingTable, packet: &[u8], src: SocketAddr, metrics: &Metrics) {
    // What hickory's server does before the handler: no header, drop; a message that does not
    // parse gets hickory's own FORMERR (not Meridian's code); a response, drop.
    if packet.len() < 12 {
        return;
    }
    let Ok(request) = Request::from_bytes(packet.to_vec(), src, Protocol::Tcp) else {
        return;
    };
    if request.metadata.message_type == MessageType::Response {
        return;
    }
    let capture = TcpCapture::default();
    let fut = std::pin::pin!(handler::serve(table, &request, capture.clone(), metrics));
    // Nothing in `serve` waits on I/O and the capture never blocks: one poll completes it.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(
        fut.poll(&mut cx).is_ready(),
        "handler::serve waited on something"
    );
    let response = capture.0.get().expect("every TCP query gets a response");
    check(packet, response, usize::from(u16::MAX));
}

/// Parses a response; a response that does not parse is a bug.
fn parse(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).unwrap_or_else(|e| panic!("response does not parse: {e}"))
}

/// The largest UDP response allowed (RFC 1035 4.2.1, RFC 6891 6.2.5), read from the query
/// with hickory's parser rather than Meridian's.
fn udp_limit(query: &[u8], ours: u16) -> usize {
    match Message::from_vec(query).ok().and_then(|m| m.edns) {
        Some(e) => usize::from(e.max_payload().min(ours).max(512)),
        None => 512,
    }
}

fn check(query: &[u8], response: &[u8], limit: usize) {
    let m = parse(response);
    assert_eq!(
        m.metadata.message_type,
        MessageType::Response,
        "QR is not set"
    );
    assert_eq!(
        m.metadata.id,
        u16::from_be_bytes([query[0], query[1]]),
        "the ID is not echoed"
    );
    assert!(
        response.len() <= limit,
        "response of {} bytes over the limit of {limit}",
        response.len()
    );
}

/// Keeps the response as hickory's TCP path encodes it (no size limit but the frame's).
#[derive(Clone, Default)]
struct TcpCapture(Arc<OnceLock<Vec<u8>>>);

#[async_trait::async_trait]
impl ResponseHandler for TcpCapture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let id = response.metadata().id;
        let mut buf = Vec::with_capacity(512);
        let mut enc = BinEncoder::new(&mut buf);
        enc.set_max_size(u16::MAX);
        let info = match response.destructive_emit(&mut enc) {
            Ok(info) => info,
            Err(_) => {
                // As hickory's `MessageResponse::encode`: SERVFAIL, header only.
                buf.clear();
                let mut metadata =
                    Metadata::new(id, MessageType::Response, hickory_proto::op::OpCode::Query);
                metadata.response_code = ResponseCode::ServFail;
                let header = Header {
                    metadata,
                    counts: HeaderCounts::default(),
                };
                header
                    .emit(&mut BinEncoder::new(&mut buf))
                    .map_err(|e| NetError::from(e.to_string()))?;
                ResponseInfo::from(header)
            }
        };
        let _ = self.0.set(buf);
        Ok(info)
    }
}
