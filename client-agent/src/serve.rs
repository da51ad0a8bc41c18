//! The running process: [`run`] builds an [`AgentCore`] over the real server client, starts
//! the background tasks (check results, reaping, anti-entropy, the catalog cache), serves
//! the HTTP API and DNS on the caller's sockets, and on shutdown or `/v1/agent/leave` stops
//! them all: nothing it spawned is still running when it returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use concord_api::rpc::RpcError;
use concord_net::gossip::Gossip;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::agent::AgentCore;
use crate::catalog_cache::{self, CatalogSnapshot};
use crate::config::Config;
use crate::membership::Membership;
use crate::rpc_client::{ServerClient, ServerRpc};

/// How long the HTTP and DNS servers get to finish in-flight requests after shutdown
/// before they are aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Requests one HTTP/2 connection to the API may carry at once (HTTP/1.1 carries one).
const HTTP2_MAX_STREAMS: u32 = 256;

/// Sockets the agent serves on, bound by the caller (tests bind port 0).
pub struct Listeners {
    /// HTTP API; `None` disables it (`ports.http = -1`).
    pub http: Option<TcpListener>,
    /// HTTPS API (`ports.https`) and its TLS (`tls.https`); `None`: no HTTPS. Served
    /// alongside `http` when both are given.
    pub https: Option<(TcpListener, concord_net::serve::TlsListener)>,
    /// DNS over UDP and TCP on the same port; `None` disables DNS (`ports.dns = -1`).
    pub dns: Option<(UdpSocket, TcpListener)>,
    /// The LAN gossip pool, already started (and shared with an in-process server); `None`
    /// runs without membership (`/v1/agent/members` then shows this agent alone). The
    /// caller keeps ownership: the agent leaves the pool only on `/v1/agent/leave`.
    pub gossip: Option<Gossip>,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners")
            .field("http", &self.http)
            .field("https", &self.https.as_ref().map(|(l, _)| l))
            .field("dns", &self.dns)
            .field("gossip", &self.gossip.is_some())
            .finish()
    }
}

/// Why the agent stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The HTTP server failed.
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    /// The DNS server failed.
    #[error("DNS server: {0}")]
    Dns(String),
    /// The server RPC client could not be built.
    #[error("server RPC client: {0}")]
    Rpc(RpcError),
}

/// Runs the agent until `shutdown` resolves or `/v1/agent/leave` is called, talking to the
/// servers of `config.servers`.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    let tls = config.rpc_tls.as_ref().and_then(|t| t.client.clone());
    let rpc =
        Arc::new(ServerClient::with_tls(config.servers.clone(), tls).map_err(AgentError::Rpc)?);
    run_with(config, rpc, listeners, shutdown).await
}

/// [`run`] over any [`ServerRpc`]: the CLI passes its in-process server's when it runs
/// one (no socket per call), tests pass a fake.
pub async fn run_with(
    config: Config,
    rpc: Arc<dyn ServerRpc>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    // Watchers asking the same question share one server call.
    let rpc: Arc<dyn ServerRpc> = Arc::new(crate::rpc_client::Coalesced::new(rpc));
    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(CatalogSnapshot::default()));
    let dns_config = config.dns.clone();
    let (contact_tx, contact_rx) = watch::channel(catalog_cache::Contact::default());
    let initial_services = config.services.clone();
    let membership = listeners.gossip.map(Membership::new);
    let (core, results) = AgentCore::new(config, rpc, snapshot_rx.clone(), membership.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let mut tasks = JoinSet::new();
    tasks.spawn(core.clone().apply_check_results(results));
    // Local state must be complete before the first full sync, or that sync would remove
    // from the catalog the services this agent is about to restore.
    let errors = core.load_config_services(&initial_services).await;
    for e in errors {
        tracing::error!("invalid service in configuration: {e}");
    }
    core.restore_persisted().await;
    tasks.spawn(core.clone().reap_critical());
    tasks.spawn(core.ae.clone().run(stopped()));
    tasks.spawn(core.connect.clone().run(stopped()));
    tasks.spawn(crate::acl::follow(core.acl.clone(), stopped()));
    if let Some(m) = membership {
        tasks.spawn(crate::agent::follow_pool(core.clone(), m, stopped()));
    }
    tasks.spawn(catalog_cache::follow(
        core.rpc.clone(),
        snapshot_tx,
        contact_tx,
        dns_config.follow_options(),
        stopped(),
    ));
    // With ACLs on, DNS answers from the catalog as the default token may read it.
    let dns_catalog = if core.acl.enabled() {
        let (tx, rx) = watch::channel(Arc::default());
        tasks.spawn(crate::dns::acl::follow(
            core.acl.clone(),
            snapshot_rx,
            tx,
            stopped(),
        ));
        rx
    } else {
        snapshot_rx
    };
    tasks.spawn(crate::intentions_cache::follow(
        core.rpc.clone(),
        core.intentions.sender(),
        stopped(),
    ));

    // Outermost first: the connection caps and timeouts of `concord_net::serve`, then the
    // per-client cap on parked blocking queries, then the API's own router.
    let limits = core.config.limits.clone();
    let app = crate::http::router(core.clone()).layer(axum::middleware::from_fn_with_state(
        crate::limits::BlockingCap::new(&limits),
        crate::limits::cap_blocking,
    ));
    let serve_limits = concord_net::serve::ServeLimits {
        header_read_timeout: limits.http_read_header_timeout,
        max_conns_per_client: limits.http_max_conns_per_client,
        http2_max_streams: HTTP2_MAX_STREAMS,
        body_read_timeout: concord_net::serve::BODY_READ_TIMEOUT,
        http2_window: concord_net::serve::H2Window::Adaptive,
    };
    let https_stop = stopped();
    let https_app = app.clone();
    let https_limits = serve_limits.clone();
    let https = tokio::spawn(async move {
        match listeners.https {
            Some((listener, tls)) => {
                concord_net::serve::serve_with(
                    listener,
                    https_app,
                    https_limits,
                    Some(tls),
                    https_stop,
                )
                .await
            }
            None => Ok(()),
        }
    });
    let http_stop = stopped();
    let http = tokio::spawn(async move {
        match listeners.http {
            // The peer's address reaches handlers as `ConnectInfo` (`allow_write_http_from`).
            Some(listener) => {
                concord_net::serve::serve(listener, app, serve_limits, http_stop).await
            }
            None => Ok(()),
        }
    });
    let dns_stop = stopped();
    let dns = tokio::spawn(async move {
        match listeners.dns {
            Some((udp, tcp)) => {
                let view = crate::dns::View {
                    catalog: dns_catalog,
                    contact: contact_rx,
                };
                crate::dns::serve(dns_config, udp, tcp, view, dns_stop).await
            }
            None => Ok(()),
        }
    });
    tracing::info!(node = %core.config.node_name, "agent running");

    tokio::select! {
        _ = shutdown => tracing::info!("agent shutting down"),
        _ = core.leave.notified() => tracing::info!("agent leaving on request"),
    }
    let _ = stop_tx.send(true);
    core.checks.shutdown().await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let http_result = match (finish(http).await, finish(https).await) {
        (Some(Err(e)), _) | (_, Some(Err(e))) => Some(Err(e)),
        (plain, _) => plain,
    };
    let dns_result = finish(dns).await;
    if let Some(Err(e)) = http_result {
        return Err(AgentError::Http(e));
    }
    if let Some(Err(e)) = dns_result {
        return Err(AgentError::Dns(e.to_string()));
    }
    Ok(())
}

/// Waits [`SHUTDOWN_GRACE`] for a server task to stop on its own, then aborts it and waits
/// for the abort. `None` when it did not finish by itself (or panicked).
async fn finish<T>(mut task: JoinHandle<T>) -> Option<T> {
    match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
        Ok(done) => done.ok(),
        Err(_) => {
            tracing::warn!("server task did not stop within the grace period; aborting it");
            task.abort();
            let _ = task.await;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc_client::fake::FakeServers;

    #[tokio::test]
    async fn leave_stops_everything_it_started() {
        let fake = Arc::new(FakeServers::default());
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = http.local_addr().unwrap();
        let listeners = Listeners {
            http: Some(http),
            https: None,
            dns: None,
            gossip: None,
        };
        let mut config = Config::new("node-1", Vec::new());
        config.services =
            vec![serde_json::from_str(r#"{"Name":"web","Check":{"TTL":"1h"}}"#).unwrap()];
        let agent = tokio::spawn(run_with(
            config,
            fake.clone(),
            listeners,
            std::future::pending(),
        ));
        tracing::info!("the configured service reaches the servers before the agent serves");
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        // The listener is bound already: the request waits for the agent to accept it.
        let url = format!("http://{addr}/v1/agent/leave");
        let left = client.put(&url).send().await.unwrap();
        assert_eq!(left.status(), 200);
        agent.await.unwrap().unwrap();
        assert_eq!(fake.service_ids("node-1"), ["web"]);
        tracing::info!("no task, check or connection still holds the agent (and its client)");
        assert_eq!(Arc::strong_count(&fake), 1);
    }
}
