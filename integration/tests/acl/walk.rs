//! Every endpoint of docs/api.md, walked with no token, a read token and a write token under
//! `default_policy = "deny"`: refusals are 403 `Permission denied: ...`, lists are filtered
//! (never refused) and say so with `X-Consul-Results-Filtered-By-ACLs`, and a refused write
//! changes nothing (the state read with the management token is the same before and after).
//! The table is checked against docs/api.md, so a documented endpoint cannot go unwalked.

use std::collections::BTreeSet;

use concord_integration::dns::{query, Transport};
use concord_integration::{assert_eventually, init_tracing, TestAgent};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::{json, Value};

use super::{acl_config, call, field};

/// What one token gets from one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// 403 `Permission denied: ...`; for a write, nothing changed.
    Deny,
    /// Anything but 403 (a write done, or refused for another reason).
    Pass,
    /// Not 403, and the list was filtered (`X-Consul-Results-Filtered-By-ACLs: true`).
    Hide,
    /// Not 403, and nothing was filtered.
    Full,
    /// Not asserted (answers that depend on the token itself, e.g. `token/self`).
    Any,
}
use Expect::{Any, Deny, Full, Hide, Pass};

/// One request of the walk.
struct Row {
    /// The path as docs/api.md writes it.
    doc: &'static str,
    method: &'static str,
    path: String,
    body: String,
    /// For no token, the read token and the write token.
    expect: [Expect; 3],
    /// A streaming reply: only the status and headers are read.
    stream: bool,
}

fn row(
    doc: &'static str,
    method: &'static str,
    path: impl Into<String>,
    expect: [Expect; 3],
) -> Row {
    Row {
        doc,
        method,
        path: path.into(),
        body: String::new(),
        expect,
        stream: false,
    }
}

fn with(mut r: Row, body: impl ToString) -> Row {
    r.body = body.to_string();
    r
}

/// A write: refused without a token and with the read token, done with the write token.
fn write(
    doc: &'static str,
    method: &'static str,
    path: impl Into<String>,
    body: impl ToString,
) -> Row {
    with(row(doc, method, path, [Deny, Deny, Pass]), body)
}

/// Paths docs/api.md mentions that are not endpoints to walk, and why. (Prefixes, such as
/// `/v1/acl/` or `/v1/health/*`, end in `/` and are never endpoints.)
const NOT_WALKED: [&str; 6] = [
    "/v1/acl/auth-method",     // documented as unsupported (404)
    "/v1/agent/token/default", // an example of /v1/agent/token/:kind
    "/v1/health/node",         // the prefix of /v1/health/node/:node
    "/v1/health/checks/:name", // /v1/health/checks/:service, named as the blocking notes do
    "/v1/kv/app/config",       // examples of /v1/kv/:key
    "/v1/kv/k",
];

/// The `/v1/...` paths docs/api.md names.
fn documented_paths() -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md")).unwrap();
    let mut paths = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("/v1/") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || "_/:-|.{}".contains(c)))
            .unwrap_or(tail.len());
        let path = tail[..end].trim_end_matches(['.', ',', ';', ':', ')']);
        if !path.ends_with('/') {
            paths.insert(path.to_string());
        }
        rest = &tail[end.max(4)..];
    }
    paths
}

/// What the management token sees: compared before and after every refused write. The
/// reads run side by side (the walk does thousands).
async fn state(agent: &TestAgent, root: &str) -> Vec<(String, String)> {
    const READS: [&str; 14] = [
        "/v1/catalog/nodes",
        "/v1/catalog/services",
        "/v1/health/state/any",
        "/v1/agent/services",
        "/v1/agent/checks",
        "/v1/kv/?recurse",
        "/v1/session/list",
        "/v1/connect/intentions",
        "/v1/config/service-defaults",
        "/v1/config/proxy-defaults",
        "/v1/acl/tokens",
        "/v1/acl/policies",
        "/v1/acl/roles",
        "/v1/event/list",
    ];
    let mut reads = tokio::task::JoinSet::new();
    for (i, path) in READS.iter().enumerate() {
        let request = agent
            .client
            .get(agent.url(path))
            .header("X-Consul-Token", root);
        reads.spawn(async move {
            let body = request.send().await.unwrap().text().await.unwrap();
            (i, path.to_string(), body)
        });
    }
    let mut seen = reads.join_all().await;
    seen.sort();
    seen.into_iter()
        .map(|(_, path, body)| (path, body))
        .collect()
}

/// [`state`] once it holds still: the write token's last write may still be syncing
/// (anti-entropy, gossip), which must not be mistaken for a refused write's effect.
async fn settled(agent: &TestAgent, root: &str) -> Vec<(String, String)> {
    let mut last = state(agent, root).await;
    loop {
        let next = state(agent, root).await;
        if next == last {
            return next;
        }
        last = next;
    }
}

/// One request with an optional token: status, filtered header, body (empty for a stream).
async fn send(agent: &TestAgent, r: &Row, token: Option<&str>) -> (u16, bool, String) {
    if !r.stream {
        return call(agent, r.method, &r.path, token, &r.body).await;
    }
    let mut req = agent.client.get(agent.url(&r.path));
    if let Some(t) = token {
        req = req.header("X-Consul-Token", t);
    }
    let response = req.send().await.unwrap();
    let status = response.status().as_u16();
    let body = if status == 403 {
        response.text().await.unwrap()
    } else {
        String::new()
    };
    (status, false, body)
}

/// Creates a token holding one new policy with `rules`; its secret and accessor.
async fn token_with(agent: &TestAgent, root: &str, name: &str, rules: &str) -> (String, String) {
    let policy = json!({"Name": name, "Rules": rules});
    let (code, _, body) = call(
        agent,
        "PUT",
        "/v1/acl/policy",
        Some(root),
        &policy.to_string(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let token = json!({"Description": name, "Policies": [{"Name": name}]});
    let (code, _, body) = call(
        agent,
        "PUT",
        "/v1/acl/token",
        Some(root),
        &token.to_string(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    (field(&body, "SecretID"), field(&body, "AccessorID"))
}

/// Reads everything but the `db` service and the `ext` node; no writes.
const READ_RULES: &str = r#"
service_prefix "" {
  policy = "read"
  intentions = "read"
}
service "db" {
  policy = "deny"
}
node_prefix "" {
  policy = "read"
}
node "ext" {
  policy = "deny"
}
key_prefix "" {
  policy = "read"
}
session_prefix "" {
  policy = "read"
}
agent_prefix "" {
  policy = "read"
}
event_prefix "" {
  policy = "read"
}
operator = "read"
keyring = "read"
acl = "read"
"#;

/// Writes everything.
const WRITE_RULES: &str = r#"
service_prefix "" {
  policy = "write"
  intentions = "write"
}
node_prefix "" {
  policy = "write"
}
key_prefix "" {
  policy = "write"
}
session_prefix "" {
  policy = "write"
}
agent_prefix "" {
  policy = "write"
}
event_prefix "" {
  policy = "write"
}
operator = "write"
mesh = "write"
keyring = "write"
acl = "write"
"#;

async fn put_ok(agent: &TestAgent, root: &str, method: &str, path: &str, body: Value) -> String {
    let (code, _, text) = call(agent, method, path, Some(root), &body.to_string()).await;
    assert_eq!(code, 200, "{method} {path}: {text}");
    text
}

#[tokio::test]
async fn every_endpoint_with_no_read_and_write_tokens() {
    init_tracing();
    let (_dir, config) = acl_config();
    let agent = TestAgent::start(&["-dev", "-config-file", &config])
        .await
        .unwrap();
    let node = agent.node.clone();

    tracing::info!("bootstrap, and seed every kind of state with the management token");
    let (code, _, body) = call(&agent, "PUT", "/v1/acl/bootstrap", None, "").await;
    assert_eq!(code, 200, "{body}");
    let root = field(&body, "SecretID");
    let r = root.as_str();
    // The agent's own catalog writes (anti-entropy) need a token the servers accept.
    set_agent_token(&agent, r, &root).await;
    put_ok(
        &agent,
        r,
        "PUT",
        "/v1/agent/service/register",
        json!({"Name": "web", "Port": 80,
        "Check": {"CheckID": "web-ttl", "Name": "web ttl", "TTL": "10m"}}),
    )
    .await;
    put_ok(
        &agent,
        r,
        "PUT",
        "/v1/agent/service/register",
        json!({"Name": "db", "Port": 5432}),
    )
    .await;
    put_ok(
        &agent,
        r,
        "PUT",
        "/v1/catalog/register",
        json!({"Node": "ext", "Address": "10.0.0.9",
        "Service": {"Service": "db", "ID": "db-ext", "Port": 5432},
        "Check": {"CheckID": "ext-alive", "Name": "ext alive", "Status": "passing"}}),
    )
    .await;
    put_ok(&agent, r, "PUT", "/v1/kv/app/a", json!(1)).await;
    let session = field(
        &put_ok(
            &agent,
            r,
            "PUT",
            "/v1/session/create",
            json!({"Name": "walk"}),
        )
        .await,
        "ID",
    );
    let ixn = json!({"SourceName": "web", "DestinationName": "db", "Action": "allow"});
    let ixn_id = field(
        &put_ok(&agent, r, "POST", "/v1/connect/intentions", ixn).await,
        "ID",
    );
    put_ok(
        &agent,
        r,
        "PUT",
        "/v1/config",
        json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"}),
    )
    .await;
    put_ok(&agent, r, "PUT", "/v1/event/fire/deploy", json!(null)).await;
    let (reader, reader_accessor) = token_with(&agent, r, "walk-read", READ_RULES).await;
    let (writer, _) = token_with(&agent, r, "walk-write", WRITE_RULES).await;
    let (_, victim_accessor) = token_with(&agent, r, "walk-victim", "").await;
    let (_, _, policy) = call(
        &agent,
        "GET",
        "/v1/acl/policy/name/walk-victim",
        Some(r),
        "",
    )
    .await;
    let policy_id = field(&policy, "ID");
    let role = put_ok(
        &agent,
        r,
        "PUT",
        "/v1/acl/role",
        json!({"Name": "walk-role"}),
    )
    .await;
    let role_id = field(&role, "ID");
    let (_, _, ca) = call(&agent, "GET", "/v1/connect/ca/configuration", Some(r), "").await;
    let (_, _, autopilot) = call(
        &agent,
        "GET",
        "/v1/operator/autopilot/configuration",
        Some(r),
        "",
    )
    .await;
    assert_eventually!(
        call(&agent, "GET", "/v1/event/list", Some(r), "")
            .await
            .2
            .contains("deploy"),
        "the event reached the agent's list"
    );
    assert_eventually!(
        call(&agent, "GET", "/v1/health/checks/web", Some(r), "")
            .await
            .2
            .contains("web-ttl")
            && call(&agent, "GET", "/v1/catalog/service/db", Some(r), "")
                .await
                .2
                .matches("\"ServiceID\"")
                .count()
                == 2,
        "the agent's services and checks reached the catalog"
    );
    let coord = json!({"Node": node, "Coord": {"Vec": vec![0.0; 8], "Error": 1.5, "Adjustment": 0.0, "Height": 1e-5}});
    let uri = "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/api";

    let rows = vec![
        // Reads: refused, filtered or full, per token.
        row(
            "/v1/agent/self",
            "GET",
            "/v1/agent/self",
            [Deny, Full, Full],
        ),
        row(
            "/v1/agent/members",
            "GET",
            "/v1/agent/members",
            [Hide, Full, Full],
        ),
        row(
            "/v1/agent/services",
            "GET",
            "/v1/agent/services",
            [Hide, Hide, Full],
        ),
        row(
            "/v1/agent/service/:id",
            "GET",
            "/v1/agent/service/web",
            [Deny, Full, Full],
        ),
        row(
            "/v1/agent/service/:id",
            "GET",
            "/v1/agent/service/db",
            [Deny, Deny, Full],
        ),
        row(
            "/v1/agent/checks",
            "GET",
            "/v1/agent/checks",
            [Hide, Full, Full],
        ),
        row(
            "/v1/agent/health/service/name/:name",
            "GET",
            "/v1/agent/health/service/name/web",
            [Deny, Full, Full],
        ),
        row(
            "/v1/agent/health/service/id/:id",
            "GET",
            "/v1/agent/health/service/id/db",
            [Deny, Deny, Full],
        ),
        row(
            "/v1/agent/metrics",
            "GET",
            "/v1/agent/metrics",
            [Deny, Full, Full],
        ),
        Row {
            stream: true,
            ..row(
                "/v1/agent/monitor",
                "GET",
                "/v1/agent/monitor",
                [Deny, Full, Full],
            )
        },
        row(
            "/v1/agent/connect/ca/roots",
            "GET",
            "/v1/agent/connect/ca/roots",
            [Full, Full, Full],
        ),
        row(
            "/v1/agent/connect/ca/leaf/:service",
            "GET",
            "/v1/agent/connect/ca/leaf/web",
            [Deny, Deny, Full],
        ),
        row(
            "/v1/catalog/datacenters",
            "GET",
            "/v1/catalog/datacenters",
            [Full, Full, Full],
        ),
        row(
            "/v1/catalog/nodes",
            "GET",
            "/v1/catalog/nodes",
            [Hide, Hide, Full],
        ),
        row(
            "/v1/catalog/services",
            "GET",
            "/v1/catalog/services",
            [Hide, Hide, Full],
        ),
        row(
            "/v1/catalog/service/:name",
            "GET",
            "/v1/catalog/service/web",
            [Hide, Full, Full],
        ),
        row(
            "/v1/catalog/service/:name",
            "GET",
            "/v1/catalog/service/db",
            [Hide, Hide, Full],
        ),
        row(
            "/v1/catalog/node/:node",
            "GET",
            format!("/v1/catalog/node/{node}"),
            [Hide, Hide, Full],
        ),
        row(
            "/v1/catalog/connect/:service",
            "GET",
            "/v1/catalog/connect/web",
            [Deny, Full, Full],
        ),
        row(
            "/v1/health/service/:name",
            "GET",
            "/v1/health/service/web",
            [Hide, Full, Full],
        ),
        row(
            "/v1/health/checks/:service",
            "GET",
            "/v1/health/checks/web",
            [Hide, Full, Full],
        ),
        row(
            "/v1/health/node/:node",
            "GET",
            format!("/v1/health/node/{node}"),
            [Hide, Full, Full],
        ),
        row(
            "/v1/health/state/:state",
            "GET",
            "/v1/health/state/any",
            [Hide, Hide, Full],
        ),
        row(
            "/v1/health/connect/:service",
            "GET",
            "/v1/health/connect/db",
            [Deny, Deny, Full],
        ),
        row("/v1/kv/:key", "GET", "/v1/kv/app/a", [Deny, Full, Full]),
        row("/v1/kv/:key", "GET", "/v1/kv/?recurse", [Hide, Full, Full]),
        row(
            "/v1/session/info/:id",
            "GET",
            format!("/v1/session/info/{session}"),
            [Hide, Full, Full],
        ),
        row(
            "/v1/session/list",
            "GET",
            "/v1/session/list",
            [Hide, Full, Full],
        ),
        row(
            "/v1/session/node/:node",
            "GET",
            format!("/v1/session/node/{node}"),
            [Hide, Full, Full],
        ),
        row(
            "/v1/event/list",
            "GET",
            "/v1/event/list",
            [Hide, Full, Full],
        ),
        row(
            "/v1/coordinate/datacenters",
            "GET",
            "/v1/coordinate/datacenters",
            [Full, Full, Full],
        ),
        row(
            "/v1/coordinate/nodes",
            "GET",
            "/v1/coordinate/nodes",
            [Pass, Pass, Full],
        ),
        row(
            "/v1/coordinate/node/:node",
            "GET",
            format!("/v1/coordinate/node/{node}"),
            [Deny, Pass, Pass],
        ),
        row(
            "/v1/config/:kind",
            "GET",
            "/v1/config/service-defaults",
            [Hide, Full, Full],
        ),
        row(
            "/v1/config/:kind/:name",
            "GET",
            "/v1/config/service-defaults/web",
            [Deny, Full, Full],
        ),
        row(
            "/v1/config/:kind",
            "GET",
            "/v1/config/proxy-defaults",
            [Full, Full, Full],
        ),
        row(
            "/v1/discovery-chain/:service",
            "GET",
            "/v1/discovery-chain/web",
            [Deny, Full, Full],
        ),
        row(
            "/v1/connect/intentions",
            "GET",
            "/v1/connect/intentions",
            [Hide, Full, Full],
        ),
        row(
            "/v1/connect/intentions/exact",
            "GET",
            "/v1/connect/intentions/exact?source=web&destination=db",
            [Deny, Full, Full],
        ),
        row(
            "/v1/connect/intentions/:id",
            "GET",
            format!("/v1/connect/intentions/{ixn_id}"),
            [Deny, Full, Full],
        ),
        row(
            "/v1/connect/intentions/match",
            "GET",
            "/v1/connect/intentions/match?by=destination&name=db",
            [Deny, Deny, Full],
        ),
        row(
            "/v1/connect/intentions/check",
            "GET",
            "/v1/connect/intentions/check?source=web&destination=db",
            [Deny, Deny, Full],
        ),
        row(
            "/v1/connect/ca/roots",
            "GET",
            "/v1/connect/ca/roots",
            [Full, Full, Full],
        ),
        row(
            "/v1/connect/ca/configuration",
            "GET",
            "/v1/connect/ca/configuration",
            [Deny, Full, Full],
        ),
        row(
            "/v1/operator/raft/configuration",
            "GET",
            "/v1/operator/raft/configuration",
            [Deny, Full, Full],
        ),
        row(
            "/v1/operator/autopilot/configuration",
            "GET",
            "/v1/operator/autopilot/configuration",
            [Deny, Full, Full],
        ),
        row(
            "/v1/operator/autopilot/health",
            "GET",
            "/v1/operator/autopilot/health",
            [Deny, Pass, Pass],
        ),
        row(
            "/v1/operator/autopilot/state",
            "GET",
            "/v1/operator/autopilot/state",
            [Deny, Full, Full],
        ),
        row(
            "/v1/operator/keyring",
            "GET",
            "/v1/operator/keyring",
            [Deny, Pass, Pass],
        ),
        row("/v1/snapshot", "GET", "/v1/snapshot", [Deny, Deny, Pass]),
        row(
            "/v1/status/leader",
            "GET",
            "/v1/status/leader",
            [Full, Full, Full],
        ),
        row(
            "/v1/status/peers",
            "GET",
            "/v1/status/peers",
            [Full, Full, Full],
        ),
        row(
            "/v1/acl/tokens",
            "GET",
            "/v1/acl/tokens",
            [Deny, Full, Full],
        ),
        row(
            "/v1/acl/token/self",
            "GET",
            "/v1/acl/token/self",
            [Any, Full, Full],
        ),
        row(
            "/v1/acl/token/:AccessorID",
            "GET",
            format!("/v1/acl/token/{reader_accessor}"),
            [Deny, Full, Full],
        ),
        row(
            "/v1/acl/policies",
            "GET",
            "/v1/acl/policies",
            [Deny, Full, Full],
        ),
        row(
            "/v1/acl/policy/:id",
            "GET",
            format!("/v1/acl/policy/{policy_id}"),
            [Deny, Full, Full],
        ),
        row(
            "/v1/acl/policy/name/:name",
            "GET",
            "/v1/acl/policy/name/walk-read",
            [Deny, Full, Full],
        ),
        row("/v1/acl/roles", "GET", "/v1/acl/roles", [Deny, Full, Full]),
        row(
            "/v1/acl/role/:id",
            "GET",
            format!("/v1/acl/role/{role_id}"),
            [Deny, Full, Full],
        ),
        row(
            "/v1/acl/role/name/:name",
            "GET",
            "/v1/acl/role/name/walk-role",
            [Deny, Full, Full],
        ),
        row(
            "/v1/acl/templated-policies",
            "GET",
            "/v1/acl/templated-policies",
            [Deny, Full, Full],
        ),
        row(
            "/v1/acl/templated-policy/name/:name",
            "GET",
            "/v1/acl/templated-policy/name/builtin/service",
            [Deny, Full, Full],
        ),
        // Writes that leave what later rows read in place.
        write(
            "/v1/agent/service/register",
            "PUT",
            "/v1/agent/service/register",
            json!({"Name": "new-svc"}),
        ),
        write(
            "/v1/agent/service/maintenance/:id",
            "PUT",
            "/v1/agent/service/maintenance/web?enable=true",
            "",
        ),
        write(
            "/v1/agent/maintenance",
            "PUT",
            "/v1/agent/maintenance?enable=true",
            "",
        ),
        write(
            "/v1/agent/maintenance",
            "PUT",
            "/v1/agent/maintenance?enable=false",
            "",
        ),
        write(
            "/v1/agent/check/register",
            "PUT",
            "/v1/agent/check/register",
            json!({"Name": "new-check", "TTL": "10m"}),
        ),
        write(
            "/v1/agent/check/pass|warn|fail/:id",
            "PUT",
            "/v1/agent/check/pass/web-ttl",
            "",
        ),
        write(
            "/v1/agent/check/pass|warn|fail/:id",
            "PUT",
            "/v1/agent/check/warn/web-ttl",
            "",
        ),
        write(
            "/v1/agent/check/pass|warn|fail/:id",
            "PUT",
            "/v1/agent/check/fail/web-ttl",
            "",
        ),
        write(
            "/v1/agent/check/update/:id",
            "PUT",
            "/v1/agent/check/update/web-ttl",
            json!({"Status": "passing"}),
        ),
        write("/v1/agent/reload", "PUT", "/v1/agent/reload", ""),
        write(
            "/v1/agent/join/:address",
            "PUT",
            "/v1/agent/join/127.0.0.1:1",
            "",
        ),
        write(
            "/v1/agent/force-leave/:node",
            "PUT",
            "/v1/agent/force-leave/no-such-node",
            "",
        ),
        write(
            "/v1/agent/token/:kind",
            "PUT",
            "/v1/agent/token/replication",
            json!({"Token": "x"}),
        ),
        write(
            "/v1/agent/connect/authorize",
            "POST",
            "/v1/agent/connect/authorize",
            json!({"Target": "web", "ClientCertURI": uri}),
        ),
        write(
            "/v1/catalog/register",
            "PUT",
            "/v1/catalog/register",
            json!({"Node": "walk-new", "Address": "10.0.0.10"}),
        ),
        write(
            "/v1/catalog/register",
            "PUT",
            "/v1/catalog/register",
            json!({"Node": "ext", "Address": "10.0.0.9", "Service": {"Service": "db", "ID": "db-2"}}),
        ),
        write("/v1/kv/:key", "PUT", "/v1/kv/app/b", "2"),
        write(
            "/v1/txn",
            "PUT",
            "/v1/txn",
            json!([{"KV": {"Verb": "set", "Key": "app/c", "Value": "Mw=="}}]),
        ),
        write("/v1/session/create", "PUT", "/v1/session/create", json!({})),
        write(
            "/v1/session/renew/:id",
            "PUT",
            format!("/v1/session/renew/{session}"),
            "",
        ),
        write("/v1/event/fire/:name", "PUT", "/v1/event/fire/deploy", ""),
        write(
            "/v1/coordinate/update",
            "PUT",
            "/v1/coordinate/update",
            &coord,
        ),
        write(
            "/v1/config",
            "PUT",
            "/v1/config",
            json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"}),
        ),
        write(
            "/v1/config",
            "PUT",
            "/v1/config",
            json!({"Kind": "proxy-defaults", "Name": "global"}),
        ),
        write(
            "/v1/connect/intentions/exact",
            "PUT",
            "/v1/connect/intentions/exact?source=api&destination=web",
            json!({"Action": "allow"}),
        ),
        write(
            "/v1/connect/intentions",
            "POST",
            "/v1/connect/intentions",
            json!({"SourceName": "api2", "DestinationName": "web", "Action": "deny"}),
        ),
        write(
            "/v1/connect/intentions/:id",
            "PUT",
            format!("/v1/connect/intentions/{ixn_id}"),
            json!({"SourceName": "web", "DestinationName": "db", "Action": "allow"}),
        ),
        write(
            "/v1/connect/ca/configuration",
            "PUT",
            "/v1/connect/ca/configuration",
            &ca,
        ),
        write(
            "/v1/operator/raft/peer",
            "DELETE",
            "/v1/operator/raft/peer?address=10.9.9.9:8300",
            "",
        ),
        write(
            "/v1/operator/autopilot/configuration",
            "PUT",
            "/v1/operator/autopilot/configuration",
            &autopilot,
        ),
        write(
            "/v1/operator/keyring",
            "POST",
            "/v1/operator/keyring",
            json!({"Key": "aGVsbG8gd29ybGQgMTIzNA=="}),
        ),
        write("/v1/snapshot", "PUT", "/v1/snapshot", "not an archive"),
        write(
            "/v1/acl/token",
            "PUT",
            "/v1/acl/token",
            json!({"Description": "walk"}),
        ),
        write(
            "/v1/acl/token/:AccessorID",
            "PUT",
            format!("/v1/acl/token/{victim_accessor}"),
            json!({"Description": "renamed"}),
        ),
        write(
            "/v1/acl/token/:AccessorID/clone",
            "PUT",
            format!("/v1/acl/token/{victim_accessor}/clone"),
            json!({}),
        ),
        write(
            "/v1/acl/policy",
            "PUT",
            "/v1/acl/policy",
            json!({"Name": "walk-new", "Rules": ""}),
        ),
        write(
            "/v1/acl/policy/:id",
            "PUT",
            format!("/v1/acl/policy/{policy_id}"),
            json!({"Name": "walk-victim", "Description": "x"}),
        ),
        write(
            "/v1/acl/role",
            "PUT",
            "/v1/acl/role",
            json!({"Name": "walk-new-role"}),
        ),
        write(
            "/v1/acl/role/:id",
            "PUT",
            format!("/v1/acl/role/{role_id}"),
            json!({"Name": "walk-role", "Description": "x"}),
        ),
        with(
            row(
                "/v1/acl/bootstrap",
                "PUT",
                "/v1/acl/bootstrap",
                [Deny, Deny, Deny],
            ),
            "",
        ),
        // Writes that remove what they name: last.
        write(
            "/v1/connect/intentions/:id",
            "DELETE",
            format!("/v1/connect/intentions/{ixn_id}"),
            "",
        ),
        write(
            "/v1/connect/intentions/exact",
            "DELETE",
            "/v1/connect/intentions/exact?source=api&destination=web",
            "",
        ),
        write(
            "/v1/config/:kind/:name",
            "DELETE",
            "/v1/config/service-defaults/web",
            "",
        ),
        write(
            "/v1/session/destroy/:id",
            "PUT",
            format!("/v1/session/destroy/{session}"),
            "",
        ),
        write("/v1/kv/:key", "DELETE", "/v1/kv/app/a", ""),
        write(
            "/v1/catalog/deregister",
            "PUT",
            "/v1/catalog/deregister",
            json!({"Node": "ext", "ServiceID": "db-ext"}),
        ),
        write(
            "/v1/agent/check/deregister/:id",
            "PUT",
            "/v1/agent/check/deregister/web-ttl",
            "",
        ),
        write(
            "/v1/agent/service/deregister/:id",
            "PUT",
            "/v1/agent/service/deregister/db",
            "",
        ),
        write(
            "/v1/acl/token/:AccessorID",
            "DELETE",
            format!("/v1/acl/token/{victim_accessor}"),
            "",
        ),
        write(
            "/v1/acl/policy/:id",
            "DELETE",
            format!("/v1/acl/policy/{policy_id}"),
            "",
        ),
        write(
            "/v1/acl/role/:id",
            "DELETE",
            format!("/v1/acl/role/{role_id}"),
            "",
        ),
        write(
            "/v1/operator/raft/transfer-leader",
            "POST",
            "/v1/operator/raft/transfer-leader",
            "",
        ),
        // Stops the agent: the very last row.
        write("/v1/agent/leave", "PUT", "/v1/agent/leave", ""),
    ];

    tracing::info!("the table covers every endpoint docs/api.md names");
    let walked: BTreeSet<&str> = rows.iter().map(|r| r.doc).collect();
    let missing: Vec<String> = documented_paths()
        .into_iter()
        .filter(|p| !walked.contains(p.as_str()) && !NOT_WALKED.contains(&p.as_str()))
        .collect();
    assert!(missing.is_empty(), "documented but not walked: {missing:?}");

    tracing::info!(
        rows = rows.len(),
        "walking every row with no token, a read token, a write token"
    );
    let tokens = [None, Some(reader.as_str()), Some(writer.as_str())];
    let names = ["no token", "read token", "write token"];
    for r in &rows {
        // The state a refused write must leave alone: read once settled, then carried from
        // one token's check to the next (a refusal changes nothing in between).
        let mut known: Option<Vec<(String, String)>> = None;
        for (i, token) in tokens.iter().enumerate() {
            let expect = r.expect[i];
            let denied_write = expect == Deny && r.method != "GET";
            let before = match (denied_write, known.take()) {
                (false, _) => None,
                (true, Some(state)) => Some(state),
                (true, None) => Some(settled(&agent, &root).await),
            };
            let (code, filtered, body) = send(&agent, r, *token).await;
            let what = format!("{} {} with {}: {code} {body}", r.method, r.path, names[i]);
            match expect {
                Deny => {
                    assert_eq!(code, 403, "{what}");
                    assert!(body.starts_with("Permission denied"), "{what}");
                }
                Pass => assert_ne!(code, 403, "{what}"),
                Hide => assert!(code != 403 && filtered, "expected filtered: {what}"),
                Full => assert!(code != 403 && !filtered, "expected unfiltered: {what}"),
                Any => {}
            }
            if let Some(before) = before {
                let after = state(&agent, &root).await;
                assert_eq!(after, before, "a refused write changed state: {what}");
                known = Some(after);
            }
        }
    }
}

#[tokio::test]
async fn dns_answers_what_the_default_token_reads() {
    let (_dir, agent, root) = bootstrapped().await;
    set_agent_token(&agent, &root, &root).await;
    for name in ["web", "db"] {
        put_ok(
            &agent,
            &root,
            "PUT",
            "/v1/agent/service/register",
            json!({"Name": name, "Port": 80}),
        )
        .await;
    }
    let dns = agent.dns;
    let lookup = move |name: &'static str| async move {
        let m = query(dns, Transport::Udp, name, RecordType::A)
            .await
            .unwrap();
        (m.response_code(), m.answers().len())
    };

    tracing::info!("anonymous (no default token) may read nothing: every service is NXDOMAIN");
    assert_eventually!(
        call(&agent, "GET", "/v1/catalog/service/web", Some(&root), "")
            .await
            .2
            .contains("web"),
        "web is in the catalog"
    );
    assert_eq!(
        lookup("web.service.consul.").await.0,
        ResponseCode::NXDomain
    );
    assert_eq!(lookup("db.service.consul.").await.0, ResponseCode::NXDomain);

    tracing::info!("a default token reading web (and nodes) shows web, still not db");
    let rules =
        "service \"web\" {\n  policy = \"read\"\n}\nnode_prefix \"\" {\n  policy = \"read\"\n}";
    let (secret, _) = token_with(&agent, &root, "dns-read", rules).await;
    put_ok(
        &agent,
        &root,
        "PUT",
        "/v1/agent/token/default",
        json!({"Token": secret}),
    )
    .await;
    // The same UDP question again: an answer kept from before the change must not be replayed.
    assert_eventually!(
        lookup("web.service.consul.").await == (ResponseCode::NoError, 1),
        "web resolves once the default token reads it"
    );
    assert_eq!(lookup("db.service.consul.").await.0, ResponseCode::NXDomain);
    let node = format!("{}.node.consul.", agent.node);
    let m = query(agent.dns, Transport::Udp, &node, RecordType::A)
        .await
        .unwrap();
    assert_eq!(
        m.response_code(),
        ResponseCode::NoError,
        "nodes are readable"
    );
}

/// A `-dev` agent with ACLs on (`default_policy = "deny"`), bootstrapped: its config
/// directory (keep it), the agent, and the management token.
async fn bootstrapped() -> (tempfile::TempDir, TestAgent, String) {
    init_tracing();
    let (dir, config) = acl_config();
    let agent = TestAgent::start(&["-dev", "-config-file", &config])
        .await
        .unwrap();
    let (code, _, body) = call(&agent, "PUT", "/v1/acl/bootstrap", None, "").await;
    assert_eq!(code, 200, "{body}");
    let root = field(&body, "SecretID");
    (dir, agent, root)
}

/// `acl.tokens.agent` through the API: the token of the agent's own catalog writes.
async fn set_agent_token(agent: &TestAgent, root: &str, token: &str) {
    put_ok(
        agent,
        root,
        "PUT",
        "/v1/agent/token/agent",
        json!({"Token": token}),
    )
    .await;
}

/// The failed anti-entropy syncs `/v1/agent/metrics` counts.
async fn failed_syncs(agent: &TestAgent, root: &str) -> u64 {
    let (_, _, body) = call(agent, "GET", "/v1/agent/metrics", Some(root), "").await;
    let metrics: Value = serde_json::from_str(&body).unwrap();
    metrics["Counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Name"] == "concord.agent.ae.sync_failed")
        .and_then(|c| c["Count"].as_u64())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_servers_check_the_agents_own_catalog_writes() {
    let (_dir, agent, root) = bootstrapped().await;

    tracing::info!("without acl.tokens.agent the agent syncs as anonymous: the servers refuse");
    let before = failed_syncs(&agent, &root).await;
    put_ok(
        &agent,
        &root,
        "PUT",
        "/v1/agent/service/register",
        json!({"Name": "web", "Port": 80}),
    )
    .await;
    assert_eventually!(
        failed_syncs(&agent, &root).await > before,
        "a sync of the new service failed"
    );
    let (_, _, rows) = call(&agent, "GET", "/v1/catalog/service/web", Some(&root), "").await;
    assert_eq!(rows, "[]", "nothing reached the catalog");
    assert!(
        agent
            .logs()
            .contains("Permission denied: anonymous token lacks permission"),
        "the refusal is the servers'"
    );

    tracing::info!("with a management agent token the next sync gets through");
    set_agent_token(&agent, &root, &root).await;
    assert_eventually!(
        call(&agent, "GET", "/v1/catalog/service/web", Some(&root), "")
            .await
            .2
            .contains("ServiceName"),
        "web reached the catalog"
    );

    tracing::info!("a catalog write over HTTP is checked with the request's token, on the agent and the servers");
    let node_write = "node \"elsewhere\" {\n  policy = \"write\"\n}";
    let (writer, _) = token_with(&agent, &root, "elsewhere-writer", node_write).await;
    let register = json!({"Node": "elsewhere", "Address": "10.1.1.1"}).to_string();
    let (code, _, body) = call(
        &agent,
        "PUT",
        "/v1/catalog/register",
        Some(&writer),
        &register,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let other = json!({"Node": "other", "Address": "10.1.1.2"}).to_string();
    let (code, _, body) = call(&agent, "PUT", "/v1/catalog/register", Some(&writer), &other).await;
    assert_eq!(code, 403, "{body}");
}
