//! Partial drains through the real binary: a stable share of a region's clients moves, a
//! raised share only moves more, the drain survives a restart, shows in `/v1/regions`,
//! `/metrics`, `explain` and `meridian ctl`, and lifts itself when it expires.
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::harness::*;

const TOKEN: &str = "test-admin-token";
const US: &str = "192.0.2.10";
const EU: &str = "198.51.100.10";

fn start() -> Meridian {
    Meridian::start_with_token(TOKEN)
}

/// The /24s of 11.0.0.0/16 (US in the fixture), each as an ECS client.
fn subnets() -> Vec<String> {
    (0..=255).map(|n| format!("11.0.{n}.0")).collect()
}

/// The www A answer for each subnet, and the ECS scope of each response.
fn answers(dns: SocketAddr) -> Vec<(IpAddr, u8)> {
    subnets()
        .iter()
        .map(|net| {
            let r = udp(
                dns,
                &with_ecs(query("www.example.com.", RecordType::A), net, 24),
            );
            let scope = ecs_of(&r).expect("ECS echoed").scope_prefix();
            (*addrs(&r).first().expect("an answer"), scope)
        })
        .collect()
}

fn moved(dns: SocketAddr) -> BTreeSet<usize> {
    let eu: IpAddr = EU.parse().expect("ip");
    answers(dns)
        .iter()
        .enumerate()
        .filter(|(_, (a, _))| *a == eu)
        .map(|(i, _)| i)
        .collect()
}

fn drain(m: &Meridian, percent: f64, extra: &str) -> serde_json::Value {
    let (status, body) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/us-east/drain",
        Some(TOKEN),
        &format!(r#"{{"percent": {percent}, "reason": "ramp"{extra}}}"#),
    );
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn a_drain_moves_a_stable_share_survives_a_restart_and_shows_everywhere() {
    let m = start();
    let us: IpAddr = US.parse().expect("ip");
    assert!(
        answers(m.v4()).iter().all(|(a, _)| *a == us),
        "all US at first"
    );

    drain(&m, 30.0, "");
    let at_30 = moved(m.v4());
    let share = at_30.len() as f64 * 100.0 / 256.0;
    assert!((20.0..=40.0).contains(&share), "{share:.1} % moved at 30 %");
    // Answers that depend on the bucket say so: the scope covers the /24.
    assert!(answers(m.v4()).iter().all(|(_, scope)| *scope >= 24));

    drain(&m, 60.0, r#", "expires_in": "1h""#);
    let at_60 = moved(m.v4());
    assert!(
        at_30.is_subset(&at_60),
        "a client moved at 30 % came back at 60 %"
    );
    let share = at_60.len() as f64 * 100.0 / 256.0;
    assert!((50.0..=70.0).contains(&share), "{share:.1} % moved at 60 %");

    let (_, regions) = http_json(m.admin(), "GET", "/v1/regions", None, "");
    let region = regions["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .find(|r| r["name"] == "us-east")
        .expect("us-east")
        .clone();
    assert_eq!(region["drain"]["percent"], 60.0, "{region}");
    assert!(region["drain"]["expires"].as_u64().is_some(), "{region}");
    let (_, metrics) = http(m.admin(), "GET", "/metrics", None, "");
    assert!(
        metrics.contains("meridian_region_drain_percent{region=\"us-east\"} 60"),
        "{metrics}"
    );
    assert!(
        metrics.contains("reason=\"drained\""),
        "answers counted as drained"
    );

    // explain: the bucket, and whether the drain moved the client.
    let subnet = |i: usize| format!("11.0.{i}.0/24");
    let first_moved = *at_60.iter().next().expect("a moved client");
    let first_kept = (0..256)
        .find(|i| !at_60.contains(i))
        .expect("a kept client");
    let explain = |client: &str| {
        let out = run(
            &[
                "ctl",
                "--server",
                &format!("http://{}", m.admin()),
                "explain",
                "www.example.com",
                "A",
                "--client",
                client,
            ],
            &repo(),
        );
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = explain(&subnet(first_moved));
    assert!(text.contains("drain      bucket"), "{text}");
    assert!(
        text.contains("skipped: drained 60 %, moves this client"),
        "{text}"
    );
    assert!(text.contains("chosen     eu-west (drained)"), "{text}");
    let text = explain(&subnet(first_kept));
    assert!(text.contains("(drained 60 %, client stays)"), "{text}");
    assert!(text.contains("chosen     us-east (geo)"), "{text}");

    // SIGKILL and start again: the same clients stay moved.
    let m = m.restart(&[]);
    assert_eq!(
        moved(m.v4()),
        at_60,
        "the drain was on disk before the API answered"
    );

    // 0 % lifts it.
    drain(&m, 0.0, "");
    assert!(moved(m.v4()).is_empty());
    let (status, body) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/us-east/drain",
        Some(TOKEN),
        r#"{"percent": 0}"#,
    );
    assert_eq!(status, 409, "nothing to lift: {body}");
    for bad in [
        r#"{"percent": 120}"#,
        r#"{"reason": "no percent"}"#,
        r#"{"percent": 5, "expires_in": "soon"}"#,
    ] {
        let (status, body) = http_json(
            m.admin(),
            "POST",
            "/v1/regions/us-east/drain",
            Some(TOKEN),
            bad,
        );
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, _) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/us-east/drain",
        None,
        r#"{"percent": 5}"#,
    );
    assert_eq!(status, 401, "a drain needs the token");
}

#[test]
fn drains_and_evacuations_lift_themselves_when_they_expire() {
    let m = start();
    drain(&m, 100.0, r#", "expires_in": "1s""#);
    assert_eq!(moved(m.v4()).len(), 256, "100 % moves everyone");
    let (status, body) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/ap-southeast/evacuate",
        Some(TOKEN),
        r#"{"reason": "window", "expires_in": "2s"}"#,
    );
    assert_eq!(status, 200, "{body}");
    // Bounded wait: both lift within a few seconds, with an audit line each.
    let deadline = Instant::now() + Duration::from_secs(15);
    let us: IpAddr = US.parse().expect("ip");
    loop {
        let (_, regions) = http_json(m.admin(), "GET", "/v1/regions", None, "");
        let lifted = regions["regions"]
            .as_array()
            .expect("regions")
            .iter()
            .all(|r| r["drain"].is_null() && r["evacuated"] == false);
        let logs = m.logs();
        if lifted && logs.contains("drain expired") && logs.contains("evacuation expired") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still in force or not audited: {regions}\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(answers(m.v4()).iter().all(|(a, _)| *a == us));
}

/// A scrape target whose one gauge, `receiving_error_rate`, the test sets.
struct Exporter {
    addr: SocketAddr,
    value: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Exporter {
    fn start() -> Exporter {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let value = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0f64.to_bits()));
        let shared = value.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                let _ = s.set_read_timeout(Some(IO_TIMEOUT));
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let v = f64::from_bits(shared.load(Ordering::Relaxed));
                let body = format!("# TYPE receiving_error_rate gauge\nreceiving_error_rate {v}\n");
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Exporter { addr, value }
    }

    fn set(&self, v: f64) {
        self.value
            .store(v.to_bits(), std::sync::atomic::Ordering::Relaxed);
    }
}

fn ramp_of(m: &Meridian, id: &str) -> serde_json::Value {
    let (_, ramps) = http_json(m.admin(), "GET", "/v1/ramps", None, "");
    ramps["ramps"]
        .as_array()
        .expect("ramps")
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no ramp {id}: {ramps}"))
        .clone()
}

/// Polls (bounded) until `done` holds for the ramp; returns it.
fn wait_ramp(
    m: &Meridian,
    id: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let r = ramp_of(m, id);
        if done(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "ramp never {what}: {r}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_ramp_steps_and_aborts_on_a_real_prometheus_query_then_survives_a_restart() {
    let exporter = Exporter::start();
    let prometheus = Prometheus::start(exporter.addr);
    let m = start();
    let body = format!(
        r#"{{"steps": [20, 40, 60, 80, 100], "step_every": "2s", "reason": "move to eu",
            "on_abort": "hold",
            "abort_when": {{"prometheus": {{"url": "{}", "query": "max(receiving_error_rate)", "max": 0.1, "every": 1}}}}}}"#,
        prometheus.url
    );
    let (status, created) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/us-east/ramp",
        Some(TOKEN),
        &body,
    );
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    // A second ramp of the region while this one runs is refused.
    let (status, body2) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/us-east/ramp",
        Some(TOKEN),
        &body,
    );
    assert_eq!(status, 409, "{body2}");
    // It climbs on the clock.
    let r = wait_ramp(&m, &id, "reached 40 %", |r| {
        r["percent"].as_f64() >= Some(40.0)
    });
    assert_eq!(r["state"], "running", "{r}");
    // The receiving side's error rate rises: the ramp aborts by itself and holds its step.
    exporter.set(0.5);
    let r = wait_ramp(&m, &id, "aborted", |r| r["state"] == "aborted");
    let why = r["aborted"]["why"].as_str().expect("why");
    assert!(
        why.contains("prometheus: max(receiving_error_rate) = 0.5 > 0.1"),
        "{why}"
    );
    let held = r["percent"].as_f64().expect("percent");
    assert!((40.0..100.0).contains(&held), "held at {held}");
    // The answers follow the held percentage, and stay there.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(ramp_of(&m, &id)["percent"].as_f64(), Some(held));
    let share = moved(m.v4()).len() as f64 * 100.0 / 256.0;
    assert!(
        (share - held).abs() <= 12.0,
        "{share:.1} % moved, ramp at {held} %"
    );
    let (_, metrics) = http(m.admin(), "GET", "/metrics", None, "");
    assert!(
        metrics.contains("meridian_ramp_aborts_total{region=\"us-east\"} 1"),
        "{metrics}"
    );
    let (_, regions) = http_json(m.admin(), "GET", "/v1/regions", None, "");
    let us = regions["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .find(|r| r["name"] == "us-east")
        .expect("us-east")
        .clone();
    assert_eq!(us["drain"]["from"], format!("ramp {id}"), "{us}");
    assert!(m.logs().contains("aborted: prometheus"), "audit line");

    // A restart resumes exactly where the ramp stands.
    let m = m.restart(&[]);
    let r = ramp_of(&m, &id);
    assert_eq!(r["state"], "aborted");
    assert_eq!(r["percent"].as_f64(), Some(held));
    let out = run(
        &["ctl", "--server", &format!("http://{}", m.admin()), "ramps"],
        &repo(),
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&id) && text.contains("aborted: prometheus"),
        "{text}"
    );

    // A ramp back, through ctl, replaces it and brings everyone home.
    let out = run(
        &[
            "ctl",
            "--server",
            &format!("http://{}", m.admin()),
            "--token-file",
            m.scratch.0.join("admin-token").to_str().expect("path"),
            "ramp",
            "us-east",
            "20,0",
            "--every",
            "1s",
        ],
        &repo(),
    );
    assert!(out.status.success(), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !moved(m.v4()).is_empty() {
        assert!(Instant::now() < deadline, "the ramp back never reached 0 %");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_scheduled_evacuation_begins_and_ends_on_time_and_is_listed_until_then() {
    let m = start();
    let us: IpAddr = US.parse().expect("ip");
    let at = |secs: u64| {
        let t = std::time::SystemTime::now() + Duration::from_secs(secs);
        humantime::format_rfc3339_seconds(t).to_string()
    };
    let body = format!(
        r#"{{"reason": "db maintenance", "start": "{}", "end": "{}"}}"#,
        at(3),
        at(6)
    );
    let (status, created) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/us-east/evacuate",
        Some(TOKEN),
        &body,
    );
    assert_eq!(status, 200, "{created}");
    // Not yet: listed as scheduled, answers unchanged.
    let (_, regions) = http_json(m.admin(), "GET", "/v1/regions", None, "");
    let us_region = |regions: &serde_json::Value| {
        regions["regions"]
            .as_array()
            .expect("regions")
            .iter()
            .find(|r| r["name"] == "us-east")
            .expect("us-east")
            .clone()
    };
    let r = us_region(&regions);
    assert_eq!(r["evacuated"], false, "{r}");
    assert_eq!(r["scheduled"][0]["kind"], "evacuation", "{r}");
    assert!(answers(m.v4()).iter().all(|(a, _)| *a == us));
    // It begins (bounded wait), then ends by itself.
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "{what} never happened");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait("the window's start", &|| moved(m.v4()).len() == 256);
    wait("the window's end", &|| moved(m.v4()).is_empty());
    wait("the audit lines", &|| {
        let logs = m.logs();
        logs.contains("evacuation began") && logs.contains("evacuation expired")
    });
    // A scheduled change can be cancelled before it begins.
    let body = format!(r#"{{"percent": 50, "start": "{}"}}"#, at(3600));
    let (status, b) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/us-east/drain",
        Some(TOKEN),
        &body,
    );
    assert_eq!(status, 200, "{b}");
    let (status, b) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/us-east/drain",
        Some(TOKEN),
        r#"{"percent": 0}"#,
    );
    assert_eq!(status, 200, "cancelled: {b}");
    let (_, regions) = http_json(m.admin(), "GET", "/v1/regions", None, "");
    assert_eq!(us_region(&regions)["scheduled"], serde_json::json!([]));
}
