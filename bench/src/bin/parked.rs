//! Parked blocking queries against one dev agent (issue 18): starts `concord agent -dev`,
//! parks N blocking queries on it (half `/v1/kv`, half `/v1/health/service`, one HTTP/1.1
//! connection each, as N watchers would), then makes one KV write and one catalog write and
//! measures how long each watcher takes to wake.
//!
//! Reported: the agent's descriptors, RSS and CPU idle, while parked, and `--after` seconds
//! after every watcher left; wake-up delay p50/p99/max from the writes; spurious wake-ups
//! (a watcher answered before the writes); errors.
//!
//! ```text
//! cargo build -p concord -p concord-bench
//! target/debug/parked --concord target/debug/concord --queries 1000 --after 60
//! ```
//!
//! `--h2 STREAMS` multiplexes the watchers over HTTP/2 (prior knowledge, which the agent's
//! API port accepts beside HTTP/1.1) instead, STREAMS per connection (at most the agent's
//! 256 concurrent streams per connection): 50,000 watchers then need 196 connections, not
//! 50,000 descriptors. They are parked once the agent's CPU settles.
//!
//! `--cluster` runs the agent as a client in front of 3 servers instead of `-dev` (servers
//! on 127.0.44.1-3, the agent on 127.0.44.11, all on Consul's default ports, through the
//! integration harness, which starts the binary named by `CONCORD_BIN`; set it to the
//! `--concord` path): every parked query is then also a blocking query the agent holds
//! on a server over its RPC connection. Measured: the client agent's process.
//!
//! The agent shares identical blocking reads parked at once in one server call; with
//! `--distinct` every watcher asks with a `?wait` of its own (9 minutes and i ms), so each
//! is its own server call (what watchers of many different keys would cost).
//!
//! The load generator raises its own open-files limits (soft and, as root, hard) so it can
//! hold the connections, and the agent inherits them. The dev agent listens on 127.0.45.1;
//! connections come from 127.0.45.2 and up (10,000 per address: one address has ~28,000
//! ephemeral ports); the agent runs with `limits` lifted so that the test measures
//! capacity, not the per-client caps.
//!
//! Every reply is checked: status 200, an `X-Consul-Index` past the parked one, and a body
//! holding the write (the first of each kind is parsed; the others must be the same bytes
//! or parse and hold it too). The HTTP/2 watchers use hyper's HTTP/2 client directly, one
//! connection per `--h2` watchers, so the generator's own CPU per reply stays small beside
//! the agent's on the shared cores.

// A benchmark binary: it prints its report and stops at the first setup error.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context};
use concord_integration::{AgentSpec, TestAgent, TestCluster};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// Connections per source address.
const PER_SOURCE_IP: usize = 10_000;
/// The dev agent's address; watchers connect from the next ones up.
const AGENT_IP: [u8; 4] = [127, 0, 45, 1];
/// The HTTP/2 connections' source address.
const H2_SOURCE_IP: [u8; 4] = [127, 0, 45, 2];

/// What a woken watcher must get back: a 200, an index past `parked`, and a body holding
/// the write (`check`).
struct Expect {
    parked: u64,
    check: Box<dyn Fn(&serde_json::Value) -> bool + Send + Sync>,
    /// The first body that passed, parsed: later identical bodies pass without parsing.
    verified: OnceLock<Vec<u8>>,
}

impl Expect {
    fn verify(&self, status: u16, index: u64, body: &[u8]) -> anyhow::Result<()> {
        anyhow::ensure!(status == 200, "answered {status}");
        anyhow::ensure!(
            index > self.parked,
            "X-Consul-Index {index}, parked at {}",
            self.parked
        );
        if self.verified.get().is_some_and(|v| v.as_slice() == body) {
            return Ok(());
        }
        let value: serde_json::Value = serde_json::from_slice(body).context("body not JSON")?;
        anyhow::ensure!(
            (self.check)(&value),
            "body lacks the write: {}",
            String::from_utf8_lossy(body)
        );
        let _ = self.verified.set(body.to_vec());
        Ok(())
    }
}

struct Args {
    concord: String,
    queries: usize,
    after: Duration,
    port: u16,
    /// Park-and-wake rounds on the same agent (RSS after each shows reuse or growth).
    rounds: usize,
    /// HTTP/2 streams per connection; 0: one HTTP/1.1 connection per watcher.
    h2_streams: usize,
    /// A client agent in front of 3 servers instead of one dev agent.
    cluster: bool,
    /// Each watcher its own `?wait`, so the agent cannot share their server calls.
    distinct: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        concord: "target/debug/concord".to_string(),
        queries: 1000,
        after: Duration::from_secs(60),
        port: 18500,
        rounds: 1,
        h2_streams: 0,
        cluster: false,
        distinct: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--cluster" || flag == "--distinct" {
            args.cluster |= flag == "--cluster";
            args.distinct |= flag == "--distinct";
            continue;
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--concord" => args.concord = value,
            "--queries" => args.queries = value.parse()?,
            "--after" => args.after = Duration::from_secs(value.parse()?),
            "--http-port" => args.port = value.parse()?,
            "--rounds" => args.rounds = value.parse()?,
            "--h2" => args.h2_streams = value.parse()?,
            other => bail!(
                "unknown flag {other}; flags: --concord PATH --queries N --after SECS \
                 --http-port PORT --rounds N --h2 STREAMS --cluster --distinct"
            ),
        }
    }
    Ok(args)
}

/// Raises this process's open-files limits to hold `want` descriptors: the hard limit too
/// when allowed (root), then the soft limit to the hard one.
fn raise_open_files(want: u64) -> (u64, u64) {
    let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap_or((1024, 1024));
    if hard < want {
        // Only root may raise the hard limit, and only up to fs.nr_open.
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(hard);
        let target = want.min(nr_open);
        let _ = rlimit::Resource::NOFILE.set(target, target);
    }
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap_or((soft, hard));
    let _ = rlimit::Resource::NOFILE.set(hard, hard);
    rlimit::Resource::NOFILE.get().unwrap_or((soft, hard))
}

/// What `/proc/<pid>` says about the agent.
#[derive(Clone, Copy, Debug)]
struct Sample {
    fds: usize,
    rss_kb: u64,
    /// User + system CPU time in clock ticks (100 per second on Linux).
    cpu_ticks: u64,
}

fn sample(pid: u32) -> Sample {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    let rss_kb = concord_bench::proc_status_kb(&pid.to_string(), "VmRSS:");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at state (field 3).
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Sample {
        fds,
        rss_kb,
        cpu_ticks: ticks(11) + ticks(12),
    }
}

/// CPU use between two samples `elapsed` apart, in percent of one core.
fn cpu_percent(a: Sample, b: Sample, elapsed: Duration) -> f64 {
    let ticks = b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64;
    ticks / 100.0 / elapsed.as_secs_f64() * 100.0
}

/// One HTTP/1.1 request on a fresh connection (closed after): status, `X-Consul-Index`.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, u64)> {
    let mut stream = TcpStream::connect(addr).await?;
    let (status, index, _) = exchange(&mut stream, method, path, body).await?;
    Ok((status, index))
}

/// One HTTP/1.1 exchange, then the connection closes: status, `X-Consul-Index`, body.
async fn exchange(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, u64, Vec<u8>)> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: agent\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    // Small replies only (the bench keeps its data tiny): read to the end, parse the head.
    let mut reply = Vec::with_capacity(1024);
    stream.read_to_end(&mut reply).await?;
    let head_end = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of head")?;
    let text = String::from_utf8_lossy(&reply[..head_end]);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    let index = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-consul-index")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    let body = reply[head_end + 4..].to_vec();
    Ok((status, index, body))
}

/// The agent's config file lifting the per-client caps.
fn limits_file(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let config = dir.join("limits.json");
    std::fs::write(
        &config,
        r#"{"limits":{"http_max_conns_per_client":0,"http_max_blocking_queries_per_client":0}}"#,
    )?;
    Ok(config)
}

/// Network of `--cluster` (127.0.44.x).
const NET: u8 = 44;

/// `--cluster`: 3 servers and a client agent (caps lifted) joined to them, through the
/// integration harness; returns them (kept alive by the caller) and the agent's address.
async fn start_cluster(
    args: &Args,
    dir: &std::path::Path,
) -> anyhow::Result<(TestCluster, TestAgent, SocketAddr)> {
    // The harness starts `CONCORD_BIN` (else a build of its own); `--concord` must agree.
    anyhow::ensure!(
        std::env::var("CONCORD_BIN").ok().as_deref() == Some(args.concord.as_str()),
        "--cluster starts the binary named by CONCORD_BIN; set it to --concord's path"
    );
    let cluster = TestCluster::start(NET, 3).await?;
    let config = limits_file(dir)?;
    let mut spec = AgentSpec::at("bench", IpAddr::from([127, 0, NET, 11]))
        .args(&["-config-file", config.to_str().context("config path")?]);
    for s in 0..3 {
        spec = spec.args(&["-retry-join", &TestCluster::ip(NET, s).to_string()]);
    }
    let agent = TestAgent::launch(spec).await?;
    let addr = agent.http;
    Ok((cluster, agent, addr))
}

/// Starts the dev agent with the per-client caps lifted; returns it once it answers.
async fn start_agent(args: &Args, dir: &std::path::Path) -> anyhow::Result<Child> {
    let config = limits_file(dir)?;
    let log = std::fs::File::create(dir.join("agent.log"))?;
    let child = Command::new(&args.concord)
        .args(["agent", "-dev", "-node", "bench", "-dns-port", "-1"])
        .args(["-serf-lan-port", "0", "-server-port", "0"])
        .args(["-client", &Ipv4Addr::from(AGENT_IP).to_string()])
        .args(["-http-port", &args.port.to_string()])
        .args(["-config-file", config.to_str().context("config path")?])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", args.concord))?;
    let addr = SocketAddr::from((AGENT_IP, args.port));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, _)) = request(addr, "GET", "/v1/catalog/node/bench", "").await {
            return Ok(child);
        }
        if Instant::now() > deadline {
            bail!(
                "agent did not start; see {}",
                dir.join("agent.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let connections = match args.h2_streams {
        0 => args.queries,
        streams => args.queries.div_ceil(streams),
    };
    let want = u64::try_from(connections)? + 1024;
    let (soft, hard) = raise_open_files(want);
    println!("load generator open-files limit: soft {soft}, hard {hard}");
    if soft < want {
        bail!("cannot hold {connections} connections: open-files limit {soft}");
    }
    let dir = tempfile::tempdir()?;
    let (mut dev, cluster, pid, addr) = if args.cluster {
        let (cluster, agent, addr) = start_cluster(&args, dir.path()).await?;
        let pid = agent.pid().context("agent pid")?;
        (None, Some((cluster, agent)), pid, addr)
    } else {
        let agent = start_agent(&args, dir.path()).await?;
        let pid = agent.id();
        (
            Some(agent),
            None,
            pid,
            SocketAddr::from((AGENT_IP, args.port)),
        )
    };
    setup(addr).await?;
    let mut result = Ok(());
    for round in 0..args.rounds {
        result = run(&args, addr, pid, round).await;
        if result.is_err() {
            break;
        }
    }
    if let Some(agent) = &mut dev {
        let _ = agent.kill();
        let _ = agent.wait();
    }
    // The harness stops its processes when they are dropped.
    drop(cluster);
    result
}

async fn run(args: &Args, addr: SocketAddr, pid: u32, round: usize) -> anyhow::Result<()> {
    let (_, kv_index) = request(addr, "GET", "/v1/kv/bench/k", "").await?;
    let (_, health_index) = request(addr, "GET", "/v1/health/service/bench", "").await?;
    let idle_at = Instant::now();
    let idle = sample(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_cpu = cpu_percent(idle, sample(pid), idle_at.elapsed());

    // What the writes below make the watchers see.
    let value = (round + 2).to_string();
    let port = 81 + round;
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &value);
    let kv_expect = Arc::new(Expect {
        parked: kv_index,
        check: Box::new(move |v| v[0]["Value"].as_str() == Some(encoded.as_str())),
        verified: OnceLock::new(),
    });
    let health_expect = Arc::new(Expect {
        parked: health_index,
        check: Box::new(move |v| v[0]["Service"]["Port"].as_u64() == Some(port as u64)),
        verified: OnceLock::new(),
    });
    // When the writes were sent; a watcher answered before that woke spuriously.
    let (written_tx, written_rx) = watch::channel(None::<Instant>);
    let sent = Arc::new(AtomicUsize::new(0));
    let mut watchers = tokio::task::JoinSet::new();
    let h2_clients = h2_clients(args, addr).await?;
    let parking = Instant::now();
    for i in 0..args.queries {
        let source =
            AGENT_IP[3] + 1 + u8::try_from(i / PER_SOURCE_IP).context("too many queries")?;
        // `--distinct`: a wait of its own (9 min and i ms) makes each watcher a question of
        // its own, which the agent cannot share with the others.
        let wait = if args.distinct {
            format!("{}ms", 540_000 + i)
        } else {
            "10m".to_string()
        };
        let (path, expect) = if i % 2 == 0 {
            (
                format!("/v1/kv/bench/k?index={kv_index}&wait={wait}"),
                kv_expect.clone(),
            )
        } else {
            (
                format!("/v1/health/service/bench?index={health_index}&wait={wait}"),
                health_expect.clone(),
            )
        };
        let written = written_rx.clone();
        let counter = sent.clone();
        // A watcher's answer: its wake-up delay, checked, or `None` for a spurious wake.
        let woke = move |status: u16, index: u64, body: &[u8]| {
            let done = Instant::now();
            let Some(at) = *written.borrow() else {
                return Ok(None);
            };
            expect.verify(status, index, body)?;
            anyhow::Ok(Some(done.saturating_duration_since(at)))
        };
        if let Some(senders) = &h2_clients {
            let mut sender = senders[i / args.h2_streams].clone();
            let uri: http::Uri = format!("http://{addr}{path}").parse()?;
            watchers.spawn(async move {
                let request = http::Request::get(uri).body(Empty::<Bytes>::new())?;
                counter.fetch_add(1, Ordering::Relaxed);
                let reply = sender.send_request(request).await?;
                let status = reply.status().as_u16();
                let index = consul_index(reply.headers());
                let body = reply.into_body().collect().await?.to_bytes();
                woke(status, index, &body)
            });
        } else {
            watchers.spawn(async move {
                let socket = TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(127, 0, 45, source)),
                    0,
                ))?;
                let mut stream = socket.connect(addr).await?;
                counter.fetch_add(1, Ordering::Relaxed);
                let (status, index, body) = exchange(&mut stream, "GET", &path, "").await?;
                woke(status, index, &body)
            });
        }
        // Connect in small batches so the listen backlog never overflows.
        if i % 256 == 255 {
            tokio::task::yield_now().await;
            while sent.load(Ordering::Relaxed) + 512 < i {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    while sent.load(Ordering::Relaxed) < args.queries
        && parking.elapsed() < Duration::from_secs(600)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the agent read every request and park it: HTTP/2 requests are only queued on
    // their connection when `sent` counts them, so wait for the agent's CPU to settle too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    if h2_clients.is_some() {
        let settle_until = Instant::now() + Duration::from_secs(120);
        loop {
            let (at, before) = (Instant::now(), sample(pid));
            tokio::time::sleep(Duration::from_secs(1)).await;
            if cpu_percent(before, sample(pid), at.elapsed()) < 5.0 || Instant::now() > settle_until
            {
                break;
            }
        }
    }
    let parked_at = Instant::now();
    let parked = sample(pid);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let parked_end = sample(pid);
    let parked_cpu = cpu_percent(parked, parked_end, parked_at.elapsed());
    let parked_time = parking.elapsed();

    let written_at = Instant::now();
    let (agent_before, generator_before) = (sample(pid), sample(std::process::id()));
    written_tx.send_replace(Some(written_at));
    let registration = format!(
        r#"{{"Node":"bench-node","Address":"10.0.0.1","Service":{{"Service":"bench","Port":{port}}}}}"#
    );
    let kv_write = request(addr, "PUT", "/v1/kv/bench/k", &value);
    let catalog_write = request(addr, "PUT", "/v1/catalog/register", &registration);
    let (kv, catalog) = tokio::join!(kv_write, catalog_write);
    kv?;
    catalog?;

    let mut delays = Vec::with_capacity(args.queries);
    let mut spurious = 0usize;
    let mut errors = 0usize;
    while let Some(joined) = watchers.join_next().await {
        match joined {
            Ok(Ok(Some(delay))) => delays.push(delay),
            Ok(Ok(None)) => spurious += 1,
            Ok(Err(e)) => {
                errors += 1;
                if errors < 5 {
                    println!("watcher failed: {e}");
                }
            }
            Err(e) => {
                errors += 1;
                println!("watcher task failed: {e}");
            }
        }
    }
    let woke_in = written_at.elapsed();
    let (agent_woke, generator_woke) = (sample(pid), sample(std::process::id()));
    // Every watcher left: close the HTTP/2 connections too.
    drop(h2_clients);
    let finished = sample(pid);
    delays.sort();
    tokio::time::sleep(args.after).await;
    let after = sample(pid);

    println!();
    println!("| queries | parked in | fds idle / parked / after | RSS idle / parked / after {}s | CPU idle / parked | wake p50 / p99 / max | spurious | errors |", args.after.as_secs());
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {:.1} s | {} / {} / {} | {} / {} / {} | {:.1}% / {:.1}% | {:?} / {:?} / {:?} | {} | {} |",
        args.queries,
        parked_time.as_secs_f64(),
        idle.fds,
        parked_end.fds,
        after.fds,
        mb(idle.rss_kb),
        mb(parked_end.rss_kb.max(parked.rss_kb)),
        mb(after.rss_kb),
        idle_cpu,
        parked_cpu,
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays.last().copied().unwrap_or_default(),
        spurious,
        errors
    );
    let cpu_s = |a: Sample, b: Sample| b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / 100.0;
    println!(
        "(CPU from the writes to the last reply, {:.2} s wall: agent {:.2} s, load generator {:.2} s)",
        woke_in.as_secs_f64(),
        cpu_s(agent_before, agent_woke),
        cpu_s(generator_before, generator_woke),
    );
    println!(
        "(RSS just after all returned: {}; per parked query: {:.1} KB)",
        mb(finished.rss_kb),
        (parked_end.rss_kb.saturating_sub(idle.rss_kb)) as f64 / args.queries.max(1) as f64
    );
    Ok(())
}

/// `X-Consul-Index`, 0 when absent or not a number.
fn consul_index(headers: &http::HeaderMap) -> u64 {
    headers
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// An HTTP/2 connection's request handle.
type H2 = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

/// With `--h2`, one HTTP/2 connection (prior knowledge) per `h2_streams` watchers, each
/// checked by a first request before the watchers start.
async fn h2_clients(args: &Args, addr: SocketAddr) -> anyhow::Result<Option<Vec<H2>>> {
    if args.h2_streams == 0 {
        return Ok(None);
    }
    let mut senders = Vec::new();
    for _ in 0..args.queries.div_ceil(args.h2_streams) {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((H2_SOURCE_IP, 0)))?;
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut sender, connection) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .handshake(hyper_util::rt::TokioIo::new(stream))
                .await?;
        tokio::spawn(connection);
        let uri: http::Uri = format!("http://{addr}/v1/status/leader").parse()?;
        let reply = sender
            .send_request(http::Request::get(uri).body(Empty::new())?)
            .await?;
        anyhow::ensure!(reply.status() == 200, "status answered {}", reply.status());
        senders.push(sender);
    }
    Ok(Some(senders))
}

/// The watched data: one key and one service instance on a catalog node.
async fn setup(addr: SocketAddr) -> anyhow::Result<()> {
    let (status, _) = request(addr, "PUT", "/v1/kv/bench/k", "1").await?;
    anyhow::ensure!(status == 200, "KV write answered {status}");
    let (status, _) = request(
        addr,
        "PUT",
        "/v1/catalog/register",
        r#"{"Node":"bench-node","Address":"10.0.0.1","Service":{"Service":"bench","Port":80}}"#,
    )
    .await?;
    anyhow::ensure!(status == 200, "catalog register answered {status}");
    Ok(())
}
