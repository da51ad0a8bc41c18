//! The `concord` CLI against a running agent, as a user types it.

// Test helpers outside #[test] functions may unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use concord_integration::{init_tracing, TestAgent};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_services_catalog_members_version() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();

    tracing::info!("kv put/get/delete in Consul's flag styles");
    let out = agent.cli(&["kv", "put", "app/x", "hello"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("Success! Data written to: app/x"));
    let out = agent.cli(&["kv", "get", "app/x"]).unwrap();
    assert_eq!(stdout(&out).trim(), "hello");
    agent.cli(&["kv", "put", "app/y", "world"]).unwrap();
    let out = agent.cli(&["kv", "get", "-recurse", "app"]).unwrap();
    assert_eq!(stdout(&out).trim(), "app/x:hello\napp/y:world");
    let out = agent.cli(&["kv", "delete", "--recurse", "app"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = agent.cli(&["kv", "get", "app/x"]).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Error! No key exists at: app/x"));

    tracing::info!("services register by flags, then the catalog shows them");
    let out = agent
        .cli(&[
            "services",
            "register",
            "-name=cache",
            "-port",
            "6379",
            "-tag",
            "primary",
        ])
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = agent.cli(&["catalog", "services", "-tags"]).unwrap();
    let text = stdout(&out);
    assert!(text.contains("cache") && text.contains("primary"), "{text}");
    let out = agent.cli(&["catalog", "nodes"]).unwrap();
    assert!(stdout(&out).contains(&agent.node));
    let out = agent
        .cli(&["services", "deregister", "-id", "cache"])
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = agent.cli(&["catalog", "services"]).unwrap();
    assert!(!stdout(&out).contains("cache"));

    tracing::info!("members and version");
    let out = agent.cli(&["members"]).unwrap();
    let text = stdout(&out);
    assert!(
        text.contains(&agent.node) && text.contains("alive") && text.contains("server"),
        "{text}"
    );
    let out = agent.cli(&["version"]).unwrap();
    assert!(stdout(&out).starts_with("Concord v"));

    tracing::info!("CONCORD_HTTP_ADDR and -http-addr find the agent too");
    let out = std::process::Command::new(concord_integration::concord_bin())
        .args([
            "kv",
            "put",
            &format!("-http-addr={}", agent.http),
            "via-flag",
            "1",
        ])
        .env_remove("CONSUL_HTTP_ADDR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = std::process::Command::new(concord_integration::concord_bin())
        .args(["kv", "get", "via-flag"])
        .env("CONCORD_HTTP_ADDR", agent.http.to_string())
        .env_remove("CONSUL_HTTP_ADDR")
        .output()
        .unwrap();
    assert_eq!(stdout(&out).trim(), "1");
}
