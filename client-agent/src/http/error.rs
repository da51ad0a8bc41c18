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
    /// 403: an ACL refusal (`Permission denied: ...`, `ACL not found`); nothing changed.
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
            // Validation failures from the state store are the caller's fault: Consul
            // returns 500 for most of these, but 400 is what clients expect of bad input
            // (py-consul and node-consul treat both as errors).
            RpcError::Invalid(m) => ApiError::BadRequest(m),
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
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
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
