//! Abuse limits and faults through the real binary: response rate limiting, TCP limits, a
//! broken GeoIP database on reload, a state directory that cannot be written, and SIGKILL
//! during evacuation writes.
use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use crate::harness::*;

const TOKEN: &str = "hardening-token";

/// The example config plus extra `[server]` keys and sections.
fn config_with(server_keys: &str, sections: &str) -> String {
    let text = example_config().replace("[server]\n", &format!("[server]\n{server_keys}\n"));
    format!("{text}\n{sections}\n")
}

/// Sends `n` identical queries at once from one socket and counts full answers, truncated
/// answers, and silence (within a bounded wait).
fn burst(server: SocketAddr, n: usize) -> (usize, usize, usize) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let q = encode(&query("www.example.com.", RecordType::A));
    for _ in 0..n {
        sock.send_to(&q, server).unwrap();
    }
    let (mut full, mut truncated) = (0, 0);
    let mut buf = [0u8; 1500];
    let deadline = Instant::now() + Duration::from_secs(3);
    while full + truncated < n && Instant::now() < deadline {
        let Ok((len, _)) = sock.recv_from(&mut buf) else {
            break;
        };
        let m = Message::from_vec(&buf[..len]).unwrap();
        if m.metadata.truncation {
            assert!(m.answers.is_empty(), "a slipped answer carries no records");
            truncated += 1;
        } else {
            assert_eq!(m.answers.len(), 1);
            full += 1;
        }
    }
    (full, truncated, n - full - truncated)
}

#[test]
fn rate_limiting_slips_and_drops_identical_udp_answers_but_not_tcp() {
    let m = Meridian::start(&config_with(
        "",
        "[rrl]\nresponses_per_second = 5\nslip = 2\nexempt = []\n",
    ));
    let (full, truncated, silent) = burst(m.v4(), 30);
    eprintln!(
        "rrl: 30 identical queries -> {full} answered, {truncated} truncated, {silent} dropped"
    );
    // One client socket lands on one UDP worker, which allows the full rate.
    assert_eq!(full, 5, "{full} answered");
    assert!(
        truncated > 0 && silent > 0,
        "{truncated} truncated, {silent} dropped"
    );
    // TCP is never limited.
    let mut s = tcp_connect(m.v4());
    for _ in 0..20 {
        let r = Message::from_vec(&tcp_exchange(
            &mut s,
            &encode(&query("www.example.com.", RecordType::A)),
        ))
        .unwrap();
        assert_eq!(r.answers.len(), 1);
    }
    let metrics = http(m.admin(), "GET", "/metrics", None, "").1;
    assert!(
        metrics.contains("meridian_rrl_responses_total{action=\"dropped\"}"),
        "{metrics}"
    );
}

#[test]
fn loopback_is_exempt_from_rate_limiting_by_default() {
    let m = Meridian::start(&config_with("", "[rrl]\nresponses_per_second = 5\n"));
    let (full, truncated, silent) = burst(m.v4(), 30);
    assert_eq!((full, truncated, silent), (30, 0, 0));
}

#[test]
fn tcp_connection_cap_lifetime_and_query_limit() {
    let m = Meridian::start(
        &config_with(
            "tcp_max_connections = 2\ntcp_max_queries = 3\ntcp_total_timeout = \"2s\"",
            "",
        )
        .replace("tcp_idle_timeout = \"10s\"", "tcp_idle_timeout = \"1s\""),
    );
    let q = encode(&query("www.example.com.", RecordType::A));
    // Three queries, then the server closes the connection.
    let mut a = tcp_connect(m.v4());
    for _ in 0..3 {
        assert!(Message::from_vec(&tcp_exchange(&mut a, &q)).is_ok());
    }
    let mut len = [0u8; 2];
    let _ = a.write_all(&[0, q.len() as u8]);
    let _ = a.write_all(&q);
    assert!(
        a.read(&mut len).map_or(true, |n| n == 0),
        "closed after 3 queries"
    );

    // Two connections held open fill the cap: a third is closed at once.
    let held: Vec<_> = (0..2).map(|_| tcp_connect(m.v4())).collect();
    std::thread::sleep(Duration::from_millis(100)); // let the server accept them
    let mut third = tcp_connect(m.v4());
    let mut byte = [0u8; 1];
    let closed = third.read(&mut byte).map_or(true, |n| n == 0);
    assert!(closed, "a connection over the cap is closed");
    drop(held);

    // A client trickling bytes to stay under the idle timeout is still cut at the lifetime.
    let mut slow = tcp_connect(m.v4());
    let start = Instant::now();
    let mut closed_after = None;
    for _ in 0..40 {
        if slow.write_all(&[0]).is_err() || slow.read(&mut byte).is_ok_and(|n| n == 0) {
            closed_after = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // read() with IO_TIMEOUT would block: the harness sets 5 s; the lifetime is 2 s.
    let after = closed_after.expect("the slow client was cut off");
    assert!(after < Duration::from_secs(5), "cut after {after:?}");
}

#[test]
fn a_truncated_geoip_database_on_reload_is_refused() {
    let scratch = Scratch::new();
    let db = scratch.0.join("geo.mmdb");
    std::fs::copy(fixture("world-city.mmdb"), &db).unwrap();
    let token_file = scratch.write("token", TOKEN);
    let text = example_config()
        .replace(
            &fixture("world-city.mmdb").display().to_string(),
            &db.display().to_string(),
        )
        .replace(
            "[server]\n",
            &format!(
                "[server]\nadmin_token_file = \"{}\"\n",
                token_file.display()
            ),
        );
    let config = scratch.write("meridian.toml", &text);
    let m = Meridian::start_with(scratch, config, &[]).unwrap();
    let ask = |m: &Meridian| {
        addrs(&udp(
            m.v4(),
            &with_ecs(query("www.example.com.", RecordType::A), "12.0.0.0", 24),
        ))
    };
    assert_eq!(
        ask(&m),
        vec!["198.51.100.10".parse::<std::net::IpAddr>().unwrap()]
    );
    let bytes = std::fs::read(&db).unwrap();
    std::fs::write(&db, &bytes[..bytes.len() / 3]).unwrap();
    let (status, body) = http_json(m.admin(), "POST", "/v1/reload", Some(TOKEN), "");
    assert_eq!(status, 400, "{body}");
    assert!(
        body["problems"][0]
            .as_str()
            .unwrap()
            .contains("GeoIP database"),
        "{body}"
    );
    assert_eq!(
        ask(&m),
        vec!["198.51.100.10".parse::<std::net::IpAddr>().unwrap()],
        "the old table keeps serving"
    );
}

/// The example config with the admin token and `state` as its state dir.
fn config_with_state(scratch: &Scratch, state: &std::path::Path) -> std::path::PathBuf {
    let token_file = scratch.write("token", TOKEN);
    let text = example_config().replace(
        "[server]\n",
        &format!(
            "[server]\nstate_dir = \"{}\"\nadmin_token_file = \"{}\"\n",
            state.display(),
            token_file.display()
        ),
    );
    scratch.write("meridian.toml", &text)
}

#[test]
fn a_full_state_dir_fails_the_evacuation_loudly_and_changes_nothing() {
    let scratch = Scratch::new();
    let state = scratch.0.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let config = config_with_state(&scratch, &state);
    let m = Meridian::start_with(scratch, config, &[]).unwrap();
    // The temporary file the write goes through points at /dev/full: every write fails
    // with ENOSPC, as on a full disk.
    let pid = m.child.id();
    std::os::unix::fs::symlink("/dev/full", state.join(format!("evacuations.tmp.{pid}"))).unwrap();
    let (status, body) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/us-east/evacuate",
        Some(TOKEN),
        "{}",
    );
    assert_eq!(status, 500, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("nothing changed"),
        "{body}"
    );
    let (_, regions) = http_json(m.admin(), "GET", "/v1/regions", None, "");
    assert_eq!(regions["regions"][0]["evacuated"], false);
    assert!(
        !state.join("evacuations.json").exists(),
        "nothing half-written"
    );
    let q = with_ecs(query("www.example.com.", RecordType::A), "11.0.0.0", 16);
    assert_eq!(
        addrs(&udp(m.v4(), &q)),
        vec!["192.0.2.10".parse::<std::net::IpAddr>().unwrap()]
    );
}

#[test]
fn sigkill_during_evacuation_writes_never_corrupts_the_state() {
    let scratch = Scratch::new();
    let state = scratch.0.join("state");
    let config = config_with_state(&scratch, &state);
    let mut m = Meridian::start_with(scratch, config, &[]).unwrap();
    for round in 0..8 {
        // Fire evacuate/restore calls and kill the process while they are in flight.
        let admin = m.admin();
        let writer = std::thread::spawn(move || {
            for i in 0..50 {
                let action = if i % 2 == 0 { "evacuate" } else { "restore" };
                let _ = std::panic::catch_unwind(|| {
                    http(
                        admin,
                        "POST",
                        &format!("/v1/regions/eu-west/{action}"),
                        Some(TOKEN),
                        "",
                    )
                });
            }
        });
        std::thread::sleep(Duration::from_millis(5 + round * 7));
        m = m.restart(&[]); // SIGKILL, then start again: must start, so the file is whole
        let _ = writer.join();
        if let Ok(text) = std::fs::read_to_string(state.join("evacuations.json")) {
            serde_json::from_str::<serde_json::Value>(&text)
                .expect("the state file is never corrupt");
        }
    }
}
