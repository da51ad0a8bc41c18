//! `concord event`: Consul's `consul event`, fires a user event through the agent to every
//! member of the pool (each agent keeps it if the filters match it).

use crate::flags::{flag, parse_or_usage, Flag, Kind};
use crate::http::{escape_path, HttpClient};
use crate::output::{fail, outln};

const USAGE: &str = "Usage: concord event [options] [payload]

  Fires a user event to every member of the pool. The payload is optional.

  -name=<name>          The event name (required).
  -node=<regexp>        Only nodes whose name matches.
  -service=<regexp>     Only nodes running a service whose ID matches.
  -tag=<regexp>         With -service: only if that service has a matching tag.";

const FLAGS: &[Flag] = &[
    flag("name", Kind::Str),
    flag("node", Kind::Str),
    flag("service", Kind::Str),
    flag("tag", Kind::Str),
];

/// The request `concord event` sends: name, filters and payload, checked as Consul's CLI
/// checks them (same messages).
#[derive(Debug, PartialEq)]
struct Fire {
    name: String,
    filters: Vec<(&'static str, String)>,
    payload: Vec<u8>,
}

fn parse(p: &crate::flags::Parsed) -> Result<Fire, String> {
    let name = p.value_or("name", "").to_string();
    if name.is_empty() {
        return Err("Event name must be specified".to_string());
    }
    let mut filters = Vec::new();
    for key in ["node", "service", "tag"] {
        let re = p.value_or(key, "");
        if re.is_empty() {
            continue;
        }
        if let Err(e) = regex::Regex::new(re) {
            return Err(format!("Failed to compile {key} filter regexp: {e}"));
        }
        filters.push((key, re.to_string()));
    }
    if !p.value_or("tag", "").is_empty() && p.value_or("service", "").is_empty() {
        return Err("Cannot provide tag filter without service filter.".to_string());
    }
    let payload = match p.args.as_slice() {
        [] => Vec::new(),
        [one] => one.as_bytes().to_vec(),
        _ => return Err("Too many command line arguments.".to_string()),
    };
    Ok(Fire {
        name,
        filters,
        payload,
    })
}

/// Runs `concord event ...`.
pub(crate) async fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let p = match parse_or_usage(&args, FLAGS, USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let fire = match parse(&p) {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let client = match HttpClient::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error querying Consul agent: {e}")),
    };
    let path = format!("/v1/event/fire/{}", escape_path(&fire.name));
    let query: Vec<(&str, String)> = fire.filters.clone();
    let body = match client.put(&path, &query, fire.payload).await {
        Ok(b) => b,
        Err(e) => return fail(format!("Error firing event: {e}")),
    };
    let id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("ID").and_then(|id| id.as_str()).map(str::to_string));
    match id {
        Some(id) => {
            outln(&format!("Event ID: {id}"))?;
            Ok(0)
        }
        None => fail("Error firing event: the agent's answer has no event ID"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::parse_flags;

    fn parsed(args: &[&str]) -> Result<Fire, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&parse_flags(&args, FLAGS).unwrap())
    }

    #[test]
    fn checks_like_consul() {
        assert_eq!(parsed(&[]).unwrap_err(), "Event name must be specified");
        assert_eq!(
            parsed(&["-name=x", "-tag=v1"]).unwrap_err(),
            "Cannot provide tag filter without service filter."
        );
        assert!(parsed(&["-name=x", "-node=("])
            .unwrap_err()
            .starts_with("Failed to compile node filter regexp: "));
        assert_eq!(
            parsed(&["-name=x", "a", "b"]).unwrap_err(),
            "Too many command line arguments."
        );
        assert_eq!(
            parsed(&["-name=deploy", "-service=web", "-tag=v1", "payload"]).unwrap(),
            Fire {
                name: "deploy".into(),
                filters: vec![("service", "web".into()), ("tag", "v1".into())],
                payload: b"payload".to_vec(),
            }
        );
    }
}
