//! Routing over a compiled discovery chain (`/v1/discovery-chain/:service`'s `Chain`):
//! a router node picks the first route whose match holds, a splitter node picks a branch by
//! weight, a resolver node names the target (and its failover targets). The walk is pure
//! (the random draw is an argument), so it is table-tested apart from any socket.
//!
//! Route matches reuse the intention permission matcher of `concord-api`: a router's
//! `Match.HTTP` has the same path/header/method fields as an L7 intention's `HTTP`, so one
//! implementation decides both. Query parameter conditions (`QueryParam`: `Name`, `Present`,
//! `Exact`, `Regex`) have the header matcher's shape and are matched with it over the
//! request's query pairs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concord_api::duration::parse_duration;
use concord_api::intention::{
    permission_matches, HttpRequest, IntentionHttpHeaderPermission, IntentionHttpPermission,
    IntentionPermission,
};
use serde_json::Value;
use tokio::sync::watch;

use super::policy::{PolicyError, RequestPolicy, RouteOverrides, UpstreamPolicy};
use super::{Inner, Middleware, ProxyError, Req, ResponseFuture};
use crate::model::{Endpoint, UpstreamSnapshot};

/// More node hops than any chain has; bounds a malformed (looping) chain.
const MAX_HOPS: usize = 16;

/// A chain that cannot be routed over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A field is missing or has the wrong type.
    #[error("discovery chain: {0}")]
    Malformed(String),
    /// A route's destination has a bad value.
    #[error("discovery chain route: {0}")]
    Policy(#[from] PolicyError),
}

/// One route of a router node.
#[derive(Clone, Debug)]
struct Rule {
    http: IntentionHttpPermission,
    query: Vec<IntentionHttpHeaderPermission>,
    overrides: RouteOverrides,
    next: String,
}

#[derive(Clone, Debug)]
enum Node {
    Router(Vec<Rule>),
    Splitter(Vec<(f64, String)>),
    Resolver {
        /// The target, then its failover targets in order; shared with every request
        /// routed here.
        targets: Arc<[String]>,
        /// Only a resolver entry's own timeout (`Default: false`) overrides the upstream's.
        connect_timeout: Option<Duration>,
    },
}

/// A parsed chain, ready to route requests.
#[derive(Clone, Debug, Default)]
pub(crate) struct Chain {
    start: String,
    nodes: HashMap<String, Node>,
    /// Whether any route has a header condition.
    pub(crate) matches_headers: bool,
}

/// Where one request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Routed {
    /// The target, then its failover targets in order.
    pub(crate) targets: Arc<[String]>,
    /// The matched route's overrides (default for a chain without router).
    pub(crate) overrides: RouteOverrides,
    /// The resolver's own connect timeout, if it has one.
    pub(crate) connect_timeout: Option<Duration>,
    /// The route's matched path prefix, when it rewrites it (`PathPrefix`, `PrefixRewrite`).
    pub(crate) rewrite: Option<(String, String)>,
}

/// The parts of a request that routes match on.
pub(crate) struct RouteRequest<'a> {
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) method: &'a str,
    pub(crate) headers: &'a [(String, String)],
}

fn malformed(what: impl Into<String>) -> ChainError {
    ChainError::Malformed(what.into())
}

fn str_field<'a>(v: &'a Value, key: &str, at: &str) -> Result<&'a str, ChainError> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(format!("{at}: missing string {key}")))
}

impl Chain {
    /// Parses a `Chain` object (or the whole `{"Chain": ...}` body). A `Null` chain (no
    /// snapshot yet) parses to a chain that routes nowhere.
    pub(crate) fn parse(chain: &Value) -> Result<Chain, ChainError> {
        if chain.is_null() {
            return Ok(Chain::default());
        }
        let chain = chain.get("Chain").unwrap_or(chain);
        let start = str_field(chain, "StartNode", "Chain")?.to_string();
        let nodes_json = chain
            .get("Nodes")
            .and_then(Value::as_object)
            .ok_or_else(|| malformed("Chain: missing object Nodes"))?;
        let mut nodes = HashMap::new();
        for (name, n) in nodes_json {
            let node = match str_field(n, "Type", name)? {
                "router" => Node::Router(parse_routes(n, name)?),
                "splitter" => Node::Splitter(
                    n.get("Splits")
                        .and_then(Value::as_array)
                        .ok_or_else(|| malformed(format!("{name}: missing Splits")))?
                        .iter()
                        .map(|s| {
                            let w = s.get("Weight").and_then(Value::as_f64).unwrap_or(0.0);
                            Ok((w, str_field(s, "NextNode", name)?.to_string()))
                        })
                        .collect::<Result<_, ChainError>>()?,
                ),
                "resolver" => {
                    let r = n
                        .get("Resolver")
                        .ok_or_else(|| malformed(format!("{name}: missing Resolver")))?;
                    let own = r.get("Default").and_then(Value::as_bool) == Some(false);
                    let connect_timeout = match r.get("ConnectTimeout").and_then(Value::as_str) {
                        Some(t) if own => Some(
                            parse_duration(t)
                                .map_err(|e| malformed(format!("{name}: ConnectTimeout: {e}")))?,
                        ),
                        _ => None,
                    };
                    let mut targets = vec![str_field(r, "Target", name)?.to_string()];
                    if let Some(ts) = r.pointer("/Failover/Targets").and_then(Value::as_array) {
                        targets.extend(ts.iter().filter_map(Value::as_str).map(str::to_string));
                    }
                    Node::Resolver {
                        targets: targets.into(),
                        connect_timeout,
                    }
                }
                other => return Err(malformed(format!("{name}: unknown node type {other:?}"))),
            };
            nodes.insert(name.clone(), node);
        }
        if !nodes.contains_key(&start) {
            return Err(malformed(format!("StartNode {start:?} is not a node")));
        }
        let matches_headers = nodes.values().any(|n| match n {
            Node::Router(rules) => rules.iter().any(|r| !r.http.header.is_empty()),
            _ => false,
        });
        Ok(Chain {
            start,
            nodes,
            matches_headers,
        })
    }

    /// Routes a request; `draw` in `[0, 1)` picks splitter branches. `None`: nothing routes
    /// (no chain yet, or a router with no matching route).
    pub(crate) fn route(
        &self,
        req: &RouteRequest<'_>,
        mut draw: impl FnMut() -> f64,
    ) -> Option<Routed> {
        let mut name = &self.start;
        let mut overrides = RouteOverrides::default();
        let mut rewrite = None;
        for _ in 0..MAX_HOPS {
            match self.nodes.get(name)? {
                Node::Router(rules) => {
                    let rule = rules.iter().find(|r| r.matches(req))?;
                    overrides = rule.overrides.clone();
                    rewrite = overrides
                        .prefix_rewrite
                        .clone()
                        .filter(|_| !rule.http.path_prefix.is_empty())
                        .map(|to| (rule.http.path_prefix.clone(), to));
                    name = &rule.next;
                }
                Node::Splitter(splits) => name = split(splits, draw())?,
                Node::Resolver {
                    targets,
                    connect_timeout,
                } => {
                    return Some(Routed {
                        targets: targets.clone(),
                        overrides,
                        connect_timeout: *connect_timeout,
                        rewrite,
                    });
                }
            }
        }
        None
    }
}

fn parse_routes(node: &Value, name: &str) -> Result<Vec<Rule>, ChainError> {
    let routes = node
        .get("Routes")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(format!("{name}: missing Routes")))?;
    routes
        .iter()
        .map(|r| {
            let def = r.get("Definition").cloned().unwrap_or(Value::Null);
            let http = def.pointer("/Match/HTTP").cloned().unwrap_or(Value::Null);
            let query = http.get("QueryParam").cloned().unwrap_or(Value::Null);
            let bad = |e: serde_json::Error| malformed(format!("{name}: route match: {e}"));
            Ok(Rule {
                http: if http.is_null() {
                    IntentionHttpPermission::default()
                } else {
                    serde_json::from_value(http).map_err(bad)?
                },
                query: if query.is_null() {
                    Vec::new()
                } else {
                    serde_json::from_value(query).map_err(bad)?
                },
                overrides: RouteOverrides::from_destination(
                    def.get("Destination").unwrap_or(&Value::Null),
                )?,
                next: str_field(r, "NextNode", name)?.to_string(),
            })
        })
        .collect()
}

impl Rule {
    fn matches(&self, req: &RouteRequest<'_>) -> bool {
        let allow = |http: IntentionHttpPermission| IntentionPermission {
            action: "allow".to_string(),
            http: Some(http),
        };
        let http = HttpRequest {
            path: req.path,
            method: req.method,
            headers: req.headers,
        };
        if !permission_matches(&allow(self.http.clone()), &http) {
            return false;
        }
        if self.query.is_empty() {
            return true;
        }
        let pairs: Vec<(String, String)> = req
            .query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (p.to_string(), String::new()),
            })
            .collect();
        let as_headers = IntentionHttpPermission {
            header: self.query.clone(),
            ..Default::default()
        };
        permission_matches(
            &allow(as_headers),
            &HttpRequest {
                path: req.path,
                method: req.method,
                headers: &pairs,
            },
        )
    }
}

/// The branch of `splits` that `draw` (in `[0, 1)`) lands in, by weight.
fn split(splits: &[(f64, String)], draw: f64) -> Option<&String> {
    let total: f64 = splits.iter().map(|(w, _)| w.max(0.0)).sum();
    if total <= 0.0 {
        return splits.first().map(|(_, n)| n);
    }
    let mut point = draw * total;
    for (w, next) in splits {
        let w = w.max(0.0);
        if point < w {
            return Some(next);
        }
        point -= w;
    }
    // Rounding can leave the draw just past the last branch.
    splits.iter().rev().find(|(w, _)| *w > 0.0).map(|(_, n)| n)
}

/// Applies a route's prefix rewrite to a path-and-query.
pub(crate) fn rewrite_path(path_and_query: &str, from: &str, to: &str) -> Option<String> {
    let rest = path_and_query.strip_prefix(from)?;
    Some(format!("{to}{rest}"))
}

/// One consistent view of an upstream: the parsed chain and the endpoints it routes to,
/// shared by every request until the snapshot changes (a request extension).
#[derive(Debug, Default)]
pub struct Resolved {
    pub(crate) chain: Chain,
    pub(crate) endpoints: HashMap<String, Vec<Endpoint>>,
}

/// The routing layer: picks the route, applies its rewrite, and hands the layers below the
/// request's [`RequestPolicy`], its [`Routed`] targets and the [`Resolved`] view.
pub struct Router {
    upstream: String,
    policy: UpstreamPolicy,
    // A std Mutex: the snapshot is checked (and parsed when it changed) without awaiting.
    current: Mutex<(watch::Receiver<UpstreamSnapshot>, Arc<Resolved>)>,
}

impl Router {
    pub(crate) fn new(
        upstream: &str,
        policy: UpstreamPolicy,
        mut snapshot: watch::Receiver<UpstreamSnapshot>,
    ) -> Self {
        let resolved = resolve(upstream, &snapshot.borrow_and_update(), None);
        Router {
            upstream: upstream.to_string(),
            policy,
            current: Mutex::new((snapshot, Arc::new(resolved))),
        }
    }

    /// The latest view, re-parsed only when the snapshot changed.
    fn current(&self) -> Option<Arc<Resolved>> {
        let mut guard = self.current.lock().ok()?;
        let (rx, resolved) = &mut *guard;
        if rx.has_changed().unwrap_or(false) {
            let next = resolve(
                &self.upstream,
                &rx.borrow_and_update(),
                Some(&resolved.chain),
            );
            *resolved = Arc::new(next);
        }
        Some(resolved.clone())
    }
}

/// Parses a snapshot; a chain that does not parse keeps the last good one (and says so), so
/// a bad write to a config entry does not take the upstream down.
fn resolve(upstream: &str, snap: &UpstreamSnapshot, last: Option<&Chain>) -> Resolved {
    let chain = match Chain::parse(&snap.chain) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(upstream, error = %e, "ignoring a discovery chain that cannot be routed");
            last.cloned().unwrap_or_default()
        }
    };
    Resolved {
        chain,
        endpoints: snap.endpoints.clone(),
    }
}

impl Middleware for Router {
    fn call<S: Inner>(self: Arc<Self>, next: S, mut req: Req) -> ResponseFuture {
        let no_route = || ProxyError::NoRoute(self.upstream.clone());
        let Some(resolved) = self.current() else {
            let err = no_route();
            return Box::pin(async move { Err(err) });
        };
        // Copied only for chains whose routes look at headers (most chains have no router).
        let headers = super::header_pairs(&req, resolved.chain.matches_headers);
        let routed = resolved.chain.route(
            &RouteRequest {
                path: req.uri().path(),
                query: req.uri().query(),
                method: req.method().as_str(),
                headers: &headers,
            },
            rand::random::<f64>,
        );
        let Some(routed) = routed else {
            let err = no_route();
            return Box::pin(async move { Err(err) });
        };
        if let Some((from, to)) = &routed.rewrite {
            let pq = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            if let Some(new) = rewrite_path(pq, from, to) {
                let mut parts = req.uri().clone().into_parts();
                if let Ok(pq) = new.parse() {
                    parts.path_and_query = Some(pq);
                    if let Ok(uri) = http::Uri::from_parts(parts) {
                        *req.uri_mut() = uri;
                    }
                }
            }
        }
        let policy = RequestPolicy::new(&self.policy, &routed.overrides, routed.connect_timeout);
        let ext = req.extensions_mut();
        ext.insert(policy);
        ext.insert(routed);
        ext.insert(resolved);
        super::forward(next, req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_api::config_entry::ConfigEntry;
    use concord_api::discovery_chain::{compile, ChainEntries};
    use serde_json::json;

    fn chain(entries: Vec<Value>, service: &str) -> Chain {
        let e = ChainEntries::from_entries(entries.into_iter().map(|v| {
            let mut e = ConfigEntry::from_json(v).unwrap();
            e.validate().unwrap();
            e
        }));
        Chain::parse(&compile(service, "dc1", "", &e)).unwrap()
    }

    fn req<'a>(
        path: &'a str,
        method: &'a str,
        headers: &'a [(String, String)],
    ) -> RouteRequest<'a> {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        RouteRequest {
            path,
            query,
            method,
            headers,
        }
    }

    #[test]
    fn router_matches_table() {
        let c = chain(
            vec![
                json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"}),
                json!({"Kind": "service-router", "Name": "web", "Routes": [
                    {"Match": {"HTTP": {"PathExact": "/exact"}}, "Destination": {"Service": "exact"}},
                    {"Match": {"HTTP": {"PathPrefix": "/api/"}}, "Destination": {"Service": "api", "PrefixRewrite": "/", "RequestTimeout": "2s"}},
                    {"Match": {"HTTP": {"PathRegex": "/v[0-9]+/.*"}}, "Destination": {"Service": "versioned"}},
                    {"Match": {"HTTP": {"Header": [{"Name": "x-canary", "Exact": "1"}]}}, "Destination": {"Service": "canary"}},
                    {"Match": {"HTTP": {"QueryParam": [{"Name": "debug", "Present": true}]}}, "Destination": {"Service": "debug"}},
                    {"Match": {"HTTP": {"Methods": ["DELETE"]}}, "Destination": {"Service": "deleter"}},
                ]}),
            ],
            "web",
        );
        let canary = vec![("X-Canary".to_string(), "1".to_string())];
        type Headers<'a> = &'a [(String, String)];
        let cases: [(&str, &str, Headers<'_>, &str); 9] = [
            ("/exact", "GET", &[], "exact"),
            ("/exact/more", "GET", &[], "web"),
            ("/api/users", "GET", &[], "api"),
            ("/v12/x", "GET", &[], "versioned"),
            ("/vx/x", "GET", &[], "web"),
            ("/", "GET", &canary, "canary"),
            ("/x?a=1&debug", "GET", &[], "debug"),
            ("/x?debugger=1", "GET", &[], "web"),
            ("/x", "DELETE", &[], "deleter"),
        ];
        for (path, method, headers, service) in cases {
            let r = c.route(&req(path, method, headers), || 0.0).unwrap();
            assert_eq!(
                r.targets.to_vec(),
                vec![format!("{service}.default.default.dc1")],
                "{path} {method}"
            );
        }
        assert!(c.matches_headers, "the router has a header condition");
        let api = c.route(&req("/api/users", "GET", &[]), || 0.0).unwrap();
        assert_eq!(api.overrides.request_timeout, Some(Duration::from_secs(2)));
        assert_eq!(api.rewrite, Some(("/api/".to_string(), "/".to_string())));
        assert_eq!(
            rewrite_path("/api/users?q=1", "/api/", "/").as_deref(),
            Some("/users?q=1")
        );
    }

    #[test]
    fn split_choice_table() {
        let splits = vec![
            (90.0, "a".to_string()),
            (10.0, "b".to_string()),
            (0.0, "c".to_string()),
        ];
        for (draw, want) in [
            (0.0, "a"),
            (0.5, "a"),
            (0.8999, "a"),
            (0.9, "b"),
            (0.9999, "b"),
            (1.0, "b"),
        ] {
            assert_eq!(split(&splits, draw).unwrap(), want, "draw {draw}");
        }
        assert_eq!(split(&[(0.0, "z".to_string())], 0.7).unwrap(), "z");
        assert!(split(&[], 0.7).is_none());
    }

    #[test]
    fn splitter_and_resolver_failover_from_compiled_chain() {
        let c = chain(
            vec![
                json!({"Kind": "service-defaults", "Name": "db", "Protocol": "http"}),
                json!({"Kind": "service-resolver", "Name": "db", "ConnectTimeout": "250ms",
                    "Subsets": {"v1": {"Filter": "a"}, "v2": {"Filter": "b"}},
                    "Failover": {"*": {"Service": "db-backup"}}}),
                json!({"Kind": "service-splitter", "Name": "db", "Splits": [
                    {"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}]}),
            ],
            "db",
        );
        assert!(!c.matches_headers);
        let v1 = c.route(&req("/", "GET", &[]), || 0.3).unwrap();
        assert_eq!(
            v1.targets.to_vec(),
            vec![
                "v1.db.default.default.dc1".to_string(),
                "db-backup.default.default.dc1".to_string()
            ]
        );
        assert_eq!(v1.connect_timeout, Some(Duration::from_millis(250)));
        let v2 = c.route(&req("/", "GET", &[]), || 0.95).unwrap();
        assert_eq!(v2.targets[0], "v2.db.default.default.dc1");
    }

    #[test]
    fn default_chain_has_no_own_connect_timeout_and_bad_chains_are_errors() {
        let c = chain(vec![], "db");
        let r = c.route(&req("/", "GET", &[]), || 0.0).unwrap();
        assert_eq!(r.connect_timeout, None);
        assert!(Chain::parse(&Value::Null)
            .unwrap()
            .route(&req("/", "GET", &[]), || 0.0)
            .is_none());
        for bad in [
            json!({"Nodes": {}}),
            json!({"StartNode": "x", "Nodes": {}}),
            json!({"StartNode": "x", "Nodes": {"x": {"Type": "teleporter"}}}),
            json!({"StartNode": "x", "Nodes": {"x": {"Type": "resolver", "Resolver": {}}}}),
        ] {
            assert!(Chain::parse(&bad).is_err(), "{bad}");
        }
        // A looping chain routes nowhere instead of spinning.
        let looped = Chain::parse(&json!({"StartNode": "s", "Nodes": {
            "s": {"Type": "splitter", "Splits": [{"Weight": 100, "NextNode": "s"}]}}}))
        .unwrap();
        assert!(looped.route(&req("/", "GET", &[]), || 0.0).is_none());
    }
}
