//! What a proxy serves: its service, public listener, local app and upstreams, read from
//! the proxy's registration (`/v1/agent/service/:id`, Consul's `AgentService` with a
//! `Proxy` block) or given on the command line (standalone mode).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;

use super::ControlError;

/// Where the public listener binds when the registration does not say.
const DEFAULT_BIND: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
/// Where the local app and upstream listeners are when not said: loopback.
const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// One proxy's job.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxySpec {
    /// The proxy's own service ID, when it is registered.
    pub proxy_id: Option<String>,
    /// The service this proxy fronts: its identity and the destination of intentions.
    pub service: String,
    /// The public (mTLS) listener; `None` for an outbound-only proxy.
    pub listen: Option<SocketAddr>,
    /// The local app inbound traffic goes to.
    pub local_app: Option<SocketAddr>,
    /// The inbound protocol (`Proxy.Config.protocol`, default `tcp`).
    pub protocol: String,
    /// The proxy's own `Proxy.Config` map (L7 options: access log, local request timeout).
    pub config: Value,
    /// One local listener per upstream.
    pub upstreams: Vec<UpstreamSpec>,
}

/// One upstream: a local listener that reaches a destination service.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamSpec {
    /// The destination service (`DestinationName`).
    pub destination: String,
    /// The local listener (`LocalBindAddress:LocalBindPort`, address 127.0.0.1 by default).
    pub bind: SocketAddr,
    /// `Config.protocol`, when the upstream overrides it.
    pub protocol: Option<String>,
    /// `Config.connect_timeout_ms`, when given (otherwise the chain's resolver decides).
    pub connect_timeout: Option<Duration>,
    /// The whole upstream `Config` (for the L7 policy: timeouts, retries, limits).
    pub config: Value,
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn port_field(v: &Value, key: &str) -> Option<u16> {
    v.get(key)
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
}

fn ip_or(text: Option<&str>, default: IpAddr, what: &str) -> Result<IpAddr, ControlError> {
    match text {
        None => Ok(default),
        Some(t) => t
            .parse()
            .map_err(|_| ControlError::Config(format!("{what} {t:?} is not an IP address"))),
    }
}

/// `Config.connect_timeout_ms` (a number or a numeric string).
fn timeout_ms(config: &Value) -> Option<Duration> {
    let v = config.get("connect_timeout_ms")?;
    let ms = v
        .as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))?;
    Some(Duration::from_millis(ms))
}

impl ProxySpec {
    /// Reads a `connect-proxy` registration (`/v1/agent/service/:id`).
    pub fn from_agent_service(svc: &Value) -> Result<ProxySpec, ControlError> {
        let id = str_field(svc, "ID").unwrap_or_default().to_string();
        if svc.get("Kind").and_then(Value::as_str) != Some("connect-proxy") {
            return Err(ControlError::Config(format!(
                "service {id:?} is not a connect-proxy"
            )));
        }
        let proxy = svc.get("Proxy").cloned().unwrap_or(Value::Null);
        let config = proxy.get("Config").cloned().unwrap_or(Value::Null);
        let service = str_field(&proxy, "DestinationServiceName")
            .ok_or_else(|| {
                ControlError::Config(format!("proxy {id:?} has no Proxy.DestinationServiceName"))
            })?
            .to_string();
        let bind_ip = ip_or(
            str_field(&config, "bind_address"),
            DEFAULT_BIND,
            "bind_address",
        )?;
        let listen = port_field(&config, "bind_port")
            .or_else(|| port_field(svc, "Port"))
            .map(|port| SocketAddr::new(bind_ip, port));
        let app_ip = ip_or(
            str_field(&proxy, "LocalServiceAddress"),
            LOOPBACK,
            "LocalServiceAddress",
        )?;
        let local_app = port_field(&proxy, "LocalServicePort").map(|p| SocketAddr::new(app_ip, p));
        let protocol = str_field(&config, "protocol").unwrap_or("tcp").to_string();
        let mut upstreams = Vec::new();
        for u in proxy
            .get("Upstreams")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let destination = str_field(u, "DestinationName").unwrap_or_default();
            if str_field(u, "DestinationType").is_some_and(|t| t != "service") {
                tracing::warn!(%destination, "upstream: only service destinations are supported; skipped");
                continue;
            }
            let Some(port) = port_field(u, "LocalBindPort") else {
                tracing::warn!(%destination, "upstream without LocalBindPort; skipped");
                continue;
            };
            if destination.is_empty() {
                return Err(ControlError::Config(
                    "an upstream has no DestinationName".to_string(),
                ));
            }
            let ip = ip_or(
                str_field(u, "LocalBindAddress"),
                LOOPBACK,
                "LocalBindAddress",
            )?;
            let config = u.get("Config").cloned().unwrap_or(Value::Null);
            upstreams.push(UpstreamSpec {
                destination: destination.to_string(),
                bind: SocketAddr::new(ip, port),
                protocol: str_field(&config, "protocol").map(str::to_string),
                connect_timeout: timeout_ms(&config),
                config,
            });
        }
        Ok(ProxySpec {
            proxy_id: Some(id),
            service,
            listen,
            local_app,
            protocol,
            config,
            upstreams,
        })
    }
}

/// Parses a standalone `-upstream` flag: `NAME:PORT` or `NAME:ADDR:PORT`.
pub fn parse_upstream_flag(text: &str) -> Result<UpstreamSpec, String> {
    let bad = || format!("invalid -upstream {text:?}: want NAME:PORT or NAME:ADDR:PORT");
    let (name, rest) = text.split_once(':').ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    let bind = match rest.parse::<u16>() {
        Ok(port) => SocketAddr::new(LOOPBACK, port),
        Err(_) => rest.parse::<SocketAddr>().map_err(|_| bad())?,
    };
    Ok(UpstreamSpec {
        destination: name.to_string(),
        bind,
        protocol: None,
        connect_timeout: None,
        config: Value::Null,
    })
}

/// The endpoint of a `/v1/health/connect/:service` row, if it has a usable address.
pub fn endpoint_of(row: &Value) -> Option<crate::model::Endpoint> {
    let svc = &row["Service"];
    let node = &row["Node"];
    let addr = str_field(svc, "Address").or_else(|| str_field(node, "Address"))?;
    let ip: IpAddr = addr.parse().ok()?;
    let port = port_field(svc, "Port")?;
    let service = if svc["Kind"] == "connect-proxy" {
        str_field(&svc["Proxy"], "DestinationServiceName")?
    } else {
        str_field(svc, "Service")?
    };
    Some(crate::model::Endpoint {
        id: format!(
            "{}/{}",
            str_field(node, "Node").unwrap_or_default(),
            str_field(svc, "ID").unwrap_or_default()
        )
        .into(),
        addr: SocketAddr::new(ip, port),
        service: service.into(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn reads_a_sidecar_registration() {
        let svc = json!({
            "Kind": "connect-proxy", "ID": "web-sidecar-proxy", "Service": "web-sidecar-proxy",
            "Port": 21000,
            "Proxy": {
                "DestinationServiceName": "web", "DestinationServiceID": "web",
                "LocalServicePort": 8080,
                "Config": {"protocol": "http"},
                "Upstreams": [
                    {"DestinationName": "db", "LocalBindPort": 9191,
                     "Config": {"connect_timeout_ms": 250}},
                    {"DestinationName": "cache", "LocalBindAddress": "127.0.0.2", "LocalBindPort": 9192},
                    {"DestinationName": "q", "DestinationType": "prepared_query", "LocalBindPort": 9193},
                ],
            },
        });
        let spec = ProxySpec::from_agent_service(&svc).unwrap();
        assert_eq!(spec.service, "web");
        assert_eq!(spec.listen, Some("0.0.0.0:21000".parse().unwrap()));
        assert_eq!(spec.local_app, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(spec.protocol, "http");
        assert_eq!(spec.upstreams.len(), 2);
        assert_eq!(spec.upstreams[0].bind, "127.0.0.1:9191".parse().unwrap());
        assert_eq!(
            spec.upstreams[0].connect_timeout,
            Some(Duration::from_millis(250))
        );
        assert_eq!(spec.upstreams[1].bind, "127.0.0.2:9192".parse().unwrap());

        let plain = json!({"ID": "web", "Service": "web", "Port": 1});
        assert!(ProxySpec::from_agent_service(&plain).is_err());
        let bad = json!({"Kind": "connect-proxy", "ID": "p", "Port": 1,
            "Proxy": {"DestinationServiceName": "web", "LocalServiceAddress": "nope"}});
        assert!(ProxySpec::from_agent_service(&bad)
            .unwrap_err()
            .to_string()
            .contains("LocalServiceAddress"));
    }

    #[test]
    fn upstream_flags() {
        let u = parse_upstream_flag("db:9191").unwrap();
        assert_eq!(
            (u.destination.as_str(), u.bind),
            ("db", "127.0.0.1:9191".parse().unwrap())
        );
        let u = parse_upstream_flag("db:10.0.0.1:9191").unwrap();
        assert_eq!(u.bind, "10.0.0.1:9191".parse().unwrap());
        for bad in ["db", ":1", "db:x", "db:70000"] {
            assert!(parse_upstream_flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints_from_health_rows() {
        let row = json!({
            "Node": {"Node": "n1", "Address": "10.0.0.5"},
            "Service": {"ID": "db-sidecar-proxy", "Kind": "connect-proxy", "Port": 21001,
                        "Address": "", "Proxy": {"DestinationServiceName": "db"}},
        });
        let e = endpoint_of(&row).unwrap();
        assert_eq!(&*e.id, "n1/db-sidecar-proxy");
        assert_eq!(e.addr, "10.0.0.5:21001".parse().unwrap());
        assert_eq!(&*e.service, "db");
        assert!(endpoint_of(&json!({"Node": {}, "Service": {}})).is_none());
    }
}
