//! Sessions: creation checks, destroy behaviors, invalidation by checks and nodes, TTLs.

use std::time::Duration;

use concord_api::catalog::CheckStatus;
use concord_api::rpc::{Query, QueryResult, RpcError, WriteResult};

use super::*;
use crate::model::catalog::Deregister;
use crate::model::session::ServiceCheck;
use crate::state::parse_session_ttl;
use crate::state::schema::{KVS, SESSIONS};

fn sessions(store: &StateStore, q: Query) -> Vec<String> {
    let (_, QueryResult::Sessions(list)) = query(store, q) else {
        panic!()
    };
    list.into_iter().map(|s| s.id).collect()
}

fn session_exists(store: &StateStore, id: &str) -> bool {
    store.session(id).is_some()
}

fn lock_holder(store: &StateStore, key: &str) -> Option<String> {
    store.view(|t| {
        t.kv_entry(key)
            .and_then(|e| e.session.as_ref().map(ToString::to_string))
    })
}

/// n1 with a passing `serfHealth` check.
fn healthy_node(store: &StateStore, index: u64, node: &str) {
    register_check(
        store,
        index,
        node,
        check("serfHealth", "", CheckStatus::Passing),
        0,
    );
}

#[test]
fn create_requires_a_registered_node_and_healthy_checks() {
    let store = StateStore::new();
    let err = apply_err(
        &store,
        1,
        Command::SessionCreate {
            session: session("s1", "n1", &[]),
        },
    );
    assert_eq!(err, RpcError::Invalid("Missing node registration".into()));

    register_node(&store, 2, "n1");
    let err = apply_err(
        &store,
        3,
        Command::SessionCreate {
            session: session("s1", "n1", &["serfHealth"]),
        },
    );
    assert_eq!(
        err,
        RpcError::Invalid("Missing check 'serfHealth' registration".into())
    );

    register_check(
        &store,
        4,
        "n1",
        check("serfHealth", "", CheckStatus::Critical),
        0,
    );
    let err = apply_err(
        &store,
        5,
        Command::SessionCreate {
            session: session("s1", "n1", &["serfHealth"]),
        },
    );
    assert_eq!(
        err,
        RpcError::Invalid("Check 'serfHealth' is in critical state".into())
    );
    assert!(!session_exists(&store, "s1"));

    healthy_node(&store, 6, "n1");
    let result = apply_ok(
        &store,
        7,
        Command::SessionCreate {
            session: session("s1", "n1", &["serfHealth"]),
        },
    );
    assert_eq!(result, WriteResult::SessionId("s1".into()));
    let stored = store.session("s1").unwrap();
    assert_eq!((stored.create_index, stored.modify_index), (7, 7));
    assert_eq!(store.view(|t| t.table_index(SESSIONS)), 7);

    let err = apply_err(
        &store,
        8,
        Command::SessionCreate {
            session: session("s1", "n1", &[]),
        },
    );
    assert!(matches!(err, RpcError::Invalid(_)), "duplicate ID");
}

#[test]
fn service_checks_are_validated_too() {
    let store = StateStore::new();
    register_service(&store, 1, "n1", service("web1", "web", &[]));
    let mut s = session("s1", "n1", &[]);
    s.service_checks = vec![ServiceCheck {
        id: "web-ok".into(),
        namespace: String::new(),
    }];
    let err = apply_err(&store, 2, Command::SessionCreate { session: s.clone() });
    assert_eq!(
        err,
        RpcError::Invalid("Missing check 'web-ok' registration".into())
    );
    register_check(
        &store,
        3,
        "n1",
        check("web-ok", "web1", CheckStatus::Passing),
        0,
    );
    create_session(&store, 4, s);
    // The service check going critical invalidates the session.
    register_check(
        &store,
        5,
        "n1",
        check("web-ok", "web1", CheckStatus::Critical),
        0,
    );
    assert!(!session_exists(&store, "s1"));
}

#[test]
fn destroy_releases_or_deletes_locked_keys() {
    let store = StateStore::new();
    register_node(&store, 1, "n1");
    create_session(&store, 2, session("rel", "n1", &[]));
    let mut del = session("del", "n1", &[]);
    del.behavior = Behavior::Delete;
    create_session(&store, 3, del);
    apply_ok(&store, 4, kv(lock("kept", "rel")));
    apply_ok(&store, 5, kv(lock("doomed", "del")));

    apply_ok(
        &store,
        6,
        Command::SessionDestroy {
            id: "rel".into(),
            now_ms: 0,
        },
    );
    let kept = store.view(|t| t.kv_entry("kept").cloned()).unwrap();
    assert_eq!(kept.session, None);
    assert_eq!(kept.modify_index, 6);
    assert_eq!(
        kept.lock_index, 1,
        "releasing does not reset the lock index"
    );

    apply_ok(
        &store,
        7,
        Command::SessionDestroy {
            id: "del".into(),
            now_ms: 0,
        },
    );
    assert!(store.view(|t| t.kv_entry("doomed").is_none()));
    assert_eq!(store.view(|t| t.table_index(KVS)), 7);

    // Destroying an unknown session is a no-op.
    let before = dump(&store);
    apply_ok(
        &store,
        8,
        Command::SessionDestroy {
            id: "ghost".into(),
            now_ms: 0,
        },
    );
    assert_eq!(dump(&store), before);
}

#[test]
fn critical_check_invalidates_its_sessions_in_the_same_apply() {
    let store = StateStore::new();
    healthy_node(&store, 1, "n1");
    create_session(&store, 2, session("s1", "n1", &["serfHealth"]));
    create_session(&store, 3, session("untied", "n1", &[]));
    apply_ok(&store, 4, kv(lock("leader", "s1")));

    register_check(
        &store,
        5,
        "n1",
        check("serfHealth", "", CheckStatus::Critical),
        1_000,
    );
    assert!(!session_exists(&store, "s1"));
    assert!(
        session_exists(&store, "untied"),
        "sessions not tied to the check survive"
    );
    assert_eq!(lock_holder(&store, "leader"), None);
    assert_eq!(store.view(|t| t.table_index(SESSIONS)), 5);
}

#[test]
fn deregistered_check_invalidates_its_sessions() {
    let store = StateStore::new();
    healthy_node(&store, 1, "n1");
    create_session(&store, 2, session("s1", "n1", &["serfHealth"]));
    apply_ok(
        &store,
        3,
        Command::Deregister {
            request: Deregister {
                node: "n1".into(),
                check_id: Some("serfHealth".into()),
                ..Deregister::default()
            },
            now_ms: 0,
        },
    );
    assert!(!session_exists(&store, "s1"));
}

#[test]
fn node_deregistration_invalidates_its_sessions() {
    let store = StateStore::new();
    healthy_node(&store, 1, "n1");
    register_node(&store, 2, "n2");
    create_session(&store, 3, session("s1", "n1", &[]));
    create_session(&store, 4, session("s2", "n2", &[]));
    apply_ok(&store, 5, kv(lock("k", "s1")));
    apply_ok(
        &store,
        6,
        Command::Deregister {
            request: Deregister {
                node: "n1".into(),
                ..Deregister::default()
            },
            now_ms: 0,
        },
    );
    assert_eq!(sessions(&store, Query::SessionList), ["s2"]);
    assert_eq!(lock_holder(&store, "k"), None);
    assert_eq!(
        apply_ok(
            &store,
            7,
            kv(KvOp::Lock {
                key: "k".into(),
                value: vec![],
                flags: 0,
                session: "s2".into()
            })
        ),
        WriteResult::Bool(true)
    );
}

#[test]
fn session_queries() {
    let store = StateStore::new();
    register_node(&store, 1, "n1");
    register_node(&store, 2, "n2");
    create_session(&store, 3, session("b", "n1", &[]));
    create_session(&store, 4, session("a", "n2", &[]));
    create_session(&store, 5, session("c", "n1", &[]));
    assert_eq!(sessions(&store, Query::SessionList), ["a", "b", "c"]);
    assert_eq!(
        sessions(&store, Query::NodeSessions { node: "n1".into() }),
        ["b", "c"]
    );
    assert_eq!(
        sessions(&store, Query::SessionInfo { id: "a".into() }),
        ["a"]
    );
    assert!(sessions(&store, Query::SessionInfo { id: "zz".into() }).is_empty());
    assert_eq!(query(&store, Query::SessionList).0, 5);
}

#[test]
fn ttl_validation() {
    assert_eq!(parse_session_ttl("", crate::SESSION_TTL_MIN), Ok(None));
    assert_eq!(parse_session_ttl("0s", crate::SESSION_TTL_MIN), Ok(None));
    assert_eq!(
        parse_session_ttl("10s", crate::SESSION_TTL_MIN),
        Ok(Some(Duration::from_secs(10)))
    );
    assert_eq!(
        parse_session_ttl("24h", crate::SESSION_TTL_MIN),
        Ok(Some(Duration::from_secs(86_400)))
    );
    for bad in ["5s", "86401s", "soon"] {
        let err = parse_session_ttl(bad, crate::SESSION_TTL_MIN)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("Invalid Session TTL '{bad}'")),
            "{bad}: {err}"
        );
    }
    // A lower `session_ttl_min` admits shorter TTLs, and its message names the new floor.
    let min = Duration::from_secs(1);
    assert_eq!(
        parse_session_ttl("2s", min),
        Ok(Some(Duration::from_secs(2)))
    );
    assert_eq!(
        parse_session_ttl("500ms", min).unwrap_err().to_string(),
        "Invalid Session TTL '500ms', must be between [1s=24h0m0s]"
    );
}
