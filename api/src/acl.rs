//! ACLs: tokens, policies and roles as Consul's `/v1/acl/*` JSON has them, the server RPC
//! messages that read and write them, and the pure parts every enforcing component shares.
//!
//! - [`rules`]: the rules language (HCL or JSON): `key`/`key_prefix`, `service`/
//!   `service_prefix` (with `intentions`), `node`, `session`, `agent`, `event`, `query` (each
//!   with its `_prefix` form), `operator`, `acl`, `mesh`, `keyring`; invalid rules fail with
//!   Consul's texts.
//! - [`authorizer`]: an [`Authorizer`](authorizer::Authorizer) merged from a token's policies
//!   (its own, its roles', its identities' and templated policies') over the default policy,
//!   with Consul's precedence: exact beats prefix, longest prefix wins, deny beats allow.
//! - [`catalog`]: what a catalog register or deregister needs (Consul's
//!   `vetRegisterWithACL`), shared by the agent and the servers.
//! - [`rpc`]: what each server RPC read and write needs of the token it carries, which
//!   the servers check on every request (and the agent reuses per endpoint).
//! - [`templated`]: the built-in templated policies (`builtin/service`, `builtin/node`,
//!   `builtin/dns`), which service and node identities also expand to.
//!
//! Secrets: a token's `SecretID` is what a client presents, and Consul's API hands it back to
//! holders of `acl:write` (token read, list, create). It is therefore stored as given (as
//! Consul's state store does) and protected by never leaving through logs: every type here
//! that carries one prints it redacted in `Debug`.

pub mod authorizer;
pub mod catalog;
pub mod rpc;
pub mod rules;
pub mod templated;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// AccessorID of the anonymous token: what a request without a token acts as.
pub const ANONYMOUS_TOKEN_ID: &str = "00000000-0000-0000-0000-000000000002";
/// SecretID of the anonymous token (Consul's: `anonymous`).
pub const ANONYMOUS_TOKEN_SECRET: &str = "anonymous";
/// ID of the built-in `global-management` policy.
pub const GLOBAL_MANAGEMENT_POLICY_ID: &str = "00000000-0000-0000-0000-000000000001";
/// Name of the built-in management policy.
pub const GLOBAL_MANAGEMENT_POLICY_NAME: &str = "global-management";
/// Rules of the built-in management policy (Consul's `ACLPolicyGlobalManagement`).
pub const GLOBAL_MANAGEMENT_RULES: &str = "acl = \"write\"\nagent_prefix \"\" {\n  policy = \"write\"\n}\nevent_prefix \"\" {\n  policy = \"write\"\n}\nkey_prefix \"\" {\n  policy = \"write\"\n}\nkeyring = \"write\"\nnode_prefix \"\" {\n  policy = \"write\"\n}\noperator = \"write\"\nmesh = \"write\"\nquery_prefix \"\" {\n  policy = \"write\"\n}\nservice_prefix \"\" {\n  policy = \"write\"\n  intentions = \"write\"\n}\nsession_prefix \"\" {\n  policy = \"write\"\n}";
/// What a token read shows in place of a secret to a caller without `acl:write`.
pub const REDACTED_SECRET: &str = "<hidden>";
/// The response header that says a list was filtered by ACLs.
pub const RESULTS_FILTERED_HEADER: &str = "X-Consul-Results-Filtered-By-ACLs";

/// A token's secret on the wire (a write's [`crate::rpc::WriteRequest::Authorized`]):
/// serialized as the plain string, printed redacted.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretToken(pub String);

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED_SECRET)
    }
}

/// A link from a token or role to a policy or role, by ID or by name (either may be given;
/// the server fills in both).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AclLink {
    /// ID.
    #[serde(rename = "ID", default)]
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: String,
}

/// A service identity: the `builtin/service` rules for one service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AclServiceIdentity {
    /// Service name.
    pub service_name: String,
    /// Datacenters it applies in (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
}

/// A node identity: the `builtin/node` rules for one node in one datacenter.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AclNodeIdentity {
    /// Node name.
    pub node_name: String,
    /// Datacenter.
    pub datacenter: String,
}

/// Variables of a templated policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AclTemplatedPolicyVariables {
    /// The `Name` variable (`builtin/service`, `builtin/node`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// A templated policy attached to a token or role.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AclTemplatedPolicy {
    /// Template (`builtin/service`, ...).
    pub template_name: String,
    /// Its variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_variables: Option<AclTemplatedPolicyVariables>,
    /// Datacenters it applies in (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
}

/// An ACL token (`/v1/acl/token`).
#[derive(Serialize, Deserialize, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AclToken {
    /// Public identifier (a UUID).
    #[serde(rename = "AccessorID", default)]
    pub accessor_id: String,
    /// The secret a client presents (a UUID). Never logged.
    #[serde(rename = "SecretID", default)]
    pub secret_id: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Policies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<AclLink>,
    /// Roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<AclLink>,
    /// Service identities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_identities: Vec<AclServiceIdentity>,
    /// Node identities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_identities: Vec<AclNodeIdentity>,
    /// Templated policies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templated_policies: Vec<AclTemplatedPolicy>,
    /// Local to this datacenter (not replicated to others).
    #[serde(default)]
    pub local: bool,
    /// When the token stops working (RFC 3339), if it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<String>,
    /// On create: expire this long after creation (Go duration). Input only.
    #[serde(
        rename = "ExpirationTTL",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub expiration_ttl: String,
    /// Creation time (RFC 3339).
    #[serde(default)]
    pub create_time: String,
    /// Hash of the token's content (base64).
    #[serde(default)]
    pub hash: String,
    /// Index that created it.
    #[serde(default)]
    pub create_index: u64,
    /// Index of its last change.
    #[serde(default)]
    pub modify_index: u64,
}

impl fmt::Debug for AclToken {
    // The secret is a credential: keep it out of every log line and error message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AclToken")
            .field("accessor_id", &self.accessor_id)
            .field("secret_id", &REDACTED_SECRET)
            .field("description", &self.description)
            .field("policies", &self.policies)
            .field("roles", &self.roles)
            .field("service_identities", &self.service_identities)
            .field("node_identities", &self.node_identities)
            .field("templated_policies", &self.templated_policies)
            .field("local", &self.local)
            .field("expiration_time", &self.expiration_time)
            .field("modify_index", &self.modify_index)
            .finish()
    }
}

impl AclToken {
    /// The built-in anonymous token (before anyone changes its policies).
    pub fn anonymous() -> Self {
        AclToken {
            accessor_id: ANONYMOUS_TOKEN_ID.to_string(),
            secret_id: ANONYMOUS_TOKEN_SECRET.to_string(),
            description: "Anonymous Token".to_string(),
            ..AclToken::default()
        }
    }
}

/// An ACL policy (`/v1/acl/policy`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AclPolicy {
    /// ID (a UUID).
    #[serde(rename = "ID", default)]
    pub id: String,
    /// Unique name.
    #[serde(default)]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// The rules (HCL or JSON), as given.
    #[serde(default)]
    pub rules: String,
    /// Datacenters it applies in (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
    /// Hash of the policy's content (base64).
    #[serde(default)]
    pub hash: String,
    /// Index that created it.
    #[serde(default)]
    pub create_index: u64,
    /// Index of its last change.
    #[serde(default)]
    pub modify_index: u64,
}

impl AclPolicy {
    /// The built-in `global-management` policy.
    pub fn global_management() -> Self {
        AclPolicy {
            id: GLOBAL_MANAGEMENT_POLICY_ID.to_string(),
            name: GLOBAL_MANAGEMENT_POLICY_NAME.to_string(),
            description: "Builtin Policy that grants unlimited access".to_string(),
            rules: GLOBAL_MANAGEMENT_RULES.to_string(),
            ..AclPolicy::default()
        }
    }
}

/// An ACL role (`/v1/acl/role`): a named set of policies and identities tokens link to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AclRole {
    /// ID (a UUID).
    #[serde(rename = "ID", default)]
    pub id: String,
    /// Unique name.
    #[serde(default)]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Policies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<AclLink>,
    /// Service identities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_identities: Vec<AclServiceIdentity>,
    /// Node identities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_identities: Vec<AclNodeIdentity>,
    /// Templated policies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templated_policies: Vec<AclTemplatedPolicy>,
    /// Hash of the role's content (base64).
    #[serde(default)]
    pub hash: String,
    /// Index that created it.
    #[serde(default)]
    pub create_index: u64,
    /// Index of its last change.
    #[serde(default)]
    pub modify_index: u64,
}

/// A token with everything needed to build its [`Authorizer`](authorizer::Authorizer): the
/// rules of its policies, of its roles' policies, in the order found (duplicates removed).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ResolvedToken {
    /// The token.
    pub token: AclToken,
    /// Every policy that applies to it directly or through a role.
    pub policies: Vec<AclPolicy>,
    /// Service identities, its own and its roles'.
    pub service_identities: Vec<AclServiceIdentity>,
    /// Node identities, its own and its roles'.
    pub node_identities: Vec<AclNodeIdentity>,
    /// Templated policies, its own and its roles'.
    pub templated_policies: Vec<AclTemplatedPolicy>,
}

/// An ACL read (`Query::Acl`).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
pub enum AclQuery {
    /// One token by AccessorID.
    Token {
        /// AccessorID.
        accessor_id: String,
    },
    /// Every token, optionally only those linking a policy or role (by ID).
    Tokens {
        /// Policy ID filter.
        policy: Option<String>,
        /// Role ID filter.
        role: Option<String>,
    },
    /// A token by its secret, with its policies (for `/v1/acl/token/self` and the agent's
    /// resolver). Answers [`AclResult::Resolved`]; an unknown or expired secret is `None`.
    Resolve {
        /// SecretID.
        secret_id: String,
    },
    /// One policy by ID.
    Policy {
        /// ID.
        id: String,
    },
    /// One policy by name.
    PolicyByName {
        /// Name.
        name: String,
    },
    /// Every policy.
    Policies,
    /// One role by ID.
    Role {
        /// ID.
        id: String,
    },
    /// One role by name.
    RoleByName {
        /// Name.
        name: String,
    },
    /// Every role, optionally only those linking a policy (by ID).
    Roles {
        /// Policy ID filter.
        policy: Option<String>,
    },
}

impl fmt::Debug for AclQuery {
    // `Resolve` carries a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AclQuery::Resolve { .. } => f.write_str("Resolve { secret_id: <hidden> }"),
            AclQuery::Token { accessor_id } => write!(f, "Token({accessor_id})"),
            AclQuery::Tokens { policy, role } => write!(f, "Tokens({policy:?}, {role:?})"),
            AclQuery::Policy { id } => write!(f, "Policy({id})"),
            AclQuery::PolicyByName { name } => write!(f, "PolicyByName({name})"),
            AclQuery::Policies => f.write_str("Policies"),
            AclQuery::Role { id } => write!(f, "Role({id})"),
            AclQuery::RoleByName { name } => write!(f, "RoleByName({name})"),
            AclQuery::Roles { policy } => write!(f, "Roles({policy:?})"),
        }
    }
}

/// An ACL write (`WriteRequest::Acl`). The leader fills in IDs, secrets, times and hashes
/// and resolves links by name before proposing.
// Requests are built once and moved.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum AclWrite {
    /// `PUT /v1/acl/bootstrap`: the first management token; refused once done.
    Bootstrap,
    /// Create (empty AccessorID, or one not yet used) or update a token.
    TokenSet {
        /// The token as sent.
        token: AclToken,
        /// Whether this is a create (`PUT /v1/acl/token`) rather than an update.
        create: bool,
    },
    /// Delete a token.
    TokenDelete {
        /// AccessorID.
        accessor_id: String,
    },
    /// Create (empty ID) or update a policy.
    PolicySet(AclPolicy),
    /// Delete a policy.
    PolicyDelete {
        /// ID.
        id: String,
    },
    /// Create (empty ID) or update a role.
    RoleSet(AclRole),
    /// Delete a role.
    RoleDelete {
        /// ID.
        id: String,
    },
}

/// The answer to an [`AclQuery`] or [`AclWrite`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum AclResult {
    /// One token, or none.
    Token(Option<AclToken>),
    /// Tokens, by AccessorID.
    Tokens(Vec<AclToken>),
    /// A resolved token, or none.
    Resolved(Option<ResolvedToken>),
    /// One policy, or none.
    Policy(Option<AclPolicy>),
    /// Policies, by ID.
    Policies(Vec<AclPolicy>),
    /// One role, or none.
    Role(Option<AclRole>),
    /// Roles, by ID.
    Roles(Vec<AclRole>),
    /// A delete: whether something was removed.
    Deleted(bool),
}

/// Templated policy descriptions (`GET /v1/acl/templated-policies`), by name.
pub type TemplatedPolicyList = BTreeMap<String, templated::TemplatedPolicyInfo>;
