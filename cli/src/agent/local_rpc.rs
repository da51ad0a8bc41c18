//! The agent's [`ServerRpc`] when the server runs in the same process (`-server`, `-dev`):
//! calls go straight to the server's handlers ([`LocalRpc`]), so a parked blocking query
//! holds no socket and no descriptor, as Consul's agent calls its own server in-process.

use concord_api::rpc::{
    Query, QueryOptions, ReadRequest, ReadResponse, RpcError, WriteRequest, WriteResponse,
};
use concord_client_agent::rpc_client::ServerRpc;
use concord_server::LocalRpc;

/// [`ServerRpc`] over this process's server. The server list learned from the gossip pool
/// is ignored: this server answers everything (a follower forwards to the leader itself).
#[derive(Debug)]
pub(crate) struct InProcess(pub(crate) LocalRpc);

#[async_trait::async_trait]
impl ServerRpc for InProcess {
    async fn read(&self, query: Query, options: QueryOptions) -> Result<ReadResponse, RpcError> {
        self.0.read(ReadRequest { query, options }).await
    }

    async fn write(&self, request: WriteRequest) -> Result<WriteResponse, RpcError> {
        self.0.write(request).await
    }
}
