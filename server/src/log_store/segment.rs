//! The on-disk form of the log: segment files of framed, checksummed records, and their
//! recovery after a crash.
//!
//! A segment is `<seq:020>.wal` in the log directory. Each record is framed as
//! `[len: u32 LE][crc32: u32 LE][payload: len bytes]`, where the CRC covers the four length
//! bytes and the payload (so a zero-filled tail, which some file systems leave after a power
//! loss, is not a valid empty record), and the payload is a JSON [`Record`].
//!
//! Every segment starts with a [`Record::Checkpoint`] holding the whole log as it was when the
//! segment was opened; later records are changes to it. Recovery therefore reads only the
//! newest segment whose checkpoint is intact, and older segments can be deleted as soon as a
//! newer one's checkpoint is on disk (see `writer::Writer::rotate`).
//!
//! Torn tail: a crash can leave the last, never-acknowledged batch half written. Reading stops
//! at the first frame that is short or fails its checksum, and the file is truncated there, so
//! a partial record is never decoded. A record whose checksum holds but whose JSON does not
//! decode is not a torn write: that is refused as corruption.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::raft::{Entry, LogId};

/// Bytes before each payload: length and checksum.
const HEADER: usize = 8;
/// Larger "records" are a corrupt length field, not data: the biggest real record is a
/// checkpoint of a few thousand entries.
const MAX_RECORD: usize = 1 << 30;
/// File name suffix of a segment.
const SUFFIX: &str = ".wal";

/// One change to the log, as written to a segment. Append-only enum: never reorder or remove
/// variants (old segments must keep decoding).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(super) enum Record {
    /// The whole log when a segment was opened; every segment's first record.
    Checkpoint {
        /// Entries up to this id were purged.
        last_purged: Option<LogId>,
        /// The last log id known committed.
        committed: Option<LogId>,
        /// Every entry after the purge point, in index order.
        entries: Vec<Entry>,
    },
    /// New entries (openraft truncates before it appends over a conflict).
    Append(Vec<Entry>),
    /// Entries at `since` and after are removed.
    Truncate {
        /// First removed index.
        since: u64,
    },
    /// Entries up to and including this id are removed.
    Purge(LogId),
    /// The committed log id moved.
    Committed(Option<LogId>),
}

/// The log as the records describe it (also the in-memory log readers use).
#[derive(Debug, Default, Clone)]
pub(super) struct LogState {
    pub(super) entries: BTreeMap<u64, Entry>,
    pub(super) last_purged: Option<LogId>,
    pub(super) committed: Option<LogId>,
}

impl LogState {
    /// Applies one record. Replaying any suffix of the records again over the result gives
    /// the same state (each index ends as the last record touching it left it), which is what
    /// lets a checkpoint run ahead of records still queued for writing.
    pub(super) fn apply(&mut self, record: Record) {
        match record {
            Record::Checkpoint {
                last_purged,
                committed,
                entries,
            } => {
                self.last_purged = last_purged;
                self.committed = committed;
                self.entries = entries.into_iter().map(|e| (e.log_id.index, e)).collect();
            }
            Record::Append(entries) => {
                for entry in entries {
                    self.entries.insert(entry.log_id.index, entry);
                }
            }
            Record::Truncate { since } => {
                self.entries.split_off(&since);
            }
            Record::Purge(log_id) => {
                self.entries = self.entries.split_off(&log_id.index.saturating_add(1));
                if self.last_purged.is_none_or(|p| p < log_id) {
                    self.last_purged = Some(log_id);
                }
            }
            Record::Committed(committed) => self.committed = committed,
        }
    }

    /// The checkpoint record of this state.
    pub(super) fn checkpoint(&self) -> Record {
        Record::Checkpoint {
            last_purged: self.last_purged,
            committed: self.committed,
            entries: self.entries.values().cloned().collect(),
        }
    }
}

/// Appends the frame of `record` to `out`.
pub(super) fn encode(record: &Record, out: &mut Vec<u8>) -> io::Result<()> {
    let payload = serde_json::to_vec(record).map_err(io::Error::other)?;
    if payload.len() > MAX_RECORD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("log record of {} bytes is too large", payload.len()),
        ));
    }
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "log record too large"))?
        .to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(&payload);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// The intact frames at the start of `bytes` and where they end. Stops at the first frame
/// that is short, oversized, empty or fails its checksum: that and everything after it is
/// the torn tail.
pub(super) fn frames(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let (len_bytes, crc_bytes) = header.split_at(4);
        let len = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        let crc = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
        let Ok(len) = usize::try_from(len) else { break };
        if len == 0 || len > MAX_RECORD {
            break;
        }
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(len_bytes);
        hasher.update(payload);
        if hasher.finalize() != crc {
            break;
        }
        out.push(payload);
        at += HEADER + len;
    }
    (out, at)
}

/// The path of segment `seq` in `dir`.
pub(super) fn path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}{SUFFIX}"))
}

/// The segment numbers in `dir`, ascending.
fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for item in std::fs::read_dir(dir)? {
        let name = item?.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        seqs.push(seq);
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Forces `dir`'s entries (created, renamed, removed files) to disk.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The segment to keep appending to after recovery.
#[derive(Debug)]
pub(super) struct Recovered {
    pub(super) state: LogState,
    pub(super) seq: u64,
    pub(super) file: File,
    pub(super) len: u64,
    /// Bytes of the segment's opening checkpoint.
    pub(super) checkpoint_len: u64,
}

/// Reads segment `seq`: `None` if its checkpoint is not intact (a segment whose creation a
/// crash interrupted), else the state it describes. Truncates a torn tail.
fn read_segment(dir: &Path, seq: u64) -> io::Result<Option<Recovered>> {
    let path = path(dir, seq);
    let mut file = OpenOptions::new().read(true).append(true).open(&path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let (frames, valid) = frames(&bytes);
    let checkpoint_len = frames.first().map_or(0, |p| (HEADER + p.len()) as u64);
    let mut records = frames.into_iter().enumerate().map(|(i, payload)| {
        serde_json::from_slice::<Record>(payload).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: record {i} has a valid checksum but does not decode ({e}); \
                     the log is corrupt or from another format",
                    path.display()
                ),
            )
        })
    });
    let first = match records.next() {
        Some(record) => record?,
        None => return Ok(None),
    };
    if !matches!(first, Record::Checkpoint { .. }) {
        return Ok(None);
    }
    let mut state = LogState::default();
    state.apply(first);
    for record in records {
        state.apply(record?);
    }
    if valid < bytes.len() {
        tracing::warn!(
            segment = %path.display(),
            kept = valid,
            dropped = bytes.len() - valid,
            "truncating a torn tail (a write interrupted by a crash; never acknowledged)"
        );
        file.set_len(valid as u64)?;
        file.sync_all()?;
    }
    Ok(Some(Recovered {
        state,
        seq,
        file,
        len: valid as u64,
        checkpoint_len,
    }))
}

/// Creates segment `seq` holding `checkpoint`, durably (file data and directory entry).
pub(super) fn create(dir: &Path, seq: u64, checkpoint: &Record) -> io::Result<(File, u64)> {
    let mut bytes = Vec::new();
    encode(checkpoint, &mut bytes)?;
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .read(true)
        .open(path(dir, seq))?;
    io::Write::write_all(&mut file, &bytes)?;
    file.sync_data()?;
    sync_dir(dir)?;
    Ok((file, bytes.len() as u64))
}

/// Opens the log in `dir` (creating it empty if there is none): the newest segment with an
/// intact checkpoint, replayed. Segments before it are obsolete and newer ones were never
/// finished; both are deleted.
pub(super) fn recover(dir: &Path) -> io::Result<Recovered> {
    let seqs = list(dir)?;
    let mut found = None;
    for &seq in seqs.iter().rev() {
        if let Some(recovered) = read_segment(dir, seq)? {
            found = Some(recovered);
            break;
        }
        tracing::warn!(
            seq,
            "discarding a log segment whose creation was interrupted"
        );
    }
    let recovered = match found {
        Some(recovered) => recovered,
        None => {
            let seq = seqs.last().map_or(1, |s| s.saturating_add(1));
            let state = LogState::default();
            let (file, len) = create(dir, seq, &state.checkpoint())?;
            Recovered {
                state,
                seq,
                file,
                len,
                checkpoint_len: len,
            }
        }
    };
    let mut removed = false;
    for &seq in &seqs {
        if seq != recovered.seq {
            std::fs::remove_file(path(dir, seq))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(recovered)
}
