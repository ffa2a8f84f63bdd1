//! The DNS request handler: one snapshot load per query, protocol checks, [`answer`], and the
//! response with EDNS, ECS scope and UDP truncation.
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, BinEncoder};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};
use tracing::debug;

use super::wire::{self, Scanned};
use crate::metrics::{Metrics, Transport};
use crate::routing::RoutingTable;
use crate::routing::answer::answer;
use crate::routing::decide::Client;
use crate::routing::decide::Decision;
use crate::routing::table::ZoneId;
use crate::routing::trace::NoTrace;
use tokio::time::Instant;

/// The client a query is routed for: its ECS subnet when it sent one with a non-zero source
/// prefix, else the packet's source (IPv4-mapped IPv6 taken as IPv4).
pub fn client_of(src: IpAddr, scanned: &Scanned) -> Client {
    match scanned.edns.and_then(|e| e.ecs) {
        Some(ecs) if ecs.source_prefix > 0 => Client {
            addr: ecs.addr,
            ecs_source: Some(ecs.source_prefix),
        },
        _ => Client {
            addr: src.to_canonical(),
            ecs_source: None,
        },
    }
}

/// The UDP size limit for a response (RFC 6891 6.2.5): 512 without EDNS, else the smaller of
/// the requestor's size and ours.
pub fn udp_limit(scanned: &Scanned, ours: u16) -> usize {
    scanned.edns.map_or(512, |e| e.payload.min(ours)) as usize
}

/// Answers one parsed request and counts it: the full handler, for TCP and for the UDP
/// queries the fast path passes on.
pub async fn serve<R: ResponseHandler>(
    table: &RoutingTable,
    request: &Request,
    response: R,
    metrics: &Metrics,
) -> ResponseInfo {
    let start = Instant::now();
    let (info, zone, decision) = respond(table, request, response).await;
    let transport = match request.protocol() {
        Protocol::Udp => Transport::Udp,
        _ => Transport::Tcp,
    };
    let qtype = request
        .queries
        .queries()
        .first()
        .map_or(RecordType::NULL, |q| q.query_type());
    table
        .counters
        .count_query(zone, qtype, info.response_code, transport);
    if let Some(d) = &decision {
        table.counters.count_answer(d);
    }
    if request
        .edns
        .as_ref()
        .is_some_and(|e| e.option(EdnsCode::Subnet).is_some())
    {
        metrics.ecs_queries.inc();
    }
    let elapsed = start.elapsed().as_secs_f64();
    match transport {
        Transport::Udp => metrics.udp_duration.observe(elapsed),
        Transport::Tcp => metrics.tcp_duration.observe(elapsed),
    }
    info
}

/// The full handler for one UDP datagram (see [`respond`]).
pub fn respond_udp(
    table: &RoutingTable,
    raw: &[u8],
    src: SocketAddr,
    metrics: &Metrics,
) -> Option<Vec<u8>> {
    respond_message(table, raw, src, Transport::Udp, metrics)
}

/// The full handler for one message off the wire: the checks a server makes before its
/// handler (drop what has no header or is a response, FORMERR what does not parse), then
/// [`serve`]. Returns the bytes to send, or `None` to drop.
pub fn respond_message(
    table: &RoutingTable,
    raw: &[u8],
    src: SocketAddr,
    transport: Transport,
    metrics: &Metrics,
) -> Option<Vec<u8>> {
    if raw.len() < 12 || raw[2] & 0x80 != 0 {
        return None;
    }
    let protocol = match transport {
        Transport::Udp => Protocol::Udp,
        Transport::Tcp => Protocol::Tcp,
    };
    let parsed = if wire::question_compressed(raw) {
        None
    } else {
        Request::from_bytes(raw.to_vec(), src, protocol).ok()
    };
    let request = match parsed {
        Some(r) => r,
        None => {
            table
                .counters
                .count_query(None, RecordType::NULL, ResponseCode::FormErr, transport);
            // Header only: ID, opcode and RD echoed, QR set, FORMERR.
            let mut out = raw[..12].to_vec();
            out[2] = 0x80 | (raw[2] & 0x79);
            out[3] = 0x01;
            out[4..12].fill(0);
            return Some(out);
        }
    };
    let capture = Capture(Arc::default(), transport);
    let mut fut = std::pin::pin!(serve(table, &request, capture.clone(), metrics));
    // Nothing in `serve` waits on I/O (the capture never blocks): one poll completes it.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(_) => capture.0.get().cloned(),
        std::task::Poll::Pending => None,
    }
}

/// A [`ResponseHandler`] that keeps the encoded response instead of sending it.
#[derive(Clone)]
struct Capture(Arc<std::sync::OnceLock<Vec<u8>>>, Transport);

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: hickory_server::zone_handler::MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, hickory_server::net::NetError> {
        let mut buf = Vec::with_capacity(512);
        let mut enc = BinEncoder::new(&mut buf);
        // As hickory's UDP path: the limit is our OPT's size, or 512 without one. TCP: the
        // frame's limit.
        enc.set_max_size(match self.1 {
            Transport::Udp => response.edns().map_or(512, |e| e.max_payload()),
            Transport::Tcp => u16::MAX,
        });
        let info = response
            .destructive_emit(&mut enc)
            .map_err(|e| hickory_server::net::NetError::from(e.to_string()))?;
        let _ = self.0.set(buf);
        Ok(info)
    }
}

/// Builds and sends the response; returns what was sent, the zone it came from and the routing
/// decision, for the counters.
async fn respond<R: ResponseHandler>(
    table: &RoutingTable,
    request: &Request,
    mut response: R,
) -> (ResponseInfo, Option<ZoneId>, Option<Decision>) {
    {
        let compiled = &table.compiled;
        let settings = &compiled.settings;
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = false;
        meta.authentic_data = false;
        let builder = MessageResponseBuilder::new(&request.queries, None);

        if request.metadata.op_code != OpCode::Query {
            meta.response_code = ResponseCode::NotImp;
            return (
                send(&mut response, builder.build_no_records(meta)).await,
                None,
                None,
            );
        }
        let scanned = match wire::scan(request.as_slice()) {
            Ok(s) => s,
            Err(why) => {
                debug!(src = %request.src(), %why, "FORMERR");
                meta.response_code = ResponseCode::FormErr;
                if wire::question_compressed(request.as_slice()) {
                    // Echoing that question would point into our own header: leave it out.
                    let none = Queries::read(&mut BinDecoder::new(&[]), 0).ok();
                    if let Some(none) = &none {
                        let reply = MessageResponseBuilder::new(none, None).build_no_records(meta);
                        return (send(&mut response, reply).await, None, None);
                    }
                }
                return (
                    send(&mut response, builder.build_no_records(meta)).await,
                    None,
                    None,
                );
            }
        };
        let query = &request.queries.queries()[0];

        // Our OPT, present only when the query had one.
        let mut edns = Edns::new();
        edns.set_max_payload(settings.max_udp_payload);
        edns.set_version(0);
        edns.set_dnssec_ok(scanned.edns.is_some_and(|e| e.dnssec_ok));
        let mut builder = builder;
        if scanned.edns.is_some_and(|e| e.version > 0) {
            meta.response_code = ResponseCode::BADVERS;
            builder.edns(&edns);
            return (
                send(&mut response, builder.build_no_records(meta)).await,
                None,
                None,
            );
        }

        // No zone transfers: AXFR over UDP is undefined (NOTIMP, RFC 5936 4.2); a transfer
        // over TCP is refused rather than answered as an empty query.
        let xfr = matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR);
        if query.query_class() != DNSClass::IN || xfr {
            meta.response_code = match (query.query_type(), request.protocol()) {
                (RecordType::AXFR, Protocol::Udp) => ResponseCode::NotImp,
                _ => ResponseCode::Refused,
            };
            if scanned.edns.is_some() {
                builder.edns(&edns);
            }
            return (
                send(&mut response, builder.build_no_records(meta)).await,
                None,
                None,
            );
        }

        let client = client_of(request.src().ip(), &scanned);
        let ans = answer(
            table,
            query.name(),
            query.query_type(),
            &client,
            &mut NoTrace,
        );
        meta.response_code = ans.rcode;
        meta.authoritative = ans.authoritative;

        if let Some(e) = scanned.edns {
            if let Some(ecs) = e.ecs {
                let scope = if ecs.source_prefix == 0 {
                    0
                } else {
                    ans.ecs_scope().min(ecs.source_prefix)
                };
                edns.options_mut()
                    .insert(EdnsOption::Subnet(ClientSubnet::new(
                        ecs.addr,
                        ecs.source_prefix,
                        scope,
                    )));
            }
            builder.edns(&edns);
        }

        let parts = || {
            (
                ans.answers.iter().copied(),
                ans.authority.iter().copied(),
                ans.additional.iter().copied(),
            )
        };
        if request.protocol() == Protocol::Udp {
            let limit = udp_limit(&scanned, settings.max_udp_payload);
            let (an, ns, ar) = parts();
            let trial = MessageResponseBuilder::new(
                &request.queries,
                builder_edns(&scanned, &edns),
            )
            .build(meta, an, ns, std::iter::empty::<&Record>(), ar);
            if encoded_len(trial) > limit {
                // Header, question and OPT only: the client retries over TCP (RFC 6891 7).
                meta.truncation = true;
                return (
                    send(&mut response, builder.build_no_records(meta)).await,
                    ans.zone,
                    ans.decision,
                );
            }
        }
        let (an, ns, ar) = parts();
        let info = send(
            &mut response,
            builder.build(meta, an, ns, std::iter::empty::<&Record>(), ar),
        )
        .await;
        (info, ans.zone, ans.decision)
    }
}

fn builder_edns<'a>(scanned: &Scanned, edns: &'a Edns) -> Option<&'a Edns> {
    scanned.edns.map(|_| edns)
}

/// Size of a response as it would go on the wire.
fn encoded_len<'a>(
    msg: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> usize {
    let mut buf = Vec::with_capacity(512);
    let mut enc = BinEncoder::new(&mut buf);
    match msg.destructive_emit(&mut enc) {
        Ok(_) => buf.len(),
        Err(_) => usize::MAX,
    }
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    msg: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> ResponseInfo {
    let meta = *msg.metadata();
    match response.send_response(msg).await {
        Ok(info) => info,
        Err(error) => {
            debug!(%error, "sending the response failed");
            let mut failed = meta;
            failed.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata: failed,
                counts: HeaderCounts::default(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::wire::{Ecs, Edns};

    fn scanned(ecs: Option<Ecs>) -> Scanned {
        Scanned {
            edns: Some(Edns {
                payload: 1232,
                version: 0,
                dnssec_ok: false,
                ecs,
            }),
            question_end: 0,
            qtype: 1,
            qclass: 1,
        }
    }

    #[test]
    fn routes_on_ecs_unless_its_prefix_is_zero() {
        let src: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let c = client_of(src, &scanned(None));
        assert_eq!(
            c.addr,
            "127.0.0.1".parse::<IpAddr>().unwrap(),
            "IPv4-mapped is IPv4"
        );
        assert_eq!(c.ecs_source, None);
        let ecs = Ecs {
            addr: "12.0.0.0".parse().unwrap(),
            source_prefix: 24,
        };
        assert_eq!(client_of(src, &scanned(Some(ecs))).ecs_source, Some(24));
        let zero = Ecs {
            addr: "0.0.0.0".parse().unwrap(),
            source_prefix: 0,
        };
        assert_eq!(client_of(src, &scanned(Some(zero))).ecs_source, None);
    }

    #[test]
    fn udp_limit_is_the_smaller_size() {
        let mut none = scanned(None);
        none.edns = None;
        assert_eq!(udp_limit(&none, 1232), 512);
        assert_eq!(udp_limit(&scanned(None), 1232), 1232);
        let mut small = scanned(None);
        small.edns = small.edns.map(|e| Edns { payload: 700, ..e });
        assert_eq!(udp_limit(&small, 1232), 700);
    }
}
