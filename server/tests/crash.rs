//! `kill -9` durability: every write the server acknowledged is still there after the
//! process is killed without any chance to flush, and the server restarts on that dir.
//!
//! The test re-runs this test binary as a child process (running only [`crash_child`]),
//! reads the keys it acknowledges, SIGKILLs it, then restarts a server on the same dir.

// A test binary: its helpers panic on failure by design.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use concord_api::kv::KvOp;
use concord_api::rpc::{
    Query, QueryOptions, QueryResult, ReadRequest, ReadResponse, WriteRequest, WriteResponse,
    READ_PATH, WRITE_PATH,
};
use concord_server::{Config, Server};
use tokio::net::TcpListener;

const DIR_ENV: &str = "CONCORD_CRASH_TEST_DIR";
const KEYS: usize = 20;

async fn start(dir: &Path) -> (Server, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config {
        data_dir: Some(dir.to_path_buf()),
        dev: true,
        rpc_max_conns_per_client: 0,
        group_commit: false,
        ..Config::new("crashy", "5a0c1f3e-7b2d-4e8a-9c6f-1d2e3f4a5b6c", addr)
    };
    let server = Server::start(config, listener).await.unwrap();
    server
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    (server, addr)
}

/// The child: acknowledges each write on stdout, then waits to be killed.
#[test]
#[ignore = "runs only as the child process of kill_9_keeps_acknowledged_writes"]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_server, addr) = start(Path::new(&dir)).await;
        let client = reqwest::Client::new();
        let mut out = std::io::stdout();
        for i in 0..KEYS {
            let key = format!("k{i:02}");
            let req = WriteRequest::Kv(KvOp::Set {
                key: key.clone(),
                value: b"v".to_vec(),
                flags: 0,
            });
            let resp = client
                .post(format!("http://{addr}{WRITE_PATH}"))
                .json(&req)
                .send()
                .await
                .unwrap();
            let _: WriteResponse = resp.json().await.unwrap();
            writeln!(out, "ACK {key}").unwrap();
            out.flush().unwrap();
        }
        writeln!(out, "DONE").unwrap();
        out.flush().unwrap();
        std::future::pending::<()>().await;
    });
}

#[test]
fn kill_9_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--ignored", "--nocapture"])
        .env(DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(key) = line.strip_prefix("ACK ") {
            acked.push(key.to_string());
        } else if line == "DONE" {
            break;
        }
    }
    // SIGKILL: no destructors, no flush on drop.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(acked.len(), KEYS, "the child acknowledged every write");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (server, addr) = start(dir.path()).await;
        let req = ReadRequest {
            query: Query::KvKeys {
                prefix: String::new(),
                separator: None,
            },
            options: QueryOptions::default(),
        };
        let resp: ReadResponse = reqwest::Client::new()
            .post(format!("http://{addr}{READ_PATH}"))
            .json(&req)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(resp.result, QueryResult::Keys(acked));
        server.shutdown().await.unwrap();
    });
}
