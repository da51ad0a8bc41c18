//! `/v1/catalog/*`: the servers' replicated catalog (every read is a server RPC and may
//! block with `?index`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, put};
use axum::Router;
use concord_api::catalog::{DeregisterRequest, RegisterRequest, ServiceNode};
use concord_api::decode::decode_lenient;
use concord_api::rpc::{Query, QueryResult, WriteRequest};

use super::{unexpected, ApiError, ApiResult, AppState, Params};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/catalog/register", put(register))
        .route("/v1/catalog/deregister", put(deregister))
        .route("/v1/catalog/datacenters", get(datacenters))
        .route("/v1/catalog/nodes", get(nodes))
        .route("/v1/catalog/services", get(services))
        .route("/v1/catalog/service/{name}", get(service))
        .route("/v1/catalog/node/{node}", get(node))
        .route("/v1/catalog/connect/{service}", get(connect))
}

async fn register(State(s): State<AppState>, params: Params, body: Bytes) -> ApiResult {
    s.check_common(&params)?;
    let mut req: RegisterRequest = decode_lenient(&body)
        .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?;
    if req.node.is_empty() {
        return Err(ApiError::BadRequest("Must provide node".to_string()));
    }
    if req.address.is_empty() && !req.skip_node_update {
        return Err(ApiError::BadRequest("Must provide address".to_string()));
    }
    s.check_body_datacenter(&req.datacenter)?;
    if req.datacenter.is_empty() {
        req.datacenter = s.config.datacenter.clone();
    }
    // Consul's defaults for checks in a catalog registration: the node is the request's,
    // the ID defaults to the name.
    let node = req.node.clone();
    for check in req.check.iter_mut().chain(req.checks.iter_mut()) {
        if check.node.is_empty() {
            check.node = node.clone();
        }
        if check.check_id.is_empty() {
            check.check_id = check.name.clone();
        }
        if check.check_id.is_empty() {
            return Err(ApiError::BadRequest("Missing check ID or name".to_string()));
        }
    }
    if let Some(svc) = req.service.as_mut() {
        if svc.service.is_empty() {
            return Err(ApiError::BadRequest(
                "Must provide service name".to_string(),
            ));
        }
        if svc.id.is_empty() {
            svc.id = svc.service.clone();
        }
    }
    s.client.write(WriteRequest::Register(req)).await?;
    Ok(s.ok(&params, None, &true))
}

async fn deregister(State(s): State<AppState>, params: Params, body: Bytes) -> ApiResult {
    s.check_common(&params)?;
    let req: DeregisterRequest = decode_lenient(&body)
        .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?;
    if req.node.is_empty() {
        return Err(ApiError::BadRequest("Must provide node".to_string()));
    }
    s.check_body_datacenter(&req.datacenter)?;
    s.client.write(WriteRequest::Deregister(req)).await?;
    Ok(s.ok(&params, None, &true))
}

/// Only one datacenter exists until WAN federation; it needs no leader, as in Consul.
async fn datacenters(State(s): State<AppState>, params: Params) -> ApiResult {
    s.check_common(&params)?;
    Ok(s.ok(&params, None, &vec![s.config.datacenter.clone()]))
}

async fn nodes(State(s): State<AppState>, params: Params) -> ApiResult {
    let node_meta = params.node_meta()?;
    match s.read(&params, Query::Nodes { node_meta }).await? {
        (meta, QueryResult::Nodes(n)) => s.ok_filtered(&params, Some(meta), &n),
        (_, other) => Err(unexpected(other)),
    }
}

async fn services(State(s): State<AppState>, params: Params) -> ApiResult {
    let node_meta = params.node_meta()?;
    if let Some(filter) = params.filter()? {
        return filtered_services(&s, &params, &filter, &node_meta).await;
    }
    match s.read(&params, Query::Services { node_meta }).await? {
        (meta, QueryResult::Services(m)) => Ok(s.ok(&params, Some(meta), &m)),
        (_, other) => Err(unexpected(other)),
    }
}

async fn service(State(s): State<AppState>, Path(name): Path<String>, params: Params) -> ApiResult {
    let query = Query::ServiceNodes {
        service: name,
        tags: params.all("tag"),
        node_meta: params.node_meta()?,
    };
    match s.read(&params, query).await? {
        // No cluster peering exists, so every peer name is unknown: nothing matches.
        (meta, QueryResult::ServiceNodes(_)) if params.names_peer() => {
            Ok(s.ok(&params, Some(meta), &Vec::<()>::new()))
        }
        (meta, QueryResult::ServiceNodes(rows)) => s.ok_filtered(&params, Some(meta), &rows),
        (_, other) => Err(unexpected(other)),
    }
}

async fn node(State(s): State<AppState>, Path(node): Path<String>, params: Params) -> ApiResult {
    let filter = params.filter()?;
    match s.read(&params, Query::NodeServices { node }).await? {
        (meta, QueryResult::NodeServices(Some(n))) if filter.is_some() => {
            // Consul filters the node's services, not the node itself.
            let mut value = serde_json::to_value(&n)
                .map_err(|e| ApiError::Internal(format!("encoding response: {e}")))?;
            if let (Some(f), Some(services)) = (filter, value.get_mut("Services")) {
                *services = f.apply(services.take());
            }
            Ok(s.ok(&params, Some(meta), &value))
        }
        (meta, QueryResult::NodeServices(n)) => Ok(s.ok(&params, Some(meta), &n)),
        (_, other) => Err(unexpected(other)),
    }
}

/// `/v1/catalog/services?filter=`: Consul filters the flat service rows (selectors like
/// `ServiceName`, `ServiceTags`, `NodeMeta`) before grouping them into name → tags, so this
/// reads every instance and groups here.
async fn filtered_services(
    s: &AppState,
    params: &Params,
    filter: &crate::filter::Filter,
    node_meta: &[(String, String)],
) -> ApiResult {
    let (meta, instances) = match s.read(params, Query::CatalogDump).await? {
        (meta, QueryResult::CatalogDump { instances, .. }) => (meta, instances),
        (_, other) => return Err(unexpected(other)),
    };
    let mut grouped: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        std::collections::BTreeMap::new();
    for entry in instances {
        if !node_meta
            .iter()
            .all(|(k, v)| entry.node.meta.get(k) == Some(v))
        {
            continue;
        }
        let row = ServiceNode::new(&entry.node, &entry.service);
        let value = serde_json::to_value(&row)
            .map_err(|e| ApiError::Internal(format!("encoding row: {e}")))?;
        if filter.matches(&value) {
            grouped
                .entry(row.service_name)
                .or_default()
                .extend(row.service_tags);
        }
    }
    let map: std::collections::BTreeMap<String, Vec<String>> = grouped
        .into_iter()
        .map(|(name, tags)| (name, tags.into_iter().collect()))
        .collect();
    Ok(s.ok(params, Some(meta), &map))
}

/// `/v1/catalog/connect/:service`: the Connect-capable instances as flat catalog rows.
async fn connect(State(s): State<AppState>, Path(name): Path<String>, params: Params) -> ApiResult {
    let (meta, rows) = super::health::connect_instances(&s, &params, &name).await?;
    let rows: Vec<ServiceNode> = rows
        .iter()
        .map(|e| ServiceNode::new(&e.node, &e.service))
        .collect();
    s.ok_filtered(&params, Some(meta), &rows)
}
