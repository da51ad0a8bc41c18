//! Catalog and health records: nodes, service instances and health checks, in Consul's JSON
//! shape. The same types are the server's stored records and the HTTP response bodies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::duration::GoDuration;

/// ID (and default session node check) of the node check that stands for gossip health, which
/// the leader keeps on every member's node (Consul's `structs.SerfCheckID`).
pub const SERF_HEALTH_CHECK_ID: &str = "serfHealth";
/// Name of that check (Consul's `structs.SerfCheckName`).
pub const SERF_HEALTH_CHECK_NAME: &str = "Serf Health Status";
/// Output of that check while the member is alive (Consul's `structs.SerfCheckAliveOutput`).
pub const SERF_HEALTH_ALIVE_OUTPUT: &str = "Agent alive and reachable";
/// Output of that check once the member failed (Consul's `structs.SerfCheckFailedOutput`).
pub const SERF_HEALTH_FAILED_OUTPUT: &str = "Agent not live or unreachable";
/// Name and ID of the service every server provides, and the `role` gossip tag of servers.
pub const CONSUL_SERVICE: &str = "consul";

/// The Raft indexes every stored record carries.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct RaftIndex {
    /// Raft index of the write that created the record.
    #[serde(default)]
    pub create_index: u64,
    /// Raft index of the last write that changed the record.
    #[serde(default)]
    pub modify_index: u64,
}

/// Health status of a check. Ordered so that `max` gives the aggregate (critical is worst).
/// The default, critical, is what a check registered without a status starts as (Consul's).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Healthy.
    Passing,
    /// Degraded but still served by DNS (unless only-passing).
    Warning,
    /// Unhealthy: dropped from DNS and `?passing`.
    #[default]
    Critical,
}

impl CheckStatus {
    /// The wire name: `passing`, `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }

    /// Parses a wire name; anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "passing" => Some(CheckStatus::Passing),
            "warning" => Some(CheckStatus::Warning),
            "critical" => Some(CheckStatus::Critical),
            _ => None,
        }
    }
}

/// A node in the catalog (`/v1/catalog/nodes` row).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    /// Node UUID (may be empty for externally registered nodes).
    #[serde(rename = "ID", default)]
    pub id: String,
    /// Node name, unique in the datacenter.
    pub node: String,
    /// Address services on this node default to.
    pub address: String,
    /// Datacenter name.
    #[serde(default)]
    pub datacenter: String,
    /// Named addresses (`lan`, `wan`, ...).
    #[serde(default)]
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// Raft indexes.
    #[serde(flatten)]
    pub raft: RaftIndex,
}

/// Relative DNS SRV weights of a service instance by health.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Weights {
    /// Weight while all checks pass.
    pub passing: u32,
    /// Weight while some check warns.
    pub warning: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

/// A named address of a service (`TaggedAddresses` values).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceAddress {
    /// IP or hostname.
    pub address: String,
    /// Port.
    pub port: u16,
}

/// A service instance on a node (Consul's `NodeService`): the `Service` of health results,
/// the values of `/v1/agent/services` and of `/v1/catalog/node/:node`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct NodeService {
    /// Instance ID, unique per node.
    #[serde(rename = "ID", default)]
    pub id: String,
    /// Service name.
    pub service: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Instance address; empty means "use the node's address".
    #[serde(default)]
    pub address: String,
    /// Named addresses.
    #[serde(default)]
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    /// Metadata.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// Port (0 = none).
    #[serde(default)]
    pub port: u16,
    /// SRV weights.
    #[serde(default)]
    pub weights: Weights,
    /// Whether catalog-side tag edits survive anti-entropy.
    #[serde(default)]
    pub enable_tag_override: bool,
    /// `""` for a typical service, or `connect-proxy`, gateways...
    #[serde(default)]
    pub kind: String,
    /// Proxy configuration (kept as given until Connect types land).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<serde_json::Value>,
    /// Connect configuration (kept as given until Connect types land).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<serde_json::Value>,
    /// Datacenter (agent responses only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub datacenter: String,
    /// Raft indexes (zero in agent responses).
    #[serde(flatten)]
    pub raft: RaftIndex,
}

/// How a check is run, as stored in the catalog (`HealthCheck.Definition`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HealthCheckDefinition {
    /// URL for HTTP checks.
    #[serde(rename = "HTTP", default, skip_serializing_if = "String::is_empty")]
    pub http: String,
    /// HTTP method (default GET).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// HTTP headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub header: BTreeMap<String, Vec<String>>,
    /// HTTP request body.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    /// `host:port` for TCP checks.
    #[serde(rename = "TCP", default, skip_serializing_if = "String::is_empty")]
    pub tcp: String,
    /// How often the check runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<GoDuration>,
    /// Per-run timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
    /// TTL for TTL checks.
    #[serde(rename = "TTL", default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<GoDuration>,
    /// Remove the service after the check was critical this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregister_critical_service_after: Option<GoDuration>,
    /// Node whose health an alias check mirrors (empty: the agent's own).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alias_node: String,
    /// Service instance whose health an alias check mirrors.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alias_service: String,
}

/// A health check (Consul's `HealthCheck`), in the catalog and in agent responses.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HealthCheck {
    /// Node the check belongs to.
    #[serde(default)]
    pub node: String,
    /// Check ID, unique per node.
    #[serde(rename = "CheckID", default)]
    pub check_id: String,
    /// Human name.
    #[serde(default)]
    pub name: String,
    /// Current status (critical when not given).
    #[serde(default)]
    pub status: CheckStatus,
    /// Operator notes.
    #[serde(default)]
    pub notes: String,
    /// Output of the last run.
    #[serde(default)]
    pub output: String,
    /// Service instance the check guards; empty for a node-level check.
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    /// Name of that service.
    #[serde(default)]
    pub service_name: String,
    /// Tags of that service (never null on the wire).
    #[serde(default)]
    pub service_tags: Vec<String>,
    /// Check kind: `ttl`, `http`, `tcp`, `serf`, or empty for externally registered checks.
    #[serde(default)]
    pub r#type: String,
    /// How the check runs.
    #[serde(default)]
    pub definition: HealthCheckDefinition,
    /// Raft indexes.
    #[serde(flatten)]
    pub raft: RaftIndex,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            node: String::new(),
            check_id: String::new(),
            name: String::new(),
            status: CheckStatus::Critical,
            notes: String::new(),
            output: String::new(),
            service_id: String::new(),
            service_name: String::new(),
            service_tags: Vec::new(),
            r#type: String::new(),
            definition: HealthCheckDefinition::default(),
            raft: RaftIndex::default(),
        }
    }
}

/// A flat `/v1/catalog/service/:name` row (Consul's `ServiceNode`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceNode {
    /// Node UUID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name.
    pub node: String,
    /// Node address.
    pub address: String,
    /// Datacenter.
    pub datacenter: String,
    /// Node tagged addresses.
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    pub node_meta: BTreeMap<String, String>,
    /// Service kind.
    pub service_kind: String,
    /// Instance ID.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Service name.
    pub service_name: String,
    /// Tags.
    pub service_tags: Vec<String>,
    /// Instance address (empty: use `Address`).
    pub service_address: String,
    /// Instance tagged addresses.
    pub service_tagged_addresses: BTreeMap<String, ServiceAddress>,
    /// SRV weights.
    pub service_weights: Weights,
    /// Metadata.
    pub service_meta: BTreeMap<String, String>,
    /// Port.
    pub service_port: u16,
    /// Tag override flag.
    pub service_enable_tag_override: bool,
    /// Proxy configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_proxy: Option<serde_json::Value>,
    /// Connect configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_connect: Option<serde_json::Value>,
    /// Raft indexes of the service record.
    #[serde(flatten)]
    pub raft: RaftIndex,
}

impl ServiceNode {
    /// Flattens a node and one of its services into a catalog row.
    pub fn new(node: &Node, svc: &NodeService) -> Self {
        ServiceNode {
            id: node.id.clone(),
            node: node.node.clone(),
            address: node.address.clone(),
            datacenter: node.datacenter.clone(),
            tagged_addresses: node.tagged_addresses.clone(),
            node_meta: node.meta.clone(),
            service_kind: svc.kind.clone(),
            service_id: svc.id.clone(),
            service_name: svc.service.clone(),
            service_tags: svc.tags.clone(),
            service_address: svc.address.clone(),
            service_tagged_addresses: svc.tagged_addresses.clone(),
            service_weights: svc.weights,
            service_meta: svc.meta.clone(),
            service_port: svc.port,
            service_enable_tag_override: svc.enable_tag_override,
            service_proxy: svc.proxy.clone(),
            service_connect: svc.connect.clone(),
            raft: svc.raft,
        }
    }
}

/// One `/v1/health/service/:name` entry: an instance, its node, and every check that applies
/// (the service's own checks and the node-level checks).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct CheckServiceNode {
    /// The node.
    pub node: Node,
    /// The instance.
    pub service: NodeService,
    /// Node checks and service checks.
    pub checks: Vec<HealthCheck>,
}

impl CheckServiceNode {
    /// Worst status over all checks; an instance with no checks is passing.
    pub fn aggregate_status(&self) -> CheckStatus {
        self.checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(CheckStatus::Passing)
    }
}

/// `/v1/catalog/node/:node` body.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct NodeServices {
    /// The node.
    pub node: Node,
    /// Its services keyed by instance ID.
    pub services: BTreeMap<String, NodeService>,
}

/// `PUT /v1/catalog/register` body, also what anti-entropy sends.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterRequest {
    /// Node UUID.
    #[serde(rename = "ID", default)]
    pub id: String,
    /// Node name (required).
    #[serde(default)]
    pub node: String,
    /// Node address (required).
    #[serde(default)]
    pub address: String,
    /// Datacenter.
    #[serde(default)]
    pub datacenter: String,
    /// Node tagged addresses.
    #[serde(default)]
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    #[serde(default)]
    pub node_meta: BTreeMap<String, String>,
    /// A service to register on the node.
    #[serde(default)]
    pub service: Option<NodeService>,
    /// A check to register.
    #[serde(default)]
    pub check: Option<HealthCheck>,
    /// More checks to register.
    #[serde(default)]
    pub checks: Vec<HealthCheck>,
    /// Leave the node record as it is (only add the service/checks).
    #[serde(default)]
    pub skip_node_update: bool,
}

/// `PUT /v1/catalog/deregister` body. With only `Node`, removes the node and everything on it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct DeregisterRequest {
    /// Node name (required).
    #[serde(default)]
    pub node: String,
    /// Datacenter.
    #[serde(default)]
    pub datacenter: String,
    /// Remove only this service instance (and its checks).
    #[serde(rename = "ServiceID", default)]
    pub service_id: Option<String>,
    /// Remove only this check.
    #[serde(rename = "CheckID", default)]
    pub check_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_prefers_worst() {
        let mut entry = CheckServiceNode {
            node: Node::default(),
            service: NodeService::default(),
            checks: vec![],
        };
        assert_eq!(entry.aggregate_status(), CheckStatus::Passing);
        for status in [
            CheckStatus::Passing,
            CheckStatus::Critical,
            CheckStatus::Warning,
        ] {
            entry.checks.push(HealthCheck {
                status,
                ..HealthCheck::default()
            });
        }
        assert_eq!(entry.aggregate_status(), CheckStatus::Critical);
    }

    #[test]
    fn node_service_wire_names() {
        let svc = NodeService {
            id: "web1".into(),
            service: "web".into(),
            port: 8080,
            ..NodeService::default()
        };
        let v = serde_json::to_value(&svc).unwrap();
        assert_eq!(v["ID"], "web1");
        assert_eq!(v["Service"], "web");
        assert_eq!(v["Port"], 8080);
        assert_eq!(v["Weights"]["Passing"], 1);
        assert_eq!(v["CreateIndex"], 0);
    }
}
