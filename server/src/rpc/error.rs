//! RPC failures as HTTP responses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use concord_api::rpc::RpcError;

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
    }
}

impl IntoResponse for RpcFailure {
    fn into_response(self) -> Response {
        (status_of(&self.0), Json(self.0)).into_response()
    }
}
