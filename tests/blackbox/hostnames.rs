//! Hostname endpoints through the real binary: a second Meridian is the authoritative server
//! for the targets' zone (`example.net.`, A records on 127.0.0.x where test backends
//! listen), and `[health] resolver` points the probes at it. Answers are CNAMEs per client
//! location (with `dig +subnet`), follow health, count a target that does not resolve (or a
//! resolver that is gone) as down, and carry an in-zone target's records.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::backend::{Backend, Mode};
use crate::harness::*;

/// The targets' zone, served by a second Meridian. TTL 1: probes re-resolve every second.
fn targets_config() -> String {
    r#"
[server]
dns_listen = ["127.0.0.1:0"]

[[zones]]
origin = "example.net."
ns = ["ns1.example.net."]
soa = { mname = "ns1.example.net.", rname = "hostmaster.example.net.", serial = 1, minimum = 1 }
ttl = 1
records = [
  # Nothing listens on 127.0.0.2: lb-us is up while any of its addresses passes.
  { name = "lb-us", type = "A", data = "127.0.0.2" },
  { name = "lb-us", type = "A", data = "127.0.0.11" },
  { name = "lb-eu", type = "A", data = "127.0.0.12" },
]
"#
    .to_string()
}

/// `www.example.com.`: geo over two hostname endpoints, probed through `resolver`;
/// `app.example.com.`: failover to an in-zone target, unprobed.
fn config(resolver: SocketAddr, us_target: &str, us: u16, eu: u16) -> String {
    format!(
        r#"
[server]
dns_listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"
# Every endpoint's series and the per-target probe families (opt-in).
metrics_endpoints = "all"

[health]
resolver = "{resolver}"

[geoip]
database = "{db}"

[[zones]]
origin = "example.com."
ns = ["ns1.example.com."]
soa = {{ mname = "ns1.example.com.", rname = "hostmaster.example.com.", serial = 1, minimum = 60 }}
records = [
  {{ name = "lb-app", type = "A", data = "127.0.0.21", ttl = 300 }},
  {{ name = "lb-app", type = "A", data = "127.0.0.22", ttl = 300 }},
]

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
expect_body = "OK"

[[services]]
name = "www.example.com."
ttl = 5
check = "web"
on_all_down = "servfail"
endpoints = [
  {{ region = "us-east", target = "{us_target}", port = {us} }},
  {{ region = "eu-west", target = "lb-eu.example.net.", port = {eu} }},
]

[[services]]
name = "app.example.com."
ttl = 5
policy = "failover"
regions = ["eu-west", "us-east"]
endpoints = [
  {{ region = "eu-west", target = "lb-app.example.com." }},
  {{ region = "us-east", target = "lb-us.example.net." }},
]
"#,
        db = fixture("world-city.mmdb").display(),
    )
}

const US_CLIENT: (&str, u8) = ("11.0.130.0", 24);
const EU_CLIENT: (&str, u8) = ("12.0.0.0", 24);
/// Long enough for fall 2 at a 1 s interval (or rise 2) on a loaded machine.
const LIMIT: Duration = Duration::from_secs(15);

/// The rcode and the CNAME target of `www.example.com.` for a client subnet.
fn ask(
    server: SocketAddr,
    rtype: RecordType,
    (addr, prefix): (&str, u8),
) -> (ResponseCode, Option<String>) {
    let q = with_ecs(query("www.example.com.", rtype), addr, prefix);
    let Some(bytes) = udp_raw(server, &encode(&q), Duration::from_secs(1)) else {
        return (ResponseCode::Unknown(0xFFF), None);
    };
    let m = Message::from_vec(&bytes).expect("a DNS message");
    let target = m.answers.iter().find_map(|r| match &r.data {
        RData::CNAME(t) => Some(t.0.to_string()),
        _ => None,
    });
    (m.metadata.response_code, target)
}

/// Polls until `www.example.com.` answers `want` (a CNAME target, or `None` with `rcode`)
/// to the US client, for at most [`LIMIT`].
fn wait_for(server: SocketAddr, rcode: ResponseCode, want: Option<&str>) {
    let start = Instant::now();
    loop {
        let got = ask(server, RecordType::A, US_CLIENT);
        if got.0 == rcode && got.1.as_deref() == want {
            return;
        }
        assert!(
            start.elapsed() < LIMIT,
            "answer did not become {rcode} {want:?} within {LIMIT:?}; last {got:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `meridian ctl explain` for the US client, against the live table.
fn explain(m: &Meridian) -> String {
    let out = std::process::Command::new(bin())
        .args(["ctl", "--server", &format!("http://{}", m.admin())])
        .args([
            "explain",
            "www.example.com",
            "A",
            "--client",
            "11.0.130.7/24",
        ])
        .env_remove("MERIDIAN_ADMIN_TOKEN")
        .output()
        .expect("run meridian ctl");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `explain` until it contains `want`, for at most [`LIMIT`].
fn wait_explain(m: &Meridian, want: &str) -> String {
    let start = Instant::now();
    loop {
        let text = explain(m);
        if text.contains(want) {
            return text;
        }
        assert!(
            start.elapsed() < LIMIT,
            "explain did not show {want:?} within {LIMIT:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn hostname_endpoints_answer_cnames_by_location_and_follow_target_health() {
    let targets = Meridian::start(&targets_config());
    let (us, eu) = (
        Backend::start_at("127.0.0.11"),
        Backend::start_at("127.0.0.12"),
    );
    let m = Meridian::start(&config(
        targets.v4(),
        "lb-us.example.net.",
        us.port(),
        eu.port(),
    ));

    // Per location, A and AAAA alike: the CNAME alone (the target is not ours), TTL the
    // service's, AA set, and the GeoIP network as the ECS scope.
    let out = dig(
        m.v4(),
        &["+norec", "+subnet=11.0.130.0/24", "www.example.com", "A"],
    );
    assert!(out.contains("flags: qr aa;"), "{out}");
    assert!(out.contains("ANSWER: 1,"), "{out}");
    assert!(
        out.contains("www.example.com.\t5\tIN\tCNAME\tlb-us.example.net."),
        "{out}"
    );
    assert!(out.contains("CLIENT-SUBNET: 11.0.130.0/24/20"), "{out}");
    let out = dig(
        m.v4(),
        &["+norec", "+subnet=12.0.0.0/24", "www.example.com", "AAAA"],
    );
    assert!(
        out.contains("www.example.com.\t5\tIN\tCNAME\tlb-eu.example.net."),
        "{out}"
    );
    assert!(out.contains("CLIENT-SUBNET: 12.0.0.0/24/16"), "{out}");
    assert_eq!(
        ask(m.v4(), RecordType::AAAA, EU_CLIENT),
        (ResponseCode::NoError, Some("lb-eu.example.net.".into()))
    );

    // An in-zone target: the CNAME, then its addresses; failover does not depend on the
    // client (scope 0).
    let out = dig(
        m.v4(),
        &["+norec", "+subnet=11.0.130.0/24", "app.example.com", "A"],
    );
    assert!(out.contains("ANSWER: 3,"), "{out}");
    assert!(
        out.contains("app.example.com.\t5\tIN\tCNAME\tlb-app.example.com."),
        "{out}"
    );
    assert!(
        out.contains("lb-app.example.com.\t300\tIN\tA\t127.0.0.21"),
        "{out}"
    );
    assert!(
        out.contains("lb-app.example.com.\t300\tIN\tA\t127.0.0.22"),
        "{out}"
    );
    assert!(out.contains("CLIENT-SUBNET: 11.0.130.0/24/0"), "{out}");

    // Probes resolve lb-us through the second Meridian: one of its two addresses answers.
    wait_explain(&m, "[lb-us.example.net. up]");
    let text = wait_explain(&m, "[lb-eu.example.net. up]");
    assert!(
        text.contains("answer     www.example.com. 5 IN CNAME lb-us.example.net."),
        "{text}"
    );

    // lb-us's backend fails: US clients move to eu-west's target, and back when it heals.
    us.set(Mode::Failing);
    wait_for(m.v4(), ResponseCode::NoError, Some("lb-eu.example.net."));
    let text = wait_explain(&m, "[lb-us.example.net. down]");
    assert!(text.contains("skipped: 0 of 1 endpoints up"), "{text}");
    // Metrics name the target: the endpoint by hostname, the probe target by hostname:port.
    let (status, metrics) = http(m.admin(), "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    assert!(
        metrics.contains(
            "meridian_endpoint_up{address=\"lb-us.example.net.\",region=\"us-east\",service=\"www.example.com.\"} 0"
        ),
        "{metrics}"
    );
    let probe_target = format!("target=\"web@lb-us.example.net.:{}\"", us.port());
    assert!(metrics.contains(&probe_target), "{metrics}");
    assert!(
        metrics.contains(
            "meridian_endpoint_up{address=\"lb-eu.example.net.\",region=\"eu-west\",service=\"www.example.com.\"} 1"
        ),
        "{metrics}"
    );
    us.set(Mode::Healthy);
    wait_for(m.v4(), ResponseCode::NoError, Some("lb-us.example.net."));
}

#[test]
fn a_target_that_does_not_resolve_or_a_resolver_that_is_gone_fails_its_probes() {
    let targets = Meridian::start(&targets_config());
    let (us, eu) = (
        Backend::start_at("127.0.0.11"),
        Backend::start_at("127.0.0.12"),
    );
    // lb-gone.example.net. is NXDOMAIN at the targets' server, though a backend listens on
    // the port its endpoint gives.
    let m = Meridian::start(&config(
        targets.v4(),
        "lb-gone.example.net.",
        us.port(),
        eu.port(),
    ));
    wait_for(m.v4(), ResponseCode::NoError, Some("lb-eu.example.net."));
    wait_explain(&m, "[lb-gone.example.net. down]");
    wait_explain(&m, "[lb-eu.example.net. up]");
    assert!(
        m.logs().contains("resolving lb-gone.example.net."),
        "the probe failure says why:\n{}",
        m.logs()
    );

    // The resolver goes away: once lb-eu's cached addresses expire its probes fail too, and
    // with nothing up the service answers as `on_all_down` says.
    drop(targets);
    wait_for(m.v4(), ResponseCode::ServFail, None);
    wait_explain(&m, "[lb-eu.example.net. down]");
}
