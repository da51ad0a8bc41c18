//! One write of every kind a server accepts, each with the rule that allows it: the list the
//! ACL tests walk (the pure rules here, a real Raft node in `server`, a hostile client on the
//! RPC port in `integration`), kept in one place so a new write kind reaches all three.
//! Built with the `test-fixtures` feature (dev-dependencies only) or under `cfg(test)`.

use crate::acl::{AclLink, AclPolicy, AclRole, AclToken, AclWrite, GLOBAL_MANAGEMENT_POLICY_ID};
use crate::catalog::{DeregisterRequest, RegisterRequest};
use crate::connect::{CaConfiguration, SignRequest};
use crate::kv::KvOp;
use crate::operator::{AutopilotConfig, OperatorWrite};
use crate::rpc::{SnapshotArchive, WriteRequest};
use crate::session::{Session, SessionBehavior};

/// What the writes aim at: things that exist in the test's state, so a write let through
/// would change it.
#[derive(Clone, Copy, Debug)]
pub struct Targets<'a> {
    /// A registered node: registered again, deregistered, and the node of a new session.
    pub node: &'a str,
    /// A stored key: set, swapped, locked, deleted.
    pub key: &'a str,
    /// A live session's ID, of a session on [`Targets::node`]: destroyed, renewed, used to
    /// lock and unlock [`Targets::key`].
    pub session: &'a str,
}

/// The secret of the management token [`every_write`]'s token create tries to forge: a test
/// presents it afterwards and expects "ACL not found".
pub const FORGED_SECRET: &str = "forged-management-secret";

/// The write kinds [`every_write`] leaves out, and why: `acl bootstrap` needs no grant (it
/// works once, for whoever asks first), `authorized` only wraps another write with a token.
pub const NOT_VETTED: &[&str] = &["acl bootstrap", "authorized"];

/// Every write kind (by [`kind`]) but [`NOT_VETTED`], each with the one rule that allows it.
pub fn every_write(t: &Targets<'_>) -> Vec<(WriteRequest, String)> {
    let Targets { node, key, session } = *t;
    let node_write = format!("node \"{node}\" {{ policy = \"write\" }}");
    let key_write = format!("key \"{key}\" {{ policy = \"write\" }}");
    let session_write = format!("session \"{node}\" {{ policy = \"write\" }}");
    let service_write = "service \"web\" { policy = \"write\" }".to_string();
    let acl_write = "acl = \"write\"".to_string();
    let operator_write = "operator = \"write\"".to_string();
    let value = b"changed".to_vec();
    let kv = |op: KvOp| (WriteRequest::Kv(op), key_write.clone());
    let entry = |kind: &str, name: &str, rule: &str| {
        let body = serde_json::json!({"Kind": kind, "Name": name});
        let (kind, name) = (kind.into(), name.into());
        let set = WriteRequest::ConfigEntrySet {
            kind,
            name,
            body,
            cas: None,
        };
        (set, rule.to_string())
    };
    let acl = |write: AclWrite| (WriteRequest::Acl(write), acl_write.clone());
    let operator = |write: OperatorWrite| (WriteRequest::Operator(write), operator_write.clone());
    vec![
        (
            WriteRequest::Register(RegisterRequest {
                node: node.into(),
                address: "10.9.9.9".into(),
                ..RegisterRequest::default()
            }),
            node_write.clone(),
        ),
        (
            WriteRequest::Deregister(DeregisterRequest {
                node: node.into(),
                ..DeregisterRequest::default()
            }),
            node_write,
        ),
        kv(KvOp::Set {
            key: key.into(),
            value: value.clone(),
            flags: 0,
        }),
        kv(KvOp::Cas {
            key: key.into(),
            value: value.clone(),
            flags: 0,
            index: 0,
        }),
        kv(KvOp::Lock {
            key: key.into(),
            value: value.clone(),
            flags: 0,
            session: session.into(),
        }),
        kv(KvOp::Unlock {
            key: key.into(),
            value: value.clone(),
            flags: 0,
            session: session.into(),
        }),
        kv(KvOp::Delete { key: key.into() }),
        kv(KvOp::DeleteCas {
            key: key.into(),
            index: 0,
        }),
        (
            WriteRequest::Kv(KvOp::DeleteTree { key: String::new() }),
            "key_prefix \"\" { policy = \"write\" }".into(),
        ),
        (
            WriteRequest::Txn(vec![
                KvOp::Get { key: key.into() },
                KvOp::Set {
                    key: key.into(),
                    value,
                    flags: 0,
                },
            ]),
            key_write,
        ),
        (
            WriteRequest::SessionCreate(session_on(node)),
            session_write.clone(),
        ),
        (
            WriteRequest::SessionDestroy { id: session.into() },
            session_write.clone(),
        ),
        (
            WriteRequest::SessionRenew { id: session.into() },
            session_write,
        ),
        entry("service-defaults", "web", &service_write),
        entry(
            "service-intentions",
            "web",
            "service \"web\" {\npolicy = \"read\"\nintentions = \"write\"\n}",
        ),
        entry("proxy-defaults", "global", "mesh = \"write\""),
        (
            WriteRequest::ConfigEntryDelete {
                kind: "service-defaults".into(),
                name: "web".into(),
                cas: None,
            },
            service_write.clone(),
        ),
        (
            WriteRequest::CaSetConfig(CaConfiguration {
                cluster_id: String::new(),
                provider: "consul".into(),
                config: serde_json::Map::new(),
                force_without_cross_signing: false,
                create_index: 0,
                modify_index: 0,
            }),
            operator_write.clone(),
        ),
        (
            WriteRequest::CaSign(SignRequest {
                service: "web".into(),
                csr_pem: String::new(),
            }),
            service_write,
        ),
        (
            WriteRequest::SnapshotRestore(SnapshotArchive(Vec::new())),
            acl_write.clone(),
        ),
        operator(OperatorWrite::RemovePeer {
            id: None,
            address: Some("10.9.9.9:8300".into()),
        }),
        operator(OperatorWrite::TransferLeader { id: None }),
        operator(OperatorWrite::SetAutopilotConfig {
            config: AutopilotConfig::default(),
            cas: None,
        }),
        acl(AclWrite::TokenSet {
            token: AclToken {
                secret_id: FORGED_SECRET.into(),
                policies: vec![AclLink {
                    id: GLOBAL_MANAGEMENT_POLICY_ID.into(),
                    name: String::new(),
                }],
                ..AclToken::default()
            },
            create: true,
        }),
        acl(AclWrite::TokenDelete {
            accessor_id: "00000000-0000-0000-0000-000000000002".into(),
        }),
        acl(AclWrite::PolicySet(AclPolicy {
            name: "mine".into(),
            rules: "acl = \"write\"".into(),
            ..AclPolicy::default()
        })),
        acl(AclWrite::PolicyDelete {
            id: GLOBAL_MANAGEMENT_POLICY_ID.into(),
        }),
        acl(AclWrite::RoleSet(AclRole {
            name: "mine".into(),
            ..AclRole::default()
        })),
        acl(AclWrite::RoleDelete { id: "any".into() }),
    ]
}

/// A new session on `node`, with Consul's defaults.
pub fn session_on(node: &str) -> Session {
    Session {
        id: String::new(),
        name: String::new(),
        node: node.into(),
        lock_delay: 0,
        behavior: SessionBehavior::Release,
        ttl: String::new(),
        node_checks: Vec::new(),
        service_checks: Vec::new(),
        create_index: 0,
        modify_index: 0,
    }
}

/// A write's kind, by variant: a new variant does not compile until it is named here, and
/// then [`every_write`] must carry it (the fixture's test checks that every kind in
/// [`KINDS`] but [`NOT_VETTED`] is in it).
pub fn kind(write: &WriteRequest) -> &'static str {
    match write {
        WriteRequest::Register(_) => "register",
        WriteRequest::Deregister(_) => "deregister",
        WriteRequest::Kv(op) => match op {
            KvOp::Set { .. } => "kv set",
            KvOp::Cas { .. } => "kv cas",
            KvOp::Lock { .. } => "kv lock",
            KvOp::Unlock { .. } => "kv unlock",
            KvOp::Delete { .. } => "kv delete",
            KvOp::DeleteTree { .. } => "kv delete-tree",
            KvOp::DeleteCas { .. } => "kv delete-cas",
            KvOp::Get { .. }
            | KvOp::GetTree { .. }
            | KvOp::CheckIndex { .. }
            | KvOp::CheckSession { .. }
            | KvOp::CheckNotExists { .. } => "kv read in a write",
        },
        WriteRequest::Txn(_) => "txn",
        WriteRequest::SessionCreate(_) => "session create",
        WriteRequest::SessionDestroy { .. } => "session destroy",
        WriteRequest::SessionRenew { .. } => "session renew",
        WriteRequest::ConfigEntrySet { .. } => "config entry set",
        WriteRequest::ConfigEntryDelete { .. } => "config entry delete",
        WriteRequest::CaSetConfig(_) => "ca set config",
        WriteRequest::CaSign(_) => "ca sign",
        WriteRequest::SnapshotRestore(_) => "snapshot restore",
        WriteRequest::Operator(op) => match op {
            OperatorWrite::RemovePeer { .. } => "operator remove peer",
            OperatorWrite::TransferLeader { .. } => "operator transfer leader",
            OperatorWrite::SetAutopilotConfig { .. } => "operator autopilot",
        },
        WriteRequest::Acl(op) => match op {
            AclWrite::Bootstrap => "acl bootstrap",
            AclWrite::TokenSet { .. } => "acl token set",
            AclWrite::TokenDelete { .. } => "acl token delete",
            AclWrite::PolicySet(_) => "acl policy set",
            AclWrite::PolicyDelete { .. } => "acl policy delete",
            AclWrite::RoleSet(_) => "acl role set",
            AclWrite::RoleDelete { .. } => "acl role delete",
        },
        WriteRequest::Authorized { .. } => "authorized",
    }
}

/// Every name [`kind`] returns but "kv read in a write" (a read inside a transaction is
/// vetted with its transaction).
pub const KINDS: &[&str] = &[
    "register",
    "deregister",
    "kv set",
    "kv cas",
    "kv lock",
    "kv unlock",
    "kv delete",
    "kv delete-tree",
    "kv delete-cas",
    "txn",
    "session create",
    "session destroy",
    "session renew",
    "config entry set",
    "config entry delete",
    "ca set config",
    "ca sign",
    "snapshot restore",
    "operator remove peer",
    "operator transfer leader",
    "operator autopilot",
    "acl bootstrap",
    "acl token set",
    "acl token delete",
    "acl policy set",
    "acl policy delete",
    "acl role set",
    "acl role delete",
    "authorized",
];
