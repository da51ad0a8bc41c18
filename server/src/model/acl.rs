//! ACL records: tokens, policies and roles as the store keeps them.
//!
//! Links to policies and roles are stored by ID only; names are looked up when a token or
//! role is read, so renaming a policy shows everywhere at once and a deleted policy simply
//! drops out of every link (as Consul resolves links lazily). Times are Unix milliseconds,
//! formatted as RFC 3339 at the edge.
//!
//! A token's secret is stored as given: Consul's API returns it to holders of `acl:write`
//! and the resolver looks tokens up by it, so it cannot be a one-way hash. It never leaves
//! through logs: [`Token`]'s `Debug` redacts it.

use std::fmt;

use concord_api::acl as api;
use serde::{Deserialize, Serialize};

/// A service identity.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ServiceIdentity {
    /// Service name.
    pub(crate) service_name: String,
    /// Datacenters (empty: all).
    pub(crate) datacenters: Vec<String>,
}

/// A node identity.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NodeIdentity {
    /// Node name.
    pub(crate) node_name: String,
    /// Datacenter.
    pub(crate) datacenter: String,
}

/// A templated policy attachment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TemplatedPolicy {
    /// Template name (`builtin/service`).
    pub(crate) template_name: String,
    /// The `Name` variable (empty when the template has none).
    pub(crate) name: String,
    /// Datacenters (empty: all).
    pub(crate) datacenters: Vec<String>,
}

/// What tokens and roles both grant beyond policy links.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Identities {
    /// Service identities.
    pub(crate) service: Vec<ServiceIdentity>,
    /// Node identities.
    pub(crate) node: Vec<NodeIdentity>,
    /// Templated policies.
    pub(crate) templated: Vec<TemplatedPolicy>,
}

/// A token.
#[derive(Serialize, Deserialize, Clone, Default, PartialEq, Eq)]
pub(crate) struct Token {
    /// Public ID.
    pub(crate) accessor_id: String,
    /// The secret clients present.
    pub(crate) secret_id: String,
    /// Free text.
    pub(crate) description: String,
    /// Linked policy IDs.
    pub(crate) policies: Vec<String>,
    /// Linked role IDs.
    pub(crate) roles: Vec<String>,
    /// Identities and templated policies.
    pub(crate) identities: Identities,
    /// Local to this datacenter.
    pub(crate) local: bool,
    /// Expiry, Unix ms, if any.
    pub(crate) expiration_ms: Option<u64>,
    /// Creation time, Unix ms.
    pub(crate) create_ms: u64,
    /// Content hash (base64), computed by the leader.
    pub(crate) hash: String,
    /// Index that created it.
    pub(crate) create_index: u64,
    /// Index of its last change.
    pub(crate) modify_index: u64,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("accessor_id", &self.accessor_id)
            .field("secret_id", &api::REDACTED_SECRET)
            .field("description", &self.description)
            .field("policies", &self.policies)
            .field("roles", &self.roles)
            .field("identities", &self.identities)
            .field("local", &self.local)
            .field("expiration_ms", &self.expiration_ms)
            .field("modify_index", &self.modify_index)
            .finish()
    }
}

/// A policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Policy {
    /// ID.
    pub(crate) id: String,
    /// Unique name.
    pub(crate) name: String,
    /// Free text.
    pub(crate) description: String,
    /// Rules as written (checked before proposing).
    pub(crate) rules: String,
    /// Datacenters (empty: all).
    pub(crate) datacenters: Vec<String>,
    /// Content hash (base64).
    pub(crate) hash: String,
    /// Index that created it.
    pub(crate) create_index: u64,
    /// Index of its last change.
    pub(crate) modify_index: u64,
}

/// A role.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Role {
    /// ID.
    pub(crate) id: String,
    /// Unique name.
    pub(crate) name: String,
    /// Free text.
    pub(crate) description: String,
    /// Linked policy IDs.
    pub(crate) policies: Vec<String>,
    /// Identities and templated policies.
    pub(crate) identities: Identities,
    /// Content hash (base64).
    pub(crate) hash: String,
    /// Index that created it.
    pub(crate) create_index: u64,
    /// Index of its last change.
    pub(crate) modify_index: u64,
}

impl Identities {
    /// From the wire lists.
    pub(crate) fn from_api(
        service: &[api::AclServiceIdentity],
        node: &[api::AclNodeIdentity],
        templated: &[api::AclTemplatedPolicy],
    ) -> Self {
        Identities {
            service: service
                .iter()
                .map(|s| ServiceIdentity {
                    service_name: s.service_name.clone(),
                    datacenters: s.datacenters.clone(),
                })
                .collect(),
            node: node
                .iter()
                .map(|n| NodeIdentity {
                    node_name: n.node_name.clone(),
                    datacenter: n.datacenter.clone(),
                })
                .collect(),
            templated: templated
                .iter()
                .map(|t| TemplatedPolicy {
                    template_name: t.template_name.clone(),
                    name: t
                        .template_variables
                        .as_ref()
                        .map(|v| v.name.clone())
                        .unwrap_or_default(),
                    datacenters: t.datacenters.clone(),
                })
                .collect(),
        }
    }

    /// Service identities, wire form.
    pub(crate) fn service_api(&self) -> Vec<api::AclServiceIdentity> {
        self.service
            .iter()
            .map(|s| api::AclServiceIdentity {
                service_name: s.service_name.clone(),
                datacenters: s.datacenters.clone(),
            })
            .collect()
    }

    /// Node identities, wire form.
    pub(crate) fn node_api(&self) -> Vec<api::AclNodeIdentity> {
        self.node
            .iter()
            .map(|n| api::AclNodeIdentity {
                node_name: n.node_name.clone(),
                datacenter: n.datacenter.clone(),
            })
            .collect()
    }

    /// Templated policies, wire form.
    pub(crate) fn templated_api(&self) -> Vec<api::AclTemplatedPolicy> {
        self.templated
            .iter()
            .map(|t| api::AclTemplatedPolicy {
                template_name: t.template_name.clone(),
                template_variables: (!t.name.is_empty()).then(|| {
                    api::AclTemplatedPolicyVariables {
                        name: t.name.clone(),
                    }
                }),
                datacenters: t.datacenters.clone(),
            })
            .collect()
    }
}

impl Policy {
    /// The wire form.
    pub(crate) fn to_api(&self) -> api::AclPolicy {
        api::AclPolicy {
            id: self.id.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            rules: self.rules.clone(),
            datacenters: self.datacenters.clone(),
            hash: self.hash.clone(),
            create_index: self.create_index,
            modify_index: self.modify_index,
        }
    }
}

/// RFC 3339 (UTC, nanosecond precision trimmed) of Unix milliseconds, as Go prints times.
pub(crate) fn format_time(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
