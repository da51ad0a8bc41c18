//! Propagation through the client-agent tier: 3 servers and N client agents (default 20),
//! real processes on distinct loopback addresses (`127.0.18.x`), each agent answering DNS
//! on port 8600 from its own cached catalog view.
//!
//! - **Registration**: a service registered on one agent (round robin over the agents);
//!   the time until *every other* agent's DNS answers its A record, and until the first one
//!   does. Each other agent is polled over UDP every 2 ms from its own task.
//! - **Node failure**: an agent with a service is `kill -9`ed; the time until no other
//!   agent's DNS answers for its service any more (gossip failure detection, then the leader
//!   marks `serfHealth` critical, then the watch on the catalog delivers it).
//!
//! Usage: `CONCORD_BIN=target/release/concord propagation [AGENTS] [TRIALS] [FAILURES]`
//! (defaults 20, 100, 5). Prints a markdown table (docs/benchmarks.md, "Propagation").
// A benchmark's output is its report.
#![allow(clippy::print_stdout)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use concord_integration::dns::{query, Transport};
use concord_integration::{AgentSpec, TestAgent, TestCluster};
use hickory_proto::rr::RecordType;
use tokio::time::Instant;

const NET: u8 = 18;
const SERVERS: usize = 3;
const DNS_PORT: u16 = 8600;
/// Longest a single propagation may take before the trial counts as failed.
const BOUND: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(2);

fn agent_ip(i: usize) -> IpAddr {
    IpAddr::from([
        127,
        0,
        NET,
        11 + u8::try_from(i).expect("fewer than 200 agents"),
    ])
}

fn dns_of(i: usize) -> SocketAddr {
    SocketAddr::new(agent_ip(i), DNS_PORT)
}

fn spec(i: usize) -> AgentSpec {
    let mut spec = AgentSpec::at(&format!("prop{i}"), agent_ip(i)).args(&[
        "-retry-interval",
        "1s",
        "-dns-port",
        &DNS_PORT.to_string(),
    ]);
    for s in 0..SERVERS {
        spec = spec.args(&["-retry-join", &TestCluster::ip(NET, s).to_string()]);
    }
    spec
}

/// Whether `dns` answers at least one A record for `name`.
async fn answers(dns: SocketAddr, name: &str) -> bool {
    query(dns, Transport::Udp, name, RecordType::A)
        .await
        .is_ok_and(|m| !m.answers().is_empty())
}

/// Polls every DNS in `others` until each one's answer is `want`; returns when the first
/// and when the last got there (measured from `start`).
async fn until_all(
    others: &[SocketAddr],
    name: &str,
    want: bool,
    start: Instant,
) -> anyhow::Result<(Duration, Duration)> {
    let tasks: Vec<_> = others
        .iter()
        .map(|&dns| {
            let name = name.to_string();
            tokio::spawn(async move {
                loop {
                    if answers(dns, &name).await == want {
                        return Ok(start.elapsed());
                    }
                    if start.elapsed() > BOUND {
                        bail!("{dns} never answered {want} for {name}");
                    }
                    tokio::time::sleep(POLL).await;
                }
            })
        })
        .collect();
    let mut times = Vec::with_capacity(tasks.len());
    for task in tasks {
        times.push(task.await??);
    }
    let first = times.iter().min().copied().unwrap_or_default();
    let last = times.iter().max().copied().unwrap_or_default();
    Ok((first, last))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

async fn register(agent: &TestAgent, name: &str) -> anyhow::Result<()> {
    let body = format!(r#"{{"Name":"{name}","Port":8080}}"#);
    match agent.put("/v1/agent/service/register", body).await? {
        (200, _) => Ok(()),
        other => bail!("registering {name} on {}: {other:?}", agent.node),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("CONCORD_BIN").is_none() {
        bail!("set CONCORD_BIN to the concord binary (e.g. target/release/concord)");
    }
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(20), |a| a.parse())?;
    let trials: usize = args.next().map_or(Ok(100), |a| a.parse())?;
    let failures: usize = args.next().map_or(Ok(5), |a| a.parse())?;
    if failures >= n {
        bail!("FAILURES must be below AGENTS");
    }

    eprintln!("starting {SERVERS} servers and {n} client agents");
    let _cluster = TestCluster::start(NET, SERVERS).await?;
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(TestAgent::launch(spec(i))))
        .collect();
    let mut agents = Vec::with_capacity(n);
    for task in tasks {
        agents.push(task.await??);
    }
    let started = Instant::now();
    loop {
        let (_, _, members) = agents[0].get_json("/v1/agent/members").await?;
        let alive = members
            .as_array()
            .map_or(0, |m| m.iter().filter(|m| m["Status"] == 1).count());
        if alive == n + SERVERS {
            break;
        }
        if started.elapsed() > BOUND {
            bail!("only {alive} of {} members alive", n + SERVERS);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    eprintln!("registration: {trials} trials");
    let mut firsts = Vec::with_capacity(trials);
    let mut lasts = Vec::with_capacity(trials);
    for t in 0..trials {
        let origin = t % n;
        let name = format!("p{t}");
        let others: Vec<SocketAddr> = (0..n).filter(|&i| i != origin).map(dns_of).collect();
        let start = Instant::now();
        register(&agents[origin], &name).await?;
        let (first, last) = until_all(&others, &format!("{name}.service.consul."), true, start)
            .await
            .with_context(|| format!("trial {t}"))?;
        firsts.push(first);
        lasts.push(last);
    }

    eprintln!("node failure: {failures} trials");
    let mut gone = Vec::with_capacity(failures);
    for f in 0..failures {
        let victim = n - 1 - f;
        let name = format!("fail{f}");
        register(&agents[victim], &name).await?;
        let qname = format!("{name}.service.consul.");
        let others: Vec<SocketAddr> = (0..n - 1 - f).map(dns_of).collect();
        until_all(&others, &qname, true, Instant::now()).await?;
        let start = Instant::now();
        agents[victim].kill9();
        let (_, last) = until_all(&others, &qname, false, start).await?;
        gone.push(last);
    }

    firsts.sort();
    lasts.sort();
    gone.sort();
    let max = |v: &[Duration]| v.last().copied().unwrap_or_default();
    println!("| event | trials | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    println!(
        "| registration visible in the first other agent's DNS | {trials} | {} | {} | {} |",
        ms(percentile(&firsts, 50.0)),
        ms(percentile(&firsts, 99.0)),
        ms(max(&firsts))
    );
    println!(
        "| registration visible in every other agent's DNS ({} agents) | {trials} | {} | {} | {} |",
        n - 1,
        ms(percentile(&lasts, 50.0)),
        ms(percentile(&lasts, 99.0)),
        ms(max(&lasts))
    );
    println!(
        "| kill -9 of an agent: its service gone from every other agent's DNS | {failures} | {} | {} | {} |",
        ms(percentile(&gone, 50.0)),
        ms(percentile(&gone, 99.0)),
        ms(max(&gone))
    );
    Ok(())
}
