//! The log's writer thread: the only code that writes segment files and the vote file, and
//! where group commit happens.
//!
//! Callers queue [`Job`]s on a channel. The thread takes the first job, then everything else
//! already queued, writes the batch's records with one `write`, and calls `fdatasync` once if
//! any job in the batch needs durability; only then does it complete the batch's jobs. So
//! writes that queue up while a sync is in flight share the next sync instead of each paying
//! for one.
//!
//! `fdatasync` is enough for segment records: it flushes the data and the file size (the
//! metadata needed to read the data back) and the disk's write cache. A new segment's
//! directory entry is made durable with an fsync of the directory before anything is
//! appended to it (`segment::create`).
//!
//! A dedicated thread, not tokio's blocking pool: the file handle and the current segment
//! belong to one owner, so no lock is held across a sync.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};

use super::segment::{self, LogState, Recovered};

/// Start a new segment once the records after its checkpoint are larger than this (and
/// than the checkpoint).
pub(super) const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// The vote file's name in the log directory.
pub(super) const VOTE_FILE: &str = "vote";

/// Where to report a job's completion: a channel its caller waits on, or a callback the
/// writer thread calls itself (openraft's flush notification: the Raft core hears of the
/// sync without a detour through another thread).
pub(super) enum Done {
    Reply(Sender<io::Result<()>>),
    Call(Box<dyn FnOnce(io::Result<()>) + Send>),
}

impl std::fmt::Debug for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Done::Reply(_) => f.write_str("Reply"),
            Done::Call(_) => f.write_str("Call"),
        }
    }
}

/// One unit of work for the writer.
#[derive(Debug)]
pub(super) enum Job {
    /// Append framed records to the current segment; `sync`: make them durable before `done`.
    Records {
        bytes: Vec<u8>,
        sync: bool,
        done: Option<Done>,
    },
    /// Replace the vote file with `bytes` (always durable before `done`).
    Vote { bytes: Vec<u8>, done: Option<Done> },
}

/// Counters for tests and diagnostics.
#[derive(Debug, Default)]
pub(super) struct Stats {
    /// `fdatasync` calls on segments (one per batch that needed durability).
    pub(super) syncs: AtomicU64,
    /// Jobs completed.
    pub(super) jobs: AtomicU64,
}

/// The writer thread's state.
pub(super) struct Writer {
    dir: PathBuf,
    seq: u64,
    file: File,
    len: u64,
    /// Bytes of the current segment's checkpoint.
    checkpoint_len: u64,
    segment_bytes: u64,
    /// The in-memory log, read when a new segment's checkpoint is written.
    state: Arc<Mutex<LogState>>,
    stats: Arc<Stats>,
    /// After a failed write the file's tail is unknown: every later job fails too, and
    /// openraft stops the node (a restart recovers from what is on disk).
    failed: Option<(io::ErrorKind, String)>,
    /// Tests hold this to make jobs queue up behind a sync.
    #[cfg(test)]
    pub(super) gate: Arc<Mutex<()>>,
}

impl Writer {
    pub(super) fn new(
        dir: PathBuf,
        recovered: Recovered,
        segment_bytes: u64,
        state: Arc<Mutex<LogState>>,
        stats: Arc<Stats>,
    ) -> Self {
        Writer {
            dir,
            seq: recovered.seq,
            file: recovered.file,
            len: recovered.len,
            checkpoint_len: recovered.checkpoint_len,
            segment_bytes,
            state,
            stats,
            failed: None,
            #[cfg(test)]
            gate: Arc::default(),
        }
    }

    /// Runs until every sender is dropped.
    pub(super) fn run(mut self, jobs: Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            let mut batch = vec![first];
            batch.extend(jobs.try_iter());
            let result = match &self.failed {
                Some((kind, msg)) => Err(io::Error::new(*kind, msg.clone())),
                None => self.write_batch(&batch),
            };
            if let Err(e) = &result {
                tracing::error!(error = %e, "raft log write failed; failing every later write");
                self.failed = Some((e.kind(), e.to_string()));
            }
            for job in batch {
                let done = match job {
                    Job::Records { done, .. } | Job::Vote { done, .. } => done,
                };
                self.stats.jobs.fetch_add(1, Ordering::Relaxed);
                let reply = || match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                };
                match done {
                    // The caller may have given up waiting; nothing to tell then.
                    Some(Done::Reply(tx)) => {
                        let _ = tx.send(reply());
                    }
                    Some(Done::Call(call)) => call(reply()),
                    None => {}
                }
            }
        }
    }

    fn write_batch(&mut self, batch: &[Job]) -> io::Result<()> {
        let mut bytes = Vec::new();
        let mut sync = false;
        let mut vote = None;
        for job in batch {
            match job {
                Job::Records {
                    bytes: records,
                    sync: needs_sync,
                    ..
                } => {
                    bytes.extend_from_slice(records);
                    sync |= *needs_sync;
                }
                // Each vote supersedes the one before: writing the batch's last is enough.
                Job::Vote { bytes, .. } => vote = Some(bytes),
            }
        }
        if !bytes.is_empty() {
            self.file.write_all(&bytes)?;
            self.len += bytes.len() as u64;
        }
        if sync {
            #[cfg(test)]
            let _gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
            self.file.sync_data()?;
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(vote) = vote {
            write_atomically(&self.dir, VOTE_FILE, vote)?;
        }
        // Rotate once the changes after the checkpoint outgrow the limit and the checkpoint
        // itself: a log larger than the limit (not purged) must not rotate on every batch.
        let changes = self.len.saturating_sub(self.checkpoint_len);
        if changes > self.segment_bytes.max(self.checkpoint_len) {
            self.rotate()?;
        }
        Ok(())
    }

    /// Starts the next segment with a checkpoint of the in-memory log, then deletes the
    /// current one. The checkpoint may include changes still queued behind this batch; they
    /// are written again after it, which replays to the same log (see `LogState::apply`).
    /// A crash before the new segment is durable leaves the old one in charge.
    fn rotate(&mut self) -> io::Result<()> {
        // Unwritten records of the current segment must not be lost if the checkpoint is.
        self.file.sync_data()?;
        let checkpoint = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .checkpoint();
        let next = self.seq.saturating_add(1);
        let (file, len) = segment::create(&self.dir, next, &checkpoint)?;
        let old = segment::path(&self.dir, self.seq);
        self.seq = next;
        self.file = file;
        self.len = len;
        self.checkpoint_len = len;
        std::fs::remove_file(old)?;
        segment::sync_dir(&self.dir)
    }
}

/// Replaces `dir/name` with `bytes` so that a crash leaves either the old or the new content:
/// write a temporary file, fsync it, rename it over, fsync the directory.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    segment::sync_dir(dir)
}
