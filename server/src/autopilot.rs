//! Raft membership driven by the LAN gossip pool, and the operator API over it (Consul's
//! autopilot and `operator raft`).
//!
//! While this server leads, [`run`] looks every [`PASS_INTERVAL`] at the pool and Raft's
//! configuration, records each server's health, and makes the changes
//! [`cluster::membership_plan`] asks for, one at a time: new servers join as learners
//! (`add_learner`, blocking until caught up) and become voters once stable; servers that
//! left are removed; failed ones are removed by dead-server cleanup once enough healthy
//! voters remain. [`read`] and [`write`] answer `/v1/operator/*` from Raft's own state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use concord_api::operator::{
    AutopilotServer, AutopilotState, OperatorHealth, OperatorQuery, OperatorResult, OperatorWrite,
    RaftConfiguration, RaftServer, ServerHealth,
};
use concord_api::rpc::{RpcError, WriteResult};
use concord_net::gossip::MemberStatus;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use tokio::time::Instant;

use crate::cluster::{self, Change, Observation, PlanLimits, PoolServer, RaftMember};
use crate::command::Command;
use crate::node::Shared;
use crate::raft::{node_id_from_uuid, Node, NodeId, ELECT_PATH};

/// How often the leader re-checks membership and health.
pub(crate) const PASS_INTERVAL: Duration = Duration::from_secs(1);
/// How long adding a learner may take to catch it up before the pass gives up (it retries).
const ADD_LEARNER_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of the election request a leadership transfer sends.
const ELECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The leader's membership loop; runs until aborted (leadership lost).
pub(crate) async fn run(shared: Arc<Shared>) {
    loop {
        if let Err(e) = pass(&shared).await {
            tracing::warn!(error = %e, "autopilot pass failed");
        }
        tokio::time::sleep(PASS_INTERVAL).await;
    }
}

/// The Raft configuration as plain members (`None` while a joint change is in flight).
fn raft_members(shared: &Shared) -> Option<(Vec<RaftMember>, u64)> {
    let metrics = shared.raft.metrics();
    let m = metrics.borrow();
    let stored = &m.membership_config;
    let membership = stored.membership();
    if membership.get_joint_config().len() > 1 {
        return None;
    }
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(id, node)| RaftMember {
            id: *id,
            addr: node.addr.clone(),
            voter: voters.contains(id),
        })
        .collect();
    Some((members, stored.log_id().map_or(0, |l| l.index)))
}

/// The pool's servers of this datacenter (empty without a pool).
fn pool(shared: &Shared) -> Vec<PoolServer> {
    shared.gossip.as_ref().map_or_else(Vec::new, |g| {
        cluster::pool_servers(&g.members(), &shared.config.datacenter)
    })
}

/// Matched log index per member as the leader sees it (its own: its last log index).
fn matched(shared: &Shared) -> (BTreeMap<NodeId, u64>, u64) {
    let metrics = shared.raft.metrics();
    let m = metrics.borrow();
    let own = m.last_log_index.unwrap_or(0);
    let mut out: BTreeMap<NodeId, u64> = m
        .replication
        .as_ref()
        .map(|r| {
            r.iter()
                .map(|(id, log)| (*id, log.as_ref().map_or(0, |l| l.index)))
                .collect()
        })
        .unwrap_or_default();
    out.insert(shared.id, own);
    (out, own)
}

/// Observes health, then makes the first change of the plan.
async fn pass(shared: &Shared) -> Result<(), RpcError> {
    if shared.raft.metrics().borrow().state != ServerState::Leader {
        return Ok(());
    }
    let Some((members, _)) = raft_members(shared) else {
        return Ok(());
    };
    let servers = pool(shared);
    let (matched, leader_index) = matched(shared);
    let alive = |id: NodeId| {
        id == shared.id
            || servers
                .iter()
                .any(|s| s.id == id && s.status == MemberStatus::Alive)
    };
    let seen: Vec<Observation> = members
        .iter()
        .map(|m| Observation {
            id: m.id,
            last_index: matched.get(&m.id).copied().unwrap_or(0),
            alive: alive(m.id),
            leader: m.id == shared.id,
        })
        .collect();
    let config = shared.store.current().view(|t| t.autopilot_config());
    let now = Instant::now();
    let stable = {
        let mut health = Shared::locked(&shared.health);
        health.observe(now, SystemTime::now(), leader_index, &seen, &config);
        health.stable(now, config.server_stabilization_time.get())
    };
    if shared.gossip.is_none() {
        return Ok(());
    }
    let limits = PlanLimits {
        cleanup_dead_servers: config.cleanup_dead_servers,
        min_quorum: usize::try_from(config.min_quorum).unwrap_or(usize::MAX),
    };
    let plan = cluster::membership_plan(shared.id, &members, &servers, &stable, limits);
    if let Some(change) = plan.into_iter().next() {
        apply(shared, &members, change).await?;
    }
    Ok(())
}

fn raft_err<E: std::fmt::Display>(e: RaftError<NodeId, E>) -> RpcError {
    match e {
        RaftError::APIError(e) => RpcError::Internal(e.to_string()),
        RaftError::Fatal(e) => RpcError::Internal(format!("raft: {e}")),
    }
}

/// Makes one membership change.
async fn apply(shared: &Shared, members: &[RaftMember], change: Change) -> Result<(), RpcError> {
    let raft = &shared.raft;
    match change {
        Change::AddLearner { id, addr } => {
            tracing::info!(raft_id = id, %addr, "adding server as learner");
            match tokio::time::timeout(
                ADD_LEARNER_TIMEOUT,
                raft.add_learner(id, Node::new(addr), true),
            )
            .await
            {
                Ok(r) => r.map(drop).map_err(raft_err),
                Err(_) => Err(RpcError::Internal(format!(
                    "learner {id} did not catch up within {ADD_LEARNER_TIMEOUT:?}"
                ))),
            }
        }
        Change::Promote { id } => {
            tracing::info!(raft_id = id, "promoting learner to voter");
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
                .map(drop)
                .map_err(raft_err)
        }
        Change::Remove { id, reason } => remove(shared, members, id, reason).await,
    }
}

/// Removes one server from the configuration (a voter's vote first, then the node).
async fn remove(
    shared: &Shared,
    members: &[RaftMember],
    id: NodeId,
    reason: &str,
) -> Result<(), RpcError> {
    tracing::info!(
        raft_id = id,
        reason,
        "removing server from the Raft configuration"
    );
    let voter = members.iter().any(|m| m.id == id && m.voter);
    let change = if voter {
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    };
    match shared.raft.change_membership(change, false).await {
        Ok(_) => {
            Shared::locked(&shared.health).forget(id);
            Ok(())
        }
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(RpcError::NotLeader {
                leader_addr: f.leader_node.map(|n| n.addr),
            })
        }
        Err(e) => Err(raft_err(e)),
    }
}

/// Node UUID and name of a Raft member, from the pool (or this server's own config).
fn identity(shared: &Shared, servers: &[PoolServer], id: NodeId) -> (String, String) {
    if id == shared.id {
        return (
            shared.config.node_id.clone(),
            shared.config.node_name.clone(),
        );
    }
    servers.iter().find(|s| s.id == id).map_or_else(
        || (id.to_string(), String::new()),
        |s| (s.uuid.clone(), s.name.clone()),
    )
}

/// Answers an operator read from this server's view of Raft.
pub(crate) fn read(shared: &Shared, query: &OperatorQuery) -> Result<OperatorResult, RpcError> {
    let Some((members, index)) = raft_members(shared) else {
        return Err(RpcError::Internal(
            "a membership change is in progress; try again".to_string(),
        ));
    };
    let servers = pool(shared);
    let leader = shared.raft.metrics().borrow().current_leader;
    let term = shared.raft.metrics().borrow().current_term;
    let (matched, _) = matched(shared);
    Ok(match query {
        OperatorQuery::RaftConfiguration => {
            let mut list: Vec<RaftServer> = members
                .iter()
                .map(|m| {
                    let (uuid, node) = identity(shared, &servers, m.id);
                    RaftServer {
                        id: uuid,
                        node,
                        address: m.addr.clone(),
                        leader: leader == Some(m.id),
                        voter: m.voter,
                        protocol_version: "3".to_string(),
                        last_index: matched.get(&m.id).copied().unwrap_or(0),
                    }
                })
                .collect();
            list.sort_by(|a, b| a.address.cmp(&b.address));
            OperatorResult::RaftConfiguration(RaftConfiguration {
                servers: list,
                index,
            })
        }
        OperatorQuery::AutopilotConfig => {
            OperatorResult::AutopilotConfig(shared.store.current().view(|t| t.autopilot_config()))
        }
        OperatorQuery::AutopilotHealth | OperatorQuery::AutopilotState => {
            let health = health(shared, &members, &servers, leader, term);
            if *query == OperatorQuery::AutopilotHealth {
                OperatorResult::Health(health)
            } else {
                OperatorResult::State(state(health))
            }
        }
    })
}

/// `/v1/operator/autopilot/health` from the leader's tracker.
fn health(
    shared: &Shared,
    members: &[RaftMember],
    servers: &[PoolServer],
    leader: Option<NodeId>,
    term: u64,
) -> OperatorHealth {
    let tracker = Shared::locked(&shared.health);
    let now = Instant::now();
    let mut list: Vec<ServerHealth> = members
        .iter()
        .map(|m| {
            let (uuid, name) = identity(shared, servers, m.id);
            let serf = if m.id == shared.id {
                "alive"
            } else {
                match servers.iter().find(|s| s.id == m.id).map(|s| s.status) {
                    Some(MemberStatus::Alive) => "alive",
                    Some(MemberStatus::Leaving) => "leaving",
                    Some(MemberStatus::Left) => "left",
                    Some(MemberStatus::Failed) => "failed",
                    None => "none",
                }
            };
            let track = tracker.get(m.id);
            let is_leader = leader == Some(m.id);
            ServerHealth {
                id: uuid,
                name,
                address: m.addr.clone(),
                serf_status: serf.to_string(),
                version: concord_api::CONCORD_VERSION.to_string(),
                leader: is_leader,
                last_contact: if is_leader {
                    Duration::ZERO.into()
                } else {
                    track
                        .map_or(Duration::ZERO, |t| {
                            now.saturating_duration_since(t.last_contact)
                        })
                        .into()
                },
                last_term: term,
                last_index: track.map_or(0, |t| t.last_index),
                healthy: track.is_some_and(|t| t.healthy),
                voter: m.voter,
                stable_since: track
                    .map_or_else(String::new, |t| humantime_rfc3339(t.stable_since_wall)),
            }
        })
        .collect();
    list.sort_by(|a, b| a.address.cmp(&b.address));
    let voters = list.iter().filter(|s| s.voter).count();
    let healthy_voters = list.iter().filter(|s| s.voter && s.healthy).count();
    OperatorHealth {
        healthy: list.iter().all(|s| s.healthy),
        failure_tolerance: cluster::failure_tolerance(healthy_voters, voters),
        servers: list,
    }
}

/// `/v1/operator/autopilot/state`: the same observations keyed by node UUID.
fn state(health: OperatorHealth) -> AutopilotState {
    let leader = health
        .servers
        .iter()
        .find(|s| s.leader)
        .map(|s| s.id.clone())
        .unwrap_or_default();
    let voters = health
        .servers
        .iter()
        .filter(|s| s.voter)
        .map(|s| s.id.clone())
        .collect();
    let servers = health
        .servers
        .into_iter()
        .map(|s| {
            let status = if s.leader {
                "leader"
            } else if s.voter {
                "voter"
            } else {
                "non-voter"
            };
            let server = AutopilotServer {
                id: s.id.clone(),
                name: s.name,
                address: s.address,
                node_status: s.serf_status,
                version: s.version,
                last_contact: s.last_contact,
                last_term: s.last_term,
                last_index: s.last_index,
                healthy: s.healthy,
                stable_since: s.stable_since,
                status: status.to_string(),
                meta: BTreeMap::new(),
                node_type: "voter".to_string(),
            };
            (s.id, server)
        })
        .collect();
    AutopilotState {
        healthy: health.healthy,
        failure_tolerance: health.failure_tolerance,
        optimistic_failure_tolerance: health.failure_tolerance,
        servers,
        leader,
        voters,
    }
}

/// RFC 3339 UTC with seconds, as Go's `time.Time` marshals (without sub-seconds).
fn humantime_rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    concord_api::intention::rfc3339_utc(secs)
}

/// Carries out an operator change on the leader (the caller forwarded it here).
pub(crate) async fn write(shared: &Shared, op: &OperatorWrite) -> Result<OperatorResult, RpcError> {
    let Some((members, _)) = raft_members(shared) else {
        return Err(RpcError::Internal(
            "a membership change is in progress; try again".to_string(),
        ));
    };
    match op {
        OperatorWrite::RemovePeer { id, address } => {
            let target =
                match (id, address) {
                    (Some(uuid), _) => {
                        let raft_id = node_id_from_uuid(uuid).ok();
                        members
                            .iter()
                            .find(|m| Some(m.id) == raft_id)
                            .ok_or_else(|| {
                                RpcError::NotFound(format!(
                                    "id {uuid:?} was not found in the Raft configuration"
                                ))
                            })?
                    }
                    (None, Some(addr)) => {
                        members.iter().find(|m| m.addr == *addr).ok_or_else(|| {
                            RpcError::NotFound(format!(
                                "address {addr:?} was not found in the Raft configuration"
                            ))
                        })?
                    }
                    (None, None) => return Err(RpcError::Invalid(
                        "Must specify either ?id with the server's ID or ?address with IP:port \
                         of peer to remove"
                            .to_string(),
                    )),
                };
            if target.id == shared.id {
                return Err(RpcError::Invalid(
                    "cannot remove the leader; transfer leadership first".to_string(),
                ));
            }
            remove(shared, &members, target.id, "operator remove-peer").await?;
            Ok(OperatorResult::Bool(true))
        }
        OperatorWrite::TransferLeader { id } => transfer(shared, &members, id.as_deref()).await,
        OperatorWrite::SetAutopilotConfig { config, cas } => {
            let cmd = Command::AutopilotSetConfig {
                config: config.into(),
                cas: *cas,
            };
            match shared.propose(cmd).await?.1 {
                WriteResult::Bool(applied) => Ok(OperatorResult::Bool(applied)),
                other => Err(RpcError::Internal(format!(
                    "invariant: autopilot configuration write answered {other:?}"
                ))),
            }
        }
    }
}

/// Hands leadership to `target` (a node UUID) or the most caught-up other voter: stops
/// heartbeating so the followers' leader lease runs out, then asks the successor to start
/// an election (openraft 0.9 has no transfer of its own). Best effort: if another server
/// times out first, it wins instead.
async fn transfer(
    shared: &Shared,
    members: &[RaftMember],
    target: Option<&str>,
) -> Result<OperatorResult, RpcError> {
    let (matched, _) = matched(shared);
    let candidates = members.iter().filter(|m| m.voter && m.id != shared.id);
    let successor = match target {
        Some(uuid) => {
            let raft_id = node_id_from_uuid(uuid)
                .map_err(|_| RpcError::Invalid(format!("{uuid:?} is not a server ID")))?;
            if raft_id == shared.id {
                return Err(RpcError::Invalid(format!(
                    "cannot transfer leadership to itself ({uuid})"
                )));
            }
            candidates
                .clone()
                .find(|m| m.id == raft_id)
                .ok_or_else(|| RpcError::NotFound(format!("no voter with ID {uuid:?}")))?
        }
        None => candidates
            .max_by_key(|m| matched.get(&m.id).copied().unwrap_or(0))
            .ok_or_else(|| {
                RpcError::Invalid("no other voter to transfer leadership to".to_string())
            })?,
    };
    let lease = shared.config.raft_timings().election_max;
    let runtime = shared.raft.runtime_config();
    runtime.heartbeat(false);
    runtime.elect(false);
    tokio::time::sleep(lease + lease / 5).await;
    let asked = shared
        .http
        .post::<_, bool>(&successor.addr, ELECT_PATH, &(), &[], ELECT_TIMEOUT)
        .await;
    runtime.heartbeat(true);
    runtime.elect(true);
    match asked {
        Ok(true) => {
            // Report what happened: whether the successor actually took over in time.
            let successor_id = successor.id;
            let took_over = shared
                .raft
                .wait(Some(lease * 2))
                .metrics(
                    |m| m.current_leader == Some(successor_id),
                    "the successor leads",
                )
                .await
                .is_ok();
            Ok(OperatorResult::Bool(took_over))
        }
        Ok(false) => Err(RpcError::Internal(format!(
            "{} could not start an election",
            successor.addr
        ))),
        Err(e) => Err(RpcError::Internal(format!(
            "asking {} to take over: {e}",
            successor.addr
        ))),
    }
}
