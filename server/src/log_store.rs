//! The Raft log: a write-ahead log of its own (openraft v2 `RaftLogStorage` +
//! `RaftLogReader`), in `<data_dir>/raft/log/`.
//!
//! Why not sled: sled's flush on Linux is `sync_file_range`, which flushes neither the file
//! metadata needed to read the data back nor the disk's write cache, so an acknowledged entry
//! survived `kill -9` but not a power loss. sled keeps what it serves well (the state-machine
//! snapshot, see [`fsm`](crate::fsm)); the log lives here.
//!
//! # Durability contract
//! - `append`: openraft's callback is called only after the entries' segment bytes were
//!   `fdatasync`ed (data, file size and the disk cache); a new segment's directory entry is
//!   fsynced before anything is appended to it.
//! - `save_vote`: the vote file is replaced atomically (temp file, fsync, rename, fsync of the
//!   directory) before it returns.
//! - `truncate` and `purge` are synced before they return.
//! - `save_committed` is not synced by itself (it rides on the next sync): losing it only
//!   means re-applying fewer entries at startup until the leader re-establishes the commit.
//!
//! Group commit: all file I/O runs on one writer thread ([`writer`]), which batches whatever
//! queued while the previous sync ran into one write and one `fdatasync`.
//!
//! The whole unpurged log is also kept in memory (the server snapshots every few thousand
//! entries and purges behind them), so reads never touch the disk; the files are read only
//! at startup ([`segment::recover`]).
//!
//! # Layout
//! - `segment`: record framing and checksums, segment files, crash recovery (torn tails).
//! - `writer`: the writer thread, group commit, segment rotation, the vote file.

#[cfg(test)]
mod tests;

mod segment;
mod writer;

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, RaftLogReader};

use crate::raft::{Entry, LogId, NodeId, StorageError, StorageIOError, TypeConfig, Vote};
use segment::{LogState as Log, Record};
use writer::{Done, Job, Stats, Writer, VOTE_FILE};

pub(crate) use writer::write_atomically;

/// The Raft log. Cheap to clone; the clone is also the log reader replication streams use.
/// The writer thread stops when the last clone is dropped.
#[derive(Clone, Debug)]
pub(crate) struct LogStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The log as written so far (possibly ahead of the disk by the jobs still queued).
    log: Arc<Mutex<Log>>,
    vote: Mutex<Option<Vote>>,
    jobs: Sender<Job>,
    #[cfg(test)]
    stats: Arc<Stats>,
    #[cfg(test)]
    gate: Arc<Mutex<()>>,
    /// A log without a data dir lives in a temporary directory, deleted with the store.
    _temp: Option<tempfile::TempDir>,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`. Blocking (reads the newest segment): call it on
    /// the blocking pool.
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        Self::open_with(dir.to_path_buf(), None, writer::SEGMENT_BYTES)
    }

    /// A log in a fresh temporary directory (servers without a data dir).
    pub(crate) fn open_temporary() -> io::Result<Self> {
        let temp = tempfile::Builder::new().prefix("concord-log").tempdir()?;
        Self::open_with(temp.path().to_path_buf(), Some(temp), writer::SEGMENT_BYTES)
    }

    fn open_with(
        dir: PathBuf,
        temp: Option<tempfile::TempDir>,
        segment_bytes: u64,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let vote = read_vote(&dir)?;
        let recovered = segment::recover(&dir)?;
        let log = Arc::new(Mutex::new(recovered.state.clone()));
        let stats = Arc::new(Stats::default());
        let writer = Writer::new(dir, recovered, segment_bytes, log.clone(), stats.clone());
        #[cfg(not(test))]
        drop(stats);
        #[cfg(test)]
        let gate = writer.gate.clone();
        let (jobs, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(LogStore {
            inner: Arc::new(Inner {
                log,
                vote: Mutex::new(vote),
                jobs,
                #[cfg(test)]
                stats,
                #[cfg(test)]
                gate,
                _temp: temp,
            }),
        })
    }

    /// Forgets, for a restart, that this server (`id`) led: a stored vote that says it was
    /// elected is read back as a vote for itself not yet granted, so the server stands for
    /// election again, in a new term, as a restarted Consul server does.
    ///
    /// Why: openraft 0.9 restarts a server whose stored vote is its own and committed
    /// straight as leader, in the same term, with the commit point it had persisted. That
    /// point can lag what it acknowledged before the crash (`save_committed` is not synced,
    /// and it may still be queued when the process dies), and the leader's first entry of
    /// the term is long committed, so `ensure_linearizable` would serve `?consistent` reads
    /// from a state missing acknowledged writes until a quorum answered it again. A new
    /// term's leader first commits a new blank entry, which covers everything acknowledged
    /// before. The vote itself stays the same term and candidate, so no other vote of this
    /// server changes meaning.
    pub(crate) fn forget_leading(&self, id: NodeId) {
        let mut vote = self
            .inner
            .vote
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = vote.as_mut() {
            if v.is_committed() && v.leader_id().voted_for() == Some(id) {
                tracing::info!(vote = %v, "restarting as a candidate, not as the leader");
                v.committed = false;
            }
        }
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        self.inner
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `record` to the in-memory log and queues it for the writer. Returns the
    /// channel its completion is reported on when `sync` asked for durability.
    fn submit(
        &self,
        record: Record,
        sync: bool,
    ) -> io::Result<Option<mpsc::Receiver<io::Result<()>>>> {
        let (done, rx) = if sync {
            let (tx, rx) = mpsc::channel();
            (Some(Done::Reply(tx)), Some(rx))
        } else {
            (None, None)
        };
        self.queue(record, sync, done)?;
        Ok(rx)
    }

    /// Applies `record` to the in-memory log and queues it for the writer, which reports
    /// its completion to `done`.
    fn queue(&self, record: Record, sync: bool, done: Option<Done>) -> io::Result<()> {
        let mut bytes = Vec::new();
        segment::encode(&record, &mut bytes)?;
        // One lock around "apply, then queue": the writer's queue is in the same order as
        // the in-memory changes.
        let mut log = self.log();
        log.apply(record);
        self.send(Job::Records { bytes, sync, done })?;
        drop(log);
        Ok(())
    }

    fn send(&self, job: Job) -> io::Result<()> {
        self.inner
            .jobs
            .send(job)
            .map_err(|_| io::Error::other("the raft log writer thread is gone"))
    }

    /// Held by a test, stalls the writer before its next sync (the records are written,
    /// not synced, and nothing waiting on them is told).
    #[cfg(test)]
    pub(crate) fn sync_gate(&self) -> Arc<Mutex<()>> {
        self.inner.gate.clone()
    }

    /// Number of `fdatasync`s of log segments so far (tests: group commit).
    #[cfg(test)]
    fn syncs(&self) -> u64 {
        self.inner
            .stats
            .syncs
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Waits for the writer to report a job done, on the blocking pool: off the async worker
/// threads, and (a blocking task being in flight) without letting tokio's paused test clock
/// jump ahead meanwhile.
async fn wait(rx: Option<mpsc::Receiver<io::Result<()>>>) -> io::Result<()> {
    let Some(rx) = rx else { return Ok(()) };
    tokio::task::spawn_blocking(move || rx.recv())
        .await
        .map_err(io::Error::other)?
        .map_err(|_| io::Error::other("the raft log writer thread is gone"))?
}

fn read_vote(dir: &Path) -> io::Result<Option<Vote>> {
    match std::fs::read(dir.join(VOTE_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: unreadable vote: {e}", dir.join(VOTE_FILE).display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn any(e: io::Error) -> AnyError {
    AnyError::new(&e)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => Bound::Included(*i),
            Bound::Excluded(i) => Bound::Excluded(*i),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(*i),
            Bound::Excluded(i) => Bound::Excluded(*i),
            Bound::Unbounded => Bound::Unbounded,
        };
        // BTreeMap::range panics on an empty or inverted range: answer that here.
        let empty = match (start, end) {
            (Bound::Included(s), Bound::Excluded(e)) => s >= e,
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Excluded(s), Bound::Excluded(e)) | (Bound::Excluded(s), Bound::Included(e)) => {
                s >= e
            }
            _ => false,
        };
        if empty {
            return Ok(Vec::new());
        }
        Ok(self
            .log()
            .entries
            .range((start, end))
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let log = self.log();
        let last_purged_log_id = log.last_purged;
        let last_log_id = log
            .entries
            .last_key_value()
            .map(|(_, e)| e.log_id)
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
        let write = async {
            let bytes = serde_json::to_vec(vote).map_err(io::Error::other)?;
            let (tx, rx) = mpsc::channel();
            self.send(Job::Vote {
                bytes,
                done: Some(Done::Reply(tx)),
            })?;
            wait(Some(rx)).await
        };
        write
            .await
            .map_err(|e| StorageIOError::write_vote(any(e)))?;
        *self
            .inner
            .vote
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(*self
            .inner
            .vote
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.submit(Record::Committed(committed), false)
            .map_err(|e| StorageIOError::write_logs(any(e)))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.log().committed)
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
        let entries: Vec<Entry> = entries.into_iter().collect();
        // Acknowledged only once the entries are on disk: the writer thread calls openraft's
        // callback itself after the sync, so the Raft core hears of it directly, without a
        // detour through the blocking pool and a spawned task (two thread wake-ups per
        // append). The append returns at once and openraft goes on meanwhile. If the
        // entries cannot be queued the callback is dropped unsent: openraft sees a failed
        // flush.
        //
        // Unit tests run on tokio's paused clock, which jumps ahead whenever no task can
        // run: a blocking task held until the flush is reported keeps it still while the
        // writer syncs (as `wait` does for the other jobs). Production needs no such task.
        #[cfg(test)]
        let (held, release) = mpsc::channel::<()>();
        let flushed = Done::Call(Box::new(move |synced| {
            callback.log_io_completed(synced);
            #[cfg(test)]
            drop(held);
        }));
        self.queue(Record::Append(entries), true, Some(flushed))
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        #[cfg(test)]
        drop(tokio::task::spawn_blocking(move || release.recv()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "truncating log from");
        let rx = self
            .submit(
                Record::Truncate {
                    since: log_id.index,
                },
                true,
            )
            .map_err(|e| StorageIOError::write_logs(any(e)))?;
        wait(rx)
            .await
            .map_err(|e| StorageIOError::write_logs(any(e)))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "purging log up to");
        let rx = self
            .submit(Record::Purge(log_id), true)
            .map_err(|e| StorageIOError::write_logs(any(e)))?;
        wait(rx)
            .await
            .map_err(|e| StorageIOError::write_logs(any(e)))?;
        Ok(())
    }
}
