//! Lenient request decoding, as Consul's Go `encoding/json` does it.
//!
//! Go matches JSON object keys to struct fields case-insensitively, and Consul's service and
//! check definitions also accept snake_case aliases (`enable_tag_override`,
//! `deregister_critical_service_after`, ...). Real clients and config files depend on both, so
//! before a request body reaches serde we rewrite every key to its canonical PascalCase name.
//! Keys *inside* user maps (`Meta`, `NodeMeta`, `Header`, `TaggedAddresses`, `Config`) are user
//! data and are left untouched.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Canonical wire names of every field a request body may carry.
const CANONICAL: &[&str] = &[
    "Address",
    "Args",
    "Behavior",
    "Body",
    "Check",
    "CheckID",
    "Checks",
    "Connect",
    "Datacenter",
    "Definition",
    "DeregisterCriticalServiceAfter",
    "DisableRedirects",
    "EnableTagOverride",
    "FailuresBeforeCritical",
    "FailuresBeforeWarning",
    "Flags",
    "GRPC",
    "GRPCUseTLS",
    "HTTP",
    "Header",
    "ID",
    "Index",
    "Interval",
    "KV",
    "Kind",
    "LockDelay",
    "Meta",
    "Method",
    "Name",
    "Node",
    "NodeChecks",
    "NodeMeta",
    "Notes",
    "Output",
    "OutputMaxSize",
    "Passing",
    "Port",
    "Proxy",
    "ScriptArgs",
    "Service",
    "ServiceChecks",
    "ServiceID",
    "ServiceName",
    "ServiceTags",
    "Session",
    "SkipNodeUpdate",
    "SocketPath",
    "Status",
    "SuccessBeforePassing",
    "TCP",
    "TCPUseTLS",
    "TLSServerName",
    "TLSSkipVerify",
    "TTL",
    "Tags",
    "TaggedAddresses",
    "Timeout",
    "Value",
    "Verb",
    "Warning",
    "Weights",
    "Namespace",
    "Partition",
    "Locality",
    "UDP",
    "H2PING",
    "AliasNode",
    "AliasService",
    "SidecarService",
    "Native",
    "DestinationServiceName",
    "DestinationServiceID",
    "LocalServiceAddress",
    "LocalServicePort",
    "Upstreams",
    "Mode",
    "Type",
    "Checks",
    "ServiceAddress",
    "ServicePort",
    "ServiceMeta",
    "ServiceKind",
    "ServiceWeights",
    "ServiceEnableTagOverride",
    "ServiceTaggedAddresses",
    "Config",
    "Region",
    "Zone",
    // Connect: `Proxy` and its `Upstreams`, `Connect.SidecarService` (their `Config` maps
    // stay user data).
    "Proxy",
    "DestinationName",
    "DestinationType",
    "DestinationNamespace",
    "DestinationPartition",
    "DestinationPeer",
    "LocalBindAddress",
    "LocalBindPort",
    "LocalBindSocketPath",
    "LocalServiceSocketPath",
    "CentrallyConfigured",
    "MeshGateway",
    "Expose",
    "Paths",
    "TransparentProxy",
    "OutboundListenerPort",
    "DialedDirectly",
    // ACL tokens, policies and roles (`/v1/acl/*`).
    "AccessorID",
    "SecretID",
    "Description",
    "Policies",
    "Roles",
    "ServiceIdentities",
    "NodeIdentities",
    "TemplatedPolicies",
    "TemplateName",
    "TemplateVariables",
    "Local",
    "ExpirationTime",
    "ExpirationTTL",
    "Rules",
    "Datacenters",
    "Token",
    "NodeName",
];

/// Fields whose value is a user map: its keys are data, not field names.
const OPAQUE_MAPS: &[&str] = &["Meta", "NodeMeta", "Header", "ServiceMeta", "Config"];

/// Fields whose value maps user keys to structs (`{"lan": {"address": .., "port": ..}}`):
/// the keys are data, the values' keys are field names.
const STRUCT_MAPS: &[&str] = &["TaggedAddresses", "ServiceTaggedAddresses"];

fn fold(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn canonical(key: &str) -> Option<&'static str> {
    let folded = fold(key);
    CANONICAL.iter().copied().find(|c| fold(c) == folded)
}

/// Rewrites object keys to canonical names, recursively, skipping user maps.
pub fn canonicalize(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (key, inner) in map {
                let name = canonical(&key).map(str::to_string).unwrap_or(key);
                let inner = match inner {
                    _ if OPAQUE_MAPS.contains(&name.as_str()) => inner,
                    Value::Object(map) if STRUCT_MAPS.contains(&name.as_str()) => {
                        Value::Object(map.into_iter().map(|(k, v)| (k, canonicalize(v))).collect())
                    }
                    other => canonicalize(other),
                };
                // `CheckID` and `ID` are aliases on check definitions; first one wins.
                out.entry(name).or_insert(inner);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonicalize).collect()),
        other => other,
    }
}

/// Go's `strconv.ParseBool`, which Consul uses for boolean query parameters and CLI flags
/// (clients send `true`, `1`, or Python's `True`).
pub fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A request body that is not valid JSON for the expected type.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// Decodes a request body leniently. An empty body decodes as `{}`.
pub fn decode_lenient<T: DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(|e| DecodeError(e.to_string()))?
    };
    serde_json::from_value(canonicalize(value)).map_err(|e| DecodeError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rewrites_case_and_snake_case_but_not_user_maps() {
        let input = json!({
            "name": "web",
            "enable_tag_override": true,
            "meta": {"some_key": "v", "NAME": "x"},
            "check": {"ttl": "10s", "deregister_critical_service_after": "1m"}
        });
        let out = canonicalize(input);
        assert_eq!(
            out,
            json!({
                "Name": "web",
                "EnableTagOverride": true,
                "Meta": {"some_key": "v", "NAME": "x"},
                "Check": {"TTL": "10s", "DeregisterCriticalServiceAfter": "1m"}
            })
        );
    }

    #[test]
    fn tagged_address_values_are_structs() {
        let input = json!({"tagged_addresses": {"lan": {"address": "10.0.0.1", "port": 80}, "Wan_X": "1.2.3.4"}});
        assert_eq!(
            canonicalize(input),
            json!({"TaggedAddresses": {"lan": {"Address": "10.0.0.1", "Port": 80}, "Wan_X": "1.2.3.4"}})
        );
    }

    #[test]
    fn unknown_keys_pass_through() {
        assert_eq!(canonicalize(json!({"weird": 1})), json!({"weird": 1}));
    }
}
