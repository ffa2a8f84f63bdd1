//! `[[zones]] file`: static records from an RFC 1035 master file.
//!
//! hickory-proto's zone-file parser reads the records but reports its errors without a
//! position, and it stops at the first. So the file is cut into entries here first: a light
//! lexer follows comments, quoted strings, escapes and parentheses, and knows the line each
//! entry starts on. `$ORIGIN`, `$TTL` and `$INCLUDE` are handled here (the included file is
//! cut the same way, its lines named by its own path); every record entry is handed to
//! hickory's parser alone, as one line of its words with the owner made absolute and the TTL
//! in force. A problem in one entry is reported at the line the entry starts on, and the rest
//! of the file is still checked.
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_proto::serialize::txt::{Parser, parse_ttl};

use super::{FileLine, Problem};

/// Largest TTL RFC 2181 allows.
const MAX_TTL: u32 = 2_147_483_647;
/// How deep `$INCLUDE`s may nest.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Reads a file named by a zone file (`$INCLUDE`); `load` passes the file system, tests a map.
pub type ReadFile<'a> = dyn FnMut(&Path) -> std::io::Result<String> + 'a;

/// The records of one zone file (its `$INCLUDE`s included), each with the line it came from,
/// and every problem found on the way.
#[derive(Debug, Default)]
pub struct ZoneFile {
    pub records: Vec<(Record, FileLine)>,
    pub problems: Vec<Problem>,
}

/// What the file says so far: the state RFC 1035 section 5 carries from entry to entry.
struct State<'z> {
    /// The zone the records must fall in.
    zone: &'z Name,
    origin: Name,
    /// Owner of the last record, for entries that start with a blank.
    owner: Option<Name>,
    /// A record without a TTL takes `$TTL` (RFC 2308 section 4), else the last TTL given
    /// explicitly (RFC 1035 section 5.1), else the zone's `ttl`.
    default_ttl: Option<u32>,
    last_ttl: Option<u32>,
    zone_ttl: u32,
}

/// Parses the zone file `path` whose text is `text`, for the zone `zone` (also the starting
/// `$ORIGIN`); records without a TTL and with none before them get `zone_ttl`.
pub fn parse(
    path: &Path,
    text: &str,
    zone: &Name,
    zone_ttl: u32,
    read: &mut ReadFile<'_>,
) -> ZoneFile {
    let mut out = ZoneFile::default();
    let mut state = State {
        zone,
        origin: zone.clone(),
        owner: None,
        default_ttl: None,
        last_ttl: None,
        zone_ttl,
    };
    let mut stack = vec![normalize(path)];
    parse_file(path, text, &mut state, &mut stack, read, &mut out);
    out
}

fn parse_file(
    path: &Path,
    text: &str,
    state: &mut State<'_>,
    stack: &mut Vec<PathBuf>,
    read: &mut ReadFile<'_>,
    out: &mut ZoneFile,
) {
    let (entries, lex_problems) = entries(text);
    for (line, message) in lex_problems {
        out.problems.push(problem(path, line, message));
    }
    for entry in &entries {
        let at = |message: String| problem(path, entry.line, message);
        let first = &entry.tokens[0];
        if !entry.blank_owner && first.text.starts_with('$') && !first.quoted {
            match directive(path, entry, state, stack, read, out) {
                Ok(()) => {}
                Err(message) => out.problems.push(at(message)),
            }
            continue;
        }
        match record(entry, state) {
            Ok(record) => out.records.push((
                record,
                FileLine {
                    file: path.to_owned(),
                    line: entry.line,
                },
            )),
            Err(message) => out.problems.push(at(message)),
        }
    }
}

fn problem(path: &Path, line: usize, message: String) -> Problem {
    Problem::at_line(
        FileLine {
            file: path.to_owned(),
            line,
        },
        message,
    )
}

/// `$ORIGIN`, `$TTL` or `$INCLUDE`.
fn directive(
    path: &Path,
    entry: &Entry,
    state: &mut State<'_>,
    stack: &mut Vec<PathBuf>,
    read: &mut ReadFile<'_>,
    out: &mut ZoneFile,
) -> Result<(), String> {
    let args: Vec<&Token> = entry.tokens[1..].iter().collect();
    let word = entry.tokens[0].text.to_ascii_uppercase();
    match (word.as_str(), args.as_slice()) {
        ("$ORIGIN", [name]) => {
            state.origin = Name::parse(&name.text, Some(&state.origin))
                .map_err(|e| format!("bad $ORIGIN {:?}: {e}", name.text))?;
            Ok(())
        }
        ("$TTL", [ttl]) => {
            state.default_ttl = Some(ttl_value(&ttl.text).map_err(|e| format!("bad $TTL: {e}"))?);
            Ok(())
        }
        ("$INCLUDE", [file] | [file, _]) => {
            let origin = match args.get(1) {
                Some(o) => Name::parse(&o.text, Some(&state.origin))
                    .map_err(|e| format!("bad $INCLUDE origin {:?}: {e}", o.text))?,
                None => state.origin.clone(),
            };
            // Relative to the including file, as the zone file itself is to the config.
            let target = path
                .parent()
                .unwrap_or(Path::new("."))
                .join(file.text.as_str());
            let key = normalize(&target);
            if let Some(at) = stack.iter().position(|p| *p == key) {
                let chain: Vec<String> = stack[at..]
                    .iter()
                    .chain(std::iter::once(&key))
                    .map(|p| p.display().to_string())
                    .collect();
                return Err(format!("$INCLUDE loop: {}", chain.join(" -> ")));
            }
            if stack.len() > MAX_INCLUDE_DEPTH {
                return Err(format!(
                    "$INCLUDE nests more than {MAX_INCLUDE_DEPTH} files deep"
                ));
            }
            let text = read(&target)
                .map_err(|e| format!("cannot read $INCLUDE file {}: {e}", target.display()))?;
            // The included file starts from this origin; afterwards origin and owner are
            // what they were before it (RFC 1035 section 5.1).
            let saved = (
                std::mem::replace(&mut state.origin, origin),
                state.owner.take(),
            );
            stack.push(key);
            parse_file(&target, &text, state, stack, read, out);
            stack.pop();
            (state.origin, state.owner) = saved;
            Ok(())
        }
        ("$ORIGIN" | "$TTL", _) => Err(format!("{word} takes one argument")),
        ("$INCLUDE", _) => Err("$INCLUDE takes a file name and an optional origin".into()),
        _ => Err(format!(
            "unsupported directive {} (use $ORIGIN, $TTL or $INCLUDE)",
            entry.tokens[0].text
        )),
    }
}

/// A path with `.` and `a/..` removed, to spot an `$INCLUDE` loop without touching the disk.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn ttl_value(text: &str) -> Result<u32, String> {
    match parse_ttl(text) {
        Ok(ttl) if ttl <= MAX_TTL => Ok(ttl),
        _ => Err(format!(
            "{text:?} is not a TTL (0 to {MAX_TTL} seconds, or units like 1h30m)"
        )),
    }
}

/// One record entry: owner, TTL, class and type read here, the data by hickory.
fn record(entry: &Entry, state: &mut State<'_>) -> Result<Record, String> {
    let mut tokens = entry.tokens.iter();
    let owner = if entry.blank_owner {
        state
            .owner
            .clone()
            .ok_or("the entry starts with a blank but no record before it names an owner")?
    } else {
        let t = tokens.next().ok_or("empty entry")?;
        if t.text == "@" && !t.quoted {
            state.origin.clone()
        } else {
            Name::parse(&t.text, Some(&state.origin))
                .map_err(|e| format!("bad owner name {:?}: {e}", t.text))?
        }
    };
    state.owner = Some(owner.clone());
    if !state.zone.zone_of(&owner) {
        return Err(format!("{owner} is outside the zone {}", state.zone));
    }

    let mut ttl = None;
    let rtype = loop {
        let Some(t) = tokens.next() else {
            return Err("no record type".into());
        };
        let upper = t.text.to_ascii_uppercase();
        if t.text.starts_with(|c: char| c.is_ascii_digit()) && ttl.is_none() {
            ttl = Some(ttl_value(&t.text)?);
        } else if let Ok(class) = DNSClass::from_str(&upper) {
            if class != DNSClass::IN {
                return Err(format!("class {upper} is not served (only IN)"));
            }
        } else {
            match RecordType::from_str(&upper) {
                Ok(rtype) => break rtype,
                Err(_) => return Err(format!("unknown record type {:?}", t.text)),
            }
        }
    };
    if rtype != RecordType::SOA && !STATIC_TYPES.contains(&rtype) {
        return Err(format!(
            "record type {rtype} is not served (use SOA NS A AAAA CNAME MX TXT SRV CAA PTR)"
        ));
    }
    if ttl.is_some() {
        state.last_ttl = ttl;
    }
    let ttl = ttl
        .or(state.default_ttl)
        .or(state.last_ttl)
        .unwrap_or(state.zone_ttl);

    // The entry as hickory reads it: one line of the words read here (no parentheses, whose
    // quoted strings its lexer would keep the quotes of, nor comments), the owner absolute,
    // the TTL in force as $TTL, and the words its lexer takes for something else spelt out:
    // `@` as the origin where a name is expected (as text in TXT and CAA), a word starting
    // with `$` quoted (plain data here).
    let text_data = matches!(rtype, RecordType::TXT | RecordType::CAA);
    let words = &entry.tokens[usize::from(!entry.blank_owner)..];
    let mut single = format!("$TTL {ttl}\n{}", owner.to_ascii());
    for t in words {
        single.push(' ');
        let origin = !t.quoted && !text_data && t.text == "@";
        let quote = t.quoted || t.text.starts_with(['$', '@']);
        if origin {
            single.push_str(&state.origin.to_ascii());
        } else if quote {
            single.push('"');
            single.push_str(&t.text);
            single.push('"');
        } else {
            single.push_str(&t.text);
        }
    }
    single.push('\n');
    let (_, sets) = Parser::new(single, None, Some(state.origin.clone()))
        .parse()
        .map_err(|e| format!("bad {rtype} record: {e}"))?;
    let mut records = sets
        .into_values()
        .flat_map(|set| set.records_without_rrsigs().cloned().collect::<Vec<_>>());
    let mut record = records
        .next()
        .ok_or_else(|| format!("bad {rtype} record: no data"))?;
    if records.next().is_some() {
        return Err("more than one record in one entry".into());
    }
    record.dns_class = DNSClass::IN;
    Ok(record)
}

/// The static record types Meridian serves from a zone (besides the apex SOA): what the
/// `records` of a `[[zones]]` entry, and a zone file with its SOA, may hold.
pub(super) const STATIC_TYPES: [RecordType; 10] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::TXT,
    RecordType::SRV,
    RecordType::CAA,
    RecordType::NS,
    RecordType::PTR,
    // The digest of a signed child's key, at a delegation (a signed zone serves it).
    RecordType::DS,
];

/// A word of an entry, quotes removed (escapes kept, for hickory to read).
#[derive(Debug, PartialEq, Eq)]
struct Token {
    text: String,
    quoted: bool,
}

/// One entry: a line, or the lines a pair of parentheses joins.
#[derive(Debug)]
struct Entry {
    /// 1-based line the entry starts on.
    line: usize,
    /// The entry starts with a blank: its owner is the last record's.
    blank_owner: bool,
    tokens: Vec<Token>,
}

/// Cuts a zone file into entries (RFC 1035 section 5.1): `;` comments to the end of the line,
/// `"..."` strings, `\` escapes, and `(` `)` joining lines. Entries with no word are dropped.
/// Problems come back with their line; an entry with one is dropped.
fn entries(text: &str) -> (Vec<Entry>, Vec<(usize, String)>) {
    let bytes = text.as_bytes();
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < bytes.len() {
        // One entry from the start of a line.
        let start_line = line;
        let blank_owner = matches!(bytes[i], b' ' | b'\t');
        let mut tokens = Vec::new();
        let mut open: Option<usize> = None; // line of the outermost open parenthesis
        let mut depth = 0usize;
        let mut broken: Option<(usize, String)> = None;
        while i < bytes.len() {
            match bytes[i] {
                b'\n' => {
                    line += 1;
                    i += 1;
                    if depth == 0 {
                        break;
                    }
                }
                b' ' | b'\t' | b'\r' => i += 1,
                b';' => {
                    while i < bytes.len() && bytes[i] != b'\n' {
                        i += 1;
                    }
                }
                b'(' => {
                    if depth == 0 {
                        open = Some(line);
                    }
                    depth += 1;
                    i += 1;
                }
                b')' => {
                    if depth == 0 {
                        broken.get_or_insert((line, "')' without an open '('".into()));
                    } else {
                        depth -= 1;
                    }
                    i += 1;
                }
                b'"' => {
                    let from = i + 1;
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                        i += if bytes[i] == b'\\' && i + 1 < bytes.len() && bytes[i + 1] != b'\n' {
                            2
                        } else {
                            1
                        };
                    }
                    if i < bytes.len() && bytes[i] == b'"' {
                        tokens.push(Token {
                            text: text[from..i].to_string(),
                            quoted: true,
                        });
                        i += 1;
                    } else {
                        broken.get_or_insert((
                            line,
                            "a quoted string does not end on its line".into(),
                        ));
                    }
                }
                _ => {
                    let from = i;
                    while i < bytes.len()
                        && !matches!(
                            bytes[i],
                            b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"'
                        )
                    {
                        i += if bytes[i] == b'\\' && i + 1 < bytes.len() && bytes[i + 1] != b'\n' {
                            2
                        } else {
                            1
                        };
                    }
                    tokens.push(Token {
                        text: text[from..i].to_string(),
                        quoted: false,
                    });
                }
            }
        }
        if depth > 0 {
            let at = open.unwrap_or(start_line);
            broken.get_or_insert((at, "'(' is never closed".into()));
        }
        match broken {
            Some(p) => problems.push(p),
            None if tokens.is_empty() => {}
            None => entries.push(Entry {
                line: start_line,
                blank_owner,
                tokens,
            }),
        }
    }
    (entries, problems)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use hickory_proto::rr::RData;

    use super::*;
    use crate::config::Place;

    fn zone() -> Name {
        Name::from_ascii("example.com.").unwrap()
    }

    /// Parses `main` (as `/z/main.zone`) with the other files given by name under `/z/`.
    fn parse_with(main: &str, files: &[(&str, &str)]) -> ZoneFile {
        let files: HashMap<PathBuf, String> = files
            .iter()
            .map(|(p, t)| (Path::new("/z").join(p), t.to_string()))
            .collect();
        let mut read = |p: &Path| {
            files.get(&normalize(p)).cloned().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory")
            })
        };
        parse(Path::new("/z/main.zone"), main, &zone(), 3600, &mut read)
    }

    fn problems(z: &ZoneFile) -> Vec<String> {
        z.problems
            .iter()
            .map(|p| match &p.at {
                Place::File(at) => format!("{at}: {}", p.message),
                Place::Config(_) => panic!("a zone file problem placed in the config: {p:?}"),
            })
            .collect()
    }

    fn summary(z: &ZoneFile) -> Vec<String> {
        z.records
            .iter()
            .map(|(r, at)| {
                format!(
                    "{}:{} {} {} {} {}",
                    at.file.display(),
                    at.line,
                    r.name,
                    r.ttl,
                    r.record_type(),
                    r.data
                )
            })
            .collect()
    }

    #[test]
    fn entries_follow_parentheses_quotes_and_comments() {
        let text = "a 1 IN TXT \"x ; (not a comment\" ; real comment\n\
                    @ SOA ns1 host (\n  1 ; serial\n  2 3 4\n  5 )\n\n   ; only a comment\n\tA 192.0.2.1\n";
        let (found, problems) = entries(text);
        assert!(problems.is_empty(), "{problems:?}");
        let lines: Vec<usize> = found.iter().map(|e| e.line).collect();
        assert_eq!(lines, [1, 2, 8]);
        assert_eq!(found[0].tokens[4].text, "x ; (not a comment");
        assert!(found[0].tokens[4].quoted);
        assert_eq!(found[1].tokens.len(), 9);
        assert!(found[2].blank_owner);
    }

    #[test]
    fn lexer_problems_name_their_line() {
        let (found, problems) = entries("a A 192.0.2.1\nb TXT \"open\nc MX ( 10\n mail\n");
        assert_eq!(found.len(), 1);
        assert_eq!(
            problems,
            [
                (2, "a quoted string does not end on its line".to_string()),
                (3, "'(' is never closed".to_string())
            ]
        );
        let (_, problems) = entries("a A 192.0.2.1 )\n");
        assert_eq!(problems, [(1, "')' without an open '('".to_string())]);
    }

    #[test]
    fn origin_ttl_and_owners_carry_from_entry_to_entry() {
        let z = parse_with(
            "www A 192.0.2.1\n\
             $TTL 300\n\
             \tAAAA 2001:db8::1\n\
             $ORIGIN sub.example.com.\n\
             mail 60 IN MX ( 10\n   mx ) ; relative to sub\n\
             @ TXT \"a b\" c\n",
            &[],
        );
        assert!(z.problems.is_empty(), "{:?}", problems(&z));
        assert_eq!(
            summary(&z),
            [
                "/z/main.zone:1 www.example.com. 3600 A 192.0.2.1",
                "/z/main.zone:3 www.example.com. 300 AAAA 2001:db8::1",
                "/z/main.zone:5 mail.sub.example.com. 60 MX 10 mx.sub.example.com.",
                "/z/main.zone:7 sub.example.com. 300 TXT a bc",
            ]
        );
        match &z.records[3].0.data {
            RData::TXT(t) => assert_eq!(t.txt_data.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn crlf_lines_escapes_and_quoted_semicolons_are_read_as_written() {
        let z = parse_with(
            "a IN TXT \"say \\\"hi\\\"; not a comment\" ; comment\r\n\
             b\\.c IN A 192.0.2.1\r\n\
             *.w IN MX ( 5\r\n mail )\r\n",
            &[],
        );
        assert!(z.problems.is_empty(), "{:?}", problems(&z));
        assert_eq!(
            summary(&z),
            [
                "/z/main.zone:1 a.example.com. 3600 TXT say \"hi\"; not a comment",
                "/z/main.zone:2 b\\.c.example.com. 3600 A 192.0.2.1",
                "/z/main.zone:3 *.w.example.com. 3600 MX 5 mail.example.com.",
            ]
        );
    }

    #[test]
    fn at_in_record_data_is_the_origin() {
        let z = parse_with(
            "www CNAME @\n@ MX 10 @\n$ORIGIN sub.example.com.\n_s._tcp SRV 0 0 1 @\n\
             t TXT $5 (\n @ \"@\" )\n",
            &[],
        );
        assert!(z.problems.is_empty(), "{:?}", problems(&z));
        assert_eq!(
            summary(&z),
            [
                "/z/main.zone:1 www.example.com. 3600 CNAME example.com.",
                "/z/main.zone:2 example.com. 3600 MX 10 example.com.",
                "/z/main.zone:4 _s._tcp.sub.example.com. 3600 SRV 0 0 1 sub.example.com.",
                "/z/main.zone:5 t.sub.example.com. 3600 TXT $5@@",
            ]
        );
        match &z.records[3].0.data {
            RData::TXT(t) => {
                let strings: Vec<&[u8]> = t.txt_data.iter().map(|s| &s[..]).collect();
                assert_eq!(strings, [&b"$5"[..], b"@", b"@"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn quoted_strings_inside_parentheses_lose_their_quotes() {
        let z = parse_with(
            "k._domainkey IN TXT ( \"v=DKIM1; k=rsa; \"\n    \"p=MIGf\" ) ; key\n",
            &[],
        );
        assert!(z.problems.is_empty(), "{:?}", problems(&z));
        match &z.records[0].0.data {
            RData::TXT(t) => {
                let strings: Vec<&[u8]> = t.txt_data.iter().map(|s| &s[..]).collect();
                assert_eq!(strings, [&b"v=DKIM1; k=rsa; "[..], b"p=MIGf"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn without_ttl_directive_the_last_explicit_ttl_counts() {
        let z = parse_with("a 120 A 192.0.2.1\nb A 192.0.2.2\n", &[]);
        assert_eq!(z.records[1].0.ttl, 120);
    }

    #[test]
    fn includes_are_read_relative_with_their_own_lines_and_origin() {
        let z = parse_with(
            "$ORIGIN example.com.\n\
             $INCLUDE hosts.inc sub\n\
             after A 192.0.2.9\n",
            &[("hosts.inc", "; hosts\n\nhost A 192.0.2.1\n  TXT hello\n")],
        );
        assert!(z.problems.is_empty(), "{:?}", problems(&z));
        assert_eq!(
            summary(&z),
            [
                "/z/hosts.inc:3 host.sub.example.com. 3600 A 192.0.2.1",
                "/z/hosts.inc:4 host.sub.example.com. 3600 TXT hello",
                "/z/main.zone:3 after.example.com. 3600 A 192.0.2.9",
            ]
        );
    }

    #[test]
    fn every_problem_names_its_file_and_line_and_the_rest_is_read() {
        let z = parse_with(
            "ok A 192.0.2.1\n\
             bad A 192.0.2.300\n\
             x BOGUS 1\n\
             y HINFO \"a\" \"b\"\n\
             far.example.org. A 192.0.2.1\n\
             m MX (\n  10 mail ) ; fine\n\
             m2 MX (\n  mail )\n\
             $INCLUDE missing.inc\n\
             $INCLUDE loop.inc\n\
             $GENERATE 1-3 h$ A 192.0.2.$\n\
             c CH A 192.0.2.1\n\
             end A 192.0.2.2\n",
            &[("loop.inc", "in A 192.0.2.3\n$INCLUDE main.zone\n")],
        );
        assert_eq!(
            problems(&z),
            [
                "/z/main.zone:2: bad A record: network address parse error: invalid IPv4 address syntax",
                "/z/main.zone:3: unknown record type \"BOGUS\"",
                "/z/main.zone:4: record type HINFO is not served (use SOA NS A AAAA CNAME MX TXT SRV CAA PTR)",
                "/z/main.zone:5: far.example.org. is outside the zone example.com.",
                "/z/main.zone:8: bad MX record: error parsing number: invalid digit found in string",
                "/z/main.zone:10: cannot read $INCLUDE file /z/missing.inc: No such file or directory",
                "/z/loop.inc:2: $INCLUDE loop: /z/main.zone -> /z/loop.inc -> /z/main.zone",
                "/z/main.zone:12: unsupported directive $GENERATE (use $ORIGIN, $TTL or $INCLUDE)",
                "/z/main.zone:13: class CH is not served (only IN)",
            ]
        );
        let names: Vec<String> = z.records.iter().map(|(r, _)| r.name.to_string()).collect();
        assert_eq!(
            names,
            [
                "ok.example.com.",
                "m.example.com.",
                "in.example.com.",
                "end.example.com."
            ]
        );
    }
}
