//! This server as the request handlers and the leader loop see it: the state they share
//! ([`Shared`]), who leads ([`Leadership`]), and how they write through Raft
//! ([`Shared::propose`]).
//!
//! It sits below both of its users (`rpc`, `leader`) and above what it holds (Raft, the
//! state store, the session timers), so a request walks down from the router through here
//! to Raft and never back up. Wiring it together is `server`'s job.

use std::future::Future;
use std::sync::{Mutex, PoisonError};

use concord_api::rpc::{QueryMeta, RpcError, WriteResult};
use concord_net::gossip::Gossip;
use concord_net::rpc::RpcHttp;
use openraft::ServerState;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cluster::HealthTracker;
use crate::command::Command;
use crate::config::Config;
use crate::proposer::Proposer;
use crate::raft::{NodeId, Raft};
use crate::state::StoreHandle;
use crate::timers::SessionTimers;

/// Who leads, as this server sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Leadership {
    /// This server.
    Leader,
    /// Another server, at this RPC address.
    Follower { leader_addr: String },
    /// Nobody known (election in progress, or no quorum).
    Unknown,
}

/// State shared by the RPC handlers and the leader loop.
pub(crate) struct Shared {
    /// This server's Raft id.
    pub(crate) id: NodeId,
    pub(crate) config: Config,
    pub(crate) raft: Raft,
    /// The write path into `raft` (batches concurrent writes).
    proposer: Proposer,
    pub(crate) store: StoreHandle,
    /// Session TTL timers; armed only while this server leads.
    pub(crate) timers: SessionTimers,
    /// Client for forwarding to the leader (the same pool Raft's network uses).
    pub(crate) http: RpcHttp,
    /// The LAN gossip pool this server is a member of, when the caller runs one; the leader
    /// reconciles its members into the catalog.
    pub(crate) gossip: Option<Gossip>,
    /// Server health as the leader last observed it (empty on followers).
    pub(crate) health: Mutex<HealthTracker>,
    /// When an append-entries from a leader last succeeded here.
    last_contact: Mutex<Option<Instant>>,
    started: Instant,
    /// Flips to `true` once on shutdown; parked blocking queries return at once.
    shutdown: watch::Sender<bool>,
    /// Tests hold this to stall the Raft log's syncs (see `LogStore::sync_gate`).
    #[cfg(test)]
    pub(crate) log_gate: std::sync::Arc<std::sync::Mutex<()>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("id", &self.id)
            .field("node_name", &self.config.node_name)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// State over a started Raft and the store its state machine serves.
    pub(crate) fn new(
        config: Config,
        id: NodeId,
        raft: Raft,
        store: StoreHandle,
        timers: SessionTimers,
        http: RpcHttp,
    ) -> Self {
        let proposer = Proposer::start(raft.clone(), config.group_commit);
        Shared {
            id,
            config,
            proposer,
            raft,
            store,
            timers,
            http,
            gossip: None,
            health: Mutex::new(HealthTracker::default()),
            last_contact: Mutex::new(None),
            started: Instant::now(),
            shutdown: watch::Sender::new(false),
            #[cfg(test)]
            log_gate: std::sync::Arc::default(),
        }
    }

    /// The same state, with the gate of the Raft log's syncs (tests).
    #[cfg(test)]
    pub(crate) fn with_log_gate(mut self, gate: std::sync::Arc<std::sync::Mutex<()>>) -> Self {
        self.log_gate = gate;
        self
    }

    /// The same state, with the LAN gossip pool the leader reconciles.
    pub(crate) fn with_gossip(mut self, gossip: Option<Gossip>) -> Self {
        self.gossip = gossip;
        self
    }

    /// Who leads, from the latest Raft metrics.
    pub(crate) fn leadership(&self) -> Leadership {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        match m.current_leader {
            Some(id) if id == self.id && m.state == ServerState::Leader => Leadership::Leader,
            Some(id) if id != self.id => {
                m.membership_config
                    .membership()
                    .get_node(&id)
                    .map_or(Leadership::Unknown, |node| Leadership::Follower {
                        leader_addr: node.addr.clone(),
                    })
            }
            _ => Leadership::Unknown,
        }
    }

    /// Proposes a command on this server's Raft and waits for it to apply; concurrent
    /// writes share an entry (group commit, see [`Proposer`]).
    ///
    /// Callers decide up front that this server leads; if leadership is lost meanwhile, the
    /// answer is Consul's `leadership lost while committing log`, never a forward from here.
    pub(crate) async fn propose(&self, cmd: Command) -> Result<(u64, WriteResult), RpcError> {
        self.proposer.propose(cmd).await
    }

    /// The leader address and voter addresses, for `/v1/status/*`.
    pub(crate) fn raft_peers(&self) -> (String, Vec<String>, u64) {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let leader = m
            .current_leader
            .and_then(|id| membership.get_node(&id))
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        let mut peers: Vec<String> = membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|n| n.addr.clone()))
            .collect();
        peers.sort();
        let applied = m.last_applied.map_or(0, |l| l.index);
        (leader, peers, applied)
    }

    /// Locks a field, surviving a panicked holder (the data are plain values).
    pub(crate) fn locked<'a, T>(m: &'a Mutex<T>) -> std::sync::MutexGuard<'a, T> {
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records contact from a leader (an accepted append-entries).
    pub(crate) fn touch_leader_contact(&self) {
        *self
            .last_contact
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// The metadata of a read answered here at `index`.
    pub(crate) fn query_meta(&self, index: u64) -> QueryMeta {
        let known_leader = self.raft.metrics().borrow().current_leader.is_some();
        let last_contact_ms = match self.leadership() {
            Leadership::Leader => 0,
            _ => {
                let since = self
                    .last_contact
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .unwrap_or(self.started);
                u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
            }
        };
        QueryMeta {
            index: index.max(1),
            known_leader,
            last_contact_ms,
            results_filtered_by_acls: false,
        }
    }

    /// Resolves once shutdown starts.
    pub(crate) fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.shutdown.subscribe();
        async move {
            // The sender lives in `Shared`; if it is gone, so is the server.
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    }

    /// Starts shutdown: wakes everything waiting on [`Shared::stopping`].
    pub(crate) fn stop(&self) {
        self.shutdown.send_replace(true);
    }
}
