//! `/v1/config`: CRUD, check-and-set, 404s, and the default policy in `/v1/agent/self`.

use concord_integration::{init_tracing, TestAgent};
use reqwest::Method;
use serde_json::json;

use super::{call, get};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_and_cas() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();

    tracing::info!("cas=0 creates only if absent");
    let entry = json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"});
    let (_, ok) = call(&agent, Method::PUT, "/v1/config?cas=0", Some(entry.clone())).await;
    assert_eq!(ok, json!(true));
    let (_, ok) = call(&agent, Method::PUT, "/v1/config?cas=0", Some(entry.clone())).await;
    assert_eq!(ok, json!(false));
    let (status, got) = get(&agent, "/v1/config/service-defaults/web").await;
    assert_eq!(status, 200);
    assert_eq!(got["Protocol"], "http");
    let modify = got["ModifyIndex"].as_u64().unwrap();
    assert!(got["CreateIndex"].as_u64().unwrap() > 0);

    tracing::info!("cas with the right index replaces; a stale one does not");
    let grpc = json!({"Kind": "service-defaults", "Name": "web", "Protocol": "grpc"});
    let (_, ok) = call(
        &agent,
        Method::PUT,
        &format!("/v1/config?cas={}", modify + 100),
        Some(grpc.clone()),
    )
    .await;
    assert_eq!(ok, json!(false));
    let (_, ok) = call(
        &agent,
        Method::PUT,
        &format!("/v1/config?cas={modify}"),
        Some(grpc),
    )
    .await;
    assert_eq!(ok, json!(true));

    tracing::info!("every kind is stored and listed");
    for e in [
        json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}}),
        json!({"Kind": "service-resolver", "Name": "web", "DefaultSubset": "v1", "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"}, "v2": {"Filter": "Service.Meta.version == v2"}}}),
        json!({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}]}),
        json!({"Kind": "service-router", "Name": "web", "Routes": [{"Match": {"HTTP": {"PathPrefix": "/admin"}}, "Destination": {"Service": "admin"}}]}),
    ] {
        let (status, body) = call(&agent, Method::PUT, "/v1/config", Some(e.clone())).await;
        assert_eq!((status, body), (200, json!(true)), "{e}");
    }
    let (_, list) = get(&agent, "/v1/config/service-defaults").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, list) = get(&agent, "/v1/config/service-router").await;
    assert_eq!(list[0]["Routes"][0]["Destination"]["Service"], "admin");

    tracing::info!("delete, then 404; cas delete answers a boolean");
    let (status, body) = call(
        &agent,
        Method::DELETE,
        "/v1/config/service-router/web",
        None,
    )
    .await;
    assert_eq!((status, body), (200, json!({})));
    let (status, body) = get(&agent, "/v1/config/service-router/web").await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!("Config entry not found for \"service-router\" / \"web\"")
    );
    let (_, body) = call(
        &agent,
        Method::DELETE,
        "/v1/config/service-splitter/web?cas=1",
        None,
    )
    .await;
    assert_eq!(body, json!(false));

    tracing::info!("/v1/agent/self reports the default intention policy");
    let (_, _, me) = agent.get_json("/v1/agent/self").await.unwrap();
    assert_eq!(me["DebugConfig"]["ACLDefaultPolicy"], "allow");
    assert_eq!(me["DebugConfig"]["DefaultIntentionPolicy"], "allow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_chain_and_merged_central_config() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();

    tracing::info!("an HTTP service with a splitter over two subsets");
    for e in [
        json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"}),
        json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"local_connect_timeout_ms": 1000}}),
        json!({"Kind": "service-resolver", "Name": "web", "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"}, "v2": {"Filter": "Service.Meta.version == v2"}}}),
        json!({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 50, "ServiceSubset": "v1"}, {"Weight": 50, "ServiceSubset": "v2"}]}),
    ] {
        let (status, _) = call(&agent, Method::PUT, "/v1/config", Some(e)).await;
        assert_eq!(status, 200);
    }
    let (status, chain) = get(&agent, "/v1/discovery-chain/web").await;
    assert_eq!(status, 200);
    let c = &chain["Chain"];
    assert_eq!(c["Protocol"], "http");
    assert_eq!(c["StartNode"], "splitter:web.default.default");
    assert!(
        c["Targets"]["v2.web.default.default.dc1"].is_object(),
        "{chain}"
    );
    tracing::info!("targets are named by their SNI under the CA's trust domain");
    let (_, roots) = get(&agent, "/v1/agent/connect/ca/roots").await;
    let td = roots["TrustDomain"].as_str().unwrap();
    assert!(!td.is_empty(), "{roots}");
    let sni = format!("v2.web.default.dc1.internal.{td}");
    assert_eq!(
        c["Targets"]["v2.web.default.default.dc1"]["SNI"],
        sni.as_str()
    );
    assert_eq!(
        c["Targets"]["v2.web.default.default.dc1"]["Name"],
        sni.as_str()
    );

    tracing::info!("a sidecar proxy gets the central config merged on request");
    let proxy = json!({"Name": "web-sidecar-proxy", "Kind": "connect-proxy", "Port": 21000,
        "Proxy": {"DestinationServiceName": "web", "Config": {"local_connect_timeout_ms": 5}}});
    let (status, body) = call(
        &agent,
        Method::PUT,
        "/v1/agent/service/register",
        Some(proxy),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    concord_integration::assert_eventually!(
        get(&agent, "/v1/health/service/web-sidecar-proxy")
            .await
            .1
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "proxy in the catalog"
    );
    let (_, rows) = get(
        &agent,
        "/v1/health/service/web-sidecar-proxy?merge-central-config",
    )
    .await;
    let config = &rows[0]["Service"]["Proxy"]["Config"];
    assert_eq!(config["protocol"], "http");
    assert_eq!(
        config["local_connect_timeout_ms"], 5,
        "the instance's own value wins"
    );
    let (_, rows) = get(
        &agent,
        "/v1/catalog/service/web-sidecar-proxy?merge-central-config",
    )
    .await;
    assert_eq!(rows[0]["ServiceProxy"]["Config"]["protocol"], "http");
    let (_, rows) = get(&agent, "/v1/health/service/web-sidecar-proxy").await;
    assert!(rows[0]["Service"]["Proxy"]["Config"]
        .get("protocol")
        .is_none());
}
