//! The state store: the catalog, KV, session and config entry tables that Raft replicates.
//!
//! This is a plain library with no Raft in it: [`StateStore::apply`] takes a log index and a
//! [`Command`] and mutates in-memory tables; [`StateStore::query`] answers an
//! [`api::rpc::Query`](concord_api::rpc::Query) with the index blocking queries compare
//! against. Durability comes from the Raft log plus snapshots ([`StateStore::copy`],
//! [`StateStore::restore`]), as in Consul's `agent/consul/state`.
//!
//! The tables hold the store's own types ([`crate::model`]); a query converts what it
//! returns to the API's types, so the wire never leaks into what is stored. Refusals are
//! typed ([`Invalid`]) with Consul's texts.
//!
//! Every record carries `create_index`/`modify_index`; every table has a last-modified index
//! ([`schema`]); every change is published on a watch channel so blocking queries wake up.

mod acl;
mod autopilot;
mod ca;
mod catalog;
mod config_entry;
mod error;
mod kv;
pub(crate) mod schema;
mod session;
mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use concord_api::rpc::{Query, QueryResult, RpcError, WriteResult};
use tokio::sync::watch;

use crate::acl::cache::Authorizers;
use crate::command::{Command, CommandResult};
use crate::model::acl::{Policy, Role, Token};
use crate::model::autopilot::AutopilotConfig;
use crate::model::ca::{CaConfig, CaRoot};
use crate::model::catalog::{Check, Node, Service};
use crate::model::config_entry::ConfigEntry;
use crate::model::id::{CheckId, NodeName, ServiceId, SessionId};
use crate::model::kv::KvEntry;
use crate::model::session::Session;

use error::TxnOpError;
pub(crate) use error::{Invalid, StateError};
pub use session::SESSION_TTL_MIN;
pub(crate) use session::{parse_session_ttl, SESSION_TTL_MULTIPLIER};

/// (node name, service ID) or (node name, check ID).
pub(crate) type NodeScoped<Id> = (NodeName, Id);

/// What watchers of a store see change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Change {
    /// Raft index of the last apply that changed a table.
    pub(crate) index: u64,
    /// The store was replaced by a snapshot restore: re-fetch the current store.
    pub(crate) abandoned: bool,
}

/// The tables. Only ever touched under the [`StateStore`] lock.
#[derive(Debug, Default)]
pub(crate) struct Tables {
    nodes: BTreeMap<NodeName, Node>,
    services: BTreeMap<NodeScoped<ServiceId>, Service>,
    checks: BTreeMap<NodeScoped<CheckId>, Check>,
    kvs: BTreeMap<String, KvEntry>,
    tombstones: BTreeMap<String, u64>,
    /// Highest index of a tombstone the GC reaped: the floor of every prefix index, so a
    /// reaped delete never moves a prefix's index back below what a watcher saw.
    tombstones_reaped: u64,
    /// Key to the wall-clock millisecond until which it cannot be locked (set when a session
    /// holding it is invalidated; Consul's lock delay).
    lock_delays: BTreeMap<String, u64>,
    sessions: BTreeMap<SessionId, Session>,
    indexes: BTreeMap<&'static str, u64>,
    /// Service name to the index of the last change to any of its instances, their checks,
    /// or the nodes (and node checks) they run on: Consul's `service.<name>` index. Health
    /// and catalog queries for one service block on this, so a write elsewhere in the
    /// catalog does not wake every service watcher (Consul issues #1244, #4984). Entries
    /// outlive the service, so a deregistration still moves the index forward.
    service_indexes: BTreeMap<String, u64>,
    /// Config entries by (kind, name).
    config_entries: BTreeMap<(String, String), ConfigEntry>,
    /// Connect CA configuration; `None` until the first leader initializes the CA.
    ca_config: Option<CaConfig>,
    /// Connect CA roots (private keys included), oldest first; one is active.
    ca_roots: Vec<CaRoot>,
    /// ACL tokens by AccessorID (the built-in anonymous token only once edited).
    acl_tokens: BTreeMap<String, Token>,
    /// ACL policies by ID (the built-in management policy only once edited).
    acl_policies: BTreeMap<String, Policy>,
    /// ACL roles by ID.
    acl_roles: BTreeMap<String, Role>,
    /// Raft index of the ACL bootstrap; 0 until then.
    acl_bootstrap_index: u64,
    /// Autopilot's settings; `None` until an operator first sets them (Consul's defaults
    /// apply meanwhile).
    autopilot_config: Option<AutopilotConfig>,
    /// Undo log of a running KV transaction, so a failed one leaves no trace.
    journal: Option<Journal>,
    /// Whether the current apply changed any table (then watchers are woken).
    changed: bool,
}

/// Previous values of everything a KV transaction touched (first write wins).
#[derive(Debug, Default)]
struct Journal {
    kvs: BTreeMap<String, Option<KvEntry>>,
    tombstones: BTreeMap<String, Option<u64>>,
    indexes: BTreeMap<&'static str, Option<u64>>,
    changed: bool,
}

impl Tables {
    /// Records that `table` changed at `index`.
    fn bump(&mut self, table: &'static str, index: u64) {
        if let Some(journal) = &mut self.journal {
            let before = self.indexes.get(table).copied();
            journal.indexes.entry(table).or_insert(before);
        }
        self.indexes.insert(table, index);
        self.changed = true;
    }

    /// Last-modified index of one table (0 if never written).
    pub(crate) fn table_index(&self, table: &str) -> u64 {
        self.indexes.get(table).copied().unwrap_or(0)
    }

    /// Max index over `tables`, never 0: a blocking client must never see index 0.
    fn max_index(&self, tables: &[&str]) -> u64 {
        tables
            .iter()
            .map(|t| self.table_index(t))
            .max()
            .unwrap_or(0)
            .max(1)
    }

    /// Starts journaling KV changes (for a transaction).
    fn begin_journal(&mut self) {
        self.journal = Some(Journal {
            changed: self.changed,
            ..Journal::default()
        });
    }

    /// Stops journaling; keeps the changes.
    fn commit_journal(&mut self) {
        self.journal = None;
    }

    /// Stops journaling and undoes every journaled change.
    fn rollback_journal(&mut self) {
        let Some(journal) = self.journal.take() else {
            return;
        };
        for (key, before) in journal.kvs {
            match before {
                Some(entry) => self.kvs.insert(key, entry),
                None => self.kvs.remove(&key),
            };
        }
        for (key, before) in journal.tombstones {
            match before {
                Some(index) => self.tombstones.insert(key, index),
                None => self.tombstones.remove(&key),
            };
        }
        for (table, before) in journal.indexes {
            match before {
                Some(index) => self.indexes.insert(table, index),
                None => self.indexes.remove(table),
            };
        }
        self.changed = journal.changed;
    }

    /// Applies one command at `index`.
    fn apply(&mut self, index: u64, cmd: &Command) -> Result<WriteResult, StateError> {
        match cmd {
            Command::Register { request, now_ms } => {
                self.register(index, request, *now_ms)?;
                Ok(WriteResult::Done)
            }
            Command::Deregister { request, now_ms } => {
                self.deregister(index, request, *now_ms)?;
                Ok(WriteResult::Done)
            }
            Command::Kv { op, now_ms } => self.kv_apply(index, op, *now_ms).map(WriteResult::Bool),
            Command::Txn { ops, now_ms } => Ok(WriteResult::Txn(self.txn(index, ops, *now_ms))),
            Command::SessionCreate { session } => self
                .session_create(index, session)
                .map(WriteResult::SessionId),
            Command::SessionDestroy { id, now_ms } => {
                self.session_destroy(index, id.as_str(), *now_ms);
                Ok(WriteResult::Done)
            }
            Command::ConfigEntrySet {
                kind,
                name,
                body,
                cas,
            } => Ok(WriteResult::Bool(
                self.config_entry_set(index, kind, name, body, *cas)?,
            )),
            Command::ConfigEntryDelete { kind, name, cas } => Ok(WriteResult::Bool(
                self.config_entry_delete(index, kind, name, *cas)?,
            )),
            Command::CaInit { config, root } => {
                self.ca_init(index, config, root);
                Ok(WriteResult::Done)
            }
            Command::CaSetConfig {
                config,
                new_root,
                prev_active_root,
                now_ms,
            } => {
                self.ca_set_config(index, config, new_root.as_ref(), prev_active_root, *now_ms)?;
                Ok(WriteResult::Done)
            }
            Command::CaPruneRoots { ids } => Ok(WriteResult::Bool(self.ca_prune_roots(index, ids))),
            Command::AclBootstrap { token } => self.acl_bootstrap(index, token),
            Command::AclTokenSet { token } => self.acl_token_set(index, token),
            Command::AclTokenDelete { accessor_id } => {
                Ok(self.acl_token_delete(index, accessor_id))
            }
            Command::AclPolicySet { policy } => self.acl_policy_set(index, policy),
            Command::AclPolicyDelete { id } => Ok(self.acl_policy_delete(index, id)),
            Command::AclRoleSet { role } => self.acl_role_set(index, role),
            Command::AclRoleDelete { id } => Ok(self.acl_role_delete(index, id)),
            Command::KvReapTombstones { index: up_to } => {
                self.kv_reap_tombstones(*up_to);
                Ok(WriteResult::Done)
            }
            Command::AutopilotSetConfig { config, cas } => Ok(WriteResult::Bool(
                self.autopilot_set_config(index, config, *cas),
            )),
            // A restore replaces the whole store, which only the state machine can do
            // (`StateStore::restored_at` + `StoreHandle::swap`).
            Command::Restore { .. } => Err(StateError::Snapshot(
                "invariant: a restore is applied by the state machine, not a store".to_string(),
            )),
            // `StateStore::apply_batch` unpacks batches; they never nest.
            Command::Batch { .. } => Err(StateError::Snapshot(
                "invariant: a batch inside a batch".to_string(),
            )),
        }
    }

    /// Answers a read with the index to report for it.
    fn query(&self, query: &Query) -> Result<(u64, QueryResult), StateError> {
        Ok(match query {
            Query::Nodes { node_meta } => self.nodes_query(node_meta),
            Query::Services { node_meta } => self.services_query(node_meta),
            Query::ServiceNodes {
                service,
                tags,
                node_meta,
            } => self.service_nodes_query(service, tags, node_meta),
            Query::NodeServices { node } => self.node_services_query(node),
            Query::HealthService {
                service,
                tags,
                passing,
                node_meta,
            } => self.health_service_query(service, tags, *passing, node_meta),
            Query::ServiceChecks { service, node_meta } => {
                self.service_checks_query(service, node_meta)
            }
            Query::NodeChecks { node } => self.node_checks_query(node),
            Query::ChecksInState { state, node_meta } => {
                self.checks_in_state_query(*state, node_meta)
            }
            Query::CatalogDump => self.catalog_dump_query(),
            Query::KvGet { key } => self.kv_get_query(key),
            Query::KvList { prefix } => self.kv_list_query(prefix),
            Query::KvKeys { prefix, separator } => self.kv_keys_query(prefix, separator.as_deref()),
            Query::SessionInfo { id } => self.session_info_query(id),
            Query::SessionList => self.session_list_query(),
            Query::NodeSessions { node } => self.node_sessions_query(node),
            Query::RaftStatus | Query::Snapshot | Query::Operator(_) => {
                return Err(Invalid::NotAStateQuery.into())
            }
            Query::ConfigEntryGet { kind, name } => self.config_entry_get_query(kind, name),
            Query::ConfigEntryList { kind } => self.config_entry_list_query(kind.as_deref()),
            Query::CaRoots => self.ca_roots_query(),
            Query::CaConfig => self.ca_config_query(),
            Query::Acl(q) => self.acl_query(q),
            // The token was judged by the RPC layer (`acl::enforce`); the read is the same.
            Query::Authorized { query, .. } => return self.query(query),
        })
    }
}

/// The state store: the tables behind a lock plus the change feed.
///
/// The lock is a std `RwLock`, not tokio's: every critical section is short, synchronous and
/// never spans an `.await`, and the FSM must read it from synchronous snapshot code.
#[derive(Debug)]
pub(crate) struct StateStore {
    tables: RwLock<Tables>,
    changes: watch::Sender<Change>,
    /// Token authorizers built against these tables (see [`Authorizers`]).
    authorizers: Authorizers,
}

impl Default for StateStore {
    fn default() -> Self {
        StateStore::from_tables(Tables::default())
    }
}

impl StateStore {
    /// An empty store.
    pub(crate) fn new() -> Self {
        StateStore::default()
    }

    fn from_tables(tables: Tables) -> Self {
        StateStore {
            tables: RwLock::new(tables),
            changes: watch::Sender::new(Change::default()),
            authorizers: Authorizers::default(),
        }
    }

    // Poisoning can only follow a panic inside a critical section, and apply never panics;
    // if it ever happened the tables are still structurally valid, so keep serving.
    fn read(&self) -> RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a command at Raft index `index`. Never panics; a rejected command changes
    /// nothing and wakes no one.
    ///
    /// A [`Command::Batch`] answers its first rejection, or its last command's result
    /// (callers wanting every result use [`StateStore::apply_batch`]). Tests' shorthand: the
    /// state machine applies through `apply_batch`.
    #[cfg(test)]
    pub(crate) fn apply(&self, index: u64, cmd: &Command) -> CommandResult {
        let commands = match cmd {
            Command::Batch { commands } => commands.as_slice(),
            single => std::slice::from_ref(single),
        };
        let results = self.apply_batch(index, commands);
        let first_error = results.iter().position(Result::is_err);
        let pick = first_error.unwrap_or(results.len().saturating_sub(1));
        results
            .into_iter()
            .nth(pick)
            .unwrap_or(Ok(WriteResult::Done))
    }

    /// Applies `commands` in order at Raft index `index`, all under one write lock: readers
    /// see none or all of them, and watchers wake once, so a blocking query that saw index
    /// `index` has seen every change made at it. Each command succeeds or is rejected on its
    /// own (a rejection changes nothing); one result per command.
    pub(crate) fn apply_batch(&self, index: u64, commands: &[Command]) -> Vec<CommandResult> {
        let mut tables = self.write();
        tables.changed = false;
        let results = commands
            .iter()
            .map(|cmd| tables.apply(index, cmd).map_err(RpcError::from))
            .collect();
        let changed = std::mem::take(&mut tables.changed);
        drop(tables);
        if changed {
            self.changes.send_modify(|c| c.index = index);
        }
        results
    }

    /// Answers a query with its index (never 0).
    pub(crate) fn query(&self, query: &Query) -> Result<(u64, QueryResult), StateError> {
        self.read().query(query)
    }

    /// The authorizers built from this store's tokens, per secret.
    pub(crate) fn authorizers(&self) -> &Authorizers {
        &self.authorizers
    }

    /// Runs `f` on the tables under the read lock.
    pub(crate) fn view<R>(&self, f: impl FnOnce(&Tables) -> R) -> R {
        f(&self.read())
    }

    /// One session, if it exists.
    pub(crate) fn session(&self, id: &str) -> Option<Session> {
        self.read().sessions.get(id).cloned()
    }

    /// Every session, in ID order.
    pub(crate) fn sessions(&self) -> Vec<Session> {
        self.read().sessions.values().cloned().collect()
    }

    /// Subscribes to changes; the receiver has seen the current state.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Marks this store as replaced and wakes every watcher (Consul's `Abandon`), so blocking
    /// queries re-run against the new store.
    pub(crate) fn abandon(&self) {
        self.changes.send_modify(|c| c.abandoned = true);
    }

    /// Serializes every table (the data part of a Raft snapshot).
    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> Result<Vec<u8>, StateError> {
        self.copy().encode()
    }

    /// A point-in-time copy of every table, for a snapshot to encode later: taking it holds
    /// the read lock only for a memory copy, and the slow part (serializing) can then run
    /// off the async threads while applies go on.
    pub(crate) fn copy(&self) -> StoreCopy {
        StoreCopy(self.read().dump())
    }

    /// Builds a fresh store from [`StoreCopy::encode`] bytes.
    pub(crate) fn restore(bytes: &[u8]) -> Result<Self, StateError> {
        let dump =
            serde_json::from_slice(bytes).map_err(|e| StateError::Snapshot(e.to_string()))?;
        Ok(StateStore::from_tables(Tables::restore(dump)))
    }
}

/// What [`StateStore::copy`] took.
#[derive(Debug)]
pub(crate) struct StoreCopy(snapshot::Dump);

impl StateStore {
    /// Builds the store an operator restore puts in service at Raft index `index`: the
    /// copy's records, with every table's (and every service's) last-modified index set to
    /// `index`. Indexes then never go backwards for blocking clients, and every table-indexed
    /// watcher sees a change (Consul's raft likewise restores at an index past its log).
    /// Records keep their own create/modify indexes.
    pub(crate) fn restored_at(copy: StoreCopy, index: u64) -> Self {
        let mut tables = Tables::restore(copy.0);
        for table in schema::TABLES {
            tables.indexes.insert(table, index);
        }
        for service_index in tables.service_indexes.values_mut() {
            *service_index = index;
        }
        let store = StateStore::from_tables(tables);
        store.changes.send_modify(|c| c.index = index);
        store
    }
}

impl StoreCopy {
    /// Decodes [`StoreCopy::encode`] bytes.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        serde_json::from_slice(bytes)
            .map(StoreCopy)
            .map_err(|e| StateError::Snapshot(e.to_string()))
    }

    /// Records per table (for `snapshot inspect`).
    pub(crate) fn counts(&self) -> Vec<(&'static str, usize)> {
        self.0.counts()
    }

    /// The highest last-modified index over the tables: the last index that changed them.
    pub(crate) fn max_index(&self) -> u64 {
        self.0.max_index()
    }

    /// Serializes the copy: the data of a Raft snapshot, as of when it was taken.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, StateError> {
        serde_json::to_vec(&self.0).map_err(|e| StateError::Snapshot(e.to_string()))
    }
}

/// The store currently in service. A snapshot install swaps in a fresh store; readers always
/// go through the handle so they never keep answering from a replaced one.
#[derive(Clone, Debug)]
pub(crate) struct StoreHandle(Arc<RwLock<Arc<StateStore>>>);

impl StoreHandle {
    /// A handle serving `store`.
    pub(crate) fn new(store: StateStore) -> Self {
        StoreHandle(Arc::new(RwLock::new(Arc::new(store))))
    }

    /// The store in service now.
    pub(crate) fn current(&self) -> Arc<StateStore> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts `store` in service and abandons the old one (waking its watchers).
    pub(crate) fn swap(&self, store: StateStore) {
        let old = std::mem::replace(
            &mut *self.0.write().unwrap_or_else(PoisonError::into_inner),
            Arc::new(store),
        );
        old.abandon();
    }
}
