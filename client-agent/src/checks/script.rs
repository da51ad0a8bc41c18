//! Script checks, as Consul's `CheckMonitor`: every interval, run `Args` directly (no shell)
//! and map the exit code: 0 passing, 1 warning, anything else critical. Output is stdout and
//! stderr together, truncated like every check's. Run only on agents configured with
//! `enable_script_checks`, as in Consul, because a check definition becomes code execution.

use std::process::Stdio;
use std::time::Duration;

use concord_api::catalog::CheckStatus;
use concord_api::duration::format_duration;
use tokio::process::Command;

use super::{run_every, truncate_output, Check, Reporter};

/// A script check: run `args` (no shell) every `interval`; only on agents with
/// `enable_script_checks`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptCheck {
    /// Program and arguments.
    pub args: Vec<String>,
    /// Time between the end of one run and the start of the next.
    pub interval: Duration,
    /// Longest a run may take; the process is killed after it.
    pub timeout: Duration,
}

impl Check for ScriptCheck {
    async fn run(self, report: Reporter) {
        let this = &self;
        run_every(self.interval, &report, || this.probe()).await;
    }
}

impl ScriptCheck {
    async fn probe(&self) -> (CheckStatus, String) {
        let Some((program, rest)) = self.args.split_first() else {
            return (CheckStatus::Critical, "no command given".to_string());
        };
        let child = Command::new(program)
            .args(rest)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A timed-out run is abandoned; dropping it must not leave the process behind.
            .kill_on_drop(true)
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                return (
                    CheckStatus::Critical,
                    format!("Failed to start check {program:?}: {e}"),
                )
            }
        };
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Err(_) => (
                CheckStatus::Critical,
                format!(
                    "Timed out ({}) running check",
                    format_duration(self.timeout)
                ),
            ),
            Ok(Err(e)) => (CheckStatus::Critical, format!("Failed to run check: {e}")),
            Ok(Ok(out)) => {
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                let status = match out.status.code() {
                    Some(0) => CheckStatus::Passing,
                    Some(1) => CheckStatus::Warning,
                    _ => CheckStatus::Critical,
                };
                (status, truncate_output(&text).into_owned())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(args: &[&str], timeout: Duration) -> ScriptCheck {
        ScriptCheck {
            args: args.iter().map(|s| s.to_string()).collect(),
            interval: Duration::from_secs(3600),
            timeout,
        }
    }

    #[tokio::test]
    async fn exit_codes_map_to_health() {
        let t = Duration::from_secs(10);
        let cases = [
            (
                vec!["sh", "-c", "echo fine"],
                CheckStatus::Passing,
                "fine\n",
            ),
            (
                vec!["sh", "-c", "echo meh >&2; exit 1"],
                CheckStatus::Warning,
                "meh\n",
            ),
            (vec!["sh", "-c", "exit 2"], CheckStatus::Critical, ""),
        ];
        for (args, want, output) in cases {
            let (status, out) = check(&args, t).probe().await;
            assert_eq!((status, out.as_str()), (want, output), "{args:?}");
        }
    }

    #[tokio::test]
    async fn missing_program_and_timeout_are_critical() {
        let (status, out) = check(&["/nonexistent/check"], Duration::from_secs(5))
            .probe()
            .await;
        assert_eq!(status, CheckStatus::Critical);
        assert!(out.starts_with("Failed to start check"), "{out}");
        let (status, out) = check(&["sleep", "30"], Duration::from_millis(200))
            .probe()
            .await;
        assert_eq!(status, CheckStatus::Critical);
        assert!(out.starts_with("Timed out"), "{out}");
    }
}
