//! Go-style flag parsing, as Consul's commands parse theirs (Go's `flag` package): one parser
//! for every command, the HTTP flags every client command shares, and usage reporting.

use std::collections::BTreeMap;

use concord_api::decode::parse_go_bool;

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
    flag("ca-file", Kind::Str),
    flag("ca-path", Kind::Str),
    flag("client-cert", Kind::Str),
    flag("client-key", Kind::Str),
    flag("tls-server-name", Kind::Str),
];

/// Help text for [`HTTP_FLAGS`], appended to every command's usage.
pub(crate) const HTTP_FLAGS_HELP: &str = "HTTP API Options

  -http-addr=<address>
     The address of the agent's HTTP API, as host:port, http://host:port or
     https://host:port. Also CONCORD_HTTP_ADDR, then CONSUL_HTTP_ADDR. Default
     127.0.0.1:8500; CONSUL_HTTP_SSL=true makes a bare host:port HTTPS.

  -ca-file=<path>
     CA certificate (PEM) the agent's HTTPS certificate must chain to. Also
     CONSUL_CACERT. HTTPS needs this or -ca-path (no system roots are read).

  -ca-path=<path>
     A directory of CA certificates. Also CONSUL_CAPATH.

  -client-cert=<path>
     Client certificate (PEM) for an agent with verify_incoming. Also
     CONSUL_CLIENT_CERT.

  -client-key=<path>
     Its private key. Also CONSUL_CLIENT_KEY.

  -tls-server-name=<name>
     The name the agent's certificate must carry, instead of the host of
     -http-addr. Also CONSUL_TLS_SERVER_NAME. CONSUL_HTTP_SSL_VERIFY=false
     checks no certificate at all.

  -token=<value>
     ACL token to send as X-Consul-Token. Also CONCORD_HTTP_TOKEN, then
     CONSUL_HTTP_TOKEN.

  -datacenter=<name>
     Datacenter to query (?dc=). Defaults to the agent's own.";

/// Flags and arguments after parsing.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Parsed {
    values: BTreeMap<&'static str, Vec<String>>,
    /// Every flag as given, in order (for flags whose relative order matters, such as
    /// `-config-file` and `-config-dir`).
    order: Vec<(&'static str, String)>,
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

    /// The values of all the `names` flags, in the order they were given.
    pub(crate) fn in_order(&self, names: &[&str]) -> Vec<&str> {
        self.order
            .iter()
            .filter(|(n, _)| names.contains(n))
            .map(|(_, v)| v.as_str())
            .collect()
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
        parsed.order.push((flag.name, value.clone()));
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
}
