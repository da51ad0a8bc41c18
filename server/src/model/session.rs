//! Session records.

use concord_api::session as api;
use serde::{Deserialize, Serialize};

use super::id::{CheckId, NodeName, SessionId};

/// What happens to a session's locks when it is invalidated.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Behavior {
    /// Locks are released; keys stay.
    #[default]
    Release,
    /// Locked keys are deleted.
    Delete,
}

/// A service check tied to a session.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ServiceCheck {
    /// Check ID.
    pub(crate) id: CheckId,
    /// Namespace (Enterprise; empty).
    pub(crate) namespace: String,
}

/// A session.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Session {
    /// UUID, assigned by the leader.
    pub(crate) id: SessionId,
    /// Human name.
    pub(crate) name: String,
    /// Node the session belongs to.
    pub(crate) node: NodeName,
    /// Lock delay in nanoseconds.
    pub(crate) lock_delay: u64,
    /// Release or delete.
    pub(crate) behavior: Behavior,
    /// TTL as a Go duration (`""`: none).
    pub(crate) ttl: String,
    /// Node checks tied to the session.
    pub(crate) node_checks: Vec<CheckId>,
    /// Service checks tied to the session.
    pub(crate) service_checks: Vec<ServiceCheck>,
    /// Index that created it.
    pub(crate) create_index: u64,
    /// Index of its last change.
    pub(crate) modify_index: u64,
}

impl Session {
    pub(crate) fn to_api(&self) -> api::Session {
        api::Session {
            id: self.id.to_string(),
            name: self.name.clone(),
            node: self.node.to_string(),
            lock_delay: self.lock_delay,
            behavior: match self.behavior {
                Behavior::Release => api::SessionBehavior::Release,
                Behavior::Delete => api::SessionBehavior::Delete,
            },
            ttl: self.ttl.clone(),
            node_checks: self.node_checks.iter().map(CheckId::to_string).collect(),
            service_checks: self
                .service_checks
                .iter()
                .map(|c| api::ServiceCheckRef {
                    id: c.id.to_string(),
                    namespace: c.namespace.clone(),
                })
                .collect(),
            create_index: self.create_index,
            modify_index: self.modify_index,
        }
    }
}

impl From<api::Session> for Session {
    fn from(s: api::Session) -> Self {
        Session {
            id: s.id.into(),
            name: s.name,
            node: s.node.into(),
            lock_delay: s.lock_delay,
            behavior: match s.behavior {
                api::SessionBehavior::Release => Behavior::Release,
                api::SessionBehavior::Delete => Behavior::Delete,
            },
            ttl: s.ttl,
            node_checks: s.node_checks.into_iter().map(CheckId::from).collect(),
            service_checks: s
                .service_checks
                .into_iter()
                .map(|c| ServiceCheck {
                    id: c.id.into(),
                    namespace: c.namespace,
                })
                .collect(),
            create_index: s.create_index,
            modify_index: s.modify_index,
        }
    }
}
