//! One server RPC call: `POST` a JSON body to `http://addr/path`, decode a `2xx` reply as the
//! response type, and anything else as the peer's [`RpcError`] (see [`concord_api::rpc`]).
//!
//! Callers differ only in what a failure means to them (an agent tries the next server, a
//! follower reports the leader unreachable, openraft backs off), so the failure is returned
//! classified ([`CallError`]) rather than already mapped.

use std::sync::Arc;
use std::time::Duration;

use concord_api::rpc::RpcError;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a call produced no decoded reply.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No connection could be made (refused, no route): the peer saw nothing.
    #[error("{addr} unreachable: {message}")]
    Connect {
        /// The peer.
        addr: String,
        /// What the transport said.
        message: String,
    },
    /// The request may have reached the peer, but the exchange failed (timeout, reset,
    /// unreadable or undecodable reply).
    #[error("RPC to {addr} failed: {message}")]
    Transport {
        /// The peer.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// The peer answered with an error: its [`RpcError`] body, or its status and text
    /// wrapped in [`RpcError::Internal`] when the body is not one.
    #[error("{0}")]
    Remote(RpcError),
}

impl CallError {
    /// The error an agent-facing caller reports: a remote error unchanged, a transport
    /// failure in Consul's `rpc error making call` words.
    pub fn into_rpc_error(self) -> RpcError {
        match self {
            CallError::Remote(e) => e,
            CallError::Connect { message, .. } | CallError::Transport { message, .. } => {
                RpcError::Internal(format!("rpc error making call: {message}"))
            }
        }
    }
}

/// How long a pooled connection to a server may sit unused before it is closed.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 pings on a connection with requests in flight: interval, and how long one may go
/// unanswered before the connection (and its requests) fail.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The HTTP/2 windows of server RPC, on both ends (this client and the RPC port's
/// [`crate::serve::ServeLimits::http2_window`]).
///
/// Every call between an agent and a server, or a follower and the leader, shares one
/// connection, and one write can wake tens of thousands of parked blocking queries whose
/// replies then cross it together (50,000 health replies are about 50 MB). The connection
/// window must hold such a burst whole: with HTTP/2's adaptive 64 KB start, the burst ran
/// the window dry, h2 split the waiting replies into DATA frames of a few bytes, and the
/// receiver's guard against floods of small frames closed the connection, failing every
/// call on it (see [`crate::serve::H2Window`]). The window bounds memory only while a
/// reader lags: data is read as it arrives, and one request body alone may already be this
/// large (the RPC port's body limit, 256 MB).
pub const RPC_WINDOW: crate::serve::H2Window = crate::serve::H2Window::Fixed {
    connection: RPC_CONNECTION_WINDOW,
    stream: RPC_STREAM_WINDOW,
};
const RPC_CONNECTION_WINDOW: u32 = 256 * 1024 * 1024;
const RPC_STREAM_WINDOW: u32 = 16 * 1024 * 1024;

/// An HTTP client for server RPC. Cheap to clone (one shared connection pool).
///
/// Every call to one server shares one HTTP/2 connection (prior knowledge: server RPC
/// ports speak HTTP/2 without negotiation, see [`crate::serve`]), as Consul multiplexes
/// its RPC: parked blocking queries cost a stream each, not a descriptor each.
///
/// With TLS (`tls.internal_rpc` with `verify_outgoing`) every call is `https://`, checked as
/// the rustls config says (see [`crate::tls::InternalRpc`]); ALPN `h2`.
#[derive(Clone, Debug)]
pub struct RpcHttp {
    client: reqwest::Client,
    /// `http` or `https`.
    scheme: &'static str,
}

impl RpcHttp {
    /// A plain client that never routes through an HTTP proxy from the environment: server
    /// RPC addresses are always direct.
    pub fn new() -> Result<Self, CallError> {
        RpcHttp::with_tls(None)
    }

    /// [`RpcHttp::new`], over TLS with this rustls config when one is given.
    pub fn with_tls(tls: Option<Arc<rustls::ClientConfig>>) -> Result<Self, CallError> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut builder = reqwest::Client::builder();
        if let Some(config) = tls {
            builder = builder.use_preconfigured_tls(rustls::ClientConfig::clone(&config));
        }
        let client = builder
            .no_proxy()
            .http2_prior_knowledge()
            .http2_initial_connection_window_size(RPC_CONNECTION_WINDOW)
            .http2_initial_stream_window_size(RPC_STREAM_WINDOW)
            .http2_keep_alive_interval(H2_PING_INTERVAL)
            .http2_keep_alive_timeout(H2_PING_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build()
            .map_err(|e| CallError::Transport {
                addr: String::new(),
                message: format!("building HTTP client: {e}"),
            })?;
        Ok(RpcHttp { client, scheme })
    }

    /// `POST`s `body` as JSON to `http(s)://{addr}{path}` with the given extra headers and
    /// returns the decoded `2xx` reply.
    pub async fn post<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &Req,
        headers: &[(&'static str, &'static str)],
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let transport = |message: String| CallError::Transport {
            addr: addr.to_string(),
            message,
        };
        let mut request = self
            .client
            .post(format!("{}://{addr}{path}", self.scheme))
            .json(body)
            .timeout(timeout);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_connect() {
                CallError::Connect {
                    addr: addr.to_string(),
                    message: e.to_string(),
                }
            } else {
                transport(e.to_string())
            }
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport(format!("reading reply: {e}")))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| transport(format!("decoding reply: {e}")));
        }
        Err(CallError::Remote(
            serde_json::from_slice::<RpcError>(&bytes).unwrap_or_else(|_| {
                RpcError::Internal(format!(
                    "{addr} answered {status}: {}",
                    String::from_utf8_lossy(&bytes)
                ))
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::routing::post;
    use axum::{Json, Router};

    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let limits = crate::serve::ServeLimits::default();
        tokio::spawn(crate::serve::serve(
            listener,
            app,
            limits,
            std::future::pending(),
        ));
        addr
    }

    #[tokio::test]
    async fn decodes_replies_and_remote_errors() {
        let app = Router::new()
            .route("/ok", post(|Json(n): Json<u64>| async move { Json(n + 1) }))
            .route(
                "/err",
                post(|| async {
                    (
                        StatusCode::BAD_REQUEST,
                        Json(RpcError::Invalid("nope".into())),
                    )
                }),
            )
            .route(
                "/text",
                post(|| async { (StatusCode::BAD_GATEWAY, "upstream gone") }),
            );
        let addr = serve(app).await;
        let http = RpcHttp::new().unwrap();
        let t = Duration::from_secs(5);
        let n: u64 = http.post(&addr, "/ok", &41u64, &[], t).await.unwrap();
        assert_eq!(n, 42);
        let err = http.post::<_, u64>(&addr, "/err", &1u64, &[], t).await;
        assert!(matches!(err, Err(CallError::Remote(RpcError::Invalid(m))) if m == "nope"));
        let err = http.post::<_, u64>(&addr, "/text", &1u64, &[], t).await;
        assert!(
            matches!(err, Err(CallError::Remote(RpcError::Internal(m))) if m.contains("upstream gone"))
        );
    }

    #[tokio::test]
    async fn concurrent_calls_share_one_connection() {
        use std::collections::BTreeSet;
        use std::net::SocketAddr;
        use std::sync::{Arc, Mutex};

        use axum::extract::ConnectInfo;

        let peers: Arc<Mutex<BTreeSet<SocketAddr>>> = Arc::default();
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        let seen = peers.clone();
        let app = Router::new().route(
            "/park",
            post(move |ConnectInfo(peer): ConnectInfo<SocketAddr>| {
                let mut release = release_rx.clone();
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().insert(peer);
                    let _ = release.wait_for(|r| *r).await;
                    Json(1u64)
                }
            }),
        );
        let addr = serve(app).await;
        let http = RpcHttp::new().unwrap();
        tracing::info!("50 calls parked at once, as 50 blocking queries would be");
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (http, addr) = (http.clone(), addr.clone());
            calls.spawn(async move {
                http.post::<_, u64>(&addr, "/park", &0u64, &[], Duration::from_secs(30))
                    .await
            });
        }
        // 50 handlers plus the sender's own: every call is parked on the server.
        while release_tx.receiver_count() < 51 {
            tokio::task::yield_now().await;
        }
        release_tx.send_replace(true);
        while let Some(done) = calls.join_next().await {
            assert_eq!(done.unwrap().unwrap(), 1);
        }
        assert_eq!(
            peers.lock().unwrap().len(),
            1,
            "one HTTP/2 connection carried them all"
        );
    }

    /// `calls` calls parked on one connection (request bodies and replies of `size` bytes,
    /// as blocking queries carry), then released together: how many failed.
    async fn burst(window: crate::serve::H2Window, calls: usize, size: usize) -> usize {
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        let app = Router::new().route(
            "/park",
            post(move |Json(body): Json<String>| {
                let mut release = release_rx.clone();
                async move {
                    let _ = release.wait_for(|r| *r).await;
                    Json(body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let limits = crate::serve::ServeLimits {
            http2_max_streams: 100_000,
            http2_window: window,
            ..crate::serve::ServeLimits::default()
        };
        tokio::spawn(crate::serve::serve(
            listener,
            app,
            limits,
            std::future::pending(),
        ));
        let http = RpcHttp::new().unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..calls {
            let (http, addr) = (http.clone(), addr.clone());
            tasks.spawn(async move {
                let body = "x".repeat(size);
                http.post::<_, String>(&addr, "/park", &body, &[], Duration::from_secs(60))
                    .await
            });
        }
        // Every handler parked (plus the sender's own receiver), or a call already failed.
        while release_tx.receiver_count() < calls + 1 && tasks.len() == calls {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if let Some(done) = tasks.try_join_next() {
                tracing::info!(?done, "a call ended while parking");
                break;
            }
        }
        let mut failed = calls - tasks.len();
        release_tx.send_replace(true);
        while let Some(done) = tasks.join_next().await {
            if !matches!(done, Ok(Ok(ref reply)) if reply.len() == size) {
                failed += 1;
            }
        }
        failed
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_parked_calls_keeps_its_connection() {
        // 3,000 bodies and replies of 600 bytes: 1.8 MB each way, far over HTTP/2's 64 KB
        // starting window. With the server's window adaptive, the bodies were split into
        // tiny frames and the connection torn down (`too_many_data_frames`): 2,999 failed.
        assert_eq!(burst(RPC_WINDOW, 3_000, 600).await, 0);
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let http = RpcHttp::new().unwrap();
        let err = http
            .post::<_, u64>(&addr, "/x", &1u64, &[], Duration::from_secs(5))
            .await;
        assert!(matches!(err, Err(CallError::Connect { .. })), "{err:?}");
    }
}
