//! The agent's side of the LAN gossip pool ([`concord_net::gossip::Gossip`], started by the
//! caller and shared with the server in the same process): member tags as Consul sets them,
//! the member JSON of `/v1/agent/members`, the server list client agents learn from the pool,
//! user events filtered on receipt into a bounded ring (`/v1/event/list`), and cluster-wide
//! keyring operations.
//!
//! Keyring changes reach every member as an internal user event ([`KEYRING_EVENT`]) instead
//! of Serf's request/response queries. The event carries the whole keyring the change leads
//! to ([`KeyringState`]), not the operation, and is ordered by its Lamport time (see
//! [`Membership::change_keyring`] for why). Whether a change has reached a member, and the
//! per-member counts of `keyring -list`, come from the key fingerprints every member
//! advertises in its gossip metadata, primary first ([`wait_for_keyring`]).

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concord_api::agent::Member;
use concord_net::gossip::{self, Gossip, MemberStatus, UserEvent};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::Config;

/// Events `/v1/event/list` remembers (Consul's agent keeps 256).
pub const EVENT_RING: usize = 256;
/// Name of the internal event that carries a keyring operation to every member.
pub const KEYRING_EVENT: &str = "_concord-keyring";
/// Consul's remote-exec event; never stored (Concord has no remote exec).
pub(crate) const REXEC_EVENT: &str = "_rexec";
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
    /// Lamport time and origin of the newest keyring state applied here (`None` before the
    /// first). A std mutex: it is held only across synchronous work (compute, fire, apply),
    /// and holding it while firing serializes this agent's own changes, so two requests
    /// never both start from the same keyring.
    keyring_version: Mutex<Option<KeyringVersion>>,
}

/// Orders keyring states: Lamport time of the event that carried it, then origin node name
/// (two agents may fire at the same Lamport time; the name breaks the tie the same way on
/// every member).
type KeyringVersion = (u64, String);

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
            keyring_version: Mutex::new(None),
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

    /// Applies `op` here and sends the resulting keyring to every member; returns once it is
    /// applied locally (use [`wait_for_keyring`] to wait for the others). Errors are Serf's
    /// per-node texts.
    ///
    /// Why whole states ordered by Lamport time: keyring operations do not commute (a `use`
    /// arriving before its `install` fails, a `remove` arriving before its `use` is refused
    /// as "removing the primary key"), and gossip delivers events in any order, so
    /// broadcasting operations let members that got them out of order keep a different
    /// primary and split the pool. A whole state is idempotent and can be applied from any
    /// previous state, so "newest wins" converges whatever the arrival order, and a member
    /// that missed an intermediate change catches up with the next one. The user event's
    /// Lamport time (already kept in step by gossip and push-pull) supplies "newest" with no
    /// new clock; Lamport order also follows causality, so a change made after seeing another
    /// always wins over it. Concurrent changes from two agents: the later (time, origin)
    /// wins on every member; the loser's wait then times out and says so.
    pub fn change_keyring(&self, op: &KeyringOp) -> Result<(), String> {
        let mut version = self
            .keyring_version
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let current = local_keys(&self.gossip);
        if current.is_empty() {
            return Err("No keyring to modify (encryption not enabled)".to_string());
        }
        let keys = next_keyring(&current, op)?;
        if keys == current {
            // Nothing changes here (installing a key twice, removing an absent key); others
            // may still lag behind an earlier change, which the caller's wait covers.
            return Ok(());
        }
        let payload = serde_json::to_vec(&KeyringState { keys: keys.clone() })
            .map_err(|e| format!("encoding keyring state: {e}"))?;
        let event = self
            .gossip
            .fire_event(KEYRING_EVENT, payload, gossip::EventFilters::default())
            .map_err(|e| format!("error broadcasting keyring change: {e}"))?;
        self.gossip.set_keys(&keys).map_err(|e| e.to_string())?;
        *version = Some((event.ltime, event.origin));
        Ok(())
    }

    /// Applies a keyring state received from the pool if it is newer than the last one
    /// applied here; returns whether it was applied. An agent without encryption ignores it:
    /// turning encryption on from a gossip message would cut it off from its peers.
    pub fn apply_keyring_state(&self, at: KeyringVersion, state: &KeyringState) -> bool {
        let mut version = self
            .keyring_version
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if version.as_ref().is_some_and(|v| *v >= at) || local_keys(&self.gossip).is_empty() {
            return false;
        }
        if let Err(e) = self.gossip.set_keys(&state.keys) {
            tracing::warn!(error = %e, "keyring state from {} refused", at.1);
            return false;
        }
        *version = Some(at);
        true
    }

    pub(crate) fn store_event(&self, event: UserEvent) {
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
        // Consul's ACL mode tag: 0 disabled, 1 enabled.
        set("acls", if config.acl.enabled { "1" } else { "0" }.into());
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

/// This member's keys, base64, primary first.
fn local_keys(gossip: &Gossip) -> Vec<String> {
    gossip.list_keys().into_iter().map(|k| k.key).collect()
}

/// A keyring change an operator asks for (`POST`, `PUT`, `DELETE /v1/operator/keyring`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyringOp {
    /// Add a key (base64); installing a held key changes nothing.
    Install(String),
    /// Make a held key the primary.
    Use(String),
    /// Drop a key that is not the primary; removing an absent key changes nothing.
    Remove(String),
}

impl KeyringOp {
    /// The key it is about.
    pub fn key(&self) -> &str {
        match self {
            KeyringOp::Install(k) | KeyringOp::Use(k) | KeyringOp::Remove(k) => k,
        }
    }
}

/// The whole keyring a change leads to, carried by [`KEYRING_EVENT`]; its version is the
/// event's Lamport time and origin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyringState {
    /// The keys, base64, primary first.
    pub keys: Vec<String>,
}

/// The keyring `op` makes of `current` (primary first), with Serf's per-node error texts.
pub fn next_keyring(current: &[String], op: &KeyringOp) -> Result<Vec<String>, String> {
    let key = op.key().to_string();
    if gossip::Keyring::fingerprint_of(&key).is_none() {
        return Err("key size must be 16, 24 or 32 bytes".to_string());
    }
    let mut keys = current.to_vec();
    let pos = keys.iter().position(|k| *k == key);
    match (op, pos) {
        (KeyringOp::Install(_), None) => keys.push(key),
        (KeyringOp::Install(_), Some(_)) | (KeyringOp::Remove(_), None) => {}
        (KeyringOp::Use(_), None) => return Err("requested key is not in the keyring".to_string()),
        (KeyringOp::Use(_), Some(i)) => {
            let k = keys.remove(i);
            keys.insert(0, k);
        }
        (KeyringOp::Remove(_), Some(0)) => {
            return Err("removing the primary key is not allowed".to_string())
        }
        (KeyringOp::Remove(_), Some(i)) => {
            keys.remove(i);
        }
    }
    Ok(keys)
}

/// How long a keyring change waits for every member to report it (Serf's keyring queries
/// wait for answers from every member for a comparable bound).
pub const KEYRING_WAIT: Duration = Duration::from_secs(10);
/// How often the wait re-reads what members advertise (metadata gossip takes a few rounds).
const KEYRING_POLL: Duration = Duration::from_millis(50);

/// The alive members that do not yet report the state `op` asks for, each with what is
/// missing; `members` are (name, advertised key fingerprints, primary first).
pub fn keyring_pending(op: &KeyringOp, members: &[(String, Vec<u64>)]) -> Vec<(String, String)> {
    let Some(fp) = gossip::Keyring::fingerprint_of(op.key()) else {
        return Vec::new();
    };
    members
        .iter()
        .filter_map(|(name, keys)| {
            let missing = match op {
                KeyringOp::Install(_) if !keys.contains(&fp) => "has not installed the key yet",
                KeyringOp::Use(_) if keys.first() != Some(&fp) => {
                    "has not made the key its primary yet"
                }
                KeyringOp::Remove(_) if keys.contains(&fp) => "still holds the key",
                _ => return None,
            };
            Some((name.clone(), missing.to_string()))
        })
        .collect()
}

/// A keyring change that not every member reported in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyringTimeout {
    /// Members that report the requested state.
    pub done: usize,
    /// Alive members.
    pub total: usize,
    /// The others, with what they lack.
    pub pending: Vec<(String, String)>,
}

/// Waits (at most `limit`, tokio time) until every alive member, as `observe` reports them
/// (see [`Gossip::member_keys`]), is in the state `op` asks for.
pub async fn wait_for_keyring(
    op: &KeyringOp,
    limit: Duration,
    mut observe: impl FnMut() -> Vec<(String, Vec<u64>)>,
) -> Result<(), KeyringTimeout> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let members = observe();
        let pending = keyring_pending(op, &members);
        if pending.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(KeyringTimeout {
                done: members.len() - pending.len(),
                total: members.len(),
                pending,
            });
        }
        tokio::time::sleep(KEYRING_POLL).await;
    }
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

    #[test]
    fn keyring_operations_follow_serf() {
        let (k1, k2) = (gossip::keygen(), gossip::keygen());
        let ring = vec![k1.clone()];
        let install = next_keyring(&ring, &KeyringOp::Install(k2.clone())).unwrap();
        assert_eq!(install, vec![k1.clone(), k2.clone()]);
        assert_eq!(
            next_keyring(&install, &KeyringOp::Install(k2.clone())).unwrap(),
            install
        );
        assert_eq!(
            next_keyring(&ring, &KeyringOp::Use(k2.clone())).unwrap_err(),
            "requested key is not in the keyring"
        );
        let used = next_keyring(&install, &KeyringOp::Use(k2.clone())).unwrap();
        assert_eq!(used, vec![k2.clone(), k1.clone()]);
        assert_eq!(
            next_keyring(&used, &KeyringOp::Remove(k2.clone())).unwrap_err(),
            "removing the primary key is not allowed"
        );
        assert_eq!(
            next_keyring(&used, &KeyringOp::Remove(k1.clone())).unwrap(),
            vec![k2.clone()]
        );
        assert_eq!(
            next_keyring(&ring, &KeyringOp::Remove(k2)).unwrap(),
            ring,
            "removing an absent key changes nothing"
        );
        assert_eq!(
            next_keyring(&ring, &KeyringOp::Install("AAAA".into())).unwrap_err(),
            "key size must be 16, 24 or 32 bytes"
        );
    }

    /// Install, use, remove as one agent fires them (Lamport times 1, 2, 3), delivered in
    /// every order: each member ends on the last state, never split on the old primary.
    #[tokio::test]
    async fn keyring_states_converge_whatever_the_arrival_order() {
        let (k1, k2) = (gossip::keygen(), gossip::keygen());
        let states = [
            (1, vec![k1.clone(), k2.clone()]),
            (2, vec![k2.clone(), k1.clone()]),
            (3, vec![k2.clone()]),
        ];
        let orders = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        for order in orders {
            let (udp, tcp) = gossip::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
            let mut config = gossip::Config::new("m", "127.0.0.1:0".parse().unwrap());
            config.keys = vec![k1.clone()];
            let m = Membership::new(Gossip::start(config, udp, tcp).unwrap());
            for i in order {
                let (at, keys) = &states[i];
                m.apply_keyring_state((*at, "a".into()), &KeyringState { keys: keys.clone() });
            }
            assert_eq!(local_keys(&m.gossip), vec![k2.clone()], "order {order:?}");
            // A replay of an older state changes nothing.
            assert!(!m.apply_keyring_state(
                (2, "a".into()),
                &KeyringState {
                    keys: states[1].1.clone()
                }
            ));
            // Same Lamport time from two origins: the name decides, the same way everywhere.
            assert!(m.apply_keyring_state(
                (3, "b".into()),
                &KeyringState {
                    keys: vec![k1.clone()]
                }
            ));
            m.gossip.shutdown();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn keyring_wait_reports_members_that_lag() {
        let (k1, k2) = (gossip::keygen(), gossip::keygen());
        let fp = |k: &str| gossip::Keyring::fingerprint_of(k).unwrap();
        let (f1, f2) = (fp(&k1), fp(&k2));
        let op = KeyringOp::Use(k2.clone());
        // b catches up after a second; c never does.
        let start = tokio::time::Instant::now();
        let observe = || {
            let b_done = start.elapsed() >= Duration::from_secs(1);
            vec![
                ("a".to_string(), vec![f2, f1]),
                (
                    "b".to_string(),
                    if b_done { vec![f2, f1] } else { vec![f1, f2] },
                ),
                ("c".to_string(), vec![f1, f2]),
            ]
        };
        let err = wait_for_keyring(&op, KEYRING_WAIT, observe)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            KeyringTimeout {
                done: 2,
                total: 3,
                pending: vec![("c".into(), "has not made the key its primary yet".into())],
            }
        );
        assert!(start.elapsed() >= KEYRING_WAIT);
        let all = || vec![("a".to_string(), vec![f2])];
        assert!(wait_for_keyring(&KeyringOp::Remove(k1), KEYRING_WAIT, all)
            .await
            .is_ok());
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
