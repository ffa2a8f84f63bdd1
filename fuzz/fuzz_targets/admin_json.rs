//! The admin API's request handling (`admin::Admin::handle`), with the real routing-table
//! writer (`control::Publisher`, fresh for each input, no state directory) answering
//! its commands, all on one current-thread runtime: no socket, no spawned task.
//!
//! Input: a request written as HTTP/1 text, which is what the seeds look like:
//!
//! ```text
//! POST /v1/regions/eu-west/evacuate 198.51.100.7
//! Authorization: Bearer t
//!
//! {"reason": "maintenance"}
//! ```
//!
//! The request line is the method, the URI and optionally the peer's address (loopback
//! otherwise; anything that is not an address, such as `HTTP/1.1`, is ignored). Header lines
//! follow up to an empty line; the rest is the body. A method, URI or header hyper would not
//! accept is skipped (a request line that does not parse is no request). The token is `t`.
//!
//! Checks: a response always comes back; an error status (4xx, 5xx) always has a JSON object
//! body saying what went wrong; every JSON body parses.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use libfuzzer_sys::fuzz_target;
use meridian::admin::Admin;
use meridian::admin::auth::Token;
use meridian::control::Publisher;
use meridian::state::{SavedEvacuations, SavedHealth};
use meridian_fuzz::Example;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((req, peer)) = request(data) else {
        return;
    };
    let path = req.uri().path().to_string();
    let (status, content_type, body) = runtime().block_on(async {
        let (mut writer, store) = Publisher::new(
            meridian_fuzz::compiled(Example::Meridian),
            &SavedHealth::default(),
            SavedEvacuations::default(),
            meridian_fuzz::metrics().clone(),
        );
        let (commands, mut rx) = mpsc::channel(8);
        let admin = Admin {
            store,
            commands,
            metrics: meridian_fuzz::metrics().clone(),
            token: Token::new("t"),
            read_token: Token::new("r"),
            cluster: None,
        };
        let publisher = async {
            while let Some(cmd) = rx.recv().await {
                writer.on_command(cmd).await;
            }
        };
        let reply = tokio::select! {
            reply = admin.handle(req, peer) => reply,
            () = publisher => unreachable!("the command channel closed while Admin holds it"),
        };
        let (parts, body) = reply.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(never) => match never {},
        };
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .map(|v| v.as_bytes().to_vec());
        (parts.status, content_type, body)
    });
    let is_json = content_type.as_deref() == Some(b"application/json".as_slice());
    if status.is_client_error() || status.is_server_error() {
        assert!(is_json, "{status} on {path} without a JSON body");
    }
    if is_json {
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "{status} on {path}: body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&body)
            )
        });
        if status.is_client_error() || status.is_server_error() {
            let says = value.as_object().is_some_and(|o| {
                o.get("error").is_some_and(|e| e.is_string()) || o.contains_key("ready")
            });
            assert!(
                says,
                "{status} on {path} does not say what went wrong: {value}"
            );
        }
    }
});

/// Reads the request text described at the top; `None` when it names no request.
fn request(data: &[u8]) -> Option<(Request<Full<Bytes>>, IpAddr)> {
    // The head ends at the first empty line ("\n\n" or "\n\r\n").
    let end = (0..data.len()).find_map(|i| {
        let rest = &data[i..];
        if rest.starts_with(b"\n\n") {
            Some((i, i + 2))
        } else if rest.starts_with(b"\n\r\n") {
            Some((i, i + 3))
        } else {
            None
        }
    });
    let (head, body) = match end {
        Some((h, b)) => (&data[..h], &data[b..]),
        None => (data, &[][..]),
    };
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let mut words = lines
        .next()?
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    let method = Method::from_bytes(words.next()?).ok()?;
    let uri = Uri::try_from(words.next()?).ok()?;
    let peer = words
        .next()
        .and_then(|w| std::str::from_utf8(w).ok()?.parse().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut req = Request::builder().method(method).uri(uri);
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        req = req.header(name, value);
    }
    let req = req.body(Full::new(Bytes::copy_from_slice(body))).ok()?;
    Some((req, peer))
}
