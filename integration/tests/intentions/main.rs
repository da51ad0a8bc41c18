//! Intentions and config entries against a real `concord agent -dev`: the three intention
//! API shapes agree, bad input is refused without changing anything, authorize sees a
//! change within a second, the CLI round-trips, and `Connect.SidecarService` registers a
//! discoverable proxy.

// Test helpers outside #[test] functions may unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod authorize;
mod cli;
mod config_entries;
mod crud;
mod sidecar;

use concord_integration::TestAgent;
use serde_json::Value;

/// A request with a method and an optional JSON body: status and body (JSON, or the text
/// as a JSON string when it is not JSON).
pub(crate) async fn call(
    agent: &TestAgent,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = agent.client.request(method, agent.url(path));
    if let Some(b) = body {
        r = r.body(b.to_string());
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// `GET path`: status and body, as [`call`].
pub(crate) async fn get(agent: &TestAgent, path: &str) -> (u16, Value) {
    call(agent, reqwest::Method::GET, path, None).await
}
