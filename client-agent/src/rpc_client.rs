//! The agent's one seam to the servers: the [`ServerRpc`] trait (a read and a write, see
//! [`concord_api::rpc`]), its real implementation [`ServerClient`], and typed queries on top
//! of it so that callers never match a [`QueryResult`] or [`WriteResult`] themselves.
//!
//! Any server answers any request (followers forward to the leader), so the client only
//! needs *a* reachable server: it starts with the one that answered last and rotates through
//! the list when a server cannot be reached. The list is the configured servers plus those
//! the gossip pool shows ([`ServerRpc::set_servers`], fed by [`crate::agent::follow_pool`]). A read also moves on when the
//! exchange broke midway (it changes nothing, so asking again is safe); a write does not,
//! since the first server may have applied it and a second try could apply it twice. A
//! server's own answer (even an error) ends the rotation: another server would say the same.
//!
//! The agent wraps whichever [`ServerRpc`] it runs on in [`Coalesced`]: identical blocking
//! reads parked at once share one server call, and their requests one encoded reply.

mod coalesce;
#[cfg(test)]
pub(crate) mod fake;

pub use coalesce::{encode_once, track, Coalesced};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use concord_api::catalog::{
    CheckServiceNode, DeregisterRequest, HealthCheck, Node, NodeServices, RegisterRequest,
    ServiceNode,
};
use concord_api::config_entry::StoredConfigEntry;
use concord_api::connect::{CaConfiguration, CaRoots, IssuedCert, SignRequest};
use concord_api::kv::{KvEntry, KvOp, TxnResponse};
use concord_api::rpc::{
    Query, QueryMeta, QueryOptions, QueryResult, ReadRequest, ReadResponse, RpcError,
    SnapshotArchive, WriteRequest, WriteResponse, WriteResult, READ_PATH, WRITE_PATH,
};
use concord_api::session::Session;
use concord_net::rpc::{CallError, RpcHttp};

/// Extra time allowed beyond a blocking query's longest server-side hold before the HTTP
/// request is abandoned (transfer time and a slow server).
const BLOCKING_SLACK: Duration = Duration::from_secs(30);
/// Timeout of non-blocking requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Server RPC as the agent sees it. [`ServerClient`] talks to real servers; tests use an
/// in-memory fake. Object safe: the agent holds an `Arc<dyn ServerRpc>`.
#[async_trait::async_trait]
pub trait ServerRpc: Send + Sync + std::fmt::Debug {
    /// Runs a read; blocks server-side when `options.min_index > 0`.
    async fn read(&self, query: Query, options: QueryOptions) -> Result<ReadResponse, RpcError>;

    /// Runs a write through Raft.
    async fn write(&self, request: WriteRequest) -> Result<WriteResponse, RpcError>;

    /// Replaces the servers to talk to (learned from the gossip pool). Clients with a fixed
    /// set of servers ignore it.
    fn set_servers(&self, _servers: Vec<SocketAddr>) {}
}

/// Talks to the servers' RPC endpoints.
#[derive(Debug)]
pub struct ServerClient {
    http: RpcHttp,
    /// Replaced as servers join and leave the pool; read once per call (std lock: never
    /// held across an await).
    servers: RwLock<Vec<SocketAddr>>,
    current: AtomicUsize,
}

impl ServerClient {
    /// A client for these servers' RPC addresses. Fails only if no HTTP client can be built
    /// (the TLS backend failed to initialise).
    pub fn new(servers: Vec<SocketAddr>) -> Result<Self, RpcError> {
        ServerClient::with_tls(servers, None)
    }

    /// [`ServerClient::new`], calling over TLS with this rustls config when one is given.
    pub fn with_tls(
        servers: Vec<SocketAddr>,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Result<Self, RpcError> {
        let http = RpcHttp::with_tls(tls).map_err(CallError::into_rpc_error)?;
        Ok(ServerClient {
            http,
            servers: RwLock::new(servers),
            current: AtomicUsize::new(0),
        })
    }

    /// The servers known now.
    pub fn servers(&self) -> Vec<SocketAddr> {
        self.servers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sends to the servers in turn until one answers. `idempotent` says whether a broken
    /// exchange (the request may have arrived) may be retried on the next server.
    async fn call<B, T>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
        idempotent: bool,
    ) -> Result<T, RpcError>
    where
        B: serde::Serialize + Sync,
        T: serde::de::DeserializeOwned,
    {
        let servers = self.servers();
        if servers.is_empty() {
            return Err(RpcError::Internal("No known Consul servers".to_string()));
        }
        let start = self.current.load(Ordering::Relaxed);
        let mut last_err = None;
        for attempt in 0..servers.len() {
            let idx = (start + attempt) % servers.len();
            let addr = servers[idx].to_string();
            match self.http.post(&addr, path, body, &[], timeout).await {
                Ok(reply) => {
                    self.current.store(idx, Ordering::Relaxed);
                    return Ok(reply);
                }
                Err(CallError::Remote(e)) => {
                    self.current.store(idx, Ordering::Relaxed);
                    return Err(e);
                }
                Err(e @ CallError::Transport { .. }) if !idempotent => {
                    tracing::warn!(server = %addr, error = %e, "server RPC write failed midway");
                    return Err(e.into_rpc_error());
                }
                Err(e) => {
                    // This server is unreachable (or a read broke midway): try the next one.
                    tracing::debug!(server = %addr, error = %e, "server RPC failed");
                    last_err = Some(e.into_rpc_error());
                }
            }
        }
        Err(last_err.unwrap_or(RpcError::NoLeader))
    }
}

#[async_trait::async_trait]
impl ServerRpc for ServerClient {
    async fn read(&self, query: Query, options: QueryOptions) -> Result<ReadResponse, RpcError> {
        let timeout = if options.min_index > 0 {
            options.max_blocking() + BLOCKING_SLACK
        } else {
            REQUEST_TIMEOUT
        };
        self.call(READ_PATH, &ReadRequest { query, options }, timeout, true)
            .await
    }

    async fn write(&self, request: WriteRequest) -> Result<WriteResponse, RpcError> {
        self.call(WRITE_PATH, &request, REQUEST_TIMEOUT, false)
            .await
    }

    fn set_servers(&self, servers: Vec<SocketAddr>) {
        let mut guard = self.servers.write().unwrap_or_else(|e| e.into_inner());
        if *guard != servers {
            tracing::info!(?servers, "server list changed");
            *guard = servers;
        }
    }
}

/// A read's answer with its index and leader information.
pub type Read<T> = Result<(QueryMeta, T), RpcError>;

/// The one place a reply of the wrong kind becomes an error (a server bug or version skew).
fn mismatch<T: std::fmt::Debug>(what: &T) -> RpcError {
    RpcError::Internal(format!("unexpected RPC result: {what:?}"))
}

/// Typed reads and writes: each names the [`Query`] or [`WriteRequest`] it sends and the one
/// result variant it accepts.
// Each `pick` closure hands a wrong reply back whole so that the error can show it; it is
// moved once, on a path that only a server bug takes, so its size costs nothing.
#[allow(clippy::result_large_err)]
impl dyn ServerRpc {
    async fn read_as<T>(
        &self,
        query: Query,
        options: QueryOptions,
        pick: impl FnOnce(QueryResult) -> Result<T, QueryResult>,
    ) -> Read<T> {
        let response = self.read(query, options).await?;
        let value = pick(response.result).map_err(|other| mismatch(&other))?;
        Ok((response.meta, value))
    }

    async fn write_as<T>(
        &self,
        request: WriteRequest,
        pick: impl FnOnce(WriteResult) -> Result<T, WriteResult>,
    ) -> Result<T, RpcError> {
        let response = self.write(request).await?;
        pick(response.result).map_err(|other| mismatch(&other))
    }

    /// `Query::Nodes`.
    pub async fn nodes(
        &self,
        node_meta: Vec<(String, String)>,
        o: QueryOptions,
    ) -> Read<Vec<Node>> {
        self.read_as(Query::Nodes { node_meta }, o, |r| match r {
            QueryResult::Nodes(n) => Ok(n),
            other => Err(other),
        })
        .await
    }

    /// `Query::Services`: service name to the union of its tags.
    pub async fn services(
        &self,
        node_meta: Vec<(String, String)>,
        o: QueryOptions,
    ) -> Read<BTreeMap<String, Vec<String>>> {
        self.read_as(Query::Services { node_meta }, o, |r| match r {
            QueryResult::Services(m) => Ok(m),
            other => Err(other),
        })
        .await
    }

    /// `Query::ServiceNodes` (pass that query).
    pub async fn service_nodes(&self, query: Query, o: QueryOptions) -> Read<Vec<ServiceNode>> {
        self.read_as(query, o, |r| match r {
            QueryResult::ServiceNodes(rows) => Ok(rows),
            other => Err(other),
        })
        .await
    }

    /// `Query::NodeServices`; `None` for an unknown node.
    pub async fn node_services(&self, node: String, o: QueryOptions) -> Read<Option<NodeServices>> {
        self.read_as(Query::NodeServices { node }, o, |r| match r {
            QueryResult::NodeServices(n) => Ok(n),
            other => Err(other),
        })
        .await
    }

    /// `Query::HealthService` (pass that query).
    pub async fn health_service(
        &self,
        query: Query,
        o: QueryOptions,
    ) -> Read<Vec<CheckServiceNode>> {
        self.read_as(query, o, |r| match r {
            QueryResult::Health(rows) => Ok(rows),
            other => Err(other),
        })
        .await
    }

    /// `Query::ServiceChecks`, `NodeChecks` or `ChecksInState`.
    pub async fn checks(&self, query: Query, o: QueryOptions) -> Read<Vec<HealthCheck>> {
        self.read_as(query, o, |r| match r {
            QueryResult::Checks(c) => Ok(c),
            other => Err(other),
        })
        .await
    }

    /// `Query::CatalogDump`: every node, and every instance with its checks.
    pub async fn catalog_dump(&self, o: QueryOptions) -> Read<(Vec<Node>, Vec<CheckServiceNode>)> {
        self.read_as(Query::CatalogDump, o, |r| match r {
            QueryResult::CatalogDump { nodes, instances } => Ok((nodes, instances)),
            other => Err(other),
        })
        .await
    }

    /// `Query::KvGet` or `KvList`; empty when nothing matches.
    pub async fn kv(&self, query: Query, o: QueryOptions) -> Read<Vec<KvEntry>> {
        self.read_as(query, o, |r| match r {
            QueryResult::Kv(entries) => Ok(entries),
            other => Err(other),
        })
        .await
    }

    /// `Query::KvKeys`.
    pub async fn kv_keys(
        &self,
        prefix: String,
        separator: Option<String>,
        o: QueryOptions,
    ) -> Read<Vec<String>> {
        self.read_as(Query::KvKeys { prefix, separator }, o, |r| match r {
            QueryResult::Keys(keys) => Ok(keys),
            other => Err(other),
        })
        .await
    }

    /// `Query::SessionInfo`, `SessionList` or `NodeSessions`.
    pub async fn sessions(&self, query: Query, o: QueryOptions) -> Read<Vec<Session>> {
        self.read_as(query, o, |r| match r {
            QueryResult::Sessions(list) => Ok(list),
            other => Err(other),
        })
        .await
    }

    /// `Query::RaftStatus`: the leader's RPC address (`""` without one) and the voters'.
    pub async fn raft_status(&self, o: QueryOptions) -> Read<(String, Vec<String>)> {
        self.read_as(Query::RaftStatus, o, |r| match r {
            QueryResult::RaftStatus { leader, peers } => Ok((leader, peers)),
            other => Err(other),
        })
        .await
    }

    /// `WriteRequest::Register`, on behalf of `token` (which the servers check with ACLs
    /// on; `None`: anonymous).
    pub async fn register(
        &self,
        request: RegisterRequest,
        token: Option<String>,
    ) -> Result<(), RpcError> {
        let request = WriteRequest::Register(request).authorized(token);
        self.write(request).await.map(drop)
    }

    /// `WriteRequest::Deregister`, on behalf of `token`.
    pub async fn deregister(
        &self,
        request: DeregisterRequest,
        token: Option<String>,
    ) -> Result<(), RpcError> {
        let request = WriteRequest::Deregister(request).authorized(token);
        self.write(request).await.map(drop)
    }

    /// `WriteRequest::Kv`: whether the operation took effect (a failed CAS or lock is
    /// `false`).
    pub async fn kv_write(&self, op: KvOp) -> Result<bool, RpcError> {
        self.write_as(WriteRequest::Kv(op), |r| match r {
            WriteResult::Bool(b) => Ok(b),
            WriteResult::Done => Ok(true),
            other => Err(other),
        })
        .await
    }

    /// `WriteRequest::Txn`.
    pub async fn txn(&self, ops: Vec<KvOp>) -> Result<TxnResponse, RpcError> {
        self.write_as(WriteRequest::Txn(ops), |r| match r {
            WriteResult::Txn(response) => Ok(response),
            other => Err(other),
        })
        .await
    }

    /// `WriteRequest::SessionCreate`: the new session's ID.
    pub async fn session_create(&self, session: Session) -> Result<String, RpcError> {
        self.write_as(WriteRequest::SessionCreate(session), |r| match r {
            WriteResult::SessionId(id) => Ok(id),
            other => Err(other),
        })
        .await
    }

    /// `WriteRequest::SessionDestroy`.
    pub async fn session_destroy(&self, id: String) -> Result<(), RpcError> {
        self.write(WriteRequest::SessionDestroy { id })
            .await
            .map(drop)
    }

    /// `Query::ConfigEntryGet` or `ConfigEntryList`.
    pub async fn config_entries(
        &self,
        query: Query,
        o: QueryOptions,
    ) -> Read<Vec<StoredConfigEntry>> {
        self.read_as(query, o, |r| match r {
            QueryResult::ConfigEntries(list) => Ok(list),
            other => Err(other),
        })
        .await
    }

    /// `WriteRequest::ConfigEntrySet` / `ConfigEntryDelete`: whether it took effect (a
    /// failed check-and-set is `false`).
    pub async fn config_entry_write(&self, request: WriteRequest) -> Result<bool, RpcError> {
        self.write_as(request, |r| match r {
            WriteResult::Bool(b) => Ok(b),
            other => Err(other),
        })
        .await
    }

    /// `WriteRequest::SessionRenew`: the renewed session, `None` if it does not exist.
    pub async fn session_renew(&self, id: String) -> Result<Option<Session>, RpcError> {
        self.write_as(WriteRequest::SessionRenew { id }, |r| match r {
            WriteResult::Session(s) => Ok(s),
            other => Err(other),
        })
        .await
    }

    /// `Query::Acl`: any ACL read.
    pub async fn acl_read(
        &self,
        query: concord_api::acl::AclQuery,
        o: QueryOptions,
    ) -> Read<concord_api::acl::AclResult> {
        self.read_as(Query::Acl(query), o, |r| match r {
            QueryResult::Acl(result) => Ok(result),
            other => Err(other),
        })
        .await
    }

    /// `WriteRequest::Acl`: the token, policy or role as stored, or a delete's outcome.
    pub async fn acl_write(
        &self,
        write: concord_api::acl::AclWrite,
    ) -> Result<concord_api::acl::AclResult, RpcError> {
        self.write_as(WriteRequest::Acl(write), |r| match r {
            WriteResult::Acl(result) => Ok(result),
            other => Err(other),
        })
        .await
    }

    /// `Query::CaRoots`.
    pub async fn ca_roots(&self, o: QueryOptions) -> Read<CaRoots> {
        self.read_as(Query::CaRoots, o, |r| match r {
            QueryResult::CaRoots(roots) => Ok(roots),
            other => Err(other),
        })
        .await
    }

    /// `Query::Snapshot`: a snapshot archive of the servers' state (gzipped tar bytes).
    pub async fn snapshot(&self, o: QueryOptions) -> Read<Vec<u8>> {
        self.read_as(Query::Snapshot, o, |r| match r {
            QueryResult::Snapshot(archive) => Ok(archive.0),
            other => Err(other),
        })
        .await
    }

    /// `Query::CaConfig`: `None` before the CA is initialized.
    pub async fn ca_config(&self, o: QueryOptions) -> Read<Option<CaConfiguration>> {
        self.read_as(Query::CaConfig, o, |r| match r {
            QueryResult::CaConfig(config) => Ok(config),
            other => Err(other),
        })
        .await
    }

    /// `WriteRequest::CaSetConfig`.
    pub async fn ca_set_config(&self, config: CaConfiguration) -> Result<(), RpcError> {
        self.write(WriteRequest::CaSetConfig(config))
            .await
            .map(drop)
    }

    /// `WriteRequest::CaSign`: the signed leaf (without a key).
    pub async fn ca_sign(&self, request: SignRequest) -> Result<IssuedCert, RpcError> {
        self.write_as(WriteRequest::CaSign(request), |r| match r {
            WriteResult::CaLeaf(cert) => Ok(cert),
            other => Err(other),
        })
        .await
    }

    /// `WriteRequest::SnapshotRestore`: replaces the servers' state with the archive's; the
    /// Raft index the restore applied at.
    pub async fn snapshot_restore(&self, archive: Vec<u8>) -> Result<u64, RpcError> {
        let request = WriteRequest::SnapshotRestore(SnapshotArchive(archive));
        self.write(request).await.map(|r| r.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_servers_are_all_tried_then_reported() {
        let closed = |_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let client = ServerClient::new((0..2).map(closed).collect()).unwrap();
        let err = client
            .write(WriteRequest::SessionDestroy { id: "x".into() })
            .await;
        assert!(
            matches!(&err, Err(RpcError::Internal(m)) if m.starts_with("rpc error making call")),
            "{err:?}"
        );
        let none = ServerClient::new(Vec::new()).unwrap();
        assert_eq!(
            none.read(Query::RaftStatus, QueryOptions::default()).await,
            Err(RpcError::Internal("No known Consul servers".into()))
        );
    }

    #[tokio::test]
    async fn a_reply_of_the_wrong_kind_is_an_internal_error() {
        let fake = fake::FakeServers::default();
        let rpc: &dyn ServerRpc = &fake;
        let err = rpc.checks(Query::RaftStatus, QueryOptions::default()).await;
        assert!(
            matches!(&err, Err(RpcError::Internal(m)) if m.starts_with("unexpected RPC result")),
            "{err:?}"
        );
    }
}
