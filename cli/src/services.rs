//! `concord services register|deregister`: Consul's `consul services` commands, registering
//! with the local agent from JSON definition files or flags.

use std::path::Path;

use concord_api::agent::ServiceDefinition;
use concord_api::decode::canonicalize;
use serde_json::{Map, Value};

use crate::flags::{flag, parse_or_usage, split_key_value, Flag, Kind};
use crate::http::{escape_path, HttpClient};
use crate::output::{fail, outln};

const USAGE: &str = "Usage: concord services <subcommand> [options] [args]

  Registers and deregisters services with the local agent.

Subcommands:
    deregister    Deregister services with the local agent
    register      Register services with the local agent";

const REGISTER_USAGE: &str = "Usage: concord services register [options] [FILE...]

  Registers the services defined in each JSON FILE, or the one service the flags
  describe. A file holds {\"Service\": {...}}, {\"Services\": [...]} or a bare service
  definition. HCL files are not supported yet.

  -address=<addr>       Address of the service.
  -id=<id>              ID of the service (default: the name).
  -meta=<key=value>     Metadata (repeatable).
  -name=<name>          Name of the service.
  -port=<port>          Port of the service.
  -tag=<tag>            Tag (repeatable).";

const DEREGISTER_USAGE: &str = "Usage: concord services deregister [options] [FILE...]

  Deregisters the services defined in each FILE, or the one with -id.

  -id=<id>              ID of the service to deregister.";

const REGISTER_FLAGS: &[Flag] = &[
    flag("address", Kind::Str),
    flag("id", Kind::Str),
    flag("meta", Kind::List),
    flag("name", Kind::Str),
    flag("port", Kind::Uint),
    flag("tag", Kind::List),
];

const DEREGISTER_FLAGS: &[Flag] = &[flag("id", Kind::Str)];

/// Runs `concord services <subcommand> ...`; returns the exit code.
pub(crate) async fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let Some((sub, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return Ok(1);
    };
    match sub.as_str() {
        "register" => register(rest).await,
        "deregister" => deregister(rest).await,
        "-h" | "-help" | "--help" => {
            eprintln!("{USAGE}");
            Ok(0)
        }
        other => fail(format!("Unknown subcommand: services {other}\n\n{USAGE}")),
    }
}

/// A service to register: the definition as sent (canonical key names, unknown fields kept
/// for the agent to judge) and the name to report.
#[derive(Debug, PartialEq)]
pub(crate) struct ServiceBody {
    /// Request body for `/v1/agent/service/register`.
    pub(crate) body: Value,
    /// `Name`.
    pub(crate) name: String,
    /// `ID`, or the name when unset (what deregistration needs).
    pub(crate) id: String,
}

async fn register(args: &[String]) -> anyhow::Result<i32> {
    let p = match parse_or_usage(args, REGISTER_FLAGS, REGISTER_USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let name = p.value_or("name", "");
    if p.args.is_empty() && name.is_empty() {
        return fail("Service registration requires at least one argument or flags.");
    }
    if !p.args.is_empty() && !name.is_empty() {
        return fail("Service registration requires arguments or -id, not both.");
    }
    let services = if p.args.is_empty() {
        let port = match u16::try_from(p.uint("port")) {
            Ok(port) => port,
            Err(_) => return fail(format!("Error: invalid port {}", p.uint("port"))),
        };
        let flags = ServiceFlags {
            name,
            id: p.value_or("id", ""),
            address: p.value_or("address", ""),
            port,
            tags: p.list("tag"),
            meta: p.list("meta"),
        };
        match service_from_flags(&flags) {
            Ok(s) => vec![s],
            Err(e) => return fail(format!("Error: {e}")),
        }
    } else {
        match services_from_files(&p.args).await {
            Ok(s) => s,
            Err(e) => return fail(format!("Error: {e}")),
        }
    };
    let client = match HttpClient::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error connecting to agent: {e}")),
    };
    for svc in services {
        let body = serde_json::to_vec(&svc.body)?;
        if let Err(e) = client.put("/v1/agent/service/register", &[], body).await {
            return fail(format!("Error registering service {:?}: {e}", svc.name));
        }
        outln(&format!("Registered service: {}", svc.name))?;
    }
    Ok(0)
}

async fn deregister(args: &[String]) -> anyhow::Result<i32> {
    let p = match parse_or_usage(args, DEREGISTER_FLAGS, DEREGISTER_USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let id = p.value_or("id", "");
    if p.args.is_empty() && id.is_empty() {
        return fail("Service deregistration requires at least one argument or -id.");
    }
    if !p.args.is_empty() && !id.is_empty() {
        return fail("Service deregistration requires arguments or -id, not both.");
    }
    let ids: Vec<String> = if p.args.is_empty() {
        vec![id.to_string()]
    } else {
        match services_from_files(&p.args).await {
            Ok(s) => s.into_iter().map(|s| s.id).collect(),
            Err(e) => return fail(format!("Error: {e}")),
        }
    };
    let client = match HttpClient::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error connecting to agent: {e}")),
    };
    for id in ids.iter().filter(|id| !id.is_empty()) {
        let path = format!("/v1/agent/service/deregister/{}", escape_path(id));
        if let Err(e) = client.put(&path, &[], Vec::new()).await {
            return fail(format!("Error deregistering service {id:?}: {e}"));
        }
        outln(&format!("Deregistered service: {id}"))?;
    }
    Ok(0)
}

/// The flags of flag-based registration.
pub(crate) struct ServiceFlags<'a> {
    pub(crate) name: &'a str,
    pub(crate) id: &'a str,
    pub(crate) address: &'a str,
    /// 0: unset.
    pub(crate) port: u16,
    pub(crate) tags: &'a [String],
    /// `key=value` pairs.
    pub(crate) meta: &'a [String],
}

/// The registration body the flags describe; only the fields given are sent.
pub(crate) fn service_from_flags(flags: &ServiceFlags<'_>) -> anyhow::Result<ServiceBody> {
    let mut body = Map::new();
    body.insert("Name".into(), flags.name.into());
    if !flags.id.is_empty() {
        body.insert("ID".into(), flags.id.into());
    }
    if !flags.address.is_empty() {
        body.insert("Address".into(), flags.address.into());
    }
    if flags.port != 0 {
        body.insert("Port".into(), flags.port.into());
    }
    if !flags.tags.is_empty() {
        body.insert("Tags".into(), flags.tags.into());
    }
    if !flags.meta.is_empty() {
        let mut meta = Map::new();
        for pair in flags.meta {
            let (k, v) = split_key_value(pair)?;
            meta.insert(k, v.into());
        }
        body.insert("Meta".into(), Value::Object(meta));
    }
    let id = if flags.id.is_empty() {
        flags.name
    } else {
        flags.id
    };
    Ok(ServiceBody {
        body: Value::Object(body),
        name: flags.name.to_string(),
        id: id.to_string(),
    })
}

async fn services_from_files(paths: &[String]) -> anyhow::Result<Vec<ServiceBody>> {
    let mut services = Vec::new();
    for path in paths {
        if Path::new(path)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("hcl"))
        {
            anyhow::bail!("{path}: HCL service definitions are not supported yet; use JSON");
        }
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        services.extend(services_from_json(&text).map_err(|e| anyhow::anyhow!("{path}: {e}"))?);
    }
    Ok(services)
}

/// The services in one JSON definition file: `{"Service": {...}}`, `{"Services": [...]}`
/// (both may appear; key case and snake_case as the agent accepts them), or a bare service
/// definition. Each is checked against [`ServiceDefinition`] so mistakes surface before any
/// request is sent.
pub(crate) fn services_from_json(text: &str) -> anyhow::Result<Vec<ServiceBody>> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!("not valid JSON ({e}); HCL service definitions are not supported yet")
    })?;
    let Value::Object(top) = value else {
        anyhow::bail!("expected a JSON object");
    };
    let mut definitions = Vec::new();
    let mut wrapped = false;
    for (key, inner) in &top {
        if key.eq_ignore_ascii_case("service") {
            wrapped = true;
            definitions.push(inner.clone());
        } else if key.eq_ignore_ascii_case("services") {
            wrapped = true;
            match inner {
                Value::Array(items) => definitions.extend(items.iter().cloned()),
                _ => anyhow::bail!("\"{key}\" must be an array of service definitions"),
            }
        }
    }
    if !wrapped {
        definitions.push(Value::Object(top));
    }
    definitions
        .into_iter()
        .map(|definition| {
            let body = canonicalize(definition);
            let parsed: ServiceDefinition = serde_json::from_value(body.clone())
                .map_err(|e| anyhow::anyhow!("invalid service definition: {e}"))?;
            if parsed.name.is_empty() {
                anyhow::bail!(
                    "service definition has no \"Name\" (expected {{\"Service\": {{...}}}}, \
                     {{\"Services\": [...]}} or a definition with a Name)"
                );
            }
            let id = parsed
                .id
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| parsed.name.clone());
            Ok(ServiceBody {
                body,
                name: parsed.name,
                id,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn names_and_ids(json: &str) -> Vec<(String, String)> {
        services_from_json(json)
            .unwrap()
            .into_iter()
            .map(|s| (s.name, s.id))
            .collect()
    }

    fn pair(name: &str, id: &str) -> (String, String) {
        (name.to_string(), id.to_string())
    }

    #[test]
    fn definition_files_in_every_shape() {
        assert_eq!(
            names_and_ids(r#"{"Service": {"Name": "web", "Port": 80}}"#),
            [pair("web", "web")]
        );
        assert_eq!(
            names_and_ids(r#"{"service": {"name": "web", "id": "web-1"}}"#),
            [pair("web", "web-1")]
        );
        assert_eq!(
            names_and_ids(r#"{"services": [{"name": "a"}, {"Name": "b", "ID": "b2"}]}"#),
            [pair("a", "a"), pair("b", "b2")]
        );
        assert_eq!(
            names_and_ids(r#"{"Name": "bare", "Tags": ["x"]}"#),
            [pair("bare", "bare")]
        );
    }

    #[test]
    fn bodies_keep_fields_with_canonical_names() {
        let s = services_from_json(
            r#"{"service": {"name": "web", "enable_tag_override": true,
                "check": {"http": "http://localhost/h", "interval": "10s"},
                "meta": {"some_key": "v"}, "socket_path": "/x", "x_custom": 1}}"#,
        )
        .unwrap();
        assert_eq!(
            s[0].body,
            json!({
                "Name": "web",
                "EnableTagOverride": true,
                "Check": {"HTTP": "http://localhost/h", "Interval": "10s"},
                "Meta": {"some_key": "v"},
                "SocketPath": "/x",
                "x_custom": 1
            })
        );
    }

    #[test]
    fn bad_files_say_why() {
        let err = |json: &str| services_from_json(json).unwrap_err().to_string();
        assert!(err(r#"service "web" { port = 80 }"#)
            .contains("HCL service definitions are not supported yet"));
        assert!(err("[]").contains("expected a JSON object"));
        assert!(err(r#"{"Port": 80}"#).contains("no \"Name\""));
        assert!(err(r#"{"Services": {"Name": "a"}}"#).contains("must be an array"));
        assert!(err(r#"{"Service": {"Name": "a", "Port": "eighty"}}"#)
            .starts_with("invalid service definition: "));
    }

    #[tokio::test]
    async fn hcl_files_are_refused_by_extension() {
        let err = services_from_files(&["web.hcl".to_string()])
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "web.hcl: HCL service definitions are not supported yet; use JSON"
        );
    }

    #[test]
    fn flags_become_a_minimal_body() {
        let tags = ["v1".to_string(), "primary".to_string()];
        let meta = ["env=prod".to_string(), "team=a=b".to_string()];
        let s = service_from_flags(&ServiceFlags {
            name: "web",
            id: "web-1",
            address: "10.0.0.5",
            port: 8080,
            tags: &tags,
            meta: &meta,
        })
        .unwrap();
        assert_eq!(
            s.body,
            json!({
                "Name": "web", "ID": "web-1", "Address": "10.0.0.5", "Port": 8080,
                "Tags": ["v1", "primary"], "Meta": {"env": "prod", "team": "a=b"}
            })
        );
        assert_eq!((s.name.as_str(), s.id.as_str()), ("web", "web-1"));

        let minimal = service_from_flags(&ServiceFlags {
            name: "db",
            id: "",
            address: "",
            port: 0,
            tags: &[],
            meta: &[],
        })
        .unwrap();
        assert_eq!(minimal.body, json!({"Name": "db"}));
        assert_eq!(minimal.id, "db");

        let bad = ["novalue".to_string()];
        let err = service_from_flags(&ServiceFlags {
            meta: &bad,
            ..ServiceFlags {
                name: "x",
                id: "",
                address: "",
                port: 0,
                tags: &[],
                meta: &[],
            }
        });
        assert!(err.is_err());
    }
}
