//! Whose token goes to the servers with each RPC. The servers check every read and write
//! against the token it carries (`WriteRequest::Authorized`, `Query::Authorized`), so the
//! agent stamps each one with whose behalf it is made on:
//! - inside an HTTP request ([`scope`], set once by the API's outermost ACL layer): the
//!   request's token, else `acl.tokens.default` (Consul's agent forwards the request's
//!   token to the servers the same way);
//! - anywhere else (anti-entropy, the catalog and intentions caches, leaf certificates),
//!   and for the whole catalog (`Query::CatalogDump`, the agent's own copy, which the
//!   endpoints that read it filter by the request's token themselves): the agent's own
//!   token, `acl.tokens.agent`, else `acl.tokens.default`.
//!
//! A request already stamped keeps its token (catalog writes name theirs explicitly). With
//! ACLs off nothing is stamped.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use concord_api::rpc::{Query, QueryOptions, ReadResponse, RpcError, WriteRequest, WriteResponse};

use super::AclResolver;
use crate::rpc_client::ServerRpc;

tokio::task_local! {
    /// The secret the current HTTP request acts with.
    static REQUEST_SECRET: Option<String>;
}

/// Runs `work` on behalf of `secret` (an HTTP request's effective token): every server RPC
/// made inside it carries that token.
pub async fn scope<F: Future>(secret: Option<String>, work: F) -> F::Output {
    REQUEST_SECRET.scope(secret, work).await
}

/// [`ServerRpc`] that stamps every read and write with whose behalf it is made on.
#[derive(Debug)]
pub struct OnBehalf {
    inner: Arc<dyn ServerRpc>,
    acl: Arc<AclResolver>,
}

impl OnBehalf {
    /// Wraps `inner`; `acl` supplies the agent's own token.
    pub fn new(inner: Arc<dyn ServerRpc>, acl: Arc<AclResolver>) -> Self {
        OnBehalf { inner, acl }
    }

    /// The token of the call being made now (`None`: ACLs off, or nothing configured, so the
    /// servers see anonymous).
    fn secret(&self) -> Option<String> {
        if !self.acl.enabled() {
            return None;
        }
        REQUEST_SECRET
            .try_with(Clone::clone)
            .unwrap_or_else(|_| self.acl.agent_secret())
    }
}

#[async_trait::async_trait]
impl ServerRpc for OnBehalf {
    async fn read(&self, query: Query, options: QueryOptions) -> Result<ReadResponse, RpcError> {
        let query = match query {
            q @ Query::Authorized { .. } => q,
            // The whole catalog is the agent's own copy: DNS answers from it, and endpoints
            // cut one service's rows out of it and filter those by the request's token
            // themselves. Read under the request's token, the servers' filtering of the
            // whole would mark every cut as filtered.
            q @ Query::CatalogDump => q.authorized(self.acl.agent_secret()),
            q => q.authorized(self.secret()),
        };
        self.inner.read(query, options).await
    }

    async fn write(&self, request: WriteRequest) -> Result<WriteResponse, RpcError> {
        let request = match request {
            r @ WriteRequest::Authorized { .. } => r,
            r => r.authorized(self.secret()),
        };
        self.inner.write(request).await
    }

    fn set_servers(&self, servers: Vec<SocketAddr>) {
        self.inner.set_servers(servers);
    }
}
