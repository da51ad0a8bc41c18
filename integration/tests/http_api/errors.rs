use concord_integration::{init_tracing, TestAgent};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_rejected_and_changes_nothing() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    agent
        .put("/v1/agent/service/register", r#"{"Name":"keep","Port":1}"#)
        .await
        .unwrap();

    let cases: &[(&str, &str, &str)] = &[
        (
            "/v1/agent/service/register",
            "{not json",
            "Request decode failed",
        ),
        (
            "/v1/agent/service/register",
            r#"{"Port":80}"#,
            "Missing service name",
        ),
        (
            "/v1/agent/service/register",
            r#"{"Name":"x","Check":{"TTL":"soon"}}"#,
            "Request decode failed",
        ),
        (
            "/v1/agent/service/register",
            r#"{"Name":"keep","Check":{"HTTP":"http://x","TTL":"5s"}}"#,
            "Invalid check",
        ),
        (
            "/v1/agent/check/register",
            r#"{"TTL":"5s"}"#,
            "Missing check name",
        ),
        (
            "/v1/agent/check/update/service:keep",
            r#"{"Status":"meh"}"#,
            "Invalid check status",
        ),
        ("/v1/kv/a?cas=1&acquire=x", "v", "Conflicting flags"),
        (
            "/v1/session/create",
            r#"{"Behavior":"explode"}"#,
            "Invalid Behavior",
        ),
        (
            "/v1/catalog/register",
            r#"{"Address":"1.2.3.4"}"#,
            "Must provide node",
        ),
    ];
    for (path, body, want) in cases {
        let (code, text) = agent.put(path, body.to_string()).await.unwrap();
        assert!(
            (400..500).contains(&code) && text.contains(want),
            "{path} {body}: got {code} {text:?}, want 4xx containing {want:?}"
        );
    }

    tracing::info!("a non-numeric ?flags is Go's strconv error, a 500 as in Consul");
    let (code, text) = agent.put("/v1/kv/a?flags=abc", "v").await.unwrap();
    assert_eq!(
        (code, text.as_str()),
        (500, "strconv.ParseUint: parsing \"abc\": invalid syntax")
    );

    tracing::info!("the service registered before is untouched");
    let (_, _, svcs) = agent.get_json("/v1/agent/services").await.unwrap();
    assert_eq!(svcs["keep"]["Port"], 1);
    assert!(svcs.get("x").is_none());

    tracing::info!("query parameter errors");
    for (path, want) in [
        ("/v1/kv/a?index=abc", "Invalid index"),
        ("/v1/kv/a?index=1&wait=forever", "Invalid wait time"),
        (
            "/v1/catalog/nodes?stale&consistent",
            "Cannot specify ?stale with ?consistent",
        ),
        ("/v1/kv/", "Missing key name"),
    ] {
        let r = agent.client.get(agent.url(path)).send().await.unwrap();
        let code = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(code, 400, "{path}: {text}");
        assert!(text.contains(want), "{path}: {text}");
    }

    tracing::info!("unknown DC fails like Consul; unknown routes 404; wrong method 405");
    let r = agent
        .client
        .get(agent.url("/v1/catalog/nodes?dc=mars"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    assert_eq!(r.text().await.unwrap(), "No path to datacenter");
    let r = agent
        .client
        .get(agent.url("/v1/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = agent
        .client
        .get(agent.url("/v1/agent/service/register"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.text().await.unwrap(), "method GET not allowed");

    tracing::info!("unknown IDs are 404 with Consul's text");
    let (code, text) = agent
        .put("/v1/agent/service/deregister/ghost", "")
        .await
        .unwrap();
    assert_eq!(code, 404);
    assert!(text.starts_with("Unknown service ID \"ghost\""), "{text}");
    let (code, _) = agent.put("/v1/agent/check/pass/ghost", "").await.unwrap();
    assert_eq!(code, 404);

    tracing::info!("oversized KV values are 413");
    let big = vec![b'x'; 600 * 1024];
    let (code, _) = agent.put("/v1/kv/big", big).await.unwrap();
    assert_eq!(code, 413);

    tracing::info!("garbage of every shape never kills the agent");
    for body in [
        "",
        "null",
        "[]",
        "123",
        "\"s\"",
        "{\"Name\":{}}",
        "\u{0}\u{1}",
    ] {
        for path in [
            "/v1/agent/service/register",
            "/v1/catalog/register",
            "/v1/txn",
            "/v1/session/create",
        ] {
            let (code, _) = agent.put(path, body.to_string()).await.unwrap();
            assert!(code < 500, "{path} {body:?}: {code}");
        }
    }
    let (code, _, v) = agent.get_json("/v1/agent/self").await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(v["Config"]["Datacenter"], json!("dc1"));
}
