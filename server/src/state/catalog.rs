//! Catalog tables: nodes, services and checks, with Consul's register/deregister semantics
//! and the catalog and health queries.

use std::collections::{BTreeMap, BTreeSet};

use concord_api::catalog::{self as api, CheckServiceNode, NodeServices, ServiceNode};
use concord_api::rpc::{NodeMetaFilter, QueryResult};

use super::schema::{CHECKS, NODES, SERVICES};
use super::{Invalid, NodeScoped, StateError, Tables};
use crate::command::UnixMillis;
use crate::model::catalog::{Check, CheckStatus, Deregister, Node, Register, Service};
use crate::model::id::{CheckId, NodeName, ServiceId, SessionId};

/// Entries of a node-scoped table that belong to `node`, in ID order.
fn on_node<'a, Id: Ord + Default, V>(
    table: &'a BTreeMap<NodeScoped<Id>, V>,
    node: &'a str,
) -> impl Iterator<Item = (&'a NodeScoped<Id>, &'a V)> + 'a {
    table
        .range((NodeName::from(node), Id::default())..)
        .take_while(move |((n, _), _)| n == node)
}

/// Whether a node matches every `key:value` of the filter.
fn meta_matches(node: &Node, filter: &NodeMetaFilter) -> bool {
    filter.iter().all(|(k, v)| node.meta.get(k) == Some(v))
}

/// Whether the service has every wanted tag (case-insensitively, as Consul filters).
fn tags_match(svc: &Service, wanted: &[String]) -> bool {
    wanted
        .iter()
        .all(|w| svc.tags.iter().any(|t| t.eq_ignore_ascii_case(w)))
}

impl Tables {
    /// Catalog register: upserts the node (unless `SkipNodeUpdate`), the service and the
    /// checks. Everything is validated before anything is written, so a rejected request
    /// changes nothing. Records equal to what is stored are left alone (no index churn).
    pub(crate) fn register(
        &mut self,
        index: u64,
        req: &Register,
        now_ms: UnixMillis,
    ) -> Result<(), StateError> {
        if req.node.is_empty() {
            return Err(Invalid::NoNodeName.into());
        }
        if req.address.is_empty() && !req.skip_node_update {
            return Err(Invalid::NoAddress.into());
        }
        if req.skip_node_update && !self.nodes.contains_key(&req.node) {
            return Err(Invalid::NodeNotRegistered.into());
        }
        let service = match &req.service {
            Some(svc) => {
                let mut svc = svc.clone();
                if svc.service.is_empty() {
                    return Err(Invalid::NoServiceName.into());
                }
                if svc.id.is_empty() {
                    svc.id = ServiceId::from(svc.service.as_str());
                }
                Some(svc)
            }
            None => None,
        };
        let mut checks = Vec::new();
        for check in &req.checks {
            let mut check = check.clone();
            check.node = req.node.clone();
            if check.check_id.is_empty() {
                check.check_id = CheckId::from(check.name.as_str());
            }
            if check.check_id.is_empty() {
                return Err(Invalid::NoCheckId.into());
            }
            if !check.service_id.is_empty() {
                let in_request = service.as_ref().is_some_and(|s| s.id == check.service_id);
                let key = (req.node.clone(), check.service_id.clone());
                if !in_request && !self.services.contains_key(&key) {
                    return Err(Invalid::CheckServiceNotRegistered {
                        check_id: check.check_id.into(),
                        service_id: check.service_id.into(),
                    }
                    .into());
                }
            }
            checks.push(check);
        }

        if !req.skip_node_update {
            self.upsert_node(
                index,
                Node {
                    id: req.id.clone(),
                    node: req.node.clone(),
                    address: req.address.clone(),
                    datacenter: req.datacenter.clone(),
                    tagged_addresses: req.tagged_addresses.clone(),
                    meta: req.node_meta.clone(),
                    raft: Default::default(),
                },
            );
        }
        if let Some(svc) = service {
            self.upsert_service(index, &req.node, svc);
        }
        for check in checks {
            self.upsert_check(index, check, now_ms);
        }
        Ok(())
    }

    fn upsert_node(&mut self, index: u64, mut node: Node) {
        match self.nodes.get(&node.node) {
            Some(existing) => {
                node.raft = existing.raft;
                if node == *existing {
                    return;
                }
            }
            None => node.raft.create_index = index,
        }
        node.raft.modify_index = index;
        let name = node.node.clone();
        self.nodes.insert(name.clone(), node);
        self.bump(NODES, index);
        self.bump_services_on_node(&name, index);
    }

    /// Records that instances of service `name` changed at `index`.
    fn bump_service(&mut self, name: &str, index: u64) {
        self.service_indexes.insert(name.to_string(), index);
    }

    /// A node-level change (the node record, a node check) affects every service on it.
    fn bump_services_on_node(&mut self, node: &NodeName, index: u64) {
        let names: BTreeSet<String> = on_node(&self.services, node.as_str())
            .map(|(_, svc)| svc.service.clone())
            .collect();
        for name in names {
            self.bump_service(&name, index);
        }
    }

    /// The index a query about one service blocks on: the service's own index, or, for a
    /// name never registered, the services table's (which its first registration moves).
    /// Never 0.
    fn service_index(&self, name: &str) -> u64 {
        self.service_indexes
            .get(name)
            .copied()
            .unwrap_or_else(|| self.table_index(SERVICES))
            .max(1)
    }

    fn upsert_service(&mut self, index: u64, node: &NodeName, mut svc: Service) {
        let key = (node.clone(), svc.id.clone());
        match self.services.get(&key) {
            Some(existing) => {
                svc.raft = existing.raft;
                if svc == *existing {
                    return;
                }
                // A renamed instance leaves its old service's results.
                if existing.service != svc.service {
                    let old = existing.service.clone();
                    self.bump_service(&old, index);
                }
            }
            None => svc.raft.create_index = index,
        }
        self.bump_service(&svc.service, index);
        svc.raft.modify_index = index;
        // Checks denormalize the service's name and tags: keep them in step.
        let check_keys: Vec<NodeScoped<CheckId>> = on_node(&self.checks, node.as_str())
            .filter(|(_, c)| c.service_id == svc.id)
            .map(|(k, _)| k.clone())
            .collect();
        for check_key in check_keys {
            if let Some(check) = self.checks.get_mut(&check_key) {
                if check.service_name != svc.service || check.service_tags != svc.tags {
                    check.service_name = svc.service.clone();
                    check.service_tags = svc.tags.clone();
                    check.raft.modify_index = index;
                    self.bump(CHECKS, index);
                }
            }
        }
        self.services.insert(key, svc);
        self.bump(SERVICES, index);
    }

    fn upsert_check(&mut self, index: u64, mut check: Check, now_ms: UnixMillis) {
        let key = (check.node.clone(), check.check_id.clone());
        if check.service_id.is_empty() {
            check.service_name.clear();
            check.service_tags.clear();
        } else if let Some(svc) = self
            .services
            .get(&(check.node.clone(), check.service_id.clone()))
        {
            check.service_name = svc.service.clone();
            check.service_tags = svc.tags.clone();
        }
        let critical = check.status == CheckStatus::Critical;
        let unchanged = match self.checks.get(&key) {
            Some(existing) => {
                check.raft = existing.raft;
                check == *existing
            }
            None => {
                check.raft.create_index = index;
                false
            }
        };
        if !unchanged {
            check.raft.modify_index = index;
            if check.service_id.is_empty() {
                self.bump_services_on_node(&key.0, index);
            } else {
                let name = check.service_name.clone();
                self.bump_service(&name, index);
            }
            self.checks.insert(key.clone(), check);
            self.bump(CHECKS, index);
        }
        // A session tied to a check cannot outlive the check turning critical.
        if critical {
            self.invalidate_check_sessions(index, &key.0, &key.1, now_ms);
        }
    }

    /// Catalog deregister: node only removes the node and everything on it (and invalidates
    /// its sessions); with `ServiceID` the service and its checks; with `CheckID` the check.
    /// Removing something absent is a no-op, as in Consul.
    pub(crate) fn deregister(
        &mut self,
        index: u64,
        req: &Deregister,
        now_ms: UnixMillis,
    ) -> Result<(), StateError> {
        if req.node.is_empty() {
            return Err(Invalid::NoNodeName.into());
        }
        let service_id = req.service_id.as_ref().filter(|s| !s.is_empty());
        let check_id = req.check_id.as_ref().filter(|s| !s.is_empty());
        if service_id.is_none() && check_id.is_none() {
            self.delete_node(index, &req.node, now_ms);
            return Ok(());
        }
        if let Some(service_id) = service_id {
            self.delete_service(index, &req.node, service_id, now_ms);
        }
        if let Some(check_id) = check_id {
            self.delete_check(index, &req.node, check_id, now_ms);
        }
        Ok(())
    }

    fn delete_node(&mut self, index: u64, node: &NodeName, now_ms: UnixMillis) {
        if !self.nodes.contains_key(node) {
            return;
        }
        let check_ids: Vec<CheckId> = on_node(&self.checks, node.as_str())
            .map(|((_, id), _)| id.clone())
            .collect();
        for check_id in check_ids {
            self.delete_check(index, node, &check_id, now_ms);
        }
        let service_ids: Vec<ServiceId> = on_node(&self.services, node.as_str())
            .map(|((_, id), _)| id.clone())
            .collect();
        for service_id in service_ids {
            self.delete_service(index, node, &service_id, now_ms);
        }
        let session_ids: Vec<SessionId> = self
            .sessions
            .values()
            .filter(|s| s.node == *node)
            .map(|s| s.id.clone())
            .collect();
        for id in session_ids {
            self.session_destroy(index, id.as_str(), now_ms);
        }
        self.nodes.remove(node);
        self.bump(NODES, index);
    }

    fn delete_service(
        &mut self,
        index: u64,
        node: &NodeName,
        service_id: &ServiceId,
        now_ms: UnixMillis,
    ) {
        let key = (node.clone(), service_id.clone());
        let Some(removed) = self.services.remove(&key) else {
            return;
        };
        self.bump(SERVICES, index);
        self.bump_service(&removed.service, index);
        let check_ids: Vec<CheckId> = on_node(&self.checks, node.as_str())
            .filter(|(_, c)| c.service_id == *service_id)
            .map(|((_, id), _)| id.clone())
            .collect();
        for check_id in check_ids {
            self.delete_check(index, node, &check_id, now_ms);
        }
    }

    fn delete_check(
        &mut self,
        index: u64,
        node: &NodeName,
        check_id: &CheckId,
        now_ms: UnixMillis,
    ) {
        let key = (node.clone(), check_id.clone());
        let Some(removed) = self.checks.remove(&key) else {
            return;
        };
        self.bump(CHECKS, index);
        if removed.service_id.is_empty() {
            self.bump_services_on_node(node, index);
        } else {
            self.bump_service(&removed.service_name, index);
        }
        self.invalidate_check_sessions(index, node, check_id, now_ms);
    }

    /// A node's record, if registered.
    pub(crate) fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// A service instance, if registered.
    pub(crate) fn service(&self, node: &str, id: &str) -> Option<&Service> {
        self.services
            .get(&(NodeName::from(node), ServiceId::from(id)))
    }

    /// A check, if registered.
    pub(crate) fn check(&self, node: &str, id: &str) -> Option<&Check> {
        self.checks.get(&(NodeName::from(node), CheckId::from(id)))
    }

    /// The node record of a service's node. Services never outlive their node (deregister
    /// removes both together), so a missing node only hides the service.
    fn service_rows(&self) -> impl Iterator<Item = (&Node, &Service)> + '_ {
        self.services
            .iter()
            .filter_map(|((node, _), svc)| self.nodes.get(node).map(|n| (n, svc)))
    }

    /// Node-level checks of a node and the checks of one of its services, in ID order.
    fn instance_checks(&self, node: &str, service_id: &ServiceId) -> Vec<api::HealthCheck> {
        on_node(&self.checks, node)
            .filter(|(_, c)| c.service_id.is_empty() || c.service_id == *service_id)
            .map(|(_, c)| c.to_api())
            .collect()
    }

    pub(super) fn nodes_query(&self, node_meta: &NodeMetaFilter) -> (u64, QueryResult) {
        let nodes = self
            .nodes
            .values()
            .filter(|n| meta_matches(n, node_meta))
            .map(Node::to_api)
            .collect();
        (self.max_index(&[NODES]), QueryResult::Nodes(nodes))
    }

    pub(super) fn services_query(&self, node_meta: &NodeMetaFilter) -> (u64, QueryResult) {
        let mut services: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (node, svc) in self.service_rows() {
            if meta_matches(node, node_meta) {
                services
                    .entry(svc.service.clone())
                    .or_default()
                    .extend(svc.tags.iter().cloned());
            }
        }
        let services = services
            .into_iter()
            .map(|(name, tags)| (name, tags.into_iter().collect()))
            .collect();
        (
            self.max_index(&[NODES, SERVICES]),
            QueryResult::Services(services),
        )
    }

    pub(super) fn service_nodes_query(
        &self,
        service: &str,
        tags: &[String],
        node_meta: &NodeMetaFilter,
    ) -> (u64, QueryResult) {
        let rows = self
            .service_rows()
            .filter(|(node, svc)| {
                svc.service == service && tags_match(svc, tags) && meta_matches(node, node_meta)
            })
            .map(|(node, svc)| ServiceNode::new(&node.to_api(), &svc.to_api()))
            .collect();
        (self.service_index(service), QueryResult::ServiceNodes(rows))
    }

    pub(super) fn node_services_query(&self, node: &str) -> (u64, QueryResult) {
        let result = self.nodes.get(node).map(|n| NodeServices {
            node: n.to_api(),
            services: on_node(&self.services, node)
                .map(|((_, id), svc)| (id.to_string(), svc.to_api()))
                .collect(),
        });
        (
            self.max_index(&[NODES, SERVICES]),
            QueryResult::NodeServices(result),
        )
    }

    fn check_service_nodes(
        &self,
        mut keep: impl FnMut(&Node, &Service) -> bool,
    ) -> Vec<CheckServiceNode> {
        self.service_rows()
            .filter(|(node, svc)| keep(node, svc))
            .map(|(node, svc)| CheckServiceNode {
                node: node.to_api(),
                service: svc.to_api(),
                checks: self.instance_checks(node.node.as_str(), &svc.id),
            })
            .collect()
    }

    pub(super) fn health_service_query(
        &self,
        service: &str,
        tags: &[String],
        passing: bool,
        node_meta: &NodeMetaFilter,
    ) -> (u64, QueryResult) {
        let mut rows = self.check_service_nodes(|node, svc| {
            svc.service == service && tags_match(svc, tags) && meta_matches(node, node_meta)
        });
        if passing {
            rows.retain(|row| {
                row.checks
                    .iter()
                    .all(|c| c.status == api::CheckStatus::Passing)
            });
        }
        (self.service_index(service), QueryResult::Health(rows))
    }

    fn checks_where(
        &self,
        node_meta: &NodeMetaFilter,
        keep: impl Fn(&Check) -> bool,
    ) -> Vec<api::HealthCheck> {
        self.checks
            .values()
            .filter(|c| keep(c))
            .filter(|c| {
                node_meta.is_empty()
                    || self
                        .nodes
                        .get(&c.node)
                        .is_some_and(|n| meta_matches(n, node_meta))
            })
            .map(Check::to_api)
            .collect()
    }

    pub(super) fn service_checks_query(
        &self,
        service: &str,
        node_meta: &NodeMetaFilter,
    ) -> (u64, QueryResult) {
        let checks = self.checks_where(node_meta, |c| {
            !c.service_id.is_empty() && c.service_name == service
        });
        (self.service_index(service), QueryResult::Checks(checks))
    }

    pub(super) fn node_checks_query(&self, node: &str) -> (u64, QueryResult) {
        let checks = on_node(&self.checks, node)
            .map(|(_, c)| c.to_api())
            .collect();
        (self.max_index(&[CHECKS]), QueryResult::Checks(checks))
    }

    pub(super) fn checks_in_state_query(
        &self,
        state: Option<api::CheckStatus>,
        node_meta: &NodeMetaFilter,
    ) -> (u64, QueryResult) {
        let state = state.map(CheckStatus::from);
        let checks = self.checks_where(node_meta, |c| state.is_none_or(|s| c.status == s));
        (
            self.max_index(&[NODES, CHECKS]),
            QueryResult::Checks(checks),
        )
    }

    pub(super) fn catalog_dump_query(&self) -> (u64, QueryResult) {
        let nodes = self.nodes.values().map(Node::to_api).collect();
        let instances = self.check_service_nodes(|_, _| true);
        (
            self.max_index(&[NODES, SERVICES, CHECKS]),
            QueryResult::CatalogDump { nodes, instances },
        )
    }
}
