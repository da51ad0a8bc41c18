//! The agent cache behind `?cached` reads (Consul's `agent/cache`), for
//! `/v1/health/service/:name` and `/v1/catalog/services`.
//!
//! Both are Consul "background refresh" types: the first read of a key fetches from the
//! servers (`X-Cache: MISS`) and starts one task that keeps the entry current with a
//! blocking query; later reads answer from memory (`X-Cache: HIT`). `Age` is 0 while that
//! refresh keeps contact with the servers and counts from the first failed refresh
//! otherwise, as Consul reports it. A request's `max-age` (from `Cache-Control` or the
//! query string) forces a fresh fetch when the entry is older; `stale-if-error` lets a
//! failed forced fetch fall back to an entry no older than it. An entry unread for
//! [`IDLE_TTL`] is dropped and its refresh stops.
//!
//! Key: the query plus its consistency mode, so `?stale` and default reads don't share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use concord_api::rpc::{Query, QueryOptions, ReadResponse, RpcError};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::rpc_client::ServerRpc;

/// An entry nobody read for this long is dropped (Consul's default `LastGetTTL` is 3 days;
/// ours is shorter because each entry holds a blocking query on the servers).
pub const IDLE_TTL: Duration = Duration::from_secs(3600);

/// The blocking wait of the background refresh.
const REFRESH_WAIT_MS: u64 = 60_000;

/// First and longest delay before retrying a failed refresh.
const REFRESH_BACKOFF: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(10));

/// What a request asks of the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// Refetch when the entry is older than this.
    pub max_age: Option<Duration>,
    /// On a failed refetch, serve an entry no older than this.
    pub stale_if_error: Option<Duration>,
}

impl CacheControl {
    /// Parses `max-age=N` and `stale-if-error=N` (seconds) from a `Cache-Control` value;
    /// other directives are ignored, as Consul does.
    pub fn parse(header: &str) -> Result<Self, String> {
        let mut control = CacheControl::default();
        for directive in header.split(',').map(str::trim) {
            let Some((name, value)) = directive.split_once('=') else {
                continue;
            };
            let slot = match name.trim().to_ascii_lowercase().as_str() {
                "max-age" => &mut control.max_age,
                "stale-if-error" => &mut control.stale_if_error,
                _ => continue,
            };
            let secs: u64 = value
                .trim()
                .parse()
                .map_err(|_| format!("Cache-Control {name} must be whole seconds: {value:?}"))?;
            *slot = Some(Duration::from_secs(secs));
        }
        Ok(control)
    }
}

/// How a cached read was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheMeta {
    /// Answered from memory.
    pub hit: bool,
    /// Staleness: 0 while the refresh keeps contact, else time since it lost it.
    pub age: Duration,
}

#[derive(Clone, Debug)]
struct Slot {
    response: ReadResponse,
    /// When the background refresh first failed since its last success.
    lost_contact: Option<Instant>,
}

impl Slot {
    fn age(&self) -> Duration {
        self.lost_contact.map_or(Duration::ZERO, |t| t.elapsed())
    }
}

#[derive(Debug)]
struct Entry {
    slot: watch::Sender<Slot>,
    last_read: Mutex<Instant>,
}

/// The agent's cache of `?cached` reads.
#[derive(Debug, Default)]
pub struct AgentCache {
    entries: Arc<Mutex<HashMap<String, Arc<Entry>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AgentCache {
    /// Answers `query` from the cache, fetching (and starting a refresh) on a miss.
    /// `options.min_index` makes it a blocking read against the cache.
    pub async fn read(
        &self,
        rpc: &Arc<dyn ServerRpc>,
        query: Query,
        options: QueryOptions,
        control: CacheControl,
    ) -> Result<(ReadResponse, CacheMeta), RpcError> {
        let key = format!("{:?}|{query:?}", options.consistency);
        let existing = lock(&self.entries).get(&key).cloned();
        let Some(entry) = existing else {
            return self.miss(rpc, key, query, options).await;
        };
        *lock(&entry.last_read) = Instant::now();
        let slot = entry.slot.borrow().clone();
        let too_old = control.max_age.is_some_and(|max| slot.age() > max);
        if too_old {
            return match fetch(rpc, &query, options).await {
                Ok(response) => {
                    entry.slot.send_replace(Slot {
                        response: response.clone(),
                        lost_contact: None,
                    });
                    Ok((
                        response,
                        CacheMeta {
                            hit: false,
                            age: Duration::ZERO,
                        },
                    ))
                }
                Err(e) if control.stale_if_error.is_some_and(|max| slot.age() <= max) => {
                    tracing::debug!(error = %e, "cache refetch failed; serving stale entry");
                    Ok((
                        slot.response.clone(),
                        CacheMeta {
                            hit: true,
                            age: slot.age(),
                        },
                    ))
                }
                Err(e) => Err(e),
            };
        }
        let slot = match options.blocking_wait() {
            Some(wait) if slot.response.meta.index <= options.min_index => {
                let mut rx = entry.slot.subscribe();
                let min = options.min_index;
                // A timeout answers with what is there, as a blocking query does.
                let _ =
                    tokio::time::timeout(wait, rx.wait_for(|s| s.response.meta.index > min)).await;
                let latest = rx.borrow().clone();
                latest
            }
            _ => slot,
        };
        let age = slot.age();
        Ok((slot.response, CacheMeta { hit: true, age }))
    }

    async fn miss(
        &self,
        rpc: &Arc<dyn ServerRpc>,
        key: String,
        query: Query,
        options: QueryOptions,
    ) -> Result<(ReadResponse, CacheMeta), RpcError> {
        let response = fetch(rpc, &query, options).await?;
        let entry = {
            let mut entries = lock(&self.entries);
            if let Some(raced) = entries.get(&key) {
                // Another request filled it meanwhile; its refresh already runs.
                raced.slot.send_replace(Slot {
                    response: response.clone(),
                    lost_contact: None,
                });
                return Ok((
                    response,
                    CacheMeta {
                        hit: false,
                        age: Duration::ZERO,
                    },
                ));
            }
            let (slot, _) = watch::channel(Slot {
                response: response.clone(),
                lost_contact: None,
            });
            let entry = Arc::new(Entry {
                slot,
                last_read: Mutex::new(Instant::now()),
            });
            entries.insert(key.clone(), entry.clone());
            entry
        };
        tokio::spawn(refresh(
            self.entries.clone(),
            key,
            entry,
            rpc.clone(),
            query,
            options,
        ));
        Ok((
            response,
            CacheMeta {
                hit: false,
                age: Duration::ZERO,
            },
        ))
    }

    /// How many keys are cached (tests and metrics).
    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A plain (non-blocking) read with the request's consistency.
async fn fetch(
    rpc: &Arc<dyn ServerRpc>,
    query: &Query,
    options: QueryOptions,
) -> Result<ReadResponse, RpcError> {
    let options = QueryOptions {
        min_index: 0,
        max_wait_ms: 0,
        ..options
    };
    rpc.read(query.clone(), options).await
}

/// Keeps one entry current with blocking queries until it goes unread for [`IDLE_TTL`].
async fn refresh(
    entries: Arc<Mutex<HashMap<String, Arc<Entry>>>>,
    key: String,
    entry: Arc<Entry>,
    rpc: Arc<dyn ServerRpc>,
    query: Query,
    options: QueryOptions,
) {
    let mut backoff = REFRESH_BACKOFF.0;
    loop {
        if lock(&entry.last_read).elapsed() > IDLE_TTL {
            let mut entries = lock(&entries);
            if entries.get(&key).is_some_and(|e| Arc::ptr_eq(e, &entry)) {
                entries.remove(&key);
            }
            return;
        }
        let index = entry.slot.borrow().response.meta.index;
        let blocking = QueryOptions {
            min_index: index,
            max_wait_ms: REFRESH_WAIT_MS,
            ..options
        };
        match rpc.read(query.clone(), blocking).await {
            Ok(response) => {
                backoff = REFRESH_BACKOFF.0;
                let quick = response.meta.index <= index;
                entry.slot.send_replace(Slot {
                    response,
                    lost_contact: None,
                });
                if quick {
                    // An unchanged index came back (timeout, or a server that doesn't
                    // block): don't spin.
                    tokio::time::sleep(REFRESH_BACKOFF.0).await;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "cache refresh failed");
                entry.slot.send_modify(|s| {
                    s.lost_contact.get_or_insert_with(Instant::now);
                });
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(REFRESH_BACKOFF.1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc_client::fake::FakeServers;
    use concord_api::catalog::{NodeService, RegisterRequest};
    use concord_api::rpc::QueryResult;

    fn register(fake: &FakeServers, id: &str) {
        fake.register(RegisterRequest {
            node: "n1".into(),
            address: "10.0.0.1".into(),
            service: Some(NodeService {
                id: id.into(),
                service: id.into(),
                ..NodeService::default()
            }),
            ..RegisterRequest::default()
        });
    }

    fn names(response: &ReadResponse) -> Vec<String> {
        match &response.result {
            QueryResult::Services(m) => m.keys().cloned().collect(),
            other => panic!("{other:?}"),
        }
    }

    fn services() -> Query {
        Query::Services {
            node_meta: Vec::new(),
        }
    }

    #[test]
    fn cache_control_parses_the_directives_consul_reads() {
        let c = CacheControl::parse("max-age=30, stale-if-error=600, must-revalidate").unwrap();
        assert_eq!(c.max_age, Some(Duration::from_secs(30)));
        assert_eq!(c.stale_if_error, Some(Duration::from_secs(600)));
        assert_eq!(
            CacheControl::parse("no-store").unwrap(),
            CacheControl::default()
        );
        let err = CacheControl::parse("max-age=soon").unwrap_err();
        assert!(err.contains("max-age"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn miss_then_hit_and_the_refresh_follows_changes() {
        let fake = Arc::new(FakeServers::default());
        register(&fake, "web");
        let rpc: Arc<dyn ServerRpc> = fake.clone();
        let cache = AgentCache::default();
        let o = QueryOptions::default();
        let none = CacheControl::default();

        let (first, meta) = cache.read(&rpc, services(), o, none).await.unwrap();
        assert_eq!((meta.hit, names(&first)), (false, vec!["web".to_string()]));
        let (_, meta) = cache.read(&rpc, services(), o, none).await.unwrap();
        assert_eq!(
            meta,
            CacheMeta {
                hit: true,
                age: Duration::ZERO
            }
        );
        assert_eq!(cache.len(), 1);

        tracing::info!("a change reaches the entry through the background refresh");
        register(&fake, "api");
        loop {
            let (r, meta) = cache.read(&rpc, services(), o, none).await.unwrap();
            assert!(meta.hit);
            if names(&r).len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn age_counts_from_lost_contact_and_max_age_forces_a_fetch() {
        let fake = Arc::new(FakeServers::default());
        register(&fake, "web");
        let rpc: Arc<dyn ServerRpc> = fake.clone();
        let cache = AgentCache::default();
        let o = QueryOptions::default();
        let none = CacheControl::default();
        cache.read(&rpc, services(), o, none).await.unwrap();

        tracing::info!("the servers go away; hits keep coming with a growing Age");
        fake.fail_next(usize::MAX);
        tokio::time::sleep(Duration::from_secs(30)).await;
        let (r, meta) = cache.read(&rpc, services(), o, none).await.unwrap();
        assert!(meta.hit && meta.age >= Duration::from_secs(25), "{meta:?}");
        assert_eq!(names(&r), ["web"]);

        tracing::info!("max-age below the age refetches, which fails without stale-if-error");
        let strict = CacheControl {
            max_age: Some(Duration::from_secs(5)),
            stale_if_error: None,
        };
        assert!(cache.read(&rpc, services(), o, strict).await.is_err());
        let lenient = CacheControl {
            stale_if_error: Some(Duration::from_secs(3600)),
            ..strict
        };
        let (_, meta) = cache.read(&rpc, services(), o, lenient).await.unwrap();
        assert!(meta.hit);

        tracing::info!("servers back: the forced fetch is a MISS with Age 0");
        fake.fail_next(0);
        register(&fake, "api");
        let (r, meta) = cache.read(&rpc, services(), o, strict).await.unwrap();
        assert_eq!(
            meta,
            CacheMeta {
                hit: false,
                age: Duration::ZERO
            }
        );
        assert_eq!(names(&r), ["api", "web"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_entry_is_dropped() {
        let fake = Arc::new(FakeServers::default());
        let rpc: Arc<dyn ServerRpc> = fake.clone();
        let cache = AgentCache::default();
        let o = QueryOptions::default();
        cache
            .read(&rpc, services(), o, CacheControl::default())
            .await
            .unwrap();
        assert_eq!(cache.len(), 1);
        tokio::time::sleep(IDLE_TTL + Duration::from_secs(5)).await;
        assert!(cache.is_empty());
    }
}
