//! Concord's sidecar proxy (`concord connect proxy -sidecar-for <service>`): mTLS between
//! services with SPIFFE identities from the built-in CA, intentions enforced per connection
//! and per request, and production-grade L7 behaviour (timeouts, retries, circuit breaking,
//! metrics).
//!
//! Nothing is implemented yet: the crate exists so the workspace layout is final and the
//! Connect and proxy issues land here without moving code. Planned shape (see
//! `docs/ARCHITECTURE.md`, "A proxied request"): one tower layer per L7 concern, composed
//! in a single `stack.rs`; intention evaluation as a pure, table-tested function.
//!
//! # Layout
//! - (empty until the Connect issue)
