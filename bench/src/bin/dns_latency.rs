//! Open-loop DNS latency (issue 14's "p99 under 1 ms at half of the max rate"): sends one
//! question over UDP at a fixed rate, whatever the replies do, and times every reply.
//!
//! dnsperf's per-query output (`-v`) prints a line per query on the same 2 cores as the
//! server, which inflates its tail; this generator prints nothing while it runs. One thread,
//! one socket, a busy loop: send every query that is due, then take every reply waiting.
//! Send and receive instants go into arrays allocated before the first query; the report
//! (p50/p99/p99.9/max, lost replies) is computed after the run. Pin it to a core of its own
//! (`taskset`), away from the server: it keeps that core busy.
//!
//! ```text
//! taskset -c 1 target/release/dns_latency --server 127.0.0.1:8600 --type SRV --rate 50000
//! (--bind 127.0.0.1:0 is the default source address)
//! ```
//!
//! Replies are matched by DNS ID: query `i` carries ID `i mod 65536`, and a reply is
//! credited to the latest query sent with its ID (a reply later than 65,536 queries would be
//! misattributed: at 50,000 qps that is over a second, far past anything measured here, and
//! such replies count as lost).

// A benchmark binary: it prints its report and stops at the first setup error.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

// tokio's Instant is std's outside a paused test runtime (the house lint wants it).
use tokio::time::Instant;

use anyhow::{bail, Context};

struct Args {
    server: SocketAddr,
    bind: SocketAddr,
    name: String,
    qtype: u16,
    type_name: String,
    rate: u64,
    duration: Duration,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        server: "127.0.0.1:8600".parse()?,
        bind: "127.0.0.1:0".parse()?,
        name: "web.service.consul".to_string(),
        qtype: 1,
        type_name: "A".to_string(),
        rate: 10_000,
        duration: Duration::from_secs(5),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--server" => args.server = value.parse()?,
            "--bind" => args.bind = value.parse()?,
            "--name" => args.name = value,
            "--type" => {
                args.qtype = match value.as_str() {
                    "A" => 1,
                    "SRV" => 33,
                    "AAAA" => 28,
                    other => bail!("--type {other}: want A, AAAA or SRV"),
                };
                args.type_name = value;
            }
            "--rate" => args.rate = value.parse()?,
            "--duration" => args.duration = Duration::from_secs(value.parse()?),
            other => bail!(
                "unknown flag {other}; flags: --server ADDR --bind ADDR --name NAME --type A|SRV \
                 --rate QPS --duration SECS"
            ),
        }
    }
    if args.rate == 0 {
        bail!("--rate must be above 0");
    }
    Ok(args)
}

/// A query for `name`/`qtype` with RD set and an EDNS0 OPT record advertising 4096 bytes
/// (as `dnsperf -e`), ID 0 (set per send).
fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in name.trim_end_matches('.').split('.') {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    // OPT: root name, type 41, payload 4096, extended rcode/version/flags 0, no data.
    q.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0]);
    q
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1e6)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let total = usize::try_from(args.rate * args.duration.as_secs())?;
    let socket = UdpSocket::bind(args.bind)?;
    socket.connect(args.server)?;
    socket.set_nonblocking(true)?;
    let mut packet = query(&args.name, args.qtype);
    // Every instant is nanoseconds since `start`; a reply slot of 0 means none arrived.
    let mut sent_ns = vec![0u64; total];
    let mut reply_ns = vec![0u64; total];
    let mut buf = [0u8; 65_535];
    let interval_ns = 1e9 / args.rate as f64;
    let mut next = 0usize;
    let mut late_sends = 0usize;
    let start = Instant::now();
    // Replies are still taken for a second after the last query.
    let end_ns = args.duration.as_nanos() as u64 + 1_000_000_000;
    loop {
        let now = start.elapsed().as_nanos() as u64;
        if now >= end_ns {
            break;
        }
        while next < total && (next as f64 * interval_ns) as u64 <= now {
            let id = (next % 65_536) as u16;
            packet[..2].copy_from_slice(&id.to_be_bytes());
            let at = start.elapsed().as_nanos() as u64;
            if at > (next as f64 * interval_ns) as u64 + 1_000_000 {
                late_sends += 1;
            }
            match socket.send(&packet) {
                Ok(_) => sent_ns[next] = at.max(1),
                // A full socket buffer drops this query; it counts as lost.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
            next += 1;
        }
        loop {
            match socket.recv(&mut buf) {
                Ok(len) if len >= 2 => {
                    let at = start.elapsed().as_nanos() as u64;
                    let id = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                    // The latest query sent with this ID.
                    if next == 0 {
                        continue;
                    }
                    let last = next - 1;
                    let back = (last % 65_536 + 65_536 - id) % 65_536;
                    if let Some(i) = last.checked_sub(back) {
                        if sent_ns[i] != 0 && reply_ns[i] == 0 {
                            reply_ns[i] = at;
                        }
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    let mut latencies: Vec<u64> = sent_ns
        .iter()
        .zip(&reply_ns)
        .filter(|(s, r)| **s != 0 && **r != 0)
        .map(|(s, r)| r.saturating_sub(*s))
        .collect();
    let lost = total - latencies.len();
    latencies.sort_unstable();
    println!(
        "server {} {} {} at {} qps for {} s: {} queries, {} answered, {} lost, {} sent over 1 ms late",
        args.server,
        args.name,
        args.type_name,
        args.rate,
        args.duration.as_secs(),
        total,
        latencies.len(),
        lost,
        late_sends
    );
    println!(
        "latency ms: p50 {} p99 {} p99.9 {} max {}",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 0.999)),
        ms(latencies.last().copied().unwrap_or(0))
    );
    Ok(())
}
