//! The Raft log on sled (openraft v2 `RaftLogStorage` + `RaftLogReader`).
//!
//! Two trees, like openraft's `log-rocks` example:
//! - `logs`: big-endian `u64` index → JSON [`Entry`]. Big-endian keys sort numerically, so
//!   sled's ordered iteration is log order and ranges are index ranges.
//! - `meta`: typed keys ([`MetaKey`]) → JSON values: the vote, the last purged log id and
//!   the committed log id.
//!
//! Durability: writes Raft relies on for safety (entries, vote, truncation, purge) are
//! flushed (fsync) before they are acknowledged; `append` calls openraft's callback only after
//! the flush, so an entry acknowledged to the leader survives `kill -9`. The committed log id
//! is not flushed: losing it only means re-applying fewer entries at startup until the leader
//! re-establishes the commit index.
//!
//! Async hygiene: sled inserts and batches only touch its in-memory page cache, so they run
//! inline; the fsync ([`flush`]) is what blocks, and it runs on tokio's blocking pool. (The
//! whole-snapshot work is in [`fsm`](crate::fsm), off the async threads too.)

#[cfg(test)]
mod tests;

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, RaftLogReader};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::raft::{Entry, LogId, StorageError, StorageIOError, TypeConfig, Vote};

/// A typed key of the `meta` tree.
trait MetaKey {
    /// The key bytes.
    const NAME: &'static str;
    /// What is stored under it.
    type Value: Serialize + DeserializeOwned;
}

/// The last vote this node cast or granted.
struct VoteKey;
impl MetaKey for VoteKey {
    const NAME: &'static str = "vote";
    type Value = Vote;
}

/// The last log id removed by `purge` (entries up to it are gone).
struct LastPurgedKey;
impl MetaKey for LastPurgedKey {
    const NAME: &'static str = "last_purged";
    type Value = LogId;
}

/// The last log id known committed.
struct CommittedKey;
impl MetaKey for CommittedKey {
    const NAME: &'static str = "committed";
    type Value = LogId;
}

fn io_err(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

/// Forces everything written to `db` to disk, off the async threads.
pub(crate) async fn flush(db: &sled::Db) -> Result<(), std::io::Error> {
    let db = db.clone();
    // spawn_blocking: fsync can take milliseconds; it also keeps tokio's paused test clock
    // from jumping ahead while the disk works.
    match tokio::task::spawn_blocking(move || db.flush()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(std::io::Error::other(e)),
        Err(e) => Err(std::io::Error::other(e)),
    }
}

/// The sled-backed Raft log. Cheap to clone (sled handles are shared); the clone is also the
/// log reader replication streams use.
#[derive(Clone, Debug)]
pub(crate) struct LogStore {
    db: sled::Db,
    logs: sled::Tree,
    meta: sled::Tree,
}

impl LogStore {
    /// Opens (or creates) the log trees in `db`.
    pub(crate) fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(LogStore {
            db: db.clone(),
            logs: db.open_tree("logs")?,
            meta: db.open_tree("meta")?,
        })
    }

    fn get_meta<K: MetaKey>(&self) -> Result<Option<K::Value>, AnyError> {
        let Some(bytes) = self.meta.get(K::NAME).map_err(io_err)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(io_err)
    }

    fn put_meta<K: MetaKey>(&self, value: &K::Value) -> Result<(), AnyError> {
        let bytes = serde_json::to_vec(value).map_err(io_err)?;
        self.meta.insert(K::NAME, bytes).map_err(io_err)?;
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<Entry, AnyError> {
        serde_json::from_slice(bytes).map_err(io_err)
    }

    fn last_log_id(&self) -> Result<Option<LogId>, AnyError> {
        match self.logs.last().map_err(io_err)? {
            Some((_, bytes)) => Ok(Some(Self::decode(&bytes)?.log_id)),
            None => Ok(None),
        }
    }

    /// Removes every entry whose index is in `range`.
    fn remove_range(&self, range: impl RangeBounds<[u8; 8]>) -> Result<(), AnyError> {
        let mut batch = sled::Batch::default();
        for item in self.logs.range(range) {
            let (key, _) = item.map_err(io_err)?;
            batch.remove(key);
        }
        self.logs.apply_batch(batch).map_err(io_err)
    }

    async fn flush(&self) -> Result<(), AnyError> {
        flush(&self.db).await.map_err(io_err)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => i.checked_add(1),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        let iter = match end {
            Some(end) if end <= start => return Ok(Vec::new()),
            Some(end) => self.logs.range(start.to_be_bytes()..end.to_be_bytes()),
            None => self.logs.range(start.to_be_bytes()..),
        };
        let mut entries = Vec::new();
        for item in iter {
            let (_, bytes) = item.map_err(|e| StorageIOError::read_logs(io_err(e)))?;
            entries.push(Self::decode(&bytes).map_err(StorageIOError::read_logs)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self
            .get_meta::<LastPurgedKey>()
            .map_err(StorageIOError::read_logs)?;
        let last_log_id = self
            .last_log_id()
            .map_err(StorageIOError::read_logs)?
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta::<VoteKey>(vote)
            .map_err(StorageIOError::write_vote)?;
        self.flush().await.map_err(StorageIOError::write_vote)?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self
            .get_meta::<VoteKey>()
            .map_err(StorageIOError::read_vote)?)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let result = match committed {
            Some(log_id) => self.put_meta::<CommittedKey>(&log_id),
            None => self
                .meta
                .remove(CommittedKey::NAME)
                .map(|_| ())
                .map_err(io_err),
        };
        result.map_err(StorageIOError::write_logs)?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .get_meta::<CommittedKey>()
            .map_err(StorageIOError::read_logs)?)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry)
                .map_err(|e| StorageIOError::write_log_entry(entry.log_id, io_err(e)))?;
            batch.insert(&entry.log_id.index.to_be_bytes(), bytes);
        }
        self.logs
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        // Acknowledge only once the entries are on disk.
        match flush(&self.db).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = StorageIOError::write_logs(AnyError::new(&e));
                callback.log_io_completed(Err(e));
                Err(err.into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "truncating log from");
        self.remove_range(log_id.index.to_be_bytes()..)
            .map_err(StorageIOError::write_logs)?;
        self.flush().await.map_err(StorageIOError::write_logs)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "purging log up to");
        // Record the purge point first: a crash between the two steps must not leave
        // `get_log_state` reporting entries that are gone.
        self.put_meta::<LastPurgedKey>(&log_id)
            .map_err(StorageIOError::write_logs)?;
        self.remove_range(..=log_id.index.to_be_bytes())
            .map_err(StorageIOError::write_logs)?;
        self.flush().await.map_err(StorageIOError::write_logs)?;
        Ok(())
    }
}
