//! Schedules probes on tokio time. Each target is probed once per its check's interval, the
//! targets of a check spread evenly over the interval (no thundering herd), at most
//! [`MAX_CONCURRENT_PROBES`] at once, each under a hard deadline. Results go to the publisher
//! as events; the prober never touches the routing table.
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::check::{Probe, ProbeOutcome};
use crate::routing::table::{Compiled, ProbeAddr, TargetId};

/// Probes in flight at once, across all targets.
pub const MAX_CONCURRENT_PROBES: usize = 64;

/// One probe result, for the publisher.
#[derive(Debug, Clone)]
pub struct ProbeEvent {
    /// Which compiled config the target id belongs to (ids change across reloads).
    pub generation: u64,
    pub target: TargetId,
    pub outcome: ProbeOutcome,
    pub at: Instant,
}

/// Starts one task per target. Dropping (or aborting) the returned set stops them all.
pub fn spawn<P: Probe>(
    compiled: Arc<Compiled>,
    config_generation: u64,
    probe: Arc<P>,
    events: mpsc::Sender<ProbeEvent>,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_PROBES));
    for (check_idx, check) in compiled.checks.iter().enumerate() {
        let targets: Vec<usize> = compiled
            .targets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.check.index() == check_idx)
            .map(|(i, _)| i)
            .collect();
        let n = targets.len().max(1) as u32;
        for (slot, target_idx) in targets.into_iter().enumerate() {
            // Target k of n starts k/n of the way into the interval.
            let offset = check.interval / n * slot as u32;
            let compiled = compiled.clone();
            let probe = probe.clone();
            let events = events.clone();
            let permits = permits.clone();
            set.spawn(async move {
                let target = &compiled.targets[target_idx];
                let check = &compiled.checks[target.check.index()];
                let mut ticks = tokio::time::interval_at(Instant::now() + offset, check.interval);
                ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    let Ok(_permit) = permits.acquire().await else {
                        return;
                    };
                    let run = probe_target(&probe, &compiled, target_idx);
                    let outcome = match tokio::time::timeout(check.timeout, run).await {
                        Ok(outcome) => outcome,
                        Err(_) => ProbeOutcome::timed_out(check.timeout),
                    };
                    let event = ProbeEvent {
                        generation: config_generation,
                        target: TargetId(target_idx as u32),
                        outcome,
                        at: Instant::now(),
                    };
                    if events.send(event).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
    set
}

/// Most addresses of a hostname target probed in one round.
const MAX_RESOLVED: usize = 16;

/// One probe of a target: an address directly; a hostname resolved now, then every address
/// it resolves to at once, up when any passes (a name that does not resolve is a failure).
async fn probe_target<P: Probe>(
    probe: &Arc<P>,
    compiled: &Arc<Compiled>,
    target_idx: usize,
) -> ProbeOutcome {
    let target = &compiled.targets[target_idx];
    let check = &compiled.checks[target.check.index()];
    let (name, port) = match &target.addr {
        ProbeAddr::Ip(addr) => return probe.probe(*addr, check).await,
        ProbeAddr::Host(name, port) => (name, *port),
    };
    let addrs = match probe.resolve(name).await {
        Ok(addrs) if addrs.is_empty() => {
            return ProbeOutcome::fail(format!("{name} resolves to no address"), None);
        }
        Ok(addrs) => addrs,
        Err(why) => return ProbeOutcome::fail(why, None),
    };
    let mut probes = JoinSet::new();
    for ip in addrs.into_iter().take(MAX_RESOLVED) {
        let (probe, compiled) = (probe.clone(), compiled.clone());
        probes.spawn(async move {
            let check = &compiled.checks[compiled.targets[target_idx].check.index()];
            (ip, probe.probe(SocketAddr::new(ip, port), check).await)
        });
    }
    let mut errors = Vec::new();
    while let Some(done) = probes.join_next().await {
        match done {
            // The first address that passes decides; the rest are dropped (aborted).
            Ok((_, outcome)) if outcome.ok => return outcome,
            Ok((ip, outcome)) => errors.push(format!(
                "{ip}: {}",
                outcome.error.as_deref().unwrap_or("failed")
            )),
            Err(e) => errors.push(format!("probe task: {e}")),
        }
    }
    ProbeOutcome::fail(format!("{name}: {}", errors.join("; ")), None)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::Path;
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::control::Publisher;
    use crate::routing::decide::decide;
    use crate::routing::query::{Client, Query, Reason};
    use crate::routing::table::{Family, ServiceId};
    use crate::routing::trace::NoTrace;
    use crate::settings::CheckSpec;

    /// Two regions in failover order, each with one endpoint probed every second, fall 2 rise 2.
    const CONFIG: &str = r#"
[[zones]]
origin = "example.com."
ns = ["ns1.example.com."]
soa = { mname = "ns1", rname = "hostmaster", serial = 1, minimum = 60 }

[[regions]]
name = "primary"

[[regions]]
name = "secondary"

[checks.web]
kind = "tcp"
interval = "1s"
timeout = "300ms"
rise = 2
fall = 2

[[services]]
name = "www.example.com."
policy = "failover"
regions = ["primary", "secondary"]
check = "web"
endpoints = [
  { region = "primary", address = "192.0.2.1", port = 1001 },
  { region = "secondary", address = "192.0.2.2", port = 1002 },
]
"#;

    /// A probe whose verdict per address the test flips; it also records when it ran.
    struct Scripted {
        down: Mutex<Vec<SocketAddr>>,
        hang: Mutex<Vec<SocketAddr>>,
        calls: Mutex<Vec<(SocketAddr, Duration)>>,
        start: Instant,
    }

    impl Probe for Scripted {
        async fn probe(&self, addr: SocketAddr, _check: &CheckSpec) -> ProbeOutcome {
            self.calls
                .lock()
                .unwrap()
                .push((addr, self.start.elapsed()));
            if self.hang.lock().unwrap().contains(&addr) {
                std::future::pending::<()>().await;
            }
            let ok = !self.down.lock().unwrap().contains(&addr);
            ProbeOutcome {
                ok,
                latency: Some(Duration::from_millis(3)),
                error: (!ok).then(|| "scripted failure".to_string()),
                figure: None,
            }
        }
    }

    fn answer_of(store: &crate::dns::snapshot::Store) -> (Reason, String) {
        let snap = store.load_full();
        let table = &snap.table;
        let q = Query {
            service: ServiceId(0),
            family: Family::V4,
            client: Client {
                addr: "11.0.0.1".parse().unwrap(),
                ecs_source: None,
            },
        };
        let d = decide(table, &q, &mut NoTrace);
        let region = d
            .region
            .map(|r| table.compiled.region(r).name.clone())
            .unwrap_or_default();
        (d.reason, region)
    }

    /// Drives prober and publisher on paused time until `until`, applying every event.
    async fn run_until(
        p: &mut Publisher,
        rx: &mut mpsc::Receiver<ProbeEvent>,
        start: Instant,
        until: Duration,
    ) {
        while start.elapsed() < until {
            tokio::select! {
                Some(ev) = rx.recv() => { p.on_probe(&ev); }
                _ = tokio::time::sleep_until(start + until) => {}
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fails_over_after_fall_intervals_and_back_after_rise() {
        let compiled =
            Arc::new(crate::config::load_str(CONFIG, Path::new("/t/meridian.toml")).unwrap());
        let (mut publisher, store) = Publisher::new(
            compiled.clone(),
            &Default::default(),
            Default::default(),
            Arc::new(crate::metrics::Metrics::new()),
        );
        let start = Instant::now();
        let script = Arc::new(Scripted {
            down: Mutex::new(Vec::new()),
            hang: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
            start,
        });
        let (tx, mut rx) = mpsc::channel(64);
        let _probers = spawn(
            compiled.clone(),
            publisher.config_generation(),
            script.clone(),
            tx,
        );

        // Unknown counts as up: the primary answers from the first instant.
        assert_eq!(answer_of(&store), (Reason::Primary, "primary".into()));
        run_until(&mut publisher, &mut rx, start, Duration::from_millis(2500)).await;
        assert!(publisher.first_round_done());
        let generation = store.load().table.generation;

        // The primary starts failing at t=2.5 s: probes at 3 s and 4 s fail, fall 2 -> down at 4 s.
        let primary: SocketAddr = "192.0.2.1:1001".parse().unwrap();
        script.down.lock().unwrap().push(primary);
        run_until(&mut publisher, &mut rx, start, Duration::from_millis(3900)).await;
        assert_eq!(answer_of(&store).1, "primary", "one failure is not enough");
        run_until(&mut publisher, &mut rx, start, Duration::from_millis(4100)).await;
        assert_eq!(answer_of(&store), (Reason::Failover, "secondary".into()));
        assert!(
            store.load().table.generation > generation,
            "each change is a new generation"
        );

        // Healthy again at t=4.5 s: successes at 5 s and 6 s, rise 2 -> up at 6 s.
        script.down.lock().unwrap().clear();
        run_until(&mut publisher, &mut rx, start, Duration::from_millis(5900)).await;
        assert_eq!(answer_of(&store).1, "secondary");
        run_until(&mut publisher, &mut rx, start, Duration::from_millis(6100)).await;
        assert_eq!(answer_of(&store), (Reason::Primary, "primary".into()));
    }

    #[tokio::test(start_paused = true)]
    async fn probes_spread_over_the_interval_and_hung_probes_time_out() {
        let compiled =
            Arc::new(crate::config::load_str(CONFIG, Path::new("/t/meridian.toml")).unwrap());
        let (mut publisher, store) = Publisher::new(
            compiled.clone(),
            &Default::default(),
            Default::default(),
            Arc::new(crate::metrics::Metrics::new()),
        );
        let start = Instant::now();
        let primary: SocketAddr = "192.0.2.1:1001".parse().unwrap();
        let script = Arc::new(Scripted {
            down: Mutex::new(Vec::new()),
            hang: Mutex::new(vec![primary]),
            calls: Mutex::new(Vec::new()),
            start,
        });
        let (tx, mut rx) = mpsc::channel(64);
        let _probers = spawn(compiled, publisher.config_generation(), script.clone(), tx);
        run_until(&mut publisher, &mut rx, start, Duration::from_millis(2900)).await;

        let calls = script.calls.lock().unwrap().clone();
        let at = |addr: &str| -> Vec<u128> {
            let a: SocketAddr = addr.parse().unwrap();
            calls
                .iter()
                .filter(|(x, _)| *x == a)
                .map(|(_, t)| t.as_millis())
                .collect()
        };
        // Two targets of one check: the second starts half an interval after the first, and a
        // probe that never answers does not delay the next one.
        assert_eq!(at("192.0.2.1:1001"), vec![0, 1000, 2000]);
        assert_eq!(at("192.0.2.2:1002"), vec![500, 1500, 2500]);
        // The hung probe times out (300 ms) and counts as a failure: down after two.
        assert_eq!(answer_of(&store), (Reason::Failover, "secondary".into()));
    }

    /// Resolves `lb.example.net.` to two addresses (one passing) and `gone.example.net.` to
    /// nothing; probes pass only at `up`.
    struct Names {
        up: SocketAddr,
    }

    impl Probe for Names {
        async fn probe(&self, addr: SocketAddr, _check: &CheckSpec) -> ProbeOutcome {
            let ok = addr == self.up;
            ProbeOutcome {
                ok,
                latency: ok.then(|| Duration::from_millis(1)),
                error: (!ok).then(|| "refused".to_string()),
                figure: None,
            }
        }

        async fn resolve(
            &self,
            name: &hickory_proto::rr::Name,
        ) -> Result<Vec<std::net::IpAddr>, String> {
            match name.to_ascii().as_str() {
                "lb.example.net." => Ok(vec![
                    "10.0.0.1".parse().unwrap(),
                    "10.0.0.2".parse().unwrap(),
                ]),
                _ => Err(format!("resolving {name}: no record found (NXDOMAIN)")),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hostname_target_is_up_when_any_address_it_resolves_to_passes() {
        let text = CONFIG
            .replace(
                r#"address = "192.0.2.1", port = 1001"#,
                r#"target = "lb.example.net.", port = 1001"#,
            )
            .replace(
                r#"address = "192.0.2.2", port = 1002"#,
                r#"target = "gone.example.net.", port = 1002"#,
            );
        let compiled = Arc::new(crate::config::load_str(&text, Path::new("/t/m.toml")).unwrap());
        let probe = Arc::new(Names {
            up: "10.0.0.2:1001".parse().unwrap(),
        });
        let up = probe_target(&probe, &compiled, 0).await;
        assert!(up.ok, "{up:?}");
        let gone = probe_target(&probe, &compiled, 1).await;
        assert!(!gone.ok);
        assert_eq!(
            gone.error.as_deref(),
            Some("resolving gone.example.net.: no record found (NXDOMAIN)")
        );
        // Every resolved address fails: the failure names each.
        let probe = Arc::new(Names {
            up: "10.0.0.2:9999".parse().unwrap(),
        });
        let down = probe_target(&probe, &compiled, 0).await;
        assert!(!down.ok);
        let why = down.error.unwrap();
        assert!(
            why.starts_with("lb.example.net.: ")
                && why.contains("10.0.0.1: refused")
                && why.contains("10.0.0.2: refused"),
            "{why}"
        );
    }
}
