//! Health: what a check is ([`CheckSpec`]), the probes that run it ([`check`]), the rise/fall
//! state machine ([`state`]), and the scheduler that drives them ([`prober`]).
pub mod check;
pub mod prober;
pub mod state;

use std::time::Duration;

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
