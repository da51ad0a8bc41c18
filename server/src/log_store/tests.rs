//! The sled log store (and the state machine) against openraft's storage conformance suite,
//! plus durability across reopen.

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{blank_ent, log_id, StoreBuilder, Suite};
use openraft::RaftLogReader;

use super::LogStore;
use crate::fsm::StateMachine;
use crate::raft::{StorageError, TypeConfig, Vote};

/// Builds a log store and state machine on a fresh temporary sled database (deleted when
/// both are dropped).
struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine> for SledBuilder {
    async fn build(&self) -> Result<((), LogStore, StateMachine), StorageError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .expect("open temporary sled");
        let log = LogStore::open(&db).expect("open log trees");
        let (sm, _) = StateMachine::open(&db)?;
        Ok(((), log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    // The suite runs its own tokio runtime per case, so this is a plain #[test].
    Suite::test_all(SledBuilder).expect("storage conformance");
}

#[tokio::test]
async fn log_vote_and_purge_point_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft");
    let vote = Vote::new_committed(3, 7);
    {
        let db = sled::open(&path).unwrap();
        let mut log = LogStore::open(&db).unwrap();
        log.save_vote(&vote).await.unwrap();
        log.blocking_append((1..=5).map(|i| blank_ent::<TypeConfig>(1, 7, i)))
            .await
            .unwrap();
        log.purge(log_id(1, 7, 2)).await.unwrap();
        log.truncate(log_id(1, 7, 5)).await.unwrap();
        log.save_committed(Some(log_id(1, 7, 4))).await.unwrap();
    }
    let db = sled::open(&path).unwrap();
    let mut log = LogStore::open(&db).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 7, 2)));
    assert_eq!(state.last_log_id, Some(log_id(1, 7, 4)));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 7, 4)));
    let indexes: Vec<u64> = log
        .try_get_log_entries(0..100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect();
    assert_eq!(indexes, [3, 4]);
    assert!(log.try_get_log_entries(4..4).await.unwrap().is_empty());
    assert_eq!(log.try_get_log_entries(..=3).await.unwrap().len(), 1);
}
