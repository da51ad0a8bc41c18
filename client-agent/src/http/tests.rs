//! Handler tests through `Router::oneshot`. Most run with the server side unreachable (a
//! closed port), which is exactly what agent-local endpoints must tolerate: their answers come
//! from local state, and syncing is best effort. A few run over the in-memory fake servers to
//! check what server-backed endpoints send and render; `integration/` covers them end to end.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt as _;

use crate::agent::AgentCore;
use crate::catalog_cache::CatalogSnapshot;
use crate::config::Config;
use crate::rpc_client::fake::FakeServers;
use crate::rpc_client::{ServerClient, ServerRpc};

pub(super) fn app() -> (Router, Arc<AgentCore>) {
    // Port 1 on loopback refuses connections at once.
    let servers = vec!["127.0.0.1:1".parse().unwrap()];
    let rpc = ServerClient::new(servers).unwrap();
    app_over(Arc::new(rpc))
}

fn app_over(rpc: Arc<dyn ServerRpc>) -> (Router, Arc<AgentCore>) {
    let mut config = Config::new("test-node", Vec::new());
    config.node_id = "00000000-0000-0000-0000-000000000001".into();
    let (_tx, view) = tokio::sync::watch::channel(Arc::new(CatalogSnapshot::default()));
    let (core, results) = AgentCore::new(config, rpc, view, None);
    tokio::spawn(core.clone().apply_check_results(results));
    (super::router(core.clone()), core)
}

pub(super) async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    body: &str,
) -> (StatusCode, String) {
    let (status, _, body) = call_with_headers(app, method, uri, body).await;
    (status, body)
}

pub(super) async fn call_with_headers(
    app: &Router,
    method: Method,
    uri: &str,
    body: &str,
) -> (StatusCode, HeaderMap, String) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

#[tokio::test]
async fn register_list_and_deregister_services() {
    let (app, _) = app();
    let (code, body) = call(
        &app,
        Method::PUT,
        "/v1/agent/service/register",
        r#"{"name":"web","ID":"web-1","port":80,"tags":["a"],"check":{"ttl":"30s"}}"#,
    )
    .await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, ""));
    let (code, body) = call(&app, Method::GET, "/v1/agent/services", "").await;
    assert_eq!(code, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["web-1"]["Service"], "web");
    assert_eq!(v["web-1"]["Datacenter"], "dc1");
    let (_, body) = call(&app, Method::GET, "/v1/agent/service/web-1", "").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["ContentHash"].as_str().is_some_and(|h| h.len() == 16));
    let (code, _) = call(&app, Method::PUT, "/v1/agent/service/deregister/web-1", "").await;
    assert_eq!(code, StatusCode::OK);
    let (code, body) = call(&app, Method::PUT, "/v1/agent/service/deregister/web-1", "").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(body.starts_with("Unknown service ID \"web-1\""));
}

#[tokio::test]
async fn ttl_updates_drive_local_health() {
    let (app, _) = app();
    call(
        &app,
        Method::PUT,
        "/v1/agent/service/register",
        r#"{"Name":"api","Check":{"TTL":"1h"}}"#,
    )
    .await;
    let (code, body) = call(
        &app,
        Method::GET,
        "/v1/agent/health/service/name/api?format=text",
        "",
    )
    .await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "critical")
    );
    let (code, _) = call(
        &app,
        Method::PUT,
        "/v1/agent/check/pass/service:api?note=fine",
        "",
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (code, body) = call(&app, Method::GET, "/v1/agent/health/service/id/api", "").await;
    assert_eq!(code, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["AggregatedStatus"], "passing");
    assert_eq!(v["Checks"][0]["Output"], "fine");
    let (code, _) = call(
        &app,
        Method::PUT,
        "/v1/agent/check/update/service:api",
        r#"{"Status":"warning","Output":"slow"}"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = call(&app, Method::GET, "/v1/agent/health/service/name/api", "").await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
    let (code, body) = call(&app, Method::GET, "/v1/agent/health/service/name/nope", "").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn check_register_validates() {
    let (app, core) = app();
    let cases = [
        (
            r#"{"TTL":"10s"}"#,
            StatusCode::BAD_REQUEST,
            "Missing check name",
        ),
        (
            r#"{"Name":"x","TTL":"10s","ServiceID":"ghost"}"#,
            StatusCode::NOT_FOUND,
            "ServiceID \"ghost\" does not exist",
        ),
        (r#"{"Name":"x"}"#, StatusCode::BAD_REQUEST, "Invalid check"),
        (
            r#"{"Name":"x","TTL":"oops"}"#,
            StatusCode::BAD_REQUEST,
            "Request decode failed",
        ),
    ];
    for (body, want_code, want_text) in cases {
        let (code, text) = call(&app, Method::PUT, "/v1/agent/check/register", body).await;
        assert_eq!(code, want_code, "{body}: {text}");
        assert!(text.contains(want_text), "{body}: {text}");
    }
    assert!(
        core.local.checks().is_empty(),
        "rejected checks must not be stored"
    );
    let (code, _) = call(
        &app,
        Method::PUT,
        "/v1/agent/check/register",
        r#"{"Name":"mem","TTL":"10s"}"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = call(&app, Method::PUT, "/v1/agent/check/fail/mem", "").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(core.local.check("mem").unwrap().status.as_str(), "critical");
    let (code, _) = call(&app, Method::PUT, "/v1/agent/check/deregister/mem", "").await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = call(&app, Method::PUT, "/v1/agent/check/deregister/mem", "").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn maintenance_requires_enable() {
    let (app, core) = app();
    call(
        &app,
        Method::PUT,
        "/v1/agent/service/register",
        r#"{"Name":"db"}"#,
    )
    .await;
    let (code, text) = call(&app, Method::PUT, "/v1/agent/service/maintenance/db", "").await;
    assert_eq!(
        (code, text.as_str()),
        (StatusCode::BAD_REQUEST, "Missing value for enable")
    );
    let (code, _) = call(
        &app,
        Method::PUT,
        "/v1/agent/service/maintenance/db?enable=true",
        "",
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let check = core.local.check("_service_maintenance:db").unwrap();
    assert_eq!(check.service_id, "db");
    let (code, text) = call(
        &app,
        Method::GET,
        "/v1/agent/health/service/id/db?format=text",
        "",
    )
    .await;
    assert_eq!(
        (code, text.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "maintenance")
    );
}

#[tokio::test]
async fn routing_errors_and_parameters() {
    let (app, _) = app();
    let (code, body) = call(&app, Method::GET, "/v1/agent/service/register", "").await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "method GET not allowed")
    );
    let (code, body) = call(&app, Method::GET, "/v1/does/not/exist", "").await;
    assert_eq!((code, body.as_str()), (StatusCode::NOT_FOUND, ""));
    let (code, body) = call(&app, Method::GET, "/v1/catalog/nodes?dc=elsewhere", "").await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "No path to datacenter")
    );
    for (uri, want) in [
        ("/v1/catalog/nodes?index=x", "Invalid index"),
        ("/v1/catalog/nodes?wait=x", "Invalid wait time"),
        ("/v1/health/state/sad", "Invalid check state"),
        (
            "/v1/catalog/nodes?node-meta=novalue",
            "Invalid node-meta filter",
        ),
        (
            "/v1/catalog/nodes?filter=Node%20%3D%20a",
            "Failed to create boolean expression evaluator",
        ),
    ] {
        let (code, body) = call(&app, Method::GET, uri, "").await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{uri}");
        assert!(body.contains(want), "{uri}: {body}");
    }
    let (code, body) = call(&app, Method::PUT, "/v1/kv/a?cas=1&release=s", "x").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.starts_with("Conflicting flags"), "{body}");
    let (code, _) = call(&app, Method::PUT, "/v1/kv/a", &"x".repeat(600 * 1024)).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn server_unreachable_is_a_500_with_text() {
    let (app, _) = app();
    let (code, body) = call(&app, Method::GET, "/v1/catalog/services", "").await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("rpc error"), "{body}");
}

#[tokio::test]
async fn self_and_metrics() {
    let (app, _) = app();
    let (_, body) = call(&app, Method::GET, "/v1/agent/self", "").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Config"]["NodeName"], "test-node");
    assert_eq!(v["Config"]["Version"], concord_api::CONSUL_COMPAT_VERSION);
    let (code, body) = call(&app, Method::GET, "/v1/agent/metrics?format=prometheus", "").await;
    assert_eq!(code, StatusCode::OK);
    assert!(body.contains("concord_http_requests_total"), "{body}");
}

#[tokio::test]
async fn consul_compat_details() {
    let (app, _) = app();
    let (code, _) = call(
        &app,
        Method::PUT,
        "/v1/agent/service/register",
        r#"{"name":"foo"}"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (_, body) = call(&app, Method::GET, "/v1/agent/services", "").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let keys: Vec<&str> = v["foo"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "Address",
            "Datacenter",
            "EnableTagOverride",
            "ID",
            "Meta",
            "Port",
            "Service",
            "Tags",
            "Weights"
        ],
        "empty optional fields are omitted, as Consul's AgentService does"
    );
    assert_eq!(v["foo"]["TaggedAddresses"], Value::Null);
    let (code, body) = call(
        &app,
        Method::PUT,
        "/v1/agent/service/register",
        r#"{"name":"foo","tagged_addresses":{"lan":{"address":"10.0.0.1","port":80}}}"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (_, body) = call(&app, Method::GET, "/v1/agent/service/foo", "").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["TaggedAddresses"]["lan"]["Address"], "10.0.0.1",
        "nested keys decoded case-insensitively"
    );

    for enable in ["True", "1", "t"] {
        let uri = format!("/v1/agent/maintenance?enable={enable}");
        let (code, _) = call(&app, Method::PUT, &uri, "").await;
        assert_eq!(code, StatusCode::OK, "enable={enable}");
    }
    let (code, _) = call(&app, Method::PUT, "/v1/agent/maintenance?enable=maybe", "").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);

    let (code, body) = call(
        &app,
        Method::PUT,
        "/v1/agent/token/default",
        r#"{"Token":"x"}"#,
    )
    .await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::UNAUTHORIZED, "ACL support disabled")
    );
    let (code, _) = call(&app, Method::GET, "/v1/acl/tokens", "").await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    // Every ACL endpoint, the real ones and those Concord lacks, while ACLs are off.
    for (method, path) in [
        (Method::PUT, "/v1/acl/bootstrap"),
        (Method::GET, "/v1/acl/token/self"),
        (Method::PUT, "/v1/acl/policy"),
        (Method::GET, "/v1/acl/templated-policies"),
        (Method::POST, "/v1/acl/login"),
    ] {
        let (code, body) = call(&app, method, path, "").await;
        assert_eq!(
            (code, body.as_str()),
            (StatusCode::UNAUTHORIZED, "ACL support disabled"),
            "{path}"
        );
    }

    let (code, body) = call(
        &app,
        Method::PUT,
        "/v1/catalog/register",
        r#"{"Node":"n","Address":"1.2.3.4","Datacenter":"dc9"}"#,
    )
    .await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "No path to datacenter")
    );

    let (code, body) = call(&app, Method::GET, "/v1/agent/members?wan=1", "").await;
    assert_eq!(
        code,
        StatusCode::INTERNAL_SERVER_ERROR,
        "this test agent is no server"
    );
    assert!(body.contains("not a server"), "{body}");
    let (code, body) = call(&app, Method::GET, "/", "").await;
    assert_eq!(code, StatusCode::OK);
    assert!(body.contains("/v1/"));
}

#[tokio::test]
async fn registrations_reach_the_servers_and_reads_carry_consul_headers() {
    let fake = Arc::new(FakeServers::default());
    let (app, _) = app_over(fake.clone());
    tracing::info!("an agent registration is synced before the handler answers");
    let (code, _) = call(
        &app,
        Method::PUT,
        "/v1/agent/service/register",
        r#"{"Name":"web","Check":{"TTL":"1h"}}"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(fake.service_ids("test-node"), ["web"]);

    tracing::info!("a catalog read renders the node with the X-Consul-* headers");
    let (code, headers, body) =
        call_with_headers(&app, Method::GET, "/v1/catalog/node/test-node", "").await;
    assert_eq!(code, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Services"]["web"]["Service"], "web");
    assert_eq!(headers["x-consul-knownleader"], "true");
    assert_eq!(headers["x-consul-lastcontact"], "0");
    assert!(
        headers["x-consul-index"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );

    tracing::info!("?filter applies to the node's services; ?pretty indents");
    let uri = "/v1/catalog/node/test-node?pretty&filter=Service%20%3D%3D%20%22db%22";
    let (_, body) = call(&app, Method::GET, uri, "").await;
    assert!(body.contains('\n'), "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Services"], serde_json::json!({}));
    let (_, body) = call(&app, Method::GET, "/v1/health/node/test-node", "").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["ServiceID"], "web");
}

#[tokio::test]
async fn kv_round_trip_and_a_miss_keeps_the_index() {
    let fake = Arc::new(FakeServers::default());
    let (app, _) = app_over(fake.clone());
    let (code, body) = call(&app, Method::PUT, "/v1/kv/greeting", "hello").await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, "true"));
    let (_, body) = call(&app, Method::GET, "/v1/kv/greeting?raw", "").await;
    assert_eq!(body, "hello");
    let (code, headers, body) = call_with_headers(&app, Method::GET, "/v1/kv/missing", "").await;
    assert_eq!((code, body.as_str()), (StatusCode::NOT_FOUND, ""));
    assert_eq!(headers["x-consul-index"], "1");
    let (_, body) = call(&app, Method::GET, "/v1/status/leader", "").await;
    assert_eq!(body, r#""127.0.0.1:8300""#);
    tracing::info!("a reply of the wrong kind from a server is a 500, not a panic");
    let (code, body) = call(&app, Method::GET, "/v1/session/list", "").await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("fake: no read"), "{body}");
}

/// `/v1/agent/connect/authorize` answers from the intentions cache alone: the servers here
/// are unreachable, so any round trip would fail the request.
#[tokio::test]
async fn authorize_answers_from_the_cache_without_servers() {
    use concord_api::intention::{precedence, Intention};

    let (app, core) = app();
    let deny = Intention {
        source_name: "web".into(),
        destination_name: "db".into(),
        action: "deny".into(),
        precedence: precedence("web", "db"),
        ..Intention::default()
    };
    core.intentions
        .sender()
        .send_replace(Arc::new(crate::intentions_cache::IntentionsSnapshot {
            index: 5,
            intentions: vec![deny],
        }));
    let uri = |svc: &str| {
        format!(
            r#"{{"Target": "db", "ClientCertURI": "spiffe://td.consul/ns/default/dc/dc1/svc/{svc}", "ClientCertSerial": "0a"}}"#
        )
    };
    let (status, body) = call(
        &app,
        Method::POST,
        "/v1/agent/connect/authorize",
        &uri("web"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Authorized"], false);
    assert_eq!(v["Reason"], "Matched L4 intention: web => db (deny)");
    let (_, body) = call(
        &app,
        Method::POST,
        "/v1/agent/connect/authorize",
        &uri("api"),
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Authorized"], true);

    for bad in [
        r#"{"Target": "db", "ClientCertURI": "spiffe://td.consul/ns/default/svc/web"}"#,
        r#"{"ClientCertURI": "spiffe://td.consul/ns/default/dc/dc1/svc/web"}"#,
        r#"not json"#,
    ] {
        let (status, body) = call(&app, Method::POST, "/v1/agent/connect/authorize", bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

#[tokio::test]
async fn snapshot_save_is_gzip_with_the_index_and_restore_refuses_a_bad_archive() {
    let fake = Arc::new(FakeServers::default());
    let (app, _) = app_over(fake.clone());
    tracing::info!("GET /v1/snapshot answers the archive bytes as application/x-gzip");
    let (code, headers, body) = call_with_headers(&app, Method::GET, "/v1/snapshot", "").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/x-gzip");
    assert_eq!(headers["x-consul-index"], "1");
    assert_eq!(body.as_bytes(), crate::rpc_client::fake::FAKE_ARCHIVE);
    tracing::info!("PUT /v1/snapshot hands the body to the servers; a refusal is Consul's 500");
    let fake_archive = String::from_utf8(crate::rpc_client::fake::FAKE_ARCHIVE.to_vec()).unwrap();
    let (code, body) = call(&app, Method::PUT, "/v1/snapshot", &fake_archive).await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, ""));
    let (code, body) = call(&app, Method::PUT, "/v1/snapshot", "garbage").await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("corrupt or truncated"), "{body}");
    tracing::info!("other methods are refused in Consul's words");
    let (code, body) = call(&app, Method::POST, "/v1/snapshot", "").await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "method POST not allowed")
    );
}

#[tokio::test]
async fn cached_reads_say_miss_then_hit_with_an_age() {
    let fake = Arc::new(FakeServers::default());
    fake.register(concord_api::catalog::RegisterRequest {
        node: "n1".into(),
        address: "10.0.0.1".into(),
        service: Some(concord_api::catalog::NodeService {
            id: "web".into(),
            service: "web".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let (app, _) = app_over(fake.clone());
    let uri = "/v1/catalog/services?cached";
    let (status, headers, body) = call_with_headers(&app, Method::GET, uri, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["x-cache"], "MISS");
    assert_eq!(headers["age"], "0");
    assert!(headers.contains_key("x-consul-index"));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["web"],
        serde_json::json!([])
    );
    let (_, headers, again) = call_with_headers(&app, Method::GET, uri, "").await;
    assert_eq!(
        (&headers["x-cache"], again),
        (&"HIT".parse().unwrap(), body)
    );

    tracing::info!("without ?cached there are no cache headers");
    let (_, headers, _) = call_with_headers(&app, Method::GET, "/v1/catalog/services", "").await;
    assert!(!headers.contains_key("x-cache"));

    let (status, body) = call(
        &app,
        Method::GET,
        "/v1/catalog/services?cached&max-age=soon",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("max-age"), "{body}");
}

#[tokio::test]
async fn a_sidecar_service_registers_its_proxy_and_follows_its_parent() {
    let (app, _) = app();
    let body = r#"{"Name":"web","Port":8080,"Check":{"TTL":"1h"},"Connect":{"SidecarService":
        {"Proxy":{"Upstreams":[{"DestinationName":"db","LocalBindPort":9191}]}}}}"#;
    let (code, body) = call(&app, Method::PUT, "/v1/agent/service/register", body).await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, ""));

    let (_, body) = call(&app, Method::GET, "/v1/agent/service/web-sidecar-proxy", "").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Kind"], "connect-proxy");
    assert_eq!(v["Service"], "web-sidecar-proxy");
    assert_eq!(v["Port"], 21000);
    assert_eq!(v["Proxy"]["DestinationServiceName"], "web");
    assert_eq!(v["Proxy"]["DestinationServiceID"], "web");
    assert_eq!(v["Proxy"]["LocalServiceAddress"], "127.0.0.1");
    assert_eq!(v["Proxy"]["LocalServicePort"], 8080);
    assert_eq!(v["Proxy"]["Upstreams"][0]["DestinationName"], "db");
    assert_eq!(v["Proxy"]["Upstreams"][0]["LocalBindPort"], 9191);
    let (_, body) = call(&app, Method::GET, "/v1/agent/service/web", "").await;
    let parent: Value = serde_json::from_str(&body).unwrap();
    assert!(
        parent.get("Connect").is_none(),
        "the nested definition is not kept: {parent}"
    );

    // The alias check mirrors web's TTL check: critical until web reports in.
    let alias = "/v1/agent/health/service/id/web-sidecar-proxy?format=text";
    let (code, body) = call(&app, Method::GET, alias, "").await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "critical")
    );
    let (_, checks) = call(&app, Method::GET, "/v1/agent/checks", "").await;
    let checks: Value = serde_json::from_str(&checks).unwrap();
    assert_eq!(checks["service:web-sidecar-proxy:2"]["Type"], "alias");
    assert_eq!(
        checks["service:web-sidecar-proxy:1"]["Name"],
        "Connect Sidecar Listening"
    );
    call(&app, Method::PUT, "/v1/agent/check/pass/service:web", "").await;
    let (_, checks) = call(&app, Method::GET, "/v1/agent/checks", "").await;
    let checks: Value = serde_json::from_str(&checks).unwrap();
    assert_eq!(checks["service:web-sidecar-proxy:2"]["Status"], "passing");
    assert_eq!(
        checks["service:web-sidecar-proxy:2"]["Output"],
        "All checks passing."
    );

    // A second sidecar gets the next free port; re-registering keeps the first one's.
    let api = r#"{"Name":"api","Port":9000,"Connect":{"SidecarService":{}}}"#;
    call(&app, Method::PUT, "/v1/agent/service/register", api).await;
    let (_, body) = call(&app, Method::GET, "/v1/agent/service/api-sidecar-proxy", "").await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["Port"], 21001);

    // Deregistering the parent takes its sidecar along.
    let (code, _) = call(&app, Method::PUT, "/v1/agent/service/deregister/web", "").await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = call(&app, Method::GET, "/v1/agent/service/web-sidecar-proxy", "").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = call(&app, Method::GET, "/v1/agent/service/api-sidecar-proxy", "").await;
    assert_eq!(code, StatusCode::OK);

    let bad = r#"{"Name":"x","Connect":{"SidecarService":{"Connect":{"SidecarService":{}}}}}"#;
    let (code, body) = call(&app, Method::PUT, "/v1/agent/service/register", bad).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains("nested SidecarService"), "{body}");
}

/// Consul's exact answers where clients parse them: a wrong method on a known route is 405
/// with `Allow`; an unclean path is Go's 301 to the cleaned path.
#[tokio::test]
async fn wrong_method_and_unclean_paths_answer_as_consul() {
    let (app, _) = app();
    let (code, headers, body) =
        call_with_headers(&app, Method::GET, "/v1/agent/service/deregister/web-1", "").await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "method GET not allowed")
    );
    assert_eq!(headers["allow"], "PUT");

    let (code, headers, body) =
        call_with_headers(&app, Method::GET, "/v1/kv//app/config?raw", "").await;
    assert_eq!(code, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(headers["location"], "/v1/kv/app/config?raw");
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(
        body,
        "<a href=\"/v1/kv/app/config?raw\">Moved Permanently</a>.\n\n"
    );
    let (code, headers, body) = call_with_headers(&app, Method::PUT, "/v1/kv/a//b/", "x").await;
    assert_eq!((code, body.as_str()), (StatusCode::MOVED_PERMANENTLY, ""));
    assert_eq!(headers["location"], "/v1/kv/a/b/");
    assert!(headers.get("content-type").is_none());

    let (code, body) = call(&app, Method::GET, "/v1/agent/monitor?loglevel=loud", "").await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::BAD_REQUEST, "Unknown log level: loud")
    );
}

#[test]
fn paths_clean_as_go_cleans_them() {
    for (path, clean) in [
        ("/v1/kv//a", "/v1/kv/a"),
        ("//v1/kv/a/", "/v1/kv/a/"),
        ("/v1/kv/a/./b/../c", "/v1/kv/a/c"),
        ("/v1/../..", "/"),
        ("/", "/"),
        ("/v1/kv/a", "/v1/kv/a"),
    ] {
        assert_eq!(super::clean_path(path), clean, "{path}");
    }
}

#[tokio::test]
async fn configured_response_headers_are_on_every_answer() {
    let servers = vec!["127.0.0.1:1".parse().unwrap()];
    let rpc = Arc::new(ServerClient::new(servers).unwrap());
    let mut config = Config::new("test-node", Vec::new());
    config
        .response_headers
        .insert("Access-Control-Allow-Origin".into(), "*".into());
    let (_tx, view) = tokio::sync::watch::channel(Arc::new(CatalogSnapshot::default()));
    let (core, _results) = AgentCore::new(config, rpc, view, None);
    let app = super::router(core);
    for uri in ["/v1/agent/self", "/v1/agent/nope"] {
        let (_, headers, _) = call_with_headers(&app, Method::GET, uri, "").await;
        assert_eq!(headers["access-control-allow-origin"], "*", "{uri}");
    }
}

#[tokio::test]
async fn writes_from_outside_allow_write_http_from_are_restricted() {
    let servers = vec!["127.0.0.1:1".parse().unwrap()];
    let rpc = Arc::new(ServerClient::new(servers).unwrap());
    let mut config = Config::new("test-node", Vec::new());
    config.allow_write_http_from = vec!["10.0.0.0/8".parse().unwrap()];
    let (_tx, view) = tokio::sync::watch::channel(Arc::new(CatalogSnapshot::default()));
    let (core, _results) = AgentCore::new(config, rpc, view, None);
    let app = super::router(core);
    let call_from = |peer: &str, method: Method| {
        let mut request = Request::builder()
            .method(method)
            .uri("/v1/agent/service/register")
            .body(Body::from(r#"{"Name":"web"}"#))
            .unwrap();
        let peer: std::net::SocketAddr = peer.parse().unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    assert_eq!(
        call_from("127.0.0.1:5000", Method::PUT).await,
        (StatusCode::FORBIDDEN, "Access is restricted".to_string())
    );
    // Checked before the method, as Consul does.
    assert_eq!(
        call_from("127.0.0.1:5000", Method::POST).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call_from("10.1.2.3:5000", Method::PUT).await.0,
        StatusCode::OK
    );
    // Reads are never restricted.
    assert_eq!(
        call_from("127.0.0.1:5000", Method::GET).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn with_the_ui_on_root_moves_to_it_and_the_api_is_unchanged() {
    let servers = vec!["127.0.0.1:1".parse().unwrap()];
    let rpc: Arc<dyn ServerRpc> = Arc::new(ServerClient::new(servers).unwrap());
    let mut config = Config::new("test-node", Vec::new());
    config.ui.enabled = true;
    let (_tx, view) = tokio::sync::watch::channel(Arc::new(CatalogSnapshot::default()));
    let (core, _results) = AgentCore::new(config, rpc, view, None);
    let app = super::router(core);

    let (status, headers, _) = call_with_headers(&app, Method::GET, "/", "").await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(headers["location"], "/ui/");
    let (status, headers, body) =
        call_with_headers(&app, Method::GET, "/ui/dc1/services/web/instances", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(body.contains("/ui/assets/js/main.js"), "{body}");
    let (status, _) = call(&app, Method::GET, "/v1/agent/self", "").await;
    assert_eq!(status, StatusCode::OK);
}
