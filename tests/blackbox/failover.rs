//! Health checks and failover through the real binary, against loopback HTTP backends.
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::backend::{Backend, Mode};
use crate::harness::*;

const US: &str = "192.0.2.10";
const EU: &str = "198.51.100.10";
/// The check in these tests: 1 s interval, fall 2, rise 2.
const INTERVAL: Duration = Duration::from_secs(1);
const FALL: u32 = 2;
const RISE: u32 = 2;
/// Scheduling slack on a loaded 2-core machine, on top of the detection budget.
const SLACK: Duration = Duration::from_millis(1500);

fn config(us: u16, eu: u16, state_dir: &str, on_all_down: &str) -> String {
    format!(
        r#"
[server]
dns_listen = ["127.0.0.1:0"]
state_dir = "{state_dir}"

[geoip]
database = "{db}"

[[zones]]
origin = "example.com."
ns = ["ns1.example.com."]
soa = {{ mname = "ns1.example.com.", rname = "hostmaster.example.com.", serial = 1, minimum = 60 }}

[[regions]]
name = "us-east"
countries = ["US"]

[[regions]]
name = "eu-west"
continents = ["EU"]

[checks.web]
kind = "http"
path = "/healthz"
interval = "1s"
timeout = "500ms"
rise = {RISE}
fall = {FALL}
expect_body = "OK"

[[services]]
name = "www.example.com."
ttl = 5
check = "web"
{on_all_down}
endpoints = [
  {{ region = "us-east", address = "{US}", port = {us}, check_address = "127.0.0.1" }},
  {{ region = "eu-west", address = "{EU}", port = {eu}, check_address = "127.0.0.1" }},
]
"#,
        db = fixture("world-city.mmdb").display(),
    )
}

/// Asks as a US client (ECS 11.0.0.0/16); `Err` for a lost or failed query.
fn ask(server: SocketAddr) -> Result<(ResponseCode, Vec<IpAddr>), String> {
    let q = with_ecs(query("www.example.com.", RecordType::A), "11.0.0.0", 16);
    let bytes =
        udp_raw(server, &encode(&q), Duration::from_secs(1)).ok_or("no answer within 1 s")?;
    let m = hickory_proto::op::Message::from_vec(&bytes).map_err(|e| e.to_string())?;
    Ok((m.metadata.response_code, addrs(&m)))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Polls until the answer is `want`, for at most `limit`; returns how long it took.
fn wait_for(server: SocketAddr, want: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok((ResponseCode::NoError, a)) = ask(server)
            && a == vec![ip(want)]
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "answer did not become {want} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Queries in a loop on its own thread until stopped, counting queries and failures.
struct QueryLoop {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(u64, Vec<String>)>,
}

impl QueryLoop {
    fn start(server: SocketAddr) -> QueryLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let (mut sent, mut failures) = (0u64, Vec::new());
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                sent += 1;
                match ask(server) {
                    Ok((ResponseCode::NoError, a)) if a.len() == 1 => {}
                    other => failures.push(format!("{other:?}")),
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (sent, failures)
        });
        QueryLoop { stop, handle }
    }

    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("query loop")
    }
}

/// Start healthy, break the US backend in `mode`, see answers move to EU within
/// fall x interval + one interval, heal it, see them come back within rise x interval + one
/// interval; a query loop runs throughout and must see no failure.
fn fails_over_and_back(mode: Mode) {
    let (us, eu) = (Backend::start(), Backend::start());
    let scratch = Scratch::new();
    let state = scratch.0.join("state");
    let m = Meridian::start(&config(
        us.port(),
        eu.port(),
        &state.display().to_string(),
        "",
    ));
    let server = m.v4();
    wait_for(server, US, Duration::from_secs(5));
    let queries = QueryLoop::start(server);
    // Let the first probe round confirm both backends up.
    std::thread::sleep(INTERVAL);

    us.set(mode);
    let away = wait_for(server, EU, INTERVAL * FALL + INTERVAL + SLACK);
    us.set(Mode::Healthy);
    let back = wait_for(server, US, INTERVAL * RISE + INTERVAL + SLACK);

    let (sent, failures) = queries.finish();
    eprintln!(
        "failover[{mode:?}]: away after {away:?}, back after {back:?}, {sent} queries, {} failed",
        failures.len()
    );
    assert!(sent > 100, "the query loop ran ({sent} queries)");
    assert!(
        failures.is_empty(),
        "queries failed during failover: {failures:?}"
    );

    let saved =
        std::fs::read_to_string(state.join("health.json")).expect("health saved in state_dir");
    assert!(
        saved.contains(&format!("web@127.0.0.1:{}", us.port())),
        "{saved}"
    );
}

#[test]
fn fails_over_on_http_500() {
    fails_over_and_back(Mode::Failing);
}

#[test]
fn fails_over_on_slow_backend() {
    fails_over_and_back(Mode::Slow);
}

#[test]
fn fails_over_on_hanging_backend() {
    fails_over_and_back(Mode::Hanging);
}

#[test]
fn fails_over_on_refused_connections() {
    fails_over_and_back(Mode::Refusing);
}

#[test]
fn fails_over_on_garbage_and_resets() {
    fails_over_and_back(Mode::Garbage);
    fails_over_and_back(Mode::Reset);
}

/// Both backends down: each `on_all_down` choice answers as documented.
#[test]
fn all_down_follows_on_all_down() {
    let cases = [
        ("", ResponseCode::NoError, vec![ip(US)]),
        ("on_all_down = \"servfail\"", ResponseCode::ServFail, vec![]),
        (
            "on_all_down = \"fallback\"\nfallback = [\"203.0.113.99\"]",
            ResponseCode::NoError,
            vec![ip("203.0.113.99")],
        ),
    ];
    let (us, eu) = (Backend::start(), Backend::start());
    us.set(Mode::Failing);
    eu.set(Mode::Failing);
    for (policy, rcode, answer) in cases {
        let scratch = Scratch::new();
        let m = Meridian::start(&config(
            us.port(),
            eu.port(),
            &scratch.0.display().to_string(),
            policy,
        ));
        let deadline = Instant::now() + INTERVAL * FALL + INTERVAL + SLACK;
        loop {
            let got = ask(m.v4());
            if got.as_ref().is_ok_and(|(c, a)| *c == rcode && *a == answer) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{policy:?}: wanted {rcode} {answer:?}, got {got:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Health saved in state_dir seeds the next start: a region known down stays down until it
/// has risen again, even though the new process has not probed yet.
#[test]
fn restart_remembers_health() {
    let (us, eu) = (Backend::start(), Backend::start());
    let scratch = Scratch::new();
    let state = scratch.0.join("state").display().to_string();
    let text = config(us.port(), eu.port(), &state, "");
    {
        let m = Meridian::start(&text);
        wait_for(m.v4(), US, Duration::from_secs(5));
        us.set(Mode::Failing);
        wait_for(m.v4(), EU, INTERVAL * FALL + INTERVAL + SLACK);
        // Health is saved shortly after it is published; wait for the file before killing.
        wait_for_saved_down(&state, us.port());
    }
    // Healthy again, but the new process needs `rise` successes before trusting it.
    us.set(Mode::Healthy);
    let m = Meridian::start(&text);
    let first = ask(m.v4()).expect("answer right after start");
    assert_eq!(
        first,
        (ResponseCode::NoError, vec![ip(EU)]),
        "warm start answers from saved health"
    );
    wait_for(m.v4(), US, INTERVAL * RISE + INTERVAL + SLACK);
}

/// `explain` reads the saved health and says why a region was skipped.
#[test]
fn explain_shows_health() {
    let (us, eu) = (Backend::start(), Backend::start());
    let scratch = Scratch::new();
    let state = scratch.0.join("state").display().to_string();
    let m = Meridian::start(&config(us.port(), eu.port(), &state, ""));
    wait_for(m.v4(), US, Duration::from_secs(5));
    us.set(Mode::Failing);
    wait_for(m.v4(), EU, INTERVAL * FALL + INTERVAL + SLACK);
    // `explain` reads the health the server saved, which is written at most once a second.
    wait_for_saved_down(&state, us.port());
    let out = run(
        &[
            "explain",
            "--config",
            &m.config.display().to_string(),
            "www.example.com",
            "A",
            "--client",
            "11.0.0.1/24",
        ],
        &repo(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("skipped: 0 of 1 endpoints up"), "{text}");
    assert!(text.contains(&format!("{US} down")), "{text}");
    assert!(text.contains("chosen     eu-west (failover)"), "{text}");
    assert!(
        text.contains(&format!("answer     www.example.com. 5 IN A {EU}")),
        "{text}"
    );
}

/// A backend that fails every other probe never reaches `fall` consecutive failures: the
/// answer never moves and every query is answered.
#[test]
fn a_flapping_backend_does_not_move_answers() {
    let (us, eu) = (Backend::start(), Backend::start());
    let scratch = Scratch::new();
    let m = Meridian::start(&config(
        us.port(),
        eu.port(),
        &scratch.0.display().to_string(),
        "",
    ));
    wait_for(m.v4(), US, Duration::from_secs(5));
    us.set(Mode::Flapping);
    let deadline = Instant::now() + INTERVAL * 6;
    let mut checked = 0;
    while Instant::now() < deadline {
        assert_eq!(
            ask(m.v4()),
            Ok((ResponseCode::NoError, vec![ip(US)])),
            "the answer moved"
        );
        checked += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(checked > 50);
}

/// Waits (bounded) until the server's `health.json` in `state` records the backend on `port`
/// as down.
fn wait_for_saved_down(state: &str, port: u16) {
    let file = std::path::Path::new(state).join("health.json");
    let key = format!("\"web@127.0.0.1:{port}\": \"down\"");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&file).is_ok_and(|t| t.contains(&key)) {
        assert!(
            Instant::now() < deadline,
            "health.json never recorded {key}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
