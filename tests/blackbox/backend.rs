//! A loopback HTTP backend whose behaviour a test switches at run time: healthy, failing
//! (500), slow (answers after the check timeout), hanging (accepts, never answers), refusing
//! connections, sending garbage, or resetting.
#![allow(
    unsafe_code,
    reason = "SO_LINGER through setsockopt, to reset connections"
)]
#![allow(dead_code)]
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Healthy = 0,
    Failing = 1,
    Slow = 2,
    Hanging = 3,
    Refusing = 4,
    Garbage = 5,
    Reset = 6,
    /// Healthy and failing on alternate requests.
    Flapping = 7,
}

impl Mode {
    fn from(v: u8) -> Mode {
        match v {
            0 => Mode::Healthy,
            1 => Mode::Failing,
            2 => Mode::Slow,
            3 => Mode::Hanging,
            4 => Mode::Refusing,
            5 => Mode::Garbage,
            6 => Mode::Reset,
            _ => Mode::Flapping,
        }
    }
}

pub struct Backend {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    /// Held while refusing: the listener is closed so connects get RST.
    listener: Arc<Mutex<Option<TcpListener>>>,
}

/// Requests served in flapping mode, across backends (each alternates on its own parity
/// well enough: what matters is that no two consecutive probes of one backend both fail).
static FLIPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How long a "slow" backend waits, and the longest any connection is held.
const SLOW: Duration = Duration::from_millis(1500);
const HOLD_MAX: Duration = Duration::from_secs(5);

impl Backend {
    pub fn start() -> Backend {
        Backend::start_at("127.0.0.1")
    }

    /// A backend on another loopback address (127.0.0.x), on an ephemeral port.
    pub fn start_at(ip: &str) -> Backend {
        let listener = TcpListener::bind((ip, 0)).expect("bind backend");
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let mode = Arc::new(AtomicU8::new(Mode::Healthy as u8));
        let stop = Arc::new(AtomicBool::new(false));
        let listener = Arc::new(Mutex::new(Some(listener)));
        let (m, s, l) = (mode.clone(), stop.clone(), listener.clone());
        std::thread::spawn(move || accept_loop(addr, m, s, l));
        Backend {
            addr,
            mode,
            stop,
            listener,
        }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn accept_loop(
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    listener: Arc<Mutex<Option<TcpListener>>>,
) {
    while !stop.load(Ordering::SeqCst) {
        let current = Mode::from(mode.load(Ordering::SeqCst));
        {
            let mut guard = listener.lock().expect("lock");
            match (current, guard.is_some()) {
                (Mode::Refusing, true) => *guard = None,
                (Mode::Refusing, false) => {}
                (_, false) => {
                    // std sets SO_REUSEADDR, so the port comes straight back.
                    if let Ok(l) = TcpListener::bind(addr) {
                        let _ = l.set_nonblocking(true);
                        *guard = Some(l);
                    }
                }
                (_, true) => {}
            }
            if let Some(l) = guard.as_ref()
                && let Ok((stream, _)) = l.accept()
            {
                let mode = match Mode::from(mode.load(Ordering::SeqCst)) {
                    Mode::Flapping if FLIPS.fetch_add(1, Ordering::SeqCst) % 2 == 1 => {
                        Mode::Failing
                    }
                    Mode::Flapping => Mode::Healthy,
                    m => m,
                };
                std::thread::spawn(move || serve(stream, mode));
                continue;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn serve(mut stream: TcpStream, mode: Mode) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(HOLD_MAX));
    let mut buf = [0u8; 2048];
    let _ = stream.read(&mut buf);
    let reply: &[u8] = match mode {
        Mode::Healthy => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK",
        Mode::Failing => b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\nFAIL",
        Mode::Slow => {
            std::thread::sleep(SLOW);
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK"
        }
        Mode::Hanging => {
            std::thread::sleep(HOLD_MAX);
            return;
        }
        Mode::Garbage => b"\x00\x01garbage that is not HTTP\r\n\r\n",
        Mode::Reset => {
            // Dropping the stream with SO_LINGER 0 sends a reset.
            set_linger_zero(&stream);
            return;
        }
        Mode::Refusing | Mode::Flapping => return,
    };
    let _ = stream.write_all(reply);
    let _ = stream.shutdown(Shutdown::Write);
}

/// Sets SO_LINGER 0 so closing the socket sends a reset.
fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    let linger: [i32; 2] = [1, 0];
    // SAFETY: setsockopt with a valid fd and a correctly sized linger struct.
    unsafe {
        setsockopt(
            fd,
            1,  /* SOL_SOCKET */
            13, /* SO_LINGER */
            linger.as_ptr().cast(),
            8,
        );
    }
}

unsafe extern "C" {
    fn setsockopt(fd: i32, level: i32, name: i32, value: *const std::ffi::c_void, len: u32) -> i32;
}
