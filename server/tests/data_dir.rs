//! A server refuses, at startup and with a message naming both versions, a data dir it does
//! not read: another format version, or the unversioned sled layout of development builds.
//! It never opens such a directory as its own.

// A test binary: its helpers panic on failure by design.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use concord_server::{Config, Server, ServerError};
use tokio::net::TcpListener;

async fn start(dir: &Path) -> Result<Server, ServerError> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config {
        data_dir: Some(dir.to_path_buf()),
        dev: true,
        rpc_max_conns_per_client: 0,
        group_commit: false,
        ..Config::new("versioned", "7c2e3a5f-9d4b-4a0c-8e8f-3f4a5b6c7d8e", addr)
    };
    Server::start(config, listener).await
}

#[tokio::test]
async fn a_new_data_dir_is_created_at_version_1_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    start(dir.path()).await.unwrap().shutdown().await.unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("raft/VERSION")).unwrap(),
        "1\n"
    );
    start(dir.path()).await.unwrap().shutdown().await.unwrap();
}

#[tokio::test]
async fn another_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("raft/log")).unwrap();
    std::fs::write(dir.path().join("raft/VERSION"), "2\n").unwrap();
    let err = start(dir.path()).await.unwrap_err().to_string();
    assert!(err.contains("has format version \"2\""), "{err}");
    assert!(err.contains("reads format version 1"), "{err}");
    assert!(
        !dir.path().join("raft/sm").exists(),
        "nothing was opened or created"
    );
}

#[tokio::test]
async fn the_unversioned_sled_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // What development builds left: the Raft log and snapshot in a sled database at
    // <data_dir>/raft.
    drop(sled::open(dir.path().join("raft")).unwrap());
    let err = start(dir.path()).await.unwrap_err().to_string();
    assert!(err.contains("unversioned sled layout"), "{err}");
    assert!(err.contains("format version 1"), "{err}");
}
