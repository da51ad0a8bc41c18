//! Endpoint choice for one attempt. The route names targets (the resolver's, then its
//! failover targets); the first target with a non-ejected endpoint serves. Among its
//! endpoints, those an earlier attempt of the same request tried are avoided when others
//! remain, then:
//! - `least_request` (default): power of two random choices, the one with fewer
//!   outstanding requests wins. It avoids herding on a single "least loaded" endpoint that
//!   every proxy would see alike, and needs no global view.
//! - `round_robin`: each endpoint in turn.
//!
//! When every endpoint of every target is ejected, the primary target's endpoints are used
//! anyway (Envoy's panic mode): sending to a maybe-bad endpoint beats a certain 503.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::outlier::Outlier;
use super::policy::BalancePolicy;
use super::retry::{Attempts, Unsent};
use super::route::{Resolved, Routed};
use super::{
    guard_body, Inner, Middleware, Picked, ProxyError, Req, ResponseFuture, MAX_TRACKED_ENDPOINTS,
};
use crate::model::Endpoint;

/// Of two candidates, the one with fewer outstanding requests (the first on a tie).
pub(crate) fn p2c(loads: &[usize], a: usize, b: usize) -> usize {
    if loads[b] < loads[a] {
        b
    } else {
        a
    }
}

/// Two distinct random indices below `n` (n ≥ 2) from two draws.
pub(crate) fn two_distinct(n: usize, first: usize, second: usize) -> (usize, usize) {
    let a = first % n;
    // Draw from the other n-1 and skip over `a`.
    let b = second % (n - 1);
    (a, if b >= a { b + 1 } else { b })
}

/// The balancer of one upstream.
pub struct Balance {
    pub(crate) policy: BalancePolicy,
    pub(crate) outlier: Arc<Outlier>,
    next: AtomicUsize,
    // Outstanding requests per endpoint id; a std Mutex around a map lookup per attempt.
    outstanding: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

/// Counts an outstanding request until dropped (with the response body).
struct Outstanding(Arc<AtomicUsize>);

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Balance {
    pub(crate) fn new(policy: BalancePolicy, outlier: Arc<Outlier>) -> Self {
        Balance {
            policy,
            outlier,
            next: AtomicUsize::new(0),
            outstanding: Mutex::new(HashMap::new()),
        }
    }

    fn counter(&self, id: &str) -> Arc<AtomicUsize> {
        match self.outstanding.lock() {
            Ok(mut m) => {
                if let Some(c) = m.get(id) {
                    return c.clone();
                }
                if m.len() >= MAX_TRACKED_ENDPOINTS {
                    // Keep counters that requests still hold.
                    m.retain(|_, c| Arc::strong_count(c) > 1);
                }
                m.entry(id.to_string()).or_default().clone()
            }
            // A poisoned map only loses load information.
            Err(_) => Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Chooses among `candidates` (non-empty).
    fn choose<'a>(&self, candidates: &[&'a Endpoint]) -> &'a Endpoint {
        let n = candidates.len();
        if n == 1 {
            return candidates[0];
        }
        match self.policy {
            BalancePolicy::RoundRobin => candidates[self.next.fetch_add(1, Ordering::Relaxed) % n],
            BalancePolicy::LeastRequest => {
                let (a, b) = two_distinct(n, rand::random(), rand::random());
                let loads = [
                    self.counter(&candidates[a].id).load(Ordering::Acquire),
                    self.counter(&candidates[b].id).load(Ordering::Acquire),
                ];
                if p2c(&loads, 0, 1) == 0 {
                    candidates[a]
                } else {
                    candidates[b]
                }
            }
        }
    }

    /// The endpoint for an attempt of `routed`, as the module doc describes.
    fn pick(
        &self,
        resolved: &Resolved,
        routed: &Routed,
        attempts: Option<&Attempts>,
    ) -> Result<Picked, ProxyError> {
        // The common case, one endpoint of the first target and nothing ejected, allocates
        // nothing.
        let ejections = self.outlier.any_ejected();
        // The clock matters only when an ejection may have ended.
        let now = ejections.then(Instant::now);
        let mut chosen: Option<(Vec<&Endpoint>, usize)> = None;
        for target in routed.targets.iter() {
            let Some(eps) = resolved.endpoints.get(target).filter(|e| !e.is_empty()) else {
                continue;
            };
            if !ejections && eps.len() == 1 && attempts.is_none_or(Attempts::is_empty) {
                return Ok(Picked {
                    endpoint: eps[0].clone(),
                    hosts: 1,
                });
            }
            let healthy: Vec<&Endpoint> = eps
                .iter()
                .filter(|e| now.is_none_or(|now| !self.outlier.is_ejected(&e.id, now)))
                .collect();
            if !healthy.is_empty() {
                chosen = Some((healthy, eps.len()));
                break;
            }
        }
        let primary = routed
            .targets
            .first()
            .map(String::as_str)
            .unwrap_or_default();
        let (set, hosts) = match chosen {
            Some(c) => c,
            None => match resolved.endpoints.get(primary).filter(|e| !e.is_empty()) {
                Some(eps) => (eps.iter().collect(), eps.len()),
                None => return Err(ProxyError::NoEndpoints(primary.to_string())),
            },
        };
        let fresh: Vec<&Endpoint> = match attempts {
            Some(a) => set.iter().copied().filter(|e| !a.contains(&e.id)).collect(),
            None => Vec::new(),
        };
        let endpoint = if fresh.is_empty() {
            self.choose(&set)
        } else {
            self.choose(&fresh)
        };
        Ok(Picked {
            endpoint: endpoint.clone(),
            hosts,
        })
    }
}

impl Middleware for Balance {
    fn call<S: Inner>(self: Arc<Self>, next: S, mut req: Req) -> ResponseFuture {
        let ext = req.extensions();
        let picked = match (ext.get::<Arc<Resolved>>(), ext.get::<Routed>()) {
            (Some(resolved), Some(routed)) => self.pick(resolved, routed, ext.get::<Attempts>()),
            _ => Err(ProxyError::NoRoute("request was not routed".to_string())),
        };
        let picked = match picked {
            Ok(p) => p,
            Err(e) => {
                if let Some(unsent) = req.extensions().get::<Unsent>().cloned() {
                    unsent.give_back(req);
                }
                return Box::pin(async move { Err(e) });
            }
        };
        if let Some(a) = req.extensions().get::<Attempts>() {
            a.push(&picked.endpoint.id);
        }
        let counter = self.counter(&picked.endpoint.id);
        counter.fetch_add(1, Ordering::AcqRel);
        let guard = Outstanding(counter);
        req.extensions_mut().insert(picked);
        Box::pin(async move {
            let resp = super::forward(next, req).await?;
            Ok(guard_body(resp, guard))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p2c_table() {
        // (loads, a, b, winner)
        let cases: [(&[usize], usize, usize, usize); 4] = [
            (&[0, 5], 0, 1, 0),
            (&[5, 0], 0, 1, 1),
            (&[3, 3], 1, 0, 1),
            (&[9, 1, 4], 2, 0, 2),
        ];
        for (loads, a, b, want) in cases {
            assert_eq!(p2c(loads, a, b), want, "{loads:?} {a} {b}");
        }
    }

    #[test]
    fn two_distinct_never_repeats_and_covers_all_pairs() {
        for n in 2..6 {
            let mut seen = std::collections::HashSet::new();
            for first in 0..n {
                for second in 0..n - 1 {
                    let (a, b) = two_distinct(n, first, second);
                    assert_ne!(a, b);
                    assert!(a < n && b < n);
                    seen.insert((a, b));
                }
            }
            assert_eq!(seen.len(), n * (n - 1), "every ordered pair for n={n}");
        }
    }

    fn ep(id: &str) -> Endpoint {
        Endpoint {
            id: id.into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            service: "db".into(),
        }
    }

    #[test]
    fn pick_prefers_least_loaded_healthy_untried_then_failover() {
        let outlier = Arc::new(Outlier::new(Default::default()));
        let b = Balance::new(BalancePolicy::LeastRequest, outlier.clone());
        let resolved = Resolved {
            endpoints: [
                ("db".to_string(), vec![ep("a"), ep("b")]),
                ("backup".to_string(), vec![ep("z")]),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let routed = Routed {
            targets: vec!["db".to_string(), "backup".to_string()].into(),
            overrides: Default::default(),
            connect_timeout: None,
            rewrite: None,
        };
        b.counter("a").store(3, Ordering::Release);
        for _ in 0..20 {
            assert_eq!(
                b.pick(&resolved, &routed, None).unwrap().endpoint.id,
                "b".into()
            );
        }
        let tried = Attempts::default();
        tried.push(&"b".into());
        assert_eq!(
            b.pick(&resolved, &routed, Some(&tried))
                .unwrap()
                .endpoint
                .id,
            "a".into()
        );
        // Eject both primaries: the failover target serves.
        let now = Instant::now();
        let p = crate::l7::policy::OutlierPolicy {
            max_failures: 1,
            max_ejection_percent: 100,
            ..Default::default()
        };
        let strict = Arc::new(Outlier::new(p));
        assert!(strict.record("a", true, 2, now, 0));
        assert!(strict.record("b", true, 2, now, 0));
        let b2 = Balance::new(BalancePolicy::RoundRobin, strict);
        assert_eq!(
            b2.pick(&resolved, &routed, None).unwrap().endpoint.id,
            "z".into()
        );
        // No failover and everything ejected: panic mode uses the primary's endpoints.
        let only = Routed {
            targets: vec!["db".to_string()].into(),
            ..routed.clone()
        };
        let ids: std::collections::HashSet<Arc<str>> = (0..4)
            .map(|_| b2.pick(&resolved, &only, None).unwrap().endpoint.id)
            .collect();
        assert_eq!(ids.len(), 2, "round robin over both");
        let none = Routed {
            targets: vec!["nowhere".to_string()].into(),
            ..routed
        };
        assert_eq!(
            b2.pick(&resolved, &none, None).unwrap_err(),
            ProxyError::NoEndpoints("nowhere".to_string())
        );
    }
}
