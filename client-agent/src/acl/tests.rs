//! The resolver: TTL cache (paused time), invalidation, `down_policy`, default tokens,
//! persistence.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use concord_api::acl::authorizer::Level;
use concord_api::acl::rules::Resource;
use concord_api::acl::{AclPolicy, AclToken, ResolvedToken};
use concord_api::rpc::{Query, QueryMeta, QueryResult, ReadResponse, WriteRequest, WriteResponse};

use super::*;

/// Servers that know one token (`secret` → write on `app/`), count resolutions, and can be
/// made unreachable.
#[derive(Debug, Default)]
struct Servers {
    asked: AtomicUsize,
    down: AtomicBool,
}

#[async_trait::async_trait]
impl ServerRpc for Servers {
    async fn read(&self, query: Query, _o: QueryOptions) -> Result<ReadResponse, RpcError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(RpcError::NoLeader);
        }
        self.asked.fetch_add(1, Ordering::SeqCst);
        let Query::Acl(AclQuery::Resolve { secret_id }) = query else {
            return Err(RpcError::Invalid("unexpected query".into()));
        };
        let resolved = (secret_id == "secret").then(|| ResolvedToken {
            token: AclToken {
                accessor_id: "acc".into(),
                ..AclToken::default()
            },
            policies: vec![AclPolicy {
                rules: r#"key_prefix "app/" { policy = "write" }"#.into(),
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

    async fn write(&self, _request: WriteRequest) -> Result<WriteResponse, RpcError> {
        Err(RpcError::Invalid("no writes here".into()))
    }
}

fn resolver(config: AclConfig, servers: &Arc<Servers>) -> AclResolver {
    AclResolver::new(config, "dc1", None, false, servers.clone())
}

fn enabled(down_policy: DownPolicy) -> AclConfig {
    AclConfig {
        enabled: true,
        default_policy: DefaultPolicy::Deny,
        down_policy,
        ..AclConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn resolutions_are_cached_for_the_ttl_and_dropped_on_invalidate() {
    let servers = Arc::new(Servers::default());
    let r = resolver(enabled(DownPolicy::ExtendCache), &servers);
    let authz = r.resolve(Some("secret")).await.unwrap();
    assert!(authz.allows(Resource::Key, "app/x", Level::Write));
    assert!(!authz.allows(Resource::Key, "other", Level::Read));
    r.resolve(Some("secret")).await.unwrap();
    assert_eq!(
        servers.asked.load(Ordering::SeqCst),
        1,
        "second use is cached"
    );
    tokio::time::advance(Duration::from_secs(31)).await;
    r.resolve(Some("secret")).await.unwrap();
    assert_eq!(
        servers.asked.load(Ordering::SeqCst),
        2,
        "past the TTL it asks again"
    );
    r.invalidate();
    r.resolve(Some("secret")).await.unwrap();
    assert_eq!(
        servers.asked.load(Ordering::SeqCst),
        3,
        "an ACL change drops the cache"
    );
    assert_eq!(
        r.resolve(Some("nope")).await.unwrap_err(),
        ResolveError::NotFound
    );
}

#[tokio::test(start_paused = true)]
async fn down_policy_decides_while_servers_are_unreachable() {
    let servers = Arc::new(Servers::default());
    let extend = resolver(enabled(DownPolicy::ExtendCache), &servers);
    extend.resolve(Some("secret")).await.unwrap();
    servers.down.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(60)).await;
    let cached = extend.resolve(Some("secret")).await.unwrap();
    assert!(
        cached.allows(Resource::Key, "app/x", Level::Write),
        "extend-cache keeps it"
    );
    let unknown = extend.resolve(Some("other")).await.unwrap();
    assert!(
        !unknown.allows(Resource::Key, "app/x", Level::Read),
        "unknown: denied"
    );
    let allow = resolver(enabled(DownPolicy::Allow), &servers);
    let a = allow.resolve(Some("secret")).await.unwrap();
    assert!(a.allows(Resource::Key, "anything", Level::Write));
    let deny = resolver(enabled(DownPolicy::Deny), &servers);
    let d = deny.resolve(Some("secret")).await.unwrap();
    assert!(!d.allows(Resource::Key, "app/x", Level::Read));
}

#[tokio::test]
async fn disabled_allows_everything_without_asking() {
    let servers = Arc::new(Servers::default());
    let r = resolver(AclConfig::default(), &servers);
    let authz = r.resolve(None).await.unwrap();
    assert!(authz.allows_global(concord_api::acl::rules::Global::Acl, Level::Write));
    assert_eq!(servers.asked.load(Ordering::SeqCst), 0);
}

#[test]
fn the_default_token_stands_in_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let servers = Arc::new(Servers::default());
    let config = AclConfig {
        enable_token_persistence: true,
        ..enabled(DownPolicy::Deny)
    };
    let r = AclResolver::new(
        config.clone(),
        "dc1",
        Some(dir.path()),
        false,
        servers.clone(),
    );
    assert_eq!(r.effective_secret(None), ANONYMOUS_TOKEN_SECRET);
    assert_eq!(r.effective_secret(Some("")), ANONYMOUS_TOKEN_SECRET);
    r.set_agent_token("default", "secret".into()).unwrap();
    assert_eq!(r.effective_secret(None), "secret");
    assert_eq!(r.effective_secret(Some("mine")), "mine");
    let again = AclResolver::new(config, "dc1", Some(dir.path()), false, servers);
    assert_eq!(
        again.effective_secret(None),
        "secret",
        "restored from the data dir"
    );
    let persisted = std::fs::read_to_string(dir.path().join("acl-tokens.json")).unwrap();
    assert!(!format!("{:?}", again.config().tokens).contains("secret\""));
    assert!(persisted.contains("secret"));
}
