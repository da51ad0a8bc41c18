//! ACLs on the agent: the `acl { ... }` configuration, the agent's own tokens
//! (`/v1/agent/token/:type`), and [`AclResolver::resolve`], which turns the token a request
//! carries into the [`Authorizer`] handlers check.
//!
//! Resolution asks the servers (`AclQuery::Resolve`) and caches the answer per secret for
//! `acl.token_ttl` (Consul's default: 30 s), in a bounded map. The cache is also dropped as
//! soon as any ACL record changes ([`follow`] long-polls the ACL tables' index), so a revoked
//! token or an edited policy applies on this agent within one round trip of the write, not
//! one TTL. When the servers cannot be reached, `acl.down_policy` decides: `allow`, `deny`,
//! or `extend-cache` (Consul's default: keep using what was cached, however old, and deny
//! tokens never seen).
//!
//! Secrets are credentials: they are never logged, and [`AclTokens`] prints them redacted.
//!
//! [`OnBehalf`] stamps every server RPC with the token it is made on behalf of (the HTTP
//! request's, else the agent's own), which the servers check.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use concord_api::acl::authorizer::{Authorizer, DefaultPolicy};
use concord_api::acl::{AclQuery, AclResult, ANONYMOUS_TOKEN_SECRET};
use concord_api::rpc::{Consistency, QueryOptions, RpcError};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::rpc_client::ServerRpc;

mod on_behalf;
pub use on_behalf::{scope, OnBehalf};

/// Most resolved tokens kept; past it, stale entries go first, then everything.
const MAX_CACHED_TOKENS: usize = 4096;

/// What to do when the servers cannot be asked about a token (`acl.down_policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DownPolicy {
    /// Allow what the default policy `allow` would.
    Allow,
    /// Deny everything.
    Deny,
    /// Keep using cached answers past their TTL; deny tokens not cached (Consul's default;
    /// `async-cache` is read as this too).
    #[default]
    ExtendCache,
}

impl DownPolicy {
    /// Parses Consul's values.
    pub fn parse(s: &str) -> Option<DownPolicy> {
        match s {
            "allow" => Some(DownPolicy::Allow),
            "deny" => Some(DownPolicy::Deny),
            "extend-cache" | "async-cache" => Some(DownPolicy::ExtendCache),
            _ => None,
        }
    }
}

/// Tokens from configuration (`acl.tokens`). Secrets: `Debug` redacts them.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclTokens {
    /// `acl.tokens.initial_management`: a server agent makes sure a management token with
    /// this secret exists once a leader does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_management: Option<String>,
    /// `acl.tokens.default`: what requests without a token act as (else `anonymous`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// `acl.tokens.agent`: the agent's own token for its internal operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// `acl.tokens.dns`: what DNS answers as (else `default`, else `anonymous`), so DNS
    /// need not share the rights of HTTP requests without a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
}

impl std::fmt::Debug for AclTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |t: &Option<String>| t.as_ref().map(|_| "<hidden>");
        f.debug_struct("AclTokens")
            .field("initial_management", &shown(&self.initial_management))
            .field("default", &shown(&self.default))
            .field("agent", &shown(&self.agent))
            .field("dns", &shown(&self.dns))
            .finish()
    }
}

/// The agent's `acl { ... }` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclConfig {
    /// `acl.enabled`: enforce ACLs. Off (the default), every request may do everything and
    /// `/v1/acl/*` answers 401 `ACL support disabled`, as Consul does.
    pub enabled: bool,
    /// `acl.default_policy`: what no rule covers (`allow`, the default, or `deny`).
    pub default_policy: DefaultPolicy,
    /// `acl.down_policy`: see [`DownPolicy`].
    pub down_policy: DownPolicy,
    /// `acl.enable_token_persistence`: tokens set through `/v1/agent/token/:type` are kept
    /// in `<data_dir>/acl-tokens.json` and restored on start.
    pub enable_token_persistence: bool,
    /// `acl.tokens`.
    pub tokens: AclTokens,
    /// `acl.token_ttl`: how long a resolved token is reused without asking the servers.
    pub token_ttl: Duration,
}

impl Default for AclConfig {
    fn default() -> Self {
        AclConfig {
            enabled: false,
            default_policy: DefaultPolicy::Allow,
            down_policy: DownPolicy::ExtendCache,
            enable_token_persistence: false,
            tokens: AclTokens::default(),
            token_ttl: Duration::from_secs(30),
        }
    }
}

/// Why a token did not resolve.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The servers know no (unexpired) token with this secret (Consul: 403 `ACL not
    /// found`).
    #[error("ACL not found")]
    NotFound,
}

#[derive(Debug)]
struct Cached {
    authz: Arc<Authorizer>,
    fetched: Instant,
}

/// Resolves request tokens to authorizers; holds the agent's own tokens.
#[derive(Debug)]
pub struct AclResolver {
    config: AclConfig,
    datacenter: String,
    rpc: Arc<dyn ServerRpc>,
    cache: Mutex<HashMap<String, Cached>>,
    /// Bumped whenever resolved tokens are forgotten (an ACL record or an agent token
    /// changed), for views derived from a token's rights (DNS).
    changes: tokio::sync::watch::Sender<u64>,
    tokens: Mutex<AclTokens>,
    persist_path: Option<PathBuf>,
    /// Whether this agent runs a server (then it makes sure the initial management token
    /// exists).
    is_server: bool,
}

/// The token kinds `PUT /v1/agent/token/:type` accepts (Consul's names, legacy aliases
/// included).
pub const AGENT_TOKEN_KINDS: [&str; 9] = [
    "default",
    "agent",
    "agent_recovery",
    "agent_master",
    "replication",
    "acl_token",
    "acl_agent_token",
    "config_file_service_registration",
    "dns",
];

impl AclResolver {
    /// A resolver for `config`, restoring persisted agent tokens from `data_dir`.
    pub fn new(
        config: AclConfig,
        datacenter: &str,
        data_dir: Option<&std::path::Path>,
        is_server: bool,
        rpc: Arc<dyn ServerRpc>,
    ) -> Self {
        let persist_path = data_dir
            .filter(|_| config.enable_token_persistence)
            .map(|d| d.join("acl-tokens.json"));
        let mut tokens = config.tokens.clone();
        if let Some(path) = &persist_path {
            if let Ok(bytes) = std::fs::read(path) {
                match serde_json::from_slice::<AclTokens>(&bytes) {
                    Ok(saved) => {
                        tokens.default = saved.default.or(tokens.default);
                        tokens.agent = saved.agent.or(tokens.agent);
                        tokens.dns = saved.dns.or(tokens.dns);
                    }
                    Err(e) => tracing::warn!(path = %path.display(), error = %e,
                        "ignoring unreadable persisted ACL tokens"),
                }
            }
        }
        AclResolver {
            config,
            datacenter: datacenter.to_string(),
            rpc,
            cache: Mutex::new(HashMap::new()),
            changes: tokio::sync::watch::Sender::new(0),
            tokens: Mutex::new(tokens),
            persist_path,
            is_server,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AclConfig {
        &self.config
    }

    /// Whether ACLs are enforced.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// The secret a request acts with: its own, else the agent's default token, else
    /// `anonymous`.
    pub fn effective_secret(&self, presented: Option<&str>) -> String {
        if let Some(secret) = presented.filter(|s| !s.is_empty()) {
            return secret.to_string();
        }
        self.lock_tokens()
            .default
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| ANONYMOUS_TOKEN_SECRET.to_string())
    }

    /// The token the agent presents on its own calls (anti-entropy, its caches):
    /// `acl.tokens.agent`, else `acl.tokens.default`, as Consul's agent falls back, else
    /// `anonymous`, named explicitly so that a sync run while an HTTP request is being
    /// served never goes out with that request's token; `None` with ACLs off.
    pub fn agent_secret(&self) -> Option<String> {
        if !self.config.enabled {
            return None;
        }
        let tokens = self.lock_tokens();
        let secret = tokens
            .agent
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| tokens.default.clone().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| ANONYMOUS_TOKEN_SECRET.to_string());
        Some(secret)
    }

    /// The token DNS answers with: `acl.tokens.dns` when set; `None` leaves it to
    /// [`Self::resolve`]'s fallback (the default token, else anonymous), as Consul's DNS
    /// server does.
    pub fn dns_secret(&self) -> Option<String> {
        self.lock_tokens().dns.clone().filter(|s| !s.is_empty())
    }

    /// The secret an HTTP request's write goes to the servers with: its own, else the
    /// default token; `None` with ACLs off.
    pub fn request_secret(&self, presented: Option<&str>) -> Option<String> {
        self.config
            .enabled
            .then(|| self.effective_secret(presented))
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, AclTokens> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The authorizer of the token a request presented (`None`: the default token, else
    /// anonymous). With ACLs disabled, everything is allowed.
    pub async fn resolve(&self, presented: Option<&str>) -> Result<Arc<Authorizer>, ResolveError> {
        if !self.config.enabled {
            return Ok(Arc::new(Authorizer::management("")));
        }
        let secret = self.effective_secret(presented);
        let ttl = self.config.token_ttl;
        if let Some(hit) = self.lock_cache().get(&secret) {
            if hit.fetched.elapsed() < ttl {
                return Ok(hit.authz.clone());
            }
        }
        // The leader answers (not a stale read), so a token works on every agent as soon as
        // its create has been acknowledged.
        let options = QueryOptions {
            consistency: Consistency::Default,
            ..QueryOptions::default()
        };
        let query = AclQuery::Resolve {
            secret_id: secret.clone(),
        };
        match self.rpc.acl_read(query, options).await {
            Ok((_, AclResult::Resolved(Some(resolved)))) => {
                let authz = Arc::new(Authorizer::for_token(
                    &resolved,
                    &self.datacenter,
                    self.config.default_policy,
                ));
                self.remember(secret, authz.clone());
                Ok(authz)
            }
            Ok(_) => {
                self.lock_cache().remove(&secret);
                Err(ResolveError::NotFound)
            }
            Err(e) => self.when_down(&secret, &e),
        }
    }

    /// `acl.down_policy`, once the servers failed to answer.
    fn when_down(&self, secret: &str, e: &RpcError) -> Result<Arc<Authorizer>, ResolveError> {
        tracing::warn!(error = %e, policy = ?self.config.down_policy,
            "ACL token resolution failed; applying down_policy");
        let accessor = "";
        Ok(match self.config.down_policy {
            DownPolicy::Allow => Arc::new(Authorizer::default_only(accessor, DefaultPolicy::Allow)),
            DownPolicy::Deny => Arc::new(Authorizer::default_only(accessor, DefaultPolicy::Deny)),
            DownPolicy::ExtendCache => match self.lock_cache().get(secret) {
                Some(hit) => hit.authz.clone(),
                None => Arc::new(Authorizer::default_only(accessor, DefaultPolicy::Deny)),
            },
        })
    }

    fn remember(&self, secret: String, authz: Arc<Authorizer>) {
        let ttl = self.config.token_ttl;
        let mut cache = self.lock_cache();
        if cache.len() >= MAX_CACHED_TOKENS {
            cache.retain(|_, c| c.fetched.elapsed() < ttl);
            if cache.len() >= MAX_CACHED_TOKENS {
                cache.clear();
            }
        }
        cache.insert(
            secret,
            Cached {
                authz,
                fetched: Instant::now(),
            },
        );
    }

    /// Forgets every resolved token (an ACL record changed).
    pub fn invalidate(&self) {
        self.lock_cache().clear();
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes each time resolved tokens are forgotten: what was decided with a token may
    /// no longer hold.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Sets one of the agent's tokens (`PUT /v1/agent/token/:kind`), persisting it when
    /// `acl.enable_token_persistence` is on. Kinds other than `default` and `agent` are
    /// accepted and kept only in memory by Consul's clients' expectations; Concord uses
    /// `default` (requests without a token), `agent` for its own calls and `dns` for DNS.
    pub fn set_agent_token(&self, kind: &str, secret: String) -> Result<(), String> {
        let snapshot = {
            let mut tokens = self.lock_tokens();
            match kind {
                "default" | "acl_token" => tokens.default = Some(secret),
                "agent" | "acl_agent_token" => tokens.agent = Some(secret),
                "dns" => tokens.dns = Some(secret),
                _ => {}
            }
            tokens.clone()
        };
        self.invalidate();
        let Some(path) = &self.persist_path else {
            return Ok(());
        };
        let persisted = AclTokens {
            initial_management: None,
            ..snapshot
        };
        let bytes = serde_json::to_vec(&persisted).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| format!("persisting ACL tokens: {e}"))
    }
}

/// Drops `resolver`'s cache whenever an ACL record changes, until `shutdown`: one stale
/// blocking query on the ACL tables at a time, backing off on errors.
pub async fn follow(resolver: Arc<AclResolver>, shutdown: impl std::future::Future<Output = ()>) {
    const FIRST_RETRY: Duration = Duration::from_millis(100);
    const LAST_RETRY: Duration = Duration::from_secs(10);
    const POLL_MS: u64 = 60_000;
    if !resolver.enabled() {
        return;
    }
    tokio::pin!(shutdown);
    if resolver.is_server {
        if let Some(secret) = resolver.config.tokens.initial_management.clone() {
            tokio::select! {
                _ = &mut shutdown => return,
                () = ensure_initial_management(&resolver, secret) => {}
            }
        }
    }
    let mut seen = 0;
    let mut retry = FIRST_RETRY;
    loop {
        let options = QueryOptions {
            min_index: seen,
            max_wait_ms: POLL_MS,
            consistency: Consistency::Stale,
        };
        let answer = tokio::select! {
            _ = &mut shutdown => return,
            a = resolver.rpc.acl_read(AclQuery::Roles { policy: None }, options) => a,
        };
        let Ok((meta, _)) = answer else {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(retry) => {}
            }
            retry = (retry * 2).min(LAST_RETRY);
            continue;
        };
        retry = FIRST_RETRY;
        if seen != 0 && meta.index != seen {
            resolver.invalidate();
        }
        seen = if meta.index < seen { 0 } else { meta.index };
    }
}

/// Makes sure a management token with `acl.tokens.initial_management` as its secret exists
/// (Consul's servers create it on leadership; here every server's agent asks, and the
/// leader refuses a second token with the same secret). Retries until it exists.
async fn ensure_initial_management(resolver: &AclResolver, secret: String) {
    use concord_api::acl::{AclLink, AclToken, AclWrite, GLOBAL_MANAGEMENT_POLICY_ID};
    const RETRY: Duration = Duration::from_secs(1);
    loop {
        let token = AclToken {
            secret_id: secret.clone(),
            description: "Initial Management Token".to_string(),
            policies: vec![AclLink {
                id: GLOBAL_MANAGEMENT_POLICY_ID.to_string(),
                name: String::new(),
            }],
            ..AclToken::default()
        };
        // Presented with its own secret: the servers know it from their configuration and
        // take it for this one write, before the token exists.
        let write = concord_api::rpc::WriteRequest::Acl(AclWrite::TokenSet {
            token,
            create: true,
        })
        .authorized(Some(secret.clone()));
        match resolver.rpc.write(write).await {
            Ok(_) => {
                tracing::info!("created the initial management token");
                return;
            }
            Err(RpcError::Invalid(m)) if m.contains("SecretID is already in use") => return,
            Err(e) => {
                tracing::debug!(error = %e, "initial management token not created yet; retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
