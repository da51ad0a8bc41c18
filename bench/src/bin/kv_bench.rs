//! Closed-loop write load against a 3-server cluster, Concord or etcd, with the same client
//! code for both: `N` workers, each with its own keep-alive HTTP/1.1 connection to one of
//! the servers (round-robin), each sending its next request as soon as the previous one is
//! answered, for a fixed time. Prints one markdown row per concurrency: requests per second
//! and p50/p99 latency.
//!
//! ```text
//! kv_bench load --target concord-kv|concord-catalog|etcd --endpoints URL,URL,URL \
//!     [--concurrency 1,16,64] [--duration 10] [--value-size 128]
//! kv_bench failover --target concord|etcd --endpoints URL,URL,URL --pids P1,P2,P3
//! ```
//!
//! - `concord-kv`: `PUT /v1/kv/bench/<worker>/<n>` with the value as the body.
//! - `concord-catalog`: `PUT /v1/catalog/register`, a node with one service per request.
//! - `etcd`: `POST /v3/kv/put` on etcd's v3 JSON gateway, key and value base64.
//!
//! `failover` finds the leader, `kill -9`s its process (`--pids` in endpoint order), and
//! prints the time until the survivors agree on a new leader.

// A command-line tool: its results go to stdout.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use tokio::time::Instant;

use anyhow::{bail, Context};
use base64::Engine as _;

/// What the workers send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    ConcordKv,
    ConcordCatalog,
    Etcd,
}

impl Target {
    fn parse(s: &str) -> anyhow::Result<Target> {
        Ok(match s {
            "concord-kv" | "concord" => Target::ConcordKv,
            "concord-catalog" => Target::ConcordCatalog,
            "etcd" => Target::Etcd,
            other => bail!("unknown target {other:?}"),
        })
    }
}

/// Command-line options (`--name value` pairs).
struct Options {
    target: Target,
    endpoints: Vec<String>,
    concurrency: Vec<usize>,
    duration: Duration,
    value_size: usize,
    pids: Vec<u32>,
}

fn options(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        target: Target::ConcordKv,
        endpoints: Vec::new(),
        concurrency: vec![1, 16, 64],
        duration: Duration::from_secs(10),
        value_size: 128,
        pids: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let list = || value.split(',').map(str::trim).filter(|s| !s.is_empty());
        match flag.as_str() {
            "--target" => o.target = Target::parse(value)?,
            "--endpoints" => {
                o.endpoints = list()
                    .map(|e| e.trim_end_matches('/').to_string())
                    .collect()
            }
            "--concurrency" => {
                o.concurrency = list().map(str::parse).collect::<Result<_, _>>()?;
            }
            "--duration" => o.duration = Duration::from_secs_f64(value.parse()?),
            "--value-size" => o.value_size = value.parse()?,
            "--pids" => o.pids = list().map(str::parse).collect::<Result<_, _>>()?,
            other => bail!("unknown flag {other}"),
        }
    }
    if o.endpoints.is_empty() {
        bail!("--endpoints is required");
    }
    Ok(o)
}

/// One worker's request number `n`: method, URL and body.
fn request(
    target: Target,
    endpoint: &str,
    worker: usize,
    n: u64,
    value: &str,
) -> (String, Vec<u8>) {
    match target {
        Target::ConcordKv => (
            format!("{endpoint}/v1/kv/bench/{worker}/{}", n % 1000),
            value.as_bytes().to_vec(),
        ),
        Target::ConcordCatalog => {
            let body = serde_json::json!({
                "Node": format!("bench-{worker}-{}", n % 100),
                "Address": "10.1.0.1",
                "Service": {
                    "ID": format!("web-{}", n % 10),
                    "Service": "web",
                    "Port": 8080,
                    "Tags": ["v1"],
                },
            });
            (
                format!("{endpoint}/v1/catalog/register"),
                body.to_string().into_bytes(),
            )
        }
        Target::Etcd => {
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            let body = serde_json::json!({
                "key": b64(&format!("bench/{worker}/{}", n % 1000)),
                "value": b64(value),
            });
            (
                format!("{endpoint}/v3/kv/put"),
                body.to_string().into_bytes(),
            )
        }
    }
}

/// What a worker measured: the latency of every answered request, in microseconds.
struct Measured {
    latencies_us: Vec<u32>,
    errors: u64,
}

async fn worker(
    target: Target,
    endpoint: String,
    id: usize,
    value: String,
    warmup_until: Instant,
    until: Instant,
) -> anyhow::Result<Measured> {
    // One client per worker, at most one idle connection: the worker's own keep-alive
    // connection, as a closed-loop client holds.
    let http = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut measured = Measured {
        latencies_us: Vec::new(),
        errors: 0,
    };
    let mut n = 0u64;
    loop {
        let now = Instant::now();
        if now >= until {
            return Ok(measured);
        }
        n += 1;
        let (url, body) = request(target, &endpoint, id, n, &value);
        let sent = Instant::now();
        let req = match target {
            Target::Etcd => http.post(url),
            Target::ConcordKv | Target::ConcordCatalog => http.put(url),
        };
        let ok = match req.body(body).send().await {
            Ok(r) => {
                let status = r.status();
                let body = r.bytes().await;
                status.is_success() && body.is_ok()
            }
            Err(_) => false,
        };
        let took = sent.elapsed();
        if sent < warmup_until {
            continue;
        }
        if ok {
            measured
                .latencies_us
                .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        } else {
            measured.errors += 1;
        }
    }
}

/// The `q` quantile (0..=1) of sorted `v`, in milliseconds.
fn quantile_ms(v: &[u32], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let last = v.len() - 1;
    // Rounding a non-negative value below `v.len()`: the cast cannot truncate meaningfully.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((last as f64) * q).round() as usize;
    f64::from(v[i.min(last)]) / 1000.0
}

async fn load(o: &Options) -> anyhow::Result<()> {
    let value: String = "v".repeat(o.value_size);
    let name = match o.target {
        Target::ConcordKv => "Concord KV PUT",
        Target::ConcordCatalog => "Concord catalog register",
        Target::Etcd => "etcd 3.4 put",
    };
    for &clients in &o.concurrency {
        let start = Instant::now();
        let warmup_until = start + Duration::from_secs(1);
        let until = warmup_until + o.duration;
        let tasks: Vec<_> = (0..clients)
            .map(|id| {
                let endpoint = o.endpoints[id % o.endpoints.len()].clone();
                tokio::spawn(worker(
                    o.target,
                    endpoint,
                    id,
                    value.clone(),
                    warmup_until,
                    until,
                ))
            })
            .collect();
        let mut all = Vec::new();
        let mut errors = 0;
        for task in tasks {
            let m = task.await??;
            all.extend(m.latencies_us);
            errors += m.errors;
        }
        all.sort_unstable();
        #[allow(clippy::cast_precision_loss)]
        let rate = all.len() as f64 / o.duration.as_secs_f64();
        println!(
            "| {name} | {clients} | {rate:.0} | {:.2} | {:.2} | {errors} |",
            quantile_ms(&all, 0.50),
            quantile_ms(&all, 0.99)
        );
    }
    Ok(())
}

/// The endpoint index of the current leader, as the servers report it (`None`: no
/// agreement among those that answer).
async fn leader(http: &reqwest::Client, target: Target, endpoints: &[String]) -> Option<usize> {
    let mut seen = Vec::new();
    for e in endpoints {
        let found = match target {
            Target::Etcd => {
                let r = http
                    .post(format!("{e}/v3/maintenance/status"))
                    .body("{}")
                    .send()
                    .await
                    .ok()?;
                let v: serde_json::Value = r.json().await.ok()?;
                // The gateway prints uint64s as strings.
                let leader = v["leader"].as_str()?.to_string();
                let mut at = None;
                for (i, other) in endpoints.iter().enumerate() {
                    let r = http
                        .post(format!("{other}/v3/maintenance/status"))
                        .body("{}")
                        .send()
                        .await;
                    if let Ok(r) = r {
                        if let Ok(s) = r.json::<serde_json::Value>().await {
                            if s["header"]["member_id"].as_str() == Some(leader.as_str()) {
                                at = Some(i);
                            }
                        }
                    }
                }
                at
            }
            Target::ConcordKv | Target::ConcordCatalog => {
                let r = http
                    .get(format!("{e}/v1/status/leader"))
                    .send()
                    .await
                    .ok()?;
                let addr: String = r.json().await.ok()?;
                let ip = addr.split(':').next().unwrap_or_default().to_string();
                endpoints
                    .iter()
                    .position(|x| x.contains(&format!("//{ip}:")))
            }
        };
        seen.push(found?);
    }
    let first = *seen.first()?;
    seen.iter().all(|&l| l == first).then_some(first)
}

async fn failover(o: &Options) -> anyhow::Result<()> {
    if o.pids.len() != o.endpoints.len() {
        bail!("--pids must name one process per endpoint");
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(500))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let old = loop {
        if let Some(l) = leader(&http, o.target, &o.endpoints).await {
            break l;
        }
        if Instant::now() > deadline {
            bail!("no leader");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let survivors: Vec<String> = o
        .endpoints
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != old)
        .map(|(_, e)| e.clone())
        .collect();
    let killed = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-9", &o.pids[old].to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -9 {} failed", o.pids[old]);
    }
    loop {
        if leader(&http, o.target, &survivors).await.is_some() {
            println!(
                "leader {} killed; new leader after {:.2} s",
                o.endpoints[old],
                killed.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if killed.elapsed() > Duration::from_secs(60) {
            bail!("no new leader within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = args.split_first() else {
        bail!("usage: kv_bench load|failover --target ... --endpoints ...");
    };
    let o = options(rest)?;
    match mode.as_str() {
        "load" => load(&o).await,
        "failover" => failover(&o).await,
        other => bail!("unknown mode {other}"),
    }
}
