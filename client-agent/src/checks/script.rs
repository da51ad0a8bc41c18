//! Script checks, as Consul's `CheckMonitor`: every interval, run `Args` directly (no shell)
//! and map the exit code: 0 passing, 1 warning, anything else critical. Output is stdout and
//! stderr together, truncated like every check's. Run only on agents configured with
//! `enable_script_checks`, as in Consul, because a check definition becomes code execution.

use std::process::Stdio;
use std::time::Duration;

use concord_api::catalog::CheckStatus;
use concord_api::duration::format_duration;
use tokio::process::Command;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{run_every, truncate_captured, Check, Reporter};

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
        run_every(self.interval, &report, || {
            this.probe(report.output_max_size)
        })
        .await;
    }
}

impl ScriptCheck {
    async fn probe(&self, max_output: usize) -> (CheckStatus, String) {
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
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                return (
                    CheckStatus::Critical,
                    format!("Failed to start check {program:?}: {e}"),
                )
            }
        };
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return (
                CheckStatus::Critical,
                "Failed to run check: no output pipes".to_string(),
            );
        };
        let run = async {
            tokio::try_join!(
                read_capped(stdout, max_output),
                read_capped(stderr, max_output),
                child.wait()
            )
        };
        match tokio::time::timeout(self.timeout, run).await {
            Err(_) => (
                CheckStatus::Critical,
                format!(
                    "Timed out ({}) running check",
                    format_duration(self.timeout)
                ),
            ),
            Ok(Err(e)) => (CheckStatus::Critical, format!("Failed to run check: {e}")),
            Ok(Ok(((out, out_total), (err, err_total), exit))) => {
                let mut text = String::from_utf8_lossy(&out).into_owned();
                text.push_str(&String::from_utf8_lossy(&err));
                let status = match exit.code() {
                    Some(0) => CheckStatus::Passing,
                    Some(1) => CheckStatus::Warning,
                    _ => CheckStatus::Critical,
                };
                let total = out_total + err_total;
                (
                    status,
                    truncate_captured(&text, total, max_output).into_owned(),
                )
            }
        }
    }
}

/// Reads `from` to its end, keeping its first `max + 1` bytes (enough to know the output
/// must be cut) and counting the rest: the kept bytes and the total length.
async fn read_capped(
    mut from: impl AsyncRead + Unpin,
    max: usize,
) -> std::io::Result<(Vec<u8>, usize)> {
    let mut kept = Vec::new();
    let mut total = 0;
    let mut buf = [0u8; 8192];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok((kept, total));
        }
        total += n;
        let room = (max + 1).saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::OUTPUT_MAX_SIZE;

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
            let (status, out) = check(&args, t).probe(OUTPUT_MAX_SIZE).await;
            assert_eq!((status, out.as_str()), (want, output), "{args:?}");
        }
    }

    #[tokio::test]
    async fn long_output_is_read_with_a_cap_and_cut() {
        let args = [
            "sh",
            "-c",
            "head -c 1000000 /dev/zero | tr '\\0' x; echo err >&2",
        ];
        let (status, out) = check(&args, Duration::from_secs(10))
            .probe(OUTPUT_MAX_SIZE)
            .await;
        assert_eq!(status, CheckStatus::Passing);
        assert!(
            out.ends_with("x ... (captured 4096 of 1000004 bytes)"),
            "{}",
            &out[out.len().saturating_sub(60)..]
        );
        assert_eq!(
            out.len(),
            4096 + " ... (captured 4096 of 1000004 bytes)".len()
        );
        let (_, out) = check(&args, Duration::from_secs(10)).probe(5).await;
        assert_eq!(
            out, "xxxxx ... (captured 5 of 1000004 bytes)",
            "a lower limit"
        );
    }

    #[tokio::test]
    async fn missing_program_and_timeout_are_critical() {
        let (status, out) = check(&["/nonexistent/check"], Duration::from_secs(5))
            .probe(OUTPUT_MAX_SIZE)
            .await;
        assert_eq!(status, CheckStatus::Critical);
        assert!(out.starts_with("Failed to start check"), "{out}");
        let (status, out) = check(&["sleep", "30"], Duration::from_millis(200))
            .probe(OUTPUT_MAX_SIZE)
            .await;
        assert_eq!(status, CheckStatus::Critical);
        assert!(out.starts_with("Timed out"), "{out}");
    }
}
