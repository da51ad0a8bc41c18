//! Consul's HTTP API (`/v1/...`) on axum.
//!
//! [`router`] builds the whole API over an [`AppState`]; [`crate::serve::run`] binds it to a
//! listener. Handlers are grouped by Consul's API sections, one module each. What all of them
//! share is in two modules: `params` (the [`Common`] and [`ReadQuery`] extractors: Consul's
//! flags like `?recurse` carry no value, `?tag=` repeats, `?dc`/`?filter`/blocking options
//! are checked once) and `reply` (JSON rendering and the `X-Consul-*` headers).
//!
//! Layers, outermost first: method-not-allowed text (Consul's `method GET not allowed`),
//! request counting for metrics, then the routes.

mod agent;
mod catalog;
mod central_config;
mod config_entry;
mod connect_ca;
mod error;
mod health;
mod intentions;
mod kv;
mod members;
mod near;
mod operator;
mod params;
mod reply;
mod session;
mod snapshot;
mod status;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;

pub use error::{ApiError, ApiResult};
pub use params::{check_datacenter, Common, Params, ReadQuery};
pub use reply::{empty_ok, set_meta_headers};

use crate::agent::AgentCore;

/// What every handler can reach.
pub type AppState = Arc<AgentCore>;

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", axum::routing::get(root))
        .merge(agent::routes())
        .merge(catalog::routes())
        .merge(config_entry::routes())
        .merge(intentions::routes())
        .merge(connect_ca::routes())
        .merge(health::routes())
        .merge(kv::routes())
        .merge(members::routes())
        .merge(session::routes())
        .merge(snapshot::routes())
        .merge(status::routes())
        .merge(operator::routes())
        .merge(concord_ui::router(&state.config.ui))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(axum::middleware::from_fn(method_not_allowed_text))
        .with_state(state)
}

/// `GET /`: with the UI on, Consul's `301` to `/ui/`; with it off, 200 with a pointer to
/// the API, so HTTP health checks aimed at an agent's root pass as they do against Consul.
async fn root(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    if state.config.ui.enabled {
        return concord_ui::serve::moved(concord_ui::ROOT_REDIRECT);
    }
    axum::response::IntoResponse::into_response(
        "Concord agent: Consul's HTTP API is served under /v1/ (the web UI is off: -ui).\n",
    )
}

/// Consul answers a wrong method with `405` and `method X not allowed`; axum's default body
/// is empty.
async fn method_not_allowed_text(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(format!("method {method} not allowed")))
}

async fn count_requests(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    state.metrics.http_request(request.method().as_str());
    next.run(request).await
}
