//! The cap on blocking queries one client may have parked at once
//! ([`HttpLimits::http_max_blocking_queries_per_client`]): one more is answered `429` in
//! plain text instead of parking, so one client cannot hold the agent's memory and its
//! servers' streams. Applied as the outermost layer of the HTTP API, by [`crate::serve`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::HttpLimits;

/// Parked blocking queries per remote IP. A std mutex: held for a map update, never
/// across an await.
#[derive(Clone, Debug)]
pub(crate) struct BlockingCap {
    max: usize,
    parked: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One parked query, counted until dropped (the handler returned or was cancelled).
struct Parked {
    cap: BlockingCap,
    ip: IpAddr,
}

impl Drop for Parked {
    fn drop(&mut self) {
        let mut parked = self.cap.parked.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = parked.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                parked.remove(&self.ip);
            }
        }
    }
}

impl BlockingCap {
    pub(crate) fn new(limits: &HttpLimits) -> Self {
        BlockingCap {
            max: limits.http_max_blocking_queries_per_client,
            parked: Arc::default(),
        }
    }

    fn admit(&self, ip: IpAddr) -> Option<Parked> {
        let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        let n = parked.entry(ip).or_insert(0);
        if self.max > 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Parked {
            cap: self.clone(),
            ip,
        })
    }
}

/// Whether the request is a blocking query: a non-zero `index` parameter (Consul parks a
/// read only then).
fn is_blocking(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes())
            .any(|(k, v)| k == "index" && v.parse::<u64>().is_ok_and(|i| i > 0))
    })
}

/// The middleware: counts a blocking query against its client for as long as it runs.
/// Requests without a peer address (in-process tests) are not counted.
pub(crate) async fn cap_blocking(
    State(cap): State<BlockingCap>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let (Some(ip), true) = (peer, is_blocking(request.uri().query())) else {
        return next.run(request).await;
    };
    let Some(_parked) = cap.admit(ip) else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many blocking queries from {ip}: at most {} may wait at once \
                 (limits.http_max_blocking_queries_per_client)",
                cap.max
            ),
        )
            .into_response();
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    #[test]
    fn only_a_nonzero_index_blocks() {
        assert!(is_blocking(Some("index=5&wait=1s")));
        assert!(!is_blocking(Some("index=0")));
        assert!(!is_blocking(Some("index=x")));
        assert!(!is_blocking(Some("recurse")));
        assert!(!is_blocking(None));
    }

    #[tokio::test]
    async fn one_query_beyond_the_cap_is_refused_until_one_returns() {
        let cap = BlockingCap::new(&HttpLimits {
            http_max_blocking_queries_per_client: 1,
            ..HttpLimits::default()
        });
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        let app = Router::new()
            .route(
                "/v1/kv/k",
                get(move || {
                    let mut rx = release_rx.clone();
                    async move {
                        let _ = rx.wait_for(|r| *r).await;
                        "done"
                    }
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                cap.clone(),
                cap_blocking,
            ));
        let request = |ip: [u8; 4]| {
            let mut r = Request::get("/v1/kv/k?index=3")
                .body(Body::empty())
                .unwrap();
            r.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from((ip, 1000))));
            r
        };
        let parked = tokio::spawn(app.clone().oneshot(request([127, 0, 0, 1])));
        tracing::info!("wait until the first query is counted");
        while cap.parked.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let refused = app.clone().oneshot(request([127, 0, 0, 1])).await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let body = axum::body::to_bytes(refused.into_body(), 1024)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).starts_with("Too many blocking queries"));
        tracing::info!("another address is not affected");
        let other = tokio::spawn(app.clone().oneshot(request([127, 0, 0, 2])));
        while cap.parked.lock().unwrap().len() < 2 {
            tokio::task::yield_now().await;
        }
        release_tx.send(true).unwrap();
        assert_eq!(parked.await.unwrap().unwrap().status(), StatusCode::OK);
        assert_eq!(other.await.unwrap().unwrap().status(), StatusCode::OK);
        assert!(cap.parked.lock().unwrap().is_empty());
    }
}
