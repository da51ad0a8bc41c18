//! Simulations and benchmarks of Concord components that are too slow or too large for unit
//! tests. Each one is a binary under `src/bin/`.
//!
//! # Layout
//! - `bin/dns_latency.rs`: open-loop UDP DNS load at a fixed rate, every reply's latency
//!   kept in a preallocated array, p50/p99/max reported after the run (`bench/dns/run.sh`).
//! - `bin/gossip_sim.rs`: the gossip membership layer (`concord_net::gossip`) over an in-memory
//!   network with a simulated clock: join storm, traffic, false failures under loss, failure
//!   detection, memory per member (100 to 10,000 members on this machine, the largest
//!   warm-started: `--warm`, `--storm=M`; docs/benchmarks.md).
//! - `bin/swim_sim.rs`: the SWIM layer alone (the vendored foca as the pool configures it),
//!   warm-started: failure detection and false failures under loss, a cross-check of
//!   `gossip_sim`.
//! - `bin/parked.rs`: parked blocking queries against a dev agent (descriptors, RSS, CPU,
//!   wake-up delay after one write), at 1,000 to 50,000 watchers, over HTTP/1.1 or HTTP/2
//!   (`--h2`), on a dev agent or a client agent in front of 3 servers (`--cluster`).
//! - `bin/propagation.rs`: 3 servers and 20 client agents as real processes: time from a
//!   registration until every agent's DNS answers it, and from a `kill -9` until none does.
//! - `bin/paced.rs`: fixed-rate HTTP load with arrivals spread evenly (wrk2's and oha's
//!   pacing) over keep-alive connections, p50/p99 (`bench/proxy/run.sh`'s fixed rates).
//! - `bin/kv_bench.rs`: closed-loop KV PUTs (and catalog registrations) at 1/16/64 clients
//!   against a 3-server Concord or etcd cluster, p50/p99; leader kill -9 to new leader
//!   (`bench/cluster/run.sh`).
//! - `bin/ui_load.rs`: the web UI's services view with 1,000 registered services, loaded in
//!   headless Chromium: time from navigation start to the rendered list (`bench/ui/run.sh`).

use std::time::Duration;

/// The `p` quantile of sorted `times` (nearest rank); `None` if empty.
pub fn percentile(times: &[Duration], p: f64) -> Option<Duration> {
    if times.is_empty() {
        return None;
    }
    let idx = ((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1;
    Some(times[idx])
}

/// A KiB field (`VmRSS:`, `VmHWM:`, ...) of `/proc/<pid>/status` (`pid` "self" for this
/// process); 0 where /proc or the field is missing.
pub fn proc_status_kb(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// `d` in seconds with one decimal, or "-".
pub fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1} s", d.as_secs_f64()))
}

/// The sizes given as arguments (those that parse), or `default` if none.
pub fn sizes_from_args(default: &[usize]) -> Vec<usize> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        default.to_vec()
    } else {
        sizes
    }
}
