//! Concord's wire types: Consul-compatible JSON bodies (PascalCase field names, Go durations,
//! base64 KV values) and the internal server RPC messages. Serde only, no runtime: the agent,
//! the server and tests all speak through these types.
//!
//! # Layout
//! - [`acl`]: ACL tokens, policies, roles; the rules language and the authorizer, and what
//!   each server RPC needs of its token (pure).
//! - [`catalog`]: nodes, service instances, health checks, catalog register/deregister bodies.
//! - [`agent`]: service and check definitions as users register them; gossip members.
//! - [`kv`]: KV entries, KV operations, transactions, base64 encoding.
//! - [`session`]: sessions and the create body.
//! - [`config_entry`]: config entries (`/v1/config`): kinds, decoding, validation.
//! - [`discovery_chain`]: compiling router/splitter/resolver entries into a discovery chain.
//! - [`intention`]: intentions, their precedence and pure evaluation (shared with the proxy).
//! - [`connect`]: Connect CA roots, CA configuration, leaf certificates, SPIFFE identities.
//! - [`operator`]: `/v1/operator/raft` and `/v1/operator/autopilot` bodies and their RPCs.
//! - [`rpc`]: server RPC requests, results, errors and query options.
//! - [`duration`]: Go duration strings.
//! - [`decode`]: lenient (case-insensitive, snake_case) request decoding.

pub mod acl;
pub mod agent;
pub mod catalog;
pub mod config_entry;
pub mod connect;
pub mod decode;
pub mod discovery_chain;
pub mod duration;
pub mod intention;
pub mod kv;
pub mod operator;
pub mod rpc;
pub mod session;

/// The Consul API version whose behaviour Concord follows (reported by `/v1/agent/self`).
pub const CONSUL_COMPAT_VERSION: &str = "1.22.0";

/// Concord's own version.
pub const CONCORD_VERSION: &str = env!("CARGO_PKG_VERSION");
