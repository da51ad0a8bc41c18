//! Built-in templated policies (`/v1/acl/templated-policies`): rule templates with a `Name`
//! variable. Service and node identities expand to `builtin/service` and `builtin/node`.

use serde::{Deserialize, Serialize};

use super::{AclTemplatedPolicy, TemplatedPolicyList};

/// `builtin/service`.
pub const SERVICE: &str = "builtin/service";
/// `builtin/node`.
pub const NODE: &str = "builtin/node";
/// `builtin/dns`.
pub const DNS: &str = "builtin/dns";

const SERVICE_TEMPLATE: &str = "service \"{{.Name}}\" {\n\tpolicy = \"write\"\n}\nservice \"{{.Name}}-sidecar-proxy\" {\n\tpolicy = \"write\"\n}\nservice_prefix \"\" {\n\tpolicy = \"read\"\n}\nnode_prefix \"\" {\n\tpolicy = \"read\"\n}";
const NODE_TEMPLATE: &str =
    "node \"{{.Name}}\" {\n\tpolicy = \"write\"\n}\nservice_prefix \"\" {\n\tpolicy = \"read\"\n}";
const DNS_TEMPLATE: &str = "node_prefix \"\" {\n\tpolicy = \"read\"\n}\nservice_prefix \"\" {\n\tpolicy = \"read\"\n}\nquery_prefix \"\" {\n\tpolicy = \"read\"\n}";

const NAME_SCHEMA: &str = "{\n\t\"type\": \"object\",\n\t\"properties\": {\n\t\t\"name\": { \"type\": \"string\", \"$ref\": \"#/definitions/min-length-one\" }\n\t},\n\t\"required\": [\"name\"],\n\t\"definitions\": {\n\t\t\"min-length-one\": {\n\t\t\t\t\"type\": \"string\",\n\t\t\t\t\"minLength\": 1\n\t\t}\n\t}\n}";

/// One templated policy as the API describes it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct TemplatedPolicyInfo {
    /// Name (`builtin/service`).
    pub template_name: String,
    /// JSON schema of its variables (empty: none).
    pub schema: String,
    /// The rules template.
    pub template: String,
    /// What it grants.
    pub description: String,
}

struct Builtin {
    name: &'static str,
    template: &'static str,
    needs_name: bool,
    description: &'static str,
}

const BUILTINS: [Builtin; 3] = [
    Builtin {
        name: SERVICE,
        template: SERVICE_TEMPLATE,
        needs_name: true,
        description: "Gives the token or role permissions to register a service and discover \
                      services in the Consul catalog. It also gives the specified service's \
                      sidecar proxy the permission to register and discover services in the \
                      Consul catalog.",
    },
    Builtin {
        name: NODE,
        template: NODE_TEMPLATE,
        needs_name: true,
        description: "Gives the token or role permissions for a register an agent/node into \
                      the catalog. A node is typically a consul agent but can also be a \
                      physical server, cloud instance or a container.",
    },
    Builtin {
        name: DNS,
        template: DNS_TEMPLATE,
        needs_name: false,
        description: "Gives the token or role permissions for the Consul DNS to query services \
                      in the network.",
    },
];

/// Every built-in templated policy, by name.
pub fn list() -> TemplatedPolicyList {
    BUILTINS
        .iter()
        .map(|b| (b.name.to_string(), info(b)))
        .collect()
}

/// One built-in templated policy.
pub fn get(name: &str) -> Option<TemplatedPolicyInfo> {
    BUILTINS.iter().find(|b| b.name == name).map(info)
}

fn info(b: &Builtin) -> TemplatedPolicyInfo {
    TemplatedPolicyInfo {
        template_name: b.name.to_string(),
        schema: if b.needs_name {
            NAME_SCHEMA.to_string()
        } else {
            String::new()
        },
        template: b.template.to_string(),
        description: b.description.to_string(),
    }
}

/// The rules a templated policy attachment stands for; an unknown template or a missing
/// `Name` is an error with Consul's text.
pub fn render(policy: &AclTemplatedPolicy) -> Result<String, String> {
    let Some(builtin) = BUILTINS.iter().find(|b| b.name == policy.template_name) else {
        return Err(format!(
            "templated policy {:?} does not exist",
            policy.template_name
        ));
    };
    let name = policy
        .template_variables
        .as_ref()
        .map(|v| v.name.as_str())
        .unwrap_or("");
    if builtin.needs_name && name.is_empty() {
        return Err(format!(
            "validation error for templated policy {:?}: name is required",
            builtin.name
        ));
    }
    Ok(builtin.template.replace("{{.Name}}", name))
}

/// The rules of a service identity (`builtin/service` for `service`).
pub fn service_rules(service: &str) -> String {
    SERVICE_TEMPLATE.replace("{{.Name}}", service)
}

/// The rules of a node identity (`builtin/node` for `node`).
pub fn node_rules(node: &str) -> String {
    NODE_TEMPLATE.replace("{{.Name}}", node)
}
