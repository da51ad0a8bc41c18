//! Operator snapshots end to end: `concord snapshot save|inspect|restore` and
//! `GET`/`PUT /v1/snapshot` against a real agent and server.

// Test helpers outside #[test] functions may unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use concord_integration::{init_tracing, TestAgent};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The value of a key (`None` when missing).
async fn kv(agent: &TestAgent, key: &str) -> Option<String> {
    let r = agent
        .client
        .get(agent.url(&format!("/v1/kv/{key}?raw")))
        .send()
        .await
        .unwrap();
    if r.status() != 200 {
        return None;
    }
    Some(r.text().await.unwrap())
}

fn consul_index(r: &reqwest::Response) -> u64 {
    r.headers()["x-consul-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn register_external(agent: &TestAgent, service: &str) {
    let body = serde_json::json!({
        "Node": "ext-1",
        "Address": "10.0.0.9",
        "Service": {"ID": service, "Service": service, "Port": 80}
    });
    let (code, text) = agent
        .put("/v1/catalog/register", body.to_string())
        .await
        .unwrap();
    assert_eq!(code, 200, "{text}");
}

async fn services(agent: &TestAgent) -> (u64, serde_json::Value) {
    let (code, index, v) = agent.get_json("/v1/catalog/services").await.unwrap();
    assert_eq!(code, 200);
    (index, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_change_restore_brings_state_back_and_wakes_watchers() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.snap");
    let file = file.to_str().unwrap();

    tracing::info!("state to save: two keys and an external service");
    agent.put("/v1/kv/app/a", "1").await.unwrap();
    agent.put("/v1/kv/app/b", "2").await.unwrap();
    register_external(&agent, "web").await;

    tracing::info!("save prints Consul's line with the snapshot's index");
    let out = agent.cli(&["snapshot", "save", file]).unwrap();
    assert!(out.status.success(), "{out:?}");
    let line = stdout(&out);
    let saved_index: u64 = line
        .trim()
        .strip_prefix("Saved and verified snapshot to index ")
        .unwrap_or_else(|| panic!("{line}"))
        .parse()
        .unwrap();
    assert!(saved_index > 1, "{line}");
    assert!(!std::path::Path::new(&format!("{file}.tmp")).exists());

    tracing::info!("the HTTP endpoint answers gzip with X-Consul-Index");
    let r = agent
        .client
        .get(agent.url("/v1/snapshot"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-gzip");
    let index = consul_index(&r);
    assert!(index >= saved_index);
    assert_eq!(&r.bytes().await.unwrap()[..2], &[0x1f, 0x8b], "gzip magic");

    tracing::info!("inspect shows the meta block and per-table counts");
    let out = agent.cli(&["snapshot", "inspect", file]).unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains(&format!(" Index        {saved_index}\n")),
        "{text}"
    );
    assert!(text.contains(" Version      1\n"), "{text}");
    assert!(text.contains(" kvs                         2\n"), "{text}");

    tracing::info!("change things after the save");
    agent.put("/v1/kv/app/a", "changed").await.unwrap();
    agent.put("/v1/kv/app/c", "new").await.unwrap();
    let r = agent
        .client
        .delete(agent.url("/v1/kv/app/b"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (code, _) = agent
        .put(
            "/v1/catalog/deregister",
            r#"{"Node":"ext-1","ServiceID":"web"}"#,
        )
        .await
        .unwrap();
    assert_eq!(code, 200);
    let (before, now) = services(&agent).await;
    assert!(now.get("web").is_none(), "{now}");

    tracing::info!("park a blocking query on the services list");
    let url = agent.url(&format!("/v1/catalog/services?index={before}&wait=60s"));
    let client = agent.client.clone();
    let started = tokio::time::Instant::now();
    let waiter = tokio::spawn(async move { client.get(url).send().await });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "nothing changed yet: it blocks");

    tracing::info!("restore prints Consul's line");
    let out = agent.cli(&["snapshot", "restore", file]).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out).trim(), "Restored snapshot");

    tracing::info!("the parked query wakes with the restored state and a higher index");
    let r = waiter.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "woke on the restore, not on timeout"
    );
    let woke_index = consul_index(&r);
    assert!(
        woke_index > before,
        "index must not go backwards: {before} -> {woke_index}"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body.get("web").is_some(), "{body}");

    tracing::info!("KV is back as saved");
    assert_eq!(kv(&agent, "app/a").await.as_deref(), Some("1"));
    assert_eq!(kv(&agent, "app/b").await.as_deref(), Some("2"));
    assert_eq!(kv(&agent, "app/c").await, None);

    tracing::info!("writes after a restore keep working and move the index on");
    agent.put("/v1/kv/app/after", "x").await.unwrap();
    let (_, index, _) = agent.get_json("/v1/kv/app/after").await.unwrap();
    assert!(index > woke_index, "{index} > {woke_index}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_truncated_archive_is_refused_and_changes_nothing() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    agent.put("/v1/kv/keep", "saved").await.unwrap();
    let out = agent
        .cli(&["snapshot", "save", &path("good.snap")])
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    agent.put("/v1/kv/keep", "current").await.unwrap();
    let good = std::fs::read(path("good.snap")).unwrap();

    tracing::info!("a flipped byte and a cut file are each refused by the server");
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    std::fs::write(path("flipped.snap"), &flipped).unwrap();
    std::fs::write(path("cut.snap"), &good[..good.len() - 20]).unwrap();
    let (_, index_before, _) = agent.get_json("/v1/kv/?recurse").await.unwrap();
    for bad in ["flipped.snap", "cut.snap"] {
        let out = agent.cli(&["snapshot", "restore", &path(bad)]).unwrap();
        assert_eq!(out.status.code(), Some(1), "{bad}: {out:?}");
        let err = stderr(&out);
        assert!(
            err.starts_with("Error restoring snapshot: "),
            "{bad}: {err}"
        );
        assert!(
            err.contains("snapshot archive is corrupt or truncated")
                || err.contains("checksum mismatch"),
            "{bad}: {err}"
        );
        let out = agent.cli(&["snapshot", "inspect", &path(bad)]).unwrap();
        assert_eq!(out.status.code(), Some(1), "{bad}: {out:?}");
        assert!(stderr(&out).starts_with("Error verifying snapshot: "));
    }

    tracing::info!("nothing changed: same value, same index");
    assert_eq!(kv(&agent, "keep").await.as_deref(), Some("current"));
    let (_, index_after, _) = agent.get_json("/v1/kv/?recurse").await.unwrap();
    assert_eq!(index_after, index_before);

    tracing::info!("a body that is not an archive at all is Consul's 500 over HTTP");
    let (code, text) = agent.put("/v1/snapshot", "not a snapshot").await.unwrap();
    assert_eq!(code, 500, "{text}");
    assert!(text.contains("corrupt or truncated"), "{text}");
}
