//! The outbound side refuses a server that does not prove the destination's identity:
//! web's upstream to db is pointed (by a rogue registration) at api's sidecar.

use concord_integration::apps::tcp_echo;
use concord_integration::sidecar::{free_port, TestProxy};
use concord_integration::{init_tracing, TestAgent};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbound_side_refuses_a_server_with_the_wrong_identity() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    wait_for_ca(&agent).await;
    let api_app = tcp_echo().await.unwrap();
    let web_app = tcp_echo().await.unwrap();
    let upstream = free_port().unwrap();

    tracing::info!("api has a real sidecar; a rogue registration claims api's port is db");
    let api_public = register_with_sidecar(&agent, "api", api_app.addr.port(), json!([])).await;
    register_proxy(&agent, "db-rogue", "db", api_public, 1, json!([])).await;
    register_with_sidecar(
        &agent,
        "web",
        web_app.addr.port(),
        json!([{"DestinationName": "db", "LocalBindPort": upstream}]),
    )
    .await;
    let api = TestProxy::start(&agent, &["-sidecar-for", "api"]).unwrap();
    let mut web = TestProxy::start(&agent, &["-sidecar-for", "web"]).unwrap();

    tracing::info!("web's sidecar dials api's sidecar for db and refuses its certificate");
    assert_eventually!(
        roundtrip(loopback(upstream), b"hello").await.is_none()
            && web
                .metric("concord_proxy_tls_handshake_failures_total{direction=\"outbound\"}")
                .await
                >= 1.0,
        "the outbound handshake fails on identity; web:\n{}\napi:\n{}",
        web.logs(),
        api.logs()
    );
    assert!(web.logs().contains("is not the expected"), "{}", web.logs());
    assert_eq!(
        api.metric("concord_proxy_tcp_connections_opened_total")
            .await,
        0.0,
        "nothing reached api's app"
    );

    tracing::info!("SIGTERM: the proxy closes its listeners and exits cleanly");
    let status = web.stop().await.unwrap();
    assert!(status.success(), "{status:?}\n{}", web.logs());
    assert!(web.logs().contains("shutting down"), "{}", web.logs());
    assert!(TcpStream::connect(loopback(upstream)).await.is_err());
}
