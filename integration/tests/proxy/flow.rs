//! web's app → web's upstream listener → mTLS → db's sidecar → db's app; a CA rotation
//! keeps the open stream; a deny intention closes it and refuses new ones.

use std::time::Duration;

use concord_integration::apps::tcp_echo;
use concord_integration::sidecar::{free_port, TestProxy};
use concord_integration::{init_tracing, TestAgent};
use tokio::time::Instant;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_flow_through_two_sidecars_until_an_intention_denies_them() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    wait_for_ca(&agent).await;
    let db_app = tcp_echo().await.unwrap();
    let web_app = tcp_echo().await.unwrap();
    let upstream = free_port().unwrap();

    tracing::info!("register db and web with sidecars; web has an upstream to db");
    register_with_sidecar(&agent, "db", db_app.addr.port(), json!([])).await;
    register_with_sidecar(
        &agent,
        "web",
        web_app.addr.port(),
        json!([{"DestinationName": "db", "LocalBindPort": upstream}]),
    )
    .await;
    let db = TestProxy::start(&agent, &["-sidecar-for", "db"]).unwrap();
    let web = TestProxy::start(&agent, &["-sidecar-for", "web"]).unwrap();

    tracing::info!("bytes flow through both sidecars");
    assert_eventually!(
        roundtrip(loopback(upstream), b"hello").await.is_some(),
        "echo through the upstream; web:\n{}\ndb:\n{}",
        web.logs(),
        db.logs()
    );
    let mut held = TcpStream::connect(loopback(upstream)).await.unwrap();
    assert!(echo_on(&mut held, b"one").await.is_some());
    assert!(
        web.metric(
            "concord_proxy_tcp_connections_opened_total{direction=\"outbound\",service=\"db\"}"
        )
        .await
            >= 2.0
    );
    assert!(
        db.metric(
            "concord_proxy_tcp_connections_opened_total{direction=\"inbound\",service=\"web\"}"
        )
        .await
            >= 2.0
    );
    assert!(
        db.metric("concord_proxy_tcp_bytes_received_total{direction=\"inbound\",service=\"web\"}")
            .await
            >= 8.0
    );

    tracing::info!("rotate the CA: both sidecars get new leaves; the open stream survives");
    let count = |p: &TestProxy, what: &str| p.logs().matches(what).count();
    let before: Vec<(usize, usize)> = [&db, &web]
        .iter()
        .map(|p| {
            (
                count(p, "leaf certificate updated"),
                count(p, "CA roots updated"),
            )
        })
        .collect();
    let serial_of = |service: &'static str| {
        let agent = &agent;
        async move {
            let path = format!("/v1/agent/connect/ca/leaf/{service}");
            let (_, _, leaf) = agent.get_json(&path).await.unwrap();
            leaf["SerialNumber"].as_str().unwrap().to_string()
        }
    };
    let old_serials = [serial_of("db").await, serial_of("web").await];
    let (code, body) = agent
        .put(
            "/v1/connect/ca/configuration",
            json!({"Provider": "consul", "Config": {"PrivateKeyType": "ec", "PrivateKeyBits": 384}})
                .to_string(),
        )
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    for (proxy, (leaves, roots)) in [&db, &web].into_iter().zip(before) {
        assert_eventually!(
            count(proxy, "leaf certificate updated") > leaves,
            "the sidecar follows the renewed leaf:\n{}",
            proxy.logs()
        );
        assert_eventually!(
            count(proxy, "CA roots updated") > roots,
            "the sidecar follows the new roots:\n{}",
            proxy.logs()
        );
    }
    for ((proxy, service), old) in [(&db, "db"), (&web, "web")].into_iter().zip(old_serials) {
        assert_eventually!(
            serial_of(service).await != old,
            "the agent renews {service}'s leaf from the new root"
        );
        let serial = serial_of(service).await;
        assert_eventually!(
            proxy.logs().contains(&serial),
            "{service}'s sidecar presents the leaf the agent now serves ({serial}):\n{}",
            proxy.logs()
        );
    }
    assert!(
        echo_on(&mut held, b"two").await.is_some(),
        "the stream opened before the rotation still works"
    );
    assert!(
        roundtrip(loopback(upstream), b"after rotation")
            .await
            .is_some(),
        "new connections handshake with the new leaves"
    );

    tracing::info!("deny web → db: the open stream closes within a second, new ones fail");
    // Through the HTTP API, so the clock starts at the write (a CLI process would add its
    // own start-up time under load).
    let written = Instant::now();
    let (code, body) = agent
        .put(
            "/v1/connect/intentions/exact?source=web&destination=db",
            json!({"Action": "deny"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), held.read(&mut buf)).await;
    let elapsed = written.elapsed();
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the open stream is closed: {read:?}"
    );
    tracing::info!(?elapsed, "open stream closed after the intention write");
    assert!(elapsed < Duration::from_secs(1), "closed after {elapsed:?}");
    assert!(roundtrip(loopback(upstream), b"denied").await.is_none());
    assert!(
        db.metric("concord_proxy_intention_denials_total{source=\"web\"")
            .await
            >= 2.0,
        "{}",
        db.metrics().await
    );

    tracing::info!("delete the intention: allowed again (the default allows)");
    let out = agent.cli(&["intention", "delete", "web", "db"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eventually!(
        roundtrip(loopback(upstream), b"again").await.is_some(),
        "allowed again; db:\n{}",
        db.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_proxy_reaches_a_registered_sidecar() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    wait_for_ca(&agent).await;
    let db_app = tcp_echo().await.unwrap();
    register_with_sidecar(&agent, "db", db_app.addr.port(), json!([])).await;
    let db = TestProxy::start(&agent, &["-sidecar-for", "db"]).unwrap();
    let upstream = free_port().unwrap();

    tracing::info!("a proxy with no registration: identity web, one upstream to db");
    let flag = format!("db:{upstream}");
    let web = TestProxy::start(&agent, &["-service", "web", "-upstream", &flag]).unwrap();
    assert_eventually!(
        roundtrip(loopback(upstream), b"standalone").await.is_some(),
        "web (standalone) reaches db; web:\n{}\ndb:\n{}",
        web.logs(),
        db.logs()
    );
    assert!(
        db.metric(
            "concord_proxy_tcp_connections_opened_total{direction=\"inbound\",service=\"web\"}"
        )
        .await
            >= 1.0
    );
}
