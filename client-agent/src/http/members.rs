//! The gossip pool over HTTP: `/v1/agent/join`, `/v1/agent/force-leave`, `/v1/event/*`,
//! `/v1/operator/keyring` and `/v1/coordinate/*`. (`/v1/agent/members`, `self` and `leave`
//! stay with the other agent endpoints and read the pool through [`pool`].) Every answer
//! comes from this agent's own view of the pool; nothing here asks the servers.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use base64::Engine as _;
use concord_api::rpc::QueryMeta;
use concord_net::gossip::{Coordinate, EventFilters, UserEvent};
use serde::Deserialize;
use serde_json::{json, Value};

use super::authz::{authorizer, hide, mark, require, Need};
use super::{empty_ok, ApiError, ApiResult, AppState, Common, ReadQuery};
use crate::membership::{self, KeyringOp, KeyringTimeout, Membership, KEYRING_EVENT};
use concord_api::acl::authorizer::Level;
use concord_api::acl::rules::{Global, Resource};

#[cfg(test)]
mod socket_tests;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/agent/join/{address}", put(join))
        .route("/v1/agent/force-leave/{node}", put(force_leave))
        .route("/v1/event/fire/", put(fire_missing_name))
        .route("/v1/event/fire/{name}", put(fire))
        .route("/v1/event/list", get(list_events))
        .route(
            "/v1/operator/keyring",
            get(keyring).post(keyring).put(keyring).delete(keyring),
        )
        .route("/v1/coordinate/datacenters", get(coordinate_datacenters))
        .route("/v1/coordinate/nodes", get(coordinate_nodes))
        .route("/v1/coordinate/node/{node}", get(coordinate_node))
        .route("/v1/coordinate/update", put(coordinate_update))
}

/// The pool, or the error of an agent started without one.
pub(super) fn pool(s: &AppState) -> Result<&Arc<Membership>, ApiError> {
    s.membership
        .as_ref()
        .ok_or_else(|| ApiError::Internal("gossip is not running on this agent".to_string()))
}

/// Go's `go-multierror` rendering, which Consul's agent endpoints return as the body.
fn multierror(items: &[String]) -> String {
    let mut text = if items.len() == 1 {
        "1 error occurred:\n".to_string()
    } else {
        format!("{} errors occurred:\n", items.len())
    };
    for item in items {
        text.push_str(&format!("\t* {item}\n"));
    }
    text.push('\n');
    text
}

async fn join(State(s): State<AppState>, Path(address): Path<String>, c: Common) -> ApiResult {
    let node = &s.config.node_name;
    require(&s, c.token.as_deref(), &[Need::agent(node, Level::Write)]).await?;
    if c.params.get("wan").is_some_and(|v| !v.is_empty()) {
        if !s.config.server {
            return Err(ApiError::Internal(
                "Must be a server to join WAN cluster".to_string(),
            ));
        }
        return Err(ApiError::Internal(
            "WAN federation is not supported by Concord".to_string(),
        ));
    }
    let m = pool(&s)?;
    membership::join(&m.gossip, std::slice::from_ref(&address))
        .await
        .map_err(|e| ApiError::Internal(multierror(&[format!("Failed to join {address}: {e}")])))?;
    Ok(empty_ok())
}

async fn force_leave(State(s): State<AppState>, Path(node): Path<String>, c: Common) -> ApiResult {
    require(&s, c.token.as_deref(), &[Need::operator(Level::Write)]).await?;
    if c.params.has("wan") && !s.config.server {
        return Err(ApiError::Internal(
            "Must be a server to force-leave a node from the WAN cluster".to_string(),
        ));
    }
    let m = pool(&s)?;
    if !m.gossip.members().iter().any(|x| x.name == node) {
        return Err(ApiError::Internal(format!(
            "agent: No node found with name '{node}'"
        )));
    }
    m.gossip
        .force_leave(&node, c.params.has("prune"))
        .map_err(|e| ApiError::Internal(format!("could not remove failed node from LAN: {e}")))?;
    Ok(empty_ok())
}

/// A user event as Consul's JSON shows it (Go field names, `Payload` base64 or null).
fn event_json(e: &UserEvent) -> Value {
    let payload = if e.payload.is_empty() {
        Value::Null
    } else {
        Value::String(base64::engine::general_purpose::STANDARD.encode(&e.payload))
    };
    json!({
        "ID": membership::event_uuid(e.id),
        "Name": e.name,
        "Payload": payload,
        "NodeFilter": e.filters.node,
        "ServiceFilter": e.filters.service,
        "TagFilter": e.filters.tag,
        "Version": 1,
        "LTime": e.ltime,
    })
}

async fn fire_missing_name() -> Response {
    (StatusCode::BAD_REQUEST, "Missing name").into_response()
}

async fn fire(
    State(s): State<AppState>,
    Path(name): Path<String>,
    c: Common,
    body: Bytes,
) -> ApiResult {
    let filters = EventFilters {
        node: c.params.get("node").unwrap_or_default().to_string(),
        service: c.params.get("service").unwrap_or_default().to_string(),
        tag: c.params.get("tag").unwrap_or_default().to_string(),
    };
    validate_event(&name, &filters).map_err(ApiError::Internal)?;
    let need = Need::Named(Resource::Event, &name, Level::Write);
    require(&s, c.token.as_deref(), &[need]).await?;
    if name == KEYRING_EVENT {
        return Err(ApiError::BadRequest(format!(
            "event name {KEYRING_EVENT} is reserved"
        )));
    }
    let m = pool(&s)?;
    let mut event = m
        .gossip
        .fire_event(&name, body.to_vec(), filters)
        .map_err(|e| ApiError::Internal(format!("error broadcasting event: {e}")))?;
    // Consul's fire answer has LTime 0: the Lamport time is set on receipt.
    event.ltime = 0;
    Ok(c.ok(None, &event_json(&event)))
}

/// Consul's `validateUserEventParams`.
pub(super) fn validate_event(name: &str, f: &EventFilters) -> Result<(), String> {
    if name.is_empty() {
        return Err("User event missing name".to_string());
    }
    if !f.tag.is_empty() && f.service.is_empty() {
        return Err("Cannot provide tag filter without service filter".to_string());
    }
    for (what, re) in [("node", &f.node), ("service", &f.service), ("tag", &f.tag)] {
        if !re.is_empty() {
            regex::Regex::new(re).map_err(|e| format!("Invalid {what} filter: {e}"))?;
        }
    }
    Ok(())
}

/// `GET /v1/event/list`: the events this agent received and kept, oldest first, optionally
/// by `?name=`. The index is Consul's `uuidToUint64` of the newest event (1 with none); a
/// blocking query returns as soon as that differs from `?index` (only equality means "no
/// change", since the index is not monotonic).
async fn list_events(State(s): State<AppState>, q: ReadQuery) -> ApiResult {
    let m = pool(&s)?;
    let authz = authorizer(&s, q.token.as_deref()).await?;
    let readable =
        |e: &UserEvent| Need::Named(Resource::Event, &e.name, Level::Read).allowed(&authz);
    let name = q.params.get("name").map(str::to_string);
    let mut changed = m.watch_events();
    let wait = q.options.blocking_wait();
    let deadline = wait.map(|w| tokio::time::Instant::now() + w);
    loop {
        changed.borrow_and_update();
        let mut events: Vec<UserEvent> = m
            .events()
            .into_iter()
            .filter(|e| name.as_deref().is_none_or(|n| e.name == n))
            .collect();
        // The index covers every event (as Consul's), so a hidden event still wakes a
        // blocked caller, who then sees the filtered list.
        let index = events
            .last()
            .map_or(1, |e| membership::event_index(e.id).max(1));
        let hidden = hide(&mut events, readable);
        let reply = || mark(reply_events(&q, index, &events), hidden);
        let Some(deadline) = deadline else {
            return Ok(reply());
        };
        if index != q.options.min_index {
            return Ok(reply());
        }
        if tokio::time::timeout_at(deadline, changed.changed())
            .await
            .is_err()
        {
            return Ok(reply());
        }
    }
}

fn reply_events(q: &ReadQuery, index: u64, events: &[UserEvent]) -> Response {
    let body: Vec<Value> = events.iter().map(event_json).collect();
    let mut response = q.ok(None, &body);
    if let Ok(v) = HeaderValue::from_str(&index.to_string()) {
        response.headers_mut().insert("x-consul-index", v);
    }
    response
}

#[derive(Deserialize)]
struct KeyRequest {
    #[serde(rename = "Key", default)]
    key: String,
}

/// `/v1/operator/keyring`: GET lists, POST installs, PUT makes primary, DELETE removes.
/// A change is applied here, sent to every member (see [`crate::membership`]), and answered
/// once every alive member advertises the requested state (or 500 after
/// [`membership::KEYRING_WAIT`], with the members that did not), so `install`, `use` and
/// `remove` can run back to back. The list counts, per key, the alive members that hold it
/// and those whose primary it is. Concord has no WAN pool, so there is one `LAN` entry.
async fn keyring(State(s): State<AppState>, method: Method, c: Common, body: Bytes) -> ApiResult {
    let level = if method == Method::GET {
        Level::Read
    } else {
        Level::Write
    };
    require(
        &s,
        c.token.as_deref(),
        &[Need::Global(Global::Keyring, level)],
    )
    .await?;
    if let Some(v) = c.params.get("relay-factor") {
        let n: i64 = v
            .parse()
            .map_err(|e| ApiError::BadRequest(format!("Error parsing relay factor: {e}")))?;
        if !(0..=5).contains(&n) {
            return Err(ApiError::BadRequest(
                "Invalid relay-factor: Relay factor must be in range: [0, 5]".to_string(),
            ));
        }
    }
    if let Some(v) = c.params.get("local-only") {
        concord_api::decode::parse_go_bool(v).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "Error parsing local-only: strconv.ParseBool: parsing \"{v}\": invalid syntax"
            ))
        })?;
        if method != Method::GET {
            return Err(ApiError::BadRequest(
                "Invalid use of local-only: local-only can only be set for list requests"
                    .to_string(),
            ));
        }
    }
    let m = pool(&s)?;
    let dc = &s.config.datacenter;
    let node = &s.config.node_name;
    let keys = m.gossip.list_keys();
    let total = keys.first().map_or_else(
        || {
            m.gossip
                .members()
                .iter()
                .filter(|x| x.status == concord_net::gossip::MemberStatus::Alive)
                .count()
        },
        |k| k.total,
    );
    let failure = |msg: &str| {
        ApiError::Internal(multierror(&[
            format!("{dc} (LAN) error: 1/{total} nodes reported failure"),
            format!("{node}: {msg}"),
        ]))
    };
    if method == Method::GET {
        if keys.is_empty() {
            return Err(failure("Keyring is empty (encryption not enabled)"));
        }
        let all: serde_json::Map<String, Value> = keys
            .iter()
            .map(|k| (k.key.clone(), json!(k.members)))
            .collect();
        let primary: serde_json::Map<String, Value> = keys
            .iter()
            .filter(|k| k.primaries > 0)
            .map(|k| (k.key.clone(), json!(k.primaries)))
            .collect();
        let body = json!([{
            "WAN": false,
            "Datacenter": dc,
            "Segment": "",
            "Keys": all,
            "PrimaryKeys": primary,
            "NumNodes": total,
        }]);
        return Ok(c.ok(None, &body));
    }
    let request: KeyRequest = concord_api::decode::decode_lenient(&body)
        .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?;
    let op = match method {
        Method::POST => KeyringOp::Install(request.key),
        Method::PUT => KeyringOp::Use(request.key),
        Method::DELETE => KeyringOp::Remove(request.key),
        // The route only takes the four methods.
        _ => return Ok(StatusCode::METHOD_NOT_ALLOWED.into_response()),
    };
    check_key(op.key()).map_err(|e| failure(&e))?;
    m.change_keyring(&op).map_err(|e| failure(&e))?;
    membership::wait_for_keyring(&op, membership::KEYRING_WAIT, || m.gossip.member_keys())
        .await
        .map_err(|t| keyring_timeout(dc, &t))?;
    Ok(empty_ok())
}

/// Serf's aggregate for members that did not answer (`<n>/<m> nodes reported success`),
/// then one line per such member.
fn keyring_timeout(dc: &str, t: &KeyringTimeout) -> ApiError {
    let mut items = vec![format!(
        "{dc} (LAN) error: {}/{} nodes reported success",
        t.done, t.total
    )];
    items.extend(t.pending.iter().map(|(node, msg)| format!("{node}: {msg}")));
    ApiError::Internal(multierror(&items))
}

/// Standard base64 of 16, 24 or 32 bytes, with Go's and memberlist's error texts.
pub(super) fn check_key(key: &str) -> Result<(), String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|e| match e {
            base64::DecodeError::InvalidByte(at, _)
            | base64::DecodeError::InvalidLastSymbol(at, _) => {
                format!("illegal base64 data at input byte {at}")
            }
            _ => format!("illegal base64 data at input byte {}", key.len()),
        })?;
    if ![16, 24, 32].contains(&bytes.len()) {
        return Err("key size must be 16, 24 or 32 bytes".to_string());
    }
    Ok(())
}

/// A coordinate in Consul's JSON (seconds).
pub(super) fn coord_json(c: &Coordinate) -> Value {
    json!({
        "Vec": c.vec,
        "Error": c.error,
        "Adjustment": c.adjustment,
        "Height": c.height,
    })
}

/// Coordinates this agent knows (its own and those of the members it measured), sorted by
/// node name. They come from gossip and are not stored in Raft: each agent answers from its
/// own measurements.
fn known_coordinates(s: &AppState) -> Vec<(String, Coordinate)> {
    let Some(m) = &s.membership else {
        return Vec::new();
    };
    let mut coords = m.gossip.coordinates();
    coords.sort_by(|a, b| a.0.cmp(&b.0));
    coords
}

fn coordinate_entries(s: &AppState, q: &ReadQuery, node: Option<&str>) -> Vec<Value> {
    // Concord has only the default segment: `?segment=X` with X non-empty selects nothing.
    if q.params.get("segment").is_some_and(|seg| !seg.is_empty()) {
        return Vec::new();
    }
    known_coordinates(s)
        .iter()
        .filter(|(name, _)| node.is_none_or(|n| n == name))
        .map(|(name, c)| json!({"Node": name, "Segment": "", "Coord": coord_json(c)}))
        .collect()
}

fn local_meta() -> QueryMeta {
    QueryMeta {
        index: 1,
        known_leader: true,
        last_contact_ms: 0,
        results_filtered_by_acls: false,
    }
}

async fn coordinate_datacenters(State(s): State<AppState>, c: Common) -> ApiResult {
    // No WAN pool: the datacenter's entry carries the coordinates of its servers, named
    // `<node>.<dc>` as Consul names WAN members.
    let servers: Vec<String> = s
        .membership
        .as_ref()
        .map(|m| {
            m.gossip
                .members()
                .into_iter()
                .filter(|x| x.tags.get("role").map(String::as_str) == Some("consul"))
                .map(|x| x.name)
                .collect()
        })
        .unwrap_or_default();
    let coords: Vec<Value> = known_coordinates(&s)
        .iter()
        .filter(|(name, _)| servers.contains(name))
        .map(|(name, co)| {
            json!({
                "Node": format!("{name}.{}", s.config.datacenter),
                "Segment": "",
                "Coord": coord_json(co),
            })
        })
        .collect();
    let body = json!([{
        "Datacenter": s.config.datacenter,
        "AreaID": "wan",
        "Coordinates": coords,
    }]);
    Ok(c.ok(None, &body))
}

async fn coordinate_nodes(State(s): State<AppState>, q: ReadQuery) -> ApiResult {
    let authz = authorizer(&s, q.token.as_deref()).await?;
    let mut entries = coordinate_entries(&s, &q, None);
    let hidden = hide(&mut entries, |e| {
        Need::node(e["Node"].as_str().unwrap_or_default(), Level::Read).allowed(&authz)
    });
    Ok(mark(q.reply(Some(local_meta()), &entries)?, hidden))
}

async fn coordinate_node(
    State(s): State<AppState>,
    Path(node): Path<String>,
    q: ReadQuery,
) -> ApiResult {
    require(&s, q.token.as_deref(), &[Need::node(&node, Level::Read)]).await?;
    let entries = coordinate_entries(&s, &q, Some(&node));
    if entries.is_empty() {
        return Err(ApiError::NotFound(String::new()));
    }
    Ok(q.ok(Some(local_meta()), &entries))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CoordinateUpdate {
    #[serde(default)]
    node: String,
    #[serde(default)]
    coord: Option<CoordBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CoordBody {
    #[serde(default)]
    vec: Vec<f64>,
    #[serde(default)]
    error: f64,
    #[serde(default)]
    adjustment: f64,
    #[serde(default)]
    height: f64,
}

/// `PUT /v1/coordinate/update`: checked as Consul checks it, then dropped. Concord's
/// coordinates come from its own gossip probes and are not stored in Raft, so a
/// coordinate sent from outside has nowhere to go.
async fn coordinate_update(State(s): State<AppState>, c: Common, body: Bytes) -> ApiResult {
    let update: CoordinateUpdate = concord_api::decode::decode_lenient(&body)
        .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?;
    require(
        &s,
        c.token.as_deref(),
        &[Need::node(&update.node, Level::Write)],
    )
    .await?;
    let Some(coord) = update.coord else {
        return Err(ApiError::Internal("invalid coordinate".to_string()));
    };
    let numbers = coord
        .vec
        .iter()
        .chain([&coord.error, &coord.adjustment, &coord.height]);
    if numbers.into_iter().any(|x| !x.is_finite()) {
        return Err(ApiError::Internal("invalid coordinate".to_string()));
    }
    if coord.vec.len() != concord_net::gossip::coordinate::DIMENSIONS {
        return Err(ApiError::Internal("incompatible coordinate".to_string()));
    }
    tracing::debug!(node = %update.node, "coordinate update accepted and discarded");
    Ok(empty_ok())
}

/// Leaves the pool gracefully (at most this long), before the agent stops.
pub(super) const LEAVE_LIMIT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_validation_uses_consul_texts() {
        let f = |n: &str, s: &str, t: &str| EventFilters {
            node: n.into(),
            service: s.into(),
            tag: t.into(),
        };
        assert_eq!(
            validate_event("", &f("", "", "")).unwrap_err(),
            "User event missing name"
        );
        assert_eq!(
            validate_event("x", &f("", "", "v1")).unwrap_err(),
            "Cannot provide tag filter without service filter"
        );
        assert!(validate_event("x", &f("(", "", ""))
            .unwrap_err()
            .starts_with("Invalid node filter: "));
        assert!(validate_event("x", &f("a.*", "web", "v1")).is_ok());
    }

    #[test]
    fn keys_must_be_base64_of_aes_sizes() {
        assert_eq!(
            check_key("not base64!").unwrap_err(),
            "illegal base64 data at input byte 3"
        );
        assert_eq!(
            check_key("AAAA").unwrap_err(),
            "key size must be 16, 24 or 32 bytes"
        );
        assert!(check_key(&concord_net::gossip::keygen()).is_ok());
    }

    #[test]
    fn multierror_matches_go() {
        assert_eq!(multierror(&["a".into()]), "1 error occurred:\n\t* a\n\n");
        assert_eq!(
            multierror(&["a".into(), "b".into()]),
            "2 errors occurred:\n\t* a\n\t* b\n\n"
        );
    }
}
