//! Validation: a user's [`CheckDefinition`] checked with Consul's rules and messages, then
//! narrowed to a [`CheckSpec`], one struct per kind Concord runs. Nothing here runs a check.

use std::time::Duration;

use concord_api::agent::CheckDefinition;
use concord_api::duration::{format_duration, GoDuration};

use super::{AliasCheck, HttpCheck, ScriptCheck, TcpCheck, TtlCheck};

/// Per-run timeout of script checks when the definition sets none (Consul's).
pub const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Per-run timeout of HTTP and TCP checks when the definition sets none (Consul's).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Shortest interval an HTTP or TCP check runs at; shorter ones are raised to it with a
/// warning, as Consul's `checks.MinInterval` does.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// How to run a check: a validated [`CheckDefinition`] reduced to what running it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckSpec {
    /// Critical unless updated (`/v1/agent/check/pass` ...) at least every `ttl`.
    Ttl(TtlCheck),
    /// Request a URL every interval.
    Http(HttpCheck),
    /// Open a TCP connection every interval.
    Tcp(TcpCheck),
    /// Run a program (no shell) every interval: exit 0 passing, 1 warning, else critical.
    /// Only on agents with `enable_script_checks`.
    Script(ScriptCheck),
    /// Mirror another service instance's health (`AliasService`); computed by the agent from
    /// its local state, so nothing runs.
    Alias(AliasCheck),
}

/// Why a check definition is rejected. The agent's HTTP layer prefixes `Invalid check: `.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCheck {
    /// Both `Interval` and `TTL`.
    #[error("Interval and TTL cannot both be specified")]
    IntervalAndTtl,
    /// An interval kind (script, HTTP, TCP, ...) without an interval.
    #[error("Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks")]
    IntervalRequired,
    /// An interval kind mixed with an alias check.
    #[error("Interval cannot be set for Alias checks")]
    AliasWithInterval,
    /// An alias check with a TTL (Consul's wording, typo included).
    #[error("TTL must be not be set for Alias checks")]
    AliasWithTtl,
    /// Nothing to run: no kind and no TTL.
    #[error("TTL must be > 0 for TTL checks")]
    TtlRequired,
    /// A negative `OutputMaxSize` (Consul's message, name included).
    #[error("MaxOutputMaxSize must be positive")]
    NegativeOutputMaxSize,
    /// An interval but no kind Concord recognises (Consul would accept `OSService` or
    /// `DockerContainerID` here; our wire type does not even carry them).
    #[error(
        "no supported check kind given: Concord runs TTL, HTTP and TCP checks \
         (OSService and Docker checks are not supported yet)"
    )]
    NoSupportedKind,
    /// `Args` / `ScriptArgs` on an agent without `enable_script_checks` (Consul's message).
    #[error("Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true")]
    ScriptDisabled,
    /// A kind Concord does not run yet.
    #[error("{kind} checks are not supported yet: Concord runs TTL, HTTP and TCP checks")]
    Unsupported {
        /// `GRPC`, `UDP` or `H2PING`.
        kind: &'static str,
    },
    /// Both `HTTP` and `TCP`.
    #[error("only one of HTTP and TCP may be specified")]
    HttpAndTcp,
    /// An `https://` URL (the agent has no TLS client yet).
    #[error("HTTPS checks are not supported yet")]
    HttpsUnsupported,
    /// A URL that does not parse or is not `http://`.
    #[error("invalid HTTP check URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A TCP target that is not `host:port`.
    #[error("invalid TCP check address {addr:?}: must be host:port")]
    InvalidTcpAddress {
        /// The address as given.
        addr: String,
    },
}

impl CheckSpec {
    /// Whether this is a script check (which agents run only when configured to).
    pub fn is_script(&self) -> bool {
        matches!(self, CheckSpec::Script(_))
    }

    /// Validates a definition as Consul's `CheckType.Validate` does (same order, same
    /// messages), then narrows it to the kinds Concord runs: exactly one of TTL, HTTP, TCP.
    pub fn from_definition(def: &CheckDefinition) -> Result<CheckSpec, InvalidCheck> {
        let interval = duration(def.interval);
        let ttl = duration(def.ttl);
        let http = non_empty(&def.http);
        let tcp = non_empty(&def.tcp);
        let script = def.args.as_ref().is_some_and(|a| !a.is_empty())
            || def.script_args.as_ref().is_some_and(|a| !a.is_empty());
        let alias = non_empty(&def.alias_service).is_some() || non_empty(&def.alias_node).is_some();
        let other_interval_kind = [
            ("GRPC", &def.grpc),
            ("UDP", &def.udp),
            ("H2PING", &def.h2ping),
        ]
        .into_iter()
        .find_map(|(kind, target)| non_empty(target).map(|_| kind));
        let interval_kind =
            script || http.is_some() || tcp.is_some() || other_interval_kind.is_some();

        // Consul's rules, in Consul's order.
        if !interval.is_zero() && !ttl.is_zero() {
            return Err(InvalidCheck::IntervalAndTtl);
        }
        if interval_kind && interval.is_zero() {
            return Err(InvalidCheck::IntervalRequired);
        }
        if interval_kind && alias {
            return Err(InvalidCheck::AliasWithInterval);
        }
        if alias && !ttl.is_zero() {
            return Err(InvalidCheck::AliasWithTtl);
        }
        if !interval_kind && !alias && ttl.is_zero() {
            return Err(if interval.is_zero() {
                InvalidCheck::TtlRequired
            } else {
                InvalidCheck::NoSupportedKind
            });
        }
        if def.output_max_size.is_some_and(|n| n < 0) {
            return Err(InvalidCheck::NegativeOutputMaxSize);
        }

        // What Concord runs. Whether this agent allows scripts is the caller's decision
        // (`enable_script_checks`), see [`CheckSpec::is_script`].
        if script {
            let args: Vec<String> = def
                .args
                .clone()
                .filter(|a| !a.is_empty())
                .or_else(|| def.script_args.clone())
                .unwrap_or_default();
            let timeout = match duration(def.timeout) {
                t if t.is_zero() => DEFAULT_SCRIPT_TIMEOUT,
                t => t,
            };
            return Ok(CheckSpec::Script(ScriptCheck {
                interval: at_least_min_interval(interval, &args.join(" ")),
                args,
                timeout,
            }));
        }
        if let Some(kind) = other_interval_kind {
            return Err(InvalidCheck::Unsupported { kind });
        }
        if alias {
            return Ok(CheckSpec::Alias(AliasCheck {
                service_id: def.alias_service.clone().unwrap_or_default(),
                node: def.alias_node.clone().unwrap_or_default(),
            }));
        }
        let timeout = if duration(def.timeout).is_zero() {
            DEFAULT_TIMEOUT
        } else {
            duration(def.timeout)
        };
        match (http, tcp) {
            (Some(_), Some(_)) => Err(InvalidCheck::HttpAndTcp),
            (Some(url), None) => {
                validate_http_url(url)?;
                Ok(CheckSpec::Http(HttpCheck {
                    url: url.to_string(),
                    method: non_empty(&def.method).unwrap_or("GET").to_string(),
                    headers: def.header.clone().unwrap_or_default(),
                    body: def.body.clone().unwrap_or_default(),
                    interval: at_least_min_interval(interval, url),
                    timeout,
                    disable_redirects: def.disable_redirects.unwrap_or(false),
                }))
            }
            (None, Some(addr)) => {
                if !is_host_port(addr) {
                    return Err(InvalidCheck::InvalidTcpAddress {
                        addr: addr.to_string(),
                    });
                }
                Ok(CheckSpec::Tcp(TcpCheck {
                    addr: addr.to_string(),
                    interval: at_least_min_interval(interval, addr),
                    timeout,
                }))
            }
            // The rules above leave only a TTL check here (ttl > 0).
            (None, None) => Ok(CheckSpec::Ttl(TtlCheck { ttl })),
        }
    }

    /// The check's `Type` as the API reports it: `ttl`, `http`, `tcp`, `script` or `alias`.
    pub fn check_type(&self) -> &'static str {
        match self {
            CheckSpec::Ttl(_) => "ttl",
            CheckSpec::Http(_) => "http",
            CheckSpec::Tcp(_) => "tcp",
            CheckSpec::Script(_) => "script",
            CheckSpec::Alias(_) => "alias",
        }
    }
}

fn duration(d: Option<GoDuration>) -> Duration {
    d.map(GoDuration::get).unwrap_or_default()
}

/// Go's zero value and absence mean the same thing in a definition.
fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

fn at_least_min_interval(interval: Duration, target: &str) -> Duration {
    if interval < MIN_INTERVAL {
        tracing::warn!(
            target_addr = %target,
            interval = %format_duration(interval),
            minimum = %format_duration(MIN_INTERVAL),
            "check interval below minimum; using the minimum"
        );
        MIN_INTERVAL
    } else {
        interval
    }
}

fn validate_http_url(url: &str) -> Result<(), InvalidCheck> {
    let invalid = |reason: String| InvalidCheck::InvalidUrl {
        url: url.to_string(),
        reason,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    match parsed.scheme() {
        "http" => Ok(()),
        "https" => Err(InvalidCheck::HttpsUnsupported),
        other => Err(invalid(format!("scheme {other:?} is not http"))),
    }
}

/// `host:port` as Go's `net.SplitHostPort` accepts it: IPv6 hosts in brackets, a port in
/// 1..=65535.
fn is_host_port(addr: &str) -> bool {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
    let host_ok = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']').is_some_and(|h| !h.is_empty()),
        None => !host.is_empty() && !host.contains(':'),
    };
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn def(json: &str) -> CheckDefinition {
        serde_json::from_str(json).unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn validation_follows_consul_then_concord_support() {
        let ok: Vec<(&str, CheckSpec)> = vec![
            (
                r#"{"TTL":"15s"}"#,
                CheckSpec::Ttl(TtlCheck { ttl: secs(15) }),
            ),
            (
                r#"{"HTTP":"http://127.0.0.1:8080/health","Interval":"10s"}"#,
                CheckSpec::Http(HttpCheck {
                    url: "http://127.0.0.1:8080/health".into(),
                    method: "GET".into(),
                    headers: BTreeMap::new(),
                    body: String::new(),
                    interval: secs(10),
                    timeout: DEFAULT_TIMEOUT,
                    disable_redirects: false,
                }),
            ),
            (
                r#"{"HTTP":"http://web/h","Interval":"5s","Timeout":"2s","Method":"POST",
                    "Header":{"X-A":["1","2"]},"Body":"ping","TTL":"0s"}"#,
                CheckSpec::Http(HttpCheck {
                    url: "http://web/h".into(),
                    method: "POST".into(),
                    headers: BTreeMap::from([("X-A".into(), vec!["1".into(), "2".into()])]),
                    body: "ping".into(),
                    interval: secs(5),
                    timeout: secs(2),
                    disable_redirects: false,
                }),
            ),
            (
                r#"{"TCP":"localhost:22","Interval":"30s"}"#,
                CheckSpec::Tcp(TcpCheck {
                    addr: "localhost:22".into(),
                    interval: secs(30),
                    timeout: DEFAULT_TIMEOUT,
                }),
            ),
            (
                r#"{"TCP":"[::1]:5432","Interval":"1m","Timeout":"1s"}"#,
                CheckSpec::Tcp(TcpCheck {
                    addr: "[::1]:5432".into(),
                    interval: secs(60),
                    timeout: secs(1),
                }),
            ),
            // Below Consul's minimum interval: raised to 1s.
            (
                r#"{"TCP":"db:5432","Interval":"100ms"}"#,
                CheckSpec::Tcp(TcpCheck {
                    addr: "db:5432".into(),
                    interval: MIN_INTERVAL,
                    timeout: DEFAULT_TIMEOUT,
                }),
            ),
            // Empty strings are Go's zero values: unset.
            (
                r#"{"TTL":"5s","HTTP":"","TCP":"","GRPC":"","Args":[]}"#,
                CheckSpec::Ttl(TtlCheck { ttl: secs(5) }),
            ),
        ];
        for (json, want) in ok {
            assert_eq!(CheckSpec::from_definition(&def(json)), Ok(want), "{json}");
        }

        let err: &[(&str, &str)] = &[
            (
                r#"{"TTL":"10s","Interval":"10s"}"#,
                "Interval and TTL cannot both be specified",
            ),
            (
                r#"{"HTTP":"http://a/","TTL":"10s","Interval":"10s"}"#,
                "Interval and TTL cannot both be specified",
            ),
            (
                r#"{"HTTP":"http://a/"}"#,
                "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks",
            ),
            (
                r#"{"TCP":"a:1","TTL":"10s"}"#,
                "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks",
            ),
            (
                r#"{"GRPC":"a:1"}"#,
                "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks",
            ),
            (
                r#"{"TCP":"a:1","Interval":"10s","AliasService":"web"}"#,
                "Interval cannot be set for Alias checks",
            ),
            (
                r#"{"AliasNode":"n1","TTL":"10s"}"#,
                "TTL must be not be set for Alias checks",
            ),
            (r#"{}"#, "TTL must be > 0 for TTL checks"),
            (
                r#"{"Name":"x","TTL":"0s"}"#,
                "TTL must be > 0 for TTL checks",
            ),
            (
                r#"{"Interval":"10s"}"#,
                "no supported check kind given: Concord runs TTL, HTTP and TCP checks \
                 (OSService and Docker checks are not supported yet)",
            ),
            (
                r#"{"GRPC":"a:1","Interval":"10s"}"#,
                "GRPC checks are not supported yet: Concord runs TTL, HTTP and TCP checks",
            ),
            (
                r#"{"UDP":"a:1","Interval":"10s"}"#,
                "UDP checks are not supported yet: Concord runs TTL, HTTP and TCP checks",
            ),
            (
                r#"{"H2PING":"a:1","Interval":"10s"}"#,
                "H2PING checks are not supported yet: Concord runs TTL, HTTP and TCP checks",
            ),
            (
                r#"{"HTTP":"http://a/","TCP":"a:1","Interval":"10s"}"#,
                "only one of HTTP and TCP may be specified",
            ),
            (
                r#"{"HTTP":"https://a/","Interval":"10s"}"#,
                "HTTPS checks are not supported yet",
            ),
            (
                r#"{"HTTP":"ftp://a/","Interval":"10s"}"#,
                r#"invalid HTTP check URL "ftp://a/": scheme "ftp" is not http"#,
            ),
            (
                r#"{"HTTP":"/health","Interval":"10s"}"#,
                r#"invalid HTTP check URL "/health": relative URL without a base"#,
            ),
            (
                r#"{"TCP":"localhost","Interval":"10s"}"#,
                r#"invalid TCP check address "localhost": must be host:port"#,
            ),
            (
                r#"{"TCP":"::1:80","Interval":"10s"}"#,
                r#"invalid TCP check address "::1:80": must be host:port"#,
            ),
            (
                r#"{"TCP":"host:0","Interval":"10s"}"#,
                r#"invalid TCP check address "host:0": must be host:port"#,
            ),
        ];
        for (json, want) in err {
            let got = CheckSpec::from_definition(&def(json)).map_err(|e| e.to_string());
            assert_eq!(got, Err(want.to_string()), "{json}");
        }
    }

    #[test]
    fn check_types_are_consul_names() {
        let types: Vec<_> = [
            r#"{"TTL":"1s"}"#,
            r#"{"HTTP":"http://a/","Interval":"1s"}"#,
            r#"{"TCP":"a:1","Interval":"1s"}"#,
        ]
        .iter()
        .map(|j| CheckSpec::from_definition(&def(j)).unwrap().check_type())
        .collect();
        assert_eq!(types, ["ttl", "http", "tcp"]);
    }
}
