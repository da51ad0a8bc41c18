use base64::Engine as _;
use concord_integration::{init_tracing, TestAgent};
use serde_json::json;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_put_get_list_delete() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();

    tracing::info!("plain set returns true; get returns base64 values");
    let (code, body) = agent
        .put("/v1/kv/app/config/db?flags=42", "postgres://x")
        .await
        .unwrap();
    assert_eq!((code, body.as_str()), (200, "true"));
    agent.put("/v1/kv/app/config/cache", "redis").await.unwrap();
    agent.put("/v1/kv/app/name", "concord").await.unwrap();
    let (code, index, v) = agent.get_json("/v1/kv/app/config/db").await.unwrap();
    assert_eq!(code, 200);
    assert!(index > 0);
    assert_eq!(v[0]["Key"], "app/config/db");
    assert_eq!(v[0]["Value"], b64("postgres://x"));
    assert_eq!(v[0]["Flags"], 42);
    assert_eq!(v[0]["LockIndex"], 0);

    tracing::info!("raw returns the bytes");
    let raw = agent
        .client
        .get(agent.url("/v1/kv/app/name?raw"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(raw, "concord");

    tracing::info!("recurse, keys and separator");
    let (_, _, all) = agent.get_json("/v1/kv/app?recurse").await.unwrap();
    assert_eq!(all.as_array().unwrap().len(), 3);
    let (_, _, keys) = agent
        .get_json("/v1/kv/app/?keys&separator=/")
        .await
        .unwrap();
    assert_eq!(keys, json!(["app/config/", "app/name"]));
    let (_, _, keys) = agent.get_json("/v1/kv/?keys").await.unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 3);

    tracing::info!("missing keys are 404 but still carry an index");
    let (code, index, _) = agent.get_json("/v1/kv/nope").await.unwrap();
    assert_eq!(code, 404);
    assert!(index > 0);

    tracing::info!("CAS: 0 means create-only; the current ModifyIndex wins once");
    let (_, body) = agent.put("/v1/kv/app/name?cas=0", "again").await.unwrap();
    assert_eq!(body, "false");
    let (_, _, v) = agent.get_json("/v1/kv/app/name").await.unwrap();
    let mi = v[0]["ModifyIndex"].as_u64().unwrap();
    let (_, body) = agent
        .put(&format!("/v1/kv/app/name?cas={mi}"), "v2")
        .await
        .unwrap();
    assert_eq!(body, "true");
    let (_, body) = agent
        .put(&format!("/v1/kv/app/name?cas={mi}"), "v3")
        .await
        .unwrap();
    assert_eq!(body, "false");

    tracing::info!("delete one, then the tree");
    let r = agent
        .client
        .delete(agent.url("/v1/kv/app/name"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "true");
    let (code, _, _) = agent.get_json("/v1/kv/app/name").await.unwrap();
    assert_eq!(code, 404);
    agent
        .client
        .delete(agent.url("/v1/kv/app?recurse"))
        .send()
        .await
        .unwrap();
    let (code, _, _) = agent.get_json("/v1/kv/app?recurse").await.unwrap();
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_is_all_or_nothing() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    let ok = json!([
        {"KV": {"Verb": "set", "Key": "t/a", "Value": b64("1")}},
        {"KV": {"Verb": "set", "Key": "t/b", "Value": b64("2")}},
        {"KV": {"Verb": "get", "Key": "t/a"}}
    ]);
    let (code, body) = agent.put("/v1/txn", ok.to_string()).await.unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Results"].as_array().unwrap().len(), 3);
    assert_eq!(v["Results"][2]["KV"]["Value"], b64("1"));

    tracing::info!("a failing check-not-exists rolls back the earlier set");
    let bad = json!([
        {"KV": {"Verb": "set", "Key": "t/c", "Value": b64("3")}},
        {"KV": {"Verb": "check-not-exists", "Key": "t/a"}}
    ]);
    let (code, body) = agent.put("/v1/txn", bad.to_string()).await.unwrap();
    assert_eq!(code, 409, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Errors"][0]["OpIndex"], 1);
    let (code, _, _) = agent.get_json("/v1/kv/t/c").await.unwrap();
    assert_eq!(code, 404, "rolled-back set must not be visible");

    let (code, _) = agent
        .put("/v1/txn", r#"[{"KV":{"Verb":"explode","Key":"x"}}]"#)
        .await
        .unwrap();
    assert_eq!(code, 400);
}
