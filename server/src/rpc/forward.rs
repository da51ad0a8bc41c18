//! Forwarding a request to the leader.

use std::time::Duration;

use rand::Rng as _;
use tokio::time::Instant;

use axum::http::HeaderMap;
use concord_api::rpc::{RpcError, READ_PATH};
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

/// How long a server holds a request while there is no leader it can reach (an election,
/// or a leader that just died and is not replaced yet) before failing it: Consul's
/// `rpc_hold_timeout`. Clients then see a slower answer instead of an error for a blip.
pub(crate) const HOLD_TIMEOUT: Duration = Duration::from_secs(7);

/// Pause between attempts while holding: short next to an election (~1 s), jittered so
/// held requests do not return in lockstep.
fn hold_pause() -> Duration {
    Duration::from_millis(rand::thread_rng().gen_range(50..150))
}

/// Routes a request that must be answered by the leader: `Ok(None)` when this server leads
/// (the caller answers it), else the leader's answer. While there is no leader, or the
/// leader cannot be reached, or it turns out not to lead any more, the request is held and
/// retried for up to [`HOLD_TIMEOUT`] from the first failure. Only failures where the
/// leader cannot have acted on the request are retried (no leader, refused connection, a
/// leader that says it does not lead), so a write is never applied twice; a read (it
/// changes nothing) is also retried, on a new connection, when the exchange broke midway,
/// so a connection torn down under a parked blocking query does not fail its watcher.
pub(crate) async fn to_leader<Req: Serialize, Resp: DeserializeOwned>(
    shared: &Shared,
    forwarded: bool,
    path: &str,
    req: &Req,
    timeout: Duration,
) -> Result<Option<Resp>, RpcError> {
    // Held from the first failure on: a blocking read may have waited minutes on the leader
    // before its connection broke, and still deserves the whole hold.
    let mut hold_until = None;
    loop {
        let outcome = match leader_target(shared.leadership(), forwarded) {
            Ok(None) => return Ok(None),
            Ok(Some(addr)) => forward(shared, &addr, path, req, timeout).await,
            Err(e) => Err(Attempt::Retry(e)),
        };
        let deadline = *hold_until.get_or_insert_with(|| Instant::now() + HOLD_TIMEOUT);
        match outcome {
            Ok(resp) => return Ok(Some(resp)),
            Err(Attempt::Final(e)) => return Err(e),
            // A forwarded request is the leader's to answer; the forwarding server holds.
            Err(Attempt::Retry(e)) if forwarded || Instant::now() >= deadline => return Err(e),
            Err(Attempt::Retry(e)) => {
                tracing::debug!(error = %e, path, "no reachable leader; holding the request");
                tokio::time::sleep(hold_pause()).await;
            }
        }
    }
}

/// The outcome of one forward: whether trying again is safe.
#[derive(Debug, PartialEq)]
pub(super) enum Attempt {
    /// The leader cannot have acted on the request.
    Retry(RpcError),
    /// The leader's answer, or a failure after the request may have reached it.
    Final(RpcError),
}

/// Sends `req` to the leader at `addr` and returns its answer (or its error, unchanged).
pub(super) async fn forward<Req: Serialize, Resp: DeserializeOwned>(
    shared: &Shared,
    addr: &str,
    path: &str,
    req: &Req,
    timeout: Duration,
) -> Result<Resp, Attempt> {
    tracing::debug!(leader = addr, path, "forwarding to leader");
    let headers = [(FORWARDED_HEADER, "1")];
    match shared.http.post(addr, path, req, &headers, timeout).await {
        Ok(resp) => Ok(resp),
        Err(CallError::Remote(e @ (RpcError::NotLeader { .. } | RpcError::NoLeader))) => {
            Err(Attempt::Retry(e))
        }
        Err(CallError::Remote(e)) => Err(Attempt::Final(e)),
        // A leader we cannot reach is, for this request, no leader: report which one we tried.
        Err(e @ CallError::Connect { .. }) => {
            tracing::warn!(leader = addr, error = %e, "forwarding to leader failed");
            Err(Attempt::Retry(RpcError::NotLeader {
                leader_addr: Some(addr.to_string()),
            }))
        }
        Err(e @ CallError::Transport { .. }) => {
            tracing::warn!(leader = addr, error = %e, "forwarding to leader failed");
            let e = RpcError::NotLeader {
                leader_addr: Some(addr.to_string()),
            };
            // The leader may have acted on it: only a read may be sent again.
            Err(if path == READ_PATH {
                Attempt::Retry(e)
            } else {
                Attempt::Final(e)
            })
        }
    }
}
