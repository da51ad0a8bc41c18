//! `/v1/health/*`: health of services and nodes from the servers' catalog.
//!
//! ACLs, as Consul: every list is filtered to the nodes (`node:read`) and services
//! (`service:read`) the token may see, a check by its node and its service;
//! `/v1/health/connect/:service` needs `service:read` on the service.

use axum::extract::{Path, State};
use axum::http::header::{HeaderMap, HeaderValue, AGE, CACHE_CONTROL};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use concord_api::acl::authorizer::{Authorizer, Level};
use concord_api::catalog::{CheckServiceNode, CheckStatus, HealthCheck, NodeService};
use concord_api::rpc::{Query, QueryMeta, QueryResult, RpcError};

use crate::cache::{CacheControl, CacheMeta};

use super::authz::sees;
use super::authz::{authorizer, hide, mark, require, Need};
use super::{ApiError, ApiResult, AppState, ReadQuery};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/health/service/{name}", get(service))
        .route("/v1/health/checks/{service}", get(service_checks))
        .route("/v1/health/node/{node}", get(node_checks))
        .route("/v1/health/state/{state}", get(state))
        .route("/v1/health/connect/{service}", get(connect))
}

async fn service(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    q: ReadQuery,
) -> ApiResult {
    let authz = authorizer(&s, q.token.as_deref()).await?;
    let query = Query::HealthService {
        service: name,
        tags: q.params.all("tag"),
        passing: q.params.flag("passing"),
        node_meta: q.node_meta.clone(),
    };
    let (meta, mut rows, cache) = if q.params.flag("cached") {
        let (response, cache) = cached_read(&s, &headers, &q, query).await?;
        let QueryResult::Health(rows) = response.result else {
            return Err(unexpected(&response.result));
        };
        (response.meta, rows, Some(cache))
    } else {
        let (meta, rows) = s.rpc.health_service(query, q.options).await?;
        (meta, rows, None)
    };
    let hidden = hide_rows(&authz, &mut rows);
    if q.params.flag("merge-central-config") {
        super::central_config::Central::load(&s)
            .await?
            .merge_health(&mut rows);
    }
    if q.params.names_peer() {
        // No cluster peering exists, so every peer name is unknown: nothing matches.
        return Ok(q.ok(Some(meta), &Vec::<()>::new()));
    }
    super::near::sort(&s, &q, &mut rows, |r| &r.node.node);
    let reply = mark(q.reply(Some(meta), &rows)?, hidden);
    Ok(with_cache_headers(reply, cache))
}

/// Keeps the instances (and, of those, the checks) the token may see; true if something
/// was hidden.
fn hide_rows(authz: &Authorizer, rows: &mut Vec<CheckServiceNode>) -> bool {
    let mut hidden = hide(rows, |r| sees(authz, &r.node.node, &r.service.service));
    for row in rows.iter_mut() {
        hidden |= hide(&mut row.checks, |c| check_visible(authz, c));
    }
    hidden
}

/// Whether the token may see a check: its node, and its service if it has one.
pub(super) fn check_visible(authz: &Authorizer, check: &HealthCheck) -> bool {
    Need::node(&check.node, Level::Read).allowed(authz)
        && (check.service_name.is_empty()
            || Need::service(&check.service_name, Level::Read).allowed(authz))
}

/// A `?cached` read through the agent cache. `Cache-Control: max-age=N, stale-if-error=N`
/// as Consul reads it; `?max-age=` (a duration such as `30s`) is accepted as well.
pub(super) async fn cached_read(
    s: &AppState,
    headers: &HeaderMap,
    q: &ReadQuery,
    query: Query,
) -> Result<(concord_api::rpc::ReadResponse, CacheMeta), ApiError> {
    let mut control = match headers.get(CACHE_CONTROL) {
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| ApiError::BadRequest("Cache-Control is not ASCII".to_string()))?;
            CacheControl::parse(text).map_err(ApiError::BadRequest)?
        }
        None => CacheControl::default(),
    };
    if let Some(text) = q.params.get("max-age") {
        let age = concord_api::duration::parse_duration(text)
            .map_err(|e| ApiError::BadRequest(format!("Invalid max-age: {e}")))?;
        control.max_age = Some(age);
    }
    // One cached answer serves every token (refreshed in the background, outside any
    // request), so it is read under the agent's own token; the caller filters it by the
    // request's, as for an uncached read.
    let query = query.authorized(s.acl.agent_secret());
    Ok(s.cache.read(&s.rpc, query, q.options, control).await?)
}

/// Adds Consul's `X-Cache: HIT|MISS` and `Age` (whole seconds) to a `?cached` reply.
pub(super) fn with_cache_headers(mut response: Response, cache: Option<CacheMeta>) -> Response {
    let Some(cache) = cache else {
        return response;
    };
    let headers = response.headers_mut();
    let hit = if cache.hit { "HIT" } else { "MISS" };
    headers.insert("x-cache", HeaderValue::from_static(hit));
    headers.insert(AGE, HeaderValue::from(cache.age.as_secs()));
    response
}

/// A cached entry of the wrong kind: a bug, reported like a server's mismatched reply.
pub(super) fn unexpected(result: &QueryResult) -> ApiError {
    RpcError::Internal(format!("unexpected cached result: {result:?}")).into()
}

async fn service_checks(
    State(s): State<AppState>,
    Path(service): Path<String>,
    q: ReadQuery,
) -> ApiResult {
    let query = Query::ServiceChecks {
        service,
        node_meta: q.node_meta.clone(),
    };
    checks(&s, &q, query).await
}

async fn node_checks(
    State(s): State<AppState>,
    Path(node): Path<String>,
    q: ReadQuery,
) -> ApiResult {
    checks(&s, &q, Query::NodeChecks { node }).await
}

async fn state(State(s): State<AppState>, Path(state): Path<String>, q: ReadQuery) -> ApiResult {
    let state = match state.as_str() {
        "any" => None,
        other => Some(
            CheckStatus::parse(other)
                .ok_or_else(|| ApiError::BadRequest(format!("Invalid check state: \"{other}\"")))?,
        ),
    };
    let query = Query::ChecksInState {
        state,
        node_meta: q.node_meta.clone(),
    };
    checks(&s, &q, query).await
}

async fn checks(s: &AppState, q: &ReadQuery, query: Query) -> ApiResult {
    let authz = authorizer(s, q.token.as_deref()).await?;
    let (meta, mut checks) = s.rpc.checks(query, q.options).await?;
    let hidden = hide(&mut checks, |c| check_visible(&authz, c));
    super::near::sort(s, q, &mut checks, |c| &c.node);
    Ok(mark(q.reply(Some(meta), &checks)?, hidden))
}

/// Instances that accept Connect traffic for `service`: sidecar proxies (`Kind`
/// `connect-proxy`) whose `Proxy.DestinationServiceName` is the service, and the service's own
/// Connect-native instances (`Connect.Native`). Read from the whole catalog and selected
/// here; the index is the catalog's, so blocking wakes on any change to it.
pub(super) async fn connect_instances(
    s: &AppState,
    q: &ReadQuery,
    service: &str,
) -> Result<(QueryMeta, Vec<CheckServiceNode>), ApiError> {
    let (meta, (_, instances)) = s.rpc.catalog_dump(q.options).await?;
    if q.params.names_peer() {
        return Ok((meta, Vec::new()));
    }
    let tags = q.params.all("tag");
    let node_meta = &q.node_meta;
    let passing = q.params.flag("passing");
    let rows = instances
        .into_iter()
        .filter(|e| is_connect_capable(&e.service, service))
        .filter(|e| {
            tags.iter()
                .all(|t| e.service.tags.iter().any(|x| x.eq_ignore_ascii_case(t)))
        })
        .filter(|e| node_meta.iter().all(|(k, v)| e.node.meta.get(k) == Some(v)))
        .filter(|e| !passing || e.aggregate_status() == CheckStatus::Passing)
        .collect();
    Ok((meta, rows))
}

fn is_connect_capable(svc: &NodeService, service: &str) -> bool {
    let proxy_for = |field: &str| {
        svc.proxy
            .as_ref()
            .and_then(|p| p.get(field))
            .and_then(|v| v.as_str())
            == Some(service)
    };
    let native = svc
        .connect
        .as_ref()
        .and_then(|c| c.get("Native"))
        .and_then(serde_json::Value::as_bool)
        == Some(true);
    (svc.kind == "connect-proxy" && proxy_for("DestinationServiceName"))
        || (svc.service == service && native)
}

async fn connect(State(s): State<AppState>, Path(name): Path<String>, q: ReadQuery) -> ApiResult {
    let authz = require(&s, q.token.as_deref(), &[Need::service(&name, Level::Read)]).await?;
    let (meta, mut rows) = connect_instances(&s, &q, &name).await?;
    let hidden = hide_rows(&authz, &mut rows);
    Ok(mark(q.reply(Some(meta), &rows)?, hidden))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn connect_capable_instances() {
        let proxy = NodeService {
            service: "web-sidecar-proxy".into(),
            kind: "connect-proxy".into(),
            proxy: Some(json!({"DestinationServiceName": "web"})),
            ..NodeService::default()
        };
        let native = NodeService {
            service: "web".into(),
            connect: Some(json!({"Native": true})),
            ..NodeService::default()
        };
        let plain = NodeService {
            service: "web".into(),
            ..NodeService::default()
        };
        assert!(is_connect_capable(&proxy, "web"));
        assert!(!is_connect_capable(&proxy, "db"));
        assert!(is_connect_capable(&native, "web"));
        assert!(!is_connect_capable(&plain, "web"));
    }
}
