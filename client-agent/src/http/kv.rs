//! `/v1/kv/*` and `/v1/txn`: the replicated key/value store.
//!
//! ACLs (the first enforced surface, and the template for the rest): a single-key read
//! needs `key:read` (else 403); a recursive read or `?keys` is filtered to the keys the
//! token may read, with `X-Consul-Results-Filtered-By-ACLs: true` when something was
//! hidden; every write needs `key:write` on its key, a recursive delete write on the whole
//! prefix (Consul's `KeyWritePrefix`), and a transaction needs each operation's permission
//! before anything is sent (a denial is 403 and changes nothing).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use concord_api::acl::authorizer::{Authorizer, Level};
use concord_api::acl::rules::Resource;
use concord_api::kv::{KvEntry, KvOp, TxnOp};
use concord_api::rpc::{Query, QueryMeta};

use super::authz::mark;
use super::{set_meta_headers, ApiError, ApiResult, AppState, Common, Params, ReadQuery};

/// Largest value accepted (Consul's `kv_max_value_size` default: 512 KiB).
pub(crate) const MAX_VALUE_SIZE: usize = 512 * 1024;
/// Most operations in one transaction (Consul's documented limit).
const MAX_TXN_OPS: usize = 128;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/kv/", get(get_root).put(put_root).delete(delete_root))
        .route(
            "/v1/kv/{*key}",
            get(get_key).put(put_key).delete(delete_key),
        )
        .route("/v1/txn", put(txn))
}

async fn get_root(state: State<AppState>, q: ReadQuery) -> ApiResult {
    get_key(state, Path(String::new()), q).await
}

async fn put_root(state: State<AppState>, c: Common, body: Bytes) -> ApiResult {
    put_key(state, Path(String::new()), c, body).await
}

async fn delete_root(state: State<AppState>, c: Common) -> ApiResult {
    delete_key(state, Path(String::new()), c).await
}

/// 404 with an empty body but the index headers set: watchers of a missing key still need
/// an index to block on.
fn not_found(meta: &QueryMeta) -> Response {
    let mut response = StatusCode::NOT_FOUND.into_response();
    set_meta_headers(response.headers_mut(), meta);
    response
}

async fn get_key(State(s): State<AppState>, Path(key): Path<String>, q: ReadQuery) -> ApiResult {
    let params = &q.params;
    let recurse = params.has("recurse");
    let authz = s.acl.resolve(q.token.as_deref()).await?;
    if params.has("keys") {
        let separator = params
            .get("separator")
            .or_else(|| params.get("seperator"))
            .filter(|sep| !sep.is_empty())
            .map(str::to_string);
        let (meta, mut keys) = s.rpc.kv_keys(key.clone(), separator, q.options).await?;
        let before = keys.len();
        keys.retain(|k| authz.allows(Resource::Key, k, Level::Read));
        let filtered = keys.len() != before;
        if keys.is_empty() && !key.is_empty() {
            return Ok(mark(not_found(&meta), filtered));
        }
        return Ok(mark(q.ok(Some(meta), &keys), filtered));
    }
    if key.is_empty() && !recurse {
        return Err(ApiError::BadRequest("Missing key name".to_string()));
    }
    let query = if recurse {
        Query::KvList { prefix: key }
    } else {
        authz.require(Resource::Key, &key, Level::Read)?;
        Query::KvGet { key }
    };
    let (meta, mut entries) = s.rpc.kv(query, q.options).await?;
    let before = entries.len();
    entries.retain(|e| authz.allows(Resource::Key, &e.key, Level::Read));
    let filtered = entries.len() != before;
    let Some(first) = entries.first() else {
        return Ok(mark(not_found(&meta), filtered));
    };
    if params.has("raw") {
        return Ok(mark(raw_value(first, &meta), filtered));
    }
    Ok(mark(q.ok(Some(meta), &entries), filtered))
}

/// What a KV operation needs of the token (the servers ask the same).
fn check_op(authz: &Authorizer, op: &KvOp) -> Result<(), ApiError> {
    Ok(concord_api::acl::rpc::vet_kv_op(authz, op)?)
}

fn raw_value(entry: &KvEntry, meta: &QueryMeta) -> Response {
    let mut response = entry.value.clone().unwrap_or_default().into_response();
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("sandbox"),
    );
    set_meta_headers(headers, meta);
    response
}

fn parse_u64(params: &Params, key: &str) -> Result<Option<u64>, ApiError> {
    match params.get(key) {
        None => Ok(None),
        // Consul returns Go's `strconv.ParseUint` error as is, which its HTTP layer makes a 500.
        Some(v) => v.parse::<u64>().map(Some).map_err(|e| {
            let why = match e.kind() {
                std::num::IntErrorKind::PosOverflow => "value out of range",
                _ => "invalid syntax",
            };
            ApiError::Internal(format!("strconv.ParseUint: parsing {v:?}: {why}"))
        }),
    }
}

async fn put_key(
    State(s): State<AppState>,
    Path(key): Path<String>,
    c: Common,
    body: Bytes,
) -> ApiResult {
    let params = &c.params;
    if key.is_empty() {
        return Err(ApiError::BadRequest("Missing key name".to_string()));
    }
    if body.len() > MAX_VALUE_SIZE {
        return Err(ApiError::TooLarge(format!(
            "Request body({} bytes) too large, max size: {MAX_VALUE_SIZE} bytes. See kv_max_value_size.",
            body.len()
        )));
    }
    let flags = parse_u64(params, "flags")?.unwrap_or(0);
    let cas = parse_u64(params, "cas")?;
    let acquire = params.get("acquire").map(str::to_string);
    let release = params.get("release").map(str::to_string);
    let given = [cas.is_some(), acquire.is_some(), release.is_some()];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(ApiError::BadRequest(format!(
            "Conflicting flags: {}",
            params.raw()
        )));
    }
    let value = body.to_vec();
    let op = match (cas, acquire, release) {
        (Some(index), _, _) => KvOp::Cas {
            key,
            value,
            flags,
            index,
        },
        (_, Some(session), _) => KvOp::Lock {
            key,
            value,
            flags,
            session,
        },
        (_, _, Some(session)) => KvOp::Unlock {
            key,
            value,
            flags,
            session,
        },
        _ => KvOp::Set { key, value, flags },
    };
    kv_write(&s, &c, op).await
}

async fn delete_key(State(s): State<AppState>, Path(key): Path<String>, c: Common) -> ApiResult {
    let op = if c.params.has("recurse") {
        KvOp::DeleteTree { key }
    } else if key.is_empty() {
        return Err(ApiError::BadRequest("Missing key name".to_string()));
    } else if let Some(index) = parse_u64(&c.params, "cas")? {
        KvOp::DeleteCas { key, index }
    } else {
        KvOp::Delete { key }
    };
    kv_write(&s, &c, op).await
}

async fn kv_write(s: &AppState, c: &Common, op: KvOp) -> ApiResult {
    let authz = s.acl.resolve(c.token.as_deref()).await?;
    check_op(&authz, &op)?;
    let applied = s.rpc.kv_write(op).await?;
    Ok(c.ok(None, &applied))
}

async fn txn(State(s): State<AppState>, c: Common, body: Bytes) -> ApiResult {
    let ops: Vec<TxnOp> = concord_api::decode::decode_lenient(&body)
        .map_err(|e| ApiError::BadRequest(format!("Failed to parse body: {e}")))?;
    if ops.len() > MAX_TXN_OPS {
        return Err(ApiError::TooLarge(format!(
            "Transaction contains too many operations ({} > {MAX_TXN_OPS})",
            ops.len()
        )));
    }
    let mut kv_ops = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let kv = op.kv.as_ref().ok_or_else(|| {
            ApiError::BadRequest(format!(
                "operation {i}: only KV operations are supported in transactions"
            ))
        })?;
        if kv.value.as_ref().is_some_and(|v| v.len() > MAX_VALUE_SIZE) {
            return Err(ApiError::TooLarge(format!(
                "operation {i}: value exceeds {MAX_VALUE_SIZE} bytes"
            )));
        }
        kv_ops.push(
            kv.to_op()
                .map_err(|e| ApiError::BadRequest(format!("operation {i}: {e}")))?,
        );
    }
    let authz = s.acl.resolve(c.token.as_deref()).await?;
    for op in &kv_ops {
        check_op(&authz, op)?;
    }
    let response = s.rpc.txn(kv_ops).await?;
    let failed = response.errors.as_ref().is_some_and(|e| !e.is_empty());
    let code = if failed {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    Ok(c.json(code, None, &response))
}
