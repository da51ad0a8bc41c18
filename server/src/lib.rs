//! Concord's server: a Raft-replicated (openraft + sled) state store holding the catalog,
//! KV and sessions, served to agents over the server RPC port (`api::rpc`). The
//! Consul-compatible core of `agent/consul`: the leader applies writes through Raft,
//! followers forward, any server answers stale reads, blocking queries wake on change.
//!
//! Start one with [`Server::start`] (or [`run`] until a shutdown signal).
//!
//! # Layout
//! - [`Config`], [`Server`], [`run`], [`ServerError`]: the public API the CLI calls.
//! - `config`: configuration and derived Raft timings.
//! - `server`: wiring (storage, Raft, RPC listener, leader loop) and the state handlers share.
//! - `raft`: openraft type configuration and aliases.
//! - `command`: the Raft payload, an append-only `Command` enum.
//! - `state`: the state store (tables, queries, indexes, watches), a plain library;
//!   `state/schema` names the tables; one module per table group.
//! - `log_store`: the Raft log, vote and commit point on sled.
//! - `fsm`: the Raft state machine over the state store; snapshots persisted in sled.
//! - `network`: Raft RPCs to peers over HTTP.
//! - `rpc`: the RPC router: agent reads/writes (forwarding, blocking) and Raft endpoints.
//! - `leader`: leader-only work: session TTL timers, registering this server in the catalog.

mod command;
mod config;
mod fsm;
mod leader;
mod log_store;
mod network;
mod raft;
mod rpc;
mod server;
mod state;

pub use config::Config;
pub use server::{run, Server, ServerError};
