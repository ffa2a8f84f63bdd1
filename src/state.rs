//! State kept in `state_dir` across restarts, written atomically (temp file, fsync, rename):
//! - `evacuations.json`: operators' evacuations and drains. Operator intent: a corrupt file
//!   stops start-up rather than silently undoing an evacuation.
//! - `health.json`: the last verdict of each probe target, so a restart never answers blind.
//!   Derived data: a corrupt file is ignored with a warning.
//! - `history.jsonl`: the history of published tables, one JSON document a line, appended
//!   and compacted to its newest lines when it grows past a bound. A torn last line (a crash
//!   mid-write) is skipped when read.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::routing::admin::{AdminState, Drain, Evacuation, Ramp};
use crate::routing::table::Health;

const HEALTH_FILE: &str = "health.json";
const EVACUATIONS_FILE: &str = "evacuations.json";

#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Clone)]
pub struct SavedEvacuations {
    pub version: u32,
    /// Region name -> evacuation.
    pub regions: BTreeMap<String, Evacuation>,
    /// Region name -> drain.
    #[serde(default)]
    pub drains: BTreeMap<String, Drain>,
    /// Ramp id -> ramp.
    #[serde(default)]
    pub ramps: BTreeMap<String, Ramp>,
}

impl SavedEvacuations {
    pub fn new(state: &AdminState) -> SavedEvacuations {
        SavedEvacuations {
            version: 1,
            regions: state.evacuations.clone(),
            drains: state.drains.clone(),
            ramps: state.ramps.clone(),
        }
    }

    pub fn into_state(self) -> AdminState {
        AdminState {
            evacuations: self.regions,
            drains: self.drains,
            ramps: self.ramps,
        }
    }
}

pub fn evacuations_path(dir: &Path) -> PathBuf {
    dir.join(EVACUATIONS_FILE)
}

/// Reads saved evacuations; a missing file is none. Any other problem is an error.
pub fn load_evacuations(dir: &Path) -> Result<SavedEvacuations, StateError> {
    let path = evacuations_path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(SavedEvacuations::default());
        }
        Err(source) => return Err(StateError::Read { path, source }),
    };
    serde_json::from_str(&text).map_err(|source| StateError::Corrupt { path, source })
}

pub fn save_evacuations(dir: &Path, saved: &SavedEvacuations) -> Result<(), StateError> {
    let bytes = serde_json::to_vec_pretty(saved).unwrap_or_default();
    write_atomic(&evacuations_path(dir), &bytes)
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SavedHealth {
    pub version: u32,
    /// Target key (`check@addr`) -> last verdict.
    pub targets: BTreeMap<String, Health>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

pub fn health_path(dir: &Path) -> PathBuf {
    dir.join(HEALTH_FILE)
}

/// Reads saved health; a missing file is an empty record.
pub fn load_health(dir: &Path) -> Result<SavedHealth, StateError> {
    let path = health_path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SavedHealth::default()),
        Err(source) => return Err(StateError::Read { path, source }),
    };
    serde_json::from_str(&text).map_err(|source| StateError::Corrupt { path, source })
}

pub fn save_health(dir: &Path, saved: &SavedHealth) -> Result<(), StateError> {
    let bytes = serde_json::to_vec_pretty(saved).unwrap_or_default();
    write_atomic(&health_path(dir), &bytes)
}

const HISTORY_FILE: &str = "history.jsonl";

pub fn history_path(dir: &Path) -> PathBuf {
    dir.join(HISTORY_FILE)
}

/// The history journal's lines, oldest first; a missing file has none.
pub fn load_history(dir: &Path) -> Result<Vec<String>, StateError> {
    let path = history_path(dir);
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(t.lines().map(str::to_owned).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(StateError::Read { path, source }),
    }
}

/// Appends whole lines to the history journal. When it then holds more than `max` lines it is
/// rewritten (atomically) with its newest `keep`. Answers how many lines it holds.
pub fn append_history(
    dir: &Path,
    lines: &[String],
    held: usize,
    max: usize,
    keep: usize,
) -> Result<usize, StateError> {
    let path = history_path(dir);
    let err = |source| StateError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut text = String::new();
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(err)?;
    // A torn line left by a crash ends where the next write begins: start on a line of its
    // own so that only the torn one is lost.
    let len = f.metadata().map_err(err)?.len();
    if len > 0 && last_byte(&path).map_err(err)? != b'\n' {
        text.insert(0, '\n');
    }
    f.write_all(text.as_bytes()).map_err(err)?;
    drop(f);
    let held = held + lines.len();
    if held <= max {
        return Ok(held);
    }
    let all = load_history(dir)?;
    let newest = &all[all.len().saturating_sub(keep)..];
    let mut text = newest.join("\n");
    text.push('\n');
    write_atomic(&path, text.as_bytes())?;
    Ok(newest.len())
}

fn last_byte(path: &Path) -> std::io::Result<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::End(-1))?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b)?;
    Ok(b[0])
}

const CONFIGS_DIR: &str = "configs";

/// Where the source text of a config kept for rollback is saved: `configs/HASH.toml`.
pub fn config_source_path(dir: &Path, hash: &str) -> PathBuf {
    dir.join(CONFIGS_DIR).join(format!("{hash}.toml"))
}

/// Saves a config's source text for rollback and keeps only the newest `keep` of them.
pub fn save_config_source(
    dir: &Path,
    hash: &str,
    text: &str,
    keep: usize,
) -> Result<(), StateError> {
    write_atomic(&config_source_path(dir, hash), text.as_bytes())?;
    let configs = dir.join(CONFIGS_DIR);
    let Ok(entries) = std::fs::read_dir(&configs) else {
        return Ok(());
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort();
    let extra = files.len().saturating_sub(keep);
    for (_, path) in files.into_iter().take(extra) {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Writes a file so that readers see the old content or the new, never a mix: temp file in
/// the same directory, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        // Never leave a half-written temp file behind (a full disk, a read-only directory).
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_round_trips_and_missing_is_empty() {
        let dir = std::env::temp_dir().join(format!("meridian-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(load_health(&dir).unwrap(), SavedHealth::default());
        let mut saved = SavedHealth {
            version: 1,
            ..Default::default()
        };
        saved
            .targets
            .insert("http@127.0.0.1:80".into(), Health::Down);
        save_health(&dir, &saved).unwrap();
        assert_eq!(load_health(&dir).unwrap(), saved);
        std::fs::write(health_path(&dir), b"{nope").unwrap();
        assert!(matches!(load_health(&dir), Err(StateError::Corrupt { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_history_journal_is_bounded_and_survives_a_torn_line() {
        let dir = std::env::temp_dir().join(format!("meridian-history-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(load_history(&dir).unwrap().is_empty());
        let lines: Vec<String> = (0..5).map(|i| format!("{{\"n\":{i}}}")).collect();
        assert_eq!(append_history(&dir, &lines, 0, 8, 4).unwrap(), 5);
        // A crash mid-line: the next append starts a line of its own.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(history_path(&dir))
            .unwrap();
        f.write_all(b"{\"n\":to").unwrap();
        drop(f);
        assert_eq!(append_history(&dir, &lines[..1], 5, 8, 4).unwrap(), 6);
        let read = load_history(&dir).unwrap();
        assert_eq!(read.len(), 7);
        assert_eq!(read[5], "{\"n\":to");
        assert_eq!(read[6], "{\"n\":0}");
        // Past the bound: compacted to the newest lines.
        assert_eq!(append_history(&dir, &lines, 7, 8, 4).unwrap(), 4);
        let read = load_history(&dir).unwrap();
        assert_eq!(read, lines[1..].to_vec());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
