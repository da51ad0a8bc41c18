//! The agent's local state: the services and checks registered *on this agent*.
//!
//! This is the policy half of anti-entropy (Consul's `agent/local/state.go`): the agent is
//! authoritative for its own node, and every entry remembers whether the servers' catalog
//! already has it as it is here. The mechanism that pushes changes lives in [`crate::ae`].
//!
//! A `std::sync::Mutex` guards the maps: every critical section is a few map operations and
//! none spans an `.await`, so an async lock would only add overhead.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use concord_api::catalog::{CheckStatus, HealthCheck, NodeService};
use tokio::sync::watch;
use tokio::time::Instant;

/// A locally registered service.
#[derive(Clone, Debug)]
pub struct ServiceEntry {
    /// The service as registered.
    pub service: NodeService,
    /// Bumped on every local change; a sync marks the entry clean only if it is unchanged.
    pub version: u64,
    /// Whether the catalog matches.
    pub in_sync: bool,
    /// Deregistered locally; kept until the catalog forgets it too.
    pub deleted: bool,
}

/// A locally registered check.
#[derive(Clone, Debug)]
pub struct CheckEntry {
    /// The check as the catalog should see it.
    pub check: HealthCheck,
    /// Remove the check's service after it has been critical this long.
    pub deregister_critical_after: Option<Duration>,
    /// When the check last turned critical (for the reaper).
    pub critical_since: Option<Instant>,
    /// Bumped on every local change.
    pub version: u64,
    /// Whether the catalog matches.
    pub in_sync: bool,
    /// Deregistered locally; kept until the catalog forgets it too.
    pub deleted: bool,
}

#[derive(Debug)]
struct Inner {
    services: BTreeMap<String, ServiceEntry>,
    checks: BTreeMap<String, CheckEntry>,
    next_version: u64,
    /// Carries `next_version`: every local change wakes the hash-blocking readers of
    /// `/v1/agent/service/:id`, which then compare their reply's hash.
    changes: watch::Sender<u64>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            services: BTreeMap::new(),
            checks: BTreeMap::new(),
            next_version: 0,
            changes: watch::Sender::new(0),
        }
    }
}

impl Inner {
    fn bump(&mut self) -> u64 {
        self.next_version += 1;
        self.changes.send_replace(self.next_version);
        self.next_version
    }
}

/// What a sync must push, captured under the lock and sent without it.
#[derive(Debug, Default, Clone)]
pub struct SyncPlan {
    /// Service IDs to remove from the catalog.
    pub deregister_services: Vec<String>,
    /// Check IDs to remove from the catalog.
    pub deregister_checks: Vec<String>,
    /// Services to (re-)register, with every live check of theirs, and their versions.
    pub services: Vec<(ServiceEntry, Vec<CheckEntry>)>,
    /// Checks to register on their own (node checks, or checks of in-sync services).
    pub checks: Vec<CheckEntry>,
}

impl SyncPlan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.deregister_services.is_empty()
            && self.deregister_checks.is_empty()
            && self.services.is_empty()
            && self.checks.is_empty()
    }
}

/// Services and checks of this agent.
#[derive(Debug, Default)]
pub struct LocalState {
    inner: Mutex<Inner>,
}

impl LocalState {
    /// Empty state.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a panic mid-update; the maps are still structurally valid and
        // anti-entropy will reconcile any half-applied change, so keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver that changes on every local change (a service or check added, replaced,
    /// removed, or a check's status), for waiting on local state.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.lock().changes.subscribe()
    }

    /// Adds or replaces a service and its checks. With `replace_checks`, the service's other
    /// existing checks are removed; otherwise they are kept (Consul's default).
    pub fn add_service(
        &self,
        service: NodeService,
        checks: Vec<(HealthCheck, Option<Duration>)>,
        replace_checks: bool,
    ) {
        let mut inner = self.lock();
        let version = inner.bump();
        let id = service.id.clone();
        if replace_checks {
            let keep: Vec<&str> = checks.iter().map(|(c, _)| c.check_id.as_str()).collect();
            let stale: Vec<String> = inner
                .checks
                .iter()
                .filter(|(cid, c)| {
                    !c.deleted && c.check.service_id == id && !keep.contains(&cid.as_str())
                })
                .map(|(cid, _)| cid.clone())
                .collect();
            for cid in stale {
                mark_check_deleted(&mut inner, &cid, version);
            }
        }
        inner.services.insert(
            id,
            ServiceEntry {
                service,
                version,
                in_sync: false,
                deleted: false,
            },
        );
        for (check, after) in checks {
            insert_check(&mut inner, check, after, version);
        }
    }

    /// Removes a service and its checks. Returns false if it was not registered.
    pub fn remove_service(&self, id: &str) -> bool {
        let mut inner = self.lock();
        let version = inner.bump();
        match inner.services.get_mut(id) {
            Some(entry) if !entry.deleted => {
                entry.deleted = true;
                entry.in_sync = false;
                entry.version = version;
            }
            _ => return false,
        }
        let owned: Vec<String> = inner
            .checks
            .iter()
            .filter(|(_, c)| !c.deleted && c.check.service_id == id)
            .map(|(cid, _)| cid.clone())
            .collect();
        for cid in owned {
            // The catalog drops a service's checks with the service, so these need no
            // separate deregistration: forget them outright.
            inner.checks.remove(&cid);
        }
        true
    }

    /// Adds or replaces one check.
    pub fn add_check(&self, check: HealthCheck, deregister_critical_after: Option<Duration>) {
        let mut inner = self.lock();
        let version = inner.bump();
        insert_check(&mut inner, check, deregister_critical_after, version);
    }

    /// Removes one check. Returns false if it was not registered.
    pub fn remove_check(&self, id: &str) -> bool {
        let mut inner = self.lock();
        let version = inner.bump();
        if inner.checks.get(id).is_some_and(|c| !c.deleted) {
            mark_check_deleted(&mut inner, id, version);
            true
        } else {
            false
        }
    }

    /// Sets a check's status and output. Returns `None` for an unknown check, else whether
    /// anything changed.
    pub fn update_check(&self, id: &str, status: CheckStatus, output: &str) -> Option<bool> {
        let mut inner = self.lock();
        let version = inner.bump();
        let entry = inner.checks.get_mut(id).filter(|c| !c.deleted)?;
        if entry.check.status == status && entry.check.output == output {
            return Some(false);
        }
        if status == CheckStatus::Critical && entry.check.status != CheckStatus::Critical {
            entry.critical_since = Some(Instant::now());
        } else if status != CheckStatus::Critical {
            entry.critical_since = None;
        }
        entry.check.status = status;
        entry.check.output = output.to_string();
        entry.version = version;
        entry.in_sync = false;
        Some(true)
    }

    /// A registered service.
    pub fn service(&self, id: &str) -> Option<NodeService> {
        self.lock()
            .services
            .get(id)
            .filter(|s| !s.deleted)
            .map(|s| s.service.clone())
    }

    /// All registered services.
    pub fn services(&self) -> Vec<NodeService> {
        self.lock()
            .services
            .values()
            .filter(|s| !s.deleted)
            .map(|s| s.service.clone())
            .collect()
    }

    /// IDs of services the last sync left in the catalog (registered, not deleted, and
    /// unchanged since); if the catalog lacks one, the servers lost data.
    pub fn synced_service_ids(&self) -> Vec<String> {
        self.lock()
            .services
            .iter()
            .filter(|(_, s)| s.in_sync && !s.deleted)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// A registered check.
    pub fn check(&self, id: &str) -> Option<HealthCheck> {
        self.lock()
            .checks
            .get(id)
            .filter(|c| !c.deleted)
            .map(|c| c.check.clone())
    }

    /// All registered checks.
    pub fn checks(&self) -> Vec<HealthCheck> {
        self.lock()
            .checks
            .values()
            .filter(|c| !c.deleted)
            .map(|c| c.check.clone())
            .collect()
    }

    /// Services whose `DeregisterCriticalServiceAfter` has run out at `now`.
    pub fn services_to_reap(&self, now: Instant) -> Vec<String> {
        let inner = self.lock();
        let mut ids: Vec<String> = inner
            .checks
            .values()
            .filter(|c| !c.deleted && !c.check.service_id.is_empty())
            .filter(|c| match (c.deregister_critical_after, c.critical_since) {
                (Some(after), Some(since)) => now.duration_since(since) >= after,
                _ => false,
            })
            .map(|c| c.check.service_id.clone())
            .collect();
        // Several checks of one service may expire together; `dedup` only merges neighbours.
        ids.sort();
        ids.dedup();
        ids
    }

    /// Marks entries whose catalog copy differs (or is missing) as out of sync, and returns
    /// the catalog's entries that this agent doesn't know, to be removed. Entries named in
    /// `ignore_*` belong to the servers (e.g. service `consul`, check `serfHealth`).
    pub fn reconcile(
        &self,
        remote_services: &[NodeService],
        remote_checks: &[HealthCheck],
    ) -> (Vec<String>, Vec<String>) {
        let mut inner = self.lock();
        let mut extra_services = Vec::new();
        for remote in remote_services {
            if remote.id == CONSUL_SERVICE_ID {
                continue;
            }
            match inner.services.get_mut(&remote.id) {
                Some(local) if !local.deleted => {
                    if local.service.enable_tag_override {
                        local.service.tags = remote.tags.clone();
                    }
                    local.in_sync = services_equal(&local.service, remote);
                }
                Some(local) => local.in_sync = false,
                None => extra_services.push(remote.id.clone()),
            }
        }
        for (id, local) in inner.services.iter_mut() {
            if !remote_services.iter().any(|r| &r.id == id) {
                local.in_sync = local.deleted;
            }
        }
        inner.services.retain(|_, s| !(s.deleted && s.in_sync));

        let mut extra_checks = Vec::new();
        for remote in remote_checks {
            if remote.check_id == SERF_CHECK_ID {
                continue;
            }
            match inner.checks.get_mut(&remote.check_id) {
                Some(local) if !local.deleted => {
                    local.in_sync = checks_equal(&local.check, remote);
                }
                Some(local) => local.in_sync = false,
                None => {
                    // A check of a service we are removing goes with the service.
                    if !extra_services.contains(&remote.service_id) {
                        extra_checks.push(remote.check_id.clone());
                    }
                }
            }
        }
        for (id, local) in inner.checks.iter_mut() {
            if !remote_checks.iter().any(|r| &r.check_id == id) {
                local.in_sync = local.deleted;
            }
        }
        inner.checks.retain(|_, c| !(c.deleted && c.in_sync));
        (extra_services, extra_checks)
    }

    /// What the catalog is missing, as of now.
    pub fn plan(&self) -> SyncPlan {
        let inner = self.lock();
        let mut plan = SyncPlan::default();
        for (id, s) in &inner.services {
            if s.deleted && !s.in_sync {
                plan.deregister_services.push(id.clone());
            }
        }
        for (id, c) in &inner.checks {
            if c.deleted && !c.in_sync {
                plan.deregister_checks.push(id.clone());
            }
        }
        for s in inner.services.values() {
            if s.deleted || s.in_sync {
                continue;
            }
            let checks = inner
                .checks
                .values()
                .filter(|c| !c.deleted && c.check.service_id == s.service.id)
                .cloned()
                .collect();
            plan.services.push((s.clone(), checks));
        }
        for c in inner.checks.values() {
            if c.deleted || c.in_sync {
                continue;
            }
            let owner_pending = plan
                .services
                .iter()
                .any(|(s, _)| s.service.id == c.check.service_id);
            if !owner_pending {
                plan.checks.push(c.clone());
            }
        }
        plan
    }

    /// Version of a locally deleted service awaiting deregistration.
    pub fn deleted_version_of_service(&self, id: &str) -> Option<u64> {
        self.lock()
            .services
            .get(id)
            .filter(|s| s.deleted)
            .map(|s| s.version)
    }

    /// Version of a locally deleted check awaiting deregistration.
    pub fn deleted_version_of_check(&self, id: &str) -> Option<u64> {
        self.lock()
            .checks
            .get(id)
            .filter(|c| c.deleted)
            .map(|c| c.version)
    }

    /// Records that the catalog now has `service` (at `version`), unless it changed since.
    pub fn service_synced(&self, id: &str, version: u64) {
        let mut inner = self.lock();
        let done = match inner.services.get_mut(id) {
            Some(s) if s.version == version => {
                s.in_sync = true;
                s.deleted
            }
            _ => false,
        };
        if done {
            inner.services.remove(id);
        }
    }

    /// Records that the catalog now has `check` (at `version`), unless it changed since.
    pub fn check_synced(&self, id: &str, version: u64) {
        let mut inner = self.lock();
        let done = match inner.checks.get_mut(id) {
            Some(c) if c.version == version => {
                c.in_sync = true;
                c.deleted
            }
            _ => false,
        };
        if done {
            inner.checks.remove(id);
        }
    }
}

/// The service the servers register for themselves; not the agent's to sync.
pub const CONSUL_SERVICE_ID: &str = "consul";
/// The node-liveness check the servers maintain; not the agent's to sync.
pub const SERF_CHECK_ID: &str = "serfHealth";

fn insert_check(
    inner: &mut Inner,
    check: HealthCheck,
    deregister_critical_after: Option<Duration>,
    version: u64,
) {
    let critical_since = (check.status == CheckStatus::Critical).then(Instant::now);
    inner.checks.insert(
        check.check_id.clone(),
        CheckEntry {
            check,
            deregister_critical_after,
            critical_since,
            version,
            in_sync: false,
            deleted: false,
        },
    );
}

fn mark_check_deleted(inner: &mut Inner, id: &str, version: u64) {
    if let Some(c) = inner.checks.get_mut(id) {
        c.deleted = true;
        c.in_sync = false;
        c.version = version;
    }
}

fn services_equal(local: &NodeService, remote: &NodeService) -> bool {
    local.id == remote.id
        && local.service == remote.service
        && local.tags == remote.tags
        && local.address == remote.address
        && local.tagged_addresses == remote.tagged_addresses
        && local.meta == remote.meta
        && local.port == remote.port
        && local.weights == remote.weights
        && local.enable_tag_override == remote.enable_tag_override
        && local.kind == remote.kind
        && local.proxy == remote.proxy
        && local.connect == remote.connect
}

fn checks_equal(local: &HealthCheck, remote: &HealthCheck) -> bool {
    local.check_id == remote.check_id
        && local.name == remote.name
        && local.status == remote.status
        && local.output == remote.output
        && local.notes == remote.notes
        && local.service_id == remote.service_id
        && local.r#type == remote.r#type
        && local.definition == remote.definition
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(id: &str) -> NodeService {
        NodeService {
            id: id.into(),
            service: id.into(),
            ..NodeService::default()
        }
    }

    fn check(id: &str, service: &str) -> HealthCheck {
        HealthCheck {
            check_id: id.into(),
            name: id.into(),
            service_id: service.into(),
            ..HealthCheck::default()
        }
    }

    #[test]
    fn new_entries_are_planned_then_synced() {
        let state = LocalState::new();
        state.add_service(svc("web"), vec![(check("service:web", "web"), None)], false);
        let plan = state.plan();
        assert_eq!(plan.services.len(), 1);
        assert_eq!(plan.services[0].1.len(), 1);
        assert!(
            plan.checks.is_empty(),
            "service checks ride with the service"
        );
        let (s, cs) = &plan.services[0];
        state.service_synced("web", s.version);
        state.check_synced("service:web", cs[0].version);
        assert!(state.plan().is_empty());
    }

    #[test]
    fn change_during_sync_keeps_entry_dirty() {
        let state = LocalState::new();
        state.add_check(check("mem", ""), None);
        let plan = state.plan();
        let stale_version = plan.checks[0].version;
        state.update_check("mem", CheckStatus::Passing, "ok");
        state.check_synced("mem", stale_version);
        assert_eq!(state.plan().checks.len(), 1);
    }

    #[test]
    fn reconcile_finds_extras_and_skips_server_entries() {
        let state = LocalState::new();
        state.add_service(svc("web"), vec![], false);
        let remote = vec![svc("web"), svc("ghost"), svc(CONSUL_SERVICE_ID)];
        let checks = vec![check(SERF_CHECK_ID, ""), check("orphan", "")];
        let (extra_s, extra_c) = state.reconcile(&remote, &checks);
        assert_eq!(extra_s, vec!["ghost".to_string()]);
        assert_eq!(extra_c, vec!["orphan".to_string()]);
        assert!(state.plan().services.is_empty(), "web matches the catalog");
    }

    #[test]
    fn removal_is_planned_until_synced() {
        let state = LocalState::new();
        state.add_service(svc("web"), vec![(check("c", "web"), None)], false);
        assert!(state.remove_service("web"));
        assert!(!state.remove_service("web"));
        assert!(state.service("web").is_none());
        assert!(state.check("c").is_none());
        let plan = state.plan();
        assert_eq!(plan.deregister_services, vec!["web".to_string()]);
        let version = state.lock().services["web"].version;
        state.service_synced("web", version);
        assert!(state.plan().is_empty());
    }

    #[test]
    fn replace_checks_drops_unlisted() {
        let state = LocalState::new();
        state.add_service(svc("web"), vec![(check("a", "web"), None)], false);
        state.add_service(svc("web"), vec![(check("b", "web"), None)], false);
        assert!(state.check("a").is_some());
        state.add_service(svc("web"), vec![(check("b", "web"), None)], true);
        assert!(state.check("a").is_none());
        assert!(state.check("b").is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn reaper_sees_long_critical_checks() {
        let state = LocalState::new();
        let mut c = check("c", "web");
        c.status = CheckStatus::Passing;
        state.add_service(svc("web"), vec![(c, Some(Duration::from_secs(60)))], false);
        state.update_check("c", CheckStatus::Critical, "down");
        assert!(state.services_to_reap(Instant::now()).is_empty());
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(
            state.services_to_reap(Instant::now()),
            vec!["web".to_string()]
        );
    }
}
