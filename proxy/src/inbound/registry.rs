//! The open inbound L4 connections by source service, so that an intention change closes
//! the connections the new rule denies (new connections are judged as they arrive; this
//! is for the ones already open).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, watch};

use crate::model::IntentionSnapshot;

/// Open connections, each with a way to tell it to close.
///
/// A std `Mutex`: it is held only to insert, remove or walk the map, never across an await.
#[derive(Debug, Default)]
pub struct ConnRegistry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    conns: HashMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    source: String,
    /// Taken when the connection is told to close (at most once).
    close: Option<oneshot::Sender<String>>,
}

/// A connection's place in the registry; dropping it removes the connection.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<ConnRegistry>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().conns.remove(&self.id);
    }
}

/// Resolves with the reason once the connection must close; pending forever otherwise.
#[derive(Debug)]
pub struct CloseSignal(oneshot::Receiver<String>);

impl CloseSignal {
    /// Waits for the reason to close.
    pub async fn wait(self) -> String {
        match self.0.await {
            Ok(reason) => reason,
            // The registry never drops a sender without sending, except when the
            // registration itself goes away, and then nobody waits any more.
            Err(_) => std::future::pending().await,
        }
    }
}

impl ConnRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section leaves the map consistent, so a poisoned lock is usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an open connection from `source`.
    pub fn register(self: &Arc<Self>, source: &str) -> (Registration, CloseSignal) {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.conns.insert(
            id,
            Entry {
                source: source.to_string(),
                close: Some(tx),
            },
        );
        (
            Registration {
                registry: self.clone(),
                id,
            },
            CloseSignal(rx),
        )
    }

    /// Tells every open connection that `snapshot` denies to close; returns how many.
    pub fn close_denied(&self, snapshot: &IntentionSnapshot) -> usize {
        let mut inner = self.lock();
        let mut closed = 0;
        for entry in inner.conns.values_mut() {
            if entry.close.is_none() {
                continue;
            }
            let decision = snapshot.decide_connection(&entry.source);
            if decision.allowed {
                continue;
            }
            if let Some(tx) = entry.close.take() {
                let _ = tx.send(decision.reason);
                closed += 1;
            }
        }
        closed
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Re-judges open connections every time the intentions change, until the channel closes.
pub async fn enforce(mut intentions: watch::Receiver<IntentionSnapshot>, conns: Arc<ConnRegistry>) {
    while intentions.changed().await.is_ok() {
        let snapshot = intentions.borrow_and_update().clone();
        let closed = conns.close_denied(&snapshot);
        if closed > 0 {
            tracing::info!(closed, destination = %snapshot.destination, "intentions changed: closed connections the new rules deny");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use concord_api::intention::Intention;

    use super::*;

    fn snapshot(deny: &[&str]) -> IntentionSnapshot {
        IntentionSnapshot {
            destination: "db".into(),
            intentions: deny
                .iter()
                .map(|s| Intention {
                    source_name: (*s).into(),
                    destination_name: "db".into(),
                    action: "deny".into(),
                    ..Intention::default()
                })
                .collect(),
            default_allow: true,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_intention_change_closes_only_the_denied_connections() {
        let registry = Arc::new(ConnRegistry::default());
        let (tx, rx) = watch::channel(snapshot(&[]));
        tokio::spawn(enforce(rx, registry.clone()));
        let (web_reg, web_close) = registry.register("web");
        let (_api_reg, api_close) = registry.register("api");
        assert_eq!(registry.len(), 2);

        tx.send(snapshot(&["web"])).unwrap();
        let reason = tokio::time::timeout(Duration::from_secs(1), web_close.wait())
            .await
            .expect("web is told to close within a second");
        assert!(reason.contains("Matched L4 intention"), "{reason}");
        // api stays open.
        assert!(
            tokio::time::timeout(Duration::from_secs(5), api_close.wait())
                .await
                .is_err()
        );

        drop(web_reg);
        assert_eq!(registry.len(), 1);
        // A second change does not close web twice (it is gone) and still spares api.
        tx.send(snapshot(&["web", "other"])).unwrap();
        tokio::task::yield_now().await;
        assert_eq!(registry.close_denied(&snapshot(&["web"])), 0);
        assert_eq!(registry.close_denied(&snapshot(&["api"])), 1);
        assert_eq!(registry.close_denied(&snapshot(&["api"])), 0, "closed once");
    }
}
