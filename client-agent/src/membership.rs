//! The agent's side of the LAN gossip pool ([`concord_net::gossip::Gossip`], started by the
//! caller and shared with the server in the same process): member tags as Consul sets them,
//! the member JSON of `/v1/agent/members`, the server list client agents learn from the pool,
//! user events filtered on receipt into a bounded ring (`/v1/event/list`), and cluster-wide
//! keyring operations.
//!
//! Keyring operations reach every member as an internal user event ([`KEYRING_EVENT`]) that
//! each agent applies to its own keyring on receipt, instead of Serf's request/response
//! queries: the originating agent applies the operation first (so a bad key is refused with
//! an error before anything is sent), then fires the event. Per-member counts come from the
//! key fingerprints every member advertises in its gossip metadata.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use concord_api::agent::Member;
use concord_net::gossip::{self, Gossip, MemberEvent, MemberStatus, UserEvent};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::agent::AgentCore;
use crate::config::Config;

/// Events `/v1/event/list` remembers (Consul's agent keeps 256).
pub const EVENT_RING: usize = 256;
/// Name of the internal event that carries a keyring operation to every member.
pub const KEYRING_EVENT: &str = "_concord-keyring";
/// Consul's remote-exec event; never stored (Concord has no remote exec).
const REXEC_EVENT: &str = "_rexec";
/// The default LAN gossip port (Consul's `serf_lan`).
pub const DEFAULT_SERF_LAN_PORT: u16 = 8301;

/// The agent's handle on the gossip pool.
pub struct Membership {
    /// The pool itself.
    pub gossip: Gossip,
    /// Events that passed this agent's filters, oldest first, at most [`EVENT_RING`].
    events: Mutex<VecDeque<UserEvent>>,
    /// Bumped on every stored event; blocking `/v1/event/list` waits on it.
    events_changed: watch::Sender<u64>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership").finish_non_exhaustive()
    }
}

impl Membership {
    /// Wraps a running pool.
    pub fn new(gossip: Gossip) -> Arc<Membership> {
        Arc::new(Membership {
            gossip,
            events: Mutex::new(VecDeque::with_capacity(EVENT_RING)),
            events_changed: watch::channel(0).0,
        })
    }

    /// Stored events, oldest first.
    pub fn events(&self) -> Vec<UserEvent> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// A receiver that changes whenever an event is stored.
    pub fn watch_events(&self) -> watch::Receiver<u64> {
        self.events_changed.subscribe()
    }

    fn store_event(&self, event: UserEvent) {
        {
            let mut ring = self.events.lock().unwrap_or_else(|e| e.into_inner());
            if ring.len() == EVENT_RING {
                ring.pop_front();
            }
            ring.push_back(event);
        }
        self.events_changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The tags this agent gossips, as Consul sets them (agent/consul `server_serf.go`,
/// `client_serf.go`): `role` (`consul` for servers, `node` for clients), `dc`, `segment`,
/// `id`, the Consul protocol versions, `build`, and for servers the RPC `port`, `raft_vsn`,
/// `expect`, `acls` and feature flags.
pub fn member_tags(config: &Config, bootstrap_expect: usize) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        tags.insert(k.to_string(), v);
    };
    set("role", if config.server { "consul" } else { "node" }.into());
    set("dc", config.datacenter.clone());
    set("segment", String::new());
    set("id", config.node_id.clone());
    set("vsn", "2".into());
    set("vsn_min", "2".into());
    set("vsn_max", "3".into());
    set(
        "build",
        format!("{}:concord", concord_api::CONSUL_COMPAT_VERSION),
    );
    if config.server {
        set("port", config.server_port.to_string());
        set("raft_vsn", "3".into());
        set("acls", "0".into());
        set("ft_fs", "1".into());
        set("ft_si", "1".into());
        if bootstrap_expect > 0 {
            set("expect", bootstrap_expect.to_string());
        }
    }
    tags
}

/// A pool member as `/v1/agent/members` shows it, with the protocol numbers of a default
/// Consul agent (memberlist 1..5, current 2; Serf 2..5, current 4).
pub fn member_json(m: &gossip::Member) -> Member {
    Member {
        name: m.name.clone(),
        addr: m.addr.ip().to_string(),
        port: m.addr.port(),
        tags: m.tags.clone(),
        status: m.status.code(),
        protocol_min: 1,
        protocol_max: 5,
        protocol_cur: 2,
        delegate_min: 2,
        delegate_max: 5,
        delegate_cur: 4,
    }
}

/// Server RPC addresses of the pool: alive members with `role=consul` in `datacenter`, at
/// their gossip IP and the RPC port of their `port` tag. Sorted, so an unchanged pool gives
/// an unchanged list.
pub fn servers_in(members: &[gossip::Member], datacenter: &str) -> Vec<SocketAddr> {
    let mut servers: Vec<SocketAddr> = members
        .iter()
        .filter(|m| m.status == MemberStatus::Alive)
        .filter(|m| m.tags.get("role").map(String::as_str) == Some("consul"))
        .filter(|m| m.tags.get("dc").map(String::as_str) == Some(datacenter))
        .filter_map(|m| {
            let port = m.tags.get("port")?.parse::<u16>().ok()?;
            Some(SocketAddr::new(m.addr.ip(), port))
        })
        .collect();
    servers.sort();
    servers.dedup();
    servers
}

/// A join address, `HOST[:PORT]` (port defaults to the LAN gossip port; IPv6 in brackets),
/// resolved. Fails with the resolver's error text.
pub async fn resolve_join_addr(text: &str) -> Result<Vec<SocketAddr>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty address".to_string());
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, DEFAULT_SERF_LAN_PORT)]);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let with_port = if text.rsplit_once(':').is_some_and(|(h, p)| {
        !h.is_empty() && !h.ends_with(']') && !p.is_empty() && p.parse::<u16>().is_ok()
    }) {
        text.to_string()
    } else {
        format!("{text}:{DEFAULT_SERF_LAN_PORT}")
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| format!("{text}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{text}: no addresses"));
    }
    Ok(addrs)
}

/// Joins the pool through the given addresses; returns how many answered.
pub async fn join(gossip: &Gossip, addrs: &[String]) -> Result<usize, String> {
    let mut resolved = Vec::new();
    let mut errors = Vec::new();
    for a in addrs {
        match resolve_join_addr(a).await {
            Ok(mut v) => resolved.append(&mut v),
            Err(e) => errors.push(e),
        }
    }
    if resolved.is_empty() {
        return Err(errors.join("; "));
    }
    gossip.join(&resolved).await.map_err(|e| e.to_string())
}

/// A keyring operation carried by [`KEYRING_EVENT`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyringOp {
    /// `install`, `use` or `remove`.
    pub op: String,
    /// The key, base64.
    pub key: String,
}

/// Applies a keyring operation to this member's keyring.
pub fn apply_keyring_op(gossip: &Gossip, op: &KeyringOp) -> Result<(), String> {
    if gossip.list_keys().is_empty() {
        return Err("No keyring to modify (encryption not enabled)".to_string());
    }
    let result = match op.op.as_str() {
        "install" => gossip.install_key(&op.key),
        "use" => gossip.use_key(&op.key),
        "remove" => gossip.remove_key(&op.key),
        other => return Err(format!("unknown keyring operation {other:?}")),
    };
    result.map_err(|e| match e {
        gossip::GossipError::BadKey(_) => "key size must be 16, 24 or 32 bytes".to_string(),
        gossip::GossipError::KeyNotInstalled => "requested key is not in the keyring".to_string(),
        gossip::GossipError::RemovePrimaryKey => {
            "removing the primary key is not allowed".to_string()
        }
        other => other.to_string(),
    })
}

/// Whether this agent should act on a user event (Consul's `shouldProcessUserEvent`): the
/// node filter must match the node name, the service filter one local service ID and, if
/// given, the tag filter one of that service's tags. Unanchored regexps; one that does not
/// compile drops the event.
pub fn event_matches(core: &AgentCore, event: &UserEvent) -> bool {
    let f = &event.filters;
    if !f.node.is_empty() {
        match regex::Regex::new(&f.node) {
            Ok(re) if re.is_match(&core.config.node_name) => {}
            _ => return false,
        }
    }
    if f.service.is_empty() {
        return true;
    }
    let Ok(service_re) = regex::Regex::new(&f.service) else {
        return false;
    };
    let tag_re = if f.tag.is_empty() {
        None
    } else {
        match regex::Regex::new(&f.tag) {
            Ok(re) => Some(re),
            Err(_) => return false,
        }
    };
    core.local.services().iter().any(|svc| {
        service_re.is_match(&svc.id)
            && tag_re
                .as_ref()
                .is_none_or(|re| svc.tags.iter().any(|t| re.is_match(t)))
    })
}

/// Follows the pool until `stop`: keeps the server list of `core.rpc` in step with the
/// servers in the pool (plus the configured ones), stores matching user events, applies
/// keyring operations. It subscribes before returning the future, so nothing that happens
/// after this call is missed, even before the task first runs.
pub fn follow(
    core: Arc<AgentCore>,
    membership: Arc<Membership>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut events = membership.gossip.subscribe();
    async move {
        let refresh_servers = || {
            let mut servers = core.config.servers.clone();
            servers.extend(servers_in(
                &membership.gossip.members(),
                &core.config.datacenter,
            ));
            servers.sort();
            servers.dedup();
            core.rpc.set_servers(servers);
        };
        refresh_servers();
        tokio::pin!(stop);
        loop {
            let event = tokio::select! {
                _ = &mut stop => return,
                e = events.recv() => e,
            };
            match event {
                Ok(MemberEvent::User(e)) => on_user_event(&core, &membership, e),
                Ok(_) => refresh_servers(),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "gossip events lost; re-reading the member list");
                    refresh_servers();
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

fn on_user_event(core: &AgentCore, membership: &Membership, event: UserEvent) {
    if event.name == KEYRING_EVENT {
        match serde_json::from_slice::<KeyringOp>(&event.payload) {
            Ok(op) => {
                // The origin applied it already; applying twice is harmless except for a
                // second remove, which finds nothing to remove.
                if let Err(e) = apply_keyring_op(&membership.gossip, &op) {
                    if event.origin != core.config.node_name {
                        tracing::warn!(op = %op.op, error = %e, "keyring operation failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "malformed keyring event"),
        }
        return;
    }
    if event.name == REXEC_EVENT || !event_matches(core, &event) {
        return;
    }
    membership.store_event(event);
}

/// An event ID as Consul shows it (a UUID).
pub fn event_uuid(id: u128) -> String {
    uuid::Uuid::from_u128(id).to_string()
}

/// Consul's `uuidToUint64`: the first 16 hex digits XOR the last 16, i.e. the two halves of
/// the 128-bit ID.
pub fn event_index(id: u128) -> u64 {
    ((id >> 64) as u64) ^ (id as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_index_is_uuid_to_uint64() {
        let id = uuid::Uuid::parse_str("0123abcd-ef01-2345-6789-abcdef012345")
            .unwrap()
            .as_u128();
        assert_eq!(event_uuid(id), "0123abcd-ef01-2345-6789-abcdef012345");
        assert_eq!(
            event_index(id),
            0x0123_abcd_ef01_2345_u64 ^ 0x6789_abcd_ef01_2345_u64
        );
    }

    fn member(name: &str, ip: &str, tags: &[(&str, &str)], status: MemberStatus) -> gossip::Member {
        gossip::Member {
            name: name.into(),
            addr: SocketAddr::new(ip.parse().unwrap(), 8301),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            status,
        }
    }

    #[test]
    fn servers_are_alive_consul_members_of_our_dc() {
        let members = vec![
            member(
                "s1",
                "10.0.0.1",
                &[("role", "consul"), ("dc", "dc1"), ("port", "8300")],
                MemberStatus::Alive,
            ),
            member(
                "s2",
                "10.0.0.2",
                &[("role", "consul"), ("dc", "dc1"), ("port", "9300")],
                MemberStatus::Failed,
            ),
            member(
                "s3",
                "10.0.0.3",
                &[("role", "consul"), ("dc", "dc2"), ("port", "8300")],
                MemberStatus::Alive,
            ),
            member(
                "c1",
                "10.0.0.4",
                &[("role", "node"), ("dc", "dc1")],
                MemberStatus::Alive,
            ),
            member(
                "s4",
                "10.0.0.5",
                &[("role", "consul"), ("dc", "dc1"), ("port", "x")],
                MemberStatus::Alive,
            ),
        ];
        assert_eq!(
            servers_in(&members, "dc1"),
            vec!["10.0.0.1:8300".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn tags_follow_consul() {
        let mut config = Config::new("n", Vec::new());
        config.node_id = "id-1".into();
        let client = member_tags(&config, 0);
        assert_eq!(client["role"], "node");
        assert!(!client.contains_key("port"));
        config.server = true;
        config.server_port = 9300;
        let server = member_tags(&config, 1);
        assert_eq!(server["role"], "consul");
        assert_eq!(server["port"], "9300");
        assert_eq!(server["expect"], "1");
        assert_eq!(server["id"], "id-1");
        assert_eq!(server["vsn"], "2");
    }

    #[tokio::test]
    async fn join_addresses_default_to_the_lan_port() {
        assert_eq!(
            resolve_join_addr("127.0.0.2").await.unwrap(),
            vec!["127.0.0.2:8301".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve_join_addr("127.0.0.2:9000").await.unwrap(),
            vec!["127.0.0.2:9000".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve_join_addr("::1").await.unwrap(),
            vec!["[::1]:8301".parse::<SocketAddr>().unwrap()]
        );
        assert!(resolve_join_addr("").await.is_err());
    }
}
