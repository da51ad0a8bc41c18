//! CRUD through the three API shapes (config entry, `/exact`, legacy by ID) on one state.

use concord_integration::{init_tracing, TestAgent};
use reqwest::Method;
use serde_json::json;

use super::{call, get};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shapes_read_and_write_the_same_state() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();

    tracing::info!("legacy create gets an ID, stored as a source of the db entry");
    let (status, body) = call(
        &agent,
        Method::POST,
        "/v1/connect/intentions",
        Some(json!({"SourceName": "web", "DestinationName": "db", "SourceType": "consul", "Action": "allow", "Meta": {"team": "a"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["ID"].as_str().unwrap().to_string();
    let (status, entry) = get(&agent, "/v1/config/service-intentions/db").await;
    assert_eq!(status, 200);
    assert_eq!(entry["Kind"], "service-intentions");
    assert_eq!(entry["Sources"][0]["Name"], "web");
    assert_eq!(entry["Sources"][0]["LegacyID"], id.as_str());
    assert_eq!(entry["Sources"][0]["Precedence"], 9);

    tracing::info!("exact and by-ID reads agree");
    let (_, by_id) = get(&agent, &format!("/v1/connect/intentions/{id}")).await;
    let (status, exact) = get(
        &agent,
        "/v1/connect/intentions/exact?source=web&destination=db",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(by_id, exact);
    assert_eq!(exact["Action"], "allow");
    assert_eq!(exact["SourceNS"], "default");
    assert_eq!(exact["SourceType"], "consul");
    assert_eq!(exact["Meta"]["team"], "a");

    tracing::info!("a second legacy create for the same pair is refused");
    let (status, _) = call(
        &agent,
        Method::POST,
        "/v1/connect/intentions",
        Some(json!({"SourceName": "web", "DestinationName": "db", "Action": "deny"})),
    )
    .await;
    assert_eq!(status, 400);

    tracing::info!(
        "exact PUT updates it in place (ID kept), a wildcard deny is added by config entry"
    );
    let (status, body) = call(
        &agent,
        Method::PUT,
        "/v1/connect/intentions/exact?source=web&destination=db",
        Some(json!({"Action": "deny"})),
    )
    .await;
    assert_eq!((status, body), (200, json!(true)));
    let (_, by_id) = get(&agent, &format!("/v1/connect/intentions/{id}")).await;
    assert_eq!(by_id["Action"], "deny");
    let (status, body) = call(
        &agent,
        Method::PUT,
        "/v1/config",
        Some(json!({"Kind": "service-intentions", "Name": "*", "Sources": [{"Name": "*", "Action": "deny"}]})),
    )
    .await;
    assert_eq!((status, body), (200, json!(true)));
    let (_, list) = get(&agent, "/v1/connect/intentions").await;
    let pairs: Vec<(String, String, u64)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["SourceName"].as_str().unwrap().into(),
                i["DestinationName"].as_str().unwrap().into(),
                i["Precedence"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        vec![("web".into(), "db".into(), 9), ("*".into(), "*".into(), 5)]
    );

    tracing::info!("match and check");
    let (_, m) = get(
        &agent,
        "/v1/connect/intentions/match?by=destination&name=db",
    )
    .await;
    assert_eq!(m["db"].as_array().unwrap().len(), 2);
    let (_, c) = get(
        &agent,
        "/v1/connect/intentions/check?source=api&destination=cache",
    )
    .await;
    assert_eq!(c, json!({"Allowed": false}));
    call(
        &agent,
        Method::PUT,
        "/v1/connect/intentions/exact?source=api&destination=cache",
        Some(json!({"Action": "allow"})),
    )
    .await;
    let (_, c) = get(
        &agent,
        "/v1/connect/intentions/check?source=api&destination=cache",
    )
    .await;
    assert_eq!(c, json!({"Allowed": true}));

    tracing::info!("legacy PUT by ID, then delete by ID removes the source and the empty entry");
    let (status, _) = call(&agent, Method::PUT, &format!("/v1/connect/intentions/{id}"), Some(json!({"SourceName": "web", "DestinationName": "db", "Action": "allow", "Description": "ok"}))).await;
    assert_eq!(status, 200);
    let (_, exact) = get(
        &agent,
        "/v1/connect/intentions/exact?source=web&destination=db",
    )
    .await;
    assert_eq!(
        (exact["Action"].clone(), exact["Description"].clone()),
        (json!("allow"), json!("ok"))
    );
    let (status, _) = call(
        &agent,
        Method::DELETE,
        &format!("/v1/connect/intentions/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = get(
        &agent,
        "/v1/connect/intentions/exact?source=web&destination=db",
    )
    .await;
    assert_eq!((status, body), (404, json!("Intention not found")));
    let (status, _) = get(&agent, "/v1/config/service-intentions/db").await;
    assert_eq!(status, 404);

    tracing::info!("exact delete");
    let (status, _) = call(
        &agent,
        Method::DELETE,
        "/v1/connect/intentions/exact?source=api&destination=cache",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, list) = get(&agent, "/v1/connect/intentions").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_changes_nothing() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    let (_, before) = get(&agent, "/v1/connect/intentions").await;
    let (_, _, index_before) = {
        let (s, i, v) = agent
            .get_json("/v1/config/service-intentions")
            .await
            .unwrap();
        (s, v, i)
    };

    let cases: Vec<(Method, &str, Option<serde_json::Value>, &str)> = vec![
        (
            Method::PUT,
            "/v1/connect/intentions/exact?source=web&destination=db",
            Some(json!({"Action": "maybe"})),
            "Action must be set to 'allow' or 'deny'",
        ),
        (
            Method::POST,
            "/v1/connect/intentions",
            Some(json!({"SourceName": "web", "DestinationName": "db", "Action": "perhaps"})),
            "Action must be set to 'allow' or 'deny'",
        ),
        (
            Method::PUT,
            "/v1/connect/intentions/exact?destination=db",
            Some(json!({"Action": "allow"})),
            "required query parameter 'source' not set",
        ),
        (
            Method::GET,
            "/v1/connect/intentions/match?by=sideways&name=db",
            None,
            "'by' parameter must be one of 'source' or 'destination'",
        ),
        (
            Method::PUT,
            "/v1/config",
            Some(json!({"Kind": "service-defaults", "Protocol": "http"})),
            "Name is required",
        ),
        (
            Method::PUT,
            "/v1/config",
            Some(json!({"Kind": "service-nonsense", "Name": "db"})),
            "invalid config entry kind: service-nonsense",
        ),
        (
            Method::GET,
            "/v1/config/service-nonsense",
            None,
            "invalid config entry kind: service-nonsense",
        ),
        (
            Method::PUT,
            "/v1/config",
            Some(json!({"Kind": "proxy-defaults", "Name": "local"})),
            "only \"global\" is supported",
        ),
        (
            Method::PUT,
            "/v1/config",
            Some(
                json!({"Kind": "service-splitter", "Name": "db", "Splits": [{"Weight": 60}, {"Weight": 30}]}),
            ),
            "must be 100",
        ),
        (
            Method::POST,
            "/v1/agent/connect/authorize",
            Some(json!({"Target": "db", "ClientCertURI": "spiffe://bad"})),
            "ClientCertURI not a valid Connect identifier",
        ),
        (
            Method::POST,
            "/v1/agent/connect/authorize",
            Some(
                json!({"Target": "db", "ClientCertURI": "http://x.consul/ns/default/dc/dc1/svc/web"}),
            ),
            "ClientCertURI not a valid Connect identifier",
        ),
        // L7 permissions for a destination whose protocol is tcp (the default).
        (
            Method::PUT,
            "/v1/connect/intentions/exact?source=web&destination=db",
            Some(json!({"Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]})),
            "which is incompatible with L7 intentions permissions",
        ),
    ];
    for (method, path, body, want) in cases {
        let (status, text) = call(&agent, method.clone(), path, body).await;
        assert_eq!(status, 400, "{method} {path}: {text}");
        assert!(
            text.as_str().unwrap_or("").contains(want),
            "{method} {path}: {text}, want {want}"
        );
    }
    let (_, after) = get(&agent, "/v1/connect/intentions").await;
    assert_eq!(before, after);
    let (_, index_after, _) = agent
        .get_json("/v1/config/service-intentions")
        .await
        .unwrap();
    assert_eq!(index_before, index_after, "nothing was written");

    tracing::info!("once db speaks http, the same L7 intention is accepted");
    let (status, _) = call(
        &agent,
        Method::PUT,
        "/v1/config",
        Some(json!({"Kind": "service-defaults", "Name": "db", "Protocol": "http"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &agent,
        Method::PUT,
        "/v1/connect/intentions/exact?source=web&destination=db",
        Some(json!({"Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]})),
    )
    .await;
    assert_eq!((status, body), (200, json!(true)));
    tracing::info!("an L7 intention counts as deny for /check");
    let (_, c) = get(
        &agent,
        "/v1/connect/intentions/check?source=web&destination=db",
    )
    .await;
    assert_eq!(c, json!({"Allowed": false}));
}
