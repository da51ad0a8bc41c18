//! The sidecar follows its registration: an upstream added to it gets a listener, a removed
//! one stops accepting, a moved local app rebinds the public listener on the same port, and
//! connections it already carried stay open.

use concord_integration::apps::tcp_echo;
use concord_integration::sidecar::{free_port, TestProxy};
use concord_integration::{init_tracing, TestAgent};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_follow_the_registration() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    wait_for_ca(&agent).await;
    let db_app = tcp_echo().await.unwrap();
    let web_app = tcp_echo().await.unwrap();
    let db_public = register_with_sidecar(&agent, "db", db_app.addr.port(), json!([])).await;
    let web_public = register_with_sidecar(&agent, "web", web_app.addr.port(), json!([])).await;
    let db = TestProxy::start(&agent, &["-sidecar-for", "db"]).unwrap();
    let web = TestProxy::start(&agent, &["-sidecar-for", "web"]).unwrap();
    let upstream = free_port().unwrap();
    let reregister = |upstreams: Value| {
        let agent = &agent;
        async move {
            register_proxy(
                agent,
                "web-sidecar-proxy",
                "web",
                web_public,
                web_app.addr.port(),
                upstreams,
            )
            .await
        }
    };

    tracing::info!("add an upstream to db: the running sidecar opens its listener");
    reregister(json!([{"DestinationName": "db", "LocalBindPort": upstream}])).await;
    assert_eventually!(
        roundtrip(loopback(upstream), b"hello").await.is_some(),
        "the new upstream carries traffic; web:\n{}\ndb:\n{}",
        web.logs(),
        db.logs()
    );
    let mut held = TcpStream::connect(loopback(upstream)).await.unwrap();
    assert!(echo_on(&mut held, b"held").await.is_some());

    tracing::info!("remove it: the listener closes, the open stream stays");
    reregister(json!([])).await;
    assert_eventually!(
        TcpStream::connect(loopback(upstream)).await.is_err(),
        "the listener stops; web:\n{}",
        web.logs()
    );
    assert!(echo_on(&mut held, b"still").await.is_some());

    tracing::info!("db's app moves: its sidecar rebinds the same public port for the new app");
    reregister(json!([{"DestinationName": "db", "LocalBindPort": upstream}])).await;
    assert_eventually!(
        roundtrip(loopback(upstream), b"before").await.is_some(),
        "the upstream is back; web:\n{}",
        web.logs()
    );
    let moved = tcp_echo().await.unwrap();
    register_proxy(
        &agent,
        "db-sidecar-proxy",
        "db",
        db_public,
        moved.addr.port(),
        json!([]),
    )
    .await;
    drop(db_app);
    assert_eventually!(
        db.logs().matches("public listener ready").count() == 2,
        "db rebinds its public listener; db:\n{}",
        db.logs()
    );
    assert_eventually!(
        roundtrip(loopback(upstream), b"moved").await.is_some(),
        "traffic reaches the moved app; db:\n{}",
        db.logs()
    );
    assert!(
        !db.logs().contains("Address already in use"),
        "{}",
        db.logs()
    );
}
