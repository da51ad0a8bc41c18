//! ACLs end to end: bootstrap once, policies and tokens through the API and the CLI, KV
//! enforcement (filtered lists with the header, denied writes that change nothing,
//! anonymous under `default_policy = "deny"`), and tokens replicating to a follower.
//! `walk`: every endpoint of docs/api.md with no, a read and a write token; DNS under the
//! default token; the servers checking the agent's own catalog writes.
//! `rpc_port`: a client on a server's RPC port, past every agent, gets nothing its token
//! does not allow.

// Test helpers may unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use concord_integration::{assert_eventually, init_tracing, TestAgent, TestCluster};
use serde_json::{json, Value};

mod rpc_port;
mod walk;

const NET: u8 = 40;

/// The `acl.tokens.initial_management` secret of the cluster test.
const INITIAL_MANAGEMENT: &str = "9a1c2b3d-0000-4000-8000-00000000aaaa";

/// A config file enabling ACLs with `default_policy = "deny"`; kept alive by the caller.
fn acl_config() -> (tempfile::TempDir, String) {
    acl_config_with(json!({}))
}

/// [`acl_config`] with these `acl.tokens`.
fn acl_config_with(tokens: Value) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acl.json");
    let config = json!({"acl": {"enabled": true, "default_policy": "deny",
        "down_policy": "extend-cache", "tokens": tokens}});
    std::fs::write(&path, config.to_string()).unwrap();
    let path = path.to_str().unwrap().to_string();
    (dir, path)
}

/// A request with an optional token; status, `X-Consul-Results-Filtered-By-ACLs`, body.
async fn call(
    agent: &TestAgent,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, bool, String) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = agent
        .client
        .request(method, agent.url(path))
        .body(body.to_string());
    if let Some(t) = token {
        req = req.header("X-Consul-Token", t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let filtered = r
        .headers()
        .get("x-consul-results-filtered-by-acls")
        .is_some_and(|v| v == "true");
    (status, filtered, r.text().await.unwrap())
}

fn field(body: &str, key: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v[key].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn bootstrap_policies_tokens_and_kv_enforcement() {
    init_tracing();
    let (_dir, config) = acl_config();
    let agent = TestAgent::start(&["-dev", "-config-file", &config])
        .await
        .unwrap();

    tracing::info!("without a token, the ACL API is refused");
    let (code, _, body) = call(&agent, "GET", "/v1/acl/tokens", None, "").await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.starts_with("Permission denied: anonymous token"),
        "{body}"
    );

    tracing::info!("bootstrap once; the second is 403 with the reset index");
    let (code, _, body) = call(&agent, "PUT", "/v1/acl/bootstrap", None, "").await;
    assert_eq!(code, 200, "{body}");
    let root = field(&body, "SecretID");
    let (code, _, again) = call(&agent, "PUT", "/v1/acl/bootstrap", None, "").await;
    assert_eq!(code, 403);
    assert!(
        again.starts_with("Permission denied: ACL bootstrap no longer allowed (reset index: "),
        "{again}"
    );

    tracing::info!("seed KV with the management token");
    for (key, value) in [("app/a", "1"), ("app/b", "2"), ("secret/x", "s")] {
        let (code, _, _) = call(&agent, "PUT", &format!("/v1/kv/{key}"), Some(&root), value).await;
        assert_eq!(code, 200);
    }

    tracing::info!("a policy reading app/ and a token holding it");
    let policy =
        json!({"Name": "app-read", "Rules": "key_prefix \"app/\" {\n  policy = \"read\"\n}"});
    let (code, _, body) = call(
        &agent,
        "PUT",
        "/v1/acl/policy",
        Some(&root),
        &policy.to_string(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let token = json!({"Description": "app reader", "Policies": [{"Name": "app-read"}]});
    let (code, _, body) = call(
        &agent,
        "PUT",
        "/v1/acl/token",
        Some(&root),
        &token.to_string(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let reader = field(&body, "SecretID");
    let reader_accessor = field(&body, "AccessorID");

    tracing::info!("the token reads only its prefix: the list is filtered and says so");
    let (code, filtered, body) = call(&agent, "GET", "/v1/kv/?recurse", Some(&reader), "").await;
    assert_eq!(code, 200, "{body}");
    assert!(filtered, "the header marks the filtered list");
    let keys: Vec<String> = serde_json::from_str::<Vec<Value>>(&body)
        .unwrap()
        .iter()
        .map(|e| e["Key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["app/a", "app/b"]);
    let (code, _, _) = call(&agent, "GET", "/v1/kv/secret/x", Some(&reader), "").await;
    assert_eq!(code, 403);
    let (code, filtered, body) = call(&agent, "GET", "/v1/kv/?keys", Some(&reader), "").await;
    assert_eq!((code, filtered), (200, true), "{body}");

    tracing::info!("a denied write is 403 with Consul's text and changes nothing");
    let (code, _, body) = call(&agent, "PUT", "/v1/kv/app/a", Some(&reader), "changed").await;
    assert_eq!(code, 403);
    assert_eq!(
        body,
        format!("Permission denied: token with AccessorID '{reader_accessor}' lacks permission 'key:write' on \"app/a\"")
    );
    let (_, _, value) = call(&agent, "GET", "/v1/kv/app/a?raw", Some(&root), "").await;
    assert_eq!(value, "1");
    let (code, _, _) = call(&agent, "DELETE", "/v1/kv/?recurse", Some(&reader), "").await;
    assert_eq!(code, 403);
    let txn = json!([{"KV": {"Verb": "get", "Key": "app/b"}},
                     {"KV": {"Verb": "set", "Key": "app/a", "Value": "Y2hhbmdlZA=="}}]);
    let (code, _, _) = call(&agent, "PUT", "/v1/txn", Some(&reader), &txn.to_string()).await;
    assert_eq!(
        code, 403,
        "one denied operation refuses the whole transaction"
    );
    let (_, _, value) = call(&agent, "GET", "/v1/kv/app/a?raw", Some(&root), "").await;
    assert_eq!(value, "1");

    tracing::info!("anonymous under default_policy deny sees nothing");
    let (code, filtered, _) = call(&agent, "GET", "/v1/kv/?recurse", None, "").await;
    assert_eq!((code, filtered), (404, true));
    let (code, _, _) = call(&agent, "GET", "/v1/kv/app/a", None, "").await;
    assert_eq!(code, 403);

    tracing::info!("token/self, secrets hidden from acl:read-only callers, unknown tokens");
    let (code, _, body) = call(&agent, "GET", "/v1/acl/token/self", Some(&reader), "").await;
    assert_eq!(
        (code, field(&body, "AccessorID")),
        (200, reader_accessor.clone())
    );
    let (code, _, body) = call(&agent, "GET", "/v1/kv/app/a", Some("not-a-token"), "").await;
    assert_eq!((code, body.as_str()), (403, "ACL not found"));
    let reader_acl = json!({"Name": "acl-read", "Rules": "acl = \"read\""});
    call(
        &agent,
        "PUT",
        "/v1/acl/policy",
        Some(&root),
        &reader_acl.to_string(),
    )
    .await;
    let token = json!({"Policies": [{"Name": "acl-read"}]});
    let (_, _, body) = call(
        &agent,
        "PUT",
        "/v1/acl/token",
        Some(&root),
        &token.to_string(),
    )
    .await;
    let acl_reader = field(&body, "SecretID");
    let path = format!("/v1/acl/token/{reader_accessor}");
    let (code, _, body) = call(&agent, "GET", &path, Some(&acl_reader), "").await;
    assert_eq!(
        (code, field(&body, "SecretID")),
        (200, "<hidden>".to_string())
    );
    let (code, _, body) = call(&agent, "GET", &path, Some(&root), "").await;
    assert_eq!((code, field(&body, "SecretID")), (200, reader.clone()));
    let (code, _, _) = call(&agent, "DELETE", &path, Some(&acl_reader), "").await;
    assert_eq!(code, 403, "acl:read cannot delete");

    tracing::info!("a revoked token stops working at once (the agent's cache follows writes)");
    let (code, _, _) = call(&agent, "DELETE", &path, Some(&root), "").await;
    assert_eq!(code, 200);
    // Well under the 30 s token TTL: the cache follows the ACL tables (slack for 2 busy
    // cores).
    assert_eventually!(
        @timeout Duration::from_secs(5),
        call(&agent, "GET", "/v1/kv/app/a", Some(&reader), "").await.0 == 403,
        "the deleted token is refused"
    );

    tracing::info!("templated policies are listed");
    let (code, _, body) = call(
        &agent,
        "GET",
        "/v1/acl/templated-policy/name/builtin/service",
        Some(&root),
        "",
    )
    .await;
    assert_eq!(
        (code, field(&body, "TemplateName")),
        (200, "builtin/service".to_string())
    );
}

#[tokio::test]
async fn cli_round_trips() {
    init_tracing();
    let (dir, config) = acl_config();
    let agent = TestAgent::start(&["-dev", "-config-file", &config])
        .await
        .unwrap();
    let run = |args: &[&str]| {
        let out = agent.cli(args).unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.code(), stdout, stderr)
    };

    tracing::info!("bootstrap through the CLI");
    let (code, out, err) = run(&["acl", "bootstrap", "-format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let root = field(&out, "SecretID");
    let (code, _, err) = run(&["acl", "bootstrap"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("ACL bootstrap no longer allowed"), "{err}");

    tracing::info!("a policy from a rules file, a role, a token");
    let rules = dir.path().join("rules.hcl");
    std::fs::write(&rules, "key_prefix \"cli/\" {\n  policy = \"write\"\n}\n").unwrap();
    let rules_arg = format!("@{}", rules.display());
    let (code, out, err) = run(&[
        "acl",
        "policy",
        "create",
        "-name",
        "cli-write",
        "-rules",
        &rules_arg,
        "-token",
        &root,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Name:         cli-write"), "{out}");
    let (code, out, err) = run(&[
        "acl",
        "role",
        "create",
        "-name",
        "cli-role",
        "-policy-name",
        "cli-write",
        "-token",
        &root,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("cli-write"), "{out}");
    let (code, out, err) = run(&[
        "acl",
        "token",
        "create",
        "-description",
        "from the CLI",
        "-role-name",
        "cli-role",
        "-format",
        "json",
        "-token",
        &root,
    ]);
    assert_eq!(code, Some(0), "{err}");
    let accessor = field(&out, "AccessorID");
    let secret = field(&out, "SecretID");

    tracing::info!("the new token writes under cli/ through the CLI's own KV command");
    let out = agent
        .cli(&["kv", "put", "-token", &secret, "cli/k", "v"])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = agent
        .cli(&["kv", "put", "-token", &secret, "other/k", "v"])
        .unwrap();
    assert!(!out.status.success(), "outside its prefix");

    tracing::info!("read, list, update, clone, delete");
    let (code, out, err) = run(&["acl", "token", "read", "-id", &accessor, "-token", &root]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Description:      from the CLI"), "{out}");
    let (code, out, _) = run(&["acl", "token", "list", "-token", &root]);
    assert_eq!(code, Some(0));
    assert!(out.contains(&accessor), "{out}");
    let (code, out, _) = run(&["acl", "policy", "list", "-token", &root]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("global-management") && out.contains("cli-write"),
        "{out}"
    );
    let (code, out, err) = run(&[
        "acl",
        "token",
        "update",
        "-id",
        &accessor,
        "-description",
        "renamed",
        "-token",
        &root,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("renamed"), "{out}");
    let (code, out, err) = run(&["acl", "token", "clone", "-id", &accessor, "-token", &root]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("cli-role"), "{out}");
    let (code, out, err) = run(&["acl", "token", "delete", "-id", &accessor, "-token", &root]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("deleted successfully"), "{out}");
    let (code, _, _) = run(&[
        "acl", "role", "delete", "-name", "cli-role", "-token", &root,
    ]);
    assert_eq!(code, Some(0));
    let (code, _, _) = run(&[
        "acl",
        "policy",
        "delete",
        "-name",
        "cli-write",
        "-token",
        &root,
    ]);
    assert_eq!(code, Some(0));

    tracing::info!("without a token, the CLI is refused like the API");
    let (code, _, err) = run(&["acl", "token", "list"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("403"), "{err}");
}

#[tokio::test]
async fn tokens_replicate_to_a_follower_within_a_second() {
    init_tracing();
    let (_dir, config) = acl_config_with(json!({"initial_management": INITIAL_MANAGEMENT}));
    let cluster = TestCluster::start_with(NET, 3, &["-config-file", &config])
        .await
        .unwrap();
    let leader = cluster.wait_leader(&[0, 1, 2], None).await.unwrap();
    let leader_i = cluster.index_of(&leader).unwrap();
    let follower = &cluster.servers[(leader_i + 1) % 3];
    let at_leader = &cluster.servers[leader_i];

    tracing::info!("the servers create the initial management token, exactly once");
    assert_eventually!(
        call(
            follower,
            "GET",
            "/v1/acl/tokens",
            Some(INITIAL_MANAGEMENT),
            ""
        )
        .await
        .0 == 200,
        "the initial management token works"
    );
    let (_, _, body) = call(
        follower,
        "GET",
        "/v1/acl/tokens",
        Some(INITIAL_MANAGEMENT),
        "",
    )
    .await;
    let tokens: Vec<Value> = serde_json::from_str(&body).unwrap();
    let with_secret = tokens
        .iter()
        .filter(|t| t["SecretID"] == INITIAL_MANAGEMENT)
        .count();
    assert_eq!(with_secret, 1, "{tokens:?}");

    tracing::info!("bootstrap and create a token on the leader's agent");
    let (code, _, body) = call(at_leader, "PUT", "/v1/acl/bootstrap", None, "").await;
    assert_eq!(code, 200, "{body}");
    let root = field(&body, "SecretID");
    let policy = json!({"Name": "kv-all", "Rules": "key_prefix \"\" {\n  policy = \"write\"\n}"});
    call(
        at_leader,
        "PUT",
        "/v1/acl/policy",
        Some(&root),
        &policy.to_string(),
    )
    .await;
    let token = json!({"Policies": [{"Name": "kv-all"}]});
    let started = tokio::time::Instant::now();
    let (code, _, body) = call(
        at_leader,
        "PUT",
        "/v1/acl/token",
        Some(&root),
        &token.to_string(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let accessor = field(&body, "AccessorID");
    let secret = field(&body, "SecretID");

    tracing::info!("the follower's own state has the token (stale read) within a second");
    let path = format!("/v1/acl/token/{accessor}?stale");
    assert_eventually!(
        @timeout Duration::from_secs(1),
        call(follower, "GET", &path, Some(&root), "").await.0 == 200,
        "the token reached the follower"
    );
    let replicated = started.elapsed();
    assert_eventually!(
        @timeout Duration::from_secs(1),
        call(follower, "PUT", "/v1/kv/replicated", Some(&secret), "yes").await.0 == 200,
        "the token works on the follower's agent"
    );
    let usable = started.elapsed();
    // Printed for docs/operations.md: the measured replication delay.
    eprintln!("ACL token replicated to a follower in {replicated:?}; usable there in {usable:?}");
}
