//! What a server RPC request needs of the token it carries, as Consul's servers check every
//! RPC (`Catalog.Register`, `KVS.Apply`, `Txn.Apply`, `Session.Apply`, `ConfigEntry.Apply`,
//! `ConnectCA.*`, `Operator.*`, `Snapshot`, `ACL.*`): [`vet_write`] before a write is
//! built, [`vet_read`] before a read runs and [`filter_read`] on what it returns.
//!
//! Pure: the caller passes what its state holds now ([`Stored`]), so a server judges a
//! request the same way whether an agent relayed it or a hostile client sent it straight to
//! the RPC port. The agent's HTTP endpoints reuse the per-kind pieces ([`vet_kv_op`],
//! [`config_entry_need`]), so both ends ask for the same thing.
//!
//! Not checked here, on purpose: `Query::Acl(AclQuery::Resolve)` (it presents the secret it
//! asks about), `Query::RaftStatus` (Consul's `/v1/status/*` is open), `Query::CaRoots`
//! (public keys), and config entries (an agent compiles discovery chains from every entry,
//! so they are filtered per endpoint on the agent, as before).

use super::authorizer::{Authorizer, Level, Need, PermissionDenied};
use super::catalog::{vet_deregister, vet_register};
use super::rules::{Global, Resource};
use super::{AclResult, AclWrite, REDACTED_SECRET};
use crate::catalog::{HealthCheck, NodeServices};
use crate::config_entry::{PROXY_DEFAULTS, SERVICE_INTENTIONS};
use crate::kv::KvOp;
use crate::rpc::{Query, QueryResult, WriteRequest};

/// What a server's state holds now, as far as judging a write needs it.
pub trait Stored {
    /// The node with its services (a catalog write may leave the node record as it is).
    fn node(&self, node: &str) -> Option<NodeServices>;
    /// One check of a node (deregistering it needs what registering it needed).
    fn check(&self, node: &str, check_id: &str) -> Option<HealthCheck>;
    /// The node a session belongs to (destroying or renewing it needs `session:write` there).
    fn session_node(&self, id: &str) -> Option<String>;
}

/// What a KV operation needs: `key:read` for reads and checks, `key:write` for writes
/// (lock and unlock included), write on the whole prefix for a recursive delete (Consul's
/// `KeyWritePrefix`).
pub fn vet_kv_op(authz: &Authorizer, op: &KvOp) -> Result<(), PermissionDenied> {
    let (key, level) = match op {
        KvOp::Set { key, .. }
        | KvOp::Cas { key, .. }
        | KvOp::Lock { key, .. }
        | KvOp::Unlock { key, .. }
        | KvOp::Delete { key }
        | KvOp::DeleteCas { key, .. } => (key, Level::Write),
        KvOp::DeleteTree { key } => {
            if authz.allows_key_write_prefix(key) {
                return Ok(());
            }
            return Err(authz.denied("key", Level::Write, Some(key)));
        }
        KvOp::Get { key }
        | KvOp::GetTree { key }
        | KvOp::CheckIndex { key, .. }
        | KvOp::CheckSession { key, .. }
        | KvOp::CheckNotExists { key } => (key, Level::Read),
    };
    authz.require(Resource::Key, key, level)
}

/// What `level` on the config entry `kind`/`name` needs (`None`: nothing):
/// `proxy-defaults` is `mesh` (readable by all), `service-intentions` the intentions of
/// its destination, every other kind the service it is named after.
pub fn config_entry_need<'a>(kind: &str, name: &'a str, level: Level) -> Option<Need<'a>> {
    match kind {
        PROXY_DEFAULTS if level == Level::Read => None,
        PROXY_DEFAULTS => Some(Need::Global(Global::Mesh, level)),
        SERVICE_INTENTIONS => Some(Need::Intention(name, level)),
        _ => Some(Need::service(name, level)),
    }
}

/// Whether `authz` may make the write `req`, judged against `stored` as it is now. A denial
/// is Consul's `Permission denied: ...`; nothing may be proposed after one.
pub fn vet_write(
    authz: &Authorizer,
    req: &WriteRequest,
    stored: &impl Stored,
) -> Result<(), PermissionDenied> {
    if authz.is_management() {
        return Ok(());
    }
    match req {
        WriteRequest::Register(r) => vet_register(authz, r, stored.node(&r.node).as_ref()),
        WriteRequest::Deregister(d) => {
            let check = d
                .check_id
                .as_deref()
                .filter(|id| !id.is_empty())
                .and_then(|id| stored.check(&d.node, id));
            vet_deregister(authz, d, stored.node(&d.node).as_ref(), check.as_ref())
        }
        WriteRequest::Kv(op) => vet_kv_op(authz, op),
        WriteRequest::Txn(ops) => ops.iter().try_for_each(|op| vet_kv_op(authz, op)),
        WriteRequest::SessionCreate(session) => {
            Need::session(&session.node, Level::Write).check(authz)
        }
        // An unknown session changes nothing either way (destroy is a no-op, renew answers
        // "not found"), so there is no node to ask about.
        WriteRequest::SessionDestroy { id } | WriteRequest::SessionRenew { id } => {
            match stored.session_node(id) {
                Some(node) => Need::session(&node, Level::Write).check(authz),
                None => Ok(()),
            }
        }
        WriteRequest::ConfigEntrySet { kind, name, .. }
        | WriteRequest::ConfigEntryDelete { kind, name, .. } => {
            config_entry_need(kind, name, Level::Write).map_or(Ok(()), |need| need.check(authz))
        }
        WriteRequest::CaSetConfig(_) | WriteRequest::Operator(_) => {
            Need::operator(Level::Write).check(authz)
        }
        // A leaf is the service's identity in the mesh: whoever may write the service.
        WriteRequest::CaSign(sign) => Need::service(&sign.service, Level::Write).check(authz),
        // A restore replaces every token too: as much as `acl:write`.
        WriteRequest::SnapshotRestore(_) => Need::Global(Global::Acl, Level::Write).check(authz),
        // Bootstrap needs no token (it works once, then is refused for everyone).
        WriteRequest::Acl(AclWrite::Bootstrap) => Ok(()),
        WriteRequest::Acl(_) => Need::Global(Global::Acl, Level::Write).check(authz),
        WriteRequest::Authorized { request, .. } => vet_write(authz, request, stored),
    }
}

/// Whether `authz` may run the read `query` at all: a read of one cluster-wide thing is
/// refused (a snapshot holds every secret: `acl:write`; CA configuration and Raft/autopilot
/// state: `operator:read`), as is one KV key the token may not read (Consul's `KVS.Get`).
/// Everything else runs and is cut down by [`filter_read`].
pub fn vet_read(authz: &Authorizer, query: &Query) -> Result<(), PermissionDenied> {
    if authz.is_management() {
        return Ok(());
    }
    match query {
        Query::Snapshot => Need::Global(Global::Acl, Level::Write).check(authz),
        Query::CaConfig | Query::Operator(_) => Need::operator(Level::Read).check(authz),
        Query::KvGet { key } => authz.require(Resource::Key, key, Level::Read),
        Query::Authorized { query, .. } => vet_read(authz, query),
        _ => Ok(()),
    }
}

/// Keeps the part of `result` the token may see; true if something was hidden (the
/// agent's `X-Consul-Results-Filtered-By-ACLs`). A catalog row needs `node:read` on its
/// node and `service:read` on its service, a node check `node:read`, a key `key:read`, a
/// session `session:read` on its node; ACL records need `acl:read` (secrets `acl:write`).
pub fn filter_read(authz: &Authorizer, result: &mut QueryResult) -> bool {
    if authz.is_management() {
        return false;
    }
    let node = |name: &str| Need::node(name, Level::Read).allowed(authz);
    let service = |name: &str| Need::service(name, Level::Read).allowed(authz);
    let check =
        |c: &HealthCheck| node(&c.node) && (c.service_id.is_empty() || service(&c.service_name));
    match result {
        QueryResult::Nodes(nodes) => retain(nodes, |n| node(&n.node)),
        QueryResult::Services(services) => {
            let before = services.len();
            services.retain(|name, _| service(name));
            services.len() != before
        }
        QueryResult::ServiceNodes(rows) => {
            retain(rows, |r| node(&r.node) && service(&r.service_name))
        }
        QueryResult::NodeServices(found) => {
            let Some(ns) = found else { return false };
            if !node(&ns.node.node) {
                *found = None;
                return true;
            }
            let before = ns.services.len();
            ns.services.retain(|_, s| service(&s.service));
            ns.services.len() != before
        }
        QueryResult::Health(rows) => {
            retain(rows, |r| node(&r.node.node) && service(&r.service.service))
        }
        QueryResult::Checks(checks) => retain(checks, check),
        QueryResult::CatalogDump { nodes, instances } => {
            let a = retain(nodes, |n| node(&n.node));
            let b = retain(instances, |r| {
                node(&r.node.node) && service(&r.service.service)
            });
            a || b
        }
        QueryResult::Kv(entries) => retain(entries, |e| {
            authz.allows(Resource::Key, &e.key, Level::Read)
        }),
        QueryResult::Keys(keys) => retain(keys, |k| authz.allows(Resource::Key, k, Level::Read)),
        QueryResult::Sessions(sessions) => retain(sessions, |s| {
            Need::session(&s.node, Level::Read).allowed(authz)
        }),
        QueryResult::Acl(acl) => filter_acl(authz, acl),
        QueryResult::RaftStatus { .. }
        | QueryResult::ConfigEntries(_)
        | QueryResult::CaRoots(_)
        | QueryResult::CaConfig(_)
        | QueryResult::Snapshot(_)
        | QueryResult::Operator(_) => false,
    }
}

/// ACL records: nothing without `acl:read` (an empty list, a record "not found"; the index
/// still moves, which agents follow to drop their caches), secrets only with `acl:write`.
fn filter_acl(authz: &Authorizer, acl: &mut AclResult) -> bool {
    if matches!(acl, AclResult::Resolved(_) | AclResult::Deleted(_)) {
        return false;
    }
    if !authz.allows_global(Global::Acl, Level::Read) {
        let hidden = match acl {
            AclResult::Token(t) => t.take().is_some(),
            AclResult::Policy(p) => p.take().is_some(),
            AclResult::Role(r) => r.take().is_some(),
            AclResult::Tokens(v) => !std::mem::take(v).is_empty(),
            AclResult::Policies(v) => !std::mem::take(v).is_empty(),
            AclResult::Roles(v) => !std::mem::take(v).is_empty(),
            AclResult::Resolved(_) | AclResult::Deleted(_) => false,
        };
        return hidden;
    }
    if !authz.allows_global(Global::Acl, Level::Write) {
        let redact = |t: &mut super::AclToken| t.secret_id = REDACTED_SECRET.to_string();
        match acl {
            AclResult::Token(Some(t)) => redact(t),
            AclResult::Tokens(v) => v.iter_mut().for_each(redact),
            _ => {}
        }
    }
    false
}

/// `Vec::retain`, reporting whether anything went.
fn retain<T>(items: &mut Vec<T>, keep: impl FnMut(&T) -> bool) -> bool {
    let before = items.len();
    items.retain(keep);
    items.len() != before
}

#[cfg(any(test, feature = "test-fixtures"))]
pub mod fixtures;
#[cfg(test)]
mod tests;
