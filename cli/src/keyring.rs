//! `concord keygen` and `concord keyring`: Consul's gossip key commands. `keygen` prints a
//! fresh 32-byte key; `keyring` lists, installs, switches and removes keys through
//! `/v1/operator/keyring`, which carries each change to every member and answers once every
//! alive member reports it (up to 10 s), so `-install`, `-use` and `-remove` can run back to
//! back; an error lists the members that did not follow.

use serde::Deserialize;

use crate::flags::{flag, parse_or_usage, Flag, Kind, Parsed};
use crate::http::HttpClient;
use crate::output::{fail, outln};

/// Runs `concord keygen`: 32 random bytes, base64 (an AES-256 `-encrypt` key).
pub(crate) fn keygen(args: &[String]) -> anyhow::Result<i32> {
    if !args.is_empty() {
        return fail("Usage: concord keygen\n\n  Generates a new gossip encryption key.");
    }
    outln(&concord_net::gossip::keygen())?;
    Ok(0)
}

const USAGE: &str = "Usage: concord keyring [options]

  Manages the gossip encryption keys of the whole pool. Exactly one action:

  -install=<key>        Install a key on every member.
  -use=<key>            Make an installed key the primary (encrypting) key everywhere.
  -remove=<key>         Remove a key from every member (not the primary).
  -list                 List the installed keys and how many members hold each.
  -list-primary         List the primary keys.
  -relay-factor=<n>     Accepted for compatibility (0 to 5).
  -local-only           Accepted for compatibility (with -list).";

const FLAGS: &[Flag] = &[
    flag("install", Kind::Str),
    flag("use", Kind::Str),
    flag("remove", Kind::Str),
    flag("list", Kind::Bool),
    flag("list-primary", Kind::Bool),
    flag("relay-factor", Kind::Str),
    flag("local-only", Kind::Bool),
];

/// One pool's answer from `GET /v1/operator/keyring`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyringResponse {
    #[serde(rename = "WAN", default)]
    wan: bool,
    #[serde(default)]
    datacenter: String,
    #[serde(default)]
    segment: String,
    #[serde(default)]
    keys: std::collections::BTreeMap<String, u64>,
    #[serde(default)]
    primary_keys: std::collections::BTreeMap<String, u64>,
    #[serde(default)]
    messages: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    num_nodes: u64,
}

/// What `keyring` was asked to do.
#[derive(Debug, PartialEq)]
enum Action {
    List {
        primary: bool,
    },
    Change {
        method: reqwest::Method,
        key: String,
    },
}

fn action(p: &Parsed) -> Result<Option<Action>, String> {
    let mut actions = Vec::new();
    if p.bool("list") {
        actions.push(Action::List { primary: false });
    }
    if p.bool("list-primary") {
        actions.push(Action::List { primary: true });
    }
    for (name, method) in [
        ("install", reqwest::Method::POST),
        ("use", reqwest::Method::PUT),
        ("remove", reqwest::Method::DELETE),
    ] {
        if let Some(key) = p.value(name) {
            actions.push(Action::Change {
                method,
                key: key.to_string(),
            });
        }
    }
    if actions.len() > 1 {
        return Err("Only a single action is allowed".to_string());
    }
    if let Some(v) = p.value("relay-factor") {
        let n: i64 = v
            .parse()
            .map_err(|e| format!("Error parsing relay factor: {e}"))?;
        if !(0..=5).contains(&n) {
            return Err(
                "Error parsing relay factor: Relay factor must be in range: [0, 5]".to_string(),
            );
        }
    }
    Ok(actions.pop())
}

/// One response block as Consul prints it: `\n<pool>:\n`, messages, keys `  <key> [n/N]`.
fn format_response(r: &KeyringResponse, primary: bool) -> String {
    let mut pool = if r.wan {
        "WAN".to_string()
    } else {
        format!("{} (LAN)", r.datacenter)
    };
    if !r.segment.is_empty() {
        pool.push_str(&format!(" [{}]", r.segment));
    }
    let mut text = format!("\n{pool}:\n");
    for (node, msg) in &r.messages {
        text.push_str(&format!("  ===> {node}: {msg}\n"));
    }
    let keys = if primary { &r.primary_keys } else { &r.keys };
    for (key, n) in keys {
        text.push_str(&format!("  {key} [{n}/{}]\n", r.num_nodes));
    }
    text.trim_end_matches('\n').to_string()
}

/// Runs `concord keyring ...`.
pub(crate) async fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let p = match parse_or_usage(&args, FLAGS, USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let action = match action(&p) {
        Ok(Some(a)) => a,
        Ok(None) => return fail(USAGE),
        Err(e) => return fail(e),
    };
    let client = match HttpClient::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("error: {e}")),
    };
    let mut query = Vec::new();
    if let Some(v) = p.value("relay-factor") {
        query.push(("relay-factor", v.to_string()));
    }
    if p.bool("local-only") {
        query.push(("local-only", "true".to_string()));
    }
    match action {
        Action::List { primary } => {
            outln(if primary {
                "==> Gathering installed primary encryption keys..."
            } else {
                "==> Gathering installed encryption keys..."
            })?;
            let responses: Vec<KeyringResponse> =
                match client.get_json("/v1/operator/keyring", &query).await {
                    Ok(r) => r.unwrap_or_default(),
                    Err(e) => return fail(format!("error: {e}")),
                };
            for r in &responses {
                outln(&format_response(r, primary))?;
            }
        }
        Action::Change { method, key } => {
            let banner = match method {
                reqwest::Method::POST => "==> Installing new gossip encryption key...",
                reqwest::Method::PUT => "==> Changing primary gossip encryption key...",
                _ => "==> Removing gossip encryption key...",
            };
            outln(banner)?;
            let body = serde_json::to_vec(&serde_json::json!({ "Key": key }))?;
            if let Err(e) = client
                .request(method, "/v1/operator/keyring", &query, Some(body))
                .await
            {
                return fail(format!("error: {e}"));
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::parse_flags;

    fn parsed(args: &[&str]) -> Parsed {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse_flags(&args, FLAGS).unwrap()
    }

    #[test]
    fn one_action_at_a_time() {
        assert_eq!(action(&parsed(&[])).unwrap(), None);
        assert_eq!(
            action(&parsed(&["-list", "-install=k"])).unwrap_err(),
            "Only a single action is allowed"
        );
        assert_eq!(
            action(&parsed(&["-use=k"])).unwrap(),
            Some(Action::Change {
                method: reqwest::Method::PUT,
                key: "k".into()
            })
        );
        assert!(action(&parsed(&["-list", "-relay-factor=9"])).is_err());
    }

    #[test]
    fn list_output_like_consul() {
        let r = KeyringResponse {
            wan: false,
            datacenter: "dc1".into(),
            segment: String::new(),
            keys: [("k1=".to_string(), 2), ("k2=".to_string(), 1)].into(),
            primary_keys: [("k1=".to_string(), 2)].into(),
            messages: Default::default(),
            num_nodes: 2,
        };
        assert_eq!(
            format_response(&r, false),
            "\ndc1 (LAN):\n  k1= [2/2]\n  k2= [1/2]"
        );
        assert_eq!(format_response(&r, true), "\ndc1 (LAN):\n  k1= [2/2]");
    }

    #[test]
    fn keygen_makes_32_byte_keys() {
        use base64::Engine as _;
        let key = concord_net::gossip::keygen();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&key)
            .unwrap();
        assert_eq!((key.len(), bytes.len()), (44, 32));
    }
}
