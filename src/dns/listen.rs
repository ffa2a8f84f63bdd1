//! Binds UDP and TCP on each configured address (the same port for both, even when the
//! config asks for port 0). UDP is served by batched worker threads (`udp.rs`), TCP by
//! `tcp.rs`; both answer through the same handler. (hickory's `Server` loop has no
//! connection cap, lifetime or per-connection query limit, so TCP has its own loop around
//! hickory's request parsing and response building.)
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::dnstap::Tap;
use super::snapshot::Store;
use super::tcp;
use super::udp;
use crate::metrics::Metrics;
use crate::settings::{RrlSettings, TcpLimits};

/// How often to retry when port 0 gave UDP a port whose TCP twin is taken.
const BIND_ATTEMPTS: usize = 16;

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct ListenError {
    pub addr: SocketAddr,
    pub source: io::Error,
}

pub struct Listeners {
    tcp: JoinSet<()>,
    cancel: CancellationToken,
    /// The addresses actually bound (port 0 resolved), one per configured address.
    pub bound: Vec<SocketAddr>,
    udp_workers: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Listeners {
    /// Stops accepting, lets in-flight work finish, and joins the UDP workers.
    pub async fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cancel.cancel();
        while self.tcp.join_next().await.is_some() {}
        for w in self.udp_workers.drain(..) {
            let _ = tokio::task::spawn_blocking(move || w.join()).await;
        }
    }
}

/// The number of UDP workers `workers = 0` means: one per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Binds every address and starts serving. Fails if any address cannot be bound.
pub async fn listen(
    addrs: &[SocketAddr],
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    limits: TcpLimits,
    rrl: &RrlSettings,
    workers: usize,
    tap: Option<Arc<Tap>>,
) -> Result<Listeners, ListenError> {
    let workers = if workers == 0 {
        default_workers()
    } else {
        workers
    };
    let cancel = CancellationToken::new();
    let mut tcp_tasks = JoinSet::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut bound = Vec::new();
    let mut udp_workers = Vec::new();
    for &addr in addrs {
        let err = |source| ListenError { addr, source };
        let (sockets, tcp) = bind_pair(addr, workers).await.map_err(err)?;
        bound.push(tcp.local_addr().map_err(err)?);
        tcp_tasks.spawn(tcp::serve(
            tcp,
            store.clone(),
            metrics.clone(),
            limits,
            tap.clone(),
            cancel.clone(),
        ));
        udp_workers.extend(
            udp::spawn(
                sockets,
                store.clone(),
                metrics.clone(),
                rrl,
                tap.clone(),
                stop.clone(),
            )
            .map_err(err)?,
        );
    }
    Ok(Listeners {
        tcp: tcp_tasks,
        cancel,
        bound,
        udp_workers,
        stop,
    })
}

async fn bind_pair(
    addr: SocketAddr,
    workers: usize,
) -> io::Result<(Vec<std::net::UdpSocket>, TcpListener)> {
    let mut last_err = None;
    for _ in 0..BIND_ATTEMPTS {
        let sockets = udp::bind(addr, workers)?;
        let port = sockets[0].local_addr()?.port();
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((sockets, tcp)),
            Err(e) if addr.port() == 0 && e.kind() == io::ErrorKind::AddrInUse => {
                last_err = Some(e)
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no free port")))
}
