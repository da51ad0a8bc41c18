//! The snapshot format: one golden file (`tests/fixtures/snapshot.json`) holding every table.
//! Snapshots are read back by later versions, so the encoding must not drift.

use super::*;
use crate::command::tests::samples;
use crate::golden;

#[test]
fn snapshot_matches_its_golden_file_and_restores() {
    let store = StateStore::new();
    let mut index = 0;
    // A restore replaces the store (the FSM applies it), so it has no place in a dump.
    let samples = samples()
        .into_iter()
        .filter(|c| !matches!(c, crate::command::Command::Restore { .. }));
    for cmd in samples {
        index += 1;
        apply_ok(&store, index, cmd);
    }
    // The samples end by destroying their session; keep one so the table is not empty.
    create_session(&store, index + 1, session("s-kept", "node-1", &[]));
    let dumped = dump(&store);
    for table in [
        "nodes",
        "services",
        "checks",
        "kvs",
        "tombstones",
        "lock_delays",
        "sessions",
        "indexes",
        "service_indexes",
        "config_entries",
        "ca_config",
        "ca_roots",
        "acl_tokens",
        "acl_policies",
        "acl_roles",
        "autopilot_config",
    ] {
        let rows = &dumped[table];
        assert!(
            rows.as_array().is_some_and(|a| !a.is_empty())
                || rows.as_object().is_some_and(|o| !o.is_empty()),
            "the golden snapshot covers {table}"
        );
    }
    golden::check(
        "snapshot.json",
        &serde_json::to_string_pretty(&dumped).unwrap(),
    );
    let restored = StateStore::restore(golden::read("snapshot.json").as_bytes()).unwrap();
    assert_eq!(
        dump(&restored),
        dumped,
        "the golden snapshot restores the same tables"
    );
}

/// A snapshot written before autopilot's settings were replicated (no `autopilot_config`)
/// still restores, with Consul's defaults in force.
#[test]
fn a_snapshot_from_before_autopilot_settings_restores_with_the_defaults() {
    let old = golden::read("snapshot_before_autopilot.json");
    assert!(!old.contains("autopilot_config"));
    let restored = StateStore::restore(old.as_bytes()).unwrap();
    let config = restored.view(|t| t.autopilot_config());
    assert_eq!(config, concord_api::operator::AutopilotConfig::default());
    assert!(dump(&restored)["kvs"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
}
