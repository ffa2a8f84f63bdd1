//! Fleet mode against a real etcd on loopback: three Meridian instances share evacuations
//! and reach health consensus. Built with `--features etcd`; needs the `etcd` binary
//! (Debian etcd-server, installed by scripts/test).
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::harness::*;

const TOKEN: &str = "fleet-token";
const US: &str = "192.0.2.10";
const EU: &str = "198.51.100.10";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A single-member etcd on loopback ports, with its data in a scratch directory.
struct Etcd {
    child: Option<Child>,
    client_port: u16,
    peer_port: u16,
    data: PathBuf,
}

impl Etcd {
    fn start(scratch: &Scratch) -> Etcd {
        let mut e = Etcd {
            child: None,
            client_port: free_port(),
            peer_port: free_port(),
            data: scratch.0.join("etcd-data"),
        };
        e.run();
        e
    }

    fn run(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(&self.data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("t={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd must be installed: run scripts/test, which installs etcd-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let healthy = TcpStream::connect(("127.0.0.1", self.client_port)).is_ok_and(|mut s| {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(b"GET /health HTTP/1.0\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                out.contains("\"health\":\"true\"")
            });
            if healthy {
                return;
            }
            assert!(Instant::now() < deadline, "etcd did not become healthy");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An HTTP health backend that fails requests coming from chosen source addresses: a broken
/// network path seen by some instances only.
struct PathBackend {
    addr: SocketAddr,
    failing_from: Arc<Mutex<Vec<IpAddr>>>,
    stop: Arc<AtomicBool>,
}

impl PathBackend {
    fn start() -> PathBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let failing_from = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (failing_from.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, peer)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 1024];
                        let _ = stream.read(&mut buf);
                        let fail = f.lock().unwrap().contains(&peer.ip());
                        let reply: &[u8] = if fail {
                            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        } else {
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK"
                        };
                        let _ = stream.write_all(reply);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        PathBackend {
            addr,
            failing_from,
            stop,
        }
    }

    fn fail_from(&self, sources: &[&str]) {
        *self.failing_from.lock().unwrap() = sources.iter().map(|s| s.parse().unwrap()).collect();
    }
}

impl Drop for PathBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Instance `name` probing from `source`, in fleet mode against `etcd`.
fn instance(name: &str, source: &str, etcd: &Etcd, us: &PathBackend, eu: &PathBackend) -> Meridian {
    let scratch = Scratch::new();
    let text = format!(
        r#"
[server]
dns_listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"
state_dir = "{state}"
probe_source = "{source}"

[geoip]
database = "{db}"

[cluster]
backend = "etcd"
endpoints = ["127.0.0.1:{port}"]
prefix = "/fleet-test/"
name = "{name}"
lease_ttl = "3s"
dial_timeout = "1s"
request_timeout = "1s"

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
rise = 2
fall = 2

[[services]]
name = "www.example.com."
ttl = 5
check = "web"
endpoints = [
  {{ region = "us-east", address = "{US}", port = {us_port}, check_address = "127.0.0.1" }},
  {{ region = "eu-west", address = "{EU}", port = {eu_port}, check_address = "127.0.0.1" }},
]
"#,
        state = scratch.0.join("state").display(),
        db = fixture("world-city.mmdb").display(),
        port = etcd.client_port,
        us_port = us.addr.port(),
        eu_port = eu.addr.port(),
    );
    let config = scratch.write("meridian.toml", &text);
    Meridian::start_with(scratch, config, &[("MERIDIAN_ADMIN_TOKEN", TOKEN)])
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn us_answer(m: &Meridian) -> Vec<IpAddr> {
    let q = with_ecs(query("www.example.com.", RecordType::A), "11.0.0.0", 16);
    addrs(&udp(m.v4(), &q))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Polls until `check` holds, for at most `limit`; returns how long it took.
fn within(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

fn cluster_status(m: &Meridian) -> serde_json::Value {
    http_json(m.admin(), "GET", "/v1/cluster", None, "").1
}

fn fleet(etcd: &Etcd, us: &PathBackend, eu: &PathBackend) -> Vec<Meridian> {
    let fleet: Vec<Meridian> = [("a", "127.0.0.2"), ("b", "127.0.0.3"), ("c", "127.0.0.4")]
        .iter()
        .map(|(n, src)| instance(n, src, etcd, us, eu))
        .collect();
    for m in &fleet {
        within(
            Duration::from_secs(10),
            "every instance sees two peers",
            || {
                let st = cluster_status(m);
                st["status"]["connected"] == true
                    && st["status"]["peers"]
                        .as_object()
                        .is_some_and(|p| p.len() == 2)
            },
        );
    }
    fleet
}

#[test]
fn evacuation_through_one_instance_reaches_all() {
    let scratch = Scratch::new();
    let etcd = Etcd::start(&scratch);
    let (us, eu) = (PathBackend::start(), PathBackend::start());
    let fleet = fleet(&etcd, &us, &eu);
    for m in &fleet {
        assert_eq!(us_answer(m), vec![ip(US)]);
    }
    let (status, body) = http_json(
        fleet[0].admin(),
        "POST",
        "/v1/regions/us-east/evacuate",
        Some(TOKEN),
        r#"{"reason": "fleet drill"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        us_answer(&fleet[0]),
        vec![ip(EU)],
        "A applied it before answering"
    );
    for m in &fleet[1..] {
        let took = within(
            Duration::from_secs(1),
            "B and C follow A's evacuation",
            || us_answer(m) == vec![ip(EU)],
        );
        eprintln!("fleet: evacuation visible on a peer after {took:?}");
    }
    let (status, body) = http_json(
        fleet[2].admin(),
        "POST",
        "/v1/regions/us-east/restore",
        Some(TOKEN),
        "",
    );
    assert_eq!(status, 200, "{body}");
    for m in &fleet {
        within(Duration::from_secs(1), "all follow C's restore", || {
            us_answer(m) == vec![ip(US)]
        });
    }
    // Each instance's regions view names who evacuated last (the audit trail travels too).
    let regions = http_json(fleet[1].admin(), "GET", "/v1/regions", None, "").1;
    assert_eq!(regions["regions"][0]["evacuated"], false);
}

/// Which of the /24s of 11.0.0.0/16 (US clients) an instance sends to eu-west.
fn moved_subnets(m: &Meridian) -> Vec<u8> {
    (0..=255u8)
        .filter(|n| {
            let q = with_ecs(
                query("www.example.com.", RecordType::A),
                &format!("11.0.{n}.0"),
                24,
            );
            addrs(&udp(m.v4(), &q)) == vec![ip(EU)]
        })
        .collect()
}

#[test]
fn a_drain_and_a_ramp_move_the_same_clients_on_every_instance() {
    let scratch = Scratch::new();
    let etcd = Etcd::start(&scratch);
    let (us, eu) = (PathBackend::start(), PathBackend::start());
    let fleet = fleet(&etcd, &us, &eu);
    let (status, body) = http_json(
        fleet[0].admin(),
        "POST",
        "/v1/regions/us-east/drain",
        Some(TOKEN),
        r#"{"percent": 40, "reason": "fleet drain"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let on_a = moved_subnets(&fleet[0]);
    assert!(
        (60..=150).contains(&on_a.len()),
        "{} of 256 moved at 40 %",
        on_a.len()
    );
    for m in &fleet[1..] {
        within(
            Duration::from_secs(2),
            "B and C move the same clients",
            || moved_subnets(m) == on_a,
        );
    }
    // A ramp made through B steps on every instance at once: nobody has to step it.
    let (status, body) = http_json(
        fleet[1].admin(),
        "POST",
        "/v1/regions/us-east/ramp",
        Some(TOKEN),
        r#"{"steps": [60, 100], "step_every": "2s", "reason": "fleet ramp"}"#,
    );
    assert_eq!(status, 200, "{body}");
    for m in &fleet {
        within(
            Duration::from_secs(10),
            "every instance reaches 100 %",
            || moved_subnets(m).len() == 256,
        );
    }
}

#[test]
fn conflicting_changes_one_wins_nothing_lost() {
    let scratch = Scratch::new();
    let etcd = Etcd::start(&scratch);
    let (us, eu) = (PathBackend::start(), PathBackend::start());
    let fleet = fleet(&etcd, &us, &eu);
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let results: Vec<(u16, serde_json::Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = [(0usize, "reason a"), (1usize, "reason b")]
            .into_iter()
            .map(|(i, reason)| {
                let admin = fleet[i].admin();
                let barrier = barrier.clone();
                s.spawn(move || {
                    barrier.wait();
                    http_json(
                        admin,
                        "POST",
                        "/v1/regions/us-east/evacuate",
                        Some(TOKEN),
                        &format!(r#"{{"reason": "{reason}"}}"#),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let statuses: Vec<u16> = results.iter().map(|r| r.0).collect();
    assert!(
        statuses.contains(&200) && statuses.contains(&409),
        "one wins, one conflicts: {results:?}"
    );
    let winner = if results[0].0 == 200 {
        "reason a"
    } else {
        "reason b"
    };
    for m in &fleet {
        within(
            Duration::from_secs(2),
            "every instance holds the winner's change",
            || {
                let regions = http_json(m.admin(), "GET", "/v1/regions", None, "").1;
                regions["regions"][0]["evacuation"]["reason"] == winner
            },
        );
    }
}

#[test]
fn health_needs_a_majority_of_observers() {
    let scratch = Scratch::new();
    let etcd = Etcd::start(&scratch);
    let (us, eu) = (PathBackend::start(), PathBackend::start());
    let fleet = fleet(&etcd, &us, &eu);
    // Only instance A's path to the US backend is broken: nobody fails over.
    us.fail_from(&["127.0.0.2"]);
    within(
        Duration::from_secs(6),
        "A reports one of three observers seeing it down",
        || {
            let r = http_json(fleet[0].admin(), "GET", "/v1/regions", None, "").1;
            let e = &r["regions"][0]["services"][0]["endpoints"][0];
            e["seen_down_by"] == 1 && e["observers"] == 3
        },
    );
    for m in &fleet {
        assert_eq!(
            us_answer(m),
            vec![ip(US)],
            "one broken path is not a failover"
        );
    }
    // Now B sees it down too: two of three, and every instance fails over, C included.
    us.fail_from(&["127.0.0.2", "127.0.0.3"]);
    for m in &fleet {
        within(
            Duration::from_secs(6),
            "all fail over once two of three see it down",
            || us_answer(m) == vec![ip(EU)],
        );
    }
    let out = run(
        &[
            "explain",
            "--config",
            &fleet[0].config.display().to_string(),
            "www.example.com",
            "A",
            "--client",
            "11.0.0.1/24",
        ],
        &repo(),
    );
    assert!(out.status.success());
    // explain runs outside the fleet (from the saved local view), so it shows its own verdict.
    assert!(String::from_utf8_lossy(&out.stdout).contains("chosen     eu-west"));
}

#[test]
fn etcd_outage_keeps_serving_and_reconverges() {
    let scratch = Scratch::new();
    let mut etcd = Etcd::start(&scratch);
    let (us, eu) = (PathBackend::start(), PathBackend::start());
    let mut fleet = fleet(&etcd, &us, &eu);
    let (status, _) = http_json(
        fleet[0].admin(),
        "POST",
        "/v1/regions/us-east/evacuate",
        Some(TOKEN),
        "{}",
    );
    assert_eq!(status, 200);
    for m in &fleet {
        within(Duration::from_secs(1), "evacuated everywhere", || {
            us_answer(m) == vec![ip(EU)]
        });
    }

    etcd.stop();
    for m in &fleet {
        within(
            Duration::from_secs(10),
            "each instance says it is degraded",
            || {
                let (status, r) = http_json(m.admin(), "GET", "/readyz", None, "");
                status == 200 && r["degraded"] == true
            },
        );
        assert_eq!(us_answer(m), vec![ip(EU)], "DNS keeps the last state");
    }
    // Changes are refused while the store is gone, rather than diverging.
    let (status, body) = http_json(
        fleet[1].admin(),
        "POST",
        "/v1/regions/us-east/restore",
        Some(TOKEN),
        "",
    );
    assert_eq!(status, 503, "{body}");
    // A restart without etcd still honours the evacuation, from the local cache.
    let b = fleet.remove(1).restart(&[("MERIDIAN_ADMIN_TOKEN", TOKEN)]);
    assert_eq!(us_answer(&b), vec![ip(EU)]);
    fleet.insert(1, b);

    etcd.run();
    for m in &fleet {
        within(Duration::from_secs(10), "reconnected", || {
            cluster_status(m)["status"]["connected"] == true
        });
    }
    let (status, body) = http_json(
        fleet[2].admin(),
        "POST",
        "/v1/regions/us-east/restore",
        Some(TOKEN),
        "",
    );
    assert_eq!(status, 200, "{body}");
    for m in &fleet {
        within(Duration::from_secs(1), "restored everywhere", || {
            us_answer(m) == vec![ip(US)]
        });
    }
}

/// `deploy/fleet/lab.sh` brings a three-instance fleet up on loopback, reports it, and
/// stops everything it started.
#[test]
fn the_fleet_lab_script_runs() {
    let scratch = Scratch::new();
    let dir = scratch.0.join("lab");
    let lab = |action: &str| {
        std::process::Command::new(repo().join("deploy/fleet/lab.sh"))
            .args([action, dir.to_str().expect("utf-8 path")])
            .env("MERIDIAN", bin())
            .output()
            .expect("run deploy/fleet/lab.sh")
    };
    let up = lab("up");
    let text = String::from_utf8_lossy(&up.stdout).into_owned();
    let down_anyway = |why: &str| {
        let _ = lab("down");
        panic!("{why}\n{text}\n{}", String::from_utf8_lossy(&up.stderr));
    };
    if !up.status.success() {
        down_anyway("lab.sh up failed");
    }
    if !text.contains("every instance is connected to etcd and sees the other 2") {
        down_anyway("the fleet did not come together");
    }
    let status = lab("status");
    let status_text = String::from_utf8_lossy(&status.stdout).into_owned();
    let down = lab("down");
    assert!(status.status.success(), "{status_text}");
    assert!(status_text.contains("ns3   running"), "{status_text}");
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let stopped = String::from_utf8_lossy(&down.stdout).into_owned();
    for what in ["ns1", "ns2", "ns3", "etcd"] {
        assert!(stopped.contains(&format!("stopped {what}")), "{stopped}");
    }
}

/// A standby's replication endpoint whose lag depends on who asks: each instance probes from
/// its own source address, so the test can give each one its own reading.
struct LagBySource {
    addr: SocketAddr,
    lag: Arc<Mutex<Vec<(IpAddr, f64)>>>,
    stop: Arc<AtomicBool>,
}

impl LagBySource {
    fn start() -> LagBySource {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let lag = Arc::new(Mutex::new(Vec::<(IpAddr, f64)>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (lag.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, peer)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 1024];
                        let _ = stream.read(&mut buf);
                        let seconds = l
                            .lock()
                            .unwrap()
                            .iter()
                            .find(|(ip, _)| *ip == peer.ip())
                            .map_or(0.0, |(_, v)| *v);
                        let body = format!(r#"{{"lag_seconds": {seconds}}}"#);
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(reply.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        LagBySource { addr, lag, stop }
    }

    fn set(&self, readings: &[(&str, f64)]) {
        *self.lag.lock().unwrap() = readings.iter().map(|(s, v)| (ip(s), *v)).collect();
    }
}

impl Drop for LagBySource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Instance `name` of a fleet serving an active-passive database whose standby is guarded.
fn guarded_instance(
    name: &str,
    source: &str,
    etcd: &Etcd,
    primary: &PathBackend,
    standby: &LagBySource,
) -> Meridian {
    let scratch = Scratch::new();
    let text = format!(
        r#"
[server]
dns_listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"
probe_source = "{source}"

[cluster]
backend = "etcd"
endpoints = ["127.0.0.1:{port}"]
prefix = "/fleet-guard/"
name = "{name}"
lease_ttl = "3s"
dial_timeout = "1s"
request_timeout = "1s"

[[zones]]
origin = "example.com."
ns = ["ns1.example.com."]
soa = {{ mname = "ns1.example.com.", rname = "hostmaster.example.com.", serial = 1, minimum = 60 }}

[[regions]]
name = "us-east"

[[regions]]
name = "eu-west"

[checks.web]
kind = "http"
path = "/healthz"
interval = "1s"
timeout = "500ms"
rise = 1
fall = 1

[checks.lag]
kind = "http"
path = "/replication"
interval = "1s"
timeout = "500ms"
extract = {{ json = "/lag_seconds" }}
max = 5

[[services]]
name = "db.example.com."
ttl = 5
policy = "failover"
regions = ["us-east", "eu-west"]
promote_guard = "lag"
on_unsafe = "hold"
endpoints = [
  {{ region = "us-east", address = "{US}", port = {us_port}, check = "web", check_address = "127.0.0.1" }},
  {{ region = "eu-west", address = "{EU}", port = {eu_port}, check_address = "127.0.0.1" }},
]
"#,
        port = etcd.client_port,
        us_port = primary.addr.port(),
        eu_port = standby.addr.port(),
    );
    let config = scratch.write("meridian.toml", &text);
    Meridian::start_with(scratch, config, &[("MERIDIAN_ADMIN_TOKEN", TOKEN)])
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn db_answer(m: &Meridian) -> Vec<IpAddr> {
    addrs(&udp(m.v4(), &query("db.example.com.", RecordType::A)))
}

#[test]
fn the_guard_verdict_is_shared_like_health() {
    let scratch = Scratch::new();
    let etcd = Etcd::start(&scratch);
    let primary = PathBackend::start();
    let standby = LagBySource::start();
    // A reads the standby 42 s behind; B and C read 1 s.
    standby.set(&[("127.0.0.2", 42.0), ("127.0.0.3", 1.0), ("127.0.0.4", 1.0)]);
    let fleet: Vec<Meridian> = [("a", "127.0.0.2"), ("b", "127.0.0.3"), ("c", "127.0.0.4")]
        .iter()
        .map(|(n, src)| guarded_instance(n, src, &etcd, &primary, &standby))
        .collect();
    for m in &fleet {
        within(
            Duration::from_secs(10),
            "every instance sees two peers",
            || {
                let st = cluster_status(m);
                st["status"]["peers"]
                    .as_object()
                    .is_some_and(|p| p.len() == 2)
            },
        );
        within(Duration::from_secs(10), "answered by the primary", || {
            db_answer(m) == vec![ip(US)]
        });
    }
    // The primary fails for everyone: two of three read the standby in bounds, so every
    // instance fails over into it, A included.
    primary.fail_from(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    for m in &fleet {
        within(
            Duration::from_secs(10),
            "failed over into the standby",
            || db_answer(m) == vec![ip(EU)],
        );
    }
    // B now reads 42 s too: two of three say not promotable, and every instance holds on the
    // primary, C (which reads 1 s) included.
    standby.set(&[("127.0.0.2", 42.0), ("127.0.0.3", 42.0), ("127.0.0.4", 1.0)]);
    for m in &fleet {
        within(Duration::from_secs(10), "held on the primary", || {
            db_answer(m) == vec![ip(US)]
        });
    }
    let why = http_json(
        fleet[2].admin(),
        "GET",
        "/v1/explain?name=db.example.com.&type=A&client=192.0.2.99",
        None,
        "",
    )
    .1;
    assert_eq!(why["reason"], "guard-hold", "{why}");
}
