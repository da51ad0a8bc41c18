//! Autopilot's settings as the state store keeps them (Consul's `autopilot-config` table):
//! one record, replicated through Raft, so every server reads the same and a new leader
//! runs with what the operator set.

use std::time::Duration;

use concord_api::operator as api;
use serde::{Deserialize, Serialize};

/// `/v1/operator/autopilot/configuration`, durations in nanoseconds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct AutopilotConfig {
    /// Remove failed servers once enough healthy ones remain.
    pub(crate) cleanup_dead_servers: bool,
    /// A server not heard from for longer is unhealthy, nanoseconds.
    pub(crate) last_contact_threshold_ns: u64,
    /// A server this many entries behind the leader is unhealthy.
    pub(crate) max_trailing_logs: u64,
    /// Dead-server cleanup never leaves fewer voters than this.
    pub(crate) min_quorum: u64,
    /// How long a new server must be healthy before promotion, nanoseconds.
    pub(crate) server_stabilization_time_ns: u64,
    /// Enterprise: redundancy zones (kept, unused).
    pub(crate) redundancy_zone_tag: String,
    /// Enterprise: upgrade migrations (kept, unused).
    pub(crate) disable_upgrade_migration: bool,
    /// Enterprise: upgrade version tag (kept, unused).
    pub(crate) upgrade_version_tag: String,
    /// Index that first stored it.
    pub(crate) create_index: u64,
    /// Index of its last change.
    pub(crate) modify_index: u64,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl From<&api::AutopilotConfig> for AutopilotConfig {
    fn from(c: &api::AutopilotConfig) -> Self {
        AutopilotConfig {
            cleanup_dead_servers: c.cleanup_dead_servers,
            last_contact_threshold_ns: ns(c.last_contact_threshold.get()),
            max_trailing_logs: c.max_trailing_logs,
            min_quorum: c.min_quorum,
            server_stabilization_time_ns: ns(c.server_stabilization_time.get()),
            redundancy_zone_tag: c.redundancy_zone_tag.clone(),
            disable_upgrade_migration: c.disable_upgrade_migration,
            upgrade_version_tag: c.upgrade_version_tag.clone(),
            create_index: c.create_index,
            modify_index: c.modify_index,
        }
    }
}

impl AutopilotConfig {
    /// The API's form.
    pub(crate) fn to_api(&self) -> api::AutopilotConfig {
        api::AutopilotConfig {
            cleanup_dead_servers: self.cleanup_dead_servers,
            last_contact_threshold: Duration::from_nanos(self.last_contact_threshold_ns).into(),
            max_trailing_logs: self.max_trailing_logs,
            min_quorum: self.min_quorum,
            server_stabilization_time: Duration::from_nanos(self.server_stabilization_time_ns)
                .into(),
            redundancy_zone_tag: self.redundancy_zone_tag.clone(),
            disable_upgrade_migration: self.disable_upgrade_migration,
            upgrade_version_tag: self.upgrade_version_tag.clone(),
            create_index: self.create_index,
            modify_index: self.modify_index,
        }
    }
}
