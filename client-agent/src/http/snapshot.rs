//! `/v1/snapshot`: save (`GET`) and restore (`PUT`) the servers' whole state as an archive
//! (a gzipped tar; the servers build and check it, the agent only carries the bytes).
//!
//! ACLs, as Consul: both need a management token (`acl:write`), since an archive holds
//! every secret and a restore replaces them.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use concord_api::acl::authorizer::Level;
use concord_api::acl::rules::Global;
use concord_api::rpc::QueryOptions;

use super::authz::{require, Need};

use super::{empty_ok, set_meta_headers, ApiResult, AppState, Common, ReadQuery};

/// Largest archive `PUT /v1/snapshot` accepts (80 MiB). The servers cap the uncompressed
/// state at 64 MiB (it travels in one Raft entry); a compressed archive of that is smaller,
/// and the base64 RPC body of 80 MiB stays well inside the servers' 256 MiB body limit.
const MAX_ARCHIVE_BYTES: usize = 80 * 1024 * 1024;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route(
        "/v1/snapshot",
        get(save)
            .put(restore)
            .layer(DefaultBodyLimit::max(MAX_ARCHIVE_BYTES)),
    )
}

/// `GET /v1/snapshot[?stale]`: the archive, with the snapshot's index in `X-Consul-Index`.
/// Not a blocking endpoint (as in Consul): `?index` is ignored.
async fn save(State(s): State<AppState>, q: ReadQuery) -> ApiResult {
    require(
        &s,
        q.token.as_deref(),
        &[Need::Global(Global::Acl, Level::Write)],
    )
    .await?;
    let options = QueryOptions {
        min_index: 0,
        ..q.options
    };
    let (meta, archive) = s.rpc.snapshot(options).await?;
    let mut response = (StatusCode::OK, archive).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-gzip"),
    );
    set_meta_headers(response.headers_mut(), &meta);
    Ok(response)
}

/// `PUT /v1/snapshot`: restores the archive in the body. A corrupt or truncated archive is
/// refused (500 with what is wrong, as Consul) and nothing changes.
async fn restore(State(s): State<AppState>, c: Common, body: Bytes) -> ApiResult<Response> {
    require(
        &s,
        c.token.as_deref(),
        &[Need::Global(Global::Acl, Level::Write)],
    )
    .await?;
    s.rpc.snapshot_restore(body.to_vec()).await?;
    Ok(empty_ok())
}
