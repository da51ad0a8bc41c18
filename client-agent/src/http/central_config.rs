//! `?merge-central-config` on `/v1/health/service/:name` and `/v1/catalog/service/:name`:
//! proxy and gateway instances come back with `proxy-defaults` and `service-defaults`
//! merged into their `Proxy` block ([`merge_central_config`]).

use concord_api::catalog::{CheckServiceNode, ServiceNode};
use concord_api::config_entry::{
    merge_central_config, ConfigEntry, ProxyDefaults, ServiceDefaults,
};
use concord_api::rpc::{Query, QueryOptions};
use std::collections::BTreeMap;

use super::{ApiError, AppState};

/// The entries a merge reads: every `service-defaults` and the `proxy-defaults`.
pub(super) struct Central {
    defaults: BTreeMap<String, ServiceDefaults>,
    proxy: Option<ProxyDefaults>,
}

impl Central {
    /// Reads the entries (one non-blocking read).
    pub(super) async fn load(s: &AppState) -> Result<Central, ApiError> {
        let query = Query::ConfigEntryList { kind: None };
        let (_, stored) = s.rpc.config_entries(query, QueryOptions::default()).await?;
        let mut central = Central {
            defaults: BTreeMap::new(),
            proxy: None,
        };
        for e in stored.iter().filter_map(|e| e.decode().ok()) {
            match e {
                ConfigEntry::ServiceDefaults(d) => {
                    central.defaults.insert(d.name.clone(), d);
                }
                ConfigEntry::ProxyDefaults(d) => central.proxy = Some(d),
                _ => {}
            }
        }
        Ok(central)
    }

    /// The service whose defaults apply: a proxy's destination, else the service itself.
    fn defaults_for(
        &self,
        service: &str,
        proxy: Option<&serde_json::Value>,
    ) -> Option<&ServiceDefaults> {
        let destination = proxy
            .and_then(|p| p.get("DestinationServiceName"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or(service);
        self.defaults.get(destination)
    }

    /// Merges into health rows.
    pub(super) fn merge_health(&self, rows: &mut [CheckServiceNode]) {
        for row in rows {
            let svc = &mut row.service;
            let sd = self.defaults_for(&svc.service, svc.proxy.as_ref());
            merge_central_config(&svc.kind, &mut svc.proxy, sd, self.proxy.as_ref());
        }
    }

    /// Merges into catalog rows.
    pub(super) fn merge_catalog(&self, rows: &mut [ServiceNode]) {
        for row in rows {
            let sd = self.defaults_for(&row.service_name, row.service_proxy.as_ref());
            merge_central_config(
                &row.service_kind,
                &mut row.service_proxy,
                sd,
                self.proxy.as_ref(),
            );
        }
    }
}
