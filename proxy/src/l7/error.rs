//! The failures a layer reports instead of a response, and the response each becomes.
//! Only the outermost layer turns them into responses, so inner layers (retry, outlier)
//! can tell a connect failure from an upstream's own 503.

use std::time::Duration;

use http::{header, HeaderValue, StatusCode};

use super::{full, Resp};

/// The header that marks a response made by the proxy rather than the upstream.
pub const PROXY_ERROR_HEADER: &str = "x-concord-proxy-error";

/// Why the proxy answered itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The chain routes the request nowhere (no snapshot yet, or no route matches).
    #[error("no route to upstream {0}")]
    NoRoute(String),
    /// No target of the route has an endpoint.
    #[error("no healthy endpoint for {0}")]
    NoEndpoints(String),
    /// Dialling the chosen endpoint failed (refused, TLS handshake, ...).
    #[error("upstream connect error: {0}")]
    Connect(String),
    /// Dialling did not finish within the connect timeout.
    #[error("upstream connect timeout after {0:?}")]
    ConnectTimeout(Duration),
    /// A circuit-breaker limit is reached (the limit's config key).
    #[error("circuit breaker open: {0} reached")]
    Overflow(&'static str),
    /// No response headers within the request timeout.
    #[error("upstream request timeout after {0:?}")]
    Timeout(Duration),
    /// The connection failed after the request was sent (reset, protocol error).
    #[error("upstream error: {0}")]
    Upstream(String),
    /// An L7 intention denies the request.
    #[error("request denied by intentions: {0}")]
    Denied(String),
}

impl ProxyError {
    /// The status a client sees (Envoy's choices: 503 for no upstream or an open breaker,
    /// 504 for a timeout, 502 for a broken upstream, 403 for RBAC).
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute(_)
            | ProxyError::NoEndpoints(_)
            | ProxyError::Connect(_)
            | ProxyError::ConnectTimeout(_)
            | ProxyError::Overflow(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Denied(_) => StatusCode::FORBIDDEN,
        }
    }

    /// Whether no connection to an upstream was made: what `RetryOnConnectFailure` covers
    /// and what outlier detection counts next to 5xx.
    pub fn is_connect_failure(&self) -> bool {
        matches!(
            self,
            ProxyError::Connect(_) | ProxyError::ConnectTimeout(_) | ProxyError::NoEndpoints(_)
        )
    }

    /// A short machine-readable kind (the marker header's value).
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::NoRoute(_) => "no-route",
            ProxyError::NoEndpoints(_) => "no-endpoints",
            ProxyError::Connect(_) => "connect",
            ProxyError::ConnectTimeout(_) => "connect-timeout",
            ProxyError::Overflow(_) => "overflow",
            ProxyError::Timeout(_) => "timeout",
            ProxyError::Upstream(_) => "upstream",
            ProxyError::Denied(_) => "denied",
        }
    }

    /// The plain-text response.
    pub fn into_response(self) -> Resp {
        let mut resp = http::Response::new(full(format!("{self}\n")));
        *resp.status_mut() = self.status();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(PROXY_ERROR_HEADER, HeaderValue::from_static(self.kind()));
        resp
    }
}
