//! LAN gossip membership, Concord's equivalent of Serf over memberlist: who is in the pool
//! (servers and client agents of a datacenter), who failed, who left; member tags; user
//! events; gossip encryption with a keyring; Vivaldi network coordinates.
//!
//! # Why foca
//! The SWIM protocol core (probes, indirect probes, suspicion, dissemination, identity
//! renewal) is the [`foca`] crate. It is *sans-IO*: it never touches a socket or a clock, it
//! only consumes bytes and timer events and produces bytes, timer requests and
//! notifications. So the very same [`Pool`] runs over real UDP/TCP ([`Gossip`]) and over a
//! simulated network with a simulated clock ([`memory::SimNetwork`], used by the unit tests
//! and by `concord-bench`'s 100-to-thousands-member simulation). It is also MPL-2.0, like
//! Concord. (The alternative, the `memberlist` crate, owns its own tokio transport, so it
//! could not be simulated at scale in one process.) foca is vendored with patches
//! (`vendor/foca/PATCH.md`): an address index and sampled random choice instead of scans of
//! the member table (per-member work stays O(1) in large pools), Lifeguard's dynamic
//! suspicion, probes directed at suspects, a compact index, and a probe the driver asks for
//! (the pool's unanswered RTT pings, so a dead member's first probe comes twice as often).
//!
//! # Layers
//! Outermost first: a driver ([`Gossip`] or [`memory::SimNetwork`]) moves bytes and time;
//! [`Pool`] decrypts/encrypts ([`Keyring`]), frames ([`wire`]), and keeps Concord's view
//! (names, tags, Serf statuses, events, coordinates); foca keeps SWIM's view (which
//! identities are alive, suspect or down).
//!
//! # Layout
//! - [`pool`]: the sans-IO core, [`Pool`].
//! - [`driver`]: [`Gossip`], the tokio driver (UDP for SWIM, TCP for push-pull).
//! - [`memory`]: [`memory::SimNetwork`], many pools over an in-memory network.
//! - [`crypto`]: [`Keyring`] (AES-GCM), [`keygen`].
//! - [`coordinate`]: Vivaldi coordinates.
//! - [`wire`]: packet, broadcast and push-pull formats.
//! - [`id`]: the compact SWIM identity.
//! - `table`: a pool's member table (a dense `Vec` with position-only hash indexes).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod coordinate;
pub mod crypto;
pub mod driver;
pub mod id;
pub mod intern;
pub mod memory;
pub mod pool;
mod table;
pub mod wire;

#[cfg(test)]
mod tests;

pub use coordinate::Coordinate;
pub use crypto::{keygen, Keyring};
pub use driver::{bind, Gossip};
pub use intern::MetaInterner;
pub use pool::{Output, Pool, Stats};

/// Serf's largest user event (name + payload), in bytes; Consul inherits it.
pub const USER_EVENT_SIZE_LIMIT: usize = 512;

/// A member's status, with Serf's numbers (what `/v1/agent/members` returns as `Status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MemberStatus {
    /// Answering probes (also while merely suspected, as in Serf).
    Alive = 1,
    /// Announced a graceful leave and is still answering.
    Leaving = 2,
    /// Left gracefully (or was force-left).
    Left = 3,
    /// Stopped answering without leaving.
    Failed = 4,
}

impl MemberStatus {
    /// Serf's number for this status.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// One pool member, in Consul's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Node name.
    pub name: String,
    /// Gossip address (IP and port, default 8301).
    pub addr: SocketAddr,
    /// Tags (`role`, `dc`, `port`, `build`, `id`, `vsn`...), set by the member itself.
    pub tags: BTreeMap<String, String>,
    /// Serf status.
    pub status: MemberStatus,
}

/// Node/service/tag filters a user event carries (Consul's `?node=`, `?service=`, `?tag=`).
/// Every member receives every event; the agent decides with these whether it matches
/// (`concord_net` does not know the agent's services).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFilters {
    /// Regular expression on node names; empty matches all.
    pub node: String,
    /// Regular expression on service names; empty matches all.
    pub service: String,
    /// Regular expression on service tags (only with `service`); empty matches all.
    pub tag: String,
}

/// A user event (Serf user event, Consul `/v1/event/fire`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvent {
    /// Random 128-bit id (the agent shows it as a UUID).
    pub id: u128,
    /// Event name.
    pub name: String,
    /// Opaque payload.
    pub payload: Vec<u8>,
    /// Who should act on it.
    pub filters: EventFilters,
    /// Lamport time of the event in the pool.
    pub ltime: u64,
    /// Name of the member that fired it.
    pub origin: String,
}

/// A change in the pool, as Serf reports them.
#[derive(Clone, Debug, PartialEq)]
pub enum MemberEvent {
    /// A member became alive (first seen, or back after failing or leaving).
    Join(Member),
    /// A member changed its tags.
    Update(Member),
    /// A member left gracefully (or was force-left).
    Leave(Member),
    /// A member stopped answering.
    Failed(Member),
    /// A failed or left member was forgotten (`reconnect_timeout`, `tombstone_timeout`, or
    /// `force_leave` with prune).
    Reap(Member),
    /// A user event arrived (once per event, including our own).
    User(UserEvent),
}

/// Protocol timings. [`Timing::lan`] is memberlist's LAN profile (what Consul uses);
/// [`Timing::fast`] is for dev mode and tests.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    /// How often a random member is probed (LAN: 1 s).
    pub probe_interval: Duration,
    /// How long a direct probe waits before asking others to probe indirectly (LAN: 500 ms).
    pub probe_timeout: Duration,
    /// How often pending broadcasts are gossiped (LAN: 200 ms).
    pub gossip_interval: Duration,
    /// Members each gossip round goes to (LAN: 3).
    pub gossip_nodes: usize,
    /// A suspicion nobody else confirms lasts `suspicion_mult * max(1, log10(n)) *
    /// probe_interval` (LAN: 4, memberlist's and Consul's `suspicion_mult`, so 16 s at
    /// 10,000 members); `suspicion_mult - 2` independent confirmations (members whose own
    /// probes of the suspect failed too) bring it down to the minimum below, as in
    /// memberlist's Lifeguard.
    pub suspicion_mult: u32,
    /// A fully confirmed suspicion lasts `suspicion_min_mult * max(1, log10(n)) *
    /// probe_interval` (LAN: 1, so 4 s at 10,000 members). Lifeguard in memberlist/Consul
    /// spans `suspicion_mult` to 6 times that (16 s to 96 s at 10,000); Concord's span is a
    /// quarter of that to `suspicion_mult` (see docs/benchmarks.md, "Gossip membership
    /// simulation", for why that is safe and what it buys).
    pub suspicion_min_mult: u32,
    /// Full state exchange with one random member (LAN: 30 s, scaled up past 32 members as
    /// memberlist does).
    pub push_pull_interval: Duration,
    /// How often a member considers reconnecting to a failed member (a push-pull and an
    /// announce to its address, as Serf's `reconnect_interval` does), so that the two sides
    /// of a healed partition find each other. Serf's default is 30 s; Concord's LAN default
    /// is 10 s (see [`Timing::lan`]).
    pub reconnect_interval: Duration,
}

impl Timing {
    /// memberlist's `DefaultLANConfig`, which Consul uses for the LAN pool.
    pub fn lan() -> Timing {
        Timing {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: 3,
            suspicion_mult: 4,
            suspicion_min_mult: 1,
            push_pull_interval: Duration::from_secs(30),
            // Serf: 30 s. Each tick reconnects with probability failed / alive, so the pool
            // as a whole makes about one attempt per failed member per interval, whatever
            // its size; a third of Serf's interval costs little and heals a partition three
            // times sooner.
            reconnect_interval: Duration::from_secs(10),
        }
    }

    /// Fast timings for dev mode and tests (Consul dev mode: 100 ms intervals, suspicion
    /// mult 3).
    pub fn fast() -> Timing {
        Timing {
            probe_interval: Duration::from_millis(200),
            probe_timeout: Duration::from_millis(100),
            gossip_interval: Duration::from_millis(100),
            gossip_nodes: 3,
            suspicion_mult: 3,
            // No shortening: with 200 ms probes the minimum would be 200 ms, less than a
            // loaded test machine may stall a process; dev mode detects in ~1 s anyway.
            suspicion_min_mult: 3,
            push_pull_interval: Duration::from_secs(5),
            reconnect_interval: Duration::from_secs(1),
        }
    }
}

/// Everything a pool member needs to start.
#[derive(Clone, Debug)]
pub struct Config {
    /// Node name, unique in the pool.
    pub node_name: String,
    /// The address other members reach this one at (IP + gossip port; UDP and TCP).
    pub advertise: SocketAddr,
    /// Initial tags; change them later with `set_tags`.
    pub tags: BTreeMap<String, String>,
    /// Protocol timings.
    pub timing: Timing,
    /// Gossip keys, base64 (16, 24 or 32 bytes each); the first is the primary. Empty:
    /// plaintext gossip.
    pub keys: Vec<String>,
    /// How long a failed member is remembered before it is reaped (Consul: 72 h).
    pub reconnect_timeout: Duration,
    /// How long a member that left is remembered (Serf `TombstoneTimeout`: 24 h).
    pub tombstone_timeout: Duration,
    /// Recent user events kept (Consul's agent keeps 256).
    pub event_ring: usize,
    /// Shares members' metadata with other pools of this process that use the same
    /// interner (the simulation's thousands of pools); `None` (an agent's one pool): each
    /// value is simply held once.
    pub meta_interner: Option<Arc<MetaInterner>>,
}

impl Config {
    /// A config with LAN timings and Consul's defaults for everything else.
    pub fn new(node_name: impl Into<String>, advertise: SocketAddr) -> Config {
        Config {
            node_name: node_name.into(),
            advertise,
            tags: BTreeMap::new(),
            timing: Timing::lan(),
            keys: Vec::new(),
            reconnect_timeout: Duration::from_secs(72 * 3600),
            tombstone_timeout: Duration::from_secs(24 * 3600),
            event_ring: 256,
            meta_interner: None,
        }
    }
}

/// A key with the number of members that hold it (best effort: from what members advertise
/// in their metadata, which gossip carries within seconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyStatus {
    /// The key, base64.
    pub key: String,
    /// Whether it is this member's primary key.
    pub primary: bool,
    /// Alive members (this one included) that hold it.
    pub members: usize,
    /// Alive members (this one included) whose primary key it is.
    pub primaries: usize,
    /// Alive members known in total.
    pub total: usize,
}

/// Errors of the gossip layer.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// A gossip key did not parse or has a bad length.
    #[error("invalid gossip key: {0}")]
    BadKey(String),
    /// Protocol timings that cannot work.
    #[error("invalid gossip timing: {0}")]
    InvalidTiming(&'static str),
    /// The keyring has no such key.
    #[error("key is not installed")]
    KeyNotInstalled,
    /// The primary key cannot be removed.
    #[error("removing the primary key is not allowed; use another key first")]
    RemovePrimaryKey,
    /// Encryption failed (should not happen with a valid key).
    #[error("encryption failed")]
    Crypto,
    /// A user event's name plus payload exceeds [`USER_EVENT_SIZE_LIMIT`].
    #[error("user event exceeds the limit of {USER_EVENT_SIZE_LIMIT} bytes ({0} bytes)")]
    EventTooLarge(usize),
    /// Metadata or an item too large for one gossip packet (too many or too long tags).
    #[error("gossip message too large ({0} bytes)")]
    TooLarge(usize),
    /// A user event needs a name.
    #[error("user event name is empty")]
    EmptyEventName,
    /// No member with that name is known.
    #[error("no member named {0:?}")]
    UnknownMember(String),
    /// Joining contacted no member.
    #[error("failed to join any of {0} addresses: {1}")]
    JoinFailed(usize, String),
    /// The gossip driver has stopped (after `leave` or `shutdown`).
    #[error("gossip has shut down")]
    Shutdown,
    /// Socket error.
    #[error("gossip I/O error: {0}")]
    Io(#[from] std::io::Error),
}
