//! The routes under `/ui`: files from the override directory or the embedded set, and
//! `index.html` for every other path so client-side routes survive a reload or a bookmark.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::assets::{content_type, embedded};
use crate::config::{UiConfig, CONTENT_PATH};

/// Where `/` sends a browser when the UI is on (Consul answers `301` to its content path).
pub const ROOT_REDIRECT: &str = CONTENT_PATH;

/// The page's Content-Security-Policy: everything from this origin, nothing inline, no
/// framing. The front end has no inline script or style attribute, so this costs nothing
/// and stops injected markup (a KV value, a service name) from running code.
const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The UI's routes (`/ui`, `/ui/`, `/ui/*`) when `config.enabled`, none otherwise. Generic
/// over the caller's state so it merges into any router.
pub fn router<S: Clone + Send + Sync + 'static>(config: &UiConfig) -> Router<S> {
    if !config.enabled {
        return Router::new();
    }
    let dir: Files = Arc::new(config.dir.clone());
    Router::new()
        .route("/ui", get(|| async { moved(CONTENT_PATH) }))
        .route("/ui/", get(index))
        .route("/ui/{*path}", get(file))
        .with_state(dir)
}

/// `301 Moved Permanently` to `location`, as Consul redirects `/` and `/ui`.
pub fn moved(location: &'static str) -> Response {
    (
        StatusCode::MOVED_PERMANENTLY,
        [(header::LOCATION, HeaderValue::from_static(location))],
    )
        .into_response()
}

/// The override directory, if any.
type Files = Arc<Option<PathBuf>>;

async fn index(State(dir): State<Files>) -> Response {
    serve("index.html", dir.as_deref()).await
}

/// `/ui/assets/...` are files (404 when missing); any other path is a client-side route.
async fn file(State(dir): State<Files>, UrlPath(path): UrlPath<String>) -> Response {
    if path.starts_with("assets/") {
        if !is_safe(&path) {
            return not_found();
        }
        return serve(&path, dir.as_deref()).await;
    }
    serve("index.html", dir.as_deref()).await
}

/// Only plain relative names: no `..`, no hidden files, no empty segment, no backslash, so a
/// request cannot leave the override directory.
fn is_safe(path: &str) -> bool {
    !path.contains('\\')
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && !seg.starts_with('.'))
}

async fn serve(path: &str, dir: Option<&Path>) -> Response {
    let body = match dir {
        Some(dir) => match tokio::fs::read(dir.join(path)).await {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(path, dir = %dir.display(), error = %e, "reading UI file");
                None
            }
        },
        None => None,
    };
    let body = match body {
        Some(bytes) => bytes,
        None => match embedded(path) {
            Some(asset) => asset.body.to_vec(),
            None => return not_found(),
        },
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type(path)),
            // Small files on a local agent: always revalidate, so an upgraded agent's UI is
            // never mixed with a stale cached module.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response();
    if path == "index.html" {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    response
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

#[cfg(test)]
mod tests;
