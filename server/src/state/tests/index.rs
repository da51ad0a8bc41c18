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
        kv(concord_api::kv::KvOp::Delete {
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
    apply_ok(
        &store,
        5,
        kv(concord_api::kv::KvOp::Delete { key: "gone".into() }),
    );
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
