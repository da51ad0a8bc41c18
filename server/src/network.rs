//! openraft's network: Raft RPCs to other servers as HTTP/JSON `POST`s on their RPC port
//! (the endpoints are served by [`rpc::raft`](crate::rpc)).
//!
//! Transport failures map to openraft's retry classes: a refused connection is
//! `Unreachable` (openraft backs off), anything else on the wire is `Network` (retried at
//! once). A reply carrying the remote Raft's own error is `RemoteError`.

use std::time::Duration;

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

use crate::raft::{Node, NodeId, Snapshot, TypeConfig, Vote};
use crate::rpc::raft::{
    FullSnapshotRequest, APPEND_ENTRIES_PATH, FULL_SNAPSHOT_PATH, INSTALL_SNAPSHOT_PATH, VOTE_PATH,
};

/// Creates a [`Connection`] per peer; all share one HTTP client (one connection pool).
#[derive(Clone, Debug)]
pub(crate) struct NetworkFactory {
    client: reqwest::Client,
}

impl NetworkFactory {
    pub(crate) fn new(client: reqwest::Client) -> Self {
        NetworkFactory { client }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Connection {
        Connection {
            client: self.client.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

/// Raft RPCs to one peer.
#[derive(Debug)]
pub(crate) struct Connection {
    client: reqwest::Client,
    target: NodeId,
    addr: String,
}

/// Why an RPC did not produce a reply from the peer's Raft.
#[derive(Debug, thiserror::Error)]
enum TransportError {
    #[error("peer {addr} unreachable: {source}")]
    Unreachable {
        addr: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("RPC to {addr} failed: {message}")]
    Network { addr: String, message: String },
}

impl TransportError {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<NodeId, Node, E> {
        match &self {
            TransportError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&self)),
            TransportError::Network { .. } => RPCError::Network(NetworkError::new(&self)),
        }
    }

    fn into_streaming(self) -> StreamingError<TypeConfig, Fatal<NodeId>> {
        match &self {
            TransportError::Unreachable { .. } => {
                StreamingError::Unreachable(Unreachable::new(&self))
            }
            TransportError::Network { .. } => StreamingError::Network(NetworkError::new(&self)),
        }
    }
}

impl Connection {
    async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, TransportError> {
        let network = |message: String| TransportError::Network {
            addr: self.addr.clone(),
            message,
        };
        let resp = self
            .client
            .post(format!("http://{}{path}", self.addr))
            .json(req)
            .timeout(timeout)
            .send()
            .await
            .map_err(|source| {
                if source.is_connect() {
                    TransportError::Unreachable {
                        addr: self.addr.clone(),
                        source,
                    }
                } else {
                    network(source.to_string())
                }
            })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| network(e.to_string()))?;
        if !status.is_success() {
            return Err(network(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        serde_json::from_slice(&body).map_err(|e| network(format!("bad reply: {e}")))
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
            .map_err(TransportError::into_rpc)?;
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
            .map_err(TransportError::into_rpc)?;
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
            .map_err(TransportError::into_rpc)?;
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
                Err(e) => Err(e.into_streaming()),
            },
        }
    }
}
