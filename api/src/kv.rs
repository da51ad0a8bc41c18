//! Key/value entries, transactions and their wire encoding (values are base64 in JSON).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A stored key (`GET /v1/kv/:key` element).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct KvEntry {
    /// How many times a lock on this key was acquired.
    pub lock_index: u64,
    /// Full key.
    pub key: String,
    /// Opaque client flags.
    pub flags: u64,
    /// Value bytes (base64 on the wire; `null` when empty or not requested).
    #[serde(with = "base64_opt", default)]
    pub value: Option<Vec<u8>>,
    /// Session holding the lock, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// One KV operation, as the server applies it. Used by `PUT/DELETE /v1/kv` and by `/v1/txn`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "Verb", rename_all = "kebab-case")]
pub enum KvOp {
    /// Unconditional set.
    Set {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
        /// Flags.
        flags: u64,
    },
    /// Set if the key's ModifyIndex equals `index` (0: only if absent).
    Cas {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
        /// Flags.
        flags: u64,
        /// Expected ModifyIndex.
        index: u64,
    },
    /// Set and take the lock for `session`.
    Lock {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
        /// Flags.
        flags: u64,
        /// Session ID.
        session: String,
    },
    /// Set and release `session`'s lock.
    Unlock {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
        /// Flags.
        flags: u64,
        /// Session ID.
        session: String,
    },
    /// Delete one key.
    Delete {
        /// Key.
        key: String,
    },
    /// Delete every key with this prefix.
    DeleteTree {
        /// Prefix.
        key: String,
    },
    /// Delete if ModifyIndex equals `index`.
    DeleteCas {
        /// Key.
        key: String,
        /// Expected ModifyIndex.
        index: u64,
    },
    /// Read a key; fails the transaction if missing.
    Get {
        /// Key.
        key: String,
    },
    /// Read every key under a prefix.
    GetTree {
        /// Prefix.
        key: String,
    },
    /// Fail unless ModifyIndex equals `index`.
    CheckIndex {
        /// Key.
        key: String,
        /// Expected ModifyIndex.
        index: u64,
    },
    /// Fail unless the key is locked by `session`.
    CheckSession {
        /// Key.
        key: String,
        /// Session ID.
        session: String,
    },
    /// Fail if the key exists.
    CheckNotExists {
        /// Key.
        key: String,
    },
}

/// A `/v1/txn` KV operation as clients send it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct TxnKvOp {
    /// `set`, `cas`, `lock`, `unlock`, `get`, `get-tree`, `check-index`, `check-session`,
    /// `check-not-exists`, `delete`, `delete-tree`, `delete-cas`.
    #[serde(default)]
    pub verb: String,
    /// Key.
    #[serde(default)]
    pub key: String,
    /// Value (base64).
    #[serde(with = "base64_opt", default)]
    pub value: Option<Vec<u8>>,
    /// Flags.
    #[serde(default)]
    pub flags: u64,
    /// Index for CAS verbs.
    #[serde(default)]
    pub index: u64,
    /// Session for lock verbs.
    #[serde(default)]
    pub session: String,
}

impl TxnKvOp {
    /// Converts the wire form into a typed operation, or explains why it is invalid.
    pub fn to_op(&self) -> Result<KvOp, String> {
        let key = self.key.clone();
        let value = self.value.clone().unwrap_or_default();
        let flags = self.flags;
        let need_session = || {
            if self.session.is_empty() {
                Err(format!("missing session for verb \"{}\"", self.verb))
            } else {
                Ok(self.session.clone())
            }
        };
        let op = match self.verb.as_str() {
            "set" => KvOp::Set { key, value, flags },
            "cas" => KvOp::Cas {
                key,
                value,
                flags,
                index: self.index,
            },
            "lock" => KvOp::Lock {
                key,
                value,
                flags,
                session: need_session()?,
            },
            "unlock" => KvOp::Unlock {
                key,
                value,
                flags,
                session: need_session()?,
            },
            "delete" => KvOp::Delete { key },
            "delete-tree" => KvOp::DeleteTree { key },
            "delete-cas" => KvOp::DeleteCas {
                key,
                index: self.index,
            },
            "get" => KvOp::Get { key },
            "get-tree" => KvOp::GetTree { key },
            "check-index" => KvOp::CheckIndex {
                key,
                index: self.index,
            },
            "check-session" => KvOp::CheckSession {
                key,
                session: need_session()?,
            },
            "check-not-exists" => KvOp::CheckNotExists { key },
            other => return Err(format!("unknown KV verb \"{other}\"")),
        };
        Ok(op)
    }
}

/// One element of a `/v1/txn` request body. Only KV operations are supported so far.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct TxnOp {
    /// The KV operation.
    #[serde(rename = "KV", default)]
    pub kv: Option<TxnKvOp>,
}

/// One result of a transaction.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TxnResultEntry {
    /// The entry read or written.
    #[serde(rename = "KV")]
    pub kv: KvEntry,
}

/// Why a transaction rolled back.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct TxnError {
    /// Index of the failing operation.
    pub op_index: usize,
    /// What went wrong.
    pub what: String,
}

/// `/v1/txn` response body (200 when applied, 409 when rolled back).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct TxnResponse {
    /// Results in operation order (deletes produce none).
    pub results: Option<Vec<TxnResultEntry>>,
    /// Errors; non-empty means nothing was applied.
    pub errors: Option<Vec<TxnError>>,
}

/// Base64 (standard alphabet) for optional byte strings, as Go's `[]byte` JSON encoding.
pub mod base64_opt {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;

    use super::*;

    /// Serializes bytes as base64 (or `null`).
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_str(&STANDARD.encode(bytes)),
            None => s.serialize_none(),
        }
    }

    /// Deserializes base64 (or `null`).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        match text {
            None => Ok(None),
            Some(t) => STANDARD
                .decode(t.as_bytes())
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Base64 (standard alphabet) for byte strings that are always present.
pub mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;

    use super::*;

    /// Serializes bytes as base64.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    /// Deserializes base64.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_is_base64() {
        let e = KvEntry {
            key: "k".into(),
            value: Some(b"hello".to_vec()),
            ..KvEntry::default()
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["Value"], "aGVsbG8=");
        assert!(v.get("Session").is_none());
        let back: KvEntry = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn txn_verbs_convert() {
        let op = TxnKvOp {
            verb: "cas".into(),
            key: "a".into(),
            index: 3,
            ..TxnKvOp::default()
        };
        assert!(matches!(op.to_op(), Ok(KvOp::Cas { index: 3, .. })));
        let bad = TxnKvOp {
            verb: "frob".into(),
            ..TxnKvOp::default()
        };
        assert!(bad.to_op().is_err());
        let lock = TxnKvOp {
            verb: "lock".into(),
            ..TxnKvOp::default()
        };
        assert!(lock.to_op().is_err());
    }
}
