//! What every CLI client command shares: Go-style flag parsing (as Consul's commands parse
//! theirs), the HTTP client that finds the agent and reports errors as the `consul` CLI
//! does, table formatting, and stdout writing.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;

use concord_api::decode::parse_go_bool;
use serde::de::DeserializeOwned;

/// The agent's address when neither a flag nor the environment names one.
const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8500";

// ------------------------------------------------------------------------------------------
// Flags

/// How a flag takes its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `-f` or `-f=true|false`; never takes the next argument.
    Bool,
    /// `-f value` or `-f=value`; the last one given wins.
    Str,
    /// Like `Str`, but must be an unsigned integer.
    Uint,
    /// Like `Str`, and every occurrence is kept (`-tag a -tag b`).
    List,
}

/// One flag a command accepts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Flag {
    /// Name without dashes.
    pub(crate) name: &'static str,
    /// How it takes its value.
    pub(crate) kind: Kind,
}

/// Shorthand for a [`Flag`].
pub(crate) const fn flag(name: &'static str, kind: Kind) -> Flag {
    Flag { name, kind }
}

/// Flags every client command accepts (Consul's `HTTPFlags`).
const HTTP_FLAGS: &[Flag] = &[
    flag("http-addr", Kind::Str),
    flag("token", Kind::Str),
    flag("datacenter", Kind::Str),
];

/// Help text for [`HTTP_FLAGS`], appended to every command's usage.
pub(crate) const HTTP_FLAGS_HELP: &str = "HTTP API Options

  -http-addr=<address>
     The address of the agent's HTTP API, as host:port or http://host:port.
     Also CONCORD_HTTP_ADDR, then CONSUL_HTTP_ADDR. Default 127.0.0.1:8500.

  -token=<value>
     ACL token to send as X-Consul-Token. Also CONCORD_HTTP_TOKEN, then
     CONSUL_HTTP_TOKEN.

  -datacenter=<name>
     Datacenter to query (?dc=). Defaults to the agent's own.";

/// Flags and arguments after parsing.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Parsed {
    values: BTreeMap<&'static str, Vec<String>>,
    /// Positional arguments: everything from the first non-flag argument (or after `--`).
    pub(crate) args: Vec<String>,
}

impl Parsed {
    /// Whether a boolean flag is set (its last occurrence wins, as in Go).
    pub(crate) fn bool(&self, name: &str) -> bool {
        self.value(name) == Some("true")
    }

    /// The last value of a flag, if given.
    pub(crate) fn value(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// The last value of a flag, or `default`.
    pub(crate) fn value_or<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        self.value(name).unwrap_or(default)
    }

    /// A [`Kind::Uint`] flag's value, 0 when absent (Go's default).
    pub(crate) fn uint(&self, name: &str) -> u64 {
        // Validated while parsing, so the parse cannot fail here.
        self.value(name).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// Every value of a [`Kind::List`] flag, in order.
    pub(crate) fn list(&self, name: &str) -> &[String] {
        self.values.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Why flags did not parse, worded as Go's `flag` package words it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FlagError {
    /// `-h`, `-help` or `--help`.
    Help,
    /// Anything else.
    Invalid(String),
}

/// Parses `args` as Go's `flag` package does, which is how `consul` commands parse theirs:
/// `-flag`, `--flag`, `-flag=value`, `-flag value` (not for booleans), up to the first
/// argument that is not a flag (a lone `-` is an argument) or `--`. Flags after a
/// positional argument are positional too: `kv put key -5` writes `-5`.
pub(crate) fn parse_flags(args: &[String], flags: &[Flag]) -> Result<Parsed, FlagError> {
    parse_flags_with(args, flags, HTTP_FLAGS)
}

/// [`parse_flags`] with another set of shared flags (`&[]` for commands that do not talk to
/// an agent, such as `agent` itself).
pub(crate) fn parse_flags_with(
    args: &[String],
    flags: &[Flag],
    shared: &[Flag],
) -> Result<Parsed, FlagError> {
    let lookup = |name: &str| flags.iter().chain(shared).find(|f| f.name == name).copied();
    let mut parsed = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg.len() < 2 || !arg.starts_with('-') {
            break;
        }
        i += 1;
        if arg == "--" {
            break;
        }
        let body = arg.strip_prefix("--").unwrap_or(&arg[1..]);
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(FlagError::Invalid(format!("bad flag syntax: {arg}")));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let Some(flag) = lookup(name) else {
            if name == "h" || name == "help" {
                return Err(FlagError::Help);
            }
            return Err(FlagError::Invalid(format!(
                "flag provided but not defined: -{name}"
            )));
        };
        let value = match (flag.kind, inline) {
            (Kind::Bool, None) => "true".to_string(),
            (Kind::Bool, Some(v)) => match parse_go_bool(&v) {
                Some(b) => b.to_string(),
                None => {
                    return Err(FlagError::Invalid(format!(
                        "invalid boolean value {v:?} for -{name}: parse error"
                    )))
                }
            },
            (_, Some(v)) => v,
            (_, None) => match args.get(i) {
                Some(next) => {
                    i += 1;
                    next.clone()
                }
                None => {
                    return Err(FlagError::Invalid(format!(
                        "flag needs an argument: -{name}"
                    )))
                }
            },
        };
        if flag.kind == Kind::Uint && value.parse::<u64>().is_err() {
            return Err(FlagError::Invalid(format!(
                "invalid value {value:?} for flag -{name}: parse error"
            )));
        }
        parsed.values.entry(flag.name).or_default().push(value);
    }
    parsed.args = args[i..].to_vec();
    Ok(parsed)
}

/// Parses flags, or prints why not (with the usage) and gives the exit code: 0 for help,
/// 1 for bad flags.
pub(crate) fn parse_or_usage(args: &[String], flags: &[Flag], usage: &str) -> Result<Parsed, i32> {
    report_usage(
        parse_flags(args, flags),
        &format!("{usage}\n\n{HTTP_FLAGS_HELP}"),
    )
}

/// Turns a parse result into flags or an exit code, printing `usage` for help and errors.
pub(crate) fn report_usage(result: Result<Parsed, FlagError>, usage: &str) -> Result<Parsed, i32> {
    match result {
        Ok(p) => Ok(p),
        Err(FlagError::Help) => {
            eprintln!("{usage}");
            Err(0)
        }
        Err(FlagError::Invalid(msg)) => {
            eprintln!("{msg}\n\n{usage}");
            Err(1)
        }
    }
}

/// Splits a `key=value` flag value (Consul's `FlagMapValue`).
pub(crate) fn split_key_value(arg: &str) -> anyhow::Result<(String, String)> {
    match arg.split_once('=') {
        Some((k, v)) => Ok((k.to_string(), v.to_string())),
        None => anyhow::bail!("Missing \"=\" value in argument: {arg}"),
    }
}

// ------------------------------------------------------------------------------------------
// HTTP client

/// A failed API call, printed as the `consul` CLI prints it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClientError {
    /// The agent answered with an error status.
    Status {
        /// HTTP status code.
        code: u16,
        /// The plain-text body (Consul's error message).
        body: String,
    },
    /// No answer: connection refused, reset, ...
    Transport(String),
    /// An answer that is not what the endpoint returns.
    Decode(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Status { code, body } => {
                write!(f, "Unexpected response code: {code} ({body})")
            }
            ClientError::Transport(msg) => f.write_str(msg),
            ClientError::Decode(msg) => write!(f, "Error decoding response: {msg}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Talks to one agent's HTTP API.
#[derive(Debug)]
pub(crate) struct HttpClient {
    /// `http://host:port`, no trailing slash.
    base: String,
    token: Option<String>,
    datacenter: Option<String>,
    http: reqwest::Client,
}

impl HttpClient {
    /// A client configured from the HTTP flags and the process environment.
    pub(crate) fn from_flags(flags: &Parsed) -> anyhow::Result<HttpClient> {
        let env = |name: &str| std::env::var(name).ok();
        let base = agent_base_url(flags.value("http-addr"), &env)?;
        let token = first_non_empty([
            flags.value("token").map(str::to_string),
            env("CONCORD_HTTP_TOKEN"),
            env("CONSUL_HTTP_TOKEN"),
        ]);
        let datacenter = flags
            .value("datacenter")
            .filter(|d| !d.is_empty())
            .map(str::to_string);
        // The CLI talks to a local agent: never through an HTTP proxy from the environment.
        let http = reqwest::Client::builder().no_proxy().build()?;
        Ok(HttpClient {
            base,
            token,
            datacenter,
            http,
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url).query(query);
        if let Some(dc) = &self.datacenter {
            request = request.query(&[("dc", dc)]);
        }
        if let Some(token) = &self.token {
            request = request.header("X-Consul-Token", token);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        request
            .send()
            .await
            .map_err(|e| ClientError::Transport(transport_error(&method, &url, &e)))
    }

    /// Reads a response body, turning non-2xx statuses into [`ClientError::Status`].
    async fn ok_body(response: reqwest::Response) -> Result<Vec<u8>, ClientError> {
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(error_chain(&e)))?;
        if status.is_success() {
            Ok(body.to_vec())
        } else {
            Err(ClientError::Status {
                code: status.as_u16(),
                body: String::from_utf8_lossy(&body).trim_end().to_string(),
            })
        }
    }

    /// `GET`, decoding JSON; `None` on 404 (a missing key, node, ...).
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<T>, ClientError> {
        let response = self.send(reqwest::Method::GET, path, query, None).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = Self::ok_body(response).await?;
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `PUT` with a raw body; returns the response body.
    pub(crate) async fn put(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Vec<u8>, ClientError> {
        let response = self
            .send(reqwest::Method::PUT, path, query, Some(body))
            .await?;
        Self::ok_body(response).await
    }

    /// `DELETE`; returns the response body.
    pub(crate) async fn delete(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<u8>, ClientError> {
        let response = self
            .send(reqwest::Method::DELETE, path, query, None)
            .await?;
        Self::ok_body(response).await
    }
}

/// The agent's base URL: the `-http-addr` flag, else `CONCORD_HTTP_ADDR`, else
/// `CONSUL_HTTP_ADDR`, else `127.0.0.1:8500`; empty values count as unset. Accepts
/// `host:port` and `http://host:port`.
pub(crate) fn agent_base_url(
    flag: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    let raw = first_non_empty([
        flag.map(str::to_string),
        env("CONCORD_HTTP_ADDR"),
        env("CONSUL_HTTP_ADDR"),
    ])
    .unwrap_or_else(|| DEFAULT_HTTP_ADDR.to_string());
    let (scheme, rest) = match raw.trim().split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("http".to_string(), raw.trim()),
    };
    let rest = rest.trim_end_matches('/');
    match scheme.as_str() {
        "http" if rest.is_empty() => anyhow::bail!("invalid agent address {raw:?}: no host"),
        "http" => Ok(format!("http://{rest}")),
        "https" => {
            anyhow::bail!("invalid agent address {raw:?}: HTTPS is not supported yet, use http://")
        }
        _ => anyhow::bail!("invalid agent address {raw:?}: only http:// is supported"),
    }
}

fn first_non_empty<const N: usize>(candidates: [Option<String>; N]) -> Option<String> {
    candidates.into_iter().flatten().find(|s| !s.is_empty())
}

/// Go's `url.Error` shape: `Put "http://...": <cause>`.
fn transport_error(method: &reqwest::Method, url: &str, e: &reqwest::Error) -> String {
    let verb = method.as_str();
    let verb = format!("{}{}", &verb[..1], verb[1..].to_ascii_lowercase());
    // reqwest's own top-level message repeats the URL; its causes say what happened.
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let detail = if causes.is_empty() {
        e.to_string()
    } else {
        causes.join(": ")
    };
    format!("{verb} {url:?}: {detail}")
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Percent-encodes a path part (a KV key, a service name), keeping `/`: keys are paths.
pub(crate) fn escape_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses the bare `true`/`false` that KV writes answer with.
pub(crate) fn parse_bool_body(body: &[u8]) -> Result<bool, ClientError> {
    match String::from_utf8_lossy(body).trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(ClientError::Decode(format!(
            "expected true or false, got {other:?}"
        ))),
    }
}

// ------------------------------------------------------------------------------------------
// Output

/// Aligns rows into columns two spaces apart, as Consul's `columnize` does: each column as
/// wide as its widest cell, the last column unpadded, trailing spaces trimmed. No final
/// newline.
pub(crate) fn columnize(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let lines: Vec<String> = rows
        .iter()
        .map(|row| {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 < row.len() {
                    // `{:<w$}` pads by characters, as the widths count them.
                    line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
                } else {
                    line.push_str(cell);
                }
            }
            line.trim_end().to_string()
        })
        .collect();
    lines.join("\n")
}

/// Writes command output to stdout. A closed pipe (`... | head`) ends output quietly.
pub(crate) fn out(bytes: impl AsRef<[u8]>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(bytes.as_ref())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Prints a message to stderr and gives exit code 1, as `consul` commands fail.
pub(crate) fn fail(message: impl fmt::Display) -> anyhow::Result<i32> {
    eprintln!("{message}");
    Ok(1)
}

/// [`out`] plus a newline.
pub(crate) fn outln(text: &str) -> anyhow::Result<()> {
    out(format!("{text}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] = &[
        flag("recurse", Kind::Bool),
        flag("cas", Kind::Bool),
        flag("session", Kind::Str),
        flag("modify-index", Kind::Uint),
        flag("tag", Kind::List),
    ];

    fn parse(args: &[&str]) -> Result<Parsed, FlagError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse_flags(&args, FLAGS)
    }

    fn invalid(msg: &str) -> Result<Parsed, FlagError> {
        Err(FlagError::Invalid(msg.to_string()))
    }

    #[test]
    fn accepts_every_go_flag_style() {
        for args in [
            &["-session", "s1", "-modify-index", "7", "-recurse", "k"][..],
            &["-session=s1", "-modify-index=7", "-recurse", "k"],
            &["--session", "s1", "--modify-index=7", "--recurse", "k"],
            &["--session=s1", "-modify-index", "7", "-recurse=true", "k"],
            &[
                "-recurse=1",
                "--session",
                "s1",
                "-modify-index=7",
                "--",
                "k",
            ],
        ] {
            let p = parse(args).unwrap();
            assert!(p.bool("recurse"), "{args:?}");
            assert!(!p.bool("cas"), "{args:?}");
            assert_eq!(p.value("session"), Some("s1"), "{args:?}");
            assert_eq!(p.uint("modify-index"), 7, "{args:?}");
            assert_eq!(p.args, ["k"], "{args:?}");
        }
    }

    #[test]
    fn flags_stop_at_the_first_argument() {
        let p = parse(&["-cas", "key", "-5", "-recurse"]).unwrap();
        assert!(p.bool("cas"));
        assert!(!p.bool("recurse"));
        assert_eq!(p.args, ["key", "-5", "-recurse"]);
        // A lone dash is an argument (stdin), `--` ends the flags.
        assert_eq!(parse(&["-", "x"]).unwrap().args, ["-", "x"]);
        assert_eq!(parse(&["--", "-cas"]).unwrap().args, ["-cas"]);
        // A value flag takes the next argument even when it starts with a dash.
        assert_eq!(
            parse(&["-session", "-x"]).unwrap().value("session"),
            Some("-x")
        );
    }

    #[test]
    fn booleans_lists_and_last_value_wins() {
        let p = parse(&[
            "-recurse",
            "-recurse=false",
            "-tag",
            "a",
            "-tag=b",
            "-session=1",
            "-session=2",
        ])
        .unwrap();
        assert!(!p.bool("recurse"));
        assert_eq!(p.list("tag"), ["a", "b"]);
        assert_eq!(p.value("session"), Some("2"));
        assert_eq!(p.value_or("missing", "/"), "/");
        assert_eq!(p.uint("modify-index"), 0);
        assert!(p.list("nope").is_empty());
        // HTTP flags are always accepted.
        let p = parse(&[
            "-http-addr",
            "10.0.0.1:8500",
            "-token=t",
            "-datacenter",
            "dc2",
        ])
        .unwrap();
        assert_eq!(p.value("http-addr"), Some("10.0.0.1:8500"));
        assert_eq!(p.value("token"), Some("t"));
        assert_eq!(p.value("datacenter"), Some("dc2"));
    }

    #[test]
    fn errors_read_like_go() {
        assert_eq!(
            parse(&["-nope"]),
            invalid("flag provided but not defined: -nope")
        );
        assert_eq!(
            parse(&["-session"]),
            invalid("flag needs an argument: -session")
        );
        assert_eq!(
            parse(&["-modify-index=x"]),
            invalid("invalid value \"x\" for flag -modify-index: parse error")
        );
        assert_eq!(
            parse(&["-recurse=maybe"]),
            invalid("invalid boolean value \"maybe\" for -recurse: parse error")
        );
        assert_eq!(parse(&["---x"]), invalid("bad flag syntax: ---x"));
        assert_eq!(parse(&["-=x"]), invalid("bad flag syntax: -=x"));
        for help in ["-h", "-help", "--help"] {
            assert_eq!(parse(&[help]), Err(FlagError::Help));
        }
    }

    #[test]
    fn key_value_flags() {
        assert_eq!(
            split_key_value("a=b=c").unwrap(),
            ("a".to_string(), "b=c".to_string())
        );
        assert_eq!(
            split_key_value("ab").unwrap_err().to_string(),
            "Missing \"=\" value in argument: ab"
        );
    }

    #[test]
    fn agent_address_priority_and_forms() {
        let env_with = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let both = env_with(&[
            ("CONCORD_HTTP_ADDR", "10.0.0.2:8500"),
            ("CONSUL_HTTP_ADDR", "10.0.0.3:8500"),
        ]);
        let consul_only = env_with(&[
            ("CONCORD_HTTP_ADDR", ""),
            ("CONSUL_HTTP_ADDR", "http://h:1/"),
        ]);
        let none = env_with(&[]);
        let url = |flag, env: &dyn Fn(&str) -> Option<String>| agent_base_url(flag, env).unwrap();
        assert_eq!(url(Some("10.0.0.1:1"), &both), "http://10.0.0.1:1");
        assert_eq!(url(Some(""), &both), "http://10.0.0.2:8500");
        assert_eq!(url(None, &both), "http://10.0.0.2:8500");
        assert_eq!(url(None, &consul_only), "http://h:1");
        assert_eq!(url(None, &none), "http://127.0.0.1:8500");
        assert_eq!(url(Some("http://[::1]:8500"), &none), "http://[::1]:8500");
        let err = |flag| agent_base_url(Some(flag), &none).unwrap_err().to_string();
        assert!(err("https://h:8501").contains("HTTPS is not supported yet"));
        assert!(err("unix:///tmp/sock").contains("only http:// is supported"));
        assert!(err("http://").contains("no host"));
        assert_eq!(url(Some("HTTP://h:1//"), &none), "http://h:1");
    }

    #[test]
    fn errors_print_like_consul() {
        let e = ClientError::Status {
            code: 400,
            body: "Missing service name".into(),
        };
        assert_eq!(
            e.to_string(),
            "Unexpected response code: 400 (Missing service name)"
        );
        let e = ClientError::Status {
            code: 500,
            body: String::new(),
        };
        assert_eq!(e.to_string(), "Unexpected response code: 500 ()");
    }

    #[test]
    fn escapes_path_parts_but_not_slashes() {
        assert_eq!(escape_path("app/config"), "app/config");
        assert_eq!(escape_path("a b?c#d%"), "a%20b%3Fc%23d%25");
        assert_eq!(escape_path("é"), "%C3%A9");
    }

    #[test]
    fn kv_write_answers() {
        assert_eq!(parse_bool_body(b"true"), Ok(true));
        assert_eq!(parse_bool_body(b"false\n"), Ok(false));
        assert!(parse_bool_body(b"{}").is_err());
    }

    #[test]
    fn columns_align_two_spaces_apart() {
        let rows = vec![
            vec!["Node".to_string(), "Address".into(), "DC".into()],
            vec!["a-long-name".to_string(), "10.0.0.1".into(), "dc1".into()],
            vec!["b".to_string(), "".into(), "".into()],
        ];
        assert_eq!(
            columnize(&rows),
            "Node         Address   DC\na-long-name  10.0.0.1  dc1\nb"
        );
        assert_eq!(columnize(&[]), "");
    }
}
