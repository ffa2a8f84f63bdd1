//! DNS over TCP (RFC 7766): two-byte length framing, several queries per connection answered
//! in order, and the limits an Internet-facing server needs: a cap on concurrent
//! connections, an idle timeout that also cuts off a half-sent message, a total lifetime and a
//! query count per connection, and no buffering beyond one message. Each message goes
//! through the same full handler as UDP, and to dnstap when it is on.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::counters::Transport;
use super::dnstap::Tap;
use super::handler::respond_decided;
use super::snapshot::Store;
use crate::metrics::Metrics;
use crate::settings::TcpLimits;

/// Accepts connections until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    limits: TcpLimits,
    tap: Option<Arc<Tap>>,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    debug!(error = %e, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // At the cap: close at once rather than queue (the client retries elsewhere).
            metrics.tcp_rejected.inc();
            continue;
        };
        let (store, metrics, stop) = (store.clone(), metrics.clone(), stop.clone());
        let tap = tap.clone();
        tokio::spawn(async move {
            metrics.tcp_connections.inc();
            tokio::select! {
                _ = connection(stream, peer, &store, &metrics, limits, tap.as_deref()) => {}
                _ = stop.cancelled() => {}
            }
            metrics.tcp_connections.dec();
            drop(permit);
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    store: &Store,
    metrics: &Metrics,
    limits: TcpLimits,
    tap: Option<&Tap>,
) {
    let _ = stream.set_nodelay(true);
    // What dnstap reports as the server's address.
    let local = stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let end = Instant::now() + limits.total_timeout;
    let mut buf = Vec::with_capacity(512);
    for _ in 0..limits.max_queries {
        let deadline = (Instant::now() + limits.idle_timeout).min(end);
        let mut len = [0u8; 2];
        if !matches!(
            timeout_at(deadline, stream.read_exact(&mut len)).await,
            Ok(Ok(_))
        ) {
            return; // idle, closed, or a half-sent length
        }
        let len = usize::from(u16::from_be_bytes(len));
        buf.resize(len, 0);
        let deadline = (Instant::now() + limits.idle_timeout).min(end);
        if !matches!(
            timeout_at(deadline, stream.read_exact(&mut buf)).await,
            Ok(Ok(_))
        ) {
            return; // a message that stalled half-way
        }
        let received = tap.map(Tap::now);
        let snap = store.load_full();
        let (reply, decision) = respond_decided(&snap, &buf, None, peer, Transport::Tcp, metrics);
        if let (Some(tap), Some(received)) = (tap, received) {
            let routed = decision.map(|d| (&snap.table.compiled, d));
            tap.log(
                Transport::Tcp,
                peer,
                local,
                received,
                &buf,
                reply.as_deref(),
                routed,
            );
        }
        let Some(reply) = reply else {
            continue;
        };
        let Ok(len) = u16::try_from(reply.len()) else {
            return;
        };
        let mut frame = Vec::with_capacity(reply.len() + 2);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&reply);
        let deadline = (Instant::now() + limits.idle_timeout).min(end);
        if !matches!(
            timeout_at(deadline, stream.write_all(&frame)).await,
            Ok(Ok(_))
        ) {
            return;
        }
    }
    metrics.tcp_query_limit.inc();
}
