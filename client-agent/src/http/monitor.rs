//! `GET /v1/agent/monitor?loglevel=&logjson`: streams the agent's log lines as they happen,
//! one per line, until the client goes away (Consul's `AgentMonitor`).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, ApiResult, AppState, Common};
use crate::logs::Subscription;

/// The level `?loglevel=` names (case-insensitive; empty is `info`), or Consul's 400.
fn level(text: &str) -> Result<tracing::Level, ApiError> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "" | "info" => tracing::Level::INFO,
        "trace" => tracing::Level::TRACE,
        "debug" => tracing::Level::DEBUG,
        "warn" => tracing::Level::WARN,
        "err" | "error" => tracing::Level::ERROR,
        _ => return Err(ApiError::BadRequest(format!("Unknown log level: {text}"))),
    })
}

/// Needs `agent:read` on this agent (Consul's `AgentMonitor`).
pub(super) async fn monitor(State(s): State<AppState>, c: Common) -> ApiResult {
    let node = &s.config.node_name;
    let need = super::authz::Need::agent(node, concord_api::acl::authorizer::Level::Read);
    super::authz::require(&s, c.token.as_deref(), &[need]).await?;
    let wanted = level(c.params.get("loglevel").unwrap_or(""))?;
    let json = c.params.has("logjson");
    let subscription = s.config.logs.subscribe(json);
    // `Level` orders TRACE as the greatest: a line passes when it is at least as severe.
    let stream = futures::stream::unfold(subscription, move |mut sub: Subscription| async move {
        loop {
            match sub.lines.recv().await {
                Ok(line) if line.level <= wanted => {
                    let bytes = axum::body::Bytes::copy_from_slice(line.line.as_bytes());
                    return Some((Ok::<_, std::convert::Infallible>(bytes), sub));
                }
                Ok(_) => {}
                // A slow reader skips what it missed rather than holding the agent up.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_as_consul_names_them() {
        assert_eq!(level("").unwrap(), tracing::Level::INFO);
        assert_eq!(level("DEBUG").unwrap(), tracing::Level::DEBUG);
        assert_eq!(level("err").unwrap(), tracing::Level::ERROR);
        assert_eq!(
            level("loud").unwrap_err().to_string(),
            "Unknown log level: loud"
        );
    }
}
