//! Server cluster formation and membership as pure decisions over what the LAN gossip pool
//! shows and what Raft's configuration holds (Consul's `maybeBootstrap` and autopilot's
//! promotion/removal rules). No I/O here: `bootstrap` and `autopilot` gather the inputs and
//! act on the answers, so every rule is table-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use concord_api::operator::AutopilotConfig;
use concord_net::gossip::{Member, MemberStatus};

use tokio::time::Instant;

use crate::raft::{node_id_from_uuid, Node, NodeId};

/// A server as the gossip pool shows it (`role=consul` member of our datacenter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PoolServer {
    /// Node name.
    pub(crate) name: String,
    /// Node UUID (tag `id`).
    pub(crate) uuid: String,
    /// Raft id derived from the UUID.
    pub(crate) id: NodeId,
    /// Server RPC address: the member's IP and tag `port`.
    pub(crate) addr: String,
    /// Gossip status.
    pub(crate) status: MemberStatus,
    /// Tag `expect` (`-bootstrap-expect`), if set.
    pub(crate) expect: Option<usize>,
}

/// The servers of datacenter `dc` among `members`; members with unusable tags are skipped
/// (a server without a `port` or `id` cannot be a Raft peer).
pub(crate) fn pool_servers(members: &[Member], dc: &str) -> Vec<PoolServer> {
    let mut servers: Vec<PoolServer> = members
        .iter()
        .filter(|m| m.tags.get("role").map(String::as_str) == Some("consul"))
        .filter(|m| m.tags.get("dc").map(String::as_str) == Some(dc))
        .filter_map(|m| {
            let uuid = m.tags.get("id")?.clone();
            let id = node_id_from_uuid(&uuid).ok()?;
            let port: u16 = m.tags.get("port")?.parse().ok()?;
            Some(PoolServer {
                name: m.name.clone(),
                uuid,
                id,
                addr: SocketAddr::new(m.addr.ip(), port).to_string(),
                status: m.status,
                expect: m.tags.get("expect").and_then(|e| e.parse().ok()),
            })
        })
        .collect();
    servers.sort_by_key(|s| s.id);
    servers
}

/// What a server started with `-bootstrap-expect N` (N > 1) and no Raft state does now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Bootstrap {
    /// Not yet (too few servers, or disagreeing ones): look again on the next pool change.
    Wait(String),
    /// Enough servers, but another one (the lowest Raft id) initializes the cluster; this
    /// one waits to be replicated to.
    Follow(NodeId),
    /// This server initializes the cluster with these voters, once every peer confirmed
    /// it holds no Raft state.
    Initialize(BTreeMap<NodeId, Node>),
}

/// The bootstrap decision: once `expect` alive servers all expecting `expect` are in the
/// pool, the one with the lowest Raft id initializes all of them as voters. Deterministic,
/// so exactly one server initializes.
pub(crate) fn bootstrap_decision(me: NodeId, expect: usize, servers: &[PoolServer]) -> Bootstrap {
    let alive: Vec<&PoolServer> = servers
        .iter()
        .filter(|s| s.status == MemberStatus::Alive)
        .collect();
    if let Some(other) = alive.iter().find(|s| s.expect != Some(expect)) {
        return Bootstrap::Wait(format!(
            "server {} expects {:?} servers, this one {expect}; not bootstrapping",
            other.name, other.expect
        ));
    }
    if alive.len() < expect {
        return Bootstrap::Wait(format!(
            "{} of {expect} expected servers in the pool",
            alive.len()
        ));
    }
    if !alive.iter().any(|s| s.id == me) {
        return Bootstrap::Wait("this server is not alive in the pool yet".to_string());
    }
    let lowest = alive.iter().map(|s| s.id).min().unwrap_or(me);
    if lowest != me {
        return Bootstrap::Follow(lowest);
    }
    Bootstrap::Initialize(
        alive
            .iter()
            .map(|s| (s.id, Node::new(s.addr.clone())))
            .collect(),
    )
}

/// A member of the Raft configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RaftMember {
    /// Raft id.
    pub(crate) id: NodeId,
    /// Its RPC address as recorded in the configuration.
    pub(crate) addr: String,
    /// Voter (or learner).
    pub(crate) voter: bool,
}

/// One membership change the leader makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// A new server: add it as a learner and wait until it caught up.
    AddLearner {
        /// Raft id.
        id: NodeId,
        /// RPC address.
        addr: String,
    },
    /// A caught-up, stable learner becomes a voter.
    Promote {
        /// Raft id.
        id: NodeId,
    },
    /// A server leaves the configuration.
    Remove {
        /// Raft id.
        id: NodeId,
        /// Why (logged).
        reason: &'static str,
    },
}

/// Autopilot's knobs the plan needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PlanLimits {
    /// Remove failed voters (when few enough failed).
    pub(crate) cleanup_dead_servers: bool,
    /// Never leave fewer voters than this through dead-server cleanup.
    pub(crate) min_quorum: usize,
}

/// What the leader `leader` changes in the Raft configuration `config` to follow the pool
/// `servers`, in order:
/// 1. members that left the pool gracefully are removed (never the leader itself, never the
///    last voter);
/// 2. alive servers not in the configuration are added as learners;
/// 3. learners in `stable` (alive, caught up and healthy for the stabilization time) are
///    promoted;
/// 4. with `cleanup_dead_servers`, failed learners are removed, and failed voters too if
///    fewer than half the voters failed (Consul's rule: with 3 voters one failed one stays
///    until a replacement was promoted) and at least `min_quorum` voters remain.
///
/// Members of the configuration the pool does not show at all are left alone: a new
/// leader's pool may not have learned of them yet.
pub(crate) fn membership_plan(
    leader: NodeId,
    config: &[RaftMember],
    servers: &[PoolServer],
    stable: &BTreeSet<NodeId>,
    limits: PlanLimits,
) -> Vec<Change> {
    let in_pool: BTreeMap<NodeId, &PoolServer> = servers.iter().map(|s| (s.id, s)).collect();
    let status = |id: NodeId| in_pool.get(&id).map(|s| s.status);
    let mut voters = config.iter().filter(|m| m.voter).count();
    let mut plan = Vec::new();

    for m in config.iter().filter(|m| m.id != leader) {
        if matches!(status(m.id), Some(MemberStatus::Left)) && (!m.voter || voters > 1) {
            plan.push(Change::Remove {
                id: m.id,
                reason: "left the pool",
            });
            voters -= usize::from(m.voter);
        }
    }
    let known: BTreeSet<NodeId> = config.iter().map(|m| m.id).collect();
    for s in servers {
        if s.status == MemberStatus::Alive && !known.contains(&s.id) {
            plan.push(Change::AddLearner {
                id: s.id,
                addr: s.addr.clone(),
            });
        }
    }
    for m in config.iter().filter(|m| !m.voter) {
        if status(m.id) == Some(MemberStatus::Alive) && stable.contains(&m.id) {
            plan.push(Change::Promote { id: m.id });
        }
    }
    if limits.cleanup_dead_servers {
        let failed = |m: &&RaftMember| m.id != leader && status(m.id) == Some(MemberStatus::Failed);
        for m in config.iter().filter(|m| !m.voter).filter(failed) {
            plan.push(Change::Remove {
                id: m.id,
                reason: "failed learner",
            });
        }
        let failed_voters: Vec<&RaftMember> =
            config.iter().filter(|m| m.voter).filter(failed).collect();
        let remaining = voters.saturating_sub(failed_voters.len());
        if !failed_voters.is_empty()
            && failed_voters.len() < voters / 2
            && remaining >= limits.min_quorum.max(1)
        {
            for m in failed_voters {
                plan.push(Change::Remove {
                    id: m.id,
                    reason: "failed; dead-server cleanup",
                });
            }
        }
    }
    plan
}

/// How the leader tracks each server's health between autopilot passes (Consul's
/// `ServerHealth`): contact is inferred from replication progress, because openraft 0.9
/// reports matched log ids but not per-follower heartbeat times.
#[derive(Debug, Default)]
pub(crate) struct HealthTracker {
    servers: BTreeMap<NodeId, Track>,
}

/// One server's tracked health.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Track {
    /// The last log index known replicated to it.
    pub(crate) last_index: u64,
    /// When it was last seen caught up or making progress.
    pub(crate) last_contact: Instant,
    /// Healthy at the last pass.
    pub(crate) healthy: bool,
    /// When `healthy` last changed.
    pub(crate) stable_since: Instant,
    /// The same, as wall-clock time (for `StableSince`).
    pub(crate) stable_since_wall: SystemTime,
}

/// What one pass observed about one server.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Observation {
    /// Raft id.
    pub(crate) id: NodeId,
    /// Matched log index (the leader's own last index for the leader).
    pub(crate) last_index: u64,
    /// Alive in the gossip pool.
    pub(crate) alive: bool,
    /// It is the leader.
    pub(crate) leader: bool,
}

impl HealthTracker {
    /// Records one pass over the configuration's members; forgets servers not observed.
    pub(crate) fn observe(
        &mut self,
        now: Instant,
        wall: SystemTime,
        leader_index: u64,
        seen: &[Observation],
        config: &AutopilotConfig,
    ) {
        self.servers
            .retain(|id, _| seen.iter().any(|o| o.id == *id));
        for o in seen {
            let track = self.servers.entry(o.id).or_insert(Track {
                last_index: o.last_index,
                last_contact: now,
                healthy: false,
                stable_since: now,
                stable_since_wall: wall,
            });
            if o.leader || o.last_index > track.last_index || o.last_index >= leader_index {
                track.last_contact = now;
            }
            track.last_index = o.last_index;
            let trailing = leader_index.saturating_sub(o.last_index);
            let recent = now.saturating_duration_since(track.last_contact)
                <= config.last_contact_threshold.get().max(MIN_CONTACT_WINDOW);
            let healthy = o.alive && (o.leader || recent) && trailing <= config.max_trailing_logs;
            if healthy != track.healthy {
                track.healthy = healthy;
                track.stable_since = now;
                track.stable_since_wall = wall;
            }
        }
    }

    /// Drops a removed server's track (a returning server starts over).
    pub(crate) fn forget(&mut self, id: NodeId) {
        self.servers.remove(&id);
    }

    /// A server's track, if observed.
    pub(crate) fn get(&self, id: NodeId) -> Option<Track> {
        self.servers.get(&id).copied()
    }

    /// Servers healthy for at least `stabilization`.
    pub(crate) fn stable(&self, now: Instant, stabilization: Duration) -> BTreeSet<NodeId> {
        self.servers
            .iter()
            .filter(|(_, t)| {
                t.healthy && now.saturating_duration_since(t.stable_since) >= stabilization
            })
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Contact is inferred once per autopilot pass, so a threshold shorter than two passes
/// would flap: it never counts for less than this.
pub(crate) const MIN_CONTACT_WINDOW: Duration = Duration::from_secs(2);

/// Voters that may fail without losing quorum.
pub(crate) fn failure_tolerance(healthy_voters: usize, voters: usize) -> u64 {
    let quorum = voters / 2 + 1;
    u64::try_from(healthy_voters.saturating_sub(quorum)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUIDS: [&str; 5] = [
        "00000000-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-000000000002",
        "00000000-0000-4000-8000-000000000003",
        "00000000-0000-4000-8000-000000000004",
        "00000000-0000-4000-8000-000000000005",
    ];

    fn member(i: usize, status: MemberStatus, expect: Option<&str>) -> Member {
        let mut tags = BTreeMap::from([
            ("role".to_string(), "consul".to_string()),
            ("dc".to_string(), "dc1".to_string()),
            ("id".to_string(), UUIDS[i].to_string()),
            ("port".to_string(), "8300".to_string()),
        ]);
        if let Some(e) = expect {
            tags.insert("expect".to_string(), e.to_string());
        }
        Member {
            name: format!("s{i}"),
            addr: format!("127.0.0.{}:8301", i + 1).parse().unwrap(),
            tags,
            status,
        }
    }

    fn id(i: usize) -> NodeId {
        node_id_from_uuid(UUIDS[i]).unwrap()
    }

    fn servers(members: &[Member]) -> Vec<PoolServer> {
        pool_servers(members, "dc1")
    }

    fn lowest(ids: &[usize]) -> NodeId {
        ids.iter().map(|&i| id(i)).min().unwrap()
    }

    #[test]
    fn pool_servers_keeps_servers_of_this_dc_with_usable_tags() {
        let mut client = member(3, MemberStatus::Alive, None);
        client.tags.insert("role".into(), "node".into());
        let mut other_dc = member(4, MemberStatus::Alive, None);
        other_dc.tags.insert("dc".into(), "dc2".into());
        let mut no_port = member(2, MemberStatus::Alive, None);
        no_port.tags.remove("port");
        let pool = servers(&[
            member(0, MemberStatus::Alive, Some("3")),
            client,
            other_dc,
            no_port,
        ]);
        assert_eq!(pool.len(), 1);
        assert_eq!(pool[0].addr, "127.0.0.1:8300");
        assert_eq!(pool[0].expect, Some(3));
        assert_eq!(pool[0].id, id(0));
    }

    #[test]
    fn bootstrap_waits_for_expect_alive_servers_then_the_lowest_id_initializes() {
        let alive = |i| member(i, MemberStatus::Alive, Some("3"));
        let two = servers(&[alive(0), alive(1)]);
        assert!(matches!(
            bootstrap_decision(id(0), 3, &two),
            Bootstrap::Wait(_)
        ));
        // A failed third one does not count.
        let failed = servers(&[
            alive(0),
            alive(1),
            member(2, MemberStatus::Failed, Some("3")),
        ]);
        assert!(matches!(
            bootstrap_decision(id(0), 3, &failed),
            Bootstrap::Wait(_)
        ));

        let three = servers(&[alive(0), alive(1), alive(2)]);
        let low = lowest(&[0, 1, 2]);
        let mut initializers = 0;
        for i in 0..3 {
            match bootstrap_decision(id(i), 3, &three) {
                Bootstrap::Initialize(voters) => {
                    initializers += 1;
                    assert_eq!(id(i), low);
                    assert_eq!(voters.len(), 3);
                    assert_eq!(voters[&id(2)].addr, "127.0.0.3:8300");
                }
                Bootstrap::Follow(leader) => assert_eq!(leader, low),
                Bootstrap::Wait(why) => panic!("waiting with 3 of 3: {why}"),
            }
        }
        assert_eq!(initializers, 1, "exactly one server initializes");
    }

    #[test]
    fn bootstrap_refuses_disagreeing_expectations_and_waits_for_itself() {
        let pool = servers(&[
            member(0, MemberStatus::Alive, Some("3")),
            member(1, MemberStatus::Alive, Some("5")),
            member(2, MemberStatus::Alive, Some("3")),
        ]);
        match bootstrap_decision(id(0), 3, &pool) {
            Bootstrap::Wait(why) => assert!(why.contains("expects"), "{why}"),
            other => panic!("{other:?}"),
        }
        let without_me = servers(&[
            member(1, MemberStatus::Alive, Some("2")),
            member(2, MemberStatus::Alive, Some("2")),
        ]);
        assert!(matches!(
            bootstrap_decision(id(0), 2, &without_me),
            Bootstrap::Wait(_)
        ));
    }

    fn voter(i: usize) -> RaftMember {
        RaftMember {
            id: id(i),
            addr: format!("127.0.0.{}:8300", i + 1),
            voter: true,
        }
    }

    fn learner(i: usize) -> RaftMember {
        RaftMember {
            voter: false,
            ..voter(i)
        }
    }

    const LIMITS: PlanLimits = PlanLimits {
        cleanup_dead_servers: true,
        min_quorum: 0,
    };

    #[test]
    fn a_new_server_is_added_as_learner_then_promoted_once_stable() {
        let alive = |i| member(i, MemberStatus::Alive, None);
        let pool = servers(&[alive(0), alive(1), alive(2), alive(3)]);
        let config = [voter(0), voter(1), voter(2)];
        let plan = membership_plan(id(0), &config, &pool, &BTreeSet::new(), LIMITS);
        assert_eq!(
            plan,
            vec![Change::AddLearner {
                id: id(3),
                addr: "127.0.0.4:8300".into()
            }]
        );
        let config = [voter(0), voter(1), voter(2), learner(3)];
        let not_yet = membership_plan(id(0), &config, &pool, &BTreeSet::new(), LIMITS);
        assert!(not_yet.is_empty(), "{not_yet:?}");
        let stable = BTreeSet::from([id(3)]);
        let plan = membership_plan(id(0), &config, &pool, &stable, LIMITS);
        assert_eq!(plan, vec![Change::Promote { id: id(3) }]);
    }

    #[test]
    fn a_server_that_left_is_removed_but_never_the_leader_or_last_voter() {
        let pool = servers(&[
            member(0, MemberStatus::Left, None),
            member(1, MemberStatus::Left, None),
            member(2, MemberStatus::Alive, None),
        ]);
        let config = [voter(0), voter(1), voter(2)];
        let plan = membership_plan(id(2), &config, &pool, &BTreeSet::new(), LIMITS);
        assert_eq!(plan.len(), 2);
        assert!(plan
            .iter()
            .all(|c| matches!(c, Change::Remove { id, .. } if *id != id_of_leader())));
        fn id_of_leader() -> NodeId {
            node_id_from_uuid(UUIDS[2]).unwrap()
        }
        // Only two voters, both leaving: one of them stays as the last voter.
        let pool = servers(&[
            member(0, MemberStatus::Left, None),
            member(1, MemberStatus::Alive, None),
        ]);
        let config = [voter(0), voter(1)];
        let plan = membership_plan(id(0), &config, &pool, &BTreeSet::new(), LIMITS);
        assert!(plan.is_empty(), "the leader never removes itself: {plan:?}");
    }

    #[test]
    fn dead_servers_are_cleaned_up_only_once_a_replacement_keeps_quorum() {
        let pool = |extra: bool| {
            let mut m = vec![
                member(0, MemberStatus::Alive, None),
                member(1, MemberStatus::Alive, None),
                member(2, MemberStatus::Failed, None),
            ];
            if extra {
                m.push(member(3, MemberStatus::Alive, None));
            }
            servers(&m)
        };
        let three = [voter(0), voter(1), voter(2)];
        let plan = membership_plan(id(0), &three, &pool(false), &BTreeSet::new(), LIMITS);
        assert!(plan.is_empty(), "1 of 3 failed stays: {plan:?}");

        let four = [voter(0), voter(1), voter(2), voter(3)];
        let plan = membership_plan(id(0), &four, &pool(true), &BTreeSet::new(), LIMITS);
        assert_eq!(
            plan,
            vec![Change::Remove {
                id: id(2),
                reason: "failed; dead-server cleanup"
            }]
        );
        let off = PlanLimits {
            cleanup_dead_servers: false,
            ..LIMITS
        };
        assert!(membership_plan(id(0), &four, &pool(true), &BTreeSet::new(), off).is_empty());
        let min_quorum = PlanLimits {
            min_quorum: 4,
            ..LIMITS
        };
        assert!(
            membership_plan(id(0), &four, &pool(true), &BTreeSet::new(), min_quorum).is_empty()
        );
    }

    #[test]
    fn members_unknown_to_the_pool_are_left_alone() {
        let pool = servers(&[member(0, MemberStatus::Alive, None)]);
        let config = [voter(0), voter(1), voter(2)];
        assert!(membership_plan(id(0), &config, &pool, &BTreeSet::new(), LIMITS).is_empty());
    }

    #[test]
    fn health_needs_progress_and_stability_before_promotion() {
        let config = AutopilotConfig {
            max_trailing_logs: 10,
            ..AutopilotConfig::default()
        };
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let mut h = HealthTracker::default();
        let obs = |last_index, alive| Observation {
            id: id(1),
            last_index,
            alive,
            leader: false,
        };
        h.observe(t0, wall, 100, &[obs(50, true)], &config);
        assert!(!h.get(id(1)).unwrap().healthy, "50 entries behind");
        let t1 = t0 + Duration::from_secs(1);
        h.observe(t1, wall, 100, &[obs(100, true)], &config);
        assert!(h.get(id(1)).unwrap().healthy);
        assert!(h.stable(t1, Duration::from_secs(10)).is_empty());
        let t2 = t1 + Duration::from_secs(10);
        h.observe(t2, wall, 100, &[obs(100, true)], &config);
        assert_eq!(
            h.stable(t2, Duration::from_secs(10)),
            BTreeSet::from([id(1)])
        );
        h.observe(t2, wall, 100, &[obs(100, false)], &config);
        assert!(
            h.stable(t2, Duration::ZERO).is_empty(),
            "failed in the pool"
        );
        h.observe(t2, wall, 100, &[], &config);
        assert!(
            h.get(id(1)).is_none(),
            "forgotten once out of the configuration"
        );
    }

    #[test]
    fn failure_tolerance_follows_quorum() {
        assert_eq!(failure_tolerance(3, 3), 1);
        assert_eq!(failure_tolerance(2, 3), 0);
        assert_eq!(failure_tolerance(5, 5), 2);
        assert_eq!(failure_tolerance(1, 1), 0);
    }
}
