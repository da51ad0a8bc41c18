//! The one place the L7 layers are composed. Read each stack top to bottom: the first
//! layer is the outermost (it sees the request first and the response last), the last one
//! sends bytes. Every layer is a [`Middleware`](super::Middleware) in its own module.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceBuilder;

use super::authz::Authorize;
use super::balance::Balance;
use super::breaker::{ConcurrencyLimit, ConnectionLimit};
use super::client::{Pool, TcpConnector};
use super::forwarded::Forwarded;
use super::metrics::{L7Metrics, Observe};
use super::outlier::{Detect, Outlier};
use super::policy::{Limits, UpstreamPolicy};
use super::retry::{Retry, RetryBudget};
use super::route::Router;
use super::timeout::Timeout;
use super::trace::Traced;
use super::{Bottom, MiddlewareLayer as L, Options, Stack};
use crate::model::{Connector, Endpoint, IntentionSnapshot, UpstreamSnapshot};

/// The stack of one upstream.
pub(crate) fn outbound(
    upstream: &str,
    policy: UpstreamPolicy,
    snapshot: watch::Receiver<UpstreamSnapshot>,
    connector: Arc<dyn Connector>,
    metrics: &L7Metrics,
    options: Options,
) -> Stack {
    let outlier = Arc::new(Outlier::new(policy.outlier.clone()));
    let limit = Arc::new(ConnectionLimit::new(
        &policy.limits,
        upstream,
        metrics.clone(),
    ));
    let pool = Arc::new(Pool::new(
        connector,
        policy.http2(),
        policy.connect_timeout,
        limit,
    ));
    let svc = ServiceBuilder::new()
        // Outermost: turns errors into responses, then counts and logs what the app saw,
        // once per request however many attempts it took.
        .layer(L::new(Observe::new(
            metrics.clone(),
            "outbound",
            Some(upstream.to_string()),
            options.access_log,
        )))
        // A span per request (once however many attempts), its context sent onwards.
        .layer(L::new(Traced {
            tracer: options.tracer.clone(),
            direction: "outbound",
            upstream: Some(upstream.to_string()),
        }))
        // max_concurrent_requests: rejects with 503 before any work is done.
        .layer(L::new(ConcurrencyLimit::new(
            &policy.limits,
            upstream,
            metrics.clone(),
        )))
        // Picks the route from the latest discovery chain, rewrites the path, and attaches
        // the request's policy (timeouts, retries) for the layers below.
        .layer(L::new(Router::new(upstream, policy.clone(), snapshot)))
        // The request timeout covers every attempt: retries cannot stretch it.
        .layer(L::new(Timeout { default: None }))
        // Replays failed attempts within the retry budget.
        .layer(L::new(Retry {
            budget: RetryBudget::new(policy.retry_budget.clone(), Instant::now()),
            upstream: upstream.to_string(),
            metrics: metrics.clone(),
        }))
        // Per attempt: a target (failover in order) and an endpoint (P2C or round robin),
        // skipping ejected endpoints and the ones this request already tried.
        .layer(L::new(Balance::new(policy.balance, outlier.clone())))
        // Per attempt: feeds the outcome at the picked endpoint to outlier detection.
        .layer(L::new(Detect {
            outlier,
            upstream: upstream.to_string(),
            metrics: metrics.clone(),
        }))
        // Innermost: the pooled connection to the picked endpoint.
        .service(Bottom::new(move |req| pool.send(req)));
    Arc::new(svc)
}

/// The inbound stack to the local app.
pub(crate) fn inbound(
    local_app: SocketAddr,
    protocol: &str,
    intentions: watch::Receiver<IntentionSnapshot>,
    metrics: &L7Metrics,
    options: Options,
) -> Stack {
    let app = Endpoint {
        id: "local-app".into(),
        addr: local_app,
        service: intentions.borrow().destination.as_str().into(),
    };
    let http2 = matches!(protocol, "http2" | "grpc");
    let limit = Arc::new(ConnectionLimit::new(
        &Limits::default(),
        "local-app",
        metrics.clone(),
    ));
    // The local app is on loopback: a dial that takes over a second is a dead app.
    let pool = Arc::new(Pool::new(
        Arc::new(TcpConnector),
        http2,
        std::time::Duration::from_secs(1),
        limit,
    ));
    let svc = ServiceBuilder::new()
        // Outermost: turns errors (403 included) into responses, counts them by source
        // service and logs them.
        .layer(L::new(Observe::new(
            metrics.clone(),
            "inbound",
            None,
            options.access_log,
        )))
        // A span per request, child of the caller's, its context sent to the app.
        .layer(L::new(Traced {
            tracer: options.tracer.clone(),
            direction: "inbound",
            upstream: None,
        }))
        // L7 intentions: 403 unless the latest intentions allow this request.
        .layer(L::new(Authorize {
            intentions,
            metrics: metrics.clone(),
        }))
        // X-Forwarded-For/-Proto/-Client-Cert for the app (allowed requests only).
        .layer(L::new(Forwarded))
        // local_request_timeout, when configured.
        .layer(L::new(Timeout {
            default: options.local_request_timeout,
        }))
        // Innermost: the pooled connection to the local app.
        .service(Bottom::new(move |req| pool.send_to(&app, req)));
    Arc::new(svc)
}
