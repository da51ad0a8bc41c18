//! Why the state store refuses a command: typed reasons, each with the exact text Consul
//! (and so every client, and Concord's HTTP API) shows for it.

use std::time::Duration;

use concord_api::duration::format_duration;
use concord_api::rpc::RpcError;

use crate::model::id::SessionId;

/// Why the state store refused a command or a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StateError {
    /// The command is invalid; nothing changed.
    #[error("{0}")]
    Invalid(#[from] Invalid),
    /// A snapshot could not be encoded or decoded.
    #[error("state snapshot: {0}")]
    Snapshot(String),
    /// An ACL refusal (the whole `Permission denied: ...` text); nothing changed.
    #[error("{0}")]
    PermissionDenied(String),
}

impl From<StateError> for RpcError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Invalid(reason) => RpcError::Invalid(reason.to_string()),
            StateError::Snapshot(msg) => RpcError::Internal(msg),
            StateError::PermissionDenied(msg) => RpcError::PermissionDenied(msg),
        }
    }
}

/// Why a command is invalid. The texts are part of the HTTP API (clients match on them):
/// change none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Invalid {
    /// A register or deregister without a node name.
    #[error("Must provide node")]
    NoNodeName,
    /// A node registration without an address.
    #[error("Must provide address")]
    NoAddress,
    /// The node must already be registered (`SkipNodeUpdate`, a session).
    #[error("Missing node registration")]
    NodeNotRegistered,
    /// A service registration without a name.
    #[error("Must provide service name")]
    NoServiceName,
    /// A check with neither ID nor name.
    #[error("Must provide check ID or name")]
    NoCheckId,
    /// A check for a service that is neither registered nor in the same request.
    #[error("Missing service registration: check '{check_id}' references service '{service_id}'")]
    CheckServiceNotRegistered {
        /// The check.
        check_id: String,
        /// The service it names.
        service_id: String,
    },
    /// A session create without the ID the leader assigns.
    #[error("Missing session ID")]
    NoSessionId,
    /// A session create with an ID in use.
    #[error("Session ID '{0}' already exists")]
    SessionExists(String),
    /// A session tied to a check that is not registered on its node.
    #[error("Missing check '{0}' registration")]
    CheckNotRegistered(String),
    /// A session tied to a check in a state that forbids it (critical).
    #[error("Check '{check_id}' is in {status} state")]
    CheckNotHealthy {
        /// The check.
        check_id: String,
        /// Its status, as Consul spells it.
        status: &'static str,
    },
    /// A lock or unlock without a session.
    #[error("missing session")]
    NoSession,
    /// A lock naming a session that does not exist.
    #[error("invalid session \"{0}\"")]
    UnknownSession(String),
    /// A transaction-only verb outside a transaction.
    #[error("this KV verb is only valid in a transaction")]
    TxnOnlyVerb,
    /// A query the state store does not answer.
    #[error("RaftStatus and operator queries are answered by Raft, not the state store")]
    NotAStateQuery,
    /// A session TTL that is not a Go duration.
    #[error("Invalid Session TTL '{ttl}': {error}")]
    SessionTtlSyntax {
        /// The TTL as given.
        ttl: String,
        /// Why it does not parse.
        error: String,
    },
    /// A session TTL outside the allowed range.
    #[error(
        "Invalid Session TTL '{ttl}', must be between [{}={}]",
        format_duration(*min),
        format_duration(*max)
    )]
    SessionTtlRange {
        /// The TTL as given.
        ttl: String,
        /// Shortest allowed.
        min: Duration,
        /// Longest allowed.
        max: Duration,
    },
    /// A CA configuration change before the CA exists.
    #[error("CA is not initialized yet")]
    CaNotInitialized,
    /// A rotation built against a root that is no longer the active one.
    #[error("CA root changed while the rotation was prepared; retry")]
    CaRootChanged,
    /// A config entry write or delete that would leave a service with L7 intention
    /// permissions speaking a protocol that is not HTTP-aware (Consul's text).
    #[error("service {service:?} has protocol {protocol:?}, which is incompatible with L7 intentions permissions")]
    L7IntentionsNeedHttp {
        /// The intentions' destination.
        service: String,
        /// Its protocol after the change.
        protocol: String,
    },
    /// A policy create or rename to a name another policy has (Consul's text).
    #[error("Invalid Policy: A Policy with Name {0:?} already exists")]
    AclPolicyNameExists(String),
    /// A token create with a SecretID another token has (Consul's text).
    #[error("Invalid Token: SecretID is already in use")]
    AclSecretInUse,
    /// A role create or rename to a name another role has (Consul's text).
    #[error("Invalid Role: A Role with Name {0:?} already exists")]
    AclRoleNameExists(String),
}

/// Why one operation of a KV transaction failed (the transaction then changes nothing).
/// The texts are what Consul reports per operation in a transaction's `Errors`: change none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TxnOpError {
    /// A read or check of a key that does not exist.
    #[error("key {key:?} doesn't exist")]
    Missing {
        /// The key.
        key: String,
    },
    /// A check-and-set whose index no longer matches.
    #[error("failed to set key {key:?}, index is stale")]
    CasStale {
        /// The key.
        key: String,
    },
    /// A lock of a key another session holds.
    #[error("failed to lock key {key:?}, lock is already held")]
    LockHeld {
        /// The key.
        key: String,
    },
    /// A lock refused by the store (no session, unknown session).
    #[error("failed to lock key {key:?}: {error}")]
    Lock {
        /// The key.
        key: String,
        /// Why.
        error: StateError,
    },
    /// An unlock of a key the session does not hold.
    #[error("failed to unlock key {key:?}, lock isn't held, or is held by another session")]
    UnlockNotHeld {
        /// The key.
        key: String,
    },
    /// An unlock refused by the store (no session).
    #[error("failed to unlock key {key:?}: {error}")]
    Unlock {
        /// The key.
        key: String,
        /// Why.
        error: StateError,
    },
    /// A check-and-delete whose index no longer matches.
    #[error("failed to delete key {key:?}, index is stale")]
    DeleteStale {
        /// The key.
        key: String,
    },
    /// A `check-index` that does not match.
    #[error("current modify index {current} for key {key:?} doesn't match")]
    IndexMismatch {
        /// The key.
        key: String,
        /// The key's modify index now.
        current: u64,
    },
    /// A `check-session` on a key not locked by that session.
    #[error("key {key:?} is not locked by session {:?}", session.as_str())]
    NotLockedBy {
        /// The key.
        key: String,
        /// The session named.
        session: SessionId,
    },
    /// A `check-not-exists` on a key that exists.
    #[error("key {key:?} exists")]
    Exists {
        /// The key.
        key: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clients match on these texts (Consul's own words): pin every one.
    #[test]
    fn texts_are_consuls() {
        let s = String::from;
        let cases = [
            (Invalid::NoNodeName, "Must provide node"),
            (Invalid::NoAddress, "Must provide address"),
            (Invalid::NodeNotRegistered, "Missing node registration"),
            (Invalid::NoServiceName, "Must provide service name"),
            (Invalid::NoCheckId, "Must provide check ID or name"),
            (
                Invalid::CheckServiceNotRegistered {
                    check_id: s("c"),
                    service_id: s("web"),
                },
                "Missing service registration: check 'c' references service 'web'",
            ),
            (Invalid::NoSessionId, "Missing session ID"),
            (
                Invalid::SessionExists(s("s1")),
                "Session ID 's1' already exists",
            ),
            (
                Invalid::CheckNotRegistered(s("c")),
                "Missing check 'c' registration",
            ),
            (
                Invalid::CheckNotHealthy {
                    check_id: s("c"),
                    status: "critical",
                },
                "Check 'c' is in critical state",
            ),
            (Invalid::NoSession, "missing session"),
            (Invalid::UnknownSession(s("x")), "invalid session \"x\""),
            (
                Invalid::TxnOnlyVerb,
                "this KV verb is only valid in a transaction",
            ),
            (
                Invalid::SessionTtlSyntax {
                    ttl: s("soon"),
                    error: s("bad"),
                },
                "Invalid Session TTL 'soon': bad",
            ),
            (
                Invalid::SessionTtlRange {
                    ttl: s("5s"),
                    min: Duration::from_secs(10),
                    max: Duration::from_secs(86_400),
                },
                "Invalid Session TTL '5s', must be between [10s=24h0m0s]",
            ),
        ];
        for (reason, text) in cases {
            assert_eq!(
                RpcError::from(StateError::from(reason)),
                RpcError::Invalid(s(text))
            );
        }
    }

    /// Per-operation transaction texts (Consul's words, keys and sessions quoted).
    #[test]
    fn txn_op_texts_are_consuls() {
        let key = || String::from("a/b");
        let cases = [
            (
                TxnOpError::Missing { key: key() },
                r#"key "a/b" doesn't exist"#,
            ),
            (
                TxnOpError::CasStale { key: key() },
                r#"failed to set key "a/b", index is stale"#,
            ),
            (
                TxnOpError::LockHeld { key: key() },
                r#"failed to lock key "a/b", lock is already held"#,
            ),
            (
                TxnOpError::Lock {
                    key: key(),
                    error: Invalid::UnknownSession(String::from("x")).into(),
                },
                r#"failed to lock key "a/b": invalid session "x""#,
            ),
            (
                TxnOpError::UnlockNotHeld { key: key() },
                r#"failed to unlock key "a/b", lock isn't held, or is held by another session"#,
            ),
            (
                TxnOpError::Unlock {
                    key: key(),
                    error: Invalid::NoSession.into(),
                },
                r#"failed to unlock key "a/b": missing session"#,
            ),
            (
                TxnOpError::DeleteStale { key: key() },
                r#"failed to delete key "a/b", index is stale"#,
            ),
            (
                TxnOpError::IndexMismatch {
                    key: key(),
                    current: 7,
                },
                r#"current modify index 7 for key "a/b" doesn't match"#,
            ),
            (
                TxnOpError::NotLockedBy {
                    key: key(),
                    session: SessionId::from("s1"),
                },
                r#"key "a/b" is not locked by session "s1""#,
            ),
            (TxnOpError::Exists { key: key() }, r#"key "a/b" exists"#),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }
}
