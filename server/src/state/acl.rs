//! The ACL tables: tokens (by AccessorID), policies and roles (by ID), and the bootstrap
//! record.
//!
//! The built-in `global-management` policy and the anonymous token exist from the start
//! without a Raft entry: a lookup that finds no stored record falls back to the built-in,
//! and a write stores an edited copy (Consul lets operators give the anonymous token
//! policies). Snapshots from before ACLs existed therefore restore unchanged.

use concord_api::acl::{
    self as api, AclLink, AclQuery, AclResult, ResolvedToken, ANONYMOUS_TOKEN_ID,
    GLOBAL_MANAGEMENT_POLICY_ID,
};
use concord_api::rpc::{QueryResult, WriteResult};

use super::{schema, Invalid, StateError, Tables};
use crate::model::acl::{format_time, Policy, Role, Token};

/// Every ACL table: links resolve across them, so every ACL read reports their max.
const ACL_TABLES: [&str; 3] = [schema::ACL_TOKENS, schema::ACL_POLICIES, schema::ACL_ROLES];

fn builtin_anonymous() -> Token {
    let t = api::AclToken::anonymous();
    Token {
        accessor_id: t.accessor_id,
        secret_id: t.secret_id,
        description: t.description,
        ..Token::default()
    }
}

fn builtin_management() -> Policy {
    let p = api::AclPolicy::global_management();
    Policy {
        id: p.id,
        name: p.name,
        description: p.description,
        rules: p.rules,
        ..Policy::default()
    }
}

impl Tables {
    /// Raft index of the bootstrap, 0 before it (Consul's ACL bootstrap reset index).
    pub(crate) fn acl_bootstrap_index(&self) -> u64 {
        self.acl_bootstrap_index
    }

    /// One token, the built-in anonymous token included.
    pub(crate) fn acl_token(&self, accessor_id: &str) -> Option<Token> {
        self.acl_tokens
            .get(accessor_id)
            .cloned()
            .or_else(|| (accessor_id == ANONYMOUS_TOKEN_ID).then(builtin_anonymous))
    }

    /// Every token, the built-in ones included, by AccessorID.
    fn acl_all_tokens(&self) -> Vec<Token> {
        let mut all: Vec<Token> = self.acl_tokens.values().cloned().collect();
        if !self.acl_tokens.contains_key(ANONYMOUS_TOKEN_ID) {
            all.push(builtin_anonymous());
            all.sort_by(|a, b| a.accessor_id.cmp(&b.accessor_id));
        }
        all
    }

    /// One policy by ID, the built-in management policy included.
    pub(crate) fn acl_policy(&self, id: &str) -> Option<Policy> {
        self.acl_policies
            .get(id)
            .cloned()
            .or_else(|| (id == GLOBAL_MANAGEMENT_POLICY_ID).then(builtin_management))
    }

    /// Every policy, the built-in one included, by ID.
    fn acl_all_policies(&self) -> Vec<Policy> {
        let mut all: Vec<Policy> = self.acl_policies.values().cloned().collect();
        if !self.acl_policies.contains_key(GLOBAL_MANAGEMENT_POLICY_ID) {
            all.push(builtin_management());
            all.sort_by(|a, b| a.id.cmp(&b.id));
        }
        all
    }

    /// A policy by name.
    pub(crate) fn acl_policy_by_name(&self, name: &str) -> Option<Policy> {
        self.acl_all_policies().into_iter().find(|p| p.name == name)
    }

    /// One role by ID.
    pub(crate) fn acl_role(&self, id: &str) -> Option<Role> {
        self.acl_roles.get(id).cloned()
    }

    /// A role by name.
    pub(crate) fn acl_role_by_name(&self, name: &str) -> Option<Role> {
        self.acl_roles.values().find(|r| r.name == name).cloned()
    }

    /// A token by its secret (a scan: agents cache what they resolve).
    pub(crate) fn acl_token_by_secret(&self, secret_id: &str) -> Option<Token> {
        if secret_id.is_empty() {
            return None;
        }
        self.acl_all_tokens()
            .into_iter()
            .find(|t| t.secret_id == secret_id)
    }

    /// Links to the policies that still exist, with their current names.
    fn policy_links(&self, ids: &[String]) -> Vec<AclLink> {
        ids.iter()
            .filter_map(|id| self.acl_policy(id))
            .map(|p| AclLink {
                id: p.id,
                name: p.name,
            })
            .collect()
    }

    /// The wire form of a token, links resolved.
    pub(crate) fn acl_token_to_api(&self, t: &Token) -> api::AclToken {
        api::AclToken {
            accessor_id: t.accessor_id.clone(),
            secret_id: t.secret_id.clone(),
            description: t.description.clone(),
            policies: self.policy_links(&t.policies),
            roles: t
                .roles
                .iter()
                .filter_map(|id| self.acl_roles.get(id))
                .map(|r| AclLink {
                    id: r.id.clone(),
                    name: r.name.clone(),
                })
                .collect(),
            service_identities: t.identities.service_api(),
            node_identities: t.identities.node_api(),
            templated_policies: t.identities.templated_api(),
            local: t.local,
            expiration_time: t.expiration_ms.map(format_time),
            expiration_ttl: String::new(),
            create_time: format_time(t.create_ms),
            hash: t.hash.clone(),
            create_index: t.create_index,
            modify_index: t.modify_index,
        }
    }

    /// The wire form of a role, links resolved.
    pub(crate) fn acl_role_to_api(&self, r: &Role) -> api::AclRole {
        api::AclRole {
            id: r.id.clone(),
            name: r.name.clone(),
            description: r.description.clone(),
            policies: self.policy_links(&r.policies),
            service_identities: r.identities.service_api(),
            node_identities: r.identities.node_api(),
            templated_policies: r.identities.templated_api(),
            hash: r.hash.clone(),
            create_index: r.create_index,
            modify_index: r.modify_index,
        }
    }

    /// Index of the last change to any token, policy or role.
    pub(crate) fn acl_index(&self) -> u64 {
        self.max_index(&ACL_TABLES)
    }

    /// A token with every policy and identity that applies to it, directly or through its
    /// roles; `None` if unknown or expired at `now_ms`.
    fn acl_resolve(&self, secret_id: &str, now_ms: u64) -> Option<ResolvedToken> {
        let token = self.acl_token_by_secret(secret_id)?;
        if token.expiration_ms.is_some_and(|exp| exp <= now_ms) {
            return None;
        }
        let mut policy_ids: Vec<String> = token.policies.clone();
        let mut identities = vec![token.identities.clone()];
        for role in token.roles.iter().filter_map(|id| self.acl_roles.get(id)) {
            policy_ids.extend(role.policies.iter().cloned());
            identities.push(role.identities.clone());
        }
        let mut seen = std::collections::BTreeSet::new();
        policy_ids.retain(|id| seen.insert(id.clone()));
        Some(ResolvedToken {
            token: self.acl_token_to_api(&token),
            policies: policy_ids
                .iter()
                .filter_map(|id| self.acl_policy(id))
                .map(|p| p.to_api())
                .collect(),
            service_identities: identities.iter().flat_map(|i| i.service_api()).collect(),
            node_identities: identities.iter().flat_map(|i| i.node_api()).collect(),
            templated_policies: identities.iter().flat_map(|i| i.templated_api()).collect(),
        })
    }

    pub(super) fn acl_query(&self, query: &AclQuery) -> (u64, QueryResult) {
        let result = match query {
            AclQuery::Token { accessor_id } => AclResult::Token(
                self.acl_token(accessor_id)
                    .map(|t| self.acl_token_to_api(&t)),
            ),
            AclQuery::Tokens { policy, role } => AclResult::Tokens(
                self.acl_all_tokens()
                    .iter()
                    .filter(|t| policy.as_ref().is_none_or(|p| t.policies.contains(p)))
                    .filter(|t| role.as_ref().is_none_or(|r| t.roles.contains(r)))
                    .map(|t| self.acl_token_to_api(t))
                    .collect(),
            ),
            AclQuery::Resolve { secret_id } => {
                AclResult::Resolved(self.acl_resolve(secret_id, crate::command::now_ms()))
            }
            AclQuery::Policy { id } => AclResult::Policy(self.acl_policy(id).map(|p| p.to_api())),
            AclQuery::PolicyByName { name } => {
                AclResult::Policy(self.acl_policy_by_name(name).map(|p| p.to_api()))
            }
            AclQuery::Policies => {
                AclResult::Policies(self.acl_all_policies().iter().map(Policy::to_api).collect())
            }
            AclQuery::Role { id } => {
                AclResult::Role(self.acl_role(id).map(|r| self.acl_role_to_api(&r)))
            }
            AclQuery::RoleByName { name } => AclResult::Role(
                self.acl_role_by_name(name)
                    .map(|r| self.acl_role_to_api(&r)),
            ),
            AclQuery::Roles { policy } => AclResult::Roles(
                self.acl_roles
                    .values()
                    .filter(|r| policy.as_ref().is_none_or(|p| r.policies.contains(p)))
                    .map(|r| self.acl_role_to_api(r))
                    .collect(),
            ),
        };
        (self.max_index(&ACL_TABLES), QueryResult::Acl(result))
    }

    /// The first management token. Refused once any bootstrap applied (Consul's text, with
    /// the reset index an operator needs to bootstrap again).
    pub(super) fn acl_bootstrap(
        &mut self,
        index: u64,
        token: &Token,
    ) -> Result<WriteResult, StateError> {
        if self.acl_bootstrap_index != 0 {
            return Err(StateError::PermissionDenied(format!(
                "Permission denied: ACL bootstrap no longer allowed (reset index: {})",
                self.acl_bootstrap_index
            )));
        }
        self.acl_bootstrap_index = index;
        self.acl_token_set(index, token)
    }

    /// Creates or replaces a token (keeping its creation index and time).
    pub(super) fn acl_token_set(
        &mut self,
        index: u64,
        token: &Token,
    ) -> Result<WriteResult, StateError> {
        // Checked by the leader too; here it also holds for two creates proposed together.
        if let Some(other) = self.acl_token_by_secret(&token.secret_id) {
            if other.accessor_id != token.accessor_id {
                return Err(Invalid::AclSecretInUse.into());
            }
        }
        let existing = self.acl_tokens.get(&token.accessor_id);
        let mut stored = token.clone();
        stored.create_index = existing.map_or(index, |t| t.create_index);
        if let Some(t) = existing {
            stored.create_ms = t.create_ms;
        }
        stored.modify_index = index;
        let wire = self.acl_token_to_api(&stored);
        self.acl_tokens.insert(stored.accessor_id.clone(), stored);
        self.bump(schema::ACL_TOKENS, index);
        Ok(WriteResult::Acl(AclResult::Token(Some(wire))))
    }

    pub(super) fn acl_token_delete(&mut self, index: u64, accessor_id: &str) -> WriteResult {
        let removed = self.acl_tokens.remove(accessor_id).is_some();
        if removed {
            self.bump(schema::ACL_TOKENS, index);
        }
        WriteResult::Acl(AclResult::Deleted(removed))
    }

    /// Creates or replaces a policy; names are unique.
    pub(super) fn acl_policy_set(
        &mut self,
        index: u64,
        policy: &Policy,
    ) -> Result<WriteResult, StateError> {
        if let Some(other) = self.acl_policy_by_name(&policy.name) {
            if other.id != policy.id {
                return Err(Invalid::AclPolicyNameExists(policy.name.clone()).into());
            }
        }
        let mut stored = policy.clone();
        stored.create_index = self
            .acl_policies
            .get(&policy.id)
            .map_or(index, |p| p.create_index);
        stored.modify_index = index;
        let wire = stored.to_api();
        self.acl_policies.insert(stored.id.clone(), stored);
        self.bump(schema::ACL_POLICIES, index);
        Ok(WriteResult::Acl(AclResult::Policy(Some(wire))))
    }

    pub(super) fn acl_policy_delete(&mut self, index: u64, id: &str) -> WriteResult {
        let removed = self.acl_policies.remove(id).is_some();
        if removed {
            self.bump(schema::ACL_POLICIES, index);
        }
        WriteResult::Acl(AclResult::Deleted(removed))
    }

    /// Creates or replaces a role; names are unique.
    pub(super) fn acl_role_set(
        &mut self,
        index: u64,
        role: &Role,
    ) -> Result<WriteResult, StateError> {
        if let Some(other) = self.acl_role_by_name(&role.name) {
            if other.id != role.id {
                return Err(Invalid::AclRoleNameExists(role.name.clone()).into());
            }
        }
        let mut stored = role.clone();
        stored.create_index = self
            .acl_roles
            .get(&role.id)
            .map_or(index, |r| r.create_index);
        stored.modify_index = index;
        let wire = self.acl_role_to_api(&stored);
        self.acl_roles.insert(stored.id.clone(), stored);
        self.bump(schema::ACL_ROLES, index);
        Ok(WriteResult::Acl(AclResult::Role(Some(wire))))
    }

    pub(super) fn acl_role_delete(&mut self, index: u64, id: &str) -> WriteResult {
        let removed = self.acl_roles.remove(id).is_some();
        if removed {
            self.bump(schema::ACL_ROLES, index);
        }
        WriteResult::Acl(AclResult::Deleted(removed))
    }
}
