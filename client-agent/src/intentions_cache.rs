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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use concord_api::config_entry::StoredConfigEntry;
    use concord_api::rpc::{
        QueryMeta, QueryResult, ReadResponse, RpcError, WriteRequest, WriteResponse,
    };
    use serde_json::json;

    use super::*;

    type Answer = Result<(u64, Vec<StoredConfigEntry>), RpcError>;

    /// Servers that answer reads from a script; with the script used up a read blocks (as
    /// a blocking query does) until more is added. Records every read's `min_index`.
    #[derive(Debug, Default)]
    struct Scripted {
        answers: Mutex<VecDeque<Answer>>,
        more: tokio::sync::Notify,
        asked: Mutex<Vec<u64>>,
    }

    impl Scripted {
        fn push(&self, answer: Answer) {
            self.answers.lock().unwrap().push_back(answer);
            self.more.notify_one();
        }
    }

    #[async_trait::async_trait]
    impl ServerRpc for Scripted {
        async fn read(&self, _q: Query, o: QueryOptions) -> Result<ReadResponse, RpcError> {
            self.asked.lock().unwrap().push(o.min_index);
            loop {
                let next = self.answers.lock().unwrap().pop_front();
                match next {
                    Some(Ok((index, list))) => {
                        let meta = QueryMeta {
                            index,
                            known_leader: true,
                            last_contact_ms: 0,
                            results_filtered_by_acls: false,
                        };
                        let result = QueryResult::ConfigEntries(list);
                        return Ok(ReadResponse { meta, result });
                    }
                    Some(Err(e)) => return Err(e),
                    None => self.more.notified().await,
                }
            }
        }

        async fn write(&self, _r: WriteRequest) -> Result<WriteResponse, RpcError> {
            Err(RpcError::Internal("no writes".into()))
        }
    }

    fn entry(dest: &str, sources: serde_json::Value, index: u64) -> StoredConfigEntry {
        StoredConfigEntry {
            kind: SERVICE_INTENTIONS.into(),
            name: dest.into(),
            body: json!({"Kind": SERVICE_INTENTIONS, "Name": dest, "Sources": sources}),
            create_index: index,
            modify_index: index,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn follows_changes_retries_errors_and_restarts_after_a_restore() {
        let rpc = Arc::new(Scripted::default());
        rpc.push(Err(RpcError::NoLeader));
        rpc.push(Ok((
            7,
            vec![
                entry("*", json!([{"Name": "*", "Action": "deny"}]), 6),
                entry("db", json!([{"Name": "web", "Action": "allow"}]), 7),
            ],
        )));
        let cache = IntentionsCache::default();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(follow(rpc.clone(), cache.sender(), async {
            let _ = stop_rx.await;
        }));
        let mut rx = cache.sender().subscribe();
        rx.wait_for(|s| s.index == 7).await.unwrap();
        let names: Vec<(String, String)> = cache
            .current()
            .intentions
            .iter()
            .map(|i| (i.source_name.clone(), i.destination_name.clone()))
            .collect();
        let want = [("web", "db"), ("*", "*")].map(|(a, b)| (a.to_string(), b.to_string()));
        assert_eq!(names, want);

        // The servers restored an older snapshot: the index went backwards.
        rpc.push(Ok((3, vec![])));
        rx.wait_for(|s| s.index == 3).await.unwrap();
        assert!(cache.current().intentions.is_empty());
        // Let the follower issue its next (blocking) read.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(*rpc.asked.lock().unwrap(), [0, 0, 7, 0]);
        let _ = stop_tx.send(());
        task.await.unwrap();
    }
}
