//! An in-memory network with a simulated clock, driving many [`Pool`]s in one thread: the
//! same protocol code as over UDP, with configurable latency, loss and partitions, and no
//! real time passing (a minute of pool life takes as long as its messages take to process).
//! Used by the unit tests and by `concord-bench`'s `gossip_sim`.
//!
//! It is a discrete-event simulation: deliveries and pool deadlines sit in one time-ordered
//! queue; [`SimNetwork::run_for`] pops them in order, advancing the clock to each.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rand010::rngs::SmallRng;
use rand010::{RngExt, SeedableRng};

use super::pool::{Output, Pool};
use super::{Config, GossipError, MemberEvent, MetaInterner};

/// Network behaviour.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// One-way latency of every message.
    pub latency: Duration,
    /// Extra uniformly random one-way latency, up to this much.
    pub jitter: Duration,
    /// Probability that a UDP datagram is lost (TCP push-pull is reliable).
    pub loss: f64,
    /// Seed of all randomness (network and pools): runs are reproducible.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            latency: Duration::from_millis(1),
            jitter: Duration::from_millis(1),
            loss: 0.0,
            seed: 1,
        }
    }
}

/// Per-node traffic, counted by the network (what actually left the node).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// UDP datagrams sent.
    pub packets: u64,
    /// Bytes of UDP datagrams sent.
    pub bytes: u64,
    /// Push-pull frames sent (requests and answers).
    pub streams: u64,
    /// Bytes of push-pull frames sent.
    pub stream_bytes: u64,
}

enum Delivery {
    Packet { from: SocketAddr, data: Vec<u8> },
    StreamRequest { from: usize, data: Vec<u8> },
    StreamReply { data: Vec<u8> },
    Wake,
}

struct Scheduled {
    at: Duration,
    seq: u64,
    node: usize,
    what: Delivery,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Decides whether traffic from one node index to another gets through (partitions).
pub type LinkFilter = Box<dyn Fn(usize, usize) -> bool>;
/// Observes every [`MemberEvent`]: (node index, simulated time, event).
pub type EventHook = Box<dyn FnMut(usize, Duration, &MemberEvent)>;

/// Many pools on one simulated network. Node `i` has address `10.x.y.z:8301` (distinct per
/// node) and config `config(i)`.
pub struct SimNetwork {
    now: Duration,
    nodes: Vec<Option<Pool>>,
    addrs: HashMap<SocketAddr, usize>,
    node_addrs: Vec<SocketAddr>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    wake_at: Vec<Option<Duration>>,
    seq: u64,
    rng: SmallRng,
    net: SimConfig,
    link: Option<LinkFilter>,
    hook: Option<EventHook>,
    traffic: Vec<Traffic>,
    generations: Vec<u32>,
    /// One copy of each member's metadata for all the pools (see [`MetaInterner`]).
    interner: Arc<MetaInterner>,
}

impl SimNetwork {
    /// An empty network.
    pub fn new(net: SimConfig) -> SimNetwork {
        SimNetwork {
            now: Duration::ZERO,
            nodes: Vec::new(),
            addrs: HashMap::new(),
            node_addrs: Vec::new(),
            queue: BinaryHeap::new(),
            wake_at: Vec::new(),
            seq: 0,
            rng: SmallRng::seed_from_u64(net.seed),
            net,
            link: None,
            hook: None,
            traffic: Vec::new(),
            generations: Vec::new(),
            interner: Arc::default(),
        }
    }

    /// The simulated address of node `i`.
    pub fn addr_of(i: usize) -> SocketAddr {
        let i = i as u32 + 1;
        let ip = Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8);
        SocketAddr::new(IpAddr::V4(ip), 8301)
    }

    /// Adds a node (not joined to anyone yet); returns its index. `config.advertise` is
    /// replaced by the node's simulated address.
    pub fn add_node(&mut self, mut config: Config) -> Result<usize, GossipError> {
        let i = self.nodes.len();
        let addr = Self::addr_of(i);
        config.advertise = addr;
        config.meta_interner = Some(self.interner.clone());
        let seed = self.net.seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
        let pool = Pool::new(config, 1, seed, self.now)?;
        self.nodes.push(Some(pool));
        self.addrs.insert(addr, i);
        self.node_addrs.push(addr);
        self.wake_at.push(None);
        self.traffic.push(Traffic::default());
        self.generations.push(1);
        self.after_call(i);
        Ok(i)
    }

    /// Restarts node `i` as a new process (new generation, empty state) with `config`.
    pub fn restart(&mut self, i: usize, mut config: Config) -> Result<(), GossipError> {
        config.advertise = Self::addr_of(i);
        config.meta_interner = Some(self.interner.clone());
        self.generations[i] += 1;
        let seed = self.net.seed.wrapping_mul(7_000_003).wrapping_add(i as u64);
        self.nodes[i] = Some(Pool::new(config, self.generations[i], seed, self.now)?);
        self.after_call(i);
        Ok(())
    }

    /// Starts every live node as a member of one converged pool of all of them (see
    /// [`Pool::warm_start`]): what a join storm ends in, without its cost. Member events
    /// this produces (every node's `Join` of every other) go to the event hook, if set.
    pub fn warm_start(&mut self) {
        self.warm_start_first(self.nodes.len());
    }

    /// As [`SimNetwork::warm_start`], for nodes `0..count` only: they start as one converged
    /// pool of themselves, and the others still know only themselves (to join it, say all
    /// at once: a join storm into a pool that already has `count` members).
    pub fn warm_start_first(&mut self, count: usize) {
        let count = count.min(self.nodes.len());
        let view: Vec<_> = self.nodes[..count]
            .iter()
            .flatten()
            .map(|p| p.local_meta().clone())
            .collect();
        for i in 0..count {
            self.with_pool(i, |p, now| p.warm_start(&view, now));
        }
    }

    /// Current simulated time.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Number of nodes ever added (killed ones included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node was added.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s pool, unless killed.
    pub fn pool(&self, i: usize) -> Option<&Pool> {
        self.nodes.get(i)?.as_ref()
    }

    /// Calls `f` on node `i`'s pool (at the current simulated time), then routes what it
    /// produced.
    pub fn with_pool<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Pool, Duration) -> R,
    ) -> Option<R> {
        let now = self.now;
        let out = f(self.nodes.get_mut(i)?.as_mut()?, now);
        self.after_call(i);
        Some(out)
    }

    /// Kills node `i` abruptly (no leave): its packets vanish from now on.
    pub fn kill(&mut self, i: usize) {
        if let Some(slot) = self.nodes.get_mut(i) {
            *slot = None;
        }
    }

    /// Sets the link filter: traffic from `a` to `b` passes only if `filter(a, b)`.
    pub fn set_link_filter(&mut self, filter: Option<LinkFilter>) {
        self.link = filter;
    }

    /// Sets the UDP loss probability from now on.
    pub fn set_loss(&mut self, loss: f64) {
        self.net.loss = loss;
    }

    /// Installs an observer of every member event.
    pub fn set_event_hook(&mut self, hook: Option<EventHook>) {
        self.hook = hook;
    }

    /// Per-node traffic counters so far.
    pub fn traffic(&self) -> &[Traffic] {
        &self.traffic
    }

    /// Runs the simulation for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at > end {
                break;
            }
            let Some(Reverse(s)) = self.queue.pop() else {
                break;
            };
            self.now = self.now.max(s.at);
            self.deliver(s);
        }
        self.now = end;
    }

    /// Runs until `done(self)` holds (checked every `step`) or `limit` elapses; returns the
    /// simulated time it took, or `None` on timeout.
    pub fn run_until(
        &mut self,
        limit: Duration,
        step: Duration,
        mut done: impl FnMut(&SimNetwork) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        loop {
            if done(self) {
                return Some(self.now - start);
            }
            if self.now - start >= limit {
                return None;
            }
            self.run_for(step);
        }
    }

    fn push(&mut self, at: Duration, node: usize, what: Delivery) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            node,
            what,
        }));
    }

    fn latency(&mut self) -> Duration {
        let jitter = self.net.jitter.as_nanos() as u64;
        let extra = if jitter == 0 {
            0
        } else {
            self.rng.random_range(0..jitter)
        };
        self.net.latency + Duration::from_nanos(extra)
    }

    fn passes(&self, from: usize, to: usize) -> bool {
        self.link.as_ref().is_none_or(|f| f(from, to))
    }

    fn deliver(&mut self, s: Scheduled) {
        let now = self.now;
        let i = s.node;
        let Some(Some(pool)) = self.nodes.get_mut(i) else {
            return;
        };
        match s.what {
            Delivery::Wake => {
                if self.wake_at[i] == Some(s.at) {
                    self.wake_at[i] = None;
                }
                pool.tick(now);
            }
            Delivery::Packet { from, data } => pool.handle_packet(from, &data, now),
            Delivery::StreamRequest { from, data } => {
                if let Some(reply) = pool.handle_stream(&data, now) {
                    self.traffic[i].streams += 1;
                    self.traffic[i].stream_bytes += reply.len() as u64;
                    if self.passes(i, from) {
                        let at = now + self.latency();
                        self.push(at, from, Delivery::StreamReply { data: reply });
                    }
                }
            }
            Delivery::StreamReply { data } => {
                let _ = pool.handle_stream(&data, now);
            }
        }
        self.after_call(i);
    }

    /// Routes node `i`'s outputs and schedules its next wake-up.
    fn after_call(&mut self, i: usize) {
        let now = self.now;
        loop {
            let Some(Some(pool)) = self.nodes.get_mut(i) else {
                return;
            };
            let Some(out) = pool.poll_output() else { break };
            match out {
                Output::Packet { to, data } => {
                    self.traffic[i].packets += 1;
                    self.traffic[i].bytes += data.len() as u64;
                    let Some(&j) = self.addrs.get(&to) else {
                        continue;
                    };
                    if !self.passes(i, j) || self.rng.random_bool(self.net.loss.clamp(0.0, 1.0)) {
                        continue;
                    }
                    let at = now + self.latency();
                    let from = self.node_addrs[i];
                    self.push(at, j, Delivery::Packet { from, data });
                }
                Output::Stream { to, data } => {
                    self.traffic[i].streams += 1;
                    self.traffic[i].stream_bytes += data.len() as u64;
                    let Some(&j) = self.addrs.get(&to) else {
                        continue;
                    };
                    if !self.passes(i, j) {
                        continue;
                    }
                    let at = now + self.latency();
                    self.push(at, j, Delivery::StreamRequest { from: i, data });
                }
                Output::Event(event) => {
                    if let Some(hook) = self.hook.as_mut() {
                        hook(i, now, &event);
                    }
                }
            }
        }
        let Some(Some(pool)) = self.nodes.get(i) else {
            return;
        };
        if let Some(at) = pool.next_deadline() {
            if self.wake_at[i].is_none_or(|w| at < w) {
                self.wake_at[i] = Some(at);
                self.push(at.max(now), i, Delivery::Wake);
            }
        }
    }
}
