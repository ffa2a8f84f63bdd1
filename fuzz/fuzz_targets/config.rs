//! The config loader (`config::load_str`: TOML, validate, compile) on arbitrary UTF-8.
//!
//! The file is named `/fuzz/meridian.toml`, so relative paths inside it (the GeoIP database,
//! a latency map) point where nothing is.
//!
//! Checks: never panics; a rejected config has at least one error, each positioned at line
//! >= 1 and column >= 1 within the text, with a message (an error in a zone file the text
//! names, which only a file on this machine can cause, has a line >= 1 and no column).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Err(errors) = meridian::config::load_str(text, Path::new("/fuzz/meridian.toml")) else {
        return;
    };
    assert!(!errors.0.is_empty(), "a rejected config with no error");
    let config = Path::new("/fuzz/meridian.toml");
    let lines = text.matches('\n').count() + 1;
    for e in &errors.0 {
        assert!(!e.message.is_empty(), "error at {e} with no message");
        if e.file != config {
            assert!(e.line >= 1 && e.col.is_none(), "zone file error at {e}");
            continue;
        }
        assert!(
            e.line >= 1 && e.col.is_some_and(|c| c >= 1),
            "error at {}:{:?}: {}",
            e.line,
            e.col,
            e.message
        );
        assert!(e.line <= lines, "error on line {} of {lines}", e.line);
    }
    // What `meridian check` prints.
    let _ = errors.to_string();
});
