//! Inputs Consul rejects: each gets Consul's answer and changes nothing.

use concord_integration::{init_tracing, TestAgent};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_service_id_persists_across_a_restart() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::server(dir.path()).await.unwrap();
    let id = "s".repeat(200);
    tracing::info!("a service and a check with 200-byte IDs register");
    let service = json!({"Name": "web", "ID": id, "Port": 80}).to_string();
    let (code, body) = agent
        .put("/v1/agent/service/register", service)
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let check = json!({"Name": "disk", "CheckID": id, "TTL": "1h"}).to_string();
    let (code, body) = agent.put("/v1/agent/check/register", check).await.unwrap();
    assert_eq!(code, 200, "{body}");
    let mut agent = agent;
    assert!(agent.stop().unwrap().success());
    tracing::info!("both are back after a restart");
    let agent = TestAgent::server(dir.path()).await.unwrap();
    let (_, _, services) = agent.get_json("/v1/agent/services").await.unwrap();
    assert_eq!(services[&id]["Port"], 80, "{}", agent.logs());
    let (_, _, checks) = agent.get_json("/v1/agent/checks").await.unwrap();
    assert_eq!(checks[&id]["Name"], "disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_writes_get_consuls_answers_and_change_nothing() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    let (_, _, catalog_before) = agent.get_json("/v1/catalog/nodes").await.unwrap();

    tracing::info!("txn set with an empty key: 409 with Consul's error, nothing written");
    let txn = json!([
        {"KV": {"Verb": "set", "Key": "kept-out", "Value": "eA=="}},
        {"KV": {"Verb": "set", "Key": "", "Value": "eA=="}}
    ]);
    let r = agent
        .request("PUT", "/v1/txn", txn.to_string().as_bytes(), timeout())
        .await
        .unwrap();
    assert_eq!(r.status, 409);
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body["Errors"],
        json!([{"OpIndex": 1, "What": "Must provide key"}])
    );
    let (code, _, _) = agent.get_json("/v1/kv/?recurse").await.unwrap();
    assert_eq!(code, 404, "no key was written");

    tracing::info!("catalog/register with a check of another node: Consul's 500");
    let register = json!({
        "Node": "n1", "Address": "10.0.0.1",
        "Check": {"Node": "n2", "CheckID": "c1", "Name": "c1"}
    });
    let r = agent
        .request(
            "PUT",
            "/v1/catalog/register",
            register.to_string().as_bytes(),
            timeout(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "Node 'n2' for check 'c1' doesn't match register request node 'n1'"
    );
    let (_, _, catalog_after) = agent.get_json("/v1/catalog/nodes").await.unwrap();
    assert_eq!(catalog_after, catalog_before);

    tracing::info!("session/create with an array body: 400, no session");
    let r = agent
        .request("PUT", "/v1/session/create", b"[]", timeout())
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).starts_with("Request decode failed"));
    let (_, _, sessions) = agent.get_json("/v1/session/list").await.unwrap();
    assert_eq!(sessions, json!([]));
}

fn timeout() -> std::time::Duration {
    std::time::Duration::from_secs(10)
}
