//! The dnstap writer: one task that connects to the collector's Unix socket, opens a Frame
//! Streams session, and writes the events the DNS path queued, in batches. When the collector
//! is absent it retries with backoff (events wait in the bounded queue meanwhile, and what does
//! not fit is dropped and counted by the DNS path); when the collector goes away (a failed
//! write, or end of file on the socket, which a unidirectional collector never writes to) it
//! counts what was lost and reconnects. On shutdown it writes what is queued and a STOP.
//!
//! The writer waits on the queue only when it found it empty. While queries keep coming it
//! takes what gathered every [`GATHER`] instead, so that a busy DNS path does not wake it (a
//! system call and a context switch) for every query it logs.
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::frame::{self, Control};
use super::{Encoder, Event, Origin};
use crate::metrics::Metrics;
use crate::settings::{DnstapSettings, FstrmMode};

/// Most events taken off the queue per write.
const BATCH: usize = 1024;
/// Under load, how long the writer lets events gather between looks at the queue.
const GATHER: Duration = Duration::from_millis(5);
/// First and longest wait between connection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a bidirectional collector may take to answer READY or STOP.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a session ended.
enum Ended {
    /// Shutdown, or every sender gone: do not reconnect.
    Stopped,
    /// The collector went away or misbehaved: reconnect.
    Lost(io::Error),
}

/// Runs until `stop` is cancelled (then writes what is queued and a STOP) or every [`super::Tap`]
/// is gone.
pub async fn run(
    settings: DnstapSettings,
    mut rx: mpsc::Receiver<Event>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut encoder = Encoder::new(Origin {
        identity: settings.identity.as_deref().map(<[u8]>::to_vec),
        version: settings.version.as_deref().map(<[u8]>::to_vec),
    });
    let mut backoff = BACKOFF_MIN;
    let mut warned = false;
    loop {
        let stream = tokio::select! {
            // A connection made as shutdown begins still gets what is queued, and a STOP.
            biased;
            r = UnixStream::connect(&settings.socket) => r,
            _ = stop.cancelled() => return,
        };
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                if !warned {
                    warn!(socket = %settings.socket.display(), error = %e,
                        "dnstap collector not reachable; retrying");
                    warned = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        metrics.dnstap_connections.inc();
        metrics.dnstap_connected.set(1);
        info!(socket = %settings.socket.display(), "dnstap collector connected");
        let (ended, wrote) = session(
            stream,
            settings.mode,
            &mut encoder,
            &mut rx,
            &metrics,
            &stop,
        )
        .await;
        metrics.dnstap_connected.set(0);
        match ended {
            Ended::Stopped => return,
            Ended::Lost(e) => {
                warn!(socket = %settings.socket.display(), error = %e,
                    "dnstap collector connection lost; reconnecting");
                warned = true;
                // A session that carried data starts the backoff over; one the collector
                // refused at once keeps it growing.
                if wrote {
                    backoff = BACKOFF_MIN;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// What the session loop does next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The queue was empty: wait on it.
    Wait,
    /// The last look found events: let more gather, then look again.
    Gather,
    /// The last batch was full: look again at once.
    Now,
}

async fn session(
    stream: UnixStream,
    mode: FstrmMode,
    encoder: &mut Encoder,
    rx: &mut mpsc::Receiver<Event>,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> (Ended, bool) {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = Vec::with_capacity(256 * 1024);
    if let Err(e) = open(&mut rd, &mut wr, mode, &mut buf).await {
        return (Ended::Lost(e), false);
    }
    let mut wrote = false;
    let mut peek = [0u8; 64];
    let mut next = Next::Wait;
    let mut first = None;
    loop {
        if next != Next::Now {
            // A collector has nothing to say during a session: end of file or an error means
            // it is gone; anything else is ignored.
            let gone = |r: io::Result<usize>| match r {
                Ok(0) => Some(io::Error::from(io::ErrorKind::UnexpectedEof)),
                Ok(_) => None,
                Err(e) => Some(e),
            };
            let stopping = tokio::select! {
                biased;
                _ = stop.cancelled() => true,
                r = rd.read(&mut peek) => match gone(r) {
                    Some(e) => return (Ended::Lost(e), wrote),
                    None => continue,
                },
                _ = tokio::time::sleep(GATHER), if next == Next::Gather => false,
                event = rx.recv(), if next == Next::Wait => match event {
                    Some(event) => {
                        first = Some(event);
                        false
                    }
                    // Every Tap is gone: nothing more will come.
                    None => true,
                },
            };
            if stopping {
                return (close(rd, wr, mode, encoder, rx, metrics).await, wrote);
            }
        }
        buf.clear();
        let (mut events, mut messages) = (0, 0);
        if let Some(event) = first.take() {
            messages += encoder.encode(event, &mut buf);
            events += 1;
        }
        while events < BATCH {
            let Ok(event) = rx.try_recv() else { break };
            messages += encoder.encode(event, &mut buf);
            events += 1;
        }
        next = match events {
            0 => Next::Wait,
            BATCH => Next::Now,
            _ => Next::Gather,
        };
        if events == 0 {
            continue;
        }
        if let Err(e) = wr.write_all(&buf).await {
            metrics.dnstap_dropped_lost.inc_by(events as u64);
            return (Ended::Lost(e), wrote);
        }
        wrote = true;
        metrics.dnstap_messages.inc_by(messages);
    }
}

/// Starts a session: START, after the READY/ACCEPT handshake in bidirectional mode.
async fn open(
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    mode: FstrmMode,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    buf.clear();
    if mode == FstrmMode::Bidirectional {
        frame::control(Control::Ready, buf);
        wr.write_all(buf).await?;
        buf.clear();
        let accept = timeout(HANDSHAKE_TIMEOUT, read_control(rd))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        if !(accept.kind == Control::Accept && accept.dnstap) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the collector did not accept protobuf:dnstap.Dnstap",
            ));
        }
    }
    frame::control(Control::Start, buf);
    wr.write_all(buf).await
}

/// Ends a session on shutdown: the queued events, STOP, and in bidirectional mode the
/// collector's FINISH.
async fn close(
    mut rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    mode: FstrmMode,
    encoder: &mut Encoder,
    rx: &mut mpsc::Receiver<Event>,
    metrics: &Metrics,
) -> Ended {
    let mut buf = Vec::new();
    let (mut events, mut messages) = (0u64, 0);
    while let Ok(event) = rx.try_recv() {
        messages += encoder.encode(event, &mut buf);
        events += 1;
    }
    frame::control(Control::Stop, &mut buf);
    if wr.write_all(&buf).await.is_err() {
        metrics.dnstap_dropped_lost.inc_by(events);
        return Ended::Stopped;
    }
    metrics.dnstap_messages.inc_by(messages);
    if mode == FstrmMode::Bidirectional {
        // The FINISH only says the collector has read everything; nothing depends on it.
        let _finish = timeout(HANDSHAKE_TIMEOUT, read_control(&mut rd)).await;
    }
    let _ = wr.shutdown().await;
    Ended::Stopped
}

/// Reads one control frame from the collector.
async fn read_control(rd: &mut OwnedReadHalf) -> io::Result<frame::Received> {
    let mut head = [0u8; 8];
    rd.read_exact(&mut head).await?;
    let escape = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    if escape != 0 || !(4..=frame::MAX_CONTROL).contains(&len) {
        return Err(bad("expected a Frame Streams control frame"));
    }
    let mut body = vec![0u8; len];
    rd.read_exact(&mut body).await?;
    frame::parse_control(&body).ok_or_else(|| bad("unreadable Frame Streams control frame"))
}
