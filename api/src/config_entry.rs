//! Config entries (`/v1/config`): central, replicated service configuration, as Consul 1.9+
//! models it. Intentions live here too, as `service-intentions` entries (see
//! [`crate::intention`]).
//!
//! An entry travels as a JSON object with `Kind` and `Name`. [`ConfigEntry::from_json`]
//! decodes one by its kind and [`ConfigEntry::validate`] applies Consul's rules, with
//! Consul's error texts; fields this crate does not model are kept as given (`extra`) so a
//! round trip loses nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub mod error;

pub use crate::intention::{is_l7_protocol, ServiceIntentions, L7_PROTOCOLS};
pub use error::ConfigEntryError;

/// `service-defaults`.
pub const SERVICE_DEFAULTS: &str = "service-defaults";
/// `proxy-defaults`.
pub const PROXY_DEFAULTS: &str = "proxy-defaults";
/// `service-intentions`.
pub const SERVICE_INTENTIONS: &str = "service-intentions";
/// `service-resolver`.
pub const SERVICE_RESOLVER: &str = "service-resolver";
/// `service-splitter`.
pub const SERVICE_SPLITTER: &str = "service-splitter";
/// `service-router`.
pub const SERVICE_ROUTER: &str = "service-router";
/// The only name a `proxy-defaults` entry may have.
pub const PROXY_DEFAULTS_GLOBAL: &str = "global";

/// Every kind Concord stores, in Consul's documentation order.
pub const KINDS: [&str; 6] = [
    SERVICE_DEFAULTS,
    PROXY_DEFAULTS,
    SERVICE_INTENTIONS,
    SERVICE_RESOLVER,
    SERVICE_SPLITTER,
    SERVICE_ROUTER,
];

/// The canonical kind for `kind`, or Consul's refusal text.
pub fn parse_kind(kind: &str) -> Result<&'static str, ConfigEntryError> {
    KINDS
        .iter()
        .copied()
        .find(|k| *k == kind)
        .ok_or_else(|| ConfigEntryError(format!("invalid config entry kind: {kind}")))
}

fn invalid(msg: impl Into<String>) -> ConfigEntryError {
    ConfigEntryError(msg.into())
}

/// `service-defaults`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceDefaults {
    /// Service name.
    #[serde(default)]
    pub name: String,
    /// `tcp` (default), `http`, `http2`, `grpc`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// User metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// Fields not modelled here (Mode, MeshGateway, Expose, UpstreamConfig...), kept as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `proxy-defaults` (name `global`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ProxyDefaults {
    /// Always `global`.
    #[serde(default)]
    pub name: String,
    /// Opaque proxy configuration; `protocol` here is the mesh-wide default protocol.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
    /// User metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// Fields not modelled here, kept as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A resolver subset.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ResolverSubset {
    /// Filter expression over service instances.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter: String,
    /// Only instances with passing checks.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub only_passing: bool,
}

/// A resolver redirect.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ResolverRedirect {
    /// Service to redirect to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// Subset of that service.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_subset: String,
    /// Datacenter.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub datacenter: String,
}

/// A resolver failover policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ResolverFailover {
    /// Service to fail over to (default: the same).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// Subset to fail over to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_subset: String,
    /// Datacenters to try, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
}

/// `service-resolver`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceResolver {
    /// Service name.
    #[serde(default)]
    pub name: String,
    /// Subset used when none is asked for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_subset: String,
    /// Named subsets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subsets: BTreeMap<String, ResolverSubset>,
    /// Send traffic elsewhere instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<ResolverRedirect>,
    /// Subset name (or `*`) to failover policy.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failover: BTreeMap<String, ResolverFailover>,
    /// Go duration string.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub connect_timeout: String,
    /// User metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// Fields not modelled here (LoadBalancer, RequestTimeout...), kept as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One split of a splitter.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Split {
    /// Percentage (0..=100, two decimals).
    pub weight: f64,
    /// Target service (default: the splitter's).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// Target subset.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_subset: String,
    /// Fields not modelled here (RequestHeaders...), kept as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `service-splitter`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceSplitter {
    /// Service name.
    #[serde(default)]
    pub name: String,
    /// Splits; weights sum to 100.
    #[serde(default)]
    pub splits: Vec<Split>,
    /// User metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

/// Where a route sends matching requests.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RouteDestination {
    /// Target service (default: the router's).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// Target subset.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_subset: String,
    /// Fields not modelled here (PrefixRewrite, RequestTimeout, NumRetries...), kept as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One route of a router.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Route {
    /// Match criteria (`{"HTTP": {...}}`); absent matches everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#match: Option<Value>,
    /// Destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<RouteDestination>,
}

/// `service-router`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceRouter {
    /// Service name.
    #[serde(default)]
    pub name: String,
    /// Routes, first match wins.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// User metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

/// A decoded config entry of one of the [`KINDS`].
#[derive(Clone, Debug, PartialEq)]
pub enum ConfigEntry {
    /// `service-defaults`.
    ServiceDefaults(ServiceDefaults),
    /// `proxy-defaults`.
    ProxyDefaults(ProxyDefaults),
    /// `service-intentions`.
    ServiceIntentions(ServiceIntentions),
    /// `service-resolver`.
    ServiceResolver(ServiceResolver),
    /// `service-splitter`.
    ServiceSplitter(ServiceSplitter),
    /// `service-router`.
    ServiceRouter(ServiceRouter),
}

/// Finds `key` in `obj` case-insensitively (Go's JSON decoding does; HCL files often use
/// lower case).
fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.replace('_', "").eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Rewrites snake_case / lower-case keys to the PascalCase names this module uses, outside
/// user maps (`Meta`, `Config`, `LegacyMeta`), so HCL written either way decodes.
fn canonical_keys(value: Value, in_user_map: bool) -> Value {
    match value {
        Value::Object(obj) => Value::Object(
            obj.into_iter()
                .map(|(k, v)| {
                    if in_user_map {
                        return (k, v);
                    }
                    let key = canonical_key(&k);
                    let user = matches!(key.as_str(), "Meta" | "Config" | "LegacyMeta");
                    // A single HCL block (`Sources { ... }`) decodes as an object where a
                    // list is meant.
                    let v = match (key.as_str(), v) {
                        (
                            "Sources" | "Splits" | "Routes" | "Permissions" | "Header",
                            Value::Object(o),
                        ) => Value::Array(vec![Value::Object(o)]),
                        (_, v) => v,
                    };
                    (key, canonical_keys(v, user))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| canonical_keys(v, in_user_map))
                .collect(),
        ),
        other => other,
    }
}

/// Every field name this module knows, in its canonical spelling.
const KNOWN_KEYS: &[&str] = &[
    "Kind",
    "Name",
    "Protocol",
    "Meta",
    "Config",
    "Sources",
    "Action",
    "Permissions",
    "Precedence",
    "Type",
    "Description",
    "LegacyID",
    "LegacyMeta",
    "LegacyCreateTime",
    "LegacyUpdateTime",
    "HTTP",
    "PathExact",
    "PathPrefix",
    "PathRegex",
    "Methods",
    "Header",
    "Present",
    "Exact",
    "Prefix",
    "Suffix",
    "Regex",
    "Invert",
    "DefaultSubset",
    "Subsets",
    "Filter",
    "OnlyPassing",
    "Redirect",
    "Failover",
    "Service",
    "ServiceSubset",
    "Datacenter",
    "Datacenters",
    "ConnectTimeout",
    "Splits",
    "Weight",
    "Routes",
    "Match",
    "Destination",
    "Namespace",
    "Partition",
    "Peer",
    "CreateIndex",
    "ModifyIndex",
];

fn canonical_key(key: &str) -> String {
    let squashed = key.replace('_', "");
    KNOWN_KEYS
        .iter()
        .find(|k| k.eq_ignore_ascii_case(&squashed))
        .map_or_else(|| key.to_string(), |k| (*k).to_string())
}

impl ConfigEntry {
    /// Decodes an entry from its JSON object (keys as Consul spells them, or snake_case).
    /// Refuses a missing or unknown `Kind` with Consul's texts.
    pub fn from_json(value: Value) -> Result<ConfigEntry, ConfigEntryError> {
        let Value::Object(obj) = value else {
            return Err(invalid(
                "Request decoding failed: config entry must be an object",
            ));
        };
        let kind = match get_ci(&obj, "Kind") {
            Some(Value::String(k)) => k.clone(),
            _ => return Err(invalid("Request decoding failed: Payload does not contain a kind/Kind key at the top level")),
        };
        let kind = parse_kind(&kind)?;
        let mut obj = match canonical_keys(Value::Object(obj), false) {
            Value::Object(o) => o,
            _ => unreachable_object(),
        };
        obj.remove("Kind");
        // Indexes are the store's, never the caller's.
        obj.remove("CreateIndex");
        obj.remove("ModifyIndex");
        let value = Value::Object(obj);
        let decode_err = |e: serde_json::Error| invalid(format!("Request decoding failed: {e}"));
        Ok(match kind {
            SERVICE_DEFAULTS => {
                ConfigEntry::ServiceDefaults(serde_json::from_value(value).map_err(decode_err)?)
            }
            PROXY_DEFAULTS => {
                ConfigEntry::ProxyDefaults(serde_json::from_value(value).map_err(decode_err)?)
            }
            SERVICE_INTENTIONS => {
                ConfigEntry::ServiceIntentions(serde_json::from_value(value).map_err(decode_err)?)
            }
            SERVICE_RESOLVER => {
                ConfigEntry::ServiceResolver(serde_json::from_value(value).map_err(decode_err)?)
            }
            SERVICE_SPLITTER => {
                ConfigEntry::ServiceSplitter(serde_json::from_value(value).map_err(decode_err)?)
            }
            _ => ConfigEntry::ServiceRouter(serde_json::from_value(value).map_err(decode_err)?),
        })
    }

    /// The entry as Consul's JSON, with `Kind` first-class and without indexes.
    pub fn to_json(&self) -> Value {
        let body = match self {
            ConfigEntry::ServiceDefaults(e) => serde_json::to_value(e),
            ConfigEntry::ProxyDefaults(e) => serde_json::to_value(e),
            ConfigEntry::ServiceIntentions(e) => serde_json::to_value(e),
            ConfigEntry::ServiceResolver(e) => serde_json::to_value(e),
            ConfigEntry::ServiceSplitter(e) => serde_json::to_value(e),
            ConfigEntry::ServiceRouter(e) => serde_json::to_value(e),
        };
        // Plain structs of strings, numbers and maps with string keys always serialize.
        let mut obj = match body {
            Ok(Value::Object(o)) => o,
            _ => Map::new(),
        };
        obj.insert("Kind".into(), Value::String(self.kind().into()));
        Value::Object(obj)
    }

    /// The entry's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            ConfigEntry::ServiceDefaults(_) => SERVICE_DEFAULTS,
            ConfigEntry::ProxyDefaults(_) => PROXY_DEFAULTS,
            ConfigEntry::ServiceIntentions(_) => SERVICE_INTENTIONS,
            ConfigEntry::ServiceResolver(_) => SERVICE_RESOLVER,
            ConfigEntry::ServiceSplitter(_) => SERVICE_SPLITTER,
            ConfigEntry::ServiceRouter(_) => SERVICE_ROUTER,
        }
    }

    /// The entry's name.
    pub fn name(&self) -> &str {
        match self {
            ConfigEntry::ServiceDefaults(e) => &e.name,
            ConfigEntry::ProxyDefaults(e) => &e.name,
            ConfigEntry::ServiceIntentions(e) => &e.name,
            ConfigEntry::ServiceResolver(e) => &e.name,
            ConfigEntry::ServiceSplitter(e) => &e.name,
            ConfigEntry::ServiceRouter(e) => &e.name,
        }
    }

    /// Checks the entry on its own (Consul's `Normalize` + `Validate`). Rules that need
    /// other entries (L7 intentions need an HTTP protocol) are
    /// [`crate::intention::check_l7_allowed`]. Also normalizes: intention sources get their
    /// precedence and type and are sorted.
    pub fn validate(&mut self) -> Result<(), ConfigEntryError> {
        if self.name().is_empty() {
            return Err(invalid("Name is required"));
        }
        match self {
            ConfigEntry::ServiceDefaults(e) => {
                let p = e.protocol.to_ascii_lowercase();
                if !p.is_empty() && p != "tcp" && !is_l7_protocol(&p) {
                    return Err(invalid(format!(
                        "invalid protocol {:?}: must be one of tcp, http, http2, grpc",
                        e.protocol
                    )));
                }
                e.protocol = p;
                Ok(())
            }
            ConfigEntry::ProxyDefaults(e) => {
                if e.name != PROXY_DEFAULTS_GLOBAL {
                    return Err(invalid(format!(
                        "invalid name ({:?}), only {:?} is supported",
                        e.name, PROXY_DEFAULTS_GLOBAL
                    )));
                }
                Ok(())
            }
            ConfigEntry::ServiceIntentions(e) => crate::intention::normalize_entry(e),
            ConfigEntry::ServiceResolver(e) => {
                if !e.default_subset.is_empty() && !e.subsets.contains_key(&e.default_subset) {
                    return Err(invalid(format!(
                        "DefaultSubset {:?} is not a valid subset",
                        e.default_subset
                    )));
                }
                for key in e.failover.keys() {
                    if key != "*" && !e.subsets.contains_key(key) {
                        return Err(invalid(format!(
                            "Bad Failover[{key:?}]: not a valid subset"
                        )));
                    }
                }
                if let Some(r) = &e.redirect {
                    if !e.subsets.is_empty() || !e.failover.is_empty() {
                        return Err(invalid("Redirect and Subsets/Failover cannot both be set"));
                    }
                    if r.service.is_empty()
                        && r.service_subset.is_empty()
                        && r.datacenter.is_empty()
                    {
                        return Err(invalid("Redirect is empty"));
                    }
                }
                if !e.connect_timeout.is_empty()
                    && crate::duration::parse_duration(&e.connect_timeout).is_err()
                {
                    return Err(invalid(format!(
                        "invalid ConnectTimeout {:?}",
                        e.connect_timeout
                    )));
                }
                Ok(())
            }
            ConfigEntry::ServiceSplitter(e) => {
                if e.splits.is_empty() {
                    return Err(invalid("no splits configured"));
                }
                let mut sum = 0.0;
                for s in &e.splits {
                    if !(0.0..=100.0).contains(&s.weight) {
                        return Err(invalid(format!(
                            "split weight {} must be between 0 and 100",
                            s.weight
                        )));
                    }
                    sum += s.weight;
                }
                // Consul compares weights scaled to hundredths of a percent.
                if (sum * 100.0).round() as i64 != 10_000 {
                    return Err(invalid(format!(
                        "the sum of all split weights must be 100, not {sum}"
                    )));
                }
                Ok(())
            }
            ConfigEntry::ServiceRouter(e) => {
                for (i, route) in e.routes.iter().enumerate() {
                    let http = route
                        .r#match
                        .as_ref()
                        .and_then(|m| m.get("HTTP"))
                        .and_then(Value::as_object);
                    if let Some(http) = http {
                        let paths = ["PathExact", "PathPrefix", "PathRegex"]
                            .iter()
                            .filter(|k| {
                                http.get(**k)
                                    .and_then(Value::as_str)
                                    .is_some_and(|s| !s.is_empty())
                            })
                            .count();
                        if paths > 1 {
                            return Err(invalid(format!(
                                "Route[{i}] should only contain at most one of PathExact, PathPrefix, or PathRegex"
                            )));
                        }
                        if let Some(p) = http.get("PathExact").and_then(Value::as_str) {
                            if !p.is_empty() && !p.starts_with('/') {
                                return Err(invalid(format!(
                                    "Route[{i}] PathExact doesn't start with '/': {p:?}"
                                )));
                            }
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Whether this entry needs its service's protocol to be HTTP-aware (routers and
    /// splitters, and intentions with L7 permissions).
    pub fn needs_l7(&self) -> bool {
        match self {
            ConfigEntry::ServiceSplitter(_) | ConfigEntry::ServiceRouter(_) => true,
            ConfigEntry::ServiceIntentions(e) => {
                e.sources.iter().any(|s| !s.permissions.is_empty())
            }
            _ => false,
        }
    }
}

fn unreachable_object() -> Map<String, Value> {
    // canonical_keys maps an object to an object.
    Map::new()
}

/// A config entry as the servers store it: its JSON and its indexes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StoredConfigEntry {
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// The entry's JSON (Consul's shape, without indexes).
    pub body: Value,
    /// Index that created it.
    pub create_index: u64,
    /// Index of its last change.
    pub modify_index: u64,
}

impl StoredConfigEntry {
    /// The entry as the HTTP API returns it (with `CreateIndex`/`ModifyIndex`).
    pub fn to_api_json(&self) -> Value {
        with_indexes(self.body.clone(), self.create_index, self.modify_index)
    }

    /// Decodes the stored JSON (it was validated on write).
    pub fn decode(&self) -> Result<ConfigEntry, ConfigEntryError> {
        ConfigEntry::from_json(self.body.clone())
    }
}

/// A stored entry as the API returns it: the entry's JSON plus `CreateIndex`/`ModifyIndex`.
pub fn with_indexes(mut body: Value, create_index: u64, modify_index: u64) -> Value {
    if let Value::Object(obj) = &mut body {
        obj.insert("CreateIndex".into(), create_index.into());
        obj.insert("ModifyIndex".into(), modify_index.into());
    }
    body
}

/// The protocol a service speaks: its `service-defaults` Protocol, else `proxy-defaults`
/// `Config.protocol`, else `tcp` (Consul's resolution order).
pub fn effective_protocol(
    service_defaults: Option<&ServiceDefaults>,
    proxy_defaults: Option<&ProxyDefaults>,
) -> String {
    if let Some(p) = service_defaults
        .map(|d| d.protocol.as_str())
        .filter(|p| !p.is_empty())
    {
        return p.to_string();
    }
    proxy_defaults
        .and_then(|d| d.config.get("protocol"))
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map_or_else(|| "tcp".to_string(), str::to_ascii_lowercase)
}

/// Merges central config into a proxy's `Proxy` block, as Consul's `?merge-central-config`
/// does for `connect-proxy` and gateway services: `proxy-defaults` `Config`, then the
/// destination's `service-defaults` `Protocol`, under the instance's own values (which
/// win); `Mode`, `MeshGateway`, `Expose`, `TransparentProxy` from the entries when the
/// instance leaves them unset. Other kinds are left as they are.
pub fn merge_central_config(
    kind: &str,
    proxy: &mut Option<Value>,
    service_defaults: Option<&ServiceDefaults>,
    proxy_defaults: Option<&ProxyDefaults>,
) {
    if kind.is_empty() || kind == "typical" {
        return;
    }
    let mut block = match proxy.take() {
        Some(Value::Object(o)) => o,
        _ => Map::new(),
    };
    let mut config = match block.remove("Config") {
        Some(Value::Object(o)) => o,
        _ => Map::new(),
    };
    let mut central = proxy_defaults.map(|d| d.config.clone()).unwrap_or_default();
    if let Some(p) = service_defaults
        .map(|d| &d.protocol)
        .filter(|p| !p.is_empty())
    {
        central.insert("protocol".into(), Value::String(p.clone()));
    }
    for (k, v) in central {
        config.entry(k).or_insert(v);
    }
    block.insert("Config".into(), Value::Object(config));
    for field in ["Mode", "MeshGateway", "Expose", "TransparentProxy"] {
        let unset = block.get(field).is_none_or_empty();
        if unset {
            let from = service_defaults
                .and_then(|d| d.extra.get(field))
                .or_else(|| proxy_defaults.and_then(|d| d.extra.get(field)));
            if let Some(v) = from {
                block.insert(field.into(), v.clone());
            }
        }
    }
    *proxy = Some(Value::Object(block));
}

/// Whether an optional JSON value carries nothing (absent, null, `""`, `{}`).
trait NoneOrEmpty {
    fn is_none_or_empty(&self) -> bool;
}

impl NoneOrEmpty for Option<&Value> {
    fn is_none_or_empty(&self) -> bool {
        match self {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(Value::Object(o)) => o.is_empty(),
            Some(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_kind_is_refused_with_consuls_text() {
        let err = ConfigEntry::from_json(json!({"Kind": "bogus", "Name": "x"})).unwrap_err();
        assert_eq!(err.0, "invalid config entry kind: bogus");
        assert!(ConfigEntry::from_json(json!({"Name": "x"})).is_err());
    }

    #[test]
    fn snake_case_and_lower_case_keys_decode() {
        let e = ConfigEntry::from_json(json!({"kind": "service-defaults", "name": "db", "protocol": "HTTP", "meta": {"k_x": "v"}})).unwrap();
        let ConfigEntry::ServiceDefaults(mut d) = e else {
            panic!("kind")
        };
        assert_eq!(d.name, "db");
        assert_eq!(d.meta.get("k_x").map(String::as_str), Some("v"));
        let mut e = ConfigEntry::ServiceDefaults(d.clone());
        e.validate().unwrap();
        let ConfigEntry::ServiceDefaults(v) = e else {
            panic!("kind")
        };
        d.protocol = "http".into();
        assert_eq!(v, d);
    }

    #[test]
    fn validation_rules() {
        let check = |v: Value| ConfigEntry::from_json(v).and_then(|mut e| e.validate());
        assert!(check(json!({"Kind": "proxy-defaults", "Name": "global"})).is_ok());
        assert!(check(json!({"Kind": "proxy-defaults", "Name": "other"})).is_err());
        assert!(check(json!({"Kind": "service-defaults", "Name": ""})).is_err());
        assert!(
            check(json!({"Kind": "service-defaults", "Name": "a", "Protocol": "udp"})).is_err()
        );
        assert!(check(json!({"Kind": "service-splitter", "Name": "a", "Splits": [{"Weight": 50}, {"Weight": 50, "Service": "b"}]})).is_ok());
        assert!(check(json!({"Kind": "service-splitter", "Name": "a", "Splits": [{"Weight": 50}, {"Weight": 40}]})).is_err());
        assert!(check(json!({"Kind": "service-resolver", "Name": "a", "DefaultSubset": "v1", "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"}}})).is_ok());
        assert!(
            check(json!({"Kind": "service-resolver", "Name": "a", "DefaultSubset": "v2"})).is_err()
        );
        assert!(check(json!({"Kind": "service-router", "Name": "a", "Routes": [{"Match": {"HTTP": {"PathPrefix": "/a", "PathExact": "/b"}}}]})).is_err());
    }

    #[test]
    fn round_trip_keeps_unmodelled_fields() {
        let v = json!({"Kind": "service-defaults", "Name": "db", "Protocol": "http", "MeshGateway": {"Mode": "local"}});
        let e = ConfigEntry::from_json(v.clone()).unwrap();
        assert_eq!(e.to_json(), v);
    }

    #[test]
    fn central_config_merges_under_the_instances_own() {
        let sd = ServiceDefaults {
            name: "web".into(),
            protocol: "http".into(),
            ..Default::default()
        };
        let mut pd = ProxyDefaults {
            name: "global".into(),
            ..Default::default()
        };
        pd.config.insert("protocol".into(), json!("tcp"));
        pd.config
            .insert("local_connect_timeout_ms".into(), json!(1000));
        pd.extra
            .insert("MeshGateway".into(), json!({"Mode": "local"}));
        let mut proxy = Some(
            json!({"DestinationServiceName": "web", "Config": {"local_connect_timeout_ms": 5}}),
        );
        merge_central_config("connect-proxy", &mut proxy, Some(&sd), Some(&pd));
        assert_eq!(
            proxy,
            Some(
                json!({"DestinationServiceName": "web", "MeshGateway": {"Mode": "local"},
                "Config": {"local_connect_timeout_ms": 5, "protocol": "http"}})
            )
        );
        let mut none = None;
        merge_central_config("", &mut none, Some(&sd), Some(&pd));
        assert_eq!(none, None);
    }

    #[test]
    fn protocol_resolution() {
        let sd = ServiceDefaults {
            name: "a".into(),
            protocol: "grpc".into(),
            ..Default::default()
        };
        let mut pd = ProxyDefaults {
            name: "global".into(),
            ..Default::default()
        };
        pd.config.insert("protocol".into(), json!("http"));
        assert_eq!(effective_protocol(Some(&sd), Some(&pd)), "grpc");
        assert_eq!(effective_protocol(None, Some(&pd)), "http");
        assert_eq!(effective_protocol(None, None), "tcp");
    }
}
