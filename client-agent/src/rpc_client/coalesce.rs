//! Identical blocking reads parked at once share one server call ([`Coalesced`]).
//!
//! Watchers of one key or one service all ask the same question (same query, same index,
//! same wait): 25,000 of them parked on one agent were 25,000 blocking queries on the
//! server, each re-run on every write and each answered on its own. Coalesced, they are one
//! server call whose answer is handed to every watcher, so one write wakes one query per
//! distinct question, not one per watcher, through an agent in front of servers as much as
//! in a dev agent. Only blocking reads are shared: a read with `index=0` answers at once
//! and has nothing to share.
//!
//! A watcher joins a call only while that call is young (within the jitter a server adds
//! anyway, [`MAX_JITTER_FRACTION`] of the wait), so it is never answered much sooner than
//! its own `?wait` would have ended. The call is dropped (and the server-side query with
//! it) when every watcher sharing it has gone.
//!
//! The watchers of one shared answer also share its encoded reply: an HTTP request runs
//! inside [`track`], under a key naming everything else its reply depends on (method, URI,
//! token), and [`encode_once`] encodes the body once per key and answer, so 25,000 woken
//! watchers of one key write one pre-encoded body instead of encoding 25,000 copies. A
//! request answered by no shared read, or by more than one, encodes its own.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared, WeakShared};
use tokio::time::Instant;

use concord_api::rpc::{
    Query, QueryOptions, ReadResponse, RpcError, WriteRequest, WriteResponse, MAX_JITTER_FRACTION,
};

use super::ServerRpc;

type Call = BoxFuture<'static, Result<ReadResponse, RpcError>>;

/// A server call in flight that others may join.
struct Flight {
    id: u64,
    started: Instant,
    /// Weak: the watchers hold the call; once they all leave it is dropped.
    call: WeakShared<Call>,
    /// The replies encoded from its answer, shared by its watchers.
    replies: Arc<Replies>,
}

/// Encoded replies to one shared answer, by request key (see [`track`]). Few keys per
/// answer (watchers of one key ask alike), so a list.
#[derive(Debug, Default)]
pub(crate) struct Replies(Mutex<Vec<(String, Bytes)>>);

/// What answered the current request: no shared read yet, one, or more than one (its reply
/// then depends on several answers and is not shared).
#[derive(Debug)]
enum Answered {
    Nothing,
    Shared(Arc<Replies>),
    Several,
}

/// The current request's key and what answered it.
#[derive(Debug)]
struct Tracked {
    key: String,
    answered: Answered,
}

tokio::task_local! {
    static TRACKED: RefCell<Tracked>;
}

/// Runs one request's `work`, noting which shared read answers it. `key` must name
/// everything besides that answer that the reply depends on (the HTTP API uses method,
/// URI and token): requests of one key answered alike share one encoded reply.
pub async fn track<F: Future>(key: String, work: F) -> F::Output {
    let tracked = Tracked {
        key,
        answered: Answered::Nothing,
    };
    TRACKED.scope(RefCell::new(tracked), work).await
}

/// Notes that a shared read (whose replies are `replies`) answered the current request.
fn answered_by(replies: &Arc<Replies>) {
    // Outside `track` (anti-entropy, caches) there is nothing to note.
    let _ = TRACKED.try_with(|t| {
        let mut t = t.borrow_mut();
        t.answered = match &t.answered {
            Answered::Nothing => Answered::Shared(replies.clone()),
            _ => Answered::Several,
        };
    });
}

/// The current request's reply body: encoded by `encode`, or the one already encoded for
/// another request of the same key answered by the same shared read.
pub fn encode_once<E>(encode: impl FnOnce() -> Result<Bytes, E>) -> Result<Bytes, E> {
    let shared = TRACKED
        .try_with(|t| match &t.borrow().answered {
            Answered::Shared(replies) => Some((replies.clone(), t.borrow().key.clone())),
            _ => None,
        })
        .ok()
        .flatten();
    let Some((replies, key)) = shared else {
        return encode();
    };
    let found = {
        let list = replies.0.lock().unwrap_or_else(PoisonError::into_inner);
        list.iter().find(|(k, _)| *k == key).map(|(_, b)| b.clone())
    };
    if let Some(body) = found {
        return Ok(body);
    }
    // Encoded outside the lock: two first watchers may both encode; one copy is kept.
    let body = encode()?;
    let mut list = replies.0.lock().unwrap_or_else(PoisonError::into_inner);
    if !list.iter().any(|(k, _)| *k == key) {
        list.push((key, body.clone()));
    }
    Ok(body)
}

/// A [`ServerRpc`] that shares identical blocking reads in flight (see the module docs);
/// everything else passes through.
pub struct Coalesced {
    inner: Arc<dyn ServerRpc>,
    /// By the read's JSON (query and options). A std mutex: held for a map update only.
    flights: Mutex<HashMap<String, Flight>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Coalesced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalesced")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Coalesced {
    /// Shares `inner`'s blocking reads.
    pub fn new(inner: Arc<dyn ServerRpc>) -> Self {
        Coalesced {
            inner,
            flights: Mutex::default(),
            next_id: AtomicU64::new(0),
        }
    }

    /// The call to wait on for this read: a young one in flight, or a new one.
    fn join(
        &self,
        key: &str,
        query: Query,
        options: QueryOptions,
    ) -> (u64, Shared<Call>, Arc<Replies>) {
        let max_age = options.max_blocking() / MAX_JITTER_FRACTION;
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(flight) = flights.get(key) {
            if flight.started.elapsed() <= max_age {
                if let Some(call) = flight.call.upgrade() {
                    return (flight.id, call, flight.replies.clone());
                }
            }
        }
        let inner = self.inner.clone();
        let call: Shared<Call> = async move { inner.read(query, options).await }
            .boxed()
            .shared();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let replies = Arc::new(Replies::default());
        if let Some(weak) = call.downgrade() {
            let flight = Flight {
                id,
                started: Instant::now(),
                call: weak,
                replies: replies.clone(),
            };
            flights.insert(key.to_string(), flight);
        }
        (id, call, replies)
    }

    /// Forgets flight `id` of `key` if it is still the one listed and either `done` (a
    /// finished call is never joined) or left by every watcher.
    fn leave(&self, key: &str, id: u64, done: bool) {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        let gone = flights
            .get(key)
            .is_some_and(|f| f.id == id && (done || f.call.upgrade().is_none()));
        if gone {
            flights.remove(key);
        }
    }
}

/// Leaves a flight when its watcher is done or dropped (the client went away).
struct Seat<'a> {
    coalesced: &'a Coalesced,
    key: String,
    id: u64,
    done: bool,
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        self.coalesced.leave(&self.key, self.id, self.done);
    }
}

#[async_trait::async_trait]
impl ServerRpc for Coalesced {
    async fn read(&self, query: Query, options: QueryOptions) -> Result<ReadResponse, RpcError> {
        if options.min_index == 0 {
            return self.inner.read(query, options).await;
        }
        let Ok(key) = serde_json::to_string(&(&query, &options)) else {
            return self.inner.read(query, options).await;
        };
        let (id, call, replies) = self.join(&key, query, options);
        let mut seat = Seat {
            coalesced: self,
            key,
            id,
            done: false,
        };
        // Dropped before the seat (declared after it), so a watcher leaving unanswered no
        // longer holds the call when the seat looks whether anyone still does.
        let call = call;
        let answer = call.await;
        seat.done = true;
        if answer.is_ok() {
            answered_by(&replies);
        }
        answer
    }

    async fn write(&self, request: WriteRequest) -> Result<WriteResponse, RpcError> {
        self.inner.write(request).await
    }

    fn set_servers(&self, servers: Vec<std::net::SocketAddr>) {
        self.inner.set_servers(servers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_api::rpc::{QueryMeta, QueryResult};
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::watch;

    /// Counts reads; a blocking one waits until `index` passes its `min_index`.
    #[derive(Debug)]
    struct Counting {
        calls: AtomicUsize,
        index: watch::Sender<u64>,
    }

    #[async_trait::async_trait]
    impl ServerRpc for Counting {
        async fn read(&self, _: Query, options: QueryOptions) -> Result<ReadResponse, RpcError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut index = self.index.subscribe();
            let _ = index.wait_for(|i| *i > options.min_index).await;
            let index = *index.borrow();
            Ok(ReadResponse {
                meta: QueryMeta {
                    index,
                    ..QueryMeta::default()
                },
                result: QueryResult::Keys(vec![index.to_string()]),
            })
        }

        async fn write(&self, _: WriteRequest) -> Result<WriteResponse, RpcError> {
            Err(RpcError::Internal("no writes here".into()))
        }
    }

    fn setup() -> (Arc<Counting>, Arc<Coalesced>) {
        let inner = Arc::new(Counting {
            calls: AtomicUsize::new(0),
            index: watch::Sender::new(5),
        });
        (inner.clone(), Arc::new(Coalesced::new(inner)))
    }

    fn keys(prefix: &str) -> Query {
        Query::KvKeys {
            prefix: prefix.to_string(),
            separator: None,
        }
    }

    fn blocking(min_index: u64) -> QueryOptions {
        QueryOptions {
            min_index,
            max_wait_ms: 60_000,
            ..QueryOptions::default()
        }
    }

    #[tokio::test]
    async fn identical_blocking_reads_share_one_call() {
        let (inner, rpc) = setup();
        let mut watchers = tokio::task::JoinSet::new();
        for i in 0..100 {
            let rpc = rpc.clone();
            // Two distinct questions: a different prefix is its own call.
            let prefix = if i % 2 == 0 { "a" } else { "b" };
            watchers.spawn(async move { rpc.read(keys(prefix), blocking(5)).await });
        }
        while inner.calls.load(Ordering::SeqCst) < 2 || rpc.flights.lock().unwrap().len() < 2 {
            tokio::task::yield_now().await;
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        inner.index.send_replace(6);
        while let Some(done) = watchers.join_next().await {
            assert_eq!(done.unwrap().unwrap().meta.index, 6);
        }
        assert_eq!(
            inner.calls.load(Ordering::SeqCst),
            2,
            "one call per question"
        );
        assert!(
            rpc.flights.lock().unwrap().is_empty(),
            "finished calls are forgotten"
        );

        tracing::info!("a read at the new index is a new call, not the finished one");
        let (again, _) = tokio::join!(rpc.read(keys("a"), blocking(6)), async {
            while inner.calls.load(Ordering::SeqCst) < 3 {
                tokio::task::yield_now().await;
            }
            inner.index.send_replace(7);
        });
        assert_eq!(again.unwrap().meta.index, 7);
        assert_eq!(
            rpc.read(keys("a"), blocking(0)).await.unwrap().meta.index,
            7
        );
        assert_eq!(
            inner.calls.load(Ordering::SeqCst),
            4,
            "index=0 passes through"
        );
    }

    #[tokio::test]
    async fn a_call_left_by_every_watcher_is_dropped() {
        let (inner, rpc) = setup();
        let watcher = tokio::spawn({
            let rpc = rpc.clone();
            async move { rpc.read(keys("a"), blocking(5)).await }
        });
        while inner.calls.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            inner.index.receiver_count(),
            1,
            "the call waits on the server"
        );
        watcher.abort();
        let _ = watcher.await;
        assert_eq!(
            inner.index.receiver_count(),
            0,
            "the server-side wait is gone"
        );
        assert!(rpc.flights.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn watchers_of_one_answer_share_its_encoded_reply() {
        let (inner, rpc) = setup();
        let encodes = Arc::new(AtomicUsize::new(0));
        // Renders what a request's reply depends on: its key and the answer's index.
        let render = |key: &'static str, index: u64, encodes: &AtomicUsize| {
            encode_once(|| {
                encodes.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(Bytes::from(format!("{key}@{index}")))
            })
            .unwrap()
        };
        let mut watchers = tokio::task::JoinSet::new();
        for i in 0..10 {
            let (rpc, encodes) = (rpc.clone(), encodes.clone());
            // Two request keys (say, with and without `?pretty`) asking one question.
            let key = if i % 2 == 0 { "plain" } else { "pretty" };
            watchers.spawn(track(key.to_string(), async move {
                let answer = rpc.read(keys("a"), blocking(5)).await.unwrap();
                (key, render(key, answer.meta.index, &encodes))
            }));
        }
        while inner.calls.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        inner.index.send_replace(6);
        while let Some(done) = watchers.join_next().await {
            let (key, body) = done.unwrap();
            assert_eq!(body, format!("{key}@6"), "each key gets its own reply");
        }
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            encodes.load(Ordering::SeqCst),
            2,
            "one encoding per key, not per watcher"
        );

        tracing::info!("not shared: no request, a read that does not block, or two answers");
        encodes.store(0, Ordering::SeqCst);
        render("plain", 6, &encodes);
        let unblocked = track("plain".to_string(), async {
            let answer = rpc.read(keys("a"), blocking(0)).await.unwrap();
            render("plain", answer.meta.index, &encodes)
        });
        assert_eq!(unblocked.await, "plain@6");
        let (two, _) = tokio::join!(
            track("plain".to_string(), async {
                rpc.read(keys("a"), blocking(6)).await.unwrap();
                let answer = rpc.read(keys("b"), blocking(6)).await.unwrap();
                render("plain", answer.meta.index, &encodes)
            }),
            async {
                while inner.calls.load(Ordering::SeqCst) < 3 {
                    tokio::task::yield_now().await;
                }
                inner.index.send_replace(7);
            }
        );
        assert_eq!(two, "plain@7");
        assert_eq!(encodes.load(Ordering::SeqCst), 3, "each encoded its own");
    }
}
