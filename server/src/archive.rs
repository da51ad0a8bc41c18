//! Operator snapshot archives (`GET`/`PUT /v1/snapshot`, `concord snapshot save|restore|inspect`).
//!
//! The shape is Consul's: a gzipped tar holding `meta.json` (ID, Size, Index, Term, Version),
//! `state.bin` (here: the state store's snapshot encoding, the same bytes a Raft snapshot
//! carries) and `SHA256SUMS` (`sha256sum` lines for the other two). Reading one checks, in
//! order: gzip and tar framing, that exactly those three files are present, both checksums,
//! the format version, the recorded size, and finally that the state decodes in full. Any
//! failure is an [`ArchiveError`] and nothing has changed: restore proposes nothing until the
//! archive has passed every check.
//!
//! Restore goes through Raft as one [`Command::Restore`] entry carrying `state.bin`, so every
//! server applies it at the same log index (the FSM swaps in the decoded store and wakes
//! every watcher). The entry travels whole in one AppendEntries request, so the state is
//! capped at [`MAX_STATE_BYTES`], well under the RPC body limit even with JSON escaping.

#[cfg(test)]
mod tests;

use std::io::Read;

use concord_api::rpc::{QueryResult, ReadResponse, RpcError, SnapshotArchive, WriteResponse};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::command::Command;
use crate::node::Shared;
use crate::state::StoreCopy;

/// The archive format this build writes and the only one it reads (`Version` in `meta.json`).
pub const FORMAT_VERSION: u64 = 1;

/// Largest `state.bin` accepted (64 MiB). The restore entry carries it as a JSON string
/// (escaping can double it) inside one AppendEntries body, limited to 256 MiB; the cap also
/// bounds how much a small, hostile gzip stream can inflate to.
pub const MAX_STATE_BYTES: u64 = 64 * 1024 * 1024;

const META: &str = "meta.json";
const STATE: &str = "state.bin";
const SUMS: &str = "SHA256SUMS";
/// `meta.json` and `SHA256SUMS` are tiny; anything bigger is not ours.
const MAX_SMALL_FILE: u64 = 64 * 1024;

/// `meta.json`, with Consul's field names.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Meta {
    /// `term-index-unixmillis`, as Consul names snapshots.
    #[serde(rename = "ID")]
    pub id: String,
    /// Bytes of `state.bin`.
    pub size: u64,
    /// Last Raft index reflected in the state.
    pub index: u64,
    /// Raft term when the snapshot was taken.
    pub term: u64,
    /// Archive format version ([`FORMAT_VERSION`]).
    pub version: u64,
}

/// Why an archive was refused. Every text says what is wrong with the file.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Not a gzipped tar, or cut short.
    #[error("snapshot archive is corrupt or truncated: {0}")]
    Framing(String),
    /// One of the three files is absent.
    #[error("snapshot archive is missing {0}")]
    Missing(&'static str),
    /// A file that is not part of the format.
    #[error("snapshot archive has an unexpected file {0:?}")]
    Unexpected(String),
    /// A file's SHA-256 differs from `SHA256SUMS` (or is not listed there).
    #[error("snapshot archive checksum mismatch for {0}")]
    Checksum(&'static str),
    /// `meta.json` does not parse.
    #[error("snapshot archive has an unreadable meta.json: {0}")]
    Meta(String),
    /// A format version this build does not read.
    #[error(
        "unsupported snapshot format version {found} (this build reads version {FORMAT_VERSION})"
    )]
    Version {
        /// The archive's version.
        found: u64,
    },
    /// `state.bin` is not the size `meta.json` records.
    #[error("snapshot archive state.bin is {actual} bytes but meta.json says {recorded}")]
    Size {
        /// From `meta.json`.
        recorded: u64,
        /// Counted.
        actual: u64,
    },
    /// A file exceeds its cap.
    #[error("snapshot archive {file} is larger than the {limit}-byte limit")]
    TooLarge {
        /// Which file.
        file: &'static str,
        /// The cap.
        limit: u64,
    },
    /// The checksums match but the state does not decode (written by another program).
    #[error("snapshot archive state.bin does not decode: {0}")]
    State(String),
    /// Writing an archive failed (out of memory, an I/O error on a buffer).
    #[error("writing snapshot archive: {0}")]
    Write(String),
}

/// A verified archive: its meta and its decoded state.
#[derive(Debug)]
pub struct Verified {
    /// `meta.json`.
    pub meta: Meta,
    /// Records per table, for `snapshot inspect`.
    pub counts: Vec<(&'static str, usize)>,
    state_bytes: Vec<u8>,
}

/// Builds an archive of `state` (a [`StoreCopy::encode`]) with the given Raft position.
pub fn write(state: &[u8], index: u64, term: u64, now_ms: u64) -> Result<Vec<u8>, ArchiveError> {
    let meta = Meta {
        id: format!("{term}-{index}-{now_ms}"),
        size: state.len() as u64,
        index,
        term,
        version: FORMAT_VERSION,
    };
    let meta_bytes =
        serde_json::to_vec_pretty(&meta).map_err(|e| ArchiveError::Write(e.to_string()))?;
    let sums = format!(
        "{}  {META}\n{}  {STATE}\n",
        sha256(&meta_bytes),
        sha256(state)
    );
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in [
        (META, &meta_bytes[..]),
        (STATE, state),
        (SUMS, sums.as_bytes()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(now_ms / 1000);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes)
            .map_err(|e| ArchiveError::Write(e.to_string()))?;
    }
    let gz = tar
        .into_inner()
        .map_err(|e| ArchiveError::Write(e.to_string()))?;
    gz.finish().map_err(|e| ArchiveError::Write(e.to_string()))
}

/// Reads and verifies an archive in full (see the module docs for the checks and their order).
pub fn read(archive: &[u8]) -> Result<Verified, ArchiveError> {
    let framing = |e: std::io::Error| ArchiveError::Framing(e.to_string());
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let (mut meta, mut state, mut sums) = (None, None, None);
    for entry in tar.entries().map_err(framing)? {
        let entry = entry.map_err(framing)?;
        let name = entry
            .path()
            .map_err(framing)?
            .to_string_lossy()
            .into_owned();
        let (slot, file, limit) = match name.as_str() {
            META => (&mut meta, META, MAX_SMALL_FILE),
            STATE => (&mut state, STATE, MAX_STATE_BYTES),
            SUMS => (&mut sums, SUMS, MAX_SMALL_FILE),
            _ => return Err(ArchiveError::Unexpected(name)),
        };
        // Read at most one byte past the cap, so a lying header cannot make us buffer more.
        let mut bytes = Vec::new();
        entry
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(framing)?;
        if bytes.len() as u64 > limit {
            return Err(ArchiveError::TooLarge { file, limit });
        }
        *slot = Some(bytes);
    }
    // The tar reader stops at the end-of-archive blocks; a gzip stream cut after them is
    // still truncated, so drain it to see its trailer (CRC and length) checked.
    let mut rest = tar.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(framing)?;
    let meta_bytes = meta.ok_or(ArchiveError::Missing(META))?;
    let state_bytes = state.ok_or(ArchiveError::Missing(STATE))?;
    let sums = sums.ok_or(ArchiveError::Missing(SUMS))?;
    let sums = String::from_utf8_lossy(&sums);
    for (file, bytes) in [(META, &meta_bytes), (STATE, &state_bytes)] {
        let listed = sums.lines().find_map(|line| {
            let (sum, name) = line.split_once("  ")?;
            (name == file).then_some(sum)
        });
        if listed != Some(sha256(bytes).as_str()) {
            return Err(ArchiveError::Checksum(file));
        }
    }
    let meta: Meta =
        serde_json::from_slice(&meta_bytes).map_err(|e| ArchiveError::Meta(e.to_string()))?;
    if meta.version != FORMAT_VERSION {
        return Err(ArchiveError::Version {
            found: meta.version,
        });
    }
    let actual = state_bytes.len() as u64;
    if meta.size != actual {
        return Err(ArchiveError::Size {
            recorded: meta.size,
            actual,
        });
    }
    let state = StoreCopy::decode(&state_bytes).map_err(|e| ArchiveError::State(e.to_string()))?;
    Ok(Verified {
        meta,
        counts: state.counts(),
        state_bytes,
    })
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `Query::Snapshot` on the server chosen to answer it: archives the store as it is now.
/// The index is the last one that changed the state (what `X-Consul-Index` reports).
pub(crate) async fn save(shared: &Shared) -> Result<ReadResponse, RpcError> {
    let copy = shared.store.current().copy();
    let index = copy.max_index();
    let term = shared.raft.metrics().borrow().current_term;
    let now_ms = crate::command::now_ms();
    let archive = tokio::task::spawn_blocking(move || {
        let state = copy.encode()?;
        write(&state, index, term, now_ms).map_err(|e| RpcError::Internal(e.to_string()))
    })
    .await
    .map_err(|e| RpcError::Internal(format!("snapshot task: {e}")))??;
    tracing::info!(index, bytes = archive.len(), "saved snapshot archive");
    Ok(ReadResponse {
        meta: shared.query_meta(index),
        result: QueryResult::Snapshot(SnapshotArchive(archive)),
    })
}

/// `WriteRequest::SnapshotRestore` on the leader: verifies and decodes the archive in full,
/// then replaces the state on every server through one Raft entry. A refused archive
/// proposes nothing.
pub(crate) async fn restore(
    shared: &Shared,
    archive: SnapshotArchive,
) -> Result<WriteResponse, RpcError> {
    let verified = tokio::task::spawn_blocking(move || read(&archive.0))
        .await
        .map_err(|e| RpcError::Internal(format!("snapshot task: {e}")))?
        .map_err(|e| RpcError::Invalid(e.to_string()))?;
    let Verified {
        meta, state_bytes, ..
    } = verified;
    let state = String::from_utf8(state_bytes)
        .map_err(|e| RpcError::Invalid(ArchiveError::State(e.to_string()).to_string()))?;
    let (index, result) = shared.propose(Command::Restore { state }).await?;
    // The restored sessions replace the old ones: their TTLs start over, as after an
    // election (the timers of sessions that no longer exist fire into a no-op destroy).
    shared.timers.clear();
    crate::leader::arm_session_timers(shared);
    tracing::info!(snapshot = %meta.id, index, "restored snapshot");
    Ok(WriteResponse { index, result })
}
