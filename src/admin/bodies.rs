//! The JSON bodies of the admin API's changes (evacuate, drain, ramp), checked into the
//! publisher's commands; `Err` is the message of a 400.
use std::time::Duration;

use serde::Deserialize;

use crate::control::admin::Change;
use crate::control::ramps::RampSpec;
use crate::routing::admin::{AbortWhen, OnAbort};

/// Which change a body asks for: each takes its own keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Evacuate,
    Drain,
    Ramp,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    force: bool,
    /// "4h", "30m": the change lifts itself this long after it begins.
    expires_in: Option<String>,
    /// RFC 3339: a scheduled change begins then.
    start: Option<String>,
    /// RFC 3339: and lifts itself then.
    end: Option<String>,
    /// Drains.
    percent: Option<f64>,
    /// Ramps.
    steps: Option<Vec<f64>>,
    step_every: Option<String>,
    on_abort: Option<OnAbort>,
    abort_when: Option<AbortWhen>,
}

/// `POST /v1/rollback`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    pub to: u64,
    #[serde(default)]
    pub reason: String,
}

/// What a body asks for: the change, a drain's percentage, a ramp's spec.
pub struct Asked {
    pub change: Change,
    pub percent: f64,
    pub ramp: Option<RampSpec>,
}

impl ChangeBody {
    /// Parses and checks a body of `kind` about `region`, asked by `by`.
    pub fn parse(body: &[u8], kind: Kind, region: &str, by: String) -> Result<Asked, String> {
        let b: ChangeBody = if body.is_empty() {
            ChangeBody::default()
        } else {
            serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?
        };
        let ramp_keys = b.steps.is_some()
            || b.step_every.is_some()
            || b.on_abort.is_some()
            || b.abort_when.is_some();
        match kind {
            Kind::Drain if b.percent.is_none() => {
                return Err("body: missing \"percent\" (0 to 100)".into());
            }
            Kind::Evacuate | Kind::Ramp if b.percent.is_some() => {
                return Err("\"percent\" belongs to a drain".into());
            }
            Kind::Evacuate | Kind::Drain if ramp_keys => {
                return Err(
                    "\"steps\", \"step_every\", \"on_abort\" and \"abort_when\" belong to a ramp"
                        .into(),
                );
            }
            _ => {}
        }
        let ramp = match kind {
            Kind::Ramp => Some(RampSpec {
                steps: b.steps.clone().ok_or("body: missing \"steps\"")?,
                step_every: duration(
                    "step_every",
                    b.step_every
                        .as_deref()
                        .ok_or("body: missing \"step_every\"")?,
                )?,
                on_abort: b.on_abort.unwrap_or_default(),
                abort_when: b.abort_when.clone().unwrap_or_default(),
            }),
            _ => None,
        };
        let time = |key: &str, v: &Option<String>| {
            v.as_deref()
                .map(|t| {
                    humantime::parse_rfc3339_weak(t).map_err(|e| {
                        format!("{key}: {e} (RFC 3339, e.g. \"2026-12-01T02:00:00Z\")")
                    })
                })
                .transpose()
        };
        let change = Change {
            region: region.to_owned(),
            reason: b.reason,
            by,
            force: b.force,
            start: time("start", &b.start)?,
            end: time("end", &b.end)?,
            expires_in: b
                .expires_in
                .as_deref()
                .map(|d| duration("expires_in", d))
                .transpose()?,
        };
        Ok(Asked {
            change,
            percent: b.percent.unwrap_or(100.0),
            ramp,
        })
    }
}

/// A positive duration such as "30m" or "4h".
fn duration(key: &str, text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err(format!("{key} must be above zero")),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{key}: {e} (e.g. \"30m\", \"4h\")")),
    }
}
