//! The probes: the only health code that touches the network. Each probe returns an outcome
//! and never outlives its check's timeout (the prober enforces the deadline around it).
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::{CheckKind, CheckSpec, TlsVerify};

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
}

impl ProbeOutcome {
    fn fail(error: impl Into<String>, latency: Option<Duration>) -> ProbeOutcome {
        ProbeOutcome {
            ok: false,
            latency,
            error: Some(error.into()),
        }
    }

    /// The outcome for a probe the deadline cut short.
    pub fn timed_out(timeout: Duration) -> ProbeOutcome {
        ProbeOutcome::fail(format!("no answer within {timeout:?}"), None)
    }
}

/// Runs a check against a target. Implemented by [`NetProbe`]; tests substitute scripted ones.
pub trait Probe: Send + Sync + 'static {
    fn probe(
        &self,
        addr: SocketAddr,
        check: &CheckSpec,
    ) -> impl std::future::Future<Output = ProbeOutcome> + Send;
}

/// Real probes over TCP, HTTP and HTTPS.
#[derive(Clone)]
pub struct NetProbe {
    verify: TlsConnector,
    insecure: TlsConnector,
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
        }
    }
}

impl Default for NetProbe {
    fn default() -> Self {
        NetProbe::new()
    }
}

impl Probe for NetProbe {
    async fn probe(&self, addr: SocketAddr, check: &CheckSpec) -> ProbeOutcome {
        let start = Instant::now();
        let tcp = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) => return ProbeOutcome::fail(format!("connect: {e}"), None),
        };
        let _ = tcp.set_nodelay(true);
        match check.kind {
            CheckKind::Tcp => ProbeOutcome {
                ok: true,
                latency: Some(start.elapsed()),
                error: None,
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
    if let Some(want) = &check.expect_body {
        let body = match Limited::new(resp.into_body(), BODY_LIMIT).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return ProbeOutcome::fail(format!("body: {e}"), latency),
        };
        if !contains(&body, want.as_bytes()) {
            return ProbeOutcome::fail(format!("body lacks {want:?}"), latency);
        }
    }
    ProbeOutcome {
        ok: true,
        latency,
        error: None,
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
