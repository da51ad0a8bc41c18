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

/// Keeps `tx` fed with the latest catalog until `shutdown`: one blocking query at a time,
/// stale reads (any server may answer, as Consul's DNS does), backing off on errors.
pub async fn follow(
    rpc: Arc<dyn crate::rpc_client::ServerRpc>,
    tx: tokio::sync::watch::Sender<Arc<CatalogSnapshot>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use concord_api::rpc::{Consistency, QueryOptions};
    use std::time::Duration;

    const MIN_BACKOFF: Duration = Duration::from_millis(100);
    const MAX_BACKOFF: Duration = Duration::from_secs(10);
    /// Long-poll length: short enough that a lost wake-up costs little.
    const WAIT_MS: u64 = 60_000;

    tokio::pin!(shutdown);
    let mut index = 0;
    let mut backoff = MIN_BACKOFF;
    loop {
        let options = QueryOptions {
            min_index: index,
            max_wait_ms: WAIT_MS,
            consistency: Consistency::Stale,
        };
        let response = tokio::select! {
            _ = &mut shutdown => return,
            r = rpc.catalog_dump(options) => r,
        };
        match response {
            Ok((meta, (nodes, instances))) => {
                backoff = MIN_BACKOFF;
                // An index going backwards means the servers restored a snapshot: start over.
                let new_index = meta.index;
                if new_index != index || index == 0 {
                    tx.send_replace(Arc::new(CatalogSnapshot {
                        index: new_index,
                        nodes,
                        instances,
                    }));
                }
                index = if new_index < index { 0 } else { new_index };
            }
            Err(e) => {
                tracing::debug!(error = %e, "catalog cache refresh failed");
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
