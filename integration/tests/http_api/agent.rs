use concord_integration::{assert_eventually, init_tracing, TestAgent};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_registration_reaches_catalog_and_health() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();

    tracing::info!("register a service with a TTL check, using snake_case keys as config files do");
    let (code, body) = agent
        .put(
            "/v1/agent/service/register",
            r#"{"name":"web","port":8080,"tags":["v1"],"meta":{"team":"a"},"check":{"ttl":"15s"}}"#,
        )
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, "", "agent writes answer 200 with an empty body");

    tracing::info!("the agent lists it, keyed by ID");
    let (_, _, services) = agent.get_json("/v1/agent/services").await.unwrap();
    assert_eq!(services["web"]["Service"], "web");
    assert_eq!(services["web"]["Port"], 8080);
    assert_eq!(services["web"]["Meta"]["team"], "a");

    tracing::info!("the catalog has it right away (registration syncs before answering)");
    let (code, index, rows) = agent.get_json("/v1/catalog/service/web").await.unwrap();
    assert_eq!(code, 200);
    assert!(index > 0);
    assert_eq!(rows[0]["ServiceName"], "web");
    assert_eq!(rows[0]["ServiceTags"], json!(["v1"]));
    assert_eq!(rows[0]["Node"], agent.node);

    tracing::info!("a new TTL check starts critical, so ?passing hides the instance");
    let (_, _, all) = agent.get_json("/v1/health/service/web").await.unwrap();
    assert_eq!(all.as_array().unwrap().len(), 1);
    let (_, _, passing) = agent
        .get_json("/v1/health/service/web?passing")
        .await
        .unwrap();
    assert_eq!(passing, json!([]));

    tracing::info!("passing the TTL check makes it healthy");
    let (code, _) = agent
        .put("/v1/agent/check/pass/service:web?note=ok", "")
        .await
        .unwrap();
    assert_eq!(code, 200);
    let (_, _, passing) = agent
        .get_json("/v1/health/service/web?passing")
        .await
        .unwrap();
    assert_eq!(passing.as_array().unwrap().len(), 1, "{passing}");
    let checks = passing[0]["Checks"].as_array().unwrap();
    assert!(
        checks.iter().any(|c| c["CheckID"] == "serfHealth"),
        "node checks included"
    );
    let ttl = checks
        .iter()
        .find(|c| c["CheckID"] == "service:web")
        .unwrap();
    assert_eq!(ttl["Output"], "ok");

    tracing::info!("agent-local health endpoint encodes the status in the code");
    let r = agent
        .client
        .get(agent.url("/v1/agent/health/service/name/web?format=text"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "passing");
    agent
        .put("/v1/agent/check/warn/service:web", "")
        .await
        .unwrap();
    let r = agent
        .client
        .get(agent.url("/v1/agent/health/service/id/web"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);

    tracing::info!("catalog services lists tags; deregistration removes everything");
    let (_, _, svcs) = agent.get_json("/v1/catalog/services").await.unwrap();
    assert_eq!(svcs["web"], json!(["v1"]));
    assert_eq!(svcs["consul"], json!([]), "servers register service consul");
    let (code, _) = agent
        .put("/v1/agent/service/deregister/web", "")
        .await
        .unwrap();
    assert_eq!(code, 200);
    let (_, _, rows) = agent.get_json("/v1/catalog/service/web").await.unwrap();
    assert_eq!(rows, json!([]));
    let (_, _, checks) = agent.get_json("/v1/agent/checks").await.unwrap();
    assert!(checks.get("service:web").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_expiry_turns_critical() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    agent
        .put(
            "/v1/agent/service/register",
            r#"{"Name":"api","Check":{"CheckID":"api-ttl","TTL":"1s","Status":"passing"}}"#,
        )
        .await
        .unwrap();
    let (_, _, c) = agent.get_json("/v1/agent/checks").await.unwrap();
    assert_eq!(c["api-ttl"]["Status"], "passing");
    tracing::info!("no heartbeat: the TTL expires and the catalog learns it");
    assert_eventually!(
        agent.get_json("/v1/health/checks/api").await.unwrap().2[0]["Status"] == "critical",
        "TTL check never expired"
    );
    let (_, _, c) = agent.get_json("/v1/health/checks/api").await.unwrap();
    assert_eq!(c[0]["Output"], "TTL expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_tcp_checks_run_in_the_agent() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    tracing::info!("point an HTTP check at the agent's own API and a TCP check at a closed port");
    let def = json!({
        "Name": "probe",
        "Checks": [
            {"CheckID": "http-ok", "HTTP": agent.url("/v1/status/leader"), "Interval": "200ms"},
            {"CheckID": "tcp-down", "TCP": "127.0.0.1:1", "Interval": "200ms", "Timeout": "1s"}
        ]
    });
    let (code, body) = agent
        .put("/v1/agent/service/register", def.to_string())
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let status = |checks: &Value, id: &str| checks[id]["Status"].as_str().unwrap_or("").to_string();
    assert_eventually!(
        status(
            &agent.get_json("/v1/agent/checks").await.unwrap().2,
            "http-ok"
        ) == "passing",
        "HTTP check never passed"
    );
    let (_, _, checks) = agent.get_json("/v1/agent/checks").await.unwrap();
    assert_eq!(status(&checks, "tcp-down"), "critical");
    assert_eq!(checks["http-ok"]["Type"], "http");
    tracing::info!("the results reach the catalog");
    assert_eventually!(
        agent
            .get_json("/v1/health/state/passing")
            .await
            .unwrap()
            .2
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c["CheckID"] == "http-ok")),
        "passing HTTP check never reached the catalog"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_self_members_metrics() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    agent
        .put("/v1/agent/service/register", r#"{"Name":"db","Port":5432}"#)
        .await
        .unwrap();
    let (code, _) = agent
        .put(
            "/v1/agent/service/maintenance/db?enable=true&reason=upgrade",
            "",
        )
        .await
        .unwrap();
    assert_eq!(code, 200);
    let (_, _, checks) = agent.get_json("/v1/agent/checks").await.unwrap();
    assert_eq!(checks["_service_maintenance:db"]["Status"], "critical");
    assert_eq!(checks["_service_maintenance:db"]["Notes"], "upgrade");
    let (_, _, passing) = agent
        .get_json("/v1/health/service/db?passing")
        .await
        .unwrap();
    assert_eq!(passing, json!([]));
    agent
        .put("/v1/agent/service/maintenance/db?enable=false", "")
        .await
        .unwrap();
    let (_, _, passing) = agent
        .get_json("/v1/health/service/db?passing")
        .await
        .unwrap();
    assert_eq!(passing.as_array().unwrap().len(), 1);

    let (code, _) = agent
        .put("/v1/agent/maintenance?enable=true", "")
        .await
        .unwrap();
    assert_eq!(code, 200);
    let (_, _, node_checks) = agent
        .get_json(&format!("/v1/health/node/{}", agent.node))
        .await
        .unwrap();
    assert!(node_checks
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["CheckID"] == "_node_maintenance"));

    let (_, _, me) = agent.get_json("/v1/agent/self").await.unwrap();
    assert_eq!(me["Config"]["NodeName"], agent.node);
    assert_eq!(me["Config"]["Version"], "1.22.0");
    assert_eq!(me["Config"]["Server"], true);
    let (_, _, members) = agent.get_json("/v1/agent/members").await.unwrap();
    assert_eq!(members[0]["Name"], agent.node);
    assert_eq!(members[0]["Status"], 1);
    assert_eq!(members[0]["Tags"]["role"], "consul");

    let (_, _, metrics) = agent.get_json("/v1/agent/metrics").await.unwrap();
    assert!(metrics["Gauges"].as_array().is_some_and(|g| !g.is_empty()));
    let text = agent
        .client
        .get(agent.url("/v1/agent/metrics?format=prometheus"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("concord_agent_services 1"), "{text}");

    let (_, _, leader) = agent.get_json("/v1/status/leader").await.unwrap();
    assert_eq!(leader, json!(agent.rpc.to_string()));
    let (_, _, peers) = agent.get_json("/v1/status/peers").await.unwrap();
    assert_eq!(peers, json!([agent.rpc.to_string()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_register_and_deregister_external_nodes() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    let body = json!({
        "Node": "ext1", "Address": "10.1.2.3", "NodeMeta": {"env": "prod"},
        "Service": {"Service": "redis", "Port": 6379, "Tags": ["primary"]},
        "Check": {"CheckID": "redis-alive", "Name": "Redis", "Status": "passing", "ServiceID": "redis"}
    });
    let (code, text) = agent
        .put("/v1/catalog/register", body.to_string())
        .await
        .unwrap();
    assert_eq!((code, text.as_str()), (200, "true"));
    let (_, _, nodes) = agent
        .get_json("/v1/catalog/nodes?node-meta=env:prod")
        .await
        .unwrap();
    assert_eq!(nodes.as_array().unwrap().len(), 1);
    assert_eq!(nodes[0]["Node"], "ext1");
    let (_, _, node) = agent.get_json("/v1/catalog/node/ext1").await.unwrap();
    assert_eq!(node["Services"]["redis"]["Port"], 6379);
    let (_, _, tagged) = agent
        .get_json("/v1/catalog/service/redis?tag=primary")
        .await
        .unwrap();
    assert_eq!(tagged.as_array().unwrap().len(), 1);
    let (_, _, none) = agent
        .get_json("/v1/catalog/service/redis?tag=replica")
        .await
        .unwrap();
    assert_eq!(none, json!([]));
    let (_, _, dcs) = agent.get_json("/v1/catalog/datacenters").await.unwrap();
    assert_eq!(dcs, json!(["dc1"]));
    let (code, text) = agent
        .put("/v1/catalog/deregister", r#"{"Node":"ext1"}"#)
        .await
        .unwrap();
    assert_eq!((code, text.as_str()), (200, "true"));
    let (code, _, node) = agent.get_json("/v1/catalog/node/ext1").await.unwrap();
    assert_eq!((code, node), (200, Value::Null));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_services_and_reload() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("services.json");
    std::fs::write(
        &file,
        r#"{"service": {"name": "from-file", "port": 9000, "check": {"ttl": "1h", "status": "passing"}}}"#,
    )
    .unwrap();
    let agent = TestAgent::start(&["-dev", "-config-file", file.to_str().unwrap()])
        .await
        .unwrap();
    tracing::info!("services from config files are registered at start");
    assert_eventually!(
        agent
            .get_json("/v1/catalog/service/from-file")
            .await
            .unwrap()
            .2
            .as_array()
            .is_some_and(|a| a.len() == 1),
        "config-file service never reached the catalog"
    );
    tracing::info!("reload swaps them for the file's new contents");
    std::fs::write(
        &file,
        r#"{"services": [{"name": "replacement", "port": 9001}]}"#,
    )
    .unwrap();
    let (code, body) = agent.put("/v1/agent/reload", "").await.unwrap();
    assert_eq!(code, 200, "{body}");
    let (_, _, svcs) = agent.get_json("/v1/agent/services").await.unwrap();
    assert!(svcs.get("from-file").is_none(), "{svcs}");
    assert_eq!(svcs["replacement"]["Port"], 9001);
    tracing::info!("a broken file is reported and changes nothing");
    std::fs::write(&file, "{broken").unwrap();
    let (code, _) = agent.put("/v1/agent/reload", "").await.unwrap();
    assert_eq!(code, 500);
    let (_, _, svcs) = agent.get_json("/v1/agent/services").await.unwrap();
    assert_eq!(svcs["replacement"]["Port"], 9001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_checks_only_when_enabled() {
    init_tracing();
    let def = json!({"Name": "job", "Check": {"Args": ["sh", "-c", "echo degraded; exit 1"], "Interval": "1s"}});
    tracing::info!("off by default, as in Consul: a check definition would be code execution");
    let plain = TestAgent::dev().await.unwrap();
    let (code, body) = plain
        .put("/v1/agent/service/register", def.to_string())
        .await
        .unwrap();
    assert_eq!(code, 400);
    assert!(
        body.contains("Scripts are disabled on this agent"),
        "{body}"
    );

    tracing::info!("enabled: exit code 1 is warning, the output is kept");
    let agent = TestAgent::start(&["-dev", "-enable-script-checks"])
        .await
        .unwrap();
    let (code, body) = agent
        .put("/v1/agent/service/register", def.to_string())
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eventually!(
        agent.get_json("/v1/agent/checks").await.unwrap().2["service:job"]["Status"] == "warning",
        "script check never reported"
    );
    let (_, _, checks) = agent.get_json("/v1/agent/checks").await.unwrap();
    assert_eq!(checks["service:job"]["Output"], "degraded\n");
    assert_eq!(checks["service:job"]["Type"], "script");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_expressions_select_results() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    for (id, tags, port) in [("a1", json!(["v1", "prod"]), 80), ("a2", json!(["v2"]), 81)] {
        let def =
            json!({"ID": id, "Name": "app", "Tags": tags, "Port": port, "Meta": {"team": id}});
        agent
            .put("/v1/agent/service/register", def.to_string())
            .await
            .unwrap();
    }
    let q = |expr: &str| format!("filter={}", expr.replace(' ', "%20").replace('"', "%22"));
    let (_, _, rows) = agent
        .get_json(&format!(
            "/v1/health/service/app?{}",
            q("Service.Tags contains \"v1\"")
        ))
        .await
        .unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["Service"]["ID"], "a1");
    let (_, _, rows) = agent
        .get_json(&format!(
            "/v1/catalog/service/app?{}",
            q("ServicePort == 81")
        ))
        .await
        .unwrap();
    assert_eq!(rows[0]["ServiceID"], "a2");
    let (_, _, svcs) = agent
        .get_json(&format!("/v1/agent/services?{}", q("Meta.team == a2")))
        .await
        .unwrap();
    assert_eq!(svcs.as_object().unwrap().keys().collect::<Vec<_>>(), ["a2"]);
    let (_, _, names) = agent
        .get_json(&format!(
            "/v1/catalog/services?{}",
            q("ServiceName == app and \"prod\" in ServiceTags")
        ))
        .await
        .unwrap();
    assert_eq!(names, json!({"app": ["prod", "v1"]}));
    let r = agent
        .client
        .get(agent.url("/v1/catalog/nodes?filter=Node%20%3D%3D"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_endpoints_list_proxies_and_native_services() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    let defs = [
        json!({"Name": "web", "Port": 8080}),
        json!({"Name": "web-sidecar-proxy", "Kind": "connect-proxy", "Port": 21000,
               "Proxy": {"DestinationServiceName": "web", "LocalServicePort": 8080}}),
        json!({"Name": "api", "Port": 9090, "Connect": {"Native": true}}),
    ];
    for def in defs {
        let (code, body) = agent
            .put("/v1/agent/service/register", def.to_string())
            .await
            .unwrap();
        assert_eq!(code, 200, "{body}");
    }
    let (code, index, rows) = agent.get_json("/v1/health/connect/web").await.unwrap();
    assert_eq!(code, 200);
    assert!(index > 0);
    let ids: Vec<_> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Service"]["ID"].clone())
        .collect();
    assert_eq!(
        ids,
        [json!("web-sidecar-proxy")],
        "the proxy, not web itself"
    );
    let (_, _, rows) = agent.get_json("/v1/catalog/connect/api").await.unwrap();
    assert_eq!(
        rows[0]["ServiceID"], "api",
        "native services serve themselves"
    );
    let (_, _, rows) = agent.get_json("/v1/catalog/connect/db").await.unwrap();
    assert_eq!(rows, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_output_is_cut_to_the_agent_and_check_limits() {
    init_tracing();
    let agent = TestAgent::start(&["-dev", "-check_output_max_size=8"])
        .await
        .unwrap();
    for def in [
        json!({"Name": "a", "Check": {"CheckID": "a-ttl", "TTL": "30s"}}),
        json!({"Name": "b", "Check": {"CheckID": "b-ttl", "TTL": "30s", "OutputMaxSize": 3}}),
        json!({"Name": "c", "Check": {"CheckID": "c-ttl", "TTL": "30s", "OutputMaxSize": 100}}),
    ] {
        let (code, body) = agent
            .put("/v1/agent/service/register", def.to_string())
            .await
            .unwrap();
        assert_eq!(code, 200, "{body}");
    }
    tracing::info!("update (JSON Output) and pass (?note=) are both cut");
    let (code, _) = agent
        .put(
            "/v1/agent/check/update/a-ttl",
            r#"{"Status":"passing","Output":"0123456789"}"#,
        )
        .await
        .unwrap();
    assert_eq!(code, 200);
    agent
        .put("/v1/agent/check/warn/b-ttl?note=abcdef", "")
        .await
        .unwrap();
    agent
        .put("/v1/agent/check/fail/c-ttl?note=0123456789", "")
        .await
        .unwrap();
    let (_, _, checks) = agent.get_json("/v1/agent/checks").await.unwrap();
    assert_eq!(
        checks["a-ttl"]["Output"],
        "01234567 ... (captured 8 of 10 bytes)"
    );
    assert_eq!(
        checks["b-ttl"]["Output"], "abc ... (captured 3 of 6 bytes)",
        "the check's lower limit"
    );
    assert_eq!(
        checks["c-ttl"]["Output"], "01234567 ... (captured 8 of 10 bytes)",
        "a check's limit never raises the agent's"
    );

    tracing::info!("a negative OutputMaxSize is refused with Consul's text");
    let (code, body) = agent
        .put(
            "/v1/agent/check/register",
            r#"{"Name":"bad","TTL":"30s","OutputMaxSize":-1}"#,
        )
        .await
        .unwrap();
    assert_eq!(
        (code, body.as_str()),
        (400, "Invalid check: MaxOutputMaxSize must be positive")
    );
}
