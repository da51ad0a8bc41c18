//! The proxy's L4 metrics and the Prometheus text endpoint (`GET /metrics` on
//! `-metrics-addr`). One [`Registry`] per process: L4 registers here ([`L4Metrics::register`]),
//! the L7 engine registers its own families into the same registry before it is served.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// `inbound` (public listener) or `outbound` (an upstream listener).
pub const INBOUND: &str = "inbound";
/// See [`INBOUND`].
pub const OUTBOUND: &str = "outbound";

/// A connection's labels: its direction and the service at the other end (the source
/// service inbound, the upstream outbound).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnLabels {
    /// [`INBOUND`] or [`OUTBOUND`].
    pub direction: &'static str,
    /// The peer service.
    pub service: String,
}

/// A direction alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// [`INBOUND`] or [`OUTBOUND`].
    pub direction: &'static str,
}

/// A denial's source service.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabels {
    /// Who was refused.
    pub source: String,
    /// `l4` (a connection refused or closed).
    pub layer: &'static str,
}

/// The L4 counters (cheap to clone: families share their storage).
#[derive(Clone, Debug, Default)]
pub struct L4Metrics {
    /// `concord_proxy_tcp_connections_opened_total`.
    pub opened: Family<ConnLabels, Counter>,
    /// `concord_proxy_tcp_connections_closed_total`.
    pub closed: Family<ConnLabels, Counter>,
    /// `concord_proxy_tcp_bytes_received_total`: bytes read from the side that opened the
    /// connection (the downstream).
    pub bytes_in: Family<ConnLabels, Counter>,
    /// `concord_proxy_tcp_bytes_sent_total`: bytes written back to it.
    pub bytes_out: Family<ConnLabels, Counter>,
    /// `concord_proxy_tls_handshake_failures_total`.
    pub tls_failures: Family<DirectionLabels, Counter>,
    /// `concord_proxy_intention_denials_total`.
    pub denials: Family<DenialLabels, Counter>,
    /// `concord_proxy_upstream_connect_failures_total`: dials (TCP + mTLS) that failed.
    pub connect_failures: Family<ConnLabels, Counter>,
}

impl L4Metrics {
    /// New counters, registered into `registry`.
    pub fn register(registry: &mut Registry) -> L4Metrics {
        let m = L4Metrics::default();
        let p = registry.sub_registry_with_prefix("concord_proxy");
        p.register(
            "tcp_connections_opened",
            "TCP connections accepted and proxied",
            m.opened.clone(),
        );
        p.register(
            "tcp_connections_closed",
            "Proxied TCP connections that ended",
            m.closed.clone(),
        );
        p.register(
            "tcp_bytes_received",
            "Bytes received from downstream",
            m.bytes_in.clone(),
        );
        p.register(
            "tcp_bytes_sent",
            "Bytes sent to downstream",
            m.bytes_out.clone(),
        );
        p.register(
            "tls_handshake_failures",
            "mTLS handshakes that failed (bad or missing certificate, wrong identity)",
            m.tls_failures.clone(),
        );
        p.register(
            "intention_denials",
            "Connections refused or closed by intentions",
            m.denials.clone(),
        );
        p.register(
            "upstream_connect_failures",
            "Failed dials to upstream instances",
            m.connect_failures.clone(),
        );
        m
    }

    /// Labels for a connection.
    pub fn conn(direction: &'static str, service: &str) -> ConnLabels {
        ConnLabels {
            direction,
            service: service.to_string(),
        }
    }

    /// Counts a failed handshake.
    pub fn tls_failure(&self, direction: &'static str) {
        self.tls_failures
            .get_or_create(&DirectionLabels { direction })
            .inc();
    }

    /// Counts an L4 denial.
    pub fn denied(&self, source: &str) {
        self.denials
            .get_or_create(&DenialLabels {
                source: source.to_string(),
                layer: "l4",
            })
            .inc();
    }
}

/// Serves `registry` as Prometheus text on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Mutex<Registry>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    continue;
                }
            },
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let registry = registry.clone();
                async move {
                    // Encoding is synchronous: the lock is never held across an await.
                    let registry = registry.lock().unwrap_or_else(|e| e.into_inner());
                    Ok::<_, Infallible>(respond(&req, &registry))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(req: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: String, ctype: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        if let Ok(v) = http::HeaderValue::from_str(ctype) {
            r.headers_mut().insert(http::header::CONTENT_TYPE, v);
        }
        r
    };
    if req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "not found: try /metrics\n".into(),
            "text/plain",
        );
    }
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, registry) {
        Ok(()) => reply(
            StatusCode::OK,
            text,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
            "text/plain",
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn counters_are_named_for_prometheus() {
        let mut registry = Registry::default();
        let m = L4Metrics::register(&mut registry);
        m.opened
            .get_or_create(&L4Metrics::conn(INBOUND, "web"))
            .inc();
        m.denied("web");
        m.tls_failure(INBOUND);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                "concord_proxy_tcp_connections_opened_total{direction=\"inbound\",service=\"web\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("concord_proxy_intention_denials_total{source=\"web\",layer=\"l4\"} 1")
        );
        assert!(
            text.contains("concord_proxy_tls_handshake_failures_total{direction=\"inbound\"} 1")
        );
    }
}
