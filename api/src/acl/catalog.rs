//! What a catalog write needs of a token, as Consul's `vetRegisterWithACL` and
//! `vetDeregisterWithACL` decide it. Pure: the caller passes what the catalog holds now,
//! so the agent (before forwarding an HTTP write) and the server (before applying a write
//! that came over RPC) judge the same way.
//!
//! - Register: `node:write` on the node, unless the request leaves the node record as it is
//!   (`SkipNodeUpdate`, or the same address, tagged addresses and meta as stored), so a
//!   service token can re-post its node's details; `service:write` on the service (and on
//!   a proxy's destination service); for each check, `service:write` on its service or,
//!   for a node check, `node:write`.
//! - Deregister: a service needs `service:write` on it, a check what registering it needs,
//!   the whole node `node:write`.

use super::authorizer::{Authorizer, Level, PermissionDenied};
use super::rules::Resource;
use crate::catalog::{DeregisterRequest, HealthCheck, NodeService, NodeServices, RegisterRequest};

/// The destination of a connect proxy, which registering the proxy also writes for.
fn proxy_destination(svc: &NodeService) -> Option<&str> {
    if svc.kind != "connect-proxy" {
        return None;
    }
    svc.proxy
        .as_ref()?
        .get("DestinationServiceName")?
        .as_str()
        .filter(|d| !d.is_empty())
}

/// What writing the service record `svc` needs: `service:write` on it, and on its
/// destination if it is a connect proxy.
pub fn vet_service(authz: &Authorizer, svc: &NodeService) -> Result<(), PermissionDenied> {
    authz.require(Resource::Service, &svc.service, Level::Write)?;
    if let Some(destination) = proxy_destination(svc) {
        authz.require(Resource::Service, destination, Level::Write)?;
    }
    Ok(())
}

/// What writing `check` on `node` needs: its service's write, else the node's.
fn check_write(
    authz: &Authorizer,
    node: &str,
    check: &HealthCheck,
    service_of: impl Fn(&str) -> Option<String>,
) -> Result<(), PermissionDenied> {
    if check.service_id.is_empty() {
        return authz.require(Resource::Node, node, Level::Write);
    }
    // A check on a service the catalog does not know: Consul fails the write anyway; the
    // name it was registered with (or the ID) is what permission is asked on.
    let service = service_of(&check.service_id).unwrap_or_else(|| {
        if check.service_name.is_empty() {
            check.service_id.clone()
        } else {
            check.service_name.clone()
        }
    });
    authz.require(Resource::Service, &service, Level::Write)
}

/// Whether `req` changes nothing about the node record `stored` holds.
fn node_unchanged(req: &RegisterRequest, stored: Option<&NodeServices>) -> bool {
    if req.skip_node_update {
        return true;
    }
    let Some(stored) = stored else {
        return false;
    };
    let n = &stored.node;
    n.address == req.address
        && n.tagged_addresses == req.tagged_addresses
        && n.meta == req.node_meta
        && (req.id.is_empty() || req.id.eq_ignore_ascii_case(&n.id))
}

/// Whether `authz` may apply `req`, given the node as the catalog has it now.
pub fn vet_register(
    authz: &Authorizer,
    req: &RegisterRequest,
    stored: Option<&NodeServices>,
) -> Result<(), PermissionDenied> {
    if authz.is_management() {
        return Ok(());
    }
    if !node_unchanged(req, stored) {
        authz.require(Resource::Node, &req.node, Level::Write)?;
    }
    if let Some(svc) = &req.service {
        vet_service(authz, svc)?;
    }
    let service_of = |id: &str| {
        req.service
            .as_ref()
            .filter(|s| s.id == id)
            .or_else(|| stored.and_then(|n| n.services.get(id)))
            .map(|s| s.service.clone())
    };
    for check in req.check.iter().chain(&req.checks) {
        check_write(authz, &req.node, check, service_of)?;
    }
    Ok(())
}

/// Whether `authz` may apply `req`, given the node and (for a check) the check as the
/// catalog has them now.
pub fn vet_deregister(
    authz: &Authorizer,
    req: &DeregisterRequest,
    stored: Option<&NodeServices>,
    check: Option<&HealthCheck>,
) -> Result<(), PermissionDenied> {
    if authz.is_management() {
        return Ok(());
    }
    let service_of = |id: &str| {
        stored
            .and_then(|n| n.services.get(id))
            .map(|s| s.service.clone())
    };
    if let Some(id) = req.service_id.as_deref().filter(|id| !id.is_empty()) {
        return match stored.and_then(|n| n.services.get(id)) {
            Some(svc) => vet_service(authz, svc),
            // Nothing to remove: Consul still asks for the node.
            None => authz.require(Resource::Node, &req.node, Level::Write),
        };
    }
    if req.check_id.as_deref().is_some_and(|id| !id.is_empty()) {
        return match check {
            Some(check) => check_write(authz, &req.node, check, service_of),
            None => authz.require(Resource::Node, &req.node, Level::Write),
        };
    }
    authz.require(Resource::Node, &req.node, Level::Write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::authorizer::DefaultPolicy;
    use crate::acl::rules::Rules;
    use crate::catalog::Node;

    fn authz(rules: &str) -> Authorizer {
        Authorizer::from_rules("a", &[Rules::parse(rules).unwrap()], DefaultPolicy::Deny)
    }

    fn stored() -> NodeServices {
        let web = NodeService {
            id: "web-1".into(),
            service: "web".into(),
            ..NodeService::default()
        };
        NodeServices {
            node: Node {
                node: "n1".into(),
                address: "10.0.0.1".into(),
                ..Node::default()
            },
            services: [("web-1".to_string(), web)].into(),
        }
    }

    fn register_web(address: &str) -> RegisterRequest {
        RegisterRequest {
            node: "n1".into(),
            address: address.into(),
            service: Some(NodeService {
                id: "web-1".into(),
                service: "web".into(),
                ..NodeService::default()
            }),
            ..RegisterRequest::default()
        }
    }

    #[test]
    fn a_service_token_reposts_an_unchanged_node() {
        let a = authz(r#"service "web" { policy = "write" }"#);
        let stored = stored();
        assert!(vet_register(&a, &register_web("10.0.0.1"), Some(&stored)).is_ok());
        let moved = vet_register(&a, &register_web("10.0.0.2"), Some(&stored)).unwrap_err();
        assert_eq!(moved.resource, "node");
        assert!(vet_register(&a, &register_web("10.0.0.1"), None).is_err());
    }

    #[test]
    fn proxies_and_checks_need_their_services() {
        let a = authz(
            "node \"n1\" { policy = \"write\" }\nservice \"web-proxy\" { policy = \"write\" }",
        );
        let mut req = register_web("10.0.0.1");
        req.service = Some(NodeService {
            id: "p".into(),
            service: "web-proxy".into(),
            kind: "connect-proxy".into(),
            proxy: Some(serde_json::json!({"DestinationServiceName": "web"})),
            ..NodeService::default()
        });
        let denied = vet_register(&a, &req, None).unwrap_err();
        assert_eq!(denied.name.as_deref(), Some("web"));
        req.service = None;
        req.checks = vec![HealthCheck {
            service_id: "web-1".into(),
            ..HealthCheck::default()
        }];
        let stored = stored();
        let denied = vet_register(&a, &req, Some(&stored)).unwrap_err();
        assert_eq!(
            (denied.resource.as_str(), denied.name.as_deref()),
            ("service", Some("web"))
        );
        req.checks[0].service_id.clear();
        assert!(vet_register(&a, &req, Some(&stored)).is_ok());
    }

    #[test]
    fn deregistering_asks_for_what_goes() {
        let a = authz(r#"service "web" { policy = "write" }"#);
        let stored = stored();
        let mut req = DeregisterRequest {
            node: "n1".into(),
            service_id: Some("web-1".into()),
            ..DeregisterRequest::default()
        };
        assert!(vet_deregister(&a, &req, Some(&stored), None).is_ok());
        req.service_id = None;
        assert!(vet_deregister(&a, &req, Some(&stored), None).is_err());
        req.check_id = Some("c".into());
        let check = HealthCheck {
            service_id: "web-1".into(),
            ..HealthCheck::default()
        };
        assert!(vet_deregister(&a, &req, Some(&stored), Some(&check)).is_ok());
    }
}
