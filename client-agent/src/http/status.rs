//! `/v1/status/*`: Raft leader and peers.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use concord_api::rpc::{Consistency, Query, QueryOptions, QueryResult};

use super::{unexpected, ApiResult, AppState, Params};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/status/leader", get(leader))
        .route("/v1/status/peers", get(peers))
}

async fn raft_status(s: &AppState, params: &Params) -> ApiResult<(String, Vec<String>)> {
    s.check_common(params)?;
    // Status must answer without a leader (`""`), so it is always a local, stale read.
    let options = QueryOptions {
        consistency: Consistency::Stale,
        ..QueryOptions::default()
    };
    match s.client.read(Query::RaftStatus, options).await?.result {
        QueryResult::RaftStatus { leader, peers } => Ok((leader, peers)),
        other => Err(unexpected(other)),
    }
}

async fn leader(State(s): State<AppState>, params: Params) -> ApiResult {
    let (leader, _) = raft_status(&s, &params).await?;
    Ok(s.ok(&params, None, &leader))
}

async fn peers(State(s): State<AppState>, params: Params) -> ApiResult {
    let (_, peers) = raft_status(&s, &params).await?;
    Ok(s.ok(&params, None, &peers))
}
