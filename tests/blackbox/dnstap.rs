//! dnstap through the real binary, to real collectors: `fstrm_capture` (fstrm-bin) writing a
//! capture file that `dnstap -r` and `dnstap-ldns -r` decode, and `dnstap -u` (the Go dnstap
//! tool) writing YAML as messages arrive. Both must be installed (scripts/test installs
//! them); a missing one fails the test. Sockets live in each test's scratch directory.
#![allow(unsafe_code, reason = "kill(2) of the collectors the tests start")]
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::harness::*;

/// How long a collector may take to appear, or a message to reach it.
const WAIT: Duration = Duration::from_secs(20);

/// A collector process listening on `socket`.
struct Collector {
    child: Child,
    socket: PathBuf,
    out: PathBuf,
}

impl Collector {
    /// `fstrm_capture`, writing a Frame Streams capture file.
    fn fstrm(dir: &Path, out: &str) -> Collector {
        let (socket, out) = (dir.join("dnstap.sock"), dir.join(out));
        let child = Command::new("fstrm_capture")
            .args(["-t", "protobuf:dnstap.Dnstap", "-u"])
            .arg(&socket)
            .arg("-w")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("fstrm_capture must be installed: run scripts/test, which installs fstrm-bin");
        Collector::listening(child, socket, out)
    }

    /// `dnstap -u`, writing YAML as each message arrives.
    fn golang(dir: &Path, out: &str) -> Collector {
        let (socket, out) = (dir.join("dnstap.sock"), dir.join(out));
        let child = Command::new("dnstap")
            .arg("-u")
            .arg(&socket)
            .arg("-y")
            .arg("-w")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "dnstap must be installed: run scripts/test, which installs \
                 golang-github-dnstap-golang-dnstap-cli",
            );
        Collector::listening(child, socket, out)
    }

    fn listening(mut child: Child, socket: PathBuf, out: PathBuf) -> Collector {
        let deadline = Instant::now() + WAIT;
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "the collector never made {socket:?}"
            );
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the collector exited with {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Collector { child, socket, out }
    }

    /// Stops the collector (SIGINT, which makes it close its output) and returns its output.
    fn stop(mut self) -> PathBuf {
        // SAFETY: kill(2) on the child this test spawned and has not yet reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGINT);
        }
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(Instant::now() < deadline, "the collector did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.out.clone()
    }

    /// Waits until the collector's output mentions `what`; returns the output.
    fn wait_for(&self, what: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = std::fs::read_to_string(&self.out).unwrap_or_default();
            if text.contains(what) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{what:?} never reached the collector:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example config, logging to `socket`, with extra `[dnstap]` keys.
fn config(socket: &Path, keys: &str) -> String {
    format!(
        "{}\n[dnstap]\nsocket = {:?}\nidentity = \"ns-test\"\n{keys}",
        example_config(),
        socket.display().to_string()
    )
}

/// Waits until a metric reaches `want`.
fn wait_metric(m: &Meridian, series: &str, want: u64) {
    let deadline = Instant::now() + WAIT;
    while metric(m, series) < want {
        assert!(
            Instant::now() < deadline,
            "{series} never reached {want}:\n{}",
            m.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a decoder and returns its output.
fn decode(tool: &str, args: &[&str], file: &Path) -> String {
    let out = Command::new(tool)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} ({e}): run scripts/test, which installs it"));
    assert!(
        out.status.success(),
        "{tool}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The YAML documents `dnstap -y` prints, one a message.
fn documents(yaml: &str) -> Vec<String> {
    yaml.split("---\n")
        .filter(|d| d.contains("type: MESSAGE"))
        .map(str::to_string)
        .collect()
}

/// A top-level `  key: value` of a message in `dnstap -y` output.
fn field<'a>(doc: &'a str, key: &str) -> &'a str {
    let prefix = format!("  {key}: ");
    doc.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in:\n{doc}"))
}

/// Each dnstap message of a Frame Streams capture file: its `Message.type` and its `extra`
/// text. Read here from the protobuf wire format directly, because neither decoder prints
/// `extra`.
fn types_and_extras(capture: &Path) -> Vec<(u64, Option<String>)> {
    let bytes = std::fs::read(capture).expect("read the capture");
    let mut out = Vec::new();
    let mut at = 0;
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    while at < bytes.len() {
        let len = word(at);
        if len == 0 {
            at += 8 + word(at + 4); // a control frame
            continue;
        }
        let payload = &bytes[at + 4..at + 4 + len];
        at += 4 + len;
        let (mut kind, mut extra) = (0, None);
        for (tag, value) in fields(payload) {
            match (tag, value) {
                (3, Value::Bytes(b)) => extra = Some(String::from_utf8(b.to_vec()).unwrap()),
                (14, Value::Bytes(message)) => {
                    for (tag, value) in fields(message) {
                        if let (1, Value::Varint(v)) = (tag, value) {
                            kind = v;
                        }
                    }
                }
                _ => {}
            }
        }
        out.push((kind, extra));
    }
    out
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of a protobuf message (varint, length-delimited and fixed-width ones).
fn fields(mut b: &[u8]) -> Vec<(u64, Value<'_>)> {
    fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0;
        for shift in (0..64).step_by(7) {
            let byte = b[0];
            *b = &b[1..];
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        v
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b);
        let value = match key & 7 {
            0 => Value::Varint(varint(&mut b)),
            2 => {
                let len = varint(&mut b) as usize;
                let (v, rest) = b.split_at(len);
                b = rest;
                Value::Bytes(v)
            }
            1 => {
                b = &b[8..];
                Value::Fixed
            }
            5 => {
                b = &b[4..];
                Value::Fixed
            }
            other => panic!("unexpected wire type {other}"),
        };
        out.push((key >> 3, value));
    }
    out
}

const AUTH_QUERY: u64 = 1;
const AUTH_RESPONSE: u64 = 2;

#[test]
fn dnstap_logs_udp_and_tcp_queries_with_the_routing_decision() {
    let scratch = Scratch::new();
    let collector = Collector::fstrm(&scratch.0, "capture.fstrm");
    let mut m = Meridian::start(&config(&collector.socket, ""));
    let server = m.v4();

    // UDP from a socket of our own, so its port is known: a client in Germany, by ECS.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let q = with_ecs(query("www.example.com.", RecordType::A), "12.0.0.0", 24);
    client.send_to(&encode(&q), server).unwrap();
    let mut buf = [0u8; 1500];
    client.recv(&mut buf).expect("a UDP answer");
    let port = client.local_addr().unwrap().port();
    // TCP with dig: a client in the US, by ECS.
    let tcp = dig(
        server,
        &["+tcp", "+subnet=11.0.130.0/24", "www.example.com", "A"],
    );
    assert!(tcp.contains("192.0.2.10"), "{tcp}");
    // A static name: logged, without a routing decision.
    let plain = dig(server, &["mail.example.com", "A"]);
    assert!(plain.contains("192.0.2.25"), "{plain}");

    m.terminate();
    let capture = collector.stop();

    let yaml = decode("dnstap", &["-y", "-r"], &capture);
    let docs = documents(&yaml);
    assert_eq!(docs.len(), 6, "three queries, three responses:\n{yaml}");
    let kinds: Vec<&str> = docs.iter().map(|d| field(d, "type")).collect();
    assert_eq!(
        kinds,
        [
            "AUTH_QUERY",
            "AUTH_RESPONSE",
            "AUTH_QUERY",
            "AUTH_RESPONSE",
            "AUTH_QUERY",
            "AUTH_RESPONSE"
        ],
        "{yaml}"
    );
    for (i, d) in docs.iter().enumerate() {
        assert!(d.contains("identity: \"ns-test\"\n"), "{d}");
        assert!(d.contains("version: \"meridian "), "{d}");
        assert_eq!(field(d, "socket_family"), "INET", "{d}");
        assert_eq!(field(d, "query_address"), "127.0.0.1", "{d}");
        assert_eq!(field(d, "response_address"), "127.0.0.1", "{d}");
        assert_eq!(field(d, "response_port"), server.port().to_string(), "{d}");
        assert!(d.contains("  query_time: "), "{d}");
        let protocol = if i / 2 == 1 { "TCP" } else { "UDP" };
        assert_eq!(field(d, "socket_protocol"), protocol, "{d}");
        if i % 2 == 1 {
            assert!(d.contains("  response_time: "), "{d}");
            assert!(d.contains("  response_message: |"), "{d}");
            assert!(d.contains(";; flags: qr aa"), "{d}");
        } else {
            assert!(d.contains("  query_message: |"), "{d}");
        }
    }
    // The query and its answer, as sent.
    assert_eq!(field(&docs[0], "query_port"), port.to_string());
    assert_eq!(field(&docs[1], "query_port"), port.to_string());
    assert!(docs[0].contains(";www.example.com.\tIN\t A"), "{}", docs[0]);
    assert!(docs[0].contains("; SUBNET: 12.0.0.0/24/0"), "{}", docs[0]);
    assert!(
        docs[1].contains("www.example.com.\t30\tIN\tA\t198.51.100.10"),
        "{}",
        docs[1]
    );
    assert!(docs[1].contains("; SUBNET: 12.0.0.0/24/16"), "{}", docs[1]);
    assert!(
        docs[3].contains("www.example.com.\t30\tIN\tA\t192.0.2.10"),
        "{}",
        docs[3]
    );
    assert!(
        docs[3].contains("; SUBNET: 11.0.130.0/24/20"),
        "{}",
        docs[3]
    );
    assert!(docs[5].contains("mail.example.com.\t"), "{}", docs[5]);
    assert!(docs[5].contains("192.0.2.25"), "{}", docs[5]);

    // The same capture through dnstap-ldns: AQ/AR lines with the transport and name.
    let text = decode("dnstap-ldns", &["-r"], &capture);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    for (line, want) in lines.iter().zip([
        " AQ 127.0.0.1 UDP ",
        " AR 127.0.0.1 UDP ",
        " AQ 127.0.0.1 TCP ",
        " AR 127.0.0.1 TCP ",
        " AQ 127.0.0.1 UDP ",
        " AR 127.0.0.1 UDP ",
    ]) {
        assert!(line.contains(want), "{line:?} should contain {want:?}");
    }
    assert!(lines[0].ends_with("\"www.example.com.\" IN A"), "{text}");
    assert!(lines[5].ends_with("\"mail.example.com.\" IN A"), "{text}");

    // The routing decision, on both messages of each traffic-managed answer.
    let eu = "service=www.example.com. region=eu-west reason=geo".to_string();
    let us = "service=www.example.com. region=us-east reason=geo".to_string();
    assert_eq!(
        types_and_extras(&capture),
        [
            (AUTH_QUERY, Some(eu.clone())),
            (AUTH_RESPONSE, Some(eu)),
            (AUTH_QUERY, Some(us.clone())),
            (AUTH_RESPONSE, Some(us)),
            (AUTH_QUERY, None),
            (AUTH_RESPONSE, None),
        ]
    );
}

#[test]
fn dnstap_sample_logs_one_query_in_n() {
    let scratch = Scratch::new();
    let collector = Collector::fstrm(&scratch.0, "capture.fstrm");
    let mut m = Meridian::start(&config(&collector.socket, "sample = 3\n"));
    for _ in 0..9 {
        let r = udp(m.v4(), &query("www.example.com.", RecordType::A));
        assert_eq!(addrs(&r).len(), 1);
    }
    m.terminate();
    let capture = collector.stop();
    let text = decode("dnstap-ldns", &["-r"], &capture);
    let count = |kind: &str| text.lines().filter(|l| l.contains(kind)).count();
    assert_eq!((count(" AQ "), count(" AR ")), (3, 3), "{text}");
}

#[test]
fn dnstap_writer_waits_for_a_collector_that_starts_later() {
    let scratch = Scratch::new();
    let socket = scratch.0.join("dnstap.sock");
    let m = Meridian::start(&config(&socket, ""));
    assert_eq!(metric(&m, "meridian_dnstap_connected"), 0);
    // Asked before there is a collector: waits in the queue.
    udp(m.v4(), &query("www.example.com.", RecordType::A));
    let collector = Collector::golang(&scratch.0, "log.yaml");
    collector.wait_for("www.example.com.");
    // And what comes after goes straight through.
    udp(m.v4(), &query("api.example.com.", RecordType::A));
    let yaml = collector.wait_for("api.example.com.");
    assert!(yaml.contains("type: AUTH_RESPONSE"), "{yaml}");
    assert_eq!(metric(&m, "meridian_dnstap_connected"), 1);
    assert_eq!(metric(&m, "meridian_dnstap_connections_total"), 1);
}

#[test]
fn dnstap_writer_reconnects_when_the_collector_comes_back() {
    let scratch = Scratch::new();
    let first = Collector::golang(&scratch.0, "first.yaml");
    let m = Meridian::start(&config(&first.socket, ""));
    udp(m.v4(), &query("www.example.com.", RecordType::A));
    first.wait_for("www.example.com.");
    let dropped = r#"meridian_dnstap_dropped_total{reason="write_failed"}"#;
    let lost_before = metric(&m, dropped);
    let first_log = first.stop();

    // Asked while the collector is away: sent when it is back, or counted as lost if the
    // writer had not yet seen it go.
    udp(m.v4(), &query("api.example.com.", RecordType::A));
    let second = Collector::golang(&scratch.0, "second.yaml");
    wait_metric(&m, "meridian_dnstap_connections_total", 2);
    udp(m.v4(), &query("mail.example.com.", RecordType::A));
    let yaml = second.wait_for("mail.example.com.");
    let away = yaml.contains("api.example.com.");
    assert!(
        away || metric(&m, dropped) > lost_before,
        "the query asked while the collector was away was neither logged nor counted:\n{yaml}"
    );
    assert!(!yaml.contains("www.example.com."), "{yaml}");
    let first_yaml = std::fs::read_to_string(first_log).unwrap();
    assert!(!first_yaml.contains("mail.example.com."), "{first_yaml}");
    assert_eq!(metric(&m, "meridian_dnstap_connected"), 1);
}
