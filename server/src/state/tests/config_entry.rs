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
