//! The server's data dir: its layout and the format version it records.
//!
//! ```text
//! <data_dir>/raft/VERSION   the format version, "1\n" (FORMAT_VERSION)
//! <data_dir>/raft/log/      the Raft log, vote and commit point (log_store)
//! <data_dir>/raft/sm/       sled: the state machine's persisted snapshot (fsm)
//! ```
//!
//! `VERSION` is written (atomically, durably) when the directory is first created, before
//! anything else. A directory recording another version, or one without `VERSION` (the
//! unversioned layout of earlier development builds, which kept the Raft log in sled at
//! `<data_dir>/raft`), is refused with an error naming what was found and what is expected:
//! it is never read as if it were this format. No migration exists because no data dir of
//! another format was ever released.

use std::io;
use std::path::{Path, PathBuf};

/// The format this build writes and reads. Bump it (and refuse or migrate the old one here)
/// whenever an on-disk encoding changes incompatibly.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// The version file's name.
const VERSION_FILE: &str = "VERSION";

/// Why a data dir cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DataDirError {
    /// Reading or creating it failed.
    #[error("data dir {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// It records a format version this build does not read.
    #[error(
        "data dir {path} has format version {found}, but this concord reads format version \
         {expected}; refusing to start (no migration exists: no released data dir has another \
         version). Use the concord that wrote it, or move the directory away"
    )]
    Version {
        path: PathBuf,
        found: String,
        expected: u32,
    },
    /// It holds data but no version file: the pre-versioning layout, or something else.
    #[error(
        "data dir {path} has no {VERSION_FILE} file but is not empty ({what}); this concord \
         reads format version {expected} only; refusing to start (no migration exists: no \
         released data dir has another format). Move the directory away or delete it"
    )]
    Unversioned {
        path: PathBuf,
        what: &'static str,
        expected: u32,
    },
}

/// Where the parts of a data dir live.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The Raft log directory.
    pub(crate) log: PathBuf,
    /// The sled database (state-machine snapshot).
    pub(crate) sled: PathBuf,
}

/// Checks (or, for a new data dir, creates) `<data_dir>/raft` and its version, and returns
/// the layout. Blocking (file I/O with fsyncs).
pub(crate) fn prepare(data_dir: &Path) -> Result<Layout, DataDirError> {
    let raft = data_dir.join("raft");
    let io_err = |source| DataDirError::Io {
        path: raft.clone(),
        source,
    };
    std::fs::create_dir_all(&raft).map_err(io_err)?;
    match std::fs::read_to_string(raft.join(VERSION_FILE)) {
        Ok(text) => {
            if text.trim() != FORMAT_VERSION.to_string() {
                return Err(DataDirError::Version {
                    path: raft,
                    found: format!("{:?}", text.trim()),
                    expected: FORMAT_VERSION,
                });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(what) = contents(&raft).map_err(io_err)? {
                return Err(DataDirError::Unversioned {
                    path: raft,
                    what,
                    expected: FORMAT_VERSION,
                });
            }
            crate::log_store::write_atomically(
                &raft,
                VERSION_FILE,
                format!("{FORMAT_VERSION}\n").as_bytes(),
            )
            .map_err(io_err)?;
        }
        Err(e) => return Err(io_err(e)),
    }
    Ok(Layout {
        log: raft.join("log"),
        sled: raft.join("sm"),
    })
}

/// What a version-less directory holds: `None` if nothing (a temporary version file left by
/// a crash during creation does not count).
fn contents(dir: &Path) -> io::Result<Option<&'static str>> {
    let mut found = None;
    for item in std::fs::read_dir(dir)? {
        let name = item?.file_name();
        match name.to_str() {
            Some("VERSION.tmp") => {}
            // sled's files: the Raft log and snapshot of development builds before version 1.
            Some("conf" | "db" | "blobs") => return Ok(Some("the unversioned sled layout")),
            _ => found = Some("unknown files"),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_dir_records_the_version_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let layout = prepare(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("raft/VERSION")).unwrap(),
            "1\n"
        );
        assert_eq!(layout.log, dir.path().join("raft/log"));
        prepare(dir.path()).unwrap();
    }

    #[test]
    fn another_version_is_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("raft")).unwrap();
        std::fs::write(dir.path().join("raft/VERSION"), "7\n").unwrap();
        let err = prepare(dir.path()).unwrap_err().to_string();
        assert!(err.contains("format version \"7\""), "{err}");
        assert!(err.contains("reads format version 1"), "{err}");
    }

    #[test]
    fn the_old_sled_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // What development builds left: a sled database at <data_dir>/raft.
        drop(sled::open(dir.path().join("raft")).unwrap());
        let err = prepare(dir.path()).unwrap_err().to_string();
        assert!(err.contains("unversioned sled layout"), "{err}");
        assert!(err.contains("format version 1"), "{err}");
        assert!(!dir.path().join("raft/VERSION").exists());
    }
}
