//! The RPC router on a single-node Raft, driven with `oneshot` (no sockets).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use concord_api::catalog::RegisterRequest;
use concord_api::kv::KvOp;
use concord_api::operator::{OperatorResult, OperatorWrite};
use concord_api::rpc::{
    Consistency, Query, QueryOptions, QueryResult, ReadRequest, ReadResponse, RpcError,
    WriteRequest, WriteResponse, WriteResult, READ_PATH, WRITE_PATH,
};
use concord_api::session::{Session, SessionBehavior};
use openraft::ServerState;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;
use tower::ServiceExt;

use super::forward::FORWARDED_HEADER;
use super::router;
use crate::config::Config;
use crate::node::Shared;
use crate::server::{bootstrap_single, open};

fn config(bootstrap_expect: usize) -> Config {
    Config {
        bootstrap_expect,
        dev: true,
        rpc_max_conns_per_client: 0,
        group_commit: false,
        ..Config::new(
            "server-1",
            "8d3a2b1c-0000-4000-8000-00000000002a",
            "127.0.0.1:8300".parse().unwrap(),
        )
    }
}

/// A bootstrapped single-server Raft with its router. The leader loop is not running, so
/// nothing but the test writes to the store.
async fn single_node() -> (Arc<Shared>, Router) {
    leader_of(config(1)).await
}

/// A single server of `config`, bootstrapped and leader, with its RPC router (no leader
/// loop: nothing but the test writes to the store).
pub(crate) async fn leader_of(config: Config) -> (Arc<Shared>, Router) {
    let (shared, _db) = open(config.clone()).await.unwrap();
    bootstrap_single(&shared.raft, shared.id, config.rpc_advertise)
        .await
        .unwrap();
    shared
        .raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.state == ServerState::Leader, "leader")
        .await
        .unwrap();
    shared.raft.ensure_linearizable().await.unwrap();
    let app = router(shared.clone());
    (shared, app)
}

async fn post<Req: Serialize, Resp: DeserializeOwned>(
    app: &Router,
    path: &str,
    req: &Req,
) -> Result<Resp, (StatusCode, RpcError)> {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(req).unwrap()))
        .unwrap();
    let resp = app.clone().oneshot(request).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    if status.is_success() {
        Ok(serde_json::from_slice(&body).unwrap())
    } else {
        Err((status, serde_json::from_slice(&body).unwrap()))
    }
}

async fn write(app: &Router, req: WriteRequest) -> Result<WriteResponse, (StatusCode, RpcError)> {
    post(app, WRITE_PATH, &req).await
}

async fn read(
    app: &Router,
    query: Query,
    options: QueryOptions,
) -> Result<ReadResponse, (StatusCode, RpcError)> {
    post(app, READ_PATH, &ReadRequest { query, options }).await
}

fn set(key: &str, value: &str) -> WriteRequest {
    WriteRequest::Kv(KvOp::Set {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        flags: 0,
    })
}

fn get(key: &str) -> Query {
    Query::KvGet { key: key.into() }
}

fn value_of(resp: &ReadResponse) -> Option<String> {
    match &resp.result {
        QueryResult::Kv(entries) => entries
            .first()
            .and_then(|e| e.value.clone())
            .map(|v| String::from_utf8(v).unwrap()),
        other => panic!("not a KV result: {other:?}"),
    }
}

#[tokio::test]
async fn write_then_read_in_every_consistency_mode() {
    let (_shared, app) = single_node().await;
    let written = write(&app, set("greeting", "hello")).await.unwrap();
    assert_eq!(written.result, WriteResult::Bool(true));
    for consistency in [
        Consistency::Default,
        Consistency::Stale,
        Consistency::Consistent,
    ] {
        let options = QueryOptions {
            consistency,
            ..QueryOptions::default()
        };
        let resp = read(&app, get("greeting"), options).await.unwrap();
        assert_eq!(value_of(&resp).as_deref(), Some("hello"), "{consistency:?}");
        assert_eq!(resp.meta.index, written.index);
        assert!(resp.meta.known_leader);
        assert_eq!(resp.meta.last_contact_ms, 0, "the leader answered");
    }
}

#[tokio::test]
async fn invalid_write_is_400_and_changes_nothing() {
    let (_shared, app) = single_node().await;
    let before = read(&app, Query::CatalogDump, QueryOptions::default())
        .await
        .unwrap();

    let err = write(
        &app,
        WriteRequest::Register(RegisterRequest {
            node: "n1".into(),
            ..RegisterRequest::default()
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        (
            StatusCode::BAD_REQUEST,
            RpcError::Invalid("Must provide address".into())
        )
    );

    let err = write(
        &app,
        WriteRequest::Kv(KvOp::Lock {
            key: "k".into(),
            value: vec![],
            flags: 0,
            session: "ghost".into(),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        (
            StatusCode::BAD_REQUEST,
            RpcError::Invalid("invalid session \"ghost\"".into())
        )
    );

    let after = read(&app, Query::CatalogDump, QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(after, before);
    let kv = read(&app, get("k"), QueryOptions::default()).await.unwrap();
    assert_eq!(value_of(&kv), None);
}

#[tokio::test]
async fn malformed_body_is_400() {
    let (_shared, app) = single_node().await;
    let request = Request::post(WRITE_PATH).body(Body::from("{nope")).unwrap();
    let resp = app.clone().oneshot(request).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(start_paused = true)]
async fn blocking_read_wakes_on_write() {
    let (_shared, app) = single_node().await;
    let first = write(&app, set("k", "1")).await.unwrap();
    let started = Instant::now();
    let reader = tokio::spawn({
        let app = app.clone();
        async move {
            let options = QueryOptions {
                min_index: first.index,
                max_wait_ms: 60_000,
                consistency: Consistency::Default,
            };
            read(&app, get("k"), options).await
        }
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!reader.is_finished(), "parked: nothing changed yet");

    let second = write(&app, set("k", "2")).await.unwrap();
    let resp = reader.await.unwrap().unwrap();
    assert_eq!(resp.meta.index, second.index);
    assert_eq!(value_of(&resp).as_deref(), Some("2"));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "woke before the wait ran out"
    );
}

#[tokio::test(start_paused = true)]
async fn blocking_read_ignores_unrelated_changes_and_times_out() {
    let (_shared, app) = single_node().await;
    let written = write(&app, set("watched", "1")).await.unwrap();
    let started = Instant::now();
    let reader = tokio::spawn({
        let app = app.clone();
        async move {
            let options = QueryOptions {
                min_index: written.index,
                max_wait_ms: 2_000,
                consistency: Consistency::Default,
            };
            read(&app, get("watched"), options).await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    write(&app, set("other", "x")).await.unwrap();
    let resp = reader.await.unwrap().unwrap();
    let waited = started.elapsed();
    assert_eq!(
        resp.meta.index, written.index,
        "the watched key did not change"
    );
    assert!(
        waited >= Duration::from_millis(2_000) && waited <= Duration::from_millis(2_200),
        "waited {waited:?}: the 2s wait plus at most 1/16 jitter"
    );
}

#[tokio::test(start_paused = true)]
async fn blocking_list_wakes_on_delete_under_the_prefix() {
    let (_shared, app) = single_node().await;
    write(&app, set("app/a", "1")).await.unwrap();
    let last = write(&app, set("app/b", "2")).await.unwrap();
    let reader = tokio::spawn({
        let app = app.clone();
        async move {
            let options = QueryOptions {
                min_index: last.index,
                max_wait_ms: 60_000,
                consistency: Consistency::Stale,
            };
            read(
                &app,
                Query::KvList {
                    prefix: "app/".into(),
                },
                options,
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let deleted = write(
        &app,
        WriteRequest::Kv(KvOp::Delete {
            key: "app/b".into(),
        }),
    )
    .await
    .unwrap();
    let resp = reader.await.unwrap().unwrap();
    assert_eq!(
        resp.meta.index, deleted.index,
        "the tombstone moved the prefix index"
    );
    let QueryResult::Kv(entries) = resp.result else {
        panic!()
    };
    assert_eq!(entries.len(), 1);
}

fn new_session(ttl: &str) -> Session {
    Session {
        id: String::new(),
        name: "lock".into(),
        node: "server-1".into(),
        lock_delay: 0,
        behavior: SessionBehavior::Release,
        ttl: ttl.into(),
        node_checks: vec![],
        service_checks: vec![],
        create_index: 0,
        modify_index: 0,
    }
}

#[tokio::test]
async fn sessions_create_renew_destroy() {
    let (shared, app) = single_node().await;
    write(
        &app,
        WriteRequest::Register(RegisterRequest {
            node: "server-1".into(),
            address: "127.0.0.1".into(),
            ..RegisterRequest::default()
        }),
    )
    .await
    .unwrap();

    let err = write(&app, WriteRequest::SessionCreate(new_session("5s")))
        .await
        .unwrap_err();
    assert_eq!(err.0, StatusCode::BAD_REQUEST);
    assert!(
        matches!(&err.1, RpcError::Invalid(m) if m.starts_with("Invalid Session TTL '5s'")),
        "{err:?}"
    );

    let created = write(&app, WriteRequest::SessionCreate(new_session("15s")))
        .await
        .unwrap();
    let WriteResult::SessionId(id) = created.result else {
        panic!("{created:?}")
    };
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "the leader assigns a UUID"
    );
    assert_eq!(shared.timers.armed(), 1, "TTL timer armed on the leader");

    let renewed = write(&app, WriteRequest::SessionRenew { id: id.clone() })
        .await
        .unwrap();
    let WriteResult::Session(Some(session)) = renewed.result else {
        panic!("{renewed:?}")
    };
    assert_eq!(session.id, id);
    let unknown = write(&app, WriteRequest::SessionRenew { id: "nope".into() })
        .await
        .unwrap();
    assert_eq!(unknown.result, WriteResult::Session(None));

    write(&app, WriteRequest::SessionDestroy { id: id.clone() })
        .await
        .unwrap();
    assert_eq!(shared.timers.armed(), 0);
    let info = read(&app, Query::SessionInfo { id }, QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(info.result, QueryResult::Sessions(vec![]));
}

#[tokio::test]
async fn raft_status_names_this_server() {
    let (_shared, app) = single_node().await;
    let resp = read(&app, Query::RaftStatus, QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(
        resp.result,
        QueryResult::RaftStatus {
            leader: "127.0.0.1:8300".into(),
            peers: vec!["127.0.0.1:8300".into()],
        }
    );
}

#[tokio::test]
async fn without_a_leader_writes_are_503_and_stale_reads_answer() {
    let (shared, _db) = open(config(0)).await.unwrap();
    let app = router(shared);
    let err = write(&app, set("k", "v")).await.unwrap_err();
    assert_eq!(err, (StatusCode::SERVICE_UNAVAILABLE, RpcError::NoLeader));
    let err = read(&app, get("k"), QueryOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err, (StatusCode::SERVICE_UNAVAILABLE, RpcError::NoLeader));
    let stale = QueryOptions {
        consistency: Consistency::Stale,
        ..QueryOptions::default()
    };
    let resp = read(&app, get("k"), stale).await.unwrap();
    assert!(!resp.meta.known_leader);
    assert_eq!(resp.meta.index, 1);
}

#[tokio::test]
async fn forwarded_requests_are_not_forwarded_again() {
    let (shared, _db) = open(config(0)).await.unwrap();
    let app = router(shared);
    let request = Request::post(WRITE_PATH)
        .header(FORWARDED_HEADER, "1")
        .body(Body::from(serde_json::to_vec(&set("k", "v")).unwrap()))
        .unwrap();
    let resp = app.oneshot(request).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn an_unreachable_leader_is_reported_as_not_leader() {
    let (shared, _db) = open(config(0)).await.unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let err = super::forward::forward::<_, WriteResponse>(
        &shared,
        &addr,
        WRITE_PATH,
        &set("k", "v"),
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    // Refused before it reached a leader: safe to retry, so a held request tries again.
    assert_eq!(
        err,
        super::forward::Attempt::Retry(RpcError::NotLeader {
            leader_addr: Some(addr)
        })
    );
}

/// The leader re-checks config entries before they enter the log: wrong kind/name pairing,
/// a missing name or a broken rule is refused, and what is stored is normalized.
#[test]
fn config_entries_are_checked_before_proposing() {
    use crate::command::Command;

    let set = |kind: &str, name: &str, body: serde_json::Value| {
        super::write::to_command(
            WriteRequest::ConfigEntrySet {
                kind: kind.into(),
                name: name.into(),
                body,
                cas: None,
            },
            0,
            crate::SESSION_TTL_MIN,
        )
    };
    let ok = set(
        "service-defaults",
        "db",
        serde_json::json!({"Kind": "service-defaults", "Name": "db", "Protocol": "HTTP"}),
    )
    .unwrap();
    let Command::ConfigEntrySet { body, .. } = ok.0 else {
        panic!("wrong command {ok:?}")
    };
    assert_eq!(body["Protocol"], "http");
    for (kind, name, body) in [
        (
            "service-defaults",
            "web",
            serde_json::json!({"Kind": "service-defaults", "Name": "db"}),
        ),
        (
            "service-defaults",
            "",
            serde_json::json!({"Kind": "service-defaults"}),
        ),
        (
            "service-splitter",
            "db",
            serde_json::json!({"Kind": "service-splitter", "Name": "db", "Splits": [{"Weight": 10}]}),
        ),
        (
            "bogus",
            "db",
            serde_json::json!({"Kind": "bogus", "Name": "db"}),
        ),
    ] {
        let err = set(kind, name, body).unwrap_err();
        assert!(
            matches!(err, RpcError::Invalid(_)),
            "{kind}/{name}: {err:?}"
        );
    }
}
/// An operator read's result.
async fn operator_read(app: &Router, q: concord_api::operator::OperatorQuery) -> OperatorResult {
    match read(app, Query::Operator(q), QueryOptions::default())
        .await
        .unwrap()
        .result
    {
        QueryResult::Operator(r) => r,
        other => panic!("{other:?}"),
    }
}

/// An operator write's result or error.
async fn operator_write(
    app: &Router,
    op: OperatorWrite,
) -> Result<OperatorResult, (StatusCode, RpcError)> {
    write(app, WriteRequest::Operator(op))
        .await
        .map(|r| match r.result {
            WriteResult::Operator(r) => r,
            other => panic!("{other:?}"),
        })
}

#[tokio::test]
async fn operator_reads_show_raft_and_autopilot_settings_change_by_cas() {
    use concord_api::operator::{AutopilotConfig, OperatorQuery};
    let (_shared, app) = single_node().await;
    let OperatorResult::RaftConfiguration(config) =
        operator_read(&app, OperatorQuery::RaftConfiguration).await
    else {
        panic!("not a configuration");
    };
    assert_eq!(config.servers.len(), 1);
    let me = &config.servers[0];
    assert_eq!(me.id, "8d3a2b1c-0000-4000-8000-00000000002a");
    assert_eq!(
        (me.node.as_str(), me.address.as_str()),
        ("server-1", "127.0.0.1:8300")
    );
    assert!(me.leader && me.voter);

    let OperatorResult::AutopilotConfig(defaults) =
        operator_read(&app, OperatorQuery::AutopilotConfig).await
    else {
        panic!("not a config");
    };
    assert_eq!(defaults, AutopilotConfig::default());
    let changed = AutopilotConfig {
        max_trailing_logs: 10,
        ..defaults.clone()
    };
    let set = |cas| OperatorWrite::SetAutopilotConfig {
        config: changed.clone(),
        cas,
    };
    assert_eq!(
        operator_write(&app, set(Some(99))).await.unwrap(),
        OperatorResult::Bool(false),
        "a stale CAS changes nothing"
    );
    assert_eq!(
        operator_write(&app, set(Some(0))).await.unwrap(),
        OperatorResult::Bool(true)
    );
    let OperatorResult::AutopilotConfig(now) =
        operator_read(&app, OperatorQuery::AutopilotConfig).await
    else {
        panic!("not a config");
    };
    assert_eq!(now.max_trailing_logs, 10);
    assert!(now.modify_index > 0);
}

#[tokio::test]
async fn remove_peer_refuses_unknown_peers_and_the_leader() {
    let (_shared, app) = single_node().await;
    let remove = |id: Option<&str>, address: Option<&str>| OperatorWrite::RemovePeer {
        id: id.map(String::from),
        address: address.map(String::from),
    };
    let err = operator_write(&app, remove(None, Some("10.0.0.9:8300")))
        .await
        .unwrap_err();
    assert_eq!(
        err.1,
        RpcError::NotFound(
            "address \"10.0.0.9:8300\" was not found in the Raft configuration".into()
        )
    );
    let err = operator_write(&app, remove(None, None)).await.unwrap_err();
    assert!(matches!(err.1, RpcError::Invalid(_)), "{err:?}");
    let err = operator_write(
        &app,
        remove(Some("8d3a2b1c-0000-4000-8000-00000000002a"), None),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err.1, RpcError::Invalid(ref m) if m.contains("leader")),
        "{err:?}"
    );
    let err = operator_write(&app, OperatorWrite::TransferLeader { id: None })
        .await
        .unwrap_err();
    assert!(
        matches!(err.1, RpcError::Invalid(_)),
        "no other voter: {err:?}"
    );
}

/// After a rotation, the leader's pruning (with an injected clock) removes the old root once
/// it has been rotated out for twice the leaf TTL, and not a millisecond earlier; the roots
/// query then lists only the active root.
#[tokio::test]
async fn rotated_out_roots_are_pruned_after_twice_the_leaf_ttl() {
    let (shared, app) = single_node().await;
    tracing::info!("bootstrap the CA as a new leader does");
    let init = crate::connect::init_command(&shared).unwrap().unwrap();
    shared.propose(init).await.unwrap();
    tracing::info!("rotate by changing the key size");
    let mut config = serde_json::Map::new();
    config.insert("PrivateKeyBits".into(), 384.into());
    write(
        &app,
        WriteRequest::CaSetConfig(concord_api::connect::CaConfiguration {
            cluster_id: String::new(),
            provider: "consul".into(),
            config,
            force_without_cross_signing: false,
            create_index: 0,
            modify_index: 0,
        }),
    )
    .await
    .unwrap();
    let roots = || async {
        match read(&app, Query::CaRoots, QueryOptions::default())
            .await
            .unwrap()
            .result
        {
            QueryResult::CaRoots(r) => r,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(roots().await.roots.len(), 2);
    let rotated_at = shared
        .store
        .current()
        .view(|t| t.ca_roots().iter().find_map(|r| r.rotated_out_at_ms))
        .expect("the old root records its rotation");
    let grace = 2 * 72 * 3_600_000; // the default LeafCertTTL, 72h

    tracing::info!("within twice the leaf TTL the old root stays");
    let pruned = crate::leader::prune_ca_roots(&shared, rotated_at + grace)
        .await
        .unwrap();
    assert!(!pruned);
    assert_eq!(roots().await.roots.len(), 2);

    tracing::info!("past it, the leader removes it through Raft");
    let pruned = crate::leader::prune_ca_roots(&shared, rotated_at + grace + 1)
        .await
        .unwrap();
    assert!(pruned);
    let after = roots().await;
    assert_eq!(after.roots.len(), 1);
    assert!(after.roots[0].active);
    assert_eq!(after.active_root_id, after.roots[0].id);
    assert!(
        !crate::leader::prune_ca_roots(&shared, rotated_at + 10 * grace)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_txn_with_an_empty_key_is_rejected_before_the_log() {
    let (shared, app) = single_node().await;
    write(&app, set("a", "1")).await.unwrap();
    let applied = || shared.raft.metrics().borrow().last_applied.map(|l| l.index);
    let before = applied();
    let ops = vec![
        KvOp::Set {
            key: "b".into(),
            value: b"2".to_vec(),
            flags: 0,
        },
        KvOp::Set {
            key: String::new(),
            value: b"x".to_vec(),
            flags: 0,
        },
        KvOp::DeleteTree { key: String::new() },
    ];
    let reply = write(&app, WriteRequest::Txn(ops)).await.unwrap();
    let WriteResult::Txn(response) = reply.result else {
        panic!("not a txn result: {:?}", reply.result);
    };
    assert_eq!(response.results, None);
    let errors = response.errors.unwrap();
    assert_eq!(
        errors.len(),
        1,
        "delete-tree may name the empty prefix: {errors:?}"
    );
    assert_eq!(
        (errors[0].op_index, errors[0].what.as_str()),
        (1, "Must provide key")
    );
    tracing::info!("nothing was proposed and nothing changed");
    assert_eq!(applied(), before);
    let keys = read(
        &app,
        Query::KvKeys {
            prefix: String::new(),
            separator: None,
        },
        QueryOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(keys.result, QueryResult::Keys(vec!["a".to_string()]));
}
