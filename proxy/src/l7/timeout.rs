//! Request timeout: the time from handing a request to the layers below (routing done,
//! breaker admitted, every retry) to its response headers. On expiry the attempt in flight
//! is dropped (its connection is not reused) and the client gets 504 saying so. Response
//! bodies stream after the headers and are not timed: a long download is not a hung one.

use std::sync::Arc;
use std::time::Duration;

use super::policy::RequestPolicy;
use super::{Inner, Middleware, ProxyError, Req, ResponseFuture};

/// The timeout layer.
pub struct Timeout {
    /// Used when the request carries no [`RequestPolicy`] (inbound); `None`: no limit.
    pub(crate) default: Option<Duration>,
}

impl Middleware for Timeout {
    fn call<S: Inner>(self: Arc<Self>, next: S, req: Req) -> ResponseFuture {
        let limit = req
            .extensions()
            .get::<RequestPolicy>()
            .map(|p| p.request_timeout)
            .or(self.default);
        let fut = super::forward(next, req);
        match limit {
            // A zero timeout means "disabled" in Consul's route config.
            Some(limit) if !limit.is_zero() => Box::pin(async move {
                tokio::time::timeout(limit, fut)
                    .await
                    .unwrap_or(Err(ProxyError::Timeout(limit)))
            }),
            _ => fut,
        }
    }
}
