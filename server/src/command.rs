//! The Raft payload: every change to the replicated state is one [`Command`] in the log.

use concord_api::rpc::{RpcError, WriteResult};
use serde::{Deserialize, Serialize};

use crate::model::acl::{Policy, Role, Token};
use crate::model::autopilot::AutopilotConfig;
use crate::model::ca::{CaConfig, CaRoot};
use crate::model::catalog::{Deregister, Register};
use crate::model::id::SessionId;
use crate::model::kv::KvOp;
use crate::model::session::Session;

/// Wall-clock milliseconds since the Unix epoch, stamped by the leader when it proposes.
///
/// Applying a command never reads the clock: every replica must compute the same state from
/// the same log, so time-dependent rules (the lock-delay window after a session is
/// invalidated) use the stamp carried in the entry.
pub(crate) type UnixMillis = u64;

/// A replicated state change, the payload of every normal Raft entry.
///
/// **Append-only.** Logs and snapshots written by one version are read by the next, so never
/// reorder, rename or remove variants or their fields; add new variants only at the end
/// (Consul's `structs.MessageType`: "entries must only ever be added"). The payloads are the
/// store's own types ([`crate::model`]), not the API's, so the wire can change without
/// changing the log; every variant's encoding is pinned by a golden file
/// (`tests/fixtures/command/`).
// Registrations dwarf the other variants; entries are built once per write and moved, not
// copied around in bulk, so boxing would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) enum Command {
    /// Catalog register (node, optional service, checks).
    Register {
        /// The registration.
        request: Register,
        /// Leader time; critical checks invalidate sessions, which starts lock delays.
        now_ms: UnixMillis,
    },
    /// Catalog deregister (node, service or check).
    Deregister {
        /// The deregistration.
        request: Deregister,
        /// Leader time; a removed node or check invalidates sessions.
        now_ms: UnixMillis,
    },
    /// One KV operation.
    Kv {
        /// The operation.
        op: KvOp,
        /// Leader time; a lock is refused inside a key's lock-delay window.
        now_ms: UnixMillis,
    },
    /// A KV transaction: all operations apply or none.
    Txn {
        /// The operations, in order.
        ops: Vec<KvOp>,
        /// Leader time, as for [`Command::Kv`].
        now_ms: UnixMillis,
    },
    /// Create a session; the leader filled in its ID before proposing.
    SessionCreate {
        /// The session.
        session: Session,
    },
    /// Destroy a session (explicitly, or because its TTL expired), releasing or deleting the
    /// keys it locks.
    SessionDestroy {
        /// Session ID.
        id: SessionId,
        /// Leader time; starts the lock delay of the released keys.
        now_ms: UnixMillis,
    },
    /// Create or replace a config entry (validated before proposing), optionally
    /// check-and-set on its modify index.
    ConfigEntrySet {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// The entry's JSON, without indexes.
        body: serde_json::Value,
        /// Only if the entry's modify index equals this (0: only if absent).
        cas: Option<u64>,
    },
    /// Delete a config entry, optionally check-and-set on its modify index.
    ConfigEntryDelete {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// Only if the entry's modify index equals this.
        cas: Option<u64>,
    },
    /// Initialize the Connect CA (first leadership): the cluster ID and the first root, made
    /// by the leader. Applies only to a store without a CA.
    CaInit {
        /// Configuration, with the new cluster ID.
        config: CaConfig,
        /// The first root, private key included.
        root: CaRoot,
    },
    /// Replace the CA configuration, rotating to `new_root` when present (already
    /// cross-signed by the leader). Refused if the active root is no longer
    /// `prev_active_root`.
    CaSetConfig {
        /// The new configuration.
        config: CaConfig,
        /// The root to make active, if the key changes.
        new_root: Option<CaRoot>,
        /// ID of the active root the rotation was built against.
        prev_active_root: String,
        /// Leader time of the rotation, recorded on the root it rotates out (pruning counts
        /// from it). `None` in entries written before it was added: the root rotated out
        /// then is pruned once it has expired.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        now_ms: Option<UnixMillis>,
    },
    /// Remove inactive roots whose leaves have all expired (the leader's periodic pruning).
    /// The active root is never removed, whatever the list says; unknown IDs are ignored.
    CaPruneRoots {
        /// IDs of the roots to remove.
        ids: Vec<String>,
    },
    /// Replace the whole state with an operator snapshot's (`PUT /v1/snapshot`). The leader
    /// verified and decoded it before proposing; every server swaps in the decoded store and
    /// wakes every watcher. One entry carries the whole state, so it is capped
    /// ([`crate::archive::MAX_STATE_BYTES`]) below the RPC body limit.
    Restore {
        /// The state store's snapshot encoding (`state.bin` of the archive; JSON text).
        state: String,
    },
    /// The first management token (`PUT /v1/acl/bootstrap`); refused once any bootstrap
    /// applied, with the reset index.
    AclBootstrap {
        /// The token, secret and links filled in by the leader.
        token: Token,
    },
    /// Create or replace an ACL token (validated and completed by the leader).
    AclTokenSet {
        /// The token.
        token: Token,
    },
    /// Delete an ACL token.
    AclTokenDelete {
        /// AccessorID.
        accessor_id: String,
    },
    /// Create or replace an ACL policy (rules checked by the leader); names are unique.
    AclPolicySet {
        /// The policy.
        policy: Policy,
    },
    /// Delete an ACL policy; links to it drop out when read.
    AclPolicyDelete {
        /// ID.
        id: String,
    },
    /// Create or replace an ACL role; names are unique.
    AclRoleSet {
        /// The role.
        role: Role,
    },
    /// Delete an ACL role; links to it drop out when read.
    AclRoleDelete {
        /// ID.
        id: String,
    },
    /// Remove the KV tombstones left by deletes at or below `index` (the leader's tombstone
    /// GC, once they are older than the tombstone TTL: Consul's `TombstoneRequest` reap).
    /// Prefix indexes never drop below the highest index reaped.
    KvReapTombstones {
        /// Highest tombstone index to remove.
        index: u64,
    },
    /// Replace autopilot's settings (`PUT /v1/operator/autopilot/configuration`).
    AutopilotSetConfig {
        /// The settings; the store sets their indexes.
        config: AutopilotConfig,
        /// Only if the stored settings' modify index equals this (Consul's `?cas=`; 0 while
        /// none were ever stored, as `GET` shows them).
        cas: Option<u64>,
    },
    /// Several writes proposed together (group commit, see `crate::proposer`): applied in
    /// order at the entry's one index, atomically for readers, each with its own result. Never
    /// holds a [`Command::Restore`] or another batch.
    Batch {
        /// The writes, in the order their callers' proposals were queued.
        commands: Vec<Command>,
    },
}

/// What applying a [`Command`] produced. Validation failures are data (`Invalid`,
/// `NotFound`), never panics, and a rejected command changes nothing.
pub(crate) type CommandResult = Result<WriteResult, RpcError>;

/// What applying one Raft entry produced (openraft's response type): one result per
/// command, so a [`Command::Batch`] of `n` gives `n`, anything else one.
pub(crate) type Applied = Vec<CommandResult>;

/// The current wall-clock time to stamp on a proposal.
pub(crate) fn now_ms() -> UnixMillis {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
pub(crate) mod tests;
