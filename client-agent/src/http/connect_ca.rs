//! Connect CA endpoints: `/v1/connect/ca/roots` and `/v1/connect/ca/configuration` (read
//! from and written to the servers), and the agent's cached `/v1/agent/connect/ca/roots` and
//! `/v1/agent/connect/ca/leaf/:service` (answered from [`crate::connect::ConnectCa`]).
//!
//! There is deliberately no endpoint that signs a caller's CSR: a leaf is only ever issued
//! to this agent's own key for the service named in the path.
//!
//! ACLs, as Consul: the roots need nothing, the CA configuration `operator:read` /
//! `operator:write`, a leaf `service:write` on its service.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use concord_api::acl::authorizer::Level;
use concord_api::connect::{valid_service_name, CaConfiguration, CaRoots};
use concord_api::decode::decode_lenient;
use concord_api::rpc::{QueryMeta, QueryOptions};
use tokio::sync::watch;

use super::authz::{require, Need};
use super::params::Token;
use super::{ApiError, ApiResult, AppState, ReadQuery};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/connect/ca/roots", get(roots))
        .route(
            "/v1/connect/ca/configuration",
            get(get_config).put(put_config),
        )
        .route("/v1/agent/connect/ca/roots", get(agent_roots))
        .route("/v1/agent/connect/ca/leaf/{service}", get(leaf))
}

/// Longest a first leaf request waits for its certificate before reporting why it has none.
const FIRST_LEAF_WAIT: Duration = Duration::from_secs(30);

/// `?pem`: the roots (and their intermediates) as one PEM chain.
fn pem_chain(roots: &CaRoots) -> Response {
    let mut body = String::new();
    for root in &roots.roots {
        body.push_str(root.root_cert.trim_end());
        body.push('\n');
        for intermediate in &root.intermediate_certs {
            body.push_str(intermediate.trim_end());
            body.push('\n');
        }
    }
    let mut response = body.into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/pem-certificate-chain"),
    );
    response
}

fn roots_reply(q: &ReadQuery, meta: QueryMeta, roots: &CaRoots) -> Response {
    if q.params.flag("pem") {
        let mut response = pem_chain(roots);
        super::set_meta_headers(response.headers_mut(), &meta);
        return response;
    }
    q.ok(Some(meta), roots)
}

async fn roots(State(s): State<AppState>, q: ReadQuery) -> ApiResult {
    let (meta, roots) = s.rpc.ca_roots(q.options).await?;
    Ok(roots_reply(&q, meta, &roots))
}

async fn get_config(State(s): State<AppState>, q: ReadQuery) -> ApiResult {
    require(&s, q.token.as_deref(), &[Need::operator(Level::Read)]).await?;
    match s.rpc.ca_config(q.options).await? {
        (meta, Some(config)) => Ok(q.ok(Some(meta), &config)),
        (_, None) => Err(ApiError::Internal(
            "CA has not finished initializing".to_string(),
        )),
    }
}

async fn put_config(State(s): State<AppState>, token: Token, body: Bytes) -> ApiResult {
    let config: CaConfiguration = decode_lenient(&body)
        .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?;
    require(&s, token.as_deref(), &[Need::operator(Level::Write)]).await?;
    s.rpc.ca_set_config(config).await?;
    Ok(super::empty_ok())
}

/// Waits until `rx` holds a value `ready` accepts, or `wait` passes; `None` on timeout.
async fn wait_for<T: Clone>(
    rx: &mut watch::Receiver<T>,
    wait: Duration,
    ready: impl FnMut(&T) -> bool,
) -> Option<T> {
    match tokio::time::timeout(wait, rx.wait_for(ready)).await {
        Ok(Ok(value)) => Some(value.clone()),
        _ => None,
    }
}

/// The blocking wait of a cached read: `?wait` (default 5 min, capped at 10), or none.
fn blocking(options: &QueryOptions) -> Option<Duration> {
    options.blocking_wait()
}

async fn agent_roots(State(s): State<AppState>, q: ReadQuery) -> ApiResult {
    let mut rx = s.connect.roots();
    let min = q.options.min_index;
    let cached = match blocking(&q.options) {
        Some(wait) => {
            wait_for(&mut rx, wait, |r| {
                r.as_ref().is_some_and(|r| r.meta.index > min)
            })
            .await
        }
        None => None,
    }
    .flatten()
    .or_else(|| rx.borrow().clone());
    match cached {
        Some(view) => Ok(roots_reply(&q, view.meta, &view.roots)),
        // Nothing cached yet (just started, or the servers were unreachable): ask them
        // (Consul's agent cache also falls through to the servers on a miss).
        None => {
            let options = QueryOptions {
                min_index: 0,
                ..q.options
            };
            let (meta, roots) = s.rpc.ca_roots(options).await?;
            Ok(roots_reply(&q, meta, &roots))
        }
    }
}

async fn leaf(State(s): State<AppState>, Path(service): Path<String>, q: ReadQuery) -> ApiResult {
    if !valid_service_name(&service) {
        return Err(ApiError::BadRequest(format!(
            "Invalid service name {service:?}: only letters, digits, '-', '_' and '.' can be part \
             of a service identity"
        )));
    }
    require(
        &s,
        q.token.as_deref(),
        &[Need::service(&service, Level::Write)],
    )
    .await?;
    let mut rx = s.connect.leaf(&service);
    let min = q.options.min_index;
    let view = match blocking(&q.options) {
        Some(wait) => {
            let newer = wait_for(&mut rx, wait, |v| {
                v.cert.as_ref().is_some_and(|c| c.modify_index > min)
            })
            .await;
            newer.unwrap_or_else(|| rx.borrow().clone())
        }
        None => wait_for(&mut rx, FIRST_LEAF_WAIT, |v| {
            v.cert.is_some() || v.error.is_some()
        })
        .await
        .unwrap_or_else(|| rx.borrow().clone()),
    };
    match (view.cert, view.error) {
        (Some(cert), _) => {
            let meta = QueryMeta {
                index: cert.modify_index,
                known_leader: true,
                last_contact_ms: 0,
                results_filtered_by_acls: false,
            };
            Ok(q.ok(Some(meta), &cert))
        }
        (None, Some(error)) => Err(ApiError::Internal(error)),
        (None, None) => Err(ApiError::Internal(
            "timed out waiting for a leaf certificate".to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt as _;

    use crate::agent::AgentCore;
    use crate::catalog_cache::CatalogSnapshot;
    use crate::config::Config;
    use crate::connect::fake::FakeCa;

    fn app(fake: Arc<FakeCa>) -> axum::Router {
        let (_tx, view) = tokio::sync::watch::channel(Arc::new(CatalogSnapshot::default()));
        let (core, _results) = AgentCore::new(Config::new("n1", Vec::new()), fake, view, None);
        tokio::spawn(core.connect.clone().run(std::future::pending()));
        crate::http::router(core)
    }

    async fn get(app: &axum::Router, uri: &str) -> (StatusCode, u64, String) {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let index = response
            .headers()
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, index, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn leaf_is_cached_blocks_on_index_and_refuses_bad_names() {
        let fake = FakeCa::new();
        fake.set_active(3, "root-1");
        let app = app(fake.clone());

        let (status, _, body) = get(&app, "/v1/agent/connect/ca/leaf/web%2Fx").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(fake.signed.load(std::sync::atomic::Ordering::SeqCst), 0);

        let (status, index, body) = get(&app, "/v1/agent/connect/ca/leaf/web").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let leaf: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(leaf["Service"], "web");
        assert!(leaf["PrivateKeyPEM"]
            .as_str()
            .unwrap()
            .contains("PRIVATE KEY"));
        assert_eq!(index, leaf["ModifyIndex"].as_u64().unwrap());

        let blocked = {
            let app = app.clone();
            tokio::spawn(async move {
                get(
                    &app,
                    &format!("/v1/agent/connect/ca/leaf/web?index={index}"),
                )
                .await
            })
        };
        fake.set_active(7, "root-2");
        let (status, new_index, body) = blocked.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(new_index > index);
        assert_eq!(fake.signed.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn roots_from_the_cache_and_as_pem() {
        let fake = FakeCa::new();
        let app = app(fake.clone());
        fake.set_active(4, "root-1");
        let (status, index, body) = get(&app, "/v1/agent/connect/ca/roots?index=1").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(index, 4);
        let roots: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(roots["ActiveRootID"], "root-1");
        let (status, _, _) = get(&app, "/v1/connect/ca/roots?pem").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn configuration_put_rejects_undecodable_bodies() {
        let app = app(FakeCa::new());
        let request = Request::put("/v1/connect/ca/configuration")
            .body(Body::from("{not json"))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
}
