//! Interop with real DNS software other than BIND's `dig` (see `dig.rs` for that):
//!
//! - Knot's `kdig` as a second independent client;
//! - Unbound as a recursive resolver in front of Meridian, forwarding ECS: a client behind a
//!   real resolver gets its region, and the resolver caches by the scope Meridian returns;
//! - NSD as a reference authoritative server: the same static zone, the same queries, the
//!   responses compared field by field, with every deliberate difference listed.
//!
//! `kdig`, `unbound` and `nsd` must be installed (scripts/test installs knot-dnsutils, unbound
//! and nsd). Each daemon runs in the foreground on a free loopback port with its own config in
//! a scratch directory, in its own process group, killed when the test ends.
#![allow(unsafe_code, reason = "kill(2) of the process groups the tests start")]
use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::SOA as SoaData;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::harness::*;

// ---------------------------------------------------------------------------------------------
// Daemons on free loopback ports

/// A loopback port that was free for both UDP and TCP a moment ago. Another process may take
/// it before the daemon binds it; the `start_*` functions retry on a fresh port when it does.
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp :0");
        let port = tcp.local_addr().expect("local addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A foreground daemon in its own process group (NSD forks workers); the whole group is
/// killed on drop. Its stdout and stderr go to a log file in the scratch directory.
pub(super) struct Daemon {
    child: Child,
    pub(super) addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Daemon {
    pub(super) fn spawn(mut cmd: Command, addr: SocketAddr, log: std::path::PathBuf) -> Daemon {
        let out = std::fs::File::create(&log).expect("create daemon log");
        let err = out.try_clone().expect("clone log handle");
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {program} ({e}): run scripts/test, which installs it")
            });
        Daemon { child, addr, log }
    }

    pub(super) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the daemon answers `probe` over UDP; `Err` with its log when it exits first
    /// or stays silent for 15 seconds.
    fn wait_answering(&mut self, probe: &Message) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let bytes = encode(probe);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}:\n{}", self.log()));
            }
            if udp_raw(self.addr, &bytes, Duration::from_millis(200)).is_some() {
                return Ok(());
            }
        }
        Err(format!("not answering after 15s:\n{}", self.log()))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a process group we created (process_group(0) above).
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Runs a config checker (`unbound-checkconf`, `nsd-checkconf`, `nsd-checkzone`) and fails
/// the test with its message when it rejects the file.
pub(super) fn check_with(tool: &str, args: &[&str]) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} ({e}): run scripts/test, which installs it"));
    assert!(
        out.status.success(),
        "{tool} {args:?} rejected the config:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts a daemon on a free port, retrying on another port when it exits before answering
/// (the port was taken between `free_port` and its bind).
pub(super) fn start_on_free_port(
    what: &str,
    probe: &Message,
    mut launch: impl FnMut(u16) -> Daemon,
) -> Daemon {
    let mut errors = Vec::new();
    for _ in 0..3 {
        let mut d = launch(free_port());
        match d.wait_answering(probe) {
            Ok(()) => return d,
            Err(e) => errors.push(e),
        }
    }
    panic!("{what} did not start:\n{}", errors.join("\n---\n"));
}

/// Unbound as a recursive resolver on loopback: `example.com` is a stub zone pointing at
/// `meridian`, and ECS is sent to it.
///
/// What matters in the config (unbound 1.17, `man unbound.conf`):
/// - `module-config: "subnetcache iterator"`: the ECS module must come first; the validator is
///   left out (no trust anchor, no DNSSEC here).
/// - `send-client-subnet: 127.0.0.1`: the ECS allow-list is by address (Meridian's port does not
///   matter); without it Unbound sends no ECS to Meridian at all.
/// - `client-subnet-always-forward: yes`: forward the client's own ECS option (the test clients
///   send `+subnet`) and skip the regular (non-ECS) cache for such queries.
/// - `max-client-subnet-ipv4: 24`: the most of a client's address Unbound passes on (the default,
///   written out because the test relies on /24 sources).
/// - `do-not-query-localhost: no`: Unbound refuses to query 127.0.0.0/8 upstreams otherwise.
/// - `username: ""`, `chroot: ""`, `pidfile: ""`, `do-daemonize: no`, `use-syslog: no`,
///   `logfile: ""`: run unprivileged-style in the foreground, logging to stderr, touching
///   nothing outside the scratch directory.
fn start_unbound(scratch: &Scratch, meridian: SocketAddr) -> Daemon {
    start_unbound_with(scratch, meridian, &[])
}

/// [`start_unbound`], validating with these DS records as example.com's trust anchors when
/// there are any (`val-log-level: 2` logs why an answer failed validation).
pub fn start_unbound_with(scratch: &Scratch, meridian: SocketAddr, ds: &[String]) -> Daemon {
    let (modules, validation) = if ds.is_empty() {
        ("subnetcache iterator", String::new())
    } else {
        let anchors: String = ds
            .iter()
            .map(|d| format!("  trust-anchor: \"{d}\"\n"))
            .collect();
        (
            "subnetcache validator iterator",
            format!("  val-log-level: 2\n{anchors}"),
        )
    };
    start_on_free_port("unbound", &query("localhost.", RecordType::A), |port| {
        let conf = scratch.write(
            "unbound.conf",
            &format!(
                r#"server:
  interface: 127.0.0.1
  port: {port}
  do-ip6: no
  num-threads: 1
  do-daemonize: no
  use-syslog: no
  logfile: ""
  verbosity: 1
  username: ""
  chroot: ""
  directory: "{dir}"
  pidfile: ""
  module-config: "{modules}"
  send-client-subnet: 127.0.0.1
  client-subnet-always-forward: yes
  max-client-subnet-ipv4: 24
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  qname-minimisation: no
  harden-referral-path: no
  prefetch: no
{validation}
stub-zone:
  name: "example.com"
  stub-addr: {ip}@{mport}
"#,
                dir = scratch.0.display(),
                ip = meridian.ip(),
                mport = meridian.port(),
            ),
        );
        let conf = conf.to_str().expect("utf-8 path");
        check_with("unbound-checkconf", &[conf]);
        let mut cmd = Command::new("unbound");
        cmd.args(["-d", "-c", conf]);
        Daemon::spawn(
            cmd,
            SocketAddr::from(([127, 0, 0, 1], port)),
            scratch.0.join("unbound.log"),
        )
    })
}

/// NSD serving `zone_text` as example.com.
///
/// What matters in the config (NSD 4.6, `man nsd.conf`):
/// - `minimal-responses: yes`: NSD otherwise adds the apex NS set to the authority section and
///   their addresses to the additional section of every positive answer; Meridian sends minimal
///   responses, so without it every answer would differ.
/// - `database: ""`: no nsd.db; `zonelistfile`, `xfrdfile`, `xfrdir`, `pidfile`, `logfile` in
///   the scratch directory; `username: ""`: no privilege drop (and no chroot).
/// - `server-count: 1`, `ip-address: 127.0.0.1` plus `port`: one worker on our loopback port.
fn start_nsd(scratch: &Scratch, zone_text: &str) -> Daemon {
    let zone = scratch.write("example.com.zone", zone_text);
    check_with(
        "nsd-checkzone",
        &["example.com", zone.to_str().expect("utf-8 path")],
    );
    start_on_free_port("nsd", &query("example.com.", RecordType::SOA), |port| {
        let dir = scratch.0.display();
        let conf = scratch.write(
            "nsd.conf",
            &format!(
                r#"server:
  ip-address: 127.0.0.1
  port: {port}
  server-count: 1
  username: ""
  zonesdir: "{dir}"
  database: ""
  zonelistfile: "{dir}/zone.list"
  xfrdfile: "{dir}/xfrd.state"
  xfrdir: "{dir}"
  pidfile: "{dir}/nsd.pid"
  logfile: "{dir}/nsd.log"
  verbosity: 1
  minimal-responses: yes

remote-control:
  control-enable: no

zone:
  name: "example.com"
  zonefile: "example.com.zone"
"#
            ),
        );
        let conf = conf.to_str().expect("utf-8 path");
        check_with("nsd-checkconf", &[conf]);
        let mut cmd = Command::new("nsd");
        cmd.args(["-d", "-c", conf]);
        Daemon::spawn(
            cmd,
            SocketAddr::from(([127, 0, 0, 1], port)),
            scratch.0.join("nsd.out"),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// The static zone both servers load

/// One record of the static zone, `data` in zone-file syntax relative to example.com.
/// (TXT data is the plain text: one string, quoted for the zone file).
struct Rec {
    name: String,
    ttl: Option<u32>,
    rtype: &'static str,
    data: String,
}

fn rec(name: &str, ttl: Option<u32>, rtype: &'static str, data: &str) -> Rec {
    Rec {
        name: name.to_string(),
        ttl,
        rtype,
        data: data.to_string(),
    }
}

/// `big` has 8 TXT strings of 100 bytes (about 950 bytes: over 512, under 1232); `huge` has 16
/// (about 1850 bytes: over the 1232 both servers cap UDP at, whatever the client offers).
fn txt_set(name: &str, n: usize) -> Vec<Rec> {
    (0..n)
        .map(|i| rec(name, None, "TXT", &format!("{i:03}-{}", "x".repeat(96))))
        .collect()
}

/// The example config's static zone, plus a static `www` (Meridian's example routes it), a
/// CNAME to it, an empty non-terminal (`_tcp.www`, from the SRV below it), a delegation with
/// glue, wildcards (with an existing name, an empty non-terminal and a CNAME among them), a
/// CNAME into the delegation, and two large TXT sets.
fn static_records() -> Vec<Rec> {
    let mut r = vec![
        rec("ns1", None, "A", "192.0.2.53"),
        rec("ns2", None, "A", "198.51.100.53"),
        rec("ns1", None, "AAAA", "2001:db8:53::1"),
        rec("@", None, "MX", "10 mail"),
        rec("mail", None, "A", "192.0.2.25"),
        rec("@", None, "TXT", "v=spf1 mx -all"),
        rec("@", None, "CAA", "0 issue \"letsencrypt.org\""),
        rec("www", Some(300), "A", "192.0.2.10"),
        rec("www", Some(300), "AAAA", "2001:db8:10::10"),
        rec("shop", None, "CNAME", "www"),
        rec("_https._tcp.www", None, "SRV", "0 5 443 www"),
        rec("sub", None, "NS", "ns.sub"),
        rec("ns.sub", None, "A", "192.0.2.99"),
        rec("*.wild", None, "A", "192.0.2.77"),
        rec("*.wild", None, "MX", "10 mail"),
        rec("real.wild", None, "TXT", "exists"),
        rec("a.ent.wild", None, "TXT", "below an empty non-terminal"),
        rec("*.alias", None, "CNAME", "mail"),
        rec("todel", None, "CNAME", "host.sub"),
    ];
    r.extend(txt_set("big", 8));
    r.extend(txt_set("huge", 16));
    r
}

fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Meridian's config for the static zone (no services, no GeoIP).
pub(super) fn static_config() -> String {
    let records: String = static_records()
        .iter()
        .map(|r| {
            let ttl = r.ttl.map_or(String::new(), |t| format!(", ttl = {t}"));
            format!(
                "  {{ name = {}, type = {}, data = {}{ttl} }},\n",
                toml_str(&r.name),
                toml_str(r.rtype),
                toml_str(&r.data)
            )
        })
        .collect();
    with_test_paths(&format!(
        r#"[server]
dns_listen = ["127.0.0.1:0"]
max_udp_payload = 1232

[[zones]]
origin = "example.com."
ns = ["ns1.example.com.", "ns2.example.com."]
soa = {{ mname = "ns1.example.com.", rname = "hostmaster.example.com.", serial = 2026112201, minimum = 60 }}
ttl = 3600
records = [
{records}]
"#
    ))
}

/// The same zone as an RFC 1035 zone file for NSD and Knot. The SOA spells out what Meridian defaults
/// (TTL = zone TTL, refresh 3600, retry 600, expire 604800).
pub(super) fn static_zone_file() -> String {
    let mut z = String::from(
        "$ORIGIN example.com.\n$TTL 3600\n\
         @ 3600 IN SOA ns1.example.com. hostmaster.example.com. 2026112201 3600 600 604800 60\n\
         @ IN NS ns1\n@ IN NS ns2\n",
    );
    for r in static_records() {
        let ttl = r.ttl.map_or(String::new(), |t| t.to_string());
        let data = if r.rtype == "TXT" {
            format!("\"{}\"", r.data)
        } else {
            r.data
        };
        z.push_str(&format!("{} {ttl} IN {} {data}\n", r.name, r.rtype));
    }
    z
}

// ---------------------------------------------------------------------------------------------
// kdig

/// Runs `kdig` against a server; returns (stdout, stderr).
fn kdig(server: SocketAddr, args: &[&str]) -> (String, String) {
    let out = Command::new("kdig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=3", "+retry=0"])
        .args(args)
        .output()
        .expect("kdig must be installed: run scripts/test, which installs knot-dnsutils");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "kdig failed:\n{stdout}{stderr}");
    (stdout, stderr)
}

/// The records of one section of kdig's output (`ANSWER`, `AUTHORITY`, ...), split on
/// whitespace.
fn kdig_section(out: &str, which: &str) -> Vec<Vec<String>> {
    let header = format!(";; {which} SECTION:");
    out.lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// `status:` of kdig's header line.
fn kdig_status(out: &str) -> &str {
    let line = out
        .lines()
        .rfind(|l| l.starts_with(";; ->>HEADER<<-"))
        .unwrap_or_else(|| panic!("no header line in:\n{out}"));
    line.split("status: ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or_else(|| panic!("no status in {line:?}"))
}

/// The flags of kdig's `;; Flags: qr aa; QUERY: ...` line.
fn kdig_flags(out: &str) -> &str {
    let line = out
        .lines()
        .rfind(|l| l.starts_with(";; Flags:"))
        .unwrap_or_else(|| panic!("no flags line in:\n{out}"));
    line[";; Flags:".len()..]
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
}

fn fields(f: &[&str]) -> Vec<String> {
    f.iter().map(|s| s.to_string()).collect()
}

#[test]
fn kdig_subnet_shows_geo_answer_and_ecs_scope() {
    let m = Meridian::start_example();
    let (out, _) = kdig(
        m.v4(),
        &["+norec", "+subnet=11.0.130.0/24", "www.example.com", "A"],
    );
    assert_eq!(kdig_status(&out), "NOERROR", "{out}");
    assert_eq!(kdig_flags(&out), "qr aa", "{out}");
    assert_eq!(
        kdig_section(&out, "ANSWER"),
        vec![fields(&["www.example.com.", "30", "IN", "A", "192.0.2.10"])],
        "{out}"
    );
    // The /20 inside 11.0.0.0/16 is what the lookup matched: scope 20.
    assert!(
        out.contains(";; CLIENT-SUBNET: 11.0.130.0/24/20\n"),
        "{out}"
    );
    assert!(
        out.contains(";; Version: 0; flags: ; UDP size: 1232 B; ext-rcode: NOERROR\n"),
        "{out}"
    );
    assert!(out.contains("(UDP)"), "{out}");
}

#[test]
fn kdig_over_tcp() {
    let m = Meridian::start_example();
    let (out, _) = kdig(
        m.v4(),
        &[
            "+tcp",
            "+norec",
            "+subnet=12.0.0.0/24",
            "www.example.com",
            "A",
        ],
    );
    assert_eq!(kdig_status(&out), "NOERROR", "{out}");
    assert_eq!(kdig_flags(&out), "qr aa", "{out}");
    assert_eq!(
        kdig_section(&out, "ANSWER"),
        vec![fields(&[
            "www.example.com.",
            "30",
            "IN",
            "A",
            "198.51.100.10"
        ])],
        "{out}"
    );
    assert!(out.contains(";; CLIENT-SUBNET: 12.0.0.0/24/16\n"), "{out}");
    assert!(
        out.contains(&format!("From 127.0.0.1@{}(TCP)", m.v4().port())),
        "kdig did not use TCP:\n{out}"
    );
}

#[test]
fn kdig_edns_version_1_gets_badvers() {
    let m = Meridian::start_example();
    // kdig does not renegotiate: it shows the BADVERS response itself.
    let (out, _) = kdig(m.v4(), &["+norec", "+edns=1", "www.example.com", "A"]);
    assert_eq!(kdig_status(&out), "BADVERS", "{out}");
    assert!(out.contains("; ANSWER: 0;"), "{out}");
    // Our OPT is version 0 and carries the upper rcode bits.
    assert!(
        out.contains(";; Version: 0; flags: ; UDP size: 1232 B; ext-rcode: BADVERS\n"),
        "{out}"
    );
}

#[test]
fn kdig_bufsize_512_truncates_and_retries_over_tcp() {
    let m = Meridian::start(&static_config());
    let want: BTreeSet<String> = txt_set("big", 8)
        .into_iter()
        .map(|r| format!("\"{}\"", r.data))
        .collect();

    // +ignore: show the truncated UDP response as it came.
    let (out, _) = kdig(
        m.v4(),
        &[
            "+norec",
            "+bufsize=512",
            "+ignore",
            "big.example.com",
            "TXT",
        ],
    );
    assert_eq!(kdig_flags(&out), "qr aa tc", "{out}");
    assert!(
        out.contains("; ANSWER: 0;"),
        "partial answer after TC:\n{out}"
    );
    assert!(out.contains("(UDP)"), "{out}");

    // By default kdig retries over TCP and gets all of it.
    let (out, err) = kdig(
        m.v4(),
        &["+norec", "+bufsize=512", "big.example.com", "TXT"],
    );
    assert!(
        err.contains("truncated reply") && err.contains("retrying over TCP"),
        "{err}"
    );
    assert!(out.contains("(TCP)"), "{out}");
    assert_eq!(kdig_status(&out), "NOERROR", "{out}");
    assert_eq!(kdig_flags(&out), "qr aa", "{out}");
    let got: BTreeSet<String> = kdig_section(&out, "ANSWER")
        .into_iter()
        .map(|f| {
            assert_eq!(
                f[..4],
                fields(&["big.example.com.", "3600", "IN", "TXT"]),
                "{out}"
            );
            f[4..].concat()
        })
        .collect();
    assert_eq!(got, want, "{out}");

    // Offering 1232 it fits: no retry.
    let (out, err) = kdig(
        m.v4(),
        &["+norec", "+bufsize=1232", "big.example.com", "TXT"],
    );
    assert!(!err.contains("truncated"), "{err}");
    assert!(out.contains("(UDP)"), "{out}");
    assert_eq!(kdig_section(&out, "ANSWER").len(), 8, "{out}");

    // kdig sends no OPT by default, and without EDNS the limit is 512.
    let (out, err) = kdig(m.v4(), &["+norec", "big.example.com", "TXT"]);
    assert!(err.contains("truncated reply"), "{err}");
    assert!(out.contains("(TCP)"), "{out}");
    assert_eq!(kdig_section(&out, "ANSWER").len(), 8, "{out}");
}

#[test]
fn kdig_nxdomain_has_soa_in_authority() {
    let m = Meridian::start_example();
    let (out, _) = kdig(m.v4(), &["+norec", "nope.example.com", "A"]);
    assert_eq!(kdig_status(&out), "NXDOMAIN", "{out}");
    assert_eq!(kdig_flags(&out), "qr aa", "{out}");
    assert!(kdig_section(&out, "ANSWER").is_empty(), "{out}");
    assert_eq!(
        kdig_section(&out, "AUTHORITY"),
        vec![fields(&[
            "example.com.",
            "60",
            "IN",
            "SOA",
            "ns1.example.com.",
            "hostmaster.example.com.",
            "2026112201",
            "3600",
            "600",
            "604800",
            "60",
        ])],
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// Unbound in front of Meridian

const WWW_A_UDP: &str =
    r#"meridian_dns_queries_total{zone="example.com.",qtype="A",rcode="NOERROR",transport="udp"}"#;

/// What a client of the resolver saw: (answer addresses, the CLIENT-SUBNET line).
fn via_resolver(resolver: SocketAddr, subnet: &str) -> (Vec<String>, String) {
    let out = dig(
        resolver,
        &[&format!("+subnet={subnet}"), "www.example.com", "A"],
    );
    let answers = out
        .lines()
        .skip_while(|l| l.trim() != ";; ANSWER SECTION:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f[0], "www.example.com.", "{out}");
            assert_eq!(f[2..4], ["IN", "A"], "{out}");
            f[4].to_string()
        })
        .collect();
    assert!(out.contains("status: NOERROR"), "{out}");
    // A resolver's answer: recursion available, not authoritative.
    assert!(out.contains(";; flags: qr rd ra;"), "{out}");
    let ecs = out
        .lines()
        .find(|l| l.starts_with("; CLIENT-SUBNET: "))
        .unwrap_or_else(|| panic!("no CLIENT-SUBNET in the resolver's answer:\n{out}"))
        .to_string();
    (answers, ecs)
}

#[test]
fn unbound_with_ecs_gives_each_client_its_region_and_caches_by_scope() {
    let m = Meridian::start_example();
    let scratch = Scratch::new();
    let unbound = start_unbound(&scratch, m.v4());
    let u = unbound.addr;
    let ecs_before = metric(&m, "meridian_dns_ecs_queries_total");

    // A German client behind the resolver gets eu-west: Unbound passed its subnet on (from
    // Unbound's own address, 127.0.0.1, Meridian would pick the default order's us-east).
    let (de, ecs) = via_resolver(u, "12.0.0.0/24");
    assert_eq!(de, ["198.51.100.10"], "{}", unbound.log());
    assert_eq!(ecs, "; CLIENT-SUBNET: 12.0.0.0/24/16");

    // A US client in 11.0.128.0/20 gets us-east; Meridian says the answer holds for the /20.
    let (us, ecs) = via_resolver(u, "11.0.130.0/24");
    assert_eq!(us, ["192.0.2.10"]);
    assert_eq!(ecs, "; CLIENT-SUBNET: 11.0.130.0/24/20");
    assert_eq!(
        metric(&m, "meridian_dns_ecs_queries_total") - ecs_before,
        2,
        "both queries reached Meridian with ECS"
    );

    // Another /24 in the same /20: Unbound answers from its cache, Meridian sees nothing.
    let queries = metric(&m, WWW_A_UDP);
    let (us, ecs) = via_resolver(u, "11.0.140.0/24");
    assert_eq!(us, ["192.0.2.10"]);
    assert_eq!(
        ecs, "; CLIENT-SUBNET: 11.0.140.0/24/20",
        "scope of the cached entry"
    );
    assert_eq!(
        metric(&m, WWW_A_UDP),
        queries,
        "served from Unbound's cache"
    );

    // A /24 outside that /20 (the rest of 11.0.0.0/16: scope 17) is a cache miss.
    let (us, ecs) = via_resolver(u, "11.0.0.0/24");
    assert_eq!(us, ["192.0.2.10"]);
    assert_eq!(ecs, "; CLIENT-SUBNET: 11.0.0.0/24/17");
    assert_eq!(metric(&m, WWW_A_UDP), queries + 1, "went to Meridian");

    // And that /17 entry now covers 11.0.1.0/24 too.
    let (us, ecs) = via_resolver(u, "11.0.1.0/24");
    assert_eq!(us, ["192.0.2.10"]);
    assert_eq!(ecs, "; CLIENT-SUBNET: 11.0.1.0/24/17");
    assert_eq!(
        metric(&m, WWW_A_UDP),
        queries + 1,
        "served from Unbound's cache"
    );
}

/// The example config with a CIDR override: 12.0.5.0/24, inside Germany's 12.0.0.0/16
/// (eu-west), goes to us-east.
fn override_config() -> String {
    example_config().replacen(
        "name = \"www.example.com.\"",
        "name = \"www.example.com.\"\ncidr_map = \"corp\"",
        1,
    ) + "\n[cidr_maps.corp]\nnetworks = [{ network = \"12.0.5.0/24\", region = \"us-east\" }]\n"
}

const US_EAST: &str = "192.0.2.10";
const EU_WEST: &str = "198.51.100.10";

/// PowerDNS Recursor on loopback, forwarding `example.com` to `meridian` with ECS.
///
/// What matters in the config (Recursor 4.8, `man pdns_recursor`):
/// - `forward-zones`: example.com goes to Meridian, without recursion from the root.
/// - `edns-subnet-allow-list=example.com`: send ECS for this zone (none is sent otherwise).
/// - `use-incoming-edns-subnet=yes`: pass on the client's own ECS option (the test clients
///   send `+subnet`); `ecs-ipv4-bits=24` (the default, written out): at most a /24 of it.
/// - `dont-query=`: empty, so the Recursor may query 127.0.0.0/8.
/// - `dnssec=off`: the real example.com is signed; the test zone is not.
/// - `daemon=no`, `disable-syslog=yes`, `socket-dir`: foreground, stderr, scratch directory.
fn start_recursor(scratch: &Scratch, meridian: SocketAddr) -> Daemon {
    start_on_free_port(
        "pdns_recursor",
        &query("localhost.", RecordType::A),
        |port| {
            let dir = scratch.0.display().to_string();
            scratch.write(
            "recursor.conf",
            &format!(
                "local-address=127.0.0.1\nlocal-port={port}\nforward-zones=example.com={meridian}\n\
                 edns-subnet-allow-list=example.com\nuse-incoming-edns-subnet=yes\n\
                 ecs-ipv4-bits=24\ndont-query=\nallow-from=127.0.0.0/8\nthreads=1\n\
                 daemon=no\ndisable-syslog=yes\nsocket-dir={dir}\nquiet=yes\ndnssec=off\n"
            ),
        );
            let mut cmd = Command::new("pdns_recursor");
            cmd.arg(format!("--config-dir={dir}"));
            Daemon::spawn(
                cmd,
                SocketAddr::from(([127, 0, 0, 1], port)),
                scratch.0.join("recursor.log"),
            )
        },
    )
}

/// The addresses a client of `resolver` in `subnet` gets for www.example.com.
fn resolved(resolver: SocketAddr, subnet: &str, log: &dyn Fn() -> String) -> Vec<String> {
    let out = dig(
        resolver,
        &[&format!("+subnet={subnet}"), "www.example.com", "A"],
    );
    assert!(out.contains("status: NOERROR"), "{out}\n{}", log());
    out.lines()
        .skip_while(|l| l.trim() != ";; ANSWER SECTION:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .collect()
}

/// Clients inside and outside a CIDR override, asking in the order that would let a scope
/// covering the override poison a resolver's cache, each get their own answer.
fn override_survives_the_cache(resolver: SocketAddr, log: &dyn Fn() -> String) {
    for (subnet, want) in [
        ("12.0.9.0/24", EU_WEST), // cached for 12.0.8.0/21: the override is outside it
        ("12.0.5.0/24", US_EAST), // the override's own /24
        ("12.0.9.0/24", EU_WEST), // still eu-west (from the cache)
        ("12.0.5.0/24", US_EAST), // still us-east (from the cache)
        ("12.0.4.0/24", EU_WEST), // the /24 next to it
        ("12.0.200.0/24", EU_WEST), // far from it
    ] {
        assert_eq!(
            resolved(resolver, subnet, log),
            [want],
            "{subnet}\n{}",
            log()
        );
    }
}

#[test]
fn resolvers_in_front_keep_an_override_apart_from_its_neighbours() {
    let m = Meridian::start(&override_config());
    // Asked directly with a /16 that covers the override, Meridian says the answer holds only
    // for the /22 around 12.0.0.0: longer than the source (RFC 7871 7.2.1).
    let out = dig(m.v4(), &["+subnet=12.0.0.0/16", "www.example.com", "A"]);
    assert!(out.contains("; CLIENT-SUBNET: 12.0.0.0/16/22"), "{out}");

    let scratch = Scratch::new();
    let unbound = start_unbound(&scratch, m.v4());
    override_survives_the_cache(unbound.addr, &|| unbound.log());

    let scratch = Scratch::new();
    let recursor = start_recursor(&scratch, m.v4());
    override_survives_the_cache(recursor.addr, &|| recursor.log());
}

// ---------------------------------------------------------------------------------------------
// Differential test against NSD (the corpus and its comparison are Knot's too: knot.rs)

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Aspect {
    /// A response at all.
    Response,
    Rcode,
    /// AA, TC, RA, RD.
    Flags,
    /// Name (letter case included), type and class of each question.
    Question,
    Answer,
    Authority,
    Additional,
    /// OPT present, its version and UDP payload size.
    Edns,
    /// The codes of the OPT's options.
    EdnsOptions,
    /// The OPT's DO bit.
    DnssecOk,
}

/// How Meridian's response to a case compares with the reference server's (NSD's here, Knot's
/// in `knot.rs`).
#[derive(Clone, Copy, Debug)]
pub(super) enum Expect {
    Same,
    /// A deliberate difference (documented, or an optional feature) in exactly these aspects.
    Intended(&'static [Aspect], &'static str),
}

// Each known difference, with its reason.

/// Meridian implements ECS (RFC 7871): static data gets the option back with scope 0. NSD does
/// not implement ECS and ignores the option.
const ECS_ECHO: Expect = Expect::Intended(
    &[Aspect::EdnsOptions],
    "Meridian answers ECS with scope 0 for static data (RFC 7871 7.2.1); NSD ignores ECS",
);

/// Meridian explains a NOTIMP with Extended DNS Error 21 (Not Supported); NSD sends none.
const EDE_NOT_SUPPORTED: Expect = Expect::Intended(
    &[Aspect::EdnsOptions],
    "Meridian adds EDE 21 (Not Supported) to NOTIMP for AXFR over UDP; NSD sends no EDE",
);

/// Meridian adds the addresses of in-zone MX and SRV targets to the additional section, as
/// Knot does; NSD answers with minimal responses and leaves them out.
const TARGET_ADDRESSES: Expect = Expect::Intended(
    &[Aspect::Additional],
    "Meridian adds in-zone MX/SRV target addresses (as Knot does); NSD sends minimal responses",
);

/// Both answer QCLASS ANY from their IN data; Meridian authoritatively (AA set, as Knot does),
/// NSD with AA clear.
const QCLASS_ANY: Expect = Expect::Intended(
    &[Aspect::Flags],
    "Meridian answers QCLASS ANY with AA (as Knot does); NSD with AA clear",
);

/// Meridian answers FORMERR to QDCOUNT != 1 (README); NSD answers an empty question with
/// NOERROR (RFC 7873 5.4 clients send such queries to fetch a server cookie, which neither
/// server implements). Both send their OPT with it (RFC 6891 6.1.1).
const NO_QUESTION: Expect = Expect::Intended(
    &[Aspect::Rcode],
    "Meridian answers QDCOUNT=0 with FORMERR (documented); NSD with NOERROR",
);

/// How the query goes.
#[derive(Clone, Copy, Debug)]
enum Transport {
    Udp,
    Tcp,
}

pub(super) struct Case {
    pub(super) what: &'static str,
    query: Message,
    transport: Transport,
    /// The expectation against NSD (the Knot differential has its own table, `knot.rs`).
    pub(super) expect: Expect,
}

fn case(what: &'static str, query: Message) -> Case {
    Case {
        what,
        query,
        transport: Transport::Udp,
        expect: Expect::Same,
    }
}

impl Case {
    fn tcp(mut self) -> Case {
        self.transport = Transport::Tcp;
        self
    }

    fn expect(mut self, e: Expect) -> Case {
        self.expect = e;
        self
    }
}

/// A query with EDNS (payload 1232), RD clear.
fn q(name: &str, rtype: RecordType) -> Message {
    with_edns(query(name, rtype), 1232)
}

fn unknown(code: u16) -> RecordType {
    RecordType::from(code)
}

pub(super) fn corpus() -> Vec<Case> {
    use RecordType::*;
    let mut rd = q("www.example.com.", A);
    rd.metadata.recursion_desired = true;
    let mut dnssec_ok = q("example.com.", MX);
    if let Some(e) = dnssec_ok.edns.as_mut() {
        e.set_dnssec_ok(true);
    }
    let mut badvers = q("www.example.com.", A);
    if let Some(e) = badvers.edns.as_mut() {
        e.set_version(1);
    }
    let mut class_any = q("www.example.com.", A);
    class_any.queries[0].set_query_class(DNSClass::ANY);
    let no_question = with_edns(
        Message::new(0x5151, MessageType::Query, OpCode::Query),
        1232,
    );
    let mut ixfr = q("example.com.", IXFR);
    ixfr.add_authority(Record::from_rdata(
        Name::from_ascii("example.com.").expect("name"),
        0,
        RData::SOA(SoaData::new(
            Name::from_ascii("ns1.example.com.").expect("name"),
            Name::from_ascii("hostmaster.example.com.").expect("name"),
            1,
            0,
            0,
            0,
            0,
        )),
    ));

    vec![
        // The apex.
        case("apex SOA", q("example.com.", SOA)),
        case("apex NS, glue in additional", q("example.com.", NS)),
        case("apex NS without EDNS", query("example.com.", NS)),
        case("apex MX", q("example.com.", MX)).expect(TARGET_ADDRESSES),
        case("apex TXT", q("example.com.", TXT)),
        case("apex CAA", q("example.com.", CAA)),
        case("host A", q("www.example.com.", A)),
        case("host AAAA", q("www.example.com.", AAAA)),
        case("RD is echoed, RA stays clear", rd),
        // Letter case: both keep the question's; owner names are compared lowercased.
        case("mixed case", q("wWw.ExAmPlE.cOm.", A)),
        case("mixed case apex", q("EXAMPLE.COM.", SOA)),
        case("mixed case NXDOMAIN", q("NoPe.Example.COM.", A)),
        // Unknown types (RFC 3597).
        case(
            "unknown type at a host",
            q("www.example.com.", unknown(65000)),
        ),
        case(
            "unknown type at the apex",
            q("example.com.", unknown(65000)),
        ),
        case(
            "unknown type, no such name",
            q("nope.example.com.", unknown(65000)),
        ),
        case(
            "unknown type at an ENT",
            q("_tcp.www.example.com.", unknown(65000)),
        ),
        // Negative answers.
        case("NXDOMAIN", q("nope.example.com.", A)),
        case("NXDOMAIN without EDNS", query("nope.example.com.", A)),
        case("NXDOMAIN two labels down", q("a.nope.example.com.", A)),
        case("NODATA", q("mail.example.com.", AAAA)),
        case("NODATA for CNAME at a host", q("www.example.com.", CNAME)),
        case("NODATA for DS at a host", q("www.example.com.", DS)),
        case("empty non-terminal", q("_tcp.www.example.com.", A)),
        case("empty non-terminal SRV", q("_tcp.www.example.com.", SRV)),
        case("below the ENT", q("_https._tcp.www.example.com.", SRV)).expect(TARGET_ADDRESSES),
        // CNAME.
        case("CNAME followed in zone", q("shop.example.com.", A)),
        case("CNAME followed, AAAA", q("shop.example.com.", AAAA)),
        case("CNAME to a name without MX", q("shop.example.com.", MX)),
        case("CNAME asked for", q("shop.example.com.", CNAME)),
        case("below a CNAME", q("x.shop.example.com.", A)),
        case("CNAME with mixed case", q("ShOp.ExAmPlE.CoM.", A)),
        // Wildcards (RFC 4592).
        case("wildcard A", q("foo.wild.example.com.", A)),
        case(
            "wildcard two labels down",
            q("deep.foo.wild.example.com.", A),
        ),
        case("wildcard NODATA", q("foo.wild.example.com.", TXT)),
        case("wildcard MX", q("foo.wild.example.com.", MX)).expect(TARGET_ADDRESSES),
        case("the wildcard by its own name", q("*.wild.example.com.", A)),
        case(
            "no synthesis at an existing name",
            q("real.wild.example.com.", A),
        ),
        case("no synthesis below one", q("x.real.wild.example.com.", A)),
        case("no synthesis below an ENT", q("x.ent.wild.example.com.", A)),
        case("wildcard CNAME followed", q("x.alias.example.com.", A)),
        case("wildcard over TCP", q("Mixed.Wild.example.com.", A)).tcp(),
        case("CNAME into a delegation", q("todel.example.com.", A)),
        // ANY (RFC 8482): one RRset.
        case("ANY at the apex", q("example.com.", ANY)),
        case("ANY at a host with A and AAAA", q("www.example.com.", ANY)),
        case("ANY at a host with one A", q("mail.example.com.", ANY)),
        case("ANY at a large TXT set", q("big.example.com.", ANY)),
        case("ANY at an ENT", q("_tcp.www.example.com.", ANY)),
        case("ANY, no such name", q("nope.example.com.", ANY)),
        case("ANY over TCP", q("example.com.", ANY)).tcp(),
        // EDNS sizes.
        case("EDNS 512", with_edns(query("www.example.com.", A), 512)),
        case("EDNS 1232", with_edns(query("www.example.com.", A), 1232)),
        case("EDNS 4096", with_edns(query("www.example.com.", A), 4096)),
        case(
            "EDNS 4096 NODATA",
            with_edns(query("mail.example.com.", TXT), 4096),
        ),
        case("no EDNS", query("www.example.com.", A)),
        case("EDNS version 1: BADVERS", badvers),
        // Delegation.
        case("the cut, A", q("sub.example.com.", A)),
        case("the cut, NS", q("sub.example.com.", NS)),
        case(
            "the cut, unknown type",
            q("sub.example.com.", unknown(65000)),
        ),
        case("below the cut", q("host.sub.example.com.", A)),
        case("two below the cut", q("a.b.sub.example.com.", AAAA)),
        case("the glue name itself", q("ns.sub.example.com.", A)),
        case("DS below the cut", q("host.sub.example.com.", DS)),
        case("ANY at the cut", q("sub.example.com.", ANY)),
        case("mixed case below the cut", q("HoSt.SuB.eXaMpLe.CoM.", A)),
        case("referral over TCP", q("host.sub.example.com.", A)).tcp(),
        case("DS at the cut", q("sub.example.com.", DS)),
        case("DS at the cut over TCP", q("sub.example.com.", DS)).tcp(),
        // Truncation: big (~950 bytes) fits 1232 but not 512; huge (~1850) fits no UDP.
        case(
            "big TXT, EDNS 512: TC",
            with_edns(query("big.example.com.", TXT), 512),
        ),
        case("big TXT, no EDNS: TC", query("big.example.com.", TXT)),
        case(
            "big TXT, EDNS 1232",
            with_edns(query("big.example.com.", TXT), 1232),
        ),
        case(
            "big TXT, EDNS 4096",
            with_edns(query("big.example.com.", TXT), 4096),
        ),
        case(
            "big TXT, 512 over TCP",
            with_edns(query("big.example.com.", TXT), 512),
        )
        .tcp(),
        case(
            "huge TXT, EDNS 4096: TC",
            with_edns(query("huge.example.com.", TXT), 4096),
        ),
        case(
            "huge TXT over TCP",
            with_edns(query("huge.example.com.", TXT), 4096),
        )
        .tcp(),
        case(
            "huge TXT over TCP without EDNS",
            query("huge.example.com.", TXT),
        )
        .tcp(),
        // Outside the zone.
        case("REFUSED: another domain", q("www.example.org.", A)),
        case("REFUSED: the parent", q("com.", SOA)),
        case("REFUSED: the root", q(".", NS)),
        case("REFUSED without EDNS", query("www.example.org.", A)),
        case("REFUSED over TCP", q("www.example.org.", A)).tcp(),
        // EDNS options and bits.
        case(
            "ECS on static data",
            with_ecs(query("mail.example.com.", A), "11.0.130.0", 24),
        )
        .expect(ECS_ECHO),
        case("DO bit", dnssec_ok).expect(TARGET_ADDRESSES),
        // Odd queries.
        case("QCLASS ANY", class_any).expect(QCLASS_ANY),
        case("no question", no_question).expect(NO_QUESTION),
        case("AXFR over TCP", q("example.com.", AXFR)).tcp(),
        case("AXFR over UDP", q("example.com.", AXFR)).expect(EDE_NOT_SUPPORTED),
        case("IXFR over UDP", ixfr),
    ]
}

/// A record as compared: owner lowercased (NSD writes the question's letter case into owner
/// names through compression, Meridian the zone's), type, TTL, rdata in presentation form,
/// lowercased except TXT (whose case is data).
type Rr = (String, String, u32, String);

fn rrs(records: &[Record]) -> Vec<Rr> {
    let mut v: Vec<Rr> = records
        .iter()
        .map(|r| {
            let rtype = r.record_type();
            let data = r.data.to_string();
            (
                r.name.to_string().to_ascii_lowercase(),
                rtype.to_string(),
                r.ttl,
                if rtype == RecordType::TXT {
                    data
                } else {
                    data.to_ascii_lowercase()
                },
            )
        })
        .collect();
    v.sort();
    v
}

/// Everything compared about one response.
#[derive(Debug, PartialEq)]
struct Summary {
    rcode: u16,
    flags: String,
    question: Vec<String>,
    answer: Vec<Rr>,
    authority: Vec<Rr>,
    additional: Vec<Rr>,
    edns: Option<(u8, u16)>,
    edns_options: Vec<String>,
    dnssec_ok: bool,
}

fn summarize(m: &Message) -> Summary {
    let md = &m.metadata;
    let flag = |on: bool, name: &'static str| if on { name } else { "" };
    Summary {
        rcode: u16::from(md.response_code),
        flags: [
            flag(md.authoritative, "aa"),
            flag(md.truncation, "tc"),
            flag(md.recursion_available, "ra"),
            flag(md.recursion_desired, "rd"),
        ]
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" "),
        question: m
            .queries
            .iter()
            .map(|q| format!("{} {} {}", q.name(), q.query_class(), q.query_type()))
            .collect(),
        answer: rrs(&m.answers),
        authority: rrs(&m.authorities),
        additional: rrs(&m.additionals),
        edns: m.edns.as_ref().map(|e| (e.version(), e.max_payload())),
        edns_options: m
            .edns
            .as_ref()
            .map(|e| {
                e.options()
                    .as_ref()
                    .iter()
                    .map(|(code, _)| format!("{code:?}"))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            })
            .unwrap_or_default(),
        dnssec_ok: m.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
    }
}

/// The aspects in which two responses differ.
fn differences(a: &Option<Summary>, b: &Option<Summary>) -> Vec<Aspect> {
    let (a, b) = match (a, b) {
        (Some(a), Some(b)) => (a, b),
        (None, None) => return Vec::new(),
        _ => return vec![Aspect::Response],
    };
    let checks = [
        (Aspect::Rcode, a.rcode == b.rcode),
        (Aspect::Flags, a.flags == b.flags),
        (Aspect::Question, a.question == b.question),
        (Aspect::Answer, a.answer == b.answer),
        (Aspect::Authority, a.authority == b.authority),
        (Aspect::Additional, a.additional == b.additional),
        (Aspect::Edns, a.edns == b.edns),
        (Aspect::EdnsOptions, a.edns_options == b.edns_options),
        (Aspect::DnssecOk, a.dnssec_ok == b.dnssec_ok),
    ];
    checks
        .into_iter()
        .filter(|(_, same)| !same)
        .map(|(aspect, _)| aspect)
        .collect()
}

/// Sends one query; `None` when no (parsable) response came within the timeout.
fn exchange(server: SocketAddr, transport: Transport, m: &Message) -> Option<Message> {
    let bytes = match transport {
        Transport::Udp => udp_raw(server, &encode(m), Duration::from_secs(2))?,
        Transport::Tcp => {
            let mut s = tcp_connect(server);
            tcp_exchange(&mut s, &encode(m))
        }
    };
    Message::from_vec(&bytes).ok()
}

fn render(s: &Option<Summary>) -> String {
    match s {
        None => "no response".to_string(),
        Some(s) => format!("{s:#?}"),
    }
}

/// What running the corpus against Meridian and a reference server found.
pub(super) struct Differential {
    /// One message per case whose differences were not the expected ones.
    failures: Vec<String>,
    cases: usize,
    /// Cases where the two responses agree in every aspect.
    identical: usize,
    /// Cases that differ exactly as expected, counted by reason.
    intended: BTreeMap<&'static str, usize>,
    /// The rcodes either server answered with.
    pub(super) seen_rcodes: BTreeSet<u16>,
    /// TC responses, both servers' counted.
    pub(super) truncated: usize,
}

impl Differential {
    /// Fails the test with every unexpected difference and the reference server's log.
    #[track_caller]
    pub(super) fn assert_as_expected(&self, reference: &str, log: &str) {
        assert!(
            self.failures.is_empty(),
            "{} of {} cases:\n\n{}\n\n{reference} log:\n{log}",
            self.failures.len(),
            self.cases,
            self.failures.join("\n\n"),
        );
    }

    /// One line per count, for the test's output.
    pub(super) fn tally(&self, reference: &str) -> String {
        let mut t = format!(
            "{reference} differential: {} cases, {} identical, {} intended differences\n",
            self.cases,
            self.identical,
            self.intended.values().sum::<usize>()
        );
        for (why, n) in &self.intended {
            t.push_str(&format!("  {n:3} {why}\n"));
        }
        t
    }
}

/// Sends every case to Meridian and to `reference` (named `name` in messages) and compares
/// the responses with what `expect` says about each case.
pub(super) fn differential(
    name: &str,
    meridian: SocketAddr,
    reference: SocketAddr,
    cases: &[Case],
    expect: impl Fn(&Case) -> Expect,
) -> Differential {
    let mut d = Differential {
        failures: Vec::new(),
        cases: cases.len(),
        identical: 0,
        intended: BTreeMap::new(),
        seen_rcodes: BTreeSet::new(),
        truncated: 0,
    };
    for c in cases {
        let ours = exchange(meridian, c.transport, &c.query).map(|r| summarize(&r));
        let theirs = exchange(reference, c.transport, &c.query).map(|r| summarize(&r));
        d.seen_rcodes
            .extend(ours.iter().chain(&theirs).map(|s| s.rcode));
        d.truncated += ours
            .iter()
            .chain(&theirs)
            .filter(|s| s.flags.contains("tc"))
            .count();
        let found = differences(&ours, &theirs);
        let (allowed, label, why): (&[Aspect], _, _) = match expect(c) {
            Expect::Same => (&[], "the same".to_string(), None),
            Expect::Intended(a, why) => (a, format!("an intended difference ({why})"), Some(why)),
        };
        if found != allowed {
            d.failures.push(format!(
                "{} over {:?}: expected {label} in {allowed:?}, differ in {found:?}\n\
                 meridian: {}\n{name}: {}",
                c.what,
                c.transport,
                render(&ours),
                render(&theirs)
            ));
        } else if let Some(why) = why {
            *d.intended.entry(why).or_default() += 1;
        } else {
            d.identical += 1;
        }
    }
    d
}

/// Meridian's config for the static zone read from `zone` (the file NSD and Knot serve).
fn zone_file_config(zone: &std::path::Path) -> String {
    format!(
        "[server]\ndns_listen = [\"127.0.0.1:0\"]\nmax_udp_payload = 1232\n\n\
         [[zones]]\norigin = \"example.com.\"\nfile = {}\n",
        toml_str(&zone.display().to_string())
    )
}

#[test]
fn the_zone_file_nsd_and_knot_serve_is_answered_as_the_same_zone_inline() {
    let scratch = Scratch::new();
    let zone = scratch.write("example.com.zone", &static_zone_file());
    let from_file = Meridian::start(&zone_file_config(&zone));
    let inline = Meridian::start(&static_config());

    let cases = corpus();
    let d = differential(
        "meridian (inline records)",
        from_file.v4(),
        inline.v4(),
        &cases,
        |_| Expect::Same,
    );
    eprint!("{}", d.tally("inline"));
    d.assert_as_expected("meridian (inline records)", &inline.logs());
    assert_eq!(d.identical, cases.len());
    assert_eq!(d.truncated, 6, "TC responses");
}

#[test]
fn nsd_and_meridian_agree_on_a_static_zone() {
    let scratch = Scratch::new();
    let nsd = start_nsd(&scratch, &static_zone_file());
    let m = Meridian::start(&static_config());

    let d = differential("nsd", m.v4(), nsd.addr, &corpus(), |c| c.expect);
    eprint!("{}", d.tally("nsd"));
    d.assert_as_expected("nsd", &nsd.log());
    // The corpus reached every rcode it means to compare (not, say, SERVFAIL everywhere).
    let want: BTreeSet<u16> = [
        ResponseCode::NoError,
        ResponseCode::FormErr,
        ResponseCode::NXDomain,
        ResponseCode::NotImp,
        ResponseCode::Refused,
        ResponseCode::BADVERS,
    ]
    .into_iter()
    .map(u16::from)
    .collect();
    assert_eq!(d.seen_rcodes, want);
    // Both servers truncated big@512, big without EDNS and huge@4096.
    assert_eq!(d.truncated, 6, "TC responses");
}
