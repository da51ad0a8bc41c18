//! Anti-entropy: the mechanism that makes the servers' catalog match the agent's local state
//! (Consul's `agent/ae/ae.go`). The policy—what is out of sync—lives in [`crate::local`].
//!
//! - A *full sync* reads this node's entries from the catalog, marks local entries that
//!   differ, removes catalog entries the agent doesn't know, then pushes changes. It runs at
//!   start and on a jittered interval, so edits made behind the agent's back are undone.
//! - A *partial sync* pushes only what changed locally. Handlers await one after each write
//!   (Consul syncs synchronously on registration, so a read right after sees the change);
//!   check results trigger one in the background.
//! - Syncs are serialized by one async mutex. A failed sync is retried after `ae_retry`,
//!   doubling per consecutive failure (capped at the full-sync interval) so a cluster that
//!   is down is not hammered by every agent at once.
//! - The full-sync interval scales with the alive pool size as Consul's `scaleFactor` does
//!   (1–128 nodes: `ae_interval`; 129–256: 2×; 257–512: 3×; ...), plus a random stagger.
//! - A *resync watch* holds a blocking query on this node's catalog entry. When the servers
//!   lost or replaced their data (the node or a synced service is gone, or the index went
//!   backwards after a snapshot restore or a wiped cluster), it asks for a full sync at
//!   once instead of waiting for the interval.
//! - A server joining the agent's server list (Consul's `ServerUp`) brings the next full sync
//!   forward: at once when the last sync failed (an agent that started before it knew any
//!   server, or outlived them all, is not left waiting for its backoff), else within a
//!   random stagger of [`SERVER_UP_INTERVAL`] scaled like the interval, so a server coming
//!   back is not hit by every agent at once.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use concord_api::catalog::{DeregisterRequest, NodeServices, RegisterRequest};
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
    /// Where the token this agent presents on its own writes comes from (`None`: no ACLs).
    acl: Option<Arc<crate::acl::AclResolver>>,
    sync_lock: Mutex<()>,
    trigger: Notify,
    /// Fired by the resync watch when the servers lost this node's data.
    resync: Notify,
    /// Fired when a server joins the server list.
    server_up: Notify,
    /// Alive members of the pool (1 until the pool reports), for the interval scale.
    cluster_size: AtomicUsize,
    /// Highest catalog index seen in a sync or the watch; a lower one means lost data.
    last_index: AtomicU64,
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
    pub fn new(
        config: Arc<Config>,
        state: Arc<LocalState>,
        rpc: Arc<dyn ServerRpc>,
        acl: Option<Arc<crate::acl::AclResolver>>,
    ) -> Self {
        AntiEntropy {
            config,
            state,
            rpc,
            acl,
            sync_lock: Mutex::new(()),
            trigger: Notify::new(),
            resync: Notify::new(),
            server_up: Notify::new(),
            cluster_size: AtomicUsize::new(1),
            last_index: AtomicU64::new(0),
            stats: SyncStats::default(),
        }
    }

    /// Records the number of alive pool members; the full-sync interval scales with it.
    pub fn set_cluster_size(&self, alive: usize) {
        self.cluster_size.store(alive.max(1), Ordering::Relaxed);
    }

    /// The full-sync interval before stagger: `ae_interval` times [`scale_factor`].
    pub fn scaled_interval(&self) -> Duration {
        self.config.ae_interval.saturating_mul(self.scale())
    }

    /// [`scale_factor`] of the current pool size.
    fn scale(&self) -> u32 {
        scale_factor(self.cluster_size.load(Ordering::Relaxed))
    }

    /// Asks the background loop for a partial sync soon.
    pub fn trigger(&self) {
        self.trigger.notify_one();
    }

    /// Tells the background loop a server joined the server list (Consul's `ServerUp`): the
    /// next full sync comes forward (see the module docs).
    pub fn server_up(&self) {
        self.server_up.notify_one();
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

    /// Runs until `shutdown` resolves: full syncs on a scaled, staggered interval, partial
    /// syncs on trigger, an immediate full sync when the resync watch fires, and retries
    /// with exponential backoff after failures.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let watch = tokio::spawn(self.clone().resync_watch());
        let mut next_full = tokio::time::Instant::now();
        let mut failures: u32 = 0;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep_until(next_full) => {
                    next_full = self.after_full_sync(&mut failures).await;
                }
                _ = self.resync.notified() => {
                    tracing::info!("servers lost this node's catalog data; full sync now");
                    next_full = self.after_full_sync(&mut failures).await;
                }
                _ = self.server_up.notified() => {
                    let now = tokio::time::Instant::now();
                    let due = if failures > 0 {
                        now
                    } else {
                        now + stagger(SERVER_UP_INTERVAL.saturating_mul(self.scale()))
                    };
                    tracing::debug!(in_ = ?due - now, "a server joined; full sync brought forward");
                    next_full = next_full.min(due);
                }
                _ = self.trigger.notified() => {
                    if let Err(e) = self.sync_changes().await {
                        tracing::warn!(error = %e, "anti-entropy sync failed; retrying");
                        // Only failed retries back off further: a burst of changes during
                        // one outage must not push the retry out to the full interval.
                        failures = failures.max(1);
                        let retry = tokio::time::Instant::now() + self.backoff(failures);
                        next_full = next_full.min(retry);
                    }
                }
            }
        }
        watch.abort();
    }

    /// Runs a full sync and returns when the next one is due.
    async fn after_full_sync(&self, failures: &mut u32) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        match self.full_sync().await {
            Ok(()) => {
                *failures = 0;
                now + self.jittered_interval()
            }
            Err(e) => {
                *failures = failures.saturating_add(1);
                let wait = self.backoff(*failures);
                tracing::warn!(error = %e, retry_in = ?wait, "anti-entropy full sync failed");
                now + wait
            }
        }
    }

    /// `ae_retry` doubled per consecutive failure after the first, capped at the scaled
    /// interval, plus up to an eighth of random stagger so agents spread their retries.
    fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        let base = self
            .config
            .ae_retry
            .saturating_mul(1 << doublings)
            .min(self.scaled_interval().max(self.config.ae_retry));
        base + stagger(base / 8)
    }

    fn jittered_interval(&self) -> Duration {
        let base = self.scaled_interval();
        base + stagger(base / 8)
    }

    /// Holds a blocking query on this node's catalog entry and fires `resync` when the
    /// servers no longer have what this agent synced. Consul relies on the periodic full
    /// sync alone; this bounds recovery after a restore or a wiped cluster by the blocking
    /// wait instead of the (scaled) interval.
    async fn resync_watch(self: Arc<Self>) {
        loop {
            let seen = self.last_index.load(Ordering::Relaxed);
            if seen == 0 {
                // Nothing synced yet (or a resync is under way): nothing to lose.
                tokio::time::sleep(RESYNC_WATCH_MIN_GAP).await;
                continue;
            }
            let options = QueryOptions {
                min_index: seen,
                max_wait_ms: RESYNC_WATCH_WAIT.as_millis() as u64,
                ..QueryOptions::default()
            };
            let started = tokio::time::Instant::now();
            match self
                .rpc
                .node_services(self.config.node_name.clone(), options)
                .await
            {
                Ok((meta, remote)) => {
                    let lost = self.data_lost(meta.index, seen, remote.as_ref());
                    tracing::debug!(
                        seen,
                        index = meta.index,
                        lost,
                        "anti-entropy resync watch answered"
                    );
                    if lost {
                        // Forget the old index so the full sync's reads set the new one.
                        self.last_index.store(0, Ordering::Relaxed);
                        self.resync.notify_one();
                    } else {
                        self.last_index.fetch_max(meta.index, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "anti-entropy resync watch failed");
                    tokio::time::sleep(self.config.ae_retry).await;
                }
            }
            // Servers (and the test fake) may answer without blocking; keep the watch from
            // spinning.
            let elapsed = started.elapsed();
            if elapsed < RESYNC_WATCH_MIN_GAP {
                tokio::time::sleep(RESYNC_WATCH_MIN_GAP - elapsed).await;
            }
        }
    }

    /// Whether the servers' view shows data loss: the index went backwards, the node is
    /// gone, or a service this agent has synced is missing.
    fn data_lost(&self, index: u64, seen: u64, remote: Option<&NodeServices>) -> bool {
        if index < seen {
            return true;
        }
        let Some(remote) = remote else {
            return true;
        };
        self.state
            .synced_service_ids()
            .iter()
            .any(|id| !remote.services.contains_key(id))
    }

    async fn reconcile_and_push(&self) -> Result<(), RpcError> {
        let node = self.config.node_name.clone();
        let (meta, remote_node) = self
            .rpc
            .node_services(node.clone(), QueryOptions::default())
            .await?;
        // A full sync starts from what the servers have now, even if that is a lower index.
        self.last_index.store(meta.index, Ordering::Relaxed);
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
            self.rpc
                .register(self.node_registration(), self.token())
                .await?;
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
            self.rpc.register(req, self.token()).await?;
            self.state
                .service_synced(&service.service.id, service.version);
            tracing::debug!(service = %service.service.id, "anti-entropy synced service");
            for c in checks {
                self.state.check_synced(&c.check.check_id, c.version);
            }
        }
        for check in &plan.checks {
            let mut req = self.node_registration();
            req.check = Some(check.check.clone());
            self.rpc.register(req, self.token()).await?;
            self.state
                .check_synced(&check.check.check_id, check.version);
        }
        Ok(())
    }

    /// The token on this agent's own writes (`acl.tokens.agent`, else the default token).
    fn token(&self) -> Option<String> {
        self.acl.as_ref().and_then(|acl| acl.agent_secret())
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
        match self.rpc.deregister(req, self.token()).await {
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

/// Longest blocking wait of the resync watch; with the index gone backwards the servers
/// block until it elapses, so it bounds how late data loss is noticed.
const RESYNC_WATCH_WAIT: Duration = Duration::from_secs(10);

/// Longest wait (before scaling) for the full sync a healthy agent runs when a server joins
/// its server list (Consul's `serverUpInterval`).
pub const SERVER_UP_INTERVAL: Duration = Duration::from_secs(3);

/// Shortest time between two resync-watch reads.
const RESYNC_WATCH_MIN_GAP: Duration = Duration::from_secs(1);

/// Consul's `scaleFactor`: 1 up to 128 nodes, then one more per doubling
/// (129–256: 2, 257–512: 3, ...).
pub fn scale_factor(nodes: usize) -> u32 {
    const THRESHOLD: usize = 128;
    if nodes <= THRESHOLD {
        return 1;
    }
    // ceil(log2(nodes / 128)) + 1, in integers: the doublings of 128 needed to reach nodes.
    let mut factor = 1;
    let mut cap = THRESHOLD;
    while cap < nodes {
        cap = cap.saturating_mul(2);
        factor += 1;
    }
    factor
}

/// A random duration in `[0, max)`; zero when `max` is zero.
fn stagger(max: Duration) -> Duration {
    if max.is_zero() {
        Duration::ZERO
    } else {
        rand::thread_rng().gen_range(Duration::ZERO..max)
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
        let ae = AntiEntropy::new(Arc::new(config), local.clone(), fake.clone(), None);
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

    #[tokio::test(start_paused = true)]
    async fn a_server_joining_after_a_failed_sync_brings_the_retry_forward() {
        let (ae, local, fake) = setup();
        local.add_service(svc("web"), vec![], false);
        tracing::info!("the first full sync fails: the agent knows no server yet");
        fake.fail_next(1);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(ae.clone().run(async {
            let _ = stopped.await;
        }));
        while ok_and_failed(&ae) != (0, 1) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!("a server joins the list: the sync runs now, not after ae_retry");
        let joined = tokio::time::Instant::now();
        ae.server_up();
        while fake.service_ids(NODE).is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            joined.elapsed() < Duration::from_millis(100),
            "{:?}",
            joined.elapsed()
        );
        assert_eq!(ok_and_failed(&ae), (1, 1));

        tracing::info!("on a healthy agent a server joining brings a full sync within the stagger");
        fake.register(RegisterRequest {
            node: NODE.into(),
            address: "10.0.0.9".into(),
            service: Some(svc("ghost")),
            ..RegisterRequest::default()
        });
        let joined = tokio::time::Instant::now();
        ae.server_up();
        while fake.service_ids(NODE) != ["web"] {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            joined.elapsed() <= SERVER_UP_INTERVAL,
            "{:?}",
            joined.elapsed()
        );
        assert!(SERVER_UP_INTERVAL < ae.config.ae_interval);
        assert_eq!(ok_and_failed(&ae), (2, 1));
        drop(stop);
        task.await.unwrap();
    }

    #[test]
    fn the_interval_scales_with_the_pool_like_consul() {
        let cases = [
            (1, 1),
            (128, 1),
            (129, 2),
            (256, 2),
            (257, 3),
            (512, 3),
            (513, 4),
        ];
        for (nodes, factor) in cases {
            assert_eq!(scale_factor(nodes), factor, "{nodes} nodes");
        }
        let (ae, _, _) = setup();
        ae.set_cluster_size(200);
        assert_eq!(ae.scaled_interval(), ae.config.ae_interval * 2);
        for _ in 0..20 {
            let next = ae.jittered_interval();
            assert!(next >= ae.config.ae_interval * 2);
            assert!(next < ae.config.ae_interval * 2 + ae.config.ae_interval / 4);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_failed_changes_does_not_push_the_retry_out() {
        let (ae, local, fake) = setup();
        fake.fail_next(12);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let start = tokio::time::Instant::now();
        let task = tokio::spawn(ae.clone().run(async {
            let _ = stopped.await;
        }));
        tracing::info!("ten changes during an outage, each failing to sync");
        for i in 0..10 {
            local.add_service(svc(&format!("s{i}")), vec![], false);
            ae.trigger();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        while fake.service_ids(NODE).len() < 10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Each failed change used to count as a consecutive failure, pushing the retry out
        // to the full interval; now only failed retries double it (5 s, 10 s, 20 s...), so
        // the changes land well before the interval whichever calls the failures hit.
        assert!(
            start.elapsed() < ae.config.ae_interval,
            "{:?}",
            start.elapsed()
        );
        let _ = stop.send(());
        task.await.unwrap();
    }

    #[test]
    fn retries_back_off_up_to_the_interval() {
        let (ae, _, _) = setup();
        let retry = ae.config.ae_retry;
        let first = ae.backoff(1);
        assert!(first >= retry && first < retry + retry / 8, "{first:?}");
        let third = ae.backoff(3);
        assert!(
            third >= retry * 4 && third < retry * 4 + retry / 2,
            "{third:?}"
        );
        let capped = ae.backoff(40);
        assert!(capped >= ae.config.ae_interval, "{capped:?}");
        assert!(capped < ae.config.ae_interval + ae.config.ae_interval / 8);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wiped_cluster_is_resynced_before_the_interval() {
        let (ae, local, fake) = setup();
        local.add_service(svc("web"), vec![(check("service:web", "web"), None)], false);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(ae.clone().run(async {
            let _ = stopped.await;
        }));
        while fake.service_ids(NODE).is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Let the watch record the index it synced at, then bump it past the wipe's.
        fake.register(RegisterRequest {
            node: "other".into(),
            address: "10.0.0.2".into(),
            ..RegisterRequest::default()
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        tracing::info!("the servers lose everything; the index starts over");
        fake.wipe();
        let wiped = tokio::time::Instant::now();
        while fake.service_ids(NODE).is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let took = wiped.elapsed();
        assert!(took < ae.config.ae_interval / 4, "resynced after {took:?}");
        assert_eq!(check_ids(&fake), ["service:web"]);
        assert!(fake.node(NODE).is_some());
        drop(stop);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_restore_that_drops_a_synced_service_is_repaired() {
        let (ae, local, fake) = setup();
        local.add_service(svc("web"), vec![], false);
        local.add_service(svc("api"), vec![], false);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(ae.clone().run(async {
            let _ = stopped.await;
        }));
        while fake.service_ids(NODE).len() < 2 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        tracing::info!("a restore brings back older data without `api`, at a higher index");
        let gone = DeregisterRequest {
            node: NODE.into(),
            service_id: Some("api".into()),
            ..DeregisterRequest::default()
        };
        fake.write(WriteRequest::Deregister(gone)).await.unwrap();
        let restored = tokio::time::Instant::now();
        while fake.service_ids(NODE).len() < 2 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(restored.elapsed() < ae.config.ae_interval / 4);
        drop(stop);
        task.await.unwrap();
    }
}
