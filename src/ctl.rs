//! `meridian ctl`: the admin API from the command line. One request per call to a running
//! server (its `admin_listen`, or `--server`), with the admin token; the answer comes back as
//! JSON for `--json` and is rendered as a table for people. No printing here: the CLI prints.
use std::fmt::Write as _;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// Longest a call may take, connect to last byte.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read (a routing table of a big config fits).
const MAX_ANSWER: usize = 64 << 20;

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The server answered, and refused or failed (its status and message).
    #[error("{status}: {message}")]
    Refused { status: u16, message: String },
    /// No usable answer: the server is unreachable, timed out or sent something unreadable.
    #[error("{0}")]
    Unreachable(String),
}

/// One call: `method` on `path` (with a JSON `body`) at `server` (`http://HOST:PORT`).
pub async fn call(
    server: &str,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, CtlError> {
    let unreachable = |what: &str, e: &dyn std::fmt::Display| {
        CtlError::Unreachable(format!("{what} {server}: {e}"))
    };
    let authority = server
        .strip_prefix("http://")
        .ok_or_else(|| {
            CtlError::Unreachable(format!("--server {server:?} must be http://HOST:PORT"))
        })?
        .trim_end_matches('/');
    let exchange = async {
        let stream = TcpStream::connect(authority)
            .await
            .map_err(|e| unreachable("cannot connect to", &e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable("no HTTP from", &e))?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, authority)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let payload = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let req = req
            .body(Full::new(payload))
            .map_err(|e| unreachable("bad request for", &e))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable("no answer from", &e))?;
        let status = resp.status().as_u16();
        let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| unreachable("unreadable answer from", &e))?
            .to_bytes();
        Ok::<_, CtlError>((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| {
            CtlError::Unreachable(format!("{server} did not answer within {TIMEOUT:?}"))
        })??;
    let value: Value = if path == "/metrics" {
        Value::String(String::from_utf8_lossy(&bytes).into_owned())
    } else {
        serde_json::from_slice(&bytes).map_err(|e| unreachable("not JSON from", &e))?
    };
    if (200..300).contains(&status) {
        Ok(value)
    } else {
        let message = value["error"].as_str().unwrap_or("refused").to_string();
        Err(CtlError::Refused { status, message })
    }
}

/// `GET /readyz` (ready or not, both answer JSON) as a few lines.
pub fn status_text(v: &Value) -> String {
    let mut s = String::new();
    let yes = |b: &Value| {
        if b.as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        }
    };
    let _ = writeln!(s, "ready       {}", yes(&v["ready"]));
    let _ = writeln!(s, "generation  {}", v["generation"]);
    let _ = writeln!(
        s,
        "probes      first round {}",
        if v["first_probe_round_complete"].as_bool() == Some(true) {
            "complete"
        } else {
            "pending"
        }
    );
    if let Some(c) = v.get("cluster").filter(|c| !c.is_null()) {
        let _ = writeln!(
            s,
            "fleet       {} ({})",
            c["name"].as_str().unwrap_or("?"),
            if c["connected"].as_bool() == Some(true) {
                "connected"
            } else {
                "disconnected"
            }
        );
    }
    s
}

/// `GET /v1/regions` as a table: each region, its evacuation, and per service how many
/// endpoints serve.
pub fn regions_text(v: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<16} {:<10} {:<32} SERVICES (serving endpoints)",
        "REGION", "STATE", "BY / REASON"
    );
    for r in v["regions"].as_array().into_iter().flatten() {
        let drain = r["drain"].as_object();
        let state = if r["evacuated"].as_bool() == Some(true) {
            "evacuated".to_string()
        } else if let Some(p) = drain.and_then(|d| d.get("percent")).and_then(Value::as_f64) {
            format!("drain {p}%")
        } else {
            "serving".to_string()
        };
        let why = match r["evacuation"].as_object().or(drain) {
            Some(e) => format!(
                "{} / {}",
                e.get("by").and_then(Value::as_str).unwrap_or("-"),
                e.get("reason").and_then(Value::as_str).unwrap_or("")
            ),
            None => "-".to_string(),
        };
        let services: Vec<String> = r["services"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|svc| {
                format!(
                    "{} {}/{}{}{}",
                    svc["service"].as_str().unwrap_or("?"),
                    svc["endpoints_up"],
                    svc["endpoints_total"],
                    if svc["up"].as_bool() == Some(true) {
                        ""
                    } else {
                        " (down)"
                    },
                    // A guarded service: whether the region may take clients moved to it.
                    match svc["promotable"].as_bool() {
                        Some(false) => " (not promotable)",
                        _ => "",
                    }
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "{:<16} {:<10} {:<32} {}",
            r["name"].as_str().unwrap_or("?"),
            state,
            why,
            services.join(", ")
        );
    }
    let _ = writeln!(s, "generation {}", v["generation"]);
    s
}

/// The body of an evacuation, or of a drain (with its percentage).
pub fn change_body(
    reason: &str,
    force: bool,
    expires_in: Option<&str>,
    percent: Option<f64>,
) -> Value {
    let mut body = json!({ "reason": reason, "force": force });
    if let Some(e) = expires_in {
        body["expires_in"] = json!(e);
    }
    if let Some(p) = percent {
        body["percent"] = json!(p);
    }
    body
}

/// The body of a ramp; `Err` for steps or conditions that do not parse (a usage error).
pub fn ramp_body(
    steps: &str,
    every: &str,
    reason: &str,
    on_abort: &str,
    abort_when: Option<&str>,
    expires_in: Option<&str>,
    force: bool,
) -> anyhow::Result<Value> {
    let steps: Vec<f64> = steps
        .split(',')
        .map(|s| {
            s.trim()
                .trim_end_matches('%')
                .parse::<f64>()
                .map_err(|_| anyhow::anyhow!("step {s:?} is not a percentage"))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut body = change_body(reason, force, expires_in, None);
    body["steps"] = json!(steps);
    body["step_every"] = json!(every);
    body["on_abort"] = json!(on_abort);
    if let Some(w) = abort_when {
        let w: Value = serde_json::from_str(w)
            .map_err(|e| anyhow::anyhow!("--abort-when is not JSON: {e}"))?;
        body["abort_when"] = w;
    }
    Ok(body)
}

/// `GET /v1/ramps` as a table.
pub fn ramps_text(v: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<28} {:<14} {:<10} {:<12} {:<8} STEPS / WHY",
        "ID", "REGION", "STATE", "STEP", "PERCENT"
    );
    for r in v["ramps"].as_array().into_iter().flatten() {
        let steps = r["steps"].as_array().map_or(0, Vec::len);
        let why = match r["aborted"]["why"].as_str() {
            Some(w) => format!("aborted: {w}"),
            None => r["steps"].to_string(),
        };
        let _ = writeln!(
            s,
            "{:<28} {:<14} {:<10} {:<12} {:<8} {why}",
            r["id"].as_str().unwrap_or("?"),
            r["region"].as_str().unwrap_or("?"),
            r["state"].as_str().unwrap_or("?"),
            format!("{} of {steps}", r["step"]),
            format!("{}%", r["percent"]),
        );
    }
    s
}

/// `POST /v1/what-if` as text: per service, each region's share now and after; the moves.
pub fn what_if_text(v: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "generation {}, {} sampled queries standing for {} qps (nothing applied)",
        v["generation"], v["sampled"], v["qps"]
    );
    for svc in v["services"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "\n{} ({} sampled, {} qps)",
            svc["service"].as_str().unwrap_or("?"),
            svc["sampled"],
            svc["qps"]
        );
        let _ = writeln!(
            s,
            "  {:<16} {:>8} {:>8} {:>10} {:>10}",
            "REGION", "NOW %", "AFTER %", "NOW QPS", "AFTER QPS"
        );
        for r in svc["regions"].as_array().into_iter().flatten() {
            let _ = writeln!(
                s,
                "  {:<16} {:>8} {:>8} {:>10} {:>10}",
                r["region"].as_str().unwrap_or("?"),
                r["now"],
                r["after"],
                r["now_qps"],
                r["after_qps"]
            );
        }
        for m in svc["moves"].as_array().into_iter().flatten().take(10) {
            let _ = writeln!(
                s,
                "  moves: {} {} -> {}: {} % ({} qps)",
                m["country"].as_str().unwrap_or("?"),
                m["from"].as_str().unwrap_or("?"),
                m["to"].as_str().unwrap_or("?"),
                m["share"],
                m["qps"]
            );
        }
    }
    for r in v["over_capacity"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "\nover capacity: {} {} qps predicted > capacity_qps {}",
            r["region"].as_str().unwrap_or("?"),
            r["predicted_qps"],
            r["capacity_qps"]
        );
    }
    s
}

/// `GET /v1/history` as a table, newest first.
pub fn history_text(v: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<10} {:<12} {:<18} {:<16} CHANGED",
        "GEN", "AT", "CAUSE", "CONFIG"
    );
    for e in v["entries"].as_array().into_iter().flatten() {
        let cause = &e["cause"];
        let mut what = cause["kind"].as_str().unwrap_or("?").to_string();
        if let Some(r) = cause["region"].as_str() {
            what = format!("{what} {r}");
        }
        let mut changed: Vec<String> = e["diff"]["regions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                format!(
                    "{}: {} -> {}",
                    r["region"].as_str().unwrap_or("?"),
                    r["from"].as_str().unwrap_or("?"),
                    r["to"].as_str().unwrap_or("?")
                )
            })
            .collect();
        if let Some(a) = e["diff"]["answers"].as_object() {
            for (svc, countries) in a {
                changed.push(format!("{svc} for {countries}"));
            }
        }
        let _ = writeln!(
            s,
            "{:<10} {:<12} {:<18} {:<16} {}",
            e["generation"],
            e["at"],
            what,
            e["config_hash"].as_str().unwrap_or("?"),
            changed.join("; ")
        );
    }
    s
}

/// The query string of an explain call, escaped.
pub fn explain_path(name: &str, qtype: &str, client: &str) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b':' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "/v1/explain?name={}&type={}&client={}",
        enc(name),
        enc(qtype),
        enc(client)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_name_a_region_that_is_not_promotable() {
        let v = json!({
            "generation": 7,
            "regions": [{
                "name": "eu-west",
                "evacuated": false,
                "services": [{
                    "service": "db.example.com.",
                    "up": true,
                    "promotable": false,
                    "endpoints_up": 1,
                    "endpoints_total": 1,
                }],
            }],
        });
        let text = regions_text(&v);
        assert!(
            text.contains("db.example.com. 1/1 (not promotable)"),
            "{text}"
        );
    }
}
