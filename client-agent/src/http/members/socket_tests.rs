//! The gossip endpoints over real pools on 127.0.0.1 (port 0, fast timings), through
//! `Router::oneshot`. Each test waits on the condition it needs (a member seen, an event
//! stored), never a fixed sleep.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use concord_net::gossip::{self, Gossip, MemberStatus, Timing};
use serde_json::Value;
use tower::ServiceExt as _;

use crate::agent::AgentCore;
use crate::catalog_cache::CatalogSnapshot;
use crate::config::Config;
use crate::membership::{self, Membership};
use crate::rpc_client::ServerClient;

/// How long any condition may take on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(20);

async fn pool(name: &str, tags: &[(&str, &str)], keys: Vec<String>) -> Gossip {
    let (udp, tcp) = gossip::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut config = gossip::Config::new(name, "127.0.0.1:0".parse().unwrap());
    config.timing = Timing::fast();
    config.keys = keys;
    config.tags = tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Gossip::start(config, udp, tcp).unwrap()
}

struct Agent {
    app: Router,
    core: Arc<AgentCore>,
    gossip: Gossip,
    rpc: Arc<ServerClient>,
}

async fn agent(name: &str, keys: Vec<String>) -> Agent {
    let mut config = Config::new(name, Vec::new());
    config.node_id = "00000000-0000-0000-0000-000000000009".into();
    let tags = membership::member_tags(&config, 0);
    let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let g = pool(name, &tags, keys).await;
    let rpc = Arc::new(ServerClient::new(Vec::new()).unwrap());
    let (_tx, view) = tokio::sync::watch::channel(Arc::new(CatalogSnapshot::default()));
    let m = Membership::new(g.clone());
    let (core, results) = AgentCore::new(config, rpc.clone(), view, Some(m.clone()));
    tokio::spawn(core.clone().apply_check_results(results));
    tokio::spawn(crate::agent::follow_pool(
        core.clone(),
        m,
        std::future::pending(),
    ));
    Agent {
        app: crate::http::router(core.clone()),
        core,
        gossip: g,
        rpc,
    }
}

fn addr(g: &Gossip) -> SocketAddr {
    g.local_member().addr
}

async fn call(
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
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn get_json(app: &Router, uri: &str) -> Value {
    let (status, _, body) = call(app, Method::GET, uri, "").await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `check` until it holds, or fails the test after [`PATIENCE`].
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn status_of(g: &Gossip, name: &str) -> Option<MemberStatus> {
    g.members()
        .into_iter()
        .find(|m| m.name == name)
        .map(|m| m.status)
}

#[tokio::test]
async fn join_then_members_lists_the_pool() {
    let a = agent("a", Vec::new()).await;
    let server = pool(
        "srv",
        &[("role", "consul"), ("dc", "dc1"), ("port", "8300")],
        Vec::new(),
    )
    .await;
    let uri = format!("/v1/agent/join/{}", addr(&server));
    let (status, _, body) = call(&a.app, Method::PUT, &uri, "").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    eventually("srv alive in a's view", || {
        status_of(&a.gossip, "srv") == Some(MemberStatus::Alive)
    })
    .await;

    let members = get_json(&a.app, "/v1/agent/members").await;
    let names: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{members}");
    assert!(names.contains(&"a") && names.contains(&"srv"));
    let srv = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Name"] == "srv")
        .unwrap();
    assert_eq!(srv["Status"], 1);
    assert_eq!(srv["Addr"], "127.0.0.1");
    assert_eq!(srv["Port"], addr(&server).port());
    assert_eq!(
        (srv["ProtocolCur"].clone(), srv["DelegateCur"].clone()),
        (2.into(), 4.into())
    );
    let filtered = get_json(
        &a.app,
        "/v1/agent/members?filter=Tags.role%20%3D%3D%20consul",
    )
    .await;
    assert_eq!(filtered.as_array().unwrap().len(), 1, "{filtered}");

    // The server in the pool becomes a server to talk to: its IP and its `port` tag.
    let expected: SocketAddr = "127.0.0.1:8300".parse().unwrap();
    eventually("server learned from the pool", || {
        a.rpc.servers() == vec![expected]
    })
    .await;

    let me = get_json(&a.app, "/v1/agent/self").await;
    assert_eq!(me["Member"]["Name"], "a");
    assert_eq!(me["Member"]["Tags"]["role"], "node");
    assert_eq!(me["Coord"]["Vec"].as_array().unwrap().len(), 8);
    server.shutdown();
    a.gossip.shutdown();
}

#[tokio::test]
async fn join_failure_is_a_multierror() {
    let a = agent("a", Vec::new()).await;
    let (status, _, body) = call(&a.app, Method::PUT, "/v1/agent/join/127.0.0.1:1", "").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body.starts_with("1 error occurred:\n\t* Failed to join 127.0.0.1:1: "),
        "{body}"
    );
    let (status, _, body) = call(&a.app, Method::PUT, "/v1/agent/join/x?wan=1", "").await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Must be a server to join WAN cluster"
        )
    );
    a.gossip.shutdown();
}

#[tokio::test]
async fn force_leave_marks_a_failed_member_left() {
    let a = agent("a", Vec::new()).await;
    let b = pool("b", &[], Vec::new()).await;
    a.gossip.join(&[addr(&b)]).await.unwrap();
    eventually("b alive", || {
        status_of(&a.gossip, "b") == Some(MemberStatus::Alive)
    })
    .await;
    b.shutdown();
    eventually("b failed", || {
        status_of(&a.gossip, "b") == Some(MemberStatus::Failed)
    })
    .await;

    let (status, _, body) = call(&a.app, Method::PUT, "/v1/agent/force-leave/nobody", "").await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "agent: No node found with name 'nobody'"
        )
    );
    let (status, _, _) = call(&a.app, Method::PUT, "/v1/agent/force-leave/b", "").await;
    assert_eq!(status, StatusCode::OK);
    eventually("b left", || {
        status_of(&a.gossip, "b") == Some(MemberStatus::Left)
    })
    .await;
    let (status, _, _) = call(&a.app, Method::PUT, "/v1/agent/force-leave/b?prune", "").await;
    assert_eq!(status, StatusCode::OK);
    eventually("b pruned", || status_of(&a.gossip, "b").is_none()).await;
    a.gossip.shutdown();
}

#[tokio::test]
async fn events_are_filtered_on_receipt_and_listed_with_blocking() {
    let a = agent("web-1", Vec::new()).await;
    a.core
        .register_service(
            crate::definition::prepare_service(
                &serde_json::from_str(r#"{"Name":"web","Tags":["v1"]}"#).unwrap(),
                "web-1",
                false,
            )
            .unwrap(),
            false,
        )
        .await;

    let (status, _, body) = call(&a.app, Method::PUT, "/v1/event/fire/", "").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::BAD_REQUEST, "Missing name")
    );
    let (status, _, body) = call(&a.app, Method::PUT, "/v1/event/fire/x?tag=v1", "").await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Cannot provide tag filter without service filter"
        )
    );

    let (_, headers, body) = call(&a.app, Method::GET, "/v1/event/list", "").await;
    assert_eq!(body, "[]");
    assert_eq!(headers["x-consul-index"], "1");

    // Not for us: another node, or a service we don't run, or a tag it doesn't have.
    for query in ["node=db", "service=db", "service=web&tag=v2"] {
        let uri = format!("/v1/event/fire/skip?{query}");
        let (status, _, body) = call(&a.app, Method::PUT, &uri, "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let uri = "/v1/event/fire/deploy?node=web&service=we&tag=v";
    let (status, _, body) = call(&a.app, Method::PUT, uri, "payload").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let fired: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(fired["Name"], "deploy");
    assert_eq!(fired["Payload"], "cGF5bG9hZA==");
    assert_eq!(
        (fired["Version"].clone(), fired["LTime"].clone()),
        (1.into(), 0.into())
    );
    let id = fired["ID"].as_str().unwrap().to_string();
    let m = a.core.membership.clone().unwrap();
    eventually("deploy stored", || !m.events().is_empty()).await;

    let (_, headers, body) = call(&a.app, Method::GET, "/v1/event/list", "").await;
    let list: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["deploy"], "filtered events are not kept");
    assert_eq!(list[0]["ID"], id.as_str());
    let index: u64 = headers["x-consul-index"].to_str().unwrap().parse().unwrap();
    let raw = uuid::Uuid::parse_str(&id).unwrap().as_u128();
    assert_eq!(index, membership::event_index(raw));
    assert_eq!(
        get_json(&a.app, "/v1/event/list?name=other").await,
        serde_json::json!([])
    );

    // A blocking list at the current index returns when the next event arrives.
    let app = a.app.clone();
    let blocked = tokio::spawn(async move {
        call(
            &app,
            Method::GET,
            &format!("/v1/event/list?index={index}&wait=30s"),
            "",
        )
        .await
    });
    let (status, _, _) = call(&a.app, Method::PUT, "/v1/event/fire/second", "").await;
    assert_eq!(status, StatusCode::OK);
    let (_, headers, body) = tokio::time::timeout(PATIENCE, blocked)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        headers["x-consul-index"].to_str().unwrap(),
        index.to_string()
    );
    assert!(body.contains("second"), "{body}");
    a.gossip.shutdown();
}

#[tokio::test]
async fn keyring_without_encryption_says_so() {
    let a = agent("a", Vec::new()).await;
    let (status, _, body) = call(&a.app, Method::GET, "/v1/operator/keyring", "").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body.contains("a: Keyring is empty (encryption not enabled)"),
        "{body}"
    );
    let key = gossip::keygen();
    let (status, _, body) = call(
        &a.app,
        Method::POST,
        "/v1/operator/keyring",
        &format!(r#"{{"Key":"{key}"}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body.contains("No keyring to modify (encryption not enabled)"),
        "{body}"
    );
    let (status, _, body) = call(
        &a.app,
        Method::GET,
        "/v1/operator/keyring?relay-factor=9",
        "",
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "Invalid relay-factor: Relay factor must be in range: [0, 5]"
        )
    );
    let (status, _, _) = call(
        &a.app,
        Method::PUT,
        "/v1/operator/keyring?local-only=true",
        "{}",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    a.gossip.shutdown();
}

#[tokio::test]
async fn keyring_rotation_reaches_every_member() {
    let k1 = gossip::keygen();
    let k2 = gossip::keygen();
    let a = agent("a", vec![k1.clone()]).await;
    let b = agent("b", vec![k1.clone()]).await;
    a.gossip.join(&[addr(&b.gossip)]).await.unwrap();
    eventually("b alive", || {
        status_of(&a.gossip, "b") == Some(MemberStatus::Alive)
    })
    .await;

    let body = |k: &str| format!(r#"{{"Key":"{k}"}}"#);
    let (status, _, text) = call(&a.app, Method::POST, "/v1/operator/keyring", &body(&k2)).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, ""));
    eventually("b has k2", || {
        b.gossip.list_keys().iter().any(|k| k.key == k2)
    })
    .await;
    let (status, _, _) = call(&a.app, Method::PUT, "/v1/operator/keyring", &body(&k2)).await;
    assert_eq!(status, StatusCode::OK);
    eventually("k2 primary on b", || {
        b.gossip
            .list_keys()
            .iter()
            .any(|k| k.key == k2 && k.primary)
    })
    .await;
    let (status, _, text) = call(&a.app, Method::DELETE, "/v1/operator/keyring", &body(&k2)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        text.contains("removing the primary key is not allowed"),
        "{text}"
    );
    let (status, _, _) = call(&a.app, Method::DELETE, "/v1/operator/keyring", &body(&k1)).await;
    assert_eq!(status, StatusCode::OK);
    eventually("k1 gone from b", || b.gossip.list_keys().len() == 1).await;

    eventually("both members report k2", || {
        b.gossip.list_keys().first().is_some_and(|k| k.members == 2)
    })
    .await;
    let list = get_json(&b.app, "/v1/operator/keyring").await;
    assert_eq!(list[0]["WAN"], false);
    assert_eq!(list[0]["Datacenter"], "dc1");
    assert_eq!(list[0]["NumNodes"], 2);
    assert_eq!(list[0]["Keys"][&k2], 2);
    assert_eq!(list[0]["PrimaryKeys"][&k2], 2);
    assert_eq!(
        status_of(&a.gossip, "b"),
        Some(MemberStatus::Alive),
        "still one pool"
    );

    let (status, _, text) = call(
        &a.app,
        Method::POST,
        "/v1/operator/keyring",
        r#"{"Key":"AAAA"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        text.contains("key size must be 16, 24 or 32 bytes"),
        "{text}"
    );
    a.gossip.shutdown();
    b.gossip.shutdown();
}

/// Install, use and remove back to back, each sent to a different agent, with no wait in
/// between: each answer comes once every member reports the step, so the next step never
/// finds a member not ready for it, and the counts are real per-member facts.
#[tokio::test]
async fn keyring_rotation_back_to_back_across_three_agents() {
    let k1 = gossip::keygen();
    let k2 = gossip::keygen();
    let a = agent("a", vec![k1.clone()]).await;
    let b = agent("b", vec![k1.clone()]).await;
    let c = agent("c", vec![k1.clone()]).await;
    a.gossip.join(&[addr(&b.gossip)]).await.unwrap();
    c.gossip.join(&[addr(&b.gossip)]).await.unwrap();
    let agents = [&a, &b, &c];
    eventually("everyone sees three alive members with k1", || {
        agents.iter().all(|x| {
            let keys = x.gossip.list_keys();
            keys.len() == 1 && keys[0].members == 3 && keys[0].primaries == 3
        })
    })
    .await;

    let body = format!(r#"{{"Key":"{k2}"}}"#);
    let (status, _, text) = call(&a.app, Method::POST, "/v1/operator/keyring", &body).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, ""), "install");
    // Right after the answer, the counts already hold for every member.
    let list = get_json(&a.app, "/v1/operator/keyring").await;
    assert_eq!(list[0]["Keys"][&k2], 3, "{list}");
    assert_eq!(list[0]["PrimaryKeys"][&k1], 3, "{list}");
    assert!(list[0]["PrimaryKeys"].get(&k2).is_none(), "{list}");

    let (status, _, text) = call(&b.app, Method::PUT, "/v1/operator/keyring", &body).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, ""), "use");
    let list = get_json(&b.app, "/v1/operator/keyring").await;
    assert_eq!(list[0]["PrimaryKeys"][&k2], 3, "{list}");
    assert!(list[0]["PrimaryKeys"].get(&k1).is_none(), "{list}");
    assert_eq!(list[0]["Keys"][&k1], 3, "{list}");

    let old = format!(r#"{{"Key":"{k1}"}}"#);
    let (status, _, text) = call(&c.app, Method::DELETE, "/v1/operator/keyring", &old).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, ""), "remove");
    let list = get_json(&c.app, "/v1/operator/keyring").await;
    assert_eq!(
        list,
        serde_json::json!([{
            "WAN": false,
            "Datacenter": "dc1",
            "Segment": "",
            "Keys": {&k2: 3},
            "PrimaryKeys": {&k2: 3},
            "NumNodes": 3,
        }])
    );
    for x in agents {
        assert_eq!(x.gossip.list_keys().len(), 1);
        assert_eq!(x.gossip.list_keys()[0].key, k2);
    }

    // Still one pool: a member's change of metadata reaches the others under k2 alone.
    let mut tags = b.gossip.local_member().tags;
    tags.insert("probe".into(), "after-rotation".into());
    b.gossip.set_tags(tags).unwrap();
    eventually("a and c see b's new tag and everyone alive", || {
        [&a, &c].iter().all(|x| {
            x.gossip.members().iter().any(|m| {
                m.name == "b" && m.tags.get("probe").map(String::as_str) == Some("after-rotation")
            }) && x.gossip.members().len() == 3
                && x.gossip
                    .members()
                    .iter()
                    .all(|m| m.status == MemberStatus::Alive)
        })
    })
    .await;
    for x in agents {
        x.gossip.shutdown();
    }
}

/// A member that does not follow a change makes it time out (after the real
/// [`membership::KEYRING_WAIT`]) with Serf's aggregate text and one line per such member.
#[tokio::test]
async fn keyring_change_reports_members_that_did_not_follow() {
    let k1 = gossip::keygen();
    let k2 = gossip::keygen();
    let a = agent("a", vec![k1.clone()]).await;
    let b = agent("b", vec![k1.clone()]).await;
    a.gossip.join(&[addr(&b.gossip)]).await.unwrap();
    eventually("b alive", || {
        status_of(&a.gossip, "b") == Some(MemberStatus::Alive)
    })
    .await;
    // b ignores a's states: it has applied one from a Lamport time a cannot reach.
    let bm = b.core.membership.clone().unwrap();
    assert!(bm.apply_keyring_state(
        (u64::MAX, "zz".into()),
        &membership::KeyringState {
            keys: vec![k1.clone()]
        }
    ));
    let body = format!(r#"{{"Key":"{k2}"}}"#);
    let (status, _, text) = call(&a.app, Method::POST, "/v1/operator/keyring", &body).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        text,
        "2 errors occurred:\n\t* dc1 (LAN) error: 1/2 nodes reported success\n\t* b: has not installed the key yet\n\n"
    );
    a.gossip.shutdown();
    b.gossip.shutdown();
}

#[tokio::test]
async fn coordinates_come_from_gossip() {
    let a = agent("a", Vec::new()).await;
    let nodes = get_json(&a.app, "/v1/coordinate/nodes").await;
    let me = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["Node"] == "a")
        .expect("own coordinate");
    assert_eq!(me["Segment"], "");
    assert_eq!(me["Coord"]["Vec"].as_array().unwrap().len(), 8);
    assert_eq!(
        get_json(&a.app, "/v1/coordinate/nodes?segment=alpha").await,
        serde_json::json!([])
    );
    let node = get_json(&a.app, "/v1/coordinate/node/a").await;
    assert_eq!(node.as_array().unwrap().len(), 1);
    let (status, _, body) = call(&a.app, Method::GET, "/v1/coordinate/node/nobody", "").await;
    assert_eq!((status, body.as_str()), (StatusCode::NOT_FOUND, ""));
    let dcs = get_json(&a.app, "/v1/coordinate/datacenters").await;
    assert_eq!(dcs[0]["Datacenter"], "dc1");
    assert_eq!(dcs[0]["AreaID"], "wan");

    let good = r#"{"Node":"a","Coord":{"Vec":[0,0,0,0,0,0,0,0],"Error":1.5,"Adjustment":0,"Height":0.00001}}"#;
    let (status, _, _) = call(&a.app, Method::PUT, "/v1/coordinate/update", good).await;
    assert_eq!(status, StatusCode::OK);
    let short = r#"{"Node":"a","Coord":{"Vec":[0,0],"Error":1.5,"Adjustment":0,"Height":0.00001}}"#;
    let (status, _, body) = call(&a.app, Method::PUT, "/v1/coordinate/update", short).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "incompatible coordinate")
    );
    let (status, _, body) = call(&a.app, Method::PUT, "/v1/coordinate/update", "{").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.starts_with("Request decode failed: "), "{body}");
    a.gossip.shutdown();
}

#[tokio::test]
async fn leave_is_graceful() {
    let a = agent("a", Vec::new()).await;
    let b = pool("b", &[], Vec::new()).await;
    b.join(&[addr(&a.gossip)]).await.unwrap();
    eventually("a alive in b", || {
        status_of(&b, "a") == Some(MemberStatus::Alive)
    })
    .await;
    let (status, _, _) = call(&a.app, Method::PUT, "/v1/agent/leave", "").await;
    assert_eq!(status, StatusCode::OK);
    eventually("a left in b's view", || {
        status_of(&b, "a") == Some(MemberStatus::Left)
    })
    .await;
    b.shutdown();
}
