//! The authorizer: what one token may do, merged from every policy that applies to it.
//!
//! Precedence, as Consul's `policyAuthorizer` and `MergePolicies` have it:
//! 1. Rules on the same name (from one policy or several) merge to the strongest: `deny`,
//!    then `write`, then `list`, then `read`.
//! 2. An exact rule (`key "a/b"`) beats every prefix rule for that name.
//! 3. Otherwise the longest matching prefix decides (`key_prefix "a/b"` beats `"a/"`).
//! 4. No rule at all: the default policy (`acl.default_policy`), except for ACL management,
//!    which only an explicit `acl` rule (or the management policy) grants, and `mesh`, which
//!    falls back to `operator`.

use std::collections::BTreeMap;
use std::fmt;

use super::rules::{Access, Global, Resource, Rules};
use super::{templated, ResolvedToken, ANONYMOUS_TOKEN_ID, GLOBAL_MANAGEMENT_POLICY_ID};

/// What an operation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Read one thing.
    Read,
    /// List (keys: recursive reads).
    List,
    /// Change.
    Write,
}

impl Level {
    /// Consul's name of the level.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Read => "read",
            Level::List => "list",
            Level::Write => "write",
        }
    }
}

/// `acl.default_policy` and `acl.down_policy`'s allow/deny.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DefaultPolicy {
    /// Allow what no rule covers (Consul's default; ACL management still needs a rule).
    #[default]
    Allow,
    /// Deny what no rule covers.
    Deny,
}

impl DefaultPolicy {
    /// Parses `allow` or `deny`.
    pub fn parse(s: &str) -> Option<DefaultPolicy> {
        match s {
            "allow" => Some(DefaultPolicy::Allow),
            "deny" => Some(DefaultPolicy::Deny),
            _ => None,
        }
    }
}

/// Consul's `enforce`: does a rule's level grant what is needed?
fn grants(rule: Access, needed: Level) -> bool {
    match rule {
        Access::Write => true,
        Access::List => matches!(needed, Level::Read | Level::List),
        Access::Read => needed == Level::Read,
        Access::Deny => false,
    }
}

/// The merged level (and intentions level) of every rule on one (resource, prefix?, name).
type Merged = BTreeMap<(Resource, bool, String), (Access, Access)>;

/// What one token may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorizer {
    accessor_id: String,
    management: bool,
    named: Merged,
    global: BTreeMap<Global, Access>,
    default: DefaultPolicy,
}

impl Authorizer {
    /// Everything allowed (a management token, or ACLs disabled).
    pub fn management(accessor_id: &str) -> Self {
        Authorizer {
            accessor_id: accessor_id.to_string(),
            management: true,
            named: Merged::new(),
            global: BTreeMap::new(),
            default: DefaultPolicy::Allow,
        }
    }

    /// Only the default policy (a token with no rules, or `down_policy` while the servers
    /// cannot be reached).
    pub fn default_only(accessor_id: &str, default: DefaultPolicy) -> Self {
        Authorizer::from_rules(accessor_id, &[], default)
    }

    /// The merge of `rules` over `default`.
    pub fn from_rules(accessor_id: &str, rules: &[Rules], default: DefaultPolicy) -> Self {
        let mut named = Merged::new();
        let mut global: BTreeMap<Global, Access> = BTreeMap::new();
        for policy in rules {
            for rule in &policy.named {
                // Consul: intentions unset means read for a read or write service rule.
                let intentions = rule.intentions.unwrap_or(match rule.policy {
                    Access::Read | Access::List | Access::Write => Access::Read,
                    Access::Deny => Access::Deny,
                });
                let key = (rule.resource, rule.prefix, rule.name.clone());
                named
                    .entry(key)
                    .and_modify(|(p, i)| {
                        *p = p.merge(rule.policy);
                        *i = i.merge(intentions);
                    })
                    .or_insert((rule.policy, intentions));
            }
            for (g, access) in &policy.global {
                global
                    .entry(*g)
                    .and_modify(|a| *a = a.merge(*access))
                    .or_insert(*access);
            }
        }
        Authorizer {
            accessor_id: accessor_id.to_string(),
            management: false,
            named,
            global,
            default,
        }
    }

    /// The authorizer of a resolved token in `datacenter`: its policies (those scoped to
    /// other datacenters skipped), its identities and its templated policies. A linked
    /// management policy makes it a management token. Stored rules were checked when
    /// written; one that no longer parses grants nothing.
    pub fn for_token(resolved: &ResolvedToken, datacenter: &str, default: DefaultPolicy) -> Self {
        let accessor_id = resolved.token.accessor_id.as_str();
        let in_dc = |dcs: &[String]| dcs.is_empty() || dcs.iter().any(|d| d == datacenter);
        if resolved
            .policies
            .iter()
            .any(|p| p.id == GLOBAL_MANAGEMENT_POLICY_ID && in_dc(&p.datacenters))
        {
            return Authorizer::management(accessor_id);
        }
        let mut sources: Vec<String> = Vec::new();
        for policy in &resolved.policies {
            if in_dc(&policy.datacenters) {
                sources.push(policy.rules.clone());
            }
        }
        for identity in &resolved.service_identities {
            if in_dc(&identity.datacenters) {
                sources.push(templated::service_rules(&identity.service_name));
            }
        }
        for identity in &resolved.node_identities {
            if identity.datacenter == datacenter {
                sources.push(templated::node_rules(&identity.node_name));
            }
        }
        for templated_policy in &resolved.templated_policies {
            if in_dc(&templated_policy.datacenters) {
                if let Ok(rules) = templated::render(templated_policy) {
                    sources.push(rules);
                }
            }
        }
        let rules: Vec<Rules> = sources
            .iter()
            .filter_map(|s| Rules::parse(s).ok())
            .collect();
        Authorizer::from_rules(accessor_id, &rules, default)
    }

    /// AccessorID of the token (for denial messages).
    pub fn accessor_id(&self) -> &str {
        &self.accessor_id
    }

    /// Whether this is a management token.
    pub fn is_management(&self) -> bool {
        self.management
    }

    /// The rule that decides for `name`: an exact one, else the longest prefix.
    fn lookup(&self, resource: Resource, name: &str) -> Option<(Access, Access)> {
        if let Some(found) = self.named.get(&(resource, false, name.to_string())) {
            return Some(*found);
        }
        // Every prefix of `name` sorts at or before it, so the candidates are one range.
        let lo = (resource, true, String::new());
        let hi = (resource, true, name.to_string());
        self.named
            .range(lo..=hi)
            .filter(|((_, _, prefix), _)| name.starts_with(prefix.as_str()))
            .max_by_key(|((_, _, prefix), _)| prefix.len())
            .map(|(_, rule)| *rule)
    }

    fn fallback(&self) -> bool {
        self.default == DefaultPolicy::Allow
    }

    /// May this token do `level` on `resource` `name`?
    pub fn allows(&self, resource: Resource, name: &str, level: Level) -> bool {
        if self.management {
            return true;
        }
        match self.lookup(resource, name) {
            Some((policy, _)) => grants(policy, level),
            None => self.fallback(),
        }
    }

    /// May this token do `level` on intentions whose destination is `service`?
    pub fn allows_intention(&self, service: &str, level: Level) -> bool {
        if self.management {
            return true;
        }
        match self.lookup(Resource::Service, service) {
            Some((_, intentions)) => grants(intentions, level),
            None => self.fallback(),
        }
    }

    /// May this token do `level` on a cluster-wide resource?
    pub fn allows_global(&self, global: Global, level: Level) -> bool {
        if self.management {
            return true;
        }
        match (global, self.global.get(&global)) {
            (_, Some(access)) => grants(*access, level),
            (Global::Acl, None) => false,
            (Global::Mesh, None) => self.allows_global(Global::Operator, level),
            _ => self.fallback(),
        }
    }

    /// May this token delete every key under `prefix` (a recursive delete)? Only if the
    /// prefix itself is writable and no rule under it says otherwise (Consul's
    /// `KeyWritePrefix`).
    pub fn allows_key_write_prefix(&self, prefix: &str) -> bool {
        if self.management {
            return true;
        }
        let below_denied = self
            .named
            .iter()
            .filter(|((r, _, name), _)| *r == Resource::Key && name.starts_with(prefix))
            .any(|(_, (policy, _))| *policy != Access::Write);
        if below_denied {
            return false;
        }
        self.allows(Resource::Key, prefix, Level::Write)
    }

    /// [`Self::allows`], as a `Permission denied` error.
    pub fn require(
        &self,
        resource: Resource,
        name: &str,
        level: Level,
    ) -> Result<(), PermissionDenied> {
        if self.allows(resource, name, level) {
            Ok(())
        } else {
            Err(self.denied(resource.as_str(), level, Some(name)))
        }
    }

    /// [`Self::allows_global`], as a `Permission denied` error.
    pub fn require_global(&self, global: Global, level: Level) -> Result<(), PermissionDenied> {
        if self.allows_global(global, level) {
            Ok(())
        } else {
            Err(self.denied(global.as_str(), level, None))
        }
    }

    /// The denial of `level` on `resource` (and `name`, when the resource has names).
    pub fn denied(&self, resource: &str, level: Level, name: Option<&str>) -> PermissionDenied {
        PermissionDenied {
            accessor_id: self.accessor_id.clone(),
            resource: resource.to_string(),
            level,
            name: name.map(str::to_string),
        }
    }
}

/// An ACL refusal; renders as Consul's `PermissionDeniedError`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct PermissionDenied {
    /// The token's AccessorID.
    pub accessor_id: String,
    /// Resource (`key`, `acl`, ...).
    pub resource: String,
    /// What was needed.
    pub level: Level,
    /// The name it was needed on, for named resources.
    pub name: Option<String>,
}

impl fmt::Display for PermissionDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let anonymous = self.accessor_id == ANONYMOUS_TOKEN_ID;
        f.write_str("Permission denied")?;
        if anonymous {
            f.write_str(": anonymous token")?;
        } else if self.accessor_id.is_empty() {
            // No token behind the decision (down_policy while the servers are away).
            f.write_str(": provided token")?;
        } else {
            write!(f, ": token with AccessorID '{}'", self.accessor_id)?;
        }
        write!(
            f,
            " lacks permission '{}:{}'",
            self.resource,
            self.level.as_str()
        )?;
        if let Some(name) = self.name.as_deref().filter(|n| !n.is_empty()) {
            write!(f, " on {name:?}")?;
        }
        if anonymous {
            f.write_str(
                ". The anonymous token is used implicitly when a request does not specify a \
                 token.",
            )?;
        }
        Ok(())
    }
}

/// One permission an operation needs, as the agent's endpoints and the servers' RPC
/// checks state them (`Need::service("web", Level::Write)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need<'a> {
    /// A named resource (`service:write` on `"web"`).
    Named(Resource, &'a str, Level),
    /// Intentions whose destination is this service (`intention:read` on `"web"`).
    Intention(&'a str, Level),
    /// A cluster-wide resource (`operator:write`).
    Global(Global, Level),
}

impl<'a> Need<'a> {
    /// `service:<level>` on `name`.
    pub fn service(name: &'a str, level: Level) -> Self {
        Need::Named(Resource::Service, name, level)
    }

    /// `node:<level>` on `name`.
    pub fn node(name: &'a str, level: Level) -> Self {
        Need::Named(Resource::Node, name, level)
    }

    /// `agent:<level>` on the agent's node name.
    pub fn agent(name: &'a str, level: Level) -> Self {
        Need::Named(Resource::Agent, name, level)
    }

    /// `session:<level>` on the session's node.
    pub fn session(node: &'a str, level: Level) -> Self {
        Need::Named(Resource::Session, node, level)
    }

    /// `operator:<level>`.
    pub fn operator(level: Level) -> Self {
        Need::Global(Global::Operator, level)
    }

    /// Whether `authz` grants it.
    pub fn allowed(self, authz: &Authorizer) -> bool {
        self.check(authz).is_ok()
    }

    /// `authz`'s refusal, in Consul's words, if it does not grant it.
    pub fn check(self, authz: &Authorizer) -> Result<(), PermissionDenied> {
        match self {
            Need::Named(resource, name, level) => authz.require(resource, name, level),
            Need::Intention(service, level) => {
                if authz.allows_intention(service, level) {
                    Ok(())
                } else {
                    Err(authz.denied("intention", level, Some(service)))
                }
            }
            Need::Global(global, level) => authz.require_global(global, level),
        }
    }
}
