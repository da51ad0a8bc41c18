//! Wiring: opens storage, starts Raft, serves the RPC port, runs the leader loop. Nothing
//! below imports this module; what the handlers share lives in [`node`](crate::node).

use concord_api::catalog::CONSUL_SERVICE;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use concord_net::gossip::Gossip;
use concord_net::rpc::RpcHttp;
use openraft::error::{InitializeError, RaftError};
use openraft::SnapshotPolicy;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::bootstrap;
use crate::config::Config;
use crate::data_dir;
use crate::fsm::StateMachine;
use crate::leader;
use crate::log_store::LogStore;
use crate::network::NetworkFactory;
use crate::node::{Leadership, Shared};
use crate::raft::{node_id_from_uuid, Node, NodeId, Raft};
use crate::rpc;
use crate::timers::SessionTimers;

/// How long opening the database waits for a lock another handle still holds.
const DB_LOCK_WAIT: Duration = Duration::from_secs(5);
/// How often it looks again meanwhile.
const DB_LOCK_RETRY: Duration = Duration::from_millis(20);
/// A request head on the RPC port not complete within this closes the connection.
const RPC_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests one RPC connection may carry at once: an agent's parked blocking queries all
/// share its one connection, so this bounds how many one agent can park on this server.
const RPC_MAX_STREAMS: u32 = 262_144;
/// How long `shutdown` waits for in-flight RPCs before cutting them off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why a server could not start, lead, or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is unusable.
    #[error("invalid server configuration: {0}")]
    Config(String),
    /// A socket or file operation failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The Raft log, vote or snapshot store failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// Raft failed to start, initialize or stop.
    #[error("raft error: {0}")]
    Raft(String),
    /// No leader was known within the given time.
    #[error("no cluster leader within {0:?}")]
    NoLeader(Duration),
}

/// Opens storage and starts Raft: everything but serving RPCs, bootstrapping and the
/// leader loop. Returns the database so the caller can flush it on shutdown.
#[cfg(test)]
pub(crate) async fn open(config: Config) -> Result<(Arc<Shared>, sled::Db), ServerError> {
    open_with_gossip(config, None).await
}

/// [`open`], with the LAN gossip pool kept in [`Shared`] for the leader to reconcile.
pub(crate) async fn open_with_gossip(
    config: Config,
    gossip: Option<Gossip>,
) -> Result<(Arc<Shared>, sled::Db), ServerError> {
    let id = node_id_from_uuid(&config.node_id).map_err(|e| {
        ServerError::Config(format!("node_id {:?} is not a UUID: {e}", config.node_id))
    })?;
    let storage = |e: &dyn std::fmt::Display| ServerError::Storage(e.to_string());
    // The version check comes first: a data dir of another format is never opened.
    let layout = match config.data_dir.clone() {
        Some(dir) => Some(
            tokio::task::spawn_blocking(move || data_dir::prepare(&dir))
                .await
                .map_err(|e| storage(&e))?
                .map_err(|e| storage(&e))?,
        ),
        None => None,
    };
    let db = open_db(layout.as_ref().map(|l| l.sled.as_path())).await?;
    // After sled's lock is held: a second server on this dir stops there, before the log.
    let log_dir = layout.map(|l| l.log);
    let log = tokio::task::spawn_blocking(move || match log_dir {
        Some(dir) => LogStore::open(&dir),
        None => LogStore::open_temporary(),
    })
    .await
    .map_err(|e| storage(&e))?
    .map_err(|e| storage(&e))?;
    log.forget_leading(id);
    #[cfg(test)]
    let log_gate = log.sync_gate();
    // Restoring the persisted snapshot decodes the whole store: keep it off the async threads.
    let fsm_db = db.clone();
    let (fsm, store) =
        tokio::task::spawn_blocking(move || StateMachine::open(&fsm_db).map_err(|e| storage(&e)))
            .await
            .map_err(|e| storage(&e))??;
    let tls = config.rpc_tls.as_ref().and_then(|t| t.client.clone());
    let http =
        RpcHttp::with_tls(tls).map_err(|e| ServerError::Config(format!("HTTP client: {e}")))?;
    let raft = Raft::new(
        id,
        Arc::new(raft_config(&config)?),
        NetworkFactory::new(http.clone()),
        log,
        fsm,
    )
    .await
    .map_err(|e| ServerError::Raft(e.to_string()))?;
    let timers = SessionTimers::new(leader::expire_session(raft.clone(), store.clone()));
    let shared = Shared::new(config, id, raft, store, timers, http).with_gossip(gossip);
    #[cfg(test)]
    let shared = shared.with_log_gate(log_gate);
    Ok((Arc::new(shared), db))
}

/// Builds the openraft configuration.
fn raft_config(config: &Config) -> Result<openraft::Config, ServerError> {
    let timings = config.raft_timings();
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    openraft::Config {
        cluster_name: "concord".to_string(),
        heartbeat_interval: ms(timings.heartbeat),
        election_timeout_min: ms(timings.election_min),
        election_timeout_max: ms(timings.election_max),
        // Full snapshots go in one HTTP request; allow more than the 200 ms default.
        install_snapshot_timeout: 10_000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.raft_snapshot_threshold.max(1)),
        max_in_snapshot_log_to_keep: config.raft_trailing_logs,
        ..openraft::Config::default()
    }
    .validate()
    .map_err(|e| ServerError::Config(e.to_string()))
}

/// Opens the sled database at `path` (the data dir's [`Layout::sled`](data_dir::Layout)), or
/// a temporary one deleted on drop.
///
/// If another handle still holds the database's lock, waits for it up to [`DB_LOCK_WAIT`]:
/// after `Server::shutdown` returns, openraft's replication and state-machine tasks may
/// still be dropping their storage handles for a moment, so a server restarted in the same
/// process (tests, embedders) would otherwise fail at random. Opening recovers sled's log,
/// so it runs on the blocking pool.
async fn open_db(path: Option<&Path>) -> Result<sled::Db, ServerError> {
    let config = match path {
        Some(path) => sled::Config::new().path(path),
        None => sled::Config::new().temporary(true),
    };
    let storage = |e: &dyn std::fmt::Display| ServerError::Storage(e.to_string());
    let deadline = Instant::now() + DB_LOCK_WAIT;
    loop {
        let attempt = config.clone();
        let opened = tokio::task::spawn_blocking(move || attempt.open())
            .await
            .map_err(|e| storage(&e))?;
        match opened {
            Err(e) if lock_held(&e) && Instant::now() < deadline => {
                tokio::time::sleep(DB_LOCK_RETRY).await;
            }
            opened => return opened.map_err(|e| storage(&e)),
        }
    }
}

/// Forces everything written to the sled database to disk, off the async threads.
async fn flush(db: &sled::Db) -> Result<(), std::io::Error> {
    let db = db.clone();
    match tokio::task::spawn_blocking(move || db.flush()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(std::io::Error::other(e)),
        Err(e) => Err(std::io::Error::other(e)),
    }
}

/// Whether opening failed only because another handle holds the database's file lock.
/// sled 0.34 reports that as an `Other` I/O error with this text and no finer kind.
fn lock_held(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().starts_with("could not acquire lock"))
}

/// What the RPC port allows: many streams per connection (every parked blocking query an
/// agent or a follower forwards is one), few connections per client.
fn rpc_limits(config: &Config) -> concord_net::serve::ServeLimits {
    concord_net::serve::ServeLimits {
        header_read_timeout: RPC_HEADER_READ_TIMEOUT,
        max_conns_per_client: config.rpc_max_conns_per_client,
        http2_max_streams: RPC_MAX_STREAMS,
        body_read_timeout: concord_net::serve::BODY_READ_TIMEOUT,
        http2_window: concord_net::rpc::RPC_WINDOW,
    }
}

/// Initializes a single-voter cluster unless this data dir already holds one.
pub(crate) async fn bootstrap_single(
    raft: &Raft,
    id: NodeId,
    addr: SocketAddr,
) -> Result<(), ServerError> {
    let raft_err = |e: &dyn std::fmt::Display| ServerError::Raft(e.to_string());
    if raft.is_initialized().await.map_err(|e| raft_err(&e))? {
        tracing::info!("raft state found; not bootstrapping again");
        return Ok(());
    }
    tracing::info!(%addr, "bootstrapping a single-server cluster");
    let members = BTreeMap::from([(id, Node::new(addr))]);
    match raft.initialize(members).await {
        Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(raft_err(&e)),
    }
}

/// A running server. Stop it with [`Server::shutdown`]; dropping it stops serving RPCs but
/// does not wait for Raft to stop.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    rpc_addr: SocketAddr,
    http: JoinHandle<()>,
    leader: JoinHandle<()>,
    db: sled::Db,
}

impl Server {
    /// Opens the data dir, starts Raft, serves RPCs (agents' reads/writes and Raft's own
    /// traffic) on `rpc_listener`, and bootstraps when `bootstrap_expect == 1`. Without a
    /// gossip pool the catalog holds only what agents register (and this server itself).
    pub async fn start(config: Config, rpc_listener: TcpListener) -> Result<Server, ServerError> {
        Server::start_inner(config, rpc_listener, None).await
    }

    /// [`Server::start`] for a server that is a member of the LAN gossip pool `gossip`
    /// (started and joined by the caller, which also leaves and shuts it down). While this
    /// server leads, it reconciles the pool's members into the catalog as Consul does: alive
    /// members registered with a passing `serfHealth` check, failed ones critical, members
    /// that left deregistered.
    pub async fn start_with_gossip(
        config: Config,
        rpc_listener: TcpListener,
        gossip: Gossip,
    ) -> Result<Server, ServerError> {
        Server::start_inner(config, rpc_listener, Some(gossip)).await
    }

    async fn start_inner(
        config: Config,
        rpc_listener: TcpListener,
        gossip: Option<Gossip>,
    ) -> Result<Server, ServerError> {
        let rpc_addr = rpc_listener.local_addr()?;
        let (shared, db) = open_with_gossip(config.clone(), gossip).await?;
        let raft = shared.raft.clone();
        let id = shared.id;
        tracing::info!(node = %config.node_name, raft_id = id, %rpc_addr, "server starting");

        let app = rpc::router(shared.clone());
        let config_for_limits = config.clone();
        let stopping = shared.stopping();
        // With `verify_incoming` only TLS is served (a plain connection is closed, or told
        // it spoke HTTP to an HTTPS port); without it both, as Consul's RPC port.
        let tls = config.rpc_tls.as_ref().and_then(|t| {
            t.server
                .clone()
                .map(|config| concord_net::serve::TlsListener {
                    config,
                    plain: if t.refuse_plain {
                        concord_net::serve::Plain::Refuse
                    } else {
                        concord_net::serve::Plain::Serve
                    },
                })
        });
        let http = tokio::spawn(async move {
            let serve = concord_net::serve::serve_with(
                rpc_listener,
                app,
                rpc_limits(&config_for_limits),
                tls,
                stopping,
            );
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "RPC server failed");
            }
        });

        match config.bootstrap_expect {
            1 => {
                if let Err(e) = bootstrap_single(&raft, id, config.rpc_advertise).await {
                    shared.stop();
                    let _ = raft.shutdown().await;
                    return Err(e);
                }
            }
            0 => tracing::info!("bootstrap disabled; waiting to be joined"),
            n if raft.is_initialized().await.unwrap_or(true) => {
                tracing::info!(expect = n, "raft state found; ignoring -bootstrap-expect");
            }
            n => {
                tracing::info!(expect = n, "waiting for {n} servers to bootstrap a cluster");
                tokio::spawn(bootstrap::run(shared.clone(), n));
            }
        }
        let leader = leader::spawn(shared.clone());
        Ok(Server {
            shared,
            rpc_addr,
            http,
            leader,
            db,
        })
    }

    /// The RPC endpoints for an agent in this process: calls go straight to the handlers,
    /// with no socket per call.
    pub fn local_rpc(&self) -> rpc::LocalRpc {
        rpc::LocalRpc::new(self.shared.clone())
    }

    /// The address the RPC listener is bound to.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.rpc_addr
    }

    /// Waits until a leader is known; if it is this server, also until it has applied
    /// everything committed before it took over (so reads reflect earlier writes).
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<(), ServerError> {
        let deadline = Instant::now() + timeout;
        self.shared
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a known leader")
            .await
            .map_err(|_| ServerError::NoLeader(timeout))?;
        if self.shared.leadership() == Leadership::Leader {
            tokio::time::timeout_at(deadline, self.shared.raft.ensure_linearizable())
                .await
                .map_err(|_| ServerError::NoLeader(timeout))?
                .map_err(|e| ServerError::Raft(e.to_string()))?;
            // A leader also registers itself (its node and the `consul` service) as its first
            // duty; wait for that too, so the first catalog read after start sees the server,
            // as it does on Consul once `agent -dev` reports ready.
            tokio::time::timeout_at(deadline, self.registered())
                .await
                .map_err(|_| ServerError::NoLeader(timeout))?;
        }
        Ok(())
    }

    /// Resolves once this server's node carries the `consul` service in the catalog.
    async fn registered(&self) {
        let node = &self.shared.config.node_name;
        loop {
            // Subscribe before looking, so a registration in between is not missed; a closed
            // channel means a restore swapped the store: look again at the new one.
            let current = self.shared.store.current();
            let mut changes = current.subscribe();
            if current.view(|t| t.service(node, CONSUL_SERVICE).is_some()) {
                return;
            }
            let _ = changes.changed().await;
        }
    }

    /// Stops serving, stops Raft, and flushes storage.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        tracing::info!(node = %self.shared.config.node_name, "server shutting down");
        self.shared.stop();
        self.leader.abort();
        let _ = (&mut self.leader).await;
        self.shared.timers.clear();
        let raft = self.shared.raft.shutdown().await;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut self.http)
            .await
            .is_err()
        {
            tracing::warn!("RPCs still running after {SHUTDOWN_GRACE:?}; aborting them");
            self.http.abort();
        }
        flush(&self.db).await?;
        raft.map_err(|e| ServerError::Raft(e.to_string()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop();
        self.leader.abort();
        self.shared.timers.clear();
    }
}

#[cfg(test)]
mod tests;

/// Runs a server until `shutdown` resolves, then stops it: the CLI's entry point.
pub async fn run(
    config: Config,
    rpc_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let server = Server::start(config, rpc_listener).await?;
    shutdown.await;
    server.shutdown().await
}
