//! The RPC router of a single ACL-enforcing server, driven with `oneshot` as a client that
//! bypasses every agent would: each write kind refused without a token, with an unknown
//! one and with a read-only one, nothing applied; reads refused or filtered.

use concord_api::acl::rpc::fixtures::session_on;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use concord_api::acl::authorizer::DefaultPolicy;
use concord_api::acl::rpc::fixtures;
use concord_api::acl::{
    AclLink, AclPolicy, AclResult, AclToken, AclWrite, SecretToken, GLOBAL_MANAGEMENT_POLICY_ID,
};
use concord_api::catalog::RegisterRequest;
use concord_api::kv::KvOp;
use concord_api::rpc::{
    Query, QueryOptions, QueryResult, ReadRequest, ReadResponse, RpcError, WriteRequest,
    WriteResponse, WriteResult, READ_PATH, WRITE_PATH,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tower::ServiceExt;

use crate::config::Config;
use crate::node::Shared;

const ROOT: &str = "7b0c1d2e-0000-4000-8000-0000000000aa";
const READER: &str = "7b0c1d2e-0000-4000-8000-0000000000bb";
const READ_ALL: &str =
    "key_prefix \"\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }\n\
    service_prefix \"\" { policy = \"read\" }\nsession_prefix \"\" { policy = \"read\" }\n\
    operator = \"read\"";

async fn acl_server() -> (Arc<Shared>, Router) {
    let config = Config {
        dev: true,
        rpc_max_conns_per_client: 0,
        acl: Some(DefaultPolicy::Deny),
        acl_initial_management: Some(SecretToken(ROOT.into())),
        group_commit: false,
        ..Config::new(
            "server-1",
            "8d3a2b1c-0000-4000-8000-00000000042a",
            "127.0.42.1:8300".parse().unwrap(),
        )
    };
    crate::rpc::tests::leader_of(config).await
}

async fn post<Req: Serialize, Resp: DeserializeOwned>(
    app: &Router,
    path: &str,
    req: &Req,
) -> Result<Resp, RpcError> {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(req).unwrap()))
        .unwrap();
    let resp = app.clone().oneshot(request).await.unwrap();
    let ok = resp.status().is_success();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    if ok {
        Ok(serde_json::from_slice(&body).unwrap())
    } else {
        Err(serde_json::from_slice(&body).unwrap())
    }
}

async fn write(
    app: &Router,
    req: WriteRequest,
    token: Option<&str>,
) -> Result<WriteResult, RpcError> {
    let req = req.authorized(token.map(str::to_string));
    post::<_, WriteResponse>(app, WRITE_PATH, &req)
        .await
        .map(|r| r.result)
}

async fn read(app: &Router, query: Query, token: Option<&str>) -> Result<QueryResult, RpcError> {
    let req = ReadRequest {
        query: query.authorized(token.map(str::to_string)),
        options: QueryOptions::default(),
    };
    post::<_, ReadResponse>(app, READ_PATH, &req)
        .await
        .map(|r| r.result)
}

fn applied(shared: &Shared) -> u64 {
    shared
        .raft
        .metrics()
        .borrow()
        .last_applied
        .map_or(0, |l| l.index)
}

fn set(key: &str, value: &str) -> KvOp {
    KvOp::Set {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        flags: 0,
    }
}

/// The initial management token (created with its own secret), a read-everything token,
/// a node `n1` with a session, and the key `app/a`. Returns the session's ID.
async fn seed(app: &Router) -> String {
    let root = AclToken {
        secret_id: ROOT.into(),
        policies: vec![AclLink {
            id: GLOBAL_MANAGEMENT_POLICY_ID.into(),
            name: String::new(),
        }],
        ..AclToken::default()
    };
    let create = |token| {
        WriteRequest::Acl(AclWrite::TokenSet {
            token,
            create: true,
        })
    };
    write(app, create(root), Some(ROOT)).await.unwrap();
    let policy = AclPolicy {
        name: "read-all".into(),
        rules: READ_ALL.into(),
        ..AclPolicy::default()
    };
    write(
        app,
        WriteRequest::Acl(AclWrite::PolicySet(policy)),
        Some(ROOT),
    )
    .await
    .unwrap();
    let reader = AclToken {
        secret_id: READER.into(),
        policies: vec![AclLink {
            id: String::new(),
            name: "read-all".into(),
        }],
        ..AclToken::default()
    };
    write(app, create(reader), Some(ROOT)).await.unwrap();
    let node = RegisterRequest {
        node: "n1".into(),
        address: "10.0.0.1".into(),
        ..RegisterRequest::default()
    };
    write(app, WriteRequest::Register(node), Some(ROOT))
        .await
        .unwrap();
    write(app, WriteRequest::Kv(set("app/a", "1")), Some(ROOT))
        .await
        .unwrap();
    match write(
        app,
        WriteRequest::SessionCreate(session_on("n1")),
        Some(ROOT),
    )
    .await
    {
        Ok(WriteResult::SessionId(id)) => id,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn every_write_without_a_grant_is_refused_and_changes_nothing() {
    let (shared, app) = acl_server().await;
    let session = seed(&app).await;
    let before = applied(&shared);
    let targets = fixtures::Targets {
        node: "n1",
        key: "app/a",
        session: &session,
    };
    for (req, _rule) in fixtures::every_write(&targets) {
        let forged = Some(fixtures::FORGED_SECRET);
        for token in [None, Some("not-a-token"), Some(READER), forged] {
            let err = write(&app, req.clone(), token).await.unwrap_err();
            let RpcError::PermissionDenied(text) = &err else {
                panic!("{req:?} as {token:?}: {err:?}");
            };
            let expected = match token {
                Some(READER) => "Permission denied: token with AccessorID",
                Some(_) => "ACL not found",
                None => "Permission denied: anonymous token",
            };
            assert!(text.starts_with(expected), "{req:?} as {token:?}: {text}");
        }
    }
    assert_eq!(applied(&shared), before, "a refused write reached the log");
    let kv = read(
        &app,
        Query::KvGet {
            key: "app/a".into(),
        },
        Some(ROOT),
    )
    .await;
    let Ok(QueryResult::Kv(entries)) = kv else {
        panic!("{kv:?}")
    };
    assert_eq!(entries[0].value.as_deref(), Some(&b"1"[..]));
    // The management token may.
    let ok = write(&app, WriteRequest::Kv(set("app/a", "2")), Some(ROOT)).await;
    assert_eq!(ok, Ok(WriteResult::Bool(true)));
}

#[tokio::test]
async fn reads_are_refused_or_filtered_by_the_token() {
    let (_shared, app) = acl_server().await;
    seed(&app).await;
    let list = Query::KvList {
        prefix: String::new(),
    };
    assert_eq!(
        read(&app, list.clone(), None).await,
        Ok(QueryResult::Kv(Vec::new()))
    );
    let seen = read(&app, list, Some(READER)).await;
    assert!(
        matches!(&seen, Ok(QueryResult::Kv(e)) if e.len() == 1),
        "{seen:?}"
    );
    let get = Query::KvGet {
        key: "app/a".into(),
    };
    assert!(matches!(
        read(&app, get, None).await,
        Err(RpcError::PermissionDenied(_))
    ));
    let dump = read(&app, Query::CatalogDump, None).await;
    assert_eq!(
        dump,
        Ok(QueryResult::CatalogDump {
            nodes: Vec::new(),
            instances: Vec::new()
        })
    );
    let nodes = read(
        &app,
        Query::Nodes {
            node_meta: Vec::new(),
        },
        Some(READER),
    )
    .await;
    assert!(
        matches!(&nodes, Ok(QueryResult::Nodes(n)) if !n.is_empty()),
        "{nodes:?}"
    );
    assert_eq!(
        read(&app, Query::SessionList, None).await,
        Ok(QueryResult::Sessions(Vec::new()))
    );
    for token in [None, Some(READER)] {
        let snapshot = read(&app, Query::Snapshot, token).await;
        assert!(
            matches!(snapshot, Err(RpcError::PermissionDenied(_))),
            "{snapshot:?}"
        );
    }
    // ACL records: none without `acl:read`; resolution stays open (it presents the secret).
    let tokens = Query::Acl(concord_api::acl::AclQuery::Tokens {
        policy: None,
        role: None,
    });
    assert_eq!(
        read(&app, tokens, Some(READER)).await,
        Ok(QueryResult::Acl(AclResult::Tokens(Vec::new())))
    );
    let resolve = Query::Acl(concord_api::acl::AclQuery::Resolve {
        secret_id: READER.into(),
    });
    let resolved = read(&app, resolve, None).await;
    assert!(matches!(
        resolved,
        Ok(QueryResult::Acl(AclResult::Resolved(Some(_))))
    ));
    assert!(read(&app, Query::RaftStatus, None).await.is_ok());
    // An unknown token is refused outright.
    let nodes = read(
        &app,
        Query::Nodes {
            node_meta: Vec::new(),
        },
        Some("nope"),
    )
    .await;
    assert!(matches!(nodes, Err(RpcError::PermissionDenied(t)) if t == "ACL not found"));
}

#[tokio::test]
async fn a_token_follows_its_policy_and_its_deletion_at_once() {
    let (_shared, app) = acl_server().await;
    seed(&app).await;
    let policy = |id: String, rules: &str| {
        WriteRequest::Acl(AclWrite::PolicySet(AclPolicy {
            id,
            name: "app-writer".into(),
            rules: rules.into(),
            ..AclPolicy::default()
        }))
    };
    let created = write(&app, policy(String::new(), READ_ALL), Some(ROOT)).await;
    let Ok(WriteResult::Acl(AclResult::Policy(Some(created)))) = created else {
        panic!("{created:?}")
    };
    let token = AclToken {
        secret_id: "writer-secret".into(),
        policies: vec![AclLink {
            id: created.id.clone(),
            name: String::new(),
        }],
        ..AclToken::default()
    };
    let create = WriteRequest::Acl(AclWrite::TokenSet {
        token,
        create: true,
    });
    let made = write(&app, create, Some(ROOT)).await;
    let Ok(WriteResult::Acl(AclResult::Token(Some(made)))) = made else {
        panic!("{made:?}")
    };
    let kv = || WriteRequest::Kv(set("app/a", "by-writer"));
    // Refused, and the refusal is remembered with the authorizer it came from...
    for _ in 0..2 {
        let denied = write(&app, kv(), Some("writer-secret")).await;
        assert!(
            matches!(denied, Err(RpcError::PermissionDenied(_))),
            "{denied:?}"
        );
    }
    // ...until the policy grants the write: the next call sees it.
    let grant = "key_prefix \"app/\" { policy = \"write\" }";
    write(&app, policy(created.id, grant), Some(ROOT))
        .await
        .unwrap();
    assert_eq!(
        write(&app, kv(), Some("writer-secret")).await,
        Ok(WriteResult::Bool(true))
    );
    // A deleted token is unknown at once.
    let delete = WriteRequest::Acl(AclWrite::TokenDelete {
        accessor_id: made.accessor_id,
    });
    write(&app, delete, Some(ROOT)).await.unwrap();
    let gone = write(&app, kv(), Some("writer-secret")).await;
    assert_eq!(
        gone,
        Err(RpcError::PermissionDenied("ACL not found".into()))
    );
}
