//! The config entry table: entries keyed by (kind, name), with check-and-set writes.

use concord_api::rpc::QueryResult;

use super::{schema, Tables};
use crate::model::config_entry::ConfigEntry;

impl Tables {
    /// Creates or replaces an entry; with `cas`, only if its modify index equals `cas`
    /// (0: only if absent). Returns whether it was written.
    pub(super) fn config_entry_set(
        &mut self,
        index: u64,
        kind: &str,
        name: &str,
        body: &serde_json::Value,
        cas: Option<u64>,
    ) -> bool {
        let key = (kind.to_string(), name.to_string());
        let existing = self.config_entries.get(&key);
        if let Some(cas) = cas {
            let current = existing.map_or(0, |e| e.modify_index);
            if current != cas {
                return false;
            }
        }
        let create_index = existing.map_or(index, |e| e.create_index);
        self.config_entries.insert(
            key,
            ConfigEntry {
                kind: kind.to_string(),
                name: name.to_string(),
                body: body.clone(),
                create_index,
                modify_index: index,
            },
        );
        self.bump(schema::CONFIG_ENTRIES, index);
        true
    }

    /// Deletes an entry; with `cas`, only if its modify index equals `cas`. Deleting an
    /// absent entry succeeds (and changes nothing), as in Consul.
    pub(super) fn config_entry_delete(
        &mut self,
        index: u64,
        kind: &str,
        name: &str,
        cas: Option<u64>,
    ) -> bool {
        let key = (kind.to_string(), name.to_string());
        let current = self.config_entries.get(&key).map(|e| e.modify_index);
        if let Some(cas) = cas {
            if current != Some(cas) {
                return false;
            }
        }
        if current.is_some() {
            self.config_entries.remove(&key);
            self.bump(schema::CONFIG_ENTRIES, index);
        }
        true
    }

    pub(super) fn config_entry_get_query(&self, kind: &str, name: &str) -> (u64, QueryResult) {
        let found = self
            .config_entries
            .get(&(kind.to_string(), name.to_string()))
            .map(ConfigEntry::to_api);
        (
            self.max_index(&[schema::CONFIG_ENTRIES]),
            QueryResult::ConfigEntries(found.into_iter().collect()),
        )
    }

    pub(super) fn config_entry_list_query(&self, kind: Option<&str>) -> (u64, QueryResult) {
        let list = self
            .config_entries
            .values()
            .filter(|e| kind.is_none_or(|k| e.kind == k))
            .map(ConfigEntry::to_api)
            .collect();
        (
            self.max_index(&[schema::CONFIG_ENTRIES]),
            QueryResult::ConfigEntries(list),
        )
    }
}
