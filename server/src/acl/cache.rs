//! Authorizers kept per token secret while the ACL tables stay as they were, so a server
//! does not resolve a token and parse its policies' rules again on every RPC.
//!
//! One cache lives in each [`StateStore`](crate::state::StateStore): a restored or
//! installed snapshot is a new store, so it starts empty. Within a store, the ACL tables'
//! index only grows, and any change to a token, policy or role moves it; an entry is used
//! only at the index it was built at. Tokens that expire are not kept (their expiry is
//! judged at each resolution), nor are secrets that resolve to nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use concord_api::acl::authorizer::Authorizer;

/// Secrets kept at most; past it the cache starts over (a burst of distinct tokens).
const MAX_ENTRIES: usize = 4096;

/// The cache. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Authorizers {
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    /// The ACL tables' index every entry was built at.
    acl_index: u64,
    by_secret: HashMap<String, Arc<Authorizer>>,
}

impl Authorizers {
    /// The authorizer built for `secret` when the ACL tables were at `acl_index`.
    pub(crate) fn get(&self, secret: &str, acl_index: u64) -> Option<Arc<Authorizer>> {
        let entries = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.acl_index != acl_index {
            return None;
        }
        entries.by_secret.get(secret).cloned()
    }

    /// Keeps `authz`, built for `secret` at `acl_index`; entries of another index go.
    pub(crate) fn put(&self, secret: &str, acl_index: u64, authz: Arc<Authorizer>) {
        let mut entries = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.acl_index != acl_index || entries.by_secret.len() >= MAX_ENTRIES {
            entries.by_secret.clear();
            entries.acl_index = acl_index;
        }
        entries.by_secret.insert(secret.to_owned(), authz);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_serves_only_its_index() {
        let cache = Authorizers::default();
        let authz = Arc::new(Authorizer::management("a"));
        cache.put("s", 7, authz.clone());
        assert!(cache.get("s", 7).is_some_and(|a| Arc::ptr_eq(&a, &authz)));
        assert!(cache.get("s", 8).is_none(), "a later ACL change");
        assert!(cache.get("other", 7).is_none());
        cache.put("t", 8, authz);
        assert!(cache.get("s", 7).is_none(), "moving on drops the old index");
        assert!(cache.get("t", 8).is_some());
    }

    #[test]
    fn a_full_cache_starts_over() {
        let cache = Authorizers::default();
        let authz = Arc::new(Authorizer::management("a"));
        for i in 0..MAX_ENTRIES {
            cache.put(&i.to_string(), 1, authz.clone());
        }
        assert!(cache.get("0", 1).is_some());
        cache.put("new", 1, authz);
        assert!(cache.get("0", 1).is_none());
        assert!(cache.get("new", 1).is_some());
    }
}
