//! Retries: a failed attempt is made again (on another endpoint when there is one) when the
//! route's policy says so: on a connect failure (`RetryOnConnectFailure`) or on one of the
//! `RetryOnStatusCodes`, at most `NumRetries` times.
//!
//! Two rules keep retries from hurting:
//! - only replayable requests retry: no body, or a body of known length up to
//!   [`MAX_REPLAY_BODY`] (buffered once, replayed from memory). Larger or streamed bodies
//!   go through once, unbuffered;
//! - a [`RetryBudget`] per upstream: retries over the last 10 s may not exceed a fraction of
//!   the requests (20% by default) plus a small per-second floor, so an upstream in trouble
//!   sees at most 1.2× its load, never `NumRetries`×.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Body as _;
use tokio::time::Instant;

use super::metrics::{L7Metrics, UpstreamLabels};
use super::policy::{RequestPolicy, RetryBudgetPolicy};
use super::{full, Body, Inner, Middleware, ProxyError, Req, Resp, ResponseFuture};

/// Bodies up to this size are buffered so the request can be replayed.
pub const MAX_REPLAY_BODY: u64 = 64 * 1024;

const SLOT: Duration = Duration::from_secs(1);
const SLOTS: usize = 10;

/// The endpoints (ids) earlier attempts of a request went to, so the balancer can avoid
/// them; shared between the retry and balance layers through the request's extensions.
#[derive(Clone, Debug, Default)]
pub struct Attempts(pub(crate) Arc<Mutex<Vec<Arc<str>>>>);

impl Attempts {
    /// Records an attempt to `endpoint`.
    pub(crate) fn push(&self, endpoint: &Arc<str>) {
        if let Ok(mut v) = self.0.lock() {
            v.push(endpoint.clone());
        }
    }

    /// Whether no attempt was made yet.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.lock().map_or(true, |v| v.is_empty())
    }

    /// Whether an earlier attempt went to `endpoint`.
    pub(crate) fn contains(&self, endpoint: &str) -> bool {
        self.0
            .lock()
            .is_ok_and(|v| v.iter().any(|e| &**e == endpoint))
    }
}

/// A slot through which a layer below hands back a request it did not send (no endpoint,
/// or the dial failed before a byte went out), so a request that retries only on connect
/// failures need not be copied for every attempt. A request extension the retry layer sets
/// and clears.
#[derive(Clone, Default)]
pub struct Unsent(Arc<Mutex<Option<Req>>>);

impl Unsent {
    /// Gives `req` back to the retry layer (`req` was not sent).
    pub(crate) fn give_back(&self, req: Req) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(req);
        }
    }

    /// A copy of `req` to give back, made before sending it through a client that consumes
    /// it whatever happens; `None` unless the retry layer asked (its body is then empty).
    pub(crate) fn copy_of(req: &Req) -> Option<(Unsent, Req)> {
        let unsent = req.extensions().get::<Unsent>()?.clone();
        let (parts, _) = http::Request::new(()).into_parts();
        let mut copy = http::Request::from_parts(parts, full(Bytes::new()));
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some((unsent, copy))
    }

    fn take(&self) -> Option<Req> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// Empties the slot however the request ends: a request left in it would hold the slot
/// (through its own extensions) forever.
struct ClearOnDrop(Unsent);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        drop(self.0.take());
    }
}

/// Retries over a sliding 10 s window must stay within `ratio` × requests + the floor.
pub struct RetryBudget {
    policy: RetryBudgetPolicy,
    // A std Mutex: held for a few arithmetic operations, never across an await.
    window: Mutex<Window>,
}

struct Window {
    /// (requests, retries) per one-second slot; `current` is the newest.
    slots: [(u64, u64); SLOTS],
    current: usize,
    current_start: Instant,
}

impl Window {
    fn advance(&mut self, now: Instant) {
        let mut moved = 0;
        while now.saturating_duration_since(self.current_start) >= SLOT {
            if moved == SLOTS {
                // Idle for a whole window: everything is stale.
                self.current_start = now;
                break;
            }
            self.current = (self.current + 1) % SLOTS;
            self.slots[self.current] = (0, 0);
            self.current_start += SLOT;
            moved += 1;
        }
    }
}

impl RetryBudget {
    /// An empty budget starting at `now`.
    pub fn new(policy: RetryBudgetPolicy, now: Instant) -> Self {
        RetryBudget {
            policy,
            window: Mutex::new(Window {
                slots: [(0, 0); SLOTS],
                current: 0,
                current_start: now,
            }),
        }
    }

    /// Records one request (not a retry).
    pub fn deposit(&self, now: Instant) {
        if let Ok(mut w) = self.window.lock() {
            w.advance(now);
            let c = w.current;
            w.slots[c].0 += 1;
        }
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn withdraw(&self, now: Instant) -> bool {
        let Ok(mut w) = self.window.lock() else {
            return false;
        };
        w.advance(now);
        let (requests, retries) = w.slots.iter().fold((0, 0), |(a, b), (r, t)| (a + r, b + t));
        let floor = f64::from(self.policy.min_retries_per_second) * (SLOTS as f64);
        let allowed = (retries as f64) < floor + self.policy.ratio * requests as f64;
        if allowed {
            let c = w.current;
            w.slots[c].1 += 1;
        }
        allowed
    }
}

/// The retry layer.
pub struct Retry {
    pub(crate) budget: RetryBudget,
    pub(crate) upstream: String,
    pub(crate) metrics: L7Metrics,
}

/// A request body, ready to replay or not.
enum Replay {
    Bytes(Bytes),
    Stream(Body),
}

async fn buffer(body: Body) -> Result<Replay, ProxyError> {
    if body.is_end_stream() {
        return Ok(Replay::Bytes(Bytes::new()));
    }
    match body.size_hint().upper() {
        Some(n) if n <= MAX_REPLAY_BODY => body
            .collect()
            .await
            .map(|c| Replay::Bytes(c.to_bytes()))
            .map_err(|e| ProxyError::Upstream(format!("reading the request body: {e}"))),
        _ => Ok(Replay::Stream(body)),
    }
}

/// Whether an attempt's outcome may be retried under `policy`.
pub(crate) fn retryable(policy: &RequestPolicy, outcome: &Result<Resp, ProxyError>) -> bool {
    match outcome {
        Ok(resp) => policy
            .retry
            .retry_on_status_codes
            .contains(&resp.status().as_u16()),
        Err(e) => policy.retry.retry_on_connect_failure && e.is_connect_failure(),
    }
}

impl Middleware for Retry {
    fn call<S: Inner>(self: Arc<Self>, next: S, req: Req) -> ResponseFuture {
        self.budget.deposit(Instant::now());
        let policy = req.extensions().get::<RequestPolicy>().cloned();
        let Some(policy) = policy.filter(|p| {
            p.retry.num_retries > 0
                && (p.retry.retry_on_connect_failure || !p.retry.retry_on_status_codes.is_empty())
        }) else {
            // Nothing to retry on: no copy, no buffering.
            return super::forward(next, req);
        };
        if policy.retry.retry_on_status_codes.is_empty() && req.body().is_end_stream() {
            // Connect failures only: a request that failed so was never sent, and the
            // layer that failed hands it back, so it is not copied per attempt.
            return Box::pin(self.retry_unsent(next, req, policy));
        }
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let body = match buffer(body).await? {
                Replay::Bytes(b) => b,
                Replay::Stream(body) => {
                    return super::forward(next, http::Request::from_parts(parts, body)).await;
                }
            };
            parts.extensions.insert(Attempts::default());
            let labels = UpstreamLabels {
                upstream: self.upstream.clone(),
            };
            let mut attempt = 0;
            loop {
                let req = http::Request::from_parts(parts.clone(), full(body.clone()));
                let outcome = super::forward(next.clone(), req).await;
                if attempt >= policy.retry.num_retries || !retryable(&policy, &outcome) {
                    return outcome;
                }
                if !self.budget.withdraw(Instant::now()) {
                    self.metrics.budget_exhausted.get_or_create(&labels).inc();
                    return outcome;
                }
                attempt += 1;
                self.metrics.retries.get_or_create(&labels).inc();
                tracing::debug!(upstream = %self.upstream, attempt, "retrying a request");
            }
        })
    }
}

impl Retry {
    /// The connect-failure-only retry loop: each attempt sends the request itself, which
    /// comes back through [`Unsent`] when it was not sent.
    async fn retry_unsent<S: Inner>(
        self: Arc<Self>,
        next: S,
        mut req: Req,
        policy: RequestPolicy,
    ) -> Result<Resp, ProxyError> {
        let unsent = Unsent::default();
        let _clear = ClearOnDrop(unsent.clone());
        req.extensions_mut().insert(unsent.clone());
        req.extensions_mut().insert(Attempts::default());
        let mut attempt = 0;
        loop {
            let outcome = super::forward(next.clone(), req).await;
            let back = unsent.take();
            let Some(again) =
                back.filter(|_| attempt < policy.retry.num_retries && retryable(&policy, &outcome))
            else {
                return outcome;
            };
            if !self.budget.withdraw(Instant::now()) {
                let labels = UpstreamLabels {
                    upstream: self.upstream.clone(),
                };
                self.metrics.budget_exhausted.get_or_create(&labels).inc();
                return outcome;
            }
            attempt += 1;
            req = again;
            let labels = UpstreamLabels {
                upstream: self.upstream.clone(),
            };
            self.metrics.retries.get_or_create(&labels).inc();
            tracing::debug!(upstream = %self.upstream, attempt, "retrying a request");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_table() {
        // (ratio, floor per second, requests, retries asked, retries granted)
        let cases = [
            (0.2, 0, 100, 50, 20),
            (0.2, 0, 10, 5, 2),
            (0.0, 0, 100, 5, 0),
            (0.2, 1, 0, 20, 10),
            (0.2, 1, 100, 50, 30),
            (1.0, 0, 10, 20, 10),
        ];
        for (ratio, floor, requests, asked, granted) in cases {
            let now = Instant::now();
            let b = RetryBudget::new(
                RetryBudgetPolicy {
                    ratio,
                    min_retries_per_second: floor,
                },
                now,
            );
            for _ in 0..requests {
                b.deposit(now);
            }
            let got = (0..asked).filter(|_| b.withdraw(now)).count();
            assert_eq!(
                got, granted,
                "ratio {ratio} floor {floor} requests {requests}"
            );
        }
    }

    #[test]
    fn budget_refills_as_the_window_slides() {
        let start = Instant::now();
        let b = RetryBudget::new(
            RetryBudgetPolicy {
                ratio: 0.5,
                min_retries_per_second: 0,
            },
            start,
        );
        for _ in 0..10 {
            b.deposit(start);
        }
        assert_eq!((0..10).filter(|_| b.withdraw(start)).count(), 5);
        // 5 s later the old requests still count, and so do the retries.
        let mid = start + Duration::from_secs(5);
        assert!(!b.withdraw(mid));
        // After the window, both are forgotten: new traffic earns new retries.
        let later = start + Duration::from_secs(11);
        assert!(!b.withdraw(later));
        b.deposit(later);
        b.deposit(later);
        assert!(b.withdraw(later));
        // Long idle gaps reset the window instead of looping per second.
        let much_later = start + Duration::from_secs(100_000);
        b.deposit(much_later);
        assert!(b.withdraw(much_later + Duration::from_millis(1)));
    }

    #[test]
    fn retryable_table() {
        let mut policy = RequestPolicy {
            request_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            retry: super::super::policy::RetryPolicy {
                num_retries: 1,
                retry_on_connect_failure: true,
                retry_on_status_codes: vec![503],
            },
        };
        let status = |s: u16| -> Result<Resp, ProxyError> {
            let mut r = http::Response::new(full(""));
            *r.status_mut() = http::StatusCode::from_u16(s).unwrap();
            Ok(r)
        };
        assert!(retryable(&policy, &status(503)));
        assert!(!retryable(&policy, &status(500)));
        assert!(!retryable(&policy, &status(200)));
        assert!(retryable(
            &policy,
            &Err(ProxyError::Connect("refused".into()))
        ));
        assert!(retryable(
            &policy,
            &Err(ProxyError::ConnectTimeout(Duration::from_secs(1)))
        ));
        assert!(!retryable(
            &policy,
            &Err(ProxyError::Upstream("reset".into()))
        ));
        assert!(!retryable(
            &policy,
            &Err(ProxyError::Overflow("max_pending_requests"))
        ));
        policy.retry.retry_on_connect_failure = false;
        assert!(!retryable(
            &policy,
            &Err(ProxyError::Connect("refused".into()))
        ));
    }
}
