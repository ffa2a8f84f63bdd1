//! Differential test against Knot DNS: the static zone and query corpus of the NSD
//! differential (`interop.rs`), served by `knotd` and by Meridian, the responses compared
//! aspect by aspect, with every deliberate difference from Knot listed below.
//!
//! `knotd` must be installed (scripts/test installs Debian's `knot`); the test fails without
//! it. It runs in the foreground on a free loopback port with its config, run directory and
//! storage in a scratch directory, in its own process group, killed when the test ends.
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::harness::*;
use crate::interop::{
    Aspect, Case, Daemon, Expect, check_with, corpus, differential, start_on_free_port,
    static_config, static_zone_file,
};

/// Knot DNS serving `zone_text` as example.com.
///
/// What matters in the config (Knot 3.2, `man knot.conf`):
/// - `rundir`, `database.storage`, `template.storage` and the control socket in the scratch
///   directory; no `server.user`: no privilege drop, nothing outside the scratch directory.
/// - `listen: 127.0.0.1@PORT`, one UDP, TCP and background worker.
/// - `udp-max-payload: 1232`: the size both Meridian and NSD advertise (Knot's default,
///   written out because every EDNS comparison relies on it).
/// - `edns-client-subnet: on`: Knot answers ECS with the option back (scope 0 for its data),
///   as Meridian does for static records (RFC 7871 7.2.1); off, it would ignore the option
///   like NSD.
/// - `zonefile-load: whole`, `journal-content: none`, `zonefile-sync: -1`: the zone file is
///   the zone, and Knot never writes it back.
/// - No NSID, no modules, no DNSSEC signing, `disable-any` left off: a plain authoritative
///   server. Knot has no minimal-responses switch: it always adds the addresses of in-zone
///   NS, MX and SRV targets, and no authority NS set to positive answers.
fn start_knot(scratch: &Scratch, zone_text: &str) -> Daemon {
    scratch.write("example.com.zone", zone_text);
    let dir = scratch.0.display().to_string();
    let knot = start_on_free_port("knotd", &query("example.com.", RecordType::SOA), |port| {
        let conf = scratch.write(
            "knot.conf",
            &format!(
                r#"server:
    rundir: "{dir}"
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
    udp-max-payload: 1232
    edns-client-subnet: on

control:
    listen: "{dir}/knot.sock"

database:
    storage: "{dir}"

log:
  - target: stderr
    any: info

template:
  - id: default
    storage: "{dir}"
    zonefile-load: whole
    journal-content: none
    zonefile-sync: -1

zone:
  - domain: example.com
    file: "example.com.zone"
"#
            ),
        );
        let conf = conf.to_str().expect("utf-8 path");
        check_with("knotc", &["-c", conf, "conf-check"]);
        let mut cmd = Command::new("knotd");
        cmd.args(["-c", conf]);
        Daemon::spawn(
            cmd,
            SocketAddr::from(([127, 0, 0, 1], port)),
            scratch.0.join("knotd.log"),
        )
    });
    wait_for_zone(&knot);
    knot
}

/// Knot answers as soon as it has bound its port and loads zones after that: wait until the
/// apex SOA comes back authoritative.
fn wait_for_zone(knot: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let probe = encode(&query("example.com.", RecordType::SOA));
    while Instant::now() < deadline {
        let loaded = udp_raw(knot.addr, &probe, Duration::from_millis(200))
            .and_then(|b| Message::from_vec(&b).ok())
            .is_some_and(|r| {
                r.metadata.response_code == ResponseCode::NoError
                    && r.metadata.authoritative
                    && r.answers.len() == 1
            });
        if loaded {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("knotd did not load example.com within 15s:\n{}", knot.log());
}

// ---------------------------------------------------------------------------------------------
// Where Meridian and Knot differ, and why

/// RFC 8482 lets a server answer ANY with any one RRset of the name (or all of them). At the
/// apex Meridian picks the SOA, as NSD does; Knot picks the NS set and adds its addresses.
/// Elsewhere (A before AAAA at www, the one RRset at mail) the two pick the same.
const ANY_RRSET_CHOICE: Expect = Expect::Intended(
    &[Aspect::Answer, Aspect::Additional],
    "RFC 8482 leaves the RRset for ANY to the server: Meridian answers SOA at the apex, Knot NS (with glue)",
);

/// Meridian does no zone transfers and refuses AXFR over TCP and IXFR with REFUSED and EDE 21
/// (Not Supported); RFC 5936 lets a server refuse a transfer by its policy. Knot, whose ACL
/// allows no transfer, answers NOTAUTH (its rcode for a denied transfer) and no EDE.
const TRANSFER_DENIED: Expect = Expect::Intended(
    &[Aspect::Rcode, Aspect::EdnsOptions],
    "Meridian refuses zone transfers with REFUSED and EDE 21; Knot denies them by ACL with NOTAUTH, no EDE",
);

/// Both answer AXFR over UDP with NOTIMP; Meridian explains it with EDE 21 (Not Supported),
/// Knot 3.2 sends no EDE with it (it does send EDE 20 with REFUSED, as Meridian does).
const EDE_NOT_SUPPORTED: Expect = Expect::Intended(
    &[Aspect::EdnsOptions],
    "Meridian adds EDE 21 (Not Supported) to NOTIMP for AXFR over UDP; Knot sends no EDE there",
);

/// How Meridian's answer to each case of the shared corpus differs from Knot's, keyed by the
/// case's name (the test checks that each is one); the cases not listed are expected the same.
/// Knot adds in-zone MX/SRV target addresses as Meridian does, answers ECS (configured on)
/// and empty questions as Meridian does, so NSD's differences for those are not here.
const KNOT_EXPECT: &[(&str, Expect)] = &[
    ("ANY at the apex", ANY_RRSET_CHOICE),
    ("ANY over TCP", ANY_RRSET_CHOICE),
    ("AXFR over TCP", TRANSFER_DENIED),
    ("IXFR over UDP", TRANSFER_DENIED),
    ("AXFR over UDP", EDE_NOT_SUPPORTED),
];

fn knot_expect(c: &Case) -> Expect {
    KNOT_EXPECT
        .iter()
        .find(|(what, _)| *what == c.what)
        .map_or(Expect::Same, |(_, e)| *e)
}

#[test]
fn knot_and_meridian_agree_on_a_static_zone() {
    let cases = corpus();
    let names: BTreeSet<&str> = cases.iter().map(|c| c.what).collect();
    assert_eq!(names.len(), cases.len(), "case names are unique");
    for (what, _) in KNOT_EXPECT {
        assert!(names.contains(what), "KNOT_EXPECT names no case {what:?}");
    }

    let scratch = Scratch::new();
    let knot = start_knot(&scratch, &static_zone_file());
    let m = Meridian::start(&static_config());

    let d = differential("knot", m.v4(), knot.addr, &cases, knot_expect);
    eprint!("{}", d.tally("knot"));
    d.assert_as_expected("knot", &knot.log());
    // The corpus reached every rcode it means to compare (not, say, SERVFAIL everywhere),
    // NOTAUTH being Knot's for the transfers it denies.
    let want: BTreeSet<u16> = [
        ResponseCode::NoError,
        ResponseCode::FormErr,
        ResponseCode::NXDomain,
        ResponseCode::NotImp,
        ResponseCode::Refused,
        ResponseCode::BADVERS,
        ResponseCode::NotAuth,
    ]
    .into_iter()
    .map(u16::from)
    .collect();
    assert_eq!(d.seen_rcodes, want);
    // Both servers truncated big@512, big without EDNS and huge@4096.
    assert_eq!(d.truncated, 6, "TC responses");
}
