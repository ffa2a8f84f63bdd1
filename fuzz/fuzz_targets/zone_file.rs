//! The zone-file reader (`config::zonefile::parse`, what `[[zones]] file` runs) on arbitrary
//! UTF-8, as the file `/fuzz/example.com.zone` of the zone example.com. `$INCLUDE inc.zone`
//! finds a small file of two records; every other file is missing.
//!
//! Checks: never panics; every problem is on a line of the file it names (the zone file or
//! `inc.zone`) and says something; every record is in the zone, of class IN, with a TTL of at
//! most 2^31 - 1 and a line of its file.
#![no_main]

use std::io;
use std::path::{Path, PathBuf};

use hickory_proto::rr::{DNSClass, Name};
use libfuzzer_sys::fuzz_target;
use meridian::config::Place;
use meridian::config::zonefile::parse;

const INCLUDED: &str = "inc A 192.0.2.1\n  TXT \"included\"\n";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let zone = Name::from_ascii("example.com.").expect("zone name");
    let main = PathBuf::from("/fuzz/example.com.zone");
    let inc = PathBuf::from("/fuzz/inc.zone");
    let mut read = |p: &Path| {
        if p == inc {
            Ok(INCLUDED.to_string())
        } else {
            Err(io::Error::new(io::ErrorKind::NotFound, "not here"))
        }
    };
    let parsed = parse(&main, text, &zone, 3600, &mut read);
    let lines_of = |file: &Path| {
        let t = if file == inc { INCLUDED } else { text };
        assert!(file == inc || file == main, "a line of an unknown file {}", file.display());
        t.matches('\n').count() + 1
    };
    for p in &parsed.problems {
        let Place::File(at) = &p.at else {
            panic!("a zone file problem placed in the config: {p:?}");
        };
        assert!(!p.message.is_empty(), "problem at {at} with no message");
        assert!(
            at.line >= 1 && at.line <= lines_of(&at.file),
            "problem at {at}: {}",
            p.message
        );
    }
    for (r, at) in &parsed.records {
        assert!(zone.zone_of(&r.name), "{at}: {} is outside the zone", r.name);
        assert_eq!(r.dns_class, DNSClass::IN, "{at}");
        assert!(r.ttl <= 2_147_483_647, "{at}: TTL {}", r.ttl);
        assert!(at.line >= 1 && at.line <= lines_of(&at.file), "record at {at}");
    }
});
