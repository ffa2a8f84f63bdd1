//! Interop with BIND's `dig`: what an operator sees when they point the standard tool at
//! Meridian. `dig` must be installed (bind9-dnsutils); the harness panics if it is not.
use crate::harness::*;
use crate::protocol::large_answer_config;

/// The records of one section of dig's output (`ANSWER`, `AUTHORITY`, `ADDITIONAL`), each split
/// on whitespace.
fn section(out: &str, which: &str) -> Vec<Vec<String>> {
    let header = format!(";; {which} SECTION:");
    out.lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The `;; flags: ...;` part of dig's header line, e.g. `qr aa`.
fn flags(out: &str) -> &str {
    let line = out
        .lines()
        .rfind(|l| l.starts_with(";; flags:"))
        .unwrap_or_else(|| panic!("no flags line in:\n{out}"));
    line[";; flags:".len()..]
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
}

/// The `status:` of the last response dig printed.
fn status(out: &str) -> &str {
    let line = out
        .lines()
        .rfind(|l| l.contains("->>HEADER<<-"))
        .unwrap_or_else(|| panic!("no header line in:\n{out}"));
    line.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no status in {line:?}"))
}

fn rr(fields: &[&str]) -> Vec<String> {
    fields.iter().map(|s| s.to_string()).collect()
}

#[test]
fn dig_subnet_shows_geo_answer_and_ecs_scope() {
    let m = Meridian::start_example();
    let out = dig(
        m.v4(),
        &["+norec", "+subnet=11.0.130.0/24", "www.example.com", "A"],
    );
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert_eq!(flags(&out), "qr aa", "{out}");
    assert_eq!(
        section(&out, "ANSWER"),
        vec![rr(&["www.example.com.", "30", "IN", "A", "192.0.2.10"])],
        "{out}"
    );
    assert!(out.contains("; CLIENT-SUBNET: 11.0.130.0/24/20\n"), "{out}");
    assert!(
        out.contains("; EDNS: version: 0, flags:; udp: 1232\n"),
        "{out}"
    );
}

#[test]
fn dig_subnet_de_client_gets_eu_west() {
    let m = Meridian::start_example();
    let out = dig(
        m.v4(),
        &["+norec", "+subnet=12.0.0.0/24", "www.example.com", "A"],
    );
    assert_eq!(
        section(&out, "ANSWER"),
        vec![rr(&["www.example.com.", "30", "IN", "A", "198.51.100.10"])],
        "{out}"
    );
    assert!(out.contains("; CLIENT-SUBNET: 12.0.0.0/24/16\n"), "{out}");
}

#[test]
fn dig_over_tcp() {
    let m = Meridian::start_example();
    let out = dig(m.v4(), &["+tcp", "+norec", "mail.example.com", "A"]);
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert_eq!(flags(&out), "qr aa", "{out}");
    assert_eq!(
        section(&out, "ANSWER"),
        vec![rr(&["mail.example.com.", "3600", "IN", "A", "192.0.2.25"])],
        "{out}"
    );
    assert!(out.contains("(TCP)"), "dig did not use TCP:\n{out}");
}

#[test]
fn dig_norec_nxdomain_has_soa_in_authority() {
    let m = Meridian::start_example();
    let out = dig(m.v4(), &["+norec", "nope.example.com", "A"]);
    assert_eq!(status(&out), "NXDOMAIN", "{out}");
    assert_eq!(flags(&out), "qr aa", "{out}");
    assert!(section(&out, "ANSWER").is_empty(), "{out}");
    assert_eq!(
        section(&out, "AUTHORITY"),
        vec![rr(&[
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

#[test]
fn dig_rd_is_echoed_and_ra_is_not_set() {
    let m = Meridian::start_example();
    let out = dig(m.v4(), &["+rec", "mail.example.com", "A"]);
    assert_eq!(flags(&out), "qr aa rd", "{out}");
    assert!(
        out.contains("WARNING: recursion requested but not available"),
        "{out}"
    );
}

#[test]
fn dig_bufsize_512_truncates_and_retries_over_tcp() {
    let m = Meridian::start(&large_answer_config());
    // mid.large.test. TXT is ~900 bytes: it fits dig's default 1232 but not 512.
    let want: Vec<String> = (0..4)
        .map(|i| format!("\"{i:03}-{}\"", "x".repeat(196)))
        .collect();

    let out = dig(
        m.v4(),
        &["+norec", "+bufsize=512", "+ignore", "mid.large.test", "TXT"],
    );
    assert_eq!(flags(&out), "qr aa tc", "{out}");
    assert!(
        section(&out, "ANSWER").is_empty(),
        "partial answer after TC:\n{out}"
    );

    let out = dig(m.v4(), &["+norec", "+bufsize=512", "mid.large.test", "TXT"]);
    assert!(out.contains(";; Truncated, retrying in TCP mode."), "{out}");
    assert!(out.contains("(TCP)"), "{out}");
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert_eq!(flags(&out), "qr aa", "{out}");
    let mut got: Vec<String> = section(&out, "ANSWER")
        .into_iter()
        .map(|f| {
            assert_eq!(
                f[..4],
                rr(&["mid.large.test.", "300", "IN", "TXT"]),
                "{out}"
            );
            f[4..].concat()
        })
        .collect();
    got.sort();
    assert_eq!(got, want, "{out}");

    // With dig's default 1232 it fits: no retry.
    let out = dig(m.v4(), &["+norec", "mid.large.test", "TXT"]);
    assert!(!out.contains("Truncated"), "{out}");
    assert!(out.contains("(UDP)"), "{out}");
    assert_eq!(section(&out, "ANSWER").len(), 4, "{out}");
}

#[test]
fn dig_large_answer_is_complete_after_tcp_retry() {
    let m = Meridian::start(&large_answer_config());
    let out = dig(m.v4(), &["+norec", "big.large.test", "TXT"]);
    assert!(out.contains(";; Truncated, retrying in TCP mode."), "{out}");
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert_eq!(section(&out, "ANSWER").len(), 20, "{out}");
}

#[test]
fn dig_edns_version_1_gets_badvers() {
    let m = Meridian::start_example();
    // Without negotiation dig shows the server's answer as is.
    let out = dig(
        m.v4(),
        &["+norec", "+edns=1", "+noednsneg", "www.example.com", "A"],
    );
    assert_eq!(status(&out), "BADVERS", "{out}");
    assert!(
        out.contains("; EDNS: version: 0, flags:; udp: 1232\n"),
        "{out}"
    );
    assert!(out.contains("ANSWER: 0,"), "{out}");
    // With negotiation (dig's default) it falls back to version 0 and gets the answer.
    let out = dig(m.v4(), &["+norec", "+edns=1", "www.example.com", "A"]);
    assert!(
        out.contains(";; BADVERS, retrying with EDNS version 0."),
        "{out}"
    );
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert_eq!(
        section(&out, "ANSWER"),
        vec![rr(&["www.example.com.", "30", "IN", "A", "192.0.2.10"])],
        "{out}"
    );
}

#[test]
fn dig_mixed_case_query_keeps_the_question_case() {
    let m = Meridian::start_example();
    let out = dig(m.v4(), &["+norec", "wWw.ExAmPlE.cOm.", "A"]);
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert_eq!(
        section(&out, "QUESTION"),
        vec![rr(&[";wWw.ExAmPlE.cOm.", "IN", "A"])],
        "{out}"
    );
    let answer = section(&out, "ANSWER");
    assert_eq!(answer.len(), 1, "{out}");
    assert!(
        answer[0][0].eq_ignore_ascii_case("www.example.com."),
        "{out}"
    );
    assert_eq!(
        answer[0][1..],
        rr(&["30", "IN", "A", "192.0.2.10"]),
        "{out}"
    );
}

#[test]
fn dig_over_ipv6() {
    let m = Meridian::start_example();
    for transport in ["+notcp", "+tcp"] {
        let out = dig(m.v6(), &["+norec", transport, "www.example.com", "AAAA"]);
        assert_eq!(status(&out), "NOERROR", "{out}");
        assert_eq!(flags(&out), "qr aa", "{out}");
        assert_eq!(
            section(&out, "ANSWER"),
            vec![rr(&[
                "www.example.com.",
                "30",
                "IN",
                "AAAA",
                "2001:db8:10::10"
            ])],
            "{out}"
        );
        assert!(
            out.contains(&format!("SERVER: ::1#{}", m.v6().port())),
            "{out}"
        );
    }
}

#[test]
fn dig_refused_outside_zones() {
    let m = Meridian::start_example();
    let out = dig(m.v4(), &["+norec", "www.example.org", "A"]);
    assert_eq!(status(&out), "REFUSED", "{out}");
    assert_eq!(flags(&out), "qr", "{out}");
}
