//! Index bookkeeping, watches and snapshots across tables.

use concord_api::catalog::CheckStatus;
use concord_api::rpc::Query;

use super::*;
use crate::state::StoreHandle;

#[test]
fn query_indexes_are_never_zero() {
    let store = StateStore::new();
    for q in [
        Query::Nodes { node_meta: vec![] },
        Query::CatalogDump,
        Query::KvList { prefix: "x".into() },
        Query::KvGet { key: "x".into() },
        Query::SessionList,
    ] {
        assert_eq!(query(&store, q.clone()).0, 1, "{q:?}");
    }
}

#[test]
fn tables_keep_their_own_index() {
    let store = StateStore::new();
    register_node(&store, 3, "n1");
    apply_ok(&store, 4, kv(set("k", "v")));
    assert_eq!(
        query(&store, Query::Nodes { node_meta: vec![] }).0,
        3,
        "a KV write is not a catalog change"
    );
    assert_eq!(
        query(
            &store,
            Query::KvList {
                prefix: String::new()
            }
        )
        .0,
        4
    );
    register_check(&store, 5, "n1", check("c", "", CheckStatus::Passing), 0);
    assert_eq!(query(&store, Query::NodeChecks { node: "n1".into() }).0, 5);
    assert_eq!(query(&store, Query::Nodes { node_meta: vec![] }).0, 3);
}

#[test]
fn watchers_wake_on_change_only() {
    let store = StateStore::new();
    let mut watch = store.subscribe();
    apply_ok(&store, 1, kv(set("k", "v")));
    assert!(watch.has_changed().unwrap());
    assert_eq!(watch.borrow_and_update().index, 1);

    // A rejected command and a no-op are not changes.
    apply_err(
        &store,
        2,
        Command::SessionCreate {
            session: session("s", "ghost", &[]),
        },
    );
    apply_ok(
        &store,
        3,
        kv(KvOp::Delete {
            key: "absent".into(),
        }),
    );
    assert!(!watch.has_changed().unwrap());
}

#[tokio::test]
async fn swapping_the_store_wakes_watchers_of_the_old_one() {
    let handle = StoreHandle::new(StateStore::new());
    let old = handle.current();
    let mut watch = old.subscribe();
    let fresh = StateStore::new();
    apply_ok(&fresh, 9, kv(set("restored", "yes")));
    handle.swap(fresh);
    watch.changed().await.unwrap();
    assert!(watch.borrow().abandoned);
    assert_eq!(
        query(
            &handle.current(),
            Query::KvGet {
                key: "restored".into()
            }
        )
        .0,
        9
    );
}

#[test]
fn snapshot_round_trips_every_table() {
    let store = StateStore::new();
    register(
        &store,
        1,
        RegisterRequest {
            service: Some(service("web1", "web", &["a"])),
            checks: vec![
                check("serfHealth", "", CheckStatus::Passing),
                check("web-ok", "web1", CheckStatus::Warning),
            ],
            ..node_req("n1")
        },
    );
    let mut s = session("s1", "n1", &["serfHealth"]);
    s.lock_delay = 5_000_000_000;
    create_session(&store, 2, s);
    apply_ok(&store, 3, kv(lock("held", "s1")));
    apply_ok(&store, 4, kv(set("gone", "x")));
    apply_ok(&store, 5, kv(KvOp::Delete { key: "gone".into() }));
    create_session(&store, 6, session("s2", "n1", &[]));
    apply_ok(&store, 7, kv(lock("delayed", "s2")));
    apply_ok(
        &store,
        8,
        Command::SessionDestroy {
            id: "s2".into(),
            now_ms: 50,
        },
    );

    let restored = StateStore::restore(&store.snapshot().unwrap()).unwrap();
    assert_eq!(dump(&restored), dump(&store));
    for q in [
        Query::CatalogDump,
        Query::KvList {
            prefix: String::new(),
        },
        Query::KvList {
            prefix: "go".into(),
        },
        Query::SessionList,
    ] {
        assert_eq!(query(&restored, q.clone()), query(&store, q));
    }
    assert!(StateStore::restore(b"not json").is_err());
}

fn health_index(store: &StateStore, service: &str) -> u64 {
    query(
        store,
        Query::HealthService {
            service: service.into(),
            tags: vec![],
            passing: false,
            node_meta: vec![],
        },
    )
    .0
}

#[test]
fn service_queries_block_on_their_own_service_index() {
    let store = StateStore::new();
    register_node(&store, 2, "n1");
    register_node(&store, 3, "n2");
    register_service(&store, 4, "n1", service("web1", "web", &[]));
    register_service(&store, 5, "n2", service("db1", "db", &[]));
    assert_eq!(health_index(&store, "web"), 4);

    // Consul issue #1244: a change to another service must not wake web's watchers.
    register_check(
        &store,
        6,
        "n2",
        check("db-alive", "db1", CheckStatus::Passing),
        0,
    );
    apply_ok(&store, 7, kv(set("k", "v")));
    assert_eq!(
        health_index(&store, "web"),
        4,
        "db and KV writes leave web alone"
    );
    assert_eq!(health_index(&store, "db"), 6);

    // What web's results depend on does move it: its checks, its node, its node's checks.
    register_check(
        &store,
        8,
        "n1",
        check("web-alive", "web1", CheckStatus::Passing),
        0,
    );
    assert_eq!(health_index(&store, "web"), 8);
    register_check(
        &store,
        9,
        "n1",
        check("serfHealth", "", CheckStatus::Passing),
        0,
    );
    assert_eq!(health_index(&store, "web"), 9, "node-level check");
    assert_eq!(
        health_index(&store, "db"),
        6,
        "other node's services unaffected"
    );

    // Removal moves the index too, and it never goes back.
    apply_ok(
        &store,
        10,
        Command::Deregister {
            request: crate::model::catalog::Deregister {
                node: "n1".into(),
                service_id: Some("web1".into()),
                ..Default::default()
            },
            now_ms: 0,
        },
    );
    assert_eq!(health_index(&store, "web"), 10);

    // A name never registered follows the services table, so its first instance wakes it.
    let before = health_index(&store, "later");
    register_service(&store, 11, "n2", service("later1", "later", &[]));
    assert!(health_index(&store, "later") > before);

    // The per-service indexes survive a snapshot round trip.
    let restored = StateStore::restore(&store.snapshot().unwrap()).unwrap();
    assert_eq!(health_index(&restored, "db"), 6);
}

/// A batch (group commit) applies each write on its own, at the entry's one index, and wakes
/// watchers once, after all of them.
#[test]
fn a_batch_applies_each_write_at_one_index_and_wakes_once() {
    let store = StateStore::new();
    apply_ok(&store, 1, kv(set("taken", "0")));
    let mut watch = store.subscribe();
    watch.borrow_and_update();
    let results = store.apply_batch(
        7,
        &[
            kv(set("a", "1")),
            // Rejected on its own: the others still apply.
            Command::Register {
                request: RegisterRequest::default().into(),
                now_ms: 0,
            },
            kv(KvOp::Cas {
                key: "taken".into(),
                value: b"x".to_vec(),
                flags: 0,
                index: 0,
            }),
            kv(set("b", "2")),
        ],
    );
    assert_eq!(results.len(), 4);
    assert_eq!(results[0], Ok(WriteResult::Bool(true)));
    assert_eq!(
        results[1],
        Err(RpcError::Invalid("Must provide node".into()))
    );
    assert_eq!(
        results[2],
        Ok(WriteResult::Bool(false)),
        "a CAS on an existing key"
    );
    assert_eq!(results[3], Ok(WriteResult::Bool(true)));
    assert!(watch.has_changed().unwrap());
    assert_eq!(watch.borrow_and_update().index, 7);
    let (index, _) = query(
        &store,
        Query::KvList {
            prefix: String::new(),
        },
    );
    assert_eq!(index, 7, "every write of the batch is at the entry's index");
    assert!(!watch.has_changed().unwrap(), "one wake for the batch");
}

/// Autopilot's settings: Consul's defaults until stored; `?cas=` against the stored modify
/// index (0 before the first write); the create index kept across changes.
#[test]
fn autopilot_settings_are_stored_with_check_and_set() {
    use crate::model::autopilot::AutopilotConfig;
    let store = StateStore::new();
    let defaults = store.view(|t| t.autopilot_config());
    assert_eq!(defaults, concord_api::operator::AutopilotConfig::default());
    let mut config = AutopilotConfig::from(&defaults);
    config.max_trailing_logs = 900;
    let set = |_index: u64, cas| Command::AutopilotSetConfig {
        config: config.clone(),
        cas,
    };
    assert_eq!(
        apply_ok(&store, 5, set(5, Some(3))),
        WriteResult::Bool(false)
    );
    assert_eq!(
        apply_ok(&store, 6, set(6, Some(0))),
        WriteResult::Bool(true)
    );
    assert_eq!(
        apply_ok(&store, 7, set(7, Some(0))),
        WriteResult::Bool(false),
        "stale cas"
    );
    assert_eq!(
        apply_ok(&store, 8, set(8, Some(6))),
        WriteResult::Bool(true)
    );
    assert_eq!(apply_ok(&store, 9, set(9, None)), WriteResult::Bool(true));
    let stored = store.view(|t| t.autopilot_config());
    assert_eq!(stored.max_trailing_logs, 900);
    assert_eq!((stored.create_index, stored.modify_index), (6, 9));
}
