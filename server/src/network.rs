//! openraft's network: Raft RPCs to other servers as HTTP/JSON `POST`s on their RPC port
//! (served by `rpc::raft`; both ends take paths and bodies from [`raft`](crate::raft)). Each
//! call is one [`RpcHttp::post`].
//!
//! Call failures map to openraft's retry classes: a refused connection is `Unreachable`
//! (openraft backs off), anything else on the wire is `Network` (retried at once). A reply
//! carrying the remote Raft's own error is `RemoteError`.

use std::time::Duration;

use concord_net::rpc::{CallError, RpcHttp};
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::raft::{
    FullSnapshotRequest, Node, NodeId, Snapshot, TypeConfig, Vote, APPEND_ENTRIES_PATH,
    FULL_SNAPSHOT_PATH, INSTALL_SNAPSHOT_PATH, VOTE_PATH,
};

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
