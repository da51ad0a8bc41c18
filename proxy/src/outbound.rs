//! One local listener per upstream: the app connects in plain TCP, we pick a healthy
//! instance of the destination from the latest [`UpstreamSnapshot`] and dial it with the
//! [`Connector`] (mTLS with our leaf, verifying the destination's identity), then copy
//! bytes.
//!
//! At L4 the discovery chain is followed to its first resolver (routers and splitters are
//! HTTP-only; their catch-all or first branch is taken), then its target, then its failover
//! targets in order: the first with healthy endpoints serves. Instances are tried round
//! robin, moving to the next on a failed dial.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use concord_api::intention::is_l7_protocol;

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::l4::{pipe, Ended};
use crate::l7::{self, L7Metrics, UpstreamPolicy};
use crate::metrics::{L4Metrics, OUTBOUND};
use crate::model::{BoxIo, Connector, Endpoint, UpstreamSnapshot};

/// Redirect depth the chain walk accepts (the compiler bounds it too).
const MAX_CHAIN_DEPTH: usize = 16;

/// What an upstream needs for HTTP-aware protocols: its L7 policy and the engine built
/// for the protocol in force.
pub struct Http {
    /// The upstream's traffic policy (from its `Config`).
    pub policy: UpstreamPolicy,
    /// The proxy's L7 metric families.
    pub metrics: L7Metrics,
    /// The engine for the protocol last seen, rebuilt only when the protocol changes (a
    /// `service-defaults` edit), so its connection pool and ejection state persist.
    pub engines: Mutex<Option<(String, l7::Outbound)>>,
    /// Where request spans go, when tracing is on.
    pub tracer: Option<l7::trace::Tracer>,
}

/// One upstream's listener state.
pub struct Outbound {
    /// The upstream's destination service name (labels and logs).
    pub name: String,
    /// The upstream's protocol when its `Config` sets one; otherwise the chain's (from
    /// `service-defaults`/`proxy-defaults`), checked per connection.
    pub protocol: Option<String>,
    /// Latest chain and endpoints.
    pub snapshot: watch::Receiver<UpstreamSnapshot>,
    /// Dials an endpoint.
    pub connector: Arc<dyn Connector>,
    /// Counters.
    pub metrics: L4Metrics,
    /// The L7 engine's inputs.
    http: Http,
    /// Round-robin position.
    next: AtomicUsize,
}

impl Outbound {
    /// An upstream listener's state.
    pub fn new(
        name: String,
        protocol: Option<String>,
        snapshot: watch::Receiver<UpstreamSnapshot>,
        connector: Arc<dyn Connector>,
        metrics: L4Metrics,
        http: Http,
    ) -> Outbound {
        Outbound {
            name,
            protocol,
            snapshot,
            connector,
            metrics,
            http,
            next: AtomicUsize::new(0),
        }
    }

    /// The protocol in force: the upstream's own setting, else the compiled chain's.
    fn protocol(&self) -> String {
        match &self.protocol {
            Some(p) => p.to_ascii_lowercase(),
            None => self.snapshot.borrow().chain["Protocol"]
                .as_str()
                .unwrap_or("tcp")
                .to_ascii_lowercase(),
        }
    }

    /// The L7 engine for `protocol`, built on first use and when the protocol changes.
    fn engine(&self, protocol: &str) -> l7::Outbound {
        let mut engines = self.http.engines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((p, engine)) = engines.as_ref() {
            if p == protocol {
                return engine.clone();
            }
        }
        let mut policy = self.http.policy.clone();
        policy.protocol = protocol.to_string();
        let engine = l7::Outbound::with_options(
            &self.name,
            policy,
            self.snapshot.clone(),
            self.connector.clone(),
            &self.http.metrics,
            l7::Options {
                tracer: self.http.tracer.clone(),
                ..l7::Options::default()
            },
        );
        *engines = Some((protocol.to_string(), engine.clone()));
        engine
    }

    /// Accepts on `listener` until `stop` turns true and serves each connection on one of
    /// `workers`; connection tasks hold `drain`.
    pub async fn serve(
        self,
        listener: TcpListener,
        mut stop: watch::Receiver<bool>,
        drain: mpsc::Sender<()>,
        workers: crate::workers::Workers,
    ) {
        let this = Arc::new(self);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(upstream = %this.name, error = %e, "upstream listener: accept failed");
                        continue;
                    }
                },
                _ = stop.wait_for(|s| *s) => return,
            };
            let this = this.clone();
            let drain = drain.clone();
            workers.spawn(tcp, move |tcp| async move {
                let _ = tcp.set_nodelay(true);
                // The one place where the protocol picks the data path: HTTP-aware upstreams
                // go to the L7 engine (per-request routing and policy), the rest is copied
                // as bytes (L4).
                let protocol = this.protocol();
                tracing::debug!(upstream = %this.name, %peer, %protocol, "outbound: connection");
                if is_l7_protocol(&protocol) {
                    let labels = L4Metrics::conn(OUTBOUND, &this.name);
                    this.metrics.opened.get_or_create(&labels).inc();
                    if let Err(e) = this.engine(&protocol).serve_connection(tcp).await {
                        tracing::debug!(upstream = %this.name, error = %e, "outbound: HTTP connection ended with an error");
                    }
                    this.metrics.closed.get_or_create(&labels).inc();
                } else {
                    this.connection(tcp).await;
                }
                drop(drain);
            });
        }
    }

    async fn connection(&self, app: TcpStream) {
        let Some(upstream) = self.dial().await else {
            return;
        };
        let labels = L4Metrics::conn(OUTBOUND, &self.name);
        match pipe(
            app,
            upstream,
            &self.metrics,
            &labels,
            std::future::pending(),
        )
        .await
        {
            Ended::Done(Some(e)) => {
                tracing::debug!(upstream = %self.name, error = %e, "outbound: connection ended with an error");
            }
            Ended::Done(None) | Ended::Closed(_) => {
                tracing::debug!(upstream = %self.name, "outbound: connection ended");
            }
        }
    }

    /// Dials the healthy endpoints round robin until one answers.
    async fn dial(&self) -> Option<BoxIo> {
        let endpoints = serving_endpoints(&self.snapshot.borrow());
        if endpoints.is_empty() {
            tracing::warn!(upstream = %self.name, "outbound: no healthy instance; closing the connection");
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..endpoints.len() {
            let endpoint = &endpoints[(start + i) % endpoints.len()];
            match self.connector.connect(endpoint).await {
                Ok(io) => return Some(io),
                Err(e) => {
                    self.metrics
                        .connect_failures
                        .get_or_create(&L4Metrics::conn(OUTBOUND, &self.name))
                        .inc();
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        self.metrics.tls_failure(OUTBOUND);
                    }
                    tracing::info!(upstream = %self.name, endpoint = %endpoint.id, addr = %endpoint.addr, error = %e, "outbound: dial failed; trying the next instance");
                }
            }
        }
        tracing::warn!(upstream = %self.name, tried = endpoints.len(), "outbound: every instance failed");
        None
    }
}

/// The endpoints L4 traffic goes to: the first target of the chain's first resolver (then
/// its failover targets) that has healthy endpoints.
pub fn serving_endpoints(snapshot: &UpstreamSnapshot) -> Vec<Endpoint> {
    for target in l4_targets(&snapshot.chain) {
        if let Some(eps) = snapshot.endpoints.get(&target) {
            if !eps.is_empty() {
                return eps.clone();
            }
        }
    }
    Vec::new()
}

/// The targets of the chain's first resolver, primary first, then failover.
pub fn l4_targets(chain: &Value) -> Vec<String> {
    let nodes = &chain["Nodes"];
    let mut name = chain["StartNode"].as_str().unwrap_or_default().to_string();
    for _ in 0..MAX_CHAIN_DEPTH {
        let node = &nodes[name.as_str()];
        let next = match node["Type"].as_str() {
            Some("resolver") => {
                let resolver = &node["Resolver"];
                let mut targets: Vec<String> = resolver["Target"]
                    .as_str()
                    .map(str::to_string)
                    .into_iter()
                    .collect();
                if let Some(failover) = resolver["Failover"]["Targets"].as_array() {
                    targets.extend(failover.iter().filter_map(|t| t.as_str()).map(String::from));
                }
                return targets;
            }
            // The catch-all route is last.
            Some("router") => node["Routes"]
                .as_array()
                .and_then(|r| r.last())
                .and_then(|r| r["NextNode"].as_str()),
            Some("splitter") => node["Splits"]
                .as_array()
                .and_then(|s| {
                    s.iter().max_by(|a, b| {
                        let w = |v: &Value| v["Weight"].as_f64().unwrap_or(0.0);
                        w(a).total_cmp(&w(b))
                    })
                })
                .and_then(|s| s["NextNode"].as_str()),
            _ => None,
        };
        match next {
            Some(n) => name = n.to_string(),
            None => break,
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests;
