//! The membership commands: `concord members` (the agent's view of the pool), `join`,
//! `leave` and `force-leave`, with `consul`'s flags, output and exit codes.

use std::net::IpAddr;

use concord_api::agent::{member_status, Member};
use concord_api::catalog::CONSUL_SERVICE;

use crate::flags::{flag, parse_or_usage, Flag, Kind};
use crate::http::{escape_path, HttpClient};
use crate::output::{columnize, fail, outln};

const USAGE: &str = "Usage: concord members [options]

  Lists the members of the cluster as the agent sees them. Exits 2 if there are none.

  -detailed             Show every member tag instead of the summary columns.
  -status=<regexp>      Only members whose status (alive, leaving, left, failed) matches.
  -wan                  List the WAN pool (servers only).";

const FLAGS: &[Flag] = &[
    flag("detailed", Kind::Bool),
    flag("wan", Kind::Bool),
    flag("status", Kind::Str),
];

/// Runs `concord members ...`; returns the exit code.
pub(crate) async fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let p = match parse_or_usage(&args, FLAGS, USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if !p.args.is_empty() {
        return fail(format!(
            "Too many arguments (expected 0, got {})",
            p.args.len()
        ));
    }
    let status = match regex::Regex::new(p.value_or("status", ".*")) {
        Ok(re) => re,
        Err(e) => return fail(format!("Failed to compile status regexp: {e}")),
    };
    let client = match HttpClient::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error connecting to agent: {e}")),
    };
    let query: Vec<(&str, String)> = if p.bool("wan") {
        vec![("wan", "1".to_string())]
    } else {
        Vec::new()
    };
    let members: Vec<Member> = match client.get_json("/v1/agent/members", &query).await {
        Err(e) => return fail(format!("Error retrieving members: {e}")),
        Ok(found) => found.unwrap_or_default(),
    };
    let members = with_status(members, &status);
    if members.is_empty() {
        return Ok(2);
    }
    outln(&format_members(members, p.bool("detailed")))?;
    Ok(0)
}

const JOIN_USAGE: &str = "Usage: concord join [options] address ...

  Tells the agent to join the pool through the members at these gossip addresses
  (host[:port], port 8301 by default).

  -wan                  Join the WAN pool (not supported by Concord).";

/// Runs `concord join ADDRESS...`.
pub(crate) async fn join(args: Vec<String>) -> anyhow::Result<i32> {
    let p = match parse_or_usage(&args, &[flag("wan", Kind::Bool)], JOIN_USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if p.args.is_empty() {
        return fail(format!(
            "At least one address to join must be specified.\n\n{JOIN_USAGE}"
        ));
    }
    let client = match HttpClient::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error connecting to agent: {e}")),
    };
    let query: Vec<(&str, String)> = if p.bool("wan") {
        vec![("wan", "1".to_string())]
    } else {
        Vec::new()
    };
    let mut joined = 0;
    for addr in &p.args {
        let path = format!("/v1/agent/join/{}", escape_path(addr));
        match client.put(&path, &query, Vec::new()).await {
            Ok(_) => joined += 1,
            Err(e) => eprintln!("Error joining address '{addr}': {e}"),
        }
    }
    if joined == 0 {
        return fail("Failed to join any nodes.");
    }
    outln(&format!(
        "Successfully joined cluster by contacting {joined} nodes."
    ))?;
    Ok(0)
}

const LEAVE_USAGE: &str = "Usage: concord leave [options]

  Makes the agent leave the pool gracefully and shut down.";

/// Runs `concord leave`.
pub(crate) async fn leave(args: Vec<String>) -> anyhow::Result<i32> {
    let p = match parse_or_usage(&args, &[], LEAVE_USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if !p.args.is_empty() {
        return fail(format!(
            "Error found unexpected args: [{}]",
            p.args.join(" ")
        ));
    }
    let client = match HttpClient::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error connecting to agent: {e}")),
    };
    if let Err(e) = client.put("/v1/agent/leave", &[], Vec::new()).await {
        return fail(format!("Error leaving: {e}"));
    }
    outln("Graceful leave complete")?;
    Ok(0)
}

const FORCE_LEAVE_USAGE: &str = "Usage: concord force-leave [options] name

  Marks a failed member as left, so the pool stops trying to reach it and the leader
  removes it from the catalog.

  -prune                Also forget the member at once.
  -wan                  Remove it from the WAN pool (servers only).";

/// Runs `concord force-leave [-prune] NAME`; prints nothing on success, as Consul does.
pub(crate) async fn force_leave(args: Vec<String>) -> anyhow::Result<i32> {
    let flags = [flag("prune", Kind::Bool), flag("wan", Kind::Bool)];
    let p = match parse_or_usage(&args, &flags, FORCE_LEAVE_USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if p.args.len() != 1 {
        return fail(format!(
            "A single node name must be specified to force leave.\n\n{FORCE_LEAVE_USAGE}"
        ));
    }
    let client = match HttpClient::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error connecting to agent: {e}")),
    };
    let mut query = Vec::new();
    if p.bool("prune") {
        query.push(("prune", "1".to_string()));
    }
    if p.bool("wan") {
        query.push(("wan", "1".to_string()));
    }
    let path = format!("/v1/agent/force-leave/{}", escape_path(&p.args[0]));
    if let Err(e) = client.put(&path, &query, Vec::new()).await {
        return fail(format!("Error force leaving: {e}"));
    }
    Ok(0)
}

/// `-status`: members whose status name matches (unanchored, as Consul matches it).
fn with_status(members: Vec<Member>, status: &regex::Regex) -> Vec<Member> {
    members
        .into_iter()
        .filter(|m| status.is_match(status_name(m.status)))
        .collect()
}

/// Serf's status names.
fn status_name(status: u8) -> &'static str {
    match status {
        0 => "none",
        member_status::ALIVE => "alive",
        member_status::LEAVING => "leaving",
        member_status::LEFT => "left",
        member_status::FAILED => "failed",
        _ => "unknown",
    }
}

/// `addr:port`, IPv6 in brackets (Go's `net.TCPAddr`).
fn member_addr(m: &Member) -> String {
    match m.addr.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", m.port),
        _ => format!("{}:{}", m.addr, m.port),
    }
}

fn tag<'a>(m: &'a Member, key: &str) -> &'a str {
    m.tags.get(key).map(String::as_str).unwrap_or("")
}

/// The `members` table, as Consul prints it.
///
/// Partition defaults to `default`; segment to `<all>` for servers (`role=consul`) and
/// `<default>` otherwise. Servers come first, then by segment, partition and name. Standard
/// columns: `Node Address Status Type Build Protocol DC Partition Segment`, where Type is
/// `server`/`client` from the `role` tag (`unknown` leaves the rest blank), Build the `build`
/// tag up to its first `:`, Protocol the `vsn` tag. `-detailed`: `Node Address Status Tags`
/// with every tag as sorted `k=v`. No final newline.
pub(crate) fn format_members(mut members: Vec<Member>, detailed: bool) -> String {
    for m in &mut members {
        let partition = m.tags.entry("partition".to_string()).or_default();
        if partition.is_empty() {
            *partition = "default".to_string();
        }
        let server = tag(m, "role") == CONSUL_SERVICE;
        let segment = m.tags.entry("segment".to_string()).or_default();
        if server {
            *segment = "<all>".to_string();
        } else if segment.is_empty() {
            *segment = "<default>".to_string();
        }
    }
    members.sort_by(|a, b| {
        let key = |m: &Member| {
            (
                tag(m, "role") != CONSUL_SERVICE,
                tag(m, "partition") != "default",
                tag(m, "segment").to_string(),
                tag(m, "partition").to_string(),
                m.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    });

    let mut rows = Vec::with_capacity(members.len() + 1);
    if detailed {
        rows.push(
            ["Node", "Address", "Status", "Tags"]
                .map(String::from)
                .to_vec(),
        );
        for m in &members {
            let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            rows.push(vec![
                m.name.clone(),
                member_addr(m),
                status_name(m.status).to_string(),
                tags.join(","),
            ]);
        }
        return columnize(&rows);
    }
    rows.push(
        [
            "Node",
            "Address",
            "Status",
            "Type",
            "Build",
            "Protocol",
            "DC",
            "Partition",
            "Segment",
        ]
        .map(String::from)
        .to_vec(),
    );
    for m in &members {
        let mut row = vec![
            m.name.clone(),
            member_addr(m),
            status_name(m.status).to_string(),
        ];
        let kind = match tag(m, "role") {
            CONSUL_SERVICE => "server",
            "node" => "client",
            _ => "unknown",
        };
        row.push(kind.to_string());
        if kind == "unknown" {
            row.extend(std::iter::repeat_with(String::new).take(5));
        } else {
            let build = tag(m, "build");
            let build = match build.split_once(':') {
                _ if build.is_empty() => "< 0.3",
                Some((version, _)) => version,
                None => build,
            };
            row.extend(
                [
                    build,
                    tag(m, "vsn"),
                    tag(m, "dc"),
                    tag(m, "partition"),
                    tag(m, "segment"),
                ]
                .map(String::from),
            );
        }
        rows.push(row);
    }
    columnize(&rows)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn member(name: &str, addr: &str, status: u8, tags: &[(&str, &str)]) -> Member {
        Member {
            name: name.into(),
            addr: addr.into(),
            port: 8301,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            status,
            protocol_min: 1,
            protocol_max: 5,
            protocol_cur: 2,
            delegate_min: 2,
            delegate_max: 5,
            delegate_cur: 4,
        }
    }

    fn cluster() -> Vec<Member> {
        vec![
            member(
                "client-b",
                "10.0.0.3",
                member_status::FAILED,
                &[
                    ("role", "node"),
                    ("dc", "dc1"),
                    ("build", "1.22.0:concord"),
                    ("vsn", "2"),
                ],
            ),
            member("mystery", "::1", 0, &[]),
            member(
                "client-a",
                "10.0.0.2",
                member_status::LEFT,
                &[("role", "node"), ("dc", "dc1"), ("vsn", "2")],
            ),
            member(
                "server-1",
                "10.0.0.1",
                member_status::ALIVE,
                &[
                    ("role", "consul"),
                    ("dc", "dc1"),
                    ("build", "1.22.0:concord"),
                    ("vsn", "2"),
                ],
            ),
        ]
    }

    #[test]
    fn standard_table_like_consul() {
        assert_eq!(
            format_members(cluster(), false),
            "Node      Address        Status  Type     Build   Protocol  DC   Partition  Segment\n\
             server-1  10.0.0.1:8301  alive   server   1.22.0  2         dc1  default    <all>\n\
             client-a  10.0.0.2:8301  left    client   < 0.3   2         dc1  default    <default>\n\
             client-b  10.0.0.3:8301  failed  client   1.22.0  2         dc1  default    <default>\n\
             mystery   [::1]:8301     none    unknown"
        );
    }

    #[test]
    fn detailed_lists_all_tags() {
        let out = format_members(cluster()[3..].to_vec(), true);
        assert_eq!(
            out,
            "Node      Address        Status  Tags\n\
             server-1  10.0.0.1:8301  alive   build=1.22.0:concord,dc=dc1,partition=default,\
             role=consul,segment=<all>,vsn=2"
        );
    }

    #[test]
    fn status_regexp_selects_members() {
        let pick = |re: &str| -> Vec<String> {
            with_status(cluster(), &regex::Regex::new(re).unwrap())
                .into_iter()
                .map(|m| m.name)
                .collect()
        };
        assert_eq!(pick("fail"), ["client-b"]);
        assert_eq!(pick("^(alive|left)$"), ["client-a", "server-1"]);
        assert!(pick("leaving").is_empty(), "nothing matches: exit 2");
    }

    #[test]
    fn status_names() {
        let names: Vec<_> = (0..=5).map(status_name).collect();
        assert_eq!(
            names,
            ["none", "alive", "leaving", "left", "failed", "unknown"]
        );
    }
}
