//! `POST api::rpc::WRITE_PATH`: on the leader, turn a request into a [`Command`] and propose
//! it through Raft; on a follower, forward it to the leader.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use concord_api::kv::{TxnError, TxnResponse};
use concord_api::rpc::{RpcError, WriteRequest, WriteResponse, WriteResult, WRITE_PATH};

use super::error::{decode, RpcFailure};
use super::forward::{is_forwarded, to_leader, FORWARD_TIMEOUT};
use crate::command::{now_ms, Command, UnixMillis};
use crate::connect;
use crate::model::kv::KvOp;
use crate::model::session::Session;
use crate::node::Shared;
use crate::state::{parse_session_ttl, schema};

pub(super) async fn handle(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WriteResponse>, RpcFailure> {
    let req: WriteRequest = decode(&body)?;
    Ok(Json(write(&shared, req, is_forwarded(&headers)).await?))
}

/// Applies a write through Raft here if this server leads, or forwards it to the leader,
/// and reports the outcome. Which of the two is decided once, before anything is built.
pub(crate) async fn write(
    shared: &Shared,
    req: WriteRequest,
    forwarded: bool,
) -> Result<WriteResponse, RpcError> {
    if let Some(resp) = to_leader(shared, forwarded, WRITE_PATH, &req, FORWARD_TIMEOUT).await? {
        return Ok(resp);
    }
    let (token, req) = req.into_parts();
    // Every write is judged by its token before anything is built, so a denial changes
    // nothing (Consul checks each RPC the same way).
    crate::acl::enforce::vet_write(
        &shared.store.current(),
        &crate::acl::enforce::AclSettings::of(&shared.config),
        token.as_deref(),
        &req,
    )?;
    if let WriteRequest::Txn(ops) = &req {
        if let Some(rejected) = txn_pre_check(shared, ops) {
            return Ok(rejected);
        }
    }
    let (cmd, session_ttl) = match req {
        WriteRequest::SessionRenew { id } => return Ok(renew(shared, &id)),
        // Connect CA: signing needs no Raft entry; a configuration change is built here,
        // where the active root's key is at hand to cross-sign with.
        WriteRequest::CaSign(sign) => return connect::sign(shared, &sign),
        WriteRequest::CaSetConfig(config) => (connect::set_config_command(shared, &config)?, None),
        // ACL writes need the current state (links by name, bootstrap once, existing
        // secrets), so they are built here, on the leader, like CA changes.
        WriteRequest::Acl(acl) => {
            let now = now_ms();
            let cmd = shared
                .store
                .current()
                .view(|tables| crate::acl::command(tables, acl, now))?;
            (cmd, None)
        }
        // A restore is verified and decoded in full here before anything is proposed.
        WriteRequest::SnapshotRestore(archive) => {
            return crate::archive::restore(shared, archive).await
        }
        WriteRequest::Operator(op) => {
            let result = crate::autopilot::write(shared, &op).await?;
            let index = shared
                .raft
                .metrics()
                .borrow()
                .last_applied
                .map_or(1, |l| l.index);
            return Ok(WriteResponse {
                index,
                result: WriteResult::Operator(result),
            });
        }
        req => to_command(req, now_ms(), shared.config.session_ttl_min)?,
    };
    // Leadership lost since the routing decision surfaces here as `leadership lost while
    // committing log` (outcome unknown), rather than this server forwarding from inside the
    // write.
    let (index, result) = shared.propose(cmd.clone()).await?;
    // Only the leader runs session timers, and the write just applied on it.
    match &cmd {
        Command::SessionCreate { session } => {
            if let Some(ttl) = session_ttl {
                shared.timers.reset(session.id.as_str(), ttl);
            }
        }
        Command::SessionDestroy { id, .. } => shared.timers.cancel(id.as_str()),
        _ => {}
    }
    Ok(WriteResponse { index, result })
}

/// Consul's checks of a transaction before anything is proposed (`Txn.preCheck`): every
/// failing operation is reported together and nothing reaches the log (the agent answers
/// 409 with them). `None` when all pass.
fn txn_pre_check(shared: &Shared, ops: &[concord_api::kv::KvOp]) -> Option<WriteResponse> {
    let errors: Vec<TxnError> = ops
        .iter()
        .enumerate()
        .filter_map(|(op_index, op)| {
            KvOp::from(op.clone())
                .pre_check()
                .err()
                .map(|what| TxnError {
                    op_index,
                    what: what.to_string(),
                })
        })
        .collect();
    if errors.is_empty() {
        return None;
    }
    let index = shared
        .store
        .current()
        .view(|t| t.table_index(schema::KVS))
        .max(1);
    Some(WriteResponse {
        index,
        result: WriteResult::Txn(TxnResponse {
            results: None,
            errors: Some(errors),
        }),
    })
}

/// Resets a session's TTL timer on the leader (no Raft entry, as in Consul).
fn renew(shared: &Shared, id: &str) -> WriteResponse {
    let store = shared.store.current();
    let session = store.session(id);
    if let Some(session) = &session {
        if let Ok(Some(ttl)) = parse_session_ttl(&session.ttl, Duration::ZERO) {
            shared.timers.reset(id, ttl);
        }
    }
    let index = store.view(|t| t.table_index(schema::SESSIONS)).max(1);
    WriteResponse {
        index,
        result: WriteResult::Session(session.as_ref().map(Session::to_api)),
    }
}

/// Converts a request (wire types) into its Raft command (the store's types); for a session, assigns the ID and validates
/// the TTL (returned so the leader can arm its timer).
pub(crate) fn to_command(
    req: WriteRequest,
    now_ms: UnixMillis,
    session_ttl_min: Duration,
) -> Result<(Command, Option<Duration>), RpcError> {
    Ok(match req {
        WriteRequest::Register(request) => {
            let request = request.into();
            (Command::Register { request, now_ms }, None)
        }
        WriteRequest::Deregister(request) => {
            let request = request.into();
            (Command::Deregister { request, now_ms }, None)
        }
        WriteRequest::Kv(op) => (
            Command::Kv {
                op: op.into(),
                now_ms,
            },
            None,
        ),
        WriteRequest::Txn(ops) => {
            let ops = ops.into_iter().map(KvOp::from).collect();
            (Command::Txn { ops, now_ms }, None)
        }
        WriteRequest::SessionCreate(session) => {
            let ttl = parse_session_ttl(&session.ttl, session_ttl_min)
                .map_err(|e| RpcError::Invalid(e.to_string()))?;
            let session = Session {
                id: uuid::Uuid::new_v4().to_string().into(),
                ..session.into()
            };
            (Command::SessionCreate { session }, ttl)
        }
        WriteRequest::SessionDestroy { id } => (
            Command::SessionDestroy {
                id: id.into(),
                now_ms,
            },
            None,
        ),
        WriteRequest::ConfigEntrySet {
            kind,
            name,
            body,
            cas,
        } => {
            let body = checked_config_entry(&kind, &name, body)?;
            (
                Command::ConfigEntrySet {
                    kind,
                    name,
                    body,
                    cas,
                },
                None,
            )
        }
        WriteRequest::ConfigEntryDelete { kind, name, cas } => {
            (Command::ConfigEntryDelete { kind, name, cas }, None)
        }
        WriteRequest::SessionRenew { .. }
        | WriteRequest::Operator(_)
        | WriteRequest::CaSign(_)
        | WriteRequest::Acl(_)
        | WriteRequest::CaSetConfig(_) => {
            return Err(RpcError::Internal(
                "invariant: session renew, CA signing, CA configuration and ACL writes are \
                 built by the leader, not here"
                    .to_string(),
            ))
        }
        WriteRequest::SnapshotRestore(_) => {
            return Err(RpcError::Internal(
                "invariant: a snapshot restore is built by archive::restore".to_string(),
            ))
        }
        WriteRequest::Authorized { .. } => {
            return Err(RpcError::Internal(
                "invariant: a write's token is taken off by `write` before it is built".to_string(),
            ))
        }
    })
}

/// Re-checks an entry on the leader before it enters the log: it must decode as its kind,
/// pass the kind's own rules, and be stored under its own kind and name. Agents validate
/// first (including the rules that need other entries); this keeps an agent of another
/// version, or any other RPC caller, from storing what no reader could decode. Returns the
/// normalized JSON to store.
fn checked_config_entry(
    kind: &str,
    name: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, RpcError> {
    let mut entry = concord_api::config_entry::ConfigEntry::from_json(body)
        .map_err(|e| RpcError::Invalid(e.0))?;
    entry.validate().map_err(|e| RpcError::Invalid(e.0))?;
    if entry.kind() != kind || entry.name() != name {
        return Err(RpcError::Invalid(format!(
            "config entry {}/{} written as {kind}/{name}",
            entry.kind(),
            entry.name()
        )));
    }
    Ok(entry.to_json())
}
