//! `/v1/status/*`: Raft leader and peers.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use concord_api::rpc::{Consistency, QueryOptions};

use super::{ApiResult, AppState, Common};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/status/leader", get(leader))
        .route("/v1/status/peers", get(peers))
}

async fn raft_status(s: &AppState) -> ApiResult<(String, Vec<String>)> {
    // Status must answer without a leader (`""`), so it is always a local, stale read.
    let options = QueryOptions {
        consistency: Consistency::Stale,
        ..QueryOptions::default()
    };
    let (_, status) = s.rpc.raft_status(options).await?;
    Ok(status)
}

async fn leader(State(s): State<AppState>, c: Common) -> ApiResult {
    let (leader, _) = raft_status(&s).await?;
    Ok(c.ok(None, &leader))
}

async fn peers(State(s): State<AppState>, c: Common) -> ApiResult {
    let (_, peers) = raft_status(&s).await?;
    Ok(c.ok(None, &peers))
}
