//! Binds UDP and TCP on each configured address (the same port for both, even when the
//! config asks for port 0) and runs the hickory server until shutdown.
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

use super::handler::DnsHandler;
use crate::metrics::Metrics;
use crate::routing::RoutingTable;

/// Per-connection buffer for TCP responses waiting to be written.
const TCP_RESPONSE_BUFFER: usize = 64;
/// How often to retry when port 0 gave UDP a port whose TCP twin is taken.
const BIND_ATTEMPTS: usize = 16;

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct ListenError {
    pub addr: SocketAddr,
    pub source: io::Error,
}

pub struct Listeners {
    pub server: Server<DnsHandler>,
    /// The addresses actually bound (port 0 resolved), one per configured address.
    pub bound: Vec<SocketAddr>,
}

/// Binds every address and starts serving. Fails if any address cannot be bound.
pub async fn listen(
    addrs: &[SocketAddr],
    table: Arc<ArcSwap<RoutingTable>>,
    metrics: Arc<Metrics>,
    tcp_idle_timeout: Duration,
) -> Result<Listeners, ListenError> {
    let mut server = Server::new(DnsHandler { table, metrics });
    let mut bound = Vec::new();
    for &addr in addrs {
        let (udp, tcp) = bind_pair(addr)
            .await
            .map_err(|source| ListenError { addr, source })?;
        bound.push(
            udp.local_addr()
                .map_err(|source| ListenError { addr, source })?,
        );
        server.register_socket(udp);
        server.register_listener(tcp, tcp_idle_timeout, TCP_RESPONSE_BUFFER);
    }
    Ok(Listeners { server, bound })
}

async fn bind_pair(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let mut last_err = None;
    for _ in 0..BIND_ATTEMPTS {
        let udp = UdpSocket::bind(addr).await?;
        let port = udp.local_addr()?.port();
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 && e.kind() == io::ErrorKind::AddrInUse => {
                last_err = Some(e)
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no free port")))
}
