//! KV: set/get, CAS, keys with separators, deletes and tombstones, locks and lock-delay,
//! transactions.

use concord_api::kv::{KvEntry, TxnError};
use concord_api::rpc::{Query, QueryResult, RpcError, WriteResult};

use super::*;
use crate::state::schema::{KVS, TOMBSTONES};

fn get(store: &StateStore, key: &str) -> (u64, Option<KvEntry>) {
    let (index, QueryResult::Kv(mut entries)) = query(store, Query::KvGet { key: key.into() })
    else {
        panic!()
    };
    (index, entries.pop())
}

fn keys(store: &StateStore, prefix: &str, separator: Option<&str>) -> (u64, Vec<String>) {
    let (index, QueryResult::Keys(keys)) = query(
        store,
        Query::KvKeys {
            prefix: prefix.into(),
            separator: separator.map(str::to_string),
        },
    ) else {
        panic!()
    };
    (index, keys)
}

fn list(store: &StateStore, prefix: &str) -> (u64, Vec<String>) {
    let (index, QueryResult::Kv(entries)) = query(
        store,
        Query::KvList {
            prefix: prefix.into(),
        },
    ) else {
        panic!()
    };
    (index, entries.into_iter().map(|e| e.key).collect())
}

fn applied_bool(store: &StateStore, index: u64, op: KvOp) -> bool {
    match apply_ok(store, index, kv(op)) {
        WriteResult::Bool(b) => b,
        other => panic!("want Bool, got {other:?}"),
    }
}

/// A node with a session `id` (lock delay in ms, release behavior unless told otherwise).
fn with_session(store: &StateStore, index: u64, id: &str, lock_delay_ms: u64, behavior: Behavior) {
    if store.view(|t| t.node("n1").is_none()) {
        register_node(store, index, "n1");
    }
    let mut s = session(id, "n1", &[]);
    s.lock_delay = lock_delay_ms * 1_000_000;
    s.behavior = behavior;
    create_session(store, index, s);
}

#[test]
fn set_then_get_tracks_indexes() {
    let store = StateStore::new();
    assert_eq!(
        get(&store, "a"),
        (1, None),
        "missing key on an empty store: index 1"
    );
    apply_ok(&store, 5, kv(set("a", "one")));
    apply_ok(&store, 6, kv(set("a", "two")));
    let (index, entry) = get(&store, "a");
    let entry = entry.unwrap();
    assert_eq!(index, 6);
    assert_eq!((entry.create_index, entry.modify_index), (5, 6));
    assert_eq!(entry.value.as_deref(), Some(&b"two"[..]));
    apply_ok(&store, 7, kv(set("empty", "")));
    assert_eq!(
        get(&store, "empty").1.unwrap().value,
        None,
        "empty values read back as null"
    );
    assert_eq!(
        get(&store, "zzz").0,
        7,
        "a missing key reports the table index"
    );
}

#[test]
fn cas_index_zero_means_only_if_absent() {
    let store = StateStore::new();
    let cas = |value: &str, index: u64| KvOp::Cas {
        key: "k".into(),
        value: value.as_bytes().to_vec(),
        flags: 0,
        index,
    };
    assert!(applied_bool(&store, 3, cas("first", 0)));
    assert!(!applied_bool(&store, 4, cas("again", 0)), "exists now");
    assert!(!applied_bool(&store, 5, cas("stale", 2)));
    assert!(applied_bool(&store, 6, cas("second", 3)));
    assert_eq!(
        get(&store, "k").1.unwrap().value.as_deref(),
        Some(&b"second"[..])
    );
}

#[test]
fn keys_fold_at_the_separator_after_the_prefix() {
    let store = StateStore::new();
    for (i, key) in ["a/b", "a/c/d", "a/c/e", "a/f/", "ab", "b"]
        .iter()
        .enumerate()
    {
        apply_ok(&store, i as u64 + 1, kv(set(key, "x")));
    }
    assert_eq!(keys(&store, "a/", Some("/")).1, ["a/b", "a/c/", "a/f/"]);
    assert_eq!(keys(&store, "", Some("/")).1, ["a/", "ab", "b"]);
    assert_eq!(
        keys(&store, "a", None).1,
        ["a/b", "a/c/d", "a/c/e", "a/f/", "ab"]
    );
    assert_eq!(
        keys(&store, "a/c", Some("")).1,
        ["a/c/d", "a/c/e"],
        "empty separator: no folding"
    );
    assert_eq!(keys(&store, "a/c/", Some("/")).0, 3, "index of the prefix");
}

#[test]
fn deletes_leave_tombstones_that_bump_prefix_indexes() {
    let store = StateStore::new();
    apply_ok(&store, 1, kv(set("app/a", "1")));
    apply_ok(&store, 2, kv(set("app/b", "2")));
    apply_ok(&store, 3, kv(set("other", "3")));
    assert_eq!(
        list(&store, "app/"),
        (2, vec!["app/a".into(), "app/b".into()])
    );

    apply_ok(
        &store,
        4,
        kv(KvOp::Delete {
            key: "app/b".into(),
        }),
    );
    assert_eq!(
        list(&store, "app/"),
        (4, vec!["app/a".into()]),
        "the delete moved the prefix index"
    );
    assert_eq!(list(&store, "oth").0, 3, "other prefixes are untouched");

    apply_ok(&store, 5, kv(KvOp::DeleteTree { key: "app/".into() }));
    assert_eq!(list(&store, "app/"), (5, vec![]));
    store.view(|t| {
        assert_eq!(t.table_index(KVS), 5);
        assert_eq!(t.table_index(TOMBSTONES), 5);
    });

    // Deleting a missing key changes nothing.
    apply_ok(&store, 6, kv(KvOp::Delete { key: "nope".into() }));
    assert_eq!(store.view(|t| t.table_index(KVS)), 5);
}

#[test]
fn reaping_tombstones_never_moves_a_prefix_index_back() {
    let store = StateStore::new();
    apply_ok(&store, 1, kv(set("app/a", "1")));
    apply_ok(&store, 2, kv(set("app/b", "2")));
    apply_ok(
        &store,
        3,
        kv(KvOp::Delete {
            key: "app/b".into(),
        }),
    );
    apply_ok(&store, 4, kv(set("web/x", "1")));
    apply_ok(
        &store,
        5,
        kv(KvOp::Delete {
            key: "web/x".into(),
        }),
    );
    assert_eq!(
        list(&store, "app/").0,
        3,
        "a watcher of app/ saw the delete at 3"
    );
    store.view(|t| {
        assert_eq!(t.kv_tombstones_up_to(3), 1);
        assert_eq!(t.kv_tombstones_up_to(5), 2);
    });

    let changes = store.subscribe();
    apply_ok(&store, 6, Command::KvReapTombstones { index: 4 });
    assert!(!changes.has_changed().unwrap(), "a reap wakes no watcher");
    store.view(|t| {
        assert_eq!(t.kv_tombstones_up_to(5), 1, "only the one at 5 is left");
        assert_eq!(t.table_index(TOMBSTONES), 5, "table indexes stay");
    });
    assert_eq!(
        list(&store, "app/"),
        (3, vec!["app/a".into()]),
        "the tombstone is gone, the index it gave the prefix is not"
    );
    assert_eq!(
        list(&store, "web/").0,
        5,
        "the unreaped tombstone still counts"
    );

    tracing::info!("the floor survives a snapshot, and a store that never reaped omits it");
    let restored = StateStore::restore(&store.snapshot().unwrap()).unwrap();
    assert_eq!(list(&restored, "app/").0, 3);
    assert_eq!(dump(&restored)["tombstones_reaped"], 3);
    assert!(dump(&StateStore::new()).get("tombstones_reaped").is_none());

    apply_ok(&store, 7, Command::KvReapTombstones { index: 9 });
    assert_eq!(list(&store, "web/"), (5, vec![]));
    assert_eq!(
        list(&store, "app/").0,
        5,
        "the floor is the highest reaped index"
    );
}

#[test]
fn delete_cas_checks_the_index() {
    let store = StateStore::new();
    apply_ok(&store, 4, kv(set("k", "v")));
    assert!(!applied_bool(
        &store,
        5,
        KvOp::DeleteCas {
            key: "k".into(),
            index: 3
        }
    ));
    assert!(get(&store, "k").1.is_some());
    assert!(applied_bool(
        &store,
        6,
        KvOp::DeleteCas {
            key: "k".into(),
            index: 4
        }
    ));
    assert!(get(&store, "k").1.is_none());
}

#[test]
fn lock_and_unlock() {
    let store = StateStore::new();
    let err = apply_err(&store, 1, kv(lock("k", "nope")));
    assert_eq!(err, RpcError::Invalid("invalid session \"nope\"".into()));

    with_session(&store, 2, "s1", 0, Behavior::Release);
    with_session(&store, 3, "s2", 0, Behavior::Release);

    assert!(applied_bool(&store, 4, lock("k", "s1")));
    let entry = get(&store, "k").1.unwrap();
    assert_eq!(
        (entry.lock_index, entry.session.as_deref()),
        (1, Some("s1"))
    );

    assert!(!applied_bool(&store, 5, lock("k", "s2")), "held by s1");
    assert!(
        applied_bool(&store, 6, lock("k", "s1")),
        "re-acquire by the holder"
    );
    let entry = get(&store, "k").1.unwrap();
    assert_eq!(entry.lock_index, 1, "re-acquire is not a new acquisition");
    assert_eq!(entry.modify_index, 6);

    assert!(
        !applied_bool(&store, 7, unlock("k", "s2")),
        "only the holder unlocks"
    );
    assert!(applied_bool(&store, 8, unlock("k", "s1")));
    let entry = get(&store, "k").1.unwrap();
    assert_eq!(entry.session, None);
    assert_eq!(entry.value.as_deref(), Some(&b"unlocked"[..]));

    assert!(applied_bool(&store, 9, lock("k", "s2")));
    assert_eq!(get(&store, "k").1.unwrap().lock_index, 2);

    // A plain set keeps the lock.
    apply_ok(&store, 10, kv(set("k", "data")));
    assert_eq!(get(&store, "k").1.unwrap().session.as_deref(), Some("s2"));
    assert!(!applied_bool(&store, 11, unlock("missing", "s2")));
}

#[test]
fn lock_delay_blocks_relock_after_invalidation() {
    let store = StateStore::new();
    with_session(&store, 1, "s1", 15_000, Behavior::Release);
    with_session(&store, 2, "s2", 0, Behavior::Release);
    assert!(applied_bool(&store, 3, lock("k", "s1")));

    apply_ok(
        &store,
        4,
        Command::SessionDestroy {
            id: "s1".into(),
            now_ms: 100_000,
        },
    );
    let entry = get(&store, "k").1.unwrap();
    assert_eq!(entry.session, None, "released");
    assert_eq!(entry.modify_index, 4);
    assert_eq!(store.view(|t| t.lock_delay_until("k")), Some(115_000));

    let lock_at = |index: u64, now_ms: u64| match apply_ok(
        &store,
        index,
        Command::Kv {
            op: lock("k", "s2"),
            now_ms,
        },
    ) {
        WriteResult::Bool(b) => b,
        other => panic!("{other:?}"),
    };
    assert!(!lock_at(5, 114_999), "inside the lock-delay window");
    assert!(lock_at(6, 115_000), "window over");
}

#[test]
fn lock_delay_is_capped_at_one_minute() {
    let store = StateStore::new();
    with_session(&store, 1, "s1", 3_600_000, Behavior::Release);
    apply_ok(&store, 2, kv(lock("k", "s1")));
    apply_ok(
        &store,
        3,
        Command::SessionDestroy {
            id: "s1".into(),
            now_ms: 0,
        },
    );
    assert_eq!(store.view(|t| t.lock_delay_until("k")), Some(60_000));
}

#[test]
fn single_ops_reject_read_verbs() {
    let store = StateStore::new();
    let err = apply_err(&store, 1, kv(KvOp::Get { key: "k".into() }));
    assert!(matches!(err, RpcError::Invalid(_)));
}

#[test]
fn txn_is_all_or_nothing() {
    let store = StateStore::new();
    apply_ok(&store, 1, kv(set("b", "orig")));
    let before = dump(&store);
    let watch = store.subscribe();

    let ops = vec![
        set("a", "new"),
        KvOp::Cas {
            key: "b".into(),
            value: b"x".to_vec(),
            flags: 0,
            index: 99,
        },
        KvOp::Delete { key: "b".into() },
        KvOp::Get {
            key: "missing".into(),
        },
    ];
    let WriteResult::Txn(resp) = apply_ok(&store, 2, Command::Txn { ops, now_ms: 0 }) else {
        panic!()
    };
    assert_eq!(resp.results, None);
    assert_eq!(
        resp.errors,
        Some(vec![
            TxnError {
                op_index: 1,
                what: "failed to set key \"b\", index is stale".into()
            },
            TxnError {
                op_index: 3,
                what: "key \"missing\" doesn't exist".into()
            },
        ])
    );
    assert_eq!(
        dump(&store),
        before,
        "rolled back: entries, tombstones and indexes"
    );
    assert!(!watch.has_changed().unwrap());
}

#[test]
fn txn_results_per_verb() {
    let store = StateStore::new();
    with_session(&store, 1, "s1", 0, Behavior::Release);
    apply_ok(&store, 2, kv(set("dir/x", "1")));
    let ops = vec![
        set("a", "va"),
        KvOp::Cas {
            key: "c".into(),
            value: b"vc".to_vec(),
            flags: 0,
            index: 0,
        },
        lock("l", "s1"),
        KvOp::CheckSession {
            key: "l".into(),
            session: "s1".into(),
        },
        unlock("l", "s1"),
        KvOp::Get { key: "a".into() },
        KvOp::GetTree { key: "dir/".into() },
        KvOp::CheckIndex {
            key: "dir/x".into(),
            index: 2,
        },
        KvOp::CheckNotExists { key: "zzz".into() },
        KvOp::Delete { key: "c".into() },
    ];
    let WriteResult::Txn(resp) = apply_ok(&store, 3, Command::Txn { ops, now_ms: 0 }) else {
        panic!()
    };
    assert_eq!(resp.errors, None);
    let results = resp.results.unwrap();
    let summary: Vec<(String, Option<Vec<u8>>)> = results
        .into_iter()
        .map(|r| (r.kv.key, r.kv.value))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("a".into(), None),
            ("c".into(), None),
            ("l".into(), None),
            ("l".into(), None),
            ("l".into(), None),
            ("a".into(), Some(b"va".to_vec())),
            ("dir/x".into(), Some(b"1".to_vec())),
            ("dir/x".into(), None),
        ],
        "writes report entries without values; get/get-tree with; deletes nothing"
    );
    assert!(get(&store, "c").1.is_none(), "later ops see earlier ones");
    assert_eq!(get(&store, "l").1.unwrap().lock_index, 1);
}

#[test]
fn txn_lock_with_unknown_session_fails_the_txn() {
    let store = StateStore::new();
    let ops = vec![set("a", "1"), lock("k", "ghost")];
    let WriteResult::Txn(resp) = apply_ok(&store, 1, Command::Txn { ops, now_ms: 0 }) else {
        panic!()
    };
    let errors = resp.errors.unwrap();
    assert_eq!(errors[0].op_index, 1);
    assert!(
        errors[0].what.contains("invalid session \"ghost\""),
        "{}",
        errors[0].what
    );
    assert!(get(&store, "a").1.is_none());
}
