//! The config entry table: entries keyed by (kind, name), with check-and-set writes.

use concord_api::config_entry::{
    self as api, effective_protocol, is_l7_protocol, PROXY_DEFAULTS, PROXY_DEFAULTS_GLOBAL,
    SERVICE_DEFAULTS, SERVICE_INTENTIONS,
};
use concord_api::rpc::QueryResult;

use super::{schema, Invalid, StateError, Tables};
use crate::model::config_entry::ConfigEntry;

/// A proposed change to one entry: its new JSON, or `None` for a delete.
type Proposed<'a> = (&'a str, &'a str, Option<&'a serde_json::Value>);

impl Tables {
    /// Creates or replaces an entry; with `cas`, only if its modify index equals `cas`
    /// (0: only if absent). Returns whether it was written. Refused if it would leave L7
    /// intentions on a service that does not speak HTTP ([`Self::check_l7_intentions`]).
    pub(super) fn config_entry_set(
        &mut self,
        index: u64,
        kind: &str,
        name: &str,
        body: &serde_json::Value,
        cas: Option<u64>,
    ) -> Result<bool, StateError> {
        let key = (kind.to_string(), name.to_string());
        let existing = self.config_entries.get(&key);
        if let Some(cas) = cas {
            let current = existing.map_or(0, |e| e.modify_index);
            if current != cas {
                return Ok(false);
            }
        }
        self.check_l7_intentions((kind, name, Some(body)))?;
        let existing = self.config_entries.get(&key);
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
        Ok(true)
    }

    /// Deletes an entry; with `cas`, only if its modify index equals `cas`. Deleting an
    /// absent entry succeeds (and changes nothing), as in Consul. Refused if the protocol
    /// that remains would not carry the service's L7 intentions.
    pub(super) fn config_entry_delete(
        &mut self,
        index: u64,
        kind: &str,
        name: &str,
        cas: Option<u64>,
    ) -> Result<bool, StateError> {
        let key = (kind.to_string(), name.to_string());
        let current = self.config_entries.get(&key).map(|e| e.modify_index);
        if let Some(cas) = cas {
            if current != Some(cas) {
                return Ok(false);
            }
        }
        if current.is_some() {
            self.check_l7_intentions((kind, name, None))?;
            self.config_entries.remove(&key);
            self.bump(schema::CONFIG_ENTRIES, index);
        }
        Ok(true)
    }

    /// Consul's rule that intentions with L7 `Permissions` need an HTTP-aware destination
    /// (http, http2, grpc), checked against the state as it would be after `proposed`: a
    /// service-intentions write checks its own destination; a service-defaults change or
    /// delete checks the intentions of that service; a proxy-defaults change checks every
    /// service with L7 intentions. Done here, when the entry applies, so it holds whoever
    /// wrote the entry and whatever was written in between (the agent checks first only to
    /// answer early).
    fn check_l7_intentions(&self, proposed: Proposed<'_>) -> Result<(), StateError> {
        let (kind, name, _) = proposed;
        let destinations: Vec<String> = match kind {
            SERVICE_INTENTIONS | SERVICE_DEFAULTS => vec![name.to_string()],
            PROXY_DEFAULTS => self
                .config_entries
                .keys()
                .filter(|(k, _)| k == SERVICE_INTENTIONS)
                .map(|(_, n)| n.clone())
                .collect(),
            _ => return Ok(()),
        };
        for service in destinations {
            let has_permissions = match self.entry_after(SERVICE_INTENTIONS, &service, proposed) {
                Some(api::ConfigEntry::ServiceIntentions(e)) => {
                    e.sources.iter().any(|s| !s.permissions.is_empty())
                }
                _ => false,
            };
            if !has_permissions || service == "*" {
                continue;
            }
            let sd = match self.entry_after(SERVICE_DEFAULTS, &service, proposed) {
                Some(api::ConfigEntry::ServiceDefaults(e)) => Some(e),
                _ => None,
            };
            let pd = match self.entry_after(PROXY_DEFAULTS, PROXY_DEFAULTS_GLOBAL, proposed) {
                Some(api::ConfigEntry::ProxyDefaults(e)) => Some(e),
                _ => None,
            };
            let protocol = effective_protocol(sd.as_ref(), pd.as_ref());
            if !is_l7_protocol(&protocol) {
                return Err(Invalid::L7IntentionsNeedHttp { service, protocol }.into());
            }
        }
        Ok(())
    }

    /// The entry `kind`/`name` decoded as it would be after `proposed`. Stored entries were
    /// validated on write; one that no longer decodes counts as absent.
    fn entry_after(
        &self,
        kind: &str,
        name: &str,
        proposed: Proposed<'_>,
    ) -> Option<api::ConfigEntry> {
        let (p_kind, p_name, p_body) = proposed;
        let body = if (p_kind, p_name) == (kind, name) {
            p_body?.clone()
        } else {
            self.config_entries
                .get(&(kind.to_string(), name.to_string()))?
                .body
                .clone()
        };
        api::ConfigEntry::from_json(body).ok()
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
