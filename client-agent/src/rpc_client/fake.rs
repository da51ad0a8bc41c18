//! An in-memory stand-in for the servers: a tiny catalog and KV store behind [`ServerRpc`],
//! enough to test anti-entropy and handlers without a server process. Only the queries and
//! writes those tests need are answered; anything else is an `Internal` error naming it.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use concord_api::catalog::{HealthCheck, Node, NodeService, NodeServices, RegisterRequest};
use concord_api::kv::{KvEntry, KvOp};
use concord_api::rpc::{
    Query, QueryMeta, QueryOptions, QueryResult, ReadResponse, RpcError, SnapshotArchive,
    WriteRequest, WriteResponse, WriteResult,
};

use super::ServerRpc;

/// What the fake answers `Query::Snapshot` with (and the only archive it restores).
pub(crate) const FAKE_ARCHIVE: &[u8] = b"fake snapshot archive";

/// Fake servers. Every write bumps one index; reads never block.
#[derive(Debug, Default)]
pub(crate) struct FakeServers {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    index: u64,
    nodes: BTreeMap<String, Node>,
    /// (node, service ID) -> service.
    services: BTreeMap<(String, String), NodeService>,
    /// (node, check ID) -> check.
    checks: BTreeMap<(String, String), HealthCheck>,
    kv: BTreeMap<String, KvEntry>,
    /// How many of the next calls fail as if no server were reachable.
    failures: usize,
    /// Every write that succeeded, in order.
    writes: Vec<WriteRequest>,
}

impl FakeServers {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the next `n` calls fail with a transport-style error.
    pub(crate) fn fail_next(&self, n: usize) {
        self.lock().failures = n;
    }

    /// Every successful write so far.
    pub(crate) fn writes(&self) -> Vec<WriteRequest> {
        self.lock().writes.clone()
    }

    /// Loses all data and restarts the index, as a wiped cluster does.
    pub(crate) fn wipe(&self) {
        let mut state = self.lock();
        let failures = state.failures;
        *state = State {
            failures,
            ..State::default()
        };
    }

    /// Forgets the write log.
    pub(crate) fn clear_writes(&self) {
        self.lock().writes.clear();
    }

    /// Applies a registration directly, as another agent or an operator would.
    pub(crate) fn register(&self, request: RegisterRequest) {
        self.lock().register(request);
    }

    /// The service IDs on `node`.
    pub(crate) fn service_ids(&self, node: &str) -> Vec<String> {
        self.lock()
            .services
            .keys()
            .filter(|(n, _)| n == node)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// The checks on `node`.
    pub(crate) fn checks(&self, node: &str) -> Vec<HealthCheck> {
        self.lock()
            .checks
            .iter()
            .filter(|((n, _), _)| n == node)
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// The node entry, if registered.
    pub(crate) fn node(&self, node: &str) -> Option<Node> {
        self.lock().nodes.get(node).cloned()
    }
}

impl State {
    fn take_failure(&mut self) -> Result<(), RpcError> {
        if self.failures == 0 {
            return Ok(());
        }
        self.failures -= 1;
        Err(RpcError::Internal(
            "rpc error making call: fake servers are down".to_string(),
        ))
    }

    fn register(&mut self, r: RegisterRequest) {
        if !r.skip_node_update {
            let node = Node {
                id: r.id.clone(),
                node: r.node.clone(),
                address: r.address.clone(),
                datacenter: r.datacenter.clone(),
                tagged_addresses: r.tagged_addresses.clone(),
                meta: r.node_meta.clone(),
                ..Node::default()
            };
            self.nodes.insert(r.node.clone(), node);
        }
        if let Some(svc) = r.service {
            self.services.insert((r.node.clone(), svc.id.clone()), svc);
        }
        for mut check in r.check.into_iter().chain(r.checks) {
            check.node = r.node.clone();
            self.checks
                .insert((r.node.clone(), check.check_id.clone()), check);
        }
    }

    fn read(&self, query: &Query) -> Result<QueryResult, RpcError> {
        Ok(match query {
            Query::NodeServices { node } => {
                QueryResult::NodeServices(self.nodes.get(node).map(|n| {
                    NodeServices {
                        node: n.clone(),
                        services: self
                            .services
                            .iter()
                            .filter(|((sn, _), _)| sn == node)
                            .map(|((_, id), s)| (id.clone(), s.clone()))
                            .collect(),
                    }
                }))
            }
            Query::NodeChecks { node } => QueryResult::Checks(
                self.checks
                    .iter()
                    .filter(|((cn, _), _)| cn == node)
                    .map(|(_, c)| c.clone())
                    .collect(),
            ),
            // Node-meta filters are not modelled: every service counts.
            Query::Services { .. } => {
                let mut services: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for s in self.services.values() {
                    let tags = services.entry(s.service.clone()).or_default();
                    tags.extend(s.tags.iter().cloned());
                    tags.sort();
                    tags.dedup();
                }
                QueryResult::Services(services)
            }
            Query::KvGet { key } => {
                QueryResult::Kv(self.kv.get(key).cloned().into_iter().collect())
            }
            Query::RaftStatus => QueryResult::RaftStatus {
                leader: "127.0.0.1:8300".to_string(),
                peers: vec!["127.0.0.1:8300".to_string()],
            },
            Query::Snapshot => QueryResult::Snapshot(SnapshotArchive(FAKE_ARCHIVE.to_vec())),
            other => return Err(RpcError::Internal(format!("fake: no read {other:?}"))),
        })
    }

    fn write(&mut self, request: &WriteRequest) -> Result<WriteResult, RpcError> {
        Ok(match request.clone() {
            WriteRequest::Register(r) => {
                self.register(r);
                WriteResult::Done
            }
            WriteRequest::Deregister(d) => {
                let key = |id: String| (d.node.clone(), id);
                match (d.service_id, d.check_id) {
                    (Some(id), _) => {
                        self.services.remove(&key(id.clone()));
                        self.checks
                            .retain(|_, c| !(c.node == d.node && c.service_id == id));
                    }
                    (None, Some(id)) => {
                        self.checks.remove(&key(id));
                    }
                    (None, None) => {
                        self.nodes.remove(&d.node);
                        self.services.retain(|(n, _), _| *n != d.node);
                        self.checks.retain(|(n, _), _| *n != d.node);
                    }
                }
                WriteResult::Done
            }
            WriteRequest::Kv(KvOp::Set { key, value, flags }) => {
                let entry = KvEntry {
                    key: key.clone(),
                    value: Some(value),
                    flags,
                    create_index: self.index + 1,
                    modify_index: self.index + 1,
                    ..KvEntry::default()
                };
                self.kv.insert(key, entry);
                WriteResult::Bool(true)
            }
            WriteRequest::Kv(KvOp::Delete { key }) => {
                self.kv.remove(&key);
                WriteResult::Bool(true)
            }
            // The fake has no archive format: it takes its own archive and refuses the rest,
            // as a server refuses a corrupt one.
            WriteRequest::SnapshotRestore(archive) if archive.0 == FAKE_ARCHIVE => {
                WriteResult::Done
            }
            WriteRequest::SnapshotRestore(_) => {
                return Err(RpcError::Invalid(
                    "snapshot archive is corrupt or truncated: fake".to_string(),
                ))
            }
            other => return Err(RpcError::Internal(format!("fake: no write {other:?}"))),
        })
    }
}

#[async_trait::async_trait]
impl ServerRpc for FakeServers {
    async fn read(&self, query: Query, _options: QueryOptions) -> Result<ReadResponse, RpcError> {
        let mut state = self.lock();
        state.take_failure()?;
        // Tokens are the servers' to check; the fake answers the read inside.
        let result = state.read(query.parts().1)?;
        let meta = QueryMeta {
            index: state.index.max(1),
            known_leader: true,
            last_contact_ms: 0,
            results_filtered_by_acls: false,
        };
        Ok(ReadResponse { meta, result })
    }

    async fn write(&self, request: WriteRequest) -> Result<WriteResponse, RpcError> {
        let mut state = self.lock();
        state.take_failure()?;
        let result = state.write(&request.clone().into_parts().1)?;
        state.index += 1;
        state.writes.push(request);
        Ok(WriteResponse {
            index: state.index,
            result,
        })
    }
}
