//! What goes on the wire, before encryption. Every UDP packet is one [`Packet`]; every TCP
//! push-pull frame is one [`Frame`]: a full [`State`] or a [`Digest`] of one; metadata, user
//! events and force-leave intents ride on foca's custom broadcasts as [`Item`]s (piggybacked
//! on probes and gossip, retransmitted `max_transmissions` times, exactly like memberlist's
//! broadcast queue). All use postcard (compact, serde-based, never panics on garbage: it
//! returns an error, which the pool counts).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::coordinate::Coordinate;
use super::id::Id;
use super::UserEvent;

/// Largest UDP datagram Concord sends or accepts (memberlist's UDP buffer is 1400 bytes of
/// payload; we keep the same MTU-safe bound, including encryption overhead).
pub const MAX_PACKET: usize = 1400;
/// Largest push-pull frame (a full member list): enough for ~50k members with small tags.
pub const MAX_STREAM: usize = 8 * 1024 * 1024;

/// One UDP datagram.
#[derive(Debug, Serialize, Deserialize)]
pub enum Packet {
    /// A foca (SWIM) message, opaque to us.
    Swim(Vec<u8>),
    /// Our own RTT probe (foca does not expose its probe timings), at most one per probe
    /// interval; answered with [`Packet::Ack`].
    Ping { seq: u32 },
    /// Answer to [`Packet::Ping`], carrying the responder's coordinate and name.
    Ack {
        seq: u32,
        name: String,
        coord: Coordinate,
    },
    /// "I know you are alive but not your metadata": answered with [`Packet::Meta`].
    MetaRequest,
    /// A member's metadata, sent directly (not gossiped).
    Meta(Meta),
}

/// What a member says about itself. `version` orders updates from the same member; a restart
/// starts from the wall clock, so it supersedes everything the old process said.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Meta {
    /// Current SWIM identity.
    pub id: Id,
    /// Node name (unique in the pool).
    pub name: String,
    /// Higher replaces lower.
    pub version: u64,
    /// Consul member tags (`role`, `dc`, `port`, `build`, `id`, `vsn`...).
    pub tags: BTreeMap<String, String>,
    /// Set by a graceful leave before the member stops answering, so that others record
    /// Left instead of Failed (Serf's leave intent).
    pub leaving: bool,
    /// Fingerprints of the gossip keys this member holds, its primary key first (for
    /// keyring listing, and for keyring changes to see when every member applied them).
    pub keys: Vec<u64>,
}

/// A custom broadcast.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Item {
    /// A member's new metadata.
    Meta(Meta),
    /// A user event.
    Event(UserEvent),
    /// An operator forced a failed member out (`force-leave`); `prune` also forgets it.
    ForceLeave {
        name: String,
        prune: bool,
        nonce: u64,
    },
}

/// One TCP push-pull frame.
#[derive(Debug, Serialize, Deserialize)]
pub enum Frame {
    /// A full view: on join and reconnect (both ways), and the opener's own view sent back
    /// after a [`Frame::Differ`].
    State(State),
    /// The periodic sync's opening and, when both views match, its answer.
    Digest(Digest),
    /// The answer to a [`Digest`] of a view that differs: the answerer's full view. The
    /// opener merges it and sends its own full view back (a [`Frame::State`] answer, which
    /// is not answered), so both sides are repaired, as memberlist's push-pull repairs both.
    Differ(State),
}

/// A summary of one side's view: what the periodic push-pull sends first, so that two
/// members that agree exchange a few hundred bytes instead of the whole member list.
#[derive(Debug, Serialize, Deserialize)]
pub struct Digest {
    /// `false` for the opening (answered with a digest or the full view), `true` for the
    /// answer.
    pub reply: bool,
    /// The sender's own metadata (so the receiver learns it, and who is asking).
    pub meta: Meta,
    /// SHA-256 of the sender's view: every member's identity and SWIM state, and every
    /// member's name, metadata version and leave intent, in a canonical order.
    pub digest: [u8; 32],
    /// The sender's user-event Lamport clock.
    pub event_clock: u64,
}

/// One side's full view, exchanged over TCP on join and reconnect (memberlist push-pull),
/// and sent to a member whose [`Digest`] differs: a joiner learns everyone at once instead
/// of waiting for gossip.
#[derive(Debug, Serialize, Deserialize)]
pub struct State {
    /// `false` for the request (the receiver answers with its own state), `true` for the
    /// answer.
    pub reply: bool,
    /// foca's member table: identity, incarnation, state (0 alive, 1 suspect, 2 down).
    pub members: Vec<(Id, u16, u8)>,
    /// Everyone's metadata the sender knows, its own first.
    pub metas: Vec<Meta>,
    /// The sender's user-event Lamport clock.
    pub event_clock: u64,
}

/// Encodes with postcard.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing to a Vec only fails on a type that cannot be represented (never ours).
    postcard::to_allocvec(value).unwrap_or_default()
}

/// Decodes with postcard; garbage is an error, never a panic.
pub fn decode<'a, T: Deserialize<'a>>(data: &'a [u8]) -> Option<T> {
    postcard::from_bytes(data).ok()
}
