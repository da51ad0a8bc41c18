//! Registers this server in the catalog: its node, the `consul` service and the
//! `serfHealth` check, as Consul's leader does for every server.

use concord_api::catalog::{
    NodeService, CONSUL_SERVICE, SERF_HEALTH_ALIVE_OUTPUT, SERF_HEALTH_CHECK_ID,
    SERF_HEALTH_CHECK_NAME,
};
use concord_api::rpc::{RpcError, WriteResult};

use crate::command::{now_ms, Command};
use crate::config::Config;
use crate::model::catalog::{Check, CheckStatus, Register, Service};
use crate::node::Shared;
use crate::state::Tables;

/// The registration this server should have. Node metadata and tagged addresses others may
/// have set are kept as they are.
pub(crate) fn desired_registration(config: &Config, tables: &Tables) -> Register {
    let existing = tables.node(&config.node_name);
    Register {
        id: config.node_id.clone(),
        node: config.node_name.as_str().into(),
        address: config.rpc_advertise.ip().to_string(),
        datacenter: config.datacenter.clone(),
        tagged_addresses: existing
            .map(|n| n.tagged_addresses.clone())
            .unwrap_or_default(),
        node_meta: existing.map(|n| n.meta.clone()).unwrap_or_default(),
        // Built as the API type and converted, so it gets exactly the defaults (weights
        // 1/1, ...) an agent's registration of the same service would.
        service: Some(
            NodeService {
                id: CONSUL_SERVICE.to_string(),
                service: CONSUL_SERVICE.to_string(),
                port: config.rpc_advertise.port(),
                ..NodeService::default()
            }
            .into(),
        ),
        checks: vec![Check {
            node: config.node_name.as_str().into(),
            check_id: SERF_HEALTH_CHECK_ID.into(),
            name: SERF_HEALTH_CHECK_NAME.to_string(),
            status: CheckStatus::Passing,
            output: SERF_HEALTH_ALIVE_OUTPUT.to_string(),
            r#type: "serf".to_string(),
            ..Check::default()
        }],
        skip_node_update: false,
    }
}

/// Whether the catalog already holds exactly `want` (then nothing is proposed: no log entry,
/// no index churn, no woken watchers).
pub(crate) fn in_sync(tables: &Tables, want: &Register) -> bool {
    let node_ok = tables.node(want.node.as_str()).is_some_and(|n| {
        n.id == want.id
            && n.address == want.address
            && n.datacenter == want.datacenter
            && n.tagged_addresses == want.tagged_addresses
            && n.meta == want.node_meta
    });
    let service_ok = want.service.as_ref().is_none_or(|w| {
        tables
            .service(want.node.as_str(), w.id.as_str())
            .is_some_and(|s| {
                *s == Service {
                    raft: s.raft,
                    ..w.clone()
                }
            })
    });
    let checks_ok = want.checks.iter().all(|w| {
        tables
            .check(want.node.as_str(), w.check_id.as_str())
            .is_some_and(|c| {
                *c == Check {
                    raft: c.raft,
                    ..w.clone()
                }
            })
    });
    node_ok && service_ok && checks_ok
}

/// Registers this server unless it already is, exactly.
pub(super) async fn reconcile_self(shared: &Shared) -> Result<(), RpcError> {
    let store = shared.store.current();
    let want = store.view(|t| desired_registration(&shared.config, t));
    if store.view(|t| in_sync(t, &want)) {
        return Ok(());
    }
    tracing::info!(node = %want.node, "registering this server in the catalog");
    let cmd = Command::Register {
        request: want,
        now_ms: now_ms(),
    };
    match shared.propose(cmd).await? {
        (_, WriteResult::Done) => Ok(()),
        (_, other) => Err(RpcError::Internal(format!(
            "unexpected register result {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateStore;

    fn config() -> Config {
        Config {
            dev: true,
            rpc_max_conns_per_client: 0,
            group_commit: false,
            ..Config::new(
                "server-1",
                "8d3a2b1c-0000-4000-8000-00000000002a",
                "10.0.0.5:8300".parse().unwrap(),
            )
        }
    }

    #[test]
    fn registration_applies_then_is_in_sync() {
        let store = StateStore::new();
        let want = store.view(|t| desired_registration(&config(), t));
        assert!(!store.view(|t| in_sync(t, &want)));
        assert_eq!(want.address, "10.0.0.5");
        assert_eq!(want.service.as_ref().unwrap().port, 8300);

        store
            .apply(
                5,
                &Command::Register {
                    request: want,
                    now_ms: 0,
                },
            )
            .unwrap();
        let again = store.view(|t| desired_registration(&config(), t));
        assert!(
            store.view(|t| in_sync(t, &again)),
            "no churn once registered"
        );
        let check = store
            .view(|t| t.check("server-1", SERF_HEALTH_CHECK_ID).cloned())
            .unwrap();
        assert_eq!(check.name, "Serf Health Status");
        assert_eq!(check.status, CheckStatus::Passing);
        assert_eq!(check.r#type, "serf");
    }

    #[test]
    fn address_change_is_out_of_sync() {
        let store = StateStore::new();
        let want = store.view(|t| desired_registration(&config(), t));
        store
            .apply(
                5,
                &Command::Register {
                    request: want,
                    now_ms: 0,
                },
            )
            .unwrap();
        let mut moved = config();
        moved.rpc_advertise = "10.0.0.6:8300".parse().unwrap();
        let want = store.view(|t| desired_registration(&moved, t));
        assert!(!store.view(|t| in_sync(t, &want)));
    }
}
