//! `concord kv put|get|delete|export|import`: Consul's `consul kv` commands over `/v1/kv`,
//! with the same flags, messages and exit codes (`export`/`import` in `kv/transfer`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use concord_api::kv::KvEntry;
use tokio::io::AsyncReadExt as _;

use crate::flags::{flag, parse_or_usage, Flag, Kind};

mod transfer;
use crate::http::{escape_path, parse_bool_body, HttpClient};
use crate::output::{fail, out, outln};

const USAGE: &str = "Usage: concord kv <subcommand> [options] [args]

  Interacts with the key-value store: put, get and delete keys.

Subcommands:
    delete    Removes data from the KV store
    export    Exports a tree from the KV store as JSON
    get       Retrieves or lists data from the KV store
    import    Imports a tree stored as JSON to the KV store
    put       Sets or updates data in the KV store";

const PUT_USAGE: &str = "Usage: concord kv put [options] KEY [DATA]

  Writes DATA (empty if omitted) to KEY. DATA may be @FILE to read a file, or - to read
  stdin.

  -acquire              Obtain a lock on the key (requires -session).
  -base64               Treat DATA as base64-encoded.
  -cas                  Check-and-set: write only if the key's ModifyIndex equals
                        -modify-index (0: only if the key does not exist).
  -flags=<uint>         Opaque flags to store with the key.
  -modify-index=<uint>  ModifyIndex for -cas.
  -release              Release the lock held by -session.
  -session=<id>         Session for -acquire and -release.";

const GET_USAGE: &str = "Usage: concord kv get [options] [KEY_OR_PREFIX]

  Prints the value at KEY. Errors (exit 1) if no such key exists.

  -base64               Base64-encode values.
  -detailed             Print the key's metadata as well.
  -keys                 List the keys under the prefix instead (folded at -separator).
  -recurse              Print every key:value under the prefix.
  -separator=<string>   Separator for -keys (default \"/\").";

const DELETE_USAGE: &str = "Usage: concord kv delete [options] KEY_OR_PREFIX

  Removes KEY (doing nothing if it does not exist).

  -cas                  Delete only if the key's ModifyIndex equals -modify-index.
  -modify-index=<uint>  ModifyIndex for -cas.
  -recurse              Delete every key with the prefix.";

const PUT_FLAGS: &[Flag] = &[
    flag("acquire", Kind::Bool),
    flag("base64", Kind::Bool),
    flag("cas", Kind::Bool),
    flag("flags", Kind::Uint),
    flag("modify-index", Kind::Uint),
    flag("release", Kind::Bool),
    flag("session", Kind::Str),
];

const GET_FLAGS: &[Flag] = &[
    flag("base64", Kind::Bool),
    flag("detailed", Kind::Bool),
    flag("keys", Kind::Bool),
    flag("recurse", Kind::Bool),
    flag("separator", Kind::Str),
];

const DELETE_FLAGS: &[Flag] = &[
    flag("cas", Kind::Bool),
    flag("modify-index", Kind::Uint),
    flag("recurse", Kind::Bool),
];

/// Runs `concord kv <subcommand> ...`; returns the exit code.
pub(crate) async fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let Some((sub, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return Ok(1);
    };
    match sub.as_str() {
        "put" => put(rest).await,
        "get" => get(rest).await,
        "delete" => delete(rest).await,
        "export" => transfer::export(rest).await,
        "import" => transfer::import(rest).await,
        "-h" | "-help" | "--help" => {
            eprintln!("{USAGE}");
            Ok(0)
        }
        other => fail(format!("Unknown subcommand: kv {other}\n\n{USAGE}")),
    }
}

fn kv_path(key: &str) -> String {
    format!("/v1/kv/{}", escape_path(key))
}

/// Consul strips one leading slash: keys never start with one, but users type `/foo`.
fn strip_slash(key: &str) -> &str {
    key.strip_prefix('/').unwrap_or(key)
}

async fn put(args: &[String]) -> anyhow::Result<i32> {
    let p = match parse_or_usage(args, PUT_FLAGS, PUT_USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let (key, data) = match p.args.as_slice() {
        [] => return fail("Error! Missing KEY argument"),
        [key] => (key.as_str(), Vec::new()),
        [key, source] => match load_data(source).await {
            Ok(data) => (key.as_str(), data),
            Err(e) => return fail(format!("Error! {e}")),
        },
        more => {
            return fail(format!(
                "Error! Too many arguments (expected 1 or 2, got {})",
                more.len()
            ))
        }
    };
    let data = if p.bool("base64") {
        // Go's decoder skips line breaks, so a file or stdin ending in a newline decodes.
        let text: Vec<u8> = data
            .into_iter()
            .filter(|b| !matches!(b, b'\r' | b'\n'))
            .collect();
        match STANDARD.decode(text) {
            Ok(d) => d,
            Err(e) => return fail(format!("Error! Cannot base 64 decode data: {e}")),
        }
    } else {
        data
    };
    let session = p.value_or("session", "").to_string();
    if (p.bool("acquire") || p.bool("release")) && session.is_empty() {
        return fail("Error! Missing -session (required with -acquire and -release)");
    }
    let client = match HttpClient::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error connecting to agent: {e}")),
    };

    let mut query = Vec::new();
    if p.uint("flags") != 0 {
        query.push(("flags", p.uint("flags").to_string()));
    }
    // Like Consul, the first of -cas, -acquire, -release wins; the server never sees two.
    let path = kv_path(key);
    if p.bool("cas") {
        let index = p.uint("modify-index");
        query.push(("cas", index.to_string()));
        let written = client.put(&path, &query, data).await;
        return match written.and_then(|body| parse_bool_body(&body)) {
            Err(e) => fail(format!("Error! Did not write to {key}: {e}")),
            Ok(false) if index == 0 => fail(format!(
                "Error! Did not write to {key}: CAS performed with index=0 and key already exists."
            )),
            Ok(false) => fail(format!("Error! Did not write to {key}: CAS failed")),
            Ok(true) => success(&format!("Success! Data written to: {key}")),
        };
    }
    if p.bool("acquire") || p.bool("release") {
        let (param, done, failed) = if p.bool("acquire") {
            ("acquire", "Lock acquired on", "Error! Did not acquire lock")
        } else {
            ("release", "Lock released on", "Error! Did not release lock")
        };
        query.push((param, session));
        let written = client.put(&path, &query, data).await;
        return match written.and_then(|body| parse_bool_body(&body)) {
            Err(e) => fail(format!("Error! Failed writing data: {e}")),
            Ok(false) => fail(failed),
            Ok(true) => success(&format!("Success! {done}: {key}")),
        };
    }
    match client.put(&path, &query, data).await {
        Err(e) => fail(format!("Error! Failed writing data: {e}")),
        Ok(_) => success(&format!("Success! Data written to: {key}")),
    }
}

fn success(line: &str) -> anyhow::Result<i32> {
    outln(line)?;
    Ok(0)
}

/// `DATA` as Consul's `LoadDataSource` reads it: empty, `@file`, `-`/`@-` (stdin), or the
/// argument itself (`-5` is data, not stdin).
async fn load_data(arg: &str) -> Result<Vec<u8>, String> {
    let source = match arg.strip_prefix('@') {
        Some(path) => path,
        None if arg == "-" => arg,
        None => return Ok(arg.as_bytes().to_vec()),
    };
    if source == "-" {
        let mut data = Vec::new();
        tokio::io::stdin()
            .read_to_end(&mut data)
            .await
            .map_err(|e| format!("Failed to read stdin: {e}"))?;
        Ok(data)
    } else {
        tokio::fs::read(source)
            .await
            .map_err(|e| format!("Failed to read file: {e}"))
    }
}

async fn get(args: &[String]) -> anyhow::Result<i32> {
    let p = match parse_or_usage(args, GET_FLAGS, GET_USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let key = match p.args.as_slice() {
        [] => "",
        [key] => strip_slash(key),
        more => {
            return fail(format!(
                "Too many arguments (expected 1, got {})",
                more.len()
            ))
        }
    };
    let (keys, recurse, detailed, base64) = (
        p.bool("keys"),
        p.bool("recurse"),
        p.bool("detailed"),
        p.bool("base64"),
    );
    if key.is_empty() && !(recurse || keys) {
        return fail("Error! Missing KEY argument");
    }
    let client = match HttpClient::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error connecting to agent: {e}")),
    };
    let path = kv_path(key);

    if keys && !recurse {
        let mut query = vec![("keys", String::new())];
        let separator = p.value_or("separator", "/");
        if !separator.is_empty() {
            query.push(("separator", separator.to_string()));
        }
        return match client.get_json::<Vec<String>>(&path, &query).await {
            Err(e) => fail(format!("Error querying agent: {e}")),
            Ok(found) => {
                out(format_lines(&found.unwrap_or_default()))?;
                Ok(0)
            }
        };
    }
    if recurse {
        let query = [("recurse", String::new())];
        let entries = match client.get_json::<Vec<KvEntry>>(&path, &query).await {
            Err(e) => return fail(format!("Error querying agent: {e}")),
            Ok(found) => found.unwrap_or_default(),
        };
        let text = match (keys, detailed) {
            (_, true) => format_detailed(&entries, base64, keys),
            (true, false) => {
                format_lines(&entries.iter().map(|e| e.key.clone()).collect::<Vec<_>>())
                    .into_bytes()
            }
            (false, false) => format_pairs(&entries, base64),
        };
        out(text)?;
        return Ok(0);
    }
    match client.get_json::<Vec<KvEntry>>(&path, &[]).await {
        Err(e) => fail(format!("Error querying agent: {e}")),
        Ok(found) => match found.unwrap_or_default().first() {
            None => fail(format!("Error! No key exists at: {key}")),
            Some(entry) if detailed => {
                out(format_detailed(std::slice::from_ref(entry), base64, false))?;
                Ok(0)
            }
            Some(entry) => {
                out(format_value(entry, base64))?;
                Ok(0)
            }
        },
    }
}

async fn delete(args: &[String]) -> anyhow::Result<i32> {
    let p = match parse_or_usage(args, DELETE_FLAGS, DELETE_USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let key = match p.args.as_slice() {
        [] => "",
        [key] => strip_slash(key),
        more => {
            return fail(format!(
                "Too many arguments (expected 1, got {})",
                more.len()
            ))
        }
    };
    let (cas, recurse, index) = (p.bool("cas"), p.bool("recurse"), p.uint("modify-index"));
    if key.is_empty() && !recurse {
        return fail("Error! Missing KEY argument");
    }
    if cas && index == 0 {
        return fail(
            "Cannot delete a key that does not exist. Provide a -modify-index greater than 0.",
        );
    }
    if index != 0 && !cas {
        return fail("Cannot specify -modify-index without -cas!");
    }
    if recurse && cas {
        return fail("Cannot specify both -cas and -recurse!");
    }
    let client = match HttpClient::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error connecting to agent: {e}")),
    };
    let path = kv_path(key);
    if recurse {
        return match client.delete(&path, &[("recurse", String::new())]).await {
            Err(e) => fail(format!("Error! Did not delete prefix {key}: {e}")),
            Ok(_) => success(&format!("Success! Deleted keys with prefix: {key}")),
        };
    }
    if cas {
        let deleted = client.delete(&path, &[("cas", index.to_string())]).await;
        return match deleted.and_then(|body| parse_bool_body(&body)) {
            Err(e) => fail(format!("Error! Did not delete key {key}: {e}")),
            Ok(false) => fail(format!("Error! Did not delete key {key}: CAS failed")),
            Ok(true) => success(&format!("Success! Deleted key: {key}")),
        };
    }
    match client.delete(&path, &[]).await {
        Err(e) => fail(format!("Error deleting key {key}: {e}")),
        Ok(_) => success(&format!("Success! Deleted key: {key}")),
    }
}

fn value_bytes(entry: &KvEntry, base64: bool) -> Vec<u8> {
    let raw = entry.value.as_deref().unwrap_or_default();
    if base64 {
        STANDARD.encode(raw).into_bytes()
    } else {
        raw.to_vec()
    }
}

/// `kv get KEY`: the raw value bytes (not necessarily UTF-8) and a newline.
pub(crate) fn format_value(entry: &KvEntry, base64: bool) -> Vec<u8> {
    let mut text = value_bytes(entry, base64);
    text.push(b'\n');
    text
}

/// `kv get -recurse`: one `key:value` line per entry.
pub(crate) fn format_pairs(entries: &[KvEntry], base64: bool) -> Vec<u8> {
    let mut text = Vec::new();
    for entry in entries {
        text.extend_from_slice(entry.key.as_bytes());
        text.push(b':');
        text.extend(value_bytes(entry, base64));
        text.push(b'\n');
    }
    text
}

/// One line per item (`kv get -keys`).
pub(crate) fn format_lines(items: &[String]) -> String {
    items.iter().map(|i| format!("{i}\n")).collect()
}

/// `-detailed`: each entry's fields as Consul's tabwriter lays them out (labels padded to the
/// widest plus 6), entries separated by a blank line. `keys_only` omits `Value`.
pub(crate) fn format_detailed(entries: &[KvEntry], base64: bool, keys_only: bool) -> Vec<u8> {
    let blocks: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| {
            let session = e
                .session
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or("-");
            let mut text = format!(
                "{:<17}{}\n{:<17}{}\n{:<17}{}\n{:<17}{}\n{:<17}{}\n{:<17}{}\n",
                "CreateIndex",
                e.create_index,
                "Flags",
                e.flags,
                "Key",
                e.key,
                "LockIndex",
                e.lock_index,
                "ModifyIndex",
                e.modify_index,
                "Session",
                session,
            )
            .into_bytes();
            if !keys_only {
                text.extend_from_slice(format!("{:<17}", "Value").as_bytes());
                text.extend(value_bytes(e, base64));
                text.push(b'\n');
            }
            text
        })
        .collect();
    blocks.join(&b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &[u8]) -> KvEntry {
        KvEntry {
            key: key.into(),
            value: Some(value.to_vec()),
            flags: 42,
            create_index: 5,
            modify_index: 9,
            lock_index: 1,
            session: None,
        }
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn value_is_printed_raw_or_base64() {
        assert_eq!(text(format_value(&entry("a", b"hello"), false)), "hello\n");
        assert_eq!(
            text(format_value(&entry("a", b"hello"), true)),
            "aGVsbG8=\n"
        );
        let empty = KvEntry {
            value: None,
            ..entry("a", b"")
        };
        assert_eq!(text(format_value(&empty, false)), "\n");
        // Binary values pass through untouched.
        assert_eq!(
            format_value(&entry("a", &[0xff, 0]), false),
            [0xff, 0, b'\n']
        );
    }

    #[test]
    fn recurse_prints_key_colon_value() {
        let entries = [entry("app/a", b"1"), entry("app/b", b"two")];
        assert_eq!(text(format_pairs(&entries, false)), "app/a:1\napp/b:two\n");
        assert_eq!(
            text(format_pairs(&entries, true)),
            "app/a:MQ==\napp/b:dHdv\n"
        );
        assert_eq!(text(format_pairs(&[], false)), "");
        assert_eq!(format_lines(&["a/".into(), "b".into()]), "a/\nb\n");
    }

    #[test]
    fn detailed_matches_consul_layout() {
        let locked = KvEntry {
            session: Some("adf4238a-882b-9ddc-4a9d-5b6758e4159e".into()),
            ..entry("app/b", b"two")
        };
        let out = text(format_detailed(
            &[entry("app/a", b"1"), locked],
            false,
            false,
        ));
        assert_eq!(
            out,
            "CreateIndex      5\n\
             Flags            42\n\
             Key              app/a\n\
             LockIndex        1\n\
             ModifyIndex      9\n\
             Session          -\n\
             Value            1\n\
             \n\
             CreateIndex      5\n\
             Flags            42\n\
             Key              app/b\n\
             LockIndex        1\n\
             ModifyIndex      9\n\
             Session          adf4238a-882b-9ddc-4a9d-5b6758e4159e\n\
             Value            two\n"
        );
        let keys_only = text(format_detailed(&[entry("k", b"v")], true, true));
        assert!(keys_only.ends_with("Session          -\n"), "{keys_only}");
        let b64 = text(format_detailed(&[entry("k", b"v")], true, false));
        assert!(b64.ends_with("Value            dg==\n"), "{b64}");
    }

    #[test]
    fn keys_lose_one_leading_slash() {
        assert_eq!(strip_slash("/app/a"), "app/a");
        assert_eq!(strip_slash("app"), "app");
        assert_eq!(strip_slash("//x"), "/x");
        assert_eq!(kv_path("app/a b"), "/v1/kv/app/a%20b");
    }

    #[tokio::test]
    async fn data_sources() {
        assert_eq!(load_data("").await.unwrap(), b"");
        assert_eq!(load_data("plain").await.unwrap(), b"plain");
        assert_eq!(load_data("-5").await.unwrap(), b"-5");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.txt");
        std::fs::write(&path, b"from file").unwrap();
        let arg = format!("@{}", path.display());
        assert_eq!(load_data(&arg).await.unwrap(), b"from file");
        let missing = format!("@{}", dir.path().join("nope").display());
        assert!(load_data(&missing)
            .await
            .unwrap_err()
            .starts_with("Failed to read file: "));
    }
}
