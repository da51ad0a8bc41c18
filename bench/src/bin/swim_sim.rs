//! Simulates the SWIM layer of the gossip pool alone (the vendored foca with Lifeguard's
//! dynamic suspicion, configured by `concord_net::gossip::pool::swim_config` exactly as the
//! pool configures it for LAN timings), up to 10,000 members and more: what it measures is
//! failure detection and false failures under loss, which are decided in this layer. It was
//! how 10,000 members were first simulated; now that the whole pool fits (`gossip_sim
//! --warm 10000`), it is the cross-check that the glue adds nothing to detection but the
//! pool's own check.
//!
//! Differences from `gossip_sim`, on purpose: a compact identity (a member number and a
//! generation instead of an IP address, port and generation: 8 bytes per member instead of
//! 24); no Concord glue (no metadata, push-pull, coordinates, and not the pool's 0.5 s direct
//! check before it reports `Failed`: add it to the times); and a warm start: every member
//! begins knowing every member alive (as after a converged join storm, with empty
//! dissemination backlogs), its probe timer at a random phase, instead of a join storm.
//!
//! Usage: `swim_sim [SIZE...]` (default 10000). Prints a markdown table.
// A benchmark's output is its report.
#![allow(clippy::print_stdout)]
// The real (wall) time a simulation takes is one of its results.
#![allow(clippy::disallowed_types)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use concord_bench::{percentile, secs, sizes_from_args};
use concord_net::gossip::pool::swim_config;
use concord_net::gossip::Config;
use foca::{Foca, Member, NoCustomBroadcast, Notification, PostcardCodec, Runtime, Timer};
use rand010::rngs::SmallRng;
use rand010::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

const LOSS: f64 = 0.05;
const LOSSY: Duration = Duration::from_secs(60);
const STEADY: Duration = Duration::from_secs(30);
const KILLS: usize = 10;
/// One-way latency: 1 ms plus up to 1 ms of jitter (as `gossip_sim`).
const LATENCY_NS: u64 = 1_000_000;

/// A member: its number and generation (`concord_net::gossip::Id` without the address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Small {
    idx: u32,
    generation: u16,
}

impl foca::Identity for Small {
    type Addr = u32;

    fn renew(&self) -> Option<Self> {
        Some(Small {
            generation: self.generation.wrapping_add(1),
            ..*self
        })
    }

    fn addr(&self) -> u32 {
        self.idx
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

type Swim = Foca<Small, PostcardCodec, SmallRng, NoCustomBroadcast>;

#[derive(Default)]
struct Rt {
    sends: Vec<(Small, Vec<u8>)>,
    timers: Vec<(Duration, Timer<Small>)>,
    downs: Vec<Small>,
}

impl Runtime<Small> for Rt {
    fn notify(&mut self, notification: Notification<'_, Small>) {
        if let Notification::MemberDown(id) = notification {
            self.downs.push(*id);
        }
    }

    fn send_to(&mut self, to: Small, data: &[u8]) {
        self.sends.push((to, data.to_vec()));
    }

    fn submit_after(&mut self, event: Timer<Small>, after: Duration) {
        self.timers.push((after, event));
    }
}

enum Ev {
    Packet(Vec<u8>),
    Timer(Timer<Small>),
}

struct Sched {
    at: Duration,
    seq: u64,
    node: u32,
    ev: Ev,
}

impl PartialEq for Sched {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Sched {}
impl PartialOrd for Sched {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Sched {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Sim {
    now: Duration,
    nodes: Vec<Swim>,
    dead: Vec<bool>,
    queue: BinaryHeap<Reverse<Sched>>,
    seq: u64,
    rng: SmallRng,
    loss: f64,
    rt: Rt,
    packets: u64,
    bytes: u64,
    /// (observer, declared down, when) since the last `take_downs`.
    downs: Vec<(u32, u32, Duration)>,
}

impl Sim {
    fn push(&mut self, at: Duration, node: u32, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Sched {
            at,
            seq: self.seq,
            node,
            ev,
        }));
    }

    /// Routes what node `i` asked for; timers are delayed by `offset` more.
    fn route(&mut self, i: u32, offset: Duration) {
        let mut rt = std::mem::take(&mut self.rt);
        for (to, data) in rt.sends.drain(..) {
            self.packets += 1;
            self.bytes += data.len() as u64;
            if self.rng.random_bool(self.loss) {
                continue;
            }
            let at =
                self.now + Duration::from_nanos(LATENCY_NS + self.rng.random_range(0..LATENCY_NS));
            self.push(at, to.idx, Ev::Packet(data));
        }
        for (after, timer) in rt.timers.drain(..) {
            let at = self.now + after + offset;
            self.push(at, i, Ev::Timer(timer));
        }
        for down in rt.downs.drain(..) {
            self.downs.push((i, down.idx, self.now));
        }
        self.rt = rt;
    }

    fn step(&mut self) -> bool {
        let Some(Reverse(s)) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(s.at);
        let i = s.node;
        if self.dead[i as usize] {
            return true;
        }
        let node = &mut self.nodes[i as usize];
        // Errors are foca refusing a packet or a stale timer: counted by nothing here.
        let _ = match s.ev {
            Ev::Packet(data) => node.handle_data(&data, &mut self.rt),
            Ev::Timer(timer) => node.handle_timer(timer, &mut self.rt),
        };
        self.route(i, Duration::ZERO);
        true
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.queue.peek().is_some_and(|Reverse(s)| s.at <= end) {
            self.step();
        }
        self.now = end;
    }
}

struct Row {
    n: usize,
    warm: Duration,
    msgs: f64,
    bytes: f64,
    false_downs: usize,
    times: Vec<Duration>,
    expected: usize,
    worst_kill: Duration,
    wall: Duration,
}

fn main() {
    let sizes = sizes_from_args(&[10_000]);
    let mut rows = Vec::new();
    for n in sizes {
        rows.push(run(n));
    }
    println!();
    println!("| members | failure declared by all (foca): p50 / p99 / max (kills x survivors) | worst kill | false Down at {:.0}% loss over {}s | UDP msgs/node/s | UDP bytes/node/s | warm start | wall |", LOSS * 100.0, LOSSY.as_secs());
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} / {} / {} ({}/{}) | {} | {} | {:.1} | {:.0} | {:.0?} | {:.0?} |",
            r.n,
            secs(percentile(&r.times, 0.5)),
            secs(percentile(&r.times, 0.99)),
            secs(r.times.last().copied()),
            r.times.len(),
            r.expected,
            secs(Some(r.worst_kill)),
            r.false_downs,
            r.msgs,
            r.bytes,
            r.warm,
            r.wall,
        );
    }
}

fn run(n: usize) -> Row {
    let wall = Instant::now();
    let dummy = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8301);
    let config = swim_config(&Config::new("sim", dummy), n);
    let probe = config.probe_period;
    let mut sim = Sim {
        now: Duration::ZERO,
        nodes: Vec::with_capacity(n),
        dead: vec![false; n],
        queue: BinaryHeap::new(),
        seq: 0,
        rng: SmallRng::seed_from_u64(n as u64),
        loss: 0.0,
        rt: Rt::default(),
        packets: 0,
        bytes: 0,
        downs: Vec::new(),
    };
    let id = |i: usize| Small {
        idx: u32::try_from(i).unwrap_or(u32::MAX),
        generation: 1,
    };
    // Warm start: everyone knows everyone alive, nothing to disseminate; each member's
    // timers start at a random phase of the probe interval.
    for i in 0..n {
        let mut foca = Foca::new(
            id(i),
            config.clone(),
            SmallRng::seed_from_u64((n as u64) << 20 | i as u64),
            PostcardCodec,
        );
        let others = (0..n).filter(|&j| j != i).map(|j| Member::alive(id(j)));
        let _ = foca.apply_many(others, false, &mut sim.rt);
        sim.nodes.push(foca);
        let offset = Duration::from_nanos(sim.rng.random_range(0..probe.as_nanos() as u64));
        sim.route(id(i).idx, offset);
        if i % 1000 == 999 {
            eprintln!(
                "n={n}: {} members warm (wall {:.0?})",
                i + 1,
                wall.elapsed()
            );
        }
    }
    let warm = wall.elapsed();
    sim.downs.clear();

    // Steady state: traffic.
    let (p0, b0) = (sim.packets, sim.bytes);
    sim.run_for(STEADY);
    let per = n as f64 * STEADY.as_secs_f64();
    let msgs = (sim.packets - p0) as f64 / per;
    let bytes = (sim.bytes - b0) as f64 / per;
    eprintln!("n={n}: steady done (wall {:.0?})", wall.elapsed());

    // 5% loss: nobody is dead, so every Down is false.
    sim.loss = LOSS;
    sim.run_for(LOSSY);
    sim.loss = 0.0;
    let false_downs = sim.downs.len();
    eprintln!(
        "n={n}: lossy done, {false_downs} false Down (wall {:.0?})",
        wall.elapsed()
    );
    sim.run_for(Duration::from_secs(10));
    sim.downs.clear();

    let mut times = Vec::new();
    let mut expected = 0;
    let mut worst_kill = Duration::ZERO;
    for k in 0..KILLS.min(n / 2) {
        let victim = n / 2 + k;
        sim.dead[victim] = true;
        let survivors = sim.dead.iter().filter(|d| !**d).count();
        expected += survivors;
        let killed_at = sim.now;
        let mut seen = vec![false; n];
        let mut count = 0;
        let limit = killed_at + Duration::from_secs(60);
        while count < survivors && sim.now < limit {
            if !sim.step() {
                break;
            }
            for (obs, down, at) in sim.downs.drain(..) {
                let obs = obs as usize;
                if down as usize == victim && !seen[obs] && !sim.dead[obs] {
                    seen[obs] = true;
                    count += 1;
                    times.push(at - killed_at);
                }
            }
        }
        let took = sim.now - killed_at;
        worst_kill = worst_kill.max(took);
        eprintln!(
            "n={n}: kill {k}: declared by {count}/{survivors} within {} (wall {:.0?})",
            secs(Some(took)),
            wall.elapsed()
        );
        sim.run_for(Duration::from_secs(5));
        sim.downs.clear();
    }
    times.sort();
    Row {
        n,
        warm,
        msgs,
        bytes,
        false_downs,
        times,
        expected,
        worst_kill,
        wall: wall.elapsed(),
    }
}
