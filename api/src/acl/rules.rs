//! The rules language: a policy's `Rules`, in HCL or in JSON, parsed into [`Rules`].
//!
//! ```hcl
//! key_prefix "app/" { policy = "read" }
//! service "web" { policy = "write" intentions = "read" }
//! operator = "read"
//! ```
//!
//! JSON has the same shape (`{"key_prefix": {"app/": {"policy": "read"}}, ...}`), a block
//! kind's value being an object of labels or a list of such objects (HCL's JSON form).
//! Invalid input fails with Consul's texts (`acl/policy.go`: `Failed to parse ACL rules: ...`,
//! `Invalid key_prefix policy: ...`). Unknown keys are ignored, as Consul's decoder does.

use std::collections::BTreeMap;
use std::fmt;

/// A policy level as written in rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// `read`.
    Read,
    /// `list` (keys only): read plus recursive listing.
    List,
    /// `write`: everything.
    Write,
    /// `deny`: nothing, and no fallback.
    Deny,
}

impl Access {
    /// Parses `read|write|deny`, or `list` where `allow_list`.
    fn parse(s: &str, allow_list: bool) -> Option<Access> {
        match s {
            "read" => Some(Access::Read),
            "write" => Some(Access::Write),
            "deny" => Some(Access::Deny),
            "list" if allow_list => Some(Access::List),
            _ => None,
        }
    }

    /// Consul's `takesPrecedenceOver`, for rules on the same name: deny, then write, then
    /// list, then read.
    pub fn merge(self, other: Access) -> Access {
        self.max(other)
    }

    /// The rule's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::List => "list",
            Access::Write => "write",
            Access::Deny => "deny",
        }
    }
}

/// A resource named in rules by a label (`key "a/b"`, `service_prefix "web"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// KV keys.
    Key,
    /// Services (and, through `intentions`, intentions whose destination they are).
    Service,
    /// Catalog nodes.
    Node,
    /// Sessions, by the node they are on.
    Session,
    /// Agent endpoints, by the agent's node name.
    Agent,
    /// User events.
    Event,
    /// Prepared queries.
    Query,
}

impl Resource {
    /// Every named resource.
    pub const ALL: [Resource; 7] = [
        Resource::Key,
        Resource::Service,
        Resource::Node,
        Resource::Session,
        Resource::Agent,
        Resource::Event,
        Resource::Query,
    ];

    /// The exact-match block name (`key`); the prefix form adds `_prefix`.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Key => "key",
            Resource::Service => "service",
            Resource::Node => "node",
            Resource::Session => "session",
            Resource::Agent => "agent",
            Resource::Event => "event",
            Resource::Query => "query",
        }
    }

    // Consul's Go struct names and label fields, for its `%#v` error texts.
    fn go_shape(self) -> (&'static str, &'static str) {
        match self {
            Resource::Key => ("KeyRule", "Prefix"),
            Resource::Service => ("ServiceRule", "Name"),
            Resource::Node => ("NodeRule", "Name"),
            Resource::Session => ("SessionRule", "Node"),
            Resource::Agent => ("AgentRule", "Node"),
            Resource::Event => ("EventRule", "Event"),
            Resource::Query => ("PreparedQueryRule", "Prefix"),
        }
    }
}

/// A resource without names: one level for the whole cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Global {
    /// ACL management (`acl`).
    Acl,
    /// Cluster operations (`operator`).
    Operator,
    /// Mesh-wide configuration (`mesh`; falls back to `operator` when unset).
    Mesh,
    /// The gossip keyring (`keyring`).
    Keyring,
}

impl Global {
    /// The rule's key.
    pub fn as_str(self) -> &'static str {
        match self {
            Global::Acl => "acl",
            Global::Operator => "operator",
            Global::Mesh => "mesh",
            Global::Keyring => "keyring",
        }
    }
}

/// One labelled rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedRule {
    /// What it covers.
    pub resource: Resource,
    /// `_prefix` form: covers every name starting with `name`.
    pub prefix: bool,
    /// The label.
    pub name: String,
    /// The level.
    pub policy: Access,
    /// For services: the level on intentions whose destination this is (`None`: derived
    /// from `policy`, as Consul does).
    pub intentions: Option<Access>,
}

/// A parsed policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// Labelled rules, in the order written.
    pub named: Vec<NamedRule>,
    /// The unlabelled rules.
    pub global: BTreeMap<Global, Access>,
}

/// Rules that do not parse or name an invalid level; the text is Consul's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RulesError(pub String);

/// A parsed but not yet checked statement.
enum Entry {
    /// `key = "value"`.
    Attr(String, String),
    /// `kind "label" { field = "value" ... }`.
    Block(String, String, BTreeMap<String, String>),
}

impl Rules {
    /// Parses rules written in HCL or JSON (input starting with `{` is JSON). Empty input is
    /// an empty policy.
    pub fn parse(input: &str) -> Result<Rules, RulesError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Ok(Rules::default());
        }
        let entries = if trimmed.starts_with('{') {
            json_entries(trimmed)?
        } else {
            hcl_entries(trimmed)?
        };
        Rules::from_entries(entries)
    }

    fn from_entries(entries: Vec<Entry>) -> Result<Rules, RulesError> {
        let mut rules = Rules::default();
        for entry in entries {
            match entry {
                Entry::Attr(key, value) => {
                    let global = match key.as_str() {
                        "acl" => Global::Acl,
                        "operator" => Global::Operator,
                        "mesh" => Global::Mesh,
                        "keyring" => Global::Keyring,
                        // Unknown keys (`peering`, `partition`, ...) are ignored.
                        _ => continue,
                    };
                    let access = Access::parse(&value, false).ok_or_else(|| {
                        RulesError(format!("Invalid {} policy: {value:?}", global.as_str()))
                    })?;
                    let slot = rules.global.entry(global).or_insert(access);
                    *slot = slot.merge(access);
                }
                Entry::Block(kind, label, fields) => {
                    let (base, prefix) = match kind.strip_suffix("_prefix") {
                        Some(base) => (base, true),
                        None => (kind.as_str(), false),
                    };
                    let Some(resource) = Resource::ALL.into_iter().find(|r| r.as_str() == base)
                    else {
                        continue;
                    };
                    let policy_text = fields.get("policy").cloned().unwrap_or_default();
                    let intentions_text = fields.get("intentions").cloned().unwrap_or_default();
                    let invalid = |what: &str| {
                        let (go_type, label_field) = resource.go_shape();
                        let extra = if resource == Resource::Service {
                            format!(", Intentions:{intentions_text:?}")
                        } else {
                            String::new()
                        };
                        RulesError(format!(
                            "Invalid {kind}{what} policy: &acl.{go_type}{{{label_field}:{label:?}, \
                             Policy:{policy_text:?}{extra}}}"
                        ))
                    };
                    let policy = Access::parse(&policy_text, resource == Resource::Key)
                        .ok_or_else(|| invalid(""))?;
                    let intentions = match (resource, intentions_text.as_str()) {
                        (Resource::Service, "") => None,
                        (Resource::Service, text) => {
                            Some(Access::parse(text, false).ok_or_else(|| invalid(" intentions"))?)
                        }
                        _ => None,
                    };
                    rules.named.push(NamedRule {
                        resource,
                        prefix,
                        name: label,
                        policy,
                        intentions,
                    });
                }
            }
        }
        Ok(rules)
    }
}

fn parse_error(e: impl fmt::Display) -> RulesError {
    RulesError(format!("Failed to parse ACL rules: {e}"))
}

/// HCL: top-level attributes and blocks with one label whose bodies hold attributes.
fn hcl_entries(input: &str) -> Result<Vec<Entry>, RulesError> {
    let body = hcl::parse(input).map_err(parse_error)?;
    let mut entries = Vec::new();
    for structure in body.into_iter() {
        match structure {
            hcl::Structure::Attribute(attr) => {
                entries.push(Entry::Attr(
                    attr.key.to_string(),
                    hcl_string(&attr.key, &attr.expr)?,
                ));
            }
            hcl::Structure::Block(block) => {
                let kind = block.identifier.to_string();
                let [label] = block.labels.as_slice() else {
                    return Err(parse_error(format!(
                        "{kind}: a block takes exactly one label"
                    )));
                };
                let mut fields = BTreeMap::new();
                for inner in block.body.into_iter() {
                    match inner {
                        hcl::Structure::Attribute(attr) => {
                            let value = hcl_string(&attr.key, &attr.expr)?;
                            fields.insert(attr.key.to_string(), value);
                        }
                        // Consul's `sentinel` blocks are Enterprise-only: ignored.
                        hcl::Structure::Block(_) => {}
                    }
                }
                entries.push(Entry::Block(kind, label.as_str().to_string(), fields));
            }
        }
    }
    Ok(entries)
}

fn hcl_string(key: &hcl::Identifier, expr: &hcl::Expression) -> Result<String, RulesError> {
    match expr {
        hcl::Expression::String(s) => Ok(s.clone()),
        other => Err(parse_error(format!(
            "{key}: expected a string, got {other}"
        ))),
    }
}

/// JSON: `{"operator": "read", "key_prefix": {"a/": {"policy": "read"}}}`; a block kind may
/// also hold a list of such label objects.
fn json_entries(input: &str) -> Result<Vec<Entry>, RulesError> {
    let value: serde_json::Value = serde_json::from_str(input).map_err(parse_error)?;
    let serde_json::Value::Object(top) = value else {
        return Err(parse_error("expected an object"));
    };
    let mut entries = Vec::new();
    for (key, value) in top {
        match value {
            serde_json::Value::String(s) => entries.push(Entry::Attr(key, s)),
            serde_json::Value::Object(labels) => json_blocks(&key, labels, &mut entries)?,
            serde_json::Value::Array(items) => {
                for item in items {
                    let serde_json::Value::Object(labels) = item else {
                        return Err(parse_error(format!("{key}: expected an object")));
                    };
                    json_blocks(&key, labels, &mut entries)?;
                }
            }
            _ => {
                return Err(parse_error(format!(
                    "{key}: expected a string or an object"
                )))
            }
        }
    }
    Ok(entries)
}

fn json_blocks(
    kind: &str,
    labels: serde_json::Map<String, serde_json::Value>,
    entries: &mut Vec<Entry>,
) -> Result<(), RulesError> {
    for (label, body) in labels {
        let serde_json::Value::Object(body) = body else {
            return Err(parse_error(format!("{kind} {label:?}: expected an object")));
        };
        let mut fields = BTreeMap::new();
        for (field, value) in body {
            match value {
                serde_json::Value::String(s) => {
                    fields.insert(field, s);
                }
                serde_json::Value::Object(_) => {} // `sentinel`: Enterprise-only.
                _ => return Err(parse_error(format!("{field}: expected a string"))),
            }
        }
        entries.push(Entry::Block(kind.to_string(), label, fields));
    }
    Ok(())
}
