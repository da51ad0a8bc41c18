//! `/v1/agent/*`: this agent's own services, checks, membership and housekeeping. None of
//! these read the servers' catalog: the agent's local state answers.
//!
//! ACLs, as Consul's `agent_endpoint.go`: `self`, `metrics` (and `monitor`) need
//! `agent:read` on this agent's node name, `reload` and `leave` `agent:write`; the service
//! and check lists are filtered (`service:read`, and `node:read` for node checks); a
//! service's registration, deregistration and maintenance need `service:write` on it (and
//! its proxy destination), node maintenance `node:write`; a check's register, update and
//! TTL marks need `service:write` on its service, or `node:write` for a node check.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, put};
use axum::Router;
use concord_api::acl::authorizer::Level;
use concord_api::acl::catalog::vet_service;
use concord_api::agent::{
    member_status, AgentService, CheckDefinition, CheckUpdate, Member, ServiceDefinition,
};
use concord_api::catalog::{CheckStatus, HealthCheck, NodeService};
use concord_api::decode::decode_lenient;
use serde_json::json;

use super::authz::{authorizer, hide, mark, require, Need};
use super::health::check_visible;
use super::params::Token;
use super::{empty_ok, ApiError, ApiResult, AppState, Common, Params};
use crate::checks::TtlError;
use crate::definition::{attach_to_service, prepare_check};
use crate::membership::{member_json, member_tags};
use crate::metrics::Sample;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/agent/self", get(agent_self))
        .route("/v1/agent/members", get(members))
        .route("/v1/agent/services", get(services))
        .route("/v1/agent/service/{id}", get(service))
        .route("/v1/agent/service/register", put(register_service))
        .route("/v1/agent/service/deregister/{id}", put(deregister_service))
        .route(
            "/v1/agent/service/maintenance/{id}",
            put(service_maintenance),
        )
        .route("/v1/agent/maintenance", put(node_maintenance))
        .route("/v1/agent/checks", get(checks))
        .route("/v1/agent/check/register", put(register_check))
        .route("/v1/agent/check/deregister/{id}", put(deregister_check))
        .route("/v1/agent/check/{action}/{id}", put(check_mark))
        .route("/v1/agent/check/update/{id}", put(check_update))
        .route("/v1/agent/health/service/name/{name}", get(health_by_name))
        .route("/v1/agent/health/service/id/{id}", get(health_by_id))
        .route("/v1/agent/reload", put(reload))
        .route("/v1/agent/leave", put(leave))
        .route("/v1/agent/metrics", get(metrics))
}

fn unknown_service(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "Unknown service ID \"{id}\". Ensure that the service ID is passed, not the service name."
    ))
}

fn unknown_check(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "Unknown check ID \"{id}\". Ensure that the check ID is passed, not the check name."
    ))
}

/// What changing `check` needs: `service:write` on its service, else `node:write`.
fn check_write<'a>(s: &'a AppState, check: &'a HealthCheck) -> Need<'a> {
    if check.service_id.is_empty() {
        Need::node(&s.config.node_name, Level::Write)
    } else {
        Need::service(&check.service_name, Level::Write)
    }
}

/// The local check `id` (404 if unknown), once the token may change it.
async fn writable_check(s: &AppState, token: Option<&str>, id: &str) -> ApiResult<HealthCheck> {
    let check = s
        .local
        .checks()
        .into_iter()
        .find(|c| c.check_id == id)
        .ok_or_else(|| unknown_check(id))?;
    require(s, token, &[check_write(s, &check)]).await?;
    Ok(check)
}

/// The local service `id` (404 if unknown), once the token has `level` on it.
async fn service_with(
    s: &AppState,
    token: Option<&str>,
    id: &str,
    level: Level,
) -> ApiResult<NodeService> {
    let svc = s.local.service(id).ok_or_else(|| unknown_service(id))?;
    require(s, token, &[Need::service(&svc.service, level)]).await?;
    Ok(svc)
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    decode_lenient(body).map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))
}

/// Server statistics for `Stats.consul`, from a local (stale) Raft status read. Clients such
/// as py-consul compare `leader_addr` with `/v1/status/leader`.
async fn server_stats(s: &AppState) -> serde_json::Value {
    use concord_api::rpc::{Consistency, QueryOptions};
    let options = QueryOptions {
        consistency: Consistency::Stale,
        ..QueryOptions::default()
    };
    let (leader_addr, peers) = match s.rpc.raft_status(options).await {
        Ok((_, status)) => status,
        Err(_) => (String::new(), Vec::new()),
    };
    let me = std::net::SocketAddr::new(s.config.advertise_addr, s.config.server_port).to_string();
    json!({
        "server": "true",
        "leader": (leader_addr == me).to_string(),
        "leader_addr": leader_addr,
        "bootstrap": (peers.len() <= 1).to_string(),
        "known_datacenters": "1",
        "num_peers": peers.len().saturating_sub(1).to_string(),
    })
}

/// Consul answers `/v1/agent/self` whatever `?dc` says, so this takes no [`Common`].
async fn agent_self(State(s): State<AppState>, params: Params, token: Token) -> ApiResult {
    let node = &s.config.node_name;
    require(&s, token.as_deref(), &[Need::agent(node, Level::Read)]).await?;
    let reply = Common::unchecked(params, &s.config);
    let c = &s.config;
    let mut stats = json!({
        "agent": {"checks": s.local.checks().len().to_string(), "services": s.local.services().len().to_string()},
        "build": {"version": concord_api::CONSUL_COMPAT_VERSION, "concord": concord_api::CONCORD_VERSION},
    });
    if c.server {
        stats["consul"] = server_stats(&s).await;
    }
    let intention_default = if c.default_intention_allow {
        "allow"
    } else {
        "deny"
    };
    let acl_default = match (c.acl.enabled, c.acl.default_policy) {
        (true, concord_api::acl::authorizer::DefaultPolicy::Deny) => "deny",
        (true, concord_api::acl::authorizer::DefaultPolicy::Allow) => "allow",
        (false, _) => intention_default,
    };
    let body = json!({
        "Config": {
            "Datacenter": c.datacenter,
            "PrimaryDatacenter": c.datacenter,
            "NodeName": c.node_name,
            "NodeID": c.node_id,
            "Server": c.server,
            "Revision": "concord",
            "Version": concord_api::CONSUL_COMPAT_VERSION,
            "BuildDate": "",
            "ConcordVersion": concord_api::CONCORD_VERSION,
        },
        "DebugConfig": {
            "Datacenter": c.datacenter,
            "NodeName": c.node_name,
            "DevMode": c.dev,
            "ServerMode": c.server,
            "AdvertiseAddrLAN": c.advertise_addr.to_string(),
            "DNSDomain": c.dns.domain,
            // The ACL default policy, reported flat before 1.10 and under
            // ACLResolverSettings since; the intention default derives from it (or from
            // `default_intention_policy`), reported as DefaultIntentionPolicy.
            "ACLDefaultPolicy": acl_default,
            "ACLResolverSettings": {"ACLDefaultPolicy": acl_default, "ACLsEnabled": c.acl.enabled},
            "DefaultIntentionPolicy": intention_default,
        },
        "Coord": match &s.membership {
            Some(m) => super::members::coord_json(&m.gossip.coordinate()),
            None => json!({"Vec": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Error": 1.5, "Adjustment": 0.0, "Height": 1.0e-5}),
        },
        "Member": self_member(&s),
        "Stats": stats,
        "Meta": c.node_meta,
        "xDS": null,
    });
    Ok(reply.ok(None, &body))
}

/// This agent as a member: from the pool when there is one, else built from the config.
fn self_member(s: &AppState) -> Member {
    if let Some(m) = &s.membership {
        return member_json(&m.gossip.local_member());
    }
    let c = &s.config;
    let mut tags = member_tags(c, usize::from(c.server));
    tags.remove("segment");
    let mut member = member_json(&concord_net::gossip::Member {
        name: c.node_name.clone(),
        addr: std::net::SocketAddr::new(c.advertise_addr, c.serf_lan_port),
        tags,
        status: concord_net::gossip::MemberStatus::Alive,
    });
    member.status = member_status::ALIVE;
    member
}

/// The LAN pool as this agent sees it (`?filter` applies); without a pool, this agent
/// alone. Concord has no WAN pool: `?wan` on a server shows the server itself.
async fn members(State(s): State<AppState>, c: Common) -> ApiResult {
    if c.params.flag("wan") {
        if !s.config.server {
            return Err(ApiError::Internal(
                "Cannot list WAN members: this agent is not a server".to_string(),
            ));
        }
        // `serf_wan_port` 0: WAN disabled (`ports.serf_wan = -1`), so the WAN pool is empty.
        if s.config.serf_wan_port == 0 {
            return Ok(c.ok(None, &Vec::<Member>::new()));
        }
        // A server's WAN pool names members `<node>.<datacenter>`, on the WAN gossip port.
        let mut member = self_member(&s);
        member.name = format!("{}.{}", s.config.node_name, s.config.datacenter);
        member.port = s.config.serf_wan_port;
        return Ok(c.ok(None, &vec![member]));
    }
    let authz = authorizer(&s, c.token.as_deref()).await?;
    let mut members: Vec<Member> = match &s.membership {
        Some(m) => m.gossip.members().iter().map(member_json).collect(),
        None => vec![self_member(&s)],
    };
    let hidden = hide(&mut members, |m| {
        Need::node(&m.name, Level::Read).allowed(&authz)
    });
    Ok(mark(c.reply(None, &members)?, hidden))
}

fn agent_view(s: &AppState, svc: NodeService) -> AgentService {
    AgentService::new(svc, &s.config.datacenter)
}

async fn services(State(s): State<AppState>, c: Common) -> ApiResult {
    let authz = authorizer(&s, c.token.as_deref()).await?;
    let mut services = s.local.services();
    let hidden = hide(&mut services, |svc| {
        Need::service(&svc.service, Level::Read).allowed(&authz)
    });
    let map: BTreeMap<String, AgentService> = services
        .into_iter()
        .map(|svc| (svc.id.clone(), agent_view(&s, svc)))
        .collect();
    Ok(mark(c.reply(None, &map)?, hidden))
}

/// `GET /v1/agent/service/:id`, with Consul's hash-based blocking: given `?hash=` equal to
/// the service's current `ContentHash`, the answer waits (up to `?wait`, default and cap
/// from the agent's query times) until the hash differs, then carries the new one. The
/// agent's local state wakes the wait on every local change; a change that leaves this
/// service's view as it was keeps waiting. A service removed meanwhile is a 404.
async fn service(State(s): State<AppState>, Path(id): Path<String>, c: Common) -> ApiResult {
    let wait_hash = c
        .params
        .get("hash")
        .filter(|h| !h.is_empty())
        .map(str::to_string);
    let wait = match c.params.get("wait").filter(|w| !w.is_empty()) {
        None => s.config.default_query_time,
        Some(w) => concord_api::duration::parse_duration(w)
            .map_err(|_| ApiError::BadRequest("Invalid wait time".to_string()))?,
    }
    .min(s.config.max_query_time);
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = s.local.subscribe();
    loop {
        changes.borrow_and_update();
        let svc = service_with(&s, c.token.as_deref(), &id, Level::Read).await?;
        let mut svc = agent_view(&s, svc);
        let value = serde_json::to_value(&svc)
            .map_err(|e| ApiError::Internal(format!("encoding service: {e}")))?;
        let hash = content_hash(&value);
        let unchanged = wait_hash.as_deref() == Some(hash.as_str());
        if unchanged && tokio::time::Instant::now() < deadline {
            tokio::select! {
                Ok(()) = changes.changed() => continue,
                _ = tokio::time::sleep_until(deadline) => continue,
            }
        }
        svc.content_hash = hash.clone();
        let mut response = c.ok(None, &svc);
        if let Ok(v) = axum::http::HeaderValue::from_str(&hash) {
            response.headers_mut().insert("x-consul-contenthash", v);
        }
        return Ok(response);
    }
}

#[cfg(test)]
mod tests;

/// A stable digest of a JSON value (FNV-1a over its canonical text), for hash blocking.
fn content_hash(value: &serde_json::Value) -> String {
    let text = value.to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

async fn register_service(State(s): State<AppState>, c: Common, body: Bytes) -> ApiResult {
    let def: ServiceDefinition = decode(&body)?;
    let prepared = s
        .prepare_definition(&def, s.config.enable_script_checks)
        .map_err(ApiError::BadRequest)?;
    let authz = authorizer(&s, c.token.as_deref()).await?;
    for p in &prepared {
        vet_service(&authz, &p.service)?;
    }
    let replace = c.params.flag("replace-existing-checks");
    // The definition as given (with its `SidecarService`) is what a restart re-expands.
    if let Some(parent) = prepared.first() {
        s.persist
            .save_service(&parent.service.id, &def)
            .await
            .map_err(|e| ApiError::Internal(format!("failed persisting service: {e}")))?;
    }
    for p in prepared {
        s.register_service(p, replace).await;
    }
    Ok(empty_ok())
}

async fn deregister_service(
    State(s): State<AppState>,
    Path(id): Path<String>,
    c: Common,
) -> ApiResult {
    service_with(&s, c.token.as_deref(), &id, Level::Write).await?;
    if s.deregister_service(&id).await {
        s.persist
            .remove_service(&id)
            .await
            .map_err(|e| ApiError::Internal(format!("failed removing persisted service: {e}")))?;
        Ok(empty_ok())
    } else {
        Err(unknown_service(&id))
    }
}

fn parse_enable(params: &Params) -> Result<bool, ApiError> {
    match params.get("enable") {
        None | Some("") => Err(ApiError::BadRequest("Missing value for enable".to_string())),
        Some(v) => concord_api::decode::parse_go_bool(v)
            .ok_or_else(|| ApiError::BadRequest(format!("Invalid value for enable: \"{v}\""))),
    }
}

/// Consul's maintenance check IDs.
const NODE_MAINT: &str = "_node_maintenance";
const SERVICE_MAINT_PREFIX: &str = "_service_maintenance:";
const DEFAULT_MAINT_REASON: &str =
    "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.";

async fn service_maintenance(
    State(s): State<AppState>,
    Path(id): Path<String>,
    c: Common,
) -> ApiResult {
    let enable = parse_enable(&c.params)?;
    let svc = service_with(&s, c.token.as_deref(), &id, Level::Write).await?;
    let check_id = format!("{SERVICE_MAINT_PREFIX}{id}");
    if enable {
        let reason = c.params.get("reason").filter(|r| !r.is_empty());
        let mut check = HealthCheck {
            node: s.config.node_name.clone(),
            check_id,
            name: "Service Maintenance Mode".to_string(),
            status: CheckStatus::Critical,
            notes: reason.unwrap_or(DEFAULT_MAINT_REASON).to_string(),
            r#type: "maintenance".to_string(),
            ..HealthCheck::default()
        };
        attach_to_service(&mut check, &svc);
        s.add_static_check(check).await;
    } else {
        s.deregister_check(&check_id).await;
    }
    Ok(empty_ok())
}

async fn node_maintenance(State(s): State<AppState>, c: Common) -> ApiResult {
    let enable = parse_enable(&c.params)?;
    let node = &s.config.node_name;
    require(&s, c.token.as_deref(), &[Need::node(node, Level::Write)]).await?;
    if enable {
        let reason = c.params.get("reason").filter(|r| !r.is_empty());
        let check = HealthCheck {
            node: s.config.node_name.clone(),
            check_id: NODE_MAINT.to_string(),
            name: "Node Maintenance Mode".to_string(),
            status: CheckStatus::Critical,
            notes: reason.unwrap_or(DEFAULT_MAINT_REASON).to_string(),
            r#type: "maintenance".to_string(),
            ..HealthCheck::default()
        };
        s.add_static_check(check).await;
    } else {
        s.deregister_check(NODE_MAINT).await;
    }
    Ok(empty_ok())
}

async fn checks(State(s): State<AppState>, c: Common) -> ApiResult {
    let authz = authorizer(&s, c.token.as_deref()).await?;
    let mut checks = s.local.checks();
    let hidden = hide(&mut checks, |check| check_visible(&authz, check));
    let map: BTreeMap<String, HealthCheck> = checks
        .into_iter()
        .map(|c| (c.check_id.clone(), c))
        .collect();
    Ok(mark(c.reply(None, &map)?, hidden))
}

async fn register_check(State(s): State<AppState>, c: Common, body: Bytes) -> ApiResult {
    let def: CheckDefinition = decode(&body)?;
    if def.name.as_deref().unwrap_or("").is_empty() {
        return Err(ApiError::BadRequest("Missing check name".to_string()));
    }
    let mut prepared = prepare_check(
        &def,
        &s.config.node_name,
        None,
        s.config.enable_script_checks,
    )
    .map_err(ApiError::BadRequest)?;
    if let Some(service_id) = def.service_id.as_deref().filter(|id| !id.is_empty()) {
        let svc = s.local.service(service_id).ok_or_else(|| {
            ApiError::NotFound(format!("ServiceID \"{service_id}\" does not exist"))
        })?;
        attach_to_service(&mut prepared.check, &svc);
    }
    require(&s, c.token.as_deref(), &[check_write(&s, &prepared.check)]).await?;
    s.persist
        .save_check(&prepared.check.check_id, &def)
        .await
        .map_err(|e| ApiError::Internal(format!("failed persisting check: {e}")))?;
    s.register_check(prepared).await;
    Ok(empty_ok())
}

async fn deregister_check(
    State(s): State<AppState>,
    Path(id): Path<String>,
    c: Common,
) -> ApiResult {
    writable_check(&s, c.token.as_deref(), &id).await?;
    if s.deregister_check(&id).await {
        s.persist
            .remove_check(&id)
            .await
            .map_err(|e| ApiError::Internal(format!("failed removing persisted check: {e}")))?;
        Ok(empty_ok())
    } else {
        Err(unknown_check(&id))
    }
}

async fn ttl(s: &AppState, id: &str, status: CheckStatus, output: &str) -> ApiResult {
    match s.update_ttl(id, status, output).await {
        Ok(()) => Ok(empty_ok()),
        Err(TtlError::Unknown) => Err(unknown_check(id)),
        // Consul answers 500 with this text; some clients match on it.
        Err(TtlError::NotTtl) => Err(ApiError::Internal(format!(
            "CheckID \"{id}\" does not have associated TTL"
        ))),
    }
}

/// `/v1/agent/check/{pass,warn,fail}/:id?note=`: one handler, the status from the path.
async fn check_mark(
    State(s): State<AppState>,
    Path((action, id)): Path<(String, String)>,
    c: Common,
) -> ApiResult {
    let status = match action.as_str() {
        "pass" => CheckStatus::Passing,
        "warn" => CheckStatus::Warning,
        "fail" => CheckStatus::Critical,
        // Any other word is not a route: Consul answers 404 for unknown paths.
        _ => return Ok(StatusCode::NOT_FOUND.into_response()),
    };
    writable_check(&s, c.token.as_deref(), &id).await?;
    ttl(&s, &id, status, c.params.get("note").unwrap_or("")).await
}

async fn check_update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    c: Common,
    body: Bytes,
) -> ApiResult {
    let update: CheckUpdate = decode(&body)?;
    let status = CheckStatus::parse(&update.status).ok_or_else(|| {
        ApiError::BadRequest(format!("Invalid check status: '{}'", update.status))
    })?;
    writable_check(&s, c.token.as_deref(), &id).await?;
    ttl(&s, &id, status, &update.output).await
}

/// Local health of the instances of a service, as `/v1/agent/health/service/*` reports it.
fn local_health(s: &AppState, svc: &NodeService) -> (CheckStatus, Vec<HealthCheck>, bool) {
    let checks: Vec<HealthCheck> = s
        .local
        .checks()
        .into_iter()
        .filter(|c| c.service_id == svc.id || c.service_id.is_empty())
        .collect();
    let maintenance = checks
        .iter()
        .any(|c| c.check_id == NODE_MAINT || c.check_id.starts_with(SERVICE_MAINT_PREFIX));
    let status = checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(CheckStatus::Passing);
    (status, checks, maintenance)
}

fn health_code(status: CheckStatus) -> StatusCode {
    match status {
        CheckStatus::Passing => StatusCode::OK,
        CheckStatus::Warning => StatusCode::TOO_MANY_REQUESTS,
        CheckStatus::Critical => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn wants_text(params: &Params, headers: &HeaderMap) -> bool {
    params.get("format") == Some("text")
        || headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/plain"))
}

fn aggregate_label(status: CheckStatus, maintenance: bool) -> &'static str {
    if maintenance {
        "maintenance"
    } else {
        status.as_str()
    }
}

async fn health_by_name(
    State(s): State<AppState>,
    Path(name): Path<String>,
    c: Common,
    headers: HeaderMap,
) -> ApiResult {
    require(&s, c.token.as_deref(), &[Need::service(&name, Level::Read)]).await?;
    let instances: Vec<NodeService> = s
        .local
        .services()
        .into_iter()
        .filter(|svc| svc.service == name)
        .collect();
    if instances.is_empty() {
        let msg = format!("ServiceName {name} Not Found");
        return Ok((StatusCode::NOT_FOUND, msg).into_response());
    }
    let mut worst = (CheckStatus::Passing, false);
    let mut out = Vec::new();
    for svc in instances {
        let (status, checks, maint) = local_health(&s, &svc);
        worst = (worst.0.max(status), worst.1 || maint);
        out.push(json!({
            "AggregatedStatus": aggregate_label(status, maint),
            "Service": agent_view(&s, svc),
            "Checks": checks,
        }));
    }
    let code = health_code(worst.0);
    if wants_text(&c.params, &headers) {
        return Ok((code, aggregate_label(worst.0, worst.1)).into_response());
    }
    Ok(c.json(code, None, &out))
}

async fn health_by_id(
    State(s): State<AppState>,
    Path(id): Path<String>,
    c: Common,
    headers: HeaderMap,
) -> ApiResult {
    let Some(svc) = s.local.service(&id) else {
        let msg = format!("ServiceId {id} not found");
        return Ok((StatusCode::NOT_FOUND, msg).into_response());
    };
    require(
        &s,
        c.token.as_deref(),
        &[Need::service(&svc.service, Level::Read)],
    )
    .await?;
    let (status, checks, maint) = local_health(&s, &svc);
    let code = health_code(status);
    if wants_text(&c.params, &headers) {
        return Ok((code, aggregate_label(status, maint)).into_response());
    }
    let body = json!({
        "AggregatedStatus": aggregate_label(status, maint),
        "Service": agent_view(&s, svc),
        "Checks": checks,
    });
    Ok(c.json(code, None, &body))
}

async fn reload(State(s): State<AppState>, c: Common) -> ApiResult {
    let node = &s.config.node_name;
    require(&s, c.token.as_deref(), &[Need::agent(node, Level::Write)]).await?;
    let Some(reload) = s.config.reload.clone() else {
        return Ok(empty_ok());
    };
    let defs = reload().map_err(|e| ApiError::Internal(format!("Failed reloading config: {e}")))?;
    let errors = s.load_config_services(&defs).await;
    if errors.is_empty() {
        Ok(empty_ok())
    } else {
        Err(ApiError::Internal(format!(
            "Failed reloading services: {}",
            errors.join("; ")
        )))
    }
}

/// Leaves the pool gracefully (others record Left, and the leader deregisters this node),
/// then stops the agent.
async fn leave(State(s): State<AppState>, c: Common) -> ApiResult {
    let node = &s.config.node_name;
    require(&s, c.token.as_deref(), &[Need::agent(node, Level::Write)]).await?;
    if let Some(m) = &s.membership {
        m.gossip
            .leave(super::members::LEAVE_LIMIT)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    s.leave.notify_one();
    Ok(empty_ok())
}

async fn metrics(State(s): State<AppState>, c: Common) -> ApiResult {
    let node = &s.config.node_name;
    require(&s, c.token.as_deref(), &[Need::agent(node, Level::Read)]).await?;
    let mut sample = Sample {
        services: s.local.services().len() as u64,
        syncs_ok: s.ae.stats.ok.load(std::sync::atomic::Ordering::Relaxed),
        syncs_failed: s.ae.stats.failed.load(std::sync::atomic::Ordering::Relaxed),
        catalog_index: s.catalog.borrow().index,
        ..Sample::default()
    };
    for c in s.local.checks() {
        *sample.checks.entry(c.status.as_str()).or_default() += 1;
    }
    let sidecars = crate::sidecar_metrics::targets(&s.local.services());
    let sidecars = s.sidecar_metrics.scrape(sidecars).await;
    if c.params.get("format") == Some("prometheus") {
        let text = s
            .metrics
            .to_prometheus(&sample)
            .map_err(|e| ApiError::Internal(format!("encoding metrics: {e}")))?;
        let text = crate::sidecar_metrics::merge_prometheus(&text, &sidecars);
        let mut response = text.into_response();
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
        );
        return Ok(response);
    }
    let timestamp = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    let mut json = s.metrics.to_json(&sample, timestamp);
    if let Some(counters) = json["Counters"].as_array_mut() {
        counters.extend(s.sidecar_metrics.json(&sidecars));
    }
    Ok(c.ok(None, &json))
}
