//! Hand-built catalog snapshots for the DNS tests.

use concord_api::catalog::{
    CheckServiceNode, CheckStatus, HealthCheck, Node, NodeService, Weights,
};

use crate::catalog_cache::CatalogSnapshot;

/// A node named `name` at `address`.
pub(crate) fn node(name: &str, address: &str) -> Node {
    Node {
        node: name.into(),
        address: address.into(),
        datacenter: "dc1".into(),
        ..Node::default()
    }
}

/// A passing instance of `service` on `node`, using the node's address, port 80.
pub(crate) fn instance(node: &Node, id: &str, service: &str) -> Instance {
    Instance(CheckServiceNode {
        node: node.clone(),
        service: NodeService {
            id: id.into(),
            service: service.into(),
            port: 80,
            ..NodeService::default()
        },
        checks: Vec::new(),
    })
}

/// Builder for a [`CheckServiceNode`].
pub(crate) struct Instance(CheckServiceNode);

impl Instance {
    /// Gives the instance its own address.
    pub(crate) fn address(mut self, address: &str) -> Self {
        self.0.service.address = address.into();
        self
    }

    pub(crate) fn port(mut self, port: u16) -> Self {
        self.0.service.port = port;
        self
    }

    pub(crate) fn tags(mut self, tags: &[&str]) -> Self {
        self.0.service.tags = tags.iter().map(|t| (*t).into()).collect();
        self
    }

    /// Makes the instance a `connect-proxy` fronting `destination`.
    pub(crate) fn proxy_for(mut self, destination: &str) -> Self {
        self.0.service.kind = "connect-proxy".into();
        self.0.service.proxy = Some(serde_json::json!({ "DestinationServiceName": destination }));
        self
    }

    /// Makes the instance Connect-native.
    pub(crate) fn native(mut self) -> Self {
        self.0.service.connect = Some(serde_json::json!({ "Native": true }));
        self
    }

    pub(crate) fn weights(mut self, passing: u32, warning: u32) -> Self {
        self.0.service.weights = Weights { passing, warning };
        self
    }

    /// Adds a service-level check in `status`.
    pub(crate) fn check(mut self, status: CheckStatus) -> Self {
        let check = HealthCheck {
            node: self.0.node.node.clone(),
            check_id: format!("service:{}", self.0.service.id),
            status,
            service_id: self.0.service.id.clone(),
            service_name: self.0.service.service.clone(),
            ..HealthCheck::default()
        };
        self.0.checks.push(check);
        self
    }

    /// Adds a node-level check (as `serfHealth`) in `status`.
    pub(crate) fn node_check(mut self, status: CheckStatus) -> Self {
        let check = HealthCheck {
            node: self.0.node.node.clone(),
            check_id: "serfHealth".into(),
            status,
            ..HealthCheck::default()
        };
        self.0.checks.push(check);
        self
    }

    pub(crate) fn build(self) -> CheckServiceNode {
        self.0
    }
}

/// A snapshot at a non-zero index (index 0 means "never fetched").
pub(crate) fn snapshot(nodes: Vec<Node>, instances: Vec<Instance>) -> CatalogSnapshot {
    CatalogSnapshot {
        index: 42,
        nodes,
        instances: instances.into_iter().map(Instance::build).collect(),
        view: 0,
    }
}

/// `count` passing instances of `service`, each on its own node `<service>-<i>` at 10.1.x.y.
pub(crate) fn many(service: &str, count: usize) -> CatalogSnapshot {
    let nodes: Vec<Node> = (0..count)
        .map(|i| {
            let [_, _, hi, lo] = u32::try_from(i).unwrap().to_be_bytes();
            node(&format!("{service}-{i}"), &format!("10.1.{hi}.{lo}"))
        })
        .collect();
    let instances = nodes
        .iter()
        .map(|n| instance(n, service, service))
        .collect();
    snapshot(nodes, instances)
}
