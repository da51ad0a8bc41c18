//! Traffic policy of one upstream, read from the upstream's (or the proxy's) `Config` map as
//! Consul documents it, plus the per-route overrides a `service-router` destination carries.
//!
//! Consul decodes these maps weakly (`mapstructure` with `WeaklyTypedInput`): numbers may
//! arrive as JSON numbers or numeric strings, booleans as `true`/`"true"`, durations as Go
//! strings (`"30s"`) or nanosecond numbers. Unknown keys are ignored (the same map carries
//! `envoy_*` escape hatches and other proxies' settings); a known key with a bad value is an
//! error naming the key, so a typo in a value never silently becomes a default.

use std::time::Duration;

use concord_api::duration::parse_duration;
use serde_json::{Map, Value};

/// Consul's default `connect_timeout_ms`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(5000);
/// Consul's (Envoy's) default route timeout.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A config value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("upstream config {key:?}: {problem}")]
pub struct PolicyError {
    /// The key, dotted for nested maps (`limits.max_connections`).
    pub key: String,
    /// What is wrong with its value.
    pub problem: String,
}

/// How an endpoint is chosen among the healthy ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BalancePolicy {
    /// Power of two random choices, the one with fewer outstanding requests wins
    /// (`least_request`, the default).
    #[default]
    LeastRequest,
    /// Each endpoint in turn (`round_robin`).
    RoundRobin,
}

/// When and how often a request is tried again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Extra attempts after the first (0: no retries).
    pub num_retries: u32,
    /// Retry when no connection could be made (refused, timed out, no healthy endpoint).
    pub retry_on_connect_failure: bool,
    /// Retry when the upstream answers with one of these statuses.
    pub retry_on_status_codes: Vec<u16>,
}

impl Default for RetryPolicy {
    /// Concord retries connect failures twice by default: a retry that never reached an
    /// upstream cannot duplicate work, and it is what hides a dying instance.
    fn default() -> Self {
        RetryPolicy {
            num_retries: 2,
            retry_on_connect_failure: true,
            retry_on_status_codes: Vec::new(),
        }
    }
}

/// How many retries the upstream may add on top of its requests.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryBudgetPolicy {
    /// Retries allowed as a fraction of the requests of the last window (0.2: 20%).
    pub ratio: f64,
    /// Retries allowed per second regardless of traffic, so a quiet upstream still retries.
    pub min_retries_per_second: u32,
}

impl Default for RetryBudgetPolicy {
    fn default() -> Self {
        RetryBudgetPolicy {
            ratio: 0.2,
            min_retries_per_second: 10,
        }
    }
}

/// Circuit-breaker limits (Consul's `limits`); `None` means unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Connections open to all endpoints of the upstream at once.
    pub max_connections: Option<usize>,
    /// Requests waiting for a connection when `max_connections` are open.
    pub max_pending_requests: Option<usize>,
    /// Requests in flight at once; one more gets 503.
    pub max_concurrent_requests: Option<usize>,
}

/// Outlier detection (Consul's `passive_health_check`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutlierPolicy {
    /// How often Envoy sweeps for outliers. Accepted for compatibility; Concord detects a
    /// streak on the response that completes it and ends ejections on time, so no sweep.
    pub interval: Duration,
    /// Consecutive 5xx or connect failures that eject an endpoint (0: never).
    pub max_failures: u32,
    /// Percent chance (0..=100) that a detected streak really ejects.
    pub enforcing_consecutive_5xx: u32,
    /// At most this percent of the endpoints is ejected at once (at least one may be).
    pub max_ejection_percent: u32,
    /// Ejection time; the n-th ejection of an endpoint lasts n × this (capped at 300 s).
    pub base_ejection_time: Duration,
}

impl Default for OutlierPolicy {
    fn default() -> Self {
        OutlierPolicy {
            interval: Duration::from_secs(10),
            max_failures: 5,
            enforcing_consecutive_5xx: 100,
            max_ejection_percent: 10,
            base_ejection_time: Duration::from_secs(30),
        }
    }
}

/// The traffic policy of one upstream.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamPolicy {
    /// `http`, `http2` or `grpc` (the last two speak h2 to the upstream).
    pub protocol: String,
    /// Time to open a connection to an endpoint (`connect_timeout_ms`; a non-default
    /// `service-resolver` `ConnectTimeout` wins, as in Consul).
    pub connect_timeout: Duration,
    /// Time from sending a request to its response headers, all retries included
    /// (Concord's `request_timeout_ms`; a router's `RequestTimeout` wins); 504 after it.
    pub request_timeout: Duration,
    /// Retries (Concord's `num_retries`, `retry_on_connect_failure`,
    /// `retry_on_status_codes`; a router destination's `NumRetries`, ... win).
    pub retry: RetryPolicy,
    /// Retry budget (Concord's `retry_budget { percent, min_retries_per_second }`).
    pub retry_budget: RetryBudgetPolicy,
    /// Circuit-breaker limits (`limits`).
    pub limits: Limits,
    /// Outlier detection (`passive_health_check`).
    pub outlier: OutlierPolicy,
    /// Endpoint choice (Concord's `load_balancer`: `least_request` or `round_robin`).
    pub balance: BalancePolicy,
}

impl Default for UpstreamPolicy {
    fn default() -> Self {
        UpstreamPolicy {
            protocol: "http".to_string(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retry: RetryPolicy::default(),
            retry_budget: RetryBudgetPolicy::default(),
            limits: Limits::default(),
            outlier: OutlierPolicy::default(),
            balance: BalancePolicy::default(),
        }
    }
}

impl UpstreamPolicy {
    /// Reads an upstream's `Config` map (a JSON object; `null` gives the defaults).
    pub fn from_config(config: &Value) -> Result<UpstreamPolicy, PolicyError> {
        let mut p = UpstreamPolicy::default();
        let obj = match config {
            Value::Null => return Ok(p),
            Value::Object(o) => o,
            _ => return Err(problem("", "expected an object")),
        };
        let r = Reader { obj, prefix: "" };
        if let Some(proto) = r.string("protocol")? {
            let proto = proto.to_ascii_lowercase();
            if !matches!(proto.as_str(), "http" | "http2" | "grpc" | "tcp") {
                return Err(problem(
                    "protocol",
                    &format!("{proto:?} is not one of tcp, http, http2, grpc"),
                ));
            }
            p.protocol = proto;
        }
        if let Some(ms) = r.uint("connect_timeout_ms")? {
            p.connect_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = r.uint("request_timeout_ms")? {
            p.request_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = r.uint("num_retries")? {
            p.retry.num_retries = to_u32(n, "num_retries")?;
        }
        if let Some(b) = r.bool("retry_on_connect_failure")? {
            p.retry.retry_on_connect_failure = b;
        }
        if let Some(codes) = r.get("retry_on_status_codes") {
            p.retry.retry_on_status_codes = status_codes(codes, "retry_on_status_codes")?;
        }
        if let Some(budget) = r.object("retry_budget")? {
            if let Some(pct) = budget.uint("percent")? {
                if pct > 100 {
                    return Err(problem(&budget.key("percent"), "must be 0..=100"));
                }
                p.retry_budget.ratio = pct as f64 / 100.0;
            }
            if let Some(n) = budget.uint("min_retries_per_second")? {
                p.retry_budget.min_retries_per_second = to_u32(n, "min_retries_per_second")?;
            }
        }
        if let Some(limits) = r.object("limits")? {
            p.limits.max_connections = limits.count("max_connections")?;
            p.limits.max_pending_requests = limits.count("max_pending_requests")?;
            p.limits.max_concurrent_requests = limits.count("max_concurrent_requests")?;
        }
        if let Some(phc) = r.object("passive_health_check")? {
            let o = &mut p.outlier;
            if let Some(d) = phc.duration("interval")? {
                o.interval = d;
            }
            if let Some(n) = phc.uint("max_failures")? {
                o.max_failures = to_u32(n, "max_failures")?;
            }
            if let Some(n) = phc.percent("enforcing_consecutive_5xx")? {
                o.enforcing_consecutive_5xx = n;
            }
            if let Some(n) = phc.percent("max_ejection_percent")? {
                o.max_ejection_percent = n;
            }
            if let Some(d) = phc.duration("base_ejection_time")? {
                o.base_ejection_time = d;
            }
        }
        if let Some(lb) = r.string("load_balancer")? {
            p.balance = match lb.as_str() {
                "least_request" => BalancePolicy::LeastRequest,
                "round_robin" => BalancePolicy::RoundRobin,
                other => {
                    return Err(problem(
                        "load_balancer",
                        &format!("{other:?} is not least_request or round_robin"),
                    ))
                }
            };
        }
        Ok(p)
    }

    /// Whether requests to the upstream go over h2.
    pub fn http2(&self) -> bool {
        matches!(self.protocol.as_str(), "http2" | "grpc")
    }
}

/// Per-proxy switches of the L7 engine, from the proxy's own `Config` map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Emit one JSON access-log line per request (tracing target `concord_proxy::access`;
    /// Concord's `access_log` key).
    pub access_log: bool,
    /// Inbound only: time the local app has to answer (Consul's `local_request_timeout_ms`;
    /// 0 or absent: no limit).
    pub local_request_timeout: Option<Duration>,
    /// Where request spans go (set by the proxy from `-otlp-endpoint` or the `otlp_endpoint`
    /// key, not read here: one exporter serves every listener).
    pub tracer: Option<super::trace::Tracer>,
}

impl Options {
    /// Reads a sidecar's `Proxy.Config` map (`null` gives the defaults).
    pub fn from_proxy_config(config: &Value) -> Result<Options, PolicyError> {
        let obj = match config {
            Value::Null => return Ok(Options::default()),
            Value::Object(o) => o,
            _ => return Err(problem("", "expected an object")),
        };
        let r = Reader { obj, prefix: "" };
        Ok(Options {
            access_log: r.bool("access_log")?.unwrap_or(false),
            local_request_timeout: r
                .uint("local_request_timeout_ms")?
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
            tracer: None,
        })
    }
}

/// A router destination's overrides (`RequestTimeout`, `NumRetries`,
/// `RetryOnConnectFailure`, `RetryOnStatusCodes`, `PrefixRewrite`), as the compiled chain
/// carries them in its routes' `Definition.Destination`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RouteOverrides {
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) num_retries: Option<u32>,
    pub(crate) retry_on_connect_failure: Option<bool>,
    pub(crate) retry_on_status_codes: Option<Vec<u16>>,
    pub(crate) prefix_rewrite: Option<String>,
}

impl RouteOverrides {
    /// Reads a destination object; Consul writes zero values for unset fields, so zero
    /// and empty mean "not overridden".
    pub(crate) fn from_destination(dest: &Value) -> Result<RouteOverrides, PolicyError> {
        let Some(obj) = dest.as_object() else {
            return Ok(RouteOverrides::default());
        };
        let r = Reader {
            obj,
            prefix: "Destination.",
        };
        let codes = match r.get("RetryOnStatusCodes") {
            Some(v) => Some(status_codes(v, "Destination.RetryOnStatusCodes")?),
            None => None,
        };
        Ok(RouteOverrides {
            request_timeout: r.duration("RequestTimeout")?.filter(|d| !d.is_zero()),
            num_retries: match r.uint("NumRetries")? {
                Some(n) if n > 0 => Some(to_u32(n, "Destination.NumRetries")?),
                _ => None,
            },
            retry_on_connect_failure: r.bool("RetryOnConnectFailure")?.filter(|b| *b),
            retry_on_status_codes: codes.filter(|c| !c.is_empty()),
            prefix_rewrite: r.string("PrefixRewrite")?.filter(|s| !s.is_empty()),
        })
    }
}

/// The policy one request runs under: the upstream's, with its route's overrides applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RequestPolicy {
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) retry: RetryPolicy,
}

impl RequestPolicy {
    pub(crate) fn new(
        upstream: &UpstreamPolicy,
        route: &RouteOverrides,
        resolver_connect_timeout: Option<Duration>,
    ) -> RequestPolicy {
        let mut retry = upstream.retry.clone();
        if let Some(n) = route.num_retries {
            retry.num_retries = n;
        }
        if let Some(b) = route.retry_on_connect_failure {
            retry.retry_on_connect_failure = b;
        }
        if let Some(codes) = &route.retry_on_status_codes {
            retry.retry_on_status_codes = codes.clone();
        }
        RequestPolicy {
            request_timeout: route.request_timeout.unwrap_or(upstream.request_timeout),
            connect_timeout: resolver_connect_timeout.unwrap_or(upstream.connect_timeout),
            retry,
        }
    }
}

fn problem(key: &str, problem: &str) -> PolicyError {
    PolicyError {
        key: key.to_string(),
        problem: problem.to_string(),
    }
}

fn to_u32(n: u64, key: &str) -> Result<u32, PolicyError> {
    u32::try_from(n).map_err(|_| problem(key, "too large"))
}

fn status_codes(v: &Value, key: &str) -> Result<Vec<u16>, PolicyError> {
    let Some(list) = v.as_array() else {
        return Err(problem(key, "expected a list of status codes"));
    };
    list.iter()
        .map(|c| {
            weak_uint(c)
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| (100..=599).contains(n))
                .ok_or_else(|| problem(key, &format!("{c} is not an HTTP status code")))
        })
        .collect()
}

/// A non-negative integer from a number or a numeric string.
fn weak_uint(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Typed, weakly decoded reads from one config map; errors name the full key.
struct Reader<'a> {
    obj: &'a Map<String, Value>,
    prefix: &'a str,
}

impl<'a> Reader<'a> {
    fn key(&self, k: &str) -> String {
        format!("{}{k}", self.prefix)
    }

    fn get(&self, k: &str) -> Option<&'a Value> {
        self.obj.get(k).filter(|v| !v.is_null())
    }

    fn uint(&self, k: &str) -> Result<Option<u64>, PolicyError> {
        self.get(k)
            .map(|v| {
                weak_uint(v).ok_or_else(|| {
                    problem(
                        &self.key(k),
                        &format!("expected a non-negative integer, got {v}"),
                    )
                })
            })
            .transpose()
    }

    /// A limit: a count; 0 is refused (it would reject every request).
    fn count(&self, k: &str) -> Result<Option<usize>, PolicyError> {
        match self.uint(k)? {
            Some(0) => Err(problem(&self.key(k), "must be at least 1")),
            Some(n) => usize::try_from(n)
                .map(Some)
                .map_err(|_| problem(&self.key(k), "too large")),
            None => Ok(None),
        }
    }

    fn percent(&self, k: &str) -> Result<Option<u32>, PolicyError> {
        match self.uint(k)? {
            Some(n) if n > 100 => Err(problem(&self.key(k), "must be a percentage 0..=100")),
            Some(n) => Ok(Some(n as u32)),
            None => Ok(None),
        }
    }

    fn bool(&self, k: &str) -> Result<Option<bool>, PolicyError> {
        self.get(k)
            .map(|v| match v {
                Value::Bool(b) => Ok(*b),
                Value::String(s) if s == "true" => Ok(true),
                Value::String(s) if s == "false" => Ok(false),
                _ => Err(problem(
                    &self.key(k),
                    &format!("expected true or false, got {v}"),
                )),
            })
            .transpose()
    }

    fn string(&self, k: &str) -> Result<Option<String>, PolicyError> {
        self.get(k)
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| problem(&self.key(k), &format!("expected a string, got {v}")))
            })
            .transpose()
    }

    fn duration(&self, k: &str) -> Result<Option<Duration>, PolicyError> {
        self.get(k)
            .map(|v| match v {
                // Go's time.Duration in JSON numbers is nanoseconds.
                Value::Number(_) => weak_uint(v)
                    .map(Duration::from_nanos)
                    .ok_or_else(|| problem(&self.key(k), &format!("expected a duration, got {v}"))),
                Value::String(s) => {
                    parse_duration(s).map_err(|e| problem(&self.key(k), &e.to_string()))
                }
                _ => Err(problem(
                    &self.key(k),
                    &format!("expected a duration, got {v}"),
                )),
            })
            .transpose()
    }

    fn object(&self, k: &str) -> Result<Option<Reader<'a>>, PolicyError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Object(obj)) => Ok(Some(Reader {
                obj,
                // Nested keys are only one level deep in Consul's upstream config.
                prefix: match k {
                    "limits" => "limits.",
                    "passive_health_check" => "passive_health_check.",
                    "retry_budget" => "retry_budget.",
                    _ => "",
                },
            })),
            Some(v) => Err(problem(
                &self.key(k),
                &format!("expected an object, got {v}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_from_null_and_empty() {
        assert_eq!(
            UpstreamPolicy::from_config(&Value::Null).unwrap(),
            UpstreamPolicy::default()
        );
        assert_eq!(
            UpstreamPolicy::from_config(&json!({"envoy_extra": 1})).unwrap(),
            UpstreamPolicy::default()
        );
    }

    #[test]
    fn reads_consul_keys() {
        let p = UpstreamPolicy::from_config(&json!({
            "protocol": "HTTP2",
            "connect_timeout_ms": "250",
            "request_timeout_ms": 1500,
            "limits": {"max_connections": 10, "max_pending_requests": "5", "max_concurrent_requests": 3},
            "passive_health_check": {"interval": "1s", "max_failures": 3, "enforcing_consecutive_5xx": 50,
                "max_ejection_percent": 100, "base_ejection_time": 2_000_000_000u64},
            "num_retries": 4, "retry_on_connect_failure": "false", "retry_on_status_codes": [503, "502"],
            "retry_budget": {"percent": 10, "min_retries_per_second": 0},
            "load_balancer": "round_robin",
        }))
        .unwrap();
        assert!(p.http2());
        assert_eq!(p.connect_timeout, Duration::from_millis(250));
        assert_eq!(p.request_timeout, Duration::from_millis(1500));
        assert_eq!(
            p.limits,
            Limits {
                max_connections: Some(10),
                max_pending_requests: Some(5),
                max_concurrent_requests: Some(3)
            }
        );
        assert_eq!(
            p.outlier,
            OutlierPolicy {
                interval: Duration::from_secs(1),
                max_failures: 3,
                enforcing_consecutive_5xx: 50,
                max_ejection_percent: 100,
                base_ejection_time: Duration::from_secs(2),
            }
        );
        assert_eq!(
            p.retry,
            RetryPolicy {
                num_retries: 4,
                retry_on_connect_failure: false,
                retry_on_status_codes: vec![503, 502]
            }
        );
        assert_eq!(p.retry_budget.ratio, 0.1);
        assert_eq!(p.retry_budget.min_retries_per_second, 0);
        assert_eq!(p.balance, BalancePolicy::RoundRobin);
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (json!([1]), "", "expected an object"),
            (json!({"protocol": "udp"}), "protocol", "not one of"),
            (
                json!({"connect_timeout_ms": -1}),
                "connect_timeout_ms",
                "non-negative",
            ),
            (
                json!({"connect_timeout_ms": "soon"}),
                "connect_timeout_ms",
                "non-negative",
            ),
            (
                json!({"limits": {"max_connections": 0}}),
                "limits.max_connections",
                "at least 1",
            ),
            (json!({"limits": 5}), "limits", "expected an object"),
            (
                json!({"passive_health_check": {"interval": "ten"}}),
                "passive_health_check.interval",
                "invalid duration",
            ),
            (
                json!({"passive_health_check": {"max_ejection_percent": 101}}),
                "passive_health_check.max_ejection_percent",
                "percentage",
            ),
            (
                json!({"retry_on_status_codes": [99]}),
                "retry_on_status_codes",
                "not an HTTP",
            ),
            (
                json!({"retry_on_status_codes": 503}),
                "retry_on_status_codes",
                "list",
            ),
            (
                json!({"retry_on_connect_failure": 1}),
                "retry_on_connect_failure",
                "true or false",
            ),
            (
                json!({"load_balancer": "maglev"}),
                "load_balancer",
                "round_robin",
            ),
            (
                json!({"retry_budget": {"percent": 150}}),
                "retry_budget.percent",
                "0..=100",
            ),
        ];
        for (config, key, needle) in cases {
            let err = UpstreamPolicy::from_config(&config).unwrap_err();
            assert_eq!(err.key, key, "{config}");
            assert!(err.to_string().contains(needle), "{config}: {err}");
        }
    }

    #[test]
    fn proxy_options_table() {
        let cases = [
            (Value::Null, Ok(Options::default())),
            (
                json!({"access_log": "true", "local_request_timeout_ms": 1500, "protocol": "http"}),
                Ok(Options {
                    access_log: true,
                    local_request_timeout: Some(Duration::from_millis(1500)),
                    tracer: None,
                }),
            ),
            (
                json!({"local_request_timeout_ms": 0}),
                Ok(Options::default()),
            ),
            (json!({"access_log": "yes"}), Err("access_log".to_string())),
            (
                json!({"local_request_timeout_ms": "1s"}),
                Err("local_request_timeout_ms".to_string()),
            ),
        ];
        for (config, want) in cases {
            let got = Options::from_proxy_config(&config).map_err(|e| e.key);
            assert_eq!(got, want, "{config}");
        }
    }

    #[test]
    fn route_overrides_apply_over_upstream_policy() {
        let upstream = UpstreamPolicy::default();
        let cases = [
            (json!({}), None, upstream.request_timeout, 2, true, vec![]),
            (
                json!({"RequestTimeout": "2s", "NumRetries": 5, "RetryOnStatusCodes": [503], "PrefixRewrite": "/"}),
                Some("/"),
                Duration::from_secs(2),
                5,
                true,
                vec![503],
            ),
            // Consul writes zero values for unset fields: they do not override.
            (
                json!({"RequestTimeout": "0s", "NumRetries": 0, "RetryOnConnectFailure": false, "RetryOnStatusCodes": []}),
                None,
                upstream.request_timeout,
                2,
                true,
                vec![],
            ),
        ];
        for (dest, rewrite, timeout, retries, on_connect, codes) in cases {
            let o = RouteOverrides::from_destination(&dest).unwrap();
            assert_eq!(o.prefix_rewrite.as_deref(), rewrite, "{dest}");
            let p = RequestPolicy::new(&upstream, &o, Some(Duration::from_secs(1)));
            assert_eq!(p.request_timeout, timeout, "{dest}");
            assert_eq!(p.connect_timeout, Duration::from_secs(1));
            assert_eq!(p.retry.num_retries, retries, "{dest}");
            assert_eq!(p.retry.retry_on_connect_failure, on_connect, "{dest}");
            assert_eq!(p.retry.retry_on_status_codes, codes, "{dest}");
        }
        let err = RouteOverrides::from_destination(&json!({"RequestTimeout": "x"})).unwrap_err();
        assert_eq!(err.key, "Destination.RequestTimeout");
    }
}
