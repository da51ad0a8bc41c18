//! The leader's side of ACL writes: turn an [`AclWrite`] into its Raft [`Command`].
//!
//! Everything that is not a pure function of the log is decided here, once, before
//! proposing: new IDs and secrets (random UUIDs), creation and expiry times, links given by
//! name resolved to IDs, rules parsed, content hashes. The state store then only checks what
//! must hold at apply time (bootstrap once, unique names). Texts are Consul's.
//!
//! `enforce`: every server RPC, read or write, judged by the token it carries; `cache`:
//! the authorizers it builds, kept per secret while the ACL tables are unchanged.

use base64::Engine as _;
use concord_api::acl::rules::Rules;
use concord_api::acl::{
    templated, AclLink, AclPolicy, AclRole, AclToken, AclWrite, ANONYMOUS_TOKEN_ID,
    GLOBAL_MANAGEMENT_POLICY_ID,
};
use concord_api::duration::parse_duration;
use concord_api::rpc::RpcError;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub(crate) mod cache;
pub(crate) mod enforce;

use crate::command::{Command, UnixMillis};
use crate::model::acl::{Identities, Policy, Role, Token};
use crate::state::Tables;

fn invalid(msg: impl Into<String>) -> RpcError {
    RpcError::Invalid(msg.into())
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A record's content hash: SHA-256 over its encoding, base64 (Consul hashes the fields a
/// client can set, so a changed hash means a changed grant).
fn hash_of(record: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(record).unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

/// Consul's name rule for policies and roles.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Builds the command for an ACL write against the current state.
pub(crate) fn command(
    tables: &Tables,
    write: AclWrite,
    now_ms: UnixMillis,
) -> Result<Command, RpcError> {
    Ok(match write {
        AclWrite::Bootstrap => {
            let reset = tables.acl_bootstrap_index();
            if reset != 0 {
                return Err(RpcError::PermissionDenied(format!(
                    "Permission denied: ACL bootstrap no longer allowed (reset index: {reset})"
                )));
            }
            let mut token = Token {
                accessor_id: new_id(),
                secret_id: new_id(),
                description: "Bootstrap Token (Global Management)".to_string(),
                policies: vec![GLOBAL_MANAGEMENT_POLICY_ID.to_string()],
                create_ms: now_ms,
                ..Token::default()
            };
            token.hash = hash_of(&(&token.policies, &token.description));
            Command::AclBootstrap { token }
        }
        AclWrite::TokenSet { token, create } => Command::AclTokenSet {
            token: token_record(tables, token, create, now_ms)?,
        },
        AclWrite::TokenDelete { accessor_id } => {
            if accessor_id == ANONYMOUS_TOKEN_ID {
                return Err(invalid(
                    "Delete operation not permitted on the anonymous token",
                ));
            }
            Command::AclTokenDelete { accessor_id }
        }
        AclWrite::PolicySet(policy) => Command::AclPolicySet {
            policy: policy_record(tables, policy)?,
        },
        AclWrite::PolicyDelete { id } => {
            if id == GLOBAL_MANAGEMENT_POLICY_ID {
                return Err(invalid(
                    "Delete operation not permitted on the builtin global-management policy",
                ));
            }
            Command::AclPolicyDelete { id }
        }
        AclWrite::RoleSet(role) => Command::AclRoleSet {
            role: role_record(tables, role)?,
        },
        AclWrite::RoleDelete { id } => Command::AclRoleDelete { id },
    })
}

/// Policy links (by ID or name) to IDs; every one must exist.
fn policy_ids(tables: &Tables, links: &[AclLink]) -> Result<Vec<String>, RpcError> {
    let mut ids = Vec::new();
    for link in links {
        let found = if link.id.is_empty() {
            tables
                .acl_policy_by_name(&link.name)
                .ok_or_else(|| invalid(format!("No such ACL policy with name {:?}", link.name)))?
        } else {
            tables
                .acl_policy(&link.id)
                .ok_or_else(|| invalid(format!("No such ACL policy with ID {:?}", link.id)))?
        };
        if !ids.contains(&found.id) {
            ids.push(found.id);
        }
    }
    Ok(ids)
}

/// Role links (by ID or name) to IDs; every one must exist.
fn role_ids(tables: &Tables, links: &[AclLink]) -> Result<Vec<String>, RpcError> {
    let mut ids = Vec::new();
    for link in links {
        let found = if link.id.is_empty() {
            tables
                .acl_role_by_name(&link.name)
                .ok_or_else(|| invalid(format!("No such ACL role with name {:?}", link.name)))?
        } else {
            tables
                .acl_role(&link.id)
                .ok_or_else(|| invalid(format!("No such ACL role with ID {:?}", link.id)))?
        };
        if !ids.contains(&found.id) {
            ids.push(found.id);
        }
    }
    Ok(ids)
}

/// Identities and templated policies, checked (`what`: `token` or `role`, for the texts).
fn identities(
    what: &str,
    service: &[concord_api::acl::AclServiceIdentity],
    node: &[concord_api::acl::AclNodeIdentity],
    templated_policies: &[concord_api::acl::AclTemplatedPolicy],
) -> Result<Identities, RpcError> {
    if service.iter().any(|s| s.service_name.is_empty()) {
        return Err(invalid(format!(
            "Service identity is missing the service name field on this {what}"
        )));
    }
    for n in node {
        if n.node_name.is_empty() {
            return Err(invalid(format!(
                "Node identity is missing the node name field on this {what}"
            )));
        }
        if n.datacenter.is_empty() {
            return Err(invalid(format!(
                "Node identity is missing the datacenter field on this {what}"
            )));
        }
    }
    for t in templated_policies {
        templated::render(t).map_err(invalid)?;
    }
    Ok(Identities::from_api(service, node, templated_policies))
}

fn token_record(
    tables: &Tables,
    token: AclToken,
    create: bool,
    now_ms: UnixMillis,
) -> Result<Token, RpcError> {
    let existing = if token.accessor_id.is_empty() {
        None
    } else {
        tables.acl_token(&token.accessor_id)
    };
    let policies = policy_ids(tables, &token.policies)?;
    let roles = role_ids(tables, &token.roles)?;
    let identities = identities(
        "token",
        &token.service_identities,
        &token.node_identities,
        &token.templated_policies,
    )?;
    let mut record = match (create, existing) {
        (true, Some(_)) => return Err(invalid("Invalid Token: AccessorID is already in use")),
        (true, None) => {
            if !token.secret_id.is_empty() && tables.acl_token_by_secret(&token.secret_id).is_some()
            {
                return Err(invalid("Invalid Token: SecretID is already in use"));
            }
            let expiration_ms = match token.expiration_ttl.as_str() {
                "" => None,
                ttl => {
                    let d = parse_duration(ttl).map_err(|e| invalid(e.to_string()))?;
                    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                    Some(now_ms.saturating_add(ms))
                }
            };
            Token {
                accessor_id: if token.accessor_id.is_empty() {
                    new_id()
                } else {
                    token.accessor_id.clone()
                },
                secret_id: if token.secret_id.is_empty() {
                    new_id()
                } else {
                    token.secret_id.clone()
                },
                local: token.local,
                expiration_ms,
                create_ms: now_ms,
                ..Token::default()
            }
        }
        (false, None) => {
            return Err(RpcError::NotFound(format!(
                "Cannot find token {:?}",
                token.accessor_id
            )))
        }
        (false, Some(old)) => {
            if !token.secret_id.is_empty() && token.secret_id != old.secret_id {
                return Err(invalid("Changing a token's SecretID is not permitted"));
            }
            old
        }
    };
    record.description = token.description;
    record.policies = policies;
    record.roles = roles;
    record.identities = identities;
    record.hash = hash_of(&(
        &record.description,
        &record.policies,
        &record.roles,
        &record.identities,
        record.local,
    ));
    Ok(record)
}

fn policy_record(tables: &Tables, policy: AclPolicy) -> Result<Policy, RpcError> {
    if policy.name.is_empty() {
        return Err(invalid("Invalid Policy: no Name is set"));
    }
    if !valid_name(&policy.name) {
        return Err(invalid(
            "Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed",
        ));
    }
    let id = if policy.id.is_empty() {
        new_id()
    } else {
        let existing = tables
            .acl_policy(&policy.id)
            .ok_or_else(|| RpcError::NotFound(format!("Cannot find policy {:?}", policy.id)))?;
        if existing.id == GLOBAL_MANAGEMENT_POLICY_ID {
            if existing.rules != policy.rules {
                return Err(invalid(
                    "Changing the Rules for the builtin global-management policy is not permitted",
                ));
            }
            if existing.datacenters != policy.datacenters {
                return Err(invalid(
                    "Changing the Datacenters of the builtin global-management policy is not \
                     permitted",
                ));
            }
        }
        existing.id
    };
    Rules::parse(&policy.rules).map_err(|e| invalid(e.0))?;
    let mut record = Policy {
        id,
        name: policy.name,
        description: policy.description,
        rules: policy.rules,
        datacenters: policy.datacenters,
        ..Policy::default()
    };
    record.hash = hash_of(&(
        &record.name,
        &record.description,
        &record.rules,
        &record.datacenters,
    ));
    Ok(record)
}

fn role_record(tables: &Tables, role: AclRole) -> Result<Role, RpcError> {
    if role.name.is_empty() {
        return Err(invalid("Invalid Role: no Name is set"));
    }
    if !valid_name(&role.name) {
        return Err(invalid(
            "Invalid Role: invalid Name. Only alphanumeric characters, '-' and '_' are allowed",
        ));
    }
    let id = if role.id.is_empty() {
        new_id()
    } else {
        tables
            .acl_role(&role.id)
            .ok_or_else(|| RpcError::NotFound(format!("Cannot find role {:?}", role.id)))?
            .id
    };
    let mut record = Role {
        id,
        name: role.name,
        description: role.description,
        policies: policy_ids(tables, &role.policies)?,
        identities: identities(
            "role",
            &role.service_identities,
            &role.node_identities,
            &role.templated_policies,
        )?,
        ..Role::default()
    };
    record.hash = hash_of(&(
        &record.name,
        &record.description,
        &record.policies,
        &record.identities,
    ));
    Ok(record)
}
