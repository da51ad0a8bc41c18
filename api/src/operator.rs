//! `/v1/operator/raft/*` and `/v1/operator/autopilot/*` bodies (Consul's JSON), and the
//! server RPC messages that carry them ([`OperatorQuery`], [`OperatorWrite`]).
//!
//! Raft membership is not part of the replicated state store: the server answers these from
//! Raft itself (its membership and replication metrics) and from its gossip pool.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::duration::GoDuration;

/// One server of `GET /v1/operator/raft/configuration`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct RaftServer {
    /// The server's node UUID (Raft protocol 3 ids).
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name.
    pub node: String,
    /// Server RPC address, `ip:port`.
    pub address: String,
    /// Whether it leads.
    pub leader: bool,
    /// Whether it votes (`false`: a learner, still catching up).
    pub voter: bool,
    /// Raft protocol version, `"3"`.
    pub protocol_version: String,
    /// The last log index the leader knows it holds (0 when unknown).
    pub last_index: u64,
}

/// `GET /v1/operator/raft/configuration`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct RaftConfiguration {
    /// Every server in the configuration, voters and learners, sorted by address.
    pub servers: Vec<RaftServer>,
    /// The log index of the configuration.
    pub index: u64,
}

/// Autopilot's settings (`/v1/operator/autopilot/configuration`), Consul's defaults.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct AutopilotConfig {
    /// Remove failed servers once enough healthy ones remain (a replacement arrived).
    pub cleanup_dead_servers: bool,
    /// A server not heard from for longer is unhealthy.
    pub last_contact_threshold: GoDuration,
    /// A server this many entries behind the leader is unhealthy.
    pub max_trailing_logs: u64,
    /// Dead-server cleanup never leaves fewer voters than this.
    pub min_quorum: u64,
    /// How long a new server must be healthy before it is promoted to voter.
    pub server_stabilization_time: GoDuration,
    /// Enterprise: redundancy zones (accepted, unused).
    pub redundancy_zone_tag: String,
    /// Enterprise: upgrade migrations (accepted, unused).
    pub disable_upgrade_migration: bool,
    /// Enterprise: upgrade version tag (accepted, unused).
    pub upgrade_version_tag: String,
    /// Raft index at which it was created.
    pub create_index: u64,
    /// Raft index at which it was last changed.
    pub modify_index: u64,
}

impl Default for AutopilotConfig {
    fn default() -> Self {
        AutopilotConfig {
            cleanup_dead_servers: true,
            last_contact_threshold: std::time::Duration::from_millis(200).into(),
            max_trailing_logs: 250,
            min_quorum: 0,
            server_stabilization_time: std::time::Duration::from_secs(10).into(),
            redundancy_zone_tag: String::new(),
            disable_upgrade_migration: false,
            upgrade_version_tag: String::new(),
            create_index: 0,
            modify_index: 0,
        }
    }
}

/// One server of `GET /v1/operator/autopilot/health`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ServerHealth {
    /// Node UUID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name.
    pub name: String,
    /// Server RPC address.
    pub address: String,
    /// Gossip status: `alive`, `failed`, `left`, `none`.
    pub serf_status: String,
    /// Concord's version.
    pub version: String,
    /// Whether it leads.
    pub leader: bool,
    /// Time since the leader last heard from it (`"0s"` for the leader).
    pub last_contact: GoDuration,
    /// The current term.
    pub last_term: u64,
    /// The last log index known replicated to it.
    pub last_index: u64,
    /// Alive, recently heard from and not too far behind.
    pub healthy: bool,
    /// Whether it votes.
    pub voter: bool,
    /// Since when its health has not changed (RFC 3339).
    pub stable_since: String,
}

/// `GET /v1/operator/autopilot/health`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct OperatorHealth {
    /// Every server is healthy.
    pub healthy: bool,
    /// Voters that could fail without losing quorum.
    pub failure_tolerance: u64,
    /// Per server, sorted by address.
    pub servers: Vec<ServerHealth>,
}

/// One server of `GET /v1/operator/autopilot/state`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AutopilotServer {
    /// Node UUID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name.
    pub name: String,
    /// Server RPC address.
    pub address: String,
    /// Gossip status.
    pub node_status: String,
    /// Concord's version.
    pub version: String,
    /// Time since the leader last heard from it.
    pub last_contact: GoDuration,
    /// The current term.
    pub last_term: u64,
    /// The last log index known replicated to it.
    pub last_index: u64,
    /// Healthy, as in [`ServerHealth::healthy`].
    pub healthy: bool,
    /// Since when its health has not changed (RFC 3339).
    pub stable_since: String,
    /// `leader`, `voter` or `non-voter`.
    pub status: String,
    /// Node metadata.
    pub meta: BTreeMap<String, String>,
    /// `voter` (Concord has no read replicas or zones).
    pub node_type: String,
}

/// `GET /v1/operator/autopilot/state`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AutopilotState {
    /// Every server is healthy.
    pub healthy: bool,
    /// Voters that could fail without losing quorum.
    pub failure_tolerance: u64,
    /// Same as `FailureTolerance` (no redundancy zones).
    pub optimistic_failure_tolerance: u64,
    /// Servers by node UUID.
    pub servers: BTreeMap<String, AutopilotServer>,
    /// The leader's node UUID.
    pub leader: String,
    /// The voters' node UUIDs.
    pub voters: Vec<String>,
}

/// Operator reads ([`crate::rpc::Query::Operator`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum OperatorQuery {
    /// `/v1/operator/raft/configuration`.
    RaftConfiguration,
    /// `GET /v1/operator/autopilot/configuration`.
    AutopilotConfig,
    /// `/v1/operator/autopilot/health`.
    AutopilotHealth,
    /// `/v1/operator/autopilot/state`.
    AutopilotState,
}

/// Operator changes ([`crate::rpc::WriteRequest::Operator`]); the leader acts on them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum OperatorWrite {
    /// `DELETE /v1/operator/raft/peer`: by node UUID or by `ip:port` (one of them).
    RemovePeer {
        /// Node UUID.
        id: Option<String>,
        /// Server RPC address.
        address: Option<String>,
    },
    /// `POST /v1/operator/raft/transfer-leader`: to this node UUID, or any caught-up voter.
    TransferLeader {
        /// Node UUID.
        id: Option<String>,
    },
    /// `PUT /v1/operator/autopilot/configuration`; with `cas`, only if `ModifyIndex` matches.
    SetAutopilotConfig {
        /// The new settings.
        config: AutopilotConfig,
        /// Check-and-set index.
        cas: Option<u64>,
    },
}

/// The answer to an [`OperatorQuery`] or [`OperatorWrite`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum OperatorResult {
    /// For `RaftConfiguration`.
    RaftConfiguration(RaftConfiguration),
    /// For `AutopilotConfig`.
    AutopilotConfig(AutopilotConfig),
    /// For `AutopilotHealth`.
    Health(OperatorHealth),
    /// For `AutopilotState`.
    State(AutopilotState),
    /// For writes: whether it took effect (a failed CAS is `false`).
    Bool(bool),
}
