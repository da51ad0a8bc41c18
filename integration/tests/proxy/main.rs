//! The sidecar proxy end to end: a dev agent, echo apps, and real `concord connect proxy`
//! processes. Bytes flow through two sidecars over mTLS; intentions refuse new
//! connections and close open ones; clients without a certificate from the cluster's CA
//! and servers with the wrong identity are refused; a CA rotation drops no connection; a
//! changed registration changes the listeners.

// Test helpers outside #[test] functions may unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod cli;
mod flow;
mod http;
mod identity;
mod metrics;
mod otlp;
mod reconfigure;
mod refused;

use std::net::SocketAddr;
use std::time::Duration;

use concord_integration::sidecar::free_port;
use concord_integration::{assert_eventually, TestAgent};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Waits until the leader has made the CA.
async fn wait_for_ca(agent: &TestAgent) {
    assert_eventually!(
        agent
            .get_json("/v1/agent/connect/ca/roots")
            .await
            .is_ok_and(|(_, _, r)| r["ActiveRootID"].as_str().is_some_and(|id| !id.is_empty())),
        "the leader initializes the CA; logs:\n{}",
        agent.logs()
    );
}

/// Registers `service` (its app on `app_port`) and a sidecar `<service>-sidecar-proxy` with
/// `upstreams`; returns the sidecar's public port.
async fn register_with_sidecar(
    agent: &TestAgent,
    service: &str,
    app_port: u16,
    upstreams: Value,
) -> u16 {
    let (code, body) = agent
        .put(
            "/v1/agent/service/register",
            json!({"Name": service, "Port": app_port}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let public = free_port().unwrap();
    register_proxy(
        agent,
        &format!("{service}-sidecar-proxy"),
        service,
        public,
        app_port,
        upstreams,
    )
    .await;
    public
}

/// Registers a connect-proxy `id` for `service` at `public` (loopback).
async fn register_proxy(
    agent: &TestAgent,
    id: &str,
    service: &str,
    public: u16,
    app_port: u16,
    upstreams: Value,
) {
    let body = json!({
        "Kind": "connect-proxy", "ID": id, "Name": format!("{service}-sidecar-proxy"),
        "Port": public, "Address": "127.0.0.1",
        "Proxy": {
            "DestinationServiceName": service, "DestinationServiceID": service,
            "LocalServiceAddress": "127.0.0.1", "LocalServicePort": app_port,
            "Config": {"bind_address": "127.0.0.1"},
            "Upstreams": upstreams,
        },
    });
    let (code, text) = agent
        .put("/v1/agent/service/register", body.to_string())
        .await
        .unwrap();
    assert_eq!(code, 200, "{text}");
}

/// Connects to `addr`, sends `msg` and reads it echoed back; `None` when refused, closed or
/// slow.
async fn roundtrip(addr: SocketAddr, msg: &[u8]) -> Option<()> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    echo_on(&mut s, msg).await
}

/// Sends `msg` on an open stream and reads it back.
async fn echo_on<S: AsyncReadExt + AsyncWriteExt + Unpin>(s: &mut S, msg: &[u8]) -> Option<()> {
    s.write_all(msg).await.ok()?;
    let mut buf = vec![0u8; msg.len()];
    match tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await {
        Ok(Ok(_)) if buf == msg => Some(()),
        _ => None,
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
