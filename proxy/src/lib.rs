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
//! - [`listeners`]: binds the public and upstream listeners from the spec and reconciles
//!   them when the registration changes.
//! - [`l4`]: the byte-copy path both sides share.
//! - [`metrics`]: the Prometheus registry, the L4 counters and `GET /metrics`.
//! - [`l7`]: the HTTP data path: routing, timeouts, retries, balancing, circuit breaking,
//!   outlier detection, L7 intentions, metrics.
//! - [`workers`]: the threads that serve connections, one single-threaded runtime each; a
//!   connection stays on one of them for its life.

pub mod control;
pub mod inbound;
pub mod l4;
pub mod l7;
pub mod listeners;
pub mod metrics;
pub mod model;
pub mod outbound;
pub mod tls;
pub mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use control::agent::AgentClient;
use control::{ControlError, ProxySpec, UpstreamSpec};
use inbound::registry::{enforce, ConnRegistry};
use listeners::Listeners;
use metrics::L4Metrics;

/// One proxy's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The local agent's HTTP API, `http://host:port` or `https://host:port`.
    pub agent_url: String,
    /// TLS to an `https://` agent (CA to trust, client certificate); unused over `http://`.
    pub agent_tls: Option<Arc<rustls::ClientConfig>>,
    /// ACL token sent as `X-Consul-Token` (none when `None` or empty).
    pub token: Option<String>,
    /// Which proxy this is.
    pub mode: Mode,
    /// Where `GET /metrics` is served (Prometheus text); when `None`, the registration's
    /// `Proxy.Config.envoy_prometheus_bind_addr` if any (then the agent also serves these
    /// metrics in its `/v1/agent/metrics`).
    pub metrics_addr: Option<SocketAddr>,
    /// On shutdown, how long open connections may take to finish before they are cut.
    pub drain_timeout: Duration,
    /// The OTLP/HTTP collector (`http://host:4318`) request spans go to; when `None`, the
    /// registration's `Proxy.Config.otlp_endpoint` if any (followed live: a changed
    /// registration re-points the exporter); no tracing without either.
    pub otlp_endpoint: Option<String>,
    /// Threads serving connections ([`workers`]), the calling runtime's included; at least 1.
    pub workers: usize,
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

/// Runs the proxy until `shutdown` resolves: reads its job from the agent (or the
/// configuration), waits for its first certificate, binds its listeners, serves (following
/// changes of its registration), and on shutdown stops accepting and gives open
/// connections `drain_timeout` to finish.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ProxyError> {
    tokio::pin!(shutdown);
    let client = AgentClient::with_tls(
        &config.agent_url,
        config.token.clone(),
        config.agent_tls.clone(),
    )?;
    let spec = tokio::select! {
        spec = resolve_spec_retrying(&client, &config.mode) => spec?,
        _ = &mut shutdown => return Ok(()),
    };
    tracing::info!(service = %spec.service, proxy_id = ?spec.proxy_id, listen = ?spec.listen, upstreams = spec.upstreams.len(), "starting proxy");
    let published = tokio::select! {
        p = control::start(&client, &spec) => p?,
        _ = &mut shutdown => return Ok(()),
    };

    // A std Mutex: only held to register (at setup, or when a listener is built) and to
    // encode a scrape, never across an await. Shared so listeners built later (new
    // upstreams, the L7 engine) can register into it.
    let registry = Arc::new(Mutex::new(Registry::default()));
    let (l4, l7) = {
        let mut r = registry.lock().unwrap_or_else(|e| e.into_inner());
        (L4Metrics::register(&mut r), l7::L7Metrics::new(&mut r))
    };
    let workers = workers::Workers::start(config.workers).map_err(|source| {
        ProxyError::Config(format!(
            "starting {} worker threads: {source}",
            config.workers
        ))
    })?;
    let (stop_tx, stop) = watch::channel(false);
    let (drain_tx, mut drained) = mpsc::channel::<()>(1);
    let conns = Arc::new(ConnRegistry::default());
    let _enforcer = control::spawn(enforce(published.intentions.clone(), conns.clone()));
    let _metrics = match config
        .metrics_addr
        .or_else(|| registered_metrics_addr(&spec))
    {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ProxyError::Bind {
                    what: "metrics".to_string(),
                    addr,
                    source,
                })?;
            tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "metrics at /metrics");
            Some(control::spawn(metrics::serve(
                listener,
                registry.clone(),
                stop.clone(),
            )))
        }
        None => None,
    };

    // One tracer for the proxy's life; its collector follows the registration.
    let tracer = l7::trace::Tracer::idle(&spec.service)
        .map_err(|e| ProxyError::Config(format!("OTLP exporter: {e}")))?;
    apply_otlp_endpoint(&tracer, &config, &spec);
    let mut listeners = Listeners::new(
        client.clone(),
        published.tls.clone(),
        published.intentions.clone(),
        conns,
        (l4, l7),
        stop,
        drain_tx.clone(),
    )
    .with_tracer(Some(tracer.clone()))
    .with_workers(workers);
    listeners.apply(&spec).await?;
    let (spec_tx, mut spec_rx) = watch::channel(spec.clone());
    let _registration = spec
        .proxy_id
        .clone()
        .map(|id| control::spawn(control::watch_registration(client.clone(), id, spec_tx)));

    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Ok(()) = spec_rx.changed() => {
                let spec = spec_rx.borrow_and_update().clone();
                apply_otlp_endpoint(&tracer, &config, &spec);
                if let Err(e) = listeners.apply(&spec).await {
                    tracing::error!(error = %e, "applying the changed registration");
                }
            }
        }
    }

    tracing::info!("shutting down: no new connections; draining open ones");
    let _ = stop_tx.send(true);
    drop(listeners);
    drop(drain_tx);
    if tokio::time::timeout(config.drain_timeout, drained.recv())
        .await
        .is_err()
    {
        tracing::info!(timeout = ?config.drain_timeout, "drain timeout: closing the remaining connections");
    }
    Ok(())
}

/// Points `tracer` at the collector in force: `-otlp-endpoint`, else the registration's
/// `Proxy.Config.otlp_endpoint`; neither turns tracing off. Applied at start and on every
/// registration change, so an edited `otlp_endpoint` needs no restart.
fn apply_otlp_endpoint(tracer: &l7::trace::Tracer, config: &Config, spec: &ProxySpec) {
    let endpoint = otlp_endpoint(config, spec);
    if tracer.set_endpoint(endpoint.as_deref()) {
        match endpoint {
            Some(endpoint) => {
                tracing::info!(%endpoint, "request spans exported over OTLP/HTTP")
            }
            None => tracing::info!("no OTLP endpoint: request spans off"),
        }
    }
}

/// The OTLP collector in force (see [`apply_otlp_endpoint`]).
fn otlp_endpoint(config: &Config, spec: &ProxySpec) -> Option<String> {
    config
        .otlp_endpoint
        .clone()
        .filter(|e| !e.is_empty())
        .or_else(|| {
            spec.config["otlp_endpoint"]
                .as_str()
                .filter(|e| !e.is_empty())
                .map(str::to_string)
        })
}

/// Where the registration asks metrics to be served (`Proxy.Config.envoy_prometheus_bind_addr`,
/// Consul's key): the agent reads the sidecar's metrics there for `/v1/agent/metrics`.
fn registered_metrics_addr(spec: &ProxySpec) -> Option<SocketAddr> {
    let text = spec.config["envoy_prometheus_bind_addr"].as_str()?;
    match text.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            tracing::warn!(value = %text, "envoy_prometheus_bind_addr is not an address:port; no metrics listener");
            None
        }
    }
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
                config: serde_json::Value::Null,
                upstreams: upstreams.clone(),
            })
        }
    }
}
