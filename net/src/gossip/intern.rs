//! Sharing of identical member metadata between the pools of one process.
//!
//! Every pool keeps each member's [`Meta`] (name, tags, key fingerprints). An agent runs one
//! pool, so each value is held once anyway; the simulation (`memory::SimNetwork`) runs
//! thousands of pools in one process, each decoding the same metadata of the same members,
//! which made metadata the largest part of its memory. Pools handed the same
//! [`MetaInterner`] (`Config::meta_interner`) keep one allocation per distinct value.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use super::pool::hash_of;
use super::wire::Meta;

/// Hands out one shared `Arc` per distinct [`Meta`] value still in use somewhere.
#[derive(Default)]
pub struct MetaInterner {
    inner: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    /// Values by hash; a value no pool holds any more is a dead `Weak`, swept in bulk.
    by_hash: HashMap<u64, Vec<Weak<Meta>>>,
    /// Weak entries held (live or dead).
    len: usize,
    /// Sweep dead entries when `len` reaches this.
    sweep_at: usize,
}

impl MetaInterner {
    /// The shared copy of `meta`.
    pub fn intern(&self, meta: Meta) -> Arc<Meta> {
        let hash = hash_of(&meta);
        // A panic while holding the lock leaves at worst a stale weak entry.
        let mut table = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = table.by_hash.get(&hash).and_then(|bucket| {
            bucket
                .iter()
                .filter_map(Weak::upgrade)
                .find(|m| **m == meta)
        }) {
            return found;
        }
        let shared = Arc::new(meta);
        table
            .by_hash
            .entry(hash)
            .or_default()
            .push(Arc::downgrade(&shared));
        table.len += 1;
        if table.len >= table.sweep_at {
            table.by_hash.retain(|_, bucket| {
                bucket.retain(|w| w.strong_count() > 0);
                !bucket.is_empty()
            });
            table.len = table.by_hash.values().map(Vec::len).sum();
            table.sweep_at = (table.len * 2).max(1024);
        }
        shared
    }

    /// Distinct values held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |t| t.len)
    }

    /// Whether no value is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for MetaInterner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetaInterner")
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;

    use super::*;
    use crate::gossip::id::Id;

    fn meta(name: &str, version: u64) -> Meta {
        let addr: SocketAddr = "10.0.0.1:8301".parse().unwrap();
        Meta {
            id: Id::new(addr, 1),
            name: name.into(),
            version,
            tags: BTreeMap::from([("role".to_string(), "node".to_string())]),
            leaving: false,
            keys: vec![],
        }
    }

    #[test]
    fn equal_values_share_one_allocation_and_dead_ones_are_swept() {
        let interner = MetaInterner::default();
        let a = interner.intern(meta("a", 1));
        let b = interner.intern(meta("a", 1));
        assert!(Arc::ptr_eq(&a, &b));
        let c = interner.intern(meta("a", 2));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(2, interner.len());
        drop((a, b, c));
        // Values nobody holds are dropped by a later sweep, not kept forever.
        let kept: Vec<_> = (0..2000).map(|v| interner.intern(meta("x", v))).collect();
        assert!(interner.len() <= kept.len() + 1, "{}", interner.len());
        // A value no longer held is made anew.
        let d = interner.intern(meta("a", 1));
        assert_eq!(1, Arc::strong_count(&d));
    }
}
