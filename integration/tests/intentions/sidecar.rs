//! `Connect.SidecarService` against a real agent: the proxy appears in the catalog, in
//! `/v1/catalog/connect` and `/v1/health/connect`, in DNS as `<svc>.connect`, follows its
//! parent's health through the alias check, and goes away with its parent.

use concord_integration::dns::{query, Transport};
use concord_integration::{assert_eventually, init_tracing, TestAgent};
use hickory_proto::rr::{RData, RecordType};
use reqwest::Method;
use serde_json::json;

use crate::{call, get};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_registration_is_discoverable_and_follows_its_parent() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    // Stands in for the proxy's public listener, so the sidecar's TCP check can pass.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tracing::info!("register web with a sidecar that has an upstream to db, snake_case");
    let (code, body) = call(
        &agent,
        Method::PUT,
        "/v1/agent/service/register",
        Some(json!({"name": "web", "port": 8080, "check": {"ttl": "1h"},
            "connect": {"sidecar_service": {"port": port, "proxy": {"upstreams": [
                {"destination_name": "db", "local_bind_port": 9191}]}}}})),
    )
    .await;
    assert_eq!(code, 200, "{body}");

    tracing::info!("the catalog shows the proxy as fronting web");
    assert_eventually!(
        {
            let (_, v) = get(&agent, "/v1/catalog/connect/web").await;
            v.as_array().is_some_and(|a| a.len() == 1)
        },
        "the sidecar never reached the catalog"
    );
    let (_, v) = get(&agent, "/v1/catalog/connect/web").await;
    let proxy = &v[0];
    assert_eq!(proxy["ServiceKind"], "connect-proxy");
    assert_eq!(proxy["ServiceID"], "web-sidecar-proxy");
    assert_eq!(proxy["ServicePort"], port);
    assert_eq!(proxy["ServiceProxy"]["DestinationServiceName"], "web");
    assert_eq!(proxy["ServiceProxy"]["LocalServicePort"], 8080);
    assert_eq!(
        proxy["ServiceProxy"]["Upstreams"][0]["DestinationName"],
        "db"
    );

    tracing::info!("critical while web is: not in the passing connect health view nor DNS");
    let (_, v) = get(&agent, "/v1/health/connect/web?passing").await;
    assert_eq!(v, json!([]));
    let a = |msg: &hickory_proto::op::Message| -> Vec<u16> {
        msg.answers()
            .iter()
            .filter_map(|r| match r.data() {
                Some(RData::SRV(srv)) => Some(srv.port()),
                _ => None,
            })
            .collect()
    };
    let msg = query(
        agent.dns,
        Transport::Udp,
        "web.connect.consul.",
        RecordType::SRV,
    )
    .await
    .unwrap();
    assert!(a(&msg).is_empty(), "{msg:?}");

    tracing::info!("web passes: the alias follows, and DNS answers with the proxy's port");
    let (code, _) = call(
        &agent,
        Method::PUT,
        "/v1/agent/check/pass/service:web",
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eventually!(
        {
            let (_, v) = get(&agent, "/v1/health/connect/web?passing").await;
            v.as_array().is_some_and(|a| a.len() == 1)
        },
        "the sidecar never turned passing"
    );
    let (_, v) = get(&agent, "/v1/health/connect/web?passing").await;
    let checks: Vec<&str> = v[0]["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["Type"].as_str())
        .collect();
    assert!(
        checks.contains(&"alias") && checks.contains(&"tcp"),
        "{checks:?}"
    );
    assert_eventually!(
        {
            let msg = query(
                agent.dns,
                Transport::Udp,
                "web.connect.consul.",
                RecordType::SRV,
            )
            .await
            .unwrap();
            a(&msg) == [port]
        },
        "DNS never answered web.connect with the proxy"
    );

    tracing::info!("deregistering web removes its sidecar");
    let (code, _) = call(
        &agent,
        Method::PUT,
        "/v1/agent/service/deregister/web",
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eventually!(
        {
            let (_, v) = get(&agent, "/v1/catalog/connect/web").await;
            v == json!([])
        },
        "the sidecar outlived its parent"
    );
    let (code, _) = get(&agent, "/v1/agent/service/web-sidecar-proxy").await;
    assert_eq!(code, 404);
}
