//! The agent's local view of the servers' catalog, kept fresh by one blocking query.
//!
//! DNS answers come from this view, never from a server round-trip per query: a background
//! task long-polls [`concord_api::rpc::Query::CatalogDump`] and publishes each new snapshot
//! through a `tokio::sync::watch` channel. Readers take an `Arc` of the current snapshot, so a
//! DNS query costs one atomic clone and no lock held across an await.
//!
//! Beside the snapshot the task publishes a [`Contact`]: when the view was last known
//! current and whether the servers are failing now, so DNS can keep answering from the last
//! view while the servers are unreachable, within `dns_config.max_stale`, and stop after.

use std::sync::Arc;

use std::time::Duration;

use concord_api::catalog::{CheckServiceNode, Node};
use concord_api::rpc::{Consistency, QueryOptions};
use tokio::time::Instant;

/// One consistent copy of the catalog.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CatalogSnapshot {
    /// Raft index the snapshot was taken at (0 before the first fetch).
    pub index: u64,
    /// Every node.
    pub nodes: Vec<Node>,
    /// Every service instance with its node and all checks that apply to it.
    pub instances: Vec<CheckServiceNode>,
    /// Which showing of this index it is: 0 for the catalog as fetched; a view derived from
    /// it (DNS's ACL-filtered one) numbers each re-filtering, so answers built from one
    /// filtering are never replayed for another at the same index.
    pub view: u64,
}

/// Receiving end of the catalog view.
pub type CatalogView = tokio::sync::watch::Receiver<Arc<CatalogSnapshot>>;

/// How current the view is: what DNS needs to decide whether it may still answer from it.
///
/// Times are tokio instants so tests can drive them with paused time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Contact {
    /// When the view was last known current: the arrival of the last successful refresh,
    /// less how long the answering server had not heard from its leader
    /// (`X-Consul-LastContact`). `None` before the first refresh.
    pub current_at: Option<Instant>,
    /// When refreshes started failing; `None` while the last one succeeded (or one is
    /// outstanding after a success: a blocking query that has not returned means nothing
    /// changed, as far as the live server knows).
    pub failing_since: Option<Instant>,
}

impl Contact {
    /// How old the view is while the servers are failing; `None` while they answer.
    pub fn stale_for(&self, now: Instant) -> Option<Duration> {
        self.failing_since?;
        Some(
            self.current_at
                .map_or(Duration::MAX, |at| now.saturating_duration_since(at)),
        )
    }
}

/// Receiving end of the [`Contact`] channel.
pub type ContactView = tokio::sync::watch::Receiver<Contact>;

/// How the cache follows the servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowOptions {
    /// Read consistency: `Stale` (any server answers, Consul's DNS default `allow_stale`)
    /// or `Default` (the leader answers).
    pub consistency: Consistency,
    /// Long-poll length. Short enough that a lost wake-up costs little, and that a server
    /// vanishing silently (a partition rather than a refused connection) is noticed well
    /// within the stale bound: the blocking read's timeout is this plus some slack.
    pub wait: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            consistency: Consistency::Stale,
            wait: Duration::from_secs(60),
        }
    }
}

/// Keeps `tx` fed with the latest catalog, and `contact` with how current it is, until
/// `shutdown`: one blocking query at a time, backing off on errors.
pub async fn follow(
    rpc: Arc<dyn crate::rpc_client::ServerRpc>,
    tx: tokio::sync::watch::Sender<Arc<CatalogSnapshot>>,
    contact: tokio::sync::watch::Sender<Contact>,
    options: FollowOptions,
    shutdown: impl std::future::Future<Output = ()>,
) {
    const MIN_BACKOFF: Duration = Duration::from_millis(100);
    const MAX_BACKOFF: Duration = Duration::from_secs(10);

    let wait_ms = u64::try_from(options.wait.as_millis()).unwrap_or(u64::MAX);
    tokio::pin!(shutdown);
    let mut index = 0;
    let mut backoff = MIN_BACKOFF;
    loop {
        let options = QueryOptions {
            min_index: index,
            max_wait_ms: wait_ms,
            consistency: options.consistency,
        };
        let response = tokio::select! {
            _ = &mut shutdown => return,
            r = rpc.catalog_dump(options) => r,
        };
        match response {
            Ok((meta, (nodes, instances))) => {
                backoff = MIN_BACKOFF;
                let now = Instant::now();
                let lag = Duration::from_millis(meta.last_contact_ms);
                contact.send_modify(|c| {
                    c.current_at = Some(now.checked_sub(lag).unwrap_or(now));
                    c.failing_since = None;
                });
                // An index going backwards means the servers restored a snapshot: start over.
                let new_index = meta.index;
                if new_index != index || index == 0 {
                    tx.send_replace(Arc::new(CatalogSnapshot {
                        index: new_index,
                        nodes,
                        instances,
                        view: 0,
                    }));
                }
                index = if new_index < index { 0 } else { new_index };
            }
            Err(e) => {
                tracing::debug!(error = %e, "catalog cache refresh failed");
                contact.send_if_modified(|c| {
                    let first = c.failing_since.is_none();
                    if first {
                        c.failing_since = Some(Instant::now());
                    }
                    first
                });
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use concord_api::rpc::{
        Query, QueryMeta, QueryResult, ReadResponse, RpcError, WriteRequest, WriteResponse,
    };

    use super::*;
    use crate::rpc_client::ServerRpc;

    /// Servers that answer the first `answers` catalog reads (at index 5, 2 s behind their
    /// leader), then fail every call, recording the options they were asked with.
    #[derive(Debug)]
    struct Servers {
        answers: Mutex<usize>,
        asked: Mutex<Vec<QueryOptions>>,
    }

    #[async_trait::async_trait]
    impl ServerRpc for Servers {
        async fn read(&self, _: Query, options: QueryOptions) -> Result<ReadResponse, RpcError> {
            self.asked.lock().unwrap().push(options);
            let mut answers = self.answers.lock().unwrap();
            if *answers == 0 {
                return Err(RpcError::NoLeader);
            }
            *answers -= 1;
            Ok(ReadResponse {
                meta: QueryMeta {
                    index: 5,
                    known_leader: true,
                    last_contact_ms: 2_000,
                    results_filtered_by_acls: false,
                },
                result: QueryResult::CatalogDump {
                    nodes: Vec::new(),
                    instances: Vec::new(),
                },
            })
        }

        async fn write(&self, _: WriteRequest) -> Result<WriteResponse, RpcError> {
            Err(RpcError::NoLeader)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn contact_records_the_last_refresh_and_when_failures_began() {
        let servers = Arc::new(Servers {
            answers: Mutex::new(2),
            asked: Mutex::new(Vec::new()),
        });
        let (tx, mut catalog) = tokio::sync::watch::channel(Arc::new(CatalogSnapshot::default()));
        let (contact_tx, mut contact) = tokio::sync::watch::channel(Contact::default());
        let options = FollowOptions {
            consistency: Consistency::Stale,
            wait: Duration::from_secs(5),
        };
        let started = Instant::now();
        tokio::spawn(follow(
            servers.clone(),
            tx,
            contact_tx,
            options,
            std::future::pending(),
        ));

        let failing = contact
            .wait_for(|c| c.failing_since.is_some())
            .await
            .unwrap()
            .to_owned();
        assert_eq!(catalog.borrow_and_update().index, 5);
        // Current as of the answer, less the answering server's lag behind its leader.
        let current_at = failing.current_at.unwrap();
        assert!(current_at <= started, "{current_at:?} vs {started:?}");
        let failing_since = failing.failing_since.unwrap();
        assert_eq!(
            failing.stale_for(failing_since),
            Some(failing_since - current_at)
        );

        // Later failures keep the first failure time: the staleness clock never restarts.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(contact.borrow().failing_since, Some(failing_since));
        let asked = servers.asked.lock().unwrap().clone();
        assert!(asked.len() > 3, "retried with backoff: {}", asked.len());
        assert!(asked
            .iter()
            .all(|o| o.max_wait_ms == 5_000 && o.consistency == Consistency::Stale));
    }
}
