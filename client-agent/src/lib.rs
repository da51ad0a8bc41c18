//! The Concord client agent: Consul's HTTP API and DNS interface, the services and health
//! checks registered on this host, and their sync to the servers. It never links the server
//! crate: everything it knows of the catalog arrives over server RPC as `concord_api` types.
//!
//! # Layout
//! - [`serve`]: [`serve::run`] starts everything below on the caller's sockets and stops it
//!   all on shutdown.
//! - [`http`]: Consul's HTTP API (`/v1/agent`, `catalog`, `health`, `kv`, `txn`, `session`,
//!   `status`, `config`, `connect/intentions`, `discovery-chain`, `connect/ca`) on axum; one extractor for the common query parameters, one reply helper.
//! - [`acl`]: ACL configuration, the agent's tokens, token resolution (TTL cache, down
//!   policy) into `concord_api::acl` authorizers; [`acl::OnBehalf`] stamps every server RPC
//!   with the token it is made on behalf of (the request's, else the agent's own).
//! - [`agent`]: [`agent::AgentCore`], the state HTTP handlers share, and the operations on it.
//! - [`config`]: the agent's [`config::Config`].
//! - [`local`]: local services and checks, and which of them the catalog lacks.
//! - [`ae`]: anti-entropy, the loop that pushes local state to the catalog.
//! - [`definition`]: validation and defaults of service and check definitions.
//! - [`sidecar`]: `Connect.SidecarService` expanded into its own `connect-proxy` service.
//! - [`checks`]: HTTP, TCP, TTL and script health checks run by the agent.
//! - [`filter`]: Consul's `?filter=` expressions (go-bexpr) over JSON results.
//! - [`catalog_cache`]: the agent's in-memory copy of the catalog, fed by a blocking query.
//! - [`cache`]: the agent cache behind `?cached` reads (health service, catalog services),
//!   each key kept current by a background blocking query.
//! - `limits`: the per-client cap on parked blocking queries (a `429` beyond it), the
//!   HTTP API's outermost layer; connection caps and timeouts are `concord_net::serve`'s.
//! - [`intentions_cache`]: the agent's copy of the intentions (Connect authorize reads it),
//!   fed by one blocking query.
//! - [`dns`]: the DNS server (hickory) answering from that copy.
//! - [`connect`]: the Connect CA cache: roots followed by a blocking query, leaf
//!   certificates made here (key + CSR, a server signs) and renewed before expiry.
//! - [`rpc_client`]: the seam to the servers: the [`rpc_client::ServerRpc`] trait, the real
//!   client over `concord_net`, typed queries; an in-memory fake in tests.
//! - [`membership`]: the agent's side of the LAN gossip pool: member tags and JSON, servers
//!   learned from the pool, user events filtered into a ring, cluster-wide keyring changes.
//! - [`persist`]: API-registered services and checks kept in the data dir across restarts.
//! - [`metrics`]: `/v1/agent/metrics` in JSON and Prometheus formats.
//! - [`sidecar_metrics`]: the local sidecars' metrics, scraped into `/v1/agent/metrics`.
//! - [`logs`]: the process's log lines fanned out to `/v1/agent/monitor` readers.

pub mod acl;
pub mod ae;
pub mod agent;
pub mod cache;
pub mod catalog_cache;
pub mod checks;
pub mod config;
pub mod connect;
pub mod definition;
pub mod dns;
pub mod filter;
pub mod http;
pub mod intentions_cache;
mod limits;
pub mod local;
pub mod logs;
pub mod membership;
pub mod metrics;
pub mod persist;
pub mod rpc_client;
pub mod serve;
pub mod sidecar;
pub mod sidecar_metrics;

pub use config::{Config, HttpLimits};
pub use serve::{run, AgentError, Listeners};
