//! Plain data compiled from the config and read by several layers (config writes it; dns,
//! health, cluster and control read it). A leaf: it uses no other Meridian module.
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

/// Server settings carried with the table so a reload can report what would change.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dns_listen: Vec<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub max_udp_payload: u16,
    pub tcp: TcpLimits,
    pub rrl: RrlSettings,
    pub state_dir: Option<PathBuf>,
    pub admin_token_file: Option<PathBuf>,
    pub read_token_file: Option<PathBuf>,
    /// UDP worker threads per listen address (0: one per core).
    pub workers: usize,
    /// Source address health probes connect from.
    pub probe_source: Option<IpAddr>,
    /// The DNS server probes resolve hostname endpoints with (`[health] resolver`); `None`:
    /// the system's (`/etc/resolv.conf`).
    pub health_resolver: Option<SocketAddr>,
    /// Fleet mode, when configured.
    pub cluster: Option<ClusterSettings>,
    /// Hash of the config text, published in fleet mode to spot drift.
    pub config_hash: String,
    /// How `serve` writes its log lines (the command line's `--log-format` overrides it).
    pub log_format: LogFormat,
    /// What this instance answers to an NSID request (RFC 5001): `server.nsid`, or in fleet
    /// mode the instance name; `None` answers none.
    pub nsid: Option<Box<[u8]>>,
    /// Query and response logging to a dnstap collector, when configured.
    pub dnstap: Option<DnstapSettings>,
    /// Which endpoints `/metrics` gives a series of their own (`server.metrics_endpoints`).
    pub metrics_endpoints: EndpointMetrics,
}

/// `server.metrics_endpoints`: which endpoints have a `meridian_endpoint_up` series, and
/// whether probe targets have series of their own. A series per endpoint of every service
/// does not scale to tens of thousands of names, so by default only endpoints that are down
/// have one: `meridian_endpoint_up == 0` alerts work, and a healthy fleet costs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndpointMetrics {
    /// Every endpoint, and the per-target probe families.
    All,
    /// Only endpoints that are down; probes counted per check.
    #[default]
    Down,
    /// No endpoint series; probes counted per check.
    None,
}

/// `[dnstap]`: where and how queries and responses are logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnstapSettings {
    /// The collector's Unix socket.
    pub socket: PathBuf,
    /// One query in `sample` is logged (1: every query).
    pub sample: u32,
    /// Queries waiting for the writer; beyond this they are dropped and counted.
    pub queue_size: usize,
    /// Frame Streams handshake with the collector.
    pub mode: FstrmMode,
    /// The `identity` and `version` fields of every message; `None` leaves them out.
    pub identity: Option<Box<[u8]>>,
    pub version: Option<Box<[u8]>>,
}

/// How a Frame Streams connection starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FstrmMode {
    /// READY, wait for the collector's ACCEPT, then START; STOP is answered with FINISH. What
    /// the common Unix-socket collectors (`fstrm_capture`, `dnstap -u`) require.
    #[default]
    Bidirectional,
    /// START, then data frames, with nothing read back: for collectors that take a bare
    /// stream.
    Unidirectional,
}

/// Log lines as text (coloured only on a terminal) or as JSON objects, one a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Limits on TCP clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    pub max_connections: usize,
    /// Longest wait for the next query, or for the rest of one that has started.
    pub idle_timeout: Duration,
    /// Longest a connection may live.
    pub total_timeout: Duration,
    pub max_queries: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RrlSettings {
    /// Identical responses per second to one client network; 0 turns RRL off.
    pub responses_per_second: u32,
    /// Every n-th limited response is sent truncated; 0 drops them all.
    pub slip: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Networks never limited (monitoring, loopback).
    pub exempt: Vec<IpNet>,
}

impl Default for RrlSettings {
    fn default() -> Self {
        RrlSettings {
            responses_per_second: 20,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt: vec![
                "127.0.0.0/8".parse().unwrap_or_else(|_| unreachable!()),
                "::1/128".parse().unwrap_or_else(|_| unreachable!()),
            ],
        }
    }
}

/// How many observers must see an endpoint down before it is down everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    /// More than half of the live observers.
    Majority,
    /// At least this many (or every live observer, when fewer are live).
    AtLeast(u8),
}

#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub name: String,
    pub dial_timeout: Duration,
    pub request_timeout: Duration,
    pub lease_ttl: Duration,
    pub quorum: Quorum,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// What a health check does, compiled from a `[checks.NAME]` table.
#[derive(Debug, Clone)]
pub struct CheckSpec {
    pub name: String,
    pub kind: CheckKind,
    pub path: String,
    /// Port to probe; `None` means the endpoint's port, else 80/443 (tcp: the endpoint's port).
    pub port: Option<u16>,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub expect_status: Vec<StatusMatch>,
    pub expect_body: Option<String>,
    pub headers: Vec<(String, String)>,
    pub tls_server_name: Option<String>,
    pub tls: TlsVerify,
    /// A number read from each response and held to bounds (`extract`, `min`, `max`): what
    /// a service's `promote_guard` asks before moving clients into a region.
    pub figure: Option<FigureSpec>,
}

/// Where a check reads its figure, and the bounds that make a target promotable.
#[derive(Debug, Clone, PartialEq)]
pub struct FigureSpec {
    pub extract: Extract,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Shown after the figure in `explain` and the admin API (`"s"`), else nothing.
    pub unit: String,
}

/// How a figure is read from an HTTP response.
#[derive(Debug, Clone, PartialEq)]
pub enum Extract {
    /// A JSON pointer (RFC 6901) into the body; the value must be a number (or a string
    /// holding one).
    Json(String),
    /// A sample of Prometheus text exposition: the metric's name and the labels it must carry
    /// (others may be present).
    Prometheus {
        name: String,
        labels: Vec<(String, String)>,
    },
    /// A response header holding a number.
    Header(String),
}

impl Extract {
    /// Whether the body must be read to find the figure.
    pub fn needs_body(&self) -> bool {
        !matches!(self, Extract::Header(_))
    }
}

/// A sample's labels, as (name, value) pairs.
pub type Labels = Vec<(String, String)>;

/// Splits a Prometheus sample or selector (`name{a="1",b="2"} rest`) into its name, its
/// labels and what follows; `None` when it is not one.
pub fn split_sample(line: &str) -> Option<(&str, Labels, &str)> {
    let line = line.trim_start();
    let end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return None;
    }
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=')?;
            let key = rest[..eq].trim().to_string();
            let mut value = String::new();
            let quoted = rest[eq + 1..].trim_start().strip_prefix('"')?;
            let mut chars = quoted.char_indices();
            let mut close = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => return None,
                    },
                    '"' => {
                        close = Some(i);
                        break;
                    }
                    c => value.push(c),
                }
            }
            rest = &quoted[close? + 1..];
            labels.push((key, value));
        }
    }
    Some((name, labels, rest))
}

/// A target's figure held to its bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FigureVerdict {
    Within,
    /// Above `max` (the bound is carried for the explanation).
    Above(f64),
    /// Below `min`.
    Below(f64),
    /// The last probe found no figure (failed, or the value was missing or not a number).
    Missing,
}

impl FigureSpec {
    pub fn judge(&self, figure: Option<f64>) -> FigureVerdict {
        let Some(v) = figure else {
            return FigureVerdict::Missing;
        };
        match (self.min, self.max) {
            (_, Some(max)) if v > max => FigureVerdict::Above(max),
            (Some(min), _) if v < min => FigureVerdict::Below(min),
            _ => FigureVerdict::Within,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    Http,
    Https,
    Tcp,
}

impl CheckKind {
    pub fn default_port(self) -> u16 {
        match self {
            CheckKind::Http => 80,
            CheckKind::Https => 443,
            CheckKind::Tcp => 0,
        }
    }
}

/// Whether an https check verifies the backend's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVerify {
    Verify,
    /// Accept any certificate: only for self-signed test backends, and said so in the config.
    InsecureSkipVerify,
}

/// An accepted HTTP status: one code, or a class such as 2xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    Code(u16),
    Class(u8),
}

impl StatusMatch {
    pub fn matches(self, status: u16) -> bool {
        match self {
            StatusMatch::Code(c) => c == status,
            StatusMatch::Class(c) => status / 100 == u16::from(c),
        }
    }
}

/// Defaults for keys a check may leave out.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_RISE: u32 = 2;
pub const DEFAULT_FALL: u32 = 3;
