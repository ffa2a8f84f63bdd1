//! `GET /metrics` as scrapers ask for it: a real Prometheus (which asks for gzip on every
//! scrape) reads Meridian's series through a relay that records what went over the wire, and
//! a request without `Accept-Encoding`, as curl sends it, still gets the plain text.
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::*;

/// The DNS counter the tests read: udp A queries for example.com. answered NOERROR.
const QUERIES: &str = "meridian_dns_queries_total{zone=\"example.com.\",qtype=\"A\",rcode=\"NOERROR\",transport=\"udp\"}";

/// Bytes kept of the start of each direction of a relayed connection.
const HEAD: usize = 4096;

/// The first bytes of one direction of a relayed connection.
type Kept = Arc<Mutex<Vec<u8>>>;

/// A TCP relay from a free loopback port to `target` that keeps the first bytes each way of
/// every connection: the heads of the first request and response on it.
struct Tap {
    addr: SocketAddr,
    /// Per connection: (request bytes, response bytes).
    heads: Arc<Mutex<Vec<(Kept, Kept)>>>,
}

impl Tap {
    fn start(target: SocketAddr) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let addr = listener.local_addr().expect("relay address");
        let heads: Arc<Mutex<Vec<_>>> = Arc::default();
        let kept = heads.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect_timeout(&target, IO_TIMEOUT) else {
                    continue;
                };
                let (request, response): (Kept, Kept) = Default::default();
                kept.lock()
                    .unwrap()
                    .push((request.clone(), response.clone()));
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || relay(client, server, request));
                std::thread::spawn(move || relay(s2, c2, response));
            }
        });
        Tap { addr, heads }
    }

    /// Whether some connection's first request head holds `request` and its response head
    /// `response` (both lower-case).
    fn saw(&self, request: &str, response: &str) -> bool {
        let head = |b: &Kept| {
            let b = b.lock().unwrap();
            let text = String::from_utf8_lossy(&b).to_ascii_lowercase();
            text.split("\r\n\r\n").next().unwrap_or("").to_string()
        };
        self.heads
            .lock()
            .unwrap()
            .iter()
            .any(|(req, resp)| head(req).contains(request) && head(resp).contains(response))
    }
}

/// Copies `from` to `to` until either closes, keeping the first [`HEAD`] bytes in `kept`.
fn relay(mut from: TcpStream, mut to: TcpStream, kept: Kept) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let mut kept = kept.lock().unwrap();
            let room = HEAD.saturating_sub(kept.len()).min(n);
            kept.extend_from_slice(&buf[..room]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Percent-encodes a PromQL query for a URL.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of an instant query's single series, polled until Prometheus has one (bounded).
fn prom_value(p: &Prometheus, query: &str) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http_json(
            p.addr,
            "GET",
            &format!("/api/v1/query?query={}", encode(query)),
            None,
            "",
        );
        assert_eq!(status, 200, "{query}: {body}");
        if let Some(v) = body["data"]["result"][0]["value"][1].as_str() {
            return v.parse().unwrap_or_else(|_| panic!("{query}: {body}"));
        }
        assert!(Instant::now() < deadline, "{query}: no value in {body}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Five udp A queries for www.example.com. from a US client.
fn five_queries(m: &Meridian) {
    for _ in 0..5 {
        let q = with_ecs(query("www.example.com.", RecordType::A), "11.0.0.0", 16);
        assert_eq!(
            udp(m.v4(), &q).metadata.response_code,
            ResponseCode::NoError
        );
    }
}

/// The value of a series in a scrape's text.
fn value_in(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .expect("a whole gzip stream of text");
    text
}

#[test]
fn a_real_prometheus_scrapes_the_gzip_metrics() {
    let m = Meridian::start_example();
    five_queries(&m);
    let tap = Tap::start(m.admin());
    let prometheus = Prometheus::start(tap.addr);

    // Prometheus asked for gzip, got it, and read the series out of it.
    assert_eq!(prom_value(&prometheus, QUERIES), 5.0);
    assert_eq!(prom_value(&prometheus, "up{job=\"scraped\"}"), 1.0);
    assert!(
        tap.saw("accept-encoding: gzip", "content-encoding: gzip"),
        "no gzip scrape went through the relay"
    );
    let plain = http(m.admin(), "GET", "/metrics", None, "").1;
    let regions = plain
        .lines()
        .filter(|l| l.starts_with("meridian_region_up{"))
        .count();
    assert!(regions > 0, "{plain}");
    assert_eq!(
        prom_value(&prometheus, "count(meridian_region_up)"),
        regions as f64
    );
    let samples = plain.lines().filter(|l| !l.starts_with('#')).count() as f64;
    let scraped = prom_value(&prometheus, "scrape_samples_scraped{job=\"scraped\"}");
    // Within the few series a probe result or figure may add between the two scrapes.
    assert!(
        scraped > samples * 0.9 && scraped < samples * 1.1,
        "{scraped} samples scraped, {samples} in the text"
    );

    // The same request directly: gzip, whole with its trailer, and the same counter.
    let (head, wire) = http_get(m.admin(), "/metrics", &[("Accept-Encoding", "gzip")]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("\ncontent-encoding: gzip\n"), "{head}");
    assert!(head.contains("\nvary: accept-encoding\n"), "{head}");
    assert!(
        head.contains("\ncontent-type: text/plain; version=0.0.4\n"),
        "{head}"
    );
    assert!(wire.starts_with(&[0x1f, 0x8b]), "not gzip");
    let text = gunzip(&wire);
    assert!(text.starts_with("# HELP "), "{text}");
    assert_eq!(value_in(&text, QUERIES), Some(5.0), "{text}");
    assert!(wire.len() < text.len(), "{} of {}", wire.len(), text.len());
}

#[test]
fn a_plain_request_gets_the_plain_text() {
    let m = Meridian::start_example();
    five_queries(&m);
    for headers in [&[][..], &[("Accept-Encoding", "gzip;q=0")]] {
        let (head, body) = http_get(m.admin(), "/metrics", headers);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(!head.contains("content-encoding"), "{head}");
        assert!(
            head.contains("\ncontent-type: text/plain; version=0.0.4\n"),
            "{head}"
        );
        let text = String::from_utf8(body).expect("plain text");
        assert!(text.starts_with("# HELP "), "{text}");
        assert_eq!(value_in(&text, QUERIES), Some(5.0), "{text}");
        assert!(text.contains("\nmeridian_region_up{"), "{text}");
    }
}
