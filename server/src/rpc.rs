//! The server RPC port: agents' reads and writes (`api::rpc`) and Raft's own traffic, all
//! HTTP/1.1 + JSON, served by one axum [`router`].
//!
//! Any server accepts any request. Writes go through Raft on the leader; a follower forwards
//! them (and non-stale reads) to the leader it learned from Raft, marking the request as
//! forwarded so it is never forwarded twice. Reads and writes decide forward-or-local once,
//! up front ([`forward::leader_target`]), then walk down: handler, [`Shared`], Raft/state.

mod error;
mod forward;
mod local;
mod raft;
mod read;
#[cfg(test)]
mod tests;
mod write;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::Router;
use concord_api::rpc::{READ_PATH, WRITE_PATH};

pub use local::LocalRpc;

use crate::node::Shared;
use crate::raft::{
    APPEND_ENTRIES_PATH, ELECT_PATH, FULL_SNAPSHOT_PATH, INSTALL_SNAPSHOT_PATH, VOTE_PATH,
};

/// Largest request body accepted: Raft appends and full snapshots are the big ones.
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

/// The RPC router. One route per endpoint; the body limit is the only layer and wraps them
/// all.
pub(crate) fn router(state: Arc<Shared>) -> Router {
    Router::new()
        .route(READ_PATH, post(read::handle))
        .route(WRITE_PATH, post(write::handle))
        .route(APPEND_ENTRIES_PATH, post(raft::append_entries))
        .route(VOTE_PATH, post(raft::vote))
        .route(INSTALL_SNAPSHOT_PATH, post(raft::install_snapshot))
        .route(FULL_SNAPSHOT_PATH, post(raft::full_snapshot))
        .route(ELECT_PATH, post(raft::elect))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
