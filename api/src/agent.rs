//! Agent request bodies: service and check definitions as users register them, and gossip
//! members. Decode these with [`crate::decode::decode_lenient`] so case-insensitive and
//! snake_case keys work as they do in Consul.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{ServiceAddress, Weights};
use crate::duration::GoDuration;

/// `PUT /v1/agent/service/register` body.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceDefinition {
    /// Instance ID; defaults to `Name`.
    #[serde(rename = "ID", default)]
    pub id: Option<String>,
    /// Service name (required).
    #[serde(default)]
    pub name: String,
    /// Tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Instance address; empty means the node's address.
    #[serde(default)]
    pub address: Option<String>,
    /// Named addresses.
    #[serde(default)]
    pub tagged_addresses: Option<BTreeMap<String, ServiceAddress>>,
    /// Metadata.
    #[serde(default)]
    pub meta: Option<BTreeMap<String, String>>,
    /// Port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Service kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// Proxy configuration (opaque until Connect lands).
    #[serde(default)]
    pub proxy: Option<serde_json::Value>,
    /// Connect configuration (opaque until Connect lands).
    #[serde(default)]
    pub connect: Option<serde_json::Value>,
    /// One check.
    #[serde(default)]
    pub check: Option<CheckDefinition>,
    /// More checks.
    #[serde(default)]
    pub checks: Option<Vec<CheckDefinition>>,
    /// Whether catalog-side tag edits survive anti-entropy.
    #[serde(default)]
    pub enable_tag_override: Option<bool>,
    /// DNS SRV weights (default passing 1, warning 1).
    #[serde(default)]
    pub weights: Option<Weights>,
    /// Enterprise namespace; only `default` (or empty) is accepted.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// A check definition, in a service's `Check`/`Checks` or in `PUT /v1/agent/check/register`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct CheckDefinition {
    /// Check ID (`ID`); defaults to the name, or `service:<id>` inside a service.
    #[serde(rename = "ID", default)]
    pub id: Option<String>,
    /// Alias of `ID` (`CheckID`).
    #[serde(rename = "CheckID", default)]
    pub check_id: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Notes.
    #[serde(default)]
    pub notes: Option<String>,
    /// Initial status (default critical).
    #[serde(default)]
    pub status: Option<String>,
    /// Service instance the check guards.
    #[serde(rename = "ServiceID", default)]
    pub service_id: Option<String>,
    /// Run interval (HTTP and TCP checks).
    #[serde(default)]
    pub interval: Option<GoDuration>,
    /// Per-run timeout (default 10s).
    #[serde(default)]
    pub timeout: Option<GoDuration>,
    /// TTL (TTL checks).
    #[serde(rename = "TTL", default)]
    pub ttl: Option<GoDuration>,
    /// URL to GET (HTTP checks).
    #[serde(rename = "HTTP", default)]
    pub http: Option<String>,
    /// HTTP method.
    #[serde(default)]
    pub method: Option<String>,
    /// HTTP headers.
    #[serde(default)]
    pub header: Option<BTreeMap<String, Vec<String>>>,
    /// HTTP body.
    #[serde(default)]
    pub body: Option<String>,
    /// Report a redirect as the result instead of following it.
    #[serde(default)]
    pub disable_redirects: Option<bool>,
    /// Skip TLS verification (accepted; HTTPS checks are not run yet, see docs/api.md).
    #[serde(rename = "TLSSkipVerify", default)]
    pub tls_skip_verify: Option<bool>,
    /// `host:port` (TCP checks).
    #[serde(rename = "TCP", default)]
    pub tcp: Option<String>,
    /// Remove the service after the check was critical this long.
    #[serde(default)]
    pub deregister_critical_service_after: Option<GoDuration>,
    /// Script checks (rejected: script checks are disabled, as in Consul by default).
    #[serde(default)]
    pub args: Option<Vec<String>>,
    /// Old name of `Args`.
    #[serde(default)]
    pub script_args: Option<Vec<String>>,
    /// gRPC checks (not supported yet).
    #[serde(rename = "GRPC", default)]
    pub grpc: Option<String>,
    /// UDP checks (not supported yet).
    #[serde(rename = "UDP", default)]
    pub udp: Option<String>,
    /// H2 ping checks (not supported yet).
    #[serde(rename = "H2PING", default)]
    pub h2ping: Option<String>,
    /// Alias checks (not supported yet).
    #[serde(default)]
    pub alias_service: Option<String>,
    /// Alias checks (not supported yet).
    #[serde(default)]
    pub alias_node: Option<String>,
    /// Most output bytes this check keeps; only lowers the agent's
    /// `check_output_max_size` (0 or absent: the agent's). Negative is refused.
    #[serde(default)]
    pub output_max_size: Option<i64>,
}

/// `PUT /v1/agent/check/update/:id` body.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct CheckUpdate {
    /// New status.
    #[serde(default)]
    pub status: String,
    /// New output.
    #[serde(default)]
    pub output: String,
}

/// Gossip membership status, numbered as Serf numbers them.
pub mod member_status {
    /// Alive.
    pub const ALIVE: u8 = 1;
    /// Leaving gracefully.
    pub const LEAVING: u8 = 2;
    /// Left.
    pub const LEFT: u8 = 3;
    /// Failed.
    pub const FAILED: u8 = 4;
}

/// A `/v1/agent/members` row.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Member {
    /// Node name.
    pub name: String,
    /// Gossip address.
    pub addr: String,
    /// Gossip port.
    pub port: u16,
    /// Tags: `role` (`consul` for servers, `node` for clients), `dc`, `port` (server RPC), ...
    pub tags: BTreeMap<String, String>,
    /// See [`member_status`].
    pub status: u8,
    /// Protocol versions (Serf's; reported for tool compatibility).
    pub protocol_min: u8,
    /// See `protocol_min`.
    pub protocol_max: u8,
    /// See `protocol_min`.
    pub protocol_cur: u8,
    /// See `protocol_min`.
    pub delegate_min: u8,
    /// See `protocol_min`.
    pub delegate_max: u8,
    /// See `protocol_min`.
    pub delegate_cur: u8,
}

/// A service as the agent reports it (`/v1/agent/services` values, `/v1/agent/service/:id`):
/// Consul's `AgentService`, which omits empty optional fields and carries no Raft indexes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct AgentService {
    /// `""` for a typical service, or `connect-proxy`, gateways... (omitted when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Instance ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Service name.
    pub service: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// Port.
    pub port: u16,
    /// Instance address (empty: the node's).
    pub address: String,
    /// Named addresses (omitted when empty).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    /// SRV weights.
    pub weights: Weights,
    /// Tag override flag.
    pub enable_tag_override: bool,
    /// Proxy configuration (omitted when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<serde_json::Value>,
    /// Connect configuration (omitted when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<serde_json::Value>,
    /// Hash of the definition for hash-based blocking (only on `/v1/agent/service/:id`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content_hash: String,
    /// Datacenter.
    pub datacenter: String,
}

impl AgentService {
    /// The agent's view of a service instance in `datacenter`.
    pub fn new(svc: crate::catalog::NodeService, datacenter: &str) -> Self {
        AgentService {
            kind: svc.kind,
            id: svc.id,
            service: svc.service,
            tags: svc.tags,
            meta: svc.meta,
            port: svc.port,
            address: svc.address,
            tagged_addresses: svc.tagged_addresses,
            weights: svc.weights,
            enable_tag_override: svc.enable_tag_override,
            proxy: svc.proxy,
            connect: svc.connect,
            content_hash: String::new(),
            datacenter: datacenter.to_string(),
        }
    }
}
