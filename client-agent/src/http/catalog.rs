//! `/v1/catalog/*`: the servers' replicated catalog (every read is a server RPC and may
//! block with `?index`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, put};
use axum::Router;
use concord_api::catalog::{DeregisterRequest, RegisterRequest, ServiceNode};
use concord_api::decode::decode_lenient;
use concord_api::rpc::{Query, QueryResult};

use super::reply::encode;
use super::{check_datacenter, ApiError, ApiResult, AppState, Common, ReadQuery};

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

async fn register(State(s): State<AppState>, c: Common, body: Bytes) -> ApiResult {
    let mut req: RegisterRequest = decode_lenient(&body)
        .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?;
    if req.node.is_empty() {
        return Err(ApiError::BadRequest("Must provide node".to_string()));
    }
    if req.address.is_empty() && !req.skip_node_update {
        return Err(ApiError::BadRequest("Must provide address".to_string()));
    }
    check_datacenter(&s.config, &req.datacenter)?;
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
        // Consul's `vetRegisterWithACL`: a check belongs to the node it is registered with
        // (compared ignoring case, as node names are); its RPC error is a 500.
        if !check.node.eq_ignore_ascii_case(&node) {
            return Err(ApiError::Internal(format!(
                "Node '{}' for check '{}' doesn't match register request node '{node}'",
                check.node, check.check_id
            )));
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
    s.rpc.register(req).await?;
    Ok(c.ok(None, &true))
}

async fn deregister(State(s): State<AppState>, c: Common, body: Bytes) -> ApiResult {
    let req: DeregisterRequest = decode_lenient(&body)
        .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?;
    if req.node.is_empty() {
        return Err(ApiError::BadRequest("Must provide node".to_string()));
    }
    check_datacenter(&s.config, &req.datacenter)?;
    s.rpc.deregister(req).await?;
    Ok(c.ok(None, &true))
}

/// Only one datacenter exists until WAN federation; it needs no leader, as in Consul.
async fn datacenters(State(s): State<AppState>, c: Common) -> ApiResult {
    Ok(c.ok(None, &vec![s.config.datacenter.clone()]))
}

async fn nodes(State(s): State<AppState>, q: ReadQuery) -> ApiResult {
    let (meta, mut nodes) = s.rpc.nodes(q.node_meta.clone(), q.options).await?;
    super::near::sort(&s, &q, &mut nodes, |n| &n.node);
    q.reply(Some(meta), &nodes)
}

async fn services(State(s): State<AppState>, headers: HeaderMap, q: ReadQuery) -> ApiResult {
    if let Some(filter) = &q.filter {
        return filtered_services(&s, &q, filter).await;
    }
    if q.params.flag("cached") {
        let query = Query::Services {
            node_meta: q.node_meta.clone(),
        };
        let (response, cache) = super::health::cached_read(&s, &headers, &q, query).await?;
        let QueryResult::Services(services) = &response.result else {
            return Err(super::health::unexpected(&response.result));
        };
        let reply = q.ok(Some(response.meta), services);
        return Ok(super::health::with_cache_headers(reply, Some(cache)));
    }
    let (meta, services) = s.rpc.services(q.node_meta.clone(), q.options).await?;
    Ok(q.ok(Some(meta), &services))
}

async fn service(State(s): State<AppState>, Path(name): Path<String>, q: ReadQuery) -> ApiResult {
    let query = Query::ServiceNodes {
        service: name,
        tags: q.params.all("tag"),
        node_meta: q.node_meta.clone(),
    };
    let (meta, mut rows) = s.rpc.service_nodes(query, q.options).await?;
    if q.params.flag("merge-central-config") {
        super::central_config::Central::load(&s)
            .await?
            .merge_catalog(&mut rows);
    }
    if q.params.names_peer() {
        // No cluster peering exists, so every peer name is unknown: nothing matches.
        return Ok(q.ok(Some(meta), &Vec::<()>::new()));
    }
    super::near::sort(&s, &q, &mut rows, |r| &r.node);
    q.reply(Some(meta), &rows)
}

async fn node(State(s): State<AppState>, Path(node): Path<String>, q: ReadQuery) -> ApiResult {
    let (meta, services) = s.rpc.node_services(node, q.options).await?;
    match (&q.filter, services) {
        (Some(filter), Some(n)) => {
            // Consul filters the node's services, not the node itself.
            let mut value = encode(&n)?;
            if let Some(services) = value.get_mut("Services") {
                *services = filter.apply(services.take());
            }
            Ok(q.ok(Some(meta), &value))
        }
        (_, n) => Ok(q.ok(Some(meta), &n)),
    }
}

/// `/v1/catalog/services?filter=`: Consul filters the flat service rows (selectors like
/// `ServiceName`, `ServiceTags`, `NodeMeta`) before grouping them into name → tags, so this
/// reads every instance and groups here.
async fn filtered_services(
    s: &AppState,
    q: &ReadQuery,
    filter: &crate::filter::Filter,
) -> ApiResult {
    let (meta, (_, instances)) = s.rpc.catalog_dump(q.options).await?;
    let mut grouped: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        std::collections::BTreeMap::new();
    for entry in instances {
        if !q
            .node_meta
            .iter()
            .all(|(k, v)| entry.node.meta.get(k) == Some(v))
        {
            continue;
        }
        let row = ServiceNode::new(&entry.node, &entry.service);
        if filter.matches(&encode(&row)?) {
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
    Ok(q.ok(Some(meta), &map))
}

/// `/v1/catalog/connect/:service`: the Connect-capable instances as flat catalog rows.
async fn connect(State(s): State<AppState>, Path(name): Path<String>, q: ReadQuery) -> ApiResult {
    let (meta, rows) = super::health::connect_instances(&s, &q, &name).await?;
    let rows: Vec<ServiceNode> = rows
        .iter()
        .map(|e| ServiceNode::new(&e.node, &e.service))
        .collect();
    q.reply(Some(meta), &rows)
}
