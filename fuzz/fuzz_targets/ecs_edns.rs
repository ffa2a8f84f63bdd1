//! The zero-allocation query scanner and the ECS option parser (`dns::wire`).
//!
//! Input: any bytes, given to `scan` as a whole query and to `parse_ecs` as an option body;
//! the same bytes are also wrapped as the ECS option of an otherwise valid query, so `scan`
//! must come to the same verdict as `parse_ecs` on them.
//!
//! Checks: neither panics; an ECS that parses has a source prefix that fits its family and no
//! address bits set past it; a query that scans has its question inside the message and a
//! payload of at least 512.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use meridian::dns::wire::{self, Ecs};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = wire::scan(data) {
        assert!(
            (12 + 5..=data.len()).contains(&s.question_end),
            "question ends at {} of {}",
            s.question_end,
            data.len()
        );
        if let Some(e) = s.edns {
            assert!(e.payload >= 512, "payload {} under 512", e.payload);
            if let Some(ecs) = e.ecs {
                check_ecs(&ecs);
            }
        }
    }
    let parsed = wire::parse_ecs(data);
    if let Ok(ecs) = &parsed {
        check_ecs(ecs);
    }
    if let Ok(len) = u16::try_from(data.len() + 4) {
        let scanned = wire::scan(&query_with_ecs(data, len)).map(|s| s.edns.and_then(|e| e.ecs));
        assert_eq!(
            scanned,
            parsed.map(Some),
            "scan and parse_ecs disagree on the same option"
        );
    }
});

fn check_ecs(ecs: &Ecs) {
    let (bits, width) = match ecs.addr {
        IpAddr::V4(a) => (u128::from(a.to_bits()) << 96, 32),
        IpAddr::V6(a) => (a.to_bits(), 128),
    };
    assert!(
        ecs.source_prefix <= width,
        "source prefix /{} on a {width}-bit address",
        ecs.source_prefix
    );
    let host = u128::MAX
        .checked_shr(u32::from(ecs.source_prefix))
        .unwrap_or(0);
    assert_eq!(
        bits & host,
        0,
        "{} has bits set past /{}",
        ecs.addr,
        ecs.source_prefix
    );
}

/// `www.example.com. IN A` with an OPT record whose only option is ECS with `body`;
/// `rdlen` is the OPT's RDATA length (the body plus the option's code and length).
fn query_with_ecs(body: &[u8], rdlen: u16) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    q.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    q.extend_from_slice(&rdlen.to_be_bytes());
    q.extend_from_slice(&[0, 8]);
    q.extend_from_slice(&(rdlen - 4).to_be_bytes());
    q.extend_from_slice(body);
    q
}
