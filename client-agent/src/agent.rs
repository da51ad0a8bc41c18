//! The agent's shared state, [`AgentCore`]: local services and checks, their runners, the
//! syncer and the server RPC seam, and the operations that keep them consistent
//! (register/deregister, TTL updates, config reload). HTTP handlers and the background tasks
//! started by [`crate::serve::run`] call these; this module starts nothing itself.

use std::sync::{Arc, Mutex};

use concord_api::agent::ServiceDefinition;
use concord_api::catalog::{CheckStatus, HealthCheck};
use concord_net::gossip::{MemberEvent, MemberStatus, UserEvent};
use tokio::sync::{broadcast, mpsc, Notify};

use crate::ae::AntiEntropy;
use crate::catalog_cache::CatalogView;
use crate::checks::{CheckResult, Checks, TtlError, CHECK_RESULTS_CAPACITY};
use crate::config::Config;
use crate::connect::ConnectCa;
use crate::definition::{prepare_service, PreparedCheck, PreparedService};
use crate::local::LocalState;
use crate::membership::{servers_in, KeyringState, Membership, KEYRING_EVENT, REXEC_EVENT};
use crate::metrics::Metrics;
use crate::persist::Persist;
use crate::rpc_client::ServerRpc;

/// Shared state of a running agent; what HTTP handlers see.
pub struct AgentCore {
    /// Configuration.
    pub config: Arc<Config>,
    /// Services and checks registered here.
    pub local: Arc<LocalState>,
    /// The servers (real ones, or a fake in tests).
    pub rpc: Arc<dyn ServerRpc>,
    /// Catalog syncer.
    pub ae: Arc<AntiEntropy>,
    /// Check runners.
    pub checks: Checks,
    /// Counters for `/v1/agent/metrics`.
    pub metrics: Metrics,
    /// Reads the local sidecars' metrics for `/v1/agent/metrics`.
    pub sidecar_metrics: crate::sidecar_metrics::Scraper,
    /// API-registered definitions on disk.
    pub persist: Persist,
    /// The agent's copy of the catalog (DNS reads it).
    pub catalog: CatalogView,
    /// `?cached` reads.
    pub cache: crate::cache::AgentCache,
    /// The agent's copy of the intentions (Connect authorization reads it).
    pub intentions: crate::intentions_cache::IntentionsCache,
    /// Connect CA roots and this agent's leaf certificates.
    pub connect: Arc<ConnectCa>,
    /// Fired by `/v1/agent/leave`.
    pub leave: Notify,
    /// The LAN gossip pool; `None` when the agent runs without one (tests, embedding).
    pub membership: Option<Arc<Membership>>,
    /// ACL token resolution and the agent's own tokens.
    pub acl: Arc<crate::acl::AclResolver>,
    /// IDs of services that came from config files (replaced on reload).
    config_services: Mutex<Vec<String>>,
}

impl std::fmt::Debug for AgentCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentCore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AgentCore {
    /// Builds the core and starts nothing. Returns the receiver of check results, which
    /// [`AgentCore::apply_check_results`] must drain.
    pub fn new(
        config: Config,
        rpc: Arc<dyn ServerRpc>,
        catalog: CatalogView,
        membership: Option<Arc<Membership>>,
    ) -> (Arc<Self>, mpsc::Receiver<CheckResult>) {
        let config = Arc::new(config);
        let local = Arc::new(LocalState::new());
        let acl = Arc::new(crate::acl::AclResolver::new(
            config.acl.clone(),
            &config.datacenter,
            config.data_dir.as_deref(),
            config.server,
            rpc.clone(),
        ));
        // Everything but token resolution itself talks to the servers on someone's behalf.
        let rpc: Arc<dyn ServerRpc> = Arc::new(crate::acl::OnBehalf::new(rpc, acl.clone()));
        let ae = Arc::new(AntiEntropy::new(
            config.clone(),
            local.clone(),
            rpc.clone(),
            Some(acl.clone()),
        ));
        let persist = Persist::new(config.data_dir.as_deref());
        let (tx, rx) = mpsc::channel(CHECK_RESULTS_CAPACITY);
        let connect = ConnectCa::new(rpc.clone(), config.datacenter.clone());
        let core = Arc::new(AgentCore {
            config,
            local,
            rpc,
            ae,
            checks: Checks::new(tx),
            metrics: Metrics::default(),
            sidecar_metrics: crate::sidecar_metrics::Scraper::default(),
            persist,
            catalog,
            cache: crate::cache::AgentCache::default(),
            intentions: crate::intentions_cache::IntentionsCache::default(),
            connect,
            leave: Notify::new(),
            membership,
            acl,
            config_services: Mutex::new(Vec::new()),
        });
        (core, rx)
    }

    /// Validates a registration and expands its `Connect.SidecarService`: the service, then
    /// its sidecar if it asked for one (the sidecar's port is picked against the services
    /// registered here now). Errors are the 400 body.
    pub fn prepare_definition(
        &self,
        def: &ServiceDefinition,
        allow_scripts: bool,
    ) -> Result<Vec<PreparedService>, String> {
        let (parent_def, nested) = crate::sidecar::split(def)?;
        let parent = prepare_service(&parent_def, &self.config.node_name, allow_scripts)?;
        let Some(nested) = nested else {
            return Ok(vec![parent]);
        };
        let sidecar_id = crate::sidecar::sidecar_id(&parent.service.id);
        let services = self.local.services();
        let previous = services.iter().find(|s| s.id == sidecar_id).map(|s| s.port);
        let used: Vec<u16> = services
            .iter()
            .filter(|s| s.id != sidecar_id)
            .map(|s| s.port)
            .collect();
        let port = crate::sidecar::pick_port(nested.port, previous, &used, &self.config.sidecar_ports)
            .ok_or_else(|| {
                "Invalid SidecarService: no port provided for sidecar_service and none left in                  the configured range"
                    .to_string()
            })?;
        let sidecar_def = crate::sidecar::complete(nested, &parent_def, &parent.service.id, port);
        let sidecar = prepare_service(&sidecar_def, &self.config.node_name, allow_scripts)
            .map_err(|e| format!("Invalid SidecarService: {e}"))?;
        Ok(vec![parent, sidecar])
    }

    /// Registers a validated service and starts its checks, then syncs (best effort: a
    /// failed sync is logged and retried by anti-entropy, as Consul does).
    pub async fn register_service(&self, prepared: PreparedService, replace_checks: bool) {
        let id = prepared.service.id.clone();
        if replace_checks {
            for old in self.local.checks() {
                if old.service_id == id
                    && !prepared
                        .checks
                        .iter()
                        .any(|c| c.check.check_id == old.check_id)
                {
                    self.checks.remove(&old.check_id);
                }
            }
        }
        let mut records = Vec::with_capacity(prepared.checks.len());
        let mut specs = Vec::with_capacity(prepared.checks.len());
        for c in prepared.checks {
            let limit = self.output_limit(c.output_max_size);
            specs.push((c.check.check_id.clone(), c.spec, limit));
            records.push((c.check, c.deregister_critical_after));
        }
        self.local
            .add_service(prepared.service, records, replace_checks);
        for (check_id, spec, limit) in specs {
            self.checks.add(&check_id, spec, limit);
        }
        self.sync().await;
    }

    /// Removes a service and its checks. Returns false if unknown.
    pub async fn deregister_service(&self, id: &str) -> bool {
        let owned: Vec<String> = self
            .local
            .checks()
            .into_iter()
            .filter(|c| c.service_id == id)
            .map(|c| c.check_id)
            .collect();
        if !self.local.remove_service(id) {
            return false;
        }
        for check_id in owned {
            self.checks.remove(&check_id);
        }
        // A sidecar registered with the service goes with it, as in Consul.
        let sidecar_id = crate::sidecar::sidecar_id(id);
        let is_its_sidecar = self.local.service(&sidecar_id).is_some_and(|s| {
            s.proxy
                .as_ref()
                .and_then(|p| p.get("DestinationServiceID"))
                .and_then(|v| v.as_str())
                == Some(id)
        });
        if is_its_sidecar {
            Box::pin(self.deregister_service(&sidecar_id)).await;
        } else {
            self.sync().await;
        }
        true
    }

    /// Most output bytes a check keeps: the agent's `check_output_max_size`, lowered by the
    /// check's own `OutputMaxSize` (never raised, as in Consul).
    fn output_limit(&self, per_check: Option<usize>) -> usize {
        let agent = self.config.check_output_max_size;
        per_check.map_or(agent, |own| own.min(agent))
    }

    /// Registers a validated check and starts it.
    pub async fn register_check(&self, prepared: PreparedCheck) {
        let id = prepared.check.check_id.clone();
        self.local
            .add_check(prepared.check, prepared.deregister_critical_after);
        let limit = self.output_limit(prepared.output_max_size);
        self.checks.add(&id, prepared.spec, limit);
        self.sync().await;
    }

    /// Removes a check. Returns false if unknown.
    pub async fn deregister_check(&self, id: &str) -> bool {
        if !self.local.remove_check(id) {
            return false;
        }
        self.checks.remove(id);
        self.sync().await;
        true
    }

    /// Adds a check that no runner drives (maintenance checks).
    pub async fn add_static_check(&self, check: HealthCheck) {
        self.local.add_check(check, None);
        self.sync().await;
    }

    /// Pushes local changes now; failures are left to anti-entropy's retry.
    pub async fn sync(&self) {
        self.refresh_aliases();
        if let Err(e) = self.ae.sync_changes().await {
            tracing::warn!(error = %e, "sync to servers failed; anti-entropy will retry");
            self.ae.trigger();
        }
    }

    /// Applies check results to local state as they arrive; status changes are synced.
    pub async fn apply_check_results(self: Arc<Self>, mut rx: mpsc::Receiver<CheckResult>) {
        while let Some(result) = rx.recv().await {
            if self
                .local
                .update_check(&result.check_id, result.status, &result.output)
                == Some(true)
            {
                self.refresh_aliases();
                self.ae.trigger();
            }
        }
    }

    /// Recomputes every alias check from the local state it mirrors (see
    /// [`crate::checks::alias_status`]). Called after each local change, so an alias follows
    /// its service without polling. Returns whether any alias changed.
    pub fn refresh_aliases(&self) -> bool {
        let checks = self.local.checks();
        let mut changed = false;
        for alias in checks.iter().filter(|c| c.r#type == "alias") {
            let target = &alias.definition.alias_service;
            // Only this node's checks count: an alias never looks at itself, and node
            // checks (maintenance) do.
            let relevant: Vec<HealthCheck> = checks
                .iter()
                .filter(|c| c.check_id != alias.check_id && c.r#type != "alias")
                .cloned()
                .collect();
            let exists = target.is_empty() || self.local.service(target).is_some();
            let (status, output) = crate::checks::alias_status(target, &relevant, exists);
            if self.local.update_check(&alias.check_id, status, &output) == Some(true) {
                changed = true;
            }
        }
        changed
    }

    /// Applies a TTL update from `/v1/agent/check/{pass,warn,fail,update}`.
    pub async fn update_ttl(
        &self,
        id: &str,
        status: CheckStatus,
        output: &str,
    ) -> Result<(), TtlError> {
        if self.local.check(id).is_none() {
            return Err(TtlError::Unknown);
        }
        let output = self
            .checks
            .ttl_update(id, status, output)
            .map_err(|_| TtlError::NotTtl)?;
        if self.local.update_check(id, status, &output) == Some(true) {
            self.sync().await;
        }
        Ok(())
    }

    /// Registers the services of the config files, replacing those registered from the
    /// previous load. Invalid definitions are reported and skipped.
    pub async fn load_config_services(&self, defs: &[ServiceDefinition]) -> Vec<String> {
        let mut errors = Vec::new();
        let mut ids = Vec::new();
        for def in defs {
            let allow = self.config.enable_script_checks || self.config.enable_local_script_checks;
            match self.prepare_definition(def, allow) {
                Ok(prepared) => {
                    for p in prepared {
                        ids.push(p.service.id.clone());
                        self.register_service(p, true).await;
                    }
                }
                Err(e) => errors.push(format!("service {:?}: {e}", def.name)),
            }
        }
        let previous = {
            let mut guard = self
                .config_services
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *guard, ids.clone())
        };
        for old in previous {
            if !ids.contains(&old) {
                self.deregister_service(&old).await;
            }
        }
        errors
    }

    /// Re-registers the services and checks persisted by an earlier run.
    pub(crate) async fn restore_persisted(&self) {
        for def in self.persist.services().await {
            match self.prepare_definition(&def, self.config.enable_script_checks) {
                Ok(prepared) => {
                    for p in prepared {
                        self.register_service(p, true).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(service = %def.name, error = %e, "dropping persisted service")
                }
            }
        }
        for def in self.persist.checks().await {
            match crate::definition::prepare_check(
                &def,
                &self.config.node_name,
                None,
                self.config.enable_script_checks,
            ) {
                Ok(mut p) => {
                    let service_id = def.service_id.clone().unwrap_or_default();
                    if !service_id.is_empty() {
                        match self.local.service(&service_id) {
                            Some(svc) => crate::definition::attach_to_service(&mut p.check, &svc),
                            None => continue,
                        }
                    }
                    self.register_check(p).await;
                }
                Err(e) => tracing::warn!(error = %e, "dropping persisted check"),
            }
        }
    }

    /// Deregisters services whose checks stayed critical past their
    /// `DeregisterCriticalServiceAfter`; runs until its task is aborted.
    pub(crate) async fn reap_critical(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.reap_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for id in self.local.services_to_reap(tokio::time::Instant::now()) {
                tracing::info!(service = %id, "deregistering service critical for too long");
                self.deregister_service(&id).await;
            }
        }
    }
}

// The agent's side of the gossip pool: it needs both the pool and the agent's own state
// (node name, local services, the RPC client's server list), so it lives here, above both.

/// Whether this agent should act on a user event (Consul's `shouldProcessUserEvent`): the
/// node filter must match the node name, the service filter one local service ID and, if
/// given, the tag filter one of that service's tags. Unanchored regexps; one that does not
/// compile drops the event.
pub fn event_matches(core: &AgentCore, event: &UserEvent) -> bool {
    let f = &event.filters;
    if !f.node.is_empty() {
        match regex::Regex::new(&f.node) {
            Ok(re) if re.is_match(&core.config.node_name) => {}
            _ => return false,
        }
    }
    if f.service.is_empty() {
        return true;
    }
    let Ok(service_re) = regex::Regex::new(&f.service) else {
        return false;
    };
    let tag_re = if f.tag.is_empty() {
        None
    } else {
        match regex::Regex::new(&f.tag) {
            Ok(re) => Some(re),
            Err(_) => return false,
        }
    };
    core.local.services().iter().any(|svc| {
        service_re.is_match(&svc.id)
            && tag_re
                .as_ref()
                .is_none_or(|re| svc.tags.iter().any(|t| re.is_match(t)))
    })
}

/// Follows the pool until `stop`: keeps the server list of `core.rpc` in step with the
/// servers in the pool (plus the configured ones) and tells anti-entropy when a server joins
/// it ([`AntiEntropy::server_up`]), stores matching user events, applies
/// keyring operations. It subscribes before returning the future, so nothing that happens
/// after this call is missed, even before the task first runs.
pub fn follow_pool(
    core: Arc<AgentCore>,
    membership: Arc<Membership>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut events = membership.gossip.subscribe();
    async move {
        let mut known: Vec<std::net::SocketAddr> = Vec::new();
        let mut refresh_servers = || {
            let members = membership.gossip.members();
            let alive = members
                .iter()
                .filter(|m| m.status == MemberStatus::Alive)
                .count();
            // Anti-entropy scales its full-sync interval with the pool size.
            core.ae.set_cluster_size(alive);
            let mut servers = core.config.servers.clone();
            servers.extend(servers_in(&members, &core.config.datacenter));
            servers.sort();
            servers.dedup();
            if servers.iter().any(|s| known.binary_search(s).is_err()) {
                core.ae.server_up();
            }
            known.clone_from(&servers);
            core.rpc.set_servers(servers);
        };
        refresh_servers();
        tokio::pin!(stop);
        loop {
            let event = tokio::select! {
                _ = &mut stop => return,
                e = events.recv() => e,
            };
            match event {
                Ok(MemberEvent::User(e)) => on_user_event(&core, &membership, e),
                Ok(_) => refresh_servers(),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "gossip events lost; re-reading the member list");
                    refresh_servers();
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

fn on_user_event(core: &AgentCore, membership: &Membership, event: UserEvent) {
    if event.name == KEYRING_EVENT {
        match serde_json::from_slice::<KeyringState>(&event.payload) {
            // The origin applied it already (same version: skipped); an older state than
            // the one applied here is dropped, whatever order gossip delivered them in.
            Ok(state) => {
                membership.apply_keyring_state((event.ltime, event.origin), &state);
            }
            Err(e) => tracing::warn!(error = %e, "malformed keyring event"),
        }
        return;
    }
    if event.name == REXEC_EVENT || !event_matches(core, &event) {
        return;
    }
    membership.store_event(event);
}
