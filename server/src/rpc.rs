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
pub(crate) mod tests;
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

/// The RPC router. One route per endpoint. Outermost first: the body limit wraps them all;
/// Raft's own routes are also behind [`only_servers`] (a no-op unless
/// `verify_incoming` + `verify_server_hostname`).
pub(crate) fn router(state: Arc<Shared>) -> Router {
    let raft_routes = Router::new()
        .route(APPEND_ENTRIES_PATH, post(raft::append_entries))
        .route(VOTE_PATH, post(raft::vote))
        .route(INSTALL_SNAPSHOT_PATH, post(raft::install_snapshot))
        .route(FULL_SNAPSHOT_PATH, post(raft::full_snapshot))
        .route(ELECT_PATH, post(raft::elect))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            only_servers,
        ));
    Router::new()
        .route(READ_PATH, post(read::handle))
        .route(WRITE_PATH, post(write::handle))
        .merge(raft_routes)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Consul's `AuthorizeServerConn`: with `verify_incoming` and `verify_server_hostname`,
/// Raft traffic is taken only from a TLS peer whose certificate is valid for
/// `server.<dc>.<domain>`, so an agent holding a client certificate of the same CA cannot
/// vote, append entries or install a snapshot. Agents' reads and writes stay open to any
/// certificate of the CA.
async fn only_servers(
    axum::extract::State(state): axum::extract::State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let wanted = state
        .config
        .rpc_tls
        .as_ref()
        .and_then(|t| t.raft_peer_name.as_deref());
    if let Some(name) = wanted {
        let peer = request
            .extensions()
            .get::<concord_net::tls::PeerCertificates>();
        if !concord_net::tls::peer_is(peer, name) {
            tracing::warn!(path = %request.uri().path(), "refused Raft RPC from a peer without a {name} certificate");
            return error::RpcFailure(concord_api::rpc::RpcError::PermissionDenied(format!(
                "Permission denied: Raft RPC needs a certificate for {name}"
            )))
            .into_response();
        }
    }
    next.run(request).await
}
