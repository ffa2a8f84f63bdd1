//! The kernel's share of a UDP DNS server's cost, measured alone: a reflector that reads
//! queries and writes them back as empty authoritative NOERROR answers, in batches of 64 per
//! system call (`recvmmsg`/`sendmmsg`, as Meridian's UDP workers do), and does nothing else.
//! `bench/run.sh` runs it as the `floor` row: no server that uses the kernel's UDP path can
//! spend less CPU per query than this on the same machine.
//!
//! Usage: `udp_floor 127.0.0.1:PORT`
#![allow(
    unsafe_code,
    reason = "recvmmsg/sendmmsg over buffers it owns, like the UDP worker"
)]
use std::mem::{MaybeUninit, size_of};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

const BATCH: usize = 64;
const SIZE: usize = 4096;

fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| std::io::Error::other("usage: udp_floor ADDR:PORT"))?;
    let socket = UdpSocket::bind(addr)?;
    let fd = socket.as_raw_fd();
    let mut bufs = vec![[0u8; SIZE]; BATCH];
    // SAFETY: all-zero sockaddr_storage, iovec and mmsghdr are valid (empty) values.
    let mut addrs: Vec<libc::sockaddr_storage> =
        vec![unsafe { MaybeUninit::zeroed().assume_init() }; BATCH];
    let mut iov: Vec<libc::iovec> = vec![unsafe { MaybeUninit::zeroed().assume_init() }; BATCH];
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { MaybeUninit::zeroed().assume_init() }; BATCH];
    loop {
        for i in 0..BATCH {
            iov[i] = libc::iovec {
                iov_base: bufs[i].as_mut_ptr().cast(),
                iov_len: SIZE,
            };
            let hdr = &mut msgs[i].msg_hdr;
            hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
            hdr.msg_iov = &mut iov[i];
            hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at buffers above that outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            continue;
        }
        let n = n as usize;
        for i in 0..n {
            let len = msgs[i].msg_len as usize;
            iov[i].iov_len = len;
            if len > 3 {
                bufs[i][2] |= 0x84; // QR, AA
                bufs[i][3] &= 0xF0; // NOERROR
            }
        }
        let mut sent = 0;
        while sent < n {
            // SAFETY: as above; the headers now describe the replies.
            let r = unsafe { libc::sendmmsg(fd, msgs[sent..].as_mut_ptr(), (n - sent) as u32, 0) };
            if r <= 0 {
                break;
            }
            sent += r as usize;
        }
    }
}
