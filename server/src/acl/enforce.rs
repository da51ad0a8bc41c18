//! Every server RPC judged by the token it carries, as Consul's servers check each RPC
//! against its `Token`: a write is vetted before anything is built or proposed, a read is
//! refused or filtered ([`concord_api::acl::rpc`] holds what each kind needs). So a client
//! that talks to the RPC port directly, past any agent, gets no more than its token allows.
//!
//! The token is the secret inside `WriteRequest::Authorized` / `Query::Authorized`; none
//! acts as `anonymous`, and a secret the state does not know (or an expired one) is
//! refused outright with Consul's `ACL not found`. Judged on the server that runs the
//! request (the leader, for anything not stale), against the state it runs it on.

use std::sync::Arc;

use concord_api::acl::authorizer::{Authorizer, DefaultPolicy};
use concord_api::acl::rpc::Stored;
use concord_api::acl::{AclQuery, AclResult, AclWrite, ANONYMOUS_TOKEN_SECRET};
use concord_api::catalog::{HealthCheck, NodeServices};
use concord_api::rpc::{Query, QueryResult, RpcError, WriteRequest};

use crate::state::StateStore;

/// Consul's text for a secret no token has.
const ACL_NOT_FOUND: &str = "ACL not found";

/// The authorizer of `token` (none: anonymous) against `store`; `None` with ACLs off
/// (`default` is `acl.default_policy` when they are on). Built once per secret while the
/// ACL tables stay unchanged ([`StateStore::authorizers`]).
pub(crate) fn authorizer(
    store: &StateStore,
    default: Option<DefaultPolicy>,
    datacenter: &str,
    token: Option<&str>,
) -> Result<Option<Arc<Authorizer>>, RpcError> {
    let Some(default) = default else {
        return Ok(None);
    };
    let secret = token
        .filter(|t| !t.is_empty())
        .unwrap_or(ANONYMOUS_TOKEN_SECRET);
    let cache = store.authorizers();
    let acl_index = store.view(|t| t.acl_index());
    if let Some(authz) = cache.get(secret, acl_index) {
        return Ok(Some(authz));
    }
    let query = Query::Acl(AclQuery::Resolve {
        secret_id: secret.to_owned(),
    });
    match store.query(&query)? {
        (index, QueryResult::Acl(AclResult::Resolved(Some(resolved)))) => {
            let authz = Arc::new(Authorizer::for_token(&resolved, datacenter, default));
            if resolved.token.expiration_time.is_none() {
                cache.put(secret, index, authz.clone());
            }
            Ok(Some(authz))
        }
        _ => Err(RpcError::PermissionDenied(ACL_NOT_FOUND.to_string())),
    }
}

/// The state a write is judged against.
struct Now<'a>(&'a StateStore);

impl Stored for Now<'_> {
    fn node(&self, node: &str) -> Option<NodeServices> {
        match self.0.query(&Query::NodeServices {
            node: node.to_string(),
        }) {
            Ok((_, QueryResult::NodeServices(found))) => found,
            _ => None,
        }
    }

    fn check(&self, node: &str, check_id: &str) -> Option<HealthCheck> {
        match self.0.query(&Query::NodeChecks {
            node: node.to_string(),
        }) {
            Ok((_, QueryResult::Checks(checks))) => {
                checks.into_iter().find(|c| c.check_id == check_id)
            }
            _ => None,
        }
    }

    fn session_node(&self, id: &str) -> Option<String> {
        self.0.session(id).map(|s| s.node.to_string())
    }
}

/// Whether the write `req` may go ahead on behalf of `token` (ACLs off: always). Run by
/// the leader right before the write is built, so the state judged is the one it changes.
///
/// One exception to "the token must exist": the agent of a server creating the initial
/// management token presents that token's own secret, which the servers were configured
/// with (`acl.tokens.initial_management`), before it exists.
pub(crate) fn vet_write(
    store: &StateStore,
    acl: &AclSettings<'_>,
    token: Option<&str>,
    req: &WriteRequest,
) -> Result<(), RpcError> {
    if acl.default.is_some() && is_initial_management(acl, token, req) {
        return Ok(());
    }
    let Some(authz) = authorizer(store, acl.default, acl.datacenter, token)? else {
        return Ok(());
    };
    concord_api::acl::rpc::vet_write(&authz, req, &Now(store))
        .map_err(|denied| RpcError::PermissionDenied(denied.to_string()))
}

/// The ACL settings of a server.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AclSettings<'a> {
    /// `acl.default_policy` with ACLs on, `None` with them off.
    pub(crate) default: Option<DefaultPolicy>,
    /// This server's datacenter (identities and policies can be scoped to one).
    pub(crate) datacenter: &'a str,
    /// `acl.tokens.initial_management`, if configured.
    pub(crate) initial_management: Option<&'a str>,
}

impl<'a> AclSettings<'a> {
    /// A server's settings, from its configuration.
    pub(crate) fn of(config: &'a crate::config::Config) -> Self {
        AclSettings {
            default: config.acl,
            datacenter: &config.datacenter,
            initial_management: config.acl_initial_management.as_ref().map(|t| t.0.as_str()),
        }
    }
}

/// The creation of the configured initial management token, presented with its own secret.
fn is_initial_management(acl: &AclSettings<'_>, token: Option<&str>, req: &WriteRequest) -> bool {
    let (Some(configured), Some(token)) = (acl.initial_management, token) else {
        return false;
    };
    match req {
        WriteRequest::Acl(AclWrite::TokenSet { token: t, create }) => {
            *create && !configured.is_empty() && t.secret_id == configured && token == configured
        }
        _ => false,
    }
}

/// Whether `token` may run the read `query` at all: the authorizer to cut its answer down
/// with ([`filter`]), `None` when there is nothing to cut (ACLs off, or a read open to all:
/// token resolution presents the secret it asks about, `RaftStatus` is `/v1/status/*`).
pub(crate) fn vet_read(
    store: &StateStore,
    acl: &AclSettings<'_>,
    token: Option<&str>,
    query: &Query,
) -> Result<Option<Arc<Authorizer>>, RpcError> {
    if matches!(
        query,
        Query::Acl(AclQuery::Resolve { .. }) | Query::RaftStatus
    ) {
        return Ok(None);
    }
    let Some(authz) = authorizer(store, acl.default, acl.datacenter, token)? else {
        return Ok(None);
    };
    concord_api::acl::rpc::vet_read(&authz, query)
        .map_err(|denied| RpcError::PermissionDenied(denied.to_string()))?;
    Ok(Some(authz))
}

/// Cuts `result` down to what `authz` may see (a no-op for `None`); true if something
/// was left out.
pub(crate) fn filter(authz: Option<&Authorizer>, result: &mut QueryResult) -> bool {
    authz.is_some_and(|authz| concord_api::acl::rpc::filter_read(authz, result))
}

#[cfg(test)]
mod tests;
