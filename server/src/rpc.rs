//! The server RPC port: agents' reads and writes (`api::rpc`) and Raft's own traffic, all
//! HTTP/1.1 + JSON, served by one axum [`router`].
//!
//! Any server accepts any request. Writes go through Raft on the leader; a follower forwards
//! them (and non-stale reads) to the leader it learned from Raft, marking the request as
//! forwarded so it is never forwarded twice.

mod error;
mod forward;
pub(crate) mod raft;
mod read;
#[cfg(test)]
mod tests;
mod write;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::Router;
use concord_api::rpc::{READ_PATH, WRITE_PATH};
use serde::de::DeserializeOwned;

pub(crate) use error::RpcFailure;
pub(crate) use write::{propose, Proposal};

use crate::server::Shared;

/// Largest request body accepted: Raft appends and full snapshots are the big ones.
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

/// The RPC router. One route per endpoint; the body limit is the only layer and wraps them
/// all.
pub(crate) fn router(state: Arc<Shared>) -> Router {
    Router::new()
        .route(READ_PATH, post(read::handle))
        .route(WRITE_PATH, post(write::handle))
        .route(raft::APPEND_ENTRIES_PATH, post(raft::append_entries))
        .route(raft::VOTE_PATH, post(raft::vote))
        .route(raft::INSTALL_SNAPSHOT_PATH, post(raft::install_snapshot))
        .route(raft::FULL_SNAPSHOT_PATH, post(raft::full_snapshot))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Decodes a JSON body; malformed input is the caller's error (400).
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, RpcFailure> {
    serde_json::from_slice(body).map_err(|e| {
        RpcFailure(concord_api::rpc::RpcError::Invalid(format!(
            "bad request body: {e}"
        )))
    })
}
