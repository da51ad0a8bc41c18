//! What each server RPC needs: every write kind allowed with the right grant and refused
//! without it, reads refused or filtered.

use super::fixtures::session_on;
use std::collections::BTreeMap;

use super::*;
use crate::acl::authorizer::DefaultPolicy;
use crate::acl::rules::Rules;
use crate::acl::AclToken;
use crate::catalog::{CheckServiceNode, Node, NodeService};
use crate::kv::KvEntry;

fn authz(rules: &str) -> Authorizer {
    Authorizer::from_rules("acc", &[Rules::parse(rules).unwrap()], DefaultPolicy::Deny)
}

/// A state with one session `s1` on node `n1`.
struct State;

impl Stored for State {
    fn node(&self, _node: &str) -> Option<NodeServices> {
        None
    }
    fn check(&self, _node: &str, _check_id: &str) -> Option<HealthCheck> {
        None
    }
    fn session_node(&self, id: &str) -> Option<String> {
        (id == "s1").then(|| "n1".to_string())
    }
}

fn set(key: &str) -> KvOp {
    KvOp::Set {
        key: key.into(),
        value: b"v".to_vec(),
        flags: 0,
    }
}

/// The fixture's targets, as [`State`] knows them.
const TARGETS: fixtures::Targets<'static> = fixtures::Targets {
    node: "n1",
    key: "app/a",
    session: "s1",
};

#[test]
fn the_fixture_holds_every_write_kind() {
    let mut seen: Vec<&str> = fixtures::every_write(&TARGETS)
        .iter()
        .map(|(write, _)| fixtures::kind(write))
        .collect();
    seen.extend(fixtures::NOT_VETTED);
    seen.sort_unstable();
    seen.dedup(); // config entries: one write per kind of grant they need
    let mut all = fixtures::KINDS.to_vec();
    all.sort_unstable();
    assert_eq!(seen, all);
}

#[test]
fn every_write_kind_needs_its_grant() {
    let reader = authz(
        "key_prefix \"\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }\n\
         service_prefix \"\" {\npolicy = \"read\"\nintentions = \"read\"\n}\n\
         session_prefix \"\" { policy = \"read\" }\noperator = \"read\"\nacl = \"read\"",
    );
    let anonymous = Authorizer::default_only(crate::acl::ANONYMOUS_TOKEN_ID, DefaultPolicy::Deny);
    for (write, rule) in fixtures::every_write(&TARGETS) {
        let granted = authz(&rule);
        assert_eq!(
            vet_write(&granted, &write, &State),
            Ok(()),
            "{rule}: {write:?}"
        );
        let wrapped = write.clone().authorized(Some("secret".into()));
        assert_eq!(vet_write(&granted, &wrapped, &State), Ok(()), "{rule}");
        for who in [&reader, &anonymous] {
            let denied = vet_write(who, &write, &State).unwrap_err();
            assert!(
                denied.to_string().starts_with("Permission denied"),
                "{write:?}: {denied}"
            );
        }
        assert_eq!(
            vet_write(&Authorizer::management("m"), &write, &State),
            Ok(())
        );
    }
}

#[test]
fn narrow_grants_stop_at_their_edge() {
    let app = authz(r#"key_prefix "app/" { policy = "write" }"#);
    assert!(vet_write(&app, &WriteRequest::Kv(set("other")), &State).is_err());
    let mut below = authz(
        "key_prefix \"app/\" { policy = \"write\" }\nkey_prefix \"app/locked/\" { policy = \"read\" }",
    );
    let tree = WriteRequest::Kv(KvOp::DeleteTree { key: "app/".into() });
    assert!(
        vet_write(&below, &tree, &State).is_err(),
        "a read rule below the prefix"
    );
    below = authz(r#"key_prefix "app/" { policy = "write" }"#);
    let txn = WriteRequest::Txn(vec![set("app/a"), set("etc/b")]);
    let denied = vet_write(&below, &txn, &State).unwrap_err();
    assert_eq!(denied.name.as_deref(), Some("etc/b"));
    // Another node's session, and an unknown one (nothing to change).
    let n2 = authz(r#"session "n2" { policy = "write" }"#);
    let destroy = WriteRequest::SessionDestroy { id: "s1".into() };
    assert!(vet_write(&n2, &destroy, &State).is_err());
    let unknown = WriteRequest::SessionDestroy { id: "nope".into() };
    assert_eq!(vet_write(&n2, &unknown, &State), Ok(()));
    // Bootstrap needs nothing: it works once, for whoever asks first.
    let anonymous = Authorizer::default_only("", DefaultPolicy::Deny);
    let bootstrap = WriteRequest::Acl(AclWrite::Bootstrap);
    assert_eq!(vet_write(&anonymous, &bootstrap, &State), Ok(()));
}

#[test]
fn reads_of_cluster_wide_things_are_refused() {
    let reader =
        authz("operator = \"read\"\nkey_prefix \"\" { policy = \"read\" }\nacl = \"read\"");
    assert!(
        vet_read(&reader, &Query::Snapshot).is_err(),
        "a snapshot holds every secret"
    );
    assert_eq!(vet_read(&reader, &Query::CaConfig), Ok(()));
    assert_eq!(vet_read(&reader, &Query::KvGet { key: "a".into() }), Ok(()));
    let none = authz("");
    assert!(vet_read(&none, &Query::CaConfig).is_err());
    let get = Query::KvGet { key: "a".into() }.authorized(Some("s".into()));
    assert!(vet_read(&none, &get).is_err());
    assert_eq!(
        vet_read(
            &none,
            &Query::KvList {
                prefix: String::new()
            }
        ),
        Ok(())
    );
}

#[test]
fn read_results_are_filtered() {
    let a = authz(
        "key_prefix \"pub/\" { policy = \"read\" }\nnode \"n1\" { policy = \"read\" }\n\
         service \"web\" { policy = \"read\" }\nsession \"n1\" { policy = \"read\" }",
    );
    let entry = |key: &str| KvEntry {
        key: key.into(),
        ..KvEntry::default()
    };
    let mut kv = QueryResult::Kv(vec![entry("pub/a"), entry("secret/b")]);
    assert!(filter_read(&a, &mut kv));
    assert_eq!(kv, QueryResult::Kv(vec![entry("pub/a")]));
    let mut keys = QueryResult::Keys(vec!["pub/a".into()]);
    assert!(!filter_read(&a, &mut keys));

    let node = |name: &str| Node {
        node: name.into(),
        ..Node::default()
    };
    let row = |n: &str, s: &str| CheckServiceNode {
        node: node(n),
        service: NodeService {
            service: s.into(),
            ..NodeService::default()
        },
        checks: Vec::new(),
    };
    let mut dump = QueryResult::CatalogDump {
        nodes: vec![node("n1"), node("n2")],
        instances: vec![row("n1", "web"), row("n1", "db"), row("n2", "web")],
    };
    assert!(filter_read(&a, &mut dump));
    assert_eq!(
        dump,
        QueryResult::CatalogDump {
            nodes: vec![node("n1")],
            instances: vec![row("n1", "web")],
        }
    );
    let mut services = QueryResult::Services(BTreeMap::from([
        ("web".to_string(), Vec::new()),
        ("db".to_string(), Vec::new()),
    ]));
    assert!(filter_read(&a, &mut services));
    let mut hidden_node = QueryResult::NodeServices(Some(NodeServices {
        node: node("n2"),
        services: BTreeMap::new(),
    }));
    assert!(filter_read(&a, &mut hidden_node));
    assert_eq!(hidden_node, QueryResult::NodeServices(None));
    let session = session_on;
    let mut sessions = QueryResult::Sessions(vec![session("n1"), session("n2")]);
    assert!(filter_read(&a, &mut sessions));
    assert_eq!(sessions, QueryResult::Sessions(vec![session("n1")]));
    let mut checks = QueryResult::Checks(vec![
        HealthCheck {
            node: "n1".into(),
            ..HealthCheck::default()
        },
        HealthCheck {
            node: "n1".into(),
            service_id: "db-1".into(),
            service_name: "db".into(),
            ..HealthCheck::default()
        },
    ]);
    assert!(filter_read(&a, &mut checks));
    assert!(!filter_read(&Authorizer::management("m"), &mut dump));
}

#[test]
fn acl_records_need_acl_read_and_secrets_acl_write() {
    let token = AclToken {
        accessor_id: "a1".into(),
        secret_id: "s1".into(),
        ..AclToken::default()
    };
    let mut list = QueryResult::Acl(AclResult::Tokens(vec![token.clone()]));
    assert!(filter_read(&authz(""), &mut list));
    assert_eq!(list, QueryResult::Acl(AclResult::Tokens(Vec::new())));
    let mut list = QueryResult::Acl(AclResult::Tokens(vec![token.clone()]));
    assert!(!filter_read(&authz(r#"acl = "read""#), &mut list));
    let QueryResult::Acl(AclResult::Tokens(seen)) = &list else {
        panic!("{list:?}")
    };
    assert_eq!(seen[0].secret_id, REDACTED_SECRET);
    let mut one = QueryResult::Acl(AclResult::Token(Some(token.clone())));
    filter_read(&authz(r#"acl = "write""#), &mut one);
    assert_eq!(one, QueryResult::Acl(AclResult::Token(Some(token))));
}
