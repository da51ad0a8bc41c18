//! Health checks the agent runs itself: HTTP, TCP, TTL and script, as Consul's `agent/checks`
//! runs them.
//!
//! [`CheckSpec::from_definition`] (in `spec`) validates a user's check definition with
//! Consul's rules and messages and keeps only what running the check needs: one struct per
//! kind. [`Checks`] (here) runs every check in its own tokio task and reports each
//! [`CheckResult`] on one bounded channel; the agent drains that channel into its local state,
//! so check tasks never touch shared state themselves.
//!
//! # Layout
//! - `spec`: validation, [`CheckSpec`] and [`InvalidCheck`]. Runs nothing.
//! - `http`: [`HttpCheck`]. 2xx is passing, 429 warning, anything else critical.
//! - `tcp`: [`TcpCheck`]. Passing when a connection opens within the timeout.
//! - `ttl`: [`TtlCheck`]. Critical unless the application reports in within the TTL.
//! - `script`: [`ScriptCheck`]. Exit 0 passing, 1 warning, anything else critical.
//! - `alias`: [`AliasCheck`]. The health of another local service; no task, the agent
//!   recomputes it from its local state ([`alias_status`]).
//!
//! Each kind implements the private `Check` trait (its run loop); the interval kinds share
//! `run_every`. All timing goes through `tokio::time`, so tests run on paused time.

mod alias;
mod http;
mod script;
mod spec;
mod tcp;
mod ttl;

pub use alias::{alias_status, AliasCheck};
pub use http::HttpCheck;
pub use script::ScriptCheck;
pub use spec::{CheckSpec, InvalidCheck, DEFAULT_SCRIPT_TIMEOUT, DEFAULT_TIMEOUT, MIN_INTERVAL};
pub use tcp::TcpCheck;
pub use ttl::TtlCheck;

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use concord_api::catalog::CheckStatus;
use rand::Rng as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Most output bytes a check keeps by default (Consul's `check_output_max_size` default).
/// The agent's `check_output_max_size` replaces it; a check's own `OutputMaxSize` can only
/// lower it (as Consul's `addCheck` takes the smaller).
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
    /// New output (at most the check's output limit of program output, plus a prefix).
    pub output: String,
}

/// Cuts output longer than `max` bytes the way Consul cuts TTL update output:
/// `<first max bytes> ... (captured max of N bytes)` (at a character boundary).
pub fn truncate_output(output: &str, max: usize) -> Cow<'_, str> {
    truncate_captured(output, output.len(), max)
}

/// [`truncate_output`] for output of which only the start was kept (a script's, read with
/// a cap so that a check printing without end cannot grow the agent's memory): `total` is
/// the length of the whole output.
pub fn truncate_captured(kept: &str, total: usize, max: usize) -> Cow<'_, str> {
    let total = total.max(kept.len());
    if total <= max {
        return Cow::Borrowed(kept);
    }
    let mut end = max.min(kept.len());
    while !kept.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{} ... (captured {end} of {total} bytes)",
        &kept[..end]
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
    /// Most output bytes the check keeps.
    output_max_size: usize,
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

    /// Starts a check, first stopping any running check with the same ID, keeping at most
    /// `output_max_size` bytes of its output. Must be called from within a Tokio runtime.
    /// After [`Checks::shutdown`] this does nothing.
    pub fn add(&self, check_id: &str, spec: CheckSpec, output_max_size: usize) {
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
            output_max_size,
        };
        let (task, ttl_updates) = match spec {
            CheckSpec::Ttl(check) => {
                let (running, tx) = check.start();
                (tokio::spawn(running.run(report)), Some(tx))
            }
            CheckSpec::Http(check) => (tokio::spawn(check.run(report)), None),
            CheckSpec::Tcp(check) => (tokio::spawn(check.run(report)), None),
            CheckSpec::Script(check) => (tokio::spawn(check.run(report)), None),
            // Computed by the agent from its local state (see `alias`): no task to run.
            CheckSpec::Alias(_) => return,
        };
        inner.running.insert(
            check_id.to_string(),
            Running {
                live,
                task: Some(task),
                ttl_updates,
                output_max_size,
            },
        );
    }

    /// Stops a check. Returns whether it was running.
    pub fn remove(&self, check_id: &str) -> bool {
        lock(&self.inner).running.remove(check_id).is_some()
    }

    /// Reports a TTL check's new status and restarts its TTL. The result reaches the
    /// results channel through the check's task, ordered with its expiries. Output longer
    /// than the check's limit is cut as [`truncate_output`] does; returns the output kept.
    pub fn ttl_update(
        &self,
        check_id: &str,
        status: CheckStatus,
        output: &str,
    ) -> Result<String, UnknownCheck> {
        let inner = lock(&self.inner);
        let sent = inner.running.get(check_id).and_then(|r| {
            let tx = r.ttl_updates.as_ref()?;
            let output = truncate_output(output, r.output_max_size).into_owned();
            tx.send(Some(ttl::Update {
                status,
                output: output.clone(),
            }))
            .ok()
            .map(|()| output)
        });
        if let Some(output) = sent {
            Ok(output)
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
    /// Most output bytes the check keeps (the kinds that read output cap it themselves).
    output_max_size: usize,
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

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn long_output_is_cut_like_consul() {
        assert_eq!(truncate_output("short", OUTPUT_MAX_SIZE), "short");
        assert_eq!(
            truncate_output("short", 2),
            "sh ... (captured 2 of 5 bytes)"
        );
        let long = "x".repeat(OUTPUT_MAX_SIZE + 10);
        let cut = truncate_output(&long, OUTPUT_MAX_SIZE);
        assert!(cut.starts_with(&"x".repeat(OUTPUT_MAX_SIZE)));
        assert!(
            cut.ends_with("x ... (captured 4096 of 4106 bytes)"),
            "{cut}"
        );
        // Never splits a character.
        let wide = "é".repeat(OUTPUT_MAX_SIZE);
        assert!(truncate_output(&wide, OUTPUT_MAX_SIZE).contains("(captured 4096 of 8192 bytes)"));
        let odd = format!("a{wide}");
        assert!(truncate_output(&odd, OUTPUT_MAX_SIZE).contains("(captured 4095 of 8193 bytes)"));
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
        checks.add(
            "ttl",
            CheckSpec::Ttl(TtlCheck { ttl: secs(10) }),
            OUTPUT_MAX_SIZE,
        );
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
        checks.add(
            "c",
            CheckSpec::Ttl(TtlCheck { ttl: secs(5) }),
            OUTPUT_MAX_SIZE,
        );
        tokio::time::sleep(secs(3)).await;
        tracing::info!("re-adding restarts the check: the old 5s TTL must not fire");
        checks.add(
            "c",
            CheckSpec::Ttl(TtlCheck { ttl: secs(10) }),
            OUTPUT_MAX_SIZE,
        );
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
            CheckSpec::Tcp(TcpCheck {
                addr: "127.0.0.1:9".into(),
                interval: secs(3600),
                timeout: secs(1),
            }),
            OUTPUT_MAX_SIZE,
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
        checks.add(
            "a",
            CheckSpec::Ttl(TtlCheck { ttl: secs(1) }),
            OUTPUT_MAX_SIZE,
        );
        checks.add(
            "b",
            CheckSpec::Ttl(TtlCheck { ttl: secs(2) }),
            OUTPUT_MAX_SIZE,
        );
        checks.shutdown().await;
        checks.add(
            "c",
            CheckSpec::Ttl(TtlCheck { ttl: secs(1) }),
            OUTPUT_MAX_SIZE,
        );
        tokio::time::sleep(secs(10)).await;
        assert!(rx.try_recv().is_err());
        assert!(!checks.remove("c"));
    }
}
