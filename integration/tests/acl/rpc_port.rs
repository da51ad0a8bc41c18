//! A client that skips the agent and talks to a server's RPC port directly, as a hostile
//! one would, with no token, an unknown one, or a read-only one: every write is refused
//! with Consul's permission-denied error and the state is unchanged; reads come back
//! refused or filtered.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use concord_api::acl::rpc::fixtures;
use concord_api::rpc::{
    Query, QueryOptions, QueryResult, ReadRequest, ReadResponse, RpcError, WriteRequest,
    WriteResponse, READ_PATH, WRITE_PATH,
};
use concord_integration::{assert_eventually, init_tracing, AgentSpec, TestAgent};
use concord_net::rpc::{CallError, RpcHttp};
use serde_json::{json, Value};

use super::call;

/// This test's loopback range (127.0.42.x).
const RPC_NET: u8 = 42;
const ROOT: &str = "5e1f0c2a-0000-4000-8000-0000000000aa";
const TIMEOUT: Duration = Duration::from_secs(10);

/// The RPC port, spoken with the agents' own client (same transport, no agent in between).
struct Hostile {
    http: RpcHttp,
    addr: String,
}

impl Hostile {
    async fn write(&self, req: WriteRequest, token: Option<&str>) -> Result<(), RpcError> {
        let req = req.authorized(token.map(str::to_string));
        let reply: Result<WriteResponse, CallError> = self
            .http
            .post(&self.addr, WRITE_PATH, &req, &[], TIMEOUT)
            .await;
        reply.map(|_| ()).map_err(CallError::into_rpc_error)
    }

    async fn read(&self, query: Query, token: Option<&str>) -> Result<QueryResult, RpcError> {
        let req = ReadRequest {
            query: query.authorized(token.map(str::to_string)),
            options: QueryOptions::default(),
        };
        let reply: Result<ReadResponse, CallError> = self
            .http
            .post(&self.addr, READ_PATH, &req, &[], TIMEOUT)
            .await;
        reply.map(|r| r.result).map_err(CallError::into_rpc_error)
    }
}

/// What the state looks like to the management token, over the HTTP API.
async fn state(agent: &TestAgent) -> Vec<String> {
    let mut seen = Vec::new();
    for path in [
        "/v1/kv/?recurse",
        "/v1/catalog/nodes",
        "/v1/session/list",
        "/v1/config/service-defaults",
        "/v1/acl/policies",
        "/v1/acl/tokens",
        "/v1/operator/raft/configuration",
    ] {
        let (code, _, body) = call(agent, "GET", path, Some(ROOT), "").await;
        // Indexes and times move with the servers' own work; the records must not.
        let mut v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        strip(&mut v);
        seen.push(format!("{path} {code} {v}"));
    }
    seen
}

fn strip(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.ends_with("Index") && k != "Index" && k != "LastContact");
            m.values_mut().for_each(strip);
        }
        Value::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

#[tokio::test]
async fn the_rpc_port_refuses_every_write_without_a_grant() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acl.json");
    let config = json!({"acl": {"enabled": true, "default_policy": "deny",
        "tokens": {"initial_management": ROOT, "agent": ROOT}}});
    std::fs::write(&path, config.to_string()).unwrap();
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, RPC_NET, 10));
    let spec = AgentSpec::at("srv", ip).args(&[
        "-server",
        "-bootstrap-expect",
        "1",
        "-config-file",
        path.to_str().unwrap(),
    ]);
    let agent = TestAgent::launch(spec).await.unwrap();
    let hostile = Hostile {
        http: RpcHttp::new().unwrap(),
        addr: agent.rpc.to_string(),
    };

    tracing::info!("seed a key, a read-only token and a session through the agent");
    assert_eventually!(
        call(&agent, "PUT", "/v1/kv/app/config", Some(ROOT), "v1")
            .await
            .0
            == 200,
        "the initial management token works"
    );
    let policy = json!({"Name": "read-all", "Rules":
        "key_prefix \"\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }\n\
         service_prefix \"\" { policy = \"read\" }\nsession_prefix \"\" { policy = \"read\" }"});
    let (code, _, body) = call(
        &agent,
        "PUT",
        "/v1/acl/policy",
        Some(ROOT),
        &policy.to_string(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let token = json!({"Policies": [{"Name": "read-all"}]});
    let (code, _, body) = call(
        &agent,
        "PUT",
        "/v1/acl/token",
        Some(ROOT),
        &token.to_string(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let reader = super::field(&body, "SecretID");
    let (code, _, body) = call(&agent, "PUT", "/v1/session/create", Some(ROOT), "{}").await;
    assert_eq!(code, 200, "{body}");
    let session = super::field(&body, "ID");
    let before = state(&agent).await;

    tracing::info!("every write, straight to the RPC port, is refused");
    let targets = fixtures::Targets {
        node: "srv",
        key: "app/config",
        session: &session,
    };
    for (req, _rule) in fixtures::every_write(&targets) {
        let forged = Some(fixtures::FORGED_SECRET);
        for token in [None, Some("guessed-secret"), Some(reader.as_str()), forged] {
            let err = hostile.write(req.clone(), token).await.unwrap_err();
            let RpcError::PermissionDenied(text) = &err else {
                panic!("{req:?} with {token:?}: {err:?}");
            };
            let expected = match token {
                None => "Permission denied: anonymous token lacks permission",
                Some("guessed-secret") | Some(fixtures::FORGED_SECRET) => "ACL not found",
                Some(_) => "Permission denied: token with AccessorID",
            };
            assert!(text.starts_with(expected), "{req:?} with {token:?}: {text}");
        }
    }
    assert_eq!(
        state(&agent).await,
        before,
        "a refused write changed the state"
    );

    tracing::info!("reads: filtered to nothing without a token, refused for secrets");
    let kv = Query::KvList {
        prefix: String::new(),
    };
    assert_eq!(
        hostile.read(kv.clone(), None).await,
        Ok(QueryResult::Kv(Vec::new()))
    );
    let seen = hostile.read(kv, Some(&reader)).await;
    assert!(
        matches!(&seen, Ok(QueryResult::Kv(e)) if e.len() == 1),
        "{seen:?}"
    );
    let dump = hostile.read(Query::CatalogDump, None).await;
    assert!(
        matches!(&dump, Ok(QueryResult::CatalogDump { nodes, instances })
            if nodes.is_empty() && instances.is_empty()),
        "{dump:?}"
    );
    assert_eq!(
        hostile.read(Query::SessionList, None).await,
        Ok(QueryResult::Sessions(Vec::new()))
    );
    for token in [None, Some(reader.as_str())] {
        let snapshot = hostile.read(Query::Snapshot, token).await;
        assert!(
            matches!(snapshot, Err(RpcError::PermissionDenied(_))),
            "{snapshot:?}"
        );
    }
    let tokens = Query::Acl(concord_api::acl::AclQuery::Tokens {
        policy: None,
        role: None,
    });
    let listed = hostile.read(tokens, Some(&reader)).await;
    assert_eq!(
        listed,
        Ok(QueryResult::Acl(concord_api::acl::AclResult::Tokens(
            Vec::new()
        )))
    );
}
