//! Query parameters: [`Params`] (the raw pairs), and the two extractors handlers take
//! instead of checking parameters themselves:
//!
//! - [`Common`]: what every endpoint honours, checked once: `?dc` and `?ns` must be ours,
//!   `?filter` parses (kept parsed), `?pretty`, and the ACL token the request carries.
//! - [`ReadQuery`]: [`Common`] plus what a read against the servers honours: the blocking
//!   options (`?index`, `?wait`), consistency (`?stale`, `?consistent`) and `?node-meta`.
//!
//! [`Common`] also renders every reply (with `reply.rs`), so a handler never re-reads a
//! parameter.

use std::ops::Deref;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use concord_api::decode::parse_go_bool;
use concord_api::duration::parse_duration;
use concord_api::rpc::{Consistency, NodeMetaFilter, QueryMeta, QueryOptions, MAX_WAIT_MS};
use serde::Serialize;

use super::{reply, ApiError, ApiResult, AppState};
use crate::config::Config;
use crate::filter::Filter;

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

    fn filter(&self) -> Result<Option<Filter>, ApiError> {
        match self.get("filter") {
            None | Some("") => Ok(None),
            Some(expr) => Filter::parse(expr)
                .map(Some)
                .map_err(|e| ApiError::BadRequest(e.to_string())),
        }
    }

    fn node_meta(&self) -> Result<NodeMetaFilter, ApiError> {
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

    fn query_options(&self) -> Result<QueryOptions, ApiError> {
        let min_index = match self.get("index") {
            None | Some("") => 0,
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| ApiError::BadRequest("Invalid index".to_string()))?,
        };
        let max_wait_ms = match self.get("wait") {
            None | Some("") => 0,
            Some(v) => {
                let d = parse_duration(v)
                    .map_err(|_| ApiError::BadRequest("Invalid wait time".to_string()))?;
                u64::try_from(d.as_millis()).unwrap_or(MAX_WAIT_MS).max(1)
            }
        };
        let consistency = match (self.has("stale"), self.has("consistent")) {
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
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Params::parse(parts.uri.query()))
    }
}

/// The parameters every endpoint honours, already checked.
#[derive(Debug)]
pub struct Common {
    /// Every parameter, for the endpoint's own (`?recurse`, `?tag`, ...).
    pub params: Params,
    /// The parsed `?filter=`, if given.
    pub filter: Option<Filter>,
    /// Pretty-print JSON replies (`?pretty`, or always in dev mode).
    pub pretty: bool,
    /// The ACL token the request carries (`X-Consul-Token`, `Authorization: Bearer`, or
    /// `?token=`, in that order), if any. A secret: never log it.
    pub token: Option<String>,
}

/// The ACL token of a request: `X-Consul-Token`, else `Authorization: Bearer <token>`, else
/// `?token=` (Consul's order). Empty values count as absent.
pub(super) fn request_token(parts: &Parts, params: &Params) -> Option<String> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    header("x-consul-token")
        .or_else(|| {
            header("authorization").and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
        })
        .or_else(|| params.get("token").filter(|t| !t.is_empty()))
        .map(str::to_string)
}

/// The request's ACL token alone, for the few endpoints that take no [`Common`].
#[derive(Debug)]
pub(super) struct Token(pub(super) Option<String>);

impl Deref for Token {
    type Target = Option<String>;

    fn deref(&self) -> &Option<String> {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Token {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Token(request_token(
            parts,
            &Params::parse(parts.uri.query()),
        )))
    }
}

impl Common {
    /// Checks `?dc`, `?ns` and `?filter` against this agent's configuration.
    pub fn new(params: Params, config: &Config) -> Result<Self, ApiError> {
        if let Some(dc) = params.get("dc") {
            check_datacenter(config, dc)?;
        }
        if let Some(ns) = params.get("ns") {
            if !ns.is_empty() && ns != "default" {
                return Err(ApiError::BadRequest(format!(
                    "Invalid namespace \"{ns}\": namespaces are an Enterprise feature"
                )));
            }
        }
        // A bad filter is the caller's error; report it before asking the servers anything.
        let filter = params.filter()?;
        Ok(Common {
            filter,
            ..Self::unchecked(params, config)
        })
    }

    /// For the few endpoints that ignore `?dc` and `?filter` (as Consul's do): only
    /// rendering options.
    pub fn unchecked(params: Params, config: &Config) -> Self {
        let pretty = config.dev || params.has("pretty");
        Common {
            params,
            filter: None,
            pretty,
            token: None,
        }
    }
}

/// Replies: every handler renders through these, so pretty-printing, the read headers and
/// `?filter=` are applied the same way everywhere.
impl Common {
    /// A JSON body with this status, with the read's headers when there was a read.
    pub fn json<T: Serialize>(
        &self,
        status: StatusCode,
        meta: Option<QueryMeta>,
        value: &T,
    ) -> Response {
        reply::json(self.pretty, status, meta, value)
    }

    /// 200 with a JSON body, as is (endpoints Consul does not filter).
    pub fn ok<T: Serialize>(&self, meta: Option<QueryMeta>, value: &T) -> Response {
        self.json(StatusCode::OK, meta, value)
    }

    /// 200 with a JSON body, keeping only what `?filter=` selects (list endpoints).
    /// Filtering happens here, after the read: the index still covers the whole result,
    /// so blocking on a filtered query wakes on any change to the underlying data.
    pub fn reply<T: Serialize>(&self, meta: Option<QueryMeta>, value: &T) -> ApiResult {
        let Some(filter) = &self.filter else {
            return Ok(self.ok(meta, value));
        };
        Ok(self.ok(meta, &filter.apply(reply::encode(value)?)))
    }
}

impl FromRequestParts<AppState> for Common {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let params = Params::parse(parts.uri.query());
        let token = request_token(parts, &params);
        Ok(Common {
            token,
            ..Common::new(params, &s.config)?
        })
    }
}

/// A `Datacenter` (in `?dc` or a request body) must be ours; empty means ours. Consul fails
/// this way for a datacenter it has no route to (HTTP 500).
pub fn check_datacenter(config: &Config, dc: &str) -> Result<(), ApiError> {
    if dc.is_empty() || dc == config.datacenter {
        Ok(())
    } else {
        Err(ApiError::Internal("No path to datacenter".to_string()))
    }
}

/// The parameters of a read against the servers, already checked.
#[derive(Debug)]
pub struct ReadQuery {
    /// What every endpoint honours.
    pub common: Common,
    /// Blocking (`?index`, `?wait`) and consistency (`?stale`, `?consistent`).
    pub options: QueryOptions,
    /// `?node-meta=k:v` filters (all must match).
    pub node_meta: NodeMetaFilter,
}

impl Deref for ReadQuery {
    type Target = Common;

    fn deref(&self) -> &Common {
        &self.common
    }
}

impl FromRequestParts<AppState> for ReadQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let common = Common::from_request_parts(parts, s).await?;
        let options = s.config.bound_wait(common.params.query_options()?);
        let node_meta = common.params.node_meta()?;
        Ok(ReadQuery {
            common,
            options,
            node_meta,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_of(uri: &str, headers: &[(&str, &str)]) -> Option<String> {
        let mut builder = axum::http::Request::builder().uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let (parts, ()) = builder.body(()).unwrap().into_parts();
        request_token(&parts, &Params::parse(parts.uri.query()))
    }

    #[test]
    fn token_sources_in_consuls_order() {
        let all = [("X-Consul-Token", "hdr"), ("Authorization", "Bearer bear")];
        assert_eq!(token_of("/v1/kv/a?token=q", &all).as_deref(), Some("hdr"));
        let bearer = [("Authorization", "bearer bear")];
        assert_eq!(
            token_of("/v1/kv/a?token=q", &bearer).as_deref(),
            Some("bear")
        );
        let basic = [("Authorization", "Basic xyz")];
        assert_eq!(token_of("/v1/kv/a?token=q", &basic).as_deref(), Some("q"));
        assert_eq!(token_of("/v1/kv/a?token=", &[("X-Consul-Token", "")]), None);
        assert_eq!(token_of("/v1/kv/a", &[]), None);
    }
}
