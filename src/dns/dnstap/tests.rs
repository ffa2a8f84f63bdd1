//! The DNS path's end (sampling, a full queue), the encoding, and the writer against a
//! collector played by the test on a Unix socket in a temp dir.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use super::frame::{self, Control};
use super::proto::{Dnstap, MessageType, SocketFamily, SocketProtocol};
use super::*;
use crate::clock::FixedClock;
use crate::dns::fast::tests::table;
use crate::dns::handler::respond_decided;
use crate::settings::FstrmMode;

fn settings(socket: PathBuf, sample: u32, queue_size: usize, mode: FstrmMode) -> DnstapSettings {
    DnstapSettings {
        socket,
        sample,
        queue_size,
        mode,
        identity: Some(b"ns1".to_vec().into_boxed_slice()),
        version: Some(b"meridian test".to_vec().into_boxed_slice()),
    }
}

fn at(secs: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs, nanos)
}

fn event(response: Option<&[u8]>) -> Event {
    Event {
        transport: Transport::Udp,
        client: "192.0.2.7:40000".parse().unwrap(),
        server: "127.0.0.1:53".parse().unwrap(),
        received: at(1_700_000_000, 5),
        sent: at(1_700_000_001, 7),
        query: b"query bytes".to_vec(),
        response: response.map(<[u8]>::to_vec),
        routed: None,
    }
}

/// A query for `www.example.com A` with ECS 12.0.0.0/24 (a client in Germany).
fn www_query() -> Vec<u8> {
    use hickory_proto::op::{Edns, Message, MessageType as Kind, OpCode, Query};
    use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
    use hickory_proto::rr::{Name, RecordType};
    let mut m = Message::new(7, Kind::Query, OpCode::Query);
    m.add_query(Query::query(
        Name::from_ascii("www.example.com.").unwrap(),
        RecordType::A,
    ));
    let mut edns = Edns::new();
    edns.options_mut()
        .insert(EdnsOption::Subnet(ClientSubnet::new(
            "12.0.0.0".parse().unwrap(),
            24,
            0,
        )));
    m.set_edns(edns);
    m.to_vec().unwrap()
}

/// The dnstap messages in a run of data frames.
fn decode(mut bytes: &[u8]) -> Vec<Dnstap> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        out.push(Dnstap::decode(&bytes[4..4 + len]).unwrap());
        bytes = &bytes[4 + len..];
    }
    out
}

#[test]
fn an_answer_is_a_query_and_a_response_with_addresses_times_and_bytes() {
    let mut encoder = Encoder::new(Origin {
        identity: Some(b"ns1".to_vec()),
        version: Some(b"v".to_vec()),
    });
    let mut out = Vec::new();
    assert_eq!(encoder.encode(event(Some(b"response bytes")), &mut out), 2);
    let got = decode(&out);
    assert_eq!(got.len(), 2);
    for d in &got {
        assert_eq!(d.identity.as_deref(), Some(&b"ns1"[..]));
        assert_eq!(d.version.as_deref(), Some(&b"v"[..]));
        assert_eq!(d.extra, None);
        let m = d.message.as_ref().unwrap();
        assert_eq!(m.socket_family, Some(SocketFamily::Inet as i32));
        assert_eq!(m.socket_protocol, Some(SocketProtocol::Udp as i32));
        assert_eq!(m.query_address.as_deref(), Some(&[192, 0, 2, 7][..]));
        assert_eq!(m.query_port, Some(40000));
        assert_eq!(m.response_address.as_deref(), Some(&[127, 0, 0, 1][..]));
        assert_eq!(m.response_port, Some(53));
        assert_eq!(
            (m.query_time_sec, m.query_time_nsec),
            (Some(1_700_000_000), Some(5))
        );
    }
    let (q, r) = (
        got[0].message.as_ref().unwrap(),
        got[1].message.as_ref().unwrap(),
    );
    assert_eq!(q.r#type, MessageType::AuthQuery as i32);
    assert_eq!(q.query_message.as_deref(), Some(&b"query bytes"[..]));
    assert_eq!(
        (q.response_message.as_ref(), q.response_time_sec),
        (None, None)
    );
    assert_eq!(r.r#type, MessageType::AuthResponse as i32);
    assert_eq!(r.response_message.as_deref(), Some(&b"response bytes"[..]));
    assert_eq!(
        (r.response_time_sec, r.response_time_nsec),
        (Some(1_700_000_001), Some(7))
    );
}

#[test]
fn a_query_without_a_response_is_logged_alone_and_ipv6_as_inet6() {
    let mut e = event(None);
    e.client = "[2001:db8::1]:5300".parse().unwrap();
    e.server = "[::1]:53".parse().unwrap();
    e.transport = Transport::Tcp;
    let mut out = Vec::new();
    assert_eq!(Encoder::new(Origin::default()).encode(e, &mut out), 1);
    let got = decode(&out);
    let m = got[0].message.as_ref().unwrap();
    assert_eq!(m.r#type, MessageType::AuthQuery as i32);
    assert_eq!(m.socket_family, Some(SocketFamily::Inet6 as i32));
    assert_eq!(m.socket_protocol, Some(SocketProtocol::Tcp as i32));
    let want: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
    assert_eq!(m.query_address.as_deref(), Some(&want.octets()[..]));
    assert_eq!(got[0].identity, None);
}

#[test]
fn the_routing_decision_goes_into_extra() {
    let snap = table();
    let metrics = Metrics::new();
    let src: SocketAddr = "127.0.0.1:5300".parse().unwrap();
    let query = www_query();
    let (response, decision) = respond_decided(&snap, &query, None, src, Transport::Udp, &metrics);
    let decision = decision.expect("a traffic-managed answer has a decision");
    let mut e = event(response.as_deref());
    e.routed = Some(Routed {
        compiled: snap.table.compiled.clone(),
        decision,
    });
    assert_eq!(
        extra(e.routed.as_ref().unwrap()),
        "service=www.example.com. region=eu-west reason=geo"
    );
    let mut out = Vec::new();
    let mut encoder = Encoder::new(Origin::default());
    encoder.encode(e, &mut out);
    // The next event, a static answer, carries no decision (nothing left from the last).
    encoder.encode(event(Some(b"static")), &mut out);
    let got = decode(&out);
    assert_eq!(got.len(), 4);
    for d in &got[..2] {
        assert_eq!(
            d.extra.as_deref(),
            Some(&b"service=www.example.com. region=eu-west reason=geo"[..])
        );
    }
    assert_eq!((&got[2].extra, &got[3].extra), (&None, &None));
    let m = got[2].message.as_ref().unwrap();
    assert_eq!(
        m.response_message, None,
        "a query message carries no response"
    );
}

#[test]
fn a_full_queue_drops_and_counts_without_waiting() {
    let metrics = Metrics::new();
    let s = settings(
        PathBuf::from("/nonexistent"),
        1,
        2,
        FstrmMode::Bidirectional,
    );
    let (tap, mut rx) = Tap::new(&s, &metrics, Box::new(FixedClock(at(1, 0))));
    // No writer drains the queue, and no runtime is running: a send that waited would hang.
    for _ in 0..5 {
        tap.send(event(None));
    }
    assert_eq!(metrics.dnstap_dropped_full.get(), 3);
    assert!(rx.try_recv().is_ok());
    assert!(rx.try_recv().is_ok());
    assert!(rx.try_recv().is_err());
    // With the writer gone, every event is a drop.
    drop(rx);
    tap.send(event(None));
    assert_eq!(metrics.dnstap_dropped_full.get(), 4);
}

#[test]
fn sample_logs_one_query_in_n() {
    let metrics = Metrics::new();
    let s = settings(
        PathBuf::from("/nonexistent"),
        3,
        100,
        FstrmMode::Bidirectional,
    );
    let (tap, mut rx) = Tap::new(&s, &metrics, Box::new(FixedClock(at(9, 0))));
    let src: SocketAddr = "127.0.0.1:1".parse().unwrap();
    for _ in 0..9 {
        tap.log(Transport::Udp, src, src, at(8, 0), b"q", Some(b"r"), None);
    }
    let mut n = 0;
    while let Ok(e) = rx.try_recv() {
        assert_eq!(
            e.sent,
            at(9, 0),
            "the response time comes from the tap's clock"
        );
        n += 1;
    }
    assert_eq!(n, 3);
    assert_eq!(metrics.dnstap_dropped_full.get(), 0);
}

/// A fresh directory for a collector's socket.
fn socket_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meridian-dnstap-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn read_control(s: &mut UnixStream) -> Control {
    let mut head = [0u8; 8];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head[..4], &[0, 0, 0, 0], "expected a control frame");
    let mut body = vec![0u8; u32::from_be_bytes(head[4..].try_into().unwrap()) as usize];
    s.read_exact(&mut body).await.unwrap();
    let got = frame::parse_control(&body).unwrap();
    if matches!(got.kind, Control::Ready | Control::Start) {
        assert!(got.dnstap, "{:?} names protobuf:dnstap.Dnstap", got.kind);
    }
    got.kind
}

/// Plays a collector for one session: the handshake for `mode` (says when START is in), then
/// data frames until STOP.
async fn collect(
    s: &mut UnixStream,
    mode: FstrmMode,
    started: tokio::sync::oneshot::Sender<()>,
) -> Vec<Dnstap> {
    if mode == FstrmMode::Bidirectional {
        assert_eq!(read_control(s).await, Control::Ready);
        let mut accept = Vec::new();
        frame::control(Control::Accept, &mut accept);
        s.write_all(&accept).await.unwrap();
    }
    assert_eq!(read_control(s).await, Control::Start);
    let _ = started.send(());
    let mut got = Vec::new();
    loop {
        let len = s.read_u32().await.unwrap() as usize;
        if len == 0 {
            let mut rest = [0u8; 8];
            s.read_exact(&mut rest).await.unwrap();
            assert_eq!(rest, [0, 0, 0, 4, 0, 0, 0, 3], "STOP");
            break;
        }
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.unwrap();
        got.push(Dnstap::decode(&payload[..]).unwrap());
    }
    if mode == FstrmMode::Bidirectional {
        let mut finish = Vec::new();
        frame::control(Control::Finish, &mut finish);
        s.write_all(&finish).await.unwrap();
    }
    got
}

async fn session_in(mode: FstrmMode, name: &str) {
    let dir = socket_dir(name);
    let path = dir.join("dnstap.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let metrics = Arc::new(Metrics::new());
    let s = settings(path, 1, 16, mode);
    let (tap, rx) = Tap::new(&s, &metrics, Box::new(FixedClock(at(1, 0))));
    let stop = CancellationToken::new();
    let writer = tokio::spawn(writer::run(s, rx, metrics.clone(), stop.clone()));
    let (mut conn, _) = listener.accept().await.unwrap();
    let (started, is_started) = tokio::sync::oneshot::channel();
    let collector = tokio::spawn(async move { collect(&mut conn, mode, started).await });
    is_started.await.unwrap();
    tap.send(event(Some(b"r1")));
    tap.send(event(None));
    // Shutdown writes what is queued, then STOP.
    stop.cancel();
    writer.await.unwrap();
    let got = collector.await.unwrap();
    let types: Vec<i32> = got
        .iter()
        .map(|d| d.message.as_ref().unwrap().r#type)
        .collect();
    let (q, r) = (
        MessageType::AuthQuery as i32,
        MessageType::AuthResponse as i32,
    );
    assert_eq!(types, [q, r, q]);
    assert_eq!(got[0].identity.as_deref(), Some(&b"ns1"[..]));
    assert_eq!(metrics.dnstap_messages.get(), 3);
    assert_eq!(metrics.dnstap_connections.get(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_bidirectional_session_shakes_hands_then_writes_and_stops() {
    session_in(FstrmMode::Bidirectional, "bi").await;
}

#[tokio::test]
async fn a_unidirectional_session_starts_without_a_handshake() {
    session_in(FstrmMode::Unidirectional, "uni").await;
}

#[tokio::test]
async fn the_writer_reconnects_when_the_collector_goes_away() {
    let dir = socket_dir("reconnect");
    let path = dir.join("dnstap.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let metrics = Arc::new(Metrics::new());
    let s = settings(path, 1, 16, FstrmMode::Unidirectional);
    let (tap, rx) = Tap::new(&s, &metrics, Box::new(FixedClock(at(1, 0))));
    let stop = CancellationToken::new();
    let writer = tokio::spawn(writer::run(s, rx, metrics.clone(), stop.clone()));
    // The first collector reads the START and hangs up.
    let (mut first, _) = listener.accept().await.unwrap();
    assert_eq!(read_control(&mut first).await, Control::Start);
    drop(first);
    // The writer sees the end of file and comes back.
    let (mut second, _) = listener.accept().await.unwrap();
    let (started, is_started) = tokio::sync::oneshot::channel();
    let collector =
        tokio::spawn(async move { collect(&mut second, FstrmMode::Unidirectional, started).await });
    is_started.await.unwrap();
    tap.send(event(Some(b"r")));
    stop.cancel();
    writer.await.unwrap();
    assert_eq!(collector.await.unwrap().len(), 2);
    assert_eq!(metrics.dnstap_connections.get(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
