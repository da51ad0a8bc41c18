//! Concord's server: a Raft-replicated (openraft + sled) state store holding the catalog,
//! KV, sessions and config entries, served to agents over the server RPC port (`api::rpc`). The
//! Consul-compatible core of `agent/consul`: the leader applies writes through Raft,
//! followers forward, any server answers stale reads, blocking queries wake on change.
//!
//! Start one with [`Server::start`] (or [`run`] until a shutdown signal); a server in a LAN
//! gossip pool starts with [`Server::start_with_gossip`].
//!
//! # Layout
//! Modules from the top floor down; each imports only from below it.
//! - [`Config`], [`Server`], [`run`], [`ServerError`]: the public API the CLI calls.
//! - `server`: wiring only: storage, Raft, RPC listener, leader loop, start/shutdown.
//! - `acl`: the leader's side of ACL writes (IDs, secrets, hashes, rules checked, links
//!   resolved) before they are proposed; `acl::enforce`: every RPC read and write judged by
//!   the token it carries (writes vetted before they are built, reads refused or filtered).
//! - `rpc`: the RPC router: agent reads/writes (forward-or-local decided up front, blocking
//!   queries) and Raft's incoming endpoints; [`LocalRpc`], the same reads and writes for an
//!   agent in this process (no socket).
//! - [`archive`]: operator snapshot archives (gzipped tar: `meta.json`, `state.bin`,
//!   `SHA256SUMS`): write, verify, and the server side of save and restore.
//! - `autopilot`: the leader's Raft membership loop (learners in, promoted once stable;
//!   left and dead servers out) and the `/v1/operator/*` reads and writes over Raft.
//! - `bootstrap`: `-bootstrap-expect N > 1`: form the cluster once from the gossip pool.
//! - `leader`: leader-only work: session TTL expiry, registering this server in the catalog,
//!   reconciling the LAN gossip pool's members into it (`serfHealth`), bootstrapping the
//!   Connect CA.
//! - `connect`: the built-in Connect CA: bootstrap, configuration and rotation (cross-signed),
//!   leaf signing (`connect/ca`: the pure certificate work).
//! - `network`: Raft RPCs to peers over HTTP (`concord_net::rpc::RpcHttp`).
//! - `node`: what handlers and the leader loop share (`Shared`, `Leadership`) and the one
//!   write path into Raft (`Shared::propose`).
//! - `proposer`: group commit: concurrent writes proposed as one Raft entry
//!   (`Command::Batch`), so they share the log's sync and a replication round trip.
//! - `cluster`: pure decisions over the pool and the Raft configuration (bootstrap,
//!   membership plan, server health), table-tested.
//! - `timers`: session TTL timers (tokio time), armed while this server leads.
//! - `fsm`: the Raft state machine over the state store; snapshots persisted in sled.
//! - `data_dir`: the data dir's layout and recorded format version (refuses others).
//! - `log_store`: the Raft log, vote and commit point: a write-ahead log of segment files,
//!   fdatasynced (group commit) before an entry is acknowledged.
//! - `raft`: openraft type configuration and aliases, and the Raft wire (paths, bodies)
//!   both `network` and `rpc` use.
//! - `state`: the state store (tables, queries, indexes, watches), a plain library;
//!   `state/schema` names the tables; one module per table group.
//! - `command`: the Raft payload, an append-only `Command` enum.
//! - `model`: the store's own record types (what `Command`s, tables and snapshots hold),
//!   apart from the `concord_api` wire types; conversions at the edges.
//! - `config`: configuration and derived Raft timings.
//! - `golden` (tests only): golden-file checks pinning the on-disk encodings
//!   (`tests/fixtures/`).

mod acl;
pub mod archive;
mod autopilot;
mod bootstrap;
mod cluster;
mod command;
mod config;
mod connect;
mod data_dir;
mod fsm;
#[cfg(test)]
mod golden;
mod leader;
mod log_store;
mod model;
mod network;
mod node;
mod proposer;
mod raft;
mod rpc;
mod server;
mod state;
mod timers;

pub use config::{
    Config, DEFAULT_RAFT_SNAPSHOT_THRESHOLD, DEFAULT_RAFT_TRAILING_LOGS,
    DEFAULT_RPC_MAX_CONNS_PER_CLIENT,
};
pub use rpc::LocalRpc;
pub use server::{run, Server, ServerError};
pub use state::SESSION_TTL_MIN;
