//! Session TTL timers: one sleeping task per session with a TTL, re-armed on renew.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::task::AbortHandle;

use crate::state::SESSION_TTL_MULTIPLIER;

type OnExpire = Box<dyn Fn(String) + Send + Sync>;

/// TTL timers of the sessions this leader tracks. Uses tokio time, so tests drive it with a
/// paused clock.
pub(crate) struct SessionTimers {
    inner: Arc<Inner>,
}

struct Inner {
    armed: Mutex<HashMap<String, Armed>>,
    /// Distinguishes a timer from the one that replaced it: an expiring timer only fires if
    /// it is still the armed one (a renew may race with the expiry).
    next_generation: AtomicU64,
    on_expire: OnExpire,
}

struct Armed {
    generation: u64,
    task: AbortHandle,
}

impl std::fmt::Debug for SessionTimers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTimers")
            .field("armed", &self.armed())
            .finish()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Armed>> {
        self.armed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SessionTimers {
    /// Timers that call `on_expire(session_id)` when a session expires.
    pub(crate) fn new(on_expire: impl Fn(String) + Send + Sync + 'static) -> Self {
        SessionTimers {
            inner: Arc::new(Inner {
                armed: Mutex::new(HashMap::new()),
                next_generation: AtomicU64::new(0),
                on_expire: Box::new(on_expire),
            }),
        }
    }

    /// Arms (or re-arms) a session: it expires `ttl × 2` from now (Consul's
    /// `SessionTTLMultiplier`; clients renew every TTL/2) unless reset again.
    pub(crate) fn reset(&self, id: &str, ttl: Duration) {
        let generation = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        let expires_in = ttl * SESSION_TTL_MULTIPLIER;
        let inner = Arc::clone(&self.inner);
        let session = id.to_string();
        // Spawn and insert under the lock so the timer cannot look itself up before it is
        // registered.
        let mut armed = self.inner.lock();
        let task = tokio::spawn(async move {
            tokio::time::sleep(expires_in).await;
            let current = {
                let mut armed = inner.lock();
                let current = armed
                    .get(&session)
                    .is_some_and(|a| a.generation == generation);
                if current {
                    armed.remove(&session);
                }
                current
            };
            if current {
                (inner.on_expire)(session);
            }
        });
        let replaced = armed.insert(
            id.to_string(),
            Armed {
                generation,
                task: task.abort_handle(),
            },
        );
        if let Some(old) = replaced {
            old.task.abort();
        }
    }

    /// Disarms a session (destroyed).
    pub(crate) fn cancel(&self, id: &str) {
        if let Some(old) = self.inner.lock().remove(id) {
            old.task.abort();
        }
    }

    /// Disarms everything (leadership lost, or shutdown).
    pub(crate) fn clear(&self) {
        for (_, old) in self.inner.lock().drain() {
            old.task.abort();
        }
    }

    /// How many sessions are armed.
    pub(crate) fn armed(&self) -> usize {
        self.inner.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;
    use tokio::time::advance;

    fn timers() -> (SessionTimers, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let timers = SessionTimers::new(move |id| {
            let _ = tx.send(id);
        });
        (timers, rx)
    }

    /// Lets spawned timer tasks run after a clock change.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn expires_after_twice_the_ttl() {
        let (timers, mut expired) = timers();
        timers.reset("s1", Duration::from_secs(10));
        settle().await;
        advance(Duration::from_secs(19)).await;
        settle().await;
        assert!(expired.try_recv().is_err(), "not expired before 2×TTL");
        advance(Duration::from_secs(2)).await;
        settle().await;
        assert_eq!(expired.try_recv().unwrap(), "s1");
        assert_eq!(timers.armed(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn renew_pushes_expiry_back() {
        let (timers, mut expired) = timers();
        timers.reset("s1", Duration::from_secs(10));
        settle().await;
        advance(Duration::from_secs(15)).await;
        timers.reset("s1", Duration::from_secs(10));
        settle().await;
        advance(Duration::from_secs(15)).await;
        settle().await;
        assert!(expired.try_recv().is_err(), "renewed 15s ago, TTL×2 is 20s");
        advance(Duration::from_secs(6)).await;
        settle().await;
        assert_eq!(expired.try_recv().unwrap(), "s1");
        assert!(
            expired.try_recv().is_err(),
            "the replaced timer never fires"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_and_clear_disarm() {
        let (timers, mut expired) = timers();
        timers.reset("a", Duration::from_secs(10));
        timers.reset("b", Duration::from_secs(10));
        timers.reset("c", Duration::from_secs(10));
        timers.cancel("a");
        assert_eq!(timers.armed(), 2);
        timers.clear();
        assert_eq!(timers.armed(), 0);
        advance(Duration::from_secs(60)).await;
        settle().await;
        assert!(expired.try_recv().is_err());
    }
}
