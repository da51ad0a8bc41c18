//! The Concord client agent: Consul's HTTP API and DNS interface, the services and health
//! checks registered on this host, and their sync to the servers. It never links the server
//! crate: everything it knows of the catalog arrives over server RPC as `concord_api` types.
//!
//! # Layout
//! - [`agent`]: [`agent::run`] wires everything below together; [`agent::AgentCore`] is the
//!   state HTTP handlers share.
//! - [`config`]: the agent's [`config::Config`].
//! - [`http`]: Consul's HTTP API (`/v1/agent`, `catalog`, `health`, `kv`, `txn`, `session`,
//!   `status`) on axum.
//! - [`local`]: local services and checks, and which of them the catalog lacks.
//! - [`ae`]: anti-entropy, the loop that pushes local state to the catalog.
//! - [`definition`]: validation and defaults of service and check definitions.
//! - [`checks`]: HTTP, TCP, TTL and script health checks run by the agent.
//! - [`filter`]: Consul's `?filter=` expressions (go-bexpr) over JSON results.
//! - [`catalog_cache`]: the agent's in-memory copy of the catalog, fed by a blocking query.
//! - [`dns`]: the DNS server (hickory) answering from that copy.
//! - [`rpc_client`]: the client of server RPC.
//! - [`persist`]: API-registered services and checks kept in the data dir across restarts.
//! - [`metrics`]: `/v1/agent/metrics` in JSON and Prometheus formats.

pub mod ae;
pub mod agent;
pub mod catalog_cache;
pub mod checks;
pub mod config;
pub mod definition;
pub mod dns;
pub mod filter;
pub mod http;
pub mod local;
pub mod metrics;
pub mod persist;
pub mod rpc_client;

pub use agent::{run, Listeners};
pub use config::Config;
