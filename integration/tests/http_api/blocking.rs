use std::time::Duration;

use concord_integration::{init_tracing, TestAgent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_query_wakes_on_change() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    agent.put("/v1/kv/watched", "1").await.unwrap();
    let (_, index, _) = agent.get_json("/v1/kv/watched").await.unwrap();

    tracing::info!("block on the key, then write it from another task");
    let url = agent.url(&format!("/v1/kv/watched?index={index}&wait=30s"));
    let client = agent.client.clone();
    let started = tokio::time::Instant::now();
    let waiter = tokio::spawn(async move { client.get(url).send().await });
    // Give the request time to reach the server and block; the assertion below does not
    // depend on this (a write before the block is seen as a higher index either way).
    tokio::task::yield_now().await;
    agent.put("/v1/kv/watched", "2").await.unwrap();
    let r = waiter.await.unwrap().unwrap();
    let new_index: u64 = r.headers()["x-consul-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        new_index > index,
        "index must advance: {index} -> {new_index}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "woke on change, not on timeout"
    );

    tracing::info!("health blocking queries wake on registration");
    let (_, index, _) = agent.get_json("/v1/health/service/late").await.unwrap();
    let url = agent.url(&format!("/v1/health/service/late?index={index}&wait=30s"));
    let client = agent.client.clone();
    let waiter = tokio::spawn(async move { client.get(url).send().await });
    agent
        .put("/v1/agent/service/register", r#"{"Name":"late"}"#)
        .await
        .unwrap();
    let body: serde_json::Value = waiter.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(body[0]["Service"]["Service"], "late");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_query_times_out_on_wait() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    agent.put("/v1/kv/still", "1").await.unwrap();
    let (_, index, _) = agent.get_json("/v1/kv/still").await.unwrap();
    let started = tokio::time::Instant::now();
    let (code, same, _) = agent
        .get_json(&format!("/v1/kv/still?index={index}&wait=1s"))
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert_eq!(same, index, "no change: same index");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "returned early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "wait not honoured: {waited:?}"
    );
}
