//! `concord catalog services|nodes|datacenters`: Consul's `consul catalog` listing commands.

use std::collections::BTreeMap;

use concord_api::catalog::{Node, NodeServices, ServiceNode};

use crate::flags::{flag, parse_or_usage, split_key_value, Flag, Kind, Parsed};
use crate::http::{escape_path, HttpClient};
use crate::output::{columnize, fail, outln};

const USAGE: &str = "Usage: concord catalog <subcommand> [options] [args]

  Lists what the catalog holds.

Subcommands:
    datacenters    Lists all known datacenters
    nodes          Lists all nodes in the given datacenter
    services       Lists all registered services in a datacenter";

const SERVICES_USAGE: &str = "Usage: concord catalog services [options]

  Lists the services registered in the datacenter.

  -node=<id or name>    List only the services on this node.
  -node-meta=<k=v>      Only services on nodes with this metadata (repeatable).
  -tags                 Show each service's tags.";

const NODES_USAGE: &str = "Usage: concord catalog nodes [options]

  Lists the nodes in the datacenter.

  -detailed             Full node IDs, tagged addresses and metadata.
  -node-meta=<k=v>      Only nodes with this metadata (repeatable).
  -service=<name>       Only nodes providing this service.";

const DATACENTERS_USAGE: &str = "Usage: concord catalog datacenters [options]

  Lists all known datacenters.";

const SERVICES_FLAGS: &[Flag] = &[
    flag("node", Kind::Str),
    flag("node-meta", Kind::List),
    flag("tags", Kind::Bool),
];

const NODES_FLAGS: &[Flag] = &[
    flag("detailed", Kind::Bool),
    flag("node-meta", Kind::List),
    flag("service", Kind::Str),
];

/// Runs `concord catalog <subcommand> ...`; returns the exit code.
pub(crate) async fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let Some((sub, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return Ok(1);
    };
    match sub.as_str() {
        "services" => services(rest).await,
        "nodes" => nodes(rest).await,
        "datacenters" => datacenters(rest).await,
        "-h" | "-help" | "--help" => {
            eprintln!("{USAGE}");
            Ok(0)
        }
        other => fail(format!("Unknown subcommand: catalog {other}\n\n{USAGE}")),
    }
}

/// Parses flags, rejects positional arguments and builds the client, printing any problem.
fn setup(args: &[String], flags: &[Flag], usage: &str) -> Result<(Parsed, HttpClient), i32> {
    let p = parse_or_usage(args, flags, usage)?;
    if !p.args.is_empty() {
        eprintln!("Too many arguments (expected 0, got {})", p.args.len());
        return Err(1);
    }
    match HttpClient::from_flags(&p) {
        Ok(client) => Ok((p, client)),
        Err(e) => {
            eprintln!("Error connecting to agent: {e}");
            Err(1)
        }
    }
}

/// `-node-meta k=v` flags as `?node-meta=k:v` parameters.
fn node_meta_query(p: &Parsed) -> anyhow::Result<Vec<(&'static str, String)>> {
    p.list("node-meta")
        .iter()
        .map(|kv| split_key_value(kv).map(|(k, v)| ("node-meta", format!("{k}:{v}"))))
        .collect()
}

async fn services(args: &[String]) -> anyhow::Result<i32> {
    let (p, client) = match setup(args, SERVICES_FLAGS, SERVICES_USAGE) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let query = match node_meta_query(&p) {
        Ok(q) => q,
        Err(e) => return fail(e),
    };
    let services: BTreeMap<String, Vec<String>> = match p.value("node").filter(|n| !n.is_empty()) {
        Some(node) => {
            let path = format!("/v1/catalog/node/{}", escape_path(node));
            match client.get_json::<Option<NodeServices>>(&path, &query).await {
                Err(e) => return fail(format!("Error listing services for node: {e}")),
                Ok(found) => services_of_node(found.flatten()),
            }
        }
        None => match client.get_json("/v1/catalog/services", &query).await {
            Err(e) => return fail(format!("Error listing services: {e}")),
            Ok(found) => found.unwrap_or_default(),
        },
    };
    if services.is_empty() {
        eprintln!("No services match the given query - try expanding your search.");
        return Ok(0);
    }
    outln(&format_services(&services, p.bool("tags")))?;
    Ok(0)
}

/// A node's instances folded into service name -> tags, as `/v1/catalog/services` shapes it.
fn services_of_node(node: Option<NodeServices>) -> BTreeMap<String, Vec<String>> {
    let mut services: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for svc in node.map(|n| n.services).unwrap_or_default().into_values() {
        services.entry(svc.service).or_default().extend(svc.tags);
    }
    services
}

/// `catalog services` output: names sorted, one per line; with `-tags`, each name padded
/// to the widest plus 6 (Consul's tabwriter) followed by its sorted tags, comma-separated.
/// No final newline.
pub(crate) fn format_services(services: &BTreeMap<String, Vec<String>>, tags: bool) -> String {
    let width = services
        .keys()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0)
        + 6;
    let lines: Vec<String> = services
        .iter()
        .map(|(name, service_tags)| {
            if tags {
                let mut sorted = service_tags.clone();
                sorted.sort();
                format!("{name:<width$}{}", sorted.join(","))
                    .trim_end()
                    .to_string()
            } else {
                name.clone()
            }
        })
        .collect();
    lines.join("\n")
}

async fn nodes(args: &[String]) -> anyhow::Result<i32> {
    let (p, client) = match setup(args, NODES_FLAGS, NODES_USAGE) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let query = match node_meta_query(&p) {
        Ok(q) => q,
        Err(e) => return fail(e),
    };
    let nodes: Vec<Node> = match p.value("service").filter(|s| !s.is_empty()) {
        Some(service) => {
            let path = format!("/v1/catalog/service/{}", escape_path(service));
            match client.get_json::<Vec<ServiceNode>>(&path, &query).await {
                Err(e) => return fail(format!("Error listing nodes for service: {e}")),
                Ok(found) => found
                    .unwrap_or_default()
                    .iter()
                    .map(node_of_instance)
                    .collect(),
            }
        }
        None => match client.get_json("/v1/catalog/nodes", &query).await {
            Err(e) => return fail(format!("Error listing nodes: {e}")),
            Ok(found) => found.unwrap_or_default(),
        },
    };
    if nodes.is_empty() {
        eprintln!("No nodes match the given query - try expanding your search.");
        return Ok(0);
    }
    outln(&format_nodes(&nodes, p.bool("detailed")))?;
    Ok(0)
}

/// The node half of a `/v1/catalog/service/:name` row. A node with two instances of the
/// service appears twice, as in Consul.
fn node_of_instance(row: &ServiceNode) -> Node {
    Node {
        id: row.id.clone(),
        node: row.node.clone(),
        address: row.address.clone(),
        datacenter: row.datacenter.clone(),
        tagged_addresses: row.tagged_addresses.clone(),
        meta: row.node_meta.clone(),
        ..Node::default()
    }
}

/// `catalog nodes` table: `Node ID Address DC`, the ID cut at its first `-` (the first
/// 8 characters of a UUID); `-detailed` keeps whole IDs and adds `TaggedAddresses` and `Meta`
/// as sorted `k=v` lists. No final newline.
pub(crate) fn format_nodes(nodes: &[Node], detailed: bool) -> String {
    let mut rows = Vec::with_capacity(nodes.len() + 1);
    if detailed {
        rows.push(
            ["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"]
                .map(String::from)
                .to_vec(),
        );
        for n in nodes {
            rows.push(vec![
                n.node.clone(),
                n.id.clone(),
                n.address.clone(),
                n.datacenter.clone(),
                map_to_kv(&n.tagged_addresses),
                map_to_kv(&n.meta),
            ]);
        }
    } else {
        rows.push(["Node", "ID", "Address", "DC"].map(String::from).to_vec());
        for n in nodes {
            let id = match n.id.find('-') {
                Some(dash) if dash > 0 => &n.id[..dash],
                _ => n.id.as_str(),
            };
            rows.push(vec![
                n.node.clone(),
                id.to_string(),
                n.address.clone(),
                n.datacenter.clone(),
            ]);
        }
    }
    columnize(&rows)
}

fn map_to_kv(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn datacenters(args: &[String]) -> anyhow::Result<i32> {
    let (_, client) = match setup(args, &[], DATACENTERS_USAGE) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    match client
        .get_json::<Vec<String>>("/v1/catalog/datacenters", &[])
        .await
    {
        Err(e) => fail(format!("Error listing datacenters: {e}")),
        Ok(found) => {
            for dc in found.unwrap_or_default() {
                outln(&dc)?;
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use concord_api::catalog::NodeService;

    use super::*;

    fn services() -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([
            ("consul".to_string(), vec![]),
            (
                "web".to_string(),
                vec!["v2".to_string(), "primary".to_string()],
            ),
            ("redis-cache".to_string(), vec!["v1".to_string()]),
        ])
    }

    #[test]
    fn services_sorted_with_optional_tags() {
        assert_eq!(
            format_services(&services(), false),
            "consul\nredis-cache\nweb"
        );
        assert_eq!(
            format_services(&services(), true),
            "consul\n\
             redis-cache      v1\n\
             web              primary,v2"
        );
    }

    #[test]
    fn node_services_fold_by_name() {
        let svc = |id: &str, name: &str, tags: &[&str]| NodeService {
            id: id.into(),
            service: name.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..NodeService::default()
        };
        let node = NodeServices {
            node: Node::default(),
            services: BTreeMap::from([
                ("web1".to_string(), svc("web1", "web", &["a"])),
                ("web2".to_string(), svc("web2", "web", &["b"])),
                ("db".to_string(), svc("db", "db", &[])),
            ]),
        };
        let folded = services_of_node(Some(node));
        assert_eq!(folded["web"], ["a", "b"]);
        assert!(folded["db"].is_empty());
        assert!(services_of_node(None).is_empty());
    }

    fn nodes() -> Vec<Node> {
        vec![
            Node {
                id: "7c8fe4e4-4e1a-6b2e-8f7a-1f2ad1c6e3b4".into(),
                node: "node-one".into(),
                address: "10.0.0.1".into(),
                datacenter: "dc1".into(),
                tagged_addresses: BTreeMap::from([
                    ("wan".to_string(), "1.2.3.4".to_string()),
                    ("lan".to_string(), "10.0.0.1".to_string()),
                ]),
                meta: BTreeMap::from([("env".to_string(), "prod".to_string())]),
                ..Node::default()
            },
            Node {
                id: String::new(),
                node: "external".into(),
                address: "192.168.100.200".into(),
                datacenter: "dc1".into(),
                ..Node::default()
            },
        ]
    }

    #[test]
    fn nodes_table_shortens_ids() {
        assert_eq!(
            format_nodes(&nodes(), false),
            "Node      ID        Address          DC\n\
             node-one  7c8fe4e4  10.0.0.1         dc1\n\
             external            192.168.100.200  dc1"
        );
    }

    #[test]
    fn detailed_nodes_show_everything() {
        assert_eq!(
            format_nodes(&nodes(), true),
            "Node      ID                                    Address          DC   \
             TaggedAddresses            Meta\n\
             node-one  7c8fe4e4-4e1a-6b2e-8f7a-1f2ad1c6e3b4  10.0.0.1         dc1  \
             lan=10.0.0.1, wan=1.2.3.4  env=prod\n\
             external                                        192.168.100.200  dc1"
        );
    }

    #[test]
    fn service_rows_become_nodes() {
        let row = ServiceNode {
            id: "id-1".into(),
            node: "n1".into(),
            address: "10.0.0.9".into(),
            datacenter: "dc1".into(),
            node_meta: BTreeMap::from([("k".to_string(), "v".to_string())]),
            service_name: "web".into(),
            ..ServiceNode::default()
        };
        let node = node_of_instance(&row);
        assert_eq!(
            (node.id.as_str(), node.node.as_str(), node.address.as_str()),
            ("id-1", "n1", "10.0.0.9")
        );
        assert_eq!(node.meta["k"], "v");
    }
}
