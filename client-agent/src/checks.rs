//! Health checks the agent runs itself: HTTP, TCP and TTL, as Consul's `agent/checks` runs them.
//!
//! [`CheckSpec::from_definition`] validates a user's check definition with Consul's rules and
//! messages and keeps only what running the check needs. [`Checks`] runs every check in its
//! own tokio task and reports each [`CheckResult`] on one channel; the agent drains that
//! channel into its local state, so check tasks never touch shared state themselves.
//!
//! # Layout
//! - `http`: `HTTP` checks. 2xx is passing, 429 warning, anything else critical.
//! - `tcp`: `TCP` checks. Passing when a connection opens within the timeout.
//! - `ttl`: `TTL` checks. Critical unless the application reports in within the TTL.
//!
//! Each kind implements the private `Check` trait (its run loop); the interval kinds share
//! `run_every`. All timing goes through `tokio::time`, so tests run on paused time.

mod http;
mod script;
mod tcp;
mod ttl;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use concord_api::agent::CheckDefinition;
use concord_api::catalog::CheckStatus;
use concord_api::duration::{format_duration, GoDuration};
use rand::Rng as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Per-run timeout of script checks when the definition sets none (Consul's).
pub const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Per-run timeout of HTTP and TCP checks when the definition sets none (Consul's).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Shortest interval an HTTP or TCP check runs at; shorter ones are raised to it with a
/// warning, as Consul's `checks.MinInterval` does.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Most output bytes a check keeps (Consul's default `OutputMaxSize`).
pub const OUTPUT_MAX_SIZE: usize = 4096;

/// Room for check results not yet applied to local state. Applying one is a short in-memory
/// update, so the queue only fills if the agent stalls; then a check waits for room before
/// reporting (its next run waits too), and no result is dropped.
pub const CHECK_RESULTS_CAPACITY: usize = 256;

/// Longest random delay before an interval check's first run. Consul staggers over the whole
/// interval so that many checks registered at once (agent start) do not fire together; we
/// cap the delay so a new check shows its real status within a second.
const MAX_INITIAL_STAGGER: Duration = Duration::from_secs(1);

/// The outcome of one check run (or TTL update / expiry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    /// The check's ID.
    pub check_id: String,
    /// New status.
    pub status: CheckStatus,
    /// New output (at most [`OUTPUT_MAX_SIZE`] bytes of program output, plus a prefix).
    pub output: String,
}

/// How to run a check: a validated [`CheckDefinition`] reduced to what running it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckSpec {
    /// Critical unless updated (`/v1/agent/check/pass` ...) at least every `ttl`.
    Ttl {
        /// Time allowed between updates.
        ttl: Duration,
    },
    /// Request `url` every `interval`.
    Http {
        /// An `http://` URL.
        url: String,
        /// Request method (`GET` unless the definition says otherwise).
        method: String,
        /// Extra request headers.
        headers: BTreeMap<String, Vec<String>>,
        /// Request body (sent only when non-empty).
        body: String,
        /// Time between the end of one run and the start of the next.
        interval: Duration,
        /// Whole-request timeout, body included.
        timeout: Duration,
        /// Report a redirect as the result instead of following it (`DisableRedirects`).
        disable_redirects: bool,
    },
    /// Open a TCP connection to `addr` every `interval`.
    Tcp {
        /// `host:port`.
        addr: String,
        /// Time between the end of one run and the start of the next.
        interval: Duration,
        /// Connect timeout (name resolution included).
        timeout: Duration,
    },
    /// Run `args` (no shell) every `interval`: exit 0 passing, 1 warning, else critical.
    /// Only on agents with `enable_script_checks`.
    Script {
        /// Program and arguments.
        args: Vec<String>,
        /// Time between the end of one run and the start of the next.
        interval: Duration,
        /// Longest a run may take; the process is killed after it.
        timeout: Duration,
    },
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
        /// `GRPC`, `UDP`, `H2PING` or `Alias`.
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
        matches!(self, CheckSpec::Script { .. })
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

        // What Concord runs. Whether this agent allows scripts is the caller's decision
        // (`enable_script_checks`), see [`CheckSpec::is_script`].
        if script {
            let args = def
                .args
                .clone()
                .filter(|a| !a.is_empty())
                .or_else(|| def.script_args.clone())
                .unwrap_or_default();
            let timeout = match duration(def.timeout) {
                t if t.is_zero() => DEFAULT_SCRIPT_TIMEOUT,
                t => t,
            };
            return Ok(CheckSpec::Script {
                interval: at_least_min_interval(interval, &args.join(" ")),
                args,
                timeout,
            });
        }
        if let Some(kind) = other_interval_kind {
            return Err(InvalidCheck::Unsupported { kind });
        }
        if alias {
            return Err(InvalidCheck::Unsupported { kind: "Alias" });
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
                Ok(CheckSpec::Http {
                    url: url.to_string(),
                    method: non_empty(&def.method).unwrap_or("GET").to_string(),
                    headers: def.header.clone().unwrap_or_default(),
                    body: def.body.clone().unwrap_or_default(),
                    interval: at_least_min_interval(interval, url),
                    timeout,
                    disable_redirects: def.disable_redirects.unwrap_or(false),
                })
            }
            (None, Some(addr)) => {
                if !is_host_port(addr) {
                    return Err(InvalidCheck::InvalidTcpAddress {
                        addr: addr.to_string(),
                    });
                }
                Ok(CheckSpec::Tcp {
                    addr: addr.to_string(),
                    interval: at_least_min_interval(interval, addr),
                    timeout,
                })
            }
            // The rules above leave only a TTL check here (ttl > 0).
            (None, None) => Ok(CheckSpec::Ttl { ttl }),
        }
    }

    /// The check's `Type` as the API reports it: `ttl`, `http`, `tcp` or `script`.
    pub fn check_type(&self) -> &'static str {
        match self {
            CheckSpec::Ttl { .. } => "ttl",
            CheckSpec::Http { .. } => "http",
            CheckSpec::Tcp { .. } => "tcp",
            CheckSpec::Script { .. } => "script",
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

/// Cuts output longer than [`OUTPUT_MAX_SIZE`] the way Consul cuts TTL update output:
/// `<first 4096 bytes> ... (captured 4096 of N bytes)` (at a character boundary).
pub fn truncate_output(output: &str) -> Cow<'_, str> {
    if output.len() <= OUTPUT_MAX_SIZE {
        return Cow::Borrowed(output);
    }
    let mut end = OUTPUT_MAX_SIZE;
    while !output.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{} ... (captured {end} of {} bytes)",
        &output[..end],
        output.len()
    ))
}

/// Why a TTL update from the API failed.
#[derive(Debug, PartialEq, Eq)]
pub enum TtlError {
    /// No such check.
    Unknown,
    /// The check is not a TTL check.
    NotTtl,
}

/// `ttl_update` named a check that is not running, or is not a TTL check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Unknown check ID {check_id:?}. Ensure that the check ID is passed, not the check name.")]
pub struct UnknownCheck {
    /// The ID given.
    pub check_id: String,
}

/// Runs the agent's checks, one tokio task each, reporting on one channel.
///
/// Guarantee: once [`Checks::remove`], [`Checks::add`] (replacing) or [`Checks::shutdown`]
/// returns, the stopped task sends nothing more. Results it sent before may still be queued
/// in the channel; the receiver should ignore results for checks it no longer has.
#[derive(Debug)]
pub struct Checks {
    results: mpsc::Sender<CheckResult>,
    /// A std mutex: every critical section is short and never awaits.
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    running: HashMap<String, Running>,
    shut_down: bool,
}

/// A running check task. Dropping it stops the task.
#[derive(Debug)]
struct Running {
    live: Live,
    /// Taken only by [`Running::stop`]; always `Some` before.
    task: Option<JoinHandle<()>>,
    /// Feeds TTL updates to the task; `None` for the other kinds.
    ttl_updates: Option<watch::Sender<Option<ttl::Update>>>,
}

impl Running {
    /// Stops the task and hands back its handle, to await the end of the abort.
    fn stop(mut self) -> Option<JoinHandle<()>> {
        *lock(&self.live) = false;
        let task = self.task.take();
        if let Some(task) = &task {
            task.abort();
        }
        task
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Clear `live` first: `abort` alone cannot stop a task that is mid-poll on another
        // worker thread from sending one last result.
        *lock(&self.live) = false;
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Whether a task may still report. A mutex rather than an atomic so that "check, then
/// send" in [`Reporter::report`] cannot interleave with a stop.
type Live = Arc<Mutex<bool>>;

/// Poisoning can only follow a panic inside one of our few-line critical sections, none of
/// which can leave the data half-updated, so the data is still good.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Checks {
    /// A runner that reports every result on `results`.
    pub fn new(results: mpsc::Sender<CheckResult>) -> Self {
        Checks {
            results,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Starts a check, first stopping any running check with the same ID. Must be called
    /// from within a Tokio runtime. After [`Checks::shutdown`] this does nothing.
    pub fn add(&self, check_id: &str, spec: CheckSpec) {
        let mut inner = lock(&self.inner);
        if inner.shut_down {
            tracing::debug!(check = %check_id, "not starting check: shutting down");
            return;
        }
        // Stop the old task before the new one can report.
        drop(inner.running.remove(check_id));
        let live: Live = Arc::new(Mutex::new(true));
        let report = Reporter {
            check_id: check_id.to_string(),
            results: self.results.clone(),
            live: live.clone(),
        };
        let (task, ttl_updates) = match spec {
            CheckSpec::Ttl { ttl } => {
                let (check, tx) = ttl::TtlCheck::new(ttl);
                (tokio::spawn(check.run(report)), Some(tx))
            }
            CheckSpec::Http {
                url,
                method,
                headers,
                body,
                interval,
                timeout,
                disable_redirects,
            } => {
                let check = http::HttpCheck {
                    url,
                    method,
                    headers,
                    body,
                    interval,
                    timeout,
                    disable_redirects,
                };
                (tokio::spawn(check.run(report)), None)
            }
            CheckSpec::Tcp {
                addr,
                interval,
                timeout,
            } => {
                let check = tcp::TcpCheck {
                    addr,
                    interval,
                    timeout,
                };
                (tokio::spawn(check.run(report)), None)
            }
            CheckSpec::Script {
                args,
                interval,
                timeout,
            } => {
                let check = script::ScriptCheck {
                    args,
                    interval,
                    timeout,
                };
                (tokio::spawn(check.run(report)), None)
            }
        };
        inner.running.insert(
            check_id.to_string(),
            Running {
                live,
                task: Some(task),
                ttl_updates,
            },
        );
    }

    /// Stops a check. Returns whether it was running.
    pub fn remove(&self, check_id: &str) -> bool {
        lock(&self.inner).running.remove(check_id).is_some()
    }

    /// Reports a TTL check's new status and restarts its TTL. The result reaches the
    /// results channel through the check's task, ordered with its expiries. Output longer
    /// than [`OUTPUT_MAX_SIZE`] is cut as [`truncate_output`] does.
    pub fn ttl_update(
        &self,
        check_id: &str,
        status: CheckStatus,
        output: &str,
    ) -> Result<(), UnknownCheck> {
        let inner = lock(&self.inner);
        let updates = inner
            .running
            .get(check_id)
            .and_then(|r| r.ttl_updates.as_ref());
        let sent = updates.is_some_and(|tx| {
            tx.send(Some(ttl::Update {
                status,
                output: output.to_string(),
            }))
            .is_ok()
        });
        if sent {
            Ok(())
        } else {
            Err(UnknownCheck {
                check_id: check_id.to_string(),
            })
        }
    }

    /// Stops every check and waits until their tasks have ended; later [`Checks::add`]
    /// calls are ignored.
    pub async fn shutdown(&self) {
        let tasks: Vec<JoinHandle<()>> = {
            let mut inner = lock(&self.inner);
            inner.shut_down = true;
            inner
                .running
                .drain()
                .filter_map(|(_, r)| r.stop())
                .collect()
        };
        for task in tasks {
            // Aborted: the only outcome is cancellation (or a panic already logged).
            let _ = task.await;
        }
    }
}

/// A check task's way out: sends its results unless the check was stopped.
#[derive(Debug)]
struct Reporter {
    check_id: String,
    results: mpsc::Sender<CheckResult>,
    live: Live,
}

impl Reporter {
    /// Waits for room in the results queue (see [`CHECK_RESULTS_CAPACITY`]), then sends
    /// unless the check was stopped meanwhile. Room is reserved before `live` is locked, so
    /// the lock is never held across an await and "check, then send" stays atomic.
    async fn report(&self, status: CheckStatus, output: String) {
        // A closed channel means the agent is shutting down: nobody needs the result.
        let Ok(permit) = self.results.reserve().await else {
            return;
        };
        let live = lock(&self.live);
        if *live {
            permit.send(CheckResult {
                check_id: self.check_id.clone(),
                status,
                output,
            });
        }
    }
}

/// One check kind's run loop. [`Checks`] spawns `run` as the check's task and aborts the
/// task to stop it, so a loop never needs to return; every `.await` is a cancellation point.
trait Check: Send + 'static {
    /// Runs the check forever, reporting every result through `report`.
    fn run(self, report: Reporter) -> impl Future<Output = ()> + Send;
}

/// The loop of interval checks, as Consul's: a short random pause, then probe, report, and
/// wait `interval` after each run ends (runs never overlap).
async fn run_every<F, Fut>(interval: Duration, report: &Reporter, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = (CheckStatus, String)>,
{
    tokio::time::sleep(initial_stagger(interval)).await;
    loop {
        let (status, output) = probe().await;
        report.report(status, output).await;
        tokio::time::sleep(interval).await;
    }
}

fn initial_stagger(interval: Duration) -> Duration {
    let max = interval.min(MAX_INITIAL_STAGGER);
    if max.is_zero() {
        Duration::ZERO
    } else {
        rand::thread_rng().gen_range(Duration::ZERO..max)
    }
}

#[cfg(test)]
mod tests {
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
            (r#"{"TTL":"15s"}"#, CheckSpec::Ttl { ttl: secs(15) }),
            (
                r#"{"HTTP":"http://127.0.0.1:8080/health","Interval":"10s"}"#,
                CheckSpec::Http {
                    url: "http://127.0.0.1:8080/health".into(),
                    method: "GET".into(),
                    headers: BTreeMap::new(),
                    body: String::new(),
                    interval: secs(10),
                    timeout: DEFAULT_TIMEOUT,
                    disable_redirects: false,
                },
            ),
            (
                r#"{"HTTP":"http://web/h","Interval":"5s","Timeout":"2s","Method":"POST",
                    "Header":{"X-A":["1","2"]},"Body":"ping","TTL":"0s"}"#,
                CheckSpec::Http {
                    url: "http://web/h".into(),
                    method: "POST".into(),
                    headers: BTreeMap::from([("X-A".into(), vec!["1".into(), "2".into()])]),
                    body: "ping".into(),
                    interval: secs(5),
                    timeout: secs(2),
                    disable_redirects: false,
                },
            ),
            (
                r#"{"TCP":"localhost:22","Interval":"30s"}"#,
                CheckSpec::Tcp {
                    addr: "localhost:22".into(),
                    interval: secs(30),
                    timeout: DEFAULT_TIMEOUT,
                },
            ),
            (
                r#"{"TCP":"[::1]:5432","Interval":"1m","Timeout":"1s"}"#,
                CheckSpec::Tcp {
                    addr: "[::1]:5432".into(),
                    interval: secs(60),
                    timeout: secs(1),
                },
            ),
            // Below Consul's minimum interval: raised to 1s.
            (
                r#"{"TCP":"db:5432","Interval":"100ms"}"#,
                CheckSpec::Tcp {
                    addr: "db:5432".into(),
                    interval: MIN_INTERVAL,
                    timeout: DEFAULT_TIMEOUT,
                },
            ),
            // Empty strings are Go's zero values: unset.
            (
                r#"{"TTL":"5s","HTTP":"","TCP":"","GRPC":"","Args":[]}"#,
                CheckSpec::Ttl { ttl: secs(5) },
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
                r#"{"AliasService":"web"}"#,
                "Alias checks are not supported yet: Concord runs TTL, HTTP and TCP checks",
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

    #[test]
    fn long_output_is_cut_like_consul() {
        assert_eq!(truncate_output("short"), "short");
        let long = "x".repeat(OUTPUT_MAX_SIZE + 10);
        let cut = truncate_output(&long);
        assert!(cut.starts_with(&"x".repeat(OUTPUT_MAX_SIZE)));
        assert!(
            cut.ends_with("x ... (captured 4096 of 4106 bytes)"),
            "{cut}"
        );
        // Never splits a character.
        let wide = "é".repeat(OUTPUT_MAX_SIZE);
        assert!(truncate_output(&wide).contains("(captured 4096 of 8192 bytes)"));
        let odd = format!("a{wide}");
        assert!(truncate_output(&odd).contains("(captured 4095 of 8193 bytes)"));
    }

    #[test]
    fn first_run_comes_within_a_second() {
        for _ in 0..100 {
            assert!(initial_stagger(secs(60)) < secs(1));
            assert!(initial_stagger(Duration::from_millis(10)) < Duration::from_millis(10));
        }
        assert_eq!(initial_stagger(Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn remove_stops_results() {
        let (tx, mut rx) = mpsc::channel(16);
        let checks = Checks::new(tx);
        tracing::info!("a removed TTL check never expires");
        checks.add("ttl", CheckSpec::Ttl { ttl: secs(10) });
        assert!(checks.remove("ttl"));
        assert!(!checks.remove("ttl"), "already gone");
        tokio::time::sleep(secs(60)).await;
        assert!(rx.try_recv().is_err());
        assert_eq!(
            checks.ttl_update("ttl", CheckStatus::Passing, ""),
            Err(UnknownCheck {
                check_id: "ttl".into()
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn add_replaces_a_running_check() {
        let (tx, mut rx) = mpsc::channel(16);
        let checks = Checks::new(tx);
        checks.add("c", CheckSpec::Ttl { ttl: secs(5) });
        tokio::time::sleep(secs(3)).await;
        tracing::info!("re-adding restarts the check: the old 5s TTL must not fire");
        checks.add("c", CheckSpec::Ttl { ttl: secs(10) });
        tokio::time::sleep(secs(9)).await;
        assert!(rx.try_recv().is_err());
        tokio::time::sleep(secs(2)).await;
        let r = rx.try_recv().unwrap();
        assert_eq!(
            (r.check_id.as_str(), r.status),
            ("c", CheckStatus::Critical)
        );
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_update_needs_a_running_ttl_check() {
        let (tx, _rx) = mpsc::channel(16);
        let checks = Checks::new(tx);
        checks.add(
            "tcp",
            CheckSpec::Tcp {
                addr: "127.0.0.1:9".into(),
                interval: secs(3600),
                timeout: secs(1),
            },
        );
        for id in ["tcp", "nope"] {
            let err = checks
                .ttl_update(id, CheckStatus::Passing, "ok")
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "Unknown check ID \"{id}\". Ensure that the check ID is passed, not the \
                     check name."
                )
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_all_and_ignores_later_adds() {
        let (tx, mut rx) = mpsc::channel(16);
        let checks = Checks::new(tx);
        checks.add("a", CheckSpec::Ttl { ttl: secs(1) });
        checks.add("b", CheckSpec::Ttl { ttl: secs(2) });
        checks.shutdown().await;
        checks.add("c", CheckSpec::Ttl { ttl: secs(1) });
        tokio::time::sleep(secs(10)).await;
        assert!(rx.try_recv().is_err());
        assert!(!checks.remove("c"));
    }
}
