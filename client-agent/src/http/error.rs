//! The one error type of HTTP handlers, rendered as Consul renders errors: a status code and
//! a plain-text body (never JSON).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use concord_api::rpc::RpcError;

/// An HTTP API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or invalid; nothing was changed.
    #[error("{0}")]
    BadRequest(String),
    /// 404 with a message (empty for KV misses).
    #[error("{0}")]
    NotFound(String),
    /// 413: body too large.
    #[error("{0}")]
    TooLarge(String),
    /// 500: the server side failed.
    #[error("{0}")]
    Internal(String),
    /// 403: the caller may not do this: an ACL refusal (`Permission denied: ...`, `ACL not
    /// found`) or a write from outside `allow_write_http_from`; nothing changed.
    #[error("{0}")]
    Forbidden(String),
    /// 401: ACL endpoints while ACLs are disabled (`ACL support disabled`).
    #[error("{0}")]
    Unauthorized(String),
}

impl From<concord_api::acl::authorizer::PermissionDenied> for ApiError {
    fn from(e: concord_api::acl::authorizer::PermissionDenied) -> Self {
        ApiError::Forbidden(e.to_string())
    }
}

impl From<crate::acl::ResolveError> for ApiError {
    fn from(e: crate::acl::ResolveError) -> Self {
        ApiError::Forbidden(e.to_string())
    }
}

impl From<RpcError> for ApiError {
    fn from(e: RpcError) -> Self {
        match e {
            // Validation failures from the servers are 500 with the server's text, as
            // Consul's RPC errors are: clients match on exactly these (`invalid session
            // "..."`, `Invalid Session TTL ...`) and recover differently from a 400.
            RpcError::Invalid(m) => ApiError::Internal(m),
            RpcError::NotFound(m) => ApiError::NotFound(m),
            RpcError::NoLeader | RpcError::NotLeader { .. } => {
                ApiError::Internal("No cluster leader".to_string())
            }
            RpcError::Internal(m) => ApiError::Internal(m),
            RpcError::PermissionDenied(m) => ApiError::Forbidden(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        };
        let mut response = (status, self.to_string()).into_response();
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

/// Handler result.
pub type ApiResult<T = Response> = Result<T, ApiError>;
