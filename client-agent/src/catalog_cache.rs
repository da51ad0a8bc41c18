//! The agent's local view of the servers' catalog, kept fresh by one blocking query.
//!
//! DNS answers come from this view, never from a server round-trip per query: a background
//! task long-polls [`concord_api::rpc::Query::CatalogDump`] and publishes each new snapshot
//! through a `tokio::sync::watch` channel. Readers take an `Arc` of the current snapshot, so a
//! DNS query costs one atomic clone and no lock held across an await.

use std::sync::Arc;

use concord_api::catalog::{CheckServiceNode, Node};

/// One consistent copy of the catalog.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CatalogSnapshot {
    /// Raft index the snapshot was taken at (0 before the first fetch).
    pub index: u64,
    /// Every node.
    pub nodes: Vec<Node>,
    /// Every service instance with its node and all checks that apply to it.
    pub instances: Vec<CheckServiceNode>,
}

/// Receiving end of the catalog view.
pub type CatalogView = tokio::sync::watch::Receiver<Arc<CatalogSnapshot>>;
