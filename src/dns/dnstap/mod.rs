//! dnstap: queries and responses logged to a collector on a Unix socket, in dnstap protobuf
//! over Frame Streams. The DNS path only decides whether a query is sampled, copies its bytes
//! into an [`Event`] and offers it to a bounded queue with `try_send`: when the queue is full
//! the event is dropped and counted, never waited for. A writer task ([`writer::run`]) takes
//! events off the queue, encodes them and writes them, reconnecting when the collector goes
//! away. With `[dnstap]` absent there is no [`Tap`] and the DNS path pays one branch.
//!
//! Each event becomes two dnstap messages, AUTH_QUERY and AUTH_RESPONSE (only the first when
//! no response was sent). A traffic-managed answer carries its routing decision in the
//! `extra` field of both, as text: `service=NAME region=REGION reason=REASON`, the names as
//! in the config and the reason as in `meridian_dns_answers_total` (`region=-` when the
//! answer came from no region: SERVFAIL, static fallback, no endpoints).
pub mod frame;
pub mod proto;
pub mod writer;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::IntCounter;
use tokio::sync::mpsc;

use super::counters::Transport;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::routing::query::Decision;
use crate::routing::table::Compiled;
use crate::settings::DnstapSettings;
use proto::{Dnstap, DnstapType, Message, MessageType, SocketFamily, SocketProtocol};

/// One query as logged: what came in, what went out, between whom and when.
#[derive(Debug)]
pub struct Event {
    pub transport: Transport,
    pub client: SocketAddr,
    /// The address the query came in on (the listen address; `0.0.0.0` or `::` for a
    /// wildcard listener).
    pub server: SocketAddr,
    pub received: SystemTime,
    pub sent: SystemTime,
    pub query: Vec<u8>,
    /// `None` when nothing was sent (dropped by rate limiting, or not answerable).
    pub response: Option<Vec<u8>>,
    pub routed: Option<Routed>,
}

/// The routing decision behind a traffic-managed answer, with the config that names its ids.
#[derive(Debug)]
pub struct Routed {
    pub compiled: Arc<Compiled>,
    pub decision: Decision,
}

/// The DNS path's end of the queue, shared by every listener.
pub struct Tap {
    tx: mpsc::Sender<Event>,
    sample: u64,
    seen: AtomicU64,
    dropped: IntCounter,
    clock: Box<dyn Clock>,
}

impl Tap {
    /// The tap and the queue's receiving end for [`writer::run`].
    pub fn new(
        settings: &DnstapSettings,
        metrics: &Metrics,
        clock: Box<dyn Clock>,
    ) -> (Tap, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(settings.queue_size.max(1));
        let tap = Tap {
            tx,
            sample: u64::from(settings.sample.max(1)),
            seen: AtomicU64::new(0),
            dropped: metrics.dnstap_dropped_full.clone(),
            clock,
        };
        (tap, rx)
    }

    /// The time stamps events carry.
    #[inline]
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Whether this query is logged: every `sample`-th one (all of them at 1).
    #[inline]
    pub fn sampled(&self) -> bool {
        self.sample == 1
            || self
                .seen
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(self.sample)
    }

    /// Offers an event to the writer; drops and counts it when the queue is full or the
    /// writer has stopped. Never waits.
    #[inline]
    pub fn send(&self, event: Event) {
        if self.tx.try_send(event).is_err() {
            self.dropped.inc();
        }
    }

    /// Logs one query when it is sampled: the query's bytes, the response's when one was
    /// sent, and the decision behind it.
    #[allow(clippy::too_many_arguments)]
    pub fn log(
        &self,
        transport: Transport,
        client: SocketAddr,
        server: SocketAddr,
        received: SystemTime,
        query: &[u8],
        response: Option<&[u8]>,
        routed: Option<(&Arc<Compiled>, Decision)>,
    ) {
        if !self.sampled() {
            return;
        }
        self.send(Event {
            transport,
            client,
            server,
            received,
            sent: self.now(),
            query: query.to_vec(),
            response: response.map(<[u8]>::to_vec),
            routed: routed.map(|(compiled, decision)| Routed {
                compiled: compiled.clone(),
                decision,
            }),
        });
    }
}

/// The `extra` text for a decision (see the module docs).
pub fn extra(routed: &Routed) -> String {
    let d = &routed.decision;
    let service = routed.compiled.services[d.service.index()].name.to_ascii();
    let region = d
        .region
        .map_or("-", |r| routed.compiled.regions[r.index()].name.as_str());
    format!(
        "service={service} region={region} reason={}",
        d.reason.name()
    )
}

/// The identity and version every message carries.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub identity: Option<Vec<u8>>,
    pub version: Option<Vec<u8>>,
}

/// Turns events into data frames, reusing one `Dnstap` whose identity and version are set once.
pub struct Encoder {
    template: Dnstap,
}

impl Encoder {
    pub fn new(origin: Origin) -> Encoder {
        Encoder {
            template: Dnstap {
                identity: origin.identity,
                version: origin.version,
                extra: None,
                message: None,
                r#type: DnstapType::Message as i32,
            },
        }
    }

    /// Appends an event's data frames (AUTH_QUERY, then AUTH_RESPONSE when a response was
    /// sent) to `out`; returns how many.
    pub fn encode(&mut self, event: Event, out: &mut Vec<u8>) -> u64 {
        let (family, client, server) = match (event.client.ip(), event.server.ip()) {
            (IpAddr::V4(c), IpAddr::V4(s)) => {
                (SocketFamily::Inet, c.octets().to_vec(), s.octets().to_vec())
            }
            (c, s) => (
                SocketFamily::Inet6,
                v6(c).octets().to_vec(),
                v6(s).octets().to_vec(),
            ),
        };
        let protocol = match event.transport {
            Transport::Udp => SocketProtocol::Udp,
            Transport::Tcp => SocketProtocol::Tcp,
        };
        let (qs, qn) = split(event.received);
        let d = &mut self.template;
        d.extra = event.routed.as_ref().map(|r| extra(r).into_bytes());
        d.message = Some(Message {
            r#type: MessageType::AuthQuery as i32,
            socket_family: Some(family as i32),
            socket_protocol: Some(protocol as i32),
            query_address: Some(client),
            response_address: Some(server),
            query_port: Some(u32::from(event.client.port())),
            response_port: Some(u32::from(event.server.port())),
            query_time_sec: Some(qs),
            query_time_nsec: Some(qn),
            query_message: Some(event.query),
            ..Message::default()
        });
        push(d, out);
        let mut frames = 1;
        if let (Some(response), Some(m)) = (event.response, d.message.as_mut()) {
            let (rs, rn) = split(event.sent);
            m.r#type = MessageType::AuthResponse as i32;
            m.query_message = None;
            m.response_time_sec = Some(rs);
            m.response_time_nsec = Some(rn);
            m.response_message = Some(response);
            push(d, out);
            frames = 2;
        }
        d.message = None;
        d.extra = None;
        frames
    }
}

fn push(message: &Dnstap, out: &mut Vec<u8>) {
    use prost::Message as _;
    let len = message.encoded_len();
    out.reserve(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    // Encoding into a Vec cannot run out of room.
    let _ = message.encode(out);
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// Seconds and nanoseconds since the Unix epoch.
fn split(t: SystemTime) -> (u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs(), d.subsec_nanos())
}

#[cfg(test)]
mod tests;
