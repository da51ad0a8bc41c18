//! Sessions: the lock holders of KV, invalidated by TTL expiry, failing checks or a
//! disappearing node.

use serde::{Deserialize, Deserializer, Serialize};

use crate::duration::{parse_duration, GoDuration};

/// What happens to a session's locks when it is invalidated.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SessionBehavior {
    /// Locks are released; keys stay.
    #[default]
    Release,
    /// Locked keys are deleted.
    Delete,
}

/// Default lock delay (Consul: 15s).
pub const DEFAULT_LOCK_DELAY: std::time::Duration = std::time::Duration::from_secs(15);

/// A stored session (`/v1/session/info/:id` element).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Session {
    /// UUID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Human name.
    pub name: String,
    /// Node the session belongs to.
    pub node: String,
    /// Lock delay in nanoseconds (as Consul encodes it).
    pub lock_delay: u64,
    /// Release or delete.
    pub behavior: SessionBehavior,
    /// TTL (`""` = none).
    #[serde(rename = "TTL")]
    pub ttl: String,
    /// Node checks tied to the session.
    pub node_checks: Vec<String>,
    /// Service checks tied to the session.
    pub service_checks: Vec<ServiceCheckRef>,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// A service check tied to a session.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceCheckRef {
    /// Check ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Namespace (Enterprise; empty).
    #[serde(default)]
    pub namespace: String,
}

/// `PUT /v1/session/create` body.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct SessionCreate {
    /// Human name.
    #[serde(default)]
    pub name: String,
    /// Node (default: the agent's node).
    #[serde(default)]
    pub node: Option<String>,
    /// Lock delay: a Go duration string, or a number (below 1000: seconds, else nanoseconds).
    #[serde(default, deserialize_with = "lock_delay")]
    pub lock_delay: Option<GoDuration>,
    /// Deprecated name of `NodeChecks`.
    #[serde(default)]
    pub checks: Option<Vec<String>>,
    /// Node checks (default `["serfHealth"]`).
    #[serde(default)]
    pub node_checks: Option<Vec<String>>,
    /// Service checks.
    #[serde(default)]
    pub service_checks: Option<Vec<ServiceCheckRef>>,
    /// `release` (default) or `delete`.
    #[serde(default)]
    pub behavior: Option<String>,
    /// TTL between 10s and 86400s, or empty.
    #[serde(rename = "TTL", default)]
    pub ttl: Option<String>,
}

fn lock_delay<'de, D: Deserializer<'de>>(d: D) -> Result<Option<GoDuration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Number(u64),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        None => None,
        Some(Raw::Text(s)) => Some(GoDuration(
            parse_duration(&s).map_err(serde::de::Error::custom)?,
        )),
        Some(Raw::Number(n)) if n < 1000 => Some(GoDuration(std::time::Duration::from_secs(n))),
        Some(Raw::Number(n)) => Some(GoDuration(std::time::Duration::from_nanos(n))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_delay_forms() {
        let s: SessionCreate = serde_json::from_str(r#"{"LockDelay":"5s"}"#).unwrap();
        assert_eq!(s.lock_delay.unwrap().0.as_secs(), 5);
        let s: SessionCreate = serde_json::from_str(r#"{"LockDelay":7}"#).unwrap();
        assert_eq!(s.lock_delay.unwrap().0.as_secs(), 7);
        let s: SessionCreate = serde_json::from_str(r#"{"LockDelay":2000000000}"#).unwrap();
        assert_eq!(s.lock_delay.unwrap().0.as_secs(), 2);
    }
}
