//! `concord rtt`: Consul's `consul rtt`, the round-trip time between two nodes estimated from
//! their network coordinates (as the agent knows them, from gossip).

use concord_net::gossip::Coordinate;
use serde::Deserialize;

use crate::flags::{flag, parse_or_usage, Flag, Kind};
use crate::http::HttpClient;
use crate::output::{fail, outln};

const USAGE: &str = "Usage: concord rtt [options] node1 [node2]

  Estimates the round-trip time between two nodes from their network coordinates. node2
  defaults to the agent's own node.

  -wan                  Use WAN coordinates (not supported by Concord).";

const FLAGS: &[Flag] = &[flag("wan", Kind::Bool)];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CoordEntry {
    node: String,
    coord: CoordJson,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CoordJson {
    vec: Vec<f64>,
    error: f64,
    adjustment: f64,
    height: f64,
}

impl CoordJson {
    fn to_coordinate(&self) -> Option<Coordinate> {
        Some(Coordinate {
            vec: self.vec.clone().try_into().ok()?,
            error: self.error,
            adjustment: self.adjustment,
            height: self.height,
        })
    }
}

/// Consul's line: `Estimated a <-> b rtt: 1.234 ms (using LAN coordinates)`.
fn estimate(a: &str, b: &str, entries: &[CoordEntry]) -> Result<String, String> {
    let find = |name: &str| {
        entries
            .iter()
            .find(|e| e.node.eq_ignore_ascii_case(name))
            .and_then(|e| e.coord.to_coordinate())
            .ok_or_else(|| format!("Could not find a coordinate for node {name:?}"))
    };
    let (ca, cb) = (find(a)?, find(b)?);
    let ms = ca.distance(&cb).as_secs_f64() * 1000.0;
    Ok(format!(
        "Estimated {a} <-> {b} rtt: {ms:.3} ms (using LAN coordinates)"
    ))
}

/// Runs `concord rtt NODE1 [NODE2]`.
pub(crate) async fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let p = match parse_or_usage(&args, FLAGS, USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if p.args.is_empty() || p.args.len() > 2 {
        return fail(format!(
            "One or two node names must be specified\n\n{USAGE}"
        ));
    }
    if p.bool("wan") {
        return fail("Error getting coordinates: Concord has no WAN pool");
    }
    let client = match HttpClient::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error connecting to agent: {e}")),
    };
    let a = p.args[0].clone();
    let b = match p.args.get(1) {
        Some(b) => b.clone(),
        None => {
            let me: Option<serde_json::Value> = match client.get_json("/v1/agent/self", &[]).await {
                Ok(v) => v,
                Err(e) => return fail(format!("Unable to look up agent info: {e}")),
            };
            match me.as_ref().and_then(|v| v["Config"]["NodeName"].as_str()) {
                Some(name) => name.to_string(),
                None => return fail("Unable to look up agent info: no node name"),
            }
        }
    };
    let entries: Vec<CoordEntry> = match client.get_json("/v1/coordinate/nodes", &[]).await {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => return fail(format!("Error getting coordinates: {e}")),
    };
    match estimate(&a, &b, &entries) {
        Ok(line) => {
            outln(&line)?;
            Ok(0)
        }
        Err(e) => fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(node: &str, x: f64) -> CoordEntry {
        let mut vec = vec![0.0; 8];
        vec[0] = x;
        CoordEntry {
            node: node.into(),
            coord: CoordJson {
                vec,
                error: 1.5,
                adjustment: 0.0,
                height: 0.0,
            },
        }
    }

    #[test]
    fn estimates_like_consul() {
        let entries = vec![entry("a", 0.0), entry("B", 0.0015)];
        assert_eq!(
            estimate("a", "b", &entries).unwrap(),
            "Estimated a <-> b rtt: 1.500 ms (using LAN coordinates)"
        );
        assert_eq!(
            estimate("a", "c", &entries).unwrap_err(),
            "Could not find a coordinate for node \"c\""
        );
    }
}
