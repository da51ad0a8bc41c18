//! Consul's HTTP API against a real `concord agent -dev`, through a plain HTTP client.

// Test helpers outside #[test] functions may unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod agent;
mod blocking;
mod errors;
mod kv;
mod session;
