//! The admin API over real HTTP against the real binary: evacuation (durable across restarts),
//! authentication, reload (API and SIGHUP) and metrics.
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::*;

const TOKEN: &str = "test-admin-token";
const US: &str = "192.0.2.10";
const EU: &str = "198.51.100.10";

fn start() -> Meridian {
    Meridian::start_with_token(TOKEN)
}

/// The A answer for a US client (ECS 11.0.0.0/16).
fn us_answer(dns: SocketAddr) -> Vec<IpAddr> {
    let q = with_ecs(query("www.example.com.", RecordType::A), "11.0.0.0", 16);
    let r = udp(dns, &q);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    addrs(&r)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn evacuation_moves_answers_survives_restart_and_restores() {
    let m = start();
    assert_eq!(us_answer(m.v4()), vec![ip(US)]);

    let (status, body) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/us-east/evacuate",
        Some(TOKEN),
        r#"{"reason": "maintenance window"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let generation = body["generation"].as_u64().expect("generation");
    // In the table before the call returned: the very next query sees it.
    assert_eq!(us_answer(m.v4()), vec![ip(EU)]);
    let out = dig(
        m.v4(),
        &["+subnet=11.0.0.0/16", "www.example.com", "A", "+short"],
    );
    assert_eq!(out.trim(), EU);

    let (_, regions) = http_json(m.admin(), "GET", "/v1/regions", None, "");
    let us = regions["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "us-east")
        .unwrap();
    assert_eq!(us["evacuated"], true);
    assert_eq!(us["evacuation"]["reason"], "maintenance window");
    assert!(
        us["evacuation"]["by"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1")
    );
    assert!(regions["generation"].as_u64().unwrap() >= generation);

    // SIGKILL and start again: the evacuation was on disk before the API answered.
    let m = m.restart(&[]);
    assert_eq!(
        us_answer(m.v4()),
        vec![ip(EU)],
        "still evacuated after a restart"
    );

    let (status, body) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/us-east/restore",
        Some(TOKEN),
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(us_answer(m.v4()), vec![ip(US)]);
    let (status, body) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/us-east/restore",
        Some(TOKEN),
        "",
    );
    assert_eq!(status, 409, "restoring twice is a conflict: {body}");
    assert!(body["error"].as_str().unwrap().contains("not evacuated"));
}

#[test]
fn unauthenticated_changes_are_refused_and_change_nothing() {
    let m = start();
    let (_, before) = http_json(m.admin(), "GET", "/v1/routing-table", None, "");
    for token in [None, Some("wrong-token"), Some("")] {
        let (status, body) = http_json(
            m.admin(),
            "POST",
            "/v1/regions/us-east/evacuate",
            token,
            "{}",
        );
        assert_eq!(status, 401, "{token:?}: {body}");
        assert!(body["error"].is_string());
        let (status, _) = http_json(m.admin(), "POST", "/v1/reload", token, "");
        assert_eq!(status, 401);
    }
    let (_, after) = http_json(m.admin(), "GET", "/v1/routing-table", None, "");
    assert_eq!(before["generation"], after["generation"]);
    assert_eq!(us_answer(m.v4()), vec![ip(US)]);
}

#[test]
fn changes_are_refused_when_no_token_is_configured() {
    let m = Meridian::start(&example_config());
    let (status, body) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/us-east/evacuate",
        Some("anything"),
        "{}",
    );
    assert_eq!(status, 401);
    assert!(
        body["error"].as_str().unwrap().contains("no admin token"),
        "{body}"
    );
}

#[test]
fn refuses_to_empty_a_service_unless_forced() {
    let m = start();
    // api.example.com has endpoints in us-east and eu-west only.
    let (status, _) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/us-east/evacuate",
        Some(TOKEN),
        "{}",
    );
    assert_eq!(status, 200);
    let (status, body) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/eu-west/evacuate",
        Some(TOKEN),
        "{}",
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["services"], serde_json::json!(["api.example.com."]));
    let (status, body) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/eu-west/evacuate",
        Some(TOKEN),
        r#"{"force": true, "reason": "drill"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/nowhere/evacuate",
        Some(TOKEN),
        "{}",
    );
    assert_eq!(status, 404, "{body}");
}

#[test]
fn bad_requests_get_json_errors() {
    let m = start();
    let (status, body) = http_json(m.admin(), "GET", "/v1/nothing", None, "");
    assert_eq!((status, body["error"].is_string()), (404, true));
    let (status, body) = http_json(m.admin(), "GET", "/v1/reload", None, "");
    assert_eq!((status, body["error"].is_string()), (405, true));
    let (status, body) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/us-east/evacuate",
        Some(TOKEN),
        "{not json",
    );
    assert_eq!((status, body["error"].is_string()), (400, true));
    let (status, _) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/us-east/evacuate",
        Some(TOKEN),
        r#"{"resaon": "typo"}"#,
    );
    assert_eq!(status, 400, "unknown fields are refused");
    let big = format!(r#"{{"reason": "{}"}}"#, "x".repeat(100_000));
    let (status, body) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/us-east/evacuate",
        Some(TOKEN),
        &big,
    );
    assert_eq!((status, body["error"].is_string()), (413, true));
    let (status, body) = http_json(
        m.admin(),
        "GET",
        "/v1/explain?name=www.example.com&type=A",
        None,
        "",
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(us_answer(m.v4()), vec![ip(US)], "nothing changed");
}

#[test]
fn explain_endpoint_matches_the_server() {
    let m = start();
    let (status, ex) = http_json(
        m.admin(),
        "GET",
        "/v1/explain?name=www.example.com&type=A&client=12.0.0.1%2F24",
        None,
        "",
    );
    assert_eq!(status, 200, "{ex}");
    assert_eq!(ex["chosen_region"], "eu-west");
    assert_eq!(ex["ecs_scope"], 16);
    let q = with_ecs(query("www.example.com.", RecordType::A), "12.0.0.0", 24);
    let r = udp(m.v4(), &q);
    let want: Vec<String> = addrs(&r)
        .iter()
        .map(|a| format!("www.example.com. 30 IN A {a}"))
        .collect();
    assert_eq!(ex["answers"], serde_json::json!(want));
}

#[test]
fn broken_reload_keeps_serving_and_good_reload_swaps() {
    let m = start();
    let original = std::fs::read_to_string(&m.config).unwrap();
    let (status, _) = http_json(m.admin(), "GET", "/readyz", None, "");
    assert_eq!(status, 200);

    // A query loop runs through the broken and the good reload.
    let dns = m.v4();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (s, p) = (stop.clone(), progress.clone());
    let looper = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut sent, mut failed) = (0u32, 0u32);
        while !s.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
            p.store(sent, std::sync::atomic::Ordering::SeqCst);
            let q = with_ecs(query("www.example.com.", RecordType::A), "11.0.0.0", 16);
            match udp_raw(dns, &encode(&q), Duration::from_secs(1)) {
                Some(b)
                    if hickory_proto::op::Message::from_vec(&b)
                        .is_ok_and(|m| m.answers.len() == 1) => {}
                _ => failed += 1,
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        (sent, failed)
    });

    // Waits until the loop has sent `n` more queries (bounded).
    let advance = |n: u32| {
        let target = progress.load(std::sync::atomic::Ordering::SeqCst) + n;
        let deadline = Instant::now() + Duration::from_secs(10);
        while progress.load(std::sync::atomic::Ordering::SeqCst) < target {
            assert!(Instant::now() < deadline, "query loop stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    advance(20);
    let broken = original.replace("address = \"192.0.2.10\"", "address = \"192.0.2.300\"");
    std::fs::write(&m.config, &broken).unwrap();
    let (status, body) = http_json(m.admin(), "POST", "/v1/reload", Some(TOKEN), "");
    assert_eq!(status, 400, "{body}");
    let problem = body["problems"][0].as_str().unwrap().to_string();
    assert!(
        problem.starts_with(&format!("{}:", m.config.display())),
        "{problem}"
    );
    assert!(
        problem.contains("\"192.0.2.300\" is not an IP address"),
        "{problem}"
    );
    assert_eq!(
        us_answer(m.v4()),
        vec![ip(US)],
        "the old table keeps serving"
    );
    advance(20);

    let changed = original.replace("address = \"192.0.2.10\"", "address = \"192.0.2.11\"");
    std::fs::write(&m.config, &changed).unwrap();
    let (status, body) = http_json(m.admin(), "POST", "/v1/reload", Some(TOKEN), "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(us_answer(m.v4()), vec![ip("192.0.2.11")]);

    // SIGHUP reloads too.
    std::fs::write(&m.config, &original).unwrap();
    let pid = m.child.id().to_string();
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while us_answer(m.v4()) != vec![ip(US)] {
        assert!(
            Instant::now() < deadline,
            "SIGHUP reload did not take effect"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    advance(20);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (sent, failed) = looper.join().unwrap();
    assert!(sent >= 60, "{sent} queries");
    assert_eq!(failed, 0, "queries failed during reloads ({sent} sent)");

    let metrics = http(m.admin(), "GET", "/metrics", None, "").1;
    assert!(
        metrics.contains("meridian_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("meridian_config_reloads_total{result=\"success\"} 2"),
        "{metrics}"
    );
}

#[test]
fn metrics_pass_promtool_and_move_with_traffic() {
    let m = start();
    let count = |text: &str, series: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let before = http(m.admin(), "GET", "/metrics", None, "").1;
    for _ in 0..5 {
        us_answer(m.v4());
    }
    let _ = udp(m.v4(), &query("nope.example.com.", RecordType::A));
    let _ = tcp(m.v4(), &query("www.example.org.", RecordType::A));
    let (status, after) = http(m.admin(), "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    let q = "meridian_dns_queries_total{zone=\"example.com.\",qtype=\"A\",rcode=\"NOERROR\",transport=\"udp\"}";
    assert_eq!(count(&after, q) - count(&before, q), 5, "{after}");
    let a = "meridian_dns_answers_total{service=\"www.example.com.\",region=\"us-east\",reason=\"geo\"}";
    assert_eq!(count(&after, a) - count(&before, a), 5);
    assert_eq!(
        count(&after, "meridian_dns_ecs_queries_total")
            - count(&before, "meridian_dns_ecs_queries_total"),
        5
    );
    assert_eq!(
        count(
            &after,
            "meridian_dns_queries_total{zone=\"example.com.\",qtype=\"A\",rcode=\"NXDOMAIN\",transport=\"udp\"}"
        ),
        1
    );
    assert_eq!(
        count(
            &after,
            "meridian_dns_queries_total{zone=\"\",qtype=\"A\",rcode=\"REFUSED\",transport=\"tcp\"}"
        ),
        1
    );
    assert!(after.contains("meridian_build_info{version="));
    assert!(after.contains("meridian_region_evacuated{region=\"us-east\"} 0"));
    // By default (server.metrics_endpoints = "down"): a series per service and region, one per
    // endpoint only while it is down, and probes counted per check, not per target.
    assert!(
        after.contains("meridian_region_up{region=\"us-east\",service=\"www.example.com.\"} "),
        "{after}"
    );
    assert!(
        !after
            .lines()
            .any(|l| l.starts_with("meridian_endpoint_up{") && l.ends_with(" 1")),
        "{after}"
    );
    assert!(
        !after
            .lines()
            .any(|l| l.starts_with("meridian_probe_") && l.contains("target=")),
        "{after}"
    );

    let path = m.scratch.write("metrics.txt", &after);
    let out = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .expect(
            "promtool must be installed: run scripts/test, which installs the prometheus package",
        );
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn start_up_refuses_unsafe_or_corrupt_state() {
    // A corrupt evacuation file stops start-up rather than silently undoing an evacuation.
    let scratch = Scratch::new();
    let state = scratch.0.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("evacuations.json"), "{ not json").unwrap();
    let text = example_config().replace(
        "[server]\n",
        &format!("[server]\nstate_dir = \"{}\"\n", state.display()),
    );
    let config = scratch.write("meridian.toml", &text);
    let err = Meridian::start_with(scratch, config, &[])
        .err()
        .expect("start-up must fail");
    assert!(
        err.contains("evacuations.json") && err.contains("corrupt"),
        "{err}"
    );

    // A non-loopback admin address without a token is refused before anything is bound.
    let text = example_config().replace(
        "admin_listen = \"127.0.0.1:0\"",
        "admin_listen = \"0.0.0.0:0\"",
    );
    let err = Meridian::try_start(&text)
        .err()
        .expect("start-up must fail");
    assert!(
        err.contains("not loopback") && err.contains("no admin token"),
        "{err}"
    );
}

#[test]
fn the_read_token_from_the_config_reads_but_cannot_change_anything() {
    let scratch = Scratch::new();
    let admin_file = scratch.write("admin-token", &format!("{TOKEN}\n"));
    let read_file = scratch.write("read-token", "scrape-only\n");
    let text = example_config().replace(
        "[server]\n",
        &format!(
            "[server]\nadmin_token_file = \"{}\"\nread_token_file = \"{}\"\n",
            admin_file.display(),
            read_file.display()
        ),
    );
    let config = scratch.write("meridian.toml", &text);
    let m = Meridian::start_with(scratch, config, &[]).unwrap_or_else(|e| panic!("start: {e}"));
    let (status, body) = http(m.admin(), "GET", "/metrics", Some("scrape-only"), "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(
        m.admin(),
        "POST",
        "/v1/regions/us-east/evacuate",
        Some("scrape-only"),
        "",
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("read-only"), "{body}");
    assert_eq!(us_answer(m.v4()), vec![ip(US)], "nothing changed");
}
