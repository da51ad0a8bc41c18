//! `/v1/acl/*` (tokens, policies, roles, templated policies, bootstrap) and
//! `/v1/agent/token/:type`, forwarded to the servers over RPC.
//!
//! With `acl.enabled = false` every one of them answers 401 `ACL support disabled`, as
//! Consul does. Otherwise reads need `acl:read` and writes `acl:write` (the bootstrap needs
//! nothing, `token/self` only a valid token); a token's SecretID is shown only to callers
//! with `acl:write` (`<hidden>` otherwise, as Consul redacts it). Policies and roles share
//! one set of handlers over the `AclRecord` trait (record, RPC variants, noun).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{any, get, put};
use axum::Router;
use concord_api::acl::authorizer::{Authorizer, Level};
use concord_api::acl::rules::Global;
use concord_api::acl::{
    templated, AclPolicy, AclQuery, AclResult, AclRole, AclToken, AclWrite, REDACTED_SECRET,
};
use concord_api::decode::decode_lenient;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{ApiError, ApiResult, AppState, Common, ReadQuery};
use crate::acl::AGENT_TOKEN_KINDS;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/acl/bootstrap", put(bootstrap))
        .route("/v1/acl/token", put(token_create))
        .route("/v1/acl/token/self", get(token_self))
        .route(
            "/v1/acl/token/{id}",
            get(token_read).put(token_update).delete(token_delete),
        )
        .route("/v1/acl/token/{id}/clone", put(token_clone))
        .route("/v1/acl/tokens", get(token_list))
        .merge(record_routes::<AclPolicy>())
        .route("/v1/acl/policies", get(policy_list))
        .merge(record_routes::<AclRole>())
        .route("/v1/acl/roles", get(role_list))
        .route("/v1/acl/templated-policies", get(templated_list))
        .route("/v1/acl/templated-policy/name/{*name}", get(templated_get))
        .route("/v1/acl/{*rest}", any(unsupported))
        .route("/v1/agent/token/{kind}", put(agent_token))
}

/// 401 `ACL support disabled` unless ACLs are on.
fn enabled(s: &AppState) -> Result<(), ApiError> {
    if s.acl.enabled() {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("ACL support disabled".to_string()))
    }
}

/// The caller's authorizer, which must grant `acl:<level>`.
async fn require(s: &AppState, c: &Common, level: Level) -> Result<Arc<Authorizer>, ApiError> {
    enabled(s)?;
    let authz = s.acl.resolve(c.token.as_deref()).await?;
    authz.require_global(Global::Acl, level)?;
    Ok(authz)
}

fn body<T: DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    decode_lenient(bytes).map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))
}

/// Hides a token's secret from a caller without `acl:write`.
fn shown(authz: &Authorizer, mut token: AclToken) -> AclToken {
    if !authz.allows_global(Global::Acl, Level::Write) {
        token.secret_id = REDACTED_SECRET.to_string();
    }
    token
}

fn not_exist(what: &str) -> ApiError {
    ApiError::NotFound(format!("Requested {what} does not exist: ACL not found"))
}

fn unexpected(result: &AclResult) -> ApiError {
    ApiError::Internal(format!("unexpected ACL result: {result:?}"))
}

async fn write(s: &AppState, w: AclWrite) -> Result<AclResult, ApiError> {
    Ok(s.rpc.acl_write(w).await?)
}

async fn bootstrap(State(s): State<AppState>, c: Common) -> ApiResult {
    enabled(&s)?;
    match write(&s, AclWrite::Bootstrap).await? {
        AclResult::Token(Some(token)) => Ok(c.ok(None, &token)),
        other => Err(unexpected(&other)),
    }
}

async fn token_set(s: &AppState, c: &Common, token: AclToken, create: bool) -> ApiResult {
    match write(s, AclWrite::TokenSet { token, create }).await? {
        AclResult::Token(Some(token)) => Ok(c.ok(None, &token)),
        other => Err(unexpected(&other)),
    }
}

async fn token_create(State(s): State<AppState>, c: Common, bytes: Bytes) -> ApiResult {
    require(&s, &c, Level::Write).await?;
    let token: AclToken = body(&bytes)?;
    token_set(&s, &c, token, true).await
}

async fn token_update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    c: Common,
    bytes: Bytes,
) -> ApiResult {
    require(&s, &c, Level::Write).await?;
    let mut token: AclToken = body(&bytes)?;
    if !token.accessor_id.is_empty() && token.accessor_id != id {
        return Err(ApiError::BadRequest(
            "Token Accessor ID in URL and payload do not match".to_string(),
        ));
    }
    token.accessor_id = id;
    token_set(&s, &c, token, false).await
}

async fn read_token(s: &AppState, q: &ReadQuery, id: String) -> ApiResult<AclToken> {
    let (_, result) = s
        .rpc
        .acl_read(AclQuery::Token { accessor_id: id }, q.options)
        .await?;
    match result {
        AclResult::Token(Some(token)) => Ok(token),
        AclResult::Token(None) => Err(not_exist("token")),
        other => Err(unexpected(&other)),
    }
}

async fn token_read(State(s): State<AppState>, Path(id): Path<String>, q: ReadQuery) -> ApiResult {
    let authz = require(&s, &q, Level::Read).await?;
    let (meta, result) = s
        .rpc
        .acl_read(AclQuery::Token { accessor_id: id }, q.options)
        .await?;
    match result {
        AclResult::Token(Some(token)) => Ok(q.ok(Some(meta), &shown(&authz, token))),
        AclResult::Token(None) => Err(not_exist("token")),
        other => Err(unexpected(&other)),
    }
}

/// `GET /v1/acl/token/self`: the token the request carries (no `acl:read` needed).
async fn token_self(State(s): State<AppState>, q: ReadQuery) -> ApiResult {
    enabled(&s)?;
    let secret = s.acl.effective_secret(q.token.as_deref());
    let (meta, result) = s
        .rpc
        .acl_read(AclQuery::Resolve { secret_id: secret }, q.options)
        .await?;
    match result {
        AclResult::Resolved(Some(resolved)) => Ok(q.ok(Some(meta), &resolved.token)),
        AclResult::Resolved(None) => Err(ApiError::Forbidden("ACL not found".to_string())),
        other => Err(unexpected(&other)),
    }
}

async fn token_delete(State(s): State<AppState>, Path(id): Path<String>, c: Common) -> ApiResult {
    require(&s, &c, Level::Write).await?;
    write(&s, AclWrite::TokenDelete { accessor_id: id }).await?;
    Ok(c.ok(None, &true))
}

/// `PUT /v1/acl/token/:id/clone`: a new token (new IDs) with the same links, and the
/// description given (else the original's).
async fn token_clone(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: ReadQuery,
    bytes: Bytes,
) -> ApiResult {
    require(&s, &q, Level::Write).await?;
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase")]
    struct CloneBody {
        #[serde(default)]
        description: String,
    }
    let clone: CloneBody = body(&bytes)?;
    let original = read_token(&s, &q, id).await?;
    let token = AclToken {
        accessor_id: String::new(),
        secret_id: String::new(),
        description: if clone.description.is_empty() {
            original.description
        } else {
            clone.description
        },
        policies: original.policies,
        roles: original.roles,
        service_identities: original.service_identities,
        node_identities: original.node_identities,
        templated_policies: original.templated_policies,
        local: original.local,
        ..AclToken::default()
    };
    token_set(&s, &q, token, true).await
}

async fn token_list(State(s): State<AppState>, q: ReadQuery) -> ApiResult {
    let authz = require(&s, &q, Level::Read).await?;
    let non_empty = |k: &str| {
        q.params
            .get(k)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let query = AclQuery::Tokens {
        policy: non_empty("policy"),
        role: non_empty("role"),
    };
    let (meta, result) = s.rpc.acl_read(query, q.options).await?;
    let AclResult::Tokens(tokens) = result else {
        return Err(unexpected(&result));
    };
    let tokens: Vec<AclToken> = tokens.into_iter().map(|t| shown(&authz, t)).collect();
    q.reply(Some(meta), &tokens)
}

/// What policy and role CRUD differ in: the record, its RPC variants and its noun. One
/// set of handlers ([`record_routes`]) serves both.
trait AclRecord: serde::Serialize + DeserializeOwned + Default + Send + 'static {
    /// The path segment and the noun in 404 texts (`policy`, `role`).
    const NOUN: &'static str;
    /// The noun in the ID-mismatch text (`Policy`, `Role`).
    const TITLE: &'static str;
    fn id_mut(&mut self) -> &mut String;
    fn set(self) -> AclWrite;
    fn delete(id: String) -> AclWrite;
    fn by_id(id: String) -> AclQuery;
    fn by_name(name: String) -> AclQuery;
    /// The record in a result of this kind (another kind: a server bug).
    fn found(result: AclResult) -> Result<Option<Self>, ApiError>;
}

impl AclRecord for AclPolicy {
    const NOUN: &'static str = "policy";
    const TITLE: &'static str = "Policy";
    fn id_mut(&mut self) -> &mut String {
        &mut self.id
    }
    fn set(self) -> AclWrite {
        AclWrite::PolicySet(self)
    }
    fn delete(id: String) -> AclWrite {
        AclWrite::PolicyDelete { id }
    }
    fn by_id(id: String) -> AclQuery {
        AclQuery::Policy { id }
    }
    fn by_name(name: String) -> AclQuery {
        AclQuery::PolicyByName { name }
    }
    fn found(result: AclResult) -> Result<Option<Self>, ApiError> {
        match result {
            AclResult::Policy(p) => Ok(p),
            other => Err(unexpected(&other)),
        }
    }
}

impl AclRecord for AclRole {
    const NOUN: &'static str = "role";
    const TITLE: &'static str = "Role";
    fn id_mut(&mut self) -> &mut String {
        &mut self.id
    }
    fn set(self) -> AclWrite {
        AclWrite::RoleSet(self)
    }
    fn delete(id: String) -> AclWrite {
        AclWrite::RoleDelete { id }
    }
    fn by_id(id: String) -> AclQuery {
        AclQuery::Role { id }
    }
    fn by_name(name: String) -> AclQuery {
        AclQuery::RoleByName { name }
    }
    fn found(result: AclResult) -> Result<Option<Self>, ApiError> {
        match result {
            AclResult::Role(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }
}

/// `PUT /v1/acl/<noun>`, `GET|PUT|DELETE /v1/acl/<noun>/:id`, `GET /v1/acl/<noun>/name/:name`.
fn record_routes<R: AclRecord>() -> Router<AppState> {
    Router::new()
        .route(&format!("/v1/acl/{}", R::NOUN), put(record_create::<R>))
        .route(
            &format!("/v1/acl/{}/{{id}}", R::NOUN),
            get(record_read::<R>)
                .put(record_update::<R>)
                .delete(record_delete::<R>),
        )
        .route(
            &format!("/v1/acl/{}/name/{{name}}", R::NOUN),
            get(record_by_name::<R>),
        )
}

async fn record_set<R: AclRecord>(s: &AppState, c: &Common, record: R) -> ApiResult {
    match R::found(write(s, record.set()).await?)? {
        Some(r) => Ok(c.ok(None, &r)),
        None => Err(not_exist(R::NOUN)),
    }
}

async fn record_create<R: AclRecord>(
    State(s): State<AppState>,
    c: Common,
    bytes: Bytes,
) -> ApiResult {
    require(&s, &c, Level::Write).await?;
    let mut record: R = body(&bytes)?;
    record.id_mut().clear();
    record_set(&s, &c, record).await
}

async fn record_update<R: AclRecord>(
    State(s): State<AppState>,
    Path(id): Path<String>,
    c: Common,
    bytes: Bytes,
) -> ApiResult {
    require(&s, &c, Level::Write).await?;
    let mut record: R = body(&bytes)?;
    if !record.id_mut().is_empty() && *record.id_mut() != id {
        return Err(ApiError::BadRequest(format!(
            "{} ID in URL and payload do not match",
            R::TITLE
        )));
    }
    *record.id_mut() = id;
    record_set(&s, &c, record).await
}

async fn record_get<R: AclRecord>(s: &AppState, q: &ReadQuery, query: AclQuery) -> ApiResult {
    require(s, q, Level::Read).await?;
    let (meta, result) = s.rpc.acl_read(query, q.options).await?;
    match R::found(result)? {
        Some(r) => Ok(q.ok(Some(meta), &r)),
        None => Err(not_exist(R::NOUN)),
    }
}

async fn record_read<R: AclRecord>(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: ReadQuery,
) -> ApiResult {
    record_get::<R>(&s, &q, R::by_id(id)).await
}

async fn record_by_name<R: AclRecord>(
    State(s): State<AppState>,
    Path(name): Path<String>,
    q: ReadQuery,
) -> ApiResult {
    record_get::<R>(&s, &q, R::by_name(name)).await
}

async fn record_delete<R: AclRecord>(
    State(s): State<AppState>,
    Path(id): Path<String>,
    c: Common,
) -> ApiResult {
    require(&s, &c, Level::Write).await?;
    write(&s, R::delete(id)).await?;
    Ok(c.ok(None, &true))
}

/// `GET /v1/acl/policies`: list stubs (Consul's omit `Rules`).
async fn policy_list(State(s): State<AppState>, q: ReadQuery) -> ApiResult {
    require(&s, &q, Level::Read).await?;
    let (meta, result) = s.rpc.acl_read(AclQuery::Policies, q.options).await?;
    let AclResult::Policies(policies) = result else {
        return Err(unexpected(&result));
    };
    let stubs: Vec<serde_json::Value> = policies
        .iter()
        .map(|p| {
            let mut v = serde_json::to_value(p).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.remove("Rules");
            }
            v
        })
        .collect();
    q.reply(Some(meta), &stubs)
}

async fn role_list(State(s): State<AppState>, q: ReadQuery) -> ApiResult {
    require(&s, &q, Level::Read).await?;
    let policy = q.params.get("policy").filter(|p| !p.is_empty());
    let query = AclQuery::Roles {
        policy: policy.map(str::to_string),
    };
    let (meta, result) = s.rpc.acl_read(query, q.options).await?;
    let AclResult::Roles(roles) = result else {
        return Err(unexpected(&result));
    };
    q.reply(Some(meta), &roles)
}

async fn templated_list(State(s): State<AppState>, c: Common) -> ApiResult {
    require(&s, &c, Level::Read).await?;
    Ok(c.ok(None, &templated::list()))
}

async fn templated_get(
    State(s): State<AppState>,
    Path(name): Path<String>,
    c: Common,
) -> ApiResult {
    require(&s, &c, Level::Read).await?;
    let info = templated::get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("Invalid templated policy Name: {name}")))?;
    Ok(c.ok(None, &info))
}

/// ACL endpoints Concord does not have (auth methods, binding rules, login): 401 with ACLs
/// disabled, as every ACL endpoint; 404 otherwise.
async fn unsupported(State(s): State<AppState>) -> ApiResult {
    enabled(&s)?;
    Err(ApiError::NotFound(
        "This ACL endpoint is not supported by Concord".to_string(),
    ))
}

/// `PUT /v1/agent/token/:type` with `{"Token": "..."}` (needs `acl:write`).
async fn agent_token(
    State(s): State<AppState>,
    Path(kind): Path<String>,
    c: Common,
    bytes: Bytes,
) -> ApiResult {
    require(&s, &c, Level::Write).await?;
    if !AGENT_TOKEN_KINDS.contains(&kind.as_str()) {
        return Err(ApiError::NotFound(format!("Token {kind:?} is unknown")));
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase")]
    struct TokenBody {
        #[serde(default)]
        token: String,
    }
    let given: TokenBody = body(&bytes)?;
    s.acl
        .set_agent_token(&kind, given.token)
        .map_err(ApiError::Internal)?;
    Ok(super::empty_ok())
}
