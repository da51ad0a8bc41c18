//! Concord's sidecar proxy (`concord connect proxy -sidecar-for <service>`): mTLS between
//! services with SPIFFE identities from the built-in CA, intentions enforced per connection
//! and per request, and production-grade L7 behaviour (timeouts, retries, circuit breaking,
//! metrics).
//!
//! The control side follows the local agent (identity, upstream endpoints, intentions) and
//! publishes snapshots ([`model`]); the data side (L4 byte streams, L7 HTTP) reads only those
//! snapshots, so no connection or request waits on the agent.
//!
//! # Layout
//! - [`model`]: the seams between control and data side: endpoints, connectors, snapshots.
//! - [`l7`]: the HTTP data path: routing, timeouts, retries, balancing, circuit breaking,
//!   outlier detection, L7 intentions, metrics.
pub mod l7;
pub mod model;
