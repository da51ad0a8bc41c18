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
use std::sync::Arc;

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::l4::{pipe, Ended};
use crate::metrics::{L4Metrics, OUTBOUND};
use crate::model::{BoxIo, Connector, Endpoint, UpstreamSnapshot};

/// Redirect depth the chain walk accepts (the compiler bounds it too).
const MAX_CHAIN_DEPTH: usize = 16;

/// One upstream's listener state.
pub struct Outbound {
    /// The upstream's destination service name (labels and logs).
    pub name: String,
    /// The upstream's protocol (`tcp`, `http`, ...).
    pub protocol: String,
    /// Latest chain and endpoints.
    pub snapshot: watch::Receiver<UpstreamSnapshot>,
    /// Dials an endpoint.
    pub connector: Arc<dyn Connector>,
    /// Counters.
    pub metrics: L4Metrics,
    /// Round-robin position.
    next: AtomicUsize,
}

impl Outbound {
    /// An upstream listener's state.
    pub fn new(
        name: String,
        protocol: String,
        snapshot: watch::Receiver<UpstreamSnapshot>,
        connector: Arc<dyn Connector>,
        metrics: L4Metrics,
    ) -> Outbound {
        Outbound {
            name,
            protocol,
            snapshot,
            connector,
            metrics,
            next: AtomicUsize::new(0),
        }
    }

    /// Accepts on `listener` until `stop` turns true; connection tasks hold `drain`.
    pub async fn serve(
        self,
        listener: TcpListener,
        mut stop: watch::Receiver<bool>,
        drain: mpsc::Sender<()>,
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
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                // The one place where the protocol picks the data path: every protocol is
                // carried as bytes (L4) here; HTTP-aware upstreams go to the L7 engine once
                // it is wired in.
                tracing::debug!(upstream = %this.name, %peer, protocol = %this.protocol, "outbound: connection");
                this.connection(tcp).await;
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
