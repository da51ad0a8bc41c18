//! The agent's copy of every intention, kept current by one blocking query on the servers.
//!
//! `POST /v1/agent/connect/authorize` is asked once per inbound connection by every proxy on
//! the node, so it must not cost a server round trip: it reads this copy. A background task
//! ([`follow`]) long-polls the `service-intentions` config entries (stale reads: any server
//! may answer) and publishes each change, already flattened into precedence order, through
//! a `watch` channel; readers take an `Arc` of the current snapshot.

use std::sync::Arc;
use std::time::Duration;

use concord_api::config_entry::{ConfigEntry, SERVICE_INTENTIONS};
use concord_api::intention::{entry_intentions, sort_intentions, Intention};
use concord_api::rpc::{Consistency, Query, QueryOptions};
use tokio::sync::watch;

use crate::rpc_client::ServerRpc;

/// Every intention, in evaluation order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IntentionsSnapshot {
    /// Index of the config entries it was built from (0: not fetched yet).
    pub index: u64,
    /// Every intention, highest precedence first.
    pub intentions: Vec<Intention>,
}

/// The cache: its sending end (fed by [`follow`]) and a way to read it.
#[derive(Debug)]
pub struct IntentionsCache {
    tx: watch::Sender<Arc<IntentionsSnapshot>>,
}

impl Default for IntentionsCache {
    fn default() -> Self {
        IntentionsCache {
            tx: watch::Sender::new(Arc::new(IntentionsSnapshot::default())),
        }
    }
}

impl IntentionsCache {
    /// The current snapshot.
    pub fn current(&self) -> Arc<IntentionsSnapshot> {
        self.tx.borrow().clone()
    }

    /// The current snapshot once the first fetch has landed, waiting at most `bound`
    /// (then whatever is there: an agent cut off from the servers still answers, from
    /// what it last knew, like Consul's cache).
    pub async fn ready(&self, bound: Duration) -> Arc<IntentionsSnapshot> {
        let mut rx = self.tx.subscribe();
        let _ = tokio::time::timeout(bound, rx.wait_for(|s| s.index != 0)).await;
        self.current()
    }

    /// The sending end, for [`follow`].
    pub fn sender(&self) -> watch::Sender<Arc<IntentionsSnapshot>> {
        self.tx.clone()
    }
}

/// Flattens `service-intentions` entries into intentions in evaluation order. Entries that
/// no longer decode (written by a newer version) are skipped, not fatal.
pub fn flatten(entries: &[concord_api::config_entry::StoredConfigEntry]) -> Vec<Intention> {
    let mut all: Vec<Intention> = entries
        .iter()
        .filter_map(|stored| match stored.decode() {
            Ok(ConfigEntry::ServiceIntentions(e)) => Some(entry_intentions(
                &e,
                stored.create_index,
                stored.modify_index,
            )),
            _ => None,
        })
        .flatten()
        .collect();
    sort_intentions(&mut all);
    all
}

/// Keeps `tx` current until `shutdown`: one blocking query at a time, backing off on errors.
pub async fn follow(
    rpc: Arc<dyn ServerRpc>,
    tx: watch::Sender<Arc<IntentionsSnapshot>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    const FIRST_RETRY: Duration = Duration::from_millis(100);
    const LAST_RETRY: Duration = Duration::from_secs(10);
    /// Long-poll length; a change ends the poll at once, so this only bounds a lost wake-up.
    const POLL_MS: u64 = 60_000;

    tokio::pin!(shutdown);
    let mut seen = 0;
    let mut retry = FIRST_RETRY;
    loop {
        let query = Query::ConfigEntryList {
            kind: Some(SERVICE_INTENTIONS.to_string()),
        };
        let options = QueryOptions {
            min_index: seen,
            max_wait_ms: POLL_MS,
            consistency: Consistency::Stale,
        };
        let answer = tokio::select! {
            _ = &mut shutdown => return,
            a = rpc.config_entries(query, options) => a,
        };
        let Ok((meta, entries)) = answer.inspect_err(|e| {
            tracing::debug!(error = %e, "intentions cache refresh failed");
        }) else {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(retry) => {}
            }
            retry = (retry * 2).min(LAST_RETRY);
            continue;
        };
        retry = FIRST_RETRY;
        if meta.index != seen {
            tx.send_replace(Arc::new(IntentionsSnapshot {
                index: meta.index,
                intentions: flatten(&entries),
            }));
        }
        // A lower index means the servers restored an older snapshot: start over.
        seen = if meta.index < seen { 0 } else { meta.index };
    }
}
