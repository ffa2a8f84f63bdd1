//! The admin HTTP API: health, readiness, metrics, regions, evacuation, reload, explain and
//! the routing table. [`Admin::handle`] is a plain async function of a request, so it is
//! tested without sockets; [`serve`] puts it on a listener.
pub mod auth;
mod bodies;
mod gzip;
mod views;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Bytes, Frame};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{debug, warn};

use crate::control::command::{AdminError, Command};
use crate::control::gauges::TableFamilies;
use crate::control::history;
use crate::control::ramps::RampAction;
use crate::dns::counters;
use crate::dns::snapshot::Store;
use crate::explain::whatif::{self, WhatIf};
use crate::metrics::Metrics;
use crate::routing::latency::Format;
use auth::{Token, is_loopback};
use bodies::{Asked, ChangeBody, Kind, RollbackBody};
use gzip::{Encoding, Gzip};

/// Largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024;
/// Longest a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection may stay open.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;

pub struct Admin {
    pub store: Arc<Store>,
    pub commands: mpsc::Sender<Command>,
    pub metrics: Arc<Metrics>,
    pub token: Option<Token>,
    /// Allows the read-only calls from outside loopback (a Prometheus scraping remotely),
    /// and nothing else.
    pub read_token: Option<Token>,
    /// Fleet mode status, when configured.
    pub cluster: Option<Arc<crate::cluster::SharedStatus>>,
}

type Reply = Response<UnsyncBoxBody<Bytes, Infallible>>;

fn json_reply(status: StatusCode, body: serde_json::Value) -> Reply {
    let mut text = serde_json::to_vec_pretty(&body).unwrap_or_default();
    text.push(b'\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(text)).boxed_unsync())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed_unsync()))
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Reply {
    json_reply(status, json!({ "error": message.to_string() }))
}

impl Admin {
    /// Serves one request from `peer`.
    pub async fn handle<B>(&self, req: Request<B>, peer: IpAddr) -> Reply
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                let status = if e
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                return error(status, format!("request body: {e}"));
            }
        };
        let path = parts.uri.path().to_string();
        let query = parts.uri.query().unwrap_or("").to_string();
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let authorized = self.token.as_ref().is_some_and(|t| t.accepts(bearer));
        let may_read = authorized || self.read_token.as_ref().is_some_and(|t| t.accepts(bearer));
        let mutating = parts.method == Method::POST || parts.method == Method::PUT;
        if mutating && !authorized && may_read {
            return error(
                StatusCode::FORBIDDEN,
                "the read token allows only read-only calls; changes need the admin token",
            );
        }
        if mutating && !authorized {
            let why = if self.token.is_none() {
                "no admin token is configured (server.admin_token_file or MERIDIAN_ADMIN_TOKEN); changes are refused"
            } else {
                "missing or wrong bearer token"
            };
            return error(StatusCode::UNAUTHORIZED, why);
        }
        if !mutating && !is_loopback(peer) && !may_read {
            return error(
                StatusCode::UNAUTHORIZED,
                "read-only calls from outside loopback need the admin or the read token",
            );
        }
        let who = format!("admin@{peer}");
        let Some((allowed, route)) = route(&segs) else {
            return error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}"));
        };
        if parts.method != allowed {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} is not allowed on {path}", parts.method),
            );
        }
        match route {
            Route::Healthz => json_reply(StatusCode::OK, json!({ "status": "ok" })),
            Route::Readyz => self.readyz(),
            Route::Metrics => self.metrics(gzip::negotiate(&parts.headers)),
            Route::Regions => json_reply(StatusCode::OK, views::regions(&self.store.load().table)),
            Route::RoutingTable => json_reply(
                StatusCode::OK,
                views::routing_table(&self.store.load().table),
            ),
            Route::Explain => self.explain(&query),
            Route::Cluster => match &self.cluster {
                Some(status) => {
                    let st = status.get();
                    json_reply(
                        StatusCode::OK,
                        json!({ "drifted": st.drifted(), "status": st }),
                    )
                }
                None => error(
                    StatusCode::NOT_FOUND,
                    "fleet mode is not configured (no [cluster] section)",
                ),
            },
            Route::Evacuate(region) | Route::Drain(region) | Route::Ramp(region) => {
                let kind = match route {
                    Route::Drain(_) => Kind::Drain,
                    Route::Ramp(_) => Kind::Ramp,
                    _ => Kind::Evacuate,
                };
                let asked = match ChangeBody::parse(&body, kind, region, who) {
                    Ok(a) => a,
                    Err(e) => return error(StatusCode::BAD_REQUEST, e),
                };
                let Asked {
                    change,
                    percent,
                    ramp,
                } = asked;
                match (kind, ramp) {
                    (Kind::Ramp, Some(spec)) => {
                        let asked = self
                            .ask(|reply| Command::Ramp {
                                change,
                                spec,
                                reply,
                            })
                            .await;
                        match asked {
                            Ok(Ok((generation, id))) => json_reply(
                                StatusCode::OK,
                                json!({ "region": region, "action": "ramp", "id": id, "generation": generation }),
                            ),
                            Ok(Err(e)) => admin_error(e),
                            Err(reply) => reply,
                        }
                    }
                    (Kind::Drain, _) => {
                        let asked = self
                            .ask(|reply| Command::Drain {
                                change,
                                percent,
                                reply,
                            })
                            .await;
                        admin_change(asked, region, "drain")
                    }
                    _ => {
                        let asked = self.ask(|reply| Command::Evacuate { change, reply }).await;
                        admin_change(asked, region, "evacuate")
                    }
                }
            }
            Route::Ramps => json_reply(StatusCode::OK, views::ramps(&self.store.load().table)),
            Route::RampAction(id, action) => {
                let Ok(action) = action.parse::<RampAction>() else {
                    return error(
                        StatusCode::NOT_FOUND,
                        format!("no such endpoint: {path} (pause, resume or abort)"),
                    );
                };
                let asked = self
                    .ask(|reply| Command::RampAction {
                        id: id.to_string(),
                        action,
                        by: who,
                        reply,
                    })
                    .await;
                admin_change(asked, id, "ramp")
            }
            Route::Restore(region) => {
                let asked = self
                    .ask(|reply| Command::Restore {
                        region: region.to_string(),
                        by: who,
                        reply,
                    })
                    .await;
                admin_change(asked, region, "restore")
            }
            Route::Reload => self.reload().await,
            Route::History => {
                let limit = query
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| *k == "limit")
                    .map(|(_, v)| v.parse::<usize>());
                let limit = match limit {
                    None => 50,
                    Some(Ok(n)) => n,
                    Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "limit is a number"),
                };
                match self.ask(|reply| Command::History { reply }).await {
                    Ok(entries) => {
                        let newest: Vec<_> = entries.iter().rev().take(limit).collect();
                        json_reply(StatusCode::OK, json!({ "entries": newest }))
                    }
                    Err(reply) => reply,
                }
            }
            Route::HistoryEntry(generation) => {
                let Ok(generation) = generation.parse::<u64>() else {
                    return error(StatusCode::BAD_REQUEST, "a generation is a number");
                };
                match self.ask(|reply| Command::History { reply }).await {
                    Ok(entries) => match entries.iter().find(|e| e.generation == generation) {
                        Some(e) => json_reply(StatusCode::OK, json!(e)),
                        None => error(
                            StatusCode::NOT_FOUND,
                            format!("no generation {generation} in the history"),
                        ),
                    },
                    Err(reply) => reply,
                }
            }
            Route::Rollback => {
                let b: RollbackBody = match serde_json::from_slice(&body) {
                    Ok(b) => b,
                    Err(e) => return error(StatusCode::BAD_REQUEST, format!("body: {e}")),
                };
                let asked = self
                    .ask(|reply| Command::Rollback {
                        to: b.to,
                        reason: b.reason,
                        by: who,
                        reply,
                    })
                    .await;
                match asked {
                    Ok(Ok(done)) => json_reply(StatusCode::OK, json!(done)),
                    Ok(Err(e)) => admin_error(e),
                    Err(reply) => reply,
                }
            }
            Route::WhatIf => self.what_if(&body).await,
            Route::LatencyMap => {
                let format = match parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .map(|v| v.as_bytes())
                {
                    Some(t) if t.starts_with(b"application/toml") => Format::Toml,
                    _ => Format::Csv,
                };
                self.set_latency_map(String::from_utf8_lossy(&body).into_owned(), format)
                    .await
            }
        }
    }

    /// Sends a command to the publisher and waits for its answer; a publisher that is gone
    /// or dropped the request is a 503.
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Reply> {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(command(reply)).await.is_err() {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the routing-table writer is gone",
            ));
        }
        rx.await.map_err(|_| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the routing-table writer dropped the request",
            )
        })
    }

    /// `GET /metrics`: the text exposition, streamed, gzip-compressed as it streams when the
    /// request accepts that (Prometheus does).
    fn metrics(&self, encoding: Encoding) -> Reply {
        let body = self.metrics_body();
        let reply = Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
            .header(header::VARY, "accept-encoding");
        match encoding {
            Encoding::Identity => reply.body(body.boxed_unsync()),
            Encoding::Gzip => reply
                .header(header::CONTENT_ENCODING, "gzip")
                .body(Gzip::new(body, gzip::LEVEL).boxed_unsync()),
        }
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed_unsync()))
    }

    /// The text of `/metrics` for the snapshot in force, not yet rendered past its first chunk.
    fn metrics_body(&self) -> MetricsBody {
        let snap = self.store.load_full();
        let text = self
            .metrics
            .render(&counters::FAMILIES, snap.counters.series());
        MetricsBody {
            first: Some(Bytes::from(text)),
            families: TableFamilies::new(snap.table.clone()),
        }
    }

    fn readyz(&self) -> Reply {
        let snap = self.store.load_full();
        let table = &snap.table;
        let ready = table.probes_complete || table.compiled.targets.is_empty();
        // Losing etcd degrades fleet features but DNS keeps serving: still ready, and said.
        let cluster = self.cluster.as_ref().map(|c| c.get());
        let body = json!({
            "ready": ready,
            "config_loaded": true,
            "listeners_bound": true,
            "first_probe_round_complete": ready,
            "generation": table.generation,
            "degraded": cluster.as_ref().is_some_and(|c| !c.connected),
            "cluster": cluster,
        });
        json_reply(
            if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
            body,
        )
    }

    fn explain(&self, query: &str) -> Reply {
        let param = |key: &str| {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == key)
                .map(|(_, v)| percent_decode(v))
        };
        let (Some(name), Some(qtype), Some(client)) =
            (param("name"), param("type"), param("client"))
        else {
            return error(
                StatusCode::BAD_REQUEST,
                "explain needs name, type and client query parameters",
            );
        };
        // What-if: `evacuate`, `down`, `restore` (comma-separated regions) and `drain`
        // (REGION:PERCENT, comma-separated) explain the query on the table the change would
        // make too.
        let list = |key: &str| -> Vec<String> {
            param(key)
                .map(|v| {
                    v.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut change = WhatIf {
            evacuate: list("evacuate"),
            down: list("down"),
            restore: list("restore"),
            ..Default::default()
        };
        for d in list("drain") {
            let parsed = d
                .split_once(':')
                .and_then(|(r, p)| Some((r.to_owned(), p.parse::<f64>().ok()?)));
            let Some((region, percent)) = parsed else {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("drain takes REGION:PERCENT, not {d:?}"),
                );
            };
            change.drain.insert(region, percent);
        }
        let table = self.store.load_full().table.clone();
        let now = match crate::explain::explain_request(&table, &name, &qtype, &client) {
            Ok(ex) => ex,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        };
        if change.is_empty() {
            return json_reply(
                StatusCode::OK,
                serde_json::to_value(now).unwrap_or_default(),
            );
        }
        let at = table.admin.at;
        let after = match whatif::changed_state(&table, &table.admin.state, &change, at) {
            Ok(state) => whatif::hypothetical(&table, &state, &change.down, at),
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        };
        match crate::explain::explain_request(&after, &name, &qtype, &client) {
            Ok(then) => json_reply(
                StatusCode::OK,
                json!({ "now": now, "what_if": then, "change": change, "applied": false }),
            ),
            Err(e) => error(StatusCode::BAD_REQUEST, e),
        }
    }

    /// Previews a change on the recent query sample; applies nothing.
    async fn what_if(&self, body: &[u8]) -> Reply {
        let change: WhatIf = match serde_json::from_slice(body) {
            Ok(c) => c,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("body: {e}")),
        };
        let snap = self.store.load_full();
        let preview = tokio::task::spawn_blocking(move || preview(&snap, &change)).await;
        match preview {
            Ok(Ok(v)) => json_reply(StatusCode::OK, v),
            Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    }

    async fn set_latency_map(&self, text: String, format: Format) -> Reply {
        let asked = self
            .ask(|reply| Command::SetLatencyMap {
                text,
                format,
                reply,
            })
            .await;
        match asked {
            Ok(Ok((generation, entries))) => json_reply(
                StatusCode::OK,
                json!({ "entries": entries, "generation": generation }),
            ),
            Ok(Err(problems)) => json_reply(
                StatusCode::BAD_REQUEST,
                json!({
                    "error": "latency map rejected; the previous one stays in force",
                    "problems": problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                }),
            ),
            Err(reply) => reply,
        }
    }

    async fn reload(&self) -> Reply {
        let asked = self
            .ask(|reply| Command::Reload { reply: Some(reply) })
            .await;
        match asked {
            Ok(Ok(generation)) => json_reply(
                StatusCode::OK,
                json!({ "reloaded": true, "generation": generation }),
            ),
            Ok(Err(errors)) => json_reply(
                StatusCode::BAD_REQUEST,
                json!({
                    "error": "config rejected; still serving the previous one",
                    "problems": errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                }),
            ),
            Err(reply) => reply,
        }
    }
}

/// A what-if preview of `change` against the snapshot in force, on its sample of recent
/// queries, as the API answers it.
pub fn preview(
    snap: &crate::dns::snapshot::Snapshot,
    change: &WhatIf,
) -> Result<serde_json::Value, String> {
    let table = &snap.table;
    let at = table
        .admin
        .at
        .max(crate::clock::unix_seconds(table.built_at));
    let state = whatif::changed_state(table, &table.admin.state, change, at)?;
    let after = whatif::hypothetical(table, &state, &change.down, at);
    let population = history::population(snap, usize::MAX);
    let cmp = whatif::compare(table, &after, &population, snap.sample.rate());
    let over = cmp.overloaded();
    let mut v = json!({
        "generation": table.generation,
        "applied": false,
        "change": change,
        "sample_every": crate::dns::sample::SAMPLE_EVERY,
    });
    if let (Some(obj), Ok(serde_json::Value::Object(more))) =
        (v.as_object_mut(), serde_json::to_value(&cmp))
    {
        obj.extend(more);
    }
    v["over_capacity"] = json!(
        over.iter()
            .map(|(r, qps, cap)| json!({ "region": r, "predicted_qps": qps, "capacity_qps": cap }))
            .collect::<Vec<_>>()
    );
    Ok(v)
}

/// The admin API's endpoints, by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Healthz,
    Readyz,
    Metrics,
    Regions,
    RoutingTable,
    Explain,
    Cluster,
    Evacuate(&'a str),
    Restore(&'a str),
    Drain(&'a str),
    Ramp(&'a str),
    Ramps,
    RampAction(&'a str, &'a str),
    Reload,
    LatencyMap,
    History,
    HistoryEntry(&'a str),
    Rollback,
    WhatIf,
}

/// The one route table: each path with the method it answers.
fn route<'a>(segs: &[&'a str]) -> Option<(Method, Route<'a>)> {
    Some(match segs {
        ["healthz"] => (Method::GET, Route::Healthz),
        ["readyz"] => (Method::GET, Route::Readyz),
        ["metrics"] => (Method::GET, Route::Metrics),
        ["v1", "regions"] => (Method::GET, Route::Regions),
        ["v1", "routing-table"] => (Method::GET, Route::RoutingTable),
        ["v1", "explain"] => (Method::GET, Route::Explain),
        ["v1", "cluster"] => (Method::GET, Route::Cluster),
        ["v1", "regions", region, "evacuate"] => (Method::POST, Route::Evacuate(region)),
        ["v1", "regions", region, "restore"] => (Method::POST, Route::Restore(region)),
        ["v1", "regions", region, "drain"] => (Method::POST, Route::Drain(region)),
        ["v1", "regions", region, "ramp"] => (Method::POST, Route::Ramp(region)),
        ["v1", "ramps"] => (Method::GET, Route::Ramps),
        ["v1", "ramps", id, action] => (Method::POST, Route::RampAction(id, action)),
        ["v1", "reload"] => (Method::POST, Route::Reload),
        ["v1", "latency-map"] => (Method::PUT, Route::LatencyMap),
        ["v1", "history"] => (Method::GET, Route::History),
        ["v1", "history", generation] => (Method::GET, Route::HistoryEntry(generation)),
        ["v1", "rollback"] => (Method::POST, Route::Rollback),
        ["v1", "what-if"] => (Method::POST, Route::WhatIf),
        _ => return None,
    })
}

/// The reply to an evacuation, restore, drain or ramp action.
fn admin_change(
    asked: Result<Result<u64, AdminError>, Reply>,
    subject: &str,
    action: &str,
) -> Reply {
    match asked {
        Ok(Ok(generation)) => json_reply(
            StatusCode::OK,
            json!({ "region": subject, "action": action, "generation": generation }),
        ),
        Ok(Err(e)) => admin_error(e),
        Err(reply) => reply,
    }
}

/// A refused change: its status and message (and the services it would empty).
fn admin_error(e: AdminError) -> Reply {
    let status = match &e {
        AdminError::UnknownRegion(_) | AdminError::NoSuchRamp(_) => StatusCode::NOT_FOUND,
        AdminError::BadPercent(_) | AdminError::BadWindow(_) | AdminError::BadRamp(_) => {
            StatusCode::BAD_REQUEST
        }
        AdminError::NotEvacuated(_)
        | AdminError::NotDrained(_)
        | AdminError::AlreadyEvacuated(_)
        | AdminError::RampUnderWay(_)
        | AdminError::WouldEmpty { .. }
        | AdminError::BreaksSafety { .. }
        | AdminError::OverCapacity { .. }
        | AdminError::NotKept(_) => StatusCode::CONFLICT,
        AdminError::NoSuchGeneration(_) => StatusCode::NOT_FOUND,
        AdminError::State(_) => StatusCode::INTERNAL_SERVER_ERROR,
        AdminError::Cluster(crate::cluster::ClusterError::Conflict { .. }) => StatusCode::CONFLICT,
        AdminError::Cluster(crate::cluster::ClusterError::Unavailable(_)) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    let mut body = json!({ "error": e.to_string() });
    if let AdminError::WouldEmpty { services, .. } = &e {
        body["services"] = json!(services);
    }
    if let AdminError::BreaksSafety { rule, .. } = &e {
        body["rule"] = json!(rule);
    }
    if let AdminError::OverCapacity { regions } = &e {
        body["regions"] = json!(
            regions
                .iter()
                .map(|(r, qps, cap)| json!({ "region": r, "predicted_qps": qps, "capacity_qps": cap }))
                .collect::<Vec<_>>()
        );
    }
    json_reply(status, body)
}

/// Decodes `%XX` escapes and `+` (as in query strings); invalid escapes stay as they are.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The body of `GET /metrics`: the registry and the DNS counters as one chunk, then the
/// families with a series per service, region or endpoint, rendered from the table a chunk
/// at a time as hyper asks for them, so a scrape of tens of thousands of names never holds
/// its whole text ([`Gzip`] compresses it a chunk at a time when the scraper takes gzip).
struct MetricsBody {
    first: Option<Bytes>,
    families: TableFamilies,
}

impl Body for MetricsBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return std::task::Poll::Ready(Some(Ok(Frame::data(first))));
        }
        let mut chunk = String::new();
        while chunk.is_empty() {
            if !this.families.next_chunk(&mut chunk) {
                return std::task::Poll::Ready(None);
            }
        }
        std::task::Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }
}

/// Serves the admin API on a bound listener until the process ends.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!(%peer, "admin connection refused: too many open");
            continue;
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.handle(req, peer.ip()).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Err(e)) => debug!(%peer, error = %e, "admin connection error"),
                Err(_) => debug!(%peer, "admin connection timed out"),
                Ok(Ok(())) => {}
            }
        });
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "admin_listen {0} is not loopback and no admin token is set (server.admin_token_file or MERIDIAN_ADMIN_TOKEN): refusing to expose the admin API"
    )]
    NoToken(SocketAddr),
    #[error("cannot listen on admin address {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds the admin listener; refuses a non-loopback address without a token.
pub async fn bind(addr: SocketAddr, token: Option<&Token>) -> Result<TcpListener, BindError> {
    if token.is_none() && !is_loopback(addr.ip()) {
        return Err(BindError::NoToken(addr));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError::Listen { addr, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An admin API over a published table of a small config, with both tokens.
    fn admin() -> (Admin, mpsc::Receiver<Command>) {
        use crate::routing::test_support::{GEOIP, ZONE, load};
        let compiled = Arc::new(load(&format!("{GEOIP}{ZONE}")).expect("config"));
        let metrics = Arc::new(Metrics::new());
        let (_publisher, store) = crate::control::Publisher::new(
            compiled,
            &Default::default(),
            Default::default(),
            metrics.clone(),
        );
        let (commands, rx) = mpsc::channel(4);
        let admin = Admin {
            store,
            commands,
            metrics,
            token: Token::new("admin-secret"),
            read_token: Token::new("read-secret"),
            cluster: None,
        };
        (admin, rx)
    }

    async fn status(admin: &Admin, method: Method, path: &str, bearer: Option<&str>) -> u16 {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(b) = bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {b}"));
        }
        let req = req.body(Full::new(Bytes::new())).expect("request");
        let remote: IpAddr = "192.0.2.7".parse().expect("ip");
        admin.handle(req, remote).await.status().as_u16()
    }

    #[tokio::test]
    async fn the_read_token_reads_from_anywhere_and_changes_nothing() {
        let (admin, _rx) = admin();
        for path in ["/metrics", "/v1/regions", "/v1/routing-table"] {
            assert_eq!(status(&admin, Method::GET, path, None).await, 401, "{path}");
            assert_eq!(
                status(&admin, Method::GET, path, Some("read-secret")).await,
                200,
                "{path}"
            );
            assert_eq!(
                status(&admin, Method::GET, path, Some("admin-secret")).await,
                200,
                "{path}"
            );
            assert_eq!(
                status(&admin, Method::GET, path, Some("wrong")).await,
                401,
                "{path}"
            );
        }
        for path in ["/v1/regions/us-east/evacuate", "/v1/reload"] {
            assert_eq!(
                status(&admin, Method::POST, path, Some("read-secret")).await,
                403,
                "{path}"
            );
            assert_eq!(
                status(&admin, Method::POST, path, None).await,
                401,
                "{path}"
            );
        }
    }

    /// A `/metrics` reply to a loopback request with `accept` as its Accept-Encoding: its
    /// Content-Encoding and Vary, and its whole body as it went on the wire.
    async fn scrape(admin: &Admin, accept: Option<&str>) -> (Option<String>, String, Bytes) {
        let mut req = Request::builder().uri("/metrics");
        if let Some(a) = accept {
            req = req.header(header::ACCEPT_ENCODING, a);
        }
        let req = req.body(Full::new(Bytes::new())).expect("request");
        let reply = admin.handle(req, IpAddr::from([127, 0, 0, 1])).await;
        assert_eq!(reply.status(), StatusCode::OK);
        let header = |name| {
            reply
                .headers()
                .get(name)
                .map(|v: &header::HeaderValue| v.to_str().expect("ascii").to_string())
        };
        assert_eq!(
            header(header::CONTENT_TYPE).as_deref(),
            Some("text/plain; version=0.0.4")
        );
        let encoding = header(header::CONTENT_ENCODING);
        let vary = header(header::VARY).unwrap_or_default();
        let body = reply.into_body().collect().await.expect("body").to_bytes();
        (encoding, vary, body)
    }

    fn gunzip(bytes: &[u8]) -> String {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(bytes), &mut text)
            .expect("a whole gzip stream of text");
        text
    }

    /// The lines of a scrape that do not move by themselves between two scrapes (the process
    /// collector's CPU, memory and file figures do).
    fn steady(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| !l.starts_with("process_"))
            .collect()
    }

    #[tokio::test]
    async fn the_gzip_body_decodes_to_the_plain_text_of_the_same_state() {
        let (admin, _rx) = admin();
        // Two bodies of one state, one of them compressed.
        let plain = admin.metrics_body();
        let same = MetricsBody {
            first: plain.first.clone(),
            families: TableFamilies::new(admin.store.load().table.clone()),
        };
        let text = plain.collect().await.expect("body").to_bytes();
        let wire = Gzip::new(same, gzip::LEVEL)
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8(text.to_vec()).expect("text");
        assert!(
            text.contains("\n# TYPE meridian_region_up gauge\n"),
            "{text}"
        );
        assert_eq!(gunzip(&wire), text);

        // Through the API: Prometheus's request gets gzip, a plain one the text.
        let (encoding, vary, wire) = scrape(&admin, Some("gzip")).await;
        assert_eq!(encoding.as_deref(), Some("gzip"));
        assert_eq!(vary, "accept-encoding");
        let (encoding, vary, plain) = scrape(&admin, None).await;
        assert_eq!(encoding, None);
        assert_eq!(vary, "accept-encoding");
        let plain = String::from_utf8(plain.to_vec()).expect("text");
        assert_eq!(steady(&gunzip(&wire)), steady(&plain));
    }

    #[tokio::test]
    async fn metrics_refusing_or_not_offering_gzip_get_the_plain_text() {
        let (admin, _rx) = admin();
        for accept in [
            None,
            Some("gzip;q=0"),
            Some("identity"),
            Some("deflate, br"),
            Some("gzip;q=0, *"),
        ] {
            let (encoding, _, body) = scrape(&admin, accept).await;
            assert_eq!(encoding, None, "{accept:?}");
            let text = std::str::from_utf8(&body).expect("text");
            assert!(text.starts_with("# HELP "), "{accept:?}: {text}");
            assert!(
                text.contains("\n# TYPE meridian_region_up gauge\n"),
                "{accept:?}: {text}"
            );
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("11.0.0.1%2F24"), "11.0.0.1/24");
        assert_eq!(percent_decode("a+b%20c"), "a b c");
        assert_eq!(percent_decode("bad%zz%2"), "bad%zz%2");
    }
}
