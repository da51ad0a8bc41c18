//! Through the public API only: a server with a data dir keeps its KV across a restart, and
//! restarting with `bootstrap_expect = 1` on an initialized dir is not an error.

// A test binary: its helpers panic on failure by design (clippy's allow-unwrap-in-tests only
// covers `#[test]` functions themselves).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use concord_api::kv::KvOp;
use concord_api::rpc::{
    Query, QueryOptions, QueryResult, ReadRequest, ReadResponse, WriteRequest, WriteResponse,
    WriteResult, READ_PATH, WRITE_PATH,
};
use concord_server::{Config, Server};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(10);

async fn start(dir: &Path) -> (Server, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config {
        data_dir: Some(dir.to_path_buf()),
        dev: true,
        rpc_max_conns_per_client: 0,
        group_commit: false,
        ..Config::new("server-1", "0b7e9d6a-5f43-4c1e-9a1f-3c2d1e0f9a8b", addr)
    };
    let server = Server::start(config, listener).await.unwrap();
    assert_eq!(server.rpc_addr(), addr);
    server.wait_for_leader(WAIT).await.unwrap();
    (server, addr)
}

async fn read(addr: SocketAddr, query: Query) -> ReadResponse {
    let req = ReadRequest {
        query,
        options: QueryOptions::default(),
    };
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}{READ_PATH}"))
        .json(&req)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "read failed: {}", resp.status());
    resp.json().await.unwrap()
}

#[tokio::test]
async fn kv_survives_restart() {
    let dir = tempfile::tempdir().unwrap();

    // First run: write a key.
    let (server, addr) = start(dir.path()).await;
    let write = WriteRequest::Kv(KvOp::Set {
        key: "config/limit".into(),
        value: b"42".to_vec(),
        flags: 7,
    });
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}{WRITE_PATH}"))
        .json(&write)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let written: WriteResponse = resp.json().await.unwrap();
    assert_eq!(written.result, WriteResult::Bool(true));
    server.shutdown().await.unwrap();

    // Second run on the same dir: bootstrap is a no-op and the key is back.
    let (server, addr) = start(dir.path()).await;
    let got = read(
        addr,
        Query::KvGet {
            key: "config/limit".into(),
        },
    )
    .await;
    let QueryResult::Kv(entries) = got.result else {
        panic!("{got:?}")
    };
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].value.as_deref(), Some(&b"42"[..]));
    assert_eq!(entries[0].flags, 7);
    assert_eq!(entries[0].modify_index, written.index);
    assert!(got.meta.known_leader);

    // The leader registers itself in the catalog.
    let mut registered = false;
    for _ in 0..100 {
        let nodes = read(addr, Query::Nodes { node_meta: vec![] }).await;
        if matches!(&nodes.result, QueryResult::Nodes(n) if n.iter().any(|n| n.node == "server-1" && n.address == "127.0.0.1"))
        {
            registered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(registered, "the server registered its own node");
    server.shutdown().await.unwrap();
}
