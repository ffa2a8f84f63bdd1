//! The etcd side of fleet mode. One task keeps a session: a lease for this instance's record
//! (its health verdicts and config hash), a watch over the prefix that feeds the publisher
//! with the admin document and the peers' records, and a status the admin API reports. When
//! etcd is slow or gone, DNS is untouched: the publisher keeps its last table, admin changes
//! are refused, and the session reconnects with backoff.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tracing::{info, warn};

use super::{
    AdminDoc, ClusterError, ClusterStore, FleetUpdate, InstanceRecord, SharedStatus, Verdicts,
};
use crate::metrics::Metrics;
use crate::settings::ClusterSettings;

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

pub struct EtcdStore {
    settings: ClusterSettings,
    config_hash: String,
    /// The live session's client, `None` while disconnected.
    client: tokio::sync::Mutex<Option<Client>>,
    health: watch::Sender<Verdicts>,
    status: Arc<SharedStatus>,
    metrics: Arc<Metrics>,
}

impl EtcdStore {
    fn admin_key(&self) -> String {
        format!("{}admin/evacuations", self.settings.prefix)
    }

    fn instances_prefix(&self) -> String {
        format!("{}instances/", self.settings.prefix)
    }

    fn record(&self, verdicts: Verdicts) -> Vec<u8> {
        let record = InstanceRecord {
            name: self.settings.name.clone(),
            config_hash: self.config_hash.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            health: verdicts.health,
            guards: verdicts.guards,
        };
        serde_json::to_vec(&record).unwrap_or_default()
    }

    fn set_connected(&self, connected: bool, error: Option<String>) {
        self.status.update(|s| {
            s.connected = connected;
            if connected || error.is_some() {
                s.last_error = error;
            }
        });
        self.metrics.cluster_connected.set(i64::from(connected));
    }
}

#[async_trait::async_trait]
impl ClusterStore for EtcdStore {
    async fn propose(&self, doc: &AdminDoc, base: i64) -> Result<i64, ClusterError> {
        let client = self.client.lock().await.clone();
        let Some(mut client) = client else {
            return Err(ClusterError::Unavailable("not connected to etcd".into()));
        };
        let key = self.admin_key();
        let value = serde_json::to_vec(doc).unwrap_or_default();
        let txn = Txn::new()
            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, base)])
            .and_then([TxnOp::put(key.clone(), value, None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = match timeout(self.settings.request_timeout, client.txn(txn)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(ClusterError::Unavailable(e.to_string())),
            Err(_) => {
                return Err(ClusterError::Unavailable(
                    "etcd did not answer in time".into(),
                ));
            }
        };
        if resp.succeeded() {
            return Ok(resp.header().map_or(base, |h| h.revision()));
        }
        let current = resp
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.mod_revision()),
                _ => None,
            })
            .unwrap_or(0);
        Err(ClusterError::Conflict { current })
    }

    fn publish_health(&self, verdicts: Verdicts) {
        self.health.send_replace(verdicts);
    }
}

/// Starts the session task; returns the store the publisher writes through.
pub fn start(
    settings: ClusterSettings,
    config_hash: String,
    status: Arc<SharedStatus>,
    metrics: Arc<Metrics>,
    commands: mpsc::Sender<FleetUpdate>,
) -> Arc<EtcdStore> {
    status.update(|s| {
        s.name = settings.name.clone();
        s.config_hash = config_hash.clone();
    });
    let store = Arc::new(EtcdStore {
        settings,
        config_hash,
        client: tokio::sync::Mutex::new(None),
        health: watch::channel(Verdicts::default()).0,
        status,
        metrics,
    });
    let task = store.clone();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        let mut lost_at: Option<Instant> = None;
        let mut peers_cleared = false;
        loop {
            let started = Instant::now();
            let result = session(&task, &commands).await;
            *task.client.lock().await = None;
            let error = match result {
                Ok(()) => "session ended".to_string(),
                Err(e) => e,
            };
            warn!(error = %error, "etcd session lost; DNS keeps serving the last table");
            task.set_connected(false, Some(error));
            if commands.is_closed() {
                return;
            }
            let lost = *lost_at.get_or_insert_with(Instant::now);
            // Once our lease would have expired, peers' records may be stale too: stop
            // counting them, and fall back to our own view.
            if !peers_cleared && lost.elapsed() >= task.settings.lease_ttl {
                peers_cleared = commands
                    .send(FleetUpdate::PeerViews(BTreeMap::new()))
                    .await
                    .is_ok();
                task.status.update(|s| s.peers.clear());
            }
            if started.elapsed() > Duration::from_secs(5) {
                backoff = Duration::from_millis(200);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            if task.status.get().connected {
                lost_at = None;
                peers_cleared = false;
            }
        }
    });
    store
}

fn connect_options(s: &ClusterSettings) -> Result<ConnectOptions, String> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(s.dial_timeout)
        .with_timeout(s.request_timeout)
        .with_keep_alive(Duration::from_secs(2), s.request_timeout)
        .with_keep_alive_while_idle(true);
    if let (Some(user), Some(file)) = (&s.username, &s.password_file) {
        let password = std::fs::read_to_string(file)
            .map_err(|e| format!("password_file {}: {e}", file.display()))?;
        opts = opts.with_user(user.clone(), password.trim().to_string());
    }
    if s.ca_file.is_some() || s.cert_file.is_some() {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &s.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let (Some(cert), Some(key)) = (&s.cert_file, &s.key_file) {
            let c =
                std::fs::read(cert).map_err(|e| format!("cert_file {}: {e}", cert.display()))?;
            let k = std::fs::read(key).map_err(|e| format!("key_file {}: {e}", key.display()))?;
            tls = tls.identity(Identity::from_pem(c, k));
        }
        opts = opts.with_tls(tls);
    }
    Ok(opts)
}

async fn session(store: &EtcdStore, commands: &mpsc::Sender<FleetUpdate>) -> Result<(), String> {
    let s = &store.settings;
    let opts = connect_options(s)?;
    let err = |e: etcd_client::Error| e.to_string();
    let mut client = timeout(s.dial_timeout, Client::connect(&s.endpoints, Some(opts)))
        .await
        .map_err(|_| "connecting to etcd timed out".to_string())?
        .map_err(err)?;
    let ttl = s.lease_ttl.as_secs().max(2) as i64;
    let lease = within(s, client.lease_grant(ttl, None)).await?.id();
    let (mut keeper, mut keepalive) = within(s, client.lease_keep_alive(lease)).await?;
    let mut health = store.health.subscribe();
    let record_key = format!("{}{}", store.instances_prefix(), s.name);
    let record = store.record(health.borrow_and_update().clone());
    within(
        s,
        client.put(
            record_key.clone(),
            record,
            Some(PutOptions::new().with_lease(lease)),
        ),
    )
    .await?;

    // Everything under the prefix as of one revision, then the watch from the next one.
    let snapshot = within(
        s,
        client.get(s.prefix.clone(), Some(GetOptions::new().with_prefix())),
    )
    .await?;
    let revision = snapshot.header().map_or(0, |h| h.revision());
    let admin_key = store.admin_key();
    let mut peers: BTreeMap<String, InstanceRecord> = BTreeMap::new();
    let mut admin = (AdminDoc::default(), 0i64);
    for kv in snapshot.kvs() {
        if kv.key() == admin_key.as_bytes() {
            admin = (parse_admin(kv.value())?, kv.mod_revision());
        } else if let Some(rec) = peer_record(store, kv.key(), kv.value()) {
            peers.insert(rec.name.clone(), rec);
        }
    }
    let send = |cmd| async {
        commands
            .send(cmd)
            .await
            .map_err(|_| "publisher stopped".to_string())
    };
    send(FleetUpdate::Admin {
        doc: admin.0,
        revision: admin.1,
    })
    .await?;
    report_peers(store, &peers, commands).await?;
    store.status.update(|st| {
        st.applied_revision = admin.1;
        st.store_revision = revision;
    });
    *store.client.lock().await = Some(client.clone());
    store.set_connected(true, None);
    info!(endpoints = ?s.endpoints, revision, peers = peers.len(), "connected to etcd");

    let mut watch_client = client.clone();
    let mut stream = within(
        s,
        watch_client.watch(
            s.prefix.clone(),
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1),
            ),
        ),
    )
    .await?;
    let mut keepalive_tick = tokio::time::interval(s.lease_ttl / 3);
    keepalive_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut status_tick = tokio::time::interval(Duration::from_secs(1));
    status_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = stream.message() => {
                let Some(resp) = msg.map_err(err)? else {
                    return Err("etcd closed the watch".into());
                };
                if resp.canceled() {
                    return Err(format!("etcd cancelled the watch: {}", resp.cancel_reason()));
                }
                let mut peers_changed = false;
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    if kv.key() == admin_key.as_bytes() {
                        let doc = match ev.event_type() {
                            EventType::Put => parse_admin(kv.value())?,
                            EventType::Delete => AdminDoc::default(),
                        };
                        store.status.update(|st| st.applied_revision = kv.mod_revision());
                        send(FleetUpdate::Admin { doc, revision: kv.mod_revision() }).await?;
                    } else if let Some(name) = kv.key_str().ok().and_then(|k| k.strip_prefix(&store.instances_prefix())) {
                        if name == s.name {
                            continue;
                        }
                        match ev.event_type() {
                            EventType::Put => {
                                if let Some(rec) = peer_record(store, kv.key(), kv.value()) {
                                    peers.insert(rec.name.clone(), rec);
                                }
                            }
                            EventType::Delete => {
                                peers.remove(name);
                            }
                        }
                        peers_changed = true;
                    }
                }
                if peers_changed {
                    report_peers(store, &peers, commands).await?;
                }
                if let Some(h) = resp.header() {
                    store.status.update(|st| st.store_revision = st.store_revision.max(h.revision()));
                }
            }
            _ = keepalive_tick.tick() => {
                within(s, keeper.keep_alive()).await?;
            }
            ka = keepalive.message() => {
                match ka.map_err(err)? {
                    Some(r) if r.ttl() > 0 => {}
                    _ => return Err("the instance lease expired".into()),
                }
            }
            changed = health.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let record = store.record(health.borrow_and_update().clone());
                within(s, client.put(record_key.clone(), record, Some(PutOptions::new().with_lease(lease)))).await?;
            }
            _ = status_tick.tick() => {
                let r = within(s, client.get(admin_key.clone(), Some(GetOptions::new().with_count_only()))).await?;
                let rev = r.header().map_or(0, |h| h.revision());
                store.status.update(|st| st.store_revision = rev);
                let st = store.status.get();
                store.metrics.cluster_applied_revision.set(st.applied_revision);
                store.metrics.cluster_store_revision.set(st.store_revision);
            }
        }
    }
}

/// Runs an etcd call under the request timeout.
async fn within<T>(
    s: &ClusterSettings,
    call: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match timeout(s.request_timeout, call).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("etcd did not answer in time".into()),
    }
}

fn parse_admin(value: &[u8]) -> Result<AdminDoc, String> {
    serde_json::from_slice(value)
        .map_err(|e| format!("the fleet's admin document is not valid: {e}"))
}

fn peer_record(store: &EtcdStore, key: &[u8], value: &[u8]) -> Option<InstanceRecord> {
    let key = std::str::from_utf8(key).ok()?;
    let name = key.strip_prefix(&store.instances_prefix())?;
    if name == store.settings.name {
        return None;
    }
    match serde_json::from_slice::<InstanceRecord>(value) {
        Ok(rec) => Some(rec),
        Err(e) => {
            warn!(instance = name, error = %e, "ignoring an unreadable instance record");
            None
        }
    }
}

async fn report_peers(
    store: &EtcdStore,
    peers: &BTreeMap<String, InstanceRecord>,
    commands: &mpsc::Sender<FleetUpdate>,
) -> Result<(), String> {
    store.status.update(|st| {
        st.peers = peers
            .iter()
            .map(|(n, r)| (n.clone(), r.config_hash.clone()))
            .collect();
    });
    let st = store.status.get();
    store.metrics.cluster_peers.set(st.peers.len() as i64);
    store
        .metrics
        .cluster_config_drift
        .set(st.drifted().len() as i64);
    let views = peers
        .iter()
        .map(|(n, r)| {
            let verdicts = Verdicts {
                health: r.health.clone(),
                guards: r.guards.clone(),
            };
            (n.clone(), verdicts)
        })
        .collect();
    commands
        .send(FleetUpdate::PeerViews(views))
        .await
        .map_err(|_| "publisher stopped".to_string())
}
