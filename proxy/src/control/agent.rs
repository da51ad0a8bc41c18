//! The HTTP client to the local agent's public API, with Consul's blocking queries
//! (`?index=&wait=`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::ControlError;

/// How long one blocking query waits on the agent before it answers unchanged.
const BLOCKING_WAIT: Duration = Duration::from_secs(60);
/// Slack on top of the wait for the agent's jitter and the transfer.
const BLOCKING_SLACK: Duration = Duration::from_secs(20);
/// Timeout of a non-blocking request (a leaf may take up to 30 s to be first issued).
const PLAIN_TIMEOUT: Duration = Duration::from_secs(40);

/// Talks to one agent.
#[derive(Clone, Debug)]
pub struct AgentClient {
    /// `http://host:port` or `https://host:port`, no trailing slash.
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl AgentClient {
    /// A client for the agent at `base` (`http://host:port`), sending `token` if given.
    pub fn new(base: &str, token: Option<String>) -> Result<AgentClient, ControlError> {
        AgentClient::with_tls(base, token, None)
    }

    /// A client for the agent at `base`, `https://host:port` with `tls` (the CLI's
    /// `-ca-file`, `-client-cert`, ... as every command reads them); `http://` ignores it.
    pub fn with_tls(
        base: &str,
        token: Option<String>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<AgentClient, ControlError> {
        // A local agent: never through an HTTP proxy from the environment.
        let mut builder = reqwest::Client::builder().no_proxy();
        if base.starts_with("https://") {
            let Some(tls) = tls else {
                return Err(ControlError::Transport(format!(
                    "{base}: an https:// agent address needs a TLS configuration"
                )));
            };
            builder = builder.use_preconfigured_tls(rustls::ClientConfig::clone(&tls));
        }
        let http = builder
            .build()
            .map_err(|e| ControlError::Transport(e.to_string()))?;
        Ok(AgentClient {
            base: base.trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.is_empty()),
            http,
        })
    }

    /// `GET path?query`; `Ok(None)` on 404; the `X-Consul-Index` (0 when absent) and JSON.
    pub async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<(u64, Value)>, ControlError> {
        self.send(path, query, PLAIN_TIMEOUT).await
    }

    /// A blocking `GET`: answers when the result's index passes `index` or the wait ends.
    pub async fn blocking(
        &self,
        path: &str,
        query: &[(&str, String)],
        index: u64,
    ) -> Result<Option<(u64, Value)>, ControlError> {
        let mut query = query.to_vec();
        if index > 0 {
            query.push(("index", index.to_string()));
            query.push(("wait", format!("{}s", BLOCKING_WAIT.as_secs())));
        }
        self.send(path, &query, BLOCKING_WAIT + BLOCKING_SLACK)
            .await
    }

    /// A hash-blocking `GET` (`/v1/agent/service/:id`): answers when the result's
    /// `X-Consul-ContentHash` differs from `hash` or the wait ends; `Ok(None)` on 404, else
    /// the new hash and JSON.
    pub async fn blocking_hash(
        &self,
        path: &str,
        hash: &str,
    ) -> Result<Option<(String, Value)>, ControlError> {
        let mut query = Vec::new();
        if !hash.is_empty() {
            query.push(("hash", hash.to_string()));
            query.push(("wait", format!("{}s", BLOCKING_WAIT.as_secs())));
        }
        let answer = self
            .request(path, &query, BLOCKING_WAIT + BLOCKING_SLACK)
            .await?;
        Ok(answer.map(|(headers, value)| {
            let hash = header(&headers, "x-consul-contenthash").unwrap_or_default();
            (hash.to_string(), value)
        }))
    }

    async fn send(
        &self,
        path: &str,
        query: &[(&str, String)],
        timeout: Duration,
    ) -> Result<Option<(u64, Value)>, ControlError> {
        let answer = self.request(path, query, timeout).await?;
        Ok(answer.map(|(headers, value)| {
            let index = header(&headers, "x-consul-index")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            (index, value)
        }))
    }

    /// `GET path?query`: `Ok(None)` on 404, else the headers and JSON body.
    async fn request(
        &self,
        path: &str,
        query: &[(&str, String)],
        timeout: Duration,
    ) -> Result<Option<(reqwest::header::HeaderMap, Value)>, ControlError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.get(&url).query(query).timeout(timeout);
        if let Some(token) = &self.token {
            request = request.header("X-Consul-Token", token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ControlError::Transport(format!("GET {url}: {}", chain(&e))))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| ControlError::Transport(format!("GET {url}: {}", chain(&e))))?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(ControlError::Status {
                path: path.to_string(),
                code: status.as_u16(),
                body: String::from_utf8_lossy(&body).trim_end().to_string(),
            });
        }
        let value = serde_json::from_slice(&body)
            .map_err(|e| ControlError::Decode(format!("GET {path}: {e}")))?;
        Ok(Some((headers, value)))
    }
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// An error with its causes, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
