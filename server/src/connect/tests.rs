//! Which roots the leader prunes, as a table over an injected clock.

use concord_api::connect::CaProviderConfig;

use super::roots_to_prune;
use crate::model::ca::{CaConfig, CaRoot};

const HOUR_MS: u64 = 3_600_000;
/// 2030-01-01T00:00:00Z.
const NOW: u64 = 1_893_456_000_000;

fn root(id: &str, active: bool, rotated_out_at_ms: Option<u64>, not_after: &str) -> CaRoot {
    CaRoot {
        id: id.into(),
        name: "Consul CA Root Cert".into(),
        serial_number: 1,
        signing_key_id: "01".into(),
        not_before: "2020-01-01T00:00:00Z".into(),
        not_after: not_after.into(),
        root_cert: String::new(),
        intermediate_certs: vec![],
        private_key: String::new(),
        private_key_type: "ec".into(),
        private_key_bits: 256,
        active,
        create_index: 1,
        modify_index: 1,
        rotated_out_at_ms,
    }
}

#[test]
fn inactive_roots_go_once_every_leaf_they_signed_has_expired() {
    // LeafCertTTL 72h: a root rotated out is kept for 144h.
    let config = CaConfig::new("c".into(), &CaProviderConfig::default(), false);
    let later = "2040-01-01T00:00:00Z";
    let roots = [
        root("active", true, None, "2029-01-01T00:00:00Z"),
        root("just-in-time", false, Some(NOW - 144 * HOUR_MS), later),
        root("one-ms-late", false, Some(NOW - 144 * HOUR_MS - 1), later),
        root("recent", false, Some(NOW - HOUR_MS), later),
        root("legacy-valid", false, None, later),
        root("legacy-expired", false, None, "2029-12-31T23:59:59Z"),
        root(
            "recent-but-expired",
            false,
            Some(NOW - HOUR_MS),
            "2029-12-31T23:59:59Z",
        ),
        root("unparsable", false, None, "never"),
    ];
    assert_eq!(
        roots_to_prune(&config, &roots, NOW),
        vec!["one-ms-late", "legacy-expired", "recent-but-expired"],
        "the active root stays even expired; a root within 2 × LeafCertTTL or without a \
         rotation time and not expired stays"
    );
}
