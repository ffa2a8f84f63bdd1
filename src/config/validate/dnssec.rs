//! `[[zones]] dnssec`: the zone's keys, read from the files BIND's `dnssec-keygen` writes
//! (`K<zone>.+<alg>+<tag>.private`, Private-key-format v1.3, and the `.key` beside it with the
//! DNSKEY record), and the signature validity. Every problem names the file and line.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::Name;

use super::Ctx;
use crate::config::checked::CheckedDnssec;
use crate::config::raw::RawDnssec;
use crate::config::{FileLine, Place, duration};
use crate::routing::sign::{Validity, ZoneKey};

const DEFAULT_VALIDITY: Duration = Duration::from_secs(14 * 86400);
const DEFAULT_REFRESH: Duration = Duration::from_secs(3 * 86400);
const DEFAULT_KEY_TTL: u32 = 3600;

pub(super) fn dnssec(
    cx: &mut Ctx,
    raw: &crate::config::raw::S<RawDnssec>,
    origin: &Name,
    base: &Path,
) -> Option<CheckedDnssec> {
    let span = raw.span();
    let raw = raw.get_ref();
    let mut files: Vec<(PathBuf, Place)> = raw
        .keys
        .iter()
        .map(|k| (base.join(k.get_ref()), Place::Config(k.span())))
        .collect();
    if let Some(dir) = &raw.key_dir {
        let path = base.join(dir.get_ref());
        let prefix = format!("K{}+", origin.to_ascii().to_ascii_lowercase());
        match std::fs::read_dir(&path) {
            Ok(entries) => {
                let mut found: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                            n.to_ascii_lowercase()
                                .starts_with(&prefix.to_ascii_lowercase())
                                && n.ends_with(".private")
                        })
                    })
                    .collect();
                found.sort();
                if found.is_empty() {
                    cx.err(
                        dir.span(),
                        format!("no {prefix}*.private key files in {}", path.display()),
                    );
                }
                files.extend(found.into_iter().map(|p| (p, Place::Config(dir.span()))));
            }
            Err(e) => cx.err(
                dir.span(),
                format!("cannot read key_dir {}: {e}", path.display()),
            ),
        }
    }
    if files.is_empty() && raw.key_dir.is_none() {
        cx.err(span.clone(), "dnssec needs `keys` or `key_dir`");
        return None;
    }
    let mut keys = Vec::new();
    for (file, place) in files {
        match read_key(cx, &file, &place, origin) {
            Some(key) => keys.push(Arc::new(key)),
            None => continue,
        }
    }
    let mut dur = |v: &Option<crate::config::raw::S<String>>, default: Duration, what: &str| {
        v.as_ref()
            .map_or(default, |v| match duration::parse(v.get_ref()) {
                Ok(d) => d,
                Err(e) => {
                    cx.err(v.span(), format!("{what}: {e}"));
                    default
                }
            })
    };
    let validity = dur(&raw.validity, DEFAULT_VALIDITY, "validity");
    let refresh = dur(&raw.refresh, DEFAULT_REFRESH, "refresh");
    if refresh >= validity {
        cx.err(
            span.clone(),
            format!(
                "refresh ({}s) must be shorter than validity ({}s)",
                refresh.as_secs(),
                validity.as_secs()
            ),
        );
    }
    let key_ttl = raw
        .key_ttl
        .as_ref()
        .map_or(DEFAULT_KEY_TTL, |t| cx.ttl(t, "key_ttl"));
    if !keys.is_empty() && !keys.iter().any(|k| k.ksk) {
        cx.err(
            span,
            "dnssec needs a key with the SEP flag (257, a KSK or combined key) to sign the DNSKEY RRset",
        );
    }
    let validity_s = validity.as_secs().min(u64::from(u32::MAX / 2)) as u32;
    let refresh_s = refresh.as_secs().min(u64::from(validity_s)) as u32;
    Some(CheckedDnssec {
        keys,
        key_ttl,
        validity: Validity {
            validity: validity_s,
            refresh: refresh_s,
            // A tenth of the margin: signatures made together are made again apart.
            jitter: refresh_s / 10,
        },
    })
}

/// Reads one key: the `.private` file and the `.key` file beside it.
fn read_key(cx: &mut Ctx, private_path: &Path, place: &Place, origin: &Name) -> Option<ZoneKey> {
    let at = |line: usize| {
        Place::File(FileLine {
            file: private_path.to_path_buf(),
            line,
        })
    };
    let text = match (cx.read)(private_path) {
        Ok(t) => t,
        Err(e) => {
            cx.err_at(
                place,
                format!("cannot read key file {}: {e}", private_path.display()),
            );
            return None;
        }
    };
    let mut algorithm: Option<(u8, usize)> = None;
    let mut private: Option<(Vec<u8>, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match field.trim() {
            "Private-key-format" if !value.starts_with("v1.") => {
                cx.err_at(&at(n), format!("unknown Private-key-format {value}"));
                return None;
            }
            "Algorithm" => {
                let num = value.split_whitespace().next().unwrap_or("");
                match num.parse::<u8>() {
                    Ok(a) if a == 13 || a == 15 => algorithm = Some((a, n)),
                    _ => {
                        cx.err_at(
                            &at(n),
                            format!(
                                "algorithm {value} is not supported (13 ECDSAP256SHA256 or 15 ED25519)"
                            ),
                        );
                        return None;
                    }
                }
            }
            "PrivateKey" => match base64(value) {
                Some(bytes) => private = Some((bytes, n)),
                None => {
                    cx.err_at(&at(n), "PrivateKey is not valid base64");
                    return None;
                }
            },
            _ => {}
        }
    }
    let Some((algorithm, _)) = algorithm else {
        cx.err_at(&at(1), "no Algorithm line: not a BIND private key file");
        return None;
    };
    let Some((private, private_line)) = private else {
        cx.err_at(&at(1), "no PrivateKey line: not a BIND private key file");
        return None;
    };
    // The public half: the DNSKEY record in the .key file beside it.
    let key_path = private_path.with_extension("key");
    let key_text = match (cx.read)(&key_path) {
        Ok(t) => t,
        Err(e) => {
            cx.err_at(
                &at(1),
                format!(
                    "cannot read the public key file {} beside it: {e}",
                    key_path.display()
                ),
            );
            return None;
        }
    };
    let key_at = |line: usize| {
        Place::File(FileLine {
            file: key_path.clone(),
            line,
        })
    };
    for (i, line) in key_text.lines().enumerate() {
        let line = line.split(';').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(pos) = words.iter().position(|w| w.eq_ignore_ascii_case("DNSKEY")) else {
            continue;
        };
        let n = i + 1;
        let owner = words[0];
        match Name::from_ascii(owner) {
            Ok(name) if name.eq_case(origin) || name == *origin => {}
            _ => {
                cx.err_at(
                    &key_at(n),
                    format!("the key belongs to {owner}, not to zone {origin}"),
                );
                return None;
            }
        }
        let fields = &words[pos + 1..];
        let (Some(flags), Some(alg)) = (
            fields.first().and_then(|f| f.parse::<u16>().ok()),
            fields.get(2).and_then(|f| f.parse::<u8>().ok()),
        ) else {
            cx.err_at(&key_at(n), "malformed DNSKEY record");
            return None;
        };
        if alg != algorithm {
            cx.err_at(
                &key_at(n),
                format!(
                    "the DNSKEY says algorithm {alg}, the private key file algorithm {algorithm}"
                ),
            );
            return None;
        }
        let Some(public) = base64(&fields[3..].concat()) else {
            cx.err_at(&key_at(n), "the DNSKEY's public key is not valid base64");
            return None;
        };
        return match ZoneKey::new(
            private_path.to_path_buf(),
            algorithm,
            flags,
            &public,
            &private,
        ) {
            Ok(key) => Some(key),
            Err(e) => {
                cx.err_at(&at(private_line), e);
                None
            }
        };
    }
    cx.err_at(&key_at(1), "no DNSKEY record in the public key file");
    None
}

/// Standard base64 (with padding), as BIND writes keys.
fn base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b' ' | b'\t' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_decodes_padding_and_spaces() {
        assert_eq!(base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64("aGVs bG8h").unwrap(), b"hello!");
        assert!(base64("a*b").is_none());
    }
}
