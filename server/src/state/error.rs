//! Why the state store refuses a command: typed reasons, each with the exact text Consul
//! (and so every client, and Concord's HTTP API) shows for it.

use std::time::Duration;

use concord_api::duration::format_duration;
use concord_api::rpc::RpcError;

/// Why the state store refused a command or a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StateError {
    /// The command is invalid; nothing changed.
    #[error("{0}")]
    Invalid(#[from] Invalid),
    /// A snapshot could not be encoded or decoded.
    #[error("state snapshot: {0}")]
    Snapshot(String),
}

impl From<StateError> for RpcError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Invalid(reason) => RpcError::Invalid(reason.to_string()),
            StateError::Snapshot(msg) => RpcError::Internal(msg),
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
    #[error("RaftStatus is answered by Raft, not the state store")]
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
}
