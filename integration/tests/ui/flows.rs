use std::time::Duration;

use concord_integration::browser::{available, Browser};
use concord_integration::{init_tracing, TestAgent};
use fantoccini::Locator;
use serde_json::json;

use super::{put_json, put_raw};

/// Most a failing check may take to show as critical in an open services view (issue 20).
const CRITICAL_WITHIN: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_follows_the_catalog_kv_and_intentions() {
    init_tracing();
    if !available("the web UI browser tests") {
        return;
    }
    let agent = TestAgent::dev().await.unwrap();
    let base = agent.url("");

    tracing::info!("with -dev the UI is on: / moves to /ui/ and /ui/ is the app");
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = no_redirects.get(agent.url("/")).send().await.unwrap();
    assert_eq!(root.status().as_u16(), 301);
    assert_eq!(root.headers()["location"], "/ui/");

    let browser = Browser::start(1280, 800).await.unwrap();
    let b = &browser;

    tracing::info!(
        "the services view lists the agent's node's consul service, then a registered one"
    );
    b.open(&format!("{base}/ui/"), "services").await.unwrap();
    let url = b.client.current_url().await.unwrap();
    assert_eq!(
        url.path(),
        "/ui/dc1/services",
        "/ui/ routes to the services view"
    );
    put_json(
        &agent,
        "/v1/agent/service/register",
        json!({"Name": "web", "ID": "web-1", "Port": 8080, "Tags": ["v1", "blue"],
               "Meta": {"team": "edge"},
               "Check": {"CheckID": "web-ttl", "Name": "web heartbeat", "TTL": "5m"}}),
    )
    .await;
    put_json(
        &agent,
        "/v1/agent/service/register",
        json!({"Name": "api", "ID": "api-1", "Port": 9090, "Tags": ["v2"]}),
    )
    .await;
    put_raw(&agent, "/v1/agent/check/pass/web-ttl?note=all%20good", "").await;
    b.wait_css("tr[data-service=\"web\"][data-status=\"passing\"]")
        .await
        .unwrap();
    b.wait_css("tr[data-service=\"api\"]").await.unwrap();
    b.screenshot("services").await.unwrap();

    tracing::info!("keyboard: the first Tab lands on the skip link, with a visible focus ring");
    b.client
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys("\u{E004}")
        .await
        .unwrap();
    let focus = b
        .client
        .execute(
            r#"const el = document.activeElement; const st = getComputedStyle(el);
               return [el.textContent, st.outlineStyle, st.outlineWidth];"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(focus[0], "Skip to content", "{focus}");
    assert_ne!(focus[1], "none", "focus is visible: {focus}");

    tracing::info!("failing the TTL check turns web critical in the open view within a second");
    // Timed in the browser: from just before the API call that fails the check to the
    // mutation that marks the row critical.
    let elapsed = b
        .client
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               const row = () => document.querySelector('tr[data-service="web"]');
               const t0 = performance.now();
               const obs = new MutationObserver(() => {
                 if (row()?.dataset.status === "critical") { obs.disconnect(); done(performance.now() - t0); }
               });
               obs.observe(document.querySelector("main"), {subtree: true, childList: true, attributes: true});
               fetch("/v1/agent/check/fail/web-ttl?note=connection%20refused", {method: "PUT"});"#,
            vec![],
        )
        .await
        .unwrap();
    let elapsed = Duration::from_secs_f64(elapsed.as_f64().unwrap() / 1000.0);
    tracing::info!(?elapsed, "web shown critical");
    assert!(
        elapsed < CRITICAL_WITHIN,
        "critical took {elapsed:?} to show"
    );

    tracing::info!("filtering by health keeps only critical services");
    let health = b
        .client
        .find(Locator::Css("select[name=health]"))
        .await
        .unwrap();
    health.select_by_value("critical").await.unwrap();
    b.wait_js(r#"document.querySelectorAll("table.services tbody tr").length === 1"#)
        .await
        .unwrap();
    b.wait_css("tr[data-service=\"web\"]").await.unwrap();
    assert!(b
        .client
        .current_url()
        .await
        .unwrap()
        .query()
        .unwrap_or("")
        .contains("health=critical"));

    tracing::info!("service detail: the instance, its check with output, tags and meta");
    b.open(&format!("{base}/ui/dc1/services/web/instances"), "service")
        .await
        .unwrap();
    let check = b
        .wait_css("li[data-check=\"web-ttl\"][data-status=\"critical\"]")
        .await
        .unwrap();
    assert!(check.text().await.unwrap().contains("connection refused"));
    let card = b
        .wait_css("article[data-instance=\"web-1\"]")
        .await
        .unwrap();
    let text = card.text().await.unwrap();
    assert!(
        text.contains(":8080") && text.contains("team") && text.contains("blue"),
        "{text}"
    );
    b.screenshot("service-instances").await.unwrap();

    tracing::info!("nodes: the dev node with serfHealth, its services, and the leader mark");
    b.open(&format!("{base}/ui/dc1/nodes"), "nodes")
        .await
        .unwrap();
    let node = b
        .wait_css(&format!("tr[data-node=\"{}\"]", agent.node))
        .await
        .unwrap();
    let node_text = node.text().await.unwrap();
    assert!(
        node_text.contains("leader") && node_text.contains("web") && node_text.contains("alive"),
        "{node_text}"
    );
    b.screenshot("nodes").await.unwrap();

    kv_edit_and_conflict(&agent, b, &base).await;
    intention_turns_the_edge(&agent, b, &base).await;

    tracing::info!("phone width: the navigation folds behind the menu button");
    b.set_viewport(390, 844).await.unwrap();
    b.open(&format!("{base}/ui/dc1/services"), "services")
        .await
        .unwrap();
    let menu = b.client.find(Locator::Id("menu")).await.unwrap();
    assert!(
        menu.is_displayed().await.unwrap(),
        "menu button shown at phone width"
    );
    b.screenshot("services-phone").await.unwrap();

    browser.close().await;
}

async fn kv_edit_and_conflict(agent: &TestAgent, b: &Browser, base: &str) {
    tracing::info!("KV: a folder lists its key; the key's editor saves with CAS");
    put_raw(agent, "/v1/kv/app/config", "color=blue").await;
    put_raw(agent, "/v1/kv/app/flags/beta", "on").await;
    b.open(&format!("{base}/ui/dc1/kv/app/"), "kv-folder")
        .await
        .unwrap();
    b.wait_css("tr[data-key=\"app/flags/\"]").await.unwrap();
    b.screenshot("kv-folder").await.unwrap();
    b.wait_css("tr[data-key=\"app/config\"] a")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_css("main[data-loaded=\"kv-key\"]").await.unwrap();
    let value = b
        .client
        .find(Locator::Css("textarea[name=value]"))
        .await
        .unwrap();
    assert_eq!(
        value.prop("value").await.unwrap().as_deref(),
        Some("color=blue")
    );
    value.clear().await.unwrap();
    value.send_keys("color=green").await.unwrap();
    b.client
        .find(Locator::Css("form.editor button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_css(".notice.ok").await.unwrap();
    let raw = agent
        .client
        .get(agent.url("/v1/kv/app/config?raw"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(raw, "color=green");

    tracing::info!(
        "KV: someone else saves while this editor has changes: the save is refused and says so"
    );
    let value = b
        .client
        .find(Locator::Css("textarea[name=value]"))
        .await
        .unwrap();
    value.send_keys(" mine").await.unwrap();
    put_raw(agent, "/v1/kv/app/config", "color=red theirs").await;
    b.wait_css(".notice.warn").await.unwrap();
    b.client
        .find(Locator::Css("form.editor button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let error = b.wait_css(".notice.error").await.unwrap();
    assert!(error.text().await.unwrap().contains("someone else changed"));
    let raw = agent
        .client
        .get(agent.url("/v1/kv/app/config?raw"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(raw, "color=red theirs", "their value was not overwritten");
    b.screenshot("kv-conflict").await.unwrap();

    tracing::info!("KV: a session takes the key's lock; the open editor shows who holds it");
    let session = put_json(agent, "/v1/session/create", json!({"Name": "deploy-lock"})).await;
    let session: serde_json::Value = serde_json::from_str(&session).unwrap();
    let id = session["ID"].as_str().unwrap();
    let acquired = put_raw(agent, &format!("/v1/kv/app/config?acquire={id}"), "locked").await;
    assert_eq!(acquired.trim(), "true");
    let lock = b.wait_css(".lock").await.unwrap();
    let lock_text = lock.text().await.unwrap();
    assert!(
        lock_text.contains(id) && lock_text.contains("deploy-lock"),
        "{lock_text}"
    );

    tracing::info!("KV: deleting a folder from the list asks once more, then removes it all");
    b.open(&format!("{base}/ui/dc1/kv/app/"), "kv-folder")
        .await
        .unwrap();
    let delete = b
        .wait_css("tr[data-key=\"app/flags/\"] button.danger")
        .await
        .unwrap();
    delete.click().await.unwrap();
    assert!(delete.text().await.unwrap().starts_with("Confirm"));
    delete.click().await.unwrap();
    b.wait_js(r#"!document.querySelector('tr[data-key="app/flags/"]')"#)
        .await
        .unwrap();
    let (status, _, _) = agent.get_json("/v1/kv/app/flags/beta").await.unwrap();
    assert_eq!(status, 404, "the folder's keys are gone");
}

async fn intention_turns_the_edge(agent: &TestAgent, b: &Browser, base: &str) {
    tracing::info!(
        "topology: web's sidecar lists api as an upstream; with no intention the edge allows"
    );
    put_json(
        agent,
        "/v1/agent/service/register",
        json!({"Name": "web-sidecar-proxy", "ID": "web-sidecar-proxy-1", "Kind": "connect-proxy", "Port": 21000,
               "Proxy": {"DestinationServiceName": "web", "DestinationServiceID": "web-1",
                         "Upstreams": [{"DestinationName": "api", "LocalBindPort": 9191}]}}),
    )
    .await;
    b.open(&format!("{base}/ui/dc1/services/web/topology"), "topology")
        .await
        .unwrap();
    b.wait_css("g.edge.allow[data-edge=\"web->api\"]")
        .await
        .unwrap();
    b.screenshot("topology-allow").await.unwrap();

    tracing::info!("create a deny intention web -> api in the intentions form");
    b.open(
        &format!("{base}/ui/dc1/intentions/create"),
        "intention-edit",
    )
    .await
    .unwrap();
    let source = b
        .client
        .find(Locator::Css("input[name=source]"))
        .await
        .unwrap();
    source.send_keys("web").await.unwrap();
    let destination = b
        .client
        .find(Locator::Css("input[name=destination]"))
        .await
        .unwrap();
    destination.send_keys("api").await.unwrap();
    b.client
        .find(Locator::Id("action-deny"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.client
        .find(Locator::Css("input[name=description]"))
        .await
        .unwrap()
        .send_keys("web must not call api directly")
        .await
        .unwrap();
    b.client
        .find(Locator::Css("form.intention-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_css("tr[data-intention=\"web->api\"][data-action=\"deny\"]")
        .await
        .unwrap();
    let (_, _, stored) = agent
        .get_json("/v1/connect/intentions/exact?source=web&destination=api")
        .await
        .unwrap();
    assert_eq!(stored["Action"], "deny");

    tracing::info!("the can-A-talk-to-B check says denied");
    b.client
        .find(Locator::Css("input[name=check-source]"))
        .await
        .unwrap()
        .send_keys("web")
        .await
        .unwrap();
    b.client
        .find(Locator::Css("input[name=check-destination]"))
        .await
        .unwrap()
        .send_keys("api")
        .await
        .unwrap();
    b.client
        .find(Locator::Css("form.check-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_css("[data-allowed=\"false\"]").await.unwrap();
    b.screenshot("intentions").await.unwrap();

    tracing::info!("back on the topology, the web -> api edge is now deny");
    b.client.back().await.unwrap();
    b.client.back().await.unwrap();
    b.wait_css("g.edge.deny[data-edge=\"web->api\"]")
        .await
        .unwrap();
    b.screenshot("topology-deny").await.unwrap();

    tracing::info!("edit it into L7 permissions: refused while api speaks tcp, the reason shown");
    b.open(&format!("{base}/ui/dc1/intentions"), "intentions")
        .await
        .unwrap();
    b.wait_css("tr[data-intention=\"web->api\"] a.button")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_css("main[data-loaded=\"intention-edit\"]")
        .await
        .unwrap();
    b.wait_js("document.getElementById('action-deny').checked")
        .await
        .unwrap();
    b.client
        .find(Locator::Id("action-l7"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.client
        .find(Locator::Css("textarea[name=permissions]"))
        .await
        .unwrap()
        .send_keys(r#"[{"Action":"allow","HTTP":{"PathPrefix":"/public"}}]"#)
        .await
        .unwrap();
    let save = b
        .client
        .find(Locator::Css("form.intention-form button[type=submit]"))
        .await
        .unwrap();
    save.click().await.unwrap();
    let refused = b.wait_css(".notice.error").await.unwrap();
    tracing::info!(reason = %refused.text().await.unwrap(), "L7 refused");

    tracing::info!("with api's protocol http (service-defaults), the same save goes through");
    put_json(
        agent,
        "/v1/config",
        json!({"Kind": "service-defaults", "Name": "api", "Protocol": "http"}),
    )
    .await;
    save.click().await.unwrap();
    b.wait_css("tr[data-intention=\"web->api\"][data-action=\"l7\"]")
        .await
        .unwrap();

    tracing::info!(
        "the edge follows the intentions live: deleting it over the API turns it back to allow"
    );
    b.open(&format!("{base}/ui/dc1/services/web/topology"), "topology")
        .await
        .unwrap();
    // An L7 intention counts as deny for the L4 check, as in Consul.
    b.wait_css("g.edge.deny[data-edge=\"web->api\"]")
        .await
        .unwrap();
    let deleted = agent
        .client
        .delete(agent.url("/v1/connect/intentions/exact?source=web&destination=api"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 200);
    b.wait_css("g.edge.allow[data-edge=\"web->api\"]")
        .await
        .unwrap();
}
