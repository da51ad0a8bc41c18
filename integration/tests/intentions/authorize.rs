//! `POST /v1/agent/connect/authorize` answers from the agent's cache; a change reaches it
//! within one second (measured).

use std::time::Duration;

use concord_integration::{init_tracing, TestAgent};
use reqwest::Method;
use serde_json::json;
use tokio::time::Instant;

use super::call;

const WEB_URI: &str =
    "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/web";

async fn authorized(agent: &TestAgent) -> (bool, String) {
    let (status, body) = call(
        agent,
        Method::POST,
        "/v1/agent/connect/authorize",
        Some(json!({"Target": "db", "ClientCertURI": WEB_URI, "ClientCertSerial": "01:02"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (
        body["Authorized"].as_bool().unwrap(),
        body["Reason"].as_str().unwrap().to_string(),
    )
}

/// Time from the write's acknowledgement until authorize reflects `want`.
async fn time_until(agent: &TestAgent, want: bool) -> Duration {
    let start = Instant::now();
    loop {
        if authorized(agent).await.0 == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "authorize never saw the change"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_visible_within_a_second() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();

    tracing::info!("no intention: the default (allow, ACLs disabled)");
    let (ok, reason) = authorized(&agent).await;
    assert!(ok);
    assert_eq!(reason, "ACLs disabled, access is allowed by default");

    tracing::info!("a deny lands in the cache within a second");
    let (status, _) = call(
        &agent,
        Method::PUT,
        "/v1/connect/intentions/exact?source=web&destination=db",
        Some(json!({"Action": "deny"})),
    )
    .await;
    assert_eq!(status, 200);
    let took = time_until(&agent, false).await;
    tracing::info!(?took, "deny visible");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let (_, reason) = authorized(&agent).await;
    assert_eq!(reason, "Matched L4 intention: web => db (deny)");

    tracing::info!("and back to allow through a config entry write");
    let (status, _) = call(&agent, Method::PUT, "/v1/config", Some(json!({"Kind": "service-intentions", "Name": "db", "Sources": [{"Name": "web", "Action": "allow"}]}))).await;
    assert_eq!(status, 200);
    let took = time_until(&agent, true).await;
    tracing::info!(?took, "allow visible");
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_by_default_from_config() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.json");
    std::fs::write(&file, r#"{"default_intention_policy": "deny"}"#).unwrap();
    let flag = format!("-config-file={}", file.display());
    let agent = TestAgent::start(&["-dev", &flag]).await.unwrap();

    tracing::info!("/v1/agent/self reports deny, and authorize denies without intentions");
    let (_, _, me) = agent.get_json("/v1/agent/self").await.unwrap();
    assert_eq!(me["DebugConfig"]["ACLDefaultPolicy"], "deny");
    assert_eq!(me["DebugConfig"]["DefaultIntentionPolicy"], "deny");
    assert_eq!(
        me["DebugConfig"]["ACLResolverSettings"]["ACLDefaultPolicy"],
        "deny"
    );
    let (ok, reason) = authorized(&agent).await;
    assert!(!ok);
    assert_eq!(reason, "Default behavior configured by ACLs");
    let (_, c) = super::get(
        &agent,
        "/v1/connect/intentions/check?source=web&destination=db",
    )
    .await;
    assert_eq!(c, json!({"Allowed": false}));
}
