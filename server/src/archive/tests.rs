//! The archive format: a round trip, and every way a damaged file is refused.

use std::io::Read;

use super::*;
use crate::command::tests::samples;
use crate::state::{schema, StateStore};

/// A store holding the command samples (all but the restore, which replaces a store).
fn sample_store() -> StateStore {
    let store = StateStore::new();
    for (index, cmd) in samples()
        .into_iter()
        .filter(|c| !matches!(c, Command::Restore { .. }))
        .enumerate()
    {
        store.apply(index as u64 + 1, &cmd).unwrap();
    }
    store
}

/// The encoded state of [`sample_store`].
fn sample_state() -> Vec<u8> {
    sample_store().copy().encode().unwrap()
}

/// The files of an archive, in order, as (name, bytes).
fn unpack(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    tar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            (name, bytes)
        })
        .collect()
}

/// An archive of exactly these files (no checksums recomputed).
fn pack(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_cksum();
        tar.append_data(&mut header, name, &bytes[..]).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// `files` with `name`'s bytes replaced and `SHA256SUMS` rewritten to match, so only the
/// check after the checksums sees the change.
fn with_file_resummed(files: &[(String, Vec<u8>)], name: &str, bytes: Vec<u8>) -> Vec<u8> {
    let mut files = files.to_vec();
    for f in &mut files {
        if f.0 == name {
            f.1.clone_from(&bytes);
        }
    }
    let sum_of = |n: &str| sha256(&files.iter().find(|f| f.0 == n).unwrap().1);
    let sums = format!("{}  {META}\n{}  {STATE}\n", sum_of(META), sum_of(STATE));
    for f in &mut files {
        if f.0 == SUMS {
            f.1 = sums.clone().into_bytes();
        }
    }
    pack(&files)
}

#[test]
fn round_trip_keeps_meta_and_state() {
    let state = sample_state();
    let archive = write(&state, 42, 3, 1_700_000_000_000).unwrap();
    let names: Vec<String> = unpack(&archive).into_iter().map(|f| f.0).collect();
    assert_eq!(names, [META, STATE, SUMS], "Consul's three files, in order");
    let verified = read(&archive).unwrap();
    assert_eq!(
        verified.meta,
        Meta {
            id: "3-42-1700000000000".into(),
            size: state.len() as u64,
            index: 42,
            term: 3,
            version: FORMAT_VERSION,
        }
    );
    assert_eq!(verified.state_bytes, state);
    let count = |t: &str| verified.counts.iter().find(|c| c.0 == t).unwrap().1;
    assert_eq!(count(schema::NODES), 1);
    assert_eq!(count(schema::SERVICES), 1);
    assert_eq!(
        count(schema::KVS),
        3,
        "config/b, service/web/leader, batch/a"
    );
}

#[test]
fn sums_file_has_sha256sum_lines() {
    let archive = write(b"{}", 1, 1, 0).unwrap();
    let files = unpack(&archive);
    let sums = String::from_utf8(files[2].1.clone()).unwrap();
    let lines: Vec<&str> = sums.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].ends_with("  meta.json") && lines[0].len() == 64 + 11);
    assert_eq!(
        lines[1],
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a  state.bin"
    );
}

#[test]
fn a_changed_state_is_refused_by_its_checksum() {
    let archive = write(&sample_state(), 5, 1, 0).unwrap();
    let mut files = unpack(&archive);
    files[1].1[10] ^= 0x01;
    let err = read(&pack(&files)).unwrap_err();
    assert!(matches!(err, ArchiveError::Checksum(STATE)), "{err}");
    assert_eq!(
        err.to_string(),
        "snapshot archive checksum mismatch for state.bin"
    );
}

#[test]
fn a_changed_meta_is_refused_by_its_checksum() {
    let archive = write(&sample_state(), 5, 1, 0).unwrap();
    let mut files = unpack(&archive);
    files[0].1 = b"{\"Version\":1}".to_vec();
    let err = read(&pack(&files)).unwrap_err();
    assert!(matches!(err, ArchiveError::Checksum(META)), "{err}");
}

#[test]
fn truncated_gzip_is_refused() {
    let archive = write(&sample_state(), 5, 1, 0).unwrap();
    for cut in [
        archive.len() - 1,
        archive.len() - 9,
        archive.len() / 2,
        10,
        0,
    ] {
        let err = read(&archive[..cut]).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Framing(_) | ArchiveError::Missing(_)),
            "cut at {cut}: {err}"
        );
    }
    let err = read(&archive[..archive.len() / 2]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("snapshot archive is corrupt or truncated: "),
        "{err}"
    );
}

#[test]
fn not_gzip_is_refused() {
    let err = read(b"this is not a snapshot").unwrap_err();
    assert!(matches!(err, ArchiveError::Framing(_)), "{err}");
}

#[test]
fn wrong_format_version_is_refused() {
    let archive = write(&sample_state(), 5, 1, 0).unwrap();
    let files = unpack(&archive);
    let mut meta: Meta = serde_json::from_slice(&files[0].1).unwrap();
    meta.version = 2;
    let forged = with_file_resummed(&files, META, serde_json::to_vec(&meta).unwrap());
    let err = read(&forged).unwrap_err();
    assert!(matches!(err, ArchiveError::Version { found: 2 }), "{err}");
    assert_eq!(
        err.to_string(),
        "unsupported snapshot format version 2 (this build reads version 1)"
    );
}

#[test]
fn a_size_that_disagrees_with_meta_is_refused() {
    let archive = write(b"{}", 5, 1, 0).unwrap();
    let files = unpack(&archive);
    let forged = with_file_resummed(&files, STATE, b"{ }".to_vec());
    let err = read(&forged).unwrap_err();
    assert!(
        matches!(
            err,
            ArchiveError::Size {
                recorded: 2,
                actual: 3
            }
        ),
        "{err}"
    );
}

#[test]
fn state_that_does_not_decode_is_refused() {
    let state = b"not json".to_vec();
    let archive = write(&state, 5, 1, 0).unwrap();
    let err = read(&archive).unwrap_err();
    assert!(matches!(err, ArchiveError::State(_)), "{err}");
}

#[test]
fn missing_and_unexpected_files_are_refused() {
    let archive = write(&sample_state(), 5, 1, 0).unwrap();
    let files = unpack(&archive);
    let err = read(&pack(&files[..2])).unwrap_err();
    assert!(matches!(err, ArchiveError::Missing(SUMS)), "{err}");
    let mut extra = files.clone();
    extra.push(("evil.sh".into(), b"rm -rf /".to_vec()));
    let err = read(&pack(&extra)).unwrap_err();
    assert!(
        matches!(err, ArchiveError::Unexpected(ref n) if n == "evil.sh"),
        "{err}"
    );
}

#[test]
fn an_oversized_file_is_refused_without_buffering_it_all() {
    // A 1 MiB "SHA256SUMS" of zeros compresses to almost nothing: the cap, not the
    // compressed size, is what bounds the read.
    let files = vec![(SUMS.to_string(), vec![b'0'; 1024 * 1024])];
    let err = read(&pack(&files)).unwrap_err();
    assert!(
        matches!(err, ArchiveError::TooLarge { file: SUMS, .. }),
        "{err}"
    );
}

#[test]
fn restored_at_moves_every_index_to_the_restore_entry() {
    let copy = StoreCopy::decode(&sample_state()).unwrap();
    let restored = StateStore::restored_at(copy, 100);
    for table in schema::TABLES {
        assert_eq!(restored.view(|t| t.table_index(table)), 100, "{table}");
    }
    let (index, _) = restored
        .query(&concord_api::rpc::Query::HealthService {
            service: "web".into(),
            tags: vec![],
            passing: false,
            node_meta: vec![],
        })
        .unwrap();
    assert_eq!(index, 100, "per-service indexes move too");
    assert_eq!(restored.subscribe().borrow().index, 100);
}

#[test]
fn gzip_stream_is_standard() {
    // `tar -xzf` must open what `save` writes: check the gzip magic and that a plain
    // decoder reads to the end with a valid trailer.
    let archive = write(b"{}", 1, 1, 0).unwrap();
    assert_eq!(&archive[..2], &[0x1f, 0x8b]);
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&archive[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out.len() % 512, 0, "a tar stream is whole 512-byte blocks");
}
