//! Guarded failover, assertions and safety rules through the real binary: a loopback
//! database stand-in reports its replication lag (JSON, Prometheus text, a header), the test
//! changes it, and failover into the standby waits for the lag to drop.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::backend::{Backend, Mode};
use crate::harness::*;

const PRIMARY: &str = "192.0.2.10";
const STANDBY: &str = "198.51.100.10";
const THIRD: &str = "203.0.113.10";
/// Detection takes a few 1 s probe rounds; this bounds every wait on a loaded machine.
const LIMIT: Duration = Duration::from_secs(20);
/// The admin token of the tests that change something.
const TOKEN: &str = "guard-secret";

/// A standby's health and replication endpoint: `/healthz` answers OK; every response carries
/// the lag as JSON (`/lag.json`), as Prometheus text (`/metrics`) and in `X-Replication-Lag`.
struct LagServer {
    addr: SocketAddr,
    lag: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl LagServer {
    fn start(lag: f64) -> LagServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let value = Arc::new(AtomicU64::new(lag.to_bits()));
        let stop = Arc::new(AtomicBool::new(false));
        let (v, s) = (value.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let lag = f64::from_bits(v.load(Ordering::SeqCst));
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 4096];
                        let mut got = Vec::new();
                        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                            match conn.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => got.extend_from_slice(&buf[..n]),
                            }
                        }
                        let request = String::from_utf8_lossy(&got);
                        let path = request.split_whitespace().nth(1).unwrap_or("/");
                        let body = match path {
                            "/lag.json" => {
                                format!(
                                    r#"{{"replication":{{"role":"standby","lag_seconds":{lag}}}}}"#
                                )
                            }
                            "/metrics" => format!(
                                "# TYPE pg_replication_lag_seconds gauge\n\
                                 pg_replication_lag_seconds{{db=\"other\"}} 999\n\
                                 pg_replication_lag_seconds{{db=\"main\"}} {lag}\n"
                            ),
                            _ => "OK".to_string(),
                        };
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Replication-Lag: {lag}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = conn.write_all(reply.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        LagServer {
            addr,
            lag: value,
            stop,
        }
    }

    fn set(&self, lag: f64) {
        self.lag.store(lag.to_bits(), Ordering::SeqCst);
    }
}

impl Drop for LagServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// An active-passive database service: `primary`, then `standby`, then `third`, all probed
/// on loopback; the guard reads the lag with `extract`.
fn config(
    primary: u16,
    standby: u16,
    third: u16,
    extract: &str,
    path: &str,
    on_unsafe: &str,
) -> String {
    format!(
        r#"
[server]
dns_listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"

[[zones]]
origin = "example.com."
ns = ["ns1.example.com."]
soa = {{ mname = "ns1.example.com.", rname = "hostmaster.example.com.", serial = 1, minimum = 60 }}

[[regions]]
name = "primary"
[[regions]]
name = "standby"
[[regions]]
name = "third"

[checks.web]
kind = "http"
path = "/healthz"
interval = "1s"
timeout = "500ms"
rise = 1
fall = 1

[checks.lag]
kind = "http"
path = "{path}"
interval = "1s"
timeout = "500ms"
extract = {extract}
max = 5
unit = "s"

[[services]]
name = "db.example.com."
ttl = 5
policy = "failover"
regions = ["primary", "standby", "third"]
check = "web"
promote_guard = "lag"
on_unsafe = "{on_unsafe}"
endpoints = [
  {{ region = "primary", address = "{PRIMARY}", port = {primary}, check_address = "127.0.0.1" }},
  {{ region = "standby", address = "{STANDBY}", port = {standby}, check_address = "127.0.0.1" }},
  {{ region = "third", address = "{THIRD}", port = {third}, check_address = "127.0.0.1" }},
]
"#
    )
}

/// The rcode, the addresses and the Extended DNS Error text (from the guard's name on) of an
/// A query with EDNS.
fn ask(server: SocketAddr) -> (ResponseCode, Vec<std::net::IpAddr>, Option<String>) {
    let q = with_edns(query("db.example.com.", RecordType::A), 1232);
    let bytes = udp_raw(server, &encode(&q), Duration::from_secs(2)).expect("an answer");
    let m = hickory_proto::op::Message::from_vec(&bytes).expect("a DNS message");
    let ede = bytes
        .windows(13)
        .position(|w| w == b"promote_guard")
        .map(|i| String::from_utf8_lossy(&bytes[i..]).into_owned());
    (m.metadata.response_code, addrs(&m), ede)
}

/// Polls until `ok` holds for the answer, for at most [`LIMIT`].
fn wait_until(
    server: SocketAddr,
    what: &str,
    ok: impl Fn(&(ResponseCode, Vec<std::net::IpAddr>, Option<String>)) -> bool,
) {
    let start = Instant::now();
    loop {
        let got = ask(server);
        if ok(&got) {
            return;
        }
        assert!(start.elapsed() < LIMIT, "never {what}; last {got:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn answers(want: &str) -> impl Fn(&(ResponseCode, Vec<std::net::IpAddr>, Option<String>)) -> bool {
    let want: std::net::IpAddr = want.parse().unwrap();
    move |got| got.0 == ResponseCode::NoError && got.1 == vec![want]
}

/// The candidates' outcomes `explain` gives through the admin API.
fn explained(m: &Meridian) -> String {
    let (status, body) = http_json(
        m.admin(),
        "GET",
        "/v1/explain?name=db.example.com.&type=A&client=192.0.2.99",
        None,
        "",
    );
    assert_eq!(status, 200, "{body}");
    body.to_string()
}

#[test]
fn next_skips_a_lagging_standby_until_it_catches_up_json() {
    let primary = Backend::start();
    let standby = LagServer::start(42.0);
    let third = LagServer::start(0.5);
    let text = config(
        primary.port(),
        standby.addr.port(),
        third.addr.port(),
        r#"{ json = "/replication/lag_seconds" }"#,
        "/lag.json",
        "next",
    );
    let m = Meridian::start(&text);
    wait_until(m.v4(), "answered by the primary", answers(PRIMARY));
    primary.set(Mode::Refusing);
    // The standby is 42 s behind: failover skips it for the third region.
    wait_until(m.v4(), "failed over past the standby", answers(THIRD));
    let why = explained(&m);
    assert!(
        why.contains("skipped: not promotable: lag 42 s > 5 s"),
        "{why}"
    );
    // It catches up: failover moves into it.
    standby.set(1.0);
    wait_until(m.v4(), "failed over into the standby", answers(STANDBY));
    // The primary is back: clients return, whatever the standby's lag.
    standby.set(60.0);
    primary.set(Mode::Healthy);
    wait_until(m.v4(), "back on the primary", answers(PRIMARY));
    let (_, metrics) = http(m.admin(), "GET", "/metrics", None, "");
    assert!(
        metrics.contains(&format!(
            "meridian_probe_figure{{check=\"lag\",target=\"lag@127.0.0.1:{}\"}}",
            standby.addr.port()
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "meridian_endpoint_promotable{{address=\"{STANDBY}\",region=\"standby\",service=\"db.example.com.\"}}"
        )),
        "{metrics}"
    );
}

#[test]
fn hold_keeps_the_down_primary_until_the_standby_catches_up_prometheus() {
    let primary = Backend::start();
    let standby = LagServer::start(42.0);
    let third = LagServer::start(42.0);
    let text = config(
        primary.port(),
        standby.addr.port(),
        third.addr.port(),
        r#"{ prometheus = 'pg_replication_lag_seconds{db="main"}' }"#,
        "/metrics",
        "hold",
    );
    let m = Meridian::start(&text);
    wait_until(m.v4(), "answered by the primary", answers(PRIMARY));
    primary.set(Mode::Refusing);
    // Wait until the primary is seen down (explain says so), then it must still answer.
    let start = Instant::now();
    while !explained(&m).contains("guard-hold") {
        assert!(start.elapsed() < LIMIT, "never held: {}", explained(&m));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(answers(PRIMARY)(&ask(m.v4())));
    let (_, metrics) = http(m.admin(), "GET", "/metrics", None, "");
    assert!(
        metrics
            .contains("meridian_guard_blocked_total{service=\"db.example.com.\",action=\"hold\"}"),
        "{metrics}"
    );
    standby.set(2.0);
    wait_until(m.v4(), "failed over into the standby", answers(STANDBY));
    assert!(m.logs().contains("promotable changed"), "{}", m.logs());
}

#[test]
fn servfail_names_the_guard_until_the_standby_catches_up_header() {
    let primary = Backend::start();
    let standby = LagServer::start(42.0);
    let third = LagServer::start(42.0);
    let text = config(
        primary.port(),
        standby.addr.port(),
        third.addr.port(),
        r#"{ header = "X-Replication-Lag" }"#,
        "/healthz",
        "servfail",
    );
    let m = Meridian::start(&text);
    wait_until(m.v4(), "answered by the primary", answers(PRIMARY));
    primary.set(Mode::Refusing);
    wait_until(m.v4(), "refused with SERVFAIL", |got| {
        got.0 == ResponseCode::ServFail
            && got
                .2
                .as_deref()
                .is_some_and(|t| t.contains("promote_guard \"lag\""))
    });
    standby.set(0.0);
    wait_until(m.v4(), "failed over into the standby", answers(STANDBY));
}

/// The config of the assertion and safety tests: the same service with the guard reading a
/// header, plus `extra`.
fn asserted(primary: u16, standby: u16, third: u16, extra: &str) -> String {
    config(
        primary,
        standby,
        third,
        r#"{ header = "X-Replication-Lag" }"#,
        "/healthz",
        "next",
    ) + extra
}

const PASSING: &str = r#"
[[assert]]
name = "db.example.com."
client = "192.0.2.99"
expect_region = "primary"

[[assert]]
name = "db.example.com."
client = "192.0.2.99"
expect_answer = ["198.51.100.10"]
with = { down = ["primary"] }
"#;

const FAILING: &str = r#"
[[assert]]
name = "db.example.com."
client = "192.0.2.99"
expect_region = "standby"
with = { evacuated = ["primary"], not_promotable = ["standby"] }
"#;

#[test]
fn check_runs_assertions_with_and_without_scenarios() {
    let dir = Scratch::new();
    let good = dir.write("good.toml", &asserted(1, 2, 3, PASSING));
    let out = run(&["check", "--config", good.to_str().unwrap()], &dir.0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 assertion(s) hold"), "{stdout}");

    let text = asserted(1, 2, 3, &format!("{PASSING}{FAILING}"));
    let bad = dir.write("bad.toml", &text);
    let out = run(&["check", "--config", bad.to_str().unwrap()], &dir.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = text
        .lines()
        .position(|l| l.contains("not_promotable"))
        .unwrap()
        + 1
        - 4;
    let want = format!(
        "{}:{line}:1: assertion failed: db.example.com. A from 192.0.2.99 with evacuated primary, \
         not promotable standby: expected region standby, got third (because primary: skipped: \
         evacuated; standby: skipped: not promotable: lag: no figure; third: chosen; reason evacuated)",
        bad.display()
    );
    assert!(stderr.contains(&want), "{stderr}\nwanted\n{want}");
}

#[test]
fn a_reload_with_a_failing_assertion_is_refused_while_queries_succeed() {
    let primary = Backend::start();
    let standby = LagServer::start(0.0);
    let dir = Scratch::new();
    let third = LagServer::start(0.0);
    let text = asserted(
        primary.port(),
        standby.addr.port(),
        third.addr.port(),
        PASSING,
    );
    let path = dir.write("meridian.toml", &text);
    let m = Meridian::start_with(dir, path.clone(), &[("MERIDIAN_ADMIN_TOKEN", TOKEN)])
        .expect("meridian starts");
    wait_until(m.v4(), "answered by the primary", answers(PRIMARY));
    std::fs::write(&path, format!("{text}{FAILING}")).unwrap();
    let (status, body) = http(m.admin(), "POST", "/v1/reload", Some(TOKEN), "");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("assertion failed"), "{body}");
    for _ in 0..20 {
        assert!(answers(PRIMARY)(&ask(m.v4())));
    }
}

#[test]
fn a_safety_rule_refuses_an_evacuation_with_409_unless_forced() {
    let primary = Backend::start();
    let standby = LagServer::start(0.0);
    let dir = Scratch::new();
    let rule = "\n[[safety]]\nservices = [\"*\"]\nmin_serving_regions = 3\n";
    let third = LagServer::start(0.0);
    let text = asserted(primary.port(), standby.addr.port(), third.addr.port(), rule);
    let path = dir.write("meridian.toml", &text);
    let m = Meridian::start_with(dir, path.clone(), &[("MERIDIAN_ADMIN_TOKEN", TOKEN)])
        .expect("meridian starts");
    wait_until(m.v4(), "answered by the primary", answers(PRIMARY));
    let line = text.lines().position(|l| l == "[[safety]]").unwrap() + 1;
    let (status, body) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/primary/evacuate",
        Some(TOKEN),
        r#"{"reason": "maintenance"}"#,
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["rule"], format!("{}:{line}", path.display()), "{body}");
    assert!(answers(PRIMARY)(&ask(m.v4())));
    let (status, body) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/primary/evacuate",
        Some(TOKEN),
        r#"{"reason": "maintenance", "force": true}"#,
    );
    assert_eq!(status, 200, "{body}");
    wait_until(m.v4(), "moved off the primary", answers(STANDBY));
    let (_, metrics) = http(m.admin(), "GET", "/metrics", None, "");
    assert!(
        metrics.contains(&format!(
            "meridian_safety_violations_total{{rule=\"{}:{line}\"}} 1",
            path.display()
        )),
        "{metrics}"
    );
}
