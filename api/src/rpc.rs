//! Server RPC: what agents (and servers forwarding to the leader) send to servers.
//!
//! The transport is HTTP/1.1 with JSON bodies on the server RPC port (8300 by default):
//! `POST` [`READ_PATH`] with a [`ReadRequest`], `POST` [`WRITE_PATH`] with a [`WriteRequest`].
//! Success is `200` with a [`ReadResponse`] / [`WriteResponse`]; failure is a non-2xx status
//! with an [`RpcError`] body. Any server accepts any request: followers forward writes and
//! non-stale reads to the leader, so agents never need to know who leads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{
    CheckServiceNode, CheckStatus, DeregisterRequest, HealthCheck, Node, NodeServices,
    RegisterRequest, ServiceNode,
};
use crate::config_entry::StoredConfigEntry;
use crate::connect::{CaConfiguration, CaRoots, IssuedCert, SignRequest};
use crate::kv::{KvEntry, KvOp, TxnResponse};
use crate::session::Session;

/// Path of the read endpoint.
pub const READ_PATH: &str = "/v1/internal/rpc/read";
/// Path of the write endpoint.
pub const WRITE_PATH: &str = "/v1/internal/rpc/write";

/// Default blocking wait when `?wait` is absent (Consul: 5 minutes).
pub const DEFAULT_WAIT_MS: u64 = 5 * 60 * 1000;
/// Longest blocking wait a server honours (Consul's `max_query_time`: 10 minutes).
pub const MAX_WAIT_MS: u64 = 10 * 60 * 1000;

/// Read consistency (`?stale`, `?consistent`, or neither).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// The leader answers from its state without a quorum round (Consul's default).
    #[default]
    Default,
    /// Any server answers from its local state, even without a leader.
    Stale,
    /// The leader confirms leadership with a quorum before answering.
    Consistent,
}

/// Blocking and consistency options of a read.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// Block until the result's index exceeds this (`?index`); 0 answers at once.
    pub min_index: u64,
    /// Longest time to block, in milliseconds (`?wait`); 0 means the default.
    pub max_wait_ms: u64,
    /// Consistency mode.
    pub consistency: Consistency,
}

impl QueryOptions {
    /// The blocking wait this read asks for, before jitter: `None` when it does not block
    /// (`min_index == 0`); otherwise `?wait`, 0 meaning [`DEFAULT_WAIT_MS`], capped at
    /// [`MAX_WAIT_MS`]. The one place that turns `?wait` into a bound.
    pub fn blocking_wait(&self) -> Option<std::time::Duration> {
        if self.min_index == 0 {
            return None;
        }
        let ms = match self.max_wait_ms {
            0 => DEFAULT_WAIT_MS,
            ms => ms.min(MAX_WAIT_MS),
        };
        Some(std::time::Duration::from_millis(ms))
    }

    /// The longest a server may hold this read: the wait plus the most jitter a server adds
    /// ([`MAX_JITTER_FRACTION`]); zero when it does not block. Callers add their own transfer
    /// slack on top.
    pub fn max_blocking(&self) -> std::time::Duration {
        self.blocking_wait()
            .map_or(std::time::Duration::ZERO, |w| w + w / MAX_JITTER_FRACTION)
    }
}

/// A server adds up to `wait / MAX_JITTER_FRACTION` of random jitter to a blocking wait, so
/// watchers woken together do not all return together (Consul: 1/16).
pub const MAX_JITTER_FRACTION: u32 = 16;

/// What a server reports along with every read (becomes the `X-Consul-*` headers).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryMeta {
    /// Index of the data returned (`X-Consul-Index`); never 0.
    pub index: u64,
    /// Whether the answering server knew a leader (`X-Consul-KnownLeader`).
    pub known_leader: bool,
    /// Milliseconds since the answering server last heard from the leader (0 on the leader).
    pub last_contact_ms: u64,
    /// Whether the server left out what the read's token may not see
    /// (`X-Consul-Results-Filtered-By-ACLs`; Consul's `QueryMeta.ResultsFilteredByACLs`).
    #[serde(default)]
    pub results_filtered_by_acls: bool,
}

/// Node metadata filter (`?node-meta=k:v`, repeatable, all must match).
pub type NodeMetaFilter = Vec<(String, String)>;

/// A read against the replicated state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Query {
    /// `/v1/catalog/nodes`.
    Nodes {
        /// Node metadata filter.
        node_meta: NodeMetaFilter,
    },
    /// `/v1/catalog/services`: service name to the union of its tags.
    Services {
        /// Node metadata filter.
        node_meta: NodeMetaFilter,
    },
    /// `/v1/catalog/service/:name`.
    ServiceNodes {
        /// Service name.
        service: String,
        /// Every tag must be present.
        tags: Vec<String>,
        /// Node metadata filter.
        node_meta: NodeMetaFilter,
    },
    /// `/v1/catalog/node/:node`.
    NodeServices {
        /// Node name.
        node: String,
    },
    /// `/v1/health/service/:name`.
    HealthService {
        /// Service name.
        service: String,
        /// Every tag must be present.
        tags: Vec<String>,
        /// Drop instances with any non-passing check.
        passing: bool,
        /// Node metadata filter.
        node_meta: NodeMetaFilter,
    },
    /// `/v1/health/checks/:service`.
    ServiceChecks {
        /// Service name.
        service: String,
        /// Node metadata filter.
        node_meta: NodeMetaFilter,
    },
    /// `/v1/health/node/:node`.
    NodeChecks {
        /// Node name.
        node: String,
    },
    /// `/v1/health/state/:state`; `None` is `any`.
    ChecksInState {
        /// Status to match, or all.
        state: Option<CheckStatus>,
        /// Node metadata filter.
        node_meta: NodeMetaFilter,
    },
    /// Every node and every instance with its checks: feeds an agent's DNS cache.
    CatalogDump,
    /// One key.
    KvGet {
        /// Key.
        key: String,
    },
    /// Every key with a prefix.
    KvList {
        /// Prefix.
        prefix: String,
    },
    /// Key names under a prefix, folded at `separator`.
    KvKeys {
        /// Prefix.
        prefix: String,
        /// Fold keys after the first occurrence of this past the prefix.
        separator: Option<String>,
    },
    /// One session.
    SessionInfo {
        /// Session ID.
        id: String,
    },
    /// Every session.
    SessionList,
    /// Sessions of a node.
    NodeSessions {
        /// Node name.
        node: String,
    },
    /// Raft leader and voters (`/v1/status/*`).
    RaftStatus,
    /// One config entry (`/v1/config/:kind/:name`); answered as [`QueryResult::ConfigEntries`]
    /// with zero or one element.
    ConfigEntryGet {
        /// Kind (one of [`crate::config_entry::KINDS`]).
        kind: String,
        /// Name.
        name: String,
    },
    /// Every config entry of a kind (`/v1/config/:kind`), or of every kind when `None`.
    ConfigEntryList {
        /// Kind, or all.
        kind: Option<String>,
    },
    /// `/v1/connect/ca/roots`.
    CaRoots,
    /// `/v1/connect/ca/configuration`.
    CaConfig,
    /// A point-in-time snapshot archive of the whole state (`GET /v1/snapshot`).
    Snapshot,
    /// `/v1/operator/raft/*` and `/v1/operator/autopilot/*` reads, answered from Raft.
    Operator(crate::operator::OperatorQuery),
    /// `/v1/acl/*` reads and the agent's token resolution; answered as [`QueryResult::Acl`].
    Acl(crate::acl::AclQuery),
    /// A read made on behalf of a token: an HTTP request's, or the agent's own. With ACLs
    /// on, the servers refuse or filter what the token may not see
    /// ([`crate::acl::rpc`]); a read without one acts as anonymous.
    Authorized {
        /// The token's secret.
        token: crate::acl::SecretToken,
        /// The read.
        query: Box<Query>,
    },
}

impl Query {
    /// `self` on behalf of `token` (none: as is); a token already there is replaced.
    pub fn authorized(self, token: Option<String>) -> Query {
        let Some(token) = token else {
            return self;
        };
        let query = match self {
            Query::Authorized { query, .. } => query,
            query => Box::new(query),
        };
        Query::Authorized {
            token: crate::acl::SecretToken(token),
            query,
        }
    }

    /// The token a read carries, and the read itself.
    pub fn parts(&self) -> (Option<&str>, &Query) {
        match self {
            Query::Authorized { token, query } => (Some(token.0.as_str()), query),
            query => (None, query),
        }
    }
}

/// The answer to a [`Query`], variant by variant.
// Answers are built once and moved (ACL tokens are the large ones); boxing would only add an
// allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum QueryResult {
    /// For `Nodes`.
    Nodes(Vec<Node>),
    /// For `Services`.
    Services(BTreeMap<String, Vec<String>>),
    /// For `ServiceNodes`.
    ServiceNodes(Vec<ServiceNode>),
    /// For `NodeServices`; `None` for an unknown node.
    NodeServices(Option<NodeServices>),
    /// For `HealthService`.
    Health(Vec<CheckServiceNode>),
    /// For `ServiceChecks`, `NodeChecks`, `ChecksInState`.
    Checks(Vec<HealthCheck>),
    /// For `CatalogDump`.
    CatalogDump {
        /// Every node.
        nodes: Vec<Node>,
        /// Every instance with its node and checks.
        instances: Vec<CheckServiceNode>,
    },
    /// For `KvGet` and `KvList` (empty: not found).
    Kv(Vec<KvEntry>),
    /// For `KvKeys`.
    Keys(Vec<String>),
    /// For the session queries.
    Sessions(Vec<Session>),
    /// For `RaftStatus`.
    RaftStatus {
        /// Leader RPC address, `""` without a leader.
        leader: String,
        /// Voters' RPC addresses.
        peers: Vec<String>,
    },
    /// For the config entry queries, ordered by (kind, name).
    ConfigEntries(Vec<StoredConfigEntry>),
    /// For `CaRoots`; empty (no roots) before the CA is initialized.
    CaRoots(CaRoots),
    /// For `CaConfig`; `None` before the CA is initialized.
    CaConfig(Option<CaConfiguration>),
    /// For `Snapshot`: the archive (gzipped tar), opaque to the agent.
    Snapshot(SnapshotArchive),
    /// For `Query::Operator`.
    Operator(crate::operator::OperatorResult),
    /// For `Query::Acl`.
    Acl(crate::acl::AclResult),
}

/// A read with its options.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ReadRequest {
    /// What to read.
    pub query: Query,
    /// Blocking and consistency.
    pub options: QueryOptions,
}

/// The answer to a [`ReadRequest`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ReadResponse {
    /// Index and leader information.
    pub meta: QueryMeta,
    /// The data.
    pub result: QueryResult,
}

/// A change to the replicated state. The server turns each into a Raft command.
// Requests are built once and moved, never stored in bulk: boxing the large variant would
// only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum WriteRequest {
    /// `/v1/catalog/register` and anti-entropy.
    Register(RegisterRequest),
    /// `/v1/catalog/deregister` and anti-entropy.
    Deregister(DeregisterRequest),
    /// One KV operation (`PUT`/`DELETE /v1/kv`).
    Kv(KvOp),
    /// `/v1/txn`: all operations apply or none.
    Txn(Vec<KvOp>),
    /// `/v1/session/create`; the server assigns `ID` (leave it empty).
    SessionCreate(Session),
    /// `/v1/session/destroy/:id`.
    SessionDestroy {
        /// Session ID.
        id: String,
    },
    /// `/v1/session/renew/:id`: resets the TTL timer on the leader (no Raft entry).
    SessionRenew {
        /// Session ID.
        id: String,
    },
    /// `PUT /v1/config`: create or replace an entry (validated by the caller); with `cas`,
    /// only if the entry's `ModifyIndex` equals it (0: only if absent). Result: `Bool`.
    ConfigEntrySet {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// The entry's JSON (Consul's shape, without indexes).
        body: serde_json::Value,
        /// Check-and-set index.
        cas: Option<u64>,
    },
    /// `DELETE /v1/config/:kind/:name`; with `cas`, only if the `ModifyIndex` equals it.
    /// Result: `Bool` (deleting an absent entry is `true`, as in Consul).
    ConfigEntryDelete {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// Check-and-set index.
        cas: Option<u64>,
    },
    /// `PUT /v1/connect/ca/configuration`: the leader validates it and, when the root key
    /// changes, makes (or takes) the new root and cross-signs it before proposing.
    CaSetConfig(CaConfiguration),
    /// An agent asks for a leaf: the leader checks the CSR and signs it with the active root
    /// (no Raft entry).
    CaSign(SignRequest),
    /// `PUT /v1/snapshot`: replace the whole state with an archive's (verified and decoded in
    /// full before anything changes).
    SnapshotRestore(SnapshotArchive),
    /// Raft membership and autopilot changes (`/v1/operator/*`), done by the leader.
    Operator(crate::operator::OperatorWrite),
    /// `/v1/acl/*` writes: the leader assigns IDs, secrets, times and hashes, checks the
    /// rules and resolves links, then proposes. Result: [`WriteResult::Acl`].
    Acl(crate::acl::AclWrite),
    /// A write made on behalf of a token: an HTTP request's, or the agent's own
    /// (`acl.tokens.agent`, else `acl.tokens.default`) for anti-entropy. With ACLs on, the
    /// servers check catalog writes against it; a write without one acts as anonymous.
    Authorized {
        /// The token's secret.
        token: crate::acl::SecretToken,
        /// The write.
        request: Box<WriteRequest>,
    },
}

impl WriteRequest {
    /// `self` on behalf of `token` (none: as is); a token already there is replaced.
    pub fn authorized(self, token: Option<String>) -> WriteRequest {
        let Some(token) = token else {
            return self;
        };
        let request = match self {
            WriteRequest::Authorized { request, .. } => request,
            request => Box::new(request),
        };
        WriteRequest::Authorized {
            token: crate::acl::SecretToken(token),
            request,
        }
    }

    /// The token a write carries, and the write itself.
    pub fn into_parts(self) -> (Option<String>, WriteRequest) {
        match self {
            WriteRequest::Authorized { token, request } => (Some(token.0), *request),
            request => (None, request),
        }
    }
}

/// A snapshot archive's bytes (base64 in the RPC's JSON, like KV values).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct SnapshotArchive(#[serde(with = "crate::kv::base64_bytes")] pub Vec<u8>);

impl std::fmt::Debug for SnapshotArchive {
    // Megabytes of binary in a log line help no one: show the size.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SnapshotArchive({} bytes)", self.0.len())
    }
}

/// The outcome of a write, variant by request kind.
// As `QueryResult`: built once and moved.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum WriteResult {
    /// Register, deregister, destroy: applied.
    Done,
    /// KV set/CAS/lock/unlock/delete: whether it took effect.
    Bool(bool),
    /// Session created with this ID.
    SessionId(String),
    /// Transaction outcome (errors mean rolled back).
    Txn(TxnResponse),
    /// Renewed session, or `None` if it does not exist.
    Session(Option<Session>),
    /// For `CaSign`: the signed leaf (no private key: the agent holds it).
    CaLeaf(IssuedCert),
    /// For `WriteRequest::Operator`.
    Operator(crate::operator::OperatorResult),
    /// For `WriteRequest::Acl`: the token, policy or role as stored, or a delete's outcome.
    Acl(crate::acl::AclResult),
}

/// The answer to a [`WriteRequest`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct WriteResponse {
    /// Raft index at which the write applied.
    pub index: u64,
    /// The outcome.
    pub result: WriteResult,
}

/// Why a server RPC failed. Sent as the body of a non-2xx RPC response.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// This server is not the leader and could not forward.
    #[error("not the leader (leader: {leader_addr:?})")]
    NotLeader {
        /// Leader's RPC address, if known.
        leader_addr: Option<String>,
    },
    /// No leader is known (election in progress or quorum lost).
    #[error("No cluster leader")]
    NoLeader,
    /// The request is invalid; nothing was changed.
    #[error("{0}")]
    Invalid(String),
    /// A referenced object does not exist; nothing was changed.
    #[error("{0}")]
    NotFound(String),
    /// The server failed (storage, Raft, network).
    #[error("{0}")]
    Internal(String),
    /// An ACL refusal; the text is the whole message (`Permission denied: ...`). Nothing was
    /// changed.
    #[error("{0}")]
    PermissionDenied(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn blocking_wait_defaults_caps_and_jitter_bound() {
        let opts = |min_index, max_wait_ms| QueryOptions {
            min_index,
            max_wait_ms,
            consistency: Consistency::Default,
        };
        assert_eq!(opts(0, 1000).blocking_wait(), None);
        assert_eq!(opts(0, 1000).max_blocking(), Duration::ZERO);
        assert_eq!(
            opts(5, 0).blocking_wait(),
            Some(Duration::from_millis(DEFAULT_WAIT_MS))
        );
        assert_eq!(
            opts(5, u64::MAX).blocking_wait(),
            Some(Duration::from_millis(MAX_WAIT_MS))
        );
        assert_eq!(opts(5, 1600).max_blocking(), Duration::from_millis(1700));
    }
}
