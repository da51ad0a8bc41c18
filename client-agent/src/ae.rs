//! Anti-entropy: the mechanism that makes the servers' catalog match the agent's local state
//! (Consul's `agent/ae/ae.go`). The policy—what is out of sync—lives in [`crate::local`].
//!
//! - A *full sync* reads this node's entries from the catalog, marks local entries that
//!   differ, removes catalog entries the agent doesn't know, then pushes changes. It runs at
//!   start and on a jittered interval, so edits made behind the agent's back are undone.
//! - A *partial sync* pushes only what changed locally. Handlers await one after each write
//!   (Consul syncs synchronously on registration, so a read right after sees the change);
//!   check results trigger one in the background.
//! - Syncs are serialized by one async mutex; a failed sync is retried after `ae_retry`.

use std::sync::Arc;
use std::time::Duration;

use concord_api::catalog::{DeregisterRequest, RegisterRequest};
use concord_api::rpc::{Query, QueryOptions, RpcError};
use rand::Rng;
use tokio::sync::{Mutex, Notify};

use crate::config::Config;
use crate::local::LocalState;
use crate::rpc_client::ServerRpc;

/// Syncs local state to the catalog.
#[derive(Debug)]
pub struct AntiEntropy {
    config: Arc<Config>,
    state: Arc<LocalState>,
    rpc: Arc<dyn ServerRpc>,
    sync_lock: Mutex<()>,
    trigger: Notify,
    /// Counts successful and failed syncs (exported as metrics).
    pub stats: SyncStats,
}

/// Sync counters.
#[derive(Debug, Default)]
pub struct SyncStats {
    /// Syncs that completed.
    pub ok: std::sync::atomic::AtomicU64,
    /// Syncs that failed (retried later).
    pub failed: std::sync::atomic::AtomicU64,
}

impl AntiEntropy {
    /// A syncer for this agent.
    pub fn new(config: Arc<Config>, state: Arc<LocalState>, rpc: Arc<dyn ServerRpc>) -> Self {
        AntiEntropy {
            config,
            state,
            rpc,
            sync_lock: Mutex::new(()),
            trigger: Notify::new(),
            stats: SyncStats::default(),
        }
    }

    /// Asks the background loop for a partial sync soon.
    pub fn trigger(&self) {
        self.trigger.notify_one();
    }

    /// Pushes local changes now. Errors are returned for logging; the loop retries.
    pub async fn sync_changes(&self) -> Result<(), RpcError> {
        let _guard = self.sync_lock.lock().await;
        let result = self.push_changes().await;
        self.count(&result);
        result
    }

    /// Reconciles with the catalog, then pushes changes.
    pub async fn full_sync(&self) -> Result<(), RpcError> {
        let _guard = self.sync_lock.lock().await;
        let result = self.reconcile_and_push().await;
        self.count(&result);
        result
    }

    fn count(&self, result: &Result<(), RpcError>) {
        use std::sync::atomic::Ordering::Relaxed;
        match result {
            Ok(()) => self.stats.ok.fetch_add(1, Relaxed),
            Err(_) => self.stats.failed.fetch_add(1, Relaxed),
        };
    }

    /// Runs until `shutdown` resolves: full syncs on a jittered interval, partial syncs
    /// on trigger, retries after failures.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut next_full = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep_until(next_full) => {
                    next_full = match self.full_sync().await {
                        Ok(()) => tokio::time::Instant::now() + self.jittered_interval(),
                        Err(e) => {
                            tracing::warn!(error = %e, "anti-entropy full sync failed; retrying");
                            tokio::time::Instant::now() + self.config.ae_retry
                        }
                    };
                }
                _ = self.trigger.notified() => {
                    if let Err(e) = self.sync_changes().await {
                        tracing::warn!(error = %e, "anti-entropy sync failed; retrying");
                        next_full = next_full.min(tokio::time::Instant::now() + self.config.ae_retry);
                    }
                }
            }
        }
    }

    fn jittered_interval(&self) -> Duration {
        let base = self.config.ae_interval;
        let max_jitter = base / 8;
        let jitter = if max_jitter.is_zero() {
            Duration::ZERO
        } else {
            rand::thread_rng().gen_range(Duration::ZERO..max_jitter)
        };
        base + jitter
    }

    async fn reconcile_and_push(&self) -> Result<(), RpcError> {
        let node = self.config.node_name.clone();
        let (_, remote_node) = self
            .rpc
            .node_services(node.clone(), QueryOptions::default())
            .await?;
        let (_, remote_checks) = self
            .rpc
            .checks(Query::NodeChecks { node }, QueryOptions::default())
            .await?;
        let remote_services: Vec<_> = remote_node
            .as_ref()
            .map(|n| n.services.values().cloned().collect())
            .unwrap_or_default();
        let node_current = remote_node.as_ref().is_some_and(|n| {
            n.node.address == self.config.advertise_addr.to_string()
                && n.node.meta == self.config.node_meta
                && n.node.id == self.config.node_id
        });
        if !node_current {
            self.rpc.register(self.node_registration()).await?;
        }
        let (extra_services, extra_checks) = self.state.reconcile(&remote_services, &remote_checks);
        for id in extra_services {
            tracing::info!(service = %id, "removing catalog service unknown to this agent");
            self.deregister(Some(id), None).await?;
        }
        for id in extra_checks {
            tracing::info!(check = %id, "removing catalog check unknown to this agent");
            self.deregister(None, Some(id)).await?;
        }
        self.push_changes().await
    }

    async fn push_changes(&self) -> Result<(), RpcError> {
        let plan = self.state.plan();
        for id in &plan.deregister_services {
            self.deregister(Some(id.clone()), None).await?;
            // The deleted entry's version is whatever it was marked with; look it up fresh.
            self.state
                .service_synced(id, self.deleted_service_version(id));
        }
        for id in &plan.deregister_checks {
            self.deregister(None, Some(id.clone())).await?;
            self.state.check_synced(id, self.deleted_check_version(id));
        }
        for (service, checks) in &plan.services {
            let mut req = self.node_registration();
            req.service = Some(service.service.clone());
            req.checks = checks.iter().map(|c| c.check.clone()).collect();
            self.rpc.register(req).await?;
            self.state
                .service_synced(&service.service.id, service.version);
            for c in checks {
                self.state.check_synced(&c.check.check_id, c.version);
            }
        }
        for check in &plan.checks {
            let mut req = self.node_registration();
            req.check = Some(check.check.clone());
            self.rpc.register(req).await?;
            self.state
                .check_synced(&check.check.check_id, check.version);
        }
        Ok(())
    }

    fn deleted_service_version(&self, id: &str) -> u64 {
        self.state.deleted_version_of_service(id).unwrap_or(0)
    }

    fn deleted_check_version(&self, id: &str) -> u64 {
        self.state.deleted_version_of_check(id).unwrap_or(0)
    }

    async fn deregister(
        &self,
        service_id: Option<String>,
        check_id: Option<String>,
    ) -> Result<(), RpcError> {
        let req = DeregisterRequest {
            node: self.config.node_name.clone(),
            datacenter: self.config.datacenter.clone(),
            service_id,
            check_id,
        };
        match self.rpc.deregister(req).await {
            // Already gone is what we wanted.
            Ok(_) | Err(RpcError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The node part of every registration this agent sends.
    fn node_registration(&self) -> RegisterRequest {
        let addr = self.config.advertise_addr.to_string();
        RegisterRequest {
            id: self.config.node_id.clone(),
            node: self.config.node_name.clone(),
            address: addr.clone(),
            datacenter: self.config.datacenter.clone(),
            tagged_addresses: [("lan".to_string(), addr.clone()), ("wan".to_string(), addr)]
                .into_iter()
                .collect(),
            node_meta: self.config.node_meta.clone(),
            ..RegisterRequest::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc_client::fake::FakeServers;
    use concord_api::catalog::{CheckStatus, HealthCheck, NodeService};
    use concord_api::rpc::WriteRequest;

    const NODE: &str = "node-1";

    fn setup() -> (Arc<AntiEntropy>, Arc<LocalState>, Arc<FakeServers>) {
        let mut config = Config::new(NODE, Vec::new());
        config.node_id = "00000000-0000-0000-0000-000000000001".into();
        let local = Arc::new(LocalState::new());
        let fake = Arc::new(FakeServers::default());
        let ae = AntiEntropy::new(Arc::new(config), local.clone(), fake.clone());
        (Arc::new(ae), local, fake)
    }

    fn svc(id: &str) -> NodeService {
        NodeService {
            id: id.into(),
            service: id.into(),
            ..NodeService::default()
        }
    }

    fn check(id: &str, service: &str) -> HealthCheck {
        HealthCheck {
            node: NODE.into(),
            check_id: id.into(),
            name: id.into(),
            service_id: service.into(),
            ..HealthCheck::default()
        }
    }

    fn check_ids(fake: &FakeServers) -> Vec<String> {
        fake.checks(NODE).into_iter().map(|c| c.check_id).collect()
    }

    fn ok_and_failed(ae: &AntiEntropy) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (ae.stats.ok.load(Relaxed), ae.stats.failed.load(Relaxed))
    }

    #[tokio::test]
    async fn full_sync_registers_missing_and_removes_unknown_entries() {
        let (ae, local, fake) = setup();
        tracing::info!("the catalog holds entries this agent never registered");
        fake.register(RegisterRequest {
            node: NODE.into(),
            address: "10.0.0.9".into(),
            service: Some(svc("ghost")),
            checks: vec![check("orphan", ""), check("serfHealth", "")],
            ..RegisterRequest::default()
        });
        fake.register(RegisterRequest {
            node: NODE.into(),
            skip_node_update: true,
            service: Some(svc("consul")),
            ..RegisterRequest::default()
        });
        local.add_service(svc("web"), vec![(check("service:web", "web"), None)], false);
        local.add_check(check("mem", ""), None);

        ae.full_sync().await.unwrap();
        tracing::info!("unknown entries are gone, the servers' own kept, local ones pushed");
        assert_eq!(fake.service_ids(NODE), ["consul", "web"]);
        assert_eq!(check_ids(&fake), ["mem", "serfHealth", "service:web"]);
        let node = fake.node(NODE).unwrap();
        assert_eq!(
            (node.address.as_str(), node.id.as_str()),
            ("127.0.0.1", "00000000-0000-0000-0000-000000000001"),
            "the node entry is brought up to date"
        );
        assert!(local.plan().is_empty());

        tracing::info!("an edit behind the agent's back is undone by the next full sync");
        let gone = DeregisterRequest {
            node: NODE.into(),
            service_id: Some("web".into()),
            ..DeregisterRequest::default()
        };
        fake.write(WriteRequest::Deregister(gone)).await.unwrap();
        assert_eq!(fake.service_ids(NODE), ["consul"]);
        ae.full_sync().await.unwrap();
        assert_eq!(fake.service_ids(NODE), ["consul", "web"]);
        assert_eq!(ok_and_failed(&ae), (2, 0));
    }

    #[tokio::test]
    async fn partial_sync_pushes_only_what_changed() {
        let (ae, local, fake) = setup();
        local.add_service(svc("web"), vec![(check("service:web", "web"), None)], false);
        ae.sync_changes().await.unwrap();
        let writes = fake.writes();
        assert!(
            matches!(&writes[..], [WriteRequest::Register(r)]
                if r.service.as_ref().is_some_and(|s| s.id == "web") && r.checks.len() == 1),
            "{writes:?}"
        );

        tracing::info!("nothing changed: nothing sent");
        fake.clear_writes();
        ae.sync_changes().await.unwrap();
        assert!(fake.writes().is_empty());

        tracing::info!("a status change sends the check alone");
        assert_eq!(
            local.update_check("service:web", CheckStatus::Critical, "down"),
            Some(true)
        );
        ae.sync_changes().await.unwrap();
        let writes = fake.writes();
        assert!(
            matches!(&writes[..], [WriteRequest::Register(r)]
                if r.service.is_none() && r.check.as_ref().is_some_and(|c| c.status == CheckStatus::Critical)),
            "{writes:?}"
        );

        tracing::info!("a removal sends one deregistration");
        fake.clear_writes();
        assert!(local.remove_service("web"));
        ae.sync_changes().await.unwrap();
        let writes = fake.writes();
        assert!(
            matches!(&writes[..], [WriteRequest::Deregister(d)] if d.service_id.as_deref() == Some("web")),
            "{writes:?}"
        );
        assert!(fake.service_ids(NODE).is_empty());
        assert!(
            check_ids(&fake).is_empty(),
            "the service's check went with it"
        );
    }

    #[tokio::test]
    async fn a_failed_sync_leaves_changes_for_the_next() {
        let (ae, local, fake) = setup();
        local.add_service(svc("web"), vec![], false);
        fake.fail_next(1);
        assert!(ae.sync_changes().await.is_err());
        assert!(fake.service_ids(NODE).is_empty());
        assert!(!local.plan().is_empty(), "still out of sync");
        ae.sync_changes().await.unwrap();
        assert_eq!(fake.service_ids(NODE), ["web"]);
        assert_eq!(ok_and_failed(&ae), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_retries_a_failed_full_sync_after_ae_retry() {
        let (ae, local, fake) = setup();
        local.add_service(svc("web"), vec![], false);
        fake.fail_next(1);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let start = tokio::time::Instant::now();
        let task = tokio::spawn(ae.clone().run(async {
            let _ = stopped.await;
        }));
        tracing::info!("the first full sync fails; the retry registers the service");
        while fake.service_ids(NODE).is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            start.elapsed() >= ae.config.ae_retry,
            "{:?}",
            start.elapsed()
        );
        assert_eq!(ok_and_failed(&ae), (1, 1));

        tracing::info!("a trigger pushes a change without waiting for the interval");
        local.add_service(svc("api"), vec![], false);
        ae.trigger();
        while fake.service_ids(NODE).len() < 2 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(start.elapsed() < ae.config.ae_interval);
        drop(stop);
        task.await.unwrap();
    }
}
