//! Forwarding a request to the leader.

use std::time::Duration;

use axum::http::HeaderMap;
use concord_api::rpc::RpcError;
use concord_net::rpc::CallError;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::node::{Leadership, Shared};

/// Marks a request a follower forwarded. The receiver answers it itself or fails with
/// `NotLeader`; it never forwards again, so a stale view of the leader cannot loop.
pub(crate) const FORWARDED_HEADER: &str = "x-concord-forwarded";

/// Timeout of a forwarded request that does not block.
pub(crate) const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the request was forwarded by another server.
pub(crate) fn is_forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED_HEADER)
}

/// Where a request this server cannot answer should go: `Ok(addr)` to forward, or the
/// error to answer with.
pub(crate) fn leader_target(
    leadership: Leadership,
    forwarded: bool,
) -> Result<Option<String>, RpcError> {
    match leadership {
        Leadership::Leader => Ok(None),
        Leadership::Follower { leader_addr } if forwarded => Err(RpcError::NotLeader {
            leader_addr: Some(leader_addr),
        }),
        Leadership::Follower { leader_addr } => Ok(Some(leader_addr)),
        Leadership::Unknown => Err(RpcError::NoLeader),
    }
}

/// Sends `req` to the leader at `addr` and returns its answer (or its error, unchanged).
pub(crate) async fn forward<Req: Serialize, Resp: DeserializeOwned>(
    shared: &Shared,
    addr: &str,
    path: &str,
    req: &Req,
    timeout: Duration,
) -> Result<Resp, RpcError> {
    tracing::debug!(leader = addr, path, "forwarding to leader");
    let headers = [(FORWARDED_HEADER, "1")];
    match shared.http.post(addr, path, req, &headers, timeout).await {
        Ok(resp) => Ok(resp),
        Err(CallError::Remote(e)) => Err(e),
        // A leader we cannot reach is, for this request, no leader: report which one we tried.
        Err(e @ (CallError::Connect { .. } | CallError::Transport { .. })) => {
            tracing::warn!(leader = addr, error = %e, "forwarding to leader failed");
            Err(RpcError::NotLeader {
                leader_addr: Some(addr.to_string()),
            })
        }
    }
}
