//! openraft type configuration and the aliases the rest of the crate uses.
//!
//! One place names every openraft generic so that the storage, network and RPC modules read
//! as plain types (`Entry`, `LogId`, `Raft`) instead of `Entry<TypeConfig>` everywhere.
//!
//! The Raft wire (endpoint paths, the full-snapshot body) is here too: both ends, the
//! outgoing [`network`](crate::network) and the incoming `rpc::raft`, import it from below.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::command::{Applied, Command};

openraft::declare_raft_types!(
    /// Concord's Raft types: `u64` node ids, nodes addressed by their server RPC address
    /// (`ip:port`, the same port that serves agents), [`Command`] payloads.
    pub(crate) TypeConfig:
        D = Command,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Raft node id: derived from the server's node UUID (see [`node_id_from_uuid`]).
pub(crate) type NodeId = u64;
/// A cluster member: `addr` is its server RPC address.
pub(crate) type Node = openraft::BasicNode;
/// The running Raft handle.
pub(crate) type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub(crate) type Entry = openraft::Entry<TypeConfig>;
/// A log position (term + index).
pub(crate) type LogId = openraft::LogId<NodeId>;
/// A vote (term + candidate + committed flag).
pub(crate) type Vote = openraft::Vote<NodeId>;
/// Membership as last applied, with the log id that carried it.
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, Node>;
/// Metadata of a snapshot.
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
/// A snapshot with its data.
pub(crate) type Snapshot = openraft::Snapshot<TypeConfig>;
/// Storage failures reported to openraft (they stop the Raft node).
pub(crate) type StorageError = openraft::StorageError<NodeId>;
/// The I/O half of [`StorageError`], with constructors naming what failed.
pub(crate) type StorageIOError = openraft::StorageIOError<NodeId>;

/// Append-entries (also the heartbeat).
pub(crate) const APPEND_ENTRIES_PATH: &str = "/v1/internal/raft/append-entries";
/// Request-vote.
pub(crate) const VOTE_PATH: &str = "/v1/internal/raft/vote";
/// One chunk of a snapshot (openraft's chunked transfer).
pub(crate) const INSTALL_SNAPSHOT_PATH: &str = "/v1/internal/raft/install-snapshot";
/// A whole snapshot in one request (what Concord's network sends).
pub(crate) const FULL_SNAPSHOT_PATH: &str = "/v1/internal/raft/snapshot";
/// Start an election now (leadership transfer: the old leader asks its chosen successor).
pub(crate) const ELECT_PATH: &str = "/v1/internal/raft/elect";

/// Body of [`FULL_SNAPSHOT_PATH`].
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct FullSnapshotRequest {
    /// The sender's vote (the receiver rejects stale leaders).
    pub(crate) vote: Vote,
    /// What the snapshot covers.
    pub(crate) meta: SnapshotMeta,
    /// The snapshot bytes, base64 (a JSON array of numbers would be four times larger).
    #[serde(with = "concord_api::kv::base64_opt")]
    pub(crate) data: Option<Vec<u8>>,
}

/// Derives the Raft node id from the server's node UUID: the XOR of its two 64-bit halves.
///
/// Raft needs a small, stable id per server; the UUID is already stable (persisted by the
/// agent/CLI next to the data dir) and unique, and folding it keeps 64 bits of its entropy.
pub(crate) fn node_id_from_uuid(node_id: &str) -> Result<NodeId, uuid::Error> {
    let (hi, lo) = uuid::Uuid::parse_str(node_id)?.as_u64_pair();
    Ok(hi ^ lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_stable_and_rejects_garbage() {
        let id = "8d3a2b1c-0000-4000-8000-00000000002a";
        assert_eq!(
            node_id_from_uuid(id).unwrap(),
            node_id_from_uuid(id).unwrap()
        );
        assert_ne!(
            node_id_from_uuid(id).unwrap(),
            node_id_from_uuid("8d3a2b1c-0000-4000-8000-00000000002b").unwrap()
        );
        assert!(node_id_from_uuid("not-a-uuid").is_err());
    }
}
