//! Connection workers: the threads that serve the proxy's connections, each with its own
//! single-threaded runtime (haproxy's and Envoy's model: thread per core, a connection stays
//! on one thread for its life).
//!
//! The listeners accept on the proxy's main runtime and hand each connection to the worker
//! serving the fewest open connections; the main runtime is worker 0. A connection's tasks
//! (TLS, HTTP parsing, the upstream connection, its timers) then run on that one thread, so
//! a request never crosses threads on its way through, while a burst of requests on many
//! connections is spread over several cores. The threads end when the last clone of
//! [`Workers`] and the last connection they serve are gone, so a graceful drain lets the
//! connections finish first. A multi-threaded work-stealing runtime spreads
//! bursts too, but hands tasks between threads on every wake-up, which costs CPU per
//! request (measured in docs/benchmarks.md, "Sidecar proxy").
//!
//! Each worker also keeps a timer due within [`ANCHOR_PERIOD`] (see [`anchor_timers`]): it
//! spares a quiet worker a self-wake-up for every request's timeout.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::time::MissedTickBehavior;

/// How far ahead each worker always has a timer due (see [`anchor_timers`]). Shorter than
/// every default timeout a request or a dial sets (connect 5 s, request 15 s).
const ANCHOR_PERIOD: Duration = Duration::from_secs(1);

/// Keeps a timer due within [`ANCHOR_PERIOD`] on the current runtime until `stop` resolves
/// (or its sender is dropped).
///
/// tokio's timer wheel wakes its own driver (an eventfd write, then an `epoll_wait` that
/// returns at once) whenever a timer is registered that is due before the earliest one the
/// driver knew of when it last parked, or when it knew of none. Between requests a quiet
/// worker has no timer at all, so every request's timeout paid that wake-up on the
/// request's way in: one to three extra syscalls per request on the client-side sidecar
/// (strace, docs/benchmarks.md "Sidecar proxy"). With this timer always due first, a
/// timeout of a second or more never is, and registers without a syscall. It costs one
/// wake-up a second per thread.
async fn anchor_timers(stop: oneshot::Receiver<()>) {
    let ticks = async {
        let mut tick = tokio::time::interval(ANCHOR_PERIOD);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
        }
    };
    tokio::select! {
        _ = stop => {}
        () = ticks => {}
    }
}

/// The proxy's connection threads (see the module docs). Cloning shares them.
#[derive(Clone, Debug)]
pub struct Workers {
    /// Runtimes of the extra threads; the accepting runtime is worker 0 and not listed.
    extra: Arc<[Handle]>,
    /// Open connections per worker, worker 0 first.
    open: Arc<[AtomicUsize]>,
    /// Held by every clone and every connection: the extra threads stop when it is dropped.
    keep: Arc<Vec<oneshot::Sender<()>>>,
}

impl Default for Workers {
    /// Every connection on the accepting runtime (no extra thread).
    fn default() -> Workers {
        Workers {
            extra: Arc::from(Vec::new()),
            open: Arc::from(vec![AtomicUsize::new(0)]),
            keep: Arc::new(Vec::new()),
        }
    }
}

impl Workers {
    /// `total` connection threads: the accepting runtime plus `total - 1` new threads, each
    /// running a single-threaded runtime until the workers and their connections are gone.
    /// Called on the accepting runtime, it anchors that runtime's timers too (see
    /// [`anchor_timers`]) for as long as the workers live.
    pub fn start(total: usize) -> std::io::Result<Workers> {
        let mut extra = Vec::new();
        let mut keep = Vec::new();
        if let Ok(accepting) = Handle::try_current() {
            let (kept, dropped) = oneshot::channel::<()>();
            accepting.spawn(anchor_timers(dropped));
            keep.push(kept);
        }
        for i in 1..total.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (kept, dropped) = oneshot::channel::<()>();
            extra.push(runtime.handle().clone());
            keep.push(kept);
            std::thread::Builder::new()
                .name(format!("concord-proxy-{i}"))
                .spawn(move || {
                    // Returns when the sender is dropped; the runtime and whatever is left
                    // on it then go with this thread.
                    runtime.block_on(anchor_timers(dropped));
                })?;
        }
        let open = (0..=extra.len()).map(|_| AtomicUsize::new(0)).collect();
        Ok(Workers {
            extra: Arc::from(extra),
            open,
            keep: Arc::new(keep),
        })
    }

    /// How many threads serve connections.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Never empty: the accepting runtime is always one.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Serves `tcp` with `serve` on the worker with the fewest open connections. Must be
    /// called on the accepting runtime (a listener's accept loop).
    pub fn spawn<F, Fut>(&self, tcp: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let worker = self.least_loaded();
        let (open, keep) = (self.open.clone(), self.keep.clone());
        open[worker].fetch_add(1, Ordering::Relaxed);
        let done = move || {
            open[worker].fetch_sub(1, Ordering::Relaxed);
            drop(keep);
        };
        let Some(handle) = worker.checked_sub(1).and_then(|i| self.extra.get(i)) else {
            tokio::spawn(async move {
                serve(tcp).await;
                done();
            });
            return;
        };
        // The socket moves to the worker's reactor: deregistered here, registered there.
        let std = match tcp.into_std() {
            Ok(std) => std,
            Err(e) => {
                tracing::warn!(error = %e, "handing a connection to a worker failed");
                done();
                return;
            }
        };
        handle.spawn(async move {
            match TcpStream::from_std(std) {
                Ok(tcp) => serve(tcp).await,
                Err(e) => tracing::warn!(error = %e, "a worker could not take a connection"),
            }
            done();
        });
    }

    fn least_loaded(&self) -> usize {
        let mut best = 0;
        let mut fewest = usize::MAX;
        for (i, open) in self.open.iter().enumerate() {
            let n = open.load(Ordering::Relaxed);
            if n < fewest {
                best = i;
                fewest = n;
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Accepts `n` connections, serving each with an echo of the name of the thread that
    /// serves it; returns the names the clients read.
    async fn served_by(workers: &Workers, n: usize) -> Vec<String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        for _ in 0..n {
            let client = TcpStream::connect(addr).await.unwrap();
            let (tcp, _) = listener.accept().await.unwrap();
            workers.spawn(tcp, |mut tcp| async move {
                let mut byte = [0u8; 1];
                // Stays open until the client writes: the worker's count includes it.
                let _ = tcp.read_exact(&mut byte).await;
                let name = std::thread::current().name().unwrap_or("").to_string();
                let _ = tcp.write_all(name.as_bytes()).await;
            });
            clients.push(client);
        }
        let mut names = Vec::new();
        for mut client in clients {
            client.write_all(b"?").await.unwrap();
            let mut name = String::new();
            client.read_to_string(&mut name).await.unwrap();
            names.push(name);
        }
        names
    }

    #[tokio::test(flavor = "current_thread")]
    async fn open_connections_spread_over_the_workers_and_stay_on_one_thread() {
        let workers = Workers::start(3).unwrap();
        assert_eq!(workers.len(), 3);
        let mut names = served_by(&workers, 6).await;
        names.sort();
        let here = std::thread::current().name().unwrap_or("").to_string();
        let mut expected = vec![
            here.clone(),
            here,
            "concord-proxy-1".to_string(),
            "concord-proxy-1".to_string(),
            "concord-proxy-2".to_string(),
            "concord-proxy-2".to_string(),
        ];
        expected.sort();
        assert_eq!(names, expected, "two open connections per thread");
        // A connection is uncounted just after its socket closes (which the client saw).
        let open = || {
            workers
                .open
                .iter()
                .map(|o| o.load(Ordering::Relaxed))
                .sum::<usize>()
        };
        for _ in 0..1000 {
            if open() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(open(), 0, "closed connections are not counted");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_threads_outlive_the_workers_until_their_connections_end() {
        let workers = Workers::start(2).unwrap();
        let worker = workers.extra[0].clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        for _ in 0..2 {
            let client = TcpStream::connect(addr).await.unwrap();
            let (tcp, _) = listener.accept().await.unwrap();
            workers.spawn(tcp, |mut tcp| async move {
                let mut byte = [0u8; 1];
                let _ = tcp.read_exact(&mut byte).await;
                let _ = tcp.write_all(b"done").await;
            });
            clients.push(client);
        }
        tracing::info!("the workers are dropped (a drain): the open connections still finish");
        drop(workers);
        for mut client in clients {
            client.write_all(b"?").await.unwrap();
            let mut reply = String::new();
            client.read_to_string(&mut reply).await.unwrap();
            assert_eq!(reply, "done");
        }
        tracing::info!("then the extra thread stops: a task spawned on it is not run");
        let mut stopped = false;
        for _ in 0..1000 {
            if worker.spawn(async {}).await.is_err() {
                stopped = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(stopped, "the worker thread still runs");
    }

    /// Write syscalls the calling thread has made so far (Linux task I/O accounting).
    #[cfg(target_os = "linux")]
    fn writes_so_far() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
        let syscw = io.lines().find_map(|l| l.strip_prefix("syscw:")).unwrap();
        syscw.trim().parse().unwrap()
    }

    /// Registers `n` request timeouts (15 s) one after another on the current runtime, each
    /// dropped before the runtime parks, as a quiet worker's requests do; returns the write
    /// syscalls the thread made meanwhile (a runtime waking itself writes to its eventfd).
    #[cfg(target_os = "linux")]
    async fn writes_for_timeouts(n: u64) -> u64 {
        tokio::task::yield_now().await;
        let before = writes_so_far();
        for _ in 0..n {
            {
                let pending = std::future::pending::<()>();
                let timeout = tokio::time::timeout(Duration::from_secs(15), pending);
                let mut timeout = std::pin::pin!(timeout);
                assert!(futures::poll!(timeout.as_mut()).is_pending());
            }
            // The runtime parks (for no time) between two requests.
            tokio::task::yield_now().await;
        }
        writes_so_far() - before
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_quiet_worker_registers_request_timeouts_without_waking_itself() {
        const N: u64 = 100;
        let bare = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let unanchored = bare.block_on(writes_for_timeouts(N));
        assert!(
            unanchored >= N,
            "the premise: a bare runtime wakes itself for each timeout ({unanchored} writes \
             for {N}); if tokio no longer does, the anchor can go"
        );
        let workers = Workers::start(2).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        workers.extra[0].spawn(async move {
            let _ = tx.send(writes_for_timeouts(N).await);
        });
        let anchored = rx.recv().unwrap();
        assert!(
            anchored < N / 10,
            "{anchored} write syscalls for {N} timeouts on a worker thread"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn one_worker_serves_everything_on_the_accepting_runtime() {
        let workers = Workers::default();
        let here = std::thread::current().name().unwrap_or("").to_string();
        assert_eq!(
            served_by(&workers, 3).await,
            vec![here.clone(), here.clone(), here]
        );
    }
}
