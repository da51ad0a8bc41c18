//! The proxy's listener set: the public listener and one listener per upstream, bound from
//! a [`ProxySpec`] and reconciled when the spec changes (the registration is followed):
//! a new upstream gets a listener and a follower, a removed one stops accepting, a changed
//! one is rebound. Open connections are never cut by a reconfiguration: stopping a listener
//! only stops its accept loop; the connections it spawned run to their end (and hold the
//! drain channel, so shutdown still waits for them).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::control::agent::AgentClient;
use crate::control::{self, ProxySpec, TaskGuard, UpstreamSpec};
use crate::inbound::registry::ConnRegistry;
use crate::inbound::Inbound;
use crate::l7::{self, L7Metrics, Options, UpstreamPolicy};
use crate::metrics::L4Metrics;
use crate::model::IntentionSnapshot;
use crate::outbound::{Http, Outbound};
use crate::tls::{MtlsConnector, TlsMaterial};
use crate::workers::Workers;
use crate::ProxyError;
use concord_api::intention::is_l7_protocol;

/// What the public listener was bound for; a change rebinds it.
#[derive(Clone, Debug, PartialEq)]
struct InboundKey {
    listen: SocketAddr,
    local_app: SocketAddr,
    protocol: String,
    config: serde_json::Value,
}

/// A running upstream: its listener and the follower of its chain and endpoints.
#[derive(Debug)]
struct RunningUpstream {
    spec: UpstreamSpec,
    listener: TaskGuard,
    _follower: TaskGuard,
}

/// The listeners of one proxy, and what they share.
#[derive(Debug)]
pub struct Listeners {
    client: AgentClient,
    tls: Arc<TlsMaterial>,
    intentions: watch::Receiver<IntentionSnapshot>,
    conns: Arc<ConnRegistry>,
    metrics: L4Metrics,
    l7: L7Metrics,
    stop: watch::Receiver<bool>,
    drain: mpsc::Sender<()>,
    inbound: Option<(InboundKey, TaskGuard)>,
    /// By local bind address (one listener per address).
    upstreams: HashMap<SocketAddr, RunningUpstream>,
    /// Where request spans go, when tracing is on.
    tracer: Option<l7::trace::Tracer>,
    /// The threads connections are served on.
    workers: Workers,
}

/// The part of `Proxy.Config` the public listener is built from: all of it but
/// `otlp_endpoint`, which the proxy applies live to its tracer (no rebind for it).
fn listener_config(config: &serde_json::Value) -> serde_json::Value {
    let mut config = config.clone();
    if let Some(map) = config.as_object_mut() {
        map.remove("otlp_endpoint");
    }
    config
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

impl Listeners {
    /// No listeners yet; [`Listeners::apply`] binds them. Connection tasks hold `drain`;
    /// every listener counts into the L4 and L7 metric families given.
    pub fn new(
        client: AgentClient,
        tls: Arc<TlsMaterial>,
        intentions: watch::Receiver<IntentionSnapshot>,
        conns: Arc<ConnRegistry>,
        (metrics, l7): (L4Metrics, L7Metrics),
        stop: watch::Receiver<bool>,
        drain: mpsc::Sender<()>,
    ) -> Listeners {
        Listeners {
            client,
            tls,
            intentions,
            conns,
            metrics,
            l7,
            stop,
            drain,
            inbound: None,
            upstreams: HashMap::new(),
            tracer: None,
            workers: Workers::default(),
        }
    }

    /// Serves connections on `workers` (listeners started from now on; by default all on
    /// the calling runtime).
    pub fn with_workers(mut self, workers: Workers) -> Listeners {
        self.workers = workers;
        self
    }

    /// Sends a span per L7 request to `tracer` (listeners started from now on).
    pub fn with_tracer(mut self, tracer: Option<l7::trace::Tracer>) -> Listeners {
        self.tracer = tracer;
        self
    }

    /// Makes the listeners match `spec`. Stops before it binds, so a listener moving to a
    /// port another one freed works; on a bind error the rest is still applied and the
    /// first error returned.
    pub async fn apply(&mut self, spec: &ProxySpec) -> Result<(), ProxyError> {
        let mut first_error = None;
        let inbound = match (spec.listen, spec.local_app) {
            (Some(listen), Some(local_app)) => Some(InboundKey {
                listen,
                local_app,
                protocol: spec.protocol.clone(),
                config: listener_config(&spec.config),
            }),
            (Some(_), None) => {
                first_error = Some(ProxyError::Config(
                    "a public listener needs the local app's address (LocalServicePort)"
                        .to_string(),
                ));
                None
            }
            _ => None,
        };
        if self.inbound.as_ref().map(|(k, _)| k) != inbound.as_ref() {
            // Closed before the new bind: the port is often the same.
            if let Some((_, task)) = self.inbound.take() {
                task.stop().await;
            }
            if let Some(key) = inbound {
                match self.start_inbound(&key).await {
                    Ok(task) => self.inbound = Some((key, task)),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }

        let wanted: HashMap<SocketAddr, &UpstreamSpec> =
            spec.upstreams.iter().map(|u| (u.bind, u)).collect();
        let gone: Vec<SocketAddr> = self
            .upstreams
            .iter()
            .filter(|(addr, running)| !wanted.get(addr).is_some_and(|u| **u == running.spec))
            .map(|(addr, _)| *addr)
            .collect();
        for addr in gone {
            if let Some(running) = self.upstreams.remove(&addr) {
                tracing::info!(upstream = %running.spec.destination, addr = %addr, "upstream listener stopped");
                // Closed before a changed upstream binds the same address again.
                running.listener.stop().await;
            }
        }
        for (addr, u) in wanted {
            if self.upstreams.contains_key(&addr) {
                continue;
            }
            match self.start_upstream(u).await {
                Ok(running) => {
                    self.upstreams.insert(addr, running);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn start_inbound(&self, key: &InboundKey) -> Result<TaskGuard, ProxyError> {
        let listener = bind("public listener", key.listen).await?;
        tracing::info!(addr = %listener.local_addr().unwrap_or(key.listen), app = %key.local_app, protocol = %key.protocol, "public listener ready");
        // HTTP-aware services get the L7 engine: intentions judged per request.
        let http = if is_l7_protocol(&key.protocol) {
            let mut options = Options::from_proxy_config(&key.config)
                .map_err(|e| ProxyError::Config(format!("Proxy.Config: {e}")))?;
            options.tracer = self.tracer.clone();
            Some(l7::Inbound::with_options(
                key.local_app,
                &key.protocol,
                self.intentions.clone(),
                &self.l7,
                options,
            ))
        } else {
            None
        };
        let inbound = Inbound {
            local_app: key.local_app,
            protocol: key.protocol.clone(),
            intentions: self.intentions.clone(),
            conns: self.conns.clone(),
            metrics: self.metrics.clone(),
            http,
            workers: self.workers.clone(),
        };
        let tls = self.tls.clone();
        let (stop, drain) = (self.stop.clone(), self.drain.clone());
        Ok(control::spawn(async move {
            if let Err(e) = inbound.serve(listener, tls, stop, drain).await {
                tracing::error!(error = %e, "public listener stopped");
            }
        }))
    }

    async fn start_upstream(&self, u: &UpstreamSpec) -> Result<RunningUpstream, ProxyError> {
        let listener = bind(&format!("upstream {}", u.destination), u.bind).await?;
        tracing::info!(upstream = %u.destination, addr = %u.bind, "upstream listener ready");
        let (snapshot, follower) = control::upstream(&self.client, &u.destination);
        let connector =
            MtlsConnector::new(self.tls.clone(), u.connect_timeout, Some(snapshot.clone()));
        let policy = UpstreamPolicy::from_config(&u.config)
            .map_err(|e| ProxyError::Config(format!("upstream {}: Config: {e}", u.destination)))?;
        let outbound = Outbound::new(
            u.destination.clone(),
            u.protocol.clone(),
            snapshot,
            Arc::new(connector),
            self.metrics.clone(),
            Http {
                policy,
                metrics: self.l7.clone(),
                engines: Default::default(),
                tracer: self.tracer.clone(),
            },
        );
        let listener_task = control::spawn(outbound.serve(
            listener,
            self.stop.clone(),
            self.drain.clone(),
            self.workers.clone(),
        ));
        Ok(RunningUpstream {
            spec: u.clone(),
            listener: listener_task,
            _follower: follower,
        })
    }
}
