//! The autopilot configuration table (Consul's `autopilot-config`): one record, written by
//! `AutopilotSetConfig`, read by the operator API and the leader's autopilot loop.

use concord_api::operator::AutopilotConfig as ApiConfig;

use super::schema::AUTOPILOT_CONFIG;
use super::Tables;
use crate::model::autopilot::AutopilotConfig;

impl Tables {
    /// Stores `config` at `index` unless `cas` names another modify index (the modify
    /// index of settings never stored is 0). Returns whether it applied.
    pub(crate) fn autopilot_set_config(
        &mut self,
        index: u64,
        config: &AutopilotConfig,
        cas: Option<u64>,
    ) -> bool {
        let current = self.autopilot_config.as_ref();
        if let Some(cas) = cas {
            if cas != current.map_or(0, |c| c.modify_index) {
                return false;
            }
        }
        let create_index = current.map_or(index, |c| c.create_index);
        self.autopilot_config = Some(AutopilotConfig {
            create_index,
            modify_index: index,
            ..config.clone()
        });
        self.bump(AUTOPILOT_CONFIG, index);
        true
    }

    /// The settings in force: the stored ones, or Consul's defaults (indexes 0) until an
    /// operator sets them.
    pub(crate) fn autopilot_config(&self) -> ApiConfig {
        self.autopilot_config
            .as_ref()
            .map_or_else(ApiConfig::default, AutopilotConfig::to_api)
    }
}
