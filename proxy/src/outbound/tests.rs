//! The L4 upstream path with a plain-TCP connector and hand-made snapshots.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;

use futures::future::BoxFuture;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::l7::UpstreamPolicy;

/// Plain TCP; refuses endpoints whose id starts with `bad`.
struct PlainTcp;

impl Connector for PlainTcp {
    fn connect(&self, endpoint: &Endpoint) -> BoxFuture<'static, io::Result<BoxIo>> {
        let endpoint = endpoint.clone();
        Box::pin(async move {
            if endpoint.id.starts_with("bad") {
                return Err(io::Error::new(io::ErrorKind::ConnectionRefused, "bad"));
            }
            let tcp = TcpStream::connect(endpoint.addr).await?;
            Ok(Box::new(tcp) as BoxIo)
        })
    }
}

fn chain() -> Value {
    json!({
        "StartNode": "resolver:db.default.default.dc1",
        "Nodes": {"resolver:db.default.default.dc1": {"Type": "resolver", "Resolver": {
            "Target": "db.default.default.dc1",
            "Failover": {"Targets": ["db.default.default.dc2"]}}}},
    })
}

fn endpoint(id: &str, addr: SocketAddr) -> Endpoint {
    Endpoint {
        id: id.into(),
        addr,
        service: "db".into(),
    }
}

/// An echo server that prefixes replies with its name.
async fn echo(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).await.unwrap();
                s.write_all(name.as_bytes()).await.unwrap();
                s.write_all(&buf[..n]).await.unwrap();
            });
        }
    });
    addr
}

#[test]
fn chain_walk_finds_resolver_targets_through_routers_and_splitters() {
    assert_eq!(
        l4_targets(&chain()),
        ["db.default.default.dc1", "db.default.default.dc2"]
    );
    let l7 = json!({
        "StartNode": "router:web",
        "Nodes": {
            "router:web": {"Type": "router", "Routes": [
                {"NextNode": "resolver:admin"}, {"NextNode": "splitter:web"}]},
            "splitter:web": {"Type": "splitter", "Splits": [
                {"Weight": 10, "NextNode": "resolver:v2"}, {"Weight": 90, "NextNode": "resolver:v1"}]},
            "resolver:v1": {"Type": "resolver", "Resolver": {"Target": "v1.web"}},
        },
    });
    assert_eq!(l4_targets(&l7), ["v1.web"]);
    assert!(l4_targets(&Value::Null).is_empty());
    let looping = json!({"StartNode": "a", "Nodes": {"a": {"Type": "router", "Routes": [{"NextNode": "a"}]}}});
    assert!(l4_targets(&looping).is_empty());
}

#[tokio::test]
async fn dials_round_robin_skipping_failed_instances_and_fails_over() {
    let a = echo("a:").await;
    let b = echo("b:").await;
    let mut endpoints = HashMap::new();
    endpoints.insert(
        "db.default.default.dc1".to_string(),
        vec![endpoint("a", a), endpoint("bad", b), endpoint("b", b)],
    );
    let (tx, rx) = watch::channel(UpstreamSnapshot {
        chain: chain(),
        endpoints,
    });
    let metrics = L4Metrics::default();
    let out = Outbound::new(
        "db".into(),
        Some("tcp".into()),
        rx,
        Arc::new(PlainTcp),
        metrics.clone(),
        Http {
            tracer: None,
            policy: UpstreamPolicy::default(),
            metrics: crate::l7::L7Metrics::new(&mut Default::default()),
            engines: Default::default(),
        },
    );
    let mut seen = Vec::new();
    for _ in 0..3 {
        let mut io = out.dial().await.unwrap();
        io.write_all(b"hi").await.unwrap();
        let mut reply = Vec::new();
        io.read_to_end(&mut reply).await.unwrap();
        seen.push(String::from_utf8(reply).unwrap());
    }
    // a, then bad (skipped to b), then b.
    assert_eq!(seen, ["a:hi", "b:hi", "b:hi"]);
    assert_eq!(
        metrics
            .connect_failures
            .get_or_create(&L4Metrics::conn(OUTBOUND, "db"))
            .get(),
        1
    );

    // The primary target empties: traffic fails over to the next target.
    tx.send_modify(|s| {
        s.endpoints
            .insert("db.default.default.dc1".into(), Vec::new());
        s.endpoints
            .insert("db.default.default.dc2".into(), vec![endpoint("a2", a)]);
    });
    let mut io = out.dial().await.unwrap();
    io.write_all(b"x").await.unwrap();
    let mut reply = Vec::new();
    io.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, b"a:x");

    tx.send_modify(|s| s.endpoints.clear());
    assert!(out.dial().await.is_none());
}
