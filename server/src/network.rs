//! openraft's network: Raft RPCs to other servers as HTTP/JSON `POST`s on their RPC port
//! (served by `rpc::raft`; both ends take paths and bodies from [`raft`](crate::raft)). Each
//! call is one [`RpcHttp::post`].
//!
//! [`Mirror`] sends the leader's new entries to the other voters before its own sync is
//! done, so the leader's `fdatasync` and the followers' overlap (openraft 0.9 replicates only
//! after the leader's append is flushed).
//!
//! Call failures map to openraft's retry classes: a refused connection is `Unreachable`
//! (openraft backs off), anything else on the wire is `Network` (retried at once). A reply
//! carrying the remote Raft's own error is `RemoteError`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use concord_net::rpc::{CallError, RpcHttp};
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::metrics::RaftMetrics;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::ServerState;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Serialize;
use tokio::sync::watch;

use crate::log_store::AppendObserver;
use crate::raft::{
    Entry, FullSnapshotRequest, LogId, Node, NodeId, Snapshot, TypeConfig, Vote,
    APPEND_ENTRIES_PATH, FULL_SNAPSHOT_PATH, INSTALL_SNAPSHOT_PATH, VOTE_PATH,
};

/// Early appends one [`Mirror`] may have outstanding to one peer; beyond it new entries
/// reach that peer only through openraft's replication. One: the overlap matters when
/// writes are few (under load, group commit already fills each sync), sending every entry
/// twice costs CPU, and a slow or dead peer costs nothing.
const MIRROR_IN_FLIGHT: usize = 1;
/// How long an early append may take: it only saves time if it is quick.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(1);

/// Creates a [`Connection`] per peer; all share one HTTP client (one connection pool).
#[derive(Clone, Debug)]
pub(crate) struct NetworkFactory {
    http: RpcHttp,
}

impl NetworkFactory {
    pub(crate) fn new(http: RpcHttp) -> Self {
        NetworkFactory { http }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Connection {
        Connection {
            http: self.http.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

/// Raft RPCs to one peer.
#[derive(Debug)]
pub(crate) struct Connection {
    http: RpcHttp,
    target: NodeId,
    addr: String,
}

/// A call that got no reply from the peer's Raft, in openraft's terms: nothing reached the
/// peer (`Unreachable`, openraft backs off) or the exchange failed (`Network`, retried).
/// The Raft endpoints answer every Raft-level outcome with `200`, so a non-2xx reply
/// (`CallError::Remote`) is a failure of the exchange too.
fn into_rpc<E: std::error::Error>(e: CallError) -> RPCError<NodeId, Node, E> {
    match e {
        CallError::Connect { .. } => RPCError::Unreachable(Unreachable::new(&e)),
        CallError::Transport { .. } | CallError::Remote(_) => {
            RPCError::Network(NetworkError::new(&e))
        }
    }
}

/// [`into_rpc`] for the snapshot stream's error type.
fn into_streaming(e: CallError) -> StreamingError<TypeConfig, Fatal<NodeId>> {
    match e {
        CallError::Connect { .. } => StreamingError::Unreachable(Unreachable::new(&e)),
        CallError::Transport { .. } | CallError::Remote(_) => {
            StreamingError::Network(NetworkError::new(&e))
        }
    }
}

impl Connection {
    async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        self.http.post(&self.addr, path, req, &[], timeout).await
    }

    fn remote<E: std::error::Error>(&self, e: E) -> RemoteError<NodeId, Node, E> {
        RemoteError::new(self.target, e)
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let reply: Result<_, RaftError<NodeId>> = self
            .post(APPEND_ENTRIES_PATH, &rpc, option.hard_ttl())
            .await
            .map_err(into_rpc)?;
        reply.map_err(|e| RPCError::RemoteError(self.remote(e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let reply: Result<_, RaftError<NodeId, InstallSnapshotError>> = self
            .post(INSTALL_SNAPSHOT_PATH, &rpc, option.hard_ttl())
            .await
            .map_err(into_rpc)?;
        reply.map_err(|e| RPCError::RemoteError(self.remote(e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let reply: Result<_, RaftError<NodeId>> = self
            .post(VOTE_PATH, &rpc, option.hard_ttl())
            .await
            .map_err(into_rpc)?;
        reply.map_err(|e| RPCError::RemoteError(self.remote(e)))
    }

    /// Sends the whole snapshot in one request: Concord's state is small enough that
    /// chunking buys nothing, and one request is one atomic install on the receiver.
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let req = FullSnapshotRequest {
            vote,
            meta: snapshot.meta,
            data: Some(snapshot.snapshot.into_inner()),
        };
        let send = self.post::<_, Result<SnapshotResponse<NodeId>, Fatal<NodeId>>>(
            FULL_SNAPSHOT_PATH,
            &req,
            option.hard_ttl(),
        );
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            reply = send => match reply {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(fatal)) => Err(StreamingError::RemoteError(self.remote(fatal))),
                Err(e) => Err(into_streaming(e)),
            },
        }
    }
}

/// Early replication (Raft thesis §10.2.1: the leader may write its log in parallel with
/// replicating it). openraft 0.9's core waits for the leader's own append to be flushed
/// before it starts replicating the entries, so a write paid two syncs in a row: the
/// leader's, then a follower's. The mirror, shown the leader's appends as they are queued
/// (those not queued behind another sync, see [`AppendObserver`]), sends the entries to the other voters at once as an ordinary
/// append-entries from this leader; a follower appends (and syncs) them while the leader
/// syncs its copy. openraft's own append-entries for those entries follows after the
/// leader's sync; the follower finds them already in its log and answers as soon as its
/// sync of them is done (its Raft handles one append at a time).
///
/// Safety rests on Raft itself, not on the mirror: the request is a real append-entries from
/// the leader of the entries' term, with the log id before them as `prev_log_id`, so a
/// follower accepts exactly what openraft would have sent it (a stale leader's or an
/// out-of-order one is rejected or is a no-op), and the leader counts a follower's copy, and
/// its own, only through openraft's replication and flush as before. The replies are
/// ignored.
#[derive(Debug)]
pub(crate) struct Mirror {
    id: NodeId,
    metrics: watch::Receiver<RaftMetrics<NodeId, Node>>,
    http: RpcHttp,
    /// Early appends outstanding per peer.
    in_flight: Mutex<HashMap<NodeId, Arc<AtomicUsize>>>,
}

impl Mirror {
    pub(crate) fn new(
        id: NodeId,
        metrics: watch::Receiver<RaftMetrics<NodeId, Node>>,
        http: RpcHttp,
    ) -> Self {
        Mirror {
            id,
            metrics,
            http,
            in_flight: Mutex::default(),
        }
    }

    /// The voters other than this server, with their addresses, if this server leads in
    /// `term`.
    fn peers(&self, term: u64) -> Vec<(NodeId, String)> {
        let metrics = self.metrics.borrow();
        if metrics.state != ServerState::Leader || metrics.current_term != term {
            return Vec::new();
        }
        let membership = metrics.membership_config.membership();
        membership
            .voter_ids()
            .filter(|id| *id != self.id)
            .filter_map(|id| Some((id, membership.get_node(&id)?.addr.clone())))
            .collect()
    }

    /// Takes a slot for an early append to `peer`, if one is free.
    fn slot(&self, peer: NodeId) -> Option<Arc<AtomicUsize>> {
        let counter = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(peer)
            .or_default()
            .clone();
        let taken = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MIRROR_IN_FLIGHT).then_some(n + 1)
        });
        taken.is_ok().then_some(counter)
    }
}

impl AppendObserver for Mirror {
    fn appended(&self, prev: Option<LogId>, entries: &[Entry], committed: Option<LogId>) {
        let Some(first) = entries.first() else { return };
        // Only this server's own entries, appended while it leads their term: a follower's
        // appends (entries from another leader) are not for the mirror.
        let leader = first.log_id.leader_id;
        if leader.node_id != self.id {
            return;
        }
        let peers = self.peers(leader.term);
        if peers.is_empty() {
            return;
        }
        let req = Arc::new(AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(leader.term, self.id),
            prev_log_id: prev,
            entries: entries.to_vec(),
            leader_commit: committed,
        });
        for (peer, addr) in peers {
            let Some(slot) = self.slot(peer) else {
                continue;
            };
            let http = self.http.clone();
            let req = req.clone();
            tokio::spawn(async move {
                let reply = http
                    .post::<_, IgnoredAny>(&addr, APPEND_ENTRIES_PATH, &*req, &[], MIRROR_TIMEOUT)
                    .await;
                if let Err(e) = reply {
                    tracing::debug!(error = %e, "early append-entries failed");
                }
                slot.fetch_sub(1, Ordering::AcqRel);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use concord_api::rpc::RpcError;

    use super::*;

    fn kinds(e: impl Fn() -> CallError) -> (bool, bool) {
        let rpc: RPCError<NodeId, Node, RaftError<NodeId>> = into_rpc(e());
        let streaming = into_streaming(e());
        (
            matches!(rpc, RPCError::Unreachable(_)),
            matches!(streaming, StreamingError::Unreachable(_)),
        )
    }

    /// A follower has at most [`MIRROR_IN_FLIGHT`] early appends outstanding; a finished one
    /// frees its slot; peers count separately. And a server that does not lead sends none.
    #[tokio::test]
    async fn early_appends_are_bounded_per_peer_and_only_from_a_leader() {
        let (_tx, metrics) = watch::channel(RaftMetrics::new_initial(1));
        let mirror = Mirror::new(1, metrics, RpcHttp::new().unwrap());
        let taken: Vec<_> = (0..MIRROR_IN_FLIGHT)
            .map(|_| mirror.slot(2).expect("a free slot"))
            .collect();
        assert!(mirror.slot(2).is_none());
        assert!(mirror.slot(3).is_some());
        taken[0].fetch_sub(1, Ordering::AcqRel);
        assert!(mirror.slot(2).is_some());
        assert!(mirror.peers(0).is_empty());
    }

    /// openraft backs off from an unreachable peer but retries a failed exchange at once: only
    /// a refused connection may count as unreachable.
    #[test]
    fn only_connect_failures_are_unreachable() {
        let addr = || "10.0.0.9:8300".to_string();
        let connect = || CallError::Connect {
            addr: addr(),
            message: "refused".into(),
        };
        let transport = || CallError::Transport {
            addr: addr(),
            message: "reset".into(),
        };
        let remote = || CallError::Remote(RpcError::Internal("502".into()));
        assert_eq!(kinds(connect), (true, true));
        assert_eq!(kinds(transport), (false, false));
        assert_eq!(kinds(remote), (false, false));
        let rpc: RPCError<NodeId, Node, RaftError<NodeId>> = into_rpc(transport());
        assert!(matches!(rpc, RPCError::Network(_)));
    }
}
