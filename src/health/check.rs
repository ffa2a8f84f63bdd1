//! The probes: the only health code that touches the network. Each probe returns an outcome
//! and never outlives its check's timeout (the prober enforces the deadline around it).
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::Name;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::settings::{CheckKind, CheckSpec, TlsVerify};

/// Most of a response body read to look for `expect_body`.
const BODY_LIMIT: usize = 64 * 1024;

/// What one probe found.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeOutcome {
    pub ok: bool,
    /// Time to the response headers (http/https) or to the connection (tcp), when it got that far.
    pub latency: Option<Duration>,
    /// Why it failed, for logs and the admin API.
    pub error: Option<String>,
    /// The check's figure (`extract`), when it has one and the response held it.
    pub figure: Option<f64>,
}

impl ProbeOutcome {
    pub fn fail(error: impl Into<String>, latency: Option<Duration>) -> ProbeOutcome {
        ProbeOutcome {
            ok: false,
            latency,
            error: Some(error.into()),
            figure: None,
        }
    }

    /// The outcome for a probe the deadline cut short.
    pub fn timed_out(timeout: Duration) -> ProbeOutcome {
        ProbeOutcome::fail(format!("no answer within {timeout:?}"), None)
    }
}

/// Runs a check against a target, and resolves hostname targets to the addresses to probe.
/// Implemented by [`NetProbe`]; tests substitute scripted ones.
pub trait Probe: Send + Sync + 'static {
    fn probe(
        &self,
        addr: SocketAddr,
        check: &CheckSpec,
    ) -> impl std::future::Future<Output = ProbeOutcome> + Send;

    /// The addresses `name` resolves to now, or why it does not resolve.
    fn resolve(
        &self,
        name: &Name,
    ) -> impl std::future::Future<Output = Result<Vec<IpAddr>, String>> + Send {
        let why = format!("no resolver for {name}");
        async move { Err(why) }
    }
}

/// Resolves hostname endpoints for probes: through `[health] resolver` when set, else the
/// system's resolver (`/etc/resolv.conf`). Answers are cached for their TTL.
pub struct HostResolver {
    /// Why there is none, when it could not be set up (every hostname probe then fails
    /// with that reason).
    resolver: Result<TokioResolver, String>,
}

impl HostResolver {
    pub fn new(server: Option<SocketAddr>) -> HostResolver {
        let builder = match server {
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                Ok(TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                ))
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read the system's resolver configuration: {e}")),
        };
        let resolver = builder.and_then(|mut b| {
            // Every address of the name, A and AAAA: the target is up when any passes.
            b.options_mut().ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
            b.build()
                .map_err(|e| format!("cannot set up the resolver: {e}"))
        });
        HostResolver { resolver }
    }

    pub async fn resolve(&self, name: &Name) -> Result<Vec<IpAddr>, String> {
        let resolver = self.resolver.as_ref().map_err(Clone::clone)?;
        match resolver.lookup_ip(name.clone()).await {
            Ok(found) => Ok(found.iter().collect()),
            Err(e) => Err(format!("resolving {name}: {e}")),
        }
    }
}

/// Real probes over TCP, HTTP and HTTPS.
#[derive(Clone)]
pub struct NetProbe {
    verify: TlsConnector,
    insecure: TlsConnector,
    /// Address probes connect from (multi-homed hosts), else the kernel's choice.
    source: Option<std::net::IpAddr>,
    /// Resolves hostname endpoints (see [`NetProbe::with_resolver`]).
    resolver: Option<Arc<HostResolver>>,
}

impl NetProbe {
    pub fn new() -> NetProbe {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        let verify = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"));
        let insecure = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
                    .with_no_client_auth()
            })
            .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"));
        NetProbe {
            verify: TlsConnector::from(Arc::new(verify)),
            insecure: TlsConnector::from(Arc::new(insecure)),
            source: None,
            resolver: None,
        }
    }

    /// Probes connect from `source` when given.
    pub fn with_source(mut self, source: Option<std::net::IpAddr>) -> Self {
        self.source = source;
        self
    }

    /// Hostname endpoints resolve through `server` (`[health] resolver`), else through the
    /// system's resolver.
    pub fn with_resolver(mut self, server: Option<SocketAddr>) -> Self {
        self.resolver = Some(Arc::new(HostResolver::new(server)));
        self
    }

    async fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        let Some(src) = self.source else {
            return TcpStream::connect(addr).await;
        };
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(src, 0))?;
        socket.connect(addr).await
    }
}

impl Default for NetProbe {
    fn default() -> Self {
        NetProbe::new()
    }
}

impl Probe for NetProbe {
    async fn resolve(&self, name: &Name) -> Result<Vec<IpAddr>, String> {
        match &self.resolver {
            Some(r) => r.resolve(name).await,
            None => Err(format!("no resolver for {name}")),
        }
    }

    async fn probe(&self, addr: SocketAddr, check: &CheckSpec) -> ProbeOutcome {
        let start = Instant::now();
        let tcp = match self.connect(addr).await {
            Ok(s) => s,
            Err(e) => return ProbeOutcome::fail(format!("connect: {e}"), None),
        };
        let _ = tcp.set_nodelay(true);
        match check.kind {
            CheckKind::Tcp => ProbeOutcome {
                ok: true,
                latency: Some(start.elapsed()),
                error: None,
                figure: None,
            },
            CheckKind::Http => http(tcp, addr, check, start).await,
            CheckKind::Https => {
                let name = server_name(addr, check);
                let connector = match check.tls {
                    TlsVerify::Verify => &self.verify,
                    TlsVerify::InsecureSkipVerify => &self.insecure,
                };
                match connector.connect(name, tcp).await {
                    Ok(tls) => http(tls, addr, check, start).await,
                    Err(e) => ProbeOutcome::fail(format!("tls: {e}"), None),
                }
            }
        }
    }
}

/// SNI and the name the certificate must carry: `tls_server_name`, else the Host header, else
/// the address itself.
fn server_name(addr: SocketAddr, check: &CheckSpec) -> ServerName<'static> {
    let host = check.tls_server_name.clone().or_else(|| {
        check
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.split(':').next().unwrap_or(v).to_string())
    });
    host.and_then(|h| ServerName::try_from(h).ok())
        .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()))
}

async fn http<S>(io: S, addr: SocketAddr, check: &CheckSpec, start: Instant) -> ProbeOutcome
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(io)).await {
        Ok(pair) => pair,
        Err(e) => return ProbeOutcome::fail(format!("http handshake: {e}"), None),
    };
    // The connection task ends with the request or when the prober drops it at the deadline.
    let conn = tokio::spawn(conn);
    let outcome = request(&mut sender, addr, check, start).await;
    conn.abort();
    outcome
}

async fn request(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    check: &CheckSpec,
    start: Instant,
) -> ProbeOutcome {
    let mut req = hyper::Request::get(check.path.as_str())
        .header(
            "user-agent",
            concat!("meridian-prober/", env!("CARGO_PKG_VERSION")),
        )
        .header("connection", "close");
    if !check
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("host"))
    {
        req = req.header("host", addr.to_string());
    }
    for (k, v) in &check.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = match req.body(Empty::<Bytes>::new()) {
        Ok(r) => r,
        Err(e) => return ProbeOutcome::fail(format!("bad request: {e}"), None),
    };
    let resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => return ProbeOutcome::fail(format!("http: {e}"), None),
    };
    let latency = Some(start.elapsed());
    let status = resp.status().as_u16();
    if !check.expect_status.iter().any(|m| m.matches(status)) {
        return ProbeOutcome::fail(format!("status {status}"), latency);
    }
    let figure_spec = check.figure.as_ref();
    let headers = resp.headers().clone();
    let body = if check.expect_body.is_some() || figure_spec.is_some_and(|f| f.extract.needs_body())
    {
        match Limited::new(resp.into_body(), BODY_LIMIT).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return ProbeOutcome::fail(format!("body: {e}"), latency),
        }
    } else {
        Bytes::new()
    };
    if let Some(want) = &check.expect_body
        && !contains(&body, want.as_bytes())
    {
        return ProbeOutcome::fail(format!("body lacks {want:?}"), latency);
    }
    // A missing figure leaves the target up (it answered as a health check should) but not
    // promotable: the reason goes with the outcome.
    let (figure, error) = match figure_spec {
        None => (None, None),
        Some(spec) => {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            match super::figure::extract(&spec.extract, header, &body) {
                Ok(v) => (Some(v), None),
                Err(why) => (None, Some(format!("figure: {why}"))),
            }
        }
    };
    ProbeOutcome {
        ok: true,
        latency,
        error,
        figure,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Certificate verifier for `tls_insecure_skip_verify`: checks signatures, trusts any chain.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::settings::StatusMatch;

    fn check(kind: CheckKind) -> CheckSpec {
        CheckSpec {
            name: "t".into(),
            kind,
            path: "/healthz".into(),
            port: None,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            rise: 2,
            fall: 2,
            expect_status: vec![StatusMatch::Class(2)],
            expect_body: Some("OK".into()),
            headers: Vec::new(),
            tls_server_name: None,
            tls: TlsVerify::Verify,
            figure: None,
        }
    }

    /// A loopback backend answering every connection with `reply`; over TLS with a
    /// self-signed certificate for backend.test when `tls`, recording the SNI it saw.
    async fn backend(reply: &'static [u8], tls: bool) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sni = Arc::new(Mutex::new(Vec::new()));
        let acceptor = tls.then(|| {
            let ck = rcgen::generate_simple_self_signed(vec!["backend.test".to_string()]).unwrap();
            let cert = CertificateDer::from(ck.cert.der().to_vec());
            let key =
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let seen = sni.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    match acceptor {
                        Some(a) => {
                            let Ok(mut s) = a.accept(tcp).await else {
                                return;
                            };
                            if let Some(name) = s.get_ref().1.server_name() {
                                seen.lock().unwrap().push(name.to_string());
                            }
                            let _ = s.read(&mut buf).await;
                            let _ = s.write_all(reply).await;
                            let _ = s.shutdown().await;
                        }
                        None => {
                            let mut s = tcp;
                            let _ = s.read(&mut buf).await;
                            let _ = s.write_all(reply).await;
                        }
                    }
                });
            }
        });
        (addr, sni)
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK";

    #[tokio::test]
    async fn https_verifies_certificates_unless_told_not_to() {
        let (addr, sni) = backend(OK, true).await;
        let probe = NetProbe::new();
        let mut c = check(CheckKind::Https);
        c.headers = vec![("Host".into(), "backend.test".into())];
        let out = probe.probe(addr, &c).await;
        assert!(!out.ok, "a self-signed certificate must fail verification");
        assert!(out.error.unwrap().starts_with("tls:"));

        c.tls = TlsVerify::InsecureSkipVerify;
        let out = probe.probe(addr, &c).await;
        assert!(out.ok, "{:?}", out.error);
        assert!(out.latency.is_some());

        c.tls_server_name = Some("other.test".into());
        assert!(probe.probe(addr, &c).await.ok);
        assert_eq!(
            *sni.lock().unwrap(),
            vec!["backend.test".to_string(), "other.test".to_string()]
        );
    }

    #[tokio::test]
    async fn http_checks_status_and_body() {
        let probe = NetProbe::new();
        let (ok, _) = backend(OK, false).await;
        assert!(probe.probe(ok, &check(CheckKind::Http)).await.ok);

        let (wrong_body, _) =
            backend(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nNOPE", false).await;
        let out = probe.probe(wrong_body, &check(CheckKind::Http)).await;
        assert_eq!(out.error.as_deref(), Some("body lacks \"OK\""));

        let (teapot, _) = backend(
            b"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n",
            false,
        )
        .await;
        let out = probe.probe(teapot, &check(CheckKind::Http)).await;
        assert_eq!(out.error.as_deref(), Some("status 418"));
        let mut accept_418 = check(CheckKind::Http);
        accept_418.expect_status = vec![StatusMatch::Code(418)];
        accept_418.expect_body = None;
        assert!(probe.probe(teapot, &accept_418).await.ok);

        let (garbage, _) = backend(b"\x00\x01 not http\r\n\r\n", false).await;
        assert!(!probe.probe(garbage, &check(CheckKind::Http)).await.ok);
    }

    #[tokio::test]
    async fn tcp_is_a_connect_check() {
        let probe = NetProbe::new();
        let (open, _) = backend(OK, false).await;
        assert!(probe.probe(open, &check(CheckKind::Tcp)).await.ok);
        // A port nothing listens on: bind, note the port, close.
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let out = probe.probe(closed, &check(CheckKind::Tcp)).await;
        assert!(!out.ok);
        assert!(out.error.unwrap().starts_with("connect:"));
    }
}
