//! Routing policies through the real binary, as an operator sees them with `dig +subnet`:
//! latency (with a latency map file), proximity with a bias, weighted, residency and a CIDR
//! override, each for clients in several countries with the ECS scope in `CLIENT-SUBNET`; and
//! `PUT /v1/latency-map` through the admin API.
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::*;

const TOKEN: &str = "t";

/// Measured RTTs: Germany is fastest to us-east, Brazil to eu-west, Oceania to us-east, and
/// the upper half of Japan's /16 to eu-west. Everyone else is estimated from distance.
const LATENCY_MAP: &str = "client,region,rtt_ms
# measured by RUM, ms
country:DE,us-east,1
country:BR,eu-west,40
continent:OC,us-east,30
13.0.128.0/17,eu-west,5
";

/// One service per policy; the last octet of an address names its region: .x1 us-east,
/// .x2 eu-west, .x3 ap-southeast.
fn config(map: &str) -> String {
    format!(
        r#"
[server]
dns_listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"

[geoip]
database = "{db}"

[routing]
default_order = ["us-east", "eu-west", "ap-southeast"]
latency_map = "{map}"

[[zones]]
origin = "example.com."
ns = ["ns1.example.com."]
soa = {{ mname = "ns1", rname = "hostmaster", serial = 1, minimum = 60 }}
records = [{{ name = "ns1", type = "A", data = "192.0.2.53" }}]

[[regions]]
name = "us-east"
location = {{ lat = 39.0, lon = -77.5 }}

[[regions]]
name = "eu-west"
location = {{ lat = 50.1, lon = 8.7 }}
bias = 25

[[regions]]
name = "ap-southeast"
location = {{ lat = 1.35, lon = 103.8 }}

[cidr_maps.corp]
networks = [
  {{ network = "12.0.5.0/24", region = "us-east" }},
  {{ network = "14.0.0.0/17", region = "eu-west" }},
]

[[services]]
name = "latency.example.com."
policy = "latency"
endpoints = [
  {{ region = "us-east", address = "192.0.2.11" }},
  {{ region = "eu-west", address = "192.0.2.12" }},
  {{ region = "ap-southeast", address = "192.0.2.13" }},
]

[[services]]
name = "nearest.example.com."
policy = "proximity"
endpoints = [
  {{ region = "us-east", address = "192.0.2.21" }},
  {{ region = "eu-west", address = "192.0.2.22" }},
  {{ region = "ap-southeast", address = "192.0.2.23" }},
]

[[services]]
name = "weighted.example.com."
policy = "weighted"
endpoints = [
  {{ region = "us-east", address = "192.0.2.31", weight = 70 }},
  {{ region = "eu-west", address = "192.0.2.32", weight = 20 }},
  {{ region = "ap-southeast", address = "192.0.2.33", weight = 10 }},
]

[[services]]
name = "eu-only.example.com."
policy = "latency"
residency = [{{ continents = ["EU"], regions = ["eu-west"] }}]
endpoints = [
  {{ region = "us-east", address = "192.0.2.41" }},
  {{ region = "eu-west", address = "192.0.2.42" }},
  {{ region = "ap-southeast", address = "192.0.2.43" }},
]

[[services]]
name = "eu-strict.example.com."
policy = "geo"
on_all_down = "servfail"
residency = [{{ continents = ["EU"], regions = ["eu-west"] }}]
endpoints = [
  {{ region = "us-east", address = "192.0.2.61" }},
  {{ region = "eu-west", address = "192.0.2.62" }},
  {{ region = "ap-southeast", address = "192.0.2.63" }},
]

[[services]]
name = "corp.example.com."
policy = "geo"
cidr_map = "corp"
endpoints = [
  {{ region = "us-east", address = "192.0.2.51" }},
  {{ region = "eu-west", address = "192.0.2.52" }},
  {{ region = "ap-southeast", address = "192.0.2.53" }},
]
"#,
        db = fixture("world-city.mmdb").display(),
        map = map,
    )
}

/// Starts the server on [`config`] with [`LATENCY_MAP`] and the admin token in the
/// environment.
fn start() -> Meridian {
    let scratch = Scratch::new();
    let map = scratch.write("latency.csv", LATENCY_MAP);
    let config = scratch.write("meridian.toml", &config(&map.display().to_string()));
    Meridian::start_with(scratch, config, &[("MERIDIAN_ADMIN_TOKEN", TOKEN)])
        .unwrap_or_else(|e| panic!("meridian did not start: {e}"))
}

/// What `dig +subnet=SUBNET NAME A` shows: the status, the answer addresses and the
/// `CLIENT-SUBNET` line (`addr/source/scope`).
struct Dug {
    status: String,
    addrs: Vec<String>,
    client_subnet: String,
    out: String,
}

fn dig_subnet(m: &Meridian, name: &str, subnet: &str) -> Dug {
    let out = dig(m.v4(), &["+norec", &format!("+subnet={subnet}"), name, "A"]);
    let status = out
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no status in:\n{out}"))
        .to_string();
    let addrs = out
        .lines()
        .skip_while(|l| l.trim() != ";; ANSWER SECTION:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(3) == Some(&"A")).then(|| f[4].to_string())
        })
        .collect();
    let client_subnet = out
        .lines()
        .find_map(|l| l.strip_prefix("; CLIENT-SUBNET: "))
        .unwrap_or_else(|| panic!("no CLIENT-SUBNET in:\n{out}"))
        .trim()
        .to_string();
    Dug {
        status,
        addrs,
        client_subnet,
        out,
    }
}

/// Asserts `dig +subnet=SUBNET NAME` answers exactly `addr` with ECS scope `scope`.
fn assert_dig(m: &Meridian, name: &str, subnet: &str, addr: &str, scope: u8) {
    let d = dig_subnet(m, name, subnet);
    assert_eq!(d.status, "NOERROR", "{name} {subnet}:\n{}", d.out);
    assert_eq!(d.addrs, [addr], "{name} {subnet}:\n{}", d.out);
    assert_eq!(
        d.client_subnet,
        format!("{subnet}/{scope}"),
        "{name} {subnet}:\n{}",
        d.out
    );
}

/// The A answer and ECS scope for `subnet` over UDP.
fn ask(m: &Meridian, name: &str, addr: &str, prefix: u8) -> (Vec<IpAddr>, u8) {
    let r = udp(m.v4(), &with_ecs(query(name, RecordType::A), addr, prefix));
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::NoError,
        "{name} {addr}"
    );
    let scope = ecs_of(&r).expect("ECS echoed").scope_prefix();
    (addrs(&r), scope)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

// Clients (geoip-fixtures/README.md): 11.0.0.0/16 US (Ashburn; 11.0.0.x reports a /17),
// 12.0.0.0/16 DE, 12.1.0.0/16 GB, 13.0.0.0/16 JP, 14.0.0.0/16 AU, 15.0.0.0/16 BR.

#[test]
fn latency_policy_follows_the_map_then_the_estimate() {
    let m = start();
    let name = "latency.example.com";
    // (subnet, answer, scope). The map's 13.0.128.0/17 row splits Japan's /16 at bit 17, so
    // both halves (and US's neighbouring /17) are scoped to 17.
    for (subnet, addr, scope) in [
        ("11.0.0.0/24", "192.0.2.11", 17), // US: estimate, us-east nearest
        ("12.0.0.0/24", "192.0.2.11", 16), // DE: map says us-east 1 ms
        ("12.1.0.0/24", "192.0.2.12", 16), // GB: no row, estimate: eu-west
        ("13.0.0.0/24", "192.0.2.13", 17), // JP lower half: estimate, ap-southeast
        ("13.0.200.0/24", "192.0.2.12", 17), // JP upper half: CIDR row, eu-west 5 ms
        ("14.0.0.0/24", "192.0.2.11", 16), // AU: continent row, us-east 30 ms
        ("15.0.0.0/24", "192.0.2.12", 16), // BR: country row, eu-west 40 ms
    ] {
        assert_dig(&m, name, subnet, addr, scope);
    }
    // A /12 covers the JP CIDR row: the scope is longer than the source (RFC 7871 7.2.1),
    // the lower half's, so a resolver never serves this answer to the row's clients.
    assert_dig(&m, name, "13.0.0.0/12", "192.0.2.13", 17);
}

#[test]
fn latency_policy_without_a_map_estimates_for_every_client() {
    // The same config without `latency_map`: every RTT is an estimate from distance.
    let text = config("NONE").replace("latency_map = \"NONE\"\n", "");
    assert!(!text.contains("latency_map"));
    let m = Meridian::start(&text);
    for (addr, want) in [
        ("11.0.0.0", "192.0.2.11"),
        ("12.0.0.0", "192.0.2.12"),
        ("13.0.0.0", "192.0.2.13"),
        ("14.0.0.0", "192.0.2.13"),
        ("15.0.0.0", "192.0.2.11"),
    ] {
        let q = with_ecs(query("latency.example.com.", RecordType::A), addr, 24);
        let Some(bytes) = udp_raw(m.v4(), &encode(&q), IO_TIMEOUT) else {
            panic!("{addr}/24: no response at all; server log:\n{}", m.logs());
        };
        let r = hickory_proto::op::Message::from_vec(&bytes).expect("parse response");
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{addr}");
        assert_eq!(addrs(&r), [ip(want)], "{addr}");
    }
}

#[test]
fn proximity_policy_with_bias_and_the_other_policies_per_country() {
    let m = start();
    // Proximity: eu-west's bias of 25 counts its distance x 0.75, which wins Brazil
    // (9829 km x 0.75 = 7372 km against us-east's 7661 km) and nobody else here.
    for (subnet, addr, scope) in [
        ("11.0.0.0/24", "192.0.2.21", 17),
        ("12.0.0.0/24", "192.0.2.22", 16),
        ("13.0.0.0/24", "192.0.2.23", 16),
        ("14.0.0.0/24", "192.0.2.23", 16),
        ("15.0.0.0/24", "192.0.2.22", 16),
    ] {
        assert_dig(&m, "nearest.example.com", subnet, addr, scope);
    }

    // Residency: German and British clients stay in eu-west although the map makes us-east
    // fastest for Germany; everyone else is routed by latency as usual.
    for (subnet, addr, scope) in [
        ("11.0.0.0/24", "192.0.2.41", 17),
        ("12.0.0.0/24", "192.0.2.42", 16),
        ("12.1.0.0/24", "192.0.2.42", 16),
        ("13.0.0.0/24", "192.0.2.43", 17),
        ("14.0.0.0/24", "192.0.2.41", 16),
        ("15.0.0.0/24", "192.0.2.42", 16),
    ] {
        assert_dig(&m, "eu-only.example.com", subnet, addr, scope);
    }

    // CIDR override: 12.0.5.0/24 goes to us-east whatever GeoIP says, and 14.0.0.0/17 to
    // eu-west. The rest of Germany's /16 is scoped so that no cached answer covers the /24:
    // 12.0.9 and 12.0.5 share 20 bits, so /21.
    for (subnet, addr, scope) in [
        ("11.0.0.0/24", "192.0.2.51", 17),
        ("12.0.5.0/24", "192.0.2.51", 24),
        ("12.0.9.0/24", "192.0.2.52", 21),
        // The /16 covers the override: scope /22 (12.0.0 and 12.0.5 share 21 bits), longer
        // than the source, so the resolver does not serve this answer to the /24.
        ("12.0.0.0/16", "192.0.2.52", 22),
        ("13.0.0.0/24", "192.0.2.53", 16),
        ("14.0.0.0/24", "192.0.2.52", 17),
        ("14.0.200.0/24", "192.0.2.53", 17),
        ("15.0.0.0/24", "192.0.2.51", 16),
    ] {
        assert_dig(&m, "corp.example.com", subnet, addr, scope);
    }
}

#[test]
fn weighted_policy_is_stable_per_subnet_and_split_by_weight() {
    let m = start();
    let name = "weighted.example.com";
    let pool = ["192.0.2.31", "192.0.2.32", "192.0.2.33"];
    // Whatever the country, a /24 keeps its answer and the scope is the /24.
    for subnet in [
        "11.0.0.0/24",
        "12.0.0.0/24",
        "13.0.0.0/24",
        "14.0.0.0/24",
        "15.0.0.0/24",
    ] {
        let first = dig_subnet(&m, name, subnet);
        assert_eq!(first.status, "NOERROR", "{}", first.out);
        assert_eq!(first.addrs.len(), 1, "{}", first.out);
        assert!(pool.contains(&first.addrs[0].as_str()), "{}", first.out);
        assert_eq!(first.client_subnet, format!("{subnet}/24"), "{}", first.out);
        for _ in 0..2 {
            assert_dig(&m, name, subnet, &first.addrs[0], 24);
        }
    }
    // A resolver sending a /16 gets a /16 scope.
    let d = dig_subnet(&m, name, "12.0.0.0/16");
    assert_eq!(d.client_subnet, "12.0.0.0/16/16", "{}", d.out);

    // 400 subnets split roughly 70/20/10.
    let mut counts = [0usize; 3];
    for i in 0..400u32 {
        let subnet = format!("20.{}.{}.0", 1 + i / 256, i % 256);
        let (got, scope) = ask(&m, "weighted.example.com.", &subnet, 24);
        assert_eq!(scope, 24);
        assert_eq!(got.len(), 1, "{got:?}");
        let k = pool
            .iter()
            .position(|p| ip(p) == got[0])
            .unwrap_or_else(|| panic!("{got:?} not in the pool"));
        counts[k] += 1;
    }
    let [heavy, mid, light] = counts;
    assert!(
        (240..320).contains(&heavy) && (50..110).contains(&mid) && (20..65).contains(&light),
        "{counts:?}"
    );
}

#[test]
fn evacuated_residency_region_fails_open_inside_the_boundary() {
    let m = start();
    assert_dig(&m, "eu-only.example.com", "12.0.0.0/24", "192.0.2.42", 16);
    assert_dig(&m, "eu-strict.example.com", "12.0.0.0/24", "192.0.2.62", 16);
    let (status, body) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/eu-west/evacuate",
        Some(TOKEN),
        r#"{"reason": "residency test"}"#,
    );
    assert_eq!(status, 200, "{body}");

    // EU clients have no allowed region left. fail-open answers eu-west anyway (never
    // us-east); servfail says SERVFAIL.
    for subnet in ["12.0.0.0/24", "12.1.0.0/24"] {
        let d = dig_subnet(&m, "eu-only.example.com", subnet);
        assert_eq!(d.status, "NOERROR", "{}", d.out);
        assert_eq!(d.addrs, ["192.0.2.42"], "{}", d.out);
        let d = dig_subnet(&m, "eu-strict.example.com", subnet);
        assert_eq!(d.status, "SERVFAIL", "{}", d.out);
        assert!(d.addrs.is_empty(), "{}", d.out);
    }
    // Everyone else is routed around the evacuated region.
    assert_dig(&m, "eu-only.example.com", "15.0.0.0/24", "192.0.2.41", 16);
    assert_dig(&m, "eu-strict.example.com", "11.0.0.0/24", "192.0.2.61", 17);
    assert_dig(&m, "corp.example.com", "12.0.9.0/24", "192.0.2.51", 21);
}

/// One HTTP/1.1 PUT with a content type of our choosing; returns (status, JSON body).
fn put(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect admin");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "PUT {path} HTTP/1.1\r\nHost: meridian\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send request");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read response");
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let json = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("PUT {path}: body is not JSON ({e}): {text:?}"));
    (status, json)
}

#[test]
fn put_latency_map_replaces_it_atomically() {
    let m = start();
    let name = "latency.example.com";
    let admin = m.admin();
    assert_dig(&m, name, "12.0.0.0/24", "192.0.2.11", 16);
    assert_dig(&m, name, "13.0.0.0/24", "192.0.2.13", 17);

    // No token, or the wrong one: 401, nothing changes.
    let map = "client,region,rtt_ms\ncountry:JP,us-east,2\n";
    for token in [None, Some("wrong")] {
        let (status, body) = put(admin, "/v1/latency-map", token, "text/csv", map);
        assert_eq!(status, 401, "{token:?}: {body}");
    }
    assert_dig(&m, name, "13.0.0.0/24", "192.0.2.13", 17);

    // Unknown region and bad CIDRs: 400 naming each bad line; the good line 2 is not
    // applied either.
    let bad = "client,region,rtt_ms\ncountry:DE,eu-west,1\ncountry:JP,mars,10\n300.0.0.0/8,us-east,5\n12.0.0.1/16,us-east,5\n";
    let (status, body) = put(admin, "/v1/latency-map", Some(TOKEN), "text/csv", bad);
    assert_eq!(status, 400, "{body}");
    let problems: Vec<String> = body["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("problems in {body}"))
        .iter()
        .map(|p| p.as_str().expect("string").to_string())
        .collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems[0].starts_with("line 3:") && problems[0].contains("mars"),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with("line 4:") && problems[1].contains("300.0.0.0/8"),
        "{problems:?}"
    );
    assert!(
        problems[2].starts_with("line 5:") && problems[2].contains("host bits"),
        "{problems:?}"
    );
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("previous one stays")),
        "{body}"
    );
    assert_dig(&m, name, "12.0.0.0/24", "192.0.2.11", 16);
    assert_dig(&m, name, "13.0.200.0/24", "192.0.2.12", 17);

    // A valid map: in force for the very next query. Germany loses its row (estimate:
    // eu-west), Japan gains one (us-east), and without CIDR rows Japan's scope is its /16.
    let (status, body) = put(admin, "/v1/latency-map", Some(TOKEN), "text/csv", map);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["entries"], 1, "{body}");
    assert!(body["generation"].as_u64().is_some(), "{body}");
    assert_dig(&m, name, "12.0.0.0/24", "192.0.2.12", 16);
    assert_dig(&m, name, "13.0.0.0/24", "192.0.2.11", 16);
    assert_dig(&m, name, "13.0.200.0/24", "192.0.2.11", 16);
    assert_dig(&m, name, "11.0.0.0/24", "192.0.2.11", 17);
    assert_eq!(
        ask(&m, "latency.example.com.", "15.0.0.0", 24).0,
        [ip("192.0.2.11")]
    );

    // TOML, by content type.
    let toml = "[[rtt]]\nclient = \"continent:NA\"\nregion = \"ap-southeast\"\nrtt_ms = 3\n";
    let (status, body) = put(
        admin,
        "/v1/latency-map",
        Some(TOKEN),
        "application/toml",
        toml,
    );
    assert_eq!(status, 200, "{body}");
    assert_dig(&m, name, "11.0.0.0/24", "192.0.2.13", 17);
    assert_dig(&m, name, "13.0.0.0/24", "192.0.2.13", 16);
}
