//! The agent's client for server RPC (see [`concord_api::rpc`]).
//!
//! Any server answers any request (followers forward to the leader), so the client only
//! needs *a* reachable server: it starts with the one that answered last and rotates through
//! the configured list on transport errors.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use concord_api::rpc::{
    Query, QueryOptions, ReadRequest, ReadResponse, RpcError, WriteRequest, WriteResponse,
    DEFAULT_WAIT_MS, MAX_WAIT_MS, READ_PATH, WRITE_PATH,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Extra time allowed beyond a blocking query's wait before the HTTP request is abandoned
/// (covers the server's jitter of up to wait/16 plus transfer time).
const BLOCKING_SLACK: Duration = Duration::from_secs(30);
/// Timeout of non-blocking requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Talks to the servers' RPC endpoints.
#[derive(Debug)]
pub struct ServerClient {
    http: reqwest::Client,
    servers: Vec<SocketAddr>,
    current: AtomicUsize,
}

impl ServerClient {
    /// A client for these servers' RPC addresses.
    pub fn new(servers: Vec<SocketAddr>) -> Self {
        ServerClient {
            http: reqwest::Client::new(),
            servers,
            current: AtomicUsize::new(0),
        }
    }

    /// Runs a read; blocks server-side when `options.min_index > 0`.
    pub async fn read(
        &self,
        query: Query,
        options: QueryOptions,
    ) -> Result<ReadResponse, RpcError> {
        let wait = if options.min_index > 0 {
            let ms = match options.max_wait_ms {
                0 => DEFAULT_WAIT_MS,
                ms => ms.min(MAX_WAIT_MS),
            };
            Duration::from_millis(ms + ms / 16) + BLOCKING_SLACK
        } else {
            REQUEST_TIMEOUT
        };
        self.call(READ_PATH, &ReadRequest { query, options }, wait)
            .await
    }

    /// Runs a write through Raft.
    pub async fn write(&self, request: WriteRequest) -> Result<WriteResponse, RpcError> {
        self.call(WRITE_PATH, &request, REQUEST_TIMEOUT).await
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T, RpcError> {
        if self.servers.is_empty() {
            return Err(RpcError::Internal("No known Consul servers".to_string()));
        }
        let start = self.current.load(Ordering::Relaxed);
        let mut last_err = None;
        for attempt in 0..self.servers.len() {
            let idx = (start + attempt) % self.servers.len();
            let url = format!("http://{}{}", self.servers[idx], path);
            let sent = self
                .http
                .post(&url)
                .json(body)
                .timeout(timeout)
                .send()
                .await;
            let response = match sent {
                Ok(r) => r,
                Err(e) => {
                    // Transport failure: try the next server.
                    tracing::debug!(server = %self.servers[idx], error = %e, "server RPC failed");
                    last_err = Some(RpcError::Internal(format!("rpc error making call: {e}")));
                    continue;
                }
            };
            self.current.store(idx, Ordering::Relaxed);
            let status = response.status();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| RpcError::Internal(format!("rpc error reading response: {e}")))?;
            if status.is_success() {
                return serde_json::from_slice(&bytes)
                    .map_err(|e| RpcError::Internal(format!("rpc decode error: {e}")));
            }
            return Err(
                serde_json::from_slice::<RpcError>(&bytes).unwrap_or_else(|_| {
                    RpcError::Internal(format!(
                        "rpc error: {status}: {}",
                        String::from_utf8_lossy(&bytes)
                    ))
                }),
            );
        }
        Err(last_err.unwrap_or(RpcError::NoLeader))
    }
}
