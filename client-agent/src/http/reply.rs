//! Rendering replies the way Consul does: JSON (pretty on request) and the `X-Consul-*`
//! headers of a read. Handlers reply through `Common`'s methods (`params.rs`), which add
//! `?filter=`; these are the pieces they are made of.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use concord_api::rpc::QueryMeta;
use serde::Serialize;

use super::ApiError;

/// Renders a JSON body (pretty-printed on request), with a read's headers when there was a
/// read.
pub(super) fn json<T: Serialize>(
    pretty: bool,
    status: StatusCode,
    meta: Option<QueryMeta>,
    value: &T,
) -> Response {
    let encode = || {
        if pretty {
            serde_json::to_vec_pretty(value)
        } else {
            serde_json::to_vec(value)
        }
        .map(bytes::Bytes::from)
    };
    // A 200 answered by a shared blocking read is encoded once for all its watchers.
    let body = if status == StatusCode::OK {
        crate::rpc_client::encode_once(encode)
    } else {
        encode()
    };
    match body {
        Ok(body) => {
            let mut response = (status, body).into_response();
            response.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Some(meta) = meta {
                set_meta_headers(response.headers_mut(), &meta);
            }
            response
        }
        Err(e) => ApiError::Internal(format!("encoding response: {e}")).into_response(),
    }
}

/// A value as JSON, for endpoints that reshape their reply.
pub(super) fn encode<T: Serialize>(value: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::Internal(format!("encoding response: {e}")))
}

/// Adds `X-Consul-Index` (never 0: clients would busy-loop), `X-Consul-KnownLeader` and
/// `X-Consul-LastContact`.
pub fn set_meta_headers(headers: &mut HeaderMap, meta: &QueryMeta) {
    let index = meta.index.max(1);
    let pairs = [
        ("x-consul-index", index.to_string()),
        ("x-consul-knownleader", meta.known_leader.to_string()),
        ("x-consul-lastcontact", meta.last_contact_ms.to_string()),
    ];
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    // The servers filtered before the agent did (they check every read's token too).
    if meta.results_filtered_by_acls {
        headers.insert(
            concord_api::acl::RESULTS_FILTERED_HEADER,
            HeaderValue::from_static("true"),
        );
    }
}

/// An empty 200, as Consul's agent write endpoints answer.
pub fn empty_ok() -> Response {
    StatusCode::OK.into_response()
}
