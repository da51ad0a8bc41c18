//! The web UI in headless Chromium against a real `concord agent -dev`: a registered service
//! appears, a failing TTL check turns it critical within a second, a KV edit saves and a
//! concurrent edit is refused visibly (CAS), a deny intention created in the UI turns the
//! topology edge red. Screenshots of each view go to the target dir's `ui-screenshots/`.

// Test helpers outside #[test] functions may unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod flows;

use concord_integration::TestAgent;
use serde_json::Value;

/// `PUT path` with a JSON body; panics unless 200.
pub(crate) async fn put_json(agent: &TestAgent, path: &str, body: Value) -> String {
    let (status, text) = agent.put(path, body.to_string()).await.unwrap();
    assert_eq!(status, 200, "PUT {path}: {text}");
    text
}

/// `PUT path` with a raw body; panics unless 200.
pub(crate) async fn put_raw(agent: &TestAgent, path: &str, body: &str) -> String {
    let (status, text) = agent.put(path, body.to_string()).await.unwrap();
    assert_eq!(status, 200, "PUT {path}: {text}");
    text
}
