//! The agent serves its sidecars' metrics: sidecars registered with
//! `envoy_prometheus_bind_addr` (and started without `-metrics-addr`) serve there, and the
//! agent's `/v1/agent/metrics` carries their request counters, labelled by proxy in the
//! Prometheus form and by both ends of the edge in the JSON form.

use concord_integration::apps::http_echo;
use concord_integration::sidecar::{free_port, TestProxy};
use concord_integration::{init_tracing, TestAgent};

use super::http::{config_entry, get, register_http_config};
use super::*;

/// The JSON form's request counter for `source -> destination` from `proxy_id`, 2xx.
fn json_count(metrics: &Value, proxy_id: &str, source: &str, destination: &str) -> f64 {
    metrics["Counters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["Name"] == "concord.proxy.http.requests")
        .filter(|c| {
            let l = &c["Labels"];
            l["proxy_id"] == proxy_id
                && l["source"] == source
                && l["destination"] == destination
                && l["class"] == "2xx"
        })
        .filter_map(|c| c["Count"].as_f64())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_serves_its_sidecars_metrics() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    wait_for_ca(&agent).await;
    let db_app = http_echo("db").await.unwrap();
    let upstream = free_port().unwrap();
    config_entry(
        &agent,
        json!({"Kind": "service-defaults", "Name": "db", "Protocol": "http"}),
    )
    .await;
    let db_metrics = loopback(free_port().unwrap());
    let web_metrics = loopback(free_port().unwrap());
    register_http_config(
        &agent,
        "db",
        db_app.addr.port(),
        json!([]),
        json!({"envoy_prometheus_bind_addr": db_metrics.to_string()}),
    )
    .await;
    register_http_config(
        &agent,
        "web",
        free_port().unwrap(),
        json!([{"DestinationName": "db", "LocalBindPort": upstream}]),
        json!({"envoy_prometheus_bind_addr": web_metrics.to_string()}),
    )
    .await;
    let db =
        TestProxy::start_registered_metrics(&agent, &["-sidecar-for", "db"], db_metrics).unwrap();
    let web =
        TestProxy::start_registered_metrics(&agent, &["-sidecar-for", "web"], web_metrics).unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    assert_eventually!(
        get(&client, loopback(upstream), "/x").await.map(|r| r.0) == Some(200),
        "HTTP through the upstream; web:\n{}\ndb:\n{}",
        web.logs(),
        db.logs()
    );
    for _ in 0..4 {
        assert_eq!(
            get(&client, loopback(upstream), "/y").await.map(|r| r.0),
            Some(200)
        );
    }

    tracing::info!("each sidecar serves its metrics at the registered address");
    let served = web
        .metric("concord_proxy_http_requests_total{direction=\"outbound\",service=\"db\",class=\"2xx\"}")
        .await;
    assert!(served >= 5.0, "{}", web.metrics().await);

    tracing::info!("the agent's Prometheus form carries them, labelled by proxy");
    let response = agent
        .request(
            "GET",
            "/v1/agent/metrics?format=prometheus",
            b"",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&response.body).into_owned();
    let line = "concord_proxy_http_requests_total{proxy_id=\"web-sidecar-proxy\",direction=\"outbound\",service=\"db\",class=\"2xx\"} ";
    let count: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {line} in:\n{text}"));
    assert!(count >= 5.0);
    assert!(
        text.contains("proxy_id=\"db-sidecar-proxy\",direction=\"inbound\",service=\"web\""),
        "{text}"
    );
    assert!(text.contains("concord_agent_services"), "{text}");
    assert_eq!(
        text.matches("# TYPE concord_proxy_http_requests counter")
            .count(),
        1
    );
    assert!(text.trim_end().ends_with("# EOF"));

    tracing::info!("the JSON form names both ends of the edge");
    let (_, _, json) = agent.get_json("/v1/agent/metrics").await.unwrap();
    assert!(
        json_count(&json, "web-sidecar-proxy", "web", "db") >= 5.0,
        "{json}"
    );
    assert!(
        json_count(&json, "db-sidecar-proxy", "web", "db") >= 5.0,
        "{json}"
    );
}
