//! KV table: set, CAS, locks with lock-delay, deletes with tombstones, transactions, and the
//! get/list/keys queries, with Consul's semantics.

use std::collections::BTreeMap;

use concord_api::kv::{TxnError, TxnResponse, TxnResultEntry};
use concord_api::rpc::QueryResult;

use super::schema::{KVS, TOMBSTONES};
use super::{Invalid, StateError, Tables, TxnOpError};
use crate::command::UnixMillis;
use crate::model::id::SessionId;
use crate::model::kv::{KvEntry, KvOp};

/// Entries of a key-ordered map whose key starts with `prefix`.
fn under<'a, V>(
    map: &'a BTreeMap<String, V>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a String, &'a V)> + 'a {
    map.range(prefix.to_string()..)
        .take_while(move |(k, _)| k.starts_with(prefix))
}

/// Consul stores an empty value as `null`.
fn stored_value(value: &[u8]) -> Option<Vec<u8>> {
    (!value.is_empty()).then(|| value.to_vec())
}

/// A transaction result row: written entries are reported without their value.
fn without_value(entry: &KvEntry) -> KvEntry {
    KvEntry {
        value: None,
        ..entry.clone()
    }
}

impl Tables {
    /// Saves a key's current entry and tombstone in the transaction journal, if one is open
    /// and this key was not touched yet.
    fn journal_key(&mut self, key: &str) {
        if let Some(journal) = &mut self.journal {
            if !journal.kvs.contains_key(key) {
                journal
                    .kvs
                    .insert(key.to_string(), self.kvs.get(key).cloned());
                journal
                    .tombstones
                    .insert(key.to_string(), self.tombstones.get(key).copied());
            }
        }
    }

    /// Stores an entry (the only way entries are written).
    fn kv_put(&mut self, index: u64, entry: KvEntry) {
        self.journal_key(&entry.key);
        self.tombstones.remove(&entry.key);
        self.kvs.insert(entry.key.clone(), entry);
        self.bump(KVS, index);
    }

    /// Removes a key, leaving a tombstone (the only way entries are removed).
    pub(super) fn kv_remove(&mut self, index: u64, key: &str) -> bool {
        if !self.kvs.contains_key(key) {
            return false;
        }
        self.journal_key(key);
        self.kvs.remove(key);
        self.tombstones.insert(key.to_string(), index);
        self.bump(KVS, index);
        self.bump(TOMBSTONES, index);
        true
    }

    /// Drops the tombstones at or below `up_to` (the tombstone GC's reap), raising the
    /// prefix-index floor to the highest one dropped. Reads see no change (the entries were
    /// already gone and indexes do not go down), so no watcher is woken.
    pub(super) fn kv_reap_tombstones(&mut self, up_to: u64) {
        let before = self.tombstones.len();
        let mut highest = self.tombstones_reaped;
        self.tombstones.retain(|_, index| {
            let reap = *index <= up_to;
            if reap {
                highest = highest.max(*index);
            }
            !reap
        });
        self.tombstones_reaped = highest;
        tracing::debug!(
            reaped = before - self.tombstones.len(),
            up_to,
            "reaped KV tombstones"
        );
    }

    /// How many tombstones are at or below `index` (what a reap up to it would remove).
    pub(crate) fn kv_tombstones_up_to(&self, index: u64) -> usize {
        self.tombstones.values().filter(|i| **i <= index).count()
    }

    /// A stored entry.
    #[cfg(test)]
    pub(crate) fn kv_entry(&self, key: &str) -> Option<&KvEntry> {
        self.kvs.get(key)
    }

    /// Releases a lock held by a destroyed session (keeping the key), as part of
    /// invalidation.
    pub(super) fn kv_release(&mut self, index: u64, key: &str) {
        if let Some(entry) = self.kvs.get(key) {
            let entry = KvEntry {
                session: None,
                modify_index: index,
                ..entry.clone()
            };
            self.kv_put(index, entry);
        }
    }

    /// Keys locked by `session`.
    pub(super) fn kv_locked_by(&self, session: &str) -> Vec<String> {
        self.kvs
            .values()
            .filter(|e| e.session.as_ref().map(SessionId::as_str) == Some(session))
            .map(|e| e.key.clone())
            .collect()
    }

    /// Unconditional set; keeps the key's lock holder and lock index.
    pub(crate) fn kv_set(&mut self, index: u64, key: &str, value: &[u8], flags: u64) -> KvEntry {
        let entry = match self.kvs.get(key) {
            Some(existing) => KvEntry {
                flags,
                value: stored_value(value),
                modify_index: index,
                ..existing.clone()
            },
            None => KvEntry {
                lock_index: 0,
                key: key.to_string(),
                flags,
                value: stored_value(value),
                session: None,
                create_index: index,
                modify_index: index,
            },
        };
        self.kv_put(index, entry.clone());
        entry
    }

    /// Set if the key's ModifyIndex is `cas` (0: only if absent); `None` when stale.
    pub(crate) fn kv_cas(
        &mut self,
        index: u64,
        key: &str,
        value: &[u8],
        flags: u64,
        cas: u64,
    ) -> Option<KvEntry> {
        let current = self.kvs.get(key).map_or(0, |e| e.modify_index);
        (current == cas).then(|| self.kv_set(index, key, value, flags))
    }

    /// Set and acquire the lock for `session`. `Ok(None)` when another session holds it or
    /// the key is inside its lock-delay window; an unknown session is invalid.
    pub(crate) fn kv_lock(
        &mut self,
        index: u64,
        key: &str,
        value: &[u8],
        flags: u64,
        session: &str,
        now_ms: UnixMillis,
    ) -> Result<Option<KvEntry>, StateError> {
        if session.is_empty() {
            return Err(Invalid::NoSession.into());
        }
        if !self.sessions.contains_key(session) {
            return Err(Invalid::UnknownSession(session.to_string()).into());
        }
        if self
            .lock_delays
            .get(key)
            .is_some_and(|until| now_ms < *until)
        {
            return Ok(None);
        }
        let (create_index, lock_index) = match self.kvs.get(key) {
            // Re-acquiring our own lock updates the value but is not a new acquisition.
            Some(e) if e.session.as_ref().map(SessionId::as_str) == Some(session) => {
                (e.create_index, e.lock_index)
            }
            Some(e) if e.session.is_some() => return Ok(None),
            Some(e) => (e.create_index, e.lock_index + 1),
            None => (index, 1),
        };
        let entry = KvEntry {
            lock_index,
            key: key.to_string(),
            flags,
            value: stored_value(value),
            session: Some(SessionId::from(session)),
            create_index,
            modify_index: index,
        };
        self.kv_put(index, entry.clone());
        Ok(Some(entry))
    }

    /// Set and release `session`'s lock; `Ok(None)` unless that session holds it.
    pub(crate) fn kv_unlock(
        &mut self,
        index: u64,
        key: &str,
        value: &[u8],
        flags: u64,
        session: &str,
    ) -> Result<Option<KvEntry>, StateError> {
        if session.is_empty() {
            return Err(Invalid::NoSession.into());
        }
        let Some(existing) = self.kvs.get(key) else {
            return Ok(None);
        };
        if existing.session.as_ref().map(SessionId::as_str) != Some(session) {
            return Ok(None);
        }
        let entry = KvEntry {
            flags,
            value: stored_value(value),
            session: None,
            modify_index: index,
            ..existing.clone()
        };
        self.kv_put(index, entry.clone());
        Ok(Some(entry))
    }

    /// Deletes every key under `prefix`; returns how many.
    pub(crate) fn kv_delete_tree(&mut self, index: u64, prefix: &str) -> usize {
        let keys: Vec<String> = under(&self.kvs, prefix).map(|(k, _)| k.clone()).collect();
        for key in &keys {
            self.kv_remove(index, key);
        }
        keys.len()
    }

    /// Deletes if ModifyIndex is `cas`. As in Consul, an absent key counts as deleted.
    pub(crate) fn kv_delete_cas(&mut self, index: u64, key: &str, cas: u64) -> bool {
        match self.kvs.get(key) {
            None => true,
            Some(e) if e.modify_index != cas => false,
            Some(_) => self.kv_remove(index, key),
        }
    }

    /// Applies one KV operation outside a transaction (`PUT`/`DELETE /v1/kv`).
    pub(crate) fn kv_apply(
        &mut self,
        index: u64,
        op: &KvOp,
        now_ms: UnixMillis,
    ) -> Result<bool, StateError> {
        Ok(match op {
            KvOp::Set { key, value, flags } => {
                self.kv_set(index, key, value, *flags);
                true
            }
            KvOp::Cas {
                key,
                value,
                flags,
                index: cas,
            } => self.kv_cas(index, key, value, *flags, *cas).is_some(),
            KvOp::Lock {
                key,
                value,
                flags,
                session,
            } => self
                .kv_lock(index, key, value, *flags, session.as_str(), now_ms)?
                .is_some(),
            KvOp::Unlock {
                key,
                value,
                flags,
                session,
            } => self
                .kv_unlock(index, key, value, *flags, session.as_str())?
                .is_some(),
            KvOp::Delete { key } => {
                self.kv_remove(index, key);
                true
            }
            KvOp::DeleteTree { key } => {
                self.kv_delete_tree(index, key);
                true
            }
            KvOp::DeleteCas { key, index: cas } => self.kv_delete_cas(index, key, *cas),
            KvOp::Get { .. }
            | KvOp::GetTree { .. }
            | KvOp::CheckIndex { .. }
            | KvOp::CheckSession { .. }
            | KvOp::CheckNotExists { .. } => return Err(Invalid::TxnOnlyVerb.into()),
        })
    }

    /// Applies a transaction: every operation in order, all or nothing. Errors are collected
    /// for every failing operation; if there is any, every change is rolled back.
    pub(crate) fn txn(&mut self, index: u64, ops: &[KvOp], now_ms: UnixMillis) -> TxnResponse {
        self.begin_journal();
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (op_index, op) in ops.iter().enumerate() {
            match self.txn_op(index, op, now_ms) {
                Ok(entries) => results.extend(
                    entries
                        .into_iter()
                        .map(|kv| TxnResultEntry { kv: kv.to_api() }),
                ),
                Err(e) => errors.push(TxnError {
                    op_index,
                    what: e.to_string(),
                }),
            }
        }
        if errors.is_empty() {
            self.commit_journal();
            TxnResponse {
                results: Some(results),
                errors: None,
            }
        } else {
            self.rollback_journal();
            TxnResponse {
                results: None,
                errors: Some(errors),
            }
        }
    }

    fn txn_op(
        &mut self,
        index: u64,
        op: &KvOp,
        now_ms: UnixMillis,
    ) -> Result<Vec<KvEntry>, TxnOpError> {
        let missing = |key: &String| TxnOpError::Missing { key: key.clone() };
        Ok(match op {
            KvOp::Set { key, value, flags } => {
                vec![without_value(&self.kv_set(index, key, value, *flags))]
            }
            KvOp::Cas {
                key,
                value,
                flags,
                index: cas,
            } => match self.kv_cas(index, key, value, *flags, *cas) {
                Some(e) => vec![without_value(&e)],
                None => return Err(TxnOpError::CasStale { key: key.clone() }),
            },
            KvOp::Lock {
                key,
                value,
                flags,
                session,
            } => match self.kv_lock(index, key, value, *flags, session.as_str(), now_ms) {
                Ok(Some(e)) => vec![without_value(&e)],
                Ok(None) => return Err(TxnOpError::LockHeld { key: key.clone() }),
                Err(error) => {
                    return Err(TxnOpError::Lock {
                        key: key.clone(),
                        error,
                    })
                }
            },
            KvOp::Unlock {
                key,
                value,
                flags,
                session,
            } => match self.kv_unlock(index, key, value, *flags, session.as_str()) {
                Ok(Some(e)) => vec![without_value(&e)],
                Ok(None) => return Err(TxnOpError::UnlockNotHeld { key: key.clone() }),
                Err(error) => {
                    return Err(TxnOpError::Unlock {
                        key: key.clone(),
                        error,
                    })
                }
            },
            KvOp::Delete { key } => {
                self.kv_remove(index, key);
                vec![]
            }
            KvOp::DeleteTree { key } => {
                self.kv_delete_tree(index, key);
                vec![]
            }
            KvOp::DeleteCas { key, index: cas } => {
                if !self.kv_delete_cas(index, key, *cas) {
                    return Err(TxnOpError::DeleteStale { key: key.clone() });
                }
                vec![]
            }
            KvOp::Get { key } => match self.kvs.get(key) {
                Some(e) => vec![e.clone()],
                None => return Err(missing(key)),
            },
            KvOp::GetTree { key } => under(&self.kvs, key).map(|(_, e)| e.clone()).collect(),
            KvOp::CheckIndex { key, index: want } => match self.kvs.get(key) {
                Some(e) if e.modify_index == *want => vec![without_value(e)],
                Some(e) => {
                    return Err(TxnOpError::IndexMismatch {
                        key: key.clone(),
                        current: e.modify_index,
                    })
                }
                None => return Err(missing(key)),
            },
            KvOp::CheckSession { key, session } => match self.kvs.get(key) {
                Some(e) if e.session.as_ref().map(SessionId::as_str) == Some(session.as_str()) => {
                    vec![without_value(e)]
                }
                Some(_) => {
                    return Err(TxnOpError::NotLockedBy {
                        key: key.clone(),
                        session: session.clone(),
                    })
                }
                None => return Err(missing(key)),
            },
            KvOp::CheckNotExists { key } => {
                if self.kvs.contains_key(key) {
                    return Err(TxnOpError::Exists { key: key.clone() });
                }
                vec![]
            }
        })
    }

    /// Index of a prefix read, as Consul computes it: the highest ModifyIndex under the
    /// prefix, including tombstones (so deletes wake prefix watchers); the whole-table index
    /// for the empty prefix or when nothing is (or was) under it. Never below the highest
    /// reaped tombstone: a watcher that saw a delete's index must not see the prefix go back
    /// once the GC removed the tombstone (Consul lets it go back; a spurious early return of
    /// other prefixes is the lesser harm).
    fn kv_prefix_index(&self, prefix: &str) -> u64 {
        let table = self.max_index(&[KVS, TOMBSTONES]);
        if prefix.is_empty() {
            return table;
        }
        let entries = under(&self.kvs, prefix).map(|(_, e)| e.modify_index).max();
        let graves = under(&self.tombstones, prefix).map(|(_, i)| *i).max();
        match entries.max(graves) {
            Some(index) if index > 0 => index.max(self.tombstones_reaped),
            _ => table,
        }
    }

    pub(super) fn kv_get_query(&self, key: &str) -> (u64, QueryResult) {
        match self.kvs.get(key) {
            Some(e) => (e.modify_index.max(1), QueryResult::Kv(vec![e.to_api()])),
            None => (self.max_index(&[KVS, TOMBSTONES]), QueryResult::Kv(vec![])),
        }
    }

    pub(super) fn kv_list_query(&self, prefix: &str) -> (u64, QueryResult) {
        let entries = under(&self.kvs, prefix).map(|(_, e)| e.to_api()).collect();
        (self.kv_prefix_index(prefix), QueryResult::Kv(entries))
    }

    /// Key names under `prefix`; with a separator, each key is cut just after the first
    /// separator past the prefix and duplicates collapse (Consul's `?keys&separator=`).
    pub(super) fn kv_keys_query(
        &self,
        prefix: &str,
        separator: Option<&str>,
    ) -> (u64, QueryResult) {
        let separator = separator.filter(|s| !s.is_empty());
        let mut keys: Vec<String> = Vec::new();
        for key in under(&self.kvs, prefix).map(|(k, _)| k) {
            let folded = separator.and_then(|sep| {
                key[prefix.len()..]
                    .find(sep)
                    .map(|at| &key[..prefix.len() + at + sep.len()])
            });
            match folded {
                Some(folded) => {
                    if keys.last().map(String::as_str) != Some(folded) {
                        keys.push(folded.to_string());
                    }
                }
                None => keys.push(key.clone()),
            }
        }
        (self.kv_prefix_index(prefix), QueryResult::Keys(keys))
    }
}
