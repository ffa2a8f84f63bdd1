//! DNSSEC with real validators: keys made by BIND's `dnssec-keygen`, the DS that `meridian
//! check` prints as the trust anchor, and Unbound (validating, with ECS) and `delv` in front of
//! Meridian. Geo answers for clients in several countries, answers after an evacuation,
//! denial (compact: NXDOMAIN answered NODATA), wildcards, empty non-terminals, CNAME chains,
//! multivalue answers and the proof that a delegation has no DS must all validate.
//!
//! `dnssec-keygen` (bind9-utils), `delv` (bind9-dnsutils) and `unbound` must be installed
//! (scripts/test installs them); the tests fail without them.
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::harness::*;
use crate::interop::Daemon;

const TOKEN: &str = "test-admin-token";
/// The DS of a signed child zone `sec.example.com.` (any digest will do: the parent signs it).
const SEC_DS: &str = "31589 13 2 E2D3C916F6DEEAC73294E8268FB5885044A833FC5459588F4A9184CFC41A5766";

/// Makes a key with `dnssec-keygen` in `dir`; returns the path of its `.private` file.
fn keygen(dir: &Path, algorithm: &str, ksk: bool) -> String {
    let mut cmd = Command::new("dnssec-keygen");
    cmd.current_dir(dir)
        .args(["-q", "-K", ".", "-a", algorithm, "-n", "ZONE"]);
    if ksk {
        cmd.args(["-f", "KSK"]);
    }
    let out = cmd
        .arg("example.com")
        .output()
        .expect("dnssec-keygen must be installed: run scripts/test, which installs bind9-utils");
    assert!(
        out.status.success(),
        "dnssec-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base = String::from_utf8_lossy(&out.stdout).trim().to_string();
    dir.join(format!("{base}.private")).display().to_string()
}

/// The example config signed with `keys`, with a wildcard, an empty non-terminal and a
/// delegation added, a state_dir and an admin token.
fn signed_config(scratch: &Scratch, keys: &[String], extra: &str) -> String {
    let token_file = scratch.write("admin-token", &format!("{TOKEN}\n"));
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    example_config()
        .replace(
            "[server]\n",
            &format!(
                "[server]\nstate_dir = \"{}\"\nadmin_token_file = \"{}\"\n",
                scratch.0.join("state").display(),
                token_file.display()
            ),
        )
        .replacen(
            "ttl = 3600\nrecords = [\n",
            &format!(
                "ttl = 3600\ndnssec = {{ keys = [{}]{extra} }}\nrecords = [\n  \
                 {{ name = \"*.wild\", type = \"A\", data = \"192.0.2.99\" }},\n  \
                 {{ name = \"a.b.ent\", type = \"TXT\", data = \"deep\" }},\n  \
                 {{ name = \"sub\", type = \"NS\", data = \"ns.sub\" }},\n  \
                 {{ name = \"ns.sub\", type = \"A\", data = \"192.0.2.77\" }},\n  \
                 {{ name = \"sec\", type = \"NS\", data = \"ns.sub\" }},\n  \
                 {{ name = \"sec\", type = \"DS\", data = \"{SEC_DS}\" }},\n",
                keys.join(", ")
            ),
            1,
        )
}

/// `meridian check`'s DS lines for the config (the trust anchor to give the parent).
fn ds_lines(config: &Path) -> Vec<String> {
    let out = run(
        &["check", "--config", &config.display().to_string()],
        Path::new("."),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "check: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ds: Vec<String> = text
        .lines()
        .filter(|l| l.contains(" IN DS "))
        .map(str::to_string)
        .collect();
    assert!(!ds.is_empty(), "no DS in check's output:\n{text}");
    ds
}

/// Starts Meridian signing example.com; returns it with the DS lines `check` printed.
fn start_signed(keys: &[String], extra: &str) -> (Meridian, Vec<String>) {
    let scratch = Scratch::new();
    let text = signed_config(&scratch, keys, extra);
    let config = scratch.write("meridian.toml", &text);
    let ds = ds_lines(&config);
    let m = Meridian::start_with(scratch, config, &[]).unwrap_or_else(|e| panic!("start: {e}"));
    (m, ds)
}

/// Unbound validating with `ds` as example.com's trust anchor, ECS passed on to Meridian.
fn start_validator(scratch: &Scratch, meridian: SocketAddr, ds: &[String]) -> Daemon {
    crate::interop::start_unbound_with(scratch, meridian, ds)
}

/// What the validating resolver answered: (status, AD set, answer lines' data).
fn validated(resolver: SocketAddr, args: &[&str]) -> (String, bool, Vec<String>) {
    let mut all = vec!["+dnssec"];
    all.extend_from_slice(args);
    let out = dig(resolver, &all);
    let status = out
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no status in:\n{out}"))
        .to_string();
    let ad = out
        .lines()
        .find(|l| l.starts_with(";; flags:"))
        .is_some_and(|l| l.split(';').nth(2).is_some_and(|f| f.contains(" ad")));
    let answers = out
        .lines()
        .skip_while(|l| l.trim() != ";; ANSWER SECTION:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| !l.contains("\tRRSIG\t"))
        .map(|l| l.split_whitespace().skip(3).collect::<Vec<_>>().join(" "))
        .collect();
    (status, ad, answers)
}

#[test]
fn unbound_validates_geo_answers_denial_wildcards_and_referrals() {
    let keys_dir = Scratch::new();
    let keys = [
        keygen(&keys_dir.0, "ECDSAP256SHA256", true),
        keygen(&keys_dir.0, "ECDSAP256SHA256", false),
    ];
    let (m, ds) = start_signed(&keys, "");
    let scratch = Scratch::new();
    let unbound = start_validator(&scratch, m.v4(), &ds);
    let u = unbound.addr;
    let log = || format!("{}\n--- meridian:\n{}", unbound.log(), m.logs());

    // Geo answers per client network, each validated (AD) through the resolver.
    for (subnet, want) in [
        ("12.0.0.0/24", "A 198.51.100.10"), // Germany: eu-west
        ("11.0.130.0/24", "A 192.0.2.10"),  // US: us-east
    ] {
        let (status, ad, answers) =
            validated(u, &[&format!("+subnet={subnet}"), "www.example.com", "A"]);
        assert_eq!(status, "NOERROR", "{}", log());
        assert!(ad, "{subnet}: not validated\n{}", log());
        assert_eq!(answers, [want], "{subnet}");
    }

    // A multivalue answer (signed on first use), a CNAME into a traffic-managed name, a
    // wildcard, the key set itself.
    for (name, rtype, want) in [
        ("api.example.com", "A", 2),
        ("shop.example.com", "A", 2),
        ("x.wild.example.com", "A", 1),
        ("example.com", "DNSKEY", 2),
        ("example.com", "SOA", 1),
        ("sec.example.com", "DS", 1),
    ] {
        let (status, ad, answers) = validated(u, &[name, rtype]);
        assert_eq!(status, "NOERROR", "{name} {rtype}: {}", log());
        assert!(ad, "{name} {rtype}: not validated\n{}", log());
        assert_eq!(answers.len(), want, "{name} {rtype}: {answers:?}");
    }

    // Denial: a missing name (compact denial: NODATA), a missing type, an empty
    // non-terminal, the absence of DS at the delegation.
    for (name, rtype) in [
        ("nope.example.com", "A"),
        ("mail.example.com", "TXT"),
        ("www.example.com", "TXT"),
        ("b.ent.example.com", "A"),
        ("sub.example.com", "DS"),
    ] {
        let (status, ad, answers) = validated(u, &[name, rtype]);
        assert_eq!(status, "NOERROR", "{name} {rtype}: {}", log());
        assert!(ad, "{name} {rtype}: denial not validated\n{}", log());
        assert!(answers.is_empty(), "{name} {rtype}: {answers:?}");
    }

    // After an evacuation the new answer validates too.
    let (status, body) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/us-east/evacuate",
        Some(TOKEN),
        r#"{"reason": "test"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, ad, answers) = validated(u, &["+subnet=11.0.200.0/24", "www.example.com", "A"]);
    assert_eq!(status, "NOERROR", "{}", log());
    assert!(ad, "after the evacuation: {}", log());
    assert_eq!(answers, ["A 198.51.100.10"]);
}

#[test]
fn delv_fully_validates_and_kdig_shows_rrsigs() {
    let keys_dir = Scratch::new();
    // One combined Ed25519 key, found in `key_dir`.
    keygen(&keys_dir.0, "ED25519", true);
    let (m, ds) = start_signed(&[], &format!(", key_dir = \"{}\"", keys_dir.0.display()));
    let ds_fields: Vec<&str> = ds[0].split_whitespace().collect();
    // owner TTL IN DS tag alg digest-type digest
    let anchors = keys_dir.write(
        "anchors.conf",
        &format!(
            "trust-anchors {{ \"example.com.\" static-ds {} {} {} \"{}\"; }};\n",
            ds_fields[4], ds_fields[5], ds_fields[6], ds_fields[7]
        ),
    );
    let server = m.v4();
    for (name, rtype) in [
        ("www.example.com", "A"),
        ("api.example.com", "A"),
        ("shop.example.com", "A"),
        ("x.wild.example.com", "A"),
        ("nope.example.com", "A"),
        ("b.ent.example.com", "A"),
        ("example.com", "DNSKEY"),
    ] {
        let out = Command::new("delv")
            .arg(format!("@{}", server.ip()))
            .args(["-p", &server.port().to_string()])
            .args(["-a", &anchors.display().to_string(), "+root=example.com"])
            .args([name, rtype])
            .output()
            .expect("delv must be installed: run scripts/test");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("; fully validated")
                || text.contains("; negative response, fully validated"),
            "{name} {rtype}:\n{text}"
        );
    }

    // The RRSIGs on the wire, and NXDOMAIN answered as NODATA with the NXNAME NSEC.
    let q = query("www.example.com.", RecordType::A);
    let mut q = with_edns(q, 1232);
    if let Some(e) = q.edns.as_mut() {
        e.set_dnssec_ok(true);
    }
    let r = udp(server, &q);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(
        r.answers
            .iter()
            .any(|a| a.record_type() == RecordType::RRSIG),
        "{r:?}"
    );
    let out = Command::new("kdig")
        .arg(format!("@{}", server.ip()))
        .args([
            "-p",
            &server.port().to_string(),
            "+dnssec",
            "nope.example.com",
            "A",
        ])
        .output()
        .expect("kdig");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("status: NOERROR"), "{text}");
    assert!(
        text.contains("NSEC\t\\000.nope.example.com. RRSIG NSEC TYPE128"),
        "{text}"
    );
    // Referrals: NS unsigned, with the signed DS, or with a signed NSEC at the cut that has
    // no DS bit.
    let referral = |name: &str| {
        let mut q = with_edns(query(name, RecordType::A), 1232);
        if let Some(e) = q.edns.as_mut() {
            e.set_dnssec_ok(true);
        }
        let r = udp(server, &q);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty(), "{r:?}");
        r.authorities
            .iter()
            .map(|a| a.record_type())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        referral("host.sec.example.com."),
        [RecordType::NS, RecordType::DS, RecordType::RRSIG]
    );
    assert_eq!(
        referral("host.sub.example.com."),
        [RecordType::NS, RecordType::NSEC, RecordType::RRSIG]
    );
    // Without DO, nothing changes: NXDOMAIN, no RRSIG.
    let r = udp(
        server,
        &with_edns(query("nope.example.com.", RecordType::A), 1232),
    );
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(
        r.authorities
            .iter()
            .all(|a| !matches!(a.data, RData::DNSSEC(_))),
        "{r:?}"
    );
}

#[test]
fn check_reports_a_mismatched_key_with_its_file_and_line() {
    let keys_dir = Scratch::new();
    let a = keygen(&keys_dir.0, "ECDSAP256SHA256", true);
    let b = keygen(&keys_dir.0, "ECDSAP256SHA256", true);
    // a's private key under b's public key.
    let private = std::fs::read_to_string(&a).unwrap();
    std::fs::write(&b, private).unwrap();
    let scratch = Scratch::new();
    let text = signed_config(&scratch, std::slice::from_ref(&b), "");
    let config = scratch.write("meridian.toml", &text);
    let out = run(
        &["check", "--config", &config.display().to_string()],
        Path::new("."),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("{b}:3")) && err.contains("does not match"),
        "{err}"
    );
    // A missing key file is named at its place in the config.
    let text = signed_config(&scratch, &["/nonexistent/K.private".into()], "");
    let config = scratch.write("meridian.toml", &text);
    let out = run(
        &["check", "--config", &config.display().to_string()],
        Path::new("."),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot read key file /nonexistent/K.private"),
        "{err}"
    );
    assert!(err.contains("meridian.toml:"), "{err}");
}

/// A UDP relay between a resolver and Meridian that flips one bit of every RRSIG signature
/// in the responses (and passes everything else through). Runs until the test ends (each
/// wait is bounded by a read timeout; the thread ends when `stop` is set).
fn tampering_relay(
    upstream: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> SocketAddr {
    use hickory_proto::dnssec::rdata::{DNSSECRData, RRSIG};
    use hickory_proto::op::Message;
    use std::net::UdpSocket;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    let front = UdpSocket::bind("127.0.0.1:0").expect("bind relay");
    front
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let addr = front.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65535];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = front.recv_from(&mut buf) else {
                continue;
            };
            let Some(reply) = udp_raw(upstream, &buf[..n], Duration::from_secs(2)) else {
                continue;
            };
            let out = match Message::from_vec(&reply) {
                Ok(mut m) => {
                    for rec in m.answers.iter_mut().chain(m.authorities.iter_mut()) {
                        if let RData::DNSSEC(DNSSECRData::RRSIG(sig)) = &rec.data {
                            let mut bytes = sig.sig().to_vec();
                            bytes[0] ^= 1;
                            rec.data = RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(
                                sig.input().clone(),
                                bytes,
                            )));
                        }
                    }
                    m.to_vec().unwrap_or(reply)
                }
                Err(_) => reply,
            };
            let _ = front.send_to(&out, from);
        }
    });
    addr
}

#[test]
fn unbound_refuses_tampered_signatures() {
    let keys_dir = Scratch::new();
    let keys = [keygen(&keys_dir.0, "ECDSAP256SHA256", true)];
    let (m, ds) = start_signed(&keys, "");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let relay = tampering_relay(m.v4(), stop.clone());
    let scratch = Scratch::new();
    let unbound = start_validator(&scratch, relay, &ds);
    for (name, rtype) in [("www.example.com", "A"), ("nope.example.com", "A")] {
        let (status, ad, _) = validated(unbound.addr, &[name, rtype]);
        assert_eq!(status, "SERVFAIL", "{name} {rtype}: {}", unbound.log());
        assert!(!ad);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
}
