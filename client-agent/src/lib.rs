//! The Concord client agent: Consul's HTTP API and DNS interface, local services and health
//! checks, and their sync to the servers.
//!
//! # Layout
//! - [`catalog_cache`]: the agent's in-memory copy of the catalog, fed by a blocking query.
//! - [`dns`]: the DNS server (hickory) answering from that copy.
//! - [`checks`]: HTTP, TCP and TTL health checks run by the agent.
