//! Fixed-rate HTTP load with evenly spaced arrivals (wrk2's model), for the sidecar proxy
//! bench's latency at 1k and 5k req/s (`bench/proxy/run.sh`).
//!
//! `RATE` requests a second over `CONNECTIONS` keep-alive HTTP/1.1 connections: request `i`
//! is due at `start + i / RATE` and goes on connection `i mod CONNECTIONS`, so the arrivals
//! are spread evenly instead of coming in bursts (hey's workers each tick at `RATE /
//! CONNECTIONS` from the same instant, so all of them fire together). The pacing is
//! tokio's timer, which wakes on millisecond ticks: the requests due within one millisecond
//! leave together (five at 5k req/s, one at 1k). A request's latency counts from when it
//! went out to its reply's last byte; a request whose connection is still busy with the one
//! before goes out when that one is answered (at these rates a connection's requests are
//! 13-64 ms apart, so that wait does not occur in practice). Every reply must be a 200 with
//! its whole body read; anything else counts as an error.
//!
//! Each connection is dialled and sends one untimed request before the first timed one is
//! due, so that what is timed is steady keep-alive traffic: a proxy that dials its own
//! upstream connection on a downstream connection's first request (an L7 sidecar, haproxy
//! in http mode) has done so by then, as one that dials on accept (tcp mode) has.
//!
//! One thread (a current-thread runtime): the generator's own CPU competes with what it
//! measures on this 2-core machine, so it stays as small as it can.
//!
//! ```text
//! paced http://127.0.46.1:26200/ 5000 10 [64]
//! ```
//!
//! Prints `achieved_rps p50_ms p99_ms errors`.

// A benchmark binary: it prints its report and stops at the first setup error.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
// tokio's Instant is std's outside a paused test runtime (the house lint wants it).
use tokio::time::Instant;

struct Args {
    addr: SocketAddr,
    uri: http::Uri,
    rate: f64,
    duration: Duration,
    connections: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, rate, secs, rest @ ..] = args.as_slice() else {
        bail!("usage: paced URL RATE SECONDS [CONNECTIONS]");
    };
    let uri: http::Uri = url.parse().context("URL")?;
    let authority = uri.authority().context("URL without host:port")?;
    let addr: SocketAddr = authority
        .as_str()
        .parse()
        .context("URL host:port (an IP)")?;
    let rate: f64 = rate.parse().context("RATE")?;
    let secs: f64 = secs.parse().context("SECONDS")?;
    let connections: usize = match rest.first() {
        Some(c) => c.parse().context("CONNECTIONS")?,
        None => 64,
    };
    if !(rate > 0.0 && secs > 0.0 && connections > 0) {
        bail!("RATE, SECONDS and CONNECTIONS must be positive");
    }
    Ok(Args {
        addr,
        uri,
        rate,
        duration: Duration::from_secs_f64(secs),
        connections,
    })
}

/// What one connection measured: request latencies, and failed requests.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: u64,
}

/// Sends the requests due on connection `index` until `end`, each at its due time or as
/// soon as the one before it on this connection is answered.
async fn connection(args: &Args, index: usize, start: Instant, end: Instant) -> Tally {
    let mut tally = Tally::default();
    let period = Duration::from_secs_f64(args.connections as f64 / args.rate);
    let offset = Duration::from_secs_f64(index as f64 / args.rate);
    // Dialled and warmed before the first request is due, so no timed request holds a
    // handshake, the client's or a proxy's.
    let mut sender = connect(args.addr).await.ok();
    if let Some(s) = sender.as_mut() {
        if request(s, &args.uri).await.is_err() {
            tally.errors += 1;
            sender = None;
        }
    }
    let mut k: u32 = 0;
    loop {
        let due = start + offset + period * k;
        if due >= end {
            return tally;
        }
        k += 1;
        tokio::time::sleep_until(due).await;
        if sender.is_none() {
            sender = connect(args.addr).await.ok();
        }
        let Some(s) = sender.as_mut() else {
            tally.errors += 1;
            continue;
        };
        let sent = Instant::now();
        match request(s, &args.uri).await {
            Ok(()) => tally.latencies.push(sent.elapsed()),
            Err(_) => {
                tally.errors += 1;
                // A broken connection is dialled again for the next request.
                sender = None;
            }
        }
    }
}

async fn connect(
    addr: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn request(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    uri: &http::Uri,
) -> anyhow::Result<()> {
    sender.ready().await?;
    let req = http::Request::get(uri.path())
        .header(
            http::header::HOST,
            uri.authority().map_or("", |a| a.as_str()),
        )
        .body(Empty::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    resp.into_body().collect().await?;
    if status != http::StatusCode::OK {
        bail!("status {status}");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let tallies = local.block_on(&runtime, async {
        // The connections' first timed requests are due a moment after all of them are set
        // up and warmed.
        let start = Instant::now() + Duration::from_millis(500);
        let end = start + args.duration;
        futures::future::join_all((0..args.connections).map(|i| connection(&args, i, start, end)))
            .await
    });
    let mut latencies: Vec<Duration> = Vec::new();
    let mut errors = 0;
    for t in tallies {
        latencies.extend(t.latencies);
        errors += t.errors;
    }
    latencies.sort();
    let ms = |p: f64| {
        concord_bench::percentile(&latencies, p).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    let achieved = latencies.len() as f64 / args.duration.as_secs_f64();
    println!("{achieved:.0} {:.3} {:.3} {errors}", ms(0.50), ms(0.99));
    Ok(())
}
