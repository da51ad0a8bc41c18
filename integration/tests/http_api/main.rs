//! Consul's HTTP API against a real `concord agent -dev`, through a plain HTTP client.

mod agent;
mod blocking;
mod errors;
mod kv;
mod session;
