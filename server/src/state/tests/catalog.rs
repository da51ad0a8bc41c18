//! Nodes, services, checks: register/deregister semantics and catalog/health queries.

use std::collections::BTreeMap;

use concord_api::catalog::{CheckStatus, RegisterRequest};
use concord_api::rpc::{Query, QueryResult, RpcError};

use super::*;
use crate::model::catalog::Deregister;
use crate::model::id::{CheckId, ServiceId};
use crate::state::schema::{CHECKS, NODES, SERVICES};

fn service_nodes(store: &StateStore, name: &str, tags: &[&str]) -> Vec<(String, String)> {
    let (_, result) = query(
        store,
        Query::ServiceNodes {
            service: name.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            node_meta: vec![],
        },
    );
    let QueryResult::ServiceNodes(rows) = result else {
        panic!("wrong result {result:?}")
    };
    rows.into_iter().map(|r| (r.node, r.service_id)).collect()
}

fn health(store: &StateStore, name: &str, passing: bool) -> Vec<(String, String, Vec<String>)> {
    let (_, result) = query(
        store,
        Query::HealthService {
            service: name.into(),
            tags: vec![],
            passing,
            node_meta: vec![],
        },
    );
    let QueryResult::Health(rows) = result else {
        panic!("wrong result {result:?}")
    };
    rows.into_iter()
        .map(|r| {
            let checks = r.checks.into_iter().map(|c| c.check_id).collect();
            (r.node.node, r.service.id, checks)
        })
        .collect()
}

#[test]
fn register_creates_node_service_and_check_with_indexes() {
    let store = StateStore::new();
    register(
        &store,
        10,
        RegisterRequest {
            service: Some(service("web1", "web", &["v1"])),
            check: Some(check("web-alive", "web1", CheckStatus::Passing)),
            ..node_req("n1")
        },
    );
    store.view(|t| {
        let node = t.node("n1").unwrap();
        assert_eq!((node.raft.create_index, node.raft.modify_index), (10, 10));
        let svc = t.service("n1", "web1").unwrap();
        assert_eq!(svc.raft.create_index, 10);
        let chk = t.check("n1", "web-alive").unwrap();
        assert_eq!(chk.node, "n1", "a check belongs to the registered node");
        assert_eq!(
            chk.service_name, "web",
            "service name filled from the service"
        );
        assert_eq!(chk.service_tags, vec!["v1".to_string()]);
        assert_eq!(t.table_index(NODES), 10);
        assert_eq!(t.table_index(SERVICES), 10);
        assert_eq!(t.table_index(CHECKS), 10);
    });
    let (index, result) = query(&store, Query::NodeServices { node: "n1".into() });
    assert_eq!(index, 10);
    let QueryResult::NodeServices(Some(ns)) = result else {
        panic!("node missing")
    };
    assert_eq!(ns.services.keys().collect::<Vec<_>>(), vec!["web1"]);
    let (_, missing) = query(
        &store,
        Query::NodeServices {
            node: "nope".into(),
        },
    );
    assert_eq!(missing, QueryResult::NodeServices(None));
}

#[test]
fn service_id_defaults_to_name() {
    let store = StateStore::new();
    register_service(&store, 3, "n1", service("", "redis", &[]));
    assert!(store.view(|t| t.service("n1", "redis").is_some()));
}

#[test]
fn invalid_registrations_change_nothing() {
    let store = StateStore::new();
    register_service(&store, 5, "n1", service("web1", "web", &[]));
    let before = dump(&store);
    let watch = store.subscribe();

    let cases = [
        (
            RegisterRequest {
                node: String::new(),
                ..node_req("x")
            },
            "Must provide node",
        ),
        (
            RegisterRequest {
                address: String::new(),
                ..node_req("n2")
            },
            "Must provide address",
        ),
        (
            RegisterRequest {
                // A good service, then a check naming a service that does not exist: the
                // whole request is refused, the service too.
                service: Some(service("db1", "db", &[])),
                checks: vec![check("ghost-check", "ghost", CheckStatus::Passing)],
                ..node_req("n1")
            },
            "Missing service registration",
        ),
        (
            RegisterRequest {
                skip_node_update: true,
                ..node_req("unknown")
            },
            "Missing node registration",
        ),
    ];
    for (i, (request, want)) in cases.into_iter().enumerate() {
        let err = apply_err(
            &store,
            6 + i as u64,
            Command::Register {
                request: request.into(),
                now_ms: 0,
            },
        );
        let RpcError::Invalid(msg) = &err else {
            panic!("want Invalid, got {err:?}")
        };
        assert!(msg.starts_with(want), "{msg:?} should start with {want:?}");
    }
    assert_eq!(dump(&store), before, "rejected commands change nothing");
    assert!(!watch.has_changed().unwrap(), "and wake no one");
}

#[test]
fn unchanged_reregistration_does_not_churn() {
    let store = StateStore::new();
    let req = RegisterRequest {
        service: Some(service("web1", "web", &["a"])),
        checks: vec![
            check("node-ok", "", CheckStatus::Passing),
            check("web-ok", "web1", CheckStatus::Passing),
        ],
        ..node_req("n1")
    };
    register(&store, 7, req.clone());
    let before = dump(&store);
    let watch = store.subscribe();
    register(&store, 8, req.clone());
    assert_eq!(dump(&store), before, "same registration: no index moves");
    assert!(!watch.has_changed().unwrap());

    // Changing only the check output bumps only checks.
    let mut changed = req;
    changed.checks[1].output = "HTTP 200".into();
    register(&store, 9, changed);
    store.view(|t| {
        assert_eq!(t.table_index(NODES), 7);
        assert_eq!(t.table_index(SERVICES), 7);
        assert_eq!(t.table_index(CHECKS), 9);
        let chk = t.check("n1", "web-ok").unwrap();
        assert_eq!((chk.raft.create_index, chk.raft.modify_index), (7, 9));
    });
    assert!(watch.has_changed().unwrap());
}

#[test]
fn service_update_refreshes_its_checks() {
    let store = StateStore::new();
    register(
        &store,
        1,
        RegisterRequest {
            service: Some(service("web1", "web", &["v1"])),
            check: Some(check("web-ok", "web1", CheckStatus::Passing)),
            ..node_req("n1")
        },
    );
    register_service(&store, 2, "n1", service("web1", "web", &["v2"]));
    let chk = store.view(|t| t.check("n1", "web-ok").cloned()).unwrap();
    assert_eq!(chk.service_tags, vec!["v2".to_string()]);
    assert_eq!(chk.raft.modify_index, 2);
}

#[test]
fn skip_node_update_keeps_the_node() {
    let store = StateStore::new();
    register(
        &store,
        1,
        RegisterRequest {
            node_meta: BTreeMap::from([("rack".to_string(), "r1".to_string())]),
            ..node_req("n1")
        },
    );
    register(
        &store,
        2,
        RegisterRequest {
            address: String::new(),
            skip_node_update: true,
            service: Some(service("web1", "web", &[])),
            ..node_req("n1")
        },
    );
    store.view(|t| {
        let node = t.node("n1").unwrap();
        assert_eq!(node.raft.modify_index, 1);
        assert_eq!(node.meta.get("rack").map(String::as_str), Some("r1"));
        assert!(t.service("n1", "web1").is_some());
    });
}

#[test]
fn deregister_node_service_and_check() {
    let store = StateStore::new();
    register(
        &store,
        1,
        RegisterRequest {
            service: Some(service("web1", "web", &[])),
            checks: vec![
                check("node-ok", "", CheckStatus::Passing),
                check("web-ok", "web1", CheckStatus::Passing),
            ],
            ..node_req("n1")
        },
    );
    register_service(&store, 2, "n1", service("db1", "db", &[]));
    let dereg = |service_id: Option<&str>, check_id: Option<&str>| Command::Deregister {
        request: Deregister {
            node: "n1".into(),
            service_id: service_id.map(ServiceId::from),
            check_id: check_id.map(CheckId::from),
            ..Deregister::default()
        },
        now_ms: 0,
    };

    apply_ok(&store, 3, dereg(Some("web1"), None));
    store.view(|t| {
        assert!(t.service("n1", "web1").is_none());
        assert!(
            t.check("n1", "web-ok").is_none(),
            "service checks go with it"
        );
        assert!(t.check("n1", "node-ok").is_some());
        assert!(t.service("n1", "db1").is_some());
        assert_eq!(t.table_index(SERVICES), 3);
        assert_eq!(t.table_index(CHECKS), 3);
    });

    apply_ok(&store, 4, dereg(None, Some("node-ok")));
    assert!(store.view(|t| t.check("n1", "node-ok").is_none()));

    // Deleting what is not there is a no-op, not an error, and bumps nothing.
    apply_ok(&store, 5, dereg(Some("nope"), None));
    assert_eq!(store.view(|t| t.table_index(SERVICES)), 3);

    apply_ok(&store, 6, dereg(None, None));
    store.view(|t| {
        assert!(t.node("n1").is_none());
        assert!(t.service("n1", "db1").is_none());
        assert_eq!(t.table_index(NODES), 6);
    });

    let err = apply_err(
        &store,
        7,
        Command::Deregister {
            request: Deregister::default(),
            now_ms: 0,
        },
    );
    assert_eq!(err, RpcError::Invalid("Must provide node".into()));
}

#[test]
fn tag_filter_is_case_insensitive_and_all_must_match() {
    let store = StateStore::new();
    register_service(&store, 1, "n1", service("web1", "web", &["Primary", "v1"]));
    register_service(&store, 2, "n2", service("web2", "web", &["v1"]));
    register_service(&store, 3, "n3", service("api1", "api", &["primary"]));
    assert_eq!(
        service_nodes(&store, "web", &["primary"]),
        vec![("n1".into(), "web1".into())]
    );
    assert_eq!(
        service_nodes(&store, "web", &["v1"]),
        vec![("n1".into(), "web1".into()), ("n2".into(), "web2".into())]
    );
    assert!(service_nodes(&store, "web", &["v1", "v2"]).is_empty());
}

#[test]
fn node_meta_filter_requires_every_pair() {
    let store = StateStore::new();
    let meta = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    register(
        &store,
        1,
        RegisterRequest {
            node_meta: meta(&[("env", "prod"), ("rack", "a")]),
            service: Some(service("web1", "web", &[])),
            ..node_req("n1")
        },
    );
    register(
        &store,
        2,
        RegisterRequest {
            node_meta: meta(&[("env", "prod")]),
            service: Some(service("web2", "web", &[])),
            ..node_req("n2")
        },
    );
    let filter = vec![
        ("env".to_string(), "prod".to_string()),
        ("rack".to_string(), "a".to_string()),
    ];
    let (_, nodes) = query(
        &store,
        Query::Nodes {
            node_meta: filter.clone(),
        },
    );
    let QueryResult::Nodes(nodes) = nodes else {
        panic!()
    };
    assert_eq!(
        nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>(),
        ["n1"]
    );
    let (_, services) = query(&store, Query::Services { node_meta: filter });
    assert_eq!(
        services,
        QueryResult::Services(BTreeMap::from([("web".to_string(), vec![])]))
    );
}

#[test]
fn health_passing_drops_any_non_passing_check() {
    let store = StateStore::new();
    for (i, node) in ["n1", "n2", "n3", "n4"].iter().enumerate() {
        register_service(&store, i as u64 + 1, node, service("web", "web", &[]));
    }
    register_check(
        &store,
        10,
        "n1",
        check("web-ok", "web", CheckStatus::Passing),
        0,
    );
    register_check(
        &store,
        11,
        "n2",
        check("web-warn", "web", CheckStatus::Warning),
        0,
    );
    // A node-level check applies to every instance on the node.
    register_check(
        &store,
        12,
        "n3",
        check("serfHealth", "", CheckStatus::Critical),
        0,
    );
    // n4: no checks at all counts as passing.

    let all = health(&store, "web", false);
    assert_eq!(all.len(), 4);
    assert_eq!(
        all[2],
        ("n3".into(), "web".into(), vec!["serfHealth".into()])
    );
    let passing: Vec<String> = health(&store, "web", true)
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(passing, ["n1", "n4"]);

    let (index, _) = query(
        &store,
        Query::HealthService {
            service: "web".into(),
            tags: vec![],
            passing: true,
            node_meta: vec![],
        },
    );
    assert_eq!(index, 12, "health index covers nodes, services and checks");
}

#[test]
fn instance_checks_are_node_checks_plus_its_own() {
    let store = StateStore::new();
    register(
        &store,
        1,
        RegisterRequest {
            service: Some(service("web1", "web", &[])),
            checks: vec![
                check("serfHealth", "", CheckStatus::Passing),
                check("web1-ok", "web1", CheckStatus::Passing),
            ],
            ..node_req("n1")
        },
    );
    register(
        &store,
        2,
        RegisterRequest {
            service: Some(service("web2", "web", &[])),
            checks: vec![check("web2-ok", "web2", CheckStatus::Passing)],
            ..node_req("n1")
        },
    );
    let rows = health(&store, "web", false);
    assert_eq!(
        rows,
        vec![
            (
                "n1".into(),
                "web1".into(),
                vec!["serfHealth".into(), "web1-ok".into()]
            ),
            (
                "n1".into(),
                "web2".into(),
                vec!["serfHealth".into(), "web2-ok".into()]
            ),
        ]
    );
}

#[test]
fn services_lists_sorted_unique_tags() {
    let store = StateStore::new();
    register_service(&store, 1, "n1", service("web1", "web", &["b", "a"]));
    register_service(&store, 2, "n2", service("web2", "web", &["a", "c"]));
    register_service(&store, 3, "n2", service("db", "db", &[]));
    let (index, result) = query(&store, Query::Services { node_meta: vec![] });
    assert_eq!(index, 3);
    assert_eq!(
        result,
        QueryResult::Services(BTreeMap::from([
            ("db".to_string(), vec![]),
            ("web".to_string(), vec!["a".into(), "b".into(), "c".into()]),
        ]))
    );
}

#[test]
fn results_are_sorted_whatever_the_registration_order() {
    let store = StateStore::new();
    register_service(&store, 1, "zeta", service("web-b", "web", &[]));
    register_service(&store, 2, "alpha", service("web-z", "web", &[]));
    register_service(&store, 3, "alpha", service("web-a", "web", &[]));
    assert_eq!(
        service_nodes(&store, "web", &[]),
        vec![
            ("alpha".into(), "web-a".into()),
            ("alpha".into(), "web-z".into()),
            ("zeta".into(), "web-b".into()),
        ]
    );
    let (_, QueryResult::Nodes(nodes)) = query(&store, Query::Nodes { node_meta: vec![] }) else {
        panic!()
    };
    assert_eq!(
        nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>(),
        ["alpha", "zeta"]
    );
}

#[test]
fn check_queries() {
    let store = StateStore::new();
    register(
        &store,
        1,
        RegisterRequest {
            service: Some(service("web1", "web", &[])),
            checks: vec![
                check("serfHealth", "", CheckStatus::Passing),
                check("web-ok", "web1", CheckStatus::Critical),
            ],
            ..node_req("n1")
        },
    );
    register_check(
        &store,
        2,
        "n2",
        check("serfHealth", "", CheckStatus::Warning),
        0,
    );
    let ids = |q: Query| {
        let (_, QueryResult::Checks(checks)) = query(&store, q) else {
            panic!()
        };
        checks
            .into_iter()
            .map(|c| format!("{}/{}", c.node, c.check_id))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(Query::ServiceChecks {
            service: "web".into(),
            node_meta: vec![]
        }),
        ["n1/web-ok"]
    );
    assert_eq!(
        ids(Query::NodeChecks { node: "n1".into() }),
        ["n1/serfHealth", "n1/web-ok"]
    );
    assert_eq!(
        ids(Query::ChecksInState {
            state: Some(CheckStatus::Critical),
            node_meta: vec![]
        }),
        ["n1/web-ok"]
    );
    assert_eq!(
        ids(Query::ChecksInState {
            state: None,
            node_meta: vec![]
        })
        .len(),
        3
    );
}

#[test]
fn catalog_dump_has_every_node_and_instance() {
    let store = StateStore::new();
    register_node(&store, 1, "bare");
    register(
        &store,
        2,
        RegisterRequest {
            service: Some(service("web1", "web", &[])),
            check: Some(check("web-ok", "web1", CheckStatus::Passing)),
            ..node_req("n1")
        },
    );
    let (index, QueryResult::CatalogDump { nodes, instances }) = query(&store, Query::CatalogDump)
    else {
        panic!()
    };
    assert_eq!(index, 2);
    assert_eq!(nodes.len(), 2);
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].checks.len(), 1);
}
