//! Test harness for multi-process tests: starts real `concord` binaries on loopback with
//! free ports, and gives tests an HTTP client, a DNS client and the process handle.
//!
//! # Layout
//! - [`TestAgent`]: one `concord agent` process (dev, or a persistent single server).
//! - [`assert_eventually!`]: poll a condition until it holds or a deadline passes (no fixed
//!   sleeps in tests).
//! - [`dns`]: a DNS client over UDP and TCP (hickory).
//! - [`concord_bin`]: the path of the binary under test.
//! - [`http_client`]: the HTTP client tests use (never through a proxy).
//! - [`tools`]: external programs tests drive (`dig`, `python3`, `npm`): skip when missing,
//!   fail when missing under CI.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};

pub mod dns;
pub mod tools;

/// How long [`assert_eventually!`] waits by default. Generous: CI has 2 shared cores.
pub const EVENTUALLY: Duration = Duration::from_secs(20);

/// Polls an async condition every 50 ms until it is true or the timeout passes, then panics
/// with the message.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr, $($msg:tt)+) => {
        $crate::assert_eventually!(@timeout $crate::EVENTUALLY, $cond, $($msg)+)
    };
    (@timeout $timeout:expr, $cond:expr, $($msg:tt)+) => {{
        let deadline = tokio::time::Instant::now() + $timeout;
        loop {
            if $cond {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("condition not met in {:?}: {}", $timeout, format!($($msg)+));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }};
}

/// Installs a test log subscriber once (honours `RUST_LOG`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
}

/// The `concord` binary under test, built on first use.
///
/// `cargo test --workspace` compiles the CLI crate's unit tests but not its binary (cargo only
/// builds binaries for integration tests of the same package), and a binary left from an
/// earlier build may be stale. So the first call runs `cargo build -p concord --bin concord`
/// in the profile of the running test (a no-op when up to date); `CONCORD_BIN` overrides.
pub fn concord_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("CONCORD_BIN") {
            return PathBuf::from(p);
        }
        // Test executables live in target/<profile>/deps/; the binary one level up.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable is in target/<profile>/deps")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("target/<profile>");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--quiet", "-p", "concord", "--bin", "concord"])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build
            .status()
            .expect("running cargo build for the concord binary");
        assert!(status.success(), "building the concord binary failed");
        profile_dir.join("concord")
    })
    .clone()
}

/// An HTTP client for talking to test agents on loopback. It never uses a proxy: an
/// `http_proxy` in a developer's environment would otherwise send loopback requests to it.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().no_proxy().build()?)
}

/// A running `concord agent`.
#[derive(Debug)]
pub struct TestAgent {
    child: Option<Child>,
    /// HTTP API address.
    pub http: SocketAddr,
    /// DNS address (UDP and TCP).
    pub dns: SocketAddr,
    /// Server RPC address.
    pub rpc: SocketAddr,
    /// Node name.
    pub node: String,
    log_path: PathBuf,
    _log_dir: tempfile::TempDir,
    /// The client tests use ([`http_client`]).
    pub client: reqwest::Client,
}

/// Parses `(HTTP: 123, DNS: 456)` and `(RPC: 789)` out of the startup banner.
fn banner_port(line: &str, label: &str) -> Option<u16> {
    let start = line.find(label)? + label.len();
    let digits: String = line[start..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

impl TestAgent {
    /// `concord agent -dev` on free ports.
    pub async fn dev() -> anyhow::Result<TestAgent> {
        Self::start(&["-dev"]).await
    }

    /// A persistent single server using `data_dir`.
    pub async fn server(data_dir: &Path) -> anyhow::Result<TestAgent> {
        let dir = data_dir.to_str().context("data dir path is not UTF-8")?;
        Self::start(&["-server", "-bootstrap-expect", "1", "-data-dir", dir]).await
    }

    /// `concord agent ARGS` with ports chosen by the OS; waits for the banner and for the
    /// agent's own node to reach the catalog.
    pub async fn start(args: &[&str]) -> anyhow::Result<TestAgent> {
        let log_dir = tempfile::tempdir()?;
        let log_path = log_dir.path().join("agent.log");
        let log = std::fs::File::create(&log_path)?;
        let node = format!("node-{}", std::process::id());
        let mut cmd = Command::new(concord_bin());
        cmd.arg("agent")
            .args(args)
            .args(["-http-port", "0", "-dns-port", "0", "-server-port", "0"])
            // Gossip too: a fixed 8301 collides with every other agent a test runs at once.
            .args(["-serf-lan-port", "0"])
            .args(["-node", &node, "-log-level", "debug"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", concord_bin().display()))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining stdout for the life of the process so it never blocks on a
            // full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut http = None;
        let mut dns = None;
        let mut rpc = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while http.is_none() || rpc.is_none() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if line.contains("Client Addr:") {
                        http = banner_port(&line, "HTTP:");
                        dns = banner_port(&line, "DNS:");
                    }
                    if line.contains("Cluster Addr:") {
                        rpc = banner_port(&line, "RPC:");
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let logs = std::fs::read_to_string(&log_path).unwrap_or_default();
                    bail!(
                        "agent did not start (status {:?}); logs:\n{logs}",
                        child.try_wait()
                    );
                }
            }
        }
        let ip = [127, 0, 0, 1];
        let agent = TestAgent {
            child: Some(child),
            http: SocketAddr::from((ip, http.context("HTTP port")?)),
            dns: SocketAddr::from((ip, dns.context("DNS port")?)),
            rpc: SocketAddr::from((ip, rpc.context("RPC port")?)),
            node,
            log_path,
            _log_dir: log_dir,
            client: http_client()?,
        };
        agent.wait_ready().await?;
        Ok(agent)
    }

    /// Waits until the server registered this node (leader elected, catalog writable).
    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let url = self.url(&format!("/v1/catalog/node/{}", self.node));
            if let Ok(r) = self.client.get(&url).send().await {
                if r.status().is_success() {
                    let v: serde_json::Value = r.json().await.unwrap_or_default();
                    if !v.is_null() {
                        return Ok(());
                    }
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("agent never became ready; logs:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:PORT` + path.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// The agent's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// GET returning status, `X-Consul-Index` and the JSON body (`Null` if not JSON).
    pub async fn get_json(&self, path: &str) -> anyhow::Result<(u16, u64, serde_json::Value)> {
        let r = self.client.get(self.url(path)).send().await?;
        let status = r.status().as_u16();
        let index = r
            .headers()
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body = r.bytes().await?;
        let value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        Ok((status, index, value))
    }

    /// PUT with a body, returning status and body text.
    pub async fn put(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> anyhow::Result<(u16, String)> {
        let r = self.client.put(self.url(path)).body(body).send().await?;
        Ok((r.status().as_u16(), r.text().await?))
    }

    /// Stops the process with SIGKILL (no chance to flush or clean up).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill();
                bail!("agent did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `concord ARGS` against this agent (via `CONSUL_HTTP_ADDR`).
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        Ok(Command::new(concord_bin())
            .args(args)
            .env("CONSUL_HTTP_ADDR", self.http.to_string())
            .env_remove("CONCORD_HTTP_ADDR")
            .stdin(Stdio::null())
            .output()?)
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.kill9();
    }
}
