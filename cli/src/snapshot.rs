//! `concord snapshot save|restore|inspect`: Consul's `consul snapshot`, over
//! `GET`/`PUT /v1/snapshot` and the archive format in [`concord_server::archive`].
//!
//! `save` writes to `FILE.tmp`, verifies the archive in full (checksums, version, state
//! decodes), then renames it into place, so a failed save never leaves a bad `FILE`.
//! `restore` sends the file as is: the leader verifies it before changing anything, so a
//! corrupt file is refused there with the archive's own error. `inspect` is offline.

use concord_server::archive::{self, Verified};

use crate::flags::{flag, parse_or_usage, Flag, Kind, Parsed};
use crate::http::HttpClient;
use crate::output::{fail, out, outln};

const USAGE: &str = "Usage: concord snapshot <subcommand> [options] [args]

  Saves, restores and inspects snapshots of the servers' state (a gzipped tar with
  meta.json, state.bin and SHA256SUMS).

Subcommands:
    inspect    Displays information about a snapshot file
    restore    Restores snapshot of the servers' state
    save       Saves snapshot of the servers' state";

const SAVE_USAGE: &str = "Usage: concord snapshot save [options] FILE

  Retrieves an atomic, point-in-time snapshot of the state of the servers, verifies it
  and saves it to FILE.

  -stale    Let any server answer, even without a leader (the snapshot may be stale).";

const RESTORE_USAGE: &str = "Usage: concord snapshot restore [options] FILE

  Restores an atomic, point-in-time snapshot of the state of the servers. Every server
  replaces its state with the snapshot's; a corrupt or truncated file changes nothing.";

const INSPECT_USAGE: &str = "Usage: concord snapshot inspect FILE

  Displays information about a snapshot file (read locally; no agent needed).";

const SAVE_FLAGS: &[Flag] = &[flag("stale", Kind::Bool)];

/// Runs `concord snapshot ...`.
pub(crate) async fn run(mut args: Vec<String>) -> anyhow::Result<i32> {
    if args.is_empty() {
        return fail(USAGE);
    }
    let sub = args.remove(0);
    match sub.as_str() {
        "save" => save(args).await,
        "restore" => restore(args).await,
        "inspect" => inspect(&args),
        "-h" | "-help" | "--help" | "help" => {
            outln(USAGE)?;
            Ok(0)
        }
        other => fail(format!("Unknown snapshot subcommand {other:?}\n\n{USAGE}")),
    }
}

/// The one FILE argument, or Consul's complaint.
fn one_file(p: &Parsed) -> Result<&str, &'static str> {
    match p.args.as_slice() {
        [] => Err("Missing FILE argument"),
        [file] => Ok(file),
        _ => Err("Too many arguments (expected 1, got more)"),
    }
}

/// For `restore` and `inspect`: the flags and the bytes of the one FILE argument, or the
/// exit code of a failure already reported.
fn parse_and_read(args: &[String], usage: &str) -> Result<(Parsed, Vec<u8>), i32> {
    let p = parse_or_usage(args, &[], usage)?;
    let file = one_file(&p).map_err(|e| fail(e).unwrap_or(1))?;
    match std::fs::read(file) {
        Ok(bytes) => Ok((p, bytes)),
        Err(e) => Err(fail(format!("Error opening snapshot file: {e}")).unwrap_or(1)),
    }
}

async fn save(args: Vec<String>) -> anyhow::Result<i32> {
    let p = match parse_or_usage(&args, SAVE_FLAGS, SAVE_USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let file = match one_file(&p) {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let client = match HttpClient::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error querying Consul agent: {e}")),
    };
    let query: Vec<(&str, String)> = if p.bool("stale") {
        vec![("stale", String::new())]
    } else {
        Vec::new()
    };
    let archive = match client
        .request(reqwest::Method::GET, "/v1/snapshot", &query, None)
        .await
    {
        Ok(a) => a,
        Err(e) => return fail(format!("Error saving snapshot: {e}")),
    };
    let tmp = format!("{file}.tmp");
    if let Err(e) = std::fs::write(&tmp, &archive) {
        return fail(format!("Error writing snapshot file: {e}"));
    }
    let verified = match archive::read(&archive) {
        Ok(v) => v,
        Err(e) => {
            // Best effort: the temp file is useless, and the error below is what matters.
            let _ = std::fs::remove_file(&tmp);
            return fail(format!("Error verifying snapshot file: {e}"));
        }
    };
    if let Err(e) = std::fs::rename(&tmp, file) {
        return fail(format!("Error renaming snapshot file: {e}"));
    }
    outln(&format!(
        "Saved and verified snapshot to index {}",
        verified.meta.index
    ))?;
    Ok(0)
}

async fn restore(args: Vec<String>) -> anyhow::Result<i32> {
    let (p, archive) = match parse_and_read(&args, RESTORE_USAGE) {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    let client = match HttpClient::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error querying Consul agent: {e}")),
    };
    if let Err(e) = client.put("/v1/snapshot", &[], archive).await {
        return fail(format!("Error restoring snapshot: {e}"));
    }
    outln("Restored snapshot")?;
    Ok(0)
}

fn inspect(args: &[String]) -> anyhow::Result<i32> {
    let (_, archive) = match parse_and_read(args, INSPECT_USAGE) {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    match archive::read(&archive) {
        Ok(verified) => {
            out(render_inspect(&verified))?;
            Ok(0)
        }
        Err(e) => fail(format!("Error verifying snapshot: {e}")),
    }
}

/// Consul's `snapshot inspect` layout: the meta block, then records per type. Consul's
/// types are its Raft message types (`Register`, `KVS`, ...) with a size column; ours are
/// the state store's tables, counted.
fn render_inspect(v: &Verified) -> String {
    let m = &v.meta;
    let mut text = String::new();
    for (label, value) in [
        ("ID", m.id.clone()),
        ("Size", m.size.to_string()),
        ("Index", m.index.to_string()),
        ("Term", m.term.to_string()),
        ("Version", m.version.to_string()),
    ] {
        text.push_str(&format!(" {label:<13}{value}\n"));
    }
    text.push('\n');
    text.push_str(&format!(" {:<28}{}\n", "Type", "Count"));
    text.push_str(&format!(" {:<28}{}\n", "----", "-----"));
    for (table, count) in &v.counts {
        text.push_str(&format!(" {table:<28}{count}\n"));
    }
    let total: usize = v.counts.iter().map(|c| c.1).sum();
    text.push_str(&format!(" {:<28}{}\n", "----", "-----"));
    text.push_str(&format!(" {:<28}{total}\n", "Total"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_renders_consuls_meta_block_then_counts() {
        let state = br#"{"nodes":[],"services":[],"checks":[],"kvs":[],"tombstones":[],"lock_delays":[],"sessions":[],"indexes":{"kvs":9},"service_indexes":{}}"#;
        let bytes = archive::write(state, 9, 2, 1_477_944_140_022).unwrap();
        let text = render_inspect(&archive::read(&bytes).unwrap());
        let expected = format!(
            " ID           2-9-1477944140022
 Size         {}
 Index        9
 Term         2
 Version      1

 Type                        Count
 ----                        -----
 nodes                       0
 services                    0
 checks                      0
 kvs                         0
 tombstones                  0
 sessions                    0
 acl_tokens                  0
 acl_policies                0
 acl_roles                   0
 ----                        -----
 Total                       0
",
            state.len()
        );
        assert_eq!(text, expected);
    }
}
