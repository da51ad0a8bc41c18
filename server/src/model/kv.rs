//! KV records and the operations on them.

use concord_api::kv as api;
use serde::{Deserialize, Serialize};

use super::id::SessionId;

/// A stored key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KvEntry {
    /// How many times the key's lock was acquired.
    pub(crate) lock_index: u64,
    /// The key.
    pub(crate) key: String,
    /// Opaque client flags.
    pub(crate) flags: u64,
    /// The value (`None` for empty, as Consul stores it), base64 on disk.
    #[serde(with = "concord_api::kv::base64_opt", default)]
    pub(crate) value: Option<Vec<u8>>,
    /// The session holding the key's lock.
    pub(crate) session: Option<SessionId>,
    /// Index that created the key.
    pub(crate) create_index: u64,
    /// Index of its last change.
    pub(crate) modify_index: u64,
}

impl KvEntry {
    pub(crate) fn to_api(&self) -> api::KvEntry {
        api::KvEntry {
            lock_index: self.lock_index,
            key: self.key.clone(),
            flags: self.flags,
            value: self.value.clone(),
            session: self.session.as_ref().map(SessionId::to_string),
            create_index: self.create_index,
            modify_index: self.modify_index,
        }
    }
}

/// One KV operation, alone (`PUT`/`DELETE /v1/kv`) or in a transaction.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) enum KvOp {
    /// Unconditional set.
    Set {
        key: String,
        value: Vec<u8>,
        flags: u64,
    },
    /// Set if the key's modify index equals `index` (0: only if absent).
    Cas {
        key: String,
        value: Vec<u8>,
        flags: u64,
        index: u64,
    },
    /// Set and take the lock for `session`.
    Lock {
        key: String,
        value: Vec<u8>,
        flags: u64,
        session: SessionId,
    },
    /// Set and release `session`'s lock.
    Unlock {
        key: String,
        value: Vec<u8>,
        flags: u64,
        session: SessionId,
    },
    /// Delete one key.
    Delete { key: String },
    /// Delete every key with this prefix.
    DeleteTree { key: String },
    /// Delete if the modify index equals `index`.
    DeleteCas { key: String, index: u64 },
    /// Read a key (transactions only); fails if missing.
    Get { key: String },
    /// Read every key under a prefix (transactions only).
    GetTree { key: String },
    /// Fail unless the modify index equals `index` (transactions only).
    CheckIndex { key: String, index: u64 },
    /// Fail unless the key is locked by `session` (transactions only).
    CheckSession { key: String, session: SessionId },
    /// Fail if the key exists (transactions only).
    CheckNotExists { key: String },
}

impl KvOp {
    /// The key (or prefix) the operation names.
    pub(crate) fn key(&self) -> &str {
        match self {
            KvOp::Set { key, .. }
            | KvOp::Cas { key, .. }
            | KvOp::Lock { key, .. }
            | KvOp::Unlock { key, .. }
            | KvOp::Delete { key }
            | KvOp::DeleteTree { key }
            | KvOp::DeleteCas { key, .. }
            | KvOp::Get { key }
            | KvOp::GetTree { key }
            | KvOp::CheckIndex { key, .. }
            | KvOp::CheckSession { key, .. }
            | KvOp::CheckNotExists { key } => key,
        }
    }

    /// Consul's check before an operation is proposed (`kvsPreApply`): every verb but
    /// `delete-tree` needs a key.
    pub(crate) fn pre_check(&self) -> Result<(), &'static str> {
        if self.key().is_empty() && !matches!(self, KvOp::DeleteTree { .. }) {
            return Err("Must provide key");
        }
        Ok(())
    }
}

impl From<api::KvOp> for KvOp {
    fn from(op: api::KvOp) -> Self {
        match op {
            api::KvOp::Set { key, value, flags } => KvOp::Set { key, value, flags },
            api::KvOp::Cas {
                key,
                value,
                flags,
                index,
            } => KvOp::Cas {
                key,
                value,
                flags,
                index,
            },
            api::KvOp::Lock {
                key,
                value,
                flags,
                session,
            } => KvOp::Lock {
                key,
                value,
                flags,
                session: session.into(),
            },
            api::KvOp::Unlock {
                key,
                value,
                flags,
                session,
            } => KvOp::Unlock {
                key,
                value,
                flags,
                session: session.into(),
            },
            api::KvOp::Delete { key } => KvOp::Delete { key },
            api::KvOp::DeleteTree { key } => KvOp::DeleteTree { key },
            api::KvOp::DeleteCas { key, index } => KvOp::DeleteCas { key, index },
            api::KvOp::Get { key } => KvOp::Get { key },
            api::KvOp::GetTree { key } => KvOp::GetTree { key },
            api::KvOp::CheckIndex { key, index } => KvOp::CheckIndex { key, index },
            api::KvOp::CheckSession { key, session } => KvOp::CheckSession {
                key,
                session: session.into(),
            },
            api::KvOp::CheckNotExists { key } => KvOp::CheckNotExists { key },
        }
    }
}
