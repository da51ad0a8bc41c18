//! `concord config write|read|list|delete`: Consul's `consul config` commands over
//! `/v1/config`. Entries are read from HCL (via `hcl-rs`) or JSON files, or stdin (`-`).
//! (Not to be confused with `agent/config.rs`, the agent's own configuration files.)

use std::io::Read as _;

use concord_api::config_entry::parse_kind;
use serde_json::Value;

use crate::flags::{flag, parse_or_usage, Flag, Kind, Parsed};
use crate::http::{escape_path, parse_bool_body, HttpClient};
use crate::output::{fail, outln};

const USAGE: &str = "Usage: concord config <subcommand> [options] [args]

  Writes, reads, lists and deletes config entries (service-defaults, proxy-defaults,
  service-intentions, service-resolver, service-splitter, service-router).

Subcommands:
    delete    Delete a config entry
    list      List config entries of a kind
    read      Read one config entry
    write     Create or update a config entry from an HCL or JSON file";

const WRITE_USAGE: &str = "Usage: concord config write [options] FILE

  Writes the config entry in FILE (HCL or JSON; `-` reads stdin).

  -cas                  Check-and-set: only write if -modify-index still matches.
  -modify-index=<n>     The ModifyIndex for -cas (0: only if absent).";

const KIND_NAME_FLAGS: &[Flag] = &[
    flag("kind", Kind::Str),
    flag("name", Kind::Str),
    flag("cas", Kind::Bool),
    flag("modify-index", Kind::Uint),
];

const WRITE_FLAGS: &[Flag] = &[flag("cas", Kind::Bool), flag("modify-index", Kind::Uint)];

/// Runs `concord config <subcommand> ...`; returns the exit code.
pub(crate) async fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let Some((sub, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return Ok(1);
    };
    match sub.as_str() {
        "write" => write(rest).await,
        "read" => read(rest).await,
        "list" => list(rest).await,
        "delete" => delete(rest).await,
        "-h" | "-help" | "--help" => {
            eprintln!("{USAGE}");
            Ok(0)
        }
        other => fail(format!("Unknown subcommand: config {other}\n\n{USAGE}")),
    }
}

/// Parses an entry: JSON when it looks like JSON, HCL otherwise (as Consul's `config
/// write` accepts both).
pub(crate) fn parse_entry(text: &str) -> anyhow::Result<Value> {
    if text.trim_start().starts_with('{') {
        return Ok(serde_json::from_str(text)?);
    }
    Ok(hcl::from_str(text)?)
}

fn client(p: &Parsed) -> Result<HttpClient, i32> {
    HttpClient::from_flags(p).map_err(|e| {
        eprintln!("Error connecting to agent: {e}");
        1
    })
}

async fn write(args: &[String]) -> anyhow::Result<i32> {
    let p = match parse_or_usage(args, WRITE_FLAGS, WRITE_USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let [file] = p.args.as_slice() else {
        return fail(format!("Must provide exactly one positional argument to specify the config entry to write\n\n{WRITE_USAGE}"));
    };
    let text = if file == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        match std::fs::read_to_string(file) {
            Ok(s) => s,
            Err(e) => return fail(format!("Failed to read config entry from {file:?}: {e}")),
        }
    };
    let entry = match parse_entry(&text) {
        Ok(v) => v,
        Err(e) => return fail(format!("Failed to decode config entry input: {e}")),
    };
    let field = |k: &str| {
        entry
            .as_object()
            .and_then(|o| o.iter().find(|(key, _)| key.eq_ignore_ascii_case(k)))
            .and_then(|(_, v)| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let (kind, name) = (field("Kind"), field("Name"));
    let c = match client(&p) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let query = if p.bool("cas") {
        vec![("cas", p.uint("modify-index").to_string())]
    } else {
        Vec::new()
    };
    let written = match c
        .put("/v1/config", &query, serde_json::to_vec(&entry)?)
        .await
    {
        Ok(body) => parse_bool_body(&body).unwrap_or(false),
        Err(e) => return fail(format!("Error writing config entry {kind}/{name}: {e}")),
    };
    if !written {
        return fail(format!("Config entry not updated: {kind}/{name}"));
    }
    outln(&format!("Config entry written: {kind}/{name}"))?;
    Ok(0)
}

/// Parses `-kind` and `-name` (both required) and makes the client: the start of `read`
/// and `delete`. `Err` carries the exit code (the reason is already printed).
fn kind_name_client(
    args: &[String],
    usage: &str,
) -> Result<(Parsed, String, String, HttpClient), i32> {
    let p = parse_or_usage(args, KIND_NAME_FLAGS, usage)?;
    let (kind, name) = (
        p.value_or("kind", "").to_string(),
        p.value_or("name", "").to_string(),
    );
    for (flag, value) in [("kind", &kind), ("name", &name)] {
        if value.is_empty() {
            eprintln!("Must specify the -{flag} parameter");
            return Err(1);
        }
    }
    let c = client(&p)?;
    Ok((p, kind, name, c))
}

async fn read(args: &[String]) -> anyhow::Result<i32> {
    let usage = "Usage: concord config read -kind <kind> -name <name>";
    let (_, kind, name, c) = match kind_name_client(args, usage) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let path = format!("/v1/config/{}/{}", escape_path(&kind), escape_path(&name));
    match c.get_json::<Value>(&path, &[]).await {
        Ok(Some(entry)) => {
            outln(&serde_json::to_string_pretty(&entry)?)?;
            Ok(0)
        }
        Ok(None) => fail(format!(
            "Error reading config entry {kind}/{name}: Unexpected response code: 404 (Config entry not found for {kind:?} / {name:?})"
        )),
        Err(e) => fail(format!("Error reading config entry {kind}/{name}: {e}")),
    }
}

async fn list(args: &[String]) -> anyhow::Result<i32> {
    let p = match parse_or_usage(
        args,
        KIND_NAME_FLAGS,
        "Usage: concord config list -kind <kind>",
    ) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let kind = p.value_or("kind", "");
    if kind.is_empty() {
        return fail("Must specify the -kind parameter");
    }
    if let Err(e) = parse_kind(kind) {
        return fail(format!(
            "Error listing config entries for kind {kind:?}: {e}"
        ));
    }
    let c = match client(&p) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let path = format!("/v1/config/{}", escape_path(kind));
    match c.get_json::<Vec<Value>>(&path, &[]).await {
        Ok(list) => {
            for entry in list.unwrap_or_default() {
                outln(entry.get("Name").and_then(Value::as_str).unwrap_or(""))?;
            }
            Ok(0)
        }
        Err(e) => fail(format!(
            "Error listing config entries for kind {kind:?}: {e}"
        )),
    }
}

async fn delete(args: &[String]) -> anyhow::Result<i32> {
    let usage = "Usage: concord config delete -kind <kind> -name <name> [-cas -modify-index=<n>]";
    let (p, kind, name, c) = match kind_name_client(args, usage) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let query = if p.bool("cas") {
        vec![("cas", p.uint("modify-index").to_string())]
    } else {
        Vec::new()
    };
    let path = format!("/v1/config/{}/{}", escape_path(&kind), escape_path(&name));
    match c.delete(&path, &query).await {
        Ok(body) => {
            if p.bool("cas") && !parse_bool_body(&body).unwrap_or(false) {
                return fail(format!("Config entry not deleted: {kind}/{name}"));
            }
            outln(&format!("Config entry deleted: {kind}/{name}"))?;
            Ok(0)
        }
        Err(e) => fail(format!("Error deleting config entry {kind}/{name}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcl_and_json_entries_parse_alike() {
        let hcl = r#"
Kind = "service-intentions"
Name = "db"
Sources = [
  {
    Name   = "web"
    Action = "allow"
  }
]
"#;
        let json = r#"{"Kind": "service-intentions", "Name": "db", "Sources": [{"Name": "web", "Action": "allow"}]}"#;
        assert_eq!(parse_entry(hcl).unwrap(), parse_entry(json).unwrap());
        let block = "Kind = \"service-defaults\"\nName = \"db\"\nProtocol = \"http\"\n";
        assert_eq!(
            parse_entry(block).unwrap(),
            serde_json::json!({"Kind": "service-defaults", "Name": "db", "Protocol": "http"})
        );
        assert!(parse_entry("Kind = ").is_err());
    }
}
