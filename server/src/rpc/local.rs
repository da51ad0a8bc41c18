//! The RPC endpoints for a caller in this process: the agent of `agent -server`/`-dev`
//! calls the same `read`/`write` the HTTP handlers call, with no socket, no JSON and no
//! connection per parked blocking query (Consul's agent calls its in-process server the
//! same way, through `delegate.RPC`).

use std::sync::Arc;

use concord_api::rpc::{ReadRequest, ReadResponse, RpcError, WriteRequest, WriteResponse};

use crate::node::Shared;

/// A handle on a running server's RPC endpoints. Cheap to clone. Requests are handled as
/// if they came from an agent over the RPC port (never as forwarded by another server), so
/// a follower still forwards to the leader.
#[derive(Clone, Debug)]
pub struct LocalRpc {
    shared: Arc<Shared>,
}

impl LocalRpc {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        LocalRpc { shared }
    }

    /// `POST api::rpc::READ_PATH`: a read, blocking server-side when `min_index > 0`.
    pub async fn read(&self, request: ReadRequest) -> Result<ReadResponse, RpcError> {
        super::read::read(&self.shared, request, false).await
    }

    /// `POST api::rpc::WRITE_PATH`: a write through Raft (forwarded to the leader from a
    /// follower).
    pub async fn write(&self, request: WriteRequest) -> Result<WriteResponse, RpcError> {
        super::write::write(&self.shared, request, false).await
    }
}
