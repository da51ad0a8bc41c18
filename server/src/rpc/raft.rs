//! Raft's own endpoints, called by [`network`](crate::network) on other servers (paths and
//! bodies in [`raft`](crate::raft)).
//!
//! Each takes openraft's request as JSON and answers `200` with openraft's
//! `Result<Response, Error>` as JSON: a Raft-level error is data the caller's openraft must
//! see (e.g. a higher vote), not an HTTP failure.

use std::io::Cursor;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use openraft::error::{Fatal, InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};

use super::error::{decode, RpcFailure};
use crate::node::Shared;
use crate::raft::{FullSnapshotRequest, NodeId, Snapshot, TypeConfig};

pub(super) async fn append_entries(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Json<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>>, RpcFailure> {
    let req: AppendEntriesRequest<TypeConfig> = decode(&body)?;
    let reply = shared.raft.append_entries(req).await;
    if matches!(reply, Ok(AppendEntriesResponse::Success)) {
        shared.touch_leader_contact();
    }
    Ok(Json(reply))
}

pub(super) async fn vote(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Json<Result<VoteResponse<NodeId>, RaftError<NodeId>>>, RpcFailure> {
    let req: VoteRequest<NodeId> = decode(&body)?;
    Ok(Json(shared.raft.vote(req).await))
}

pub(super) async fn install_snapshot(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Result<
    Json<Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>>,
    RpcFailure,
> {
    let req: InstallSnapshotRequest<TypeConfig> = decode(&body)?;
    Ok(Json(shared.raft.install_snapshot(req).await))
}

pub(super) async fn full_snapshot(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Json<Result<SnapshotResponse<NodeId>, Fatal<NodeId>>>, RpcFailure> {
    let req: FullSnapshotRequest = decode(&body)?;
    let snapshot = Snapshot {
        meta: req.meta,
        snapshot: Box::new(Cursor::new(req.data.unwrap_or_default())),
    };
    Ok(Json(
        shared.raft.install_full_snapshot(req.vote, snapshot).await,
    ))
}

/// Leadership transfer: the leader stopped heartbeating and asks this server to start an
/// election at once (it wins if its log is up to date). Answers whether Raft took it.
pub(super) async fn elect(State(shared): State<Arc<Shared>>) -> Json<bool> {
    Json(shared.raft.trigger().elect().await.is_ok())
}
