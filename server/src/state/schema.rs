//! Table names of the state store, as named constants.
//!
//! Each table keeps a last-modified Raft index (Consul's `index` table): blocking queries and
//! `X-Consul-Index` report the max over the tables a query reads. The names are also the keys
//! of the index map in snapshots, so they are part of the snapshot format: never rename one.

/// Catalog nodes, keyed by node name.
pub(crate) const NODES: &str = "nodes";
/// Service instances, keyed by (node name, service ID).
pub(crate) const SERVICES: &str = "services";
/// Health checks, keyed by (node name, check ID).
pub(crate) const CHECKS: &str = "checks";
/// KV entries, keyed by key.
pub(crate) const KVS: &str = "kvs";
/// KV tombstones (Consul's graveyard): key to the index that deleted it, so a delete bumps the
/// index of every prefix query that covered the key.
pub(crate) const TOMBSTONES: &str = "tombstones";
/// Sessions, keyed by session ID.
pub(crate) const SESSIONS: &str = "sessions";

/// Config entries, keyed by (kind, name).
pub(crate) const CONFIG_ENTRIES: &str = "config_entries";
/// The Connect CA configuration (one record).
pub(crate) const CA_CONFIG: &str = "ca_config";
/// Connect CA roots, in creation order; exactly one is active.
pub(crate) const CA_ROOTS: &str = "ca_roots";

/// Autopilot's settings (one record).
pub(crate) const AUTOPILOT_CONFIG: &str = "autopilot_config";

/// ACL tokens, keyed by AccessorID.
pub(crate) const ACL_TOKENS: &str = "acl_tokens";
/// ACL policies, keyed by ID.
pub(crate) const ACL_POLICIES: &str = "acl_policies";
/// ACL roles, keyed by ID.
pub(crate) const ACL_ROLES: &str = "acl_roles";

/// Every table, in a fixed order.
pub(crate) const TABLES: [&str; 13] = [
    NODES,
    SERVICES,
    CHECKS,
    KVS,
    TOMBSTONES,
    SESSIONS,
    CONFIG_ENTRIES,
    CA_CONFIG,
    CA_ROOTS,
    ACL_TOKENS,
    ACL_POLICIES,
    ACL_ROLES,
    AUTOPILOT_CONFIG,
];

/// The constant for a table name read back from a snapshot (`None` for unknown names).
pub(crate) fn table(name: &str) -> Option<&'static str> {
    TABLES.iter().copied().find(|t| *t == name)
}
