//! The state machine: applying commands, snapshots persisted and restored, installs swapping
//! the store.

use concord_api::rpc::{Query, QueryResult, RpcError, WriteResult};
use openraft::storage::RaftStateMachine;
use openraft::testing::log_id;
use openraft::{EntryPayload, RaftSnapshotBuilder};

use super::StateMachine;
use crate::command::Command;
use crate::model::kv::KvOp;
use crate::raft::Entry;

fn entry(index: u64, cmd: Command) -> Entry {
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(cmd),
    }
}

fn set(key: &str, value: &str) -> Command {
    Command::Kv {
        op: KvOp::Set {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            flags: 0,
        },
        now_ms: 0,
    }
}

fn temp_db() -> sled::Db {
    sled::Config::new().temporary(true).open().unwrap()
}

#[tokio::test]
async fn apply_returns_results_and_rejections_as_data() {
    let (mut sm, store) = StateMachine::open(&temp_db()).unwrap();
    let bad_lock = Command::Kv {
        op: KvOp::Lock {
            key: "k".into(),
            value: vec![],
            flags: 0,
            session: "nope".into(),
        },
        now_ms: 0,
    };
    let results = sm
        .apply(vec![
            Entry {
                log_id: log_id(1, 1, 1),
                payload: EntryPayload::Blank,
            },
            entry(2, set("a", "1")),
            entry(3, bad_lock),
            entry(
                4,
                Command::Batch {
                    commands: vec![set("b", "1"), set("c", "1")],
                },
            ),
        ])
        .await
        .unwrap();
    assert_eq!(results[0], [Ok(WriteResult::Done)]);
    assert_eq!(results[1], [Ok(WriteResult::Bool(true))]);
    assert_eq!(
        results[2],
        [Err(RpcError::Invalid("invalid session \"nope\"".into()))]
    );
    assert_eq!(
        results[3],
        [Ok(WriteResult::Bool(true)), Ok(WriteResult::Bool(true))],
        "a batch gets one result per write"
    );
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 1, 4)));
    let (index, _) = store
        .current()
        .query(&Query::KvGet { key: "a".into() })
        .unwrap();
    assert_eq!(index, 2);
}

#[tokio::test]
async fn snapshot_is_persisted_and_restored_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft");
    let meta = {
        let db = sled::open(&path).unwrap();
        let (mut sm, _) = StateMachine::open(&db).unwrap();
        sm.apply(vec![entry(1, set("a", "1")), entry(2, set("b", "2"))])
            .await
            .unwrap();
        let snapshot = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        // Applied after the snapshot: only the log (not this test) would restore it.
        sm.apply(vec![entry(3, set("c", "3"))]).await.unwrap();
        snapshot.meta
    };
    let db = sled::open(&path).unwrap();
    let (mut sm, store) = StateMachine::open(&db).unwrap();
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 1, 2)));
    assert_eq!(sm.get_current_snapshot().await.unwrap().unwrap().meta, meta);
    let (_, result) = store
        .current()
        .query(&Query::KvKeys {
            prefix: String::new(),
            separator: None,
        })
        .unwrap();
    assert_eq!(result, QueryResult::Keys(vec!["a".into(), "b".into()]));
}

#[tokio::test]
async fn install_swaps_the_store_and_wakes_old_watchers() {
    let (mut leader, _) = StateMachine::open(&temp_db()).unwrap();
    leader.apply(vec![entry(5, set("x", "1"))]).await.unwrap();
    let snapshot = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();

    let (mut follower, store) = StateMachine::open(&temp_db()).unwrap();
    let old = store.current();
    let mut watch = old.subscribe();
    follower
        .install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .unwrap();
    assert!(
        watch.has_changed().unwrap(),
        "old store's watchers are woken"
    );
    assert!(watch.borrow_and_update().abandoned);
    let (index, _) = store
        .current()
        .query(&Query::KvGet { key: "x".into() })
        .unwrap();
    assert_eq!(index, 5);
    assert_eq!(
        follower.applied_state().await.unwrap().0,
        Some(log_id(1, 1, 5))
    );
}
