//! Consul's HTTP API (`/v1/...`) on axum.
//!
//! [`router`] builds the whole API over an [`AppState`]; `run` binds it to a listener.
//! Handlers are grouped by Consul's API sections, one module each. Conventions shared by all
//! of them live here: query-parameter parsing (Consul's flags like `?recurse` carry no value,
//! and `?tag=` repeats), blocking-query options, the `X-Consul-*` headers and JSON rendering.
//!
//! Layers, outermost first: method-not-allowed text (Consul's `method GET not allowed`),
//! request counting for metrics, then the routes.

mod agent;
mod catalog;
mod error;
mod health;
mod kv;
mod session;
mod status;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use concord_api::decode::parse_go_bool;
use concord_api::duration::parse_duration;
use concord_api::rpc::{Consistency, Query, QueryMeta, QueryOptions, QueryResult, MAX_WAIT_MS};
use serde::Serialize;

pub use error::{ApiError, ApiResult};

use crate::agent::AgentCore;

/// What every handler can reach.
pub type AppState = Arc<AgentCore>;

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", axum::routing::get(root))
        .merge(agent::routes())
        .merge(catalog::routes())
        .merge(health::routes())
        .merge(kv::routes())
        .merge(session::routes())
        .merge(status::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(axum::middleware::from_fn(method_not_allowed_text))
        .with_state(state)
}

/// `GET /`: Consul redirects to its web UI. Concord has no UI; it answers 200 with a
/// pointer to the API, so HTTP health checks aimed at an agent's root pass as they do
/// against Consul.
async fn root() -> &'static str {
    "Concord agent: Consul's HTTP API is served under /v1/ (there is no web UI).\n"
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

/// Query parameters in order, repeated keys kept, valueless flags as `""`.
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Self {
        Params(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The query string as received (for error messages).
    pub fn raw(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.0.iter())
            .finish()
    }

    /// Whether a flag is present (with any value).
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// First value of a key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a key.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean flag: present without a value, or with a value Go's `strconv.ParseBool`
    /// reads as true. An unparsable value counts as present (Consul checks presence first).
    pub fn flag(&self, key: &str) -> bool {
        match self.get(key) {
            None => false,
            Some("") => true,
            Some(v) => parse_go_bool(v).unwrap_or(true),
        }
    }

    /// Whether `?peer=` names a cluster peer (Concord has no peering, so none exists).
    pub fn names_peer(&self) -> bool {
        self.get("peer").is_some_and(|p| !p.is_empty())
    }

    /// The parsed `?filter=` expression, if any (400 when it does not parse).
    pub fn filter(&self) -> Result<Option<crate::filter::Filter>, ApiError> {
        match self.get("filter") {
            None | Some("") => Ok(None),
            Some(expr) => crate::filter::Filter::parse(expr)
                .map(Some)
                .map_err(|e| ApiError::BadRequest(e.to_string())),
        }
    }

    /// `?node-meta=k:v` filters.
    pub fn node_meta(&self) -> Result<Vec<(String, String)>, ApiError> {
        self.all("node-meta")
            .into_iter()
            .map(|kv| match kv.split_once(':') {
                Some((k, v)) => Ok((k.to_string(), v.to_string())),
                None => Err(ApiError::BadRequest(format!(
                    "Invalid node-meta filter: \"{kv}\" (want key:value)"
                ))),
            })
            .collect()
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Params::parse(parts.uri.query()))
    }
}

impl AgentCore {
    /// Checks `?dc`, `?ns`, `?filter` and the blocking/consistency options of a read.
    pub(crate) fn query_options(&self, params: &Params) -> Result<QueryOptions, ApiError> {
        self.check_common(params)?;
        // A bad filter is the caller's error; report it before asking the servers anything.
        params.filter()?;
        let min_index = match params.get("index") {
            None | Some("") => 0,
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| ApiError::BadRequest("Invalid index".to_string()))?,
        };
        let max_wait_ms = match params.get("wait") {
            None | Some("") => 0,
            Some(v) => {
                let d = parse_duration(v)
                    .map_err(|_| ApiError::BadRequest("Invalid wait time".to_string()))?;
                u64::try_from(d.as_millis()).unwrap_or(MAX_WAIT_MS).max(1)
            }
        };
        let stale = params.has("stale");
        let consistent = params.has("consistent");
        let consistency = match (stale, consistent) {
            (true, true) => {
                return Err(ApiError::BadRequest(
                    "Cannot specify ?stale with ?consistent, conflicting semantics.".to_string(),
                ))
            }
            (true, false) => Consistency::Stale,
            (false, true) => Consistency::Consistent,
            (false, false) => Consistency::Default,
        };
        Ok(QueryOptions {
            min_index,
            max_wait_ms,
            consistency,
        })
    }

    /// Parameters every endpoint honours: the datacenter and (Enterprise) namespace.
    pub(crate) fn check_common(&self, params: &Params) -> Result<(), ApiError> {
        if let Some(dc) = params.get("dc") {
            if !dc.is_empty() && dc != self.config.datacenter {
                // Consul fails this way for a datacenter it has no route to (HTTP 500).
                return Err(ApiError::Internal("No path to datacenter".to_string()));
            }
        }
        if let Some(ns) = params.get("ns") {
            if !ns.is_empty() && ns != "default" {
                return Err(ApiError::BadRequest(format!(
                    "Invalid namespace \"{ns}\": namespaces are an Enterprise feature"
                )));
            }
        }
        Ok(())
    }

    /// A `Datacenter` given in a request body must be ours, as `?dc` must.
    pub(crate) fn check_body_datacenter(&self, dc: &str) -> Result<(), ApiError> {
        if dc.is_empty() || dc == self.config.datacenter {
            Ok(())
        } else {
            Err(ApiError::Internal("No path to datacenter".to_string()))
        }
    }

    /// Runs a read against the servers with the request's options.
    pub(crate) async fn read(
        &self,
        params: &Params,
        query: Query,
    ) -> Result<(QueryMeta, QueryResult), ApiError> {
        let options = self.query_options(params)?;
        let response = self.client.read(query, options).await?;
        Ok((response.meta, response.result))
    }

    /// Renders a JSON body with Consul's headers (pretty with `?pretty` or in dev mode).
    pub(crate) fn json<T: Serialize>(
        &self,
        params: &Params,
        status: StatusCode,
        meta: Option<QueryMeta>,
        value: &T,
    ) -> Response {
        let pretty = self.config.dev || params.has("pretty");
        let body = if pretty {
            serde_json::to_vec_pretty(value)
        } else {
            serde_json::to_vec(value)
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

    /// 200 with a JSON body, keeping only what `?filter=` selects (list endpoints).
    /// Filtering happens here, after the read: the index still covers the whole result,
    /// so blocking on a filtered query wakes on any change to the underlying data.
    pub(crate) fn ok_filtered<T: Serialize>(
        &self,
        params: &Params,
        meta: Option<QueryMeta>,
        v: &T,
    ) -> ApiResult {
        let Some(filter) = params.filter()? else {
            return Ok(self.ok(params, meta, v));
        };
        let value = serde_json::to_value(v)
            .map_err(|e| ApiError::Internal(format!("encoding response: {e}")))?;
        Ok(self.ok(params, meta, &filter.apply(value)))
    }

    /// 200 with a JSON body.
    pub(crate) fn ok<T: Serialize>(
        &self,
        params: &Params,
        meta: Option<QueryMeta>,
        v: &T,
    ) -> Response {
        self.json(params, StatusCode::OK, meta, v)
    }
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
}

/// An empty 200, as Consul's agent write endpoints answer.
pub fn empty_ok() -> Response {
    StatusCode::OK.into_response()
}

fn unexpected(result: QueryResult) -> ApiError {
    ApiError::Internal(format!("unexpected RPC result: {result:?}"))
}
