//! State store tests, one module per table (as Consul's `state/*_test.go`), sharing the
//! fixtures below. They drive the store through [`StateStore::apply`] with real commands,
//! exactly as the FSM does, but with no Raft.

mod acl;
mod ca;
mod catalog;
mod config_entry;
mod index;
mod kv;
mod session;
mod snapshot;

use concord_api::catalog::{CheckStatus, HealthCheck, NodeService, RegisterRequest};
use concord_api::rpc::{Query, QueryResult, RpcError, WriteResult};

use super::StateStore;
use crate::command::Command;
use crate::model::id::CheckId;
use crate::model::kv::KvOp;
use crate::model::session::{Behavior, Session};

/// Applies a command that must succeed.
fn apply_ok(store: &StateStore, index: u64, cmd: Command) -> WriteResult {
    store
        .apply(index, &cmd)
        .unwrap_or_else(|e| panic!("command at {index} rejected: {e}"))
}

/// Applies a command that must be rejected.
fn apply_err(store: &StateStore, index: u64, cmd: Command) -> RpcError {
    match store.apply(index, &cmd) {
        Ok(r) => panic!("command at {index} unexpectedly applied: {r:?}"),
        Err(e) => e,
    }
}

fn query(store: &StateStore, q: Query) -> (u64, QueryResult) {
    store.query(&q).unwrap()
}

/// A node-only registration.
fn node_req(node: &str) -> RegisterRequest {
    RegisterRequest {
        id: String::new(),
        node: node.to_string(),
        address: "10.0.0.1".to_string(),
        datacenter: "dc1".to_string(),
        ..RegisterRequest::default()
    }
}

fn service(id: &str, name: &str, tags: &[&str]) -> NodeService {
    NodeService {
        id: id.to_string(),
        service: name.to_string(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        port: 8080,
        ..NodeService::default()
    }
}

fn check(id: &str, service_id: &str, status: CheckStatus) -> HealthCheck {
    HealthCheck {
        check_id: id.to_string(),
        name: id.to_string(),
        status,
        service_id: service_id.to_string(),
        ..HealthCheck::default()
    }
}

fn register(store: &StateStore, index: u64, request: RegisterRequest) {
    let request = request.into();
    apply_ok(store, index, Command::Register { request, now_ms: 0 });
}

fn register_node(store: &StateStore, index: u64, node: &str) {
    register(store, index, node_req(node));
}

fn register_service(store: &StateStore, index: u64, node: &str, svc: NodeService) {
    register(
        store,
        index,
        RegisterRequest {
            service: Some(svc),
            ..node_req(node)
        },
    );
}

fn register_check(store: &StateStore, index: u64, node: &str, check: HealthCheck, now_ms: u64) {
    apply_ok(
        store,
        index,
        Command::Register {
            request: RegisterRequest {
                check: Some(check),
                ..node_req(node)
            }
            .into(),
            now_ms,
        },
    );
}

fn kv(op: KvOp) -> Command {
    Command::Kv { op, now_ms: 0 }
}

fn set(key: &str, value: &str) -> KvOp {
    KvOp::Set {
        key: key.to_string(),
        value: value.as_bytes().to_vec(),
        flags: 0,
    }
}

fn lock(key: &str, session: &str) -> KvOp {
    KvOp::Lock {
        key: key.to_string(),
        value: b"locked".to_vec(),
        flags: 0,
        session: session.into(),
    }
}

fn unlock(key: &str, session: &str) -> KvOp {
    KvOp::Unlock {
        key: key.to_string(),
        value: b"unlocked".to_vec(),
        flags: 0,
        session: session.into(),
    }
}

fn session(id: &str, node: &str, node_checks: &[&str]) -> Session {
    Session {
        id: id.into(),
        name: String::new(),
        node: node.into(),
        lock_delay: 0,
        behavior: Behavior::Release,
        ttl: String::new(),
        node_checks: node_checks.iter().map(|c| CheckId::from(*c)).collect(),
        service_checks: vec![],
        create_index: 0,
        modify_index: 0,
    }
}

fn create_session(store: &StateStore, index: u64, s: Session) {
    apply_ok(store, index, Command::SessionCreate { session: s });
}

/// The whole store, serialized: equal dumps mean nothing changed (records and indexes).
fn dump(store: &StateStore) -> serde_json::Value {
    serde_json::from_slice(&store.snapshot().unwrap()).unwrap()
}
