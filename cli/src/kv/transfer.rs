//! `concord kv export [PREFIX]` and `concord kv import [-prefix=P] [DATA]`: Consul's KV
//! export format, a JSON array of `{"key", "flags", "value"}` with the value in base64.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use concord_api::kv::KvEntry;
use serde::{Deserialize, Serialize};

use crate::flags::{flag, parse_or_usage, Flag, Kind};
use crate::http::{escape_path, HttpClient};
use crate::output::{fail, out, outln};

pub(super) const EXPORT_USAGE: &str = "Usage: concord kv export [options] [PREFIX]

  Prints every key under PREFIX (all keys when omitted) as a JSON array of
  {\"key\", \"flags\", \"value\" (base64)}, which kv import reads.";

pub(super) const IMPORT_USAGE: &str = "Usage: concord kv import [options] [DATA]

  Writes the keys of a kv export. DATA is the JSON itself, @FILE to read a file, or -
  (or nothing) to read stdin.

  -prefix=<string>  Prepended to every imported key.";

const IMPORT_FLAGS: &[Flag] = &[flag("prefix", Kind::Str)];

/// One key of an export, as Consul writes it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Exported {
    /// The key.
    pub(crate) key: String,
    /// Its opaque flags.
    pub(crate) flags: u64,
    /// Its value, base64.
    pub(crate) value: String,
}

impl From<&KvEntry> for Exported {
    fn from(e: &KvEntry) -> Self {
        Exported {
            key: e.key.clone(),
            flags: e.flags,
            value: e
                .value
                .as_deref()
                .map(|v| STANDARD.encode(v))
                .unwrap_or_default(),
        }
    }
}

/// The export's text: Consul indents with a tab (`json.MarshalIndent(.., "", "\t")`).
pub(crate) fn render(entries: &[Exported]) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    entries.serialize(&mut ser)?;
    Ok(String::from_utf8(buf)?)
}

pub(super) async fn export(args: &[String]) -> anyhow::Result<i32> {
    let p = match parse_or_usage(args, &[], EXPORT_USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if p.args.len() > 1 {
        return fail(format!(
            "Too many arguments (expected 1 or 0, got {})",
            p.args.len()
        ));
    }
    let prefix = p
        .args
        .first()
        .map(|s| s.trim_start_matches('/'))
        .unwrap_or("");
    let client = match HttpClient::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error connecting to agent: {e}")),
    };
    let path = format!("/v1/kv/{}", escape_path(prefix));
    let entries: Vec<KvEntry> = match client.get_json(&path, &[("recurse", String::new())]).await {
        Ok(e) => e.unwrap_or_default(),
        Err(e) => return fail(format!("Error querying Consul agent: {e}")),
    };
    let exported: Vec<Exported> = entries.iter().map(Exported::from).collect();
    outln(&render(&exported)?)?;
    Ok(0)
}

pub(super) async fn import(args: &[String]) -> anyhow::Result<i32> {
    let p = match parse_or_usage(args, IMPORT_FLAGS, IMPORT_USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let data = match p.args.as_slice() {
        [] => super::load_data("-").await,
        [source] => super::load_data(source).await,
        more => {
            return fail(format!(
                "Too many arguments (expected 1, got {})",
                more.len()
            ))
        }
    };
    let data = match data {
        Ok(d) => d,
        Err(e) => return fail(format!("Error! {e}")),
    };
    let entries: Vec<Exported> = match serde_json::from_slice(&data) {
        Ok(e) => e,
        Err(e) => return fail(format!("Cannot unmarshal data: {e}")),
    };
    let client = match HttpClient::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error connecting to agent: {e}")),
    };
    let prefix = p.value_or("prefix", "");
    for entry in entries {
        let value = match STANDARD.decode(&entry.value) {
            Ok(v) => v,
            Err(e) => return fail(format!("Error base 64 decoding value: {e}")),
        };
        let key = format!("{prefix}{}", entry.key);
        let mut query = Vec::new();
        if entry.flags != 0 {
            query.push(("flags", entry.flags.to_string()));
        }
        let path = format!("/v1/kv/{}", escape_path(&key));
        if let Err(e) = client.put(&path, &query, value).await {
            return fail(format!("Error! Failed writing data for key {key}: {e}"));
        }
        out(format!("Imported: {key}\n"))?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_format_is_consuls() {
        let entries = [Exported {
            key: "app/config".into(),
            flags: 42,
            value: STANDARD.encode("hello"),
        }];
        let text = render(&entries).unwrap();
        assert_eq!(
            text,
            "[\n\t{\n\t\t\"key\": \"app/config\",\n\t\t\"flags\": 42,\n\t\t\"value\": \"aGVsbG8=\"\n\t}\n]"
        );
        let back: Vec<Exported> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, entries);
    }
}
