//! Ramps: drains that step on the clock and abort by themselves when the receiving side
//! suffers. The percentage in force is worked out from the stored ramp and the time (see
//! [`crate::routing::admin::Ramp`]), so no instance has to step a ramp and a restart resumes
//! it where it stands. This file creates, pauses, resumes and aborts ramps and watches their
//! abort conditions: health and probe latency of the receiving regions with every look at the
//! table, and a Prometheus query polled off the publisher's loop.
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::warn;

use super::Publisher;
use super::admin::{Change, audit};
use super::command::{AdminError, Command};
use super::history::Cause;
use crate::clock::unix_seconds;
use crate::routing::RoutingTable;
use crate::routing::admin::{
    AbortWhen, Aborted, DRAIN_BUCKETS, OnAbort, PromCondition, Ramp, buckets,
};
use crate::routing::table::{Family, RegionId};

/// Seconds between two evaluations of a Prometheus condition, unless the ramp says.
const PROM_EVERY: u64 = 10;
/// Longest a Prometheus query may take.
const PROM_TIMEOUT: Duration = Duration::from_secs(5);

/// What a ramp does, as asked.
#[derive(Debug, Clone)]
pub struct RampSpec {
    pub steps: Vec<f64>,
    pub step_every: Duration,
    pub on_abort: OnAbort,
    pub abort_when: AbortWhen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RampAction {
    Pause,
    Resume,
    Abort,
}

impl std::str::FromStr for RampAction {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "pause" => Ok(RampAction::Pause),
            "resume" => Ok(RampAction::Resume),
            "abort" => Ok(RampAction::Abort),
            _ => Err(()),
        }
    }
}

impl Publisher {
    /// Creates a ramp of `c.region` through `spec.steps`; answers with the table generation and
    /// the ramp's id. A drain of the region gives way to it (the ramp's first step takes over,
    /// so a ramp back from a full drain is a ramp with falling steps).
    pub(super) async fn ramp(
        &mut self,
        c: Change,
        spec: RampSpec,
        now: SystemTime,
    ) -> Result<(u64, String), AdminError> {
        let rid = self.region_id(&c.region)?;
        check_spec(&spec)?;
        let at = unix_seconds(now);
        let (start, expires) = c.window(at)?;
        let mut next = self.admin.pruned(at);
        if let Some(r) = next
            .ramps
            .values()
            .find(|r| r.region == c.region && r.pending(at))
        {
            return Err(AdminError::RampUnderWay(r.id.clone()));
        }
        if spec.steps.iter().any(|&p| buckets(p) == DRAIN_BUCKETS) {
            self.refuse_emptying(rid, &c)?;
        }
        // The admin state with the region drained at one of the ramp's percentages.
        let at_step = |percent: f64| {
            let mut step = next.clone();
            step.ramps.retain(|_, r| r.region != c.region);
            step.drains.insert(
                c.region.clone(),
                crate::routing::admin::Drain {
                    region: c.region.clone(),
                    percent,
                    reason: c.reason.clone(),
                    by: c.by.clone(),
                    since: at,
                    start: None,
                    expires: None,
                },
            );
            step
        };
        // Every step is checked against the safety rules now, not when it is reached: a ramp
        // that would stop half-way on a refusal is worse than none.
        for &percent in &spec.steps {
            self.refuse_unsafe(&at_step(percent), &c, at)?;
        }
        // Capacity is checked against the ramp's largest step.
        let top = spec.steps.iter().copied().fold(0.0, f64::max);
        if start.is_none() && top > 0.0 {
            self.refuse_over_capacity(&at_step(top), c.force, now)?;
        }
        let table = self.store.load_full().table.clone();
        let id = format!("{}-{at}", c.region);
        let ramp = Ramp {
            id: id.clone(),
            region: c.region.clone(),
            steps: spec.steps,
            step_every: spec.step_every.as_secs(),
            start: start.unwrap_or(at),
            reason: c.reason.clone(),
            by: c.by.clone(),
            since: at,
            on_abort: spec.on_abort,
            abort_when: spec.abort_when,
            expires,
            paused_at: None,
            paused_secs: 0,
            aborted: None,
            baseline: receiving(&table, RegionId(rid as u32))
                .map(|r| (table.compiled.region(r).name.clone(), serving(&table, r)))
                .collect(),
        };
        next.drains.remove(&c.region);
        next.ramps.retain(|_, r| r.region != c.region);
        next.ramps.insert(id.clone(), ramp);
        self.commit(next).await?;
        audit(&c.region, &format!("ramp {id}"), &c.reason, &c.by, c.force);
        let cause = Cause::Ramp {
            id: id.clone(),
            region: c.region.clone(),
            action: "start".into(),
            by: c.by.clone(),
            reason: c.reason.clone(),
        };
        let generation = self.publish(cause, now);
        self.sync_ramp_checks();
        Ok((generation, id))
    }

    /// Pauses, resumes or aborts a ramp (an operator's abort holds or reverts as the ramp
    /// says).
    pub(super) async fn ramp_action(
        &mut self,
        id: &str,
        action: RampAction,
        by: &str,
        now: SystemTime,
    ) -> Result<u64, AdminError> {
        let at = unix_seconds(now);
        let mut next = self.admin.pruned(at);
        let Some(ramp) = next.ramps.get_mut(id) else {
            return Err(AdminError::NoSuchRamp(id.to_owned()));
        };
        if ramp.aborted.is_some() {
            return Err(AdminError::BadRamp(format!("ramp {id:?} is aborted")));
        }
        match action {
            RampAction::Pause if ramp.paused_at.is_some() => {
                return Err(AdminError::BadRamp(format!(
                    "ramp {id:?} is paused already"
                )));
            }
            RampAction::Pause => ramp.paused_at = Some(at.max(ramp.start)),
            RampAction::Resume => {
                let Some(since) = ramp.paused_at.take() else {
                    return Err(AdminError::BadRamp(format!("ramp {id:?} is not paused")));
                };
                ramp.paused_secs += at.saturating_sub(since);
            }
            RampAction::Abort => abort(ramp, at, at, format!("aborted by {by}")),
        }
        let region = ramp.region.clone();
        self.commit(next).await?;
        let verb = match action {
            RampAction::Pause => "pause",
            RampAction::Resume => "resume",
            RampAction::Abort => "abort",
        };
        audit(&region, &format!("ramp {id} {verb}"), "", by, false);
        let cause = Cause::Ramp {
            id: id.to_owned(),
            region,
            action: verb.into(),
            by: by.to_owned(),
            reason: String::new(),
        };
        let generation = self.publish(cause, now);
        self.sync_ramp_checks();
        Ok(generation)
    }

    /// Looks at every ramp under way against the current table; aborts those whose receiving
    /// side fell below what their `abort_when` allows.
    pub(super) async fn check_ramps(&mut self, now: SystemTime) {
        let at = unix_seconds(now);
        if !self.admin.ramps.values().any(|r| r.pending(at)) {
            return;
        }
        let served = self.served_at(at);
        let table = self.store.load_full().table.clone();
        let fired: Vec<(String, String)> = self
            .admin
            .ramps
            .values()
            .filter(|r| r.pending(at))
            .filter_map(|r| Some((r.id.clone(), health_condition(&table, r)?)))
            .collect();
        for (id, why) in fired {
            self.abort_on_condition(&id, why, now, served).await;
        }
    }

    /// Aborts the ramps under way whose receiving regions answer more queries per second
    /// (as last measured) than their `capacity_qps`.
    pub(super) async fn check_ramp_capacity(&mut self, now: SystemTime) {
        let at = unix_seconds(now);
        if self.region_rates.is_empty() || !self.admin.ramps.values().any(|r| r.pending(at)) {
            return;
        }
        let table = self.store.load_full().table.clone();
        let c = &table.compiled;
        let mut fired = Vec::new();
        for r in self.admin.ramps.values().filter(|r| r.pending(at)) {
            let Some(rid) = c.region_id(&r.region) else {
                continue;
            };
            for region in receiving(&table, rid) {
                let (Some(cap), Some(rate)) = (
                    c.region(region).capacity_qps,
                    self.region_rates.get(region.index()),
                ) else {
                    continue;
                };
                if *rate > cap {
                    let name = &c.region(region).name;
                    fired.push((
                        r.id.clone(),
                        format!("{name} answers {rate:.0} qps, above its capacity_qps {cap}"),
                    ));
                    break;
                }
            }
        }
        let served = self.served_at(at);
        for (id, why) in fired {
            self.abort_on_condition(&id, why, now, served).await;
        }
    }

    /// A Prometheus condition came back.
    pub(super) async fn on_ramp_check(
        &mut self,
        id: &str,
        value: Result<f64, String>,
        now: SystemTime,
    ) {
        let at = unix_seconds(now);
        let Some(ramp) = self.admin.ramps.get(id).filter(|r| r.pending(at)) else {
            return;
        };
        let Some(cond) = &ramp.abort_when.prometheus else {
            return;
        };
        match value {
            Ok(v) if v > cond.max => {
                let why = format!("prometheus: {} = {v} > {}", cond.query, cond.max);
                let served = self.served_at(at);
                self.abort_on_condition(id, why, now, served).await;
            }
            Ok(_) => {}
            // An unreachable Prometheus does not abort a ramp: it is said, and the ramp goes on.
            Err(e) => {
                warn!(ramp = id, error = %e, "cannot evaluate the ramp's Prometheus condition")
            }
        }
    }

    /// When the table being served was built (at a step's boundary, before the new step):
    /// the step a hold keeps.
    fn served_at(&self, at: u64) -> u64 {
        unix_seconds(self.store.load().table.built_at).min(at)
    }

    /// Aborts ramp `id` because `why` holds; a hold keeps the step served at `served`.
    async fn abort_on_condition(&mut self, id: &str, why: String, now: SystemTime, served: u64) {
        let at = unix_seconds(now);
        let mut next = self.admin.pruned(at);
        let Some(ramp) = next.ramps.get_mut(id) else {
            return;
        };
        abort(ramp, at, served, why.clone());
        let (region, reason, by) = (ramp.region.clone(), ramp.reason.clone(), ramp.by.clone());
        // In a fleet, another instance may have aborted it first: its document wins, and
        // arrives through the watch.
        if let Err(e) = self.commit(next).await {
            warn!(ramp = id, error = %e, "cannot record the ramp's abort");
            return;
        }
        audit(
            &region,
            &format!("ramp {id} aborted: {why}"),
            &reason,
            &by,
            false,
        );
        self.metrics.ramp_aborts.with_label_values(&[&region]).inc();
        let cause = Cause::Ramp {
            id: id.to_owned(),
            region,
            action: "aborted".into(),
            by: "meridian".into(),
            reason: why,
        };
        self.publish(cause, now);
        self.sync_ramp_checks();
    }

    /// Polls the Prometheus condition of each ramp under way, and only those.
    pub(super) fn sync_ramp_checks(&mut self) {
        let at = unix_seconds(self.clock.now());
        let wanted: HashMap<String, PromCondition> = self
            .admin
            .ramps
            .values()
            .filter(|r| r.pending(at))
            .filter_map(|r| Some((r.id.clone(), r.abort_when.prometheus.clone()?)))
            .collect();
        self.ramp_checks.sync(wanted);
    }
}

/// Records an abort at `at`: the ramp holds the step it served at `served` or goes back to 0 %.
fn abort(ramp: &mut Ramp, at: u64, served: u64, why: String) {
    let percent = match ramp.on_abort {
        OnAbort::Hold => ramp.percent(served),
        OnAbort::Revert => 0.0,
    };
    ramp.aborted = Some(Aborted { at, why, percent });
}

fn check_spec(spec: &RampSpec) -> Result<(), AdminError> {
    let bad = |m: String| Err(AdminError::BadRamp(m));
    if spec.steps.is_empty() || spec.steps.len() > 100 {
        return bad("a ramp has 1 to 100 steps".into());
    }
    if let Some(p) = spec.steps.iter().find(|p| !(0.0..=100.0).contains(*p)) {
        return bad(format!("a step is 0 to 100 percent, not {p}"));
    }
    let rising = spec.steps.windows(2).all(|w| w[0] <= w[1]);
    let falling = spec.steps.windows(2).all(|w| w[0] >= w[1]);
    if !rising && !falling {
        return bad("steps must rise (a drain) or fall (a ramp back), not both".into());
    }
    if spec.step_every < Duration::from_secs(1) {
        return bad("step_every must be at least 1s".into());
    }
    let w = &spec.abort_when;
    if let Some(f) = w.min_healthy_fraction.filter(|f| !(0.0..=1.0).contains(f)) {
        return bad(format!("min_healthy_fraction is 0 to 1, not {f}"));
    }
    if let Some(p) = &w.prometheus
        && !p.url.starts_with("http://")
    {
        return bad(format!(
            "prometheus url {:?} must be http://HOST:PORT",
            p.url
        ));
    }
    Ok(())
}

/// The regions that take clients when `region` drains: the other regions of every service
/// with endpoints there.
fn receiving(table: &RoutingTable, region: RegionId) -> impl Iterator<Item = RegionId> + '_ {
    let mut out: BTreeMap<u32, RegionId> = BTreeMap::new();
    for svc in table.compiled.services.iter() {
        if svc.regions.iter().any(|sr| sr.region == region) {
            for sr in svc.regions.iter().filter(|sr| sr.region != region) {
                out.insert(sr.region.0, sr.region);
            }
        }
    }
    out.into_values()
}

/// Serving endpoints of a region, over every service and family.
fn serving(table: &RoutingTable, region: RegionId) -> u32 {
    table
        .compiled
        .services
        .iter()
        .flat_map(|svc| svc.regions.iter())
        .filter(|sr| sr.region == region)
        .map(|sr| {
            let v4 = table.serving_count(sr.endpoints(Family::V4));
            let v6 = table.serving_count(sr.endpoints(Family::V6));
            (v4 + v6) as u32
        })
        .sum()
}

/// The health or latency condition of a ramp that holds against `table`, if one does.
fn health_condition(table: &RoutingTable, ramp: &Ramp) -> Option<String> {
    let c = &table.compiled;
    let rid = c.region_id(&ramp.region)?;
    let w = &ramp.abort_when;
    for region in receiving(table, rid) {
        let name = &c.region(region).name;
        if w.receiving_unhealthy {
            for svc in c.services.iter() {
                let ours = svc.regions.iter().any(|sr| sr.region == rid);
                for sr in svc.regions.iter().filter(|sr| ours && sr.region == region) {
                    for f in [Family::V4, Family::V6] {
                        if !sr.endpoints(f).is_empty() && !table.region_healthy(svc, sr, f) {
                            return Some(format!(
                                "{name} has fewer healthy endpoints than {}'s min_healthy",
                                svc.name
                            ));
                        }
                    }
                }
            }
        }
        if let (Some(fraction), Some(&before)) = (w.min_healthy_fraction, ramp.baseline.get(name)) {
            let now = serving(table, region);
            if f64::from(now) < fraction * f64::from(before) {
                return Some(format!(
                    "{name} serves from {now} endpoints, below {fraction} of the {before} it had"
                ));
            }
        }
        if let Some(max) = w.max_latency_ms
            && let Some(ms) = mean_latency_ms(table, region)
            && ms > max
        {
            return Some(format!("{name} probe latency {ms:.1} ms > {max} ms"));
        }
    }
    None
}

/// Mean measured probe latency over a region's endpoints, when any was measured.
fn mean_latency_ms(table: &RoutingTable, region: RegionId) -> Option<f64> {
    let c = &table.compiled;
    let samples: Vec<f64> = c
        .endpoints
        .iter()
        .filter(|e| e.region == region)
        .filter_map(|e| e.target)
        .filter_map(|t| table.health.targets.get(t.index())?.latency_us)
        .map(|us| us / 1000.0)
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum::<f64>() / samples.len() as f64)
}

/// The Prometheus pollers of the ramps under way; their results come back as commands.
pub struct Checks {
    running: HashMap<String, (PromCondition, AbortHandle)>,
    tx: mpsc::Sender<Command>,
    rx: mpsc::Receiver<Command>,
}

impl Default for Checks {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(16);
        Checks {
            running: HashMap::new(),
            tx,
            rx,
        }
    }
}

impl Checks {
    /// The next result of any poller (pending for ever while none runs).
    pub async fn next(&mut self) -> Option<Command> {
        self.rx.recv().await
    }

    /// Starts pollers for the conditions in `wanted` not yet polled, stops the rest.
    fn sync(&mut self, wanted: HashMap<String, PromCondition>) {
        self.running.retain(|id, (cond, task)| {
            let keep = wanted.get(id) == Some(cond);
            if !keep {
                task.abort();
            }
            keep
        });
        for (id, cond) in wanted {
            if self.running.contains_key(&id) {
                continue;
            }
            let task = tokio::spawn(poll(id.clone(), cond.clone(), self.tx.clone()));
            self.running.insert(id, (cond, task.abort_handle()));
        }
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        for (_, task) in self.running.values() {
            task.abort();
        }
    }
}

async fn poll(id: String, cond: PromCondition, tx: mpsc::Sender<Command>) {
    let every = Duration::from_secs(cond.every.unwrap_or(PROM_EVERY).max(1));
    loop {
        let value = instant_query(&cond.url, &cond.query).await;
        let id = id.clone();
        if tx.send(Command::RampCheck { id, value }).await.is_err() {
            return;
        }
        tokio::time::sleep(every).await;
    }
}

/// One Prometheus instant query (`/api/v1/query`); the largest value of the result.
pub async fn instant_query(url: &str, query: &str) -> Result<f64, String> {
    use http_body_util::{BodyExt, Empty, Limited};
    use hyper::body::Bytes;
    let authority = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?} is not http://HOST:PORT"))?
        .trim_end_matches('/');
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("no HTTP from {authority}: {e}"))?;
        tokio::spawn(conn);
        let req = hyper::Request::get(format!("/api/v1/query?query={encoded}"))
            .header(hyper::header::HOST, authority)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
        }
        Ok(body)
    };
    let body = tokio::time::timeout(PROM_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{authority} did not answer within {PROM_TIMEOUT:?}"))??;
    query_value(&body)
}

/// The largest value in a Prometheus query answer (a vector or a scalar).
fn query_value(body: &[u8]) -> Result<f64, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not a Prometheus answer: {e}"))?;
    let data = &v["data"];
    let sample = |s: &serde_json::Value| s.get(1)?.as_str()?.parse::<f64>().ok();
    let values: Vec<f64> = match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| sample(&r["value"]))
            .collect(),
        Some("scalar") => sample(&data["result"]).into_iter().collect(),
        other => return Err(format!("unexpected result type {other:?}")),
    };
    values
        .into_iter()
        .reduce(f64::max)
        .ok_or_else(|| "the query returned no data".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_answers_give_their_largest_value() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"a":"1"},"value":[1700000000.1,"0.02"]},
            {"metric":{"a":"2"},"value":[1700000000.1,"0.5"]}]}}"#;
        assert_eq!(query_value(vector), Ok(0.5));
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}"#;
        assert_eq!(query_value(scalar), Ok(3.0));
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(query_value(empty).is_err());
        assert!(query_value(b"<html>").is_err());
    }

    #[test]
    fn ramp_specs_are_checked() {
        let spec = |steps: &[f64], every: u64| RampSpec {
            steps: steps.to_vec(),
            step_every: Duration::from_secs(every),
            on_abort: OnAbort::Hold,
            abort_when: AbortWhen::default(),
        };
        assert!(check_spec(&spec(&[10.0, 25.0, 50.0, 100.0], 300)).is_ok());
        assert!(
            check_spec(&spec(&[75.0, 50.0, 0.0], 60)).is_ok(),
            "a ramp back"
        );
        assert!(check_spec(&spec(&[], 60)).is_err());
        assert!(check_spec(&spec(&[10.0, 5.0, 20.0], 60)).is_err());
        assert!(check_spec(&spec(&[10.0, 120.0], 60)).is_err());
        assert!(check_spec(&spec(&[10.0], 0)).is_err());
    }
}
