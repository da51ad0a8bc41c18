//! `/v1/discovery-chain/:service`: the router → splitter → resolver chain compiled from
//! config entries, in Consul's JSON shape (`Chain` with `Protocol`, `StartNode`, `Nodes`,
//! `Targets`). Pure: the agent hands in the entries it read.
//!
//! What is compiled (Consul's `discoverychain.Compile`, OSS, one datacenter):
//! - the protocol (service-defaults, then proxy-defaults, then `tcp`); routers and splitters
//!   only count for HTTP-aware protocols;
//! - a router node (its routes, then a catch-all to the service itself), a splitter node
//!   (one branch per split), and resolver nodes (default subset, named subsets, redirects,
//!   failover to other services/subsets/datacenters);
//! - targets named `[subset.]service.namespace.partition.datacenter`, with the `SNI` (and
//!   `Name`, the same) a proxy dials them by: `[subset.]service.namespace.datacenter.internal.
//!   <trust-domain>` (Consul's `connect.ServiceSNI` for the default partition), or empty
//!   while the CA's trust domain is not known.
//!
//! Not compiled: mesh gateway modes, load balancer and request timeout policies (carried as
//! given in the entries).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::config_entry::{
    effective_protocol, is_l7_protocol, ConfigEntry, ProxyDefaults, ServiceDefaults,
    ServiceResolver, ServiceRouter, ServiceSplitter,
};

/// Consul's default connect timeout of a resolver.
pub const DEFAULT_CONNECT_TIMEOUT: &str = "5s";
const NS: &str = "default";
const PARTITION: &str = "default";
/// The TLS server name of a service (or one of its subsets) in a datacenter, as Consul's
/// `connect.ServiceSNI` builds it for the default namespace and partition:
/// `[subset.]service.default.<dc>.internal.<trust-domain>`. Empty without a trust domain
/// (the CA is not initialized yet).
pub fn service_sni(service: &str, subset: &str, dc: &str, trust_domain: &str) -> String {
    if trust_domain.is_empty() {
        return String::new();
    }
    let name = format!("{service}.{NS}.{dc}.internal.{trust_domain}");
    if subset.is_empty() {
        name
    } else {
        format!("{subset}.{name}")
    }
}

/// Redirects followed before giving up (Consul refuses loops when writing; this bounds
/// what was stored anyway).
const MAX_REDIRECTS: usize = 8;

/// The config entries a compile reads, by service name.
#[derive(Clone, Debug, Default)]
pub struct ChainEntries {
    /// `service-defaults` by service.
    pub defaults: BTreeMap<String, ServiceDefaults>,
    /// The `proxy-defaults` entry, if any.
    pub proxy_defaults: Option<ProxyDefaults>,
    /// `service-resolver` by service.
    pub resolvers: BTreeMap<String, ServiceResolver>,
    /// `service-splitter` by service.
    pub splitters: BTreeMap<String, ServiceSplitter>,
    /// `service-router` by service.
    pub routers: BTreeMap<String, ServiceRouter>,
}

impl ChainEntries {
    /// Sorts decoded entries by kind; other kinds are ignored.
    pub fn from_entries(entries: impl IntoIterator<Item = ConfigEntry>) -> ChainEntries {
        let mut out = ChainEntries::default();
        for e in entries {
            match e {
                ConfigEntry::ServiceDefaults(d) => {
                    out.defaults.insert(d.name.clone(), d);
                }
                ConfigEntry::ProxyDefaults(d) => out.proxy_defaults = Some(d),
                ConfigEntry::ServiceResolver(r) => {
                    out.resolvers.insert(r.name.clone(), r);
                }
                ConfigEntry::ServiceSplitter(s) => {
                    out.splitters.insert(s.name.clone(), s);
                }
                ConfigEntry::ServiceRouter(r) => {
                    out.routers.insert(r.name.clone(), r);
                }
                ConfigEntry::ServiceIntentions(_) => {}
            }
        }
        out
    }

    fn protocol(&self, service: &str) -> String {
        effective_protocol(self.defaults.get(service), self.proxy_defaults.as_ref())
    }
}

/// A target's ID: `[subset.]service.namespace.partition.datacenter`.
pub fn target_id(service: &str, subset: &str, dc: &str) -> String {
    if subset.is_empty() {
        format!("{service}.{NS}.{PARTITION}.{dc}")
    } else {
        format!("{subset}.{service}.{NS}.{PARTITION}.{dc}")
    }
}

struct Compiler<'a> {
    entries: &'a ChainEntries,
    dc: &'a str,
    /// The CA's trust domain, for target SNIs (may be empty).
    trust_domain: &'a str,
    l7: bool,
    nodes: Map<String, Value>,
    targets: Map<String, Value>,
}

impl Compiler<'_> {
    /// The target for (service, subset, dc), recorded in `Targets`.
    fn target(&mut self, service: &str, subset: &str, dc: &str) -> String {
        let id = target_id(service, subset, dc);
        let resolver = self.entries.resolvers.get(service);
        let filter = resolver
            .and_then(|r| r.subsets.get(subset))
            .map(|s| json!({"Filter": s.filter, "OnlyPassing": s.only_passing}))
            .unwrap_or_else(|| json!({}));
        let timeout = resolver
            .map(|r| r.connect_timeout.as_str())
            .filter(|t| !t.is_empty())
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let sni = service_sni(service, subset, dc, self.trust_domain);
        self.targets.entry(id.clone()).or_insert_with(|| {
            json!({
                "ID": id,
                "Service": service,
                "ServiceSubset": subset,
                "Namespace": NS,
                "Partition": PARTITION,
                "Datacenter": dc,
                "MeshGateway": {},
                "Subset": filter,
                "ConnectTimeout": timeout,
                // Consul names a target after its SNI.
                "Name": sni,
                "SNI": sni,
            })
        });
        id
    }

    /// The resolver node for (service, subset), following redirects; returns its node name.
    fn resolver(&mut self, service: &str, subset: &str) -> String {
        let (mut service, mut subset, mut dc) =
            (service.to_string(), subset.to_string(), self.dc.to_string());
        for _ in 0..MAX_REDIRECTS {
            let Some(r) = self.entries.resolvers.get(&service) else {
                break;
            };
            let Some(redirect) = &r.redirect else {
                break;
            };
            if !redirect.service.is_empty() {
                service = redirect.service.clone();
            }
            subset = redirect.service_subset.clone();
            if !redirect.datacenter.is_empty() {
                dc = redirect.datacenter.clone();
            }
        }
        let resolver = self.entries.resolvers.get(&service).cloned();
        if subset.is_empty() {
            subset = resolver
                .as_ref()
                .map(|r| r.default_subset.clone())
                .unwrap_or_default();
        }
        let target = self.target(&service, &subset, &dc);
        let name = format!("resolver:{target}");
        if self.nodes.contains_key(&name) {
            return name;
        }
        let timeout = resolver
            .as_ref()
            .map(|r| r.connect_timeout.clone())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| DEFAULT_CONNECT_TIMEOUT.to_string());
        let mut node = json!({
            "Type": "resolver",
            "Name": target,
            "Resolver": {
                "ConnectTimeout": timeout,
                "Default": resolver.is_none(),
                "Target": target,
            },
        });
        let failover = resolver.as_ref().and_then(|r| {
            r.failover
                .get(subset.as_str())
                .or_else(|| r.failover.get("*"))
                .cloned()
        });
        if let Some(f) = failover {
            let fo_service = if f.service.is_empty() {
                service.clone()
            } else {
                f.service.clone()
            };
            let fo_subset = if f.service_subset.is_empty() && f.service.is_empty() {
                subset.clone()
            } else {
                f.service_subset.clone()
            };
            let targets: Vec<String> = if f.datacenters.is_empty() {
                vec![self.target(&fo_service, &fo_subset, &dc)]
            } else {
                f.datacenters
                    .iter()
                    .map(|d| self.target(&fo_service, &fo_subset, d))
                    .collect()
            };
            node["Resolver"]["Failover"] = json!({ "Targets": targets });
        }
        self.nodes.insert(name.clone(), node);
        name
    }

    /// The node traffic for (service, subset) enters at: its splitter (L7, no subset asked
    /// for), else its resolver.
    fn split_or_resolve(&mut self, service: &str, subset: &str) -> String {
        if self.l7 && subset.is_empty() {
            if let Some(splitter) = self.entries.splitters.get(service).cloned() {
                let name = format!("splitter:{service}.{NS}.{PARTITION}");
                if !self.nodes.contains_key(&name) {
                    let splits: Vec<Value> = splitter
                        .splits
                        .iter()
                        .map(|s| {
                            let svc = if s.service.is_empty() {
                                service
                            } else {
                                &s.service
                            };
                            // A split to the splitter's own service must not recurse.
                            let next = if svc == service || !s.service_subset.is_empty() {
                                self.resolver(svc, &s.service_subset)
                            } else {
                                self.split_or_resolve(svc, "")
                            };
                            json!({"Weight": s.weight, "NextNode": next})
                        })
                        .collect();
                    self.nodes.insert(
                        name.clone(),
                        json!({"Type": "splitter", "Name": format!("{service}.{NS}.{PARTITION}"), "Splits": splits}),
                    );
                }
                return name;
            }
        }
        self.resolver(service, subset)
    }

    fn start(&mut self, service: &str) -> String {
        if self.l7 {
            if let Some(router) = self.entries.routers.get(service).cloned() {
                let name = format!("router:{service}.{NS}.{PARTITION}");
                let mut routes: Vec<Value> = router
                    .routes
                    .iter()
                    .map(|r| {
                        let dest = r.destination.clone().unwrap_or_default();
                        let svc = if dest.service.is_empty() {
                            service.to_string()
                        } else {
                            dest.service.clone()
                        };
                        let next = self.split_or_resolve(&svc, &dest.service_subset);
                        json!({"Definition": r, "NextNode": next})
                    })
                    .collect();
                // Consul appends a catch-all route to the service itself.
                let next = self.split_or_resolve(service, "");
                routes.push(json!({
                    "Definition": {"Match": {"HTTP": {"PathPrefix": "/"}}, "Destination": {"Service": service}},
                    "NextNode": next,
                }));
                self.nodes.insert(
                    name.clone(),
                    json!({"Type": "router", "Name": format!("{service}.{NS}.{PARTITION}"), "Routes": routes}),
                );
                return name;
            }
        }
        self.split_or_resolve(service, "")
    }
}

/// Compiles the chain of `service` in datacenter `dc`: the body of
/// `GET /v1/discovery-chain/:service` (`{"Chain": {...}}`). `trust_domain` names the
/// targets' SNI (empty: left empty).
pub fn compile(service: &str, dc: &str, trust_domain: &str, entries: &ChainEntries) -> Value {
    let protocol = entries.protocol(service);
    let mut c = Compiler {
        entries,
        dc,
        trust_domain,
        l7: is_l7_protocol(&protocol),
        nodes: Map::new(),
        targets: Map::new(),
    };
    let start = c.start(service);
    let default = !entries.resolvers.contains_key(service)
        && !entries.splitters.contains_key(service)
        && !entries.routers.contains_key(service);
    json!({
        "Chain": {
            "ServiceName": service,
            "Namespace": NS,
            "Partition": PARTITION,
            "Datacenter": dc,
            "CustomizationHash": "",
            "Default": default,
            "Protocol": protocol,
            "ServiceMeta": {},
            "StartNode": start,
            "Nodes": Value::Object(c.nodes),
            "Targets": Value::Object(c.targets),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(list: Vec<Value>) -> ChainEntries {
        ChainEntries::from_entries(list.into_iter().map(|v| {
            let mut e = ConfigEntry::from_json(v).unwrap();
            e.validate().unwrap();
            e
        }))
    }

    #[test]
    fn default_chain_is_one_resolver() {
        let chain = compile("web", "dc1", "", &ChainEntries::default());
        let c = &chain["Chain"];
        assert_eq!(c["Protocol"], "tcp");
        assert_eq!(c["Default"], true);
        assert_eq!(c["StartNode"], "resolver:web.default.default.dc1");
        let node = &c["Nodes"]["resolver:web.default.default.dc1"];
        assert_eq!(node["Type"], "resolver");
        assert_eq!(node["Resolver"]["Default"], true);
        assert_eq!(node["Resolver"]["ConnectTimeout"], "5s");
        assert_eq!(c["Targets"]["web.default.default.dc1"]["Service"], "web");
        assert_eq!(
            c["Targets"]["web.default.default.dc1"]["SNI"], "",
            "no trust domain yet"
        );
    }

    #[test]
    fn targets_carry_consul_sni_names() {
        const TD: &str = "11111111-2222-3333-4444-555555555555.consul";
        let e = entries(vec![
            json!({"Kind": "service-resolver", "Name": "web", "DefaultSubset": "v1",
            "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"}},
            "Failover": {"*": {"Datacenters": ["dc2"]}}}),
        ]);
        let chain = compile("web", "dc1", TD, &e);
        let targets = &chain["Chain"]["Targets"];
        for (id, sni) in [
            (
                "v1.web.default.default.dc1",
                format!("v1.web.default.dc1.internal.{TD}"),
            ),
            (
                "v1.web.default.default.dc2",
                format!("v1.web.default.dc2.internal.{TD}"),
            ),
        ] {
            assert_eq!(targets[id]["SNI"], sni.as_str(), "{id}");
            assert_eq!(targets[id]["Name"], sni.as_str(), "{id}");
        }
        assert_eq!(
            service_sni("db", "", "dc1", TD),
            format!("db.default.dc1.internal.{TD}")
        );
    }

    #[test]
    fn resolver_subsets_and_failover() {
        let e = entries(vec![
            json!({"Kind": "service-resolver", "Name": "web", "DefaultSubset": "v1", "ConnectTimeout": "3s",
            "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"}},
            "Failover": {"*": {"Datacenters": ["dc2", "dc3"]}}}),
        ]);
        let chain = compile("web", "dc1", "", &e);
        let c = &chain["Chain"];
        assert_eq!(c["StartNode"], "resolver:v1.web.default.default.dc1");
        let r = &c["Nodes"]["resolver:v1.web.default.default.dc1"]["Resolver"];
        assert_eq!(r["ConnectTimeout"], "3s");
        assert_eq!(
            r["Failover"]["Targets"],
            json!(["v1.web.default.default.dc2", "v1.web.default.default.dc3"])
        );
        assert_eq!(
            c["Targets"]["v1.web.default.default.dc1"]["Subset"]["Filter"],
            "Service.Meta.version == v1"
        );
        assert!(c["Targets"]["v1.web.default.default.dc3"].is_object());
    }

    #[test]
    fn router_then_splitter_then_resolvers_for_http() {
        let e = entries(vec![
            json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"}),
            json!({"Kind": "service-resolver", "Name": "web", "Subsets": {"v1": {"Filter": "a"}, "v2": {"Filter": "b"}}}),
            json!({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}]}),
            json!({"Kind": "service-router", "Name": "web", "Routes": [{"Match": {"HTTP": {"PathPrefix": "/admin"}}, "Destination": {"Service": "admin"}}]}),
        ]);
        let chain = compile("web", "dc1", "", &e);
        let c = &chain["Chain"];
        assert_eq!(c["Protocol"], "http");
        assert_eq!(c["StartNode"], "router:web.default.default");
        let routes = c["Nodes"]["router:web.default.default"]["Routes"]
            .as_array()
            .unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0]["NextNode"], "resolver:admin.default.default.dc1");
        assert_eq!(routes[1]["NextNode"], "splitter:web.default.default");
        let splits = c["Nodes"]["splitter:web.default.default"]["Splits"]
            .as_array()
            .unwrap();
        assert_eq!(splits[0]["NextNode"], "resolver:v1.web.default.default.dc1");
        assert_eq!(splits[1]["Weight"], 10.0);
    }

    #[test]
    fn tcp_ignores_routers_and_redirects_are_followed() {
        let mut e = entries(vec![
            json!({"Kind": "service-resolver", "Name": "web", "Redirect": {"Service": "web2"}}),
        ]);
        e.routers.insert(
            "web".into(),
            ServiceRouter {
                name: "web".into(),
                ..Default::default()
            },
        );
        let chain = compile("web", "dc1", "", &e);
        assert_eq!(
            chain["Chain"]["StartNode"],
            "resolver:web2.default.default.dc1"
        );
    }
}
