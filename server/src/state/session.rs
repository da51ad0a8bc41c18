//! Sessions table: create (validated against the catalog), destroy/invalidate (releasing or
//! deleting the keys the session locks, starting their lock delay), and the session queries.

use std::time::Duration;

use concord_api::duration::parse_duration;
use concord_api::rpc::QueryResult;

use super::schema::SESSIONS;
use super::{Invalid, StateError, Tables};
use crate::command::UnixMillis;
use crate::model::catalog::CheckStatus;
use crate::model::id::{CheckId, NodeName, SessionId};
use crate::model::session::{Behavior, Session};

/// Shortest session TTL accepted by default (Consul's `session_ttl_min` default).
pub const SESSION_TTL_MIN: Duration = Duration::from_secs(10);
/// Longest session TTL accepted (Consul's `SessionTTLMax`).
pub(crate) const SESSION_TTL_MAX: Duration = Duration::from_secs(86_400);
/// A session expires `TTL × this` after its last renewal. Consul's `SessionTTLMultiplier`:
/// clients renew at TTL/2, and the grace absorbs a missed renewal or a leader change.
pub(crate) const SESSION_TTL_MULTIPLIER: u32 = 2;
/// Lock delays longer than this are clamped (Consul's `MaxLockDelay`).
pub(crate) const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);

/// Validates a session TTL: empty (or zero) means none; otherwise a Go duration between
/// `min` (the server's `session_ttl_min`, [`SESSION_TTL_MIN`] by default) and
/// [`SESSION_TTL_MAX`]. A stored session is re-read with `min` zero: it was checked when made.
pub(crate) fn parse_session_ttl(ttl: &str, min: Duration) -> Result<Option<Duration>, Invalid> {
    if ttl.is_empty() {
        return Ok(None);
    }
    let parsed = parse_duration(ttl).map_err(|e| Invalid::SessionTtlSyntax {
        ttl: ttl.to_string(),
        error: e.to_string(),
    })?;
    if parsed.is_zero() {
        return Ok(None);
    }
    if !(min..=SESSION_TTL_MAX).contains(&parsed) {
        return Err(Invalid::SessionTtlRange {
            ttl: ttl.to_string(),
            min,
            max: SESSION_TTL_MAX,
        });
    }
    Ok(Some(parsed))
}

impl Tables {
    /// Creates a session. The node must be registered and every tied check must exist on it
    /// and not be critical (Consul's `sessionCreateTxn`).
    pub(crate) fn session_create(
        &mut self,
        index: u64,
        session: &Session,
    ) -> Result<String, StateError> {
        if session.id.is_empty() {
            return Err(Invalid::NoSessionId.into());
        }
        if self.sessions.contains_key(&session.id) {
            return Err(Invalid::SessionExists(session.id.to_string()).into());
        }
        if !self.nodes.contains_key(&session.node) {
            return Err(Invalid::NodeNotRegistered.into());
        }
        let check_ids = session
            .node_checks
            .iter()
            .chain(session.service_checks.iter().map(|c| &c.id));
        for check_id in check_ids {
            match self.check(session.node.as_str(), check_id.as_str()) {
                None => return Err(Invalid::CheckNotRegistered(check_id.to_string()).into()),
                Some(c) if c.status == CheckStatus::Critical => {
                    return Err(Invalid::CheckNotHealthy {
                        check_id: check_id.to_string(),
                        status: c.status.as_str(),
                    }
                    .into())
                }
                Some(_) => {}
            }
        }
        let stored = Session {
            create_index: index,
            modify_index: index,
            ..session.clone()
        };
        self.sessions.insert(stored.id.clone(), stored);
        self.bump(SESSIONS, index);
        Ok(session.id.to_string())
    }

    /// Destroys (invalidates) a session: its locks are released or, with behavior `delete`,
    /// its locked keys deleted; each such key then refuses new locks for the session's lock
    /// delay (capped at [`MAX_LOCK_DELAY`]), counted from the leader's `now_ms`. Returns
    /// whether the session existed.
    pub(crate) fn session_destroy(&mut self, index: u64, id: &str, now_ms: UnixMillis) -> bool {
        let Some(session) = self.sessions.remove(id) else {
            return false;
        };
        self.bump(SESSIONS, index);
        // Forget expired delays while we are here, so the map stays small.
        self.lock_delays.retain(|_, until| *until > now_ms);
        let delay = Duration::from_nanos(session.lock_delay).min(MAX_LOCK_DELAY);
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        for key in self.kv_locked_by(id) {
            match session.behavior {
                Behavior::Release => self.kv_release(index, &key),
                Behavior::Delete => {
                    self.kv_remove(index, &key);
                }
            }
            if delay_ms > 0 {
                self.lock_delays
                    .insert(key, now_ms.saturating_add(delay_ms));
            }
        }
        true
    }

    /// Invalidates every session tied to a check (it turned critical or went away).
    pub(super) fn invalidate_check_sessions(
        &mut self,
        index: u64,
        node: &NodeName,
        check_id: &CheckId,
        now_ms: UnixMillis,
    ) {
        let tied: Vec<SessionId> = self
            .sessions
            .values()
            .filter(|s| {
                s.node == *node
                    && (s.node_checks.iter().any(|c| c == check_id)
                        || s.service_checks.iter().any(|c| c.id == *check_id))
            })
            .map(|s| s.id.clone())
            .collect();
        for id in tied {
            self.session_destroy(index, id.as_str(), now_ms);
        }
    }

    /// Wall-clock millisecond until which `key` refuses locks, if a delay is recorded.
    #[cfg(test)]
    pub(crate) fn lock_delay_until(&self, key: &str) -> Option<u64> {
        self.lock_delays.get(key).copied()
    }

    pub(super) fn session_info_query(&self, id: &str) -> (u64, QueryResult) {
        let sessions = self
            .sessions
            .get(id)
            .map(Session::to_api)
            .into_iter()
            .collect();
        (self.max_index(&[SESSIONS]), QueryResult::Sessions(sessions))
    }

    pub(super) fn session_list_query(&self) -> (u64, QueryResult) {
        let sessions = self.sessions.values().map(Session::to_api).collect();
        (self.max_index(&[SESSIONS]), QueryResult::Sessions(sessions))
    }

    pub(super) fn node_sessions_query(&self, node: &str) -> (u64, QueryResult) {
        let sessions = self
            .sessions
            .values()
            .filter(|s| s.node == node)
            .map(Session::to_api)
            .collect();
        (self.max_index(&[SESSIONS]), QueryResult::Sessions(sessions))
    }
}
