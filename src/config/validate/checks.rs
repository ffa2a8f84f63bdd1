//! `[checks.NAME]`: health check kinds, timing, rise/fall and what an HTTP answer must hold.
use std::collections::BTreeMap;
use std::time::Duration;

use super::Ctx;
use crate::config::duration;
use crate::config::raw::{RawCheck, S};
use crate::settings::{
    self, CheckKind, CheckSpec, Extract, FigureSpec, StatusMatch, TlsVerify, split_sample,
};

pub(super) fn checks(cx: &mut Ctx, raw: &BTreeMap<String, S<RawCheck>>) -> Vec<CheckSpec> {
    let mut out = Vec::new();
    for (name, c) in raw {
        let c = c.get_ref();
        let kind = match c.kind.get_ref().as_str() {
            "http" => CheckKind::Http,
            "https" => CheckKind::Https,
            "tcp" => CheckKind::Tcp,
            other => {
                cx.err(
                    c.kind.span(),
                    format!("check kind {other:?} is not http, https or tcp"),
                );
                CheckKind::Tcp
            }
        };
        let mut dur = |v: &Option<S<String>>, default: Duration| match v {
            None => default,
            Some(v) => match duration::parse(v.get_ref()) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    cx.err(v.span(), "duration must be above zero");
                    default
                }
                Err(e) => {
                    cx.err(v.span(), e);
                    default
                }
            },
        };
        let interval = dur(&c.interval, settings::DEFAULT_INTERVAL);
        let timeout = dur(&c.timeout, settings::DEFAULT_TIMEOUT.min(interval / 2));
        if timeout >= interval {
            let span = c
                .timeout
                .as_ref()
                .or(c.interval.as_ref())
                .map(|v| v.span())
                .unwrap_or_default();
            cx.err(
                span,
                format!("check timeout {timeout:?} must be below its interval {interval:?}"),
            );
        }
        let mut count = |v: &Option<S<i64>>, default: u32, what: &str| match v {
            None => default,
            Some(v) if (1..=100).contains(v.get_ref()) => *v.get_ref() as u32,
            Some(v) => {
                cx.err(v.span(), format!("check {what} must be 1 to 100"));
                default
            }
        };
        let rise = count(&c.rise, settings::DEFAULT_RISE, "rise");
        let fall = count(&c.fall, settings::DEFAULT_FALL, "fall");
        let port = c
            .port
            .as_ref()
            .and_then(|p| match u16::try_from(*p.get_ref()) {
                Ok(p) if p > 0 => Some(p),
                _ => {
                    cx.err(
                        p.span(),
                        format!("check port {} is not 1 to 65535", p.get_ref()),
                    );
                    None
                }
            });
        let mut expect_status = Vec::new();
        for s in c.expect_status.iter().flat_map(|v| v.get_ref()) {
            match s.get_ref() {
                toml::Value::Integer(n) if (100..=599).contains(n) => {
                    expect_status.push(StatusMatch::Code(*n as u16))
                }
                toml::Value::String(t)
                    if matches!(t.as_str(), "1xx" | "2xx" | "3xx" | "4xx" | "5xx") =>
                {
                    expect_status.push(StatusMatch::Class(t.as_bytes()[0] - b'0'))
                }
                _ => cx.err(
                    s.span(),
                    "expect_status takes HTTP codes (200) or classes (\"2xx\")",
                ),
            }
        }
        if expect_status.is_empty() {
            expect_status = vec![StatusMatch::Class(2), StatusMatch::Class(3)];
        }
        let path = c
            .path
            .as_ref()
            .map_or("/".to_string(), |p| p.get_ref().clone());
        if !path.starts_with('/') {
            let span = c.path.as_ref().map(|p| p.span()).unwrap_or_default();
            cx.err(span, format!("check path {path:?} must start with '/'"));
        }
        if kind == CheckKind::Tcp
            && (c.path.is_some() || c.expect_body.is_some() || c.expect_status.is_some())
        {
            cx.err(
                c.kind.span(),
                "a tcp check only connects: path, expect_status and expect_body need http or https",
            );
        }
        let figure = figure(cx, c, kind);
        let insecure = c
            .tls_insecure_skip_verify
            .as_ref()
            .is_some_and(|v| *v.get_ref());
        out.push(CheckSpec {
            name: name.clone(),
            kind,
            path,
            port,
            interval,
            timeout,
            rise,
            fall,
            expect_status,
            expect_body: c.expect_body.as_ref().map(|b| b.get_ref().clone()),
            headers: c
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tls_server_name: c.tls_server_name.as_ref().map(|v| v.get_ref().clone()),
            tls: if insecure {
                TlsVerify::InsecureSkipVerify
            } else {
                TlsVerify::Verify
            },
            figure,
        });
    }
    out
}

/// `extract` with its bounds: one source, an http or https check, at least one bound.
fn figure(cx: &mut Ctx, c: &RawCheck, kind: CheckKind) -> Option<FigureSpec> {
    let Some(e) = &c.extract else {
        for (key, span) in [
            ("max", c.max.as_ref().map(|v| v.span())),
            ("min", c.min.as_ref().map(|v| v.span())),
            ("unit", c.unit.as_ref().map(|v| v.span())),
        ] {
            if let Some(span) = span {
                cx.err(span, format!("`{key}` bounds a figure: it needs `extract`"));
            }
        }
        return None;
    };
    if kind == CheckKind::Tcp {
        cx.err(
            e.span(),
            "`extract` reads an HTTP response: it needs an http or https check",
        );
    }
    let mut entries = e.get_ref().iter();
    let extract = match (entries.next(), entries.next()) {
        (Some((key, v)), None) => {
            let text = v.get_ref();
            match key.as_str() {
                "json" if text.is_empty() || text.starts_with('/') => {
                    Some(Extract::Json(text.clone()))
                }
                "json" => {
                    cx.err(
                        v.span(),
                        format!("{text:?} is not a JSON pointer (it starts with '/')"),
                    );
                    None
                }
                "prometheus" => match split_sample(text) {
                    Some((name, labels, rest)) if rest.trim().is_empty() => {
                        Some(Extract::Prometheus {
                            name: name.to_string(),
                            labels,
                        })
                    }
                    _ => {
                        cx.err(
                            v.span(),
                            format!(
                                "{text:?} is not a Prometheus sample selector \
                                 (name{{label=\"value\",...}})"
                            ),
                        );
                        None
                    }
                },
                "header" if !text.is_empty() => Some(Extract::Header(text.clone())),
                _ => {
                    cx.err(
                        v.span(),
                        format!("extract {key:?}: expected `json`, `prometheus` or `header`"),
                    );
                    None
                }
            }
        }
        _ => {
            cx.err(
                e.span(),
                "`extract` names one source: `json`, `prometheus` or `header`",
            );
            None
        }
    };
    let bound = |v: &Option<S<f64>>| v.as_ref().map(|b| (*b.get_ref(), b.span()));
    let (min, max) = (bound(&c.min), bound(&c.max));
    if min.is_none() && max.is_none() {
        cx.err(e.span(), "`extract` needs a bound: `max`, `min` or both");
    }
    for (v, span) in min.iter().chain(max.iter()) {
        if !v.is_finite() {
            cx.err(span.clone(), "a bound must be a finite number");
        }
    }
    if let (Some((lo, _)), Some((hi, span))) = (&min, &max)
        && lo > hi
    {
        cx.err(span.clone(), format!("`max` {hi} is below `min` {lo}"));
    }
    Some(FigureSpec {
        extract: extract?,
        min: min.map(|b| b.0),
        max: max.map(|b| b.0),
        unit: c
            .unit
            .as_ref()
            .map_or(String::new(), |u| u.get_ref().clone()),
    })
}
