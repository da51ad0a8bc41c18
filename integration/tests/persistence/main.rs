//! A persistent single server (`-server -bootstrap-expect 1 -data-dir DIR`) keeps what it
//! acknowledged across a clean restart and across `kill -9`.

// Test helpers outside #[test] functions may unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use concord_integration::{init_tracing, TestAgent};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_services_and_kv() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut agent = TestAgent::server(dir.path()).await.unwrap();
    tracing::info!("write a service, a check and keys, then stop cleanly");
    agent
        .put(
            "/v1/agent/service/register",
            r#"{"Name":"web","Port":80,"Check":{"TTL":"1h","Status":"passing"}}"#,
        )
        .await
        .unwrap();
    agent
        .put("/v1/agent/check/register", r#"{"Name":"disk","TTL":"1h"}"#)
        .await
        .unwrap();
    agent.put("/v1/kv/config/a", "1").await.unwrap();
    let (_, index_before, _) = agent.get_json("/v1/kv/config/a").await.unwrap();
    let status = agent.stop().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");

    tracing::info!("start again on the same data dir");
    let agent = TestAgent::server(dir.path()).await.unwrap();
    let (code, index, kv) = agent.get_json("/v1/kv/config/a").await.unwrap();
    assert_eq!(code, 200, "{}", agent.logs());
    assert_eq!(kv[0]["Value"], "MQ==");
    assert!(index >= index_before);
    let (_, _, svcs) = agent.get_json("/v1/agent/services").await.unwrap();
    assert_eq!(svcs["web"]["Port"], 80);
    let (_, _, checks) = agent.get_json("/v1/agent/checks").await.unwrap();
    assert!(checks.get("disk").is_some());
    let (_, _, rows) = agent.get_json("/v1/catalog/service/web").await.unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_acknowledged_put_loses_nothing() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut agent = TestAgent::server(dir.path()).await.unwrap();
    tracing::info!("acknowledged writes, then SIGKILL with no chance to flush");
    for i in 0..20 {
        let (code, body) = agent
            .put(&format!("/v1/kv/k{i}"), format!("v{i}"))
            .await
            .unwrap();
        assert_eq!((code, body.as_str()), (200, "true"));
    }
    let (code, body) = agent
        .put(
            "/v1/catalog/register",
            json!({"Node": "ext", "Address": "10.0.0.9"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!((code, body.as_str()), (200, "true"));
    agent.kill9();

    let agent = TestAgent::server(dir.path()).await.unwrap();
    for i in 0..20 {
        let (code, _, kv) = agent.get_json(&format!("/v1/kv/k{i}")).await.unwrap();
        assert_eq!(
            code,
            200,
            "k{i} lost after kill -9; logs:\n{}",
            agent.logs()
        );
        let want = base64_of(&format!("v{i}"));
        assert_eq!(kv[0]["Value"], want.as_str());
    }
    let (_, _, node) = agent.get_json("/v1/catalog/node/ext").await.unwrap();
    assert_eq!(node["Node"]["Address"], "10.0.0.9");
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
