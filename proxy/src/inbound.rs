//! The public listener: mTLS in, identity from the client certificate, intentions decided
//! locally from the latest snapshot, then bytes to the local app.
//!
//! Per connection, outermost first: TLS handshake (client certificate chained to a current
//! root) → peer SPIFFE service → registration in [`registry::ConnRegistry`] (so a later
//! intention change can close it) → intention decision → the data path the protocol
//! selects → local app.

pub mod registry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::l4::{pipe, Ended};
use crate::metrics::{L4Metrics, INBOUND};
use crate::model::IntentionSnapshot;
use crate::tls::{peer_service, TlsError, TlsMaterial};
use registry::ConnRegistry;

/// Longest a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the local app may take to accept a connection.
const LOCAL_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the public listener serves.
#[derive(Clone, Debug)]
pub struct Inbound {
    /// The local app (`LocalServiceAddress:LocalServicePort`).
    pub local_app: SocketAddr,
    /// The service's protocol (`tcp`, `http`, `http2`, `grpc`).
    pub protocol: String,
    /// Latest intentions for this service.
    pub intentions: watch::Receiver<IntentionSnapshot>,
    /// Open connections by source service.
    pub conns: Arc<ConnRegistry>,
    /// Counters.
    pub metrics: L4Metrics,
    /// The L7 engine, for HTTP-aware protocols (`None`: bytes are copied, L4).
    pub http: Option<crate::l7::Inbound>,
    /// The threads connections are served on.
    pub workers: crate::workers::Workers,
}

impl Inbound {
    /// Accepts on `listener` until `stop` turns true. Each connection task holds a clone of
    /// `drain`, so the caller knows when the last one ended.
    pub async fn serve(
        self,
        listener: TcpListener,
        tls: Arc<TlsMaterial>,
        mut stop: watch::Receiver<bool>,
        drain: mpsc::Sender<()>,
    ) -> Result<(), TlsError> {
        let acceptor = TlsAcceptor::from(tls.server_config()?);
        let this = Arc::new(self);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: keep serving.
                        tracing::warn!(error = %e, "public listener: accept failed");
                        continue;
                    }
                },
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            let this = this.clone();
            let acceptor = acceptor.clone();
            let drain = drain.clone();
            let tls = tls.clone();
            this.workers.clone().spawn(tcp, move |tcp| async move {
                this.connection(acceptor, tcp, peer, &tls).await;
                drop(drain);
            });
        }
    }

    async fn connection(
        &self,
        acceptor: TlsAcceptor,
        tcp: TcpStream,
        peer: SocketAddr,
        material: &TlsMaterial,
    ) {
        let _ = tcp.set_nodelay(true);
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                self.metrics.tls_failure(INBOUND);
                tracing::info!(%peer, error = %e, "inbound: TLS handshake refused");
                return;
            }
            Err(_) => {
                self.metrics.tls_failure(INBOUND);
                tracing::info!(%peer, "inbound: TLS handshake timed out");
                return;
            }
        };
        let source = match peer_service(tls.get_ref().1.peer_certificates()) {
            Ok(id) => id.service,
            Err(e) => {
                self.metrics.tls_failure(INBOUND);
                tracing::info!(%peer, error = %e, "inbound: refused, no service identity");
                return;
            }
        };
        // The one place where the protocol picks the data path. HTTP-aware services judge
        // each request by the intentions (L7 permissions included, 403 on deny), so the
        // connection itself is not judged: an L7 intention would deny it at L4.
        if let Some(http) = &self.http {
            let labels = L4Metrics::conn(INBOUND, &source);
            self.metrics.opened.get_or_create(&labels).inc();
            let downstream = crate::l7::forwarded::Downstream::new(
                peer,
                &material.own_uri(),
                tls.get_ref().1.peer_certificates().unwrap_or_default(),
            );
            if let Err(e) = http
                .serve_connection(tls, source.clone(), Some(downstream))
                .await
            {
                tracing::debug!(%peer, %source, error = %e, "inbound: HTTP connection ended with an error");
            }
            self.metrics.closed.get_or_create(&labels).inc();
            return;
        }
        // Registered before deciding: an intention change that lands between the two is
        // then either seen by the decision or closes the registration.
        let (_registration, close) = self.conns.register(&source);
        let decision = self.intentions.borrow().decide_connection(&source);
        if !decision.allowed {
            self.metrics.denied(&source);
            tracing::info!(%peer, %source, reason = %decision.reason, "inbound: connection denied by intentions");
            return;
        }
        tracing::debug!(%peer, %source, protocol = %self.protocol, "inbound: connection allowed");
        let app = match tokio::time::timeout(
            LOCAL_CONNECT_TIMEOUT,
            TcpStream::connect(self.local_app),
        )
        .await
        {
            Ok(Ok(app)) => app,
            Ok(Err(e)) => {
                tracing::warn!(%source, app = %self.local_app, error = %e, "inbound: local app refused the connection");
                return;
            }
            Err(_) => {
                tracing::warn!(%source, app = %self.local_app, "inbound: local app connect timed out");
                return;
            }
        };
        let _ = app.set_nodelay(true);
        let labels = L4Metrics::conn(INBOUND, &source);
        match pipe(tls, app, &self.metrics, &labels, close.wait()).await {
            Ended::Closed(reason) => {
                self.metrics.denied(&source);
                tracing::info!(%peer, %source, %reason, "inbound: closed an open connection the intentions now deny");
            }
            Ended::Done(Some(e)) => {
                tracing::debug!(%peer, %source, error = %e, "inbound: connection ended with an error")
            }
            Ended::Done(None) => tracing::debug!(%peer, %source, "inbound: connection ended"),
        }
    }
}
