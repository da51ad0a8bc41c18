//! Connect CA tables: bootstrap once, rotate against the root the leader saw, never show a key.

use time::OffsetDateTime;

use super::*;
use crate::connect::ca::generate_root;
use crate::model::ca::{CaConfig, CaRoot};
use concord_api::connect::CaProviderConfig;

const CLUSTER: &str = "11111111-2222-3333-4444-555555555555";

fn root() -> CaRoot {
    generate_root(
        &format!("{CLUSTER}.consul"),
        "ec",
        256,
        std::time::Duration::from_secs(86_400),
        OffsetDateTime::now_utc(),
    )
    .unwrap()
}

fn config() -> CaConfig {
    CaConfig::new(CLUSTER.into(), &CaProviderConfig::default(), false)
}

fn roots(store: &StateStore) -> (u64, concord_api::connect::CaRoots) {
    match query(store, Query::CaRoots) {
        (index, QueryResult::CaRoots(r)) => (index, r),
        other => panic!("{other:?}"),
    }
}

#[test]
fn init_applies_once_and_roots_report_the_trust_domain() {
    let store = StateStore::new();
    assert_eq!(roots(&store).1.roots.len(), 0);
    let first = root();
    apply_ok(
        &store,
        3,
        Command::CaInit {
            config: config(),
            root: first.clone(),
        },
    );
    // A second leader's proposal changes nothing.
    apply_ok(
        &store,
        4,
        Command::CaInit {
            config: CaConfig::new("other".into(), &CaProviderConfig::default(), false),
            root: root(),
        },
    );
    let (index, r) = roots(&store);
    assert_eq!(index, 3);
    assert_eq!(r.trust_domain, format!("{CLUSTER}.consul"));
    assert_eq!(r.active_root_id, first.id);
    assert_eq!((r.roots[0].create_index, r.roots[0].active), (3, true));
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains("PRIVATE KEY"), "no key in the roots");
    match query(&store, Query::CaConfig) {
        (3, QueryResult::CaConfig(Some(c))) => {
            assert_eq!(c.cluster_id, CLUSTER);
            assert_eq!(c.config["LeafCertTTL"], "72h0m0s");
            assert!(!serde_json::to_string(&c).unwrap().contains("PrivateKey\""));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rotation_keeps_the_old_root_inactive_and_refuses_a_stale_base() {
    let store = StateStore::new();
    let first = root();
    apply_ok(
        &store,
        1,
        Command::CaInit {
            config: config(),
            root: first.clone(),
        },
    );
    let second = root();
    // Built against a root that is not the active one: refused, nothing changes.
    let err = apply_err(
        &store,
        2,
        Command::CaSetConfig {
            config: config(),
            new_root: Some(second.clone()),
            prev_active_root: "not-it".into(),
            now_ms: Some(1_000),
        },
    );
    assert!(matches!(err, RpcError::Invalid(_)), "{err:?}");
    assert_eq!(roots(&store).0, 1);

    apply_ok(
        &store,
        5,
        Command::CaSetConfig {
            config: config(),
            new_root: Some(second.clone()),
            prev_active_root: first.id.clone(),
            now_ms: Some(2_000),
        },
    );
    let (index, r) = roots(&store);
    assert_eq!(index, 5);
    assert_eq!(r.active_root_id, second.id);
    let states: Vec<(String, bool)> = r.roots.iter().map(|x| (x.id.clone(), x.active)).collect();
    assert_eq!(
        states,
        vec![(first.id.clone(), false), (second.id.clone(), true)]
    );
    let rotated_out = store.view(|t| {
        t.ca_roots()
            .iter()
            .map(|r| r.rotated_out_at_ms)
            .collect::<Vec<_>>()
    });
    assert_eq!(
        rotated_out,
        vec![Some(2_000), None],
        "the rotation time is recorded"
    );

    // A config change without a new root moves only the config index.
    apply_ok(
        &store,
        6,
        Command::CaSetConfig {
            config: config(),
            new_root: None,
            prev_active_root: second.id.clone(),
            now_ms: Some(3_000),
        },
    );
    assert_eq!(roots(&store).0, 5);
    assert!(matches!(
        query(&store, Query::CaConfig),
        (6, QueryResult::CaConfig(Some(_)))
    ));
}

#[test]
fn pruning_removes_inactive_roots_only_and_moves_the_index_only_when_it_does() {
    let store = StateStore::new();
    let first = root();
    let second = root();
    apply_ok(
        &store,
        1,
        Command::CaInit {
            config: config(),
            root: first.clone(),
        },
    );
    apply_ok(
        &store,
        2,
        Command::CaSetConfig {
            config: config(),
            new_root: Some(second.clone()),
            prev_active_root: first.id.clone(),
            now_ms: Some(1_000),
        },
    );
    // The active root and an unknown one: nothing to remove, the index stays.
    apply_ok(
        &store,
        3,
        Command::CaPruneRoots {
            ids: vec![second.id.clone(), "unknown".into()],
        },
    );
    assert_eq!(roots(&store).0, 2);
    assert_eq!(roots(&store).1.roots.len(), 2);

    apply_ok(
        &store,
        4,
        Command::CaPruneRoots {
            ids: vec![first.id.clone()],
        },
    );
    let (index, r) = roots(&store);
    assert_eq!(index, 4);
    let ids: Vec<&str> = r.roots.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(ids, vec![second.id.as_str()]);
    assert_eq!(r.active_root_id, second.id);
}
