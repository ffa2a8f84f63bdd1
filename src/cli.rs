//! Command line: `serve`, `check`, `explain`, `geoip-build`. The only user of anyhow.
#![allow(clippy::print_stdout, reason = "the command line prints its results")]
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing::{info, warn};

use crate::admin::{self, Admin, auth::Token};
use crate::clock::SystemClock;
use crate::config;
use crate::control::Publisher;
use crate::control::command;
use crate::dns::dnstap::{self, Tap};
use crate::dns::listen::listen;
use crate::explain;
use crate::explain::whatif::{self, WhatIf};
use crate::health::check::NetProbe;
use crate::health::prober;
use crate::metrics::Metrics;
use crate::state;

const DEFAULT_CONFIG: &str = "config/meridian.toml";

#[derive(Parser)]
#[command(
    name = "meridian",
    version,
    about = "Authoritative GeoDNS traffic manager"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum CtlAction {
    /// Readiness, generation, probes and fleet connection.
    Status,
    /// Each region: evacuation, and per service how many endpoints serve.
    Regions,
    /// Move every client away from a region.
    Evacuate {
        region: String,
        #[arg(long, default_value = "")]
        reason: String,
        /// Even when a service would be left with no serving region.
        #[arg(long)]
        force: bool,
        /// Lift the evacuation by itself after this long ("30m", "4h").
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// Move a stable share of a region's clients (0 to 100 percent; 0 lifts the drain).
    Drain {
        region: String,
        percent: f64,
        #[arg(long, default_value = "")]
        reason: String,
        /// Even when a 100 % drain would leave a service with no serving region.
        #[arg(long)]
        force: bool,
        /// Lift the drain by itself after this long ("30m", "4h").
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// Drain a region in steps on the clock, aborting by itself when `--abort-when` fires.
    Ramp {
        region: String,
        /// Percentages, comma-separated: rising (10,25,50,100) or falling (a ramp back).
        steps: String,
        /// Time between two steps ("5m").
        #[arg(long)]
        every: String,
        #[arg(long, default_value = "")]
        reason: String,
        /// "hold" (stay at the step reached) or "revert" (back to 0 %).
        #[arg(long, default_value = "hold")]
        on_abort: String,
        /// The abort conditions as JSON, e.g. '{"receiving_unhealthy": true}'.
        #[arg(long)]
        abort_when: Option<String>,
        #[arg(long)]
        expires_in: Option<String>,
        #[arg(long)]
        force: bool,
    },
    /// Every ramp: state, step, percentage, and why an aborted one stopped.
    Ramps,
    /// Pause, resume or abort a ramp by id.
    RampAction {
        id: String,
        #[arg(value_parser = ["pause", "resume", "abort"])]
        action: String,
    },
    /// Undo an evacuation.
    Restore { region: String },
    /// Read the config file again (refused, with every problem, if it does not load).
    Reload,
    /// Preview a change on the server's sample of recent real queries: the share (and QPS)
    /// each region answers now and would answer, and which clients move. Applies nothing.
    WhatIf {
        #[command(flatten)]
        change: WhatIfFlags,
    },
    /// The history of published tables (newest first), or one generation.
    History {
        generation: Option<u64>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Restore the operator state and config of an earlier generation (health stays live).
    Rollback {
        generation: u64,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// How the server answers NAME TYPE for a client, step by step.
    Explain {
        name: String,
        #[arg(value_name = "TYPE")]
        qtype: String,
        #[arg(long)]
        client: String,
    },
}

/// A what-if change on the command line (`explain` and `ctl what-if`).
#[derive(clap::Args)]
struct WhatIfFlags {
    /// What-if: evacuate this region (repeatable).
    #[arg(long)]
    evacuate: Vec<String>,
    /// What-if: drain REGION=PERCENT (repeatable).
    #[arg(long)]
    drain: Vec<String>,
    /// What-if: take this region's probed endpoints as down (repeatable).
    #[arg(long)]
    down: Vec<String>,
    /// What-if: lift this region's evacuation and drain (repeatable).
    #[arg(long)]
    restore: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve DNS on the configured addresses.
    Serve {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Log lines as text or JSON (one object a line, for log shippers); overrides
        /// `server.log_format`.
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Validate a config without serving; print every problem as FILE:LINE:COL.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Show step by step how the server would answer NAME TYPE for a client.
    Explain {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        name: String,
        #[arg(value_name = "TYPE")]
        qtype: String,
        /// Client address, or IP/PREFIX for an ECS subnet.
        #[arg(long)]
        client: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        change: WhatIfFlags,
    },
    /// Drive a running server through its admin API.
    Ctl {
        /// The admin API, http://HOST:PORT (default: `admin_listen` of --config).
        #[arg(long)]
        server: Option<String>,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// File holding the admin token (default: MERIDIAN_ADMIN_TOKEN).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: CtlAction,
    },
    /// Write a synthetic world-sized GeoIP2 City database (for benchmarks).
    GeoipSynth {
        #[arg(long, default_value_t = 1_000_000)]
        networks: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Build MaxMind-format databases from a readable source file (see geoip-fixtures/).
    GeoipBuild {
        #[arg(long)]
        source: PathBuf,
        #[arg(long)]
        out_dir: PathBuf,
    },
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config, log_format } => serve(&config, log_format),
        Command::Ctl {
            server,
            config,
            token_file,
            json,
            action,
        } => return ctl(server, &config, token_file.as_deref(), json, action),
        Command::Check { config } => return check(&config),
        Command::Explain {
            config,
            name,
            qtype,
            client,
            json,
            change,
        } => what_if_of(&change)
            .and_then(|change| explain_cmd(&config, &name, &qtype, &client, json, &change)),
        Command::GeoipBuild { source, out_dir } => geoip_build(&source, &out_dir),
        Command::GeoipSynth {
            networks,
            seed,
            out,
        } => crate::geo::build::synthetic::synthetic(networks, seed)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| {
                std::fs::write(&out, &bytes)
                    .with_context(|| format!("writing {}", out.display()))?;
                println!("wrote {} ({} bytes)", out.display(), bytes.len());
                Ok(())
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meridian: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &Path) -> ExitCode {
    // Assertions are evaluated on the compiled config, through the same decide() the server
    // runs (no network; health up unless an assertion's scenario says otherwise).
    let loaded = config::load(path)
        .map(Arc::new)
        .and_then(crate::control::reload::assertions_hold);
    match loaded {
        Ok(compiled) => {
            println!("{}: ok", path.display());
            if !compiled.assertions.is_empty() {
                println!("{} assertion(s) hold", compiled.assertions.len());
            }
            let dbs = compiled.geo.iter().flat_map(|set| set.databases());
            for db in dbs.clone() {
                println!(
                    "geoip: {} ({}, database_type {:?})",
                    db.path().display(),
                    db.schema().describe(),
                    db.database_type()
                );
                println!("geoip: {}", db.coverage());
            }
            for db in compiled.asn.iter().flat_map(|set| set.databases()) {
                println!(
                    "asn: {} (ASN schema (autonomous_system_number, autonomous_system_organization), database_type {:?})",
                    db.path().display(),
                    db.database_type()
                );
                println!("asn: {}", db.coverage());
            }
            let named = compiled.regions.iter().any(|r| !r.subdivisions.is_empty())
                || compiled
                    .services
                    .iter()
                    .any(|s| s.residency.iter().any(|r| !r.subdivisions.is_empty()));
            if named && dbs.clone().all(|db| db.coverage().with_subdivision == 0) {
                println!(
                    "geoip: no database gives subdivision codes (the flat schemas carry subdivision names only, the Country schemas none): `subdivisions` will not match; clients are placed by country"
                );
            }
            for zone in &compiled.zones {
                let Some(signer) = &zone.signer else {
                    continue;
                };
                for key in &signer.keys {
                    println!(
                        "dnssec: {} key {} algorithm {} ({}) from {}",
                        signer.origin,
                        key.tag,
                        u8::from(key.algorithm),
                        if key.ksk { "KSK" } else { "ZSK" },
                        key.file.display()
                    );
                }
                // The DS records for the parent zone: one per key that signs the key set.
                for key in signer.keys.iter().filter(|k| k.ksk) {
                    if let Ok(ds) = key.ds(&signer.origin, zone.soa.ttl) {
                        println!("{ds}");
                    }
                }
            }
            println!(
                "{} zones, {} regions, {} services, {} endpoints",
                compiled.zones.len(),
                compiled.regions.len(),
                compiled.services.len(),
                compiled.endpoints.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} problem(s)", path.display(), errors.0.len());
            ExitCode::FAILURE
        }
    }
}

fn explain_cmd(
    path: &Path,
    name: &str,
    qtype: &str,
    client: &str,
    json: bool,
    change: &WhatIf,
) -> anyhow::Result<()> {
    let compiled = Arc::new(config::load(path)?);
    // Explain against the health and evacuations the server last saved, so it shows what
    // clients get now.
    let (health, evacuations) = match &compiled.settings.state_dir {
        Some(dir) => (
            state::load_health(dir).unwrap_or_default(),
            state::load_evacuations(dir).context("reading saved evacuations")?,
        ),
        None => Default::default(),
    };
    let (_publisher, store) =
        Publisher::new(compiled, &health, evacuations, Arc::new(Metrics::new()));
    let table = store.load().table.clone();
    let ex =
        explain::explain_request(&table, name, qtype, client).map_err(|e| anyhow::anyhow!(e))?;
    if change.is_empty() {
        if json {
            println!("{}", serde_json::to_string_pretty(&ex)?);
        } else {
            print!("{}", ex.to_text());
        }
        return Ok(());
    }
    // The same decide() on the table the change would make.
    let at = table.admin.at;
    let state = whatif::changed_state(&table, &table.admin.state, change, at)
        .map_err(|e| anyhow::anyhow!(e))?;
    let after = whatif::hypothetical(&table, &state, &change.down, at);
    let then =
        explain::explain_request(&after, name, qtype, client).map_err(|e| anyhow::anyhow!(e))?;
    if json {
        let v = serde_json::json!({ "now": ex, "what_if": then, "change": change });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!(
            "now:\n{}\nafter the change (not applied):\n{}",
            ex.to_text(),
            then.to_text()
        );
    }
    Ok(())
}

/// A what-if change from the command line's flags.
fn what_if_of(flags: &WhatIfFlags) -> anyhow::Result<WhatIf> {
    let mut drains = std::collections::BTreeMap::new();
    for d in &flags.drain {
        let (region, percent) = d
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--drain takes REGION=PERCENT, not {d:?}"))?;
        let percent: f64 = percent
            .parse()
            .map_err(|_| anyhow::anyhow!("--drain {d:?}: the percentage is not a number"))?;
        drains.insert(region.to_string(), percent);
    }
    Ok(WhatIf {
        evacuate: flags.evacuate.clone(),
        drain: drains,
        down: flags.down.clone(),
        restore: flags.restore.clone(),
    })
}

/// `meridian ctl`: exit 0 when the server did it, 1 when it refused or could not be reached
/// (with its message), 2 for usage errors (clap's own).
fn ctl(
    server: Option<String>,
    config: &Path,
    token_file: Option<&Path>,
    json: bool,
    action: CtlAction,
) -> ExitCode {
    match ctl_run(server, config, token_file, json, action) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("meridian ctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn ctl_run(
    server: Option<String>,
    config: &Path,
    token_file: Option<&Path>,
    json: bool,
    action: CtlAction,
) -> anyhow::Result<String> {
    use crate::ctl;
    use hyper::Method;
    let server = match server {
        Some(s) => s,
        None => {
            let text = std::fs::read_to_string(config).with_context(|| {
                format!(
                    "reading {} for its admin_listen (or pass --server)",
                    config.display()
                )
            })?;
            let raw: toml::Value = toml::from_str(&text)
                .with_context(|| format!("{} is not TOML", config.display()))?;
            let addr = raw
                .get("server")
                .and_then(|s| s.get("admin_listen"))
                .and_then(|a| a.as_str())
                .with_context(|| {
                    format!(
                        "{} has no server.admin_listen: pass --server",
                        config.display()
                    )
                })?;
            format!("http://{addr}")
        }
    };
    let token = match token_file {
        Some(path) => Some(Token::read(path)?),
        None => Token::load(None)?,
    };
    let token = token.as_ref().map(Token::secret);
    let (method, path, body) = match &action {
        CtlAction::Status => (Method::GET, "/readyz".to_string(), None),
        CtlAction::Regions => (Method::GET, "/v1/regions".to_string(), None),
        CtlAction::Evacuate {
            region,
            reason,
            force,
            expires_in,
        } => (
            Method::POST,
            format!("/v1/regions/{region}/evacuate"),
            Some(ctl::change_body(
                reason,
                *force,
                expires_in.as_deref(),
                None,
            )),
        ),
        CtlAction::Drain {
            region,
            percent,
            reason,
            force,
            expires_in,
        } => (
            Method::POST,
            format!("/v1/regions/{region}/drain"),
            Some(ctl::change_body(
                reason,
                *force,
                expires_in.as_deref(),
                Some(*percent),
            )),
        ),
        CtlAction::Restore { region } => {
            (Method::POST, format!("/v1/regions/{region}/restore"), None)
        }
        CtlAction::Ramp {
            region,
            steps,
            every,
            reason,
            on_abort,
            abort_when,
            expires_in,
            force,
        } => (
            Method::POST,
            format!("/v1/regions/{region}/ramp"),
            Some(ctl::ramp_body(
                steps,
                every,
                reason,
                on_abort,
                abort_when.as_deref(),
                expires_in.as_deref(),
                *force,
            )?),
        ),
        CtlAction::Ramps => (Method::GET, "/v1/ramps".to_string(), None),
        CtlAction::RampAction { id, action } => {
            (Method::POST, format!("/v1/ramps/{id}/{action}"), None)
        }
        CtlAction::Reload => (Method::POST, "/v1/reload".to_string(), None),
        CtlAction::WhatIf { change } => {
            let change = what_if_of(change)?;
            (
                Method::POST,
                "/v1/what-if".to_string(),
                Some(serde_json::to_value(&change)?),
            )
        }
        CtlAction::History { generation, limit } => match generation {
            Some(g) => (Method::GET, format!("/v1/history/{g}"), None),
            None => (Method::GET, format!("/v1/history?limit={limit}"), None),
        },
        CtlAction::Rollback { generation, reason } => (
            Method::POST,
            "/v1/rollback".to_string(),
            Some(serde_json::json!({ "to": generation, "reason": reason })),
        ),
        CtlAction::Explain {
            name,
            qtype,
            client,
        } => (Method::GET, ctl::explain_path(name, qtype, client), None),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // A not-ready server answers /readyz with 503 and its state: still a status to show.
    let answer = match runtime.block_on(ctl::call(&server, token, method, &path, body)) {
        Err(ctl::CtlError::Refused { status: 503, .. }) if matches!(action, CtlAction::Status) => {
            runtime
                .block_on(ctl::call(&server, token, Method::GET, "/readyz", None))
                .unwrap_or(serde_json::Value::Null)
        }
        other => other?,
    };
    if json {
        return Ok(format!("{}\n", serde_json::to_string_pretty(&answer)?));
    }
    Ok(match action {
        CtlAction::Status => ctl::status_text(&answer),
        CtlAction::Regions => ctl::regions_text(&answer),
        CtlAction::Explain { .. } => {
            serde_json::from_value::<explain::Explanation>(answer)?.to_text()
        }
        CtlAction::Evacuate { region, .. } => {
            format!("evacuated {region}: generation {}\n", answer["generation"])
        }
        CtlAction::Restore { region } => {
            format!("restored {region}: generation {}\n", answer["generation"])
        }
        CtlAction::Ramp { region, .. } => format!(
            "ramp {} of {region} started: generation {}\n",
            answer["id"].as_str().unwrap_or("?"),
            answer["generation"]
        ),
        CtlAction::Ramps => ctl::ramps_text(&answer),
        CtlAction::RampAction { id, action } => {
            format!("{action} ramp {id}: generation {}\n", answer["generation"])
        }
        CtlAction::Drain {
            region, percent, ..
        } => {
            let generation = &answer["generation"];
            if percent == 0.0 {
                format!("lifted the drain of {region}: generation {generation}\n")
            } else {
                format!("drained {percent} % of {region}: generation {generation}\n")
            }
        }
        CtlAction::Reload => format!("reloaded: generation {}\n", answer["generation"]),
        CtlAction::WhatIf { .. } => ctl::what_if_text(&answer),
        CtlAction::History {
            generation: Some(_),
            ..
        } => format!("{}\n", serde_json::to_string_pretty(&answer)?),
        CtlAction::History { .. } => ctl::history_text(&answer),
        CtlAction::Rollback { generation, .. } => format!(
            "rolled back to generation {generation}: generation {}{}\n",
            answer["generation"],
            match answer["config_hash"].as_str() {
                Some(h) => format!(" (config {h})"),
                None => String::new(),
            }
        ),
    })
}

fn geoip_build(source: &Path, out_dir: &Path) -> anyhow::Result<()> {
    let files = crate::geo::build::source::build_from_source(source)
        .with_context(|| format!("building from {}", source.display()))?;
    for (file, bytes) in files {
        let path = out_dir.join(file);
        std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {} ({} bytes)", path.display(), bytes.len());
    }
    Ok(())
}

fn serve(path: &Path, log_format: Option<LogFormat>) -> anyhow::Result<()> {
    // The config first, for its log format; a config that does not load is reported on
    // stderr by main either way.
    let compiled = config::load(path)?;
    // The config's parse trees are freed: return their pages before serving.
    crate::alloc::release_freed();
    init_logging(log_format.unwrap_or(match compiled.settings.log_format {
        crate::settings::LogFormat::Text => LogFormat::Text,
        crate::settings::LogFormat::Json => LogFormat::Json,
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve_async(compiled, path))
}

async fn serve_async(compiled: crate::routing::Compiled, path: &Path) -> anyhow::Result<()> {
    // A config whose assertions fail does not serve, at start as at a reload.
    let compiled = crate::control::reload::assertions_hold(Arc::new(compiled))?;
    let settings = compiled.settings.clone();
    let metrics = Arc::new(Metrics::new());
    let (health, evacuations) = match &settings.state_dir {
        Some(dir) => {
            // Operator intent: never start while unable to read it.
            let evacuations = state::load_evacuations(dir).context(
                "refusing to start: the saved evacuations cannot be read (fix or remove the file)",
            )?;
            let health = state::load_health(dir).unwrap_or_else(|e| {
                // Health is re-learnt within a few probe intervals; starting blind beats not starting.
                warn!(error = %e, "ignoring saved health");
                Default::default()
            });
            (health, evacuations)
        }
        None => {
            warn!("no server.state_dir: evacuations and health will not survive a restart");
            Default::default()
        }
    };
    if !health.targets.is_empty() {
        info!(
            targets = health.targets.len(),
            "warm start from saved health"
        );
    }
    for region in evacuations.regions.keys() {
        info!(%region, "region evacuated (from saved state)");
    }
    let token = Token::load(settings.admin_token_file.as_deref())?;
    let read_token = settings
        .read_token_file
        .as_deref()
        .map(Token::read)
        .transpose()?;
    let admin_listener = match settings.admin_listen {
        Some(addr) => Some(admin::bind(addr, token.as_ref()).await?),
        None => None,
    };

    let (publisher, store) = Publisher::new(compiled, &health, evacuations, metrics.clone());
    let mut publisher = publisher.with_config_path(path.to_owned());
    let (command_tx, command_rx) = tokio::sync::mpsc::channel(64);
    let cluster_status = settings
        .cluster
        .as_ref()
        .map(|_| Arc::new(crate::cluster::SharedStatus::default()));
    #[cfg(feature = "etcd")]
    if let (Some(cluster), Some(status)) = (&settings.cluster, &cluster_status) {
        let store = crate::cluster::etcd::start(
            cluster.clone(),
            settings.config_hash.clone(),
            status.clone(),
            metrics.clone(),
            fleet_updates(command_tx.clone()),
        );
        publisher = publisher.with_cluster(store, cluster.quorum);
        info!(name = %cluster.name, endpoints = ?cluster.endpoints, "fleet mode");
    }
    let (probe_tx, probe_rx) = tokio::sync::mpsc::channel(1024);
    let probe = Arc::new(
        NetProbe::new()
            .with_source(settings.probe_source)
            .with_resolver(settings.health_resolver),
    );
    publisher.start_probers(Box::new(move |compiled, generation| {
        prober::spawn(compiled, generation, probe.clone(), probe_tx.clone())
    }));

    // dnstap: the DNS path's end of the queue, and the writer task draining it.
    let dnstap_stop = tokio_util::sync::CancellationToken::new();
    let (tap, dnstap_writer) = match &settings.dnstap {
        Some(d) => {
            let (tap, rx) = Tap::new(d, &metrics, Box::new(SystemClock));
            let writer = tokio::spawn(dnstap::writer::run(
                d.clone(),
                rx,
                metrics.clone(),
                dnstap_stop.clone(),
            ));
            info!(socket = %d.socket.display(), sample = d.sample, "dnstap logging");
            (Some(Arc::new(tap)), Some(writer))
        }
        None => (None, None),
    };
    let listeners = listen(
        &settings.dns_listen,
        store.clone(),
        metrics.clone(),
        settings.tcp,
        &settings.rrl,
        settings.workers,
        tap,
    )
    .await?;
    tokio::spawn(publisher.run(probe_rx, command_rx));

    // The start-up lines: logged once, under their own target, whatever the filter; scripts and
    // tests wait for them (see `STARTUP`).
    for addr in &listeners.bound {
        info!(target: STARTUP, %addr, "serving DNS over UDP and TCP");
    }
    if let Some(listener) = admin_listener {
        let addr = listener.local_addr().context("admin listener address")?;
        let admin = Arc::new(Admin {
            store,
            commands: command_tx.clone(),
            metrics,
            token,
            read_token,
            cluster: cluster_status,
        });
        tokio::spawn(admin::serve(listener, admin));
        info!(target: STARTUP, url = %format_args!("http://{addr}"), "admin API listening");
    }
    // Handlers first: a SIGTERM right after `ready` must stop the server cleanly, not kill it.
    let shutdown = shutdown_signal()?;
    info!(target: STARTUP, "ready");
    let hup_tx = command_tx.clone();
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            info!("SIGHUP: reloading the config");
            if hup_tx
                .send(command::Command::Reload { reply: None })
                .await
                .is_err()
            {
                break;
            }
        }
    });

    shutdown.await;
    info!("shutting down");
    listeners.shutdown().await;
    if let Some(writer) = dnstap_writer {
        // What is queued goes out, then a STOP, so the collector closes its file cleanly.
        dnstap_stop.cancel();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
    }
    // The publisher writes what it has pending (health verdicts) before the process ends.
    let (done, stopped) = tokio::sync::oneshot::channel();
    if command_tx
        .send(command::Command::Shutdown { done })
        .await
        .is_ok()
    {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stopped).await;
    }
    Ok(())
}

/// A channel for the fleet watch whose updates reach the publisher as commands.
#[cfg(feature = "etcd")]
fn fleet_updates(
    commands: tokio::sync::mpsc::Sender<command::Command>,
) -> tokio::sync::mpsc::Sender<crate::cluster::FleetUpdate> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(update) = rx.recv().await {
            if commands
                .send(command::Command::Fleet(update))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    tx
}

/// Installs the SIGTERM and SIGINT handlers; the future completes at the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// The log target of the start-up lines: `serving DNS over UDP and TCP addr=ADDR` for each
/// listen address, `admin API listening url=URL`, then `ready`. Logged whatever `MERIDIAN_LOG`
/// says (unless it names this target), so scripts can wait for them.
const STARTUP: &str = "meridian::startup";

/// How `serve` writes its log lines (stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    // hickory logs every request at info; keep that out of production logs.
    let asked = std::env::var("MERIDIAN_LOG").ok();
    let mut filter = asked
        .as_deref()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info,hickory_server=warn,hickory_proto=warn"));
    // The start-up lines stay on under a quieter filter, unless it names them itself.
    if !asked.is_some_and(|f| f.contains(STARTUP)) {
        filter = filter.add_directive(format!("{STARTUP}=info").parse().expect("directive"));
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Colour only on a terminal: files and journald get plain text.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        // One JSON object a line: level, target, message and the event's fields.
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
