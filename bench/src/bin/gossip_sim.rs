//! Simulates the gossip membership layer (`concord_net::gossip`, the same pool code the agent
//! runs) at scale over an in-memory network with a simulated clock, default LAN timings,
//! 1-2 ms one-way latency. For each size: a join storm (everyone joins node 0 at once), a
//! steady-state traffic window (at least one size-scaled push-pull interval), a window at 5%
//! packet loss counting false failures, then ten members killed one after another and the time
//! until each other member declares each failed.
//!
//! With `--warm`, the join storm is skipped: every member starts knowing every member alive
//! with nothing left to disseminate (`SimNetwork::warm_start`: the state a join storm ends
//! in), and the memory column is the lasting tables alone. That is how 10,000 members fit in
//! one process: a join storm at that size holds n dissemination backlogs of n updates and
//! costs O(n² log n) deliveries (docs/benchmarks.md).
//!
//! With `--storm=M`, the first n − M members start converged as with `--warm`, and the
//! other M join through member 0 at once: a join storm of M into a pool of n − M, which
//! fits in memory at sizes where a storm of all n does not.
//!
//! The simulation is seeded (by default with the size): `--seed=S` draws another run.
//!
//! Usage: `gossip_sim [--warm | --storm=M] [--seed=S] [SIZE...]` (default 100 1000). Prints
//! a markdown table.
// A benchmark's output is its report.
#![allow(clippy::print_stdout)]
// The real (wall) time a simulation takes is one of its results; nothing here runs under
// tokio, so tokio's pausable clock has nothing to offer.
#![allow(clippy::disallowed_types)]

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use concord_bench::{percentile, proc_status_kb, secs, sizes_from_args};
use concord_net::gossip::memory::{SimConfig, SimNetwork};
use concord_net::gossip::{Config, MemberEvent, MemberStatus};

const STEADY: Duration = Duration::from_secs(30);
const LOSSY: Duration = Duration::from_secs(60);
const LOSS: f64 = 0.05;
/// Members killed one after another; detection times are pooled over all of them (one kill
/// is one draw of when the victim is first probed, which moves the result by a second).
const KILLS: usize = 10;

struct Row {
    n: usize,
    /// Started converged (`--warm`): no join storm was run.
    warm: bool,
    /// `--storm=M`: M members joined a converged pool of the others.
    storm: Option<usize>,
    /// Peak resident memory of the process so far (VmHWM), KiB.
    peak_rss_kb: u64,
    most: Option<Duration>,
    converge: Option<Duration>,
    /// Per member: when it first listed every member alive (p50, p99).
    join_p50: Option<Duration>,
    join_p99: Option<Duration>,
    /// Resident memory after the join storm, per (observer, member) pair.
    bytes_per_pair: u64,
    detect_p50: Option<Duration>,
    detect_p99: Option<Duration>,
    detect_max: Option<Duration>,
    detected: usize,
    kills: usize,
    false_positives: usize,
    msgs_per_node_s: f64,
    bytes_per_node_s: f64,
    sync_bytes_per_node_s: f64,
    /// Push-pull frames sent per node per second (openings and answers).
    sync_frames_per_node_s: f64,
    wall: Duration,
}

fn main() {
    let sizes = sizes_from_args(&[100, 1000]);
    let warm = std::env::args().any(|a| a == "--warm");
    let storm = std::env::args().find_map(|a| {
        a.strip_prefix("--storm=")
            .and_then(|m| m.parse::<usize>().ok())
    });
    let seed = std::env::args().find_map(|a| {
        a.strip_prefix("--seed=")
            .and_then(|s| s.parse::<u64>().ok())
    });
    let mut rows = Vec::new();
    for n in sizes {
        let row = run(
            n,
            warm,
            storm.map(|m| m.min(n - 1)),
            seed.unwrap_or(n as u64),
        );
        print_row(&row);
        rows.push(row);
    }
    println!();
    println!("| members | join storm: all know 99% | each knows all: p50 / p99 / max | failure known by all: p50 / p99 / max (of kills x survivors) | false failures at {:.0}% loss over {}s | UDP msgs/node/s | UDP bytes/node/s | push-pull frames/node/s | push-pull bytes/node/s | RSS per (member, member) pair | peak RSS | wall time |", LOSS * 100.0, LOSSY.as_secs());
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let members = match r.storm {
            Some(m) => format!("{} ({m} join {} at once)", r.n, r.n - m),
            None => r.n.to_string(),
        };
        println!(
            "| {} | {} | {} / {} / {} | {} / {} / {} ({}/{}) | {} | {:.1} | {:.0} | {:.3} | {:.0} | {} B | {:.1} GB | {:.0?} |",
            members,
            join(r, r.most),
            join(r, r.join_p50),
            join(r, r.join_p99),
            join(r, r.converge),
            secs(r.detect_p50),
            secs(r.detect_p99),
            secs(r.detect_max),
            r.detected,
            expected_detections(r),
            r.false_positives,
            r.msgs_per_node_s,
            r.bytes_per_node_s,
            r.sync_frames_per_node_s,
            r.sync_bytes_per_node_s,
            r.bytes_per_pair,
            r.peak_rss_kb as f64 / (1024.0 * 1024.0),
            r.wall,
        );
    }
}

/// A join-storm time, or why there is none.
fn join(r: &Row, t: Option<Duration>) -> String {
    if r.warm {
        "warm start".to_string()
    } else {
        secs(t)
    }
}

/// Detections if every surviving member declared every victim failed.
fn expected_detections(r: &Row) -> usize {
    (0..r.kills).map(|k| r.n - 1 - k).sum()
}

fn print_row(r: &Row) {
    println!(
        "n={} converge={} detect p50={} p99={} max={} ({}/{}) false={} msgs/node/s={:.1} bytes/node/s={:.0} sync frames/node/s={:.3} sync bytes/node/s={:.0} wall={:.0?}",
        r.n,
        secs(r.converge),
        secs(r.detect_p50),
        secs(r.detect_p99),
        secs(r.detect_max),
        r.detected,
        expected_detections(r),
        r.false_positives,
        r.msgs_per_node_s,
        r.bytes_per_node_s,
        r.sync_frames_per_node_s,
        r.sync_bytes_per_node_s,
        r.wall
    );
}

fn run(n: usize, warm: bool, storm: Option<usize>, seed: u64) -> Row {
    let wall = Instant::now();
    let rss_before = rss_kb();
    let mut sim = SimNetwork::new(SimConfig {
        seed,
        ..SimConfig::default()
    });
    for i in 0..n {
        let config = Config::new(format!("node-{i}"), SimNetwork::addr_of(i));
        if sim.add_node(config).is_err() {
            unreachable_config();
        }
    }
    eprintln!(
        "n={n}: {n} pools (wall {:.0?}, rss {} MB)",
        wall.elapsed(),
        rss_kb() / 1024
    );
    let step = Duration::from_millis(250);
    let (most, converge, join_times) = match storm {
        Some(m) => {
            sim.warm_start_first(n - m);
            eprintln!(
                "n={n}: {} warm (wall {:.0?}, rss {} MB)",
                n - m,
                wall.elapsed(),
                rss_kb() / 1024
            );
            join_storm(&mut sim, n, n - m, step)
        }
        None if warm => {
            sim.warm_start();
            (None, None, Vec::new())
        }
        None => join_storm(&mut sim, n, 1, step),
    };
    let bytes_per_pair = rss_kb().saturating_sub(rss_before) * 1024 / (n as u64 * n as u64);
    eprintln!(
        "n={n}: converged in {converge:?} (wall {:.0?}, rss {} MB)",
        wall.elapsed(),
        rss_kb() / 1024
    );
    // Steady state, no loss: traffic per node per second.
    // At least one full (size-scaled) push-pull interval, so that its cost is counted.
    let steady = STEADY.max(push_pull_interval(n));
    let before: Vec<_> = sim.traffic().to_vec();
    sim.run_for(steady);
    let (mut msgs, mut bytes, mut sync, mut frames) = (0u64, 0u64, 0u64, 0u64);
    for (a, b) in sim.traffic().iter().zip(&before) {
        msgs += a.packets - b.packets;
        bytes += a.bytes - b.bytes;
        sync += a.stream_bytes - b.stream_bytes;
        frames += a.streams - b.streams;
    }
    let per = (n as f64) * steady.as_secs_f64();
    eprintln!(
        "n={n}: steady window done (wall {:.0?}, rss {} MB)",
        wall.elapsed(),
        rss_kb() / 1024
    );

    // 5% loss: nobody alive may be declared failed.
    let failures = Rc::new(RefCell::new(Vec::<(usize, Duration, String)>::new()));
    let sink = failures.clone();
    sim.set_event_hook(Some(Box::new(move |i, t, e| {
        if let MemberEvent::Failed(m) = e {
            sink.borrow_mut().push((i, t, m.name.clone()));
        }
    })));
    sim.set_loss(LOSS);
    sim.run_for(LOSSY);
    sim.set_loss(0.0);
    let false_positives = failures.borrow().len();
    eprintln!(
        "n={n}: lossy window done, {false_positives} false failures (wall {:.0?})",
        wall.elapsed()
    );
    // Let any suspicion raised under loss be refuted before the kill.
    sim.run_for(Duration::from_secs(10));
    failures.borrow_mut().clear();

    // Kill members one at a time; when does each other member declare each failed?
    let mut times: Vec<Duration> = Vec::new();
    let mut dead: Vec<usize> = Vec::new();
    for k in 0..KILLS.min(n / 2) {
        let victim = n / 2 + k;
        let victim_name = format!("node-{victim}");
        failures.borrow_mut().clear();
        let killed_at = sim.now();
        sim.kill(victim);
        dead.push(victim);
        let _ = sim.run_until(Duration::from_secs(120), step, |s| {
            (0..n).filter(|i| !dead.contains(i)).all(|i| {
                s.pool(i)
                    .is_some_and(|p| p.status_of(&victim_name) == Some(MemberStatus::Failed))
            })
        });
        let mut these: Vec<Duration> = failures
            .borrow()
            .iter()
            .filter(|(i, _, name)| *name == victim_name && !dead.contains(i))
            .map(|(_, t, _)| *t - killed_at)
            .collect();
        these.sort();
        eprintln!(
            "n={n}: kill {k}: known to {} in p50 {} / max {}",
            these.len(),
            secs(percentile(&these, 0.5)),
            secs(these.last().copied())
        );
        times.extend(these);
        // Let the pool settle (the verdict's gossip drain) before the next kill.
        sim.run_for(Duration::from_secs(5));
    }
    times.sort();
    let pct = |p: f64| percentile(&times, p);
    Row {
        n,
        warm: warm && storm.is_none(),
        storm,
        peak_rss_kb: proc_status_kb("self", "VmHWM:"),
        most,
        converge,
        join_p50: percentile(&join_times, 0.50),
        join_p99: percentile(&join_times, 0.99),
        bytes_per_pair,
        detect_p50: pct(0.50),
        detect_p99: pct(0.99),
        detect_max: times.last().copied(),
        detected: times.len(),
        kills: KILLS.min(n / 2),
        false_positives,
        msgs_per_node_s: msgs as f64 / per,
        bytes_per_node_s: bytes as f64 / per,
        sync_bytes_per_node_s: sync as f64 / per,
        sync_frames_per_node_s: frames as f64 / per,
        wall: wall.elapsed(),
    }
}

/// Members `first..n` join through node 0 at once; returns when 99 % and when all of the
/// pool was known by every member, and when each member first knew all of it (sorted).
fn join_storm(
    sim: &mut SimNetwork,
    n: usize,
    first: usize,
    step: Duration,
) -> (Option<Duration>, Option<Duration>, Vec<Duration>) {
    for i in first.max(1)..n {
        sim.with_pool(i, |p, now| p.join(&[SimNetwork::addr_of(0)], now));
    }
    // Each member's count of members it lists alive (itself included).
    let known = |s: &SimNetwork| -> Vec<usize> {
        (0..n)
            .filter_map(|i| s.pool(i).map(|p| p.alive_count() + 1))
            .collect()
    };
    // When each member first listed all n alive.
    let mut full_at: Vec<Option<Duration>> = vec![None; n];
    let note_full = |s: &SimNetwork, full_at: &mut [Option<Duration>]| {
        for (i, k) in known(s).into_iter().enumerate() {
            if k == n && full_at[i].is_none() {
                full_at[i] = Some(s.now());
            }
        }
    };
    let most = sim.run_until(Duration::from_secs(300), step, |s| {
        note_full(s, &mut full_at);
        known(s).iter().all(|&k| k * 100 >= n * 99)
    });
    let converge = sim
        .run_until(Duration::from_secs(300), step, |s| {
            note_full(s, &mut full_at);
            known(s).iter().all(|&k| k == n)
        })
        .zip(most)
        .map(|(rest, most)| rest + most);
    let mut join_times: Vec<Duration> = full_at.iter().flatten().copied().collect();
    join_times.sort();
    (most, converge, join_times)
}

/// memberlist's push-pull interval at `n` members with the LAN base of 30 s (the pool
/// scales it the same way).
fn push_pull_interval(n: usize) -> Duration {
    let base = Duration::from_secs(30);
    if n <= 32 {
        return base;
    }
    base * (((n as f64).log2() - 5.0).ceil() as u32 + 1)
}

/// This process's resident memory now (VmRSS), in KiB.
fn rss_kb() -> u64 {
    proc_status_kb("self", "VmRSS:")
}

fn unreachable_config() -> ! {
    eprintln!("invalid simulated node config");
    std::process::exit(2);
}
