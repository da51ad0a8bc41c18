//! Config entry records (service-defaults, proxy-defaults, service-intentions, ...).
//!
//! The store does not interpret entries: the agent validates them (kind, name, Consul's
//! rules) before they are written, and the store keeps their JSON as given, keyed by
//! (kind, name). Consul's config-entry JSON is itself a compatibility-stable format, so it
//! is a sound on-disk encoding; the record around it is the store's own.

use concord_api::config_entry as api;
use serde::{Deserialize, Serialize};

/// A config entry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct ConfigEntry {
    /// Kind (`service-defaults`, ...).
    pub(crate) kind: String,
    /// Name.
    pub(crate) name: String,
    /// The entry's JSON, without indexes.
    pub(crate) body: serde_json::Value,
    /// Index that created it.
    pub(crate) create_index: u64,
    /// Index of its last change.
    pub(crate) modify_index: u64,
}

impl ConfigEntry {
    /// The wire form.
    pub(crate) fn to_api(&self) -> api::StoredConfigEntry {
        api::StoredConfigEntry {
            kind: self.kind.clone(),
            name: self.name.clone(),
            body: self.body.clone(),
            create_index: self.create_index,
            modify_index: self.modify_index,
        }
    }
}
