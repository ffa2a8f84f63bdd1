//! Command line: `serve`, `check`, `explain`, `geoip-build`. The only user of anyhow.
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use hickory_proto::rr::{Name, RecordType};
use tracing::{info, warn};

use crate::config;
use crate::dns::listen::listen;
use crate::explain;
use crate::health::check::NetProbe;
use crate::health::prober;
use crate::routing::publish::Publisher;

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
enum Command {
    /// Serve DNS on the configured addresses.
    Serve {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
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
        Command::Serve { config } => serve(&config),
        Command::Check { config } => return check(&config),
        Command::Explain {
            config,
            name,
            qtype,
            client,
            json,
        } => explain_cmd(&config, &name, &qtype, &client, json),
        Command::GeoipBuild { source, out_dir } => geoip_build(&source, &out_dir),
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
    match config::load(path) {
        Ok(compiled) => {
            println!("{}: ok", path.display());
            if let Some(db) = &compiled.geo {
                println!(
                    "geoip: {} ({}, database_type {:?})",
                    db.path().display(),
                    db.schema().describe(),
                    db.database_type()
                );
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
) -> anyhow::Result<()> {
    let compiled = config::load(path)?;
    let name = Name::from_ascii(name)
        .map(|mut n| {
            n.set_fqdn(true);
            n
        })
        .with_context(|| format!("{name:?} is not a domain name"))?;
    let qtype: RecordType = qtype
        .to_ascii_uppercase()
        .parse()
        .with_context(|| format!("{qtype:?} is not a record type"))?;
    let client = match explain::parse_client(client) {
        Ok(c) => c,
        Err(e) => bail!("--client: {e}"),
    };
    // Explain against the health the server last saved, so it shows what clients get now.
    let saved = match &compiled.settings.state_dir {
        Some(dir) => crate::state::load_health(dir).unwrap_or_default(),
        None => Default::default(),
    };
    let (publisher, store) = Publisher::new(Arc::new(compiled), &saved, None);
    drop(publisher);
    let ex = explain::explain(&store.load(), &name, qtype, &client);
    if json {
        println!("{}", serde_json::to_string_pretty(&ex)?);
    } else {
        print!("{}", ex.to_text());
    }
    Ok(())
}

fn geoip_build(source: &Path, out_dir: &Path) -> anyhow::Result<()> {
    let files = crate::geo::source::build_from_source(source)
        .with_context(|| format!("building from {}", source.display()))?;
    for (file, bytes) in files {
        let path = out_dir.join(file);
        std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {} ({} bytes)", path.display(), bytes.len());
    }
    Ok(())
}

fn serve(path: &Path) -> anyhow::Result<()> {
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve_async(path))
}

async fn serve_async(path: &Path) -> anyhow::Result<()> {
    let compiled = Arc::new(config::load(path)?);
    let settings = compiled.settings.clone();
    let saved = match &settings.state_dir {
        Some(dir) => match crate::state::load_health(dir) {
            Ok(saved) => saved,
            Err(e) => {
                // Health is re-learnt within a few probe intervals; starting blind beats not starting.
                warn!(error = %e, "ignoring saved health");
                Default::default()
            }
        },
        None => Default::default(),
    };
    if !saved.targets.is_empty() {
        info!(targets = saved.targets.len(), "warm start from saved health");
    }
    let (publisher, table) = Publisher::new(compiled.clone(), &saved, settings.state_dir.clone());
    let mut listeners = listen(&settings.dns_listen, table, settings.tcp_idle_timeout).await?;

    let (events_tx, events_rx) = tokio::sync::mpsc::channel(1024);
    let _probers = prober::spawn(compiled, publisher.config_generation(), Arc::new(NetProbe::new()), events_tx);
    tokio::spawn(publisher.run(events_rx));

    for addr in &listeners.bound {
        // A stable line that scripts and tests wait for.
        println!("meridian: serving DNS on {addr} (udp, tcp)");
        info!(%addr, "serving DNS");
    }
    shutdown_signal().await?;
    info!("shutting down");
    listeners
        .server
        .shutdown_gracefully()
        .await
        .context("shutting down the DNS server")?;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    // hickory logs every request at info; keep that out of production logs.
    let filter = EnvFilter::try_from_env("MERIDIAN_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,hickory_server=warn,hickory_proto=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
