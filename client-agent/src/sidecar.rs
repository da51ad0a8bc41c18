//! `Connect.SidecarService`: a service registration that asks for its sidecar proxy in the
//! same request, expanded as Consul's `agent/sidecar_service.go` does.
//!
//! The parent keeps everything but the nested definition; the sidecar becomes a service of
//! its own, `<parent-id>-sidecar-proxy` of kind `connect-proxy`, with Consul's defaults
//! filled in (name, tags and meta of the parent, `Proxy.DestinationService*`,
//! `LocalServiceAddress` 127.0.0.1, `LocalServicePort` the parent's port), a port from the
//! sidecar range unless given, and, unless it brings its own checks, a TCP check on its
//! public port plus an alias check on the parent. Pure functions; the agent supplies the
//! ports already in use.

use std::ops::RangeInclusive;

use concord_api::agent::{CheckDefinition, ServiceDefinition};
use concord_api::duration::GoDuration;
use serde_json::{json, Map, Value};

/// What Consul appends to a parent's ID (and name) to name its sidecar.
pub const SIDECAR_SUFFIX: &str = "-sidecar-proxy";

/// The ID of the sidecar registered for the service `parent_id`.
pub fn sidecar_id(parent_id: &str) -> String {
    format!("{parent_id}{SIDECAR_SUFFIX}")
}

/// Takes `Connect.SidecarService` out of a registration: the parent as it is stored (its
/// `Connect` without the nested definition, dropped when nothing else is left) and the
/// nested definition, if any. Errors are Consul's 400 texts.
pub fn split(
    def: &ServiceDefinition,
) -> Result<(ServiceDefinition, Option<ServiceDefinition>), String> {
    let mut parent = def.clone();
    let Some(Value::Object(mut connect)) = parent.connect.take() else {
        parent.connect = def.connect.clone();
        return Ok((parent, None));
    };
    let nested = connect.remove("SidecarService");
    parent.connect = (!connect.is_empty()).then_some(Value::Object(connect.clone()));
    let Some(nested) = nested.filter(|v| !v.is_null()) else {
        return Ok((parent, None));
    };
    if def.kind.as_deref() == Some("connect-proxy") {
        return Err(
            "Invalid service: A SidecarService cannot be specified on a Connect proxy".into(),
        );
    }
    if connect.get("Native").and_then(Value::as_bool) == Some(true) {
        return Err(
            "Invalid service: A SidecarService cannot be specified for a Connect native service"
                .into(),
        );
    }
    let sidecar: ServiceDefinition = serde_json::from_value(nested)
        .map_err(|e| format!("Request decode failed: Connect.SidecarService: {e}"))?;
    if sidecar
        .connect
        .as_ref()
        .and_then(|c| c.get("SidecarService"))
        .is_some_and(|v| !v.is_null())
    {
        return Err("Invalid service: A SidecarService cannot have a nested SidecarService".into());
    }
    Ok((parent, Some(sidecar)))
}

/// The sidecar's port: the one it asked for, else the one its earlier registration got
/// (so re-registering or reloading keeps it stable), else the lowest port of `range` that
/// no other local service uses. `None` when the range is exhausted.
pub fn pick_port(
    asked: Option<u16>,
    previous: Option<u16>,
    used: &[u16],
    range: &RangeInclusive<u16>,
) -> Option<u16> {
    if let Some(port) = asked.filter(|p| *p > 0) {
        return Some(port);
    }
    if let Some(port) = previous.filter(|p| range.contains(p)) {
        return Some(port);
    }
    range.clone().find(|p| !used.contains(p))
}

/// The full sidecar definition for `parent` (as split off by [`split`]), on `port`, with
/// Consul's defaults.
pub fn complete(
    mut sidecar: ServiceDefinition,
    parent: &ServiceDefinition,
    parent_id: &str,
    port: u16,
) -> ServiceDefinition {
    sidecar.id = Some(sidecar_id(parent_id));
    if sidecar.name.is_empty() {
        sidecar.name = format!("{}{SIDECAR_SUFFIX}", parent.name);
    }
    sidecar.kind = Some("connect-proxy".into());
    sidecar.port = Some(port);
    if sidecar.tags.as_ref().is_none_or(Vec::is_empty) {
        sidecar.tags = parent.tags.clone().filter(|t| !t.is_empty());
    }
    if sidecar.meta.as_ref().is_none_or(|m| m.is_empty()) {
        sidecar.meta = parent.meta.clone().filter(|m| !m.is_empty());
    }
    let mut proxy = match sidecar.proxy.take() {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    set_default(&mut proxy, "DestinationServiceName", json!(parent.name));
    set_default(&mut proxy, "DestinationServiceID", json!(parent_id));
    if !proxy.contains_key("LocalServiceSocketPath") {
        set_default(&mut proxy, "LocalServiceAddress", json!("127.0.0.1"));
    }
    if proxy
        .get("LocalServicePort")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        == 0
    {
        proxy.insert("LocalServicePort".into(), json!(parent.port.unwrap_or(0)));
    }
    if let Some(Value::Array(upstreams)) = proxy.get_mut("Upstreams") {
        for upstream in upstreams.iter_mut().filter_map(Value::as_object_mut) {
            set_default(upstream, "DestinationType", json!("service"));
        }
    }
    sidecar.proxy = Some(Value::Object(proxy));
    let has_checks =
        sidecar.check.is_some() || sidecar.checks.as_ref().is_some_and(|c| !c.is_empty());
    if !has_checks {
        // Consul probes the sidecar where it listens: its own address, else the address it
        // reaches the local app on (a sidecar shares its app's network).
        let address = sidecar
            .address
            .clone()
            .filter(|a| !a.is_empty())
            .or_else(|| {
                sidecar
                    .proxy
                    .as_ref()
                    .and_then(|p| p.get("LocalServiceAddress"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "127.0.0.1".into());
        let host = if address.contains(':') {
            format!("[{address}]")
        } else {
            address
        };
        sidecar.checks = Some(vec![
            CheckDefinition {
                name: Some("Connect Sidecar Listening".into()),
                tcp: Some(format!("{host}:{port}")),
                interval: Some(GoDuration(std::time::Duration::from_secs(10))),
                ..CheckDefinition::default()
            },
            CheckDefinition {
                name: Some(format!("Connect Sidecar Aliasing {parent_id}")),
                alias_service: Some(parent_id.to_string()),
                ..CheckDefinition::default()
            },
        ]);
    }
    sidecar
}

fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    let empty = match map.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    };
    if empty {
        map.insert(key.to_string(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_api::decode::decode_lenient;

    fn def(json: &str) -> ServiceDefinition {
        decode_lenient(json.as_bytes()).unwrap()
    }

    #[test]
    fn expands_with_consuls_defaults() {
        let parent = def(
            r#"{"Name":"web","Port":8080,"Tags":["v1"],"Connect":{"SidecarService":
                {"Proxy":{"Upstreams":[{"DestinationName":"db","LocalBindPort":9191}]}}}}"#,
        );
        let (stored, nested) = split(&parent).unwrap();
        assert_eq!(stored.connect, None, "the nested definition is not stored");
        let sidecar = complete(nested.unwrap(), &stored, "web", 21000);
        assert_eq!(sidecar.id.as_deref(), Some("web-sidecar-proxy"));
        assert_eq!(sidecar.name, "web-sidecar-proxy");
        assert_eq!(sidecar.kind.as_deref(), Some("connect-proxy"));
        assert_eq!(sidecar.port, Some(21000));
        assert_eq!(sidecar.tags, Some(vec!["v1".to_string()]));
        let proxy = sidecar.proxy.unwrap();
        assert_eq!(proxy["DestinationServiceName"], "web");
        assert_eq!(proxy["DestinationServiceID"], "web");
        assert_eq!(proxy["LocalServiceAddress"], "127.0.0.1");
        assert_eq!(proxy["LocalServicePort"], 8080);
        assert_eq!(proxy["Upstreams"][0]["DestinationName"], "db");
        assert_eq!(proxy["Upstreams"][0]["DestinationType"], "service");
        let checks = sidecar.checks.unwrap();
        assert_eq!(checks[0].tcp.as_deref(), Some("127.0.0.1:21000"));
        assert_eq!(checks[0].name.as_deref(), Some("Connect Sidecar Listening"));
        assert_eq!(checks[1].alias_service.as_deref(), Some("web"));
        assert_eq!(
            checks[1].name.as_deref(),
            Some("Connect Sidecar Aliasing web")
        );
    }

    #[test]
    fn snake_case_and_given_values_are_kept() {
        let parent = def(
            r#"{"name":"api","id":"api-1","port":80,"connect":{"sidecar_service":{"port":21500,
                "proxy":{"local_service_port":81,"upstreams":[{"destination_name":"db",
                "local_bind_port":9000,"config":{"connect_timeout_ms":100}}]},
                "checks":[{"name":"own","ttl":"10s"}]}}}"#,
        );
        let (stored, nested) = split(&parent).unwrap();
        let nested = nested.unwrap();
        let port = pick_port(nested.port, None, &[], &(21000..=21255));
        let sidecar = complete(nested, &stored, "api-1", port.unwrap());
        assert_eq!(sidecar.id.as_deref(), Some("api-1-sidecar-proxy"));
        assert_eq!(sidecar.port, Some(21500));
        let proxy = sidecar.proxy.unwrap();
        assert_eq!(proxy["LocalServicePort"], 81);
        assert_eq!(proxy["DestinationServiceID"], "api-1");
        assert_eq!(proxy["Upstreams"][0]["LocalBindPort"], 9000);
        assert_eq!(
            proxy["Upstreams"][0]["Config"]["connect_timeout_ms"], 100,
            "Config is user data"
        );
        assert_eq!(
            sidecar.checks.unwrap().len(),
            1,
            "own checks replace the defaults"
        );
    }

    #[test]
    fn ports_are_reused_then_lowest_free() {
        let range = 21000..=21002;
        assert_eq!(pick_port(Some(9000), Some(21001), &[], &range), Some(9000));
        assert_eq!(pick_port(None, Some(21001), &[21001], &range), Some(21001));
        assert_eq!(pick_port(None, Some(80), &[21000], &range), Some(21001));
        assert_eq!(pick_port(None, None, &[21000, 21001, 21002], &range), None);
    }

    #[test]
    fn invalid_nestings_are_refused() {
        for (json, want) in [
            (
                r#"{"Name":"p","Kind":"connect-proxy","Port":1,"Proxy":{"DestinationServiceName":"x"},"Connect":{"SidecarService":{}}}"#,
                "on a Connect proxy",
            ),
            (
                r#"{"Name":"n","Connect":{"Native":true,"SidecarService":{}}}"#,
                "Connect native",
            ),
            (
                r#"{"Name":"n","Connect":{"SidecarService":{"Connect":{"SidecarService":{}}}}}"#,
                "nested SidecarService",
            ),
            (
                r#"{"Name":"n","Connect":{"SidecarService":{"Port":"x"}}}"#,
                "Request decode failed",
            ),
        ] {
            let err = split(&def(json)).unwrap_err();
            assert!(err.contains(want), "{json}: {err}");
        }
    }
}
