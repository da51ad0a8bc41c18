//! The log store against openraft's storage conformance suite, durability across reopen,
//! crash recovery (torn tails, interrupted rotation) and group commit.

use std::io::Write;
use std::path::Path;
use std::sync::PoisonError;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{blank_ent, log_id, StoreBuilder, Suite};
use openraft::RaftLogReader;

use super::segment::{self, Record};
use super::LogStore;
use crate::fsm::StateMachine;
use crate::golden;
use crate::raft::{StorageError, TypeConfig, Vote};

/// Builds a log store in a fresh temporary directory and a state machine on a temporary
/// sled database (both deleted when dropped).
struct TempBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine> for TempBuilder {
    async fn build(&self) -> Result<((), LogStore, StateMachine), StorageError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .expect("open temporary sled");
        let log = LogStore::open_temporary().expect("open temporary log");
        let (sm, _) = StateMachine::open(&db)?;
        Ok(((), log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    // The suite runs its own tokio runtime per case, so this is a plain #[test].
    Suite::test_all(TempBuilder).expect("storage conformance");
}

async fn indexes(log: &mut LogStore) -> Vec<u64> {
    log.try_get_log_entries(..)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

fn segments(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".wal"))
        .collect();
    names.sort();
    names
}

fn only_segment(dir: &Path) -> std::path::PathBuf {
    let names = segments(dir);
    assert_eq!(names.len(), 1, "{names:?}");
    dir.join(&names[0])
}

#[tokio::test]
async fn log_vote_and_purge_point_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let vote = Vote::new_committed(3, 7);
    {
        let mut log = LogStore::open(dir.path()).unwrap();
        log.save_vote(&vote).await.unwrap();
        log.blocking_append((1..=5).map(|i| blank_ent::<TypeConfig>(1, 7, i)))
            .await
            .unwrap();
        log.purge(log_id(1, 7, 2)).await.unwrap();
        log.truncate(log_id(1, 7, 5)).await.unwrap();
        log.save_committed(Some(log_id(1, 7, 4))).await.unwrap();
        // The committed id rides on the next sync.
        log.blocking_append([blank_ent::<TypeConfig>(1, 7, 5)])
            .await
            .unwrap();
        log.truncate(log_id(1, 7, 5)).await.unwrap();
    }
    let mut log = LogStore::open(dir.path()).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 7, 2)));
    assert_eq!(state.last_log_id, Some(log_id(1, 7, 4)));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 7, 4)));
    assert_eq!(indexes(&mut log).await, [3, 4]);
    assert!(log.try_get_log_entries(4..4).await.unwrap().is_empty());
    #[allow(clippy::reversed_empty_ranges)]
    let inverted = 5..2;
    assert!(log.try_get_log_entries(inverted).await.unwrap().is_empty());
    assert_eq!(log.try_get_log_entries(..=3).await.unwrap().len(), 1);
}

/// A restart forgets only this server's own leadership: its elected vote comes back as a
/// vote for itself, anyone else's vote unchanged (see `LogStore::forget_leading`).
#[tokio::test]
async fn a_restart_forgets_only_its_own_leadership() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = LogStore::open(dir.path()).unwrap();
        log.save_vote(&Vote::new_committed(3, 7)).await.unwrap();
    }
    let mut log = LogStore::open(dir.path()).unwrap();
    log.forget_leading(8);
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(Vote::new_committed(3, 7))
    );
    log.forget_leading(7);
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 7)));
    drop(log);
    let mut log = LogStore::open(dir.path()).unwrap();
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(Vote::new_committed(3, 7)),
        "the file keeps the vote as it was; only what openraft starts from changes"
    );
}

/// Writes entries 1..=3 durably, then lets `damage` mangle the segment's tail as a crash
/// could, and reopens: 1..=3 must read back, the damage must be gone, and the log must
/// accept and keep new entries.
async fn survives_tail_damage(damage: impl FnOnce(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = LogStore::open(dir.path()).unwrap();
        log.blocking_append((1..=3).map(|i| blank_ent::<TypeConfig>(1, 1, i)))
            .await
            .unwrap();
    }
    let segment = only_segment(dir.path());
    let intact = std::fs::metadata(&segment).unwrap().len();
    damage(&segment);
    {
        let mut log = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&mut log).await, [1, 2, 3]);
        assert!(std::fs::metadata(&segment).unwrap().len() <= intact);
        log.blocking_append([blank_ent::<TypeConfig>(1, 1, 4)])
            .await
            .unwrap();
    }
    let mut log = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut log).await, [1, 2, 3, 4]);
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

/// The frame of an append of entry `index`.
fn frame_of(index: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    segment::encode(
        &Record::Append(vec![blank_ent::<TypeConfig>(1, 1, index)]),
        &mut bytes,
    )
    .unwrap();
    bytes
}

#[tokio::test]
async fn a_half_written_record_is_truncated() {
    survives_tail_damage(|path| {
        let frame = frame_of(4);
        append_bytes(path, &frame[..frame.len() / 2]);
    })
    .await;
}

#[tokio::test]
async fn a_record_with_a_bad_checksum_is_truncated() {
    survives_tail_damage(|path| {
        let mut frame = frame_of(4);
        let last = frame.len() - 1;
        frame[last] ^= 0x55;
        append_bytes(path, &frame);
    })
    .await;
}

#[tokio::test]
async fn a_zero_filled_tail_is_truncated() {
    // Some file systems leave zeros where a write was not completed before power loss.
    survives_tail_damage(|path| append_bytes(path, &[0; 4096])).await;
}

#[tokio::test]
async fn garbage_after_the_tail_is_truncated() {
    survives_tail_damage(|path| append_bytes(path, b"\xff\xff\xff\x7fgarbage")).await;
}

#[tokio::test]
async fn a_short_header_is_truncated() {
    survives_tail_damage(|path| append_bytes(path, &frame_of(4)[..5])).await;
}

#[tokio::test]
async fn a_cut_inside_the_last_acknowledged_record_loses_only_that_record() {
    // Not a crash Raft can cause (the record was synced), but the reader must still stop at
    // the cut rather than misread.
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = LogStore::open(dir.path()).unwrap();
        for i in 1..=3 {
            log.blocking_append([blank_ent::<TypeConfig>(1, 1, i)])
                .await
                .unwrap();
        }
    }
    let segment = only_segment(dir.path());
    let len = std::fs::metadata(&segment).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.set_len(len - 3).unwrap();
    drop(file);
    let mut log = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut log).await, [1, 2]);
}

#[tokio::test]
async fn a_checksummed_record_that_does_not_decode_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(LogStore::open(dir.path()).unwrap());
    let segment = only_segment(dir.path());
    // A valid frame around a payload that is not a record: corruption or another format,
    // not a torn write; refusing is the only safe answer.
    let payload = b"{\"NotARecord\":1}";
    let len = u32::try_from(payload.len()).unwrap().to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(payload);
    let mut frame = len.to_vec();
    frame.extend_from_slice(&crc.finalize().to_le_bytes());
    frame.extend_from_slice(payload);
    append_bytes(&segment, &frame);
    let err = LogStore::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("does not decode"), "{err}");
}

#[tokio::test]
async fn segments_rotate_and_the_old_ones_go() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = LogStore::open_with(dir.path().to_path_buf(), None, 2048).unwrap();
        for i in 1..=60 {
            log.blocking_append([blank_ent::<TypeConfig>(1, 1, i)])
                .await
                .unwrap();
            if i % 20 == 0 {
                log.purge(log_id(1, 1, i - 10)).await.unwrap();
            }
        }
        let names = segments(dir.path());
        assert_eq!(names.len(), 1, "{names:?}");
        assert_ne!(names[0], format!("{:020}.wal", 1), "rotated at least once");
    }
    let mut log = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut log).await, (51..=60).collect::<Vec<_>>());
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 50)));
}

#[tokio::test]
async fn an_unpurged_log_larger_than_a_segment_does_not_rotate_on_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogStore::open_with(dir.path().to_path_buf(), None, 256).unwrap();
    for i in 1..=100 {
        log.blocking_append([blank_ent::<TypeConfig>(1, 1, i)])
            .await
            .unwrap();
    }
    // Each rotation waits for as many bytes of changes as the checkpoint holds: the number
    // of rotations grows with the log's doublings, not with its writes.
    let names = segments(dir.path());
    let seq: u64 = names[0].trim_end_matches(".wal").parse().unwrap();
    assert!((2..=10).contains(&seq), "{names:?}");
    drop(log);
    let mut log = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut log).await, (1..=100).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_interrupted_rotation_leaves_the_old_segment_in_charge() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = LogStore::open(dir.path()).unwrap();
        log.blocking_append((1..=2).map(|i| blank_ent::<TypeConfig>(1, 1, i)))
            .await
            .unwrap();
    }
    // A crash after creating the next segment, before its checkpoint reached the disk.
    let next = segment::path(dir.path(), 2);
    std::fs::write(&next, &frame_of(9)[..7]).unwrap();
    let mut log = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut log).await, [1, 2]);
    assert!(!next.exists(), "the unfinished segment is deleted");
}

#[tokio::test]
async fn writes_queued_behind_a_sync_share_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogStore::open(dir.path()).unwrap();
    let before = log.syncs();
    // Hold the writer at its next sync while 50 appends queue up behind it.
    let gate = log.sync_gate();
    let held = gate.lock().unwrap_or_else(PoisonError::into_inner);
    let waits: Vec<_> = (1..=50)
        .map(|i| {
            log.submit(Record::Append(vec![blank_ent::<TypeConfig>(1, 1, i)]), true)
                .unwrap()
        })
        .collect();
    drop(held);
    for wait in waits {
        super::wait(wait).await.unwrap();
    }
    let syncs = log.syncs() - before;
    assert!(
        (1..=2).contains(&syncs),
        "50 appends took {syncs} syncs: at most the one in flight and one shared"
    );
}

/// The segment encoding (framing, checksums, record JSON) is pinned: a change would make
/// logs already on disk unreadable (or, worse, misread) after an upgrade.
#[test]
fn segment_encoding_is_pinned() {
    let records = vec![
        Record::Checkpoint {
            last_purged: Some(log_id(1, 1, 2)),
            committed: Some(log_id(1, 1, 3)),
            entries: vec![blank_ent::<TypeConfig>(1, 1, 3)],
        },
        Record::Append(vec![blank_ent::<TypeConfig>(2, 1, 4)]),
        Record::Truncate { since: 4 },
        Record::Purge(log_id(1, 1, 3)),
        Record::Committed(None),
    ];
    let mut bytes = Vec::new();
    for record in &records {
        segment::encode(record, &mut bytes).unwrap();
    }
    // One frame per line: header in hex, then the JSON payload.
    let mut text = String::new();
    let (frames, end) = segment::frames(&bytes);
    assert_eq!(end, bytes.len());
    let mut at = 0;
    for payload in &frames {
        let header: String = bytes[at..at + 8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        text.push_str(&format!(
            "{header} {}\n",
            std::str::from_utf8(payload).unwrap()
        ));
        at += 8 + payload.len();
    }
    golden::check("log_segment.txt", text.trim_end());

    // And the stored fixture decodes back to the same records.
    let mut stored = Vec::new();
    for line in golden::read("log_segment.txt").lines() {
        let (header, payload) = line.split_once(' ').unwrap();
        for i in (0..header.len()).step_by(2) {
            stored.push(u8::from_str_radix(&header[i..i + 2], 16).unwrap());
        }
        stored.extend_from_slice(payload.as_bytes());
    }
    let (frames, end) = segment::frames(&stored);
    assert_eq!(end, stored.len(), "every stored frame's checksum holds");
    let decoded: Vec<Record> = frames
        .iter()
        .map(|p| serde_json::from_slice(p).unwrap())
        .collect();
    assert_eq!(decoded, records);
}
