//! TTL checks: the application reports its own status (`/v1/agent/check/pass|warn|fail|update`)
//! and the check turns critical when no report arrives within the TTL, as Consul's `CheckTTL`.
//!
//! Updates reach the task over a channel instead of being reported by the caller directly, so
//! an update and an expiry are reported in the order the task saw them: an expiry can never be
//! reported after a newer update. The channel is a `watch` (one slot, the latest update
//! wins): callers never wait and a flood of updates cannot grow memory; updates overwritten
//! before the task saw them are skipped, and the task always reports the newest.

use std::time::Duration;

use concord_api::catalog::CheckStatus;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Check, Reporter};

/// A status report from the application.
#[derive(Clone, Debug)]
pub(super) struct Update {
    pub(super) status: CheckStatus,
    pub(super) output: String,
}

/// A TTL check: critical unless updated (`/v1/agent/check/pass` ...) at least every `ttl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TtlCheck {
    /// Time allowed between updates.
    pub ttl: Duration,
}

impl TtlCheck {
    /// The check's run loop, fed by the returned sender; dropping the sender stops it.
    pub(super) fn start(self) -> (Running, watch::Sender<Option<Update>>) {
        let (tx, updates) = watch::channel(None);
        (
            Running {
                ttl: self.ttl,
                updates,
            },
            tx,
        )
    }
}

/// A running TTL check.
pub(super) struct Running {
    ttl: Duration,
    /// `None` until the first update.
    updates: watch::Receiver<Option<Update>>,
}

/// Consul's expiry output: the last reported output is kept so operators see what the
/// application said before it went quiet.
fn expired_output(last_output: &str) -> String {
    if last_output.is_empty() {
        "TTL expired".to_string()
    } else {
        format!("TTL expired (last output before timeout follows): {last_output}")
    }
}

impl Check for Running {
    async fn run(mut self, report: Reporter) {
        let deadline = tokio::time::sleep(self.ttl);
        tokio::pin!(deadline);
        // Like Go's one-shot timer: after an expiry, nothing more until the next update.
        let mut armed = true;
        let mut last_output = String::new();
        loop {
            tokio::select! {
                // An update that is already waiting wins over an expiry at the same time.
                biased;
                changed = self.updates.changed() => {
                    // The sender lives in the runner's entry: gone means the check was
                    // stopped.
                    if changed.is_err() {
                        return;
                    }
                    let Some(Update { status, output }) = self.updates.borrow_and_update().clone()
                    else {
                        continue;
                    };
                    // Already cut to the check's limit by `Checks::ttl_update`.
                    report.report(status, output.clone()).await;
                    last_output = output;
                    deadline.as_mut().reset(Instant::now() + self.ttl);
                    armed = true;
                }
                () = &mut deadline, if armed => {
                    armed = false;
                    tracing::warn!(check = %report.check_id, "check missed TTL, is now critical");
                    report.report(CheckStatus::Critical, expired_output(&last_output)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use concord_api::catalog::CheckStatus;
    use tokio::sync::mpsc;
    use tokio::time::sleep;

    use crate::checks::{CheckResult, CheckSpec, Checks, TtlCheck, OUTPUT_MAX_SIZE};

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn ttl_check(ttl: u64) -> (Checks, mpsc::Receiver<CheckResult>) {
        let (tx, rx) = mpsc::channel(16);
        let checks = Checks::new(tx);
        checks.add(
            "app",
            CheckSpec::Ttl(TtlCheck { ttl: secs(ttl) }),
            OUTPUT_MAX_SIZE,
        );
        (checks, rx)
    }

    fn result(status: CheckStatus, output: &str) -> CheckResult {
        CheckResult {
            check_id: "app".into(),
            status,
            output: output.into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn expires_to_critical_once() {
        let (_checks, mut rx) = ttl_check(10);
        tracing::info!("nothing before the TTL");
        sleep(Duration::from_millis(9_900)).await;
        assert!(rx.try_recv().is_err());
        tracing::info!("critical once it elapses");
        sleep(Duration::from_millis(200)).await;
        assert_eq!(
            rx.try_recv().unwrap(),
            result(CheckStatus::Critical, "TTL expired")
        );
        tracing::info!("and only once, like Go's one-shot timer");
        sleep(secs(100)).await;
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn update_reports_and_restarts_the_ttl() {
        let (checks, mut rx) = ttl_check(10);
        sleep(secs(8)).await;
        tracing::info!("an update at 8s is reported at once");
        checks
            .ttl_update("app", CheckStatus::Passing, "all good")
            .unwrap();
        assert_eq!(
            rx.recv().await.unwrap(),
            result(CheckStatus::Passing, "all good")
        );
        tracing::info!("the first TTL (10s) no longer fires");
        sleep(secs(9)).await; // t = 17s
        assert!(rx.try_recv().is_err());
        tracing::info!("the restarted one (8s + 10s) does, quoting the last output");
        sleep(secs(2)).await; // t = 19s
        assert_eq!(
            rx.try_recv().unwrap(),
            result(
                CheckStatus::Critical,
                "TTL expired (last output before timeout follows): all good"
            )
        );
        tracing::info!("an update after expiry re-arms the timer");
        checks.ttl_update("app", CheckStatus::Warning, "").unwrap();
        assert_eq!(rx.recv().await.unwrap(), result(CheckStatus::Warning, ""));
        sleep(Duration::from_millis(10_100)).await;
        assert_eq!(
            rx.try_recv().unwrap(),
            result(CheckStatus::Critical, "TTL expired")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn update_output_is_truncated() {
        let (checks, mut rx) = ttl_check(10);
        let long = "y".repeat(OUTPUT_MAX_SIZE + 1);
        checks
            .ttl_update("app", CheckStatus::Passing, &long)
            .unwrap();
        let r = rx.recv().await.unwrap();
        assert!(
            r.output.ends_with("y ... (captured 4096 of 4097 bytes)"),
            "{}",
            r.output
        );

        tracing::info!("a check with its own, lower limit");
        let (tx, mut rx) = mpsc::channel(16);
        let checks = Checks::new(tx);
        checks.add("small", CheckSpec::Ttl(TtlCheck { ttl: secs(10) }), 3);
        let kept = checks
            .ttl_update("small", CheckStatus::Warning, "abcdef")
            .unwrap();
        assert_eq!(kept, "abc ... (captured 3 of 6 bytes)");
        assert_eq!(rx.recv().await.unwrap().output, kept);
    }

    #[tokio::test(start_paused = true)]
    async fn updates_faster_than_the_task_coalesce_to_the_newest() {
        let (checks, mut rx) = ttl_check(10);
        for (status, output) in [
            (CheckStatus::Critical, "a"),
            (CheckStatus::Warning, "b"),
            (CheckStatus::Passing, "c"),
        ] {
            checks.ttl_update("app", status, output).unwrap();
        }
        assert_eq!(rx.recv().await.unwrap(), result(CheckStatus::Passing, "c"));
        tracing::info!("and the TTL restarted from the newest");
        sleep(Duration::from_millis(9_900)).await;
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_results_queue_delays_results_but_never_drops_them() {
        let (tx, mut rx) = mpsc::channel(1);
        let checks = Checks::new(tx);
        checks.add(
            "app",
            CheckSpec::Ttl(TtlCheck { ttl: secs(10) }),
            OUTPUT_MAX_SIZE,
        );
        checks.ttl_update("app", CheckStatus::Passing, "1").unwrap();
        tracing::info!("the first result fills the queue; the expiry must wait for room");
        sleep(secs(11)).await;
        assert_eq!(rx.recv().await.unwrap(), result(CheckStatus::Passing, "1"));
        assert_eq!(
            rx.recv().await.unwrap(),
            result(
                CheckStatus::Critical,
                "TTL expired (last output before timeout follows): 1"
            )
        );
    }
}
