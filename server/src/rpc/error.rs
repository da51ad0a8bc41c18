//! Request bodies in, RPC failures out as HTTP responses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use concord_api::rpc::RpcError;
use serde::de::DeserializeOwned;

/// An [`RpcError`] on its way out: a non-2xx status with the error as the JSON body.
#[derive(Debug)]
pub(crate) struct RpcFailure(pub(crate) RpcError);

impl From<RpcError> for RpcFailure {
    fn from(e: RpcError) -> Self {
        RpcFailure(e)
    }
}

/// The status an error is sent with.
pub(crate) fn status_of(e: &RpcError) -> StatusCode {
    match e {
        RpcError::Invalid(_) => StatusCode::BAD_REQUEST,
        RpcError::NotFound(_) => StatusCode::NOT_FOUND,
        RpcError::NoLeader | RpcError::NotLeader { .. } => StatusCode::SERVICE_UNAVAILABLE,
        RpcError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        RpcError::PermissionDenied(_) => StatusCode::FORBIDDEN,
    }
}

impl IntoResponse for RpcFailure {
    fn into_response(self) -> Response {
        (status_of(&self.0), Json(self.0)).into_response()
    }
}

/// Decodes a JSON body; malformed input is the caller's error (400).
pub(crate) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, RpcFailure> {
    serde_json::from_slice(body)
        .map_err(|e| RpcFailure(RpcError::Invalid(format!("bad request body: {e}"))))
}
