//! `/v1/connect/intentions*` and `POST /v1/agent/connect/authorize`.
//!
//! Intentions are stored as Consul 1.9+ stores them: in `service-intentions` config entries,
//! one per destination. The per-intention endpoints (legacy by ID, `/exact` by name pair)
//! are views of those entries: a write reads the destination's entry, changes one source and
//! writes the entry back with check-and-set on its `ModifyIndex`, retrying if another write
//! got there first. So all three API shapes read and write the same state.
//!
//! `/check` and `/authorize` decide with [`concord_api::intention::evaluate`]; `/authorize`
//! reads the agent's cached intentions ([`crate::intentions_cache`]), never the servers.
//!
//! ACLs, as Consul: an intention may be read with `intentions = "read"` on its source or
//! its destination service (Consul's `Intention.CanRead`; lists are filtered by it), and
//! written with `intentions = "write"` on its destination (a move, on both); `/match`
//! needs intention read on each name asked about, `/check` `service:read` on the
//! destination, `/agent/connect/authorize` `service:write` on the target.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::Router;
use concord_api::acl::authorizer::{Authorizer, Level};
use concord_api::config_entry::{
    ConfigEntry, ServiceIntentions, StoredConfigEntry, SERVICE_INTENTIONS,
};
use concord_api::intention::{
    evaluate, intention_matches, parse_spiffe_service, rfc3339_utc, sort_intentions,
    validate_intention, Intention, SourceIntention, WILDCARD,
};
use concord_api::rpc::{Query, QueryOptions, WriteRequest};
use serde::Deserialize;
use serde_json::json;

use super::authz::{authorizer, hide, mark, require, Need};
use super::config_entry::{get_entry, write_entry};
use super::{ApiError, ApiResult, AppState, Common, ReadQuery};
use crate::intentions_cache::flatten;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/connect/intentions", get(list).post(create))
        .route(
            "/v1/connect/intentions/exact",
            get(exact_get).put(exact_put).delete(exact_delete),
        )
        .route("/v1/connect/intentions/match", get(matches))
        .route("/v1/connect/intentions/check", get(check))
        .route(
            "/v1/connect/intentions/{id}",
            get(id_get).put(id_update).delete(id_delete),
        )
        .route("/v1/agent/connect/authorize", post(authorize))
}

/// How often a read-modify-write retries after losing a check-and-set race.
const CAS_ATTEMPTS: usize = 16;

fn required<'a>(c: &'a Common, key: &str) -> Result<&'a str, ApiError> {
    c.params
        .get(key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("required query parameter '{key}' not set")))
}

fn not_found() -> ApiError {
    ApiError::NotFound("Intention not found".to_string())
}

fn decode_intention(body: &[u8]) -> Result<Intention, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339_utc(secs)
}

/// Every `service-intentions` entry, with the read's metadata.
async fn all_entries(
    s: &AppState,
    options: QueryOptions,
) -> Result<(concord_api::rpc::QueryMeta, Vec<StoredConfigEntry>), ApiError> {
    let query = Query::ConfigEntryList {
        kind: Some(SERVICE_INTENTIONS.to_string()),
    };
    Ok(s.rpc.config_entries(query, options).await?)
}

fn decode_entry(stored: &StoredConfigEntry) -> Result<ServiceIntentions, ApiError> {
    match stored.decode() {
        Ok(ConfigEntry::ServiceIntentions(e)) => Ok(e),
        Ok(_) => Err(ApiError::Internal("stored entry of the wrong kind".into())),
        Err(e) => Err(ApiError::Internal(format!(
            "stored entry does not decode: {e}"
        ))),
    }
}

/// Changes the `service-intentions` entry of `destination` with `change` and writes it back
/// with check-and-set; an entry left without sources is deleted (as Consul does). Retries
/// when another write won the race, so concurrent changes to other sources are kept.
async fn update_entry(
    s: &AppState,
    destination: &str,
    change: impl Fn(&mut ServiceIntentions) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    for _ in 0..CAS_ATTEMPTS {
        let (_, stored) =
            get_entry(s, SERVICE_INTENTIONS, destination, QueryOptions::default()).await?;
        let index = stored.as_ref().map_or(0, |e| e.modify_index);
        let mut entry = match &stored {
            Some(e) => decode_entry(e)?,
            None => ServiceIntentions {
                name: destination.to_string(),
                ..ServiceIntentions::default()
            },
        };
        change(&mut entry)?;
        let done = if entry.sources.is_empty() {
            if stored.is_none() {
                return Ok(());
            }
            let request = WriteRequest::ConfigEntryDelete {
                kind: SERVICE_INTENTIONS.to_string(),
                name: destination.to_string(),
                cas: Some(index),
            };
            s.rpc.config_entry_write(request).await?
        } else {
            write_entry(s, ConfigEntry::ServiceIntentions(entry), Some(index)).await?
        };
        if done {
            return Ok(());
        }
    }
    Err(ApiError::Internal(
        "intention write lost too many concurrent-update races; try again".to_string(),
    ))
}

/// Puts `source` into an entry, replacing the one with the same name.
fn upsert(entry: &mut ServiceIntentions, source: SourceIntention) {
    entry.sources.retain(|s| s.name != source.name);
    entry.sources.push(source);
}

/// The intention with legacy `id`, if any.
async fn find_by_id(s: &AppState, id: &str) -> Result<Option<Intention>, ApiError> {
    let (_, entries) = all_entries(s, QueryOptions::default()).await?;
    Ok(flatten(&entries).into_iter().find(|i| i.id == id))
}

/// `GET /v1/connect/intentions`: every intention, highest precedence first.
/// Consul's `Intention.CanRead`: intention read on the source or on the destination.
fn readable(authz: &Authorizer, ixn: &Intention) -> bool {
    [&ixn.source_name, &ixn.destination_name]
        .iter()
        .any(|name| Need::Intention(name, Level::Read).allowed(authz))
}

/// A single intention the token may not read: 403 on its destination.
fn may_read(authz: &Authorizer, ixn: &Intention) -> Result<(), ApiError> {
    if readable(authz, ixn) {
        return Ok(());
    }
    Ok(Need::Intention(&ixn.destination_name, Level::Read).check(authz)?)
}

async fn list(State(s): State<AppState>, q: ReadQuery) -> ApiResult {
    let authz = authorizer(&s, q.token.as_deref()).await?;
    let (meta, entries) = all_entries(&s, q.options).await?;
    let mut all = flatten(&entries);
    let hidden = hide(&mut all, |i| readable(&authz, i));
    Ok(mark(q.reply(Some(meta), &all)?, hidden))
}

/// `POST /v1/connect/intentions` (legacy): creates with a new ID; a second intention for
/// the same pair is refused.
async fn create(State(s): State<AppState>, c: Common, body: Bytes) -> ApiResult {
    let mut ixn = decode_intention(&body)?;
    if !ixn.id.is_empty() {
        return Err(ApiError::BadRequest("ID must be empty".to_string()));
    }
    validate_intention(&ixn).map_err(|e| ApiError::BadRequest(e.0))?;
    let need = Need::Intention(&ixn.destination_name, Level::Write);
    require(&s, c.token.as_deref(), &[need]).await?;
    ixn.id = uuid::Uuid::new_v4().to_string();
    let now = now_rfc3339();
    let mut source = ixn.to_source();
    source.legacy_create_time = Some(now.clone());
    source.legacy_update_time = Some(now);
    let summary = format!("{} => {}", ixn.source_name, ixn.destination_name);
    update_entry(&s, &ixn.destination_name, |entry| {
        if entry.sources.iter().any(|s| s.name == source.name) {
            return Err(ApiError::BadRequest(format!(
                "duplicate intention found: {summary}"
            )));
        }
        upsert(entry, source.clone());
        Ok(())
    })
    .await?;
    Ok(c.ok(None, &json!({ "ID": ixn.id })))
}

async fn id_get(State(s): State<AppState>, Path(id): Path<String>, c: Common) -> ApiResult {
    let authz = authorizer(&s, c.token.as_deref()).await?;
    let ixn = find_by_id(&s, &id).await?.ok_or_else(not_found)?;
    may_read(&authz, &ixn)?;
    Ok(c.ok(None, &ixn))
}

/// `PUT /v1/connect/intentions/:id` (legacy): replaces it, possibly moving it to another
/// source or destination.
async fn id_update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    c: Common,
    body: Bytes,
) -> ApiResult {
    let old = find_by_id(&s, &id).await?.ok_or_else(not_found)?;
    let mut ixn = decode_intention(&body)?;
    if !ixn.id.is_empty() && ixn.id != id {
        return Err(ApiError::BadRequest(
            "ID in body does not match the URL".into(),
        ));
    }
    validate_intention(&ixn).map_err(|e| ApiError::BadRequest(e.0))?;
    let needs = [
        Need::Intention(&old.destination_name, Level::Write),
        Need::Intention(&ixn.destination_name, Level::Write),
    ];
    require(&s, c.token.as_deref(), &needs).await?;
    ixn.id = id;
    let mut source = ixn.to_source();
    source.legacy_create_time = Some(old.created_at.clone());
    source.legacy_update_time = Some(now_rfc3339());
    if old.destination_name != ixn.destination_name {
        // A move: remove from the old entry first, so the pair is never governed twice.
        update_entry(&s, &old.destination_name, |entry| {
            entry.sources.retain(|s| s.legacy_id != ixn.id);
            Ok(())
        })
        .await?;
    }
    update_entry(&s, &ixn.destination_name, |entry| {
        entry.sources.retain(|s| s.legacy_id != ixn.id);
        upsert(entry, source.clone());
        Ok(())
    })
    .await?;
    Ok(c.ok(None, &true))
}

async fn id_delete(State(s): State<AppState>, Path(id): Path<String>, c: Common) -> ApiResult {
    let old = find_by_id(&s, &id).await?.ok_or_else(not_found)?;
    let need = Need::Intention(&old.destination_name, Level::Write);
    require(&s, c.token.as_deref(), &[need]).await?;
    update_entry(&s, &old.destination_name, |entry| {
        entry.sources.retain(|s| s.legacy_id != id);
        Ok(())
    })
    .await?;
    Ok(c.ok(None, &true))
}

fn pair(c: &Common) -> Result<(String, String), ApiError> {
    Ok((
        required(c, "source")?.to_string(),
        required(c, "destination")?.to_string(),
    ))
}

async fn exact_get(State(s): State<AppState>, q: ReadQuery) -> ApiResult {
    let (source, destination) = pair(&q)?;
    let authz = authorizer(&s, q.token.as_deref()).await?;
    let (meta, stored) = get_entry(&s, SERVICE_INTENTIONS, &destination, q.options).await?;
    let entry = stored.ok_or_else(not_found)?;
    let found = flatten(std::slice::from_ref(&entry))
        .into_iter()
        .find(|i| i.source_name == source)
        .ok_or_else(not_found)?;
    may_read(&authz, &found)?;
    Ok(q.ok(Some(meta), &found))
}

/// `PUT /v1/connect/intentions/exact?source=&destination=`: upserts the pair's intention
/// (Action or Permissions, Description); keeps a legacy ID if it had one.
async fn exact_put(State(s): State<AppState>, c: Common, body: Bytes) -> ApiResult {
    let (source_name, destination) = pair(&c)?;
    let body = decode_intention(&body)?;
    let ixn = Intention {
        source_name: source_name.clone(),
        destination_name: destination.clone(),
        ..body
    };
    validate_intention(&ixn).map_err(|e| ApiError::BadRequest(e.0))?;
    let need = Need::Intention(&destination, Level::Write);
    require(&s, c.token.as_deref(), &[need]).await?;
    let mut source = ixn.to_source();
    // Meta is not persisted through this endpoint (as in Consul).
    source.legacy_meta.clear();
    update_entry(&s, &destination, |entry| {
        let mut source = source.clone();
        if let Some(old) = entry.sources.iter().find(|s| s.name == source_name) {
            source.legacy_id = old.legacy_id.clone();
            source.legacy_meta = old.legacy_meta.clone();
            source.legacy_create_time = old.legacy_create_time.clone();
            if old.legacy_update_time.is_some() {
                source.legacy_update_time = Some(now_rfc3339());
            }
        }
        upsert(entry, source);
        Ok(())
    })
    .await?;
    Ok(c.ok(None, &true))
}

async fn exact_delete(State(s): State<AppState>, c: Common) -> ApiResult {
    let (source, destination) = pair(&c)?;
    let need = Need::Intention(&destination, Level::Write);
    require(&s, c.token.as_deref(), &[need]).await?;
    update_entry(&s, &destination, |entry| {
        entry.sources.retain(|s| s.name != source);
        Ok(())
    })
    .await?;
    Ok(c.ok(None, &true))
}

/// `GET /v1/connect/intentions/match?by=source|destination&name=X[&name=Y]`: for each name,
/// the intentions that apply to it on that side (wildcards included), in evaluation order.
async fn matches(State(s): State<AppState>, q: ReadQuery) -> ApiResult {
    let by = required(&q, "by")?.to_string();
    if by != "source" && by != "destination" {
        return Err(ApiError::BadRequest(
            "'by' parameter must be one of 'source' or 'destination'".to_string(),
        ));
    }
    let names = q.params.all("name");
    if names.is_empty() {
        return Err(ApiError::BadRequest(
            "required query parameter 'name' not set".to_string(),
        ));
    }
    let needs: Vec<Need<'_>> = names
        .iter()
        .map(|n| Need::Intention(n, Level::Read))
        .collect();
    require(&s, q.token.as_deref(), &needs).await?;
    let (meta, entries) = all_entries(&s, q.options).await?;
    let all = flatten(&entries);
    let mut out: BTreeMap<String, Vec<Intention>> = BTreeMap::new();
    for name in names {
        let side = |i: &Intention| {
            let pattern = if by == "source" {
                &i.source_name
            } else {
                &i.destination_name
            };
            pattern == WILDCARD || *pattern == name
        };
        let mut list: Vec<Intention> = all.iter().filter(|i| side(i)).cloned().collect();
        sort_intentions(&mut list);
        out.insert(name, list);
    }
    Ok(q.ok(Some(meta), &out))
}

/// `GET /v1/connect/intentions/check?source=&destination=`: `{"Allowed": bool}` (an L7
/// intention counts as deny, as in Consul).
async fn check(State(s): State<AppState>, q: ReadQuery) -> ApiResult {
    let (source, destination) = pair(&q)?;
    let need = Need::service(&destination, Level::Read);
    require(&s, q.token.as_deref(), &[need]).await?;
    let (meta, entries) = all_entries(&s, q.options).await?;
    let all: Vec<Intention> = flatten(&entries)
        .into_iter()
        .filter(|i| intention_matches(i, &source, &destination))
        .collect();
    let decision = evaluate(
        &all,
        &source,
        &destination,
        None,
        s.config.default_intention_allow,
    );
    Ok(q.ok(Some(meta), &json!({ "Allowed": decision.allowed })))
}

/// Body of `POST /v1/agent/connect/authorize`.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "PascalCase", default)]
struct AuthorizeRequest {
    target: String,
    #[serde(rename = "ClientCertURI")]
    client_cert_uri: String,
    /// Not checked: the TLS handshake already verified the certificate; logged only.
    client_cert_serial: String,
}

/// How long the first authorize waits for the cache's first fetch.
const CACHE_WARMUP: Duration = Duration::from_secs(5);

/// `POST /v1/agent/connect/authorize`: whether the client certificate's service may reach
/// `Target`, from the agent's cached intentions (no server round trip).
async fn authorize(State(s): State<AppState>, c: Common, body: Bytes) -> ApiResult {
    let req: AuthorizeRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?;
    if req.target.is_empty() {
        return Err(ApiError::BadRequest(
            "Target service must be specified".into(),
        ));
    }
    if req.client_cert_uri.is_empty() {
        return Err(ApiError::BadRequest(
            "ClientCertURI must be specified".into(),
        ));
    }
    let need = Need::service(&req.target, Level::Write);
    require(&s, c.token.as_deref(), &[need]).await?;
    let client = parse_spiffe_service(&req.client_cert_uri).map_err(ApiError::BadRequest)?;
    tracing::debug!(serial = %req.client_cert_serial, client = %client.service, target = %req.target, "authorize");
    let snapshot = s.intentions.ready(CACHE_WARMUP).await;
    let decision = evaluate(
        &snapshot.intentions,
        &client.service,
        &req.target,
        None,
        s.config.default_intention_allow,
    );
    Ok(c.ok(
        None,
        &json!({ "Authorized": decision.allowed, "Reason": decision.reason }),
    ))
}
