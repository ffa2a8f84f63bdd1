//! Layers point down only (see the README's architecture section): the top-level modules of
//! `src/` may use the modules below them and never those above, and no two of them import each
//! other, directly or round a longer loop.
//!
//! The check reads the source text, not the compiled crate, so it needs no dependency and sees
//! every `cfg`. An edge `a -> b` is any path into module `b` written in non-test code of module
//! `a`: `crate::b` (also inside `use crate::{..}` groups and inline paths) and `super::` chains
//! that climb to the crate root. Comments, string literals and test-only code are skipped; test
//! code may cross layers (routing tests load configs through `config`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use Uses::{Not, Only};

/// The rules: (module, what it may use, why). A module may always use itself. `ANY` as the
/// module means every top-level module. Modules a rule names need not exist yet.
const RULES: &[Rule] = &[
    (
        "routing",
        Only(&["geo", "settings", "hash"]),
        "routing is pure: decide() reads the table and the query, so DNS and explain share it",
    ),
    (
        "explain",
        Only(&["routing", "geo", "settings", "hash"]),
        "explain renders decide()'s traces; it serves the CLI and the admin API, never the reverse",
    ),
    (
        "dns",
        Only(&["routing", "geo", "settings", "hash", "metrics", "clock"]),
        "the DNS path reads one published snapshot; it never drives the control plane",
    ),
    (
        "config",
        Only(&["routing", "geo", "settings", "hash"]),
        "config compiles TOML into an immutable table; it knows nothing of serving",
    ),
    (
        "health",
        Only(&["routing", "settings", "hash", "clock"]),
        "probes report outcomes as events; only the control plane turns them into tables",
    ),
    (
        "cluster",
        Only(&["routing", "settings", "hash", "metrics", "clock"]),
        "the fleet store sends updates to the control plane; it never builds tables itself",
    ),
    (
        "state",
        Only(&["routing", "settings"]),
        "state_dir files: atomic writes of plain documents",
    ),
    (
        "control",
        Not(&["admin", "cli"]),
        "the single writer: the admin API sends it commands, never the reverse",
    ),
    (
        "geo",
        Only(&["hash"]),
        "geo is a self-contained lookup below routing",
    ),
    (
        "settings",
        Only(&[]),
        "settings is a leaf: plain data shared by config, dns, control and cluster",
    ),
    (
        "hash",
        Only(&[]),
        "hash is a leaf: the stable hashes answers depend on",
    ),
    (
        "clock",
        Only(&[]),
        "clock is a leaf: the one seam to the system clocks",
    ),
    (
        "ctl",
        Only(&[]),
        "ctl is an HTTP client of the admin API: it shares no code with the server it drives",
    ),
    (
        "metrics",
        Only(&["settings", "hash"]),
        "metrics is a leaf: registry and rendering, no routing types",
    ),
    (
        ANY,
        Not(&["cli"]),
        "cli is the entry point (clap, anyhow); nothing below it uses it",
    ),
];

/// A row of [`RULES`]: the module, what it may use, and why.
type Rule = (&'static str, Uses, &'static str);

/// In a rule's module column: every top-level module.
const ANY: &str = "*";

/// What a module may use besides itself.
enum Uses {
    /// Only these modules.
    Only(&'static [&'static str]),
    /// Any module but these.
    Not(&'static [&'static str]),
}

impl Uses {
    fn forbids(&self, module: &str) -> bool {
        match self {
            Only(allowed) => !allowed.contains(&module),
            Not(denied) => denied.contains(&module),
        }
    }
}

/// A place in the source: a file relative to the crate root, and a 1-based line.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Site {
    file: String,
    line: usize,
}

impl Site {
    fn new(file: &str, line: usize) -> Site {
        Site {
            file: file.to_string(),
            line,
        }
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Violation {
    /// `modules[0] -> modules[1] -> .. -> modules[0]`; `sites[i]` makes the edge that leaves
    /// `modules[i]`.
    Cycle {
        modules: Vec<String>,
        sites: Vec<Site>,
    },
    /// `from` uses `to` against a rule; every site that does.
    Forbidden {
        from: String,
        to: String,
        why: &'static str,
        sites: Vec<Site>,
    },
    /// A glob import of the crate root (`use crate::*;`, or `use super::*;` in a top-level
    /// file) puts every module in scope under its bare name, which this check cannot follow.
    Unresolved { site: Site },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Cycle { modules, sites } => {
                write!(
                    f,
                    "import cycle: {} -> {}",
                    modules.join(" -> "),
                    modules[0]
                )?;
                for (i, site) in sites.iter().enumerate() {
                    let to = &modules[(i + 1) % modules.len()];
                    write!(f, "\n    {} -> {}: {site}", modules[i], to)?;
                }
                Ok(())
            }
            Violation::Forbidden {
                from,
                to,
                why,
                sites,
            } => {
                write!(f, "forbidden edge: {from} -> {to} ({why})")?;
                for site in sites {
                    write!(f, "\n    {site}")?;
                }
                Ok(())
            }
            Violation::Unresolved { site } => write!(
                f,
                "glob import of the crate root at {site}: name the modules instead, so the \
                 layering can be checked"
            ),
        }
    }
}

/// What the checker reads from a `src/` tree.
struct Crate {
    /// The top-level modules: `src/X.rs` and `src/X/`, without `lib` and `main`.
    modules: BTreeSet<String>,
    /// (user, used) -> every non-test site that makes the edge, sorted.
    edges: BTreeMap<(String, String), Vec<Site>>,
    /// Glob imports of the crate root.
    globs: Vec<Site>,
}

/// Runs every rule, and the cycle check, on the tree at `src`.
fn check(src: &Path, rules: &[Rule]) -> Vec<Violation> {
    let krate = read_crate(src);
    let mut out: Vec<Violation> = krate
        .globs
        .iter()
        .map(|site| Violation::Unresolved { site: site.clone() })
        .collect();
    for modules in cycles(&krate.edges) {
        let sites = (0..modules.len())
            .map(|i| {
                let edge = (modules[i].clone(), modules[(i + 1) % modules.len()].clone());
                krate.edges[&edge][0].clone()
            })
            .collect();
        out.push(Violation::Cycle { modules, sites });
    }
    for ((from, to), sites) in &krate.edges {
        let broken = rules
            .iter()
            .find(|(module, uses, _)| (*module == from || *module == ANY) && uses.forbids(to));
        if let Some(rule) = broken {
            out.push(Violation::Forbidden {
                from: from.clone(),
                to: to.clone(),
                why: rule.2,
                sites: sites.clone(),
            });
        }
    }
    out
}

/// One shortest cycle through each module that lies on one, each starting at its smallest
/// module, without repeats.
fn cycles(edges: &BTreeMap<(String, String), Vec<Site>>) -> Vec<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from.as_str()).or_default().push(to.as_str());
    }
    let mut found = BTreeSet::new();
    for &start in next.keys() {
        // Breadth first from `start` until it comes back to `start`.
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        'search: while let Some(at) = queue.pop_front() {
            for &to in next.get(at).into_iter().flatten() {
                if to == start {
                    let mut cycle = vec![at];
                    while let Some(&prev) = came_from.get(cycle[cycle.len() - 1]) {
                        cycle.push(prev);
                    }
                    cycle.reverse();
                    let smallest = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
                    cycle.rotate_left(smallest);
                    found.insert(cycle.iter().map(|m| m.to_string()).collect::<Vec<_>>());
                    break 'search;
                }
                if to != start && !came_from.contains_key(to) {
                    came_from.insert(to, at);
                    queue.push_back(to);
                }
            }
        }
    }
    let mut found: Vec<Vec<String>> = found.into_iter().collect();
    found.sort_by_key(|cycle| cycle.len());
    found
}

/// Walks the module tree from `lib.rs`/`main.rs` along `mod` declarations, so that each file
/// gets its real module path (for `super::`) and is known as test-only when it is declared
/// under `#[cfg(test)]`; then reads any `.rs` file no declaration reached by its location.
fn read_crate(src: &Path) -> Crate {
    let root = src.parent().unwrap_or(src);
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let modules = files
        .iter()
        .filter_map(|f| f.strip_prefix(src).ok()?.components().next())
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut krate = Crate {
        modules,
        edges: BTreeMap::new(),
        globs: Vec::new(),
    };

    // (file, module path, test-only, loaded through #[path])
    let mut queue: VecDeque<(PathBuf, Vec<String>, bool, bool)> = ["lib.rs", "main.rs"]
        .iter()
        .map(|f| (src.join(f), Vec::new(), false, false))
        .filter(|(f, ..)| f.is_file())
        .collect();
    // Files already read, canonical so that a `#[path = "../x.rs"]` matches the listing.
    let canonical = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let mut seen: BTreeSet<PathBuf> = queue.iter().map(|(f, ..)| canonical(f)).collect();
    while let Some((file, module, test, by_path)) = queue.pop_front() {
        let scan = read_file(root, &file, &module, test, &mut krate);
        let dir = file.parent().unwrap_or(src).to_path_buf();
        let stem = file
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mod_rs = by_path || ["mod", "lib", "main"].contains(&stem.as_str());
        for decl in scan.mods.iter().cloned() {
            // The directory that `mod x;` and `#[path]` resolve in (the Reference, "Modules").
            let mut base = if mod_rs || (decl.path.is_some() && decl.inline.is_empty()) {
                dir.clone()
            } else {
                dir.join(&stem)
            };
            base.extend(&decl.inline);
            let child = match &decl.path {
                Some(path) => base.join(path),
                None if base.join(format!("{}.rs", decl.name)).is_file() => {
                    base.join(format!("{}.rs", decl.name))
                }
                None => base.join(&decl.name).join("mod.rs"),
            };
            if child.is_file() && seen.insert(canonical(&child)) {
                let mut path = module.clone();
                path.extend(decl.inline);
                path.push(decl.name);
                queue.push_back((child, path, scan.test || decl.test, decl.path.is_some()));
            }
        }
    }
    for file in files.iter().filter(|f| !seen.contains(&canonical(f))) {
        let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
        let mut module: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().to_string())
            .collect();
        if module.last().is_some_and(|m| m == "mod") {
            module.pop();
        }
        read_file(root, file, &module, false, &mut krate);
    }
    for sites in krate.edges.values_mut() {
        sites.sort();
        sites.dedup();
    }
    krate
}

/// Scans one file and records its edges unless it is test code (`test`: declared under
/// `#[cfg(test)]`, itself or an ancestor).
fn read_file(root: &Path, file: &Path, module: &[String], test: bool, krate: &mut Crate) -> Scan {
    let text = fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("architecture check: reading {}: {e}", file.display()));
    let mut scan = scan(&lex(&text), module);
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    scan.test |= test || name == "tests.rs" || name.ends_with("_tests.rs");
    let Some(from) = module.first() else {
        return scan; // lib.rs / main.rs: the root uses everything
    };
    if scan.test {
        return scan;
    }
    let rel = file
        .strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string();
    for r in scan.refs.iter().filter(|r| !r.test) {
        match &r.target {
            Target::Module(to) if to != from && krate.modules.contains(to) => krate
                .edges
                .entry((from.clone(), to.clone()))
                .or_default()
                .push(Site::new(&rel, r.line)),
            Target::Module(_) => {}
            Target::Glob => krate.globs.push(Site::new(&rel, r.line)),
        }
    }
    scan
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("architecture check: listing {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

// ---- Tokens: identifiers, `::`, string contents and single punctuation. ----

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// A string literal's text, as written (escapes not undone).
    Str(String),
    /// `::`
    Sep,
    Punct(char),
}

struct Token {
    tok: Tok,
    line: usize,
}

/// Splits Rust source into tokens, dropping comments (nested block comments too), char
/// literals, lifetimes and numbers, and keeping string literals as one [`Tok::Str`].
fn lex(text: &str) -> Vec<Token> {
    let c: Vec<char> = text.chars().collect();
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < c.len() {
        let ch = c[i];
        let start = line;
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(c[i] == '\n');
                    i += 1;
                }
            }
        } else if ch == '"' {
            let (s, end) = quoted(&c, i + 1, &mut line);
            out.push(Token {
                tok: Tok::Str(s),
                line: start,
            });
            i = end;
        } else if ch == '\'' {
            i = char_or_lifetime(&c, i);
        } else if ch.is_ascii_digit() {
            while is_ident_char(at(i)) {
                i += 1;
            }
        } else if is_ident_char(ch) {
            // Literal prefixes: b'x', b"..", c"..", r"..", r#".."#, br".., cr".., and r#ident.
            let raw_at = if (ch == 'b' || ch == 'c') && at(i + 1) == 'r' {
                i + 1
            } else {
                i
            };
            let hashes = (raw_at + 1..).take_while(|&k| at(k) == '#').count();
            if ch == 'b' && at(i + 1) == '\'' {
                i = char_or_lifetime(&c, i + 1);
            } else if (ch == 'b' || ch == 'c') && at(i + 1) == '"' {
                let (s, end) = quoted(&c, i + 2, &mut line);
                out.push(Token {
                    tok: Tok::Str(s),
                    line: start,
                });
                i = end;
            } else if c[raw_at] == 'r' && at(raw_at + 1 + hashes) == '"' {
                let body = raw_at + 2 + hashes;
                let mut end = body;
                while end < c.len() && !(c[end] == '"' && (1..=hashes).all(|h| at(end + h) == '#'))
                {
                    line += usize::from(c[end] == '\n');
                    end += 1;
                }
                out.push(Token {
                    tok: Tok::Str(c[body..end.min(c.len())].iter().collect()),
                    line: start,
                });
                i = end + 1 + hashes;
            } else {
                if ch == 'r' && at(i + 1) == '#' && is_ident_char(at(i + 2)) {
                    i += 2; // r#ident
                }
                let begin = i;
                while is_ident_char(at(i)) {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Ident(c[begin..i].iter().collect()),
                    line: start,
                });
            }
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(Token {
                tok: Tok::Sep,
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                tok: Tok::Punct(ch),
                line,
            });
            i += 1;
        }
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Reads a quoted literal whose body starts at `i`; returns its text and the index past it.
fn quoted(c: &[char], mut i: usize, line: &mut usize) -> (String, usize) {
    let begin = i;
    while i < c.len() && c[i] != '"' {
        if c[i] == '\\' {
            i += 1;
        }
        if c.get(i) == Some(&'\n') {
            *line += 1;
        }
        i += 1;
    }
    (c[begin..i.min(c.len())].iter().collect(), i + 1)
}

/// Skips a char literal (`'x'`, `'\n'`, `'"'`) or a lifetime/label (`'a`) starting at `i`.
fn char_or_lifetime(c: &[char], i: usize) -> usize {
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    if at(i + 1) == '\\' {
        let mut j = i + 3;
        while j < c.len() && c[j] != '\'' {
            j += 1;
        }
        j + 1
    } else if at(i + 2) == '\'' {
        i + 3
    } else {
        let mut j = i + 1;
        while is_ident_char(at(j)) {
            j += 1;
        }
        j
    }
}

// ---- Scanning: `mod` declarations, test-only regions and paths into the crate. ----

/// What one file says.
#[derive(Default)]
struct Scan {
    mods: Vec<ModDecl>,
    refs: Vec<Ref>,
    /// The whole file is test code: `#![cfg(test)]`, or so marked by [`read_file`].
    test: bool,
}

/// `mod name;` with its `#[path]`, inside these inline modules of the file.
#[derive(Clone)]
struct ModDecl {
    name: String,
    path: Option<String>,
    inline: Vec<String>,
    test: bool,
}

/// A path that names a top-level module (or globs the crate root).
struct Ref {
    target: Target,
    line: usize,
    test: bool,
}

enum Target {
    Module(String),
    Glob,
}

fn ident(toks: &[Token], i: usize, word: &str) -> bool {
    matches!(toks.get(i), Some(Token { tok: Tok::Ident(s), .. }) if s == word)
}

fn punct(toks: &[Token], i: usize, ch: char) -> bool {
    matches!(toks.get(i), Some(Token { tok: Tok::Punct(p), .. }) if *p == ch)
}

fn sep(toks: &[Token], i: usize) -> bool {
    matches!(toks.get(i), Some(Token { tok: Tok::Sep, .. }))
}

fn opener(toks: &[Token], i: usize) -> bool {
    punct(toks, i, '(') || punct(toks, i, '[') || punct(toks, i, '{')
}

/// For each bracket, the index of its partner; an unclosed one pairs with the last token.
fn partners(toks: &[Token]) -> Vec<usize> {
    let mut partner: Vec<usize> = (0..toks.len()).collect();
    let mut open = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        match t.tok {
            Tok::Punct('(' | '[' | '{') => open.push(i),
            Tok::Punct(')' | ']' | '}') => {
                if let Some(o) = open.pop() {
                    partner[o] = i;
                    partner[i] = o;
                }
            }
            _ => {}
        }
    }
    for o in open {
        partner[o] = toks.len() - 1;
    }
    partner
}

/// Reads one file's tokens. `module` is the file's module path, for `super::`.
fn scan(toks: &[Token], module: &[String]) -> Scan {
    let partner = partners(toks);
    let n = toks.len();
    let mut out = Scan::default();
    // Open braces: (the inline module's name if the brace opens `mod name {`, its partner).
    let mut scopes: Vec<(Option<String>, usize)> = Vec::new();
    // Tokens up to this index are test-only code.
    let mut test_until: Option<usize> = None;
    let mut path_attr: Option<String> = None;
    let mut i = 0;
    while i < n {
        let test = test_until.is_some_and(|end| i <= end);
        let inline = || -> Vec<String> { scopes.iter().filter_map(|s| s.0.clone()).collect() };
        match &toks[i].tok {
            Tok::Punct('#') => {
                let inner = punct(toks, i + 1, '!');
                let open = i + 1 + usize::from(inner);
                if punct(toks, open, '[') {
                    let close = partner[open].max(open);
                    let attr = toks.get(open + 1..close).unwrap_or(&[]);
                    if is_cfg_test(attr) {
                        let end = if inner {
                            if scopes.is_empty() {
                                out.test = true;
                            }
                            scopes.last().map_or(n - 1, |s| s.1)
                        } else {
                            let mut start = close + 1;
                            while punct(toks, start, '#') && punct(toks, start + 1, '[') {
                                start = partner[start + 1] + 1;
                            }
                            item_end(toks, &partner, start)
                        };
                        test_until = Some(test_until.map_or(end, |e| e.max(end)));
                    }
                    if let [
                        Token {
                            tok: Tok::Ident(key),
                            ..
                        },
                        Token {
                            tok: Tok::Punct('='),
                            ..
                        },
                        Token {
                            tok: Tok::Str(value),
                            ..
                        },
                    ] = attr
                        && key == "path"
                        && !inner
                    {
                        path_attr = Some(value.clone());
                    }
                    i = close + 1;
                    continue;
                }
            }
            Tok::Punct('{') => {
                let name = match (
                    toks.get(i.wrapping_sub(1)),
                    i >= 2 && ident(toks, i - 2, "mod"),
                ) {
                    (
                        Some(Token {
                            tok: Tok::Ident(name),
                            ..
                        }),
                        true,
                    ) => Some(name.clone()),
                    _ => None,
                };
                scopes.push((name, partner[i]));
                path_attr = None;
            }
            Tok::Punct('}') => {
                while scopes.last().is_some_and(|s| s.1 == i) {
                    scopes.pop();
                }
                path_attr = None;
            }
            Tok::Punct(';') => path_attr = None,
            Tok::Ident(word) if word == "mod" && punct(toks, i + 2, ';') => {
                if let Some(Token {
                    tok: Tok::Ident(name),
                    ..
                }) = toks.get(i + 1)
                {
                    out.mods.push(ModDecl {
                        name: name.clone(),
                        path: path_attr.take(),
                        inline: inline(),
                        test,
                    });
                }
            }
            Tok::Ident(word)
                if ["crate", "super", "self"].contains(&word.as_str())
                    && sep(toks, i + 1)
                    && (i == 0 || !sep(toks, i - 1)) =>
            {
                let mut targets = Vec::new();
                let next = if word == "crate" {
                    walk(toks, &partner, i + 2, Vec::new(), &mut targets)
                } else {
                    let mut here = module.to_vec();
                    here.extend(inline());
                    walk(toks, &partner, i, here, &mut targets)
                };
                for (target, line) in targets {
                    out.refs.push(Ref { target, line, test });
                }
                i = next.max(i + 1);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// `cfg(test)` or `cfg(all(.., test, ..))`: code that exists only in test builds.
fn is_cfg_test(attr: &[Token]) -> bool {
    fn test_only(pred: &[Token]) -> bool {
        if let [
            Token {
                tok: Tok::Ident(word),
                ..
            },
        ] = pred
        {
            return word == "test";
        }
        if !(ident(pred, 0, "all") && punct(pred, 1, '(') && pred.len() > 3) {
            return false;
        }
        let args = &pred[2..pred.len() - 1];
        let mut depth = 0i32;
        let mut begin = 0;
        for (i, t) in args.iter().enumerate() {
            match t.tok {
                Tok::Punct('(') => depth += 1,
                Tok::Punct(')') => depth -= 1,
                Tok::Punct(',') if depth == 0 => {
                    if test_only(&args[begin..i]) {
                        return true;
                    }
                    begin = i + 1;
                }
                _ => {}
            }
        }
        test_only(&args[begin..])
    }
    ident(attr, 0, "cfg")
        && punct(attr, 1, '(')
        && punct(attr, attr.len() - 1, ')')
        && test_only(&attr[2..attr.len() - 1])
}

/// The last token of the item (or field, arm, statement) that starts at `start`: its `;`, the
/// partner of its first `{`, or for a field or arm its `,`; never past the enclosing bracket.
fn item_end(toks: &[Token], partner: &[usize], start: usize) -> usize {
    const ITEMS: &[&str] = &[
        "fn",
        "struct",
        "enum",
        "union",
        "impl",
        "trait",
        "mod",
        "use",
        "const",
        "static",
        "type",
        "extern",
        "unsafe",
        "async",
        "macro_rules",
        "let",
    ];
    let mut k = start;
    if ident(toks, k, "pub") {
        k += 1;
        if punct(toks, k, '(') {
            k = partner[k] + 1;
        }
    }
    let item = ITEMS.iter().any(|w| ident(toks, k, w));
    let mut angle = 0usize;
    let mut j = start;
    while j < toks.len() {
        match toks[j].tok {
            Tok::Punct('(' | '[') => j = partner[j],
            Tok::Punct('{') => return partner[j],
            Tok::Punct(';') => return j,
            Tok::Punct(')' | ']' | '}') => return j - 1,
            Tok::Punct(',') if !item && angle == 0 => return j,
            Tok::Punct('<') => angle += 1,
            Tok::Punct('>') if !punct(toks, j - 1, '-') && !punct(toks, j - 1, '=') => {
                angle = angle.saturating_sub(1)
            }
            _ => {}
        }
        j += 1;
    }
    toks.len() - 1
}

/// Follows a path from `i`, where `cur` is the module it is relative to (empty: the crate
/// root), through `super::`/`self::` and `{..}` groups, and records each top-level name it
/// reaches from the root. Returns the index past the path.
fn walk(
    toks: &[Token],
    partner: &[usize],
    mut i: usize,
    mut cur: Vec<String>,
    out: &mut Vec<(Target, usize)>,
) -> usize {
    loop {
        let Some(t) = toks.get(i) else { return i };
        match &t.tok {
            Tok::Ident(word) if word == "super" || word == "self" => {
                if word == "super" && cur.pop().is_none() {
                    return i + 1; // climbs past the root: not Rust
                }
                if !sep(toks, i + 1) {
                    return i + 1; // `self` in a group, `super as x`: a module, not into one
                }
                i += 2;
            }
            Tok::Ident(name) => {
                if cur.is_empty() {
                    out.push((Target::Module(name.clone()), t.line));
                }
                return skip_tail(toks, partner, i + 1);
            }
            Tok::Punct('{') => {
                let close = partner[i];
                let mut j = i + 1;
                while j < close {
                    j = walk(toks, partner, j, cur.clone(), out);
                    while j < close && !punct(toks, j, ',') {
                        if opener(toks, j) {
                            j = partner[j];
                        }
                        j += 1;
                    }
                    j += 1;
                }
                return close + 1;
            }
            Tok::Punct('*') => {
                if cur.is_empty() {
                    out.push((Target::Glob, t.line));
                }
                return i + 1;
            }
            _ => return i,
        }
    }
}

/// Skips `::name`, `::{..}` and `::*` segments after a path's first name.
fn skip_tail(toks: &[Token], partner: &[usize], mut j: usize) -> usize {
    while sep(toks, j) {
        match toks.get(j + 1).map(|t| &t.tok) {
            Some(Tok::Ident(_)) | Some(Tok::Punct('*')) => j += 2,
            Some(Tok::Punct('{')) => j = partner[j + 1] + 1,
            _ => return j,
        }
    }
    j
}

// ---- The tests. ----

#[test]
fn architecture_layers_point_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let krate = read_crate(&src);
    assert!(
        krate.modules.contains("routing") && !krate.edges.is_empty(),
        "the architecture check found no modules or no edges under {}",
        src.display()
    );
    let violations = check(&src, RULES);
    let list: Vec<String> = violations.iter().map(|v| format!("- {v}")).collect();
    assert!(
        violations.is_empty(),
        "{} architecture violation(s) in src/ (rules: tests/blackbox/architecture.rs):\n\n{}\n",
        violations.len(),
        list.join("\n\n")
    );
}

#[test]
fn architecture_rules_name_each_module_once() {
    let mut seen = BTreeSet::new();
    for (module, uses, why) in RULES {
        assert!(seen.insert(*module), "two rules for {module}");
        assert!(!why.is_empty(), "the rule for {module} gives no reason");
        let (Only(named) | Not(named)) = uses;
        assert!(
            !named.contains(&ANY),
            "the rule for {module} names {ANY} as a module"
        );
    }
}

/// A `src/` tree in a fresh temporary directory, removed on drop.
struct Tree {
    root: PathBuf,
}

impl Tree {
    fn new(name: &str, files: &[(&str, &str)]) -> Tree {
        let root = std::env::temp_dir().join(format!(
            "meridian-architecture-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&root);
        for (path, text) in files {
            let path = root.join("src").join(path);
            fs::create_dir_all(path.parent().expect("a file has a parent")).expect("mkdir");
            fs::write(&path, text).expect("write a synthetic source file");
        }
        Tree { root }
    }

    fn check(&self) -> Vec<Violation> {
        check(&self.root.join("src"), RULES)
    }

    fn edges(&self) -> Vec<(String, String, Vec<Site>)> {
        read_crate(&self.root.join("src"))
            .edges
            .into_iter()
            .map(|((from, to), sites)| (from, to, sites))
            .collect()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn forbidden(from: &str, to: &str, sites: &[Site]) -> Violation {
    let why = RULES
        .iter()
        .find(|(m, uses, _)| (*m == from || *m == ANY) && uses.forbids(to))
        .map(|r| r.2)
        .expect("a rule forbids the edge");
    Violation::Forbidden {
        from: from.into(),
        to: to.into(),
        why,
        sites: sites.to_vec(),
    }
}

fn edge(from: &str, to: &str, sites: &[Site]) -> (String, String, Vec<Site>) {
    (from.into(), to.into(), sites.to_vec())
}

#[test]
fn architecture_check_reports_a_cycle_with_its_edges() {
    let tree = Tree::new(
        "cycle",
        &[
            ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
            ("a.rs", "use crate::b::B;\npub struct A;\n"),
            ("b/mod.rs", "pub mod inner;\npub struct B;\n"),
            (
                "b/inner.rs",
                "pub fn f() -> crate::a::A {\n    crate::a::A\n}\n",
            ),
            ("c.rs", "use crate::a::A;\n"),
        ],
    );
    let found = tree.check();
    assert_eq!(
        found,
        vec![Violation::Cycle {
            modules: vec!["a".into(), "b".into()],
            sites: vec![Site::new("src/a.rs", 1), Site::new("src/b/inner.rs", 1)],
        }]
    );
    assert_eq!(
        found[0].to_string(),
        "import cycle: a -> b -> a\n    a -> b: src/a.rs:1\n    b -> a: src/b/inner.rs:1"
    );
}

#[test]
fn architecture_check_reports_forbidden_edges_with_every_site() {
    let tree = Tree::new(
        "forbidden",
        &[
            (
                "lib.rs",
                "pub mod admin;\npub mod cli;\npub mod dns;\npub mod geo;\npub mod hash;\npub mod routing;\n",
            ),
            ("routing/mod.rs", "pub mod table;\nuse crate::geo::Point;\n"),
            (
                "routing/table.rs",
                "use crate::dns::Wire;\n\npub fn f() {\n    crate::dns::send();\n}\n",
            ),
            ("dns.rs", "pub struct Wire;\npub fn send() {}\n"),
            ("geo.rs", "use crate::hash::h;\npub struct Point;\n"),
            ("hash.rs", "pub fn h() {}\n"),
            ("admin.rs", "pub fn f() {\n    crate::cli::run()\n}\n"),
            ("cli.rs", "pub fn run() {}\n"),
        ],
    );
    assert_eq!(
        tree.check(),
        vec![
            forbidden("admin", "cli", &[Site::new("src/admin.rs", 2)]),
            forbidden(
                "routing",
                "dns",
                &[
                    Site::new("src/routing/table.rs", 1),
                    Site::new("src/routing/table.rs", 4)
                ]
            ),
        ]
    );
}

#[test]
fn architecture_check_skips_test_code_comments_and_strings() {
    let tree = Tree::new(
        "tests",
        &[
            (
                "lib.rs",
                "pub mod admin;\npub mod config;\npub mod dns;\npub mod health;\npub mod routing;\n",
            ),
            ("admin.rs", ""),
            ("config.rs", ""),
            ("dns.rs", ""),
            ("health.rs", ""),
            (
                "routing/mod.rs",
                "pub mod decide;\n\
                 mod helpers;\n\
                 #[cfg(test)]\n\
                 mod policy_tests;\n\
                 #[cfg(test)]\n\
                 #[path = \"fixtures.rs\"]\n\
                 mod fixtures;\n\
                 #[cfg(all(test, unix))]\n\
                 use crate::admin::X;\n",
            ),
            (
                "routing/decide.rs",
                r##"// crate::dns in a line comment
/* crate::admin /* nested crate::config */ crate::dns */
/// crate::config in a doc comment
pub fn f() -> &'static str { "crate::dns::x \" crate::admin" }
pub const Q: char = '"';
pub const R: &str = r#"crate::health " crate::dns"#;
pub fn g<'a>(x: &'a str) -> &'a str { x }
impl S {
    #[cfg(test)]
    pub fn fixture<A, B>() -> crate::config::Config where A: Copy, B: Copy { todo!() }
    pub fn real(&self) {}
}
#[cfg(test)]
mod tests {
    use crate::config::load;
    fn h() { { crate::dns::x(); } }
}
#[cfg(test)]
#[path = "decide_checks.rs"]
mod checks;
pub fn after() {
    crate::health::probe();
}
"##,
            ),
            ("routing/policy_tests.rs", "use crate::config::load;\n"),
            ("routing/fixtures.rs", "use crate::dns::Wire;\nmod more;\n"),
            (
                "routing/helpers.rs",
                "#![cfg(test)]\nuse crate::dns::Wire;\n",
            ),
            ("routing/more.rs", "use crate::admin::X;\n"),
            ("routing/decide_checks.rs", "use crate::admin::Y;\n"),
            ("routing/tests.rs", "use crate::dns::Z;\n"),
        ],
    );
    // Only the code after the test module counts; a wrong brace match would hide it.
    assert_eq!(
        tree.check(),
        vec![forbidden(
            "routing",
            "health",
            &[Site::new("src/routing/decide.rs", 22)]
        )]
    );
}

#[test]
fn architecture_check_reads_use_groups_and_super_chains() {
    let tree = Tree::new(
        "paths",
        &[
            (
                "lib.rs",
                "pub mod admin;\npub mod config;\npub mod dns;\npub mod geo;\npub mod hash;\npub mod metrics;\npub mod routing;\n",
            ),
            ("admin.rs", "use crate::{config, dns::x};\n"),
            (
                "geo.rs",
                "pub use crate::{\n    hash::h,\n    routing::{self, table::Table},\n};\n\
                 use self::inner::Y;\n\
                 mod inner {\n    pub use super::super::metrics::m;\n}\n",
            ),
            ("routing/mod.rs", "pub mod table;\npub mod x;\n"),
            ("routing/table.rs", "pub struct Table;\n"),
            (
                "routing/x.rs",
                "use super::table::Table;\n\
                 use super::super::dns::Wire;\n\
                 use super::super::{metrics::count, hash};\n\
                 pub fn f() -> u8 {\n    super::super::hash::G\n}\n",
            ),
            ("config.rs", ""),
            ("dns.rs", ""),
            ("hash.rs", ""),
            ("metrics.rs", ""),
        ],
    );
    assert_eq!(
        tree.edges(),
        vec![
            edge("admin", "config", &[Site::new("src/admin.rs", 1)]),
            edge("admin", "dns", &[Site::new("src/admin.rs", 1)]),
            edge("geo", "hash", &[Site::new("src/geo.rs", 2)]),
            edge("geo", "metrics", &[Site::new("src/geo.rs", 7)]),
            edge("geo", "routing", &[Site::new("src/geo.rs", 3)]),
            edge("routing", "dns", &[Site::new("src/routing/x.rs", 2)]),
            edge(
                "routing",
                "hash",
                &[
                    Site::new("src/routing/x.rs", 3),
                    Site::new("src/routing/x.rs", 5)
                ]
            ),
            edge("routing", "metrics", &[Site::new("src/routing/x.rs", 3)]),
        ]
    );
    assert_eq!(
        tree.check(),
        vec![
            forbidden("geo", "metrics", &[Site::new("src/geo.rs", 7)]),
            forbidden("geo", "routing", &[Site::new("src/geo.rs", 3)]),
            forbidden("routing", "dns", &[Site::new("src/routing/x.rs", 2)]),
            forbidden("routing", "metrics", &[Site::new("src/routing/x.rs", 3)]),
        ]
    );
}

#[test]
fn architecture_check_refuses_a_glob_of_the_crate_root() {
    let tree = Tree::new(
        "glob",
        &[
            ("lib.rs", "pub mod a;\npub mod b;\n"),
            ("a.rs", "use super::*;\n"),
            ("b/mod.rs", "pub mod c;\nuse super::*;\n"),
            ("b/c.rs", "use super::*;\n"),
        ],
    );
    assert_eq!(
        tree.check(),
        vec![
            Violation::Unresolved {
                site: Site::new("src/a.rs", 1)
            },
            Violation::Unresolved {
                site: Site::new("src/b/mod.rs", 2)
            },
        ]
    );
}
