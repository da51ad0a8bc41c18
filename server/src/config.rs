//! The server's configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use concord_net::tls::InternalRpc;

/// Everything a server needs to start. Built by the CLI from flags (`consul agent -server`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This server's node name: its catalog node (registered by the leader with the `consul`
    /// service and the `serfHealth` check) and the name in session ownership.
    pub node_name: String,
    /// This server's node UUID (`8-4-4-4-12` hex). Also determines its Raft id (the XOR of
    /// the UUID's halves), so it must stay the same across restarts on one `data_dir`.
    pub node_id: String,
    /// Datacenter name (e.g. `"dc1"`), recorded on the server's catalog node.
    pub datacenter: String,
    /// Directory holding the Raft log, vote and snapshot (a sled database under `raft/`).
    /// `None` keeps the database in a temporary directory deleted when the server stops:
    /// nothing survives a restart (`-dev`).
    pub data_dir: Option<PathBuf>,
    /// Address other servers and agents reach this server's RPC at. Recorded as this
    /// server's Raft member address, and its IP is the server node's catalog `Address`; its
    /// port is the `consul` service port.
    pub rpc_advertise: SocketAddr,
    /// Number of servers expected to form the cluster. `1` initializes a single-voter
    /// cluster on first start (a no-op when `data_dir` already holds one); any other value
    /// waits to be joined (`0`: never bootstraps).
    pub bootstrap_expect: usize,
    /// Fast Raft timings for development and tests: heartbeat 50 ms, election timeout
    /// 150–300 ms. Otherwise heartbeat 200 ms, election timeout 300–600 ms (see
    /// [`Config::raft_timings`]).
    pub dev: bool,
    /// Shortest session TTL a create may ask for (Consul's `session_ttl_min`, default
    /// [`SESSION_TTL_MIN`](crate::SESSION_TTL_MIN), 10 s); checked by the leader before the
    /// session reaches Raft, so servers with different settings never disagree on the log.
    pub session_ttl_min: Duration,
    /// Connections one remote IP may hold open on the RPC port at once; beyond it new
    /// ones are closed at once (Consul's `limits.rpc_max_conns_per_client`, default 100).
    /// An agent or a peer server needs one: calls share it (HTTP/2). `0`: no limit.
    pub rpc_max_conns_per_client: usize,
    /// TLS on the RPC port and for calls to other servers (Consul's `tls.internal_rpc`);
    /// `None`: plain. With [`InternalRpc::raft_peer_name`] set, Raft's endpoints answer
    /// only peers whose certificate carries that name (`server.<dc>.<domain>`).
    pub rpc_tls: Option<InternalRpc>,
    /// `acl.enabled` with `acl.default_policy`: `Some` makes every server RPC answer only
    /// what the token it carries allows (writes vetted before they are proposed, reads
    /// refused or filtered; see `concord_api::acl::rpc`), so a client without a valid token
    /// gets nothing past the RPC port either; `None` (ACLs off) checks nothing.
    pub acl: Option<concord_api::acl::authorizer::DefaultPolicy>,
    /// `acl.tokens.initial_management`: the one token a write may present before it exists,
    /// to create itself (the agent of a server does so once a leader is elected). Printed
    /// redacted.
    pub acl_initial_management: Option<concord_api::acl::SecretToken>,
    /// Snapshot after this many entries since the last snapshot (Consul's
    /// `raft_snapshot_threshold`; Concord's default [`DEFAULT_RAFT_SNAPSHOT_THRESHOLD`]).
    pub raft_snapshot_threshold: u64,
    /// Entries kept in the log behind a snapshot, so a follower that is slightly behind
    /// catches up from the log rather than a snapshot (Consul's `raft_trailing_logs`;
    /// Concord's default [`DEFAULT_RAFT_TRAILING_LOGS`]).
    pub raft_trailing_logs: u64,
    /// Batch concurrent writes into one Raft entry (`crate::proposer`), so they share
    /// fsyncs (the agent turns it on). Off, every write is its own entry.
    pub group_commit: bool,
}

/// Default [`Config::raft_snapshot_threshold`] (Consul: 16384; Concord snapshots sooner,
/// since its whole unpurged log is kept in memory).
pub const DEFAULT_RAFT_SNAPSHOT_THRESHOLD: u64 = 4096;
/// Default [`Config::raft_trailing_logs`] (Consul: 10240).
pub const DEFAULT_RAFT_TRAILING_LOGS: u64 = 1024;

/// Consul's default `limits.rpc_max_conns_per_client`.
pub const DEFAULT_RPC_MAX_CONNS_PER_CLIENT: usize = 100;

/// Raft timings derived from [`Config::dev`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RaftTimings {
    /// Leader heartbeat interval.
    pub(crate) heartbeat: Duration,
    /// Lower bound of the randomized election timeout.
    pub(crate) election_min: Duration,
    /// Upper bound of the randomized election timeout.
    pub(crate) election_max: Duration,
}

impl Config {
    /// A server named `node_name` with Consul's defaults for everything else: datacenter
    /// `dc1`, no data dir (nothing survives a restart), bootstraps alone
    /// (`bootstrap_expect` 1), production Raft timings, Consul's session and connection
    /// limits, Concord's snapshot defaults, group commit on, no TLS, ACLs off. Change fields
    /// with struct update syntax: `Config { dev: true, ..Config::new(name, id, addr) }`.
    pub fn new(node_name: &str, node_id: &str, rpc_advertise: SocketAddr) -> Config {
        Config {
            node_name: node_name.to_owned(),
            node_id: node_id.to_owned(),
            datacenter: "dc1".to_owned(),
            data_dir: None,
            rpc_advertise,
            bootstrap_expect: 1,
            dev: false,
            session_ttl_min: crate::SESSION_TTL_MIN,
            rpc_max_conns_per_client: DEFAULT_RPC_MAX_CONNS_PER_CLIENT,
            rpc_tls: None,
            acl: None,
            acl_initial_management: None,
            raft_snapshot_threshold: DEFAULT_RAFT_SNAPSHOT_THRESHOLD,
            raft_trailing_logs: DEFAULT_RAFT_TRAILING_LOGS,
            group_commit: true,
        }
    }

    /// The Raft timings. openraft 0.9 picks each server's election timeout once, at random
    /// between the bounds, and a follower that hears from its leader refuses to vote for
    /// anyone else for `election_max` (the leader's lease). So a follower stands for
    /// election `election_max` + its own timeout after the leader's last heartbeat: with
    /// the production values that is 0.9–1.2 s, plus up to one tick (etcd's default election
    /// timeout is 1 s), and a leader is deposed only after missing three heartbeats in a row
    /// (openraft sends one per tick, every 1.5 × `heartbeat`). `heartbeat` is also openraft's
    /// timeout for every append-entries call: at 100 ms, calls to a busy follower under load
    /// timed out and were sent again.
    pub(crate) fn raft_timings(&self) -> RaftTimings {
        let ms = Duration::from_millis;
        if self.dev {
            RaftTimings {
                heartbeat: ms(50),
                election_min: ms(150),
                election_max: ms(300),
            }
        } else {
            RaftTimings {
                heartbeat: ms(200),
                election_min: ms(300),
                election_max: ms(600),
            }
        }
    }
}
