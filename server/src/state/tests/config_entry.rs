//! The config entry table: set/replace, check-and-set, delete, queries and their index.

use serde_json::json;

use super::*;

fn set(kind: &str, name: &str, cas: Option<u64>) -> Command {
    Command::ConfigEntrySet {
        kind: kind.into(),
        name: name.into(),
        body: json!({"Kind": kind, "Name": name}),
        cas,
    }
}

fn entries(store: &StateStore, query: Query) -> (u64, Vec<(String, String, u64, u64)>) {
    let (index, result) = store.query(&query).unwrap();
    let QueryResult::ConfigEntries(list) = result else {
        panic!("wrong result {result:?}")
    };
    let rows = list
        .into_iter()
        .map(|e| (e.kind, e.name, e.create_index, e.modify_index))
        .collect();
    (index, rows)
}

#[test]
fn set_replace_cas_and_delete() {
    let store = StateStore::new();
    assert_eq!(
        apply_ok(&store, 2, set("service-defaults", "db", Some(0))),
        WriteResult::Bool(true)
    );
    // cas=0 refuses an existing entry; a wrong index refuses too.
    assert_eq!(
        apply_ok(&store, 3, set("service-defaults", "db", Some(0))),
        WriteResult::Bool(false)
    );
    assert_eq!(
        apply_ok(&store, 4, set("service-defaults", "db", Some(9))),
        WriteResult::Bool(false)
    );
    assert_eq!(
        apply_ok(&store, 5, set("service-defaults", "db", Some(2))),
        WriteResult::Bool(true)
    );
    apply_ok(&store, 6, set("proxy-defaults", "global", None));
    let get = Query::ConfigEntryGet {
        kind: "service-defaults".into(),
        name: "db".into(),
    };
    assert_eq!(
        entries(&store, get.clone()),
        (6, vec![("service-defaults".into(), "db".into(), 2, 5)])
    );
    let (_, all) = entries(&store, Query::ConfigEntryList { kind: None });
    assert_eq!(all.len(), 2);
    let (_, one_kind) = entries(
        &store,
        Query::ConfigEntryList {
            kind: Some("proxy-defaults".into()),
        },
    );
    assert_eq!(one_kind.len(), 1);
    let del = |cas| Command::ConfigEntryDelete {
        kind: "service-defaults".into(),
        name: "db".into(),
        cas,
    };
    assert_eq!(apply_ok(&store, 7, del(Some(4))), WriteResult::Bool(false));
    assert_eq!(apply_ok(&store, 8, del(Some(5))), WriteResult::Bool(true));
    assert_eq!(entries(&store, get.clone()), (8, vec![]));
    // Deleting what is absent succeeds and does not move the index.
    assert_eq!(apply_ok(&store, 9, del(None)), WriteResult::Bool(true));
    assert_eq!(entries(&store, get).0, 8);
}

fn put(kind: &str, name: &str, body: serde_json::Value) -> Command {
    Command::ConfigEntrySet {
        kind: kind.into(),
        name: name.into(),
        body,
        cas: None,
    }
}

fn l7_intentions(name: &str) -> serde_json::Value {
    json!({
        "Kind": "service-intentions",
        "Name": name,
        "Sources": [{
            "Name": "web",
            "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/api"}}]
        }]
    })
}

fn defaults(name: &str, protocol: &str) -> serde_json::Value {
    json!({"Kind": "service-defaults", "Name": name, "Protocol": protocol})
}

fn assert_l7_refused(err: RpcError, service: &str, protocol: &str) {
    assert_eq!(
        err,
        RpcError::Invalid(format!(
            "service {service:?} has protocol {protocol:?}, which is incompatible with L7 \
             intentions permissions"
        ))
    );
}

/// Consul's rule, kept by the state whoever writes: L7 intentions need an HTTP-aware
/// destination, on the intentions' write and on every later protocol change or delete.
#[test]
fn l7_intentions_need_an_http_destination_now_and_later() {
    let store = StateStore::new();
    let snapshot = |store: &StateStore| entries(store, Query::ConfigEntryList { kind: None });

    // No protocol configured: tcp. Refused, nothing written.
    let err = apply_err(
        &store,
        2,
        put("service-intentions", "db", l7_intentions("db")),
    );
    assert_l7_refused(err, "db", "tcp");
    apply_ok(
        &store,
        2,
        put("service-defaults", "db", defaults("db", "tcp")),
    );
    let err = apply_err(
        &store,
        3,
        put("service-intentions", "db", l7_intentions("db")),
    );
    assert_l7_refused(err, "db", "tcp");

    // An L4 intention on a tcp service is fine.
    apply_ok(
        &store,
        3,
        put(
            "service-intentions",
            "cache",
            json!({"Kind": "service-intentions", "Name": "cache",
                   "Sources": [{"Name": "web", "Action": "allow"}]}),
        ),
    );

    // http via service-defaults: accepted.
    apply_ok(
        &store,
        4,
        put("service-defaults", "db", defaults("db", "http")),
    );
    assert_eq!(
        apply_ok(
            &store,
            5,
            put("service-intentions", "db", l7_intentions("db"))
        ),
        WriteResult::Bool(true)
    );
    let before = snapshot(&store);

    // Back to tcp, or deleting the defaults (falls back to tcp): refused, nothing changes.
    let err = apply_err(
        &store,
        6,
        put("service-defaults", "db", defaults("db", "tcp")),
    );
    assert_l7_refused(err, "db", "tcp");
    let err = apply_err(
        &store,
        6,
        Command::ConfigEntryDelete {
            kind: "service-defaults".into(),
            name: "db".into(),
            cas: None,
        },
    );
    assert_l7_refused(err, "db", "tcp");
    assert_eq!(snapshot(&store), before);

    // With proxy-defaults saying http2, dropping the service's own protocol is fine; then
    // proxy-defaults cannot go back to tcp.
    apply_ok(
        &store,
        7,
        put(
            "proxy-defaults",
            "global",
            json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http2"}}),
        ),
    );
    apply_ok(
        &store,
        8,
        Command::ConfigEntryDelete {
            kind: "service-defaults".into(),
            name: "db".into(),
            cas: None,
        },
    );
    let err = apply_err(
        &store,
        9,
        put(
            "proxy-defaults",
            "global",
            json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "tcp"}}),
        ),
    );
    assert_l7_refused(err, "db", "tcp");

    // Once the intentions drop their permissions, tcp is allowed again.
    apply_ok(
        &store,
        10,
        put(
            "service-intentions",
            "db",
            json!({"Kind": "service-intentions", "Name": "db",
                   "Sources": [{"Name": "web", "Action": "deny"}]}),
        ),
    );
    apply_ok(
        &store,
        11,
        put(
            "proxy-defaults",
            "global",
            json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "tcp"}}),
        ),
    );
}
