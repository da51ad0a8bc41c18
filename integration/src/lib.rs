//! Test harness for multi-process tests: starts real `concord` binaries on loopback with
//! free ports, and gives tests an HTTP client, a DNS client and the process handle.
//!
//! # Layout
//! - [`TestAgent`]: one `concord agent` process (dev, or a persistent single server), or
//!   one placed by an [`AgentSpec`]: an explicit address with default ports, optionally
//!   inside a network namespace, restartable.
//! - [`TestCluster`]: N servers on their own loopback addresses (default ports) that form
//!   one Raft cluster with `-bootstrap-expect N` through the gossip pool.
//! - [`netns`]: a private LAN of network namespaces joined by a bridge, whose links can be
//!   cut and healed (partition tests).
//! - [`linearizability`]: a Wing–Gong style checker of KV register histories (fault tests).
//! - [`assert_eventually!`]: poll a condition until it holds or a deadline passes (no fixed
//!   sleeps in tests).
//! - [`dns`]: a DNS client over UDP and TCP (hickory).
//! - [`concord_bin`]: the path of the binary under test.
//! - [`http_client`]: the HTTP client tests use (never through a proxy).
//! - [`apps`]: TCP and HTTP echo apps to put behind sidecars; [`sidecar`]: `TestProxy`,
//!   one `concord connect proxy` process.
//! - [`tools`]: external programs tests drive (`dig`, `python3`, `npm`): skip when missing,
//!   fail when missing under CI.
//! - [`browser`]: headless Chromium over WebDriver (the web UI's tests and bench).

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};

pub mod apps;
pub mod browser;
pub mod dns;
pub mod linearizability;
pub mod netns;
pub mod sidecar;
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
    /// HTTPS API address, when started with `-https-port`.
    pub https: Option<SocketAddr>,
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
    /// How it was started, when through [`TestAgent::launch`] (then it can restart).
    spec: Option<AgentSpec>,
    /// Its `-data-dir`, when the spec asked for one (kept across restarts).
    data_dir: Option<tempfile::TempDir>,
}

/// Where and how [`TestAgent::launch`] runs an agent.
#[derive(Clone, Debug)]
pub struct AgentSpec {
    /// Node name.
    pub node: String,
    /// `-bind` and `-client` address. With one, the agent keeps Consul's default ports
    /// (HTTP 8500, server RPC 8300, gossip 8301) and DNS is off; without, ports are free
    /// ones on 127.0.0.1.
    pub ip: Option<IpAddr>,
    /// Network namespace to run in (`ip netns exec`); HTTP then goes through `curl` in it.
    pub netns: Option<String>,
    /// Give it a fresh `-data-dir` (kept across [`TestAgent::restart`]).
    pub data_dir: bool,
    /// Further flags (`-server`, `-join ADDR`, `-encrypt KEY`, ...).
    pub args: Vec<String>,
    /// Whether starting waits for the agent's node to reach the catalog (it needs a server).
    pub wait_registered: bool,
}

impl AgentSpec {
    /// A client agent `node` on `ip` (default ports), with a data dir, waiting until its
    /// node is registered.
    pub fn at(node: &str, ip: IpAddr) -> AgentSpec {
        AgentSpec {
            node: node.to_string(),
            ip: Some(ip),
            netns: None,
            data_dir: true,
            args: Vec::new(),
            wait_registered: true,
        }
    }

    /// Adds flags.
    pub fn args(mut self, args: &[&str]) -> AgentSpec {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Runs it in network namespace `ns`.
    pub fn netns(mut self, ns: &str) -> AgentSpec {
        self.netns = Some(ns.to_string());
        self
    }

    /// Does not wait for the node to reach the catalog (an agent expected to be refused).
    pub fn no_wait(mut self) -> AgentSpec {
        self.wait_registered = false;
        self
    }
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

    /// Starts an agent as `spec` says; waits until its HTTP API answers and, if the spec
    /// says so, until its node is in the catalog.
    pub async fn launch(spec: AgentSpec) -> anyhow::Result<TestAgent> {
        let data_dir = if spec.data_dir {
            Some(tempfile::tempdir()?)
        } else {
            None
        };
        TestAgent::launch_in(spec, data_dir).await
    }

    async fn launch_in(
        spec: AgentSpec,
        data_dir: Option<tempfile::TempDir>,
    ) -> anyhow::Result<TestAgent> {
        let log_dir = tempfile::tempdir()?;
        let log_path = log_dir.path().join("agent.log");
        let log = std::fs::File::create(&log_path)?;
        let mut args: Vec<String> = vec!["agent".into(), "-node".into(), spec.node.clone()];
        match spec.ip {
            Some(ip) => {
                let ip = ip.to_string();
                args.extend(["-bind", &ip, "-client", &ip, "-dns-port", "-1"].map(String::from));
            }
            None => {
                let free = [
                    "-http-port",
                    "0",
                    "-server-port",
                    "0",
                    "-serf-lan-port",
                    "0",
                ];
                args.extend(free.map(String::from));
                args.extend(["-dns-port", "-1"].map(String::from));
            }
        }
        if let Some(dir) = &data_dir {
            let dir = dir.path().to_str().context("data dir path is not UTF-8")?;
            args.extend(["-data-dir".to_string(), dir.to_string()]);
        }
        args.extend(["-log-level".to_string(), "debug".to_string()]);
        args.extend(spec.args.iter().cloned());
        let mut cmd = match &spec.netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(concord_bin());
                cmd
            }
            None => Command::new(concord_bin()),
        };
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", concord_bin().display()))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let lines = drain_lines(stdout);
        let banner = wait_banner(&mut child, &lines, &log_path, |l| {
            l.contains("Client Addr:")
        });
        let http_port = banner
            .as_deref()
            .and_then(|line| banner_port(line, "HTTP:"));
        let https_port = banner
            .as_deref()
            .and_then(|line| banner_port(line, "HTTPS:"));
        let ip = spec.ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let http = SocketAddr::new(ip, http_port.context("HTTP port in the banner")?);
        let agent = TestAgent {
            child: Some(child),
            http,
            https: https_port.map(|p| SocketAddr::new(ip, p)),
            dns: SocketAddr::new(ip, 0),
            rpc: SocketAddr::new(ip, 8300),
            node: spec.node.clone(),
            log_path,
            _log_dir: log_dir,
            client: http_client()?,
            spec: Some(spec),
            data_dir,
        };
        agent.wait_http().await?;
        if agent.spec.as_ref().is_some_and(|s| s.wait_registered) {
            agent.wait_ready().await?;
        }
        Ok(agent)
    }

    /// Starts the agent again with the same spec and data dir (after [`TestAgent::kill9`]
    /// or [`TestAgent::stop`]).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let spec = self.spec.clone().context("only launched agents restart")?;
        self.kill9();
        let data_dir = self.data_dir.take();
        *self = TestAgent::launch_in(spec, data_dir).await?;
        Ok(())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits until the HTTP API answers `/v1/agent/self`.
    async fn wait_http(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            // 403: ACLs refuse the anonymous token `agent:read`, but the API answers.
            // Through `request`, which goes through `curl` in the agent's namespace if any.
            let answered = self
                .request("GET", "/v1/agent/self", b"", Duration::from_secs(5))
                .await;
            if answered.is_ok_and(|r| r.status == 200 || r.status == 403) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("agent HTTP API never answered; logs:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
            // Gossip too: tests run agents in parallel, and 8301 may be taken.
            .args(["-serf-lan-port", "0"])
            .args(["-node", &node, "-log-level", "debug"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", concord_bin().display()))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let rx = drain_lines(stdout);
        let mut http = None;
        let mut https = None;
        let mut dns = None;
        let mut rpc = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while http.is_none() || rpc.is_none() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if line.contains("Client Addr:") {
                        http = banner_port(&line, "HTTP:");
                        https = banner_port(&line, "HTTPS:");
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
            https: https.map(|p| SocketAddr::from((ip, p))),
            dns: SocketAddr::from((ip, dns.context("DNS port")?)),
            rpc: SocketAddr::from((ip, rpc.context("RPC port")?)),
            node,
            log_path,
            _log_dir: log_dir,
            client: http_client()?,
            spec: None,
            data_dir: None,
        };
        agent.wait_ready().await?;
        Ok(agent)
    }

    /// Waits until the server registered this node (leader elected, catalog writable).
    /// Under ACLs that deny the anonymous token the node is hidden, but its reply says so
    /// (`X-Consul-Results-Filtered-By-ACLs`), which means it is there.
    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let path = format!("/v1/catalog/node/{}", self.node);
            if let Ok(r) = self
                .request("GET", &path, b"", Duration::from_secs(5))
                .await
            {
                let hidden = r.header("x-consul-results-filtered-by-acls").is_some();
                let found = r.status == 200
                    && serde_json::from_slice::<serde_json::Value>(&r.body)
                        .is_ok_and(|v| !v.is_null());
                if found || hidden {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("agent never became ready; logs:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The agent's process ID, while it runs (to read `/proc/<pid>/...`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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
        if let Some(ns) = self.netns() {
            let (status, index, body) = netns::curl(ns, "GET", &self.url(path), b"").await?;
            let value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            return Ok((status, index, value));
        }
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
        body: impl Into<reqwest::Body> + AsRef<[u8]>,
    ) -> anyhow::Result<(u16, String)> {
        if let Some(ns) = self.netns() {
            let (status, _, body) = netns::curl(ns, "PUT", &self.url(path), body.as_ref()).await?;
            return Ok((status, String::from_utf8_lossy(&body).into_owned()));
        }
        let r = self.client.put(self.url(path)).body(body).send().await?;
        Ok((r.status().as_u16(), r.text().await?))
    }

    /// Any request, with its headers, given up after `max_time` (an error then, as for any
    /// transport failure); through `curl` in its namespace if it has one.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        max_time: Duration,
    ) -> anyhow::Result<netns::Response> {
        if let Some(ns) = self.netns() {
            return netns::request(ns, method, &self.url(path), body, max_time).await;
        }
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let r = self
            .client
            .request(method, self.url(path))
            .body(body.to_vec())
            .timeout(max_time)
            .send()
            .await?;
        let status = r.status().as_u16();
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = r.bytes().await?.to_vec();
        Ok(netns::Response {
            status,
            headers,
            body,
        })
    }

    /// The network namespace it runs in, if any.
    fn netns(&self) -> Option<&str> {
        self.spec.as_ref().and_then(|s| s.netns.as_deref())
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

    /// Runs `concord ARGS` against this agent (via `CONSUL_HTTP_ADDR`; in its network
    /// namespace, if it has one).
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let mut cmd = match self.netns() {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(concord_bin());
                cmd
            }
            None => Command::new(concord_bin()),
        };
        Ok(cmd
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
        // A failing test's agent logs outlive its temporary directory, for the post-mortem.
        if std::thread::panicking() {
            let kept = std::env::temp_dir().join(format!(
                "concord-failed-{}-{}.log",
                self.node,
                std::process::id()
            ));
            if std::fs::copy(&self.log_path, &kept).is_ok() {
                eprintln!("agent {} log kept at {}", self.node, kept.display());
            }
        }
    }
}

/// Forwards a child's stdout lines to a channel, draining it for the life of the process so
/// it never blocks on a full pipe, nor fails a write to a closed one (the agent prints its
/// banner with `println!`, which panics on a broken pipe: a reader that stopped at the
/// banner's `Client Addr:` line could kill the agent before its last banner lines).
pub fn drain_lines(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// The first stdout line matching `wanted`, within a minute; `None` (with the child killed)
/// if the process exits or stays silent.
fn wait_banner(
    child: &mut Child,
    lines: &mpsc::Receiver<String>,
    log_path: &Path,
    wanted: impl Fn(&str) -> bool,
) -> Option<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if wanted(&line) => return Some(line),
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                let logs = std::fs::read_to_string(log_path).unwrap_or_default();
                tracing::error!(status = ?child.try_wait(), "agent did not start; logs:\n{logs}");
                return None;
            }
        }
    }
}

/// N servers on `127.0.<net>.1..=N` with Consul's default ports, started together with
/// `-bootstrap-expect N` and `-retry-join` to each other, so they form one Raft cluster
/// through the gossip pool. Each has a data dir kept across restarts.
#[derive(Debug)]
pub struct TestCluster {
    /// The servers, `servers[i]` on `127.0.<net>.<i+1>`.
    pub servers: Vec<TestAgent>,
    net: u8,
}

impl TestCluster {
    /// The address of server `i` (0-based) of network `net`.
    pub fn ip(net: u8, i: usize) -> IpAddr {
        IpAddr::from([
            127,
            0,
            net,
            u8::try_from(i + 1).expect("fewer than 255 servers"),
        ])
    }

    /// The spec of server `i` of an `n`-server cluster on `127.0.<net>.x`.
    pub fn spec(net: u8, n: usize, i: usize) -> AgentSpec {
        let mut spec = AgentSpec::at(&format!("s{}", i + 1), Self::ip(net, i))
            .args(&[
                "-server",
                "-bootstrap-expect",
                &n.to_string(),
                "-retry-interval",
                "1s",
            ])
            .no_wait();
        for j in (0..n).filter(|&j| j != i) {
            spec = spec.args(&["-retry-join", &Self::ip(net, j).to_string()]);
        }
        spec
    }

    /// Starts `n` servers at once and waits until all of them know the same leader.
    pub async fn start(net: u8, n: usize) -> anyhow::Result<TestCluster> {
        Self::start_with(net, n, &[]).await
    }

    /// [`TestCluster::start`], every server also given `extra` flags (`-config-file ...`).
    pub async fn start_with(net: u8, n: usize, extra: &[&str]) -> anyhow::Result<TestCluster> {
        let tasks: Vec<_> = (0..n)
            .map(|i| tokio::spawn(TestAgent::launch(Self::spec(net, n, i).args(extra))))
            .collect();
        let mut servers = Vec::new();
        for task in tasks {
            servers.push(task.await??);
        }
        let cluster = TestCluster { servers, net };
        cluster
            .wait_leader(&(0..n).collect::<Vec<_>>(), None)
            .await?;
        Ok(cluster)
    }

    /// The network octet of its addresses.
    pub fn net(&self) -> u8 {
        self.net
    }

    /// `/v1/status/leader` of server `i` (`""` without a leader or on error).
    pub async fn leader_of(&self, i: usize) -> String {
        match self.servers[i].get_json("/v1/status/leader").await {
            Ok((200, _, serde_json::Value::String(s))) => s,
            _ => String::new(),
        }
    }

    /// Waits until every server in `among` reports the same, non-empty leader, other than
    /// `not` if given; returns it.
    pub async fn wait_leader(&self, among: &[usize], not: Option<&str>) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let mut seen = Vec::new();
            for &i in among {
                seen.push(self.leader_of(i).await);
            }
            let first = seen[0].clone();
            if !first.is_empty()
                && seen.iter().all(|l| *l == first)
                && not.is_none_or(|n| n != first)
            {
                return Ok(first);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("no common leader among {among:?}: {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The index of the server whose RPC address is `addr`.
    pub fn index_of(&self, addr: &str) -> Option<usize> {
        let ip: IpAddr = addr.parse::<SocketAddr>().ok()?.ip();
        (0..self.servers.len()).find(|&i| Self::ip(self.net, i) == ip)
    }
}
