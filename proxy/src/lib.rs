//! Concord's sidecar proxy (`concord connect proxy -sidecar-for <service>`): mTLS between
//! services with SPIFFE identities from the built-in CA, intentions enforced per connection
//! and per request, and production-grade L7 behaviour (timeouts, retries, circuit breaking,
//! metrics).
//!
//! The control side follows the local agent (identity, upstream endpoints, intentions) and
//! publishes snapshots ([`model`]); the data side (L4 byte streams, L7 HTTP) reads only those
//! snapshots, so no connection or request waits on the agent. [`run`] is the entry point.
//!
//! # Layout
//! - [`model`]: the seams between control and data side: endpoints, connectors, snapshots.
//! - [`control`]: follows the agent's HTTP API with blocking queries and publishes the
//!   snapshots; `control/agent` (the HTTP client), `control/spec` (what a proxy serves,
//!   from its registration or the command line).
//! - [`tls`]: rustls configurations over hot-swappable roots and leaf, SPIFFE identity
//!   checks, and the mTLS [`model::Connector`].
//! - [`inbound`]: the public listener (mTLS, intentions, local app); `inbound/registry`
//!   keeps open connections by source so an intention change closes the denied ones.
//! - [`outbound`]: one local listener per upstream (endpoint choice, dial, copy).
//! - [`l4`]: the byte-copy path both sides share.
//! - [`metrics`]: the Prometheus registry, the L4 counters and `GET /metrics`.

pub mod control;
pub mod inbound;
pub mod l4;
pub mod metrics;
pub mod model;
pub mod outbound;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use control::agent::AgentClient;
use control::{ControlError, ProxySpec, UpstreamSpec};
use inbound::registry::{enforce, ConnRegistry};
use inbound::Inbound;
use metrics::L4Metrics;
use outbound::Outbound;
use tls::MtlsConnector;

/// One proxy's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The local agent's HTTP API, `http://host:port`.
    pub agent_url: String,
    /// ACL token sent as `X-Consul-Token` (none when `None` or empty).
    pub token: Option<String>,
    /// Which proxy this is.
    pub mode: Mode,
    /// Where `GET /metrics` is served (Prometheus text); none when `None`.
    pub metrics_addr: Option<SocketAddr>,
    /// On shutdown, how long open connections may take to finish before they are cut.
    pub drain_timeout: Duration,
}

/// Which proxy to run.
#[derive(Clone, Debug)]
pub enum Mode {
    /// The registered sidecar whose `Proxy.DestinationServiceID` is this service ID.
    SidecarFor(String),
    /// The registered `connect-proxy` with this service ID.
    ProxyId(String),
    /// No registration: everything from the command line.
    Standalone {
        /// The service this proxy is (its identity).
        service: String,
        /// The public mTLS listener, if any.
        listen: Option<SocketAddr>,
        /// The local app inbound traffic goes to (required with `listen`).
        local_app: Option<SocketAddr>,
        /// The upstream listeners.
        upstreams: Vec<UpstreamSpec>,
    },
}

/// Why the proxy stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The agent or the registration.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// TLS configuration.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A listener could not be bound.
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: String,
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Flags that do not describe a proxy.
    #[error("{0}")]
    Config(String),
}

async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ProxyError::Bind {
            what: what.to_string(),
            addr,
            source,
        })
}

/// Runs the proxy until `shutdown` resolves: reads its job from the agent (or the
/// configuration), waits for its first certificate, binds its listeners, serves, and on
/// shutdown stops accepting and gives open connections `drain_timeout` to finish.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ProxyError> {
    tokio::pin!(shutdown);
    let client = AgentClient::new(&config.agent_url, config.token.clone())?;
    let spec = tokio::select! {
        spec = resolve_spec_retrying(&client, &config.mode) => spec?,
        _ = &mut shutdown => return Ok(()),
    };
    tracing::info!(service = %spec.service, proxy_id = ?spec.proxy_id, listen = ?spec.listen, upstreams = spec.upstreams.len(), "starting proxy");
    let published = tokio::select! {
        p = control::start(&client, &spec) => p?,
        _ = &mut shutdown => return Ok(()),
    };
    let _registration = spec.proxy_id.clone().map(|id| {
        tokio::spawn(control::watch_registration(
            client.clone(),
            id,
            spec.clone(),
        ))
    });

    let mut registry = Registry::default();
    let l4 = L4Metrics::register(&mut registry);
    let (stop_tx, stop) = watch::channel(false);
    let (drain_tx, mut drained) = mpsc::channel::<()>(1);
    let mut tasks = Vec::new();

    if let (Some(listen), Some(local_app)) = (spec.listen, spec.local_app) {
        let listener = bind("public listener", listen).await?;
        tracing::info!(addr = %listener.local_addr().unwrap_or(listen), app = %local_app, "public listener ready");
        let conns = Arc::new(ConnRegistry::default());
        tasks.push(tokio::spawn(enforce(
            published.intentions.clone(),
            conns.clone(),
        )));
        let inbound = Inbound {
            local_app,
            protocol: spec.protocol.clone(),
            intentions: published.intentions.clone(),
            conns,
            metrics: l4.clone(),
        };
        let tls = published.tls.clone();
        let (stop, drain) = (stop.clone(), drain_tx.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = inbound.serve(listener, tls, stop, drain).await {
                tracing::error!(error = %e, "public listener stopped");
            }
        }));
    } else if spec.listen.is_some() {
        return Err(ProxyError::Config(
            "a public listener needs the local app's address (LocalServicePort)".to_string(),
        ));
    }

    for (u, snapshot) in spec.upstreams.iter().zip(&published.upstreams) {
        let listener = bind(&format!("upstream {}", u.destination), u.bind).await?;
        tracing::info!(upstream = %u.destination, addr = %u.bind, "upstream listener ready");
        let connector = MtlsConnector::new(
            published.tls.clone(),
            u.connect_timeout,
            Some(snapshot.clone()),
        );
        let outbound = Outbound::new(
            u.destination.clone(),
            u.protocol.clone().unwrap_or_else(|| "tcp".to_string()),
            snapshot.clone(),
            Arc::new(connector),
            l4.clone(),
        );
        tasks.push(tokio::spawn(outbound.serve(
            listener,
            stop.clone(),
            drain_tx.clone(),
        )));
    }

    // Everything that registers metrics has done so: the registry is read-only from here.
    let registry = Arc::new(registry);
    if let Some(addr) = config.metrics_addr {
        let listener = bind("metrics", addr).await?;
        tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "metrics at /metrics");
        tasks.push(tokio::spawn(metrics::serve(
            listener,
            registry,
            stop.clone(),
        )));
    }

    shutdown.await;
    tracing::info!("shutting down: no new connections; draining open ones");
    let _ = stop_tx.send(true);
    drop(drain_tx);
    if tokio::time::timeout(config.drain_timeout, drained.recv())
        .await
        .is_err()
    {
        tracing::info!(timeout = ?config.drain_timeout, "drain timeout: closing the remaining connections");
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// [`resolve_spec`], waiting out an agent that is not up yet (transport errors, with
/// backoff); anything else (no such proxy, a bad registration) fails at once.
async fn resolve_spec_retrying(client: &AgentClient, mode: &Mode) -> Result<ProxySpec, ProxyError> {
    let mut backoff = Duration::from_millis(200);
    loop {
        match resolve_spec(client, mode).await {
            Err(ProxyError::Control(ControlError::Transport(e))) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "waiting for the agent");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            other => return other,
        }
    }
}

async fn resolve_spec(client: &AgentClient, mode: &Mode) -> Result<ProxySpec, ProxyError> {
    match mode {
        Mode::SidecarFor(service_id) => {
            let proxy_id = control::find_sidecar(client, service_id).await?;
            Ok(control::read_spec(client, &proxy_id).await?)
        }
        Mode::ProxyId(id) => Ok(control::read_spec(client, id).await?),
        Mode::Standalone {
            service,
            listen,
            local_app,
            upstreams,
        } => {
            if service.is_empty() {
                return Err(ProxyError::Config("-service must be set".to_string()));
            }
            Ok(ProxySpec {
                proxy_id: None,
                service: service.clone(),
                listen: *listen,
                local_app: *local_app,
                protocol: "tcp".to_string(),
                upstreams: upstreams.clone(),
            })
        }
    }
}
