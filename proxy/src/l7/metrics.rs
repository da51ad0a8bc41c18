//! The L7 metric families and the outermost layer of both stacks: it turns a layer's
//! [`ProxyError`](super::ProxyError) into its response, then counts what the client saw
//! (status class, latency) and, when on, writes the access-log line. Being outermost, it
//! counts a request once however many attempts the retry layer made.
//!
//! Families are registered once per registry ([`L7Metrics::new`]) and shared by every
//! upstream and the inbound side, told apart by label: a Prometheus registry cannot expose
//! the same family twice.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use super::SourceService;
use super::{Inner, Middleware, Req, ResponseFuture};

/// `direction` and peer `service` of a request: for outbound requests the upstream, for
/// inbound ones the downstream (source) service.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    /// `outbound` or `inbound`.
    pub direction: String,
    /// The upstream (outbound) or the source service (inbound).
    pub service: String,
}

/// [`PeerLabels`] plus the response class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `outbound` or `inbound`.
    pub direction: String,
    /// The upstream (outbound) or the source service (inbound).
    pub service: String,
    /// `1xx` .. `5xx`.
    pub class: String,
}

/// One upstream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// The upstream's name.
    pub upstream: String,
}

/// A circuit-breaker rejection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerLabels {
    /// The upstream's name.
    pub upstream: String,
    /// The limit reached (`max_concurrent_requests`, `max_pending_requests`).
    pub limit: String,
}

/// An L7 intention denial.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// The denied source service.
    pub source: String,
}

type LatencyFamily = Family<PeerLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The L7 metric families (cheap to clone; clones share the counters).
#[derive(Clone)]
pub struct L7Metrics {
    /// `concord_proxy_http_requests_total`.
    pub requests: Family<RequestLabels, Counter>,
    /// `concord_proxy_http_request_duration_seconds`.
    pub latency: LatencyFamily,
    /// `concord_proxy_http_retries_total`.
    pub retries: Family<UpstreamLabels, Counter>,
    /// `concord_proxy_http_retries_budget_exhausted_total`.
    pub budget_exhausted: Family<UpstreamLabels, Counter>,
    /// `concord_proxy_http_ejections_total`.
    pub ejections: Family<UpstreamLabels, Counter>,
    /// `concord_proxy_http_breaker_rejections_total`.
    pub breaker_rejections: Family<BreakerLabels, Counter>,
    /// `concord_proxy_http_intention_denials_total`.
    pub intention_denials: Family<SourceLabels, Counter>,
}

impl std::fmt::Debug for L7Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L7Metrics").finish_non_exhaustive()
    }
}

impl L7Metrics {
    /// Registers the families in `registry` (once per registry).
    pub fn new(registry: &mut Registry) -> L7Metrics {
        let m = L7Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            retries: Family::default(),
            budget_exhausted: Family::default(),
            ejections: Family::default(),
            breaker_rejections: Family::default(),
            intention_denials: Family::default(),
        };
        registry.register(
            "concord_proxy_http_requests",
            "HTTP requests by direction, peer service and response class",
            m.requests.clone(),
        );
        registry.register(
            "concord_proxy_http_request_duration_seconds",
            "HTTP request latency to response headers, retries included",
            m.latency.clone(),
        );
        registry.register(
            "concord_proxy_http_retries",
            "HTTP retry attempts by upstream",
            m.retries.clone(),
        );
        registry.register(
            "concord_proxy_http_retries_budget_exhausted",
            "HTTP retries not made because the retry budget was spent",
            m.budget_exhausted.clone(),
        );
        registry.register(
            "concord_proxy_http_ejections",
            "Endpoints ejected by outlier detection",
            m.ejections.clone(),
        );
        registry.register(
            "concord_proxy_http_breaker_rejections",
            "HTTP requests rejected with 503 by a circuit-breaker limit",
            m.breaker_rejections.clone(),
        );
        registry.register(
            "concord_proxy_http_intention_denials",
            "HTTP requests denied with 403 by L7 intentions",
            m.intention_denials.clone(),
        );
        m
    }
}

/// The outermost layer (see the module doc).
pub struct Observe {
    pub(crate) metrics: L7Metrics,
    /// `outbound` or `inbound`.
    pub(crate) direction: &'static str,
    /// The upstream's name (outbound); inbound requests carry their source instead.
    pub(crate) upstream: Option<String>,
    pub(crate) access_log: bool,
    /// The series of each peer service, looked up once: a request then only bumps atomics
    /// (no label strings built, no family lookup).
    pub(crate) series: RwLock<HashMap<String, Arc<Series>>>,
}

impl Observe {
    /// The layer for `direction` (and `upstream`, outbound).
    pub(crate) fn new(
        metrics: L7Metrics,
        direction: &'static str,
        upstream: Option<String>,
        access_log: bool,
    ) -> Observe {
        Observe {
            metrics,
            direction,
            upstream,
            access_log,
            series: RwLock::default(),
        }
    }

    /// The series of `service` (made on first use; bounded like per-endpoint state).
    fn series(&self, service: &str) -> Arc<Series> {
        if let Some(s) = self
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(service)
        {
            return s.clone();
        }
        let peer = PeerLabels {
            direction: self.direction.to_string(),
            service: service.to_string(),
        };
        let series = Arc::new(Series {
            latency: self.metrics.latency.get_or_create(&peer).clone(),
            classes: Default::default(),
            peer,
        });
        let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= super::MAX_TRACKED_ENDPOINTS {
            map.clear();
        }
        map.insert(service.to_string(), series.clone());
        series
    }
}

/// One peer's handles into the families (clones share the families' values).
pub(crate) struct Series {
    peer: PeerLabels,
    latency: Histogram,
    /// `1xx` .. `5xx`, each made when first seen (a class never seen is not exposed).
    classes: [std::sync::OnceLock<Counter>; 5],
}

impl Series {
    /// Counts one response of `status`.
    fn count(&self, metrics: &L7Metrics, status: u16) {
        let class = status / 100;
        let Some(slot) = usize::from(class)
            .checked_sub(1)
            .and_then(|i| self.classes.get(i))
        else {
            return;
        };
        slot.get_or_init(|| {
            metrics
                .requests
                .get_or_create(&RequestLabels {
                    direction: self.peer.direction.clone(),
                    service: self.peer.service.clone(),
                    class: format!("{class}xx"),
                })
                .clone()
        })
        .inc();
    }
}

impl Middleware for Observe {
    fn call<S: Inner>(self: Arc<Self>, next: S, req: Req) -> ResponseFuture {
        let series = match &self.upstream {
            Some(u) => self.series(u),
            None => self.series(
                req.extensions()
                    .get::<SourceService>()
                    .map(|s| &*s.0)
                    .unwrap_or_default(),
            ),
        };
        // What the access-log line needs, copied only when it is on.
        let logged = self.access_log.then(|| {
            let traceparent = req
                .headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let service = match &self.upstream {
                Some(u) => u.clone(),
                None => req
                    .extensions()
                    .get::<SourceService>()
                    .map(|s| s.0.to_string())
                    .unwrap_or_default(),
            };
            (
                req.method().clone(),
                req.uri().path().to_string(),
                traceparent,
                service,
            )
        });
        let started = Instant::now();
        Box::pin(async move {
            let (resp, error) = match super::forward(next, req).await {
                Ok(resp) => (resp, None),
                Err(e) => {
                    let kind = e.kind();
                    (e.into_response(), Some(kind))
                }
            };
            let elapsed = started.elapsed();
            let status = resp.status().as_u16();
            series.latency.observe(elapsed.as_secs_f64());
            series.count(&self.metrics, status);
            if let Some((method, path, traceparent, service)) = logged {
                let line = serde_json::json!({
                    "direction": self.direction,
                    "service": service,
                    "method": method.as_str(),
                    "path": path,
                    "status": status,
                    "duration_ms": elapsed.as_secs_f64() * 1000.0,
                    "proxy_error": error,
                    "traceparent": traceparent,
                });
                tracing::info!(target: "concord_proxy::access", "{line}");
            }
            Ok(resp)
        })
    }
}
