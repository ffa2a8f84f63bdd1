//! The `[server]`, `[rrl]` and `[cluster]` sections: listeners, TCP limits, rate limiting and
//! fleet mode.
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use super::Ctx;
use crate::config::duration;
use crate::config::raw::{RawCluster, RawConfig, RawDnstap, RawRrl, S};
use crate::settings::{
    ClusterSettings, DnstapSettings, EndpointMetrics, FstrmMode, LogFormat, Quorum, RrlSettings,
    Settings, TcpLimits,
};

const DEFAULT_MAX_UDP_PAYLOAD: u16 = 1232;
const DEFAULT_TCP_IDLE: Duration = Duration::from_secs(10);
const DEFAULT_TCP_TOTAL: Duration = Duration::from_secs(120);
const DEFAULT_TCP_CONNECTIONS: usize = 1024;
const DEFAULT_TCP_QUERIES: usize = 1000;
const DEFAULT_DNS_LISTEN: &str = "127.0.0.1:5353";
const DEFAULT_DNSTAP_QUEUE: usize = 16384;
/// A Unix socket path's limit (`sun_path`, less its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The `[server]` section, with `[rrl]` and `[cluster]` folded into the same settings.
pub(super) fn server_settings(cx: &mut Ctx, raw: &RawConfig, base: &Path) -> Settings {
    let s = &raw.server;
    let mut dns_listen = Vec::new();
    match &s.dns_listen {
        None => dns_listen
            .push(SocketAddr::from_str(DEFAULT_DNS_LISTEN).unwrap_or_else(|_| unreachable!())),
        Some(list) => {
            if list.get_ref().is_empty() {
                cx.err(
                    list.span(),
                    "server.dns_listen is empty: nothing would serve DNS",
                );
            }
            for a in list.get_ref() {
                match a.get_ref().parse::<SocketAddr>() {
                    Ok(addr) if dns_listen.contains(&addr) => {
                        cx.err(a.span(), format!("listen address {addr} is given twice"))
                    }
                    Ok(addr) => dns_listen.push(addr),
                    Err(_) => cx.err(
                        a.span(),
                        format!(
                            "{:?} is not an IP:port listen address (use [::1]:53 for IPv6)",
                            a.get_ref()
                        ),
                    ),
                }
            }
        }
    }
    let admin_listen = s
        .admin_listen
        .as_ref()
        .and_then(|a| match a.get_ref().parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                cx.err(
                    a.span(),
                    format!("{:?} is not an IP:port address", a.get_ref()),
                );
                None
            }
        });
    let max_udp_payload = match &s.max_udp_payload {
        None => DEFAULT_MAX_UDP_PAYLOAD,
        Some(v) => match u16::try_from(*v.get_ref()) {
            Ok(n) if n >= 512 => n,
            _ => {
                cx.err(
                    v.span(),
                    format!("max_udp_payload {} must be 512 to 65535", v.get_ref()),
                );
                DEFAULT_MAX_UDP_PAYLOAD
            }
        },
    };
    let mut positive = |v: &Option<S<String>>, default: Duration, what: &str| match v {
        None => default,
        Some(v) => match duration::parse(v.get_ref()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                cx.err(v.span(), format!("{what} must be above zero"));
                default
            }
            Err(e) => {
                cx.err(v.span(), e);
                default
            }
        },
    };
    let idle_timeout = positive(&s.tcp_idle_timeout, DEFAULT_TCP_IDLE, "tcp_idle_timeout");
    let total_timeout = positive(&s.tcp_total_timeout, DEFAULT_TCP_TOTAL, "tcp_total_timeout");
    let mut count = |v: &Option<S<i64>>, default: usize, max: i64, what: &str| match v {
        None => default,
        Some(v) if (1..=max).contains(v.get_ref()) => *v.get_ref() as usize,
        Some(v) => {
            cx.err(v.span(), format!("{what} must be 1 to {max}"));
            default
        }
    };
    let tcp = TcpLimits {
        max_connections: count(
            &s.tcp_max_connections,
            DEFAULT_TCP_CONNECTIONS,
            1_000_000,
            "tcp_max_connections",
        ),
        idle_timeout,
        total_timeout,
        max_queries: count(
            &s.tcp_max_queries,
            DEFAULT_TCP_QUERIES,
            1_000_000,
            "tcp_max_queries",
        ) as u32,
    };
    let cluster = raw.cluster.as_ref().and_then(|c| cluster(cx, c, base));
    let dnstap = raw.dnstap.as_ref().map(|d| {
        let mut d = dnstap(cx, d.get_ref(), base);
        if d.identity.is_none() {
            // Which instance logged a query: in fleet mode, its name.
            d.identity = cluster
                .as_ref()
                .map(|c| c.name.as_bytes().to_vec().into_boxed_slice());
        }
        d
    });
    Settings {
        dnstap,
        dns_listen,
        admin_listen,
        max_udp_payload,
        tcp,
        rrl: raw
            .rrl
            .as_ref()
            .map_or_else(RrlSettings::default, |r| rrl(cx, r.get_ref())),
        state_dir: s.state_dir.as_ref().map(|d| base.join(d.get_ref())),
        admin_token_file: s.admin_token_file.as_ref().map(|f| base.join(f.get_ref())),
        read_token_file: s.read_token_file.as_ref().map(|f| base.join(f.get_ref())),
        log_format: match s.log_format.as_ref().map(|f| (f, f.get_ref().as_str())) {
            None | Some((_, "text")) => LogFormat::Text,
            Some((_, "json")) => LogFormat::Json,
            Some((f, other)) => {
                cx.err(
                    f.span(),
                    format!("log_format {other:?} is not \"text\" or \"json\""),
                );
                LogFormat::Text
            }
        },
        metrics_endpoints: match s.metrics_endpoints.as_ref().map(|f| (f, f.get_ref().as_str())) {
            None | Some((_, "down")) => EndpointMetrics::Down,
            Some((_, "all")) => EndpointMetrics::All,
            Some((_, "none")) => EndpointMetrics::None,
            Some((f, other)) => {
                cx.err(
                    f.span(),
                    format!("metrics_endpoints {other:?} is not \"all\", \"down\" or \"none\""),
                );
                EndpointMetrics::Down
            }
        },
        probe_source: s
            .probe_source
            .as_ref()
            .and_then(|a| match a.get_ref().parse() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    cx.err(
                        a.span(),
                        format!("probe_source {:?} is not an IP address", a.get_ref()),
                    );
                    None
                }
            }),
        health_resolver: raw
            .health
            .as_ref()
            .and_then(|h| h.get_ref().resolver.as_ref())
            .and_then(|r| match r.get_ref().parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    cx.err(
                        r.span(),
                        format!(
                            "[health] resolver {:?} is not an IP:port address (use [::1]:53 for IPv6)",
                            r.get_ref()
                        ),
                    );
                    None
                }
            }),
        nsid: match &s.nsid {
            Some(n) => nsid(cx, n),
            // Behind anycast, which instance answered: in fleet mode, its name.
            None => cluster
                .as_ref()
                .map(|c| c.name.as_bytes().to_vec().into_boxed_slice()),
        },
        cluster,
        workers: match &s.workers {
            None => 0,
            Some(w) if (0..=256).contains(w.get_ref()) => *w.get_ref() as usize,
            Some(w) => {
                cx.err(w.span(), "workers must be 0 (one per core) to 256");
                0
            }
        },
        config_hash: String::new(),
    }
}

/// The `[dnstap]` section.
fn dnstap(cx: &mut Ctx, d: &RawDnstap, base: &Path) -> DnstapSettings {
    let socket = base.join(d.socket.get_ref());
    if d.socket.get_ref().is_empty() {
        cx.err(d.socket.span(), "dnstap socket is empty");
    } else if socket.as_os_str().len() > MAX_SOCKET_PATH {
        cx.err(
            d.socket.span(),
            format!(
                "dnstap socket {} is longer than a Unix socket path may be ({MAX_SOCKET_PATH} bytes)",
                socket.display()
            ),
        );
    }
    let sample = match &d.sample {
        None => 1,
        Some(v) => match u32::try_from(*v.get_ref()) {
            Ok(n) if (1..=1_000_000).contains(&n) => n,
            _ => {
                cx.err(
                    v.span(),
                    format!(
                        "dnstap sample {} must be 1 (every query) to 1000000 (one in a million)",
                        v.get_ref()
                    ),
                );
                1
            }
        },
    };
    let queue_size = match &d.queue_size {
        None => DEFAULT_DNSTAP_QUEUE,
        Some(v) if (1..=1_000_000).contains(v.get_ref()) => *v.get_ref() as usize,
        Some(v) => {
            cx.err(
                v.span(),
                format!("dnstap queue_size {} must be 1 to 1000000", v.get_ref()),
            );
            DEFAULT_DNSTAP_QUEUE
        }
    };
    let mode = match d.mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
        None | Some((_, "bidirectional")) => FstrmMode::Bidirectional,
        Some((_, "unidirectional")) => FstrmMode::Unidirectional,
        Some((m, other)) => {
            cx.err(
                m.span(),
                format!("dnstap mode {other:?} is not \"bidirectional\" or \"unidirectional\""),
            );
            FstrmMode::Bidirectional
        }
    };
    let mut text = |v: &Option<S<String>>, what: &str| {
        let v = v.as_ref()?;
        if v.get_ref().len() > 255 {
            cx.err(v.span(), format!("dnstap {what} is longer than 255 bytes"));
        }
        Some(v.get_ref().as_bytes().to_vec().into_boxed_slice())
    };
    let identity = text(&d.identity, "identity");
    let version = text(&d.version, "version").or_else(|| {
        Some(
            concat!("meridian ", env!("CARGO_PKG_VERSION"))
                .as_bytes()
                .to_vec()
                .into_boxed_slice(),
        )
    });
    DnstapSettings {
        socket,
        sample,
        queue_size,
        mode,
        identity,
        version,
    }
}

/// `server.nsid`: text as it is, or `hex:` followed by an even number of hex digits.
fn nsid(cx: &mut Ctx, n: &S<String>) -> Option<Box<[u8]>> {
    let text = n.get_ref();
    let bytes = match text.strip_prefix("hex:") {
        Some(hex) => {
            let digits: Option<Vec<u8>> = (hex.len() % 2 == 0)
                .then(|| {
                    (0..hex.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                        .collect()
                })
                .flatten();
            match digits {
                Some(d) => d,
                None => {
                    cx.err(
                        n.span(),
                        format!("nsid {text:?}: `hex:` must be followed by pairs of hex digits"),
                    );
                    return None;
                }
            }
        }
        None => text.as_bytes().to_vec(),
    };
    if bytes.is_empty() || bytes.len() > 512 {
        cx.err(n.span(), "nsid must be 1 to 512 bytes");
        return None;
    }
    Some(bytes.into())
}

/// The `[rrl]` section.
fn rrl(cx: &mut Ctx, r: &RawRrl) -> RrlSettings {
    let mut out = RrlSettings::default();
    let mut num = |v: &Option<S<i64>>, max: i64, what: &str| -> Option<i64> {
        let v = v.as_ref()?;
        if (0..=max).contains(v.get_ref()) {
            Some(*v.get_ref())
        } else {
            cx.err(v.span(), format!("{what} must be 0 to {max}"));
            None
        }
    };
    if let Some(n) = num(&r.responses_per_second, 1_000_000, "responses_per_second") {
        out.responses_per_second = n as u32;
    }
    if let Some(n) = num(&r.slip, 100, "slip") {
        out.slip = n as u32;
    }
    if let Some(n) = num(&r.ipv4_prefix, 32, "ipv4_prefix") {
        out.ipv4_prefix = n as u8;
    }
    if let Some(n) = num(&r.ipv6_prefix, 128, "ipv6_prefix") {
        out.ipv6_prefix = n as u8;
    }
    if let Some(list) = &r.exempt {
        out.exempt = list
            .get_ref()
            .iter()
            .filter_map(|n| match n.get_ref().parse::<ipnet::IpNet>() {
                Ok(net) => Some(net.trunc()),
                Err(_) => {
                    cx.err(
                        n.span(),
                        format!("{:?} is not a network (CIDR)", n.get_ref()),
                    );
                    None
                }
            })
            .collect();
    }
    out
}

/// The `[cluster]` section (fleet mode).
fn cluster(cx: &mut Ctx, c: &S<RawCluster>, base: &Path) -> Option<ClusterSettings> {
    let span = c.span();
    let c = c.get_ref();
    if c.backend.get_ref() != "etcd" {
        cx.err(
            c.backend.span(),
            format!(
                "cluster backend {:?} is not supported (etcd)",
                c.backend.get_ref()
            ),
        );
    }
    if !cfg!(feature = "etcd") {
        cx.err(span.clone(), "this meridian was built without etcd support: build with `--features etcd` (needs protoc)");
    }
    if c.endpoints.get_ref().is_empty() {
        cx.err(c.endpoints.span(), "cluster endpoints is empty");
    }
    let mut endpoints = Vec::new();
    for e in c.endpoints.get_ref() {
        let v = e.get_ref().trim();
        let hostport = v
            .strip_prefix("http://")
            .or_else(|| v.strip_prefix("https://"))
            .unwrap_or(v);
        if hostport
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            cx.err(
                e.span(),
                format!("etcd endpoint {v:?} must be host:port (optionally http:// or https://)"),
            );
        }
        endpoints.push(v.to_string());
    }
    let name = c.name.get_ref().clone();
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    {
        cx.err(
            c.name.span(),
            "cluster name must be letters, digits, '-', '_' or '.'",
        );
    }
    let mut prefix = c
        .prefix
        .as_ref()
        .map_or("/meridian/".to_string(), |p| p.get_ref().clone());
    if !prefix.ends_with('/') {
        prefix.push('/');
    }
    let mut dur = |v: &Option<S<String>>, default: Duration, min: Duration| match v {
        None => default,
        Some(v) => match duration::parse(v.get_ref()) {
            Ok(d) if d >= min => d,
            Ok(_) => {
                cx.err(v.span(), format!("must be at least {min:?}"));
                default
            }
            Err(e) => {
                cx.err(v.span(), e);
                default
            }
        },
    };
    let dial_timeout = dur(
        &c.dial_timeout,
        Duration::from_secs(2),
        Duration::from_millis(100),
    );
    let request_timeout = dur(
        &c.request_timeout,
        Duration::from_secs(2),
        Duration::from_millis(100),
    );
    let lease_ttl = dur(
        &c.lease_ttl,
        Duration::from_secs(10),
        Duration::from_secs(2),
    );
    let quorum = match c.quorum.as_ref().map(|q| (q.get_ref(), q.span())) {
        None => Quorum::Majority,
        Some((toml::Value::String(s), _)) if s == "majority" => Quorum::Majority,
        Some((toml::Value::Integer(n), _)) if (1..=255).contains(n) => Quorum::AtLeast(*n as u8),
        Some((_, span)) => {
            cx.err(
                span,
                "quorum is \"majority\" or a number of observers (1 to 255)",
            );
            Quorum::Majority
        }
    };
    let path = |v: &Option<S<String>>| v.as_ref().map(|p| base.join(p.get_ref()));
    if c.password_file.is_some() != c.username.is_some() {
        cx.err(span.clone(), "username and password_file go together");
    }
    if c.cert_file.is_some() != c.key_file.is_some() {
        cx.err(span, "cert_file and key_file go together");
    }
    Some(ClusterSettings {
        endpoints,
        prefix,
        name,
        dial_timeout,
        request_timeout,
        lease_ttl,
        quorum,
        username: c.username.as_ref().map(|u| u.get_ref().clone()),
        password_file: path(&c.password_file),
        ca_file: path(&c.ca_file),
        cert_file: path(&c.cert_file),
        key_file: path(&c.key_file),
    })
}
