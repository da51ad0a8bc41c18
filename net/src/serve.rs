//! Serving an axum router on a listener with the limits a heavy or hostile client meets:
//! the agent's HTTP API and the server RPC port both go through [`serve`].
//!
//! Each connection, outermost first:
//! - **Per-client cap** ([`ServeLimits::max_conns_per_client`]): a connection beyond the
//!   remote IP's share is closed at once, before a byte is read (Consul's
//!   `limits.http_max_conns_per_client` / `rpc_max_conns_per_client` close it the same way).
//! - **Protocol sniff**: HTTP/2 with prior knowledge (the preface) or HTTP/1.1, within the
//!   header read timeout, so a client that connects and sends nothing is cut off too.
//! - **HTTP/1.1**: a request head not complete within [`ServeLimits::header_read_timeout`]
//!   closes the connection. hyper starts that clock whenever it waits for a head, so it is
//!   also the idle keep-alive timeout.
//! - **Request body** (both protocols): a body not complete within
//!   [`ServeLimits::body_read_timeout`] of its head fails the handler's read, so a client
//!   that sends a head and then trickles or stops its body is cut off (the handler answers
//!   400 and, on HTTP/1.1, the connection closes since the body was never read to its end).
//! - **HTTP/2**: many requests (parked blocking queries) share one connection, up to
//!   [`ServeLimits::http2_max_streams`] at once, with the flow-control windows of
//!   [`ServeLimits::http2_window`]; pings close a connection whose peer went away.
//!
//! Accept errors (out of descriptors above all) are logged and retried after a pause, never
//! fatal: the listener serves again once descriptors are freed.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::tls::PeerCertificates;

/// The HTTP/2 connection preface a prior-knowledge client sends first.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Pause after an accept error before accepting again (descriptors may free meanwhile).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Pause between looks at a connection that sent part of the HTTP/2 preface only.
const SNIFF_PAUSE: Duration = Duration::from_millis(10);
/// Default of [`ServeLimits::body_read_timeout`]: a whole request body (a snapshot restore
/// is the largest, tens of MB) arrives well within it on any network a cluster runs on.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 keep-alive pings: interval, and how long a ping may go unanswered.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// What one listener allows each connection and each client.
#[derive(Clone, Debug)]
pub struct ServeLimits {
    /// A request head (or the first bytes of a connection) not complete within this closes
    /// the connection; an idle HTTP/1.1 keep-alive connection is closed after it too.
    pub header_read_timeout: Duration,
    /// Connections one remote IP may hold open at once; beyond it a new connection is
    /// closed at once. `0`: no limit.
    pub max_conns_per_client: usize,
    /// Requests one HTTP/2 connection may carry at once.
    pub http2_max_streams: u32,
    /// A request body not complete within this of its head fails the handler's read.
    pub body_read_timeout: Duration,
    /// The HTTP/2 flow-control windows this side advertises.
    pub http2_window: H2Window,
}

/// The HTTP/2 flow-control windows a side advertises: how much its peer may send before
/// this side has read it.
///
/// A window too small for a burst is not only slow. Once the connection window is spent,
/// the sender (h2) hands the capacity that trickles back to many waiting streams a few
/// bytes at a time, so their messages go out split into tiny DATA frames without
/// `END_STREAM`; the receiver (h2 0.4.20 and later) counts such frames against a budget of
/// half its window and, once they outrun the reader, tears the whole connection down with
/// `GOAWAY ENHANCE_YOUR_CALM "too_many_data_frames"`. Thousands of parked calls answered
/// at once on one connection (server RPC) do exactly that with [`H2Window::Adaptive`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum H2Window {
    /// HTTP/2's 64 KB to start, grown with the measured bandwidth-delay product: right for
    /// API clients, each of which carries a few requests at a time.
    Adaptive,
    /// Fixed windows, large enough that a burst never runs the connection window dry
    /// (server RPC: [`crate::rpc::RPC_WINDOW`]).
    Fixed {
        /// The whole connection's window.
        connection: u32,
        /// Each stream's window.
        stream: u32,
    },
}

impl Default for ServeLimits {
    /// Consul's agent HTTP defaults: a 10 s header read timeout, 200 connections per client.
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: Duration::from_secs(10),
            max_conns_per_client: 200,
            http2_max_streams: 256,
            body_read_timeout: BODY_READ_TIMEOUT,
            http2_window: H2Window::Adaptive,
        }
    }
}

/// Open connections per remote IP. A std mutex: held for a map update, never across an
/// await.
#[derive(Clone, Debug, Default)]
struct PerClient {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One counted connection; uncounted on drop.
struct Slot {
    table: PerClient,
    ip: IpAddr,
}

impl PerClient {
    /// A slot for a new connection from `ip`, or `None` when it already holds `max`.
    fn admit(&self, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_insert(0);
        if max > 0 && *count >= max {
            return None;
        }
        *count += 1;
        Some(Slot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets every open connection
/// finish its in-flight requests (new ones are refused) and returns once all are closed.
/// Handlers see the peer's address as [`ConnectInfo<SocketAddr>`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    serve_with(listener, app, limits, None, shutdown).await
}

/// What a TLS listener does with a connection that does not open with a TLS handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plain {
    /// Answers what Go's HTTPS server answers a plain HTTP request (`400` and "Client sent
    /// an HTTP request to an HTTPS server."), then closes; anything else is closed unread.
    /// The HTTPS API.
    Refuse,
    /// Serves it as plain HTTP: the RPC port without `verify_incoming`, where Consul too
    /// takes both.
    Serve,
}

/// A listener's TLS: the rustls configuration and what plain connections get.
#[derive(Clone, Debug)]
pub struct TlsListener {
    /// Certificate, client verification, versions, ALPN.
    pub config: Arc<rustls::ServerConfig>,
    /// What a connection without a TLS handshake gets.
    pub plain: Plain,
}

/// [`serve`] with TLS: every connection's first byte says whether it is a TLS handshake
/// (served over TLS, HTTP/2 when ALPN chose `h2`, else HTTP/1.1; the peer's certificates
/// reach handlers as [`PeerCertificates`]) or not ([`TlsListener::plain`] decides). The
/// handshake must finish within the header read timeout. `tls: None` is [`serve`].
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    tls: Option<TlsListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let acceptor = tls.map(|t| (tokio_rustls::TlsAcceptor::from(t.config), t.plain));
    let per_client = PerClient::default();
    // `true` once shutdown starts; every connection holds a receiver, so `closed()` on the
    // sender resolves when the last one is gone.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        let Some(slot) = per_client.admit(remote.ip(), limits.max_conns_per_client) else {
            tracing::debug!(client = %remote.ip(), limit = limits.max_conns_per_client,
                "too many connections from this client; closing the new one");
            drop(stream);
            continue;
        };
        let app = app.clone();
        let limits = limits.clone();
        let stop = stop_rx.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match acceptor {
                None => connection(stream, remote, app, &limits, stop).await,
                Some((acceptor, plain)) => {
                    tls_connection(stream, remote, app, &limits, &acceptor, plain, stop).await
                }
            }
        });
    }
    drop(stop_rx);
    let _ = stop_tx.send(true);
    stop_tx.closed().await;
    Ok(())
}

/// The next connection on `listener`. Accept errors (out of descriptors above all) are
/// logged and retried after [`ACCEPT_ERROR_PAUSE`], never returned: a listener serves again
/// once descriptors are freed.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(pair) => return pair,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; pausing before the next accept");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

/// Serves one connection as HTTP/2 or HTTP/1.1, whichever its first bytes say.
async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    app: Router,
    limits: &ServeLimits,
    stop: watch::Receiver<bool>,
) {
    // Replies go out as several small writes (HTTP/2 frames): with Nagle's algorithm on, the
    // second waits for the peer's delayed ACK, up to 40 ms per request on Linux.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(client = %remote, error = %e, "could not set TCP_NODELAY");
    }
    let h2 = match tokio::time::timeout(limits.header_read_timeout, sniff_h2(&stream)).await {
        Ok(Ok(h2)) => h2,
        Ok(Err(_)) => return,
        Err(_) => {
            tracing::debug!(client = %remote, "nothing sent within the header read timeout");
            return;
        }
    };
    serve_connection(stream, h2, remote, None, app, limits, stop).await;
}

/// What Go's net/http writes on a TLS port to a first record that looks like plain HTTP.
const PLAIN_HTTP_ON_TLS: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";
/// The first bytes of a TLS connection: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Whether five first bytes are a plain HTTP request as Go's `tlsRecordHeaderLooksLikeHTTP`
/// decides (the only ones it answers with [`PLAIN_HTTP_ON_TLS`] rather than closing).
fn looks_like_http(head: &[u8]) -> bool {
    matches!(head, b"GET /" | b"HEAD " | b"POST " | b"PUT /" | b"OPTIO")
}

/// Serves one connection of a TLS listener: a handshake, or a plain connection as `plain`
/// says.
async fn tls_connection(
    stream: TcpStream,
    remote: SocketAddr,
    app: Router,
    limits: &ServeLimits,
    acceptor: &tokio_rustls::TlsAcceptor,
    plain: Plain,
    stop: watch::Receiver<bool>,
) {
    let first = tokio::time::timeout(limits.header_read_timeout, peek_at_least(&stream, 1)).await;
    let Ok(Ok(first)) = first else {
        tracing::debug!(client = %remote, "nothing sent within the header read timeout");
        return;
    };
    if first.first() != Some(&TLS_HANDSHAKE) {
        match plain {
            Plain::Serve => return connection(stream, remote, app, limits, stop).await,
            Plain::Refuse => return refuse_plain(stream, remote, limits).await,
        }
    }
    let tls = match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(client = %remote, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(client = %remote, "TLS handshake not done within the header read timeout");
            return;
        }
    };
    let (_, session) = tls.get_ref();
    let h2 = session.alpn_protocol() == Some(b"h2");
    let peer = session.peer_certificates().map(|certs| {
        PeerCertificates(Arc::new(
            certs.iter().map(|c| c.clone().into_owned()).collect(),
        ))
    });
    serve_connection(tls, h2, remote, peer, app, limits, stop).await;
}

/// Answers a plain HTTP request on the HTTPS port as Go does, or closes.
async fn refuse_plain(mut stream: TcpStream, remote: SocketAddr, limits: &ServeLimits) {
    use tokio::io::AsyncWriteExt;
    let head = tokio::time::timeout(limits.header_read_timeout, peek_at_least(&stream, 5)).await;
    if matches!(head, Ok(Ok(ref h)) if looks_like_http(&h[..h.len().min(5)])) {
        tracing::debug!(client = %remote, "plain HTTP request on the HTTPS port");
        let _ = stream.write_all(PLAIN_HTTP_ON_TLS).await;
        let _ = stream.shutdown().await;
    } else {
        tracing::debug!(client = %remote, "not a TLS handshake; closing");
    }
}

/// Peeks until at least `n` bytes have arrived (or the peer stopped sending: fewer then).
async fn peek_at_least(stream: &TcpStream, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    loop {
        let got = stream.peek(&mut buf).await?;
        if got == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if got >= n {
            return Ok(buf);
        }
        // Part only: `peek` would return at once again, so wait a moment.
        tokio::time::sleep(SNIFF_PAUSE).await;
    }
}

/// Serves HTTP/2 or HTTP/1.1 on an established connection (plain or TLS).
async fn serve_connection<I>(
    io: I,
    h2: bool,
    remote: SocketAddr,
    peer: Option<PeerCertificates>,
    app: Router,
    limits: &ServeLimits,
    stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let body_read_timeout = limits.body_read_timeout;
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(|body| {
            axum::body::Body::new(DeadlineBody {
                inner: body,
                deadline: tokio::time::Instant::now() + body_read_timeout,
                sleep: None,
            })
        });
        req.extensions_mut().insert(ConnectInfo(remote));
        if let Some(peer) = &peer {
            req.extensions_mut().insert(peer.clone());
        }
        app.clone().oneshot(req)
    });
    let io = TokioIo::new(io);
    let result = if h2 {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.http2_max_streams)
            .keep_alive_interval(H2_PING_INTERVAL)
            .keep_alive_timeout(H2_PING_TIMEOUT);
        match limits.http2_window {
            H2Window::Adaptive => builder.adaptive_window(true),
            H2Window::Fixed { connection, stream } => builder
                .initial_connection_window_size(connection)
                .initial_stream_window_size(stream),
        };
        let conn = builder.serve_connection(io, service);
        until_stopped(conn, |c| c.graceful_shutdown(), stop).await
    } else {
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true)
            .serve_connection(io, service);
        until_stopped(conn, |c| c.graceful_shutdown(), stop).await
    };
    if let Err(e) = result {
        tracing::debug!(client = %remote, error = %e, "connection ended with an error");
    }
}

/// A request body that fails once it has not ended by `deadline` (set when its head
/// arrived). The timer is armed only when a read has to wait, so bodies that are empty or
/// already buffered cost no timer.
struct DeadlineBody {
    inner: Incoming,
    deadline: tokio::time::Instant,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Why a request body read failed: it did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within the body read timeout")]
struct BodyTimedOut;

impl Body for DeadlineBody {
    type Data = hyper::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimedOut.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Drives a connection; once shutdown starts, asks it to finish in-flight requests and
/// close.
async fn until_stopped<C>(
    conn: C,
    graceful: impl FnOnce(Pin<&mut C>),
    mut stop: watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => return result,
        _ = stop.wait_for(|s| *s) => {}
    }
    graceful(conn.as_mut());
    conn.await
}

/// Whether the connection opens with the HTTP/2 preface. Peeks (reads nothing), so the
/// chosen protocol sees every byte.
async fn sniff_h2(stream: &TcpStream) -> std::io::Result<bool> {
    let mut buf = [0u8; 24];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // Part of the preface only: `peek` would return at once again, so wait a moment.
        tokio::time::sleep(SNIFF_PAUSE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: ServeLimits) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        );
        tokio::spawn(serve(listener, app, limits, std::future::pending()));
        addr
    }

    async fn get_root(stream: &mut TcpStream) -> String {
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    }

    #[tokio::test]
    async fn connections_beyond_the_per_client_cap_are_closed() {
        let addr = start(ServeLimits {
            max_conns_per_client: 2,
            ..ServeLimits::default()
        })
        .await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            assert!(get_root(&mut s).await.contains("127.0.0.1"));
            held.push(s);
        }
        tracing::info!("the third connection from 127.0.0.1 is closed unread");
        let mut third = TcpStream::connect(addr).await.unwrap();
        let _ = third.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let mut buf = [0u8; 16];
        assert!(matches!(third.read(&mut buf).await, Ok(0) | Err(_)));
        tracing::info!("once one closes, a new one is served");
        drop(held.pop());
        eventually(|| async {
            let Ok(mut s) = TcpStream::connect(addr).await else {
                return false;
            };
            let reply = tokio::time::timeout(Duration::from_secs(2), get_root(&mut s)).await;
            matches!(reply, Ok(r) if r.contains("200 OK"))
        })
        .await;
    }

    #[tokio::test]
    async fn a_half_sent_head_is_cut_off_and_h2_is_served() {
        let addr = start(ServeLimits {
            header_read_timeout: Duration::from_millis(300),
            ..ServeLimits::default()
        })
        .await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nhost:").await.unwrap();
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf)).await;
        assert!(read.is_ok(), "the connection was not closed");
        let silent = TcpStream::connect(addr).await.unwrap();
        let mut silent = silent;
        let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");

        let client = reqwest::Client::builder()
            .no_proxy()
            .http2_prior_knowledge()
            .build()
            .unwrap();
        let reply = client.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(reply.version(), reqwest::Version::HTTP_2);
        assert_eq!(reply.text().await.unwrap(), "127.0.0.1");
    }

    /// Reads until the server closes the connection (or 5 s pass), returning what came.
    async fn read_to_close(stream: &mut TcpStream) -> String {
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got)).await;
        assert!(read.is_ok(), "the connection was not closed");
        String::from_utf8_lossy(&got).into_owned()
    }

    #[tokio::test]
    async fn a_stalled_or_trickled_body_is_cut_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/echo",
            axum::routing::put(|body: String| async move { body }),
        );
        let limits = ServeLimits {
            body_read_timeout: Duration::from_millis(500),
            ..ServeLimits::default()
        };
        tokio::spawn(serve(listener, app, limits, std::future::pending()));
        let head = b"PUT /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 20\r\n\r\n";

        tracing::info!("a body sent at once is read");
        let mut prompt = TcpStream::connect(addr).await.unwrap();
        prompt.write_all(head).await.unwrap();
        prompt.write_all(b"01234567890123456789").await.unwrap();
        let mut buf = [0u8; 512];
        let n = prompt.read(&mut buf).await.unwrap();
        let reply = String::from_utf8_lossy(&buf[..n]);
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.ends_with("01234567890123456789"), "{reply}");

        tracing::info!("half a body, then nothing: answered 400 and closed");
        let started = tokio::time::Instant::now();
        let mut stalled = TcpStream::connect(addr).await.unwrap();
        stalled.write_all(head).await.unwrap();
        stalled.write_all(b"0123456789").await.unwrap();
        let reply = read_to_close(&mut stalled).await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
        assert!(started.elapsed() >= Duration::from_millis(500));

        tracing::info!("a byte every 100 ms keeps it alive no longer than the deadline");
        let mut trickle = TcpStream::connect(addr).await.unwrap();
        trickle.write_all(head).await.unwrap();
        let started = tokio::time::Instant::now();
        let (mut rd, mut wr) = trickle.split();
        let feeder = async {
            for _ in 0..20 {
                if wr.write_all(b"x").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let mut got = Vec::new();
        let reader = tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut got));
        let (read, ()) = tokio::join!(reader, feeder);
        assert!(read.is_ok(), "the connection was not closed");
        let elapsed = started.elapsed();
        // The bytes still arriving after the server closed may reset the connection before
        // the 400 is read; what matters here is when it was cut off.
        let reply = String::from_utf8_lossy(&got).into_owned();
        assert!(
            reply.is_empty() || reply.starts_with("HTTP/1.1 400"),
            "{reply}"
        );
        assert!(
            elapsed < Duration::from_millis(1900),
            "cut off at the deadline, not after the 20 bytes: {elapsed:?}"
        );
    }

    async fn eventually<F, Fut>(mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        for _ in 0..100 {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("condition not met in 5 s");
    }
}
