//! Connect CA tables: the CA configuration and the roots (with their private keys). Written
//! only by the leader's `CaInit` (first leadership) and `CaSetConfig` (configuration `PUT`,
//! rotation); read by the roots/configuration queries and by the signer.

use concord_api::connect::{trust_domain, CaRoots};
use concord_api::rpc::QueryResult;

use super::schema::{CA_CONFIG, CA_ROOTS};
use super::{Invalid, StateError, Tables};
use crate::model::ca::{CaConfig, CaRoot};

impl Tables {
    /// Initializes the CA unless it already is: a later leader proposing again (it could
    /// not know an earlier proposal applied) changes nothing. Returns whether it applied.
    pub(crate) fn ca_init(&mut self, index: u64, config: &CaConfig, root: &CaRoot) -> bool {
        if self.ca_config.is_some() {
            return false;
        }
        self.ca_config = Some(CaConfig {
            create_index: index,
            modify_index: index,
            ..config.clone()
        });
        self.ca_roots = vec![CaRoot {
            active: true,
            create_index: index,
            modify_index: index,
            rotated_out_at_ms: None,
            ..root.clone()
        }];
        self.bump(CA_CONFIG, index);
        self.bump(CA_ROOTS, index);
        true
    }

    /// Replaces the configuration and, with `new_root`, rotates: the new root becomes the only
    /// active one and the others stay as trusted, inactive roots, so leaves they signed keep
    /// verifying. `prev_active` is the root the leader built the rotation against; if another
    /// rotation applied meanwhile the command is refused (the cross-signature would be wrong).
    /// The root rotated out records `now_ms` (the leader's time), from which pruning counts.
    pub(crate) fn ca_set_config(
        &mut self,
        index: u64,
        config: &CaConfig,
        new_root: Option<&CaRoot>,
        prev_active: &str,
        now_ms: Option<u64>,
    ) -> Result<(), StateError> {
        let Some(current) = &self.ca_config else {
            return Err(Invalid::CaNotInitialized.into());
        };
        let active = self
            .ca_roots
            .iter()
            .find(|r| r.active)
            .map(|r| r.id.as_str());
        if active != Some(prev_active) {
            return Err(Invalid::CaRootChanged.into());
        }
        self.ca_config = Some(CaConfig {
            // The cluster identity never changes: leaves and roots name it.
            cluster_id: current.cluster_id.clone(),
            create_index: current.create_index,
            modify_index: index,
            ..config.clone()
        });
        self.bump(CA_CONFIG, index);
        if let Some(new_root) = new_root {
            for root in &mut self.ca_roots {
                if root.active {
                    root.active = false;
                    root.modify_index = index;
                    root.rotated_out_at_ms = now_ms;
                }
            }
            self.ca_roots.push(CaRoot {
                active: true,
                create_index: index,
                modify_index: index,
                rotated_out_at_ms: None,
                ..new_root.clone()
            });
            self.bump(CA_ROOTS, index);
        }
        Ok(())
    }

    /// Removes the inactive roots named in `ids` (the active root stays whatever the list
    /// says). Returns whether any was removed; only then does the roots index move.
    pub(crate) fn ca_prune_roots(&mut self, index: u64, ids: &[String]) -> bool {
        let before = self.ca_roots.len();
        self.ca_roots.retain(|r| r.active || !ids.contains(&r.id));
        let pruned = self.ca_roots.len() != before;
        if pruned {
            self.bump(CA_ROOTS, index);
        }
        pruned
    }

    /// The roots (for the leader's pruning check).
    pub(crate) fn ca_roots(&self) -> &[CaRoot] {
        &self.ca_roots
    }

    /// The configuration and the active root (what signing needs), if initialized.
    pub(crate) fn ca_signer(&self) -> Option<(CaConfig, CaRoot)> {
        let config = self.ca_config.clone()?;
        let active = self.ca_roots.iter().find(|r| r.active)?.clone();
        Some((config, active))
    }

    pub(super) fn ca_roots_query(&self) -> (u64, QueryResult) {
        let roots = match &self.ca_config {
            None => CaRoots::default(),
            Some(config) => CaRoots {
                active_root_id: self
                    .ca_roots
                    .iter()
                    .find(|r| r.active)
                    .map(|r| r.id.clone())
                    .unwrap_or_default(),
                trust_domain: trust_domain(&config.cluster_id),
                roots: self.ca_roots.iter().map(CaRoot::to_api).collect(),
            },
        };
        (self.max_index(&[CA_ROOTS]), QueryResult::CaRoots(roots))
    }

    pub(super) fn ca_config_query(&self) -> (u64, QueryResult) {
        (
            self.max_index(&[CA_CONFIG]),
            QueryResult::CaConfig(self.ca_config.as_ref().map(CaConfig::to_api)),
        )
    }
}
