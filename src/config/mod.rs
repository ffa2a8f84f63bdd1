//! Configuration: TOML -> [`raw`] -> [`validate`] -> [`checked`] -> [`compile`] -> an immutable
//! [`Compiled`](crate::routing::Compiled). Every problem is reported with `FILE:LINE:COL`.
pub mod checked;
pub mod compile;
pub mod duration;
pub mod raw;
pub mod validate;
pub mod zonefile;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::routing::Compiled;

/// One problem in a config file (or a file it names), positioned for an editor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    /// None for a problem in a zone file, which is placed by line only.
    pub col: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.file.display(), self.line)?;
        if let Some(col) = self.col {
            write!(f, "{col}:")?;
        }
        write!(f, " {}", self.message)
    }
}

/// Every problem found in one config, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A line of a file other than the config (a zone file, a file it includes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLine {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for FileLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// What a problem blames: a byte span of the config text, or a line of another file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Config(Range<usize>),
    File(FileLine),
}

/// A problem before it is positioned: the place it blames and what is wrong.
#[derive(Debug, Clone)]
pub struct Problem {
    pub at: Place,
    pub message: String,
}

impl Problem {
    pub fn new(span: Range<usize>, message: impl Into<String>) -> Self {
        Problem {
            at: Place::Config(span),
            message: message.into(),
        }
    }

    pub fn at_line(at: FileLine, message: impl Into<String>) -> Self {
        Problem {
            at: Place::File(at),
            message: message.into(),
        }
    }
}

/// Reads, validates and compiles a config file. Relative paths inside it (the GeoIP database,
/// the state directory) are taken from the config file's directory.
pub fn load(path: &Path) -> Result<Compiled, ConfigErrors> {
    load_reusing(path, None)
}

/// Like [`load`], keeping `previous`'s GeoIP database when the file has not changed since it
/// was read (a reload then neither reads nor holds a second copy of it).
pub fn load_reusing(path: &Path, previous: Option<&Compiled>) -> Result<Compiled, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line: 1,
            col: Some(1),
            message: format!("cannot read config file: {e}"),
        }])
    })?;
    load_text(&text, path, previous)
}

/// Like [`load`], with the text already in hand (`path` names it in errors and anchors
/// relative paths).
pub fn load_str(text: &str, path: &Path) -> Result<Compiled, ConfigErrors> {
    load_text(text, path, None)
}

/// Like [`load_str`], keeping `previous`'s GeoIP and ASN databases (see [`load_reusing`]).
pub fn load_str_reusing(
    text: &str,
    path: &Path,
    previous: Option<&Compiled>,
) -> Result<Compiled, ConfigErrors> {
    load_text(text, path, previous)
}

fn load_text(
    text: &str,
    path: &Path,
    previous: Option<&Compiled>,
) -> Result<Compiled, ConfigErrors> {
    let base = path.parent().unwrap_or(Path::new("."));
    let positioned = |problems: Vec<Problem>| ConfigErrors(position(text, path, problems));
    let raw: raw::RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            return Err(positioned(vec![Problem::new(
                span,
                e.message().trim_end().to_string(),
            )]));
        }
    };
    // Zone files are read while validating; their texts count in the config hash.
    let mut zone_texts = Vec::new();
    let mut read = |p: &Path| {
        let t = std::fs::read_to_string(p)?;
        zone_texts.push(t.clone());
        Ok(t)
    };
    let checked = match validate::validate(&raw, text, path, &mut read) {
        Ok(c) => c,
        Err(mut problems) => {
            // Report an unusable database in the same pass (compile would open it next).
            if let Some(g) = &raw.geoip {
                if let Some(d) = &g.get_ref().database {
                    for path in d.get_ref().iter() {
                        if let Err(e) = crate::geo::GeoDb::open(&base.join(path)) {
                            problems.push(Problem::new(d.span(), e.to_string()));
                        }
                    }
                }
                if let Some(d) = &g.get_ref().asn_database {
                    for path in d.get_ref().iter() {
                        if let Err(e) = crate::geo::AsnDb::open(&base.join(path)) {
                            problems.push(Problem::new(d.span(), e.to_string()));
                        }
                    }
                }
            }
            return Err(positioned(problems));
        }
    };
    // Where each assertion and safety rule is, for the messages that name them.
    let at = |span: &Range<usize>| {
        let e = &position(text, path, vec![Problem::new(span.clone(), "")])[0];
        ((e.file.clone(), e.line, e.col.unwrap_or(1)), e.line)
    };
    let assert_at: Vec<_> = checked.asserts.iter().map(|(s, _)| at(s).0).collect();
    let safety_at: Vec<String> = checked
        .safety
        .iter()
        .map(|(s, _)| format!("{}:{}", path.display(), at(s).1))
        .collect();
    let reuse = compile::Reuse {
        geo: previous.and_then(|p| p.geo.clone()),
        asn: previous.and_then(|p| p.asn.clone()),
    };
    let mut compiled = compile::compile(checked, reuse).map_err(positioned)?;
    compiled.settings.config_hash = config_hash(text, &zone_texts);
    for (a, at) in compiled.assertions.iter_mut().zip(assert_at) {
        a.at = at;
    }
    for (r, at) in compiled.safety.iter_mut().zip(safety_at) {
        r.at = at;
    }
    Ok(compiled)
}

/// Problems in the config first, in file order; then those in other files, by file and line.
fn position(text: &str, path: &Path, mut problems: Vec<Problem>) -> Vec<ConfigError> {
    problems.sort_by(|a, b| match (&a.at, &b.at) {
        (Place::Config(a), Place::Config(b)) => a.start.cmp(&b.start),
        (Place::Config(_), Place::File(_)) => std::cmp::Ordering::Less,
        (Place::File(_), Place::Config(_)) => std::cmp::Ordering::Greater,
        (Place::File(a), Place::File(b)) => (&a.file, a.line).cmp(&(&b.file, b.line)),
    });
    problems
        .into_iter()
        .map(|p| match p.at {
            Place::Config(span) => {
                let start = span.start.min(text.len());
                let before = &text[..start];
                let line = before.matches('\n').count() + 1;
                let line_start = before.rfind('\n').map_or(0, |i| i + 1);
                let col = before[line_start..].chars().count() + 1;
                ConfigError {
                    file: path.to_owned(),
                    line,
                    col: Some(col),
                    message: p.message,
                }
            }
            Place::File(at) => ConfigError {
                file: at.file,
                line: at.line,
                col: None,
                message: p.message,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests;

/// What fleet instances compare to spot drift, as hex: FNV-1a of the config as parsed
/// (comments and layout do not count) without the one key that must differ between
/// instances, `[cluster] name` (nor `server.nsid`, which names the instance too), followed by
/// the text of every zone file it read (`$INCLUDE`d ones too), in reading order: a changed
/// zone file is a changed config. A text that is not TOML is hashed as it is.
pub fn config_hash(text: &str, zone_texts: &[String]) -> String {
    let canonical = match text.parse::<toml::Table>() {
        Ok(mut table) => {
            for (section, key) in [("cluster", "name"), ("server", "nsid")] {
                if let Some(toml::Value::Table(t)) = table.get_mut(section) {
                    t.remove(key);
                }
            }
            toml::Value::Table(table).to_string()
        }
        Err(_) => text.to_string(),
    };
    let mut all = canonical.into_bytes();
    for t in zone_texts {
        // Lengths keep the boundaries apart ("ab" + "c" is not "a" + "bc").
        all.extend_from_slice(&(t.len() as u64).to_le_bytes());
        all.extend_from_slice(t.as_bytes());
    }
    format!("{:016x}", crate::hash::fnv1a(&all))
}
