//! Outlier detection (Consul's `passive_health_check`): an endpoint whose last
//! `max_failures` attempts all failed (5xx or no connection) is ejected from balancing for
//! `base_ejection_time` × its number of ejections so far (capped at 300 s, Envoy's
//! `max_ejection_time`), then comes back by itself. At most `max_ejection_percent` of an
//! upstream's endpoints are out at once, but one always may be, as in Envoy.
//!
//! The detector's state is per upstream, keyed by endpoint id, and consulted by the
//! balancer; the [`Detect`] layer below the balancer feeds it each attempt's outcome.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::metrics::{L7Metrics, UpstreamLabels};
use super::policy::OutlierPolicy;
use super::Picked;
use super::{Inner, Middleware, ProxyError, Req, ResponseFuture, MAX_TRACKED_ENDPOINTS};

/// Envoy's default `max_ejection_time`.
const MAX_EJECTION: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
struct Host {
    consecutive: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
}

/// The ejection state of one upstream's endpoints.
pub struct Outlier {
    policy: OutlierPolicy,
    // A std Mutex: a map lookup per attempt, never held across an await.
    hosts: Mutex<HashMap<String, Host>>,
    /// Entries in `hosts` (written under its lock): with none, a success has no streak to
    /// end and the lock is not taken.
    tracked: AtomicUsize,
    /// Entries with an ejection time set, ended or not (written under the lock): with none,
    /// the balancer skips the ejection checks.
    marked: AtomicUsize,
}

impl Outlier {
    /// A detector with no endpoint ejected.
    pub fn new(policy: OutlierPolicy) -> Self {
        Outlier {
            policy,
            hosts: Mutex::new(HashMap::new()),
            tracked: AtomicUsize::new(0),
            marked: AtomicUsize::new(0),
        }
    }

    /// Whether any endpoint may have a failure streak (false: a success has none to end).
    fn any_tracked(&self) -> bool {
        self.tracked.load(Ordering::Acquire) > 0
    }

    /// Whether any endpoint may be ejected (false: none is, so nothing need be checked).
    pub fn any_ejected(&self) -> bool {
        self.marked.load(Ordering::Acquire) > 0
    }

    /// Refreshes the two counts after `hosts` changed.
    fn recount(&self, hosts: &HashMap<String, Host>) {
        self.tracked.store(hosts.len(), Ordering::Release);
        let marked = hosts.values().filter(|h| h.ejected_until.is_some()).count();
        self.marked.store(marked, Ordering::Release);
    }

    /// Whether `id` is ejected at `now`; an ejection that ended is cleared here (the
    /// endpoint starts a fresh streak).
    pub fn is_ejected(&self, id: &str, now: Instant) -> bool {
        let Ok(mut hosts) = self.hosts.lock() else {
            return false;
        };
        let Some(h) = hosts.get_mut(id) else {
            return false;
        };
        match h.ejected_until {
            Some(until) if until > now => true,
            Some(_) => {
                h.ejected_until = None;
                h.consecutive = 0;
                self.marked.fetch_sub(1, Ordering::AcqRel);
                false
            }
            None => false,
        }
    }

    /// Records an attempt's outcome at `id`, one of `hosts` endpoints of its target; `roll`
    /// (0..100) decides `enforcing_consecutive_5xx`. Returns whether `id` was ejected now.
    pub fn record(&self, id: &str, failed: bool, hosts: usize, now: Instant, roll: u32) -> bool {
        if !failed && !self.any_tracked() {
            return false;
        }
        let Ok(mut map) = self.hosts.lock() else {
            return false;
        };
        if !failed {
            // Successes only end streaks; they need no entry of their own.
            if let Some(h) = map.get_mut(id) {
                h.consecutive = 0;
            }
            return false;
        }
        let ejected = self.fail(&mut map, id, hosts, now, roll);
        self.recount(&map);
        ejected
    }

    /// A failed attempt at `id` (see [`Outlier::record`]).
    fn fail(
        &self,
        map: &mut HashMap<String, Host>,
        id: &str,
        hosts: usize,
        now: Instant,
        roll: u32,
    ) -> bool {
        let ejected_now = map
            .values()
            .filter(|h| h.ejected_until.is_some_and(|u| u > now))
            .count();
        if map.len() >= MAX_TRACKED_ENDPOINTS {
            // Keep what matters: ejections and open failure streaks.
            map.retain(|_, h| h.consecutive > 0 || h.ejected_until.is_some_and(|u| u > now));
        }
        let h = map.entry(id.to_string()).or_default();
        h.consecutive += 1;
        let p = &self.policy;
        let streak = p.max_failures > 0 && h.consecutive >= p.max_failures;
        let already = h.ejected_until.is_some_and(|u| u > now);
        let room =
            ejected_now == 0 || (ejected_now + 1) * 100 <= p.max_ejection_percent as usize * hosts;
        if !streak || already || !room || roll >= p.enforcing_consecutive_5xx {
            return false;
        }
        h.ejections += 1;
        h.consecutive = 0;
        let time = p
            .base_ejection_time
            .saturating_mul(h.ejections)
            .min(MAX_EJECTION.max(p.base_ejection_time));
        h.ejected_until = Some(now + time);
        true
    }
}

/// The layer that feeds the detector: below the balancer, so it sees every attempt and
/// the endpoint it went to.
pub struct Detect {
    pub(crate) outlier: Arc<Outlier>,
    pub(crate) upstream: String,
    pub(crate) metrics: L7Metrics,
}

impl Middleware for Detect {
    fn call<S: Inner>(self: Arc<Self>, next: S, req: Req) -> ResponseFuture {
        let picked = req.extensions().get::<Picked>().cloned();
        Box::pin(async move {
            let outcome = super::forward(next, req).await;
            if let Some(picked) = picked {
                // A reset mid-request counts like a 5xx (Envoy's locally originated 503);
                // only our own breaker's refusal says nothing about the endpoint.
                let failed = match &outcome {
                    Ok(resp) => resp.status().is_server_error(),
                    Err(e) => !matches!(e, ProxyError::Overflow(_)),
                };
                if !failed && !self.outlier.any_tracked() {
                    // No streak to end (the common case): no clock, no lock.
                    return outcome;
                }
                let roll = rand::random::<u32>() % 100;
                let now = Instant::now();
                if self
                    .outlier
                    .record(&picked.endpoint.id, failed, picked.hosts, now, roll)
                {
                    self.metrics
                        .ejections
                        .get_or_create(&UpstreamLabels {
                            upstream: self.upstream.clone(),
                        })
                        .inc();
                    tracing::info!(upstream = %self.upstream, endpoint = %picked.endpoint.id,
                        "outlier detection ejected an endpoint");
                }
            }
            outcome
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_failures: u32, pct: u32) -> OutlierPolicy {
        OutlierPolicy {
            max_failures,
            max_ejection_percent: pct,
            base_ejection_time: Duration::from_secs(10),
            ..OutlierPolicy::default()
        }
    }

    #[test]
    fn streak_ejects_and_backoff_grows() {
        let o = Outlier::new(policy(3, 100));
        let t0 = Instant::now();
        // Two failures, a success, then three failures: only the last streak ejects.
        let outcomes = [true, true, false, true, true];
        for failed in outcomes {
            assert!(!o.record("a", failed, 2, t0, 0));
        }
        assert!(!o.any_ejected(), "a streak alone ejects nobody");
        assert!(o.record("a", true, 2, t0, 0));
        assert!(o.any_ejected());
        assert!(o.is_ejected("a", t0 + Duration::from_secs(9)));
        assert!(
            !o.is_ejected("a", t0 + Duration::from_secs(10)),
            "restored after 1 × base"
        );
        assert!(!o.any_ejected(), "the balancer's fast path is back");
        let t1 = t0 + Duration::from_secs(10);
        for _ in 0..2 {
            assert!(!o.record("a", true, 2, t1, 0));
        }
        assert!(o.record("a", true, 2, t1, 0));
        assert!(
            o.is_ejected("a", t1 + Duration::from_secs(19)),
            "second ejection lasts 2 × base"
        );
        assert!(!o.is_ejected("a", t1 + Duration::from_secs(20)));
    }

    #[test]
    fn ejection_limits_table() {
        // (max_failures, max_ejection_percent, hosts, enforcing roll, already ejected, ejects?)
        let cases = [
            (1, 10, 2, 0, 0, true),   // at least one host may always be ejected
            (1, 10, 2, 0, 1, false),  // but not a second at 10%
            (1, 50, 4, 0, 1, true),   // 2 of 4 is 50%
            (1, 50, 4, 0, 2, false),  // 3 of 4 is not
            (1, 100, 2, 99, 0, true), // enforcing 100% always ejects
            (0, 100, 2, 0, 0, false), // max_failures 0 never ejects
        ];
        for (max_failures, pct, hosts, roll, already, want) in cases {
            let o = Outlier::new(policy(max_failures, pct));
            let now = Instant::now();
            for i in 0..already {
                assert!(o.record(&format!("other{i}"), true, hosts, now, 0) || max_failures == 0);
            }
            assert_eq!(
                o.record("x", true, hosts, now, roll),
                want,
                "{max_failures} {pct}% {hosts} {already}"
            );
        }
        let mut p = policy(1, 100);
        p.enforcing_consecutive_5xx = 30;
        let o = Outlier::new(p);
        assert!(
            !o.record("x", true, 2, Instant::now(), 30),
            "roll 30 misses a 30% chance"
        );
    }
}
