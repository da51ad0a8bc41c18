//! `POST api::rpc::WRITE_PATH`: turn a request into a [`Command`], propose it through Raft
//! on the leader, or forward it there.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use concord_api::rpc::{RpcError, WriteRequest, WriteResponse, WriteResult, WRITE_PATH};
use openraft::error::{ClientWriteError, RaftError};

use super::forward::{forward, is_forwarded, leader_target, FORWARD_TIMEOUT};
use super::{decode, RpcFailure};
use crate::command::{now_ms, Command, UnixMillis};
use crate::server::Shared;
use crate::state::{parse_session_ttl, schema};

pub(super) async fn handle(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WriteResponse>, RpcFailure> {
    let req: WriteRequest = decode(&body)?;
    Ok(Json(write(&shared, req, is_forwarded(&headers)).await?))
}

/// Applies a write through Raft (or forwards it to the leader) and reports the outcome.
pub(crate) async fn write(
    shared: &Shared,
    req: WriteRequest,
    forwarded: bool,
) -> Result<WriteResponse, RpcError> {
    if let WriteRequest::SessionRenew { id } = &req {
        return match leader_target(shared.leadership(), forwarded)? {
            Some(addr) => forward(shared, &addr, WRITE_PATH, &req, FORWARD_TIMEOUT).await,
            None => Ok(renew(shared, id)),
        };
    }
    // Built before we know whether we lead: on a follower the command (and the session ID
    // it may carry) is simply dropped and the original request forwarded.
    let (cmd, session_ttl) = to_command(req.clone(), now_ms())?;
    match propose(shared, cmd.clone()).await {
        Ok((index, result)) => {
            // Only the leader runs session timers, and the write just applied on it.
            match &cmd {
                Command::SessionCreate { session } => {
                    if let Some(ttl) = session_ttl {
                        shared.timers.reset(&session.id, ttl);
                    }
                }
                Command::SessionDestroy { id, .. } => shared.timers.cancel(id),
                _ => {}
            }
            Ok(WriteResponse { index, result })
        }
        Err(Proposal::NotLeader(None)) => Err(RpcError::NoLeader),
        Err(Proposal::NotLeader(Some(addr))) if forwarded => Err(RpcError::NotLeader {
            leader_addr: Some(addr),
        }),
        Err(Proposal::NotLeader(Some(addr))) => {
            forward(shared, &addr, WRITE_PATH, &req, FORWARD_TIMEOUT).await
        }
        Err(Proposal::Failed(e)) => Err(e),
    }
}

/// Resets a session's TTL timer on the leader (no Raft entry, as in Consul).
fn renew(shared: &Shared, id: &str) -> WriteResponse {
    let store = shared.store.current();
    let session = store.session(id);
    if let Some(session) = &session {
        if let Ok(Some(ttl)) = parse_session_ttl(&session.ttl) {
            shared.timers.reset(id, ttl);
        }
    }
    let index = store.view(|t| t.table_index(schema::SESSIONS)).max(1);
    WriteResponse {
        index,
        result: WriteResult::Session(session),
    }
}

/// Converts a request into its Raft command; for a session, assigns the ID and validates
/// the TTL (returned so the leader can arm its timer).
pub(crate) fn to_command(
    req: WriteRequest,
    now_ms: UnixMillis,
) -> Result<(Command, Option<Duration>), RpcError> {
    Ok(match req {
        WriteRequest::Register(request) => (Command::Register { request, now_ms }, None),
        WriteRequest::Deregister(request) => (Command::Deregister { request, now_ms }, None),
        WriteRequest::Kv(op) => (Command::Kv { op, now_ms }, None),
        WriteRequest::Txn(ops) => (Command::Txn { ops, now_ms }, None),
        WriteRequest::SessionCreate(mut session) => {
            let ttl = parse_session_ttl(&session.ttl).map_err(RpcError::Invalid)?;
            session.id = uuid::Uuid::new_v4().to_string();
            (Command::SessionCreate { session }, ttl)
        }
        WriteRequest::SessionDestroy { id } => (Command::SessionDestroy { id, now_ms }, None),
        WriteRequest::SessionRenew { .. } => {
            return Err(RpcError::Internal(
                "invariant: session renew is not a Raft write".to_string(),
            ))
        }
    })
}

/// Why a proposal did not apply.
#[derive(Debug)]
pub(crate) enum Proposal {
    /// This server does not lead; the leader's RPC address if known.
    NotLeader(Option<String>),
    /// Applied and rejected, or Raft failed.
    Failed(RpcError),
}

/// Proposes a command on this server's Raft and waits for it to apply.
pub(crate) async fn propose(shared: &Shared, cmd: Command) -> Result<(u64, WriteResult), Proposal> {
    match shared.raft.client_write(cmd).await {
        Ok(resp) => match resp.data {
            Ok(result) => Ok((resp.log_id.index, result)),
            Err(e) => Err(Proposal::Failed(e)),
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(Proposal::NotLeader(f.leader_node.map(|n| n.addr)))
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            Err(Proposal::Failed(RpcError::Internal(e.to_string())))
        }
        Err(RaftError::Fatal(e)) => Err(Proposal::Failed(RpcError::Internal(format!("raft: {e}")))),
    }
}
