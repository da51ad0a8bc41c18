//! Commands that act on the agent itself: `info`, `reload`, `maint` and `monitor`, with
//! Consul's flags and output.

use std::collections::BTreeMap;

use crate::flags::{flag, parse_or_usage, Flag, Kind};
use crate::http::HttpClient;
use crate::output::{fail, out, outln};

const INFO_USAGE: &str = "Usage: concord info [options]

  Prints the agent's statistics by section (Stats of /v1/agent/self).";

const RELOAD_USAGE: &str = "Usage: concord reload [options]

  Makes the agent re-read its configuration files (service definitions).";

const MAINT_USAGE: &str = "Usage: concord maint [options]

  Places a node or service into maintenance mode. Without -enable or -disable, lists
  what is in maintenance on the agent.

  -enable           Enable maintenance mode.
  -disable          Disable maintenance mode.
  -reason=<string>  Text describing why maintenance is enabled (only with -enable).
  -service=<id>     The service ID to act on instead of the node.";

const MONITOR_USAGE: &str = "Usage: concord monitor [options]

  Streams the agent's log lines until interrupted.

  -log-level=<level>  trace, debug, info (default), warn or err.
  -log-json           Stream JSON lines.";

const MAINT_FLAGS: &[Flag] = &[
    flag("enable", Kind::Bool),
    flag("disable", Kind::Bool),
    flag("reason", Kind::Str),
    flag("service", Kind::Str),
];

const MONITOR_FLAGS: &[Flag] = &[flag("log-level", Kind::Str), flag("log-json", Kind::Bool)];

fn client(p: &crate::flags::Parsed) -> Result<HttpClient, anyhow::Result<i32>> {
    HttpClient::from_flags(p).map_err(|e| fail(format!("Error connecting to agent: {e}")))
}

/// `concord info`: each section of the agent's `Stats`, keys sorted, as Consul prints them.
pub(crate) async fn info(args: Vec<String>) -> anyhow::Result<i32> {
    let p = match parse_or_usage(&args, &[], INFO_USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let client = match client(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let this: serde_json::Value = match client.get_json("/v1/agent/self", &[]).await {
        Ok(Some(v)) => v,
        Ok(None) => return fail("Error querying agent: not found"),
        Err(e) => return fail(format!("Error querying agent: {e}")),
    };
    let stats: BTreeMap<String, BTreeMap<String, serde_json::Value>> =
        serde_json::from_value(this["Stats"].clone()).unwrap_or_default();
    let mut text = String::new();
    for (section, values) in stats {
        text.push_str(&format!("{section}:\n"));
        for (key, value) in values {
            let value = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            text.push_str(&format!("\t{key} = {value}\n"));
        }
    }
    out(text)?;
    Ok(0)
}

/// `concord reload`.
pub(crate) async fn reload(args: Vec<String>) -> anyhow::Result<i32> {
    let p = match parse_or_usage(&args, &[], RELOAD_USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let client = match client(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.put("/v1/agent/reload", &[], Vec::new()).await {
        Ok(_) => {
            outln("Configuration reload triggered")?;
            Ok(0)
        }
        Err(e) => fail(format!("Error reloading: {e}")),
    }
}

/// `concord maint`.
pub(crate) async fn maint(args: Vec<String>) -> anyhow::Result<i32> {
    let p = match parse_or_usage(&args, MAINT_FLAGS, MAINT_USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let (enable, disable) = (p.bool("enable"), p.bool("disable"));
    let reason = p.value_or("reason", "");
    let service = p.value_or("service", "");
    if enable && disable {
        return fail("Only one of -enable or -disable may be provided");
    }
    if !enable && !reason.is_empty() {
        return fail("Reason may only be provided with -enable");
    }
    if !enable && !disable && !service.is_empty() {
        return fail("Service requires either -enable or -disable");
    }
    let client = match client(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !enable && !disable {
        return list_maintenance(&client).await;
    }
    let mut query = vec![("enable", enable.to_string())];
    if enable && !reason.is_empty() {
        query.push(("reason", reason.to_string()));
    }
    let path = if service.is_empty() {
        "/v1/agent/maintenance".to_string()
    } else {
        format!(
            "/v1/agent/service/maintenance/{}",
            crate::http::escape_path(service)
        )
    };
    if let Err(e) = client.put(&path, &query, Vec::new()).await {
        return fail(format!("Error setting maintenance mode: {e}"));
    }
    let line = match (service.is_empty(), enable) {
        (true, true) => "Node entering maintenance mode".to_string(),
        (true, false) => "Node leaving maintenance mode".to_string(),
        (false, true) => format!("Service entering maintenance mode: {service}"),
        (false, false) => format!("Service leaving maintenance mode: {service}"),
    };
    outln(&line)?;
    Ok(0)
}

/// Lists the node and services in maintenance (their `_node_maintenance` and
/// `_service_maintenance:<id>` checks), as `consul maint` does without flags.
async fn list_maintenance(client: &HttpClient) -> anyhow::Result<i32> {
    let checks: BTreeMap<String, serde_json::Value> =
        match client.get_json("/v1/agent/checks", &[]).await {
            Ok(c) => c.unwrap_or_default(),
            Err(e) => return fail(format!("Error getting checks: {e}")),
        };
    let mut text = String::new();
    for (id, check) in &checks {
        let notes = check["Notes"].as_str().unwrap_or("");
        if id == "_node_maintenance" {
            let node = check["Node"].as_str().unwrap_or("");
            text.push_str(&format!("Node:\n  Name:   {node}\n  Reason: {notes}\n\n"));
        } else if let Some(service) = id.strip_prefix("_service_maintenance:") {
            text.push_str(&format!(
                "Service:\n  ID:     {service}\n  Reason: {notes}\n\n"
            ));
        }
    }
    out(text)?;
    Ok(0)
}

/// `concord monitor`: streams `/v1/agent/monitor` to stdout until the agent or the user
/// stops it.
pub(crate) async fn monitor(args: Vec<String>) -> anyhow::Result<i32> {
    let p = match parse_or_usage(&args, MONITOR_FLAGS, MONITOR_USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let client = match client(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut query = vec![("loglevel", p.value_or("log-level", "info").to_string())];
    if p.bool("log-json") {
        query.push(("logjson", String::new()));
    }
    let mut response = match client.get_stream("/v1/agent/monitor", &query).await {
        Ok(r) => r,
        Err(e) => return fail(format!("Error starting monitor: {e}")),
    };
    loop {
        tokio::select! {
            chunk = response.chunk() => match chunk {
                Ok(Some(bytes)) => out(&bytes)?,
                Ok(None) => return fail("Remote side ended the monitor! This usually means that the\nremote side has exited or crashed."),
                Err(e) => return fail(format!("Error reading logs: {e}")),
            },
            _ = tokio::signal::ctrl_c() => return Ok(0),
        }
    }
}
