//! A pool's table of the other members: the entries in one dense `Vec`, found by gossip
//! address or by node name through two hash indexes that hold only positions in it.
//!
//! Why this shape: an agent's pool holds one entry per member, which is small either way; the
//! simulation (`memory::SimNetwork`) holds n pools of n entries each, where the table is most
//! of the memory (10,000 members is 10^8 entries). A position is 4 bytes plus hashbrown's
//! control byte; the indexes hash and compare through the entries, so the address index holds
//! no copy of an address and the name index no copy of a name, and the `Vec` doubles as the
//! list random members are drawn from. Removal is a `swap_remove` that re-points the moved
//! entry's two index slots.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use foca::Identity as _;
use hashbrown::HashTable;
use rand010::RngExt;

use super::id::Id;
use super::wire::Meta;
use super::{Member, MemberStatus};

/// A gossip address: what foca keys its members by (`Identity::addr`), and so what keys an
/// entry.
pub(super) type Addr = (IpAddr, u16);

/// What this member knows about another one.
pub(super) struct Entry {
    /// foca's current identity for that address. Its address is the entry's key: it changes
    /// only to another identity at the same address (a renewal).
    pub(super) id: Id,
    /// Its metadata, once received; a member without it is not listed (it has no name yet).
    /// Shared: pools of one process with a common `Config::meta_interner` hold one copy of
    /// each value.
    pub(super) meta: Option<Arc<Meta>>,
    /// foca's verdict: `None` until foca reports it up or down.
    pub(super) up: Option<bool>,
    /// An operator force-left it.
    pub(super) forced_left: bool,
    /// foca declared this identity down and the pool is checking for itself before reporting
    /// Failed (`Pool::verify_down`); `true` once it answered a check ping. Boxed: rare.
    pub(super) verifying: Option<Box<(Id, bool)>>,
    /// When `up` last changed, in nanoseconds of the pool's clock (8 bytes, not a
    /// `Duration`'s 16: there is an entry per member).
    since_nanos: u64,
}

impl Entry {
    fn new(id: Id, now: Duration) -> Entry {
        let mut entry = Entry {
            id,
            meta: None,
            up: None,
            forced_left: false,
            verifying: None,
            since_nanos: 0,
        };
        entry.set_since(now);
        entry
    }

    /// The entry's key.
    pub(super) fn addr(&self) -> Addr {
        self.id.addr()
    }

    /// When `up` last changed.
    pub(super) fn since(&self) -> Duration {
        Duration::from_nanos(self.since_nanos)
    }

    pub(super) fn set_since(&mut self, at: Duration) {
        // 584 years of pool clock fit; beyond that it saturates.
        self.since_nanos = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX);
    }

    /// The status shown to users, if the member is listed at all.
    pub(super) fn status(&self) -> Option<MemberStatus> {
        let meta = self.meta.as_ref()?;
        Some(match self.up? {
            true if meta.leaving => MemberStatus::Leaving,
            true => MemberStatus::Alive,
            false if meta.leaving || self.forced_left => MemberStatus::Left,
            false => MemberStatus::Failed,
        })
    }

    pub(super) fn member(&self) -> Option<Member> {
        let meta = self.meta.as_ref()?;
        Some(Member {
            name: meta.name.clone(),
            addr: self.id.socket(),
            tags: meta.tags.clone(),
            status: self.status()?,
        })
    }
}

/// The other members of one pool. See the module docs.
#[derive(Default)]
pub(super) struct Table {
    entries: Vec<Entry>,
    /// Positions in `entries`, hashed by the entry's address.
    by_addr: HashTable<u32>,
    /// Positions of entries with metadata, hashed by name. A name is indexed once: when two
    /// entries carry the same name (briefly, while a moved node's old entry is replaced), the
    /// later one wins.
    by_name: HashTable<u32>,
    hasher: RandomState,
}

/// The name of the entry at `pos`, if it has metadata.
fn name_at(entries: &[Entry], pos: u32) -> Option<&str> {
    entries
        .get(pos as usize)
        .and_then(|e| e.meta.as_deref())
        .map(|m| m.name.as_str())
}

impl Table {
    /// Entries held (listed or not).
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every entry, in no order.
    pub(super) fn iter(&self) -> std::slice::Iter<'_, Entry> {
        self.entries.iter()
    }

    fn position(&self, addr: Addr) -> Option<usize> {
        let entries = &self.entries;
        self.by_addr
            .find(self.hasher.hash_one(addr), |&p| {
                entries.get(p as usize).is_some_and(|e| e.addr() == addr)
            })
            .map(|&p| p as usize)
    }

    /// The entry for `addr`.
    pub(super) fn get(&self, addr: Addr) -> Option<&Entry> {
        self.entries.get(self.position(addr)?)
    }

    /// The entry for `addr`, to change (not its address).
    pub(super) fn get_mut(&mut self, addr: Addr) -> Option<&mut Entry> {
        let pos = self.position(addr)?;
        self.entries.get_mut(pos)
    }

    /// The entry whose metadata names it `name`.
    pub(super) fn named(&self, name: &str) -> Option<&Entry> {
        let entries = &self.entries;
        let pos = self.by_name.find(self.hasher.hash_one(name), |&p| {
            name_at(entries, p) == Some(name)
        })?;
        entries.get(*pos as usize)
    }

    /// The entry for `id`'s address, created (unlisted: no metadata, no verdict) if new.
    pub(super) fn get_or_insert(&mut self, id: Id, now: Duration) -> &mut Entry {
        let addr = id.addr();
        let pos = match self.position(addr) {
            Some(pos) => pos,
            None => {
                let pos = self.entries.len();
                // Grow by a quarter, not double: amortised O(1) all the same, and a table
                // that just grew carries less unused room (see the module docs).
                if pos == self.entries.capacity() {
                    self.entries.reserve_exact(pos / 4 + 8);
                }
                self.entries.push(Entry::new(id, now));
                let Table {
                    entries,
                    by_addr,
                    hasher,
                    ..
                } = self;
                by_addr.insert_unique(hasher.hash_one(addr), pos as u32, |&p| {
                    entries
                        .get(p as usize)
                        .map_or(0, |e| hasher.hash_one(e.addr()))
                });
                pos
            }
        };
        self.entries
            .get_mut(pos)
            .expect("invariant: positions found or just pushed are in the table")
    }

    /// Gives the entry for `addr` new metadata (indexing it under its name); `None` if there
    /// is no such entry.
    pub(super) fn set_meta(&mut self, addr: Addr, meta: Arc<Meta>) -> Option<&Entry> {
        let pos = self.position(addr)?;
        self.unindex_name(pos);
        self.entries.get_mut(pos)?.meta = Some(meta);
        self.index_name(pos);
        self.entries.get(pos)
    }

    /// Removes the entry for `addr`.
    pub(super) fn remove(&mut self, addr: Addr) -> Option<Entry> {
        let pos = self.position(addr)?;
        self.unindex_name(pos);
        if let Ok(slot) = self
            .by_addr
            .find_entry(self.hasher.hash_one(addr), |&p| p as usize == pos)
        {
            slot.remove();
        }
        // The last entry moves into `pos`: point its index slots there.
        let last = self.entries.len() - 1;
        if pos != last {
            let Table {
                entries,
                by_addr,
                by_name,
                hasher,
            } = self;
            if let Some(moved) = entries.get(last) {
                if let Some(p) =
                    by_addr.find_mut(hasher.hash_one(moved.addr()), |&p| p as usize == last)
                {
                    *p = pos as u32;
                }
                if let Some(name) = moved.meta.as_deref().map(|m| m.name.as_str()) {
                    if let Some(p) =
                        by_name.find_mut(hasher.hash_one(name), |&p| p as usize == last)
                    {
                        *p = pos as u32;
                    }
                }
            }
        }
        let entry = self.entries.swap_remove(pos);
        // After a mass reap, do not keep room for the members that were.
        if self.entries.capacity() > 2 * self.entries.len() + 64 {
            self.entries
                .shrink_to(self.entries.len() + self.entries.len() / 4);
        }
        Some(entry)
    }

    /// A uniformly random entry.
    pub(super) fn random(&self, rng: &mut impl RngExt) -> Option<&Entry> {
        if self.entries.is_empty() {
            return None;
        }
        self.entries.get(rng.random_range(0..self.entries.len()))
    }

    fn unindex_name(&mut self, pos: usize) {
        let Some(name) = name_at(&self.entries, pos as u32) else {
            return;
        };
        if let Ok(slot) = self
            .by_name
            .find_entry(self.hasher.hash_one(name), |&p| p as usize == pos)
        {
            slot.remove();
        }
    }

    fn index_name(&mut self, pos: usize) {
        let Table {
            entries,
            by_name,
            hasher,
            ..
        } = self;
        let Some(name) = name_at(entries, pos as u32) else {
            return;
        };
        let hash = hasher.hash_one(name);
        match by_name.find_mut(hash, |&p| name_at(entries, p) == Some(name)) {
            Some(p) => *p = pos as u32,
            None => {
                by_name.insert_unique(hash, pos as u32, |&p| {
                    name_at(entries, p).map_or(0, |n| hasher.hash_one(n))
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::{Ipv4Addr, SocketAddr};

    use rand010::rngs::SmallRng;
    use rand010::SeedableRng;

    use super::*;

    fn id(i: u32) -> Id {
        let ip = Ipv4Addr::from(0x0a00_0000 + i);
        Id::new(SocketAddr::new(ip.into(), 8301), 1)
    }

    fn meta(i: u32, name: &str) -> Arc<Meta> {
        Arc::new(Meta {
            id: id(i),
            name: name.into(),
            version: 1,
            tags: BTreeMap::new(),
            leaving: false,
            keys: vec![],
        })
    }

    fn addr(i: u32) -> Addr {
        id(i).addr()
    }

    /// Every entry is found by its address, and by its name when it is the one indexed.
    fn assert_consistent(t: &Table) {
        assert_eq!(t.by_addr.len(), t.len());
        for e in t.iter() {
            assert_eq!(t.get(e.addr()).map(Entry::addr), Some(e.addr()));
        }
        for &p in t.by_name.iter() {
            let name = name_at(&t.entries, p).expect("indexed entries have a name");
            assert_eq!(
                t.named(name).map(Entry::addr),
                t.entries.get(p as usize).map(Entry::addr)
            );
        }
    }

    #[test]
    fn entries_stay_found_by_address_and_name_through_removals() {
        let mut t = Table::default();
        let now = Duration::from_secs(5);
        for i in 0..500 {
            t.get_or_insert(id(i), now);
            if i % 3 != 0 {
                t.set_meta(addr(i), meta(i, &format!("n{i}")));
            }
        }
        assert_consistent(&t);
        assert_eq!(500, t.len());
        assert_eq!(Some(addr(7)), t.named("n7").map(Entry::addr));
        assert!(t.named("n6").is_none(), "no metadata, no name");
        assert_eq!(now, t.get(addr(6)).expect("present").since());
        // Inserting an address again finds the same entry.
        t.get_or_insert(id(7), Duration::ZERO).forced_left = true;
        assert_eq!(500, t.len());
        assert!(t.get(addr(7)).expect("present").forced_left);

        // Removing in an order that moves entries around keeps every index right.
        for i in (0..500).step_by(2) {
            assert_eq!(Some(addr(i)), t.remove(addr(i)).map(|e| e.addr()));
            assert!(t.get(addr(i)).is_none());
            assert!(t.named(&format!("n{i}")).is_none());
        }
        assert!(t.remove(addr(0)).is_none());
        assert_eq!(250, t.len());
        assert_consistent(&t);
        assert_eq!(Some(addr(499)), t.named("n499").map(Entry::addr));
        assert!(
            t.entries.capacity() <= 2 * t.len() + 64,
            "room shrinks after removals"
        );
    }

    #[test]
    fn a_renamed_entry_is_found_by_its_new_name_only_and_a_name_has_one_entry() {
        let mut t = Table::default();
        t.get_or_insert(id(1), Duration::ZERO);
        t.get_or_insert(id(2), Duration::ZERO);
        t.set_meta(addr(1), meta(1, "a"));
        t.set_meta(addr(1), meta(1, "b"));
        assert!(t.named("a").is_none());
        assert_eq!(Some(addr(1)), t.named("b").map(Entry::addr));
        // The same name on another entry: the later one is the one found.
        t.set_meta(addr(2), meta(2, "b"));
        assert_eq!(Some(addr(2)), t.named("b").map(Entry::addr));
        assert_consistent(&t);
        // Removing the entry no longer indexed leaves the name with the other one.
        t.remove(addr(1));
        assert_eq!(Some(addr(2)), t.named("b").map(Entry::addr));
        assert_consistent(&t);
        t.remove(addr(2));
        assert!(t.named("b").is_none());
    }

    #[test]
    fn random_draws_reach_every_entry() {
        let mut t = Table::default();
        let mut rng = SmallRng::seed_from_u64(3);
        assert!(t.random(&mut rng).is_none());
        for i in 0..8 {
            t.get_or_insert(id(i), Duration::ZERO);
        }
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            seen.insert(t.random(&mut rng).expect("non-empty").addr());
        }
        assert_eq!(8, seen.len());
    }
}
