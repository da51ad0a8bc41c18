//! Catalog records: nodes, service instances, health checks, and the register/deregister
//! operations that change them.

use std::collections::BTreeMap;
use std::time::Duration;

use concord_api::catalog as api;
use concord_api::duration::GoDuration;
use serde::{Deserialize, Serialize};

use super::id::{CheckId, NodeName, ServiceId};

/// Raft indexes every record carries.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Indexes {
    /// Index that created the record.
    pub(crate) create_index: u64,
    /// Index of its last change.
    pub(crate) modify_index: u64,
}

impl Indexes {
    fn to_api(self) -> api::RaftIndex {
        api::RaftIndex {
            create_index: self.create_index,
            modify_index: self.modify_index,
        }
    }
}

/// A check's health.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CheckStatus {
    /// Healthy.
    Passing,
    /// Degraded.
    Warning,
    /// Unhealthy.
    #[default]
    Critical,
}

impl CheckStatus {
    /// Consul's name for it (`passing`, `warning`, `critical`).
    pub(crate) fn as_str(self) -> &'static str {
        self.to_api().as_str()
    }

    pub(crate) fn to_api(self) -> api::CheckStatus {
        match self {
            CheckStatus::Passing => api::CheckStatus::Passing,
            CheckStatus::Warning => api::CheckStatus::Warning,
            CheckStatus::Critical => api::CheckStatus::Critical,
        }
    }
}

impl From<api::CheckStatus> for CheckStatus {
    fn from(s: api::CheckStatus) -> Self {
        match s {
            api::CheckStatus::Passing => CheckStatus::Passing,
            api::CheckStatus::Warning => CheckStatus::Warning,
            api::CheckStatus::Critical => CheckStatus::Critical,
        }
    }
}

/// A catalog node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Node {
    /// Node UUID.
    pub(crate) id: String,
    /// Node name (the key).
    pub(crate) node: NodeName,
    /// Address.
    pub(crate) address: String,
    /// Datacenter.
    pub(crate) datacenter: String,
    /// Tagged addresses (`lan`, `wan`, ...).
    pub(crate) tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) raft: Indexes,
}

impl Node {
    pub(crate) fn to_api(&self) -> api::Node {
        api::Node {
            id: self.id.clone(),
            node: self.node.to_string(),
            address: self.address.clone(),
            datacenter: self.datacenter.clone(),
            tagged_addresses: self.tagged_addresses.clone(),
            meta: self.meta.clone(),
            raft: self.raft.to_api(),
        }
    }
}

/// DNS SRV weights of a service instance.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Weights {
    /// While all checks pass.
    pub(crate) passing: u32,
    /// While some check warns.
    pub(crate) warning: u32,
}

/// One tagged address of a service instance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceAddress {
    /// Address.
    pub(crate) address: String,
    /// Port.
    pub(crate) port: u16,
}

/// A service instance on a node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct Service {
    /// Instance ID, unique on its node.
    pub(crate) id: ServiceId,
    /// Service name.
    pub(crate) service: String,
    /// Tags.
    pub(crate) tags: Vec<String>,
    /// Address (empty: the node's).
    pub(crate) address: String,
    /// Tagged addresses.
    pub(crate) tagged_addresses: BTreeMap<String, ServiceAddress>,
    /// Metadata.
    pub(crate) meta: BTreeMap<String, String>,
    /// Port.
    pub(crate) port: u16,
    /// DNS weights.
    pub(crate) weights: Weights,
    /// Whether anti-entropy leaves catalog-side tag changes alone.
    pub(crate) enable_tag_override: bool,
    /// Kind (`""` for a typical service, `connect-proxy`, ...).
    pub(crate) kind: String,
    /// Proxy configuration, kept as given.
    pub(crate) proxy: Option<serde_json::Value>,
    /// Connect configuration, kept as given.
    pub(crate) connect: Option<serde_json::Value>,
    /// Datacenter.
    pub(crate) datacenter: String,
    pub(crate) raft: Indexes,
}

impl Service {
    pub(crate) fn to_api(&self) -> api::NodeService {
        api::NodeService {
            id: self.id.to_string(),
            service: self.service.clone(),
            tags: self.tags.clone(),
            address: self.address.clone(),
            tagged_addresses: self
                .tagged_addresses
                .iter()
                .map(|(k, a)| {
                    let address = api::ServiceAddress {
                        address: a.address.clone(),
                        port: a.port,
                    };
                    (k.clone(), address)
                })
                .collect(),
            meta: self.meta.clone(),
            port: self.port,
            weights: api::Weights {
                passing: self.weights.passing,
                warning: self.weights.warning,
            },
            enable_tag_override: self.enable_tag_override,
            kind: self.kind.clone(),
            proxy: self.proxy.clone(),
            connect: self.connect.clone(),
            datacenter: self.datacenter.clone(),
            raft: self.raft.to_api(),
        }
    }
}

impl From<api::NodeService> for Service {
    fn from(s: api::NodeService) -> Self {
        Service {
            id: s.id.into(),
            service: s.service,
            tags: s.tags,
            address: s.address,
            tagged_addresses: s
                .tagged_addresses
                .into_iter()
                .map(|(k, a)| {
                    let address = ServiceAddress {
                        address: a.address,
                        port: a.port,
                    };
                    (k, address)
                })
                .collect(),
            meta: s.meta,
            port: s.port,
            weights: Weights {
                passing: s.weights.passing,
                warning: s.weights.warning,
            },
            enable_tag_override: s.enable_tag_override,
            kind: s.kind,
            proxy: s.proxy,
            connect: s.connect,
            datacenter: s.datacenter,
            raft: Indexes::default(),
        }
    }
}

/// How an agent runs a check (kept for the catalog; the server never runs checks).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CheckDefinition {
    /// HTTP check URL.
    pub(crate) http: String,
    /// HTTP method.
    pub(crate) method: String,
    /// HTTP headers.
    pub(crate) header: BTreeMap<String, Vec<String>>,
    /// HTTP body.
    pub(crate) body: String,
    /// TCP check address.
    pub(crate) tcp: String,
    /// Run interval.
    pub(crate) interval: Option<Duration>,
    /// Timeout of one run.
    pub(crate) timeout: Option<Duration>,
    /// TTL of a TTL check.
    pub(crate) ttl: Option<Duration>,
    /// Deregister the service after it has been critical this long.
    pub(crate) deregister_critical_service_after: Option<Duration>,
}

/// A health check on a node, possibly for one of its services.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Check {
    /// Node name.
    pub(crate) node: NodeName,
    /// Check ID, unique on its node.
    pub(crate) check_id: CheckId,
    /// Name.
    pub(crate) name: String,
    /// Health.
    pub(crate) status: CheckStatus,
    /// Notes.
    pub(crate) notes: String,
    /// Output of the last run.
    pub(crate) output: String,
    /// Service instance ID (empty: a node check).
    pub(crate) service_id: ServiceId,
    /// The service's name, kept in step with the service.
    pub(crate) service_name: String,
    /// The service's tags, kept in step with the service.
    pub(crate) service_tags: Vec<String>,
    /// Kind (`http`, `tcp`, `ttl`, `serf`, ...).
    pub(crate) r#type: String,
    /// How the agent runs it.
    pub(crate) definition: CheckDefinition,
    pub(crate) raft: Indexes,
}

impl Check {
    pub(crate) fn to_api(&self) -> api::HealthCheck {
        let d = &self.definition;
        let go = |d: Option<Duration>| d.map(GoDuration);
        api::HealthCheck {
            node: self.node.to_string(),
            check_id: self.check_id.to_string(),
            name: self.name.clone(),
            status: self.status.to_api(),
            notes: self.notes.clone(),
            output: self.output.clone(),
            service_id: self.service_id.to_string(),
            service_name: self.service_name.clone(),
            service_tags: self.service_tags.clone(),
            r#type: self.r#type.clone(),
            definition: api::HealthCheckDefinition {
                http: d.http.clone(),
                method: d.method.clone(),
                header: d.header.clone(),
                body: d.body.clone(),
                tcp: d.tcp.clone(),
                interval: go(d.interval),
                timeout: go(d.timeout),
                ttl: go(d.ttl),
                deregister_critical_service_after: go(d.deregister_critical_service_after),
                // The store keeps what the servers act on; an alias's target matters only to
                // the agent that computes it.
                ..api::HealthCheckDefinition::default()
            },
            raft: self.raft.to_api(),
        }
    }
}

impl From<api::HealthCheck> for Check {
    fn from(c: api::HealthCheck) -> Self {
        let d = c.definition;
        let std = |d: Option<GoDuration>| d.map(|g| g.0);
        Check {
            node: c.node.into(),
            check_id: c.check_id.into(),
            name: c.name,
            status: c.status.into(),
            notes: c.notes,
            output: c.output,
            service_id: c.service_id.into(),
            service_name: c.service_name,
            service_tags: c.service_tags,
            r#type: c.r#type,
            definition: CheckDefinition {
                http: d.http,
                method: d.method,
                header: d.header,
                body: d.body,
                tcp: d.tcp,
                interval: std(d.interval),
                timeout: std(d.timeout),
                ttl: std(d.ttl),
                deregister_critical_service_after: std(d.deregister_critical_service_after),
            },
            raft: Indexes::default(),
        }
    }
}

/// Register a node, optionally one service instance, and checks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub(crate) struct Register {
    /// Node UUID.
    pub(crate) id: String,
    /// Node name (required).
    pub(crate) node: NodeName,
    /// Node address (required unless `skip_node_update`).
    pub(crate) address: String,
    /// Datacenter.
    pub(crate) datacenter: String,
    /// Node tagged addresses.
    pub(crate) tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    pub(crate) node_meta: BTreeMap<String, String>,
    /// A service instance to upsert.
    pub(crate) service: Option<Service>,
    /// Checks to upsert, in order (Consul's `Check` first, then `Checks`).
    pub(crate) checks: Vec<Check>,
    /// Leave the node record alone (it must exist).
    pub(crate) skip_node_update: bool,
}

impl From<api::RegisterRequest> for Register {
    fn from(r: api::RegisterRequest) -> Self {
        Register {
            id: r.id,
            node: r.node.into(),
            address: r.address,
            datacenter: r.datacenter,
            tagged_addresses: r.tagged_addresses,
            node_meta: r.node_meta,
            service: r.service.map(Service::from),
            checks: r
                .check
                .into_iter()
                .chain(r.checks)
                .map(Check::from)
                .collect(),
            skip_node_update: r.skip_node_update,
        }
    }
}

/// Deregister a node (and everything on it), one service instance, or one check.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Deregister {
    /// Node name (required).
    pub(crate) node: NodeName,
    /// Datacenter.
    pub(crate) datacenter: String,
    /// Remove only this service instance (and its checks).
    pub(crate) service_id: Option<ServiceId>,
    /// Remove only this check.
    pub(crate) check_id: Option<CheckId>,
}

impl From<api::DeregisterRequest> for Deregister {
    fn from(r: api::DeregisterRequest) -> Self {
        Deregister {
            node: r.node.into(),
            datacenter: r.datacenter,
            service_id: r.service_id.map(ServiceId::from),
            check_id: r.check_id.map(CheckId::from),
        }
    }
}
