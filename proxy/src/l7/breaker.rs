//! Circuit breaking (Consul's upstream `limits`), per upstream, across all its endpoints:
//! - `max_concurrent_requests`: requests in flight (from admission to the end of the
//!   response body); one more is answered 503 at once, never queued, so a slow upstream
//!   cannot pile up the app's requests in the proxy.
//! - `max_connections`: connections open to the upstream; a request needing a new one
//!   waits for a slot ...
//! - `max_pending_requests`: ... unless that many already wait, then 503.
//!
//! Rejections count in `concord_proxy_http_breaker_rejections_total{limit}`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::metrics::{BreakerLabels, L7Metrics};
use super::policy::Limits;
use super::{guard_body, Inner, Middleware, ProxyError, Req, ResponseFuture};

/// Counts a rejection by `limit` and returns its error.
fn reject(metrics: &L7Metrics, upstream: &str, limit: &'static str) -> ProxyError {
    metrics
        .breaker_rejections
        .get_or_create(&BreakerLabels {
            upstream: upstream.to_string(),
            limit: limit.to_string(),
        })
        .inc();
    ProxyError::Overflow(limit)
}

/// The `max_concurrent_requests` layer.
pub struct ConcurrencyLimit {
    permits: Option<Arc<Semaphore>>,
    upstream: String,
    metrics: L7Metrics,
}

impl ConcurrencyLimit {
    pub(crate) fn new(limits: &Limits, upstream: &str, metrics: L7Metrics) -> Self {
        ConcurrencyLimit {
            permits: limits
                .max_concurrent_requests
                .map(|n| Arc::new(Semaphore::new(n))),
            upstream: upstream.to_string(),
            metrics,
        }
    }
}

impl Middleware for ConcurrencyLimit {
    fn call<S: Inner>(self: Arc<Self>, next: S, req: Req) -> ResponseFuture {
        let Some(permits) = &self.permits else {
            return super::forward(next, req);
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let err = reject(&self.metrics, &self.upstream, "max_concurrent_requests");
            return Box::pin(async move { Err(err) });
        };
        Box::pin(async move {
            // The permit lives until the response body ends (or the request fails).
            let resp = super::forward(next, req).await?;
            Ok(guard_body(resp, permit))
        })
    }
}

/// The `max_connections` / `max_pending_requests` limits, enforced where the pool dials.
pub struct ConnectionLimit {
    slots: Option<Arc<Semaphore>>,
    max_pending: Option<usize>,
    pending: AtomicUsize,
    upstream: String,
    metrics: L7Metrics,
}

/// Releases a pending slot however the wait ends (granted, or the request dropped).
struct PendingGuard<'a>(&'a AtomicUsize);

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnectionLimit {
    pub(crate) fn new(limits: &Limits, upstream: &str, metrics: L7Metrics) -> Self {
        ConnectionLimit {
            slots: limits.max_connections.map(|n| Arc::new(Semaphore::new(n))),
            max_pending: limits.max_pending_requests,
            pending: AtomicUsize::new(0),
            upstream: upstream.to_string(),
            metrics,
        }
    }

    /// A slot for one new connection, held for the connection's life; `None` when
    /// connections are unlimited.
    pub(crate) async fn acquire(&self) -> Result<Option<OwnedSemaphorePermit>, ProxyError> {
        let Some(slots) = &self.slots else {
            return Ok(None);
        };
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return Ok(Some(permit));
        }
        let waiting = self.pending.fetch_add(1, Ordering::AcqRel);
        let _guard = PendingGuard(&self.pending);
        if self.max_pending.is_some_and(|max| waiting >= max) {
            return Err(reject(
                &self.metrics,
                &self.upstream,
                "max_pending_requests",
            ));
        }
        slots
            .clone()
            .acquire_owned()
            .await
            .map(Some)
            .map_err(|_| ProxyError::Overflow("max_connections"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[tokio::test]
    async fn connections_wait_while_pending_has_room_then_overflow() {
        let metrics = L7Metrics::new(&mut Registry::default());
        let limits = Limits {
            max_connections: Some(1),
            max_pending_requests: Some(1),
            max_concurrent_requests: None,
        };
        let limit = Arc::new(ConnectionLimit::new(&limits, "db", metrics.clone()));
        let first = limit.acquire().await.unwrap().expect("a slot");
        let waiter = tokio::spawn({
            let limit = limit.clone();
            async move { limit.acquire().await.map(|p| p.is_some()) }
        });
        // Wait on the condition: the second dial is queued.
        while limit.pending.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            limit.acquire().await.unwrap_err(),
            ProxyError::Overflow("max_pending_requests")
        );
        drop(first);
        assert_eq!(
            waiter.await.unwrap(),
            Ok(true),
            "the waiter gets the freed slot"
        );
        assert_eq!(limit.pending.load(Ordering::Acquire), 0);
        let labels = BreakerLabels {
            upstream: "db".to_string(),
            limit: "max_pending_requests".to_string(),
        };
        assert_eq!(metrics.breaker_rejections.get_or_create(&labels).get(), 1);
        let unlimited = ConnectionLimit::new(&Limits::default(), "db", metrics);
        assert!(unlimited.acquire().await.unwrap().is_none());
    }
}
