//! Golden files: encodings that other versions read back (Raft log entries, snapshots), kept
//! under `server/tests/fixtures/` and compared byte for byte, so an accidental change to the
//! on-disk format fails a test instead of a rolling upgrade.
//!
//! A deliberate, compatible change (a new `Command` variant, a new defaulted field) is
//! recorded by re-running the tests with `CONCORD_BLESS=1`, then reviewing the diff.

use std::path::PathBuf;

/// Compares `actual` with the golden file `name` (or, blessing, writes it).
pub(crate) fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    if std::env::var_os("CONCORD_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("{actual}\n")).unwrap();
        return;
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; a new fixture is written with CONCORD_BLESS=1",
            path.display()
        )
    });
    assert_eq!(
        actual,
        golden.trim_end(),
        "{name}: the stored encoding changed; logs and snapshots already on disk would no \
         longer read back the same (see golden.rs)"
    );
}

/// The golden file `name`, for decoding back.
pub(crate) fn read(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
