//! `concord watch -type=TYPE [options] [HANDLER]`: Consul's watches. A loop of blocking
//! queries on one view (a key, a prefix, the services, the nodes, one service's health,
//! checks, or events); each time its index moves, the handler runs with the view's JSON on
//! stdin (and `CONSUL_INDEX` in its environment), or without a handler the JSON is printed.

use std::time::Duration;

use tokio::io::AsyncWriteExt as _;

use crate::flags::{flag, parse_or_usage, Flag, Kind, Parsed};
use crate::http::{escape_path, HttpClient};
use crate::output::{fail, outln};

const USAGE: &str = "Usage: concord watch [options] [HANDLER]

  Watches a view of the data for changes (blocking queries) and runs HANDLER each time
  with the view's JSON on stdin; without HANDLER the JSON is printed.

  -type=<type>        key, keyprefix, services, nodes, service, checks or event.
  -key=<key>          The key (-type=key).
  -prefix=<prefix>    The key prefix (-type=keyprefix).
  -service=<name>     The service (-type=service, or checks of one service).
  -tag=<tag>          Only instances with this tag (-type=service; repeatable).
  -passingonly        Only instances whose checks pass (-type=service).
  -state=<state>      Only checks in this state (-type=checks): any, passing, warning,
                      critical.
  -name=<name>        The event name (-type=event).
  -shell              Run HANDLER through sh -c (default true).
  -stale              Allow any server to answer.";

const FLAGS: &[Flag] = &[
    flag("type", Kind::Str),
    flag("key", Kind::Str),
    flag("prefix", Kind::Str),
    flag("service", Kind::Str),
    flag("tag", Kind::List),
    flag("passingonly", Kind::Bool),
    flag("state", Kind::Str),
    flag("name", Kind::Str),
    flag("shell", Kind::Bool),
    flag("stale", Kind::Bool),
];

/// Wait after a failed query before trying again (Consul's watch retries after 5 s at most).
const RETRY: Duration = Duration::from_secs(1);

/// What to watch: the path and query of its blocking read, and how a 404 reads (`null`
/// for a missing key, `[]` for an empty prefix).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct View {
    pub(crate) path: String,
    pub(crate) query: Vec<(&'static str, String)>,
    pub(crate) missing: &'static str,
}

/// The view the flags name, or what is wrong with them (Consul's texts).
pub(crate) fn view(p: &Parsed) -> Result<View, String> {
    let need = |name: &str, what: &str| -> Result<String, String> {
        match p.value(name) {
            Some(v) if !v.is_empty() => Ok(v.to_string()),
            _ => Err(format!("Must specify a single {what} to watch")),
        }
    };
    let mut query = Vec::new();
    if p.bool("stale") {
        query.push(("stale", String::new()));
    }
    let (path, missing) = match p.value_or("type", "") {
        "" => return Err("-type is required".to_string()),
        "key" => (
            format!("/v1/kv/{}", escape_path(&need("key", "key")?)),
            "null",
        ),
        "keyprefix" => {
            query.push(("recurse", String::new()));
            (
                format!("/v1/kv/{}", escape_path(&need("prefix", "prefix")?)),
                "[]",
            )
        }
        "services" => ("/v1/catalog/services".to_string(), "{}"),
        "nodes" => ("/v1/catalog/nodes".to_string(), "[]"),
        "service" => {
            for tag in p.list("tag") {
                query.push(("tag", tag.clone()));
            }
            if p.bool("passingonly") {
                query.push(("passing", String::new()));
            }
            let name = need("service", "service")?;
            (format!("/v1/health/service/{}", escape_path(&name)), "[]")
        }
        "checks" => match (p.value("service"), p.value("state")) {
            (Some(_), Some(_)) => return Err("Cannot specify service and state".to_string()),
            (Some(service), None) => (format!("/v1/health/checks/{}", escape_path(service)), "[]"),
            (None, state) => (
                format!("/v1/health/state/{}", escape_path(state.unwrap_or("any"))),
                "[]",
            ),
        },
        "event" => {
            if let Some(name) = p.value("name").filter(|n| !n.is_empty()) {
                query.push(("name", name.to_string()));
            }
            ("/v1/event/list".to_string(), "[]")
        }
        other => return Err(format!("Unsupported watch type: {other}")),
    };
    Ok(View {
        path,
        query,
        missing,
    })
}

/// Runs `concord watch ARGS` until interrupted.
pub(crate) async fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let p = match parse_or_usage(&args, FLAGS, USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let view = match view(&p) {
        Ok(v) => v,
        Err(e) => return fail(format!("Error: {e}")),
    };
    let handler = (!p.args.is_empty()).then(|| p.args.clone());
    let shell = p.value("shell").is_none_or(|_| p.bool("shell"));
    let client = match HttpClient::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error connecting to agent: {e}")),
    };
    let mut index = 0u64;
    loop {
        let mut query = view.query.clone();
        if index > 0 {
            query.push(("index", index.to_string()));
        }
        let answer = tokio::select! {
            a = client.get_indexed(&view.path, &query) => a,
            _ = tokio::signal::ctrl_c() => return Ok(0),
        };
        let (body, new_index) = match answer {
            Ok(a) => a,
            Err(e) => {
                eprintln!("Error querying for the watch: {e}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        // Consul's watch fires on the first answer and whenever the index moves; an index
        // that goes backwards (a restored snapshot) starts over.
        if index != 0 && new_index == index {
            continue;
        }
        index = if new_index < index { 0 } else { new_index };
        let json = match body {
            Some(b) => b,
            None => view.missing.as_bytes().to_vec(),
        };
        match &handler {
            None => {
                let value: serde_json::Value = serde_json::from_slice(&json)?;
                let mut buf = Vec::new();
                let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
                let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
                serde::Serialize::serialize(&value, &mut ser)?;
                outln(&String::from_utf8_lossy(&buf))?;
            }
            Some(cmd) => {
                if let Err(e) = run_handler(cmd, shell, &json, new_index).await {
                    eprintln!("Error running handler: {e:#}");
                }
            }
        }
    }
}

/// Runs the handler with the JSON on stdin, waiting for it before the next query (Consul's
/// watch runs handlers one at a time).
async fn run_handler(cmd: &[String], shell: bool, json: &[u8], index: u64) -> anyhow::Result<()> {
    let mut command = if shell {
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c").arg(cmd.join(" "));
        c
    } else {
        let mut c = tokio::process::Command::new(&cmd[0]);
        c.args(&cmd[1..]);
        c
    };
    command
        .env("CONSUL_INDEX", index.to_string())
        .stdin(std::process::Stdio::piped());
    let mut child = command.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        // A handler that does not read its stdin is fine: a broken pipe is not an error.
        let _ = stdin.write_all(json).await;
        drop(stdin);
    }
    let status = child.wait().await?;
    if !status.success() {
        eprintln!("Handler exited with {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::parse_flags;

    fn flags(args: &[&str]) -> Parsed {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse_flags(&args, FLAGS).unwrap()
    }

    #[test]
    fn views_of_each_type() {
        let v = view(&flags(&["-type=key", "-key=app/x"])).unwrap();
        assert_eq!((v.path.as_str(), v.missing), ("/v1/kv/app/x", "null"));
        let v = view(&flags(&["-type=keyprefix", "-prefix=app/"])).unwrap();
        assert_eq!(v.path, "/v1/kv/app/");
        assert_eq!(v.query, [("recurse", String::new())]);
        let v = view(&flags(&[
            "-type=service",
            "-service=web",
            "-tag=v1",
            "-passingonly",
        ]))
        .unwrap();
        assert_eq!(v.path, "/v1/health/service/web");
        assert_eq!(
            v.query,
            [("tag", "v1".to_string()), ("passing", String::new())]
        );
        assert_eq!(
            view(&flags(&["-type=checks"])).unwrap().path,
            "/v1/health/state/any"
        );
        assert_eq!(
            view(&flags(&["-type=checks", "-service=web"]))
                .unwrap()
                .path,
            "/v1/health/checks/web"
        );
        let v = view(&flags(&["-type=event", "-name=deploy"])).unwrap();
        assert_eq!(v.query, [("name", "deploy".to_string())]);
        assert_eq!(
            view(&flags(&["-type=nodes"])).unwrap().path,
            "/v1/catalog/nodes"
        );
        assert_eq!(
            view(&flags(&["-type=services"])).unwrap().path,
            "/v1/catalog/services"
        );
        assert_eq!(
            view(&flags(&["-type=key"])).unwrap_err(),
            "Must specify a single key to watch"
        );
        assert_eq!(view(&flags(&[])).unwrap_err(), "-type is required");
        assert_eq!(
            view(&flags(&["-type=bogus"])).unwrap_err(),
            "Unsupported watch type: bogus"
        );
    }
}
