//! DNS under ACLs: the catalog view DNS answers from, cut down to what the agent's DNS
//! token (`acl.tokens.dns`, else `acl.tokens.default`, else anonymous) may read, as
//! Consul's DNS server filters with its token: an instance needs `service:read` on its service and `node:read` on its
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

/// Publishes `catalog` filtered by the DNS token's rights on `tx` until `shutdown`: once at
/// start, then on every catalog or ACL change (setting a token through
/// `/v1/agent/token/dns` is one). A token the servers do not know sees nothing (Consul
/// answers such a DNS query with nothing either). The catalog itself reaches the agent
/// under the agent's token (the servers filter it too), so DNS shows what both may read.
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
        let dns_token = resolver.dns_secret();
        let authz = match resolver.resolve(dns_token.as_deref()).await {
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

    /// Servers that know two tokens: `dns-secret` reads `web` everywhere, `default-secret`
    /// reads `db` everywhere.
    #[derive(Debug)]
    struct Servers;

    #[async_trait::async_trait]
    impl crate::rpc_client::ServerRpc for Servers {
        async fn read(
            &self,
            query: concord_api::rpc::Query,
            _o: concord_api::rpc::QueryOptions,
        ) -> Result<concord_api::rpc::ReadResponse, concord_api::rpc::RpcError> {
            use concord_api::acl::{AclPolicy, AclQuery, AclResult, AclToken, ResolvedToken};
            use concord_api::rpc::{Query, QueryMeta, QueryResult, ReadResponse};
            let Query::Acl(AclQuery::Resolve { secret_id }) = query else {
                return Err(concord_api::rpc::RpcError::Invalid("unexpected".into()));
            };
            let service = match secret_id.as_str() {
                "dns-secret" => Some("web"),
                "default-secret" => Some("db"),
                _ => None,
            };
            let resolved = service.map(|service| ResolvedToken {
                token: AclToken::default(),
                policies: vec![AclPolicy {
                    rules: format!(
                        "service \"{service}\" {{ policy = \"read\" }}\n\
                         node_prefix \"\" {{ policy = \"read\" }}"
                    ),
                    ..AclPolicy::default()
                }],
                service_identities: vec![],
                node_identities: vec![],
                templated_policies: vec![],
            });
            Ok(ReadResponse {
                meta: QueryMeta::default(),
                result: QueryResult::Acl(AclResult::Resolved(resolved)),
            })
        }

        async fn write(
            &self,
            _request: concord_api::rpc::WriteRequest,
        ) -> Result<concord_api::rpc::WriteResponse, concord_api::rpc::RpcError> {
            Err(concord_api::rpc::RpcError::Invalid("no writes".into()))
        }
    }

    /// The services DNS shows under `tokens`, once `follow` has published.
    async fn shown(tokens: crate::acl::AclTokens, set_dns: Option<&str>) -> Vec<String> {
        let config = crate::acl::AclConfig {
            enabled: true,
            default_policy: DefaultPolicy::Deny,
            tokens,
            ..crate::acl::AclConfig::default()
        };
        let resolver = Arc::new(AclResolver::new(
            config,
            "dc1",
            None,
            false,
            Arc::new(Servers),
        ));
        if let Some(secret) = set_dns {
            resolver.set_agent_token("dns", secret.into()).unwrap();
        }
        let a = node("a", "10.0.0.1");
        let all = snapshot(
            vec![a.clone()],
            vec![instance(&a, "web", "web"), instance(&a, "db", "db")],
        );
        let (_catalog_tx, catalog) = watch::channel(Arc::new(all));
        let (tx, mut rx) = watch::channel(Arc::new(CatalogSnapshot::default()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(follow(resolver, catalog, tx, async {
            let _ = stop_rx.await;
        }));
        rx.changed().await.unwrap();
        let seen = rx
            .borrow()
            .instances
            .iter()
            .map(|i| i.service.service.clone())
            .collect();
        let _ = stop_tx.send(());
        task.await.unwrap();
        seen
    }

    #[tokio::test]
    async fn dns_answers_as_its_token_else_the_default_else_anonymous() {
        let both = crate::acl::AclTokens {
            default: Some("default-secret".into()),
            dns: Some("dns-secret".into()),
            ..crate::acl::AclTokens::default()
        };
        assert_eq!(shown(both, None).await, ["web"], "acl.tokens.dns wins");
        let default_only = crate::acl::AclTokens {
            default: Some("default-secret".into()),
            ..crate::acl::AclTokens::default()
        };
        assert_eq!(
            shown(default_only.clone(), None).await,
            ["db"],
            "then the default token"
        );
        assert_eq!(
            shown(default_only, Some("dns-secret")).await,
            ["web"],
            "PUT /v1/agent/token/dns"
        );
        let none = crate::acl::AclTokens::default();
        assert!(
            shown(none, None).await.is_empty(),
            "anonymous sees nothing here"
        );
    }
}
