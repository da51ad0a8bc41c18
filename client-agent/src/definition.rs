//! Turning user-supplied service and check definitions into the records the agent keeps,
//! with Consul's defaults and validation messages. Pure functions, table-tested.

use std::time::Duration;

use concord_api::agent::{CheckDefinition, ServiceDefinition};
use concord_api::catalog::{CheckStatus, HealthCheck, HealthCheckDefinition, NodeService, Weights};

use crate::checks::CheckSpec;

/// A check ready to register: the record, how to run it, and its reaping delay.
#[derive(Debug, Clone)]
pub struct PreparedCheck {
    /// The check as the catalog will see it.
    pub check: HealthCheck,
    /// How the agent runs it.
    pub spec: CheckSpec,
    /// `DeregisterCriticalServiceAfter`.
    pub deregister_critical_after: Option<Duration>,
    /// The check's own `OutputMaxSize` (`None`: 0 or absent, the agent's limit applies).
    pub output_max_size: Option<usize>,
}

/// A validated service registration.
#[derive(Debug, Clone)]
pub struct PreparedService {
    /// The service record.
    pub service: NodeService,
    /// Its checks.
    pub checks: Vec<PreparedCheck>,
}

/// Most metadata pairs a service may carry (Consul's limit).
const MAX_META_PAIRS: usize = 64;
/// Longest metadata key.
const MAX_META_KEY: usize = 128;
/// Longest metadata value.
const MAX_META_VALUE: usize = 512;

/// Validates a service definition and applies Consul's defaults. Errors are the 400 body.
/// `allow_scripts` says whether this agent runs script checks (`enable_script_checks`).
pub fn prepare_service(
    def: &ServiceDefinition,
    node: &str,
    allow_scripts: bool,
) -> Result<PreparedService, String> {
    if def.name.is_empty() {
        return Err("Missing service name".to_string());
    }
    if let Some(ns) = def.namespace.as_deref() {
        if !ns.is_empty() && ns != "default" {
            return Err(format!("Invalid namespace \"{ns}\""));
        }
    }
    let id = def
        .id
        .clone()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| def.name.clone());
    let address = def.address.clone().unwrap_or_default();
    if address == "0.0.0.0" || address == "::" || address == "[::]" {
        return Err("Invalid service address".to_string());
    }
    let meta = def.meta.clone().unwrap_or_default();
    validate_meta(&meta).map_err(|e| format!("Invalid Service Meta: {e}"))?;
    let weights = def.weights.unwrap_or_default();
    if weights.passing == 0 {
        return Err("Invalid Weights: Passing must be greater than 0".to_string());
    }
    let kind = def.kind.clone().unwrap_or_default();
    match kind.as_str() {
        "" => {}
        "connect-proxy" => {
            let dest = def
                .proxy
                .as_ref()
                .and_then(|p| p.get("DestinationServiceName"))
                .and_then(|v| v.as_str())
                .unwrap_or("");
            if dest.is_empty() {
                return Err(
                    "Validation failed: Proxy.DestinationServiceName must be set".to_string(),
                );
            }
            if def.port.unwrap_or(0) == 0 {
                return Err("Validation failed: Port must be set for a Connect proxy".to_string());
            }
        }
        "mesh-gateway" | "terminating-gateway" | "ingress-gateway" | "api-gateway" => {}
        other => return Err(format!("Invalid service kind: \"{other}\"")),
    }
    let service = NodeService {
        id: id.clone(),
        service: def.name.clone(),
        tags: def.tags.clone().unwrap_or_default(),
        address,
        tagged_addresses: def.tagged_addresses.clone().unwrap_or_default(),
        meta,
        port: def.port.unwrap_or(0),
        weights: Weights {
            passing: weights.passing,
            warning: weights.warning,
        },
        enable_tag_override: def.enable_tag_override.unwrap_or(false),
        kind,
        proxy: def.proxy.clone(),
        connect: def.connect.clone(),
        ..NodeService::default()
    };
    let mut defs: Vec<&CheckDefinition> = Vec::new();
    if let Some(c) = &def.check {
        defs.push(c);
    }
    if let Some(cs) = &def.checks {
        defs.extend(cs.iter());
    }
    let many = defs.len() > 1;
    let mut checks = Vec::with_capacity(defs.len());
    for (i, c) in defs.into_iter().enumerate() {
        let default_id = if many {
            format!("service:{id}:{}", i + 1)
        } else {
            format!("service:{id}")
        };
        let mut prepared = prepare_check(c, node, Some(&default_id), allow_scripts)?;
        if prepared.check.name.is_empty() {
            prepared.check.name = format!("Service '{}' check", def.name);
        }
        attach_to_service(&mut prepared.check, &service);
        checks.push(prepared);
    }
    Ok(PreparedService { service, checks })
}

/// Copies the owning service's identity into a check, as the catalog shows it.
pub fn attach_to_service(check: &mut HealthCheck, service: &NodeService) {
    check.service_id = service.id.clone();
    check.service_name = service.service.clone();
    check.service_tags = service.tags.clone();
}

/// Validates a check definition. `default_id` is used when the definition has no ID
/// (service checks); standalone checks default to their name.
pub fn prepare_check(
    def: &CheckDefinition,
    node: &str,
    default_id: Option<&str>,
    allow_scripts: bool,
) -> Result<PreparedCheck, String> {
    let status = match def.status.as_deref() {
        None | Some("") => CheckStatus::Critical,
        Some(s) => CheckStatus::parse(s)
            .ok_or_else(|| "Status for checks must 'passing', 'warning', 'critical'".to_string())?,
    };
    let spec = CheckSpec::from_definition(def).map_err(|e| format!("Invalid check: {e}"))?;
    if spec.is_script() && !allow_scripts {
        return Err(format!(
            "Invalid check: {}",
            crate::checks::InvalidCheck::ScriptDisabled
        ));
    }
    if let crate::checks::CheckSpec::Alias(alias) = &spec {
        if !alias.node.is_empty() && alias.node != node {
            // The agent computes aliases from its own state; another node's health would
            // need a watch on the catalog per alias.
            return Err(format!(
                "Invalid check: alias checks of another node ({:?}) are not supported yet",
                alias.node
            ));
        }
    }
    let name = def.name.clone().unwrap_or_default();
    let id = def
        .id
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| def.check_id.clone().filter(|s| !s.is_empty()))
        .or_else(|| default_id.map(str::to_string))
        .unwrap_or_else(|| name.clone());
    let definition = HealthCheckDefinition {
        http: def.http.clone().unwrap_or_default(),
        method: def.method.clone().unwrap_or_default(),
        header: def.header.clone().unwrap_or_default(),
        body: def.body.clone().unwrap_or_default(),
        tcp: def.tcp.clone().unwrap_or_default(),
        interval: def.interval,
        timeout: def.timeout,
        ttl: def.ttl,
        deregister_critical_service_after: def.deregister_critical_service_after,
        alias_node: def.alias_node.clone().unwrap_or_default(),
        alias_service: def.alias_service.clone().unwrap_or_default(),
    };
    let check = HealthCheck {
        node: node.to_string(),
        check_id: id,
        name,
        status,
        notes: def.notes.clone().unwrap_or_default(),
        r#type: spec.check_type().to_string(),
        definition,
        ..HealthCheck::default()
    };
    Ok(PreparedCheck {
        check,
        spec,
        deregister_critical_after: def
            .deregister_critical_service_after
            .map(|d| d.get())
            .filter(|d| !d.is_zero()),
        // Negative was refused above; a size past `usize` is no limit at all.
        output_max_size: def
            .output_max_size
            .filter(|n| *n > 0)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
    })
}

fn validate_meta(meta: &std::collections::BTreeMap<String, String>) -> Result<(), String> {
    if meta.len() > MAX_META_PAIRS {
        return Err(format!(
            "Node metadata cannot contain more than {MAX_META_PAIRS} key/value pairs"
        ));
    }
    for (k, v) in meta {
        if k.is_empty() {
            return Err("Key cannot be blank".to_string());
        }
        if k.len() > MAX_META_KEY {
            return Err(format!(
                "Key is too long (limit: {MAX_META_KEY} characters)"
            ));
        }
        if !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!("Key contains invalid characters: {k}"));
        }
        if k.starts_with("consul-") {
            return Err(format!(
                "Key prefix 'consul-' is reserved for internal use: {k}"
            ));
        }
        if v.len() > MAX_META_VALUE {
            return Err(format!(
                "Value is too long (limit: {MAX_META_VALUE} characters)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_api::decode::decode_lenient;

    fn def(json: &str) -> ServiceDefinition {
        decode_lenient(json.as_bytes()).unwrap()
    }

    #[test]
    fn defaults_follow_consul() {
        let p = prepare_service(
            &def(r#"{"name":"web","port":80,"check":{"ttl":"10s"}}"#),
            "n1",
            false,
        )
        .unwrap();
        assert_eq!(p.service.id, "web");
        assert_eq!(p.service.weights, Weights::default());
        assert_eq!(p.checks.len(), 1);
        let c = &p.checks[0].check;
        assert_eq!(c.check_id, "service:web");
        assert_eq!(c.name, "Service 'web' check");
        assert_eq!(c.status, CheckStatus::Critical);
        assert_eq!(c.r#type, "ttl");
        assert_eq!(c.service_name, "web");
    }

    #[test]
    fn several_checks_are_numbered() {
        let p = prepare_service(
            &def(r#"{"Name":"web","Check":{"TTL":"10s"},"Checks":[{"TTL":"5s"}]}"#),
            "n1",
            false,
        )
        .unwrap();
        let ids: Vec<_> = p.checks.iter().map(|c| c.check.check_id.as_str()).collect();
        assert_eq!(ids, ["service:web:1", "service:web:2"]);
    }

    #[test]
    fn invalid_definitions_are_rejected_with_consul_messages() {
        let cases = [
            (r#"{"Port":80}"#, "Missing service name"),
            (
                r#"{"Name":"w","Address":"0.0.0.0"}"#,
                "Invalid service address",
            ),
            (
                r#"{"Name":"w","Meta":{"consul-x":"y"}}"#,
                "Invalid Service Meta",
            ),
            (
                r#"{"Name":"w","Weights":{"Passing":0,"Warning":1}}"#,
                "Invalid Weights",
            ),
            (
                r#"{"Name":"w","Check":{"TTL":"10s","Status":"bogus"}}"#,
                "Status for checks",
            ),
            (
                r#"{"Name":"w","Check":{"TTL":"10s","Interval":"5s"}}"#,
                "Invalid check",
            ),
            (
                r#"{"Name":"w","Kind":"connect-proxy","Port":1}"#,
                "Validation failed",
            ),
        ];
        for (json, want) in cases {
            let err = prepare_service(&def(json), "n", false).unwrap_err();
            assert!(err.starts_with(want), "{json}: got {err:?}");
        }
    }

    #[test]
    fn script_checks_need_the_agent_to_allow_them() {
        let d: CheckDefinition =
            decode_lenient(br#"{"Name":"s","Args":["/bin/true"],"Interval":"10s"}"#).unwrap();
        assert!(prepare_check(&d, "n1", None, false).is_err());
        let p = prepare_check(&d, "n1", None, true).unwrap();
        assert_eq!(p.check.r#type, "script");
    }

    #[test]
    fn standalone_check_defaults_id_to_name() {
        let d: CheckDefinition = decode_lenient(br#"{"Name":"mem","TTL":"30s"}"#).unwrap();
        let p = prepare_check(&d, "n1", None, false).unwrap();
        assert_eq!(p.check.check_id, "mem");
        let d: CheckDefinition =
            decode_lenient(br#"{"Name":"mem","CheckID":"m1","TTL":"30s"}"#).unwrap();
        assert_eq!(
            prepare_check(&d, "n1", None, false).unwrap().check.check_id,
            "m1"
        );
    }
}
