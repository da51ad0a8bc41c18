//! `concord intention create|delete|get|check|list|match`: Consul's `consul intention`
//! commands, over the `/v1/connect/intentions` endpoints (by name pair, or by legacy ID
//! where Consul's commands accept one).

use std::collections::BTreeMap;

use concord_api::intention::Intention;
use serde_json::json;

use crate::flags::{flag, parse_or_usage, Flag, Kind, Parsed};
use crate::http::{escape_path, ClientError, HttpClient};
use crate::output::{columnize, fail, outln};

const USAGE: &str = "Usage: concord intention <subcommand> [options] [args]

  Creates, reads and checks intentions: which services may connect to which.

Subcommands:
    check     Check whether a connection between two services is allowed
    create    Create intentions for service connections
    delete    Delete an intention
    get       Show information about an intention
    list      List all intentions
    match     Show intentions that match a source or destination";

const CREATE_USAGE: &str = "Usage: concord intention create [options] SRC DST

  Creates an intention from SRC to DST (`*` for any service).

  -allow                Allow the connection (default).
  -deny                 Deny the connection.
  -description=<text>   Description of the intention.
  -meta=<key=value>     Metadata (repeatable).
  -replace              Replace an existing intention for the same pair.";

const CREATE_FLAGS: &[Flag] = &[
    flag("allow", Kind::Bool),
    flag("deny", Kind::Bool),
    flag("description", Kind::Str),
    flag("meta", Kind::List),
    flag("replace", Kind::Bool),
];

const MATCH_FLAGS: &[Flag] = &[flag("source", Kind::Bool), flag("destination", Kind::Bool)];

/// Runs `concord intention <subcommand> ...`; returns the exit code.
pub(crate) async fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let Some((sub, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return Ok(1);
    };
    match sub.as_str() {
        "create" => create(rest).await,
        "delete" => delete(rest).await,
        "get" => get(rest).await,
        "check" => check(rest).await,
        "list" => list(rest).await,
        "match" => matches(rest).await,
        "-h" | "-help" | "--help" => {
            eprintln!("{USAGE}");
            Ok(0)
        }
        other => fail(format!("Unknown subcommand: intention {other}\n\n{USAGE}")),
    }
}

fn client(p: &Parsed) -> Result<HttpClient, i32> {
    HttpClient::from_flags(p).map_err(|e| {
        eprintln!("Error connecting to agent: {e}");
        1
    })
}

fn pair_query(src: &str, dst: &str) -> Vec<(&'static str, String)> {
    vec![
        ("source", src.to_string()),
        ("destination", dst.to_string()),
    ]
}

/// The intention named by `SRC DST`, or by an ID when one argument is given.
async fn lookup(c: &HttpClient, args: &[String]) -> Result<Option<Intention>, ClientError> {
    match args {
        [id] => {
            c.get_json(&format!("/v1/connect/intentions/{}", escape_path(id)), &[])
                .await
        }
        [src, dst] => {
            c.get_json("/v1/connect/intentions/exact", &pair_query(src, dst))
                .await
        }
        _ => Ok(None),
    }
}

async fn create(args: &[String]) -> anyhow::Result<i32> {
    let p = match parse_or_usage(args, CREATE_FLAGS, CREATE_USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let [src, dst] = p.args.as_slice() else {
        return fail(format!(
            "Error: Must specify two arguments: source and destination\n\n{CREATE_USAGE}"
        ));
    };
    if p.bool("allow") && p.bool("deny") {
        return fail("Error: Only one of -allow or -deny may be specified");
    }
    let action = if p.bool("deny") { "deny" } else { "allow" };
    let mut meta = BTreeMap::new();
    for kv in p.list("meta") {
        let (k, v) = crate::flags::split_key_value(kv)?;
        meta.insert(k, v);
    }
    let c = match client(&p) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let existing = match lookup(&c, &p.args).await {
        Ok(e) => e,
        Err(e) => return fail(format!("Error querying intention: {e}")),
    };
    if existing.is_some() && !p.bool("replace") {
        return fail(format!(
            "Error: Intention with source {src:?} and destination {dst:?} already exists"
        ));
    }
    let body = json!({
        "SourceName": src,
        "DestinationName": dst,
        "SourceType": "consul",
        "Action": action,
        "Description": p.value_or("description", ""),
        "Meta": meta,
    });
    let result = match existing.filter(|e| !e.id.is_empty()) {
        // A legacy intention keeps its ID when replaced.
        Some(old) => {
            let path = format!("/v1/connect/intentions/{}", escape_path(&old.id));
            c.put(&path, &[], serde_json::to_vec(&body)?).await
        }
        None if meta.is_empty() => {
            c.put(
                "/v1/connect/intentions/exact",
                &pair_query(src, dst),
                serde_json::to_vec(&body)?,
            )
            .await
        }
        // Only the legacy create keeps Meta (as in Consul).
        None => {
            c.post("/v1/connect/intentions", &[], serde_json::to_vec(&body)?)
                .await
        }
    };
    if let Err(e) = result {
        return fail(format!("Error creating intention: {e}"));
    }
    outln(&format!("Created: {src} => {dst} ({action})"))?;
    Ok(0)
}

async fn delete(args: &[String]) -> anyhow::Result<i32> {
    let p = match parse_or_usage(
        args,
        &[],
        "Usage: concord intention delete [options] (SRC DST|ID)",
    ) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let c = match client(&p) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let result = match p.args.as_slice() {
        [id] => {
            c.delete(&format!("/v1/connect/intentions/{}", escape_path(id)), &[])
                .await
        }
        [src, dst] => {
            c.delete("/v1/connect/intentions/exact", &pair_query(src, dst))
                .await
        }
        _ => return fail("Error: delete requires exactly 1 or 2 arguments"),
    };
    match result {
        Ok(_) => {
            outln("Intention deleted.")?;
            Ok(0)
        }
        Err(e) => fail(format!("Error deleting intention: {e}")),
    }
}

/// What `intention get` prints: aligned `Key: value` rows.
pub(crate) fn describe(ixn: &Intention) -> String {
    let mut rows = vec![
        vec!["Source:".to_string(), ixn.source_name.clone()],
        vec!["Destination:".to_string(), ixn.destination_name.clone()],
    ];
    if ixn.permissions.is_empty() {
        rows.push(vec!["Action:".to_string(), ixn.action.clone()]);
    } else {
        rows.push(vec![
            "Permissions:".to_string(),
            ixn.permissions.len().to_string(),
        ]);
    }
    if !ixn.id.is_empty() {
        rows.push(vec!["ID:".to_string(), ixn.id.clone()]);
    }
    if !ixn.description.is_empty() {
        rows.push(vec!["Description:".to_string(), ixn.description.clone()]);
    }
    for (k, v) in &ixn.meta {
        rows.push(vec![format!("Meta[{k}]:"), v.clone()]);
    }
    rows.push(vec!["Precedence:".to_string(), ixn.precedence.to_string()]);
    rows.push(vec!["Created At:".to_string(), ixn.created_at.clone()]);
    columnize(&rows)
}

async fn get(args: &[String]) -> anyhow::Result<i32> {
    let p = match parse_or_usage(
        args,
        &[],
        "Usage: concord intention get [options] (SRC DST|ID)",
    ) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if p.args.is_empty() || p.args.len() > 2 {
        return fail("Error: get requires exactly 1 or 2 arguments");
    }
    let c = match client(&p) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    match lookup(&c, &p.args).await {
        Ok(Some(ixn)) => {
            outln(&describe(&ixn))?;
            Ok(0)
        }
        Ok(None) => fail("Error: Intention not found."),
        Err(e) => fail(format!("Error reading intention: {e}")),
    }
}

/// `intention check SRC DST`: prints `Allowed` (exit 0) or `Denied` (exit 2), as Consul.
async fn check(args: &[String]) -> anyhow::Result<i32> {
    let p = match parse_or_usage(
        args,
        &[],
        "Usage: concord intention check [options] SRC DST",
    ) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let [src, dst] = p.args.as_slice() else {
        return fail("Error: check requires exactly two arguments: source and destination");
    };
    let c = match client(&p) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let answer: Option<serde_json::Value> = match c
        .get_json("/v1/connect/intentions/check", &pair_query(src, dst))
        .await
    {
        Ok(v) => v,
        Err(e) => return fail(format!("Error checking the connection: {e}")),
    };
    let allowed = answer
        .as_ref()
        .and_then(|v| v.get("Allowed"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    if allowed {
        outln("Allowed")?;
        Ok(0)
    } else {
        outln("Denied")?;
        Ok(2)
    }
}

/// The rows of `intention list`.
pub(crate) fn list_table(list: &[Intention]) -> String {
    let mut rows = vec![vec![
        "ID".to_string(),
        "Source".to_string(),
        "Action".to_string(),
        "Destination".to_string(),
        "Precedence".to_string(),
    ]];
    for i in list {
        let action = if i.permissions.is_empty() {
            i.action.clone()
        } else {
            String::new()
        };
        rows.push(vec![
            i.id.clone(),
            i.source_name.clone(),
            action,
            i.destination_name.clone(),
            i.precedence.to_string(),
        ]);
    }
    columnize(&rows)
}

async fn list(args: &[String]) -> anyhow::Result<i32> {
    let p = match parse_or_usage(args, &[], "Usage: concord intention list [options]") {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let c = match client(&p) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    match c
        .get_json::<Vec<Intention>>("/v1/connect/intentions", &[])
        .await
    {
        Ok(list) => {
            let list = list.unwrap_or_default();
            if list.is_empty() {
                return fail("There are no intentions.");
            }
            outln(&list_table(&list))?;
            Ok(0)
        }
        Err(e) => fail(format!("Error listing intentions: {e}")),
    }
}

/// `intention match [-source|-destination] NAME`: the matching intentions, highest
/// precedence first, as `SRC => DST (action)` lines.
async fn matches(args: &[String]) -> anyhow::Result<i32> {
    let p = match parse_or_usage(args, MATCH_FLAGS, "Usage: concord intention match [options] NAME\n\n  -destination  Match by destination (default).\n  -source       Match by source.") {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let [name] = p.args.as_slice() else {
        return fail("Error: match requires exactly one argument");
    };
    if p.bool("source") && p.bool("destination") {
        return fail("Error: only one of -source or -destination may be specified");
    }
    let by = if p.bool("source") {
        "source"
    } else {
        "destination"
    };
    let c = match client(&p) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let query = [("by", by.to_string()), ("name", name.clone())];
    let answer: Option<BTreeMap<String, Vec<Intention>>> =
        match c.get_json("/v1/connect/intentions/match", &query).await {
            Ok(v) => v,
            Err(e) => return fail(format!("Error matching the intention: {e}")),
        };
    for ixn in answer.unwrap_or_default().remove(name).unwrap_or_default() {
        outln(&ixn.summary())?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ixn(src: &str, dst: &str, action: &str, id: &str) -> Intention {
        Intention {
            id: id.into(),
            source_name: src.into(),
            destination_name: dst.into(),
            action: action.into(),
            precedence: concord_api::intention::precedence(src, dst),
            created_at: "2023-11-14T22:13:20Z".into(),
            ..Intention::default()
        }
    }

    #[test]
    fn list_and_get_layouts() {
        let table = list_table(&[ixn("web", "db", "allow", "abc"), ixn("*", "*", "deny", "")]);
        assert_eq!(
            table,
            "ID   Source  Action  Destination  Precedence\nabc  web     allow   db           9\n     *       deny    *            5"
        );
        let text = describe(&ixn("web", "db", "allow", ""));
        assert_eq!(
            text,
            "Source:       web\nDestination:  db\nAction:       allow\nPrecedence:   9\nCreated At:   2023-11-14T22:13:20Z"
        );
    }
}
