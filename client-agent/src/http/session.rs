//! `/v1/session/*`: sessions, the holders of KV locks.
//!
//! ACLs, as Consul: creating, destroying or renewing a session needs `session:write` on
//! its node; reads are filtered by `session:read` on each session's node.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, put};
use axum::Router;
use concord_api::acl::authorizer::Level;
use concord_api::decode::decode_lenient;
use concord_api::duration::format_duration;
use concord_api::rpc::{Query, QueryOptions};
use concord_api::session::{Session, SessionBehavior, SessionCreate, DEFAULT_LOCK_DELAY};
use serde_json::json;

use super::authz::{authorizer, hide, mark, require, Need};
use super::{ApiError, ApiResult, AppState, Common, ReadQuery};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/session/create", put(create))
        .route("/v1/session/destroy/{id}", put(destroy))
        .route("/v1/session/renew/{id}", put(renew))
        .route("/v1/session/info/{id}", get(info))
        .route("/v1/session/list", get(list))
        .route("/v1/session/node/{node}", get(node))
}

/// The node check every session depends on unless told otherwise.
const SERF_CHECK: &str = "serfHealth";

async fn create(State(s): State<AppState>, c: Common, body: Bytes) -> ApiResult {
    // serde would read an array as the struct's fields in order (`[]`: all defaults); a
    // session is a JSON object in Consul, and anything else is its decode error.
    if body.trim_ascii_start().starts_with(b"[") {
        return Err(ApiError::BadRequest(
            "Request decode failed: json: cannot unmarshal array into Go value of type \
             structs.Session"
                .to_string(),
        ));
    }
    let req: SessionCreate = decode_lenient(&body)
        .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?;
    let behavior = match req.behavior.as_deref() {
        None | Some("") | Some("release") => SessionBehavior::Release,
        Some("delete") => SessionBehavior::Delete,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "Invalid Behavior setting '{other}'"
            )))
        }
    };
    let node_checks = req
        .node_checks
        .or(req.checks)
        .unwrap_or_else(|| vec![SERF_CHECK.to_string()]);
    let lock_delay = req
        .lock_delay
        .map(|d| d.get())
        .unwrap_or(DEFAULT_LOCK_DELAY);
    let ttl = match req.ttl.as_deref() {
        None | Some("") => String::new(),
        Some(t) => {
            let d = concord_api::duration::parse_duration(t).map_err(|_| {
                ApiError::BadRequest(format!("Request decode failed: invalid TTL \"{t}\""))
            })?;
            format_duration(d)
        }
    };
    let session = Session {
        id: String::new(),
        name: req.name,
        node: req
            .node
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| s.config.node_name.clone()),
        lock_delay: u64::try_from(lock_delay.as_nanos()).unwrap_or(u64::MAX),
        behavior,
        ttl,
        node_checks,
        service_checks: req.service_checks.unwrap_or_default(),
        create_index: 0,
        modify_index: 0,
    };
    require(
        &s,
        c.token.as_deref(),
        &[Need::session(&session.node, Level::Write)],
    )
    .await?;
    let id = s.rpc.session_create(session).await?;
    Ok(c.ok(None, &json!({ "ID": id })))
}

/// A write on session `id` needs `session:write` on its node; an unknown session goes on
/// to the servers, which answer as Consul does.
async fn may_write(s: &AppState, c: &Common, id: &str) -> Result<(), ApiError> {
    let query = Query::SessionInfo { id: id.to_string() };
    let (_, found) = s.rpc.sessions(query, QueryOptions::default()).await?;
    let needs: Vec<Need<'_>> = found
        .iter()
        .map(|session| Need::session(&session.node, Level::Write))
        .collect();
    require(s, c.token.as_deref(), &needs).await?;
    Ok(())
}

async fn destroy(State(s): State<AppState>, Path(id): Path<String>, c: Common) -> ApiResult {
    may_write(&s, &c, &id).await?;
    s.rpc.session_destroy(id).await?;
    Ok(c.ok(None, &true))
}

async fn renew(State(s): State<AppState>, Path(id): Path<String>, c: Common) -> ApiResult {
    may_write(&s, &c, &id).await?;
    match s.rpc.session_renew(id.clone()).await? {
        Some(session) => Ok(c.ok(None, &vec![session])),
        None => Err(ApiError::NotFound(format!("Session id '{id}' not found"))),
    }
}

async fn sessions(s: &AppState, q: &ReadQuery, query: Query) -> ApiResult {
    let authz = authorizer(s, q.token.as_deref()).await?;
    let (meta, mut list) = s.rpc.sessions(query, q.options).await?;
    let hidden = hide(&mut list, |x| {
        Need::session(&x.node, Level::Read).allowed(&authz)
    });
    Ok(mark(q.ok(Some(meta), &list), hidden))
}

async fn info(State(s): State<AppState>, Path(id): Path<String>, q: ReadQuery) -> ApiResult {
    sessions(&s, &q, Query::SessionInfo { id }).await
}

async fn list(State(s): State<AppState>, q: ReadQuery) -> ApiResult {
    sessions(&s, &q, Query::SessionList).await
}

async fn node(State(s): State<AppState>, Path(node): Path<String>, q: ReadQuery) -> ApiResult {
    sessions(&s, &q, Query::NodeSessions { node }).await
}
