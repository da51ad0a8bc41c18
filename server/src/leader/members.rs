//! Reconciles the LAN gossip pool into the catalog, as Consul's leader does
//! (`agent/consul/leader.go` `reconcileMember`, `reconcileReaped`):
//! - an alive member of this datacenter gets its node registered (ID from tag `id`, Address =
//!   its IP) with a passing `serfHealth` check; a server (`role=consul`) also gets the
//!   `consul` service (Port = tag `port`);
//! - a failed member's `serfHealth` turns critical; nothing else on the node changes (its
//!   sessions tied to `serfHealth` are invalidated by the store's usual rule);
//! - a member that left (or was reaped) is deregistered, as is any catalog node carrying a
//!   `serfHealth` check that is no longer a member at all;
//! - members of other datacenters (and other segments) are ignored; the leader never
//!   deregisters itself and registers itself with [`reconcile_self`](super::reconcile).
//!
//! [`plan`] is the decision, a pure function of the members and the tables, so it is tested
//! without sockets or Raft; [`reconcile_pool`] proposes what it returns.

use std::collections::{BTreeMap, BTreeSet};

use concord_api::catalog::{
    NodeService, CONSUL_SERVICE, SERF_HEALTH_ALIVE_OUTPUT, SERF_HEALTH_CHECK_ID,
    SERF_HEALTH_CHECK_NAME, SERF_HEALTH_FAILED_OUTPUT,
};
use concord_api::rpc::RpcError;
use concord_net::gossip::{Member, MemberStatus};

use crate::command::{now_ms, Command};
use crate::model::catalog::{Check, CheckStatus, Deregister, Register};
use crate::node::Shared;
use crate::state::Tables;

use super::reconcile::in_sync;

/// Tag naming a member's role: `consul` for servers, `node` for client agents.
const TAG_ROLE: &str = "role";
/// Tag with the member's datacenter.
const TAG_DC: &str = "dc";
/// Tag with the member's node ID (UUID).
const TAG_ID: &str = "id";
/// Tag with a server's RPC port.
const TAG_PORT: &str = "port";
/// Tag with the member's network segment (servers outside the default one are skipped).
const TAG_SEGMENT: &str = "segment";
/// Tag with `version:commit` of the member's build.
const TAG_BUILD: &str = "build";
/// Memberlist protocol versions every Concord member speaks (what Consul reports for a
/// default agent as `serf_protocol_*`, the member's `Protocol*`).
const PROTOCOL_MIN: &str = "1";
const PROTOCOL_MAX: &str = "5";
const PROTOCOL_CUR: &str = "2";

/// What the leader proposes to bring the catalog in line with the pool.
// A pass plans a handful of changes and moves each into a `Command` (which has the same
// shape, unboxed); boxing would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Change {
    /// Register (an alive member) or mark `serfHealth` critical (a failed one).
    Register(Register),
    /// Remove a node that left, was reaped, or is no longer a member.
    Deregister(Deregister),
}

impl Change {
    /// The node it is about.
    pub(crate) fn node(&self) -> &str {
        match self {
            Change::Register(r) => r.node.as_str(),
            Change::Deregister(d) => d.node.as_str(),
        }
    }

    fn into_command(self, now_ms: u64) -> Command {
        match self {
            Change::Register(request) => Command::Register { request, now_ms },
            Change::Deregister(request) => Command::Deregister { request, now_ms },
        }
    }
}

/// How the leader sees one member.
#[derive(Debug, PartialEq)]
enum Kind {
    /// A client agent of this datacenter.
    Client,
    /// A server of this datacenter, with its RPC port.
    Server(u16),
}

/// Whether the leader handles `member` (Consul's `shouldHandleMember`), and as what.
fn kind(member: &Member, datacenter: &str) -> Option<Kind> {
    let tag = |k: &str| member.tags.get(k).map(String::as_str);
    if tag(TAG_DC) != Some(datacenter) {
        return None;
    }
    match tag(TAG_ROLE) {
        Some("node") => Some(Kind::Client),
        Some("consul") if tag(TAG_SEGMENT).unwrap_or("").is_empty() => {
            // Consul does not treat a member without a valid port as a server at all.
            tag(TAG_PORT)?.parse().ok().map(Kind::Server)
        }
        _ => None,
    }
}

/// The changes that bring `tables` in line with `members`, in member name order, then the
/// deregistrations of former members. `leader` is this server's node name: never touched
/// here ([`reconcile_self`](super::reconcile::reconcile_self) registers it). Empty when the
/// catalog is already in sync.
pub(crate) fn plan(
    members: &[Member],
    leader: &str,
    datacenter: &str,
    tables: &Tables,
) -> Vec<Change> {
    let mut sorted: Vec<&Member> = members.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut changes = Vec::new();
    for member in sorted {
        if member.name == leader || member.name.is_empty() {
            continue;
        }
        let Some(kind) = kind(member, datacenter) else {
            continue;
        };
        let change = match member.status {
            MemberStatus::Alive => alive(member, &kind, datacenter, tables),
            MemberStatus::Failed => failed(member, tables),
            MemberStatus::Left => gone(&member.name, datacenter, tables),
            // Still answering while it announces its leave; Consul waits for `Left`.
            MemberStatus::Leaving => None,
        };
        changes.extend(change);
    }
    let known: BTreeSet<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let former: Vec<String> = tables
        .nodes_with_check(SERF_HEALTH_CHECK_ID)
        .filter(|node| node.as_str() != leader && !known.contains(node.as_str()))
        .map(|node| node.to_string())
        .collect();
    for node in former {
        changes.extend(gone(&node, datacenter, tables));
    }
    changes
}

/// An alive member's registration, unless the catalog already holds exactly it.
fn alive(member: &Member, kind: &Kind, datacenter: &str, tables: &Tables) -> Option<Change> {
    let name = member.name.as_str();
    let existing = tables.node(name);
    let service = match kind {
        Kind::Client => None,
        Kind::Server(port) => Some(
            // Built as the API type and converted, so it gets exactly the defaults (weights
            // 1/1, ...) an agent's registration of the same service would.
            NodeService {
                id: CONSUL_SERVICE.to_string(),
                service: CONSUL_SERVICE.to_string(),
                port: *port,
                meta: server_meta(member),
                ..NodeService::default()
            }
            .into(),
        ),
    };
    let want = Register {
        id: member.tags.get(TAG_ID).cloned().unwrap_or_default(),
        node: name.into(),
        address: member.addr.ip().to_string(),
        datacenter: datacenter.to_string(),
        // The agent's anti-entropy owns these; the leader keeps them as they are.
        tagged_addresses: existing
            .map(|n| n.tagged_addresses.clone())
            .unwrap_or_default(),
        node_meta: existing.map(|n| n.meta.clone()).unwrap_or_default(),
        service,
        checks: vec![serf_health(name, CheckStatus::Passing)],
        skip_node_update: false,
    };
    (!in_sync(tables, &want)).then_some(Change::Register(want))
}

/// A failed member's critical `serfHealth`, if it is in the catalog and not critical yet.
fn failed(member: &Member, tables: &Tables) -> Option<Change> {
    let name = member.name.as_str();
    tables.node(name)?;
    let want = serf_health(name, CheckStatus::Critical);
    let current = tables.check(name, SERF_HEALTH_CHECK_ID);
    if current.is_some_and(|c| c.status == want.status && c.output == want.output) {
        return None;
    }
    Some(Change::Register(Register {
        node: name.into(),
        checks: vec![want],
        // Only the check changes: address, services and other checks stay as they are.
        skip_node_update: true,
        ..Register::default()
    }))
}

/// Deregistration of a node that is no longer in the pool, if it is in the catalog.
fn gone(name: &str, datacenter: &str, tables: &Tables) -> Option<Change> {
    tables.node(name)?;
    Some(Change::Deregister(Deregister {
        node: name.into(),
        datacenter: datacenter.to_string(),
        service_id: None,
        check_id: None,
    }))
}

/// The `serfHealth` check with Consul's name and outputs.
pub(crate) fn serf_health(node: &str, status: CheckStatus) -> Check {
    let output = match status {
        CheckStatus::Passing => SERF_HEALTH_ALIVE_OUTPUT,
        _ => SERF_HEALTH_FAILED_OUTPUT,
    };
    Check {
        node: node.into(),
        check_id: SERF_HEALTH_CHECK_ID.into(),
        name: SERF_HEALTH_CHECK_NAME.to_string(),
        status,
        output: output.to_string(),
        r#type: "serf".to_string(),
        ..Check::default()
    }
}

/// The `consul` service's metadata Consul derives from a server's tags.
fn server_meta(member: &Member) -> BTreeMap<String, String> {
    let tag = |k: &str| member.tags.get(k).map(String::as_str);
    // `build` is `version:commit`; Consul shows the version alone.
    let version = tag(TAG_BUILD).unwrap_or("").split(':').next().unwrap_or("");
    let raft_version = tag("raft_vsn")
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    let mut meta = BTreeMap::from([
        ("non_voter", tag("nonvoter").is_some().to_string()),
        ("read_replica", tag("read_replica").is_some().to_string()),
        ("raft_version", raft_version.to_string()),
        ("serf_protocol_current", PROTOCOL_CUR.to_string()),
        ("serf_protocol_min", PROTOCOL_MIN.to_string()),
        ("serf_protocol_max", PROTOCOL_MAX.to_string()),
        ("version", version.to_string()),
    ]);
    for port in ["grpc_port", "grpc_tls_port"] {
        if let Some(p) = tag(port).filter(|p| p.parse::<u16>().is_ok_and(|p| p > 0)) {
            meta.insert(port, p.to_string());
        }
    }
    meta.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Proposes every change [`plan`] finds for the pool's current members. Stops at the first
/// failed proposal (the caller retries the whole pass).
pub(super) async fn reconcile_pool(shared: &Shared) -> Result<usize, RpcError> {
    let Some(gossip) = &shared.gossip else {
        return Ok(0);
    };
    let members = gossip.members();
    let config = &shared.config;
    let changes = shared
        .store
        .current()
        .view(|t| plan(&members, &config.node_name, &config.datacenter, t));
    let count = changes.len();
    for change in changes {
        match &change {
            Change::Register(r) if r.skip_node_update => {
                tracing::info!(node = %r.node, "member failed; marking serfHealth critical");
            }
            Change::Register(r) => {
                tracing::info!(node = %r.node, address = %r.address, "member alive; registering");
            }
            Change::Deregister(d) => {
                tracing::info!(node = %d.node, "member left or gone; deregistering");
            }
        }
        let node = change.node().to_string();
        shared
            .propose(change.into_command(now_ms()))
            .await
            .map_err(|e| RpcError::Internal(format!("reconciling member {node}: {e}")))?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests;
