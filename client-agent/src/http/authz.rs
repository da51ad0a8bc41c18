//! ACL enforcement every handler shares: an endpoint states what it needs as a list of
//! [`Need`]s (`require(&s, &c, &[Need::service("web", Write)])`), and list endpoints keep
//! what the token may see with [`hide`] and mark the reply with [`mark`].
//!
//! The rules are Consul's (each endpoint's "ACL required"): a denied single-item read or
//! any denied write is 403 `Permission denied: ...` before anything is sent to the servers
//! or changed locally, so a refusal changes nothing; a list is never refused, only
//! filtered, with `X-Consul-Results-Filtered-By-ACLs: true` when something was hidden.
//! Filtering happens after every read, blocking ones included, so a blocking query that
//! wakes returns the filtered view too (its index still covers the whole table, as
//! Consul's does).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::HeaderValue;
use axum::response::Response;
use concord_api::acl::authorizer::{Authorizer, Level};
use concord_api::acl::RESULTS_FILTERED_HEADER;

use super::{ApiError, AppState};

pub(super) use concord_api::acl::authorizer::Need;

/// The authorizer of the request's token (`None`: the agent's default token, else
/// anonymous); an unknown token is 403 `ACL not found`.
pub(super) async fn authorizer(
    s: &AppState,
    token: Option<&str>,
) -> Result<Arc<Authorizer>, ApiError> {
    Ok(s.acl.resolve(token).await?)
}

/// Resolves the request's token and checks every need, first refusal wins; the authorizer
/// is returned for filtering what the endpoint then reads.
pub(super) async fn require(
    s: &AppState,
    token: Option<&str>,
    needs: &[Need<'_>],
) -> Result<Arc<Authorizer>, ApiError> {
    let authz = authorizer(s, token).await?;
    for need in needs {
        need.check(&authz)?;
    }
    Ok(authz)
}

/// Runs the request on behalf of its token (else the default token): every server RPC it
/// makes carries it, and the servers check it again (`crate::acl::OnBehalf`).
///
/// A GET also shares its encoded reply with the other GETs answered by the same shared
/// blocking read ([`crate::rpc_client::encode_once`]), keyed by what else the reply
/// depends on: the URI (path, query, so `?pretty` and `?filter`) and the token (ACL
/// filtering). Here rather than in a layer of its own: each layer costs every parked
/// request a clone of the routes below it.
pub(super) async fn on_behalf(
    axum::extract::State(s): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let token = super::params::request_token(&parts, &super::Params::parse(parts.uri.query()));
    let secret = s.acl.request_secret(token.as_deref());
    let share_key = (parts.method == axum::http::Method::GET)
        .then(|| format!("{}\n{}", parts.uri, token.unwrap_or_default()));
    let request = axum::extract::Request::from_parts(parts, body);
    let work = crate::acl::scope(secret, next.run(request));
    match share_key {
        Some(key) => crate::rpc_client::track(key, work).await,
        None => work.await,
    }
}

/// A collection the token's view can be cut down to.
pub(super) trait Hide {
    /// The item type `keep` judges.
    type Item;

    /// Keeps what `keep` allows; true if something went.
    fn hide(&mut self, keep: impl FnMut(&Self::Item) -> bool) -> bool;
}

impl<T> Hide for Vec<T> {
    type Item = T;

    fn hide(&mut self, mut keep: impl FnMut(&T) -> bool) -> bool {
        let before = self.len();
        self.retain(|item| keep(item));
        self.len() != before
    }
}

impl<K: Ord, V> Hide for BTreeMap<K, V> {
    type Item = (K, V);

    fn hide(&mut self, mut keep: impl FnMut(&(K, V)) -> bool) -> bool {
        let before = self.len();
        let all = std::mem::take(self);
        self.extend(all.into_iter().filter(|pair| keep(pair)));
        self.len() != before
    }
}

/// Keeps the items of `items` the token may see; true if something was hidden.
pub(super) fn hide<C: Hide>(items: &mut C, keep: impl FnMut(&C::Item) -> bool) -> bool {
    items.hide(keep)
}

/// Marks a reply whose list the token's ACLs shortened
/// (`X-Consul-Results-Filtered-By-ACLs: true`).
pub(super) fn mark(mut response: Response, hidden: bool) -> Response {
    if hidden {
        response
            .headers_mut()
            .insert(RESULTS_FILTERED_HEADER, HeaderValue::from_static("true"));
    }
    response
}

/// Whether the token may see a catalog row of `service` on `node`.
pub(super) fn sees(authz: &Authorizer, node: &str, service: &str) -> bool {
    Need::node(node, Level::Read).allowed(authz)
        && Need::service(service, Level::Read).allowed(authz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_api::acl::authorizer::DefaultPolicy;
    use concord_api::acl::rules::Rules;

    fn authz(rules: &str) -> Authorizer {
        let rules = Rules::parse(rules).unwrap();
        Authorizer::from_rules("acc-1", &[rules], DefaultPolicy::Deny)
    }

    #[test]
    fn needs_render_consuls_denials() {
        let a = authz("service \"web\" { policy = \"read\" }");
        assert!(Need::service("web", Level::Read).allowed(&a));
        let denied = Need::service("web", Level::Write).check(&a).unwrap_err();
        assert_eq!(
            denied.to_string(),
            "Permission denied: token with AccessorID 'acc-1' lacks permission \
             'service:write' on \"web\""
        );
        let denied = Need::Intention("db", Level::Read).check(&a).unwrap_err();
        assert!(denied.to_string().ends_with("'intention:read' on \"db\""));
        let denied = Need::operator(Level::Read).check(&a).unwrap_err();
        assert!(denied
            .to_string()
            .ends_with("lacks permission 'operator:read'"));
        let down = Authorizer::default_only("", DefaultPolicy::Deny);
        assert_eq!(
            Need::operator(Level::Write)
                .check(&down)
                .unwrap_err()
                .to_string(),
            "Permission denied: provided token lacks permission 'operator:write'"
        );
    }

    #[test]
    fn hide_reports_whether_anything_went() {
        let mut v = vec![1, 2, 3];
        assert!(!hide(&mut v, |_| true));
        assert!(hide(&mut v, |x| *x != 2));
        assert_eq!(v, [1, 3]);
        let mut m: BTreeMap<String, u8> = [("a".to_string(), 1), ("b".to_string(), 2)].into();
        assert!(hide(&mut m, |(k, _)| k == "a"));
        assert_eq!(m.len(), 1);
    }
}
