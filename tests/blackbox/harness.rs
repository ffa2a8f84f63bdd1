//! Starts the real `meridian` binary on ephemeral loopback ports and talks DNS to it.
#![allow(dead_code)]
#![allow(unsafe_code, reason = "kill(2) of the servers the tests start")]
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};

/// How long any single network operation in a test may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a server may take to log that it is ready.
const START_LIMIT: Duration = Duration::from_secs(20);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("geoip-fixtures").join(name)
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_meridian")
}

/// A private scratch directory under target/, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = repo().join("target").join("blackbox-tmp").join(format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write scratch file");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The example config with its listen addresses moved to ephemeral loopback ports and its
/// database path made absolute.
pub fn example_config() -> String {
    let text =
        std::fs::read_to_string(repo().join("config/meridian.toml")).expect("example config");
    with_test_paths(&text)
}

/// Rewrites `dns_listen` to ephemeral ports, and `../geoip-fixtures/` and the example's zone
/// files (`zones/`) to absolute paths.
pub fn with_test_paths(text: &str) -> String {
    let fixtures = repo().join("geoip-fixtures");
    let zones = format!("\"{}/", repo().join("config/zones").display());
    text.lines()
        .map(|l| {
            if l.trim_start().starts_with("dns_listen") {
                "dns_listen = [\"127.0.0.1:0\", \"[::1]:0\"]".to_string()
            } else if l.trim_start().starts_with("admin_listen") {
                "admin_listen = \"127.0.0.1:0\"".to_string()
            } else if l.trim_start().starts_with("file = \"zones/") {
                l.replacen("\"zones/", &zones, 1)
            } else {
                l.replace("../geoip-fixtures", &fixtures.display().to_string())
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A running server; killed on drop.
pub struct Meridian {
    pub child: Child,
    pub addrs: Vec<SocketAddr>,
    /// The admin API address, when the config has `admin_listen`.
    pub admin: Option<SocketAddr>,
    pub scratch: Scratch,
    pub config: PathBuf,
    /// Everything the server logged so far (stderr is drained so it never blocks).
    pub stderr: Arc<Mutex<String>>,
}

impl Meridian {
    pub fn start(config_text: &str) -> Meridian {
        Meridian::try_start(config_text).unwrap_or_else(|e| panic!("meridian did not start: {e}"))
    }

    /// Starts the server and waits for its `ready` log line; `Err` carries its stderr
    /// when it exits (or stays silent) instead.
    pub fn try_start(config_text: &str) -> Result<Meridian, String> {
        let scratch = Scratch::new();
        let config = scratch.write("meridian.toml", config_text);
        Meridian::start_with(scratch, config, &[])
    }

    /// Like [`Meridian::start`], waiting up to `limit` for it to be ready (a config whose
    /// GeoIP files take long to index in a debug build).
    pub fn start_within(config_text: &str, limit: Duration) -> Meridian {
        let scratch = Scratch::new();
        let config = scratch.write("meridian.toml", config_text);
        Meridian::launch(scratch, config, &[], limit)
            .unwrap_or_else(|e| panic!("meridian did not start: {e}"))
    }

    /// Starts on an existing config file, with extra environment variables.
    pub fn start_with(
        scratch: Scratch,
        config: PathBuf,
        env: &[(&str, &str)],
    ) -> Result<Meridian, String> {
        Meridian::launch(scratch, config, env, START_LIMIT)
    }

    fn launch(
        scratch: Scratch,
        config: PathBuf,
        env: &[(&str, &str)],
        limit: Duration,
    ) -> Result<Meridian, String> {
        let mut child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("MERIDIAN_ADMIN_TOKEN")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn meridian");
        let stderr_pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        // One reader keeps the whole log and passes the start-up lines on.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut waiting = true;
            for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
                // Kept first, so the log holds every line a start-up event was sent for.
                {
                    let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                    s.push_str(&line);
                    s.push('\n');
                }
                if waiting && let Some(event) = Startup::parse(&line) {
                    waiting = tx.send(event).is_ok();
                }
            }
        });
        let mut addrs = Vec::new();
        let mut admin = None;
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Startup::Ready) => break,
                Ok(Startup::Dns(addr)) => addrs.push(addr),
                Ok(Startup::Admin(addr)) => admin = Some(addr),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    // Give the reader a moment to collect the last lines.
                    std::thread::sleep(Duration::from_millis(100));
                    let err = stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    return Err(err);
                }
            }
        }
        Ok(Meridian {
            child,
            addrs,
            admin,
            scratch,
            config,
            stderr,
        })
    }

    /// Stops the server (SIGKILL) and starts it again on the same config and scratch dir.
    pub fn restart(mut self, env: &[(&str, &str)]) -> Meridian {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let scratch = std::mem::replace(&mut self.scratch, Scratch(PathBuf::new()));
        let config = self.config.clone();
        Meridian::start_with(scratch, config, env).unwrap_or_else(|e| panic!("restart failed: {e}"))
    }

    /// Stops the server the way an operator does (SIGTERM) and waits for it to exit, so
    /// that what it does on shutdown (writing out dnstap's queue) is done.
    pub fn terminate(&mut self) {
        // SAFETY: kill(2) on the child this harness spawned and has not yet reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + START_LIMIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(
                    status.success(),
                    "meridian exited with {status}:\n{}",
                    self.logs()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("meridian did not exit on SIGTERM:\n{}", self.logs());
    }

    pub fn logs(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The admin API address (panics when the config has none).
    pub fn admin(&self) -> SocketAddr {
        self.admin.expect("admin_listen configured")
    }

    /// The example config with a `state_dir` and an admin token file (holding `token`) in
    /// the scratch directory (`admin-token`).
    pub fn start_with_token(token: &str) -> Meridian {
        Meridian::start_with_token_edited(token, |text| text)
    }

    /// [`start_with_token`](Self::start_with_token), the config text edited by `edit`.
    pub fn start_with_token_edited(token: &str, edit: impl FnOnce(String) -> String) -> Meridian {
        let scratch = Scratch::new();
        let token_file = scratch.write("admin-token", &format!("{token}\n"));
        let text = example_config().replace(
            "[server]\n",
            &format!(
                "[server]\nstate_dir = \"{}\"\nadmin_token_file = \"{}\"\n",
                scratch.0.join("state").display(),
                token_file.display()
            ),
        );
        let config = scratch.write("meridian.toml", &edit(text));
        Meridian::start_with(scratch, config, &[]).unwrap_or_else(|e| panic!("start: {e}"))
    }

    pub fn start_example() -> Meridian {
        Meridian::start(&example_config())
    }

    /// The IPv4 loopback listener.
    pub fn v4(&self) -> SocketAddr {
        *self
            .addrs
            .iter()
            .find(|a| a.is_ipv4())
            .expect("an IPv4 listener")
    }

    /// The IPv6 loopback listener.
    pub fn v6(&self) -> SocketAddr {
        *self
            .addrs
            .iter()
            .find(|a| a.is_ipv6())
            .expect("an IPv6 listener")
    }
}

impl Drop for Meridian {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A query message with a random-enough ID, RD clear.
pub fn query(name: &str, rtype: RecordType) -> Message {
    static ID: AtomicU32 = AtomicU32::new(1);
    let mut m = Message::new(
        (ID.fetch_add(7919, Ordering::Relaxed) & 0xffff) as u16,
        MessageType::Query,
        OpCode::Query,
    );
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    m
}

/// Adds an OPT with the given payload size.
pub fn with_edns(mut m: Message, payload: u16) -> Message {
    let mut e = Edns::new();
    e.set_max_payload(payload);
    m.set_edns(e);
    m
}

/// Adds an OPT carrying ECS `addr/prefix`.
pub fn with_ecs(m: Message, addr: &str, prefix: u8) -> Message {
    let mut m = if m.edns.is_some() {
        m
    } else {
        with_edns(m, 1232)
    };
    let ip: IpAddr = addr.parse().expect("ecs addr");
    if let Some(e) = m.edns.as_mut() {
        e.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(ip, prefix, 0)));
    }
    m
}

pub fn encode(m: &Message) -> Vec<u8> {
    m.to_vec().expect("encode query")
}

/// Sends raw bytes over UDP; `None` when no answer came within the timeout.
pub fn udp_raw(server: SocketAddr, bytes: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let bind: SocketAddr = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    }
    .parse()
    .ok()?;
    let sock = UdpSocket::bind(bind).expect("bind udp client");
    sock.set_read_timeout(Some(timeout)).ok()?;
    sock.send_to(bytes, server).expect("send udp");
    let mut buf = vec![0u8; 65535];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

pub fn udp(server: SocketAddr, m: &Message) -> Message {
    let bytes = udp_raw(server, &encode(m), IO_TIMEOUT).expect("a UDP response");
    Message::from_vec(&bytes).expect("parse response")
}

/// Sends one length-prefixed message on an open TCP stream and reads one back.
pub fn tcp_exchange(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).expect("tcp write");
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).expect("tcp read length");
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).expect("tcp read body");
    buf
}

pub fn tcp_connect(server: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&server, IO_TIMEOUT).expect("tcp connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s
}

pub fn tcp(server: SocketAddr, m: &Message) -> Message {
    let mut s = tcp_connect(server);
    Message::from_vec(&tcp_exchange(&mut s, &encode(m))).expect("parse response")
}

/// The ECS option of a response, if any.
pub fn ecs_of(m: &Message) -> Option<ClientSubnet> {
    m.edns.as_ref().and_then(|e| {
        e.options().as_ref().iter().find_map(|(_, o)| match o {
            EdnsOption::Subnet(s) => Some(*s),
            _ => None,
        })
    })
}

/// Answer addresses, in order.
pub fn addrs(m: &Message) -> Vec<IpAddr> {
    m.answers.iter().filter_map(|r| r.data.ip_addr()).collect()
}

/// Runs the binary with arguments and returns its output.
pub fn run(args: &[&str], cwd: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run meridian")
}

/// A counter or gauge of Meridian's `/metrics` (0 when the series is absent).
pub fn metric(m: &Meridian, series: &str) -> u64 {
    let (status, body) = http(m.admin(), "GET", "/metrics", None, "");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| {
            v.trim()
                .parse()
                .unwrap_or_else(|e| panic!("{series}: {v:?}: {e}"))
        })
}

/// One HTTP/1.1 request to the admin API; returns (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect admin");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: meridian\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send request");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read response");
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

/// The body of a response sent with `Transfer-Encoding: chunked` (`/metrics` is streamed).
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            panic!("truncated chunked body: {rest:?}");
        };
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size:?}"));
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size..];
        rest = rest.strip_prefix("\r\n").expect("CRLF after a chunk");
    }
}

/// A GET with extra request headers; returns the response head (status line and headers,
/// names lower-cased) and the body's bytes as sent (unchunked, not decoded).
pub fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!("GET {path} HTTP/1.1\r\nHost: meridian\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send request");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read response");
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(&resp)));
    let head: String = String::from_utf8_lossy(&resp[..split])
        .lines()
        .map(|l| match l.split_once(':') {
            Some((name, value)) => format!("{}:{value}\n", name.to_ascii_lowercase()),
            None => format!("{l}\n"),
        })
        .collect();
    let mut rest = &resp[split + 4..];
    if !head.contains("\ntransfer-encoding: chunked") {
        return (head, rest.to_vec());
    }
    let mut body = Vec::new();
    loop {
        let line = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| panic!("truncated chunked body"));
        let size = String::from_utf8_lossy(&rest[..line]);
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size:?}"));
        rest = &rest[line + 2..];
        if size == 0 {
            return (head, body);
        }
        body.extend_from_slice(&rest[..size]);
        rest = rest[size..]
            .strip_prefix(b"\r\n")
            .expect("CRLF after a chunk");
    }
}

/// Like [`http`], parsing the body as JSON.
pub fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let (status, text) = http(addr, method, path, token, body);
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path}: body is not JSON ({e}): {text:?}"));
    (status, json)
}

/// Runs `dig` against a server; the tool must be installed (scripts/test installs it).
pub fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=3", "+tries=1"])
        .args(args)
        .output()
        .expect("dig must be installed: run scripts/test, which installs bind9-dnsutils");
    assert!(
        out.status.success(),
        "dig failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A start-up line of `meridian serve`'s log (target `meridian::startup`), text or JSON.
#[derive(Debug, PartialEq)]
pub enum Startup {
    Dns(SocketAddr),
    Admin(SocketAddr),
    Ready,
}

impl Startup {
    pub fn parse(line: &str) -> Option<Startup> {
        let (message, field) = if line.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            if v["target"] != "meridian::startup" {
                return None;
            }
            let field = v["addr"].as_str().or(v["url"].as_str()).map(str::to_owned);
            (v["message"].as_str()?.to_owned(), field)
        } else {
            let (_, rest) = line.split_once(" meridian::startup: ")?;
            let field = rest
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr=").or(w.strip_prefix("url=")))
                .map(str::to_owned);
            (rest.to_owned(), field)
        };
        let addr = || {
            let f = field.as_deref()?;
            f.strip_prefix("http://").unwrap_or(f).parse().ok()
        };
        if message.starts_with("serving DNS") {
            addr().map(Startup::Dns)
        } else if message.starts_with("admin API listening") {
            addr().map(Startup::Admin)
        } else {
            (message == "ready").then_some(Startup::Ready)
        }
    }
}

/// A real Prometheus server scraping `target` every second (job `scraped`, path `/metrics`),
/// on a free loopback port.
pub struct Prometheus {
    child: std::process::Child,
    pub url: String,
    /// Its HTTP API's address.
    pub addr: SocketAddr,
    _dir: Scratch,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    pub fn start(target: SocketAddr) -> Prometheus {
        let dir = Scratch::new();
        let config = dir.write(
            "prometheus.yml",
            &format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: scraped\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.0.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus must be installed: run scripts/test, which installs the prometheus package");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let p = Prometheus {
            child,
            url: format!("http://{addr}"),
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(addr).is_ok()
                && http(addr, "GET", "/-/ready", None, "").0 == 200
            {
                return p;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("prometheus did not become ready on {addr}");
    }
}
