//! The L7 (HTTP) data path: what the sidecar does to each request of an `http`, `http2` or
//! `grpc` service, outbound (local app → an upstream's proxies) and inbound (a peer proxy →
//! the local app).
//!
//! Connections are served with hyper-util's auto builder (HTTP/1.1 and h2 detected per
//! connection); each request then runs through a stack of tower layers, one concern each,
//! composed only in [`stack`]. Every layer reads what it needs from the latest snapshot
//! (`watch` channels from the control side), so no request waits on the agent, and a new
//! snapshot applies from the next request on, with no reconnect.
//!
//! Failure behaviour, as a client sees it: no route or no endpoint at all → 503; connect
//! failure after retries → 503; circuit breaker open → 503; request timeout → 504; upstream
//! reset mid-request → 502; L7 intention denial (inbound) → 403. Each has a plain-text body
//! saying why, and an `x-concord-proxy-error` header so tests and operators can tell a
//! proxy-made response from the upstream's.
//!
//! # Layout
//! - [`policy`]: [`UpstreamPolicy`] from Consul's upstream `Config` keys, route overrides,
//!   and the proxy-wide [`Options`] (access log, local request timeout).
//! - [`route`]: the compiled discovery chain: router matches, weighted splits, resolvers.
//! - [`stack`]: the one place the layers are composed, outbound and inbound.
//! - [`metrics`]: Prometheus families ([`L7Metrics`]) and the outermost layer (counts,
//!   latency, access log).
//! - [`timeout`]: request timeout (504).
//! - [`breaker`]: max concurrent requests (503) and the connection/pending limits the pool
//!   enforces.
//! - [`retry`]: replayable bodies, retry decisions, the retry budget.
//! - [`balance`]: endpoint choice (P2C least-request or round robin), failover targets.
//! - [`outlier`]: consecutive-failure ejection and restore.
//! - [`authz`]: inbound L7 intentions (403).
//! - [`forwarded`]: `X-Forwarded-For`, `-Proto` and `-Client-Cert` on inbound requests.
//! - [`trace`]: a span per request over OTLP/HTTP, joined to the request's W3C trace.
//! - [`client`]: pooled, keep-alive connections through a [`Connector`] (h1 or h2).
//! - [`error`]: [`ProxyError`], the failures a layer reports, and their responses.

pub mod authz;
pub mod balance;
pub mod breaker;
pub mod client;
pub mod error;
pub mod forwarded;
pub mod metrics;
pub mod outlier;
pub mod policy;
pub mod retry;
pub mod route;
pub mod stack;
pub mod timeout;
pub mod trace;

#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::watch;
use tower::{Layer, Service};

use crate::model::{Connector, IntentionSnapshot, Io, UpstreamSnapshot};

pub use error::ProxyError;
pub use metrics::L7Metrics;
pub use policy::{Options, PolicyError, UpstreamPolicy};

/// Per-endpoint state (pooled clients, load counts, ejections) is kept for at most this many
/// endpoints; past it, state of endpoints that are idle is dropped, so endpoint churn over
/// a sidecar's life cannot grow memory without bound.
pub(crate) const MAX_TRACKED_ENDPOINTS: usize = 4096;

/// The service of the peer that sent an inbound request (from its SPIFFE id); a request
/// extension set when the connection is accepted, read by the authz and metrics layers.
#[derive(Clone, Debug)]
pub struct SourceService(pub Arc<str>);

/// The endpoint an attempt goes to: a request extension the balancer sets and the layers
/// below it (outlier detection, the connection pool) read.
#[derive(Clone, Debug)]
pub struct Picked {
    /// The endpoint.
    pub endpoint: crate::model::Endpoint,
    /// How many endpoints its target has (for `max_ejection_percent`).
    pub hosts: usize,
}

/// Errors a body may carry (hyper's, or a layer's).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type every layer passes: requests from the app and responses from upstreams
/// stream through it unbuffered (only the retry layer buffers, and only small bodies).
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;
/// A request inside the stack.
pub type Req = http::Request<Body>;
/// A response inside the stack.
pub type Resp = http::Response<Body>;
/// What every layer returns.
pub type ResponseFuture = BoxFuture<'static, Result<Resp, ProxyError>>;

/// Boxes any body into [`Body`].
pub fn boxed<B>(body: B) -> Body
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A full body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A service a layer wraps: every layer of the stack has this shape, so layers compose in
/// any order and [`stack`] alone decides it.
pub trait Inner:
    Service<Req, Response = Resp, Error = ProxyError, Future = ResponseFuture>
    + Clone
    + Send
    + Sync
    + 'static
{
}
impl<S> Inner for S where
    S: Service<Req, Response = Resp, Error = ProxyError, Future = ResponseFuture>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// One L7 concern: given the request and the rest of the stack, produce the response. The
/// tower plumbing ([`Layer`], [`Service`]) is written once, in [`MiddlewareLayer`].
pub trait Middleware: Send + Sync + 'static {
    /// Handles one request; `next` is the rest of the stack (always ready).
    fn call<S: Inner>(self: Arc<Self>, next: S, req: Req) -> ResponseFuture;
}

/// Hands `req` to the rest of the stack. Calling without `poll_ready` is sound here: every
/// layer and bottom service is always ready (see [`Shared`]'s `poll_ready`).
pub fn forward<S: Inner>(mut next: S, req: Req) -> ResponseFuture {
    next.call(req)
}

/// The tower [`Layer`] of a [`Middleware`].
pub struct MiddlewareLayer<M>(Arc<M>);

impl<M> MiddlewareLayer<M> {
    /// Wraps a middleware.
    pub fn new(m: M) -> Self {
        MiddlewareLayer(Arc::new(m))
    }
}

impl<M: Middleware, S: Call> Layer<S> for MiddlewareLayer<M> {
    type Service = Layered<M, S>;
    fn layer(&self, inner: S) -> Layered<M, S> {
        Layered {
            middleware: self.0.clone(),
            inner: Shared(Arc::new(inner)),
        }
    }
}

/// What a layer needs of the rest of the stack: a call through a shared reference, so a
/// request borrows the stack instead of cloning it.
pub trait Call: Send + Sync + 'static {
    /// Handles one request.
    fn call_ref(&self, req: Req) -> ResponseFuture;
}

/// The rest of a stack as a layer holds it and hands it on: one `Arc`, so passing it to
/// a request costs one reference count however deep the stack is.
pub struct Shared<S>(Arc<S>);

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<S: Call> Service<Req> for Shared<S> {
    type Response = Resp;
    type Error = ProxyError;
    type Future = ResponseFuture;

    /// Always ready (see [`forward`]).
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> ResponseFuture {
        self.0.call_ref(req)
    }
}

/// A [`Middleware`] in front of the rest of the stack.
pub struct Layered<M, S> {
    middleware: Arc<M>,
    inner: Shared<S>,
}

impl<M, S> Clone for Layered<M, S> {
    fn clone(&self) -> Self {
        Layered {
            middleware: self.middleware.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<M: Middleware, S: Call> Call for Layered<M, S> {
    /// No layer applies backpressure through readiness (the breaker answers 503 instead of
    /// queueing), so there is no `poll_ready` to honour.
    fn call_ref(&self, req: Req) -> ResponseFuture {
        self.middleware.clone().call(self.inner.clone(), req)
    }
}

/// A service at the bottom of a stack, from a function (the pool's `send`).
#[derive(Clone)]
pub struct Bottom<F>(F, PhantomData<fn()>);

impl<F> Bottom<F> {
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        Bottom(f, PhantomData)
    }
}

impl<F> Call for Bottom<F>
where
    F: Fn(Req) -> ResponseFuture + Send + Sync + 'static,
{
    fn call_ref(&self, req: Req) -> ResponseFuture {
        (self.0)(req)
    }
}

/// A composed stack, type-erased and shared: each request calls it through a reference.
pub type Stack = Arc<dyn Call>;

/// What an inbound connection's requests carry as extensions: the peer's service (authz,
/// metrics) and who it is (the forwarded headers).
#[derive(Clone)]
struct ConnInfo {
    source: SourceService,
    downstream: Option<forwarded::Downstream>,
}

/// `req`'s headers as (name, value) strings for matching, if `wanted` (else none). A value
/// that is not UTF-8 cannot match a string condition and is left out (judged absent).
pub(crate) fn header_pairs(req: &Req, wanted: bool) -> Vec<(String, String)> {
    if !wanted {
        return Vec::new();
    }
    req.headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// Whether `req` asks to switch protocols (HTTP/1.1 `Connection: upgrade` + `Upgrade`, a
/// websocket say).
pub(crate) fn is_upgrade<B>(req: &http::Request<B>) -> bool {
    req.version() == http::Version::HTTP_11
        && req.headers().contains_key(http::header::UPGRADE)
        && req
            .headers()
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Serves one connection through `stack`: HTTP/1.1 or h2, detected from the first bytes.
/// An HTTP/1.1 upgrade the far end accepts (101) becomes a byte pipe between the two
/// upgraded connections once both ends have switched.
fn serve<I: Io>(
    stack: Stack,
    io: I,
    info: Option<ConnInfo>,
) -> impl Future<Output = Result<(), BoxError>> + Send + 'static {
    // HTTP/1.1 requests of this connection come one at a time and share its upstream
    // connections (h2 streams, concurrent, use the pool).
    let dedicated = client::Dedicated::default();
    let service =
        hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            let stack = stack.clone();
            let downstream_upgrade = is_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
            let mut req = req.map(boxed);
            if req.version() <= http::Version::HTTP_11 {
                req.extensions_mut().insert(dedicated.clone());
            }
            if let Some(info) = &info {
                req.extensions_mut().insert(info.source.clone());
                if let Some(d) = &info.downstream {
                    req.extensions_mut().insert(d.clone());
                }
            }
            async move {
                // The metrics layer (outermost) turns every error into a response; this is the
                // last resort should a stack be built without it.
                // Always ready (see `forward`), so no `poll_ready` first.
                let mut resp = match stack.call_ref(req).await {
                    Ok(resp) => resp,
                    Err(e) => e.into_response(),
                };
                if let Some(downstream) = downstream_upgrade {
                    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                        let upstream = hyper::upgrade::on(&mut resp);
                        tokio::spawn(async move {
                            match futures::future::try_join(downstream, upstream).await {
                                Ok((d, u)) => {
                                    let (mut d, mut u) = (TokioIo::new(d), TokioIo::new(u));
                                    let _ = tokio::io::copy_bidirectional(&mut d, &mut u).await;
                                }
                                Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                            }
                        });
                    }
                }
                Ok::<_, Infallible>(resp)
            }
        });
    async move {
        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .await
    }
}

/// The outbound side of one upstream: serves the local app's connections to the upstream's
/// local listener and sends each request to one of the upstream's endpoints.
#[derive(Clone)]
pub struct Outbound {
    stack: Stack,
}

impl Outbound {
    /// Builds the upstream's stack. Metrics land in `metrics` (register it once per
    /// registry with [`L7Metrics::new`]; one `Registry` cannot hold the same metric family
    /// twice, so the families are shared by all upstreams and told apart by label).
    pub fn new(
        upstream_name: &str,
        policy: UpstreamPolicy,
        snapshot: watch::Receiver<UpstreamSnapshot>,
        connector: Arc<dyn Connector>,
        metrics: &L7Metrics,
    ) -> Outbound {
        Outbound::with_options(
            upstream_name,
            policy,
            snapshot,
            connector,
            metrics,
            Options::default(),
        )
    }

    /// [`Outbound::new`] with options (access log).
    pub fn with_options(
        upstream_name: &str,
        policy: UpstreamPolicy,
        snapshot: watch::Receiver<UpstreamSnapshot>,
        connector: Arc<dyn Connector>,
        metrics: &L7Metrics,
        options: Options,
    ) -> Outbound {
        Outbound {
            stack: stack::outbound(upstream_name, policy, snapshot, connector, metrics, options),
        }
    }

    /// Serves one connection from the local app until it closes.
    pub fn serve_connection<I: Io>(
        &self,
        io: I,
    ) -> impl Future<Output = Result<(), BoxError>> + Send + 'static {
        serve(self.stack.clone(), io, None)
    }
}

/// The inbound side: serves decrypted connections from peer proxies, enforces L7
/// intentions per request and forwards allowed requests to the local app.
#[derive(Clone)]
pub struct Inbound {
    stack: Stack,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound").finish_non_exhaustive()
    }
}

impl Inbound {
    /// Builds the inbound stack to the app at `local_app`, speaking `protocol` (`http`:
    /// HTTP/1.1; `http2`/`grpc`: h2 prior knowledge).
    pub fn new(
        local_app: SocketAddr,
        protocol: &str,
        intentions: watch::Receiver<IntentionSnapshot>,
        metrics: &L7Metrics,
    ) -> Inbound {
        Inbound::with_options(local_app, protocol, intentions, metrics, Options::default())
    }

    /// [`Inbound::new`] with options (access log, local request timeout).
    pub fn with_options(
        local_app: SocketAddr,
        protocol: &str,
        intentions: watch::Receiver<IntentionSnapshot>,
        metrics: &L7Metrics,
        options: Options,
    ) -> Inbound {
        Inbound {
            stack: stack::inbound(local_app, protocol, intentions, metrics, options),
        }
    }

    /// Serves one decrypted connection from the peer proxy of `source_service` (the
    /// service of its SPIFFE id) until it closes; `downstream` (its address and
    /// certificate) feeds the forwarded headers.
    pub fn serve_connection<I: Io>(
        &self,
        io: I,
        source_service: String,
        downstream: Option<forwarded::Downstream>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send + 'static {
        let info = ConnInfo {
            source: SourceService(source_service.into()),
            downstream,
        };
        serve(self.stack.clone(), io, Some(info))
    }
}

/// Keeps `guard` alive until `resp`'s body ends or is dropped (a concurrency permit, an
/// outstanding-request count), so limits cover streaming responses too.
pub(crate) fn guard_body<G: Send + Unpin + 'static>(resp: Resp, guard: G) -> Resp {
    resp.map(|body| {
        boxed(Guarded {
            body,
            _guard: guard,
        })
    })
}

struct Guarded<G> {
    body: Body,
    _guard: G,
}

impl<G: Unpin> hyper::body::Body for Guarded<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
