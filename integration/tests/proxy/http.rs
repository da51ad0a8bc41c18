//! HTTP through two sidecars (the L7 engine): requests flow, an L7 intention denies one
//! path with 403 while others pass, a `service-router` sends `/api/` to another service,
//! and both sidecars count the requests.

use concord_integration::apps::http_echo;
use concord_integration::sidecar::{free_port, TestProxy};
use concord_integration::{init_tracing, TestAgent};

use super::*;

/// `GET http://addr<path>`: status and body (`None` when the connection fails).
pub(super) async fn get(
    client: &reqwest::Client,
    addr: SocketAddr,
    path: &str,
) -> Option<(u16, String)> {
    let response = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// Writes a config entry through the HTTP API.
pub(super) async fn config_entry(agent: &TestAgent, entry: Value) {
    let (code, body) = agent.put("/v1/config", entry.to_string()).await.unwrap();
    assert_eq!(code, 200, "{entry}: {body}");
}

/// Registers `service` (an HTTP app on `app_port`) and its sidecar with `upstreams`; the
/// sidecar's protocol comes from the service's `service-defaults`.
async fn register_http(agent: &TestAgent, service: &str, app_port: u16, upstreams: Value) {
    register_http_config(agent, service, app_port, upstreams, json!({})).await;
}

/// [`register_http`] with more keys in the sidecar's `Proxy.Config`.
pub(super) async fn register_http_config(
    agent: &TestAgent,
    service: &str,
    app_port: u16,
    upstreams: Value,
    config: Value,
) {
    let mut proxy_config = json!({"bind_address": "127.0.0.1"});
    if let (Some(all), Some(more)) = (proxy_config.as_object_mut(), config.as_object()) {
        all.extend(more.clone());
    }
    let (code, body) = agent
        .put(
            "/v1/agent/service/register",
            json!({"Name": service, "Port": app_port}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let body = json!({
        "Kind": "connect-proxy", "ID": format!("{service}-sidecar-proxy"),
        "Name": format!("{service}-sidecar-proxy"),
        "Port": free_port().unwrap(), "Address": "127.0.0.1",
        "Proxy": {
            "DestinationServiceName": service, "DestinationServiceID": service,
            "LocalServiceAddress": "127.0.0.1", "LocalServicePort": app_port,
            "Config": proxy_config,
            "Upstreams": upstreams,
        },
    });
    let (code, text) = agent
        .put("/v1/agent/service/register", body.to_string())
        .await
        .unwrap();
    assert_eq!(code, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_are_judged_routed_and_counted_per_request() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    wait_for_ca(&agent).await;
    let db_app = http_echo("db").await.unwrap();
    let api_app = http_echo("api").await.unwrap();
    let upstream = free_port().unwrap();

    tracing::info!("db and api speak HTTP (service-defaults); web has an upstream to db");
    for service in ["db", "api"] {
        config_entry(
            &agent,
            json!({"Kind": "service-defaults", "Name": service, "Protocol": "http"}),
        )
        .await;
    }
    register_http(&agent, "db", db_app.addr.port(), json!([])).await;
    register_http(&agent, "api", api_app.addr.port(), json!([])).await;
    register_http(
        &agent,
        "web",
        free_port().unwrap(),
        json!([{"DestinationName": "db", "LocalBindPort": upstream}]),
    )
    .await;
    let db = TestProxy::start(&agent, &["-sidecar-for", "db"]).unwrap();
    let _api = TestProxy::start(&agent, &["-sidecar-for", "api"]).unwrap();
    let web = TestProxy::start(&agent, &["-sidecar-for", "web"]).unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let upstream = loopback(upstream);

    tracing::info!("requests flow through both sidecars, on one keep-alive connection");
    assert_eventually!(
        get(&client, upstream, "/hello").await == Some((200, "db GET /hello".to_string())),
        "HTTP through the upstream; web:\n{}\ndb:\n{}",
        web.logs(),
        db.logs()
    );

    tracing::info!("an L7 intention denies /admin to web; other paths still pass");
    config_entry(
        &agent,
        json!({"Kind": "service-intentions", "Name": "db", "Sources": [{
            "Name": "web",
            "Permissions": [
                {"Action": "deny", "HTTP": {"PathPrefix": "/admin"}},
                {"Action": "allow", "HTTP": {"PathPrefix": "/"}}
            ]
        }]}),
    )
    .await;
    assert_eventually!(
        get(&client, upstream, "/admin/users").await.map(|r| r.0) == Some(403),
        "/admin is denied; db:\n{}",
        db.logs()
    );
    assert_eq!(
        get(&client, upstream, "/public").await,
        Some((200, "db GET /public".to_string()))
    );

    tracing::info!("a service-router sends /api/ to api");
    config_entry(
        &agent,
        json!({"Kind": "service-router", "Name": "db", "Routes": [{
            "Match": {"HTTP": {"PathPrefix": "/api/"}},
            "Destination": {"Service": "api"}
        }]}),
    )
    .await;
    assert_eventually!(
        get(&client, upstream, "/api/items").await == Some((200, "api GET /api/items".to_string())),
        "the router sends /api/ to api; web:\n{}",
        web.logs()
    );
    assert_eq!(
        get(&client, upstream, "/other").await,
        Some((200, "db GET /other".to_string()))
    );

    tracing::info!("both sidecars count requests by class");
    let metrics = web.metrics().await;
    assert!(
        metrics.contains("concord_proxy_http_requests_total"),
        "{metrics}"
    );
    assert!(
        db.metric("concord_proxy_http_intention_denials_total{source=\"web\"")
            .await
            >= 1.0,
        "{}",
        db.metrics().await
    );
}
