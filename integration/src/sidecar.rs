//! [`TestProxy`]: one `concord connect proxy` process, its log, and its metrics.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::Context;

use crate::{concord_bin, http_client, TestAgent};

/// A running `concord connect proxy` against a test agent; killed on drop.
#[derive(Debug)]
pub struct TestProxy {
    child: Child,
    log_path: PathBuf,
    _log_dir: tempfile::TempDir,
    /// Where its metrics are served.
    pub metrics: std::net::SocketAddr,
}

/// A port that was free a moment ago (bind to 0, read, release).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl TestProxy {
    /// `concord connect proxy ARGS -http-addr <agent> -metrics-addr <free port>`.
    pub fn start(agent: &TestAgent, args: &[&str]) -> anyhow::Result<TestProxy> {
        let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let flag = metrics.to_string();
        let args: Vec<&str> = args
            .iter()
            .copied()
            .chain(["-metrics-addr", &flag])
            .collect();
        TestProxy::spawn(agent, &args, metrics)
    }

    /// `concord connect proxy ARGS -http-addr <agent>`, no `-metrics-addr`: its metrics are
    /// where its registration says (`envoy_prometheus_bind_addr`), given as `metrics`.
    pub fn start_registered_metrics(
        agent: &TestAgent,
        args: &[&str],
        metrics: std::net::SocketAddr,
    ) -> anyhow::Result<TestProxy> {
        TestProxy::spawn(agent, args, metrics)
    }

    fn spawn(
        agent: &TestAgent,
        args: &[&str],
        metrics: std::net::SocketAddr,
    ) -> anyhow::Result<TestProxy> {
        let log_dir = tempfile::tempdir()?;
        let log_path = log_dir.path().join("proxy.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(concord_bin())
            .args(["connect", "proxy"])
            .args(args)
            .args(["-http-addr", &agent.http.to_string()])
            .args(["-log-level", "debug"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", concord_bin().display()))?;
        Ok(TestProxy {
            child,
            log_path,
            _log_dir: log_dir,
            metrics,
        })
    }

    /// Its log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Its metrics text (empty while it does not answer).
    pub async fn metrics(&self) -> String {
        let Ok(client) = http_client() else {
            return String::new();
        };
        match client
            .get(format!("http://{}/metrics", self.metrics))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The value of the first metrics line that starts with `prefix` (0 when absent).
    pub async fn metric(&self, prefix: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// Sends SIGTERM and waits (up to 20 s) for the exit status.
    pub async fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("proxy did not exit after SIGTERM:\n{}", self.logs());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
