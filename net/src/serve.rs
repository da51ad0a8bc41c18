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
//! - **HTTP/2**: many requests (parked blocking queries) share one connection, up to
//!   [`ServeLimits::http2_max_streams`] at once; pings close a connection whose peer went
//!   away.
//!
//! Accept errors (out of descriptors above all) are logged and retried after a pause, never
//! fatal: the listener serves again once descriptors are freed.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

/// The HTTP/2 connection preface a prior-knowledge client sends first.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Pause after an accept error before accepting again (descriptors may free meanwhile).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Pause between looks at a connection that sent part of the HTTP/2 preface only.
const SNIFF_PAUSE: Duration = Duration::from_millis(10);
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
}

impl Default for ServeLimits {
    /// Consul's agent HTTP defaults: a 10 s header read timeout, 200 connections per client.
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: Duration::from_secs(10),
            max_conns_per_client: 200,
            http2_max_streams: 256,
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
    let per_client = PerClient::default();
    // `true` once shutdown starts; every connection holds a receiver, so `closed()` on the
    // sender resolves when the last one is gone.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; pausing before the next accept");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
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
        tokio::spawn(async move {
            let _slot = slot;
            connection(stream, remote, app, &limits, stop).await;
        });
    }
    drop(stop_rx);
    let _ = stop_tx.send(true);
    stop_tx.closed().await;
    Ok(())
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
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(ConnectInfo(remote));
        app.clone().oneshot(req)
    });
    let io = TokioIo::new(stream);
    let result = if h2 {
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.http2_max_streams)
            .keep_alive_interval(H2_PING_INTERVAL)
            .keep_alive_timeout(H2_PING_TIMEOUT)
            .adaptive_window(true)
            .serve_connection(io, service);
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
