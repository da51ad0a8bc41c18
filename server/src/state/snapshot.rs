//! The serialized form of the tables: the data of a Raft snapshot.
//!
//! Records are stored as lists (JSON maps need string keys, and lists keep the format
//! independent of the in-memory key types). Like [`Command`](crate::command::Command), the
//! format is read by later versions: add fields with `#[serde(default)]`, never remove any.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{schema, Tables};
use crate::model::acl::{Policy, Role, Token};
use crate::model::autopilot::AutopilotConfig;
use crate::model::ca::{CaConfig, CaRoot};
use crate::model::catalog::{Check, Node, Service};
use crate::model::config_entry::ConfigEntry;
use crate::model::id::NodeName;
use crate::model::kv::KvEntry;
use crate::model::session::Session;

/// Every table, flattened.
#[derive(Serialize, Deserialize, Debug, Default)]
pub(super) struct Dump {
    nodes: Vec<Node>,
    /// (node name, service).
    services: Vec<(NodeName, Service)>,
    checks: Vec<Check>,
    kvs: Vec<KvEntry>,
    tombstones: Vec<(String, u64)>,
    /// Highest tombstone index the GC reaped (the prefix-index floor); absent while 0, so
    /// snapshots of stores that never reaped read as before.
    #[serde(default, skip_serializing_if = "is_zero")]
    tombstones_reaped: u64,
    lock_delays: Vec<(String, u64)>,
    sessions: Vec<Session>,
    /// Table name ([`schema`]) to last-modified index.
    indexes: BTreeMap<String, u64>,
    /// Service name to its last-modified index.
    #[serde(default)]
    service_indexes: BTreeMap<String, u64>,
    /// Config entries.
    #[serde(default)]
    config_entries: Vec<ConfigEntry>,
    /// Connect CA configuration.
    #[serde(default)]
    ca_config: Option<CaConfig>,
    /// Connect CA roots.
    #[serde(default)]
    ca_roots: Vec<CaRoot>,
    /// ACL tokens.
    #[serde(default)]
    acl_tokens: Vec<Token>,
    /// ACL policies.
    #[serde(default)]
    acl_policies: Vec<Policy>,
    /// ACL roles.
    #[serde(default)]
    acl_roles: Vec<Role>,
    /// Raft index of the ACL bootstrap (0: not bootstrapped).
    #[serde(default)]
    acl_bootstrap_index: u64,
    /// Autopilot's settings (absent in snapshots from before they were replicated).
    #[serde(default)]
    autopilot_config: Option<AutopilotConfig>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Dump {
    /// Records per table, in [`schema::TABLES`] order (tombstones included: they are
    /// records too, and count toward the size).
    pub(super) fn counts(&self) -> Vec<(&'static str, usize)> {
        vec![
            (schema::NODES, self.nodes.len()),
            (schema::SERVICES, self.services.len()),
            (schema::CHECKS, self.checks.len()),
            (schema::KVS, self.kvs.len()),
            (schema::TOMBSTONES, self.tombstones.len()),
            (schema::SESSIONS, self.sessions.len()),
            (schema::ACL_TOKENS, self.acl_tokens.len()),
            (schema::ACL_POLICIES, self.acl_policies.len()),
            (schema::ACL_ROLES, self.acl_roles.len()),
        ]
    }

    /// The highest table index (at least 1: clients never see index 0).
    pub(super) fn max_index(&self) -> u64 {
        self.indexes.values().copied().max().unwrap_or(0).max(1)
    }
}

impl Tables {
    pub(super) fn dump(&self) -> Dump {
        Dump {
            nodes: self.nodes.values().cloned().collect(),
            services: self
                .services
                .iter()
                .map(|((node, _), svc)| (node.clone(), svc.clone()))
                .collect(),
            checks: self.checks.values().cloned().collect(),
            kvs: self.kvs.values().cloned().collect(),
            tombstones: self
                .tombstones
                .iter()
                .map(|(k, i)| (k.clone(), *i))
                .collect(),
            tombstones_reaped: self.tombstones_reaped,
            lock_delays: self
                .lock_delays
                .iter()
                .map(|(k, t)| (k.clone(), *t))
                .collect(),
            sessions: self.sessions.values().cloned().collect(),
            indexes: self
                .indexes
                .iter()
                .map(|(t, i)| (t.to_string(), *i))
                .collect(),
            service_indexes: self.service_indexes.clone(),
            config_entries: self.config_entries.values().cloned().collect(),
            ca_config: self.ca_config.clone(),
            ca_roots: self.ca_roots.clone(),
            acl_tokens: self.acl_tokens.values().cloned().collect(),
            acl_policies: self.acl_policies.values().cloned().collect(),
            acl_roles: self.acl_roles.values().cloned().collect(),
            acl_bootstrap_index: self.acl_bootstrap_index,
            autopilot_config: self.autopilot_config.clone(),
        }
    }

    pub(super) fn restore(dump: Dump) -> Tables {
        Tables {
            nodes: dump
                .nodes
                .into_iter()
                .map(|n| (n.node.clone(), n))
                .collect(),
            services: dump
                .services
                .into_iter()
                .map(|(node, svc)| ((node, svc.id.clone()), svc))
                .collect(),
            checks: dump
                .checks
                .into_iter()
                .map(|c| ((c.node.clone(), c.check_id.clone()), c))
                .collect(),
            kvs: dump.kvs.into_iter().map(|e| (e.key.clone(), e)).collect(),
            tombstones: dump.tombstones.into_iter().collect(),
            tombstones_reaped: dump.tombstones_reaped,
            lock_delays: dump.lock_delays.into_iter().collect(),
            sessions: dump
                .sessions
                .into_iter()
                .map(|s| (s.id.clone(), s))
                .collect(),
            // Unknown table names come from a newer version's snapshot; their tables are
            // unknown here too, so their indexes have nothing to describe.
            indexes: dump
                .indexes
                .into_iter()
                .filter_map(|(name, i)| schema::table(&name).map(|t| (t, i)))
                .collect(),
            service_indexes: dump.service_indexes,
            config_entries: dump
                .config_entries
                .into_iter()
                .map(|e| ((e.kind.clone(), e.name.clone()), e))
                .collect(),
            ca_config: dump.ca_config,
            ca_roots: dump.ca_roots,
            acl_tokens: dump
                .acl_tokens
                .into_iter()
                .map(|t| (t.accessor_id.clone(), t))
                .collect(),
            acl_policies: dump
                .acl_policies
                .into_iter()
                .map(|p| (p.id.clone(), p))
                .collect(),
            acl_roles: dump
                .acl_roles
                .into_iter()
                .map(|r| (r.id.clone(), r))
                .collect(),
            acl_bootstrap_index: dump.acl_bootstrap_index,
            autopilot_config: dump.autopilot_config,
            journal: None,
            changed: false,
        }
    }
}
