//! DNS under ACLs: the catalog view DNS answers from, cut down to what the agent's default
//! token (`acl.tokens.default`, else anonymous) may read, as Consul's DNS server filters
//! with its token: an instance needs `service:read` on its service and `node:read` on its
//! node, a node `node:read`. A hidden name is absent from the view, so it answers NXDOMAIN
//! exactly as a name that does not exist.
//!
//! The filtered view is rebuilt (and numbered in [`CatalogSnapshot::view`]) whenever the
//! catalog changes or any ACL record or agent token does ([`AclResolver::changes`]), so the
//! UDP answer cache, keyed by the view's generation, never replays an answer built under
//! other rights.

use std::future::Future;
use std::sync::Arc;

use concord_api::acl::authorizer::{Authorizer, DefaultPolicy, Level};
use concord_api::acl::rules::Resource;
use concord_api::acl::ANONYMOUS_TOKEN_ID;
use tokio::sync::watch;

use crate::acl::AclResolver;
use crate::catalog_cache::{CatalogSnapshot, CatalogView};

/// `snapshot` as `authz` may see it, numbered `view`.
pub(crate) fn filter(snapshot: &CatalogSnapshot, authz: &Authorizer, view: u64) -> CatalogSnapshot {
    let node = |name: &str| authz.allows(Resource::Node, name, Level::Read);
    CatalogSnapshot {
        index: snapshot.index,
        nodes: snapshot
            .nodes
            .iter()
            .filter(|n| node(&n.node))
            .cloned()
            .collect(),
        instances: snapshot
            .instances
            .iter()
            .filter(|i| {
                node(&i.node.node)
                    && authz.allows(Resource::Service, &i.service.service, Level::Read)
            })
            .cloned()
            .collect(),
        view,
    }
}

/// Publishes `catalog` filtered by the default token's rights on `tx` until `shutdown`:
/// once at start, then on every catalog or ACL change. A default token the servers do not
/// know sees nothing (Consul answers such a DNS query with nothing either).
pub async fn follow(
    resolver: Arc<AclResolver>,
    mut catalog: CatalogView,
    tx: watch::Sender<Arc<CatalogSnapshot>>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut acl = resolver.changes();
    let mut view: u64 = 0;
    loop {
        acl.borrow_and_update();
        let snapshot = catalog.borrow_and_update().clone();
        let authz = match resolver.resolve(None).await {
            Ok(authz) => authz,
            Err(e) => {
                tracing::warn!(error = %e, "DNS token did not resolve; DNS shows nothing");
                Arc::new(Authorizer::default_only(
                    ANONYMOUS_TOKEN_ID,
                    DefaultPolicy::Deny,
                ))
            }
        };
        view = view.wrapping_add(1);
        tx.send_replace(Arc::new(filter(&snapshot, &authz, view)));
        tokio::select! {
            _ = &mut shutdown => return,
            changed = catalog.changed() => if changed.is_err() { return },
            changed = acl.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::fixtures::{instance, node, snapshot};
    use concord_api::acl::rules::Rules;

    #[test]
    fn hides_what_the_token_may_not_read() {
        let (a, b) = (node("a", "10.0.0.1"), node("b", "10.0.0.2"));
        let all = snapshot(
            vec![a.clone(), b.clone()],
            vec![
                instance(&a, "web", "web"),
                instance(&b, "web", "web"),
                instance(&a, "db", "db"),
            ],
        );
        let rules = Rules::parse(
            "service \"web\" { policy = \"read\" }\nnode_prefix \"a\" { policy = \"read\" }",
        )
        .unwrap();
        let authz = Authorizer::from_rules("x", &[rules], DefaultPolicy::Deny);
        let seen = filter(&all, &authz, 7);
        assert_eq!((seen.index, seen.view), (all.index, 7));
        let nodes: Vec<&str> = seen.nodes.iter().map(|n| n.node.as_str()).collect();
        assert_eq!(nodes, ["a"]);
        let instances: Vec<(&str, &str)> = seen
            .instances
            .iter()
            .map(|i| (i.node.node.as_str(), i.service.service.as_str()))
            .collect();
        assert_eq!(instances, [("a", "web")]);
        let everything = filter(&all, &Authorizer::management("m"), 8);
        assert_eq!(everything.instances.len(), 3);
    }
}
