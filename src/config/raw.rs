//! The TOML file as written: serde structs, unknown keys refused, positions kept on every
//! field an error can blame. Nothing here interprets values; see `validate` and `compile`.
use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    pub geoip: Option<S<RawGeoip>>,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub zones: Vec<S<RawZone>>,
    #[serde(default)]
    pub regions: Vec<S<RawRegion>>,
    #[serde(default)]
    pub services: Vec<S<RawService>>,
    #[serde(default)]
    pub checks: BTreeMap<String, S<RawCheck>>,
    #[serde(default)]
    pub cidr_maps: BTreeMap<String, S<RawCidrMap>>,
    pub cluster: Option<S<RawCluster>>,
    pub rrl: Option<S<RawRrl>>,
    pub health: Option<S<RawHealth>>,
    pub dnstap: Option<S<RawDnstap>>,
    /// Routing assertions `check` and every reload evaluate.
    #[serde(default, rename = "assert")]
    pub asserts: Vec<S<RawAssert>>,
    /// Rules an evacuation, drain or ramp must not break.
    #[serde(default)]
    pub safety: Vec<S<RawSafety>>,
}

/// `[[assert]]`: what a client asking a name must get, optionally under a scenario.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAssert {
    pub name: S<String>,
    pub client: S<String>,
    /// `"A"` (default for an IPv4 client) or `"AAAA"`.
    pub qtype: Option<S<String>>,
    pub expect_region: Option<S<String>>,
    pub expect_answer: Option<S<Vec<S<String>>>>,
    pub expect_rcode: Option<S<String>>,
    pub expect_scope: Option<S<i64>>,
    pub with: Option<S<RawScenario>>,
}

/// The state an assertion is evaluated in: regions evacuated, down, drained or not promotable.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    #[serde(default)]
    pub evacuated: Vec<S<String>>,
    #[serde(default)]
    pub down: Vec<S<String>>,
    #[serde(default)]
    pub drained: BTreeMap<String, S<i64>>,
    #[serde(default)]
    pub not_promotable: Vec<S<String>>,
}

/// `[[safety]]`: a floor under how many regions serve.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSafety {
    pub services: Option<S<Vec<S<String>>>>,
    pub min_serving_regions: Option<S<i64>>,
    pub regions: Option<S<Vec<S<String>>>>,
    pub min_serving: Option<S<i64>>,
}

/// How health probes find their targets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    /// `IP:PORT` of the DNS server that resolves hostname endpoints for probes (else the
    /// system's, from `/etc/resolv.conf`).
    pub resolver: Option<S<String>>,
}

/// Query and response logging to a dnstap collector over a Unix socket.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnstap {
    pub socket: S<String>,
    /// Log one query in this many.
    pub sample: Option<S<i64>>,
    pub queue_size: Option<S<i64>>,
    /// "bidirectional" (the default) or "unidirectional".
    pub mode: Option<S<String>>,
    pub identity: Option<S<String>>,
    pub version: Option<S<String>>,
}

/// Response rate limiting (UDP).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRrl {
    pub responses_per_second: Option<S<i64>>,
    pub slip: Option<S<i64>>,
    pub ipv4_prefix: Option<S<i64>>,
    pub ipv6_prefix: Option<S<i64>>,
    pub exempt: Option<S<Vec<S<String>>>>,
}

/// Fleet mode: evacuations and health shared through etcd.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub backend: S<String>,
    pub endpoints: S<Vec<S<String>>>,
    pub prefix: Option<S<String>>,
    /// This instance's name, unique in the fleet.
    pub name: S<String>,
    pub dial_timeout: Option<S<String>>,
    pub request_timeout: Option<S<String>>,
    /// How long an instance's health observations outlive its last contact with etcd.
    pub lease_ttl: Option<S<String>>,
    /// "majority" or a number of observers that must see an endpoint down.
    pub quorum: Option<S<toml::Value>>,
    pub username: Option<S<String>>,
    pub password_file: Option<S<String>>,
    pub ca_file: Option<S<String>>,
    pub cert_file: Option<S<String>>,
    pub key_file: Option<S<String>>,
}

/// Networks sent to a region whatever GeoIP says: inline, from a file, or both.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCidrMap {
    #[serde(default)]
    pub networks: Vec<S<RawCidrEntry>>,
    /// Autonomous systems sent to a region when no network of the map holds the client.
    #[serde(default)]
    pub asns: Vec<S<RawAsnEntry>>,
    /// Lines of `NETWORK REGION` or `AS<number> REGION` (# comments), read with the config.
    pub file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAsnEntry {
    pub asn: S<i64>,
    pub region: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCidrEntry {
    pub network: S<String>,
    pub region: S<String>,
}

/// A residency rule: clients from these countries or continents only ever go to `regions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResidency {
    /// ISO 3166-2 codes, `US-CA`.
    #[serde(default)]
    pub subdivisions: Vec<S<String>>,
    #[serde(default)]
    pub countries: Vec<S<String>>,
    #[serde(default)]
    pub continents: Vec<S<String>>,
    pub regions: S<Vec<S<String>>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub dns_listen: Option<S<Vec<S<String>>>>,
    pub admin_listen: Option<S<String>>,
    /// Largest UDP response we send and the payload size our OPT advertises.
    pub max_udp_payload: Option<S<i64>>,
    /// How long a TCP connection may sit idle between queries (or stall inside one).
    pub tcp_idle_timeout: Option<S<String>>,
    /// Longest lifetime of a TCP connection.
    pub tcp_total_timeout: Option<S<String>>,
    pub tcp_max_connections: Option<S<i64>>,
    pub tcp_max_queries: Option<S<i64>>,
    pub state_dir: Option<S<String>>,
    pub admin_token_file: Option<S<String>>,
    /// "text" or "json".
    pub log_format: Option<S<String>>,
    /// A second token that allows only the admin API's read-only calls (GET), from anywhere.
    pub read_token_file: Option<S<String>>,
    /// UDP worker threads per listen address; 0 or absent = one per core.
    pub workers: Option<S<i64>>,
    /// Source address for health probes (multi-homed hosts).
    pub probe_source: Option<S<String>>,
    /// What to answer an NSID request with (RFC 5001): text, or `hex:` and hex digits.
    pub nsid: Option<S<String>>,
    /// Which endpoints get a `meridian_endpoint_up` series: "all", "down" or "none".
    pub metrics_endpoints: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeoip {
    /// One file, or several (ip-location-db ships IPv4 and IPv6 apart), asked in order.
    pub database: Option<S<Paths>>,
    /// ASN databases (GeoLite2-ASN or ip-location-db ASN schema), one file or several, for
    /// the `asns` of `[cidr_maps]`.
    pub asn_database: Option<S<Paths>>,
}

/// A path, or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Paths {
    One(String),
    Many(Vec<String>),
}

impl Paths {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let (one, many) = match self {
            Paths::One(p) => (Some(p.as_str()), &[][..]),
            Paths::Many(v) => (None, &v[..]),
        };
        one.into_iter().chain(many.iter().map(String::as_str))
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// Region order for clients the database cannot place (and for ties).
    #[serde(default)]
    pub default_order: Vec<S<String>>,
    /// File of measured round-trip times (CSV or TOML) for the latency policy.
    pub latency_map: Option<S<String>>,
    /// Added to distance-based RTT estimates (processing, last mile), in ms.
    pub latency_overhead_ms: Option<S<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZone {
    pub origin: S<String>,
    /// An RFC 1035 master file of more records (relative to the config file's directory).
    pub file: Option<S<String>>,
    /// Apex NS names; required unless the zone file has apex NS records.
    pub ns: Option<S<Vec<S<String>>>>,
    /// Required unless the zone file has an SOA.
    pub soa: Option<S<RawSoa>>,
    /// Default TTL of the zone's static records.
    pub ttl: Option<S<i64>>,
    #[serde(default)]
    pub records: Vec<S<RawRecord>>,
    /// Sign the zone with these keys (DNSSEC).
    pub dnssec: Option<S<RawDnssec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnssec {
    /// `.private` key files as BIND's `dnssec-keygen` writes them (the `.key` beside each).
    #[serde(default)]
    pub keys: Vec<S<String>>,
    /// A directory whose `K<origin>+*.private` files are the zone's keys.
    pub key_dir: Option<S<String>>,
    /// How long a signature is valid ("14d" style durations in hours: "336h").
    pub validity: Option<S<String>>,
    /// Sign again when less than this is left of a signature.
    pub refresh: Option<S<String>>,
    /// TTL of the DNSKEY, CDS and CDNSKEY RRsets and of denial NSECs' cap.
    pub key_ttl: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSoa {
    pub mname: S<String>,
    pub rname: S<String>,
    pub serial: S<i64>,
    pub refresh: Option<S<i64>>,
    pub retry: Option<S<i64>>,
    pub expire: Option<S<i64>>,
    /// Negative-caching TTL (RFC 2308).
    pub minimum: S<i64>,
    pub ttl: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecord {
    pub name: S<String>,
    #[serde(rename = "type")]
    pub rtype: S<String>,
    pub data: S<String>,
    pub ttl: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegion {
    pub name: S<String>,
    pub location: Option<S<RawLocation>>,
    /// ISO 3166-2 codes, `US-CA`: a tier above countries.
    #[serde(default)]
    pub subdivisions: Vec<S<String>>,
    #[serde(default)]
    pub countries: Vec<S<String>>,
    #[serde(default)]
    pub continents: Vec<S<String>>,
    /// Proximity policy: grows (positive) or shrinks (negative) the catchment, -99 to 99.
    pub bias: Option<S<i64>>,
    /// Queries per second the region can answer: what-if previews and capacity checks.
    pub capacity_qps: Option<S<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocation {
    pub lat: S<f64>,
    pub lon: S<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub name: S<String>,
    pub ttl: Option<S<i64>>,
    pub policy: Option<S<String>>,
    pub answers: Option<S<i64>>,
    pub check: Option<S<String>>,
    /// Per-service override of `routing.default_order`.
    pub default_order: Option<S<Vec<S<String>>>>,
    /// Failover policy: the regions in order, primary first.
    pub regions: Option<S<Vec<S<String>>>>,
    pub min_healthy: Option<S<i64>>,
    pub on_all_down: Option<S<String>>,
    /// Static addresses answered when `on_all_down = "fallback"`.
    pub fallback: Option<S<Vec<S<String>>>>,
    /// Latency policy: how much faster (ms) a region must be to take a client network over.
    pub latency_margin_ms: Option<S<f64>>,
    /// Weighted policy: "stable" (per client subnet and name) or "random".
    pub weight_mode: Option<S<String>>,
    #[serde(default)]
    pub residency: Vec<S<RawResidency>>,
    /// Name of a `[cidr_maps.NAME]` whose networks override GeoIP for this service.
    pub cidr_map: Option<S<String>>,
    /// A check with `extract` every region but the client's first must pass to take it.
    pub promote_guard: Option<S<String>>,
    /// What a failing guard does: "next", "hold" or "servfail".
    pub on_unsafe: Option<S<String>>,
    pub endpoints: S<Vec<S<RawEndpoint>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    pub region: S<String>,
    /// What is answered: an IP address (A or AAAA)...
    pub address: Option<S<String>>,
    /// ...or a hostname, answered with a CNAME to it (exactly one of the two).
    pub target: Option<S<String>>,
    pub port: Option<S<i64>>,
    pub check: Option<S<String>>,
    pub check_address: Option<S<String>>,
    /// Weighted policy: relative share of answers; 0 = only when nothing else is up.
    pub weight: Option<S<i64>>,
}

/// A named health check. The prober gives these meaning; here they are only checked for shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub kind: S<String>,
    pub path: Option<S<String>>,
    pub port: Option<S<i64>>,
    pub interval: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub rise: Option<S<i64>>,
    pub fall: Option<S<i64>>,
    pub expect_status: Option<S<Vec<S<toml::Value>>>>,
    pub expect_body: Option<S<String>>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub tls_server_name: Option<S<String>>,
    pub tls_insecure_skip_verify: Option<S<bool>>,
    /// `{ json = "/pointer" }`, `{ prometheus = 'name{label="v"}' }` or `{ header = "X-Name" }`.
    pub extract: Option<S<BTreeMap<String, S<String>>>>,
    pub max: Option<S<f64>>,
    pub min: Option<S<f64>>,
    pub unit: Option<S<String>>,
}
