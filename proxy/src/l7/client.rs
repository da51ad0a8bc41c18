//! Connections to upstream endpoints (or, inbound, to the local app): one hyper-util pooled
//! client per endpoint, dialling through the [`Connector`] (mTLS in production), with
//! keep-alive reuse. HTTP/1.1 by default; h2 (prior knowledge, multiplexed on one
//! connection) for `http2`/`grpc` upstreams. Peer proxies auto-detect either.
//!
//! An upgrade (a websocket: HTTP/1.1 `Connection: upgrade`) always goes over an HTTP/1.1
//! connection of its own, whatever the pool's protocol: the upgraded connection becomes a
//! byte pipe, which an h2 stream is not. Extended CONNECT (RFC 8441, websockets over h2)
//! is not spoken: the apps' side of an upgrade is HTTP/1.1 anyway, and a dedicated
//! HTTP/1.1 hop between the sidecars carries it with no translation.
//!
//! Each dial holds a `max_connections` slot for the connection's life and is bounded by the
//! request's connect timeout. Hop-by-hop headers are dropped (they describe the app's
//! connection, not ours, and h2 forbids them); every other header, `traceparent`,
//! `tracestate` and B3 included, passes unchanged.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http::header::{self, HeaderName};
use http::uri::PathAndQuery;
use http::{HeaderValue, Uri, Version};
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;

use super::breaker::ConnectionLimit;
use super::policy::RequestPolicy;
use super::Picked;
use super::{boxed, Body, ProxyError, Req, ResponseFuture, MAX_TRACKED_ENDPOINTS};
use crate::model::{BoxIo, Connector, Endpoint};

/// How long an unused pooled connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Headers that describe one hop (RFC 9110 §7.6.1) and are not forwarded.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "transfer-encoding",
    "te",
    "upgrade",
];

/// Plain TCP (the inbound hop to the local app, and tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpConnector;

impl Connector for TcpConnector {
    fn connect(&self, endpoint: &Endpoint) -> BoxFuture<'static, io::Result<BoxIo>> {
        let addr = endpoint.addr;
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxIo)
        })
    }
}

/// A dialled connection; its `max_connections` slot is released when it closes.
struct Conn {
    io: BoxIo,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A dial failure, carried through hyper's error so [`classify`] can recover it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct DialError(ProxyError);

/// Dials one endpoint (hyper-util's connector interface; the URI is ignored: each pooled
/// client serves exactly one endpoint).
#[derive(Clone)]
struct Dial {
    connector: Arc<dyn Connector>,
    endpoint: Endpoint,
    timeout: Duration,
    limit: Arc<ConnectionLimit>,
}

impl tower::Service<Uri> for Dial {
    type Response = TokioIo<Conn>;
    type Error = DialError;
    type Future = BoxFuture<'static, Result<TokioIo<Conn>, DialError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let dial = self.clone();
        Box::pin(async move { dial.dial().await.map_err(DialError) })
    }
}

impl Dial {
    /// Takes a `max_connections` slot and dials within the connect timeout.
    async fn dial(&self) -> Result<TokioIo<Conn>, ProxyError> {
        let slot = self.limit.acquire().await?;
        let io = tokio::time::timeout(self.timeout, self.connector.connect(&self.endpoint))
            .await
            .map_err(|_| ProxyError::ConnectTimeout(self.timeout))?
            .map_err(|e| {
                ProxyError::Connect(format!(
                    "{} ({}): {e}",
                    self.endpoint.id, self.endpoint.addr
                ))
            })?;
        Ok(TokioIo::new(Conn { io, _slot: slot }))
    }

    /// A new HTTP/1.1 connection, its connection task spawned.
    async fn handshake(&self) -> Result<http1::SendRequest<Body>, ProxyError> {
        let io = self.dial().await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| ProxyError::Connect(format!("{}: {e}", self.endpoint.id)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}

/// The upstream HTTP/1.1 connections dedicated to one downstream HTTP/1.1 connection (a
/// request extension `serve` adds): its requests come one at a time, so each can go
/// straight to the connection its predecessor used, with no pool checkout, no shared lock
/// and no task spawned to return the connection to a pool. Up to [`MAX_DEDICATED`]
/// endpoints per downstream connection; requests to others (and h2 and upgrades) use the
/// shared pool. The connections close when the downstream one does.
#[derive(Clone, Default)]
pub struct Dedicated(Arc<Mutex<Vec<Held>>>);

/// A dedicated connection and the endpoint (and dial settings) it goes to.
type Held = (ClientKey, http1::SendRequest<Body>);

/// How many endpoints one downstream connection keeps a dedicated connection to.
const MAX_DEDICATED: usize = 4;

impl Dedicated {
    /// The connection to `key`, taken out while a request uses it; `Err` when there is none
    /// and no room for one.
    fn take(&self, key: &ClientKey) -> Result<Option<http1::SendRequest<Body>>, ()> {
        let Ok(mut held) = self.0.lock() else {
            return Err(());
        };
        match held.iter().position(|(k, _)| k == key) {
            Some(i) => Ok(Some(held.swap_remove(i).1)),
            None if held.len() < MAX_DEDICATED => Ok(None),
            None => Err(()),
        }
    }

    /// Gives the connection back for the next request.
    fn put(&self, key: ClientKey, sender: http1::SendRequest<Body>) {
        if let Ok(mut held) = self.0.lock() {
            if held.len() < MAX_DEDICATED {
                held.push((key, sender));
            }
        }
    }
}

/// A pooled client's key: the endpoint, the connect timeout its dials use, and whether it
/// speaks h2.
type ClientKey = (Arc<str>, SocketAddr, Duration, bool);

/// The pooled clients of one upstream (or of the local app).
pub struct Pool {
    connector: Arc<dyn Connector>,
    http2: bool,
    connect_timeout: Duration,
    limit: Arc<ConnectionLimit>,
    // A std Mutex: a map lookup per request; clients are cheap handles to a shared pool.
    clients: Mutex<HashMap<ClientKey, Client<Dial, Body>>>,
}

impl Pool {
    /// A pool dialling through `connector`; `connect_timeout` applies unless the request's
    /// policy says otherwise.
    pub(crate) fn new(
        connector: Arc<dyn Connector>,
        http2: bool,
        connect_timeout: Duration,
        limit: Arc<ConnectionLimit>,
    ) -> Self {
        Pool {
            connector,
            http2,
            connect_timeout,
            limit,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, endpoint: &Endpoint, timeout: Duration, http2: bool) -> Client<Dial, Body> {
        let key = (endpoint.id.clone(), endpoint.addr, timeout, http2);
        let build = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(IDLE_TIMEOUT).http2_only(http2);
            b.build(Dial {
                connector: self.connector.clone(),
                endpoint: endpoint.clone(),
                timeout,
                limit: self.limit.clone(),
            })
        };
        match self.clients.lock() {
            Ok(mut m) => {
                if m.len() >= MAX_TRACKED_ENDPOINTS && !m.contains_key(&key) {
                    // In-flight requests hold their own client handles; dropping ours
                    // only closes idle connections.
                    m.clear();
                }
                m.entry(key).or_insert_with(build).clone()
            }
            Err(_) => build(),
        }
    }

    /// Sends to the endpoint the balancer picked.
    pub(crate) fn send(&self, req: Req) -> ResponseFuture {
        match req.extensions().get::<Picked>().map(|p| p.endpoint.clone()) {
            Some(endpoint) => self.send_to(&endpoint, req),
            None => Box::pin(async { Err(ProxyError::NoRoute("no endpoint picked".to_string())) }),
        }
    }

    /// Sends to `endpoint`.
    pub(crate) fn send_to(&self, endpoint: &Endpoint, mut req: Req) -> ResponseFuture {
        let timeout = req
            .extensions()
            .get::<RequestPolicy>()
            .map(|p| p.connect_timeout)
            .unwrap_or(self.connect_timeout);
        // An upgrade (a websocket) keeps the two headers that ask for it, on both hops, and
        // goes over HTTP/1.1 even when the pool speaks h2.
        let upgrade = super::is_upgrade(&req).then(|| req.headers().get(header::UPGRADE).cloned());
        let http2 = self.http2 && upgrade.is_none();
        let dedicated = if http2 || upgrade.is_some() {
            None
        } else {
            req.extensions().get::<Dedicated>().cloned()
        };
        // An h2 request names its authority in the URI only; keep it as the Host of an
        // HTTP/1.1 hop instead of the endpoint's address.
        if !req.headers().contains_key(header::HOST) {
            if let Some(host) = req
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                req.headers_mut().insert(header::HOST, host);
            }
        }
        strip_hop_by_hop(req.headers_mut());
        if let Some(Some(protocol)) = upgrade.clone() {
            req.headers_mut().insert(header::UPGRADE, protocol);
            req.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        let pq = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.version_mut() = if http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        if let Some(dedicated) = dedicated {
            let key = (endpoint.id.clone(), endpoint.addr, timeout, false);
            if let Ok(held) = dedicated.take(&key) {
                // Origin form, as the pooled client sends it; the Host it would add too.
                *req.uri_mut() = Uri::from(pq);
                if !req.headers().contains_key(header::HOST) {
                    if let Ok(host) = HeaderValue::from_str(&endpoint.addr.to_string()) {
                        req.headers_mut().insert(header::HOST, host);
                    }
                }
                let dial = Dial {
                    connector: self.connector.clone(),
                    endpoint: endpoint.clone(),
                    timeout,
                    limit: self.limit.clone(),
                };
                return Box::pin(send_dedicated(dial, dedicated, key, held, req));
            }
        }
        let client = self.client(endpoint, timeout, http2);
        match format!("http://{}{pq}", endpoint.addr).parse::<Uri>() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(e) => {
                let err = ProxyError::Upstream(format!("bad request URI: {e}"));
                return Box::pin(async move { Err(err) });
            }
        }
        // This client consumes the request even when it never sends it: keep a copy to give
        // back on a connect failure when the retry layer asked for one.
        let copy = super::retry::Unsent::copy_of(&req);
        Box::pin(async move {
            match client.request(req).await {
                Err(e) if e.is_connect() => {
                    let err = classify(&e);
                    if let Some((unsent, copy)) = copy {
                        unsent.give_back(copy);
                    }
                    Err(err)
                }
                Ok(resp) => {
                    let mut resp = resp.map(boxed);
                    let switched =
                        upgrade.is_some() && resp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
                    if !switched {
                        strip_hop_by_hop(resp.headers_mut());
                    }
                    Ok(resp)
                }
                Err(e) => Err(classify(&e)),
            }
        })
    }
}

/// Sends `req` over the downstream connection's dedicated connection to the endpoint
/// (`held`, when it has one and it is still open), else over a new one, which then stays
/// dedicated. A request the held connection closed under before sending it goes out once
/// more on a new connection.
async fn send_dedicated(
    dial: Dial,
    dedicated: Dedicated,
    key: ClientKey,
    held: Option<http1::SendRequest<Body>>,
    req: Req,
) -> Result<super::Resp, ProxyError> {
    let mut reused = None;
    if let Some(mut sender) = held {
        if sender.ready().await.is_ok() {
            reused = Some(sender);
        }
    }
    let fresh = reused.is_none();
    let mut sender = match reused {
        Some(sender) => sender,
        None => match dial.handshake().await {
            Ok(sender) => sender,
            Err(e) => return Err(give_back(e, req)),
        },
    };
    let outcome = match sender.try_send_request(req).await {
        Err(mut e) if !fresh => match e.take_message() {
            Some(req) => {
                sender = match dial.handshake().await {
                    Ok(sender) => sender,
                    Err(e) => return Err(give_back(e, req)),
                };
                sender.send_request(req).await
            }
            None => Err(e.into_error()),
        },
        other => other.map_err(|e| e.into_error()),
    };
    match outcome {
        Ok(resp) => {
            dedicated.put(key, sender);
            let mut resp = resp.map(boxed);
            strip_hop_by_hop(resp.headers_mut());
            Ok(resp)
        }
        Err(e) => Err(ProxyError::Upstream(error_chain(&e))),
    }
}

/// Hands the unsent `req` back to the retry layer, if it asked; returns `e`.
fn give_back(e: ProxyError, req: Req) -> ProxyError {
    if let Some(unsent) = req.extensions().get::<super::retry::Unsent>().cloned() {
        unsent.give_back(req);
    }
    e
}

/// An error and its sources, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut chain = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    chain
}

fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    // Most messages carry none of them (and then no `Connection` naming others either):
    // one pass over the names, no name parsed or looked up.
    if !headers
        .keys()
        .any(|name| HOP_BY_HOP.contains(&name.as_str()))
    {
        return;
    }
    // Headers named by `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        // `te: trailers` is the one TE value h2 allows, and gRPC needs it end to end.
        if name == "te"
            && headers
                .get(header::TE)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"))
        {
            continue;
        }
        headers.remove(name);
    }
}

/// A client error as a [`ProxyError`]: a dial failure keeps its own kind.
fn classify(e: &hyper_util::client::legacy::Error) -> ProxyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut chain = e.to_string();
    while let Some(s) = source {
        if let Some(DialError(inner)) = s.downcast_ref::<DialError>() {
            return inner.clone();
        }
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_connect() {
        ProxyError::Connect(chain)
    } else {
        ProxyError::Upstream(chain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_trace_headers_stay() {
        let mut h = http::HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
        ] {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["b3", "traceparent", "tracestate", "x-b3-traceid"]);
        let mut te = http::HeaderMap::new();
        te.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut te);
        assert!(te.contains_key(header::TE));
    }
}
