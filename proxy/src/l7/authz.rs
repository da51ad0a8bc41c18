//! Inbound L7 authorization: each request is judged by the intentions naming this service
//! as destination, with the source from the peer's SPIFFE id, its path (no query string),
//! method and headers. The decision is local (the latest [`IntentionSnapshot`]), so an
//! intention change applies to the next request on a kept-alive connection. A denial is a
//! 403 with a plain body and counts in `concord_proxy_http_intention_denials_total`.

use std::sync::Arc;

use concord_api::intention::HttpRequest;
use tokio::sync::watch;

use super::metrics::{L7Metrics, SourceLabels};
use super::SourceService;
use super::{Inner, Middleware, ProxyError, Req, ResponseFuture};
use crate::model::IntentionSnapshot;

/// The authorization layer.
pub struct Authorize {
    pub(crate) intentions: watch::Receiver<IntentionSnapshot>,
    pub(crate) metrics: L7Metrics,
}

impl Middleware for Authorize {
    fn call<S: Inner>(self: Arc<Self>, next: S, req: Req) -> ResponseFuture {
        let source = req
            .extensions()
            .get::<SourceService>()
            .map(|s| &*s.0)
            .unwrap_or_default();
        let intentions = self.intentions.borrow();
        // Copied only when an intention looks at headers (most have no header condition).
        let headers = super::header_pairs(&req, intentions.reads_headers());
        let decision = intentions.decide_request(
            source,
            &HttpRequest {
                path: req.uri().path(),
                method: req.method().as_str(),
                headers: &headers,
            },
        );
        drop(intentions);
        if !decision.allowed {
            let source = source.to_string();
            self.metrics
                .intention_denials
                .get_or_create(&SourceLabels {
                    source: source.clone(),
                })
                .inc();
            tracing::debug!(%source, reason = %decision.reason, "L7 intention denied a request");
            return Box::pin(async move { Err(ProxyError::Denied(decision.reason)) });
        }
        super::forward(next, req)
    }
}
