//! `/v1/operator/raft/*` and `/v1/operator/autopilot/*`: the servers' Raft configuration,
//! removing a peer, leadership transfer, and autopilot's settings and health. The servers
//! answer from Raft itself (`Query::Operator`, `WriteRequest::Operator`); reads go to the
//! leader unless `?stale`. (`/v1/operator/keyring` lives with the gossip pool, in `members`.)
//!
//! ACLs, as Consul: reads need `operator:read`, changes `operator:write`.

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{delete, get, post};
use axum::Router;
use concord_api::acl::authorizer::Level;
use concord_api::decode::decode_lenient;
use concord_api::operator::{AutopilotConfig, OperatorQuery, OperatorResult, OperatorWrite};
use concord_api::rpc::{Query, QueryMeta, QueryOptions, QueryResult, WriteRequest, WriteResult};
use serde_json::json;

use super::authz::{require, Need};
use super::{ApiError, ApiResult, AppState, Common, ReadQuery};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/operator/raft/configuration", get(configuration))
        .route("/v1/operator/raft/peer", delete(remove_peer))
        .route("/v1/operator/raft/transfer-leader", post(transfer_leader))
        .route(
            "/v1/operator/autopilot/configuration",
            get(get_config).put(set_config),
        )
        .route("/v1/operator/autopilot/health", get(health))
        .route("/v1/operator/autopilot/state", get(state))
}

/// One operator read, with its metadata.
async fn read(
    s: &AppState,
    query: OperatorQuery,
    options: QueryOptions,
) -> Result<(QueryMeta, OperatorResult), ApiError> {
    let response = s.rpc.read(Query::Operator(query), options).await?;
    match response.result {
        QueryResult::Operator(result) => Ok((response.meta, result)),
        other => Err(ApiError::Internal(format!(
            "unexpected RPC result: {other:?}"
        ))),
    }
}

/// One operator change, done by the leader.
async fn write(s: &AppState, op: OperatorWrite) -> Result<OperatorResult, ApiError> {
    let response = s.rpc.write(WriteRequest::Operator(op)).await?;
    match response.result {
        WriteResult::Operator(result) => Ok(result),
        other => Err(ApiError::Internal(format!(
            "unexpected RPC result: {other:?}"
        ))),
    }
}

fn unexpected(result: OperatorResult) -> ApiError {
    ApiError::Internal(format!("unexpected operator result: {result:?}"))
}

async fn configuration(State(s): State<AppState>, q: ReadQuery) -> ApiResult {
    require(&s, q.token.as_deref(), &[Need::operator(Level::Read)]).await?;
    match read(&s, OperatorQuery::RaftConfiguration, q.options).await? {
        (meta, OperatorResult::RaftConfiguration(config)) => Ok(q.ok(Some(meta), &config)),
        (_, other) => Err(unexpected(other)),
    }
}

async fn remove_peer(State(s): State<AppState>, c: Common) -> ApiResult {
    require(&s, c.token.as_deref(), &[Need::operator(Level::Write)]).await?;
    let id = c
        .params
        .get("id")
        .filter(|v| !v.is_empty())
        .map(String::from);
    let address = c
        .params
        .get("address")
        .filter(|v| !v.is_empty())
        .map(String::from);
    if id.is_none() && address.is_none() {
        return Err(ApiError::BadRequest(
            "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove"
                .to_string(),
        ));
    }
    write(&s, OperatorWrite::RemovePeer { id, address }).await?;
    Ok(super::empty_ok())
}

async fn transfer_leader(State(s): State<AppState>, c: Common) -> ApiResult {
    require(&s, c.token.as_deref(), &[Need::operator(Level::Write)]).await?;
    let id = c
        .params
        .get("id")
        .filter(|v| !v.is_empty())
        .map(String::from);
    let result = write(&s, OperatorWrite::TransferLeader { id }).await?;
    Ok(c.ok(
        None,
        &json!({ "Success": matches!(result, OperatorResult::Bool(true)) }),
    ))
}

async fn get_config(State(s): State<AppState>, q: ReadQuery) -> ApiResult {
    require(&s, q.token.as_deref(), &[Need::operator(Level::Read)]).await?;
    match read(&s, OperatorQuery::AutopilotConfig, q.options).await? {
        (meta, OperatorResult::AutopilotConfig(config)) => Ok(q.ok(Some(meta), &config)),
        (_, other) => Err(unexpected(other)),
    }
}

async fn set_config(State(s): State<AppState>, c: Common, body: Bytes) -> ApiResult {
    require(&s, c.token.as_deref(), &[Need::operator(Level::Write)]).await?;
    let config: AutopilotConfig = decode_lenient(&body)
        .map_err(|e| ApiError::BadRequest(format!("Error parsing autopilot config: {e}")))?;
    let cas = match c.params.get("cas") {
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("Error parsing cas value: {v:?}")))?,
        ),
        None => None,
    };
    let done = write(&s, OperatorWrite::SetAutopilotConfig { config, cas }).await?;
    Ok(c.ok(None, &matches!(done, OperatorResult::Bool(true))))
}

async fn health(State(s): State<AppState>, q: ReadQuery) -> ApiResult {
    require(&s, q.token.as_deref(), &[Need::operator(Level::Read)]).await?;
    match read(&s, OperatorQuery::AutopilotHealth, q.options).await? {
        // Consul answers 429 when the cluster is unhealthy, so load balancers can probe it.
        (meta, OperatorResult::Health(h)) if h.healthy => Ok(q.ok(Some(meta), &h)),
        (meta, OperatorResult::Health(h)) => {
            Ok(q.json(axum::http::StatusCode::TOO_MANY_REQUESTS, Some(meta), &h))
        }
        (_, other) => Err(unexpected(other)),
    }
}

async fn state(State(s): State<AppState>, q: ReadQuery) -> ApiResult {
    require(&s, q.token.as_deref(), &[Need::operator(Level::Read)]).await?;
    match read(&s, OperatorQuery::AutopilotState, q.options).await? {
        (meta, OperatorResult::State(state)) => Ok(q.ok(Some(meta), &state)),
        (_, other) => Err(unexpected(other)),
    }
}

#[cfg(test)]
mod tests;
