//! `/v1/config` and `/v1/discovery-chain/:service`: config entries (service-defaults, proxy-defaults, service-intentions,
//! service-resolver, service-splitter, service-router), and the helpers the intention and
//! discovery-chain endpoints share: reading entries and a service's protocol.
//!
//! Entries are validated here, before anything is written (Consul's `Normalize` +
//! `Validate`, and the cross-entry rule that L7 features need an HTTP-aware protocol), so a
//! refused entry changes nothing.
//!
//! ACLs, as each entry's `CanRead`/`CanWrite` in Consul: `proxy-defaults` is readable by
//! anyone and written with `mesh:write` (which falls back to `operator`);
//! `service-intentions` needs intention read/write on its service; the other kinds
//! `service:read`/`service:write` on theirs. Lists are filtered by the read rule; the
//! discovery chain needs `service:read` on the service.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, put};
use axum::Router;
use concord_api::acl::authorizer::Level;
use concord_api::acl::rpc::config_entry_need as entry_need;
use concord_api::config_entry::{
    effective_protocol, is_l7_protocol, parse_kind, ConfigEntry, StoredConfigEntry, PROXY_DEFAULTS,
    PROXY_DEFAULTS_GLOBAL, SERVICE_DEFAULTS,
};
use concord_api::discovery_chain::{compile, ChainEntries};
use concord_api::intention::check_l7_allowed;
use concord_api::rpc::{Query, QueryOptions, WriteRequest};

use super::authz::{authorizer, hide, mark, require, Need};
use super::{ApiError, ApiResult, AppState, Common, ReadQuery};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/config", put(apply))
        .route("/v1/config/{kind}", get(list))
        .route("/v1/config/{kind}/{name}", get(read).delete(delete))
        .route("/v1/discovery-chain/{service}", get(discovery_chain))
}

/// `GET /v1/discovery-chain/:service`: the compiled chain
/// ([`concord_api::discovery_chain::compile`]), blocking on the config entries' index. The
/// targets' SNI names take the trust domain from the agent's CA cache, or from the servers
/// before the cache has its first answer.
async fn discovery_chain(
    State(s): State<AppState>,
    Path(service): Path<String>,
    q: ReadQuery,
) -> ApiResult {
    require(
        &s,
        q.token.as_deref(),
        &[Need::service(&service, Level::Read)],
    )
    .await?;
    let (meta, stored) = s
        .rpc
        .config_entries(Query::ConfigEntryList { kind: None }, q.options)
        .await?;
    let entries = ChainEntries::from_entries(stored.iter().filter_map(|e| e.decode().ok()));
    let trust_domain = match s.connect.trust_domain() {
        Some(td) => td,
        None => {
            s.rpc
                .ca_roots(QueryOptions::default())
                .await?
                .1
                .trust_domain
        }
    };
    Ok(q.ok(
        Some(meta),
        &compile(&service, &s.config.datacenter, &trust_domain, &entries),
    ))
}

/// `?cas=N`, if given.
pub(super) fn cas_param(c: &Common) -> Result<Option<u64>, ApiError> {
    c.params
        .get("cas")
        .map(|v| {
            v.parse()
                .map_err(|_| ApiError::BadRequest(format!("Failed to parse cas value: {v:?}")))
        })
        .transpose()
}

fn kind_of(kind: &str) -> Result<&'static str, ApiError> {
    parse_kind(kind).map_err(|e| ApiError::BadRequest(e.0))
}

/// One entry, with the read's metadata.
pub(super) async fn get_entry(
    s: &AppState,
    kind: &str,
    name: &str,
    options: QueryOptions,
) -> Result<(concord_api::rpc::QueryMeta, Option<StoredConfigEntry>), ApiError> {
    let query = Query::ConfigEntryGet {
        kind: kind.to_string(),
        name: name.to_string(),
    };
    let (meta, list) = s.rpc.config_entries(query, options).await?;
    Ok((meta, list.into_iter().next()))
}

/// The effective protocol of `service` (service-defaults, then proxy-defaults, then `tcp`).
pub(super) async fn protocol_of(s: &AppState, service: &str) -> Result<String, ApiError> {
    let options = QueryOptions::default();
    let (_, sd) = get_entry(s, SERVICE_DEFAULTS, service, options).await?;
    let (_, pd) = get_entry(s, PROXY_DEFAULTS, PROXY_DEFAULTS_GLOBAL, options).await?;
    let sd = match sd.map(|e| e.decode()) {
        Some(Ok(ConfigEntry::ServiceDefaults(d))) => Some(d),
        _ => None,
    };
    let pd = match pd.map(|e| e.decode()) {
        Some(Ok(ConfigEntry::ProxyDefaults(d))) => Some(d),
        _ => None,
    };
    Ok(effective_protocol(sd.as_ref(), pd.as_ref()))
}

/// Validates an entry on its own and against the protocol of its service, then writes it
/// (check-and-set when `cas` is given). Returns whether it was written.
pub(super) async fn write_entry(
    s: &AppState,
    mut entry: ConfigEntry,
    cas: Option<u64>,
) -> Result<bool, ApiError> {
    entry.validate().map_err(|e| ApiError::BadRequest(e.0))?;
    if entry.needs_l7() {
        let protocol = protocol_of(s, entry.name()).await?;
        match &entry {
            ConfigEntry::ServiceIntentions(e) => {
                check_l7_allowed(e, &protocol).map_err(|e| ApiError::BadRequest(e.0))?;
            }
            _ if !is_l7_protocol(&protocol) => {
                return Err(ApiError::BadRequest(format!(
                    "discovery chain {:?} uses a protocol {protocol:?} that does not permit advanced routing or splitting behavior",
                    entry.name()
                )));
            }
            _ => {}
        }
    }
    let request = WriteRequest::ConfigEntrySet {
        kind: entry.kind().to_string(),
        name: entry.name().to_string(),
        body: entry.to_json(),
        cas,
    };
    Ok(s.rpc.config_entry_write(request).await?)
}

/// `PUT /v1/config` (`?cas=`): `true` or `false`.
async fn apply(State(s): State<AppState>, c: Common, body: Bytes) -> ApiResult {
    let cas = cas_param(&c)?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("Request decoding failed: {e}")))?;
    let entry = ConfigEntry::from_json(value).map_err(|e| ApiError::BadRequest(e.0))?;
    let needs: Vec<Need<'_>> = entry_need(entry.kind(), entry.name(), Level::Write)
        .into_iter()
        .collect();
    require(&s, c.token.as_deref(), &needs).await?;
    let written = write_entry(&s, entry, cas).await?;
    Ok(c.ok(None, &written))
}

/// `GET /v1/config/:kind`.
async fn list(State(s): State<AppState>, Path(kind): Path<String>, q: ReadQuery) -> ApiResult {
    let kind = kind_of(&kind)?;
    let query = Query::ConfigEntryList {
        kind: Some(kind.to_string()),
    };
    let authz = authorizer(&s, q.token.as_deref()).await?;
    let (meta, mut entries) = s.rpc.config_entries(query, q.options).await?;
    let hidden = hide(&mut entries, |e| {
        entry_need(&e.kind, &e.name, Level::Read).is_none_or(|need| need.allowed(&authz))
    });
    let body: Vec<serde_json::Value> = entries.iter().map(StoredConfigEntry::to_api_json).collect();
    Ok(mark(q.reply(Some(meta), &body)?, hidden))
}

/// `GET /v1/config/:kind/:name`: 404 when absent.
async fn read(
    State(s): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
    q: ReadQuery,
) -> ApiResult {
    let kind = kind_of(&kind)?;
    let needs: Vec<Need<'_>> = entry_need(kind, &name, Level::Read).into_iter().collect();
    require(&s, q.token.as_deref(), &needs).await?;
    match get_entry(&s, kind, &name, q.options).await? {
        (meta, Some(entry)) => Ok(q.ok(Some(meta), &entry.to_api_json())),
        (_, None) => Err(ApiError::NotFound(format!(
            "Config entry not found for {kind:?} / {name:?}"
        ))),
    }
}

/// `DELETE /v1/config/:kind/:name`: `{}`, or with `?cas=` whether it was deleted (Consul
/// keeps the plain delete's empty object for older callers).
async fn delete(
    State(s): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
    c: Common,
) -> ApiResult {
    let kind = kind_of(&kind)?;
    let cas = cas_param(&c)?;
    let needs: Vec<Need<'_>> = entry_need(kind, &name, Level::Write).into_iter().collect();
    require(&s, c.token.as_deref(), &needs).await?;
    let request = WriteRequest::ConfigEntryDelete {
        kind: kind.to_string(),
        name,
        cas,
    };
    let deleted = s.rpc.config_entry_write(request).await?;
    Ok(match cas {
        Some(_) => c.ok(None, &deleted),
        None => c.ok(None, &serde_json::json!({})),
    })
}
