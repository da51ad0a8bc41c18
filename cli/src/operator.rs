//! `concord operator raft list-peers|remove-peer|transfer-leader` and `concord operator
//! autopilot get-config|set-config|state`, with `consul`'s flags and output.

use concord_api::duration::parse_duration;
use concord_api::operator::{AutopilotConfig, AutopilotState, RaftConfiguration};

use crate::flags::{flag, parse_or_usage, Flag, Kind, Parsed};
use crate::http::HttpClient;
use crate::output::{columnize, fail, outln};

const USAGE: &str = "Usage: concord operator <subcommand> [options]

  Cluster-level operations on the servers.

  Subcommands:
    raft list-peers          Show the Raft configuration (Node ID Address State Voter RaftProtocol)
    raft remove-peer         Remove a server (-id=<uuid> or -address=<ip:port>)
    raft transfer-leader     Hand leadership to another voter (-id=<uuid>, or any)
    autopilot get-config     Show autopilot's settings
    autopilot set-config     Change them (-cleanup-dead-servers, -last-contact-threshold,
                             -max-trailing-logs, -min-quorum, -server-stabilization-time)
    autopilot state          Show autopilot's view of the servers";

const FLAGS: &[Flag] = &[
    flag("stale", Kind::Bool),
    flag("id", Kind::Str),
    flag("address", Kind::Str),
    flag("cleanup-dead-servers", Kind::Str),
    flag("last-contact-threshold", Kind::Str),
    flag("max-trailing-logs", Kind::Str),
    flag("min-quorum", Kind::Str),
    flag("server-stabilization-time", Kind::Str),
];

/// Runs `concord operator ...`; returns the exit code.
pub(crate) async fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let (group, sub) = match (args.first(), args.get(1)) {
        (Some(g), Some(s)) => (g.clone(), s.clone()),
        _ => {
            eprintln!("{USAGE}");
            return Ok(1);
        }
    };
    let p = match parse_or_usage(&args[2..], FLAGS, USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let client = match HttpClient::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error connecting to agent: {e}")),
    };
    match (group.as_str(), sub.as_str()) {
        ("raft", "list-peers") => list_peers(&client, &p).await,
        ("raft", "remove-peer") => remove_peer(&client, &p).await,
        ("raft", "transfer-leader") => transfer_leader(&client, &p).await,
        ("autopilot", "get-config") => get_config(&client, &p).await,
        ("autopilot", "set-config") => set_config(&client, &p).await,
        ("autopilot", "state") => state(&client, &p).await,
        _ => {
            eprintln!("Unknown subcommand: operator {group} {sub}\n\n{USAGE}");
            Ok(1)
        }
    }
}

fn stale(p: &Parsed) -> Vec<(&'static str, String)> {
    if p.bool("stale") {
        vec![("stale", String::new())]
    } else {
        Vec::new()
    }
}

async fn list_peers(client: &HttpClient, p: &Parsed) -> anyhow::Result<i32> {
    let config: RaftConfiguration = match client
        .get_json("/v1/operator/raft/configuration", &stale(p))
        .await
    {
        Ok(Some(c)) => c,
        Ok(None) => return fail("Failed to retrieve raft configuration: not found"),
        Err(e) => return fail(format!("Failed to retrieve raft configuration: {e}")),
    };
    outln(&format_peers(&config))?;
    Ok(0)
}

/// `consul operator raft list-peers`' table.
fn format_peers(config: &RaftConfiguration) -> String {
    let mut rows = vec![["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]
        .map(String::from)
        .to_vec()];
    for s in &config.servers {
        rows.push(vec![
            s.node.clone(),
            s.id.clone(),
            s.address.clone(),
            if s.leader { "leader" } else { "follower" }.to_string(),
            s.voter.to_string(),
            s.protocol_version.clone(),
        ]);
    }
    columnize(&rows)
}

async fn remove_peer(client: &HttpClient, p: &Parsed) -> anyhow::Result<i32> {
    let (key, value) = match (p.value("id"), p.value("address")) {
        (Some(id), None) => ("id", id),
        (None, Some(addr)) => ("address", addr),
        (Some(_), Some(_)) => return fail("Only one of -id or -address should be specified"),
        (None, None) => return fail("Must specify either -id or -address"),
    };
    let query = [(key, value.to_string())];
    match client.delete("/v1/operator/raft/peer", &query).await {
        Ok(_) => {
            outln(&format!("Removed peer with {key} {value:?}"))?;
            Ok(0)
        }
        Err(e) => fail(format!("Error removing peer: {e}")),
    }
}

async fn transfer_leader(client: &HttpClient, p: &Parsed) -> anyhow::Result<i32> {
    let query: Vec<(&str, String)> = p
        .value("id")
        .map(|id| vec![("id", id.to_string())])
        .unwrap_or_default();
    let body = match client
        .request(
            reqwest::Method::POST,
            "/v1/operator/raft/transfer-leader",
            &query,
            None,
        )
        .await
    {
        Ok(b) => b,
        Err(e) => return fail(format!("Error transferring leadership: {e}")),
    };
    let success = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("Success").and_then(serde_json::Value::as_bool))
        .unwrap_or(false);
    outln(&format!("Success: {success}"))?;
    Ok(if success { 0 } else { 1 })
}

async fn fetch_config(client: &HttpClient, p: &Parsed) -> Result<AutopilotConfig, String> {
    match client
        .get_json("/v1/operator/autopilot/configuration", &stale(p))
        .await
    {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err("Error querying Autopilot configuration: not found".to_string()),
        Err(e) => Err(format!("Error querying Autopilot configuration: {e}")),
    }
}

async fn get_config(client: &HttpClient, p: &Parsed) -> anyhow::Result<i32> {
    let c = match fetch_config(client, p).await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    outln(&format_config(&c))?;
    Ok(0)
}

/// `consul operator autopilot get-config`'s text.
fn format_config(c: &AutopilotConfig) -> String {
    [
        format!("CleanupDeadServers = {}", c.cleanup_dead_servers),
        format!("LastContactThreshold = {}", c.last_contact_threshold),
        format!("MaxTrailingLogs = {}", c.max_trailing_logs),
        format!("MinQuorum = {}", c.min_quorum),
        format!("ServerStabilizationTime = {}", c.server_stabilization_time),
        format!("RedundancyZoneTag = {:?}", c.redundancy_zone_tag),
        format!("DisableUpgradeMigration = {}", c.disable_upgrade_migration),
        format!("UpgradeVersionTag = {:?}", c.upgrade_version_tag),
    ]
    .join("\n")
}

/// Applies `set-config`'s flags to `c`.
fn apply_flags(c: &mut AutopilotConfig, p: &Parsed) -> Result<(), String> {
    if let Some(v) = p.value("cleanup-dead-servers") {
        c.cleanup_dead_servers = v
            .parse()
            .map_err(|_| format!("Error parsing cleanup-dead-servers: {v:?}"))?;
    }
    if let Some(v) = p.value("last-contact-threshold") {
        c.last_contact_threshold = parse_duration(v)
            .map_err(|e| format!("Error parsing last-contact-threshold: {e}"))?
            .into();
    }
    if let Some(v) = p.value("server-stabilization-time") {
        c.server_stabilization_time = parse_duration(v)
            .map_err(|e| format!("Error parsing server-stabilization-time: {e}"))?
            .into();
    }
    if let Some(v) = p.value("max-trailing-logs") {
        c.max_trailing_logs = v
            .parse()
            .map_err(|_| format!("Error parsing max-trailing-logs: {v:?}"))?;
    }
    if let Some(v) = p.value("min-quorum") {
        c.min_quorum = v
            .parse()
            .map_err(|_| format!("Error parsing min-quorum: {v:?}"))?;
    }
    Ok(())
}

async fn set_config(client: &HttpClient, p: &Parsed) -> anyhow::Result<i32> {
    let mut c = match fetch_config(client, p).await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if let Err(e) = apply_flags(&mut c, p) {
        return fail(e);
    }
    let body = serde_json::to_vec(&c)?;
    let query = [("cas", c.modify_index.to_string())];
    match client
        .put("/v1/operator/autopilot/configuration", &query, body)
        .await
    {
        Ok(reply) if reply.starts_with(b"true") => {
            outln("Configuration updated!")?;
            Ok(0)
        }
        Ok(_) => fail("Configuration could not be atomically updated, please try again"),
        Err(e) => fail(format!("Error setting Autopilot configuration: {e}")),
    }
}

async fn state(client: &HttpClient, p: &Parsed) -> anyhow::Result<i32> {
    let s: AutopilotState = match client
        .get_json("/v1/operator/autopilot/state", &stale(p))
        .await
    {
        Ok(Some(s)) => s,
        Ok(None) => return fail("Error querying Autopilot state: not found"),
        Err(e) => return fail(format!("Error querying Autopilot state: {e}")),
    };
    outln(&format_state(&s))?;
    Ok(0)
}

/// `consul operator autopilot state`'s text.
fn format_state(s: &AutopilotState) -> String {
    let mut out = vec![
        format!("Healthy:                      {}", s.healthy),
        format!("Failure Tolerance:            {}", s.failure_tolerance),
        format!(
            "Optimistic Failure Tolerance: {}",
            s.optimistic_failure_tolerance
        ),
        format!("Leader:                       {}", s.leader),
        "Voters:".to_string(),
    ];
    out.extend(s.voters.iter().map(|v| format!("   {v}")));
    out.push("Servers:".to_string());
    for (id, server) in &s.servers {
        out.push(format!("   {id}"));
        out.push(format!("      Name:            {}", server.name));
        out.push(format!("      Address:         {}", server.address));
        out.push(format!("      Version:         {}", server.version));
        out.push(format!("      Status:          {}", server.status));
        out.push(format!("      Node Type:       {}", server.node_type));
        out.push(format!("      Node Status:     {}", server.node_status));
        out.push(format!("      Healthy:         {}", server.healthy));
        out.push(format!("      Last Contact:    {}", server.last_contact));
        out.push(format!("      Last Term:       {}", server.last_term));
        out.push(format!("      Last Index:      {}", server.last_index));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use concord_api::operator::RaftServer;

    use super::*;

    #[test]
    fn list_peers_prints_consuls_columns() {
        let config = RaftConfiguration {
            servers: vec![RaftServer {
                id: "id-1".into(),
                node: "s1".into(),
                address: "127.0.0.1:8300".into(),
                leader: true,
                voter: true,
                protocol_version: "3".into(),
                last_index: 7,
            }],
            index: 3,
        };
        let text = format_peers(&config);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("Node"), "{text}");
        assert!(lines[0].contains("RaftProtocol"), "{text}");
        assert!(
            lines[1].contains("leader") && lines[1].contains("true"),
            "{text}"
        );
    }

    fn parsed(args: &[&str]) -> Parsed {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        crate::flags::parse_flags(&args, FLAGS).unwrap()
    }

    #[test]
    fn set_config_flags_change_only_what_they_name() {
        let mut c = AutopilotConfig::default();
        let p = parsed(&[
            "-cleanup-dead-servers=false",
            "-server-stabilization-time=1s",
            "-max-trailing-logs",
            "7",
        ]);
        apply_flags(&mut c, &p).unwrap();
        assert!(!c.cleanup_dead_servers);
        assert_eq!(c.server_stabilization_time.get().as_secs(), 1);
        assert_eq!(c.max_trailing_logs, 7);
        assert_eq!(
            c.last_contact_threshold,
            AutopilotConfig::default().last_contact_threshold
        );
        let bad = parsed(&["-last-contact-threshold=soon"]);
        let err = apply_flags(&mut c, &bad).unwrap_err();
        assert!(err.contains("last-contact-threshold"), "{err}");
        let bad = parsed(&["-cleanup-dead-servers=maybe"]);
        assert!(apply_flags(&mut c, &bad).is_err());
    }

    #[test]
    fn get_config_text_has_every_setting() {
        let text = format_config(&AutopilotConfig::default());
        assert!(text.contains("CleanupDeadServers = true"), "{text}");
        assert!(text.contains("LastContactThreshold = 200ms"), "{text}");
        assert!(text.contains("ServerStabilizationTime = 10s"), "{text}");
    }
}
