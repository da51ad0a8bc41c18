//! Consul's HTTP API (`/v1/...`) on axum.
//!
//! [`router`] builds the whole API over an [`AppState`]; [`crate::serve::run`] binds it to a
//! listener. Handlers are grouped by Consul's API sections, one module each. What all of them
//! share is in three modules: `params` (the [`Common`] and [`ReadQuery`] extractors: Consul's
//! flags like `?recurse` carry no value, `?tag=` repeats, `?dc`/`?filter`/blocking options
//! are checked once), `reply` (JSON rendering and the `X-Consul-*` headers) and `authz`
//! (ACLs: each handler states what its token needs in one line, and lists are filtered
//! with `X-Consul-Results-Filtered-By-ACLs`; a refusal comes before any change).
//!
//! Layers, outermost first: path cleaning (Go's `ServeMux` answers a path with `//`, `.` or
//! `..` segments with a 301 to the cleaned path, and Consul's clients follow it), the
//! configured response headers (`http_config.response_headers`), write restrictions by the
//! caller's network (`allow_write_http_from`: 403, checked before the method, as Consul's
//! handler wrapper does), method-not-allowed text
//! (Consul's `method GET not allowed`), the request's token set as the one every server RPC
//! it makes carries, and GETs answered by one shared blocking read share its encoded
//! reply (both `authz::on_behalf`), request counting for metrics, then the routes.

mod acl;
mod agent;
mod authz;
mod catalog;
mod central_config;
mod config_entry;
mod connect_ca;
mod error;
mod health;
mod intentions;
mod kv;
mod members;
mod monitor;
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
use axum::response::{IntoResponse, Response};
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
        .merge(acl::routes())
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
        .route("/v1/agent/monitor", axum::routing::get(monitor::monitor))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authz::on_behalf,
        ))
        .layer(axum::middleware::from_fn(method_not_allowed_text))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            restrict_writes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            response_headers,
        ))
        .layer(axum::middleware::from_fn(redirect_unclean_path))
        .with_state(state)
}

/// Go's `path.Clean` as `ServeMux` applies it: repeated slashes collapse, `.` and `..`
/// segments resolve, and a trailing slash is kept.
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut clean = format!("/{}", parts.join("/"));
    if path.ends_with('/') && clean.len() > 1 {
        clean.push('/');
    }
    clean
}

/// A path that is not clean gets Go's `http.Redirect`: 301 to the cleaned path (query kept),
/// and for `GET` an HTML note, byte for byte as Consul's Go server writes it.
async fn redirect_unclean_path(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let clean = clean_path(path);
    if clean == path {
        return next.run(request).await;
    }
    let location = match request.uri().query() {
        Some(q) => format!("{clean}?{q}"),
        None => clean,
    };
    let method = request.method();
    let mut builder = Response::builder()
        .status(StatusCode::MOVED_PERMANENTLY)
        .header(axum::http::header::LOCATION, location.as_str());
    if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
        builder = builder.header(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8");
    }
    let body = if method == axum::http::Method::GET {
        format!(
            "<a href=\"{}\">Moved Permanently</a>.\n\n",
            html_escape(&location)
        )
    } else {
        String::new()
    };
    builder
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::MOVED_PERMANENTLY.into_response())
}

/// Go's `htmlEscape` (`http.Redirect`'s note).
fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// `allow_write_http_from`: a write from outside the allowed networks is 403
/// `Access is restricted`. A request without a peer address (an in-process call) passes.
async fn restrict_writes(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let allowed = &state.config.allow_write_http_from;
    let method = request.method();
    let read = method == axum::http::Method::GET
        || method == axum::http::Method::HEAD
        || method == axum::http::Method::OPTIONS;
    if read || allowed.is_empty() {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    match peer {
        Some(ip) if !allowed.iter().any(|net| net.contains(&ip)) => {
            ApiError::Forbidden("Access is restricted".to_string()).into_response()
        }
        _ => next.run(request).await,
    }
}

/// Adds `http_config.response_headers` to every answer (Consul sets them on every response
/// of the HTTP API, errors included).
async fn response_headers(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    for (name, value) in &state.config.response_headers {
        let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) else {
            continue;
        };
        response.headers_mut().insert(name, value);
    }
    response
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
