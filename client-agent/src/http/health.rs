//! `/v1/health/*`: health of services and nodes from the servers' catalog.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;
use concord_api::catalog::CheckStatus;
use concord_api::rpc::{Query, QueryResult};

use super::{unexpected, ApiError, ApiResult, AppState, Params};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/health/service/{name}", get(service))
        .route("/v1/health/checks/{service}", get(service_checks))
        .route("/v1/health/node/{node}", get(node_checks))
        .route("/v1/health/state/{state}", get(state))
}

async fn service(State(s): State<AppState>, Path(name): Path<String>, params: Params) -> ApiResult {
    let query = Query::HealthService {
        service: name,
        tags: params.all("tag"),
        passing: params.flag("passing"),
        node_meta: params.node_meta()?,
    };
    match s.read(&params, query).await? {
        // No cluster peering exists, so every peer name is unknown: nothing matches.
        (meta, QueryResult::Health(_)) if params.names_peer() => {
            Ok(s.ok(&params, Some(meta), &Vec::<()>::new()))
        }
        (meta, QueryResult::Health(rows)) => s.ok_filtered(&params, Some(meta), &rows),
        (_, other) => Err(unexpected(other)),
    }
}

async fn service_checks(
    State(s): State<AppState>,
    Path(service): Path<String>,
    params: Params,
) -> ApiResult {
    let query = Query::ServiceChecks {
        service,
        node_meta: params.node_meta()?,
    };
    checks(&s, &params, query).await
}

async fn node_checks(
    State(s): State<AppState>,
    Path(node): Path<String>,
    params: Params,
) -> ApiResult {
    checks(&s, &params, Query::NodeChecks { node }).await
}

async fn state(State(s): State<AppState>, Path(state): Path<String>, params: Params) -> ApiResult {
    let state = match state.as_str() {
        "any" => None,
        other => Some(
            CheckStatus::parse(other)
                .ok_or_else(|| ApiError::BadRequest(format!("Invalid check state: \"{other}\"")))?,
        ),
    };
    let query = Query::ChecksInState {
        state,
        node_meta: params.node_meta()?,
    };
    checks(&s, &params, query).await
}

async fn checks(s: &AppState, params: &Params, query: Query) -> ApiResult {
    match s.read(params, query).await? {
        (meta, QueryResult::Checks(c)) => s.ok_filtered(params, Some(meta), &c),
        (_, other) => Err(unexpected(other)),
    }
}
