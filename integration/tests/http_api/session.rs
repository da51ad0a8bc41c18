use concord_integration::{assert_eventually, init_tracing, TestAgent};
use serde_json::{json, Value};

async fn create(agent: &TestAgent, body: Value) -> String {
    let (code, text) = agent
        .put("/v1/session/create", body.to_string())
        .await
        .unwrap();
    assert_eq!(code, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["ID"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_follow_session_lifecycle() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();

    tracing::info!("a default session ties to the node's serfHealth");
    let s1 = create(
        &agent,
        json!({"Name": "leader-election", "LockDelay": "0s"}),
    )
    .await;
    let (_, _, info) = agent
        .get_json(&format!("/v1/session/info/{s1}"))
        .await
        .unwrap();
    assert_eq!(info[0]["Node"], agent.node);
    assert_eq!(info[0]["NodeChecks"], json!(["serfHealth"]));
    assert_eq!(info[0]["Behavior"], "release");

    tracing::info!("acquire, contend, release");
    let (_, body) = agent
        .put(&format!("/v1/kv/lock?acquire={s1}"), "me")
        .await
        .unwrap();
    assert_eq!(body, "true");
    let s2 = create(&agent, json!({"LockDelay": "0s"})).await;
    let (_, body) = agent
        .put(&format!("/v1/kv/lock?acquire={s2}"), "you")
        .await
        .unwrap();
    assert_eq!(body, "false");
    let (_, _, kv) = agent.get_json("/v1/kv/lock").await.unwrap();
    assert_eq!(kv[0]["Session"], s1.as_str());
    assert_eq!(kv[0]["LockIndex"], 1);
    let (_, body) = agent
        .put(&format!("/v1/kv/lock?release={s1}"), "")
        .await
        .unwrap();
    assert_eq!(body, "true");
    let (_, body) = agent
        .put(&format!("/v1/kv/lock?acquire={s2}"), "you")
        .await
        .unwrap();
    assert_eq!(body, "true");

    tracing::info!("destroying the holder releases the lock");
    let (code, body) = agent
        .put(&format!("/v1/session/destroy/{s2}"), "")
        .await
        .unwrap();
    assert_eq!((code, body.as_str()), (200, "true"));
    let (_, _, kv) = agent.get_json("/v1/kv/lock").await.unwrap();
    assert!(kv[0].get("Session").is_none());

    tracing::info!("list, node, renew");
    let (_, _, list) = agent.get_json("/v1/session/list").await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, _, mine) = agent
        .get_json(&format!("/v1/session/node/{}", agent.node))
        .await
        .unwrap();
    assert_eq!(mine.as_array().unwrap().len(), 1);
    let (code, _) = agent
        .put(&format!("/v1/session/renew/{s1}"), "")
        .await
        .unwrap();
    assert_eq!(code, 200);
    let (code, text) = agent
        .put(&format!("/v1/session/renew/{s2}"), "")
        .await
        .unwrap();
    assert_eq!(code, 404);
    assert!(text.contains("not found"), "{text}");
    let (_, _, gone) = agent
        .get_json(&format!("/v1/session/info/{s2}"))
        .await
        .unwrap();
    assert_eq!(gone, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_expiry_and_failing_check_invalidate() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();

    tracing::info!("a delete-behaviour session whose TTL lapses deletes its keys");
    let ttl = create(
        &agent,
        json!({"TTL": "10s", "Behavior": "delete", "LockDelay": "0s"}),
    )
    .await;
    let (_, body) = agent
        .put(&format!("/v1/kv/ephemeral?acquire={ttl}"), "x")
        .await
        .unwrap();
    assert_eq!(body, "true");
    assert_eventually!(
        @timeout std::time::Duration::from_secs(40),
        agent.get_json("/v1/kv/ephemeral").await.unwrap().0 == 404,
        "TTL session never expired"
    );
    let (_, _, info) = agent
        .get_json(&format!("/v1/session/info/{ttl}"))
        .await
        .unwrap();
    assert_eq!(info, json!([]));

    tracing::info!("a session tied to a check dies when the check goes critical");
    agent
        .put(
            "/v1/agent/check/register",
            r#"{"Name":"guard","TTL":"1h","Status":"passing"}"#,
        )
        .await
        .unwrap();
    let s = create(
        &agent,
        json!({"NodeChecks": ["serfHealth", "guard"], "LockDelay": "0s"}),
    )
    .await;
    let (_, body) = agent
        .put(&format!("/v1/kv/guarded?acquire={s}"), "x")
        .await
        .unwrap();
    assert_eq!(body, "true");
    agent.put("/v1/agent/check/fail/guard", "").await.unwrap();
    assert_eventually!(
        agent
            .get_json(&format!("/v1/session/info/{s}"))
            .await
            .unwrap()
            .2
            == json!([]),
        "session survived a critical check"
    );
    let (_, _, kv) = agent.get_json("/v1/kv/guarded").await.unwrap();
    assert!(kv[0].get("Session").is_none(), "lock released: {kv}");

    tracing::info!("sessions need healthy checks and a known node");
    let (code, _) = agent
        .put("/v1/session/create", r#"{"NodeChecks":["guard"]}"#)
        .await
        .unwrap();
    assert!(code >= 400);
    let (code, _) = agent
        .put("/v1/session/create", r#"{"Node":"ghost"}"#)
        .await
        .unwrap();
    assert!(code >= 400);
    let (code, _) = agent
        .put("/v1/session/create", r#"{"TTL":"1s"}"#)
        .await
        .unwrap();
    assert_eq!(
        code, 500,
        "TTL below 10s is rejected, as Consul's RPC error"
    );
}
