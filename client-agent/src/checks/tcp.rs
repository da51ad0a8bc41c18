//! TCP checks, as Consul's `CheckTCP`: every interval, open a connection to `host:port` and
//! close it again. Passing when the connection opens within the timeout, critical otherwise.

use std::time::Duration;

use concord_api::catalog::CheckStatus;
use concord_api::duration::format_duration;
use tokio::net::TcpStream;

use super::{run_every, Check, Reporter};

/// A TCP check: open a connection to `addr` every `interval`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpCheck {
    /// `host:port`.
    pub addr: String,
    /// Time between the end of one run and the start of the next.
    pub interval: Duration,
    /// Connect timeout (name resolution included).
    pub timeout: Duration,
}

impl Check for TcpCheck {
    async fn run(self, report: Reporter) {
        let this = &self;
        run_every(self.interval, &report, || this.probe()).await;
    }
}

impl TcpCheck {
    async fn probe(&self) -> (CheckStatus, String) {
        // The timeout covers name resolution too, as Go's dialer timeout does.
        match tokio::time::timeout(self.timeout, TcpStream::connect(&self.addr)).await {
            // Dropping the stream closes it: the check only needs the handshake.
            Ok(Ok(_stream)) => (
                CheckStatus::Passing,
                format!("TCP connect {}: Success", self.addr),
            ),
            Ok(Err(e)) => (
                CheckStatus::Critical,
                format!("TCP connect {}: {e}", self.addr),
            ),
            Err(_) => (
                CheckStatus::Critical,
                format!(
                    "TCP connect {}: timed out after {}",
                    self.addr,
                    format_duration(self.timeout)
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use concord_api::catalog::CheckStatus;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use crate::checks::{CheckResult, CheckSpec, Checks, TcpCheck, OUTPUT_MAX_SIZE};

    fn spec(addr: &str, interval: Duration) -> CheckSpec {
        CheckSpec::Tcp(TcpCheck {
            addr: addr.into(),
            interval,
            timeout: Duration::from_secs(5),
        })
    }

    async fn next(rx: &mut mpsc::Receiver<CheckResult>) -> CheckResult {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a result within 10s")
            .expect("channel open")
    }

    #[tokio::test]
    async fn passing_against_a_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, mut rx) = mpsc::channel(16);
        let checks = Checks::new(tx);
        checks.add(
            "db",
            spec(&addr, Duration::from_millis(20)),
            OUTPUT_MAX_SIZE,
        );
        tracing::info!("every run connects; the kernel completes the handshake from the backlog");
        for _ in 0..2 {
            let r = next(&mut rx).await;
            assert_eq!(
                r,
                CheckResult {
                    check_id: "db".into(),
                    status: CheckStatus::Passing,
                    output: format!("TCP connect {addr}: Success"),
                }
            );
        }
    }

    #[tokio::test]
    async fn critical_against_a_closed_port() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let (tx, mut rx) = mpsc::channel(16);
        let checks = Checks::new(tx);
        checks.add(
            "db",
            spec(&addr, Duration::from_secs(3600)),
            OUTPUT_MAX_SIZE,
        );
        let r = next(&mut rx).await;
        assert_eq!(r.status, CheckStatus::Critical);
        assert!(
            r.output.starts_with(&format!("TCP connect {addr}: "))
                && !r.output.ends_with("Success"),
            "{}",
            r.output
        );
    }

    #[tokio::test]
    async fn remove_stops_runs() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, mut rx) = mpsc::channel(16);
        let checks = Checks::new(tx);
        checks.add(
            "db",
            spec(&addr, Duration::from_millis(10)),
            OUTPUT_MAX_SIZE,
        );
        next(&mut rx).await;
        assert!(checks.remove("db"));
        while rx.try_recv().is_ok() {}
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(rx.try_recv().is_err());
    }
}
