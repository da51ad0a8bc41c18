//! Internal RPC over TLS on `127.0.42.x`: one server and one client agent with
//! `verify_incoming`, `verify_outgoing` and `verify_server_hostname`. The client registers
//! and syncs a service through the server; a client agent's certificate cannot make Raft
//! calls to the server, and the RPC port takes no plain connection.

use std::net::{IpAddr, SocketAddr};

use concord_integration::{assert_eventually, init_tracing, AgentSpec, TestAgent};
use serde_json::json;

use super::{https_client_resolving, tls_client, Pki};

const NET: u8 = 42;

fn ip(i: u8) -> IpAddr {
    IpAddr::from([127, 0, NET, i])
}

/// The `tls` stanza of an agent holding the `role` certificate, everything verified.
fn rpc_stanza(pki: &Pki, role: &str) -> serde_json::Value {
    let (cert, key) = pki.leaf(role);
    json!({
        "defaults": {"ca_file": pki.ca(), "cert_file": cert, "key_file": key,
                     "verify_incoming": true, "verify_outgoing": true},
        "internal_rpc": {"verify_server_hostname": true}
    })
}

#[tokio::test]
async fn agents_reach_servers_over_verified_tls_only() {
    init_tracing();
    let pki = Pki::create();
    let server_config = pki.config("server.json", rpc_stanza(&pki, "server"));
    let client_config = pki.config("client.json", rpc_stanza(&pki, "client"));
    let path = |p: &std::path::Path| p.to_str().expect("utf-8").to_string();

    tracing::info!("a server with internal RPC TLS on 127.0.42.1");
    let server = TestAgent::launch(AgentSpec::at("s1", ip(1)).args(&[
        "-server",
        "-bootstrap-expect",
        "1",
        "-config-file",
        &path(&server_config),
    ]))
    .await
    .expect("server");

    tracing::info!("a client agent with a client certificate on 127.0.42.2 joins and registers");
    let client = TestAgent::launch(AgentSpec::at("c1", ip(2)).args(&[
        "-retry-join",
        &ip(1).to_string(),
        "-retry-interval",
        "1s",
        "-config-file",
        &path(&client_config),
    ]))
    .await
    .expect("client agent");

    tracing::info!("a service registered on the client reaches the server's catalog");
    let (status, _) = client
        .put(
            "/v1/agent/service/register",
            json!({"Name": "web", "Port": 8080})
                .to_string()
                .into_bytes(),
        )
        .await
        .expect("register");
    assert_eq!(status, 200);
    assert_eventually!(
        matches!(server.get_json("/v1/catalog/service/web").await,
            Ok((200, _, v)) if v.as_array().is_some_and(|a| a.len() == 1 && a[0]["Node"] == "c1")),
        "web from c1 in the server's catalog"
    );

    let rpc = SocketAddr::new(ip(1), 8300);
    // Dialled by the name servers' certificates carry, resolved to the server.
    let names = [("server.dc1.consul", rpc)];
    let vote = "https://server.dc1.consul:8300/v1/internal/raft/vote";
    let https_client = |tls| https_client_resolving(tls, true, &names);
    tracing::info!("a client agent's certificate cannot make Raft calls to the server");
    let (cert, key) = pki.leaf("client");
    let as_client = https_client(tls_client(&pki.ca(), Some((&cert, &key)), &[b"h2"]));
    let reply = as_client
        .post(vote)
        .body("{}")
        .send()
        .await
        .expect("TLS with a client certificate of the CA");
    assert_eq!(reply.status(), 403);
    let body = reply.text().await.expect("body");
    assert!(
        body.contains("Raft RPC needs a certificate for server.dc1.consul"),
        "{body}"
    );
    tracing::info!("a server certificate passes the check (and the empty vote is then a bad body)");
    let (cert, key) = pki.leaf("server");
    let as_server = https_client(tls_client(&pki.ca(), Some((&cert, &key)), &[b"h2"]));
    let reply = as_server.post(vote).body("{}").send().await.expect("TLS");
    assert_eq!(reply.status(), 400);

    tracing::info!("agents' reads stay open to a client certificate");
    let read = "https://server.dc1.consul:8300/v1/internal/rpc/read";
    let reply = as_client.post(read).body("{}").send().await.expect("TLS");
    assert_ne!(reply.status(), 403);

    tracing::info!("no certificate, or plain HTTP: refused");
    let anonymous = https_client(tls_client(&pki.ca(), None, &[b"h2"]));
    assert!(anonymous.post(vote).body("{}").send().await.is_err());
    let plain = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    assert!(plain
        .post(format!("http://{rpc}/v1/internal/raft/vote"))
        .body("{}")
        .send()
        .await
        .is_err());
    drop(client);
    drop(server);
}
