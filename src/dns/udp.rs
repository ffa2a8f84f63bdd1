//! UDP serving: one `SO_REUSEPORT` socket per worker thread, each reading and writing in
//! batches (`recvmmsg`/`sendmmsg`: one system call for up to [`BATCH`] packets each way).
//! Each packet goes to the fast path, else to the full handler. Workers load the routing
//! table once per batch and never wait on anything but their socket. With dnstap on, a
//! sampled query and what was sent back are copied to its queue, which is never waited on
//! (see [`super::dnstap`]).
#![allow(unsafe_code, reason = "recvmmsg/sendmmsg over buffers the worker owns")]
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tracing::warn;

use super::counters::Transport;
use super::dnstap::Tap;
use super::rrl::{self, Limiter, Verdict};
use super::snapshot::Store;
use super::wire::Scanned;
use super::{fast, handler};
use crate::clock;
use crate::geo::Stage;
use crate::metrics::Metrics;
use crate::routing::query::Decision;
use crate::settings::RrlSettings;

/// Packets per system call.
pub const BATCH: usize = 64;
/// Largest query read (EDNS queries are far smaller; a larger one is dropped as truncated).
const RECV_SIZE: usize = 4096;
/// How often a blocked worker looks at the shutdown flag.
const WAKE: Duration = Duration::from_millis(200);

/// Binds `workers` sockets on `addr` (all on the same port, which port 0 picks once).
pub fn bind(addr: SocketAddr, workers: usize) -> io::Result<Vec<UdpSocket>> {
    let mut sockets = Vec::with_capacity(workers);
    let mut addr = addr;
    for _ in 0..workers.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_port(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        // Room for bursts while a worker is busy.
        let _ = socket.set_recv_buffer_size(4 << 20);
        let _ = socket.set_send_buffer_size(4 << 20);
        socket.set_read_timeout(Some(WAKE))?;
        socket.bind(&SockAddr::from(addr))?;
        if addr.port() == 0 {
            addr = socket.local_addr()?.as_socket().unwrap_or(addr);
        }
        sockets.push(socket.into());
    }
    Ok(sockets)
}

/// Starts one worker thread per socket.
pub fn spawn(
    sockets: Vec<UdpSocket>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    rrl: &RrlSettings,
    tap: Option<Arc<Tap>>,
    stop: Arc<AtomicBool>,
) -> io::Result<Vec<JoinHandle<()>>> {
    sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            let (store, metrics, stop) = (store.clone(), metrics.clone(), stop.clone());
            let tap = tap.clone();
            let limiter = Limiter::new(rrl);
            std::thread::Builder::new()
                .name(format!("meridian-udp-{i}"))
                .spawn(move || {
                    Worker::new(socket, limiter).run(&store, &metrics, tap.as_deref(), &stop)
                })
        })
        .collect()
}

/// A worker's buffers, allocated once.
struct Worker {
    socket: UdpSocket,
    bufs: Vec<[u8; RECV_SIZE]>,
    addrs: Vec<libc::sockaddr_storage>,
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    out: Vec<Vec<u8>>,
    out_iov: Vec<libc::iovec>,
    out_msgs: Vec<libc::mmsghdr>,
    limiter: Option<Limiter>,
    scratch: Vec<u8>,
    /// Per received packet: its sender, and what the fast path made of it (a query it
    /// takes, or the scan the full handler reuses).
    srcs: Vec<Option<SocketAddr>>,
    parsed: Vec<Result<fast::Parsed, Option<Scanned>>>,
}

// The raw pointers in the iovec/mmsghdr arrays point into the worker's own buffers.
unsafe impl Send for Worker {}

impl Worker {
    fn new(socket: UdpSocket, limiter: Option<Limiter>) -> Worker {
        // SAFETY: zeroed sockaddr_storage, iovec and mmsghdr are valid (empty) values.
        let zero_addr: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
        let zero_iov: libc::iovec = unsafe { MaybeUninit::zeroed().assume_init() };
        let zero_msg: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
        Worker {
            socket,
            bufs: vec![[0u8; RECV_SIZE]; BATCH],
            addrs: vec![zero_addr; BATCH],
            iov: vec![zero_iov; BATCH],
            msgs: vec![zero_msg; BATCH],
            out: (0..BATCH).map(|_| Vec::with_capacity(1500)).collect(),
            out_iov: vec![zero_iov; BATCH],
            out_msgs: vec![zero_msg; BATCH],
            limiter,
            scratch: Vec::with_capacity(512),
            srcs: vec![None; BATCH],
            parsed: vec![Err(None); BATCH],
        }
    }

    /// Points every receive header at its buffer and address slot. The buffers are heap
    /// allocations owned by `self` that never move, so this is done once; afterwards only the
    /// fields the kernel writes back need resetting, and only for the headers it used.
    fn point_headers(&mut self) {
        for i in 0..BATCH {
            self.iov[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: RECV_SIZE,
            };
            let hdr = &mut self.msgs[i].msg_hdr;
            hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
            hdr.msg_iov = &mut self.iov[i];
            hdr.msg_iovlen = 1;
        }
    }

    fn run(mut self, store: &Store, metrics: &Metrics, tap: Option<&Tap>, stop: &AtomicBool) {
        let fd = self.socket.as_raw_fd();
        // What dnstap reports as the server's address (the bound one).
        let local = self
            .socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let started = clock::monotonic();
        let slipped = metrics.rrl.with_label_values(&["slipped"]);
        let dropped = metrics.rrl.with_label_values(&["dropped"]);
        self.point_headers();
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: every header points at live buffers owned by `self`, sized as declared.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    self.msgs.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n <= 0 {
                let err = io::Error::last_os_error();
                if !matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) {
                    warn!(error = %err, "UDP receive failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            let n = n as usize;
            let received = tap.map(Tap::now);
            let snap = store.load();
            let second = if self.limiter.is_some() {
                started.elapsed().as_secs()
            } else {
                0
            };
            // Passes over the batch, so that the GeoIP lookups' cache misses overlap instead
            // of coming one after another: parse every query (which starts loading its GeoIP
            // index slot), start loading what those slots point to, then what that points to
            // (crowded IPv6 slots have two levels), answer.
            for i in 0..n {
                self.srcs[i] = None;
                self.parsed[i] = Err(None);
                if self.msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                    continue;
                }
                let Some(src) = sockaddr(&self.addrs[i]) else {
                    continue;
                };
                self.srcs[i] = Some(src);
                let req = &self.bufs[i][..self.msgs[i].msg_len as usize];
                self.parsed[i] = fast::parse(&snap, req, src.ip());
            }
            for stage in [Stage::Next, Stage::Last] {
                for parsed in self.parsed[..n].iter().flatten() {
                    fast::prefetch(&snap, parsed, stage);
                }
            }
            let mut replies = 0;
            for i in 0..n {
                let Some(src) = self.srcs[i] else {
                    continue;
                };
                let req = &self.bufs[i][..self.msgs[i].msg_len as usize];
                let out = &mut self.out[replies];
                let mut decision = None;
                let scanned = match &self.parsed[i] {
                    Ok(parsed) => match fast::respond(&snap, req, parsed, metrics, out) {
                        Some(d) => {
                            decision = d;
                            None
                        }
                        None => Some(Some(parsed.scanned())),
                    },
                    Err(scanned) => Some(*scanned),
                };
                // What dnstap logs of this query, once its response is known.
                let log = |response: Option<&[u8]>, decision: Option<Decision>| {
                    if let (Some(tap), Some(received)) = (tap, received) {
                        let routed = decision.map(|d| (&snap.table.compiled, d));
                        tap.log(Transport::Udp, src, local, received, req, response, routed);
                    }
                };
                if let Some(scanned) = scanned {
                    let (bytes, d) =
                        handler::respond_decided(&snap, req, scanned, src, Transport::Udp, metrics);
                    decision = d;
                    match bytes {
                        Some(bytes) => *out = bytes,
                        None => {
                            log(None, decision);
                            continue;
                        }
                    }
                }
                if let Some(limiter) = &mut self.limiter {
                    match limiter.check(src.ip(), out, second) {
                        Verdict::Send => {}
                        Verdict::Slip => {
                            slipped.inc();
                            rrl::slip(out, &mut self.scratch);
                            std::mem::swap(out, &mut self.scratch);
                        }
                        Verdict::Drop => {
                            dropped.inc();
                            log(None, decision);
                            continue;
                        }
                    }
                }
                log(Some(out), decision);
                self.out_iov[replies] = libc::iovec {
                    iov_base: out.as_mut_ptr().cast(),
                    iov_len: out.len(),
                };
                let hdr = &mut self.out_msgs[replies].msg_hdr;
                hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                hdr.msg_namelen = self.msgs[i].msg_hdr.msg_namelen;
                hdr.msg_iov = &mut self.out_iov[replies];
                hdr.msg_iovlen = 1;
                hdr.msg_control = std::ptr::null_mut();
                hdr.msg_controllen = 0;
                hdr.msg_flags = 0;
                replies += 1;
            }
            drop(snap);
            for msg in &mut self.msgs[..n] {
                // The kernel wrote the sender's address length here: make room again.
                msg.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
            }
            let mut sent = 0;
            while sent < replies {
                // SAFETY: as above, for the reply headers and buffers.
                let r = unsafe {
                    libc::sendmmsg(
                        fd,
                        self.out_msgs[sent..].as_mut_ptr(),
                        (replies - sent) as u32,
                        0,
                    )
                };
                if r <= 0 {
                    let err = io::Error::last_os_error();
                    if err.kind() != io::ErrorKind::Interrupted {
                        // A full socket buffer or an unreachable client: drop the rest, as
                        // a single sendto would.
                        break;
                    }
                    continue;
                }
                sent += r as usize;
            }
        }
    }
}

fn sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    // SAFETY: the kernel filled `storage` with a sockaddr of the family it names.
    unsafe {
        match i32::from(storage.ss_family) {
            libc::AF_INET => {
                let a = &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
            }
            libc::AF_INET6 => {
                let a = &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::from((ip, u16::from_be(a.sin6_port))))
            }
            _ => None,
        }
    }
}
