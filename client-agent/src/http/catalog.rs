//! `/v1/catalog/*`: the servers' replicated catalog (every read is a server RPC and may
//! block with `?index`).
//!
//! ACLs, as Consul: register and deregister are vetted by
//! [`concord_api::acl::catalog`] against the node as stored, before forwarding; reads are
//! filtered to the nodes (`node:read`) and services (`service:read`) the token may see;
//! `/v1/catalog/connect/:service` needs `service:read` on the service.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, put};
use axum::Router;
use concord_api::acl::authorizer::{Authorizer, Level};
use concord_api::acl::catalog::{vet_deregister, vet_register};
use concord_api::catalog::{
    DeregisterRequest, HealthCheck, NodeServices, RegisterRequest, ServiceNode,
};
use concord_api::decode::decode_lenient;
use concord_api::rpc::{Query, QueryOptions, QueryResult};

use super::authz::{authorizer, hide, mark, require, sees, Need};
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
    let authz = authorizer(&s, c.token.as_deref()).await?;
    if !authz.is_management() {
        let stored = stored_node(&s, &req.node).await?;
        vet_register(&authz, &req, stored.as_ref())?;
    }
    let token = s.acl.request_secret(c.token.as_deref());
    s.rpc.register(req, token).await?;
    Ok(c.ok(None, &true))
}

async fn deregister(State(s): State<AppState>, c: Common, body: Bytes) -> ApiResult {
    let req: DeregisterRequest = decode_lenient(&body)
        .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?;
    if req.node.is_empty() {
        return Err(ApiError::BadRequest("Must provide node".to_string()));
    }
    check_datacenter(&s.config, &req.datacenter)?;
    let authz = authorizer(&s, c.token.as_deref()).await?;
    if !authz.is_management() {
        let stored = stored_node(&s, &req.node).await?;
        let check = match req.check_id.as_deref() {
            Some(id) => stored_check(&s, &req.node, id).await?,
            None => None,
        };
        vet_deregister(&authz, &req, stored.as_ref(), check.as_ref())?;
    }
    let token = s.acl.request_secret(c.token.as_deref());
    s.rpc.deregister(req, token).await?;
    Ok(c.ok(None, &true))
}

/// The node as the catalog holds it, for vetting a write (a leader read, so it is the
/// record the write will change).
pub(super) async fn stored_node(
    s: &AppState,
    node: &str,
) -> Result<Option<NodeServices>, ApiError> {
    let (_, stored) = s
        .rpc
        .node_services(node.to_string(), QueryOptions::default())
        .await?;
    Ok(stored)
}

async fn stored_check(s: &AppState, node: &str, id: &str) -> Result<Option<HealthCheck>, ApiError> {
    let query = Query::NodeChecks {
        node: node.to_string(),
    };
    let (_, checks) = s.rpc.checks(query, QueryOptions::default()).await?;
    Ok(checks.into_iter().find(|c| c.check_id == id))
}

/// Only one datacenter exists until WAN federation; it needs no leader, as in Consul.
async fn datacenters(State(s): State<AppState>, c: Common) -> ApiResult {
    Ok(c.ok(None, &vec![s.config.datacenter.clone()]))
}

async fn nodes(State(s): State<AppState>, q: ReadQuery) -> ApiResult {
    let authz = authorizer(&s, q.token.as_deref()).await?;
    let (meta, mut nodes) = s.rpc.nodes(q.node_meta.clone(), q.options).await?;
    let hidden = hide(&mut nodes, |n| {
        Need::node(&n.node, Level::Read).allowed(&authz)
    });
    super::near::sort(&s, &q, &mut nodes, |n| &n.node);
    Ok(mark(q.reply(Some(meta), &nodes)?, hidden))
}

async fn services(State(s): State<AppState>, headers: HeaderMap, q: ReadQuery) -> ApiResult {
    let authz = authorizer(&s, q.token.as_deref()).await?;
    let readable =
        |(name, _): &(String, Vec<String>)| Need::service(name, Level::Read).allowed(&authz);
    if let Some(filter) = &q.filter {
        return filtered_services(&s, &q, filter, &authz).await;
    }
    if q.params.flag("cached") {
        let query = Query::Services {
            node_meta: q.node_meta.clone(),
        };
        let (response, cache) = super::health::cached_read(&s, &headers, &q, query).await?;
        let QueryResult::Services(services) = &response.result else {
            return Err(super::health::unexpected(&response.result));
        };
        let mut services = services.clone();
        let hidden = hide(&mut services, readable);
        let reply = mark(q.ok(Some(response.meta), &services), hidden);
        return Ok(super::health::with_cache_headers(reply, Some(cache)));
    }
    let (meta, mut services) = s.rpc.services(q.node_meta.clone(), q.options).await?;
    let hidden = hide(&mut services, readable);
    Ok(mark(q.ok(Some(meta), &services), hidden))
}

async fn service(State(s): State<AppState>, Path(name): Path<String>, q: ReadQuery) -> ApiResult {
    let authz = authorizer(&s, q.token.as_deref()).await?;
    let query = Query::ServiceNodes {
        service: name,
        tags: q.params.all("tag"),
        node_meta: q.node_meta.clone(),
    };
    let (meta, mut rows) = s.rpc.service_nodes(query, q.options).await?;
    let hidden = hide(&mut rows, |r| sees(&authz, &r.node, &r.service_name));
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
    Ok(mark(q.reply(Some(meta), &rows)?, hidden))
}

/// A node the token may not read is `null`, as a missing one (Consul's
/// `filterNodeServices`); its services are filtered by `service:read`.
async fn node(State(s): State<AppState>, Path(node): Path<String>, q: ReadQuery) -> ApiResult {
    let authz = authorizer(&s, q.token.as_deref()).await?;
    let (meta, mut services) = s.rpc.node_services(node, q.options).await?;
    let mut hidden = false;
    if let Some(n) = &services {
        if !Need::node(&n.node.node, Level::Read).allowed(&authz) {
            services = None;
            hidden = true;
        }
    }
    if let Some(n) = services.as_mut() {
        hidden |= hide(&mut n.services, |(_, svc)| {
            Need::service(&svc.service, Level::Read).allowed(&authz)
        });
    }
    Ok(mark(node_reply(&q, meta, services)?, hidden))
}

fn node_reply(
    q: &ReadQuery,
    meta: concord_api::rpc::QueryMeta,
    services: Option<NodeServices>,
) -> ApiResult {
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
    authz: &Authorizer,
) -> ApiResult {
    let (meta, (_, mut instances)) = s.rpc.catalog_dump(q.options).await?;
    let hidden = hide(&mut instances, |e| {
        Need::service(&e.service.service, Level::Read).allowed(authz)
    });
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
    Ok(mark(q.ok(Some(meta), &map), hidden))
}

/// `/v1/catalog/connect/:service`: the Connect-capable instances as flat catalog rows.
async fn connect(State(s): State<AppState>, Path(name): Path<String>, q: ReadQuery) -> ApiResult {
    let authz = require(&s, q.token.as_deref(), &[Need::service(&name, Level::Read)]).await?;
    let (meta, mut rows) = super::health::connect_instances(&s, &q, &name).await?;
    let hidden = hide(&mut rows, |e| {
        sees(&authz, &e.node.node, &e.service.service)
    });
    let rows: Vec<ServiceNode> = rows
        .iter()
        .map(|e| ServiceNode::new(&e.node, &e.service))
        .collect();
    Ok(mark(q.reply(Some(meta), &rows)?, hidden))
}
