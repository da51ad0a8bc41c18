//! The sans-IO core: one member's state and protocol logic, driven by whoever owns the
//! sockets and the clock (see [`super::driver`] and [`super::memory`]).
//!
//! A driver feeds it received UDP packets ([`Pool::handle_packet`]), TCP push-pull frames
//! ([`Pool::handle_stream`]) and the passing of time ([`Pool::tick`] at
//! [`Pool::next_deadline`]), and drains [`Output`]s: packets and frames to send, and
//! [`MemberEvent`]s. Time is a `Duration` since any fixed epoch the driver picks (real or
//! simulated): the pool never reads a clock.

use std::cmp::Reverse;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU8, NonZeroUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use foca::{
    BroadcastHandler, Foca, Identity as _, Invalidates, OwnedNotification, PostcardCodec, Runtime,
    Timer,
};
use rand010::rngs::SmallRng;
use rand010::seq::IteratorRandom;
use rand010::{RngExt, SeedableRng};

use super::coordinate::{self, Coordinate, DIMENSIONS};
use super::crypto::{self, Keyring};
use super::id::Id;
use super::table::{Addr, Entry, Table};
use super::wire::{self, Digest, Frame, Item, Meta, Packet, State, MAX_PACKET, MAX_STREAM};
use super::{
    Config, EventFilters, GossipError, KeyStatus, Member, MemberEvent, MemberStatus, UserEvent,
    USER_EVENT_SIZE_LIMIT,
};

/// What the driver must do after calling into the pool.
#[derive(Debug)]
pub enum Output {
    /// Send this UDP datagram.
    Packet { to: SocketAddr, data: Vec<u8> },
    /// Open a TCP connection to `to`, send this push-pull frame, and feed the answer frame to
    /// [`Pool::handle_stream`].
    Stream { to: SocketAddr, data: Vec<u8> },
    /// Tell subscribers.
    Event(MemberEvent),
}

/// Traffic and drop counters (what the agent can expose as metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// UDP datagrams sent.
    pub packets_sent: u64,
    /// Bytes in UDP datagrams sent (after encryption).
    pub bytes_sent: u64,
    /// UDP datagrams received.
    pub packets_received: u64,
    /// Push-pull frames sent (requests and answers).
    pub streams_sent: u64,
    /// Bytes in push-pull frames sent.
    pub stream_bytes_sent: u64,
    /// Packets or frames no installed key could decrypt (wrong key, or plaintext).
    pub dropped_undecryptable: u64,
    /// Packets or frames that decrypted but did not parse (garbled or hostile).
    pub dropped_invalid: u64,
}

type Swim = Foca<Id, PostcardCodec, SmallRng, Handler>;

/// Bytes our packet framing and encryption add around a foca message; foca must keep its
/// messages this much under [`MAX_PACKET`].
const FRAMING: usize = crypto::OVERHEAD + 8;
/// Direct pings sent to a member foca declared down before we report it Failed.
const VERIFY_PINGS: usize = 3;
/// Pending RTT pings remembered (older ones are forgotten: their acks are ignored).
const MAX_PENDING_PINGS: usize = 16;
/// Broadcast ids remembered for de-duplication of user events and force-leaves.
const SEEN_CAPACITY: usize = 8192;
/// Output queue capacity kept between bursts.
const OUTPUTS_KEPT: usize = 64;
/// Members that, on average, probe a suspect as soon as they hear of its suspicion (foca
/// patch 4, `DynamicSuspicion::probers`). A dead member needs `suspicion_mult - 2` = 2
/// confirmations to be declared at the minimum timeout; six directed probes (Poisson) give
/// at least two 98 % of the time, within a probe period or two, where the round-robin
/// alone brings about one probe of a given member a second and left one kill in ten
/// waiting 5+ s for its second (docs/benchmarks.md). The cost is six probes per suspicion,
/// whatever the pool's size.
const SUSPECT_PROBERS: u8 = 6;
/// Random draws from the member table before scanning it for a member in some status.
const RANDOM_DRAWS: usize = 8;

/// foca's [`Runtime`]: collects what foca wants done; [`Pool::drain`] then does it.
#[derive(Default)]
struct Rt {
    sends: Vec<(Id, Vec<u8>)>,
    timers: Vec<(Duration, Timer<Id>)>,
    notes: Vec<OwnedNotification<Id>>,
}

impl Runtime<Id> for Rt {
    fn notify(&mut self, notification: foca::Notification<'_, Id>) {
        self.notes.push(notification.to_owned());
    }

    fn send_to(&mut self, to: Id, data: &[u8]) {
        self.sends.push((to, data.to_vec()));
    }

    fn submit_after(&mut self, event: Timer<Id>, after: Duration) {
        self.timers.push((after, event));
    }
}

/// The key foca uses to decide which pending broadcasts supersede which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    /// A member's metadata: a newer version replaces an older one still in flight.
    Meta { name: u64, version: u64 },
    /// Something delivered once (user event, force-leave).
    Once(u64),
}

impl Invalidates for Key {
    fn invalidates(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Key::Meta {
                    name: a,
                    version: va,
                },
                Key::Meta {
                    name: b,
                    version: vb,
                },
            ) => a == b && va >= vb,
            (Key::Once(a), Key::Once(b)) => a == b,
            _ => false,
        }
    }

    // Only keys with the same name (metadata) or id (once) invalidate each other, so foca's
    // backlog skips its scan when no queued key shares the hash (see vendor/foca/PATCH.md).
    fn bucket(&self) -> Option<u64> {
        Some(match self {
            Key::Meta { name, .. } => *name,
            Key::Once(key) => *key,
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("undecodable broadcast")]
struct BadBroadcast;

/// What the broadcast handler hands the pool. foca owns its handler and has no getter for
/// it, so the two share this; the mutex is never contended (one pool is used by one task at a
/// time) and exists only so that [`Pool`] stays `Send`.
#[derive(Default)]
struct Inbox {
    items: Vec<Item>,
    versions: HashMap<u64, u64>,
    seen: HashSet<u64>,
    seen_order: VecDeque<u64>,
}

impl Inbox {
    /// Records `key`; false if it was already seen. Bounded: the oldest ids are forgotten
    /// (an event that old has long stopped being retransmitted).
    fn first_time(&mut self, key: u64) -> bool {
        if !self.seen.insert(key) {
            return false;
        }
        self.seen_order.push_back(key);
        if self.seen_order.len() > SEEN_CAPACITY {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

fn lock(inbox: &Mutex<Inbox>) -> MutexGuard<'_, Inbox> {
    // A panic while holding this lock cannot leave the inbox inconsistent in a way that
    // matters (worst case: an item is delivered twice), so poisoning is ignored.
    inbox.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn hash_of(value: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

struct Handler {
    inbox: Arc<Mutex<Inbox>>,
}

impl BroadcastHandler<Id> for Handler {
    type Key = Key;
    type Error = BadBroadcast;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&Id>,
    ) -> Result<Option<Key>, BadBroadcast> {
        let item: Item = wire::decode(data).ok_or(BadBroadcast)?;
        let mut inbox = lock(&self.inbox);
        let key = match &item {
            Item::Meta(m) => {
                let name = hash_of(&m.name);
                if inbox.versions.get(&name).is_some_and(|v| *v >= m.version) {
                    return Ok(None);
                }
                inbox.versions.insert(name, m.version);
                Key::Meta {
                    name,
                    version: m.version,
                }
            }
            Item::Event(e) => {
                let key = hash_of((&e.origin, e.id));
                if !inbox.first_time(key) {
                    return Ok(None);
                }
                Key::Once(key)
            }
            Item::ForceLeave { name, nonce, .. } => {
                let key = hash_of((name, nonce));
                if !inbox.first_time(key) {
                    return Ok(None);
                }
                Key::Once(key)
            }
        };
        // Our own broadcasts (sender None) are applied by the pool directly.
        if sender.is_some() {
            inbox.items.push(item);
        }
        Ok(Some(key))
    }
}

#[derive(Debug)]
enum Task {
    Swim(Timer<Id>),
    Verify(Addr),
    Recheck(Addr),
    Ping,
    /// The RTT ping with this sequence number is due an answer (see [`Pool::ping_due`]).
    PingDue(u32),
    PushPull,
    Reconnect,
    /// A member we listed failed just exchanged state with us: try another failed member
    /// soon rather than at the next reconnect tick (see [`Pool::reconnect_soon`]).
    ReconnectSoon,
    Reap,
}

/// A scheduled task; ordered by time, then by scheduling order.
struct Due {
    at: Duration,
    seq: u64,
    task: Task,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// One member of a gossip pool, sans IO. See the module docs.
pub struct Pool {
    config: Config,
    swim: Swim,
    swim_config: foca::Config,
    rt: Rt,
    inbox: Arc<Mutex<Inbox>>,
    keyring: Keyring,
    local: Meta,
    /// The other members.
    members: Table,
    /// Members foca reports up.
    alive: usize,
    /// Members listed by status (kept in step by [`Pool::tally`]), so that counting them
    /// costs nothing at 10,000 members.
    listed_alive: usize,
    listed_failed: usize,
    listed_left: usize,
    /// A [`Task::ReconnectSoon`] is scheduled.
    reconnect_soon: bool,
    tasks: BinaryHeap<Reverse<Due>>,
    task_seq: u64,
    outputs: VecDeque<Output>,
    events: VecDeque<UserEvent>,
    event_clock: u64,
    coord: coordinate::Client,
    coords: HashMap<String, Coordinate>,
    pings: VecDeque<(u32, SocketAddr, Duration)>,
    checks: VecDeque<(u32, Addr)>,
    ping_seq: u32,
    rng: SmallRng,
    stats: Stats,
    now: Duration,
    stopped: bool,
}

impl Pool {
    /// A pool member that knows only itself. `generation` must grow across restarts of the
    /// same node (drivers use seconds since the epoch) so that a restart replaces the old
    /// incarnation; `seed` seeds its randomness; `now` is the driver's clock.
    pub fn new(
        config: Config,
        generation: u32,
        seed: u64,
        now: Duration,
    ) -> Result<Pool, GossipError> {
        validate(&config.timing)?;
        let keyring = Keyring::new(&config.keys)?;
        let id = Id::new(config.advertise, generation);
        let swim_config = swim_config(&config, 1);
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let swim = Foca::with_custom_broadcast(
            id,
            swim_config.clone(),
            SmallRng::seed_from_u64(seed),
            PostcardCodec,
            Handler {
                inbox: inbox.clone(),
            },
        );
        let local = Meta {
            id,
            name: config.node_name.clone(),
            version: u64::from(generation) << 24,
            tags: config.tags.clone(),
            leaving: false,
            keys: keyring.fingerprints(),
        };
        let mut pool = Pool {
            swim,
            swim_config,
            rt: Rt::default(),
            inbox,
            keyring,
            local,
            members: Table::default(),
            alive: 0,
            listed_alive: 0,
            listed_failed: 0,
            listed_left: 0,
            reconnect_soon: false,
            tasks: BinaryHeap::new(),
            task_seq: 0,
            outputs: VecDeque::new(),
            events: VecDeque::new(),
            event_clock: 0,
            coord: coordinate::Client::default(),
            coords: HashMap::new(),
            pings: VecDeque::new(),
            checks: VecDeque::new(),
            ping_seq: 0,
            rng: SmallRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
            stats: Stats::default(),
            now,
            stopped: false,
            config,
        };
        pool.broadcast_meta()?;
        // Random first ticks, as memberlist staggers them: members started together (a
        // join storm, a fleet restart) must not all push-pull in the same instant.
        let timing = pool.config.timing.clone();
        let ping_at = pool.stagger(timing.probe_interval);
        pool.schedule(ping_at, Task::Ping);
        let push_pull_at = pool.stagger(timing.push_pull_interval);
        pool.schedule(push_pull_at, Task::PushPull);
        let reconnect_at = pool.stagger(timing.reconnect_interval);
        pool.schedule(reconnect_at, Task::Reconnect);
        pool.schedule(timing.probe_interval * 5, Task::Reap);
        Ok(pool)
    }

    // ----- queries -----

    /// This member's SWIM identity.
    pub fn id(&self) -> Id {
        self.local.id
    }

    /// This member, as others see it.
    pub fn local_member(&self) -> Member {
        Member {
            name: self.local.name.clone(),
            addr: self.local.id.socket(),
            tags: self.local.tags.clone(),
            status: if self.stopped {
                MemberStatus::Left
            } else if self.local.leaving {
                MemberStatus::Leaving
            } else {
                MemberStatus::Alive
            },
        }
    }

    /// Every known member (this one first), in every status until reaped.
    pub fn members(&self) -> Vec<Member> {
        let mut out = vec![self.local_member()];
        out.extend(self.members.iter().filter_map(Entry::member));
        out
    }

    /// Number of other members currently alive (or leaving).
    pub fn alive_count(&self) -> usize {
        self.alive_listed()
    }

    fn alive_listed(&self) -> usize {
        self.listed_alive
    }

    /// The status of the member `name` as this member sees it.
    pub fn status_of(&self, name: &str) -> Option<MemberStatus> {
        if name == self.local.name {
            return Some(self.local_member().status);
        }
        self.members.named(name)?.status()
    }

    /// The most recent user events, oldest first (bounded by `Config::event_ring`).
    pub fn recent_events(&self) -> Vec<UserEvent> {
        self.events.iter().cloned().collect()
    }

    /// This member's network coordinate.
    pub fn coordinate(&self) -> Coordinate {
        self.coord.coordinate().clone()
    }

    /// Coordinates of every member this one has measured (itself included), by name.
    pub fn coordinates(&self) -> Vec<(String, Coordinate)> {
        let mut out = vec![(self.local.name.clone(), self.coordinate())];
        out.extend(self.coords.iter().map(|(n, c)| (n.clone(), c.clone())));
        out
    }

    /// Traffic and drop counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The keyring (read-only; change it with the `*_key` methods so members learn it).
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    // ----- driver interface -----

    /// When [`Pool::tick`] should next be called.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.tasks.peek().map(|Reverse(d)| d.at)
    }

    /// Runs every task due at `now`.
    pub fn tick(&mut self, now: Duration) {
        self.advance(now);
        while self.tasks.peek().is_some_and(|Reverse(d)| d.at <= now) {
            let Some(Reverse(due)) = self.tasks.pop() else {
                break;
            };
            self.run_task(due.task);
        }
    }

    /// The next thing for the driver to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        let out = self.outputs.pop_front();
        if out.is_none() && self.outputs.capacity() > OUTPUTS_KEPT {
            // A join reports every member at once; do not keep room for that many forever.
            self.outputs.shrink_to(OUTPUTS_KEPT);
        }
        out
    }

    /// A UDP datagram arrived from `from`. Anything undecryptable or unparsable is dropped
    /// and counted.
    pub fn handle_packet(&mut self, from: SocketAddr, data: &[u8], now: Duration) {
        self.advance(now);
        self.stats.packets_received += 1;
        if self.stopped || data.len() > MAX_PACKET {
            self.stats.dropped_invalid += 1;
            return;
        }
        let Some(plain) = self.keyring.open(data) else {
            self.stats.dropped_undecryptable += 1;
            return;
        };
        let Some(packet) = wire::decode::<Packet>(&plain) else {
            self.stats.dropped_invalid += 1;
            return;
        };
        match packet {
            Packet::Swim(bytes) => {
                if self.swim.handle_data(&bytes, &mut self.rt).is_err() {
                    self.stats.dropped_invalid += 1;
                }
            }
            Packet::Ping { seq } => {
                let ack = Packet::Ack {
                    seq,
                    name: self.local.name.clone(),
                    coord: self.coordinate(),
                };
                self.send_packet(from, &ack);
            }
            Packet::Ack { seq, name, coord } => self.handle_ack(from, seq, name, coord),
            Packet::MetaRequest => {
                let meta = Packet::Meta(self.local.clone());
                self.send_packet(from, &meta);
            }
            Packet::Meta(meta) => self.apply_meta(meta),
        }
        self.drain();
    }

    /// A push-pull frame arrived (over TCP). Returns the answer to send back when the frame
    /// was a request; `None` for an answer or a bad frame (dropped and counted).
    pub fn handle_stream(&mut self, data: &[u8], now: Duration) -> Option<Vec<u8>> {
        self.advance(now);
        if self.stopped || data.len() > MAX_STREAM {
            self.stats.dropped_invalid += 1;
            return None;
        }
        let Some(plain) = self.keyring.open(data) else {
            self.stats.dropped_undecryptable += 1;
            return None;
        };
        let (state, differ) = match wire::decode::<Frame>(&plain) {
            Some(Frame::State(state)) => (state, false),
            Some(Frame::Differ(state)) => (state, true),
            Some(Frame::Digest(digest)) => return self.handle_digest(digest),
            None => {
                self.stats.dropped_invalid += 1;
                return None;
            }
        };
        // The views differed: the other side gets ours too, one way.
        let push_back = differ
            .then(|| state.metas.first().map(|m| m.id.socket()))
            .flatten();
        let reply = state.reply;
        // Its own metadata comes first.
        let from_failed = state
            .metas
            .first()
            .is_some_and(|m| self.status_of(&m.name) == Some(MemberStatus::Failed));
        self.merge(state);
        if from_failed {
            self.reconnect_soon();
        }
        if let Some(to) = push_back {
            if let Some(data) = self.state_frame(true) {
                self.outputs.push_back(Output::Stream { to, data });
            }
            return None;
        }
        if reply {
            None
        } else {
            self.state_frame(true)
        }
    }

    /// A push-pull request frame (this member's full view), for a join or a reconnect.
    pub fn push_pull_request(&mut self) -> Option<Vec<u8>> {
        self.state_frame(false)
    }

    /// A periodic push-pull's opening: this member's metadata and a digest of its view.
    /// The other side answers with its digest when the views match (a few hundred bytes
    /// each way, whatever the pool's size), else with its full view ([`Frame::Differ`]),
    /// which this member merges before it sends its own full view back. Unlike memberlist's
    /// push-pull, which sends both full views every time, the steady-state cost does not
    /// grow with the pool; views that differ are repaired on both sides, as before.
    pub(super) fn digest_request(&mut self) -> Option<Vec<u8>> {
        self.seal_frame(&Frame::Digest(self.digest(false)))
    }

    fn digest(&self, reply: bool) -> Digest {
        Digest {
            reply,
            meta: self.local.clone(),
            digest: self.view_digest(),
            event_clock: self.event_clock,
        }
    }

    /// SHA-256 over this member's view in a canonical order: every member's identity and
    /// SWIM state (this member alive), then every member's name, metadata version and
    /// leave intent. Two members that agree on who is in the pool, in which state, with
    /// which metadata, get the same digest. Incarnations are left out: foca does not expose
    /// this member's own, and a newer incarnation with the same state changes nothing the
    /// pool reports.
    pub(super) fn view_digest(&self) -> [u8; 32] {
        use sha2::{Digest as _, Sha256};
        let mut members: Vec<(Id, u8)> = self
            .swim
            .iter_membership_state()
            .map(|m| (*m.id(), swim_state_code(m.state())))
            .collect();
        members.push((self.local.id, 0));
        members.sort_unstable();
        let mut metas: Vec<(&str, u64, bool)> = self
            .members
            .iter()
            .filter_map(|e| e.meta.as_deref())
            .chain(std::iter::once(&self.local))
            .map(|m| (m.name.as_str(), m.version, m.leaving))
            .collect();
        metas.sort_unstable();
        let mut hasher = Sha256::new();
        hasher.update(wire::encode(&(members, metas)));
        hasher.finalize().into()
    }

    /// A digest arrived: the opening of another member's periodic sync, or the answer to
    /// ours. Returns the answer to an opening: our digest when the views match, else our
    /// full view.
    fn handle_digest(&mut self, digest: Digest) -> Option<Vec<u8>> {
        let from_failed = self.status_of(&digest.meta.name) == Some(MemberStatus::Failed);
        self.apply_meta(digest.meta);
        self.event_clock = self.event_clock.max(digest.event_clock);
        self.drain();
        if from_failed {
            self.reconnect_soon();
        }
        if digest.reply {
            None
        } else if digest.digest == self.view_digest() {
            self.seal_frame(&Frame::Digest(self.digest(true)))
        } else {
            let state = self.state(true);
            self.seal_frame(&Frame::Differ(state))
        }
    }

    /// Starts joining through `seeds`: a push-pull request to each (as [`Output::Stream`]) and
    /// a SWIM announce. Returns how many were asked.
    pub fn join(&mut self, seeds: &[SocketAddr], now: Duration) -> usize {
        self.advance(now);
        let mut asked = 0;
        for seed in seeds {
            if *seed == self.local.id.socket() {
                continue;
            }
            if let Some(data) = self.push_pull_request() {
                self.outputs.push_back(Output::Stream { to: *seed, data });
                asked += 1;
            }
            self.announce(*seed);
        }
        self.drain();
        asked
    }

    /// Sends a SWIM announce to `seed` (whose identity we do not know yet: foca accepts an
    /// announce addressed to any generation of its address).
    pub fn announce(&mut self, seed: SocketAddr) {
        if seed != self.local.id.socket() {
            // An error here means "that is us"; nothing to do.
            let _ = self.swim.announce(Id::new(seed, 0), &mut self.rt);
            self.drain();
        }
    }

    // ----- operations -----

    /// Replaces this member's tags; the pool learns them by gossip.
    pub fn set_tags(&mut self, tags: BTreeMap<String, String>) -> Result<(), GossipError> {
        let old = std::mem::replace(&mut self.local.tags, tags);
        if let Err(e) = self.broadcast_meta() {
            self.local.tags = old;
            return Err(e);
        }
        Ok(())
    }

    /// Fires a user event to the whole pool (delivered locally at once too).
    pub fn fire_event(
        &mut self,
        name: &str,
        payload: Vec<u8>,
        filters: EventFilters,
        now: Duration,
    ) -> Result<UserEvent, GossipError> {
        self.advance(now);
        if name.is_empty() {
            return Err(GossipError::EmptyEventName);
        }
        let size = name.len() + payload.len();
        if size > USER_EVENT_SIZE_LIMIT {
            return Err(GossipError::EventTooLarge(size));
        }
        let event = UserEvent {
            id: self.rng.random(),
            name: name.to_string(),
            payload,
            filters,
            ltime: self.event_clock,
            origin: self.local.name.clone(),
        };
        self.add_broadcast(&Item::Event(event.clone()))?;
        self.deliver_event(event.clone());
        self.drain();
        Ok(event)
    }

    /// First half of a graceful leave: announce the intent (others will record Left, not
    /// Failed). Keep driving the pool for a few gossip rounds, then call
    /// [`Pool::leave_cluster`].
    pub fn leave_intent(&mut self, now: Duration) -> Result<(), GossipError> {
        self.advance(now);
        self.local.leaving = true;
        self.broadcast_meta()?;
        // Push it out now rather than at the next gossip tick.
        let _ = self.swim.broadcast(&mut self.rt);
        self.drain();
        Ok(())
    }

    /// Second half of a graceful leave: tell the pool we are gone, and stop.
    pub fn leave_cluster(&mut self, now: Duration) {
        self.advance(now);
        let _ = self.swim.leave_cluster(&mut self.rt);
        self.drain();
        self.stopped = true;
        self.tasks.clear();
    }

    /// Marks a failed member Left everywhere (Consul `force-leave`); with `prune`, it is also
    /// forgotten. An alive member is not affected (as in Serf, it would refute).
    pub fn force_leave(
        &mut self,
        name: &str,
        prune: bool,
        now: Duration,
    ) -> Result<(), GossipError> {
        self.advance(now);
        if self.members.named(name).is_none() {
            return Err(GossipError::UnknownMember(name.to_string()));
        }
        let item = Item::ForceLeave {
            name: name.to_string(),
            prune,
            nonce: self.rng.random(),
        };
        self.add_broadcast(&item)?;
        self.apply_force_leave(name, prune);
        self.drain();
        Ok(())
    }

    /// Installs a gossip key (decrypts at once; encrypts once used).
    pub fn install_key(&mut self, key: &str) -> Result<(), GossipError> {
        let before = self.keyring.clone();
        self.keyring.install(key)?;
        self.keys_changed(before)
    }

    /// Makes an installed key the primary.
    pub fn use_key(&mut self, key: &str) -> Result<(), GossipError> {
        let before = self.keyring.clone();
        self.keyring.use_key(key)?;
        self.keys_changed(before)
    }

    /// Removes a key (not the primary).
    pub fn remove_key(&mut self, key: &str) -> Result<(), GossipError> {
        let before = self.keyring.clone();
        self.keyring.remove(key)?;
        self.keys_changed(before)
    }

    /// Replaces the whole keyring with `keys` (base64, primary first), in one step: a
    /// keyring state carried from another member is applied as a unit, so no intermediate
    /// state (a key removed before the new primary is in use) is ever advertised. An empty
    /// list is refused: it would turn encryption off and split this member from the pool.
    pub fn set_keys(&mut self, keys: &[String]) -> Result<(), GossipError> {
        if keys.is_empty() {
            return Err(GossipError::BadKey("the keyring cannot be empty".into()));
        }
        let next = Keyring::new(keys)?;
        let before = std::mem::replace(&mut self.keyring, next);
        self.keys_changed(before)
    }

    /// Installed keys with how many alive members hold each and how many use each as their
    /// primary (from the key fingerprints every member advertises, primary first; best
    /// effort, as gossip is eventually consistent).
    pub fn list_keys(&self) -> Vec<KeyStatus> {
        let alive = self.alive_metas();
        let primary = self.keyring.primary();
        self.keyring
            .keys()
            .into_iter()
            .map(|key| {
                let fp = Keyring::fingerprint_of(&key).unwrap_or_default();
                let holders = alive.iter().filter(|m| m.keys.contains(&fp)).count();
                let others_primary = alive.iter().filter(|m| m.keys.first() == Some(&fp));
                let is_primary = primary.as_deref() == Some(key.as_str());
                KeyStatus {
                    primary: is_primary,
                    key,
                    members: holders + 1,
                    primaries: others_primary.count() + usize::from(is_primary),
                    total: alive.len() + 1,
                }
            })
            .collect()
    }

    /// Every alive member (this one first) with the key fingerprints it advertises, its
    /// primary first: what a keyring change waits on until each member reports the new state.
    pub fn member_keys(&self) -> Vec<(String, Vec<u64>)> {
        let mut out = vec![(self.local.name.clone(), self.keyring.fingerprints())];
        out.extend(
            self.alive_metas()
                .into_iter()
                .map(|m| (m.name.clone(), m.keys.clone())),
        );
        out
    }

    /// Metadata of the other members that are alive (or still leaving).
    fn alive_metas(&self) -> Vec<&Meta> {
        self.members
            .iter()
            .filter(|e| {
                matches!(
                    e.status(),
                    Some(MemberStatus::Alive | MemberStatus::Leaving)
                )
            })
            .filter_map(|e| e.meta.as_deref())
            .collect()
    }

    // ----- internals -----

    fn advance(&mut self, now: Duration) {
        self.now = self.now.max(now);
    }

    fn keys_changed(&mut self, before: Keyring) -> Result<(), GossipError> {
        self.local.keys = self.keyring.fingerprints();
        if let Err(e) = self.broadcast_meta() {
            self.keyring = before;
            self.local.keys = self.keyring.fingerprints();
            return Err(e);
        }
        Ok(())
    }

    /// A random duration in `[0, max)`.
    fn stagger(&mut self, max: Duration) -> Duration {
        max.mul_f64(self.rng.random::<f64>())
    }

    fn schedule(&mut self, after: Duration, task: Task) {
        self.task_seq += 1;
        self.tasks.push(Reverse(Due {
            at: self.now.saturating_add(after),
            seq: self.task_seq,
            task,
        }));
    }

    fn run_task(&mut self, task: Task) {
        if self.stopped {
            return;
        }
        match task {
            Task::Swim(timer) => {
                let _ = self.swim.handle_timer(timer, &mut self.rt);
            }
            Task::Verify(addr) => self.verify_due(addr),
            Task::Recheck(addr) => {
                if let Some((id, _)) = self
                    .members
                    .get(addr)
                    .and_then(|e| e.verifying.as_deref().copied())
                {
                    self.send_checks(addr, id.socket());
                    self.schedule(self.config.timing.probe_timeout, Task::Verify(addr));
                }
            }
            Task::Ping => {
                self.send_ping();
                self.schedule(self.config.timing.probe_interval, Task::Ping);
            }
            Task::PingDue(seq) => self.ping_due(seq),
            Task::PushPull => {
                self.periodic_push_pull();
                let every =
                    push_pull_interval(self.config.timing.push_pull_interval, self.alive + 1);
                self.schedule(every, Task::PushPull);
            }
            Task::Reconnect => {
                self.reconnect();
                self.schedule(self.config.timing.reconnect_interval, Task::Reconnect);
            }
            Task::ReconnectSoon => {
                self.reconnect_soon = false;
                if let Some(to) = self.random_member(|e| e.status() == Some(MemberStatus::Failed)) {
                    let now = self.now;
                    self.join(&[to], now);
                }
            }
            Task::Reap => {
                self.reap();
                self.schedule(self.config.timing.probe_interval * 5, Task::Reap);
            }
        }
        self.drain();
    }

    /// Does what foca asked for, then what its notifications and broadcasts imply.
    fn drain(&mut self) {
        loop {
            let sends = std::mem::take(&mut self.rt.sends);
            let timers = std::mem::take(&mut self.rt.timers);
            let notes = std::mem::take(&mut self.rt.notes);
            let items = std::mem::take(&mut lock(&self.inbox).items);
            if sends.is_empty() && timers.is_empty() && notes.is_empty() && items.is_empty() {
                break;
            }
            for (to, data) in sends {
                self.send_packet(to.socket(), &Packet::Swim(data));
            }
            for (after, timer) in timers {
                self.schedule(after, Task::Swim(timer));
            }
            for note in notes {
                self.handle_note(note);
            }
            for item in items {
                match item {
                    Item::Meta(meta) => self.apply_meta(meta),
                    Item::Event(event) => self.deliver_event(event),
                    Item::ForceLeave { name, prune, .. } => self.apply_force_leave(&name, prune),
                }
            }
        }
    }

    fn send_packet(&mut self, to: SocketAddr, packet: &Packet) {
        let Ok(data) = self.keyring.seal(wire::encode(packet)) else {
            return;
        };
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += data.len() as u64;
        self.outputs.push_back(Output::Packet { to, data });
    }

    fn emit(&mut self, event: MemberEvent) {
        self.outputs.push_back(Output::Event(event));
    }

    fn add_broadcast(&mut self, item: &Item) -> Result<(), GossipError> {
        let data = wire::encode(item);
        match self.swim.add_broadcast(&data) {
            Ok(_) => Ok(()),
            Err(_) => Err(GossipError::TooLarge(data.len())),
        }
    }

    fn broadcast_meta(&mut self) -> Result<(), GossipError> {
        self.local.version += 1;
        let item = Item::Meta(self.local.clone());
        self.add_broadcast(&item)
    }

    fn handle_note(&mut self, note: OwnedNotification<Id>) {
        match note {
            OwnedNotification::MemberUp(id) => {
                let entry = self.entry_or_insert(id);
                entry.id = id;
                entry.verifying = None;
                let needs_meta = entry.meta.as_ref().is_none_or(|m| m.id != id);
                self.set_up(id.addr(), true);
                if needs_meta {
                    self.send_packet(id.socket(), &Packet::MetaRequest);
                }
            }
            OwnedNotification::MemberDown(id)
                if self.members.get(id.addr()).is_some_and(|e| e.id == id) =>
            {
                self.verify_down(id);
            }
            OwnedNotification::Rename(_, new) => {
                if let Some(entry) = self.members.get_mut(new.addr()) {
                    entry.id = new;
                }
            }
            OwnedNotification::Rejoin(new) => {
                // We were declared down (say, across a partition) and foca renewed our
                // identity; tell everyone who the new identity is.
                self.local.id = new;
                let _ = self.broadcast_meta();
            }
            _ => {}
        }
    }

    /// Records foca's verdict on a member and reports the visible change.
    fn set_up(&mut self, addr: Addr, up: bool) {
        let now = self.now;
        let Some(entry) = self.members.get_mut(addr) else {
            return;
        };
        if entry.up == Some(up) {
            return;
        }
        let before = entry.status();
        if entry.up == Some(true) {
            self.alive = self.alive.saturating_sub(1);
        }
        if up {
            self.alive += 1;
            entry.forced_left = false;
        }
        entry.up = Some(up);
        entry.set_since(now);
        let after = entry.status();
        let member = entry.member();
        self.transition(before, after, member);
        self.resize();
    }

    fn transition(
        &mut self,
        before: Option<MemberStatus>,
        after: Option<MemberStatus>,
        member: Option<Member>,
    ) {
        use MemberStatus::*;
        self.tally(before, after);
        let Some(member) = member else { return };
        let event = match (before, after) {
            (None | Some(Failed | Left), Some(Alive | Leaving)) => MemberEvent::Join(member),
            (Some(Alive | Leaving), Some(Failed)) => MemberEvent::Failed(member),
            (Some(Alive | Leaving | Failed), Some(Left)) => MemberEvent::Leave(member),
            _ => return,
        };
        self.emit(event);
    }

    /// Keeps foca's dissemination and suspicion scaled to the pool's size, as memberlist does
    /// (retransmissions and suspicion time grow with log n).
    fn resize(&mut self) {
        let wanted = swim_config(&self.config, self.alive + 1);
        let changed = wanted.max_transmissions != self.swim_config.max_transmissions
            || wanted.suspect_to_down_after != self.swim_config.suspect_to_down_after;
        if changed && self.swim.set_config(wanted.clone()).is_ok() {
            self.swim_config = wanted;
        }
    }

    fn apply_meta(&mut self, meta: Meta) {
        let addr = meta.id.addr();
        if meta.name == self.local.name || addr == self.local.id.addr() {
            return;
        }
        // The same name at another address: a restarted node that moved. The newer
        // metadata wins; the old entry is dropped.
        if let Some(old) = self.members.named(&meta.name) {
            let old_addr = old.addr();
            if old_addr != addr {
                let old_version = old.meta.as_ref().map_or(0, |m| m.version);
                if old_version >= meta.version {
                    return;
                }
                self.remove_entry(old_addr);
            }
        }
        {
            let mut inbox = lock(&self.inbox);
            let v = inbox.versions.entry(hash_of(&meta.name)).or_default();
            *v = (*v).max(meta.version);
        }
        let entry = self.entry_or_insert(meta.id);
        if entry
            .meta
            .as_ref()
            .is_some_and(|m| m.version >= meta.version)
        {
            return;
        }
        let before = entry.status();
        let tags_changed = entry.meta.as_ref().is_some_and(|m| m.tags != meta.tags);
        let meta = match &self.config.meta_interner {
            Some(interner) => interner.intern(meta),
            None => Arc::new(meta),
        };
        let Some(entry) = self.members.set_meta(addr, meta) else {
            return;
        };
        let after = entry.status();
        let member = entry.member();
        if before == after && before.is_some() && tags_changed {
            if let Some(m) = member {
                self.emit(MemberEvent::Update(m));
            }
        } else {
            self.transition(before, after, member);
        }
    }

    fn apply_force_leave(&mut self, name: &str, prune: bool) {
        let Some(addr) = self.members.named(name).map(Entry::addr) else {
            return;
        };
        let Some(entry) = self.members.get_mut(addr) else {
            return;
        };
        if entry.up != Some(false) {
            return;
        }
        let before = entry.status();
        entry.forced_left = true;
        let after = entry.status();
        let member = entry.member();
        self.transition(before, after, member);
        if prune {
            if let Some(m) = self.remove_entry(addr) {
                self.emit(MemberEvent::Reap(m));
            }
        }
    }

    /// The entry for `id`'s address, created (unlisted: no metadata, no verdict) if new.
    fn entry_or_insert(&mut self, id: Id) -> &mut Entry {
        self.members.get_or_insert(id, self.now)
    }

    /// Keeps the per-status counts in step with one member's change of status.
    fn tally(&mut self, before: Option<MemberStatus>, after: Option<MemberStatus>) {
        if before == after {
            return;
        }
        for (status, delta) in [(before, false), (after, true)] {
            let counter = match status {
                Some(MemberStatus::Alive | MemberStatus::Leaving) => &mut self.listed_alive,
                Some(MemberStatus::Failed) => &mut self.listed_failed,
                Some(MemberStatus::Left) => &mut self.listed_left,
                None => continue,
            };
            *counter = if delta {
                counter.saturating_add(1)
            } else {
                counter.saturating_sub(1)
            };
        }
    }

    fn remove_entry(&mut self, addr: Addr) -> Option<Member> {
        let entry = self.members.remove(addr)?;
        self.tally(entry.status(), None);
        if entry.up == Some(true) {
            self.alive = self.alive.saturating_sub(1);
        }
        let member = entry.member();
        if let Some(meta) = &entry.meta {
            self.coords.remove(&meta.name);
            self.coord.forget(&meta.name);
        }
        member
    }

    /// Forgets members failed longer than `reconnect_timeout` or left longer than
    /// `tombstone_timeout`.
    fn reap(&mut self) {
        // Unlisted members foca reported down (no metadata yet) are rare; the counts make the
        // common case (nobody failed or left) free.
        if self.listed_failed == 0
            && self.listed_left == 0
            && self.members.len() == self.listed_alive
        {
            return;
        }
        let now = self.now;
        let (reconnect, tombstone) = (self.config.reconnect_timeout, self.config.tombstone_timeout);
        let expired: Vec<Addr> = self
            .members
            .iter()
            .filter(|e| {
                let limit = match e.status() {
                    Some(MemberStatus::Failed) => reconnect,
                    Some(MemberStatus::Left) => tombstone,
                    None if e.up == Some(false) => reconnect,
                    _ => return false,
                };
                now.saturating_sub(e.since()) >= limit
            })
            .map(Entry::addr)
            .collect();
        for addr in expired {
            if let Some(m) = self.remove_entry(addr) {
                self.emit(MemberEvent::Reap(m));
            }
        }
    }

    fn deliver_event(&mut self, event: UserEvent) {
        // Lamport clock: the next local event orders after everything seen.
        self.event_clock = self.event_clock.max(event.ltime.saturating_add(1));
        self.events.push_back(event.clone());
        while self.events.len() > self.config.event_ring.max(1) {
            self.events.pop_front();
        }
        self.emit(MemberEvent::User(event));
    }

    /// A random member foca reports up: a few random draws (O(1) while most members are
    /// up), then a scan.
    fn random_alive(&mut self) -> Option<SocketAddr> {
        self.random_member(|e| e.up == Some(true))
    }

    fn random_member(&mut self, wanted: impl Fn(&Entry) -> bool) -> Option<SocketAddr> {
        for _ in 0..RANDOM_DRAWS {
            match self.members.random(&mut self.rng) {
                None => return None,
                Some(e) if wanted(e) => return Some(e.id.socket()),
                Some(_) => {}
            }
        }
        let rng = &mut self.rng;
        self.members
            .iter()
            .filter(|e| wanted(e))
            .choose(rng)
            .map(|e| e.id.socket())
    }

    /// foca declared `id` down. A member that announced its leave is Left at once; otherwise
    /// we ping it directly a few times before reporting Failed. A second line behind
    /// Lifeguard's confirmations (foca patch 2): under packet loss a single member can
    /// still miss a refutation and time its suspicion out alone; if the member still
    /// answers us, it is not reported (foca's identity renewal brings it back shortly), so
    /// the pool shows no false failure. Costs one probe timeout of detection latency.
    fn verify_down(&mut self, id: Id) {
        let addr = id.addr();
        let Some(entry) = self.members.get_mut(addr) else {
            return;
        };
        let leaving = entry.meta.as_ref().is_some_and(|m| m.leaving) || entry.forced_left;
        if leaving || entry.up != Some(true) {
            self.set_up(addr, false);
            return;
        }
        entry.verifying = Some(Box::new((id, false)));
        self.send_checks(addr, id.socket());
        self.schedule(self.config.timing.probe_timeout, Task::Verify(addr));
    }

    fn send_checks(&mut self, addr: Addr, to: SocketAddr) {
        for _ in 0..VERIFY_PINGS {
            self.ping_seq = self.ping_seq.wrapping_add(1);
            self.checks.push_back((self.ping_seq, addr));
            if self.checks.len() > MAX_PENDING_PINGS * 4 {
                self.checks.pop_front();
            }
            self.send_packet(to, &Packet::Ping { seq: self.ping_seq });
        }
    }

    fn verify_due(&mut self, addr: Addr) {
        let Some(entry) = self.members.get_mut(addr) else {
            return;
        };
        let Some((id, answered)) = entry.verifying.as_deref().copied() else {
            return;
        };
        if answered {
            // Alive after all: keep listing it, and check again later in case foca's view
            // does not recover (it normally does, within a probe interval or two).
            entry.verifying = Some(Box::new((id, false)));
            let again = self.swim_config.suspect_to_down_after;
            self.schedule(again, Task::Recheck(addr));
            return;
        }
        entry.verifying = None;
        self.set_up(addr, false);
    }

    /// Serf's reconnect: with probability `failed / alive` (this member counted alive), push-
    /// pull with and announce to one random failed member. Across the pool that is about one
    /// attempt per failed member per `reconnect_interval`, whatever the pool's size; a member
    /// cut off alone (every other member failed) tries every interval. When the attempt gets
    /// through, each side learns from the other's state that it was declared down, renews
    /// its identity, and the pool is whole again without waiting for the (size-scaled)
    /// periodic push-pull.
    fn reconnect(&mut self) {
        if self.listed_failed == 0 {
            return;
        }
        let probability = self.listed_failed as f64 / (self.listed_alive + 1) as f64;
        if self.rng.random::<f64>() > probability {
            return;
        }
        let Some(to) = self.random_member(|e| e.status() == Some(MemberStatus::Failed)) else {
            return;
        };
        let now = self.now;
        self.join(&[to], now);
    }

    /// A member we listed as failed reached us (or answered us) over push-pull: the network
    /// between us is back. Healing a partition takes a few exchanges (each one that gets
    /// through makes members on both sides learn they were declared down and renew their
    /// identities), so the next one follows a probe interval later instead of a reconnect
    /// interval later, for as long as each exchange reaches another failed member.
    fn reconnect_soon(&mut self) {
        if !self.reconnect_soon && self.listed_failed > 0 {
            self.reconnect_soon = true;
            self.schedule(self.config.timing.probe_interval, Task::ReconnectSoon);
        }
    }

    fn send_ping(&mut self) {
        let Some(to) = self.random_alive() else {
            return;
        };
        self.ping_seq = self.ping_seq.wrapping_add(1);
        self.pings.push_back((self.ping_seq, to, self.now));
        if self.pings.len() > MAX_PENDING_PINGS {
            self.pings.pop_front();
        }
        self.send_packet(to, &Packet::Ping { seq: self.ping_seq });
        self.schedule(self.swim_config.probe_rtt, Task::PingDue(self.ping_seq));
    }

    /// The RTT ping `seq` was sent foca's probe timeout ago. Still unanswered, its target
    /// becomes foca's next probe (foca patch 5, `Foca::probe_next`): a direct probe, then
    /// ping-reqs through others, which raises a suspicion only if all fail. The ping stays
    /// pending, so a late answer still measures the RTT, and a live member just answers
    /// foca's probe too.
    ///
    /// Why: foca's round-robin brings about one probe of a given member a second across
    /// the pool, so a dead member goes unprobed for 4 s about once in 55 kills (e^-4), a
    /// tail that kept a 10,000-member pool from knowing of one kill in 30 for 11.7 s. The RTT
    /// pings reach each member about once a second too; with their failures handed to foca,
    /// a dead member's first probe comes twice as often (no probe in 4 s: about e^-7, one
    /// kill in 1,100), at no cost in packets while members answer. foca takes the request
    /// only if no other directed probe is pending (a suspect's, patch 4, goes first) and it
    /// lists that identity active.
    fn ping_due(&mut self, seq: u32) {
        let Some(&(_, to, _)) = self.pings.iter().find(|(s, _, _)| *s == seq) else {
            // Answered (or forgotten under `MAX_PENDING_PINGS`).
            return;
        };
        // The table's key for that address (any generation); foca gets the identity we list.
        if let Some(entry) = self.members.get(Id::new(to, 0).addr()) {
            self.swim.probe_next(entry.id);
        }
    }

    fn handle_ack(&mut self, from: SocketAddr, seq: u32, name: String, coord: Coordinate) {
        if let Some(pos) = self.checks.iter().position(|(s, _)| *s == seq) {
            if let Some((_, addr)) = self.checks.remove(pos) {
                if let Some((_, answered)) = self
                    .members
                    .get_mut(addr)
                    .and_then(|e| e.verifying.as_deref_mut())
                {
                    *answered = true;
                }
            }
            return;
        }
        let Some(pos) = self
            .pings
            .iter()
            .position(|(s, to, _)| *s == seq && *to == from)
        else {
            return;
        };
        let Some((_, _, sent)) = self.pings.remove(pos) else {
            return;
        };
        // Only members we list get a cached coordinate (bounds the cache by the pool).
        if self.members.named(&name).is_none() {
            return;
        }
        let rtt = self.now.saturating_sub(sent);
        let mut nudge = [0.0; DIMENSIONS];
        nudge
            .iter_mut()
            .for_each(|x| *x = self.rng.random::<f64>() - 0.5);
        self.coord.update(&name, &coord, rtt, nudge);
        self.coords.insert(name, coord);
    }

    fn periodic_push_pull(&mut self) {
        let Some(to) = self.random_alive() else {
            return;
        };
        if let Some(data) = self.digest_request() {
            self.outputs.push_back(Output::Stream { to, data });
        }
    }

    fn state_frame(&mut self, reply: bool) -> Option<Vec<u8>> {
        let state = self.state(reply);
        self.seal_frame(&Frame::State(state))
    }

    /// This member's full view.
    fn state(&self, reply: bool) -> State {
        let mut members: Vec<(Id, u16, u8)> = self
            .swim
            .iter_membership_state()
            .map(|m| (*m.id(), m.incarnation(), swim_state_code(m.state())))
            .collect();
        members.push((self.local.id, 0, 0));
        let mut metas = vec![self.local.clone()];
        metas.extend(
            self.members
                .iter()
                .filter_map(|e| e.meta.as_deref().cloned()),
        );
        State {
            reply,
            members,
            metas,
            event_clock: self.event_clock,
        }
    }

    /// Encodes, encrypts and counts a push-pull frame; `None` if it would be too large.
    fn seal_frame(&mut self, frame: &Frame) -> Option<Vec<u8>> {
        let data = self.keyring.seal(wire::encode(frame)).ok()?;
        if data.len() > MAX_STREAM {
            return None;
        }
        self.stats.streams_sent += 1;
        self.stats.stream_bytes_sent += data.len() as u64;
        Some(data)
    }

    /// This member's own metadata, as it gossips it.
    pub(super) fn local_meta(&self) -> &Meta {
        &self.local
    }

    /// Starts this pool as if it had joined a pool of the members `view` describes (all
    /// alive) and the join's news had finished spreading: foca and the pool list every one
    /// alive, nothing is queued for dissemination, and foca's periodic timers (probe,
    /// gossip, announce) start at a random phase, as they drift apart after a real join.
    ///
    /// For simulations that start from a converged pool ([`super::memory::SimNetwork::warm_start`]):
    /// a join storm of n members is O(n² log n) update deliveries and leaves n backlogs of n
    /// queued updates, more than one process can hold at 10,000 members. The members are
    /// applied through the same paths a push-pull takes ([`Pool::apply_meta`], foca's
    /// `apply_many`), only without queueing them for retransmission.
    pub(super) fn warm_start(&mut self, view: &[Meta], now: Duration) {
        self.advance(now);
        for meta in view {
            self.apply_meta(meta.clone());
        }
        let local = self.local.id;
        let members = view
            .iter()
            .filter(|m| m.id != local)
            .map(|m| foca::Member::alive(m.id));
        let _ = self.swim.apply_many(members, false, &mut self.rt);
        let mut timers = std::mem::take(&mut self.rt.timers);
        for (after, _) in &mut timers {
            *after = self.stagger(*after);
        }
        self.rt.timers = timers;
        self.drain();
    }

    fn merge(&mut self, state: State) {
        // Metadata first: when foca then reports the members up, their entries already have
        // it, so no member sends a metadata request to each one it just learned (n of them
        // per joiner in a join storm).
        for meta in state.metas {
            self.apply_meta(meta);
        }
        let updates = state.members.iter().filter_map(|(id, inc, code)| {
            Some(foca::Member::new(*id, *inc, swim_state_of(*code)?))
        });
        let _ = self.swim.apply_many(updates, true, &mut self.rt);
        self.event_clock = self.event_clock.max(state.event_clock);
        self.drain();
    }
}

/// A SWIM state as push-pull frames and digests carry it.
fn swim_state_code(state: foca::State) -> u8 {
    match state {
        foca::State::Alive => 0,
        foca::State::Suspect => 1,
        foca::State::Down => 2,
    }
}

/// The SWIM state a push-pull frame's code stands for (`None`: not one).
fn swim_state_of(code: u8) -> Option<foca::State> {
    match code {
        0 => Some(foca::State::Alive),
        1 => Some(foca::State::Suspect),
        2 => Some(foca::State::Down),
        _ => None,
    }
}

/// Timings foca can run with (it needs non-zero periods and a probe timeout shorter than
/// the probe interval).
fn validate(t: &super::Timing) -> Result<(), GossipError> {
    if t.probe_interval.is_zero()
        || t.gossip_interval.is_zero()
        || t.push_pull_interval.is_zero()
        || t.reconnect_interval.is_zero()
    {
        return Err(GossipError::InvalidTiming("intervals must be non-zero"));
    }
    if t.probe_timeout.is_zero() || t.probe_timeout >= t.probe_interval {
        return Err(GossipError::InvalidTiming(
            "probe timeout must be non-zero and shorter than the probe interval",
        ));
    }
    if t.suspicion_min_mult == 0 || t.suspicion_min_mult > t.suspicion_mult {
        return Err(GossipError::InvalidTiming(
            "suspicion min mult must be between 1 and the suspicion mult",
        ));
    }
    Ok(())
}

/// foca's settings for a pool of `n` alive members under `config`'s timings (public for
/// `concord-bench`'s `swim_sim`, which drives foca alone with exactly these).
pub fn swim_config(config: &Config, n: usize) -> foca::Config {
    let t = &config.timing;
    let n32 =
        NonZeroU32::new(u32::try_from(n.max(1)).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
    let mut c = foca::Config::new_lan(n32);
    c.probe_period = t.probe_interval;
    c.probe_rtt = t.probe_timeout.min(t.probe_interval / 2);
    // memberlist: retransmit_mult (4) * ceil(log10(n + 1)).
    let tx = 4 * ((n as f64 + 1.0).log10().ceil() as u32).max(1);
    c.max_transmissions =
        NonZeroU8::new(u8::try_from(tx).unwrap_or(u8::MAX)).unwrap_or(NonZeroU8::MIN);
    // memberlist: suspicion_mult * max(1, log10(n)) * probe_interval, here the longest a
    // suspicion lasts (nobody confirms it); Lifeguard's dynamic suspicion (foca patch)
    // brings it down to the same with suspicion_min_mult once suspicion_mult - 2 other
    // members' probes failed too.
    let scale = (n as f64).log10().max(1.0);
    let timeout = |mult: u32| {
        Duration::try_from_secs_f64(t.probe_interval.as_secs_f64() * f64::from(mult.max(1)) * scale)
            .unwrap_or(t.probe_interval)
    };
    c.suspect_to_down_after = timeout(t.suspicion_mult);
    c.suspicion = Some(foca::DynamicSuspicion {
        min: timeout(t.suspicion_min_mult).min(c.suspect_to_down_after),
        confirmations: u8::try_from(t.suspicion_mult.saturating_sub(2)).unwrap_or(u8::MAX),
        // Confirmations take effect within a quarter probe interval.
        check_every: (t.probe_interval / 4).max(Duration::from_millis(1)),
        probers: SUSPECT_PROBERS,
    });
    c.remove_down_after = Some(config.reconnect_timeout);
    c.max_packet_size = NonZeroUsize::new(MAX_PACKET - FRAMING).unwrap_or(NonZeroUsize::MIN);
    // Replaced by the pool's Serf-style reconnect (`Task::Reconnect`), which tries about once
    // per failed member per interval pool-wide instead of from every member.
    c.periodic_announce_to_down_members = None;
    if let Some(g) = c.periodic_gossip.as_mut() {
        g.frequency = t.gossip_interval;
        g.num_members = NonZeroUsize::new(t.gossip_nodes.max(1)).unwrap_or(NonZeroUsize::MIN);
    }
    c
}

/// memberlist's push-pull scaling: the base interval up to 32 members, then one more
/// multiple per doubling, so the total push-pull load stays flat as the pool grows.
fn push_pull_interval(base: Duration, n: usize) -> Duration {
    if n <= 32 {
        return base;
    }
    let mult = ((n as f64).log2() - 32f64.log2()).ceil() as u32 + 1;
    base.checked_mul(mult).unwrap_or(base)
}
