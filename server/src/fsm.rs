//! The Raft state machine: applies committed [`Command`]s to the [`StateStore`] and builds,
//! persists and installs snapshots.
//!
//! A snapshot is the serialized store ([`StoreCopy::encode`]) plus openraft's
//! [`SnapshotMeta`] (last applied log id and membership). The current snapshot is kept in the
//! sled tree `snapshot` (keys `meta` and `data`, written in one batch and flushed), so a
//! restart loads it and replays only the log after it instead of the whole history.
//!
//! Install (Consul's `Restore`) builds a fresh store from the snapshot, swaps it into the
//! shared [`StoreHandle`] and abandons the old store, which wakes every blocking query
//! parked on it so it re-runs against the new one.
//!
//! An operator restore (`PUT /v1/snapshot`) is not a Raft snapshot install: it arrives as a
//! normal entry, [`Command::Restore`], and is applied like one at its log index, through the
//! same swap (see `crate::archive`).
//!
//! Whole-snapshot work (encoding the store, decoding one, writing or reading it in sled and
//! flushing) runs on tokio's blocking pool ([`off_runtime`]); only the in-memory copy of the
//! tables a build starts from is taken on the async thread, where openraft asks for it.

#[cfg(test)]
mod tests;

use std::io::Cursor;
use std::sync::{Arc, Mutex, PoisonError};

use concord_api::rpc::{RpcError, WriteResult};
use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder};

use crate::command::{Applied, Command, CommandResult};
use crate::raft::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
    TypeConfig,
};
use crate::state::{StateStore, StoreCopy, StoreHandle};

const META_KEY: &str = "meta";
const DATA_KEY: &str = "data";

/// The persisted current snapshot (sled tree `snapshot`).
#[derive(Clone, Debug)]
struct SnapshotFile {
    db: sled::Db,
    tree: sled::Tree,
    /// Serializes "compare with the stored snapshot, then replace it": a snapshot build runs
    /// concurrently with the state machine and must not overwrite a newer install.
    write_lock: Arc<Mutex<()>>,
}

impl SnapshotFile {
    fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(SnapshotFile {
            db: db.clone(),
            tree: db.open_tree("snapshot")?,
            write_lock: Arc::new(Mutex::new(())),
        })
    }

    fn load(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, AnyError> {
        let meta = self.tree.get(META_KEY).map_err(|e| AnyError::new(&e))?;
        let data = self.tree.get(DATA_KEY).map_err(|e| AnyError::new(&e))?;
        match (meta, data) {
            (Some(meta), Some(data)) => {
                let meta: SnapshotMeta =
                    serde_json::from_slice(&meta).map_err(|e| AnyError::new(&e))?;
                Ok(Some((meta, data.to_vec())))
            }
            _ => Ok(None),
        }
    }

    /// Makes `meta`/`data` the current snapshot unless a newer one is already stored, and
    /// flushes it. Blocking (sled I/O of the whole snapshot): call through [`off_runtime`].
    fn save(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), AnyError> {
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((stored, _)) = self.load()? {
            if stored.last_log_id > meta.last_log_id {
                return Ok(());
            }
        }
        let meta_bytes = serde_json::to_vec(meta).map_err(|e| AnyError::new(&e))?;
        let mut batch = sled::Batch::default();
        batch.insert(META_KEY, meta_bytes);
        batch.insert(DATA_KEY, data);
        self.tree
            .apply_batch(batch)
            .map_err(|e| AnyError::new(&e))?;
        self.db.flush().map_err(|e| AnyError::new(&e))?;
        Ok(())
    }
}

/// Runs blocking snapshot work (whole-store encode/decode, sled reads and writes of the whole
/// snapshot, fsync) on tokio's blocking pool, so it never stalls an async worker thread.
/// openraft's methods here take `&mut self`, so the work gets owned copies of what it needs.
/// A blocking task also keeps tokio's paused test clock from jumping ahead meanwhile.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AnyError> + Send + 'static,
) -> Result<T, AnyError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AnyError::new(&e))?
}

/// The state machine openraft drives.
#[derive(Debug)]
pub(crate) struct StateMachine {
    store: StoreHandle,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshots: SnapshotFile,
}

impl StateMachine {
    /// Opens the state machine in `db`: restores the persisted snapshot, if any. Returns the
    /// handle readers use to reach the store.
    // openraft's error type, large but returned once at startup.
    #[allow(clippy::result_large_err)]
    pub(crate) fn open(db: &sled::Db) -> Result<(Self, StoreHandle), StorageError> {
        let snapshots = SnapshotFile::open(db)
            .map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))?;
        let loaded = snapshots
            .load()
            .map_err(|e| StorageIOError::read_snapshot(None, e))?;
        let (store, last_applied, membership) = match loaded {
            Some((meta, data)) => {
                let store = StateStore::restore(&data).map_err(|e| {
                    StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e))
                })?;
                tracing::info!(last_log_id = ?meta.last_log_id, "restored state from snapshot");
                (store, meta.last_log_id, meta.last_membership)
            }
            None => (StateStore::new(), None, StoredMembership::default()),
        };
        let handle = StoreHandle::new(store);
        let sm = StateMachine {
            store: handle.clone(),
            last_applied,
            membership,
            snapshots,
        };
        Ok((sm, handle))
    }
}

/// Builds a snapshot from a view taken when it was requested: openraft runs the build
/// concurrently with further applies, so the data and its log id are captured together.
#[derive(Debug)]
pub(crate) struct SnapshotBuilder {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// The tables as of `last_applied`; encoded in `build_snapshot`, off the async threads.
    data: Arc<StoreCopy>,
    snapshots: SnapshotFile,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id: uuid::Uuid::new_v4().to_string(),
        };
        let copy = Arc::clone(&self.data);
        let snapshots = self.snapshots.clone();
        let saved = meta.clone();
        let data = off_runtime(move || {
            let data = copy.encode().map_err(|e| AnyError::new(&e))?;
            snapshots.save(&saved, &data)?;
            Ok(data)
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = data.len(), "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut store = self.store.current();
        let mut results = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            let result = match &entry.payload {
                EntryPayload::Blank => vec![Ok(WriteResult::Done)],
                EntryPayload::Normal(Command::Restore { state }) => {
                    let result = restore(&self.store, entry.log_id.index, state).await;
                    // Later entries of this batch apply to the restored store.
                    store = self.store.current();
                    vec![result]
                }
                EntryPayload::Normal(Command::Batch { commands }) => {
                    apply_commands(&store, entry.log_id.index, commands)
                }
                EntryPayload::Normal(cmd) => {
                    apply_commands(&store, entry.log_id.index, std::slice::from_ref(cmd))
                }
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership.clone());
                    vec![Ok(WriteResult::Done)]
                }
            };
            results.push(result);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            // Only a memory copy here, under the store's read lock: the copy must be taken
            // now to match `last_applied`, but encoding and writing it wait for the build.
            data: Arc::new(self.store.current().copy()),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let signature = || Some(meta.signature());
        // Decode first (a bad snapshot changes nothing), then persist: once openraft sees
        // the install succeed it may purge the log the snapshot replaces.
        let (store, data) = off_runtime(move || {
            let store = StateStore::restore(&data).map_err(|e| AnyError::new(&e))?;
            Ok((store, data))
        })
        .await
        .map_err(|e| StorageIOError::read_snapshot(signature(), e))?;
        let snapshots = self.snapshots.clone();
        let saved = meta.clone();
        off_runtime(move || snapshots.save(&saved, &data))
            .await
            .map_err(|e| StorageIOError::write_snapshot(signature(), e))?;
        self.store.swap(store);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        tracing::info!(last_log_id = ?meta.last_log_id, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let snapshots = self.snapshots.clone();
        let loaded = off_runtime(move || snapshots.load())
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, e))?;
        Ok(loaded.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Applies an operator restore ([`Command::Restore`]) at `index`: decodes the state off the
/// async threads, then swaps the new store in (waking every watcher of the old one). The
/// leader decoded the same bytes before proposing, so a failure here is unexpected; it is
/// the entry's result and changes nothing.
async fn restore(handle: &StoreHandle, index: u64, state: &str) -> CommandResult {
    let state = state.to_owned();
    let store = off_runtime(move || {
        let copy = StoreCopy::decode(state.as_bytes()).map_err(|e| AnyError::new(&e))?;
        Ok(StateStore::restored_at(copy, index))
    })
    .await
    .map_err(|e| RpcError::Internal(format!("restoring snapshot: {e}")))?;
    handle.swap(store);
    tracing::info!(index, "applied operator snapshot restore");
    Ok(WriteResult::Done)
}

/// Applies one entry's commands (one, or a batch's); logs rejections (they are normal: the
/// caller gets the error).
fn apply_commands(store: &StateStore, index: u64, commands: &[Command]) -> Applied {
    let results = store.apply_batch(index, commands);
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        tracing::debug!(index, error = %e, "command rejected");
    }
    results
}
