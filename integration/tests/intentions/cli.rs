//! `concord intention ...` and `concord config ...` as a user types them.

use concord_integration::{init_tracing, TestAgent};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intention_and_config_round_trip() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();

    tracing::info!("the issue's walk-through: deny all, allow web -> db, check");
    let out = agent
        .cli(&["intention", "create", "-deny", "*", "*"])
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out).trim(), "Created: * => * (deny)");
    let out = agent
        .cli(&["intention", "create", "-allow", "web", "db"])
        .unwrap();
    assert_eq!(stdout(&out).trim(), "Created: web => db (allow)");
    let out = agent.cli(&["intention", "check", "web", "db"]).unwrap();
    assert_eq!(
        (out.status.code(), stdout(&out).trim().to_string()),
        (Some(0), "Allowed".to_string())
    );
    let out = agent.cli(&["intention", "check", "api", "db"]).unwrap();
    assert_eq!(
        (out.status.code(), stdout(&out).trim().to_string()),
        (Some(2), "Denied".to_string())
    );

    tracing::info!("create without -replace refuses; with -replace flips it");
    let out = agent
        .cli(&["intention", "create", "-deny", "web", "db"])
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = agent
        .cli(&["intention", "create", "-deny", "-replace", "web", "db"])
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = agent.cli(&["intention", "get", "web", "db"]).unwrap();
    assert!(
        stdout(&out).contains("Action:       deny"),
        "{}",
        stdout(&out)
    );

    tracing::info!("list and match");
    let out = agent.cli(&["intention", "list"]).unwrap();
    let text = stdout(&out);
    assert!(text.starts_with("ID"), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");
    let out = agent.cli(&["intention", "match", "db"]).unwrap();
    assert_eq!(stdout(&out), "web => db (deny)\n* => * (deny)\n");

    tracing::info!("delete");
    let out = agent.cli(&["intention", "delete", "web", "db"]).unwrap();
    assert_eq!(stdout(&out).trim(), "Intention deleted.");
    let out = agent.cli(&["intention", "get", "web", "db"]).unwrap();
    assert_eq!(out.status.code(), Some(1));

    tracing::info!("config write (HCL and JSON), read, list, delete");
    let dir = tempfile::tempdir().unwrap();
    let hcl = dir.path().join("service-defaults-db.hcl");
    std::fs::write(
        &hcl,
        "Kind = \"service-defaults\"\nName = \"db\"\nProtocol = \"http\"\n",
    )
    .unwrap();
    let out = agent
        .cli(&["config", "write", hcl.to_str().unwrap()])
        .unwrap();
    assert_eq!(
        stdout(&out).trim(),
        "Config entry written: service-defaults/db",
        "{out:?}"
    );
    let json = dir.path().join("intentions.json");
    std::fs::write(&json, r#"{"Kind": "service-intentions", "Name": "db", "Sources": [{"Name": "web", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/api", "Methods": ["GET"]}}]}]}"#).unwrap();
    let out = agent
        .cli(&["config", "write", json.to_str().unwrap()])
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = agent
        .cli(&["config", "read", "-kind", "service-defaults", "-name", "db"])
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Protocol"], "http");
    let out = agent
        .cli(&["config", "list", "-kind", "service-intentions"])
        .unwrap();
    assert_eq!(stdout(&out), "*\ndb\n");
    let out = agent
        .cli(&[
            "config",
            "delete",
            "-kind",
            "service-intentions",
            "-name",
            "db",
        ])
        .unwrap();
    assert_eq!(
        stdout(&out).trim(),
        "Config entry deleted: service-intentions/db"
    );
    let out = agent
        .cli(&[
            "config",
            "read",
            "-kind",
            "service-intentions",
            "-name",
            "db",
        ])
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = agent.cli(&["config", "list", "-kind", "bogus"]).unwrap();
    assert_eq!(out.status.code(), Some(1));
}
