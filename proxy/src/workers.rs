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

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

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
    pub fn start(total: usize) -> std::io::Result<Workers> {
        let mut extra = Vec::new();
        let mut keep = Vec::new();
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
                    // Resolves when the sender is dropped; the runtime and whatever is left
                    // on it then go with this thread.
                    let _ = runtime.block_on(dropped);
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
