//! Agent settings from config files and flags. Each file deserializes into a typed
//! [`ConfigFile`] with Consul's key names (`node_name`, `ports { dns, http }`, `dns_config`,
//! `service`, `services`, ...); [`settings`] merges the files in order (a later file overrides
//! an earlier one's values, lists and maps add up), then the flags (flags win).
//!
//! [`ConfigFile`] is plain serde, so another format (HCL) deserializes into the same struct.
//! JSON is read twice: once untyped, to tell a file that is not JSON (or not an object) from
//! one with a bad value, then typed from the text, so an error says the line and column.
//! Unknown top-level keys are logged and skipped, so a Consul config with keys Concord does
//! not support yet still starts an agent; unknown keys inside a block (`ports`, `dns_config`)
//! are skipped silently. A value of the wrong type is an error naming the file.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use concord_api::agent::ServiceDefinition;
use concord_api::decode::canonicalize;
use concord_api::duration::parse_duration;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

use super::tls::{TlsConfig, TlsKeys};
use super::ui::{UiKeys, UiSettings};
use crate::flags::Parsed;

/// One config file, as written: every key optional, values checked when merged so errors can
/// name the key.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    datacenter: Option<String>,
    data_dir: Option<PathBuf>,
    node_name: Option<String>,
    node_id: Option<String>,
    server: Option<bool>,
    /// `true` is `bootstrap_expect = 1`; `false` changes nothing.
    bootstrap: Option<bool>,
    bootstrap_expect: Option<usize>,
    bind_addr: Option<String>,
    advertise_addr: Option<String>,
    client_addr: Option<String>,
    log_level: Option<String>,
    pid_file: Option<PathBuf>,
    enable_script_checks: Option<bool>,
    enable_local_script_checks: Option<bool>,
    check_output_max_size: Option<i64>,
    /// `allow` or `deny`: Connect authorization when no intention matches.
    default_intention_policy: Option<String>,
    domain: Option<String>,
    alt_domain: Option<String>,
    /// DNS resolvers for names outside our domains (`ip` or `ip:port`).
    recursors: Option<Vec<String>>,
    ports: Option<Ports>,
    node_meta: Option<BTreeMap<String, String>>,
    dns_config: Option<DnsConfig>,
    /// One service, or several (HCL's repeated `service { }` blocks).
    service: Option<OneOrMany<ServiceEntry>>,
    /// Services: a list, or HCL's `services { }` blocks (one block reads as one object).
    services: Option<OneOrMany<ServiceEntry>>,
    start_join: Option<Vec<String>>,
    retry_join: Option<Vec<String>>,
    retry_interval: Option<String>,
    retry_max: Option<u64>,
    rejoin_after_leave: Option<bool>,
    /// Address the LAN gossip binds to (Consul's `serf_lan`, flag `-serf-lan-bind`).
    serf_lan: Option<String>,
    encrypt: Option<String>,
    reconnect_timeout: Option<String>,
    leave_on_terminate: Option<bool>,
    /// The `acl` block (see [`acl_block`]).
    acl: Option<AclBlock>,
    log_json: Option<bool>,
    log_file: Option<PathBuf>,
    log_rotate_bytes: Option<u64>,
    log_rotate_duration: Option<String>,
    log_rotate_max_files: Option<i64>,
    enable_syslog: Option<bool>,
    syslog_facility: Option<String>,
    default_query_time: Option<String>,
    max_query_time: Option<String>,
    session_ttl_min: Option<String>,
    raft_snapshot_threshold: Option<u64>,
    raft_trailing_logs: Option<u64>,
    disable_host_node_id: Option<bool>,
    http_config: Option<HttpConfig>,
    /// What one client may hold (connections, parked queries).
    limits: Option<Limits>,
    /// The web UI's keys (`ui_config`, `ui`, `ui_dir`). Declared before `unknown`: a
    /// flattened struct takes its keys first, so they are not reported as unsupported.
    #[serde(flatten)]
    ui: UiKeys,
    /// The `tls` stanza and Consul's older top-level TLS keys; before `unknown` too.
    #[serde(flatten)]
    tls: TlsKeys,
    /// Keys this struct does not name: logged, then ignored.
    #[serde(flatten)]
    unknown: BTreeMap<String, IgnoredAny>,
}

/// The `http_config` block.
#[derive(Debug, Default, Deserialize)]
struct HttpConfig {
    /// Headers added to every HTTP API response.
    response_headers: Option<BTreeMap<String, String>>,
    /// Networks (CIDR) allowed to call write endpoints.
    allow_write_http_from: Option<Vec<String>>,
    /// Keys this struct does not name: logged as `http_config.<key>`, then ignored.
    #[serde(flatten)]
    unknown: BTreeMap<String, IgnoredAny>,
}

/// The `ports` block. A negative port disables that listener (Consul's `ports { dns = -1 }`).
#[derive(Debug, Default, Deserialize)]
struct Ports {
    dns: Option<i64>,
    http: Option<i64>,
    https: Option<i64>,
    grpc: Option<i64>,
    grpc_tls: Option<i64>,
    server: Option<i64>,
    serf_lan: Option<i64>,
    serf_wan: Option<i64>,
    /// Keys this struct does not name: logged as `ports.<key>`, then ignored.
    #[serde(flatten)]
    unknown: BTreeMap<String, IgnoredAny>,
}

/// The `limits` block (Consul's keys, plus Concord's `http_read_header_timeout` and
/// `http_max_blocking_queries_per_client`). `0` for a connection cap means no limit.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub(super) struct Limits {
    pub(super) http_max_conns_per_client: Option<usize>,
    pub(super) rpc_max_conns_per_client: Option<usize>,
    pub(super) http_max_blocking_queries_per_client: Option<usize>,
    /// A Go duration string (`"10s"`).
    pub(super) http_read_header_timeout: Option<String>,
}

/// The `dns_config` block; durations are Go duration strings (`"5s"`).
#[derive(Debug, Default, Deserialize)]
struct DnsConfig {
    node_ttl: Option<String>,
    /// Service name (or `*`) to TTL.
    service_ttl: Option<BTreeMap<String, String>>,
    udp_answer_limit: Option<usize>,
    only_passing: Option<bool>,
    enable_truncate: Option<bool>,
    a_record_limit: Option<usize>,
    recursor_timeout: Option<String>,
    allow_stale: Option<bool>,
    max_stale: Option<String>,
    use_cache: Option<bool>,
    cache_max_age: Option<String>,
    soa: Option<Soa>,
    /// Keys this struct does not name: logged as `dns_config.<key>`, then ignored.
    #[serde(flatten)]
    unknown: BTreeMap<String, IgnoredAny>,
}

/// `dns_config.soa`: the SOA record's timers, in whole seconds.
#[derive(Debug, Default, Deserialize)]
struct Soa {
    refresh: Option<u64>,
    retry: Option<u64>,
    expire: Option<u64>,
    min_ttl: Option<u64>,
}

/// A value written once or as a list: HCL gives one block as an object and repeated
/// blocks as a list, and Consul takes both for `service` and `services`.
#[derive(Debug)]
enum OneOrMany<T> {
    /// A list.
    Many(Vec<T>),
    /// A single value.
    One(T),
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for OneOrMany<T> {
    // By hand rather than `untagged`, which would replace the element's own error (say,
    // "invalid service definition: ...") with "did not match any variant".
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let custom = serde::de::Error::custom;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Array(items) => items
                .into_iter()
                .map(|v| serde_json::from_value(v).map_err(custom))
                .collect::<Result<_, _>>()
                .map(OneOrMany::Many),
            one => serde_json::from_value(one)
                .map(OneOrMany::One)
                .map_err(custom),
        }
    }
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::Many(v) => v,
            OneOrMany::One(t) => vec![t],
        }
    }
}

/// A service definition in a config file. Keys are matched as the agent API matches them
/// (`name`, `Name`, `check_id`, ... through [`canonicalize`]), since Consul's own config files
/// write them in snake_case.
#[derive(Debug)]
struct ServiceEntry(ServiceDefinition);

impl<'de> Deserialize<'de> for ServiceEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        serde_json::from_value(canonicalize(value))
            .map(ServiceEntry)
            .map_err(|e| serde::de::Error::custom(format!("invalid service definition: {e}")))
    }
}

/// Settings merged from config files and flags (flags win), with Consul's key names. `None`
/// means "not given": the agent picks the default.
#[derive(Debug, Default)]
pub(crate) struct Settings {
    /// `-dev`: one in-memory voter with fast timings; implies `server`.
    pub(super) dev: bool,
    /// Run a server (Raft voter) in this process.
    pub(super) server: bool,
    /// Servers to wait for before electing a leader.
    pub(super) bootstrap_expect: Option<usize>,
    /// Raft log, snapshots, node ID and persisted services.
    pub(super) data_dir: Option<PathBuf>,
    /// Node name (default: hostname).
    pub(super) node_name: Option<String>,
    /// Node UUID (default: kept in `data_dir`, else fresh).
    pub(super) node_id: Option<String>,
    /// Datacenter (default `dc1`).
    pub(super) datacenter: Option<String>,
    /// Address server RPC binds to.
    pub(super) bind: Option<IpAddr>,
    /// Address advertised to the cluster and registered for the node.
    pub(super) advertise: Option<IpAddr>,
    /// Address of the HTTP API and DNS.
    pub(super) client: Option<IpAddr>,
    /// HTTP API port; 0 picks a free one, negative (`-1`) disables the HTTP API.
    pub(super) http_port: Option<i32>,
    /// DNS port (UDP and TCP); 0 picks a free one, negative disables DNS.
    pub(super) dns_port: Option<i32>,
    /// HTTPS API port (`tls.https` says with what certificate); default and negative: none.
    pub(super) https_port: Option<i32>,
    /// gRPC (xDS) port; not built yet, warned about when non-negative.
    pub(super) grpc_port: Option<i32>,
    /// gRPC TLS port; not built yet, warned about when non-negative.
    pub(super) grpc_tls_port: Option<i32>,
    /// Server RPC port; 0 picks a free one. A server cannot disable it.
    pub(super) server_port: Option<i32>,
    /// Gossip LAN port; 0 picks a free one. Gossip cannot be disabled.
    pub(super) serf_lan_port: Option<i32>,
    /// Gossip WAN port reported for servers; negative: no WAN port (`members -wan` is empty).
    pub(super) serf_wan_port: Option<i32>,
    /// File the agent writes its PID to, removed on exit.
    pub(super) pid_file: Option<PathBuf>,
    /// Node metadata, in the order given (a later duplicate key wins).
    pub(super) node_meta: Vec<(String, String)>,
    /// DNS domain (default `consul`).
    pub(super) domain: Option<String>,
    /// TTL of node answers.
    pub(super) dns_node_ttl: Option<Duration>,
    /// TTL of service answers, by service name (`*` for any).
    pub(super) dns_service_ttl: BTreeMap<String, Duration>,
    /// Most records in one UDP answer.
    pub(super) dns_udp_answer_limit: Option<usize>,
    /// Answer only with instances whose checks all pass (not just non-critical).
    pub(super) dns_only_passing: Option<bool>,
    /// Set the TC bit when a UDP answer was cut.
    pub(super) dns_enable_truncate: Option<bool>,
    /// A second DNS domain answered like `domain` (`-alt-domain`, `alt_domain`).
    pub(super) alt_domain: Option<String>,
    /// DNS recursors, files' then flags' (`-recursor`, `recursors`), as written.
    pub(super) recursors: Vec<String>,
    /// Most A/AAAA records in a service answer (0: no limit).
    pub(super) dns_a_record_limit: Option<usize>,
    /// How long each recursor may take.
    pub(super) dns_recursor_timeout: Option<Duration>,
    /// Answer from the cached view while servers are unreachable.
    pub(super) dns_allow_stale: Option<bool>,
    /// Oldest cached view DNS serves while servers are unreachable.
    pub(super) dns_max_stale: Option<Duration>,
    /// Consul's `use_cache` (enables `cache_max_age`).
    pub(super) dns_use_cache: Option<bool>,
    /// With `use_cache`, a tighter bound than `max_stale`.
    pub(super) dns_cache_max_age: Option<Duration>,
    /// Services registered from config files.
    pub(super) services: Vec<ServiceDefinition>,
    /// Run script checks from the API and config files.
    pub(super) enable_script_checks: bool,
    /// Run script checks from config files only.
    pub(super) enable_local_script_checks: bool,
    /// Most output bytes a check keeps (`check_output_max_size`; Consul's 4096 when unset).
    pub(super) check_output_max_size: Option<i64>,
    /// Gossip addresses joined once at start (`-join`, `start_join`); failing is fatal.
    pub(super) join: Vec<String>,
    /// Gossip addresses joined in the background until one answers (`-retry-join`).
    pub(super) retry_join: Vec<String>,
    /// Wait between retry-join attempts (default 30 s).
    pub(super) retry_interval: Option<Duration>,
    /// Retry-join attempts before the agent gives up and exits; 0 retries forever.
    pub(super) retry_max: Option<u64>,
    /// Rejoin the members of the last run even after a graceful leave (`-rejoin`).
    pub(super) rejoin: bool,
    /// Address the LAN gossip binds to (default: `bind`).
    pub(super) serf_lan_bind: Option<IpAddr>,
    /// Gossip encryption key, base64 of 16, 24 or 32 bytes.
    pub(super) encrypt: Option<String>,
    /// How long a failed member is kept before it is reaped (at least 8 h; default 72 h).
    pub(super) reconnect_timeout: Option<Duration>,
    /// Leave the pool gracefully when stopped by a signal (default: clients yes, servers no).
    pub(super) leave_on_terminate: Option<bool>,
    /// `Some(false)` for `default_intention_policy = "deny"`; `None` keeps the default
    /// (allow, as Consul with ACLs disabled).
    pub(super) default_intention_allow: Option<bool>,
    /// The `acl` block, merged over the agent's defaults (ACLs off).
    pub(super) acl: concord_client_agent::acl::AclConfig,
    /// Logging: where, in what format, and how files rotate.
    pub(super) logging: LogSettings,
    /// Blocking wait when a request gives no `?wait` (Consul's `default_query_time`, 300 s).
    pub(super) default_query_time: Option<Duration>,
    /// Longest blocking wait a request may ask for (Consul's `max_query_time`, 600 s).
    pub(super) max_query_time: Option<Duration>,
    /// Shortest session TTL accepted (Consul's `session_ttl_min`, 10 s).
    pub(super) session_ttl_min: Option<Duration>,
    /// Entries between Raft snapshots (Consul's `raft_snapshot_threshold`).
    pub(super) raft_snapshot_threshold: Option<u64>,
    /// Entries kept behind a snapshot (Consul's `raft_trailing_logs`).
    pub(super) raft_trailing_logs: Option<u64>,
    /// Headers added to every HTTP API response (`http_config.response_headers`).
    pub(super) response_headers: BTreeMap<String, String>,
    /// Networks allowed to write over HTTP (`-allow-write-http-from`,
    /// `http_config.allow_write_http_from`); empty allows all.
    pub(super) allow_write_http_from: Vec<ipnet::IpNet>,
    /// `dns_config.soa`: refresh, retry, expire and min_ttl, in seconds.
    pub(super) dns_soa: [Option<u64>; 4],
    /// The `limits` block, merged key by key (later files win).
    pub(super) limits: Limits,
    /// The web UI (`-ui`, `ui_config`).
    pub(super) ui: UiSettings,
    /// The `tls` stanza (and older TLS keys), merged key by key.
    pub(super) tls: TlsConfig,
    /// Config file keys Concord does not support (file, key), skipped.
    pub(super) unsupported_keys: Vec<(PathBuf, String)>,
    /// Flags accepted for Consul's sake whose feature Concord lacks: each names what is
    /// missing, and is logged once logging runs.
    pub(super) missing_features: Vec<String>,
}

/// Where the agent logs and how (Consul's `log_*` and `enable_syslog` keys).
#[derive(Debug, Default, Clone)]
pub(crate) struct LogSettings {
    /// trace, debug, info, warn or err.
    pub(crate) level: Option<String>,
    /// One JSON object per line instead of text (`-log-json`).
    pub(crate) json: bool,
    /// Also write logs to this file (`-log-file`); a path ending in `/` is a directory,
    /// in which `consul.log` is written, as Consul names it.
    pub(crate) file: Option<PathBuf>,
    /// Rotate the file once it would exceed this many bytes (0: never by size).
    pub(crate) rotate_bytes: Option<u64>,
    /// Rotate the file this often (default 24 h, as Consul).
    pub(crate) rotate_duration: Option<Duration>,
    /// Rotated files to keep (0: all, -1: none), as Consul's `log_rotate_max_files`.
    pub(crate) rotate_max_files: Option<i64>,
    /// Also send logs to the local syslog (`-syslog`, `enable_syslog`).
    pub(crate) syslog: bool,
    /// Syslog facility (default `LOCAL0`).
    pub(crate) syslog_facility: Option<String>,
}

/// The format of a config source: from `-config-format`, else the file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// `.json`
    Json,
    /// `.hcl`
    Hcl,
}

impl Format {
    /// `-config-format`'s value: `json` or `hcl`, as Consul accepts it.
    pub(crate) fn parse(text: &str) -> anyhow::Result<Format> {
        match text {
            "json" => Ok(Format::Json),
            "hcl" => Ok(Format::Hcl),
            other => bail!("-config-format must be either 'hcl' or 'json', got {other:?}"),
        }
    }

    /// The format a path's extension names, if any.
    fn of(path: &Path) -> Option<Format> {
        match path.extension().and_then(|x| x.to_str()) {
            Some("json") => Some(Format::Json),
            Some("hcl") => Some(Format::Hcl),
            _ => None,
        }
    }
}

/// One config source in merge order: a file with its format.
pub(crate) type Source = (PathBuf, Format);

/// Every config source the flags name, in Consul's merge order: each `-config-file` and
/// `-config-dir` in the order given, a directory's files sorted by name. A directory yields
/// its `.json` and `.hcl` files (every file with `-config-format`, which also overrides
/// the extension); a file named directly must say its format one way or the other.
pub(crate) fn config_sources(
    paths: &[PathBuf],
    format: Option<Format>,
) -> anyhow::Result<Vec<Source>> {
    let mut sources = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("reading config path {}", path.display()))?;
        if !meta.is_dir() {
            let f = format.or_else(|| Format::of(path)).with_context(|| {
                format!(
                    "config file {}: unknown format; name it .json or .hcl, or pass -config-format",
                    path.display()
                )
            })?;
            sources.push((path.clone(), f));
            continue;
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading config dir {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        for entry in entries {
            if let Some(f) = format.or_else(|| Format::of(&entry)) {
                sources.push((entry, f));
            }
        }
    }
    Ok(sources)
}

impl ConfigFile {
    /// Reads and parses one config file.
    fn read(path: &Path, format: Format) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        ConfigFile::parse(&text, format).with_context(|| format!("config file {}", path.display()))
    }

    /// Parses config text in `format` into the typed struct.
    fn parse(text: &str, format: Format) -> anyhow::Result<ConfigFile> {
        match format {
            Format::Json => {
                let tree: serde_json::Value = serde_json::from_str(text).context("parsing JSON")?;
                if !tree.is_object() {
                    bail!("top level must be an object");
                }
                // Typed from the text, not from `tree`: serde_json then says where a bad
                // value is.
                Ok(serde_json::from_str(text)?)
            }
            Format::Hcl => match hcl::from_str(text) {
                Ok(file) => Ok(file),
                // Consul reads HCL 1, which also takes quoted keys in blocks (its docs write
                // `service_ttl { "*" = "5s" }`); HCL 2 wants those as an object
                // (`service_ttl = { "*" = "5s" }`). Retry with that rewrite before failing.
                Err(first) => match hcl1_quoted_keys(text) {
                    Some(rewritten) => hcl::from_str(&rewritten).context("parsing HCL"),
                    None => Err(first).context("parsing HCL"),
                },
            },
        }
    }
}

/// Rewrites each block whose body has a quoted key (`name { "k" = v }`) into an object
/// attribute (`name = { "k" = v }`), which HCL 2 parses as the same map. Scans tokens, not
/// lines, so one-line blocks work; strings and comments are skipped. `None` when nothing
/// changes.
fn hcl1_quoted_keys(text: &str) -> Option<String> {
    let b = text.as_bytes();
    // For each open brace: its position when it opens a block (an identifier or a label
    // before it), `None` for an object or anything else.
    let mut open: Vec<Option<usize>> = Vec::new();
    let mut marks: Vec<usize> = Vec::new();
    let mut last = b'\n';
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let comment = c == b'#' || (c == b'/' && b.get(i + 1) == Some(&b'/'));
        if comment {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        match c {
            b'"' => {
                let key_position = matches!(last, b'{' | b'\n' | b',');
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                let mut j = i;
                while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
                    j += 1;
                }
                let assigns = b.get(j) == Some(&b'=') && b.get(j + 1) != Some(&b'=');
                if key_position && assigns {
                    if let Some(Some(brace)) = open.last() {
                        marks.push(*brace);
                    }
                }
                last = b'"';
                continue;
            }
            b'{' => {
                let block =
                    last == b'"' || last == b'_' || last == b'-' || last.is_ascii_alphanumeric();
                open.push(block.then_some(i));
                last = b'{';
            }
            b'}' => {
                open.pop();
                last = b'}';
            }
            b' ' | b'\t' | b'\r' => {}
            other => last = other,
        }
        i += 1;
    }
    if marks.is_empty() {
        return None;
    }
    marks.sort_unstable();
    marks.dedup();
    let mut out = text.to_string();
    for brace in marks.into_iter().rev() {
        out.insert_str(brace, "= ");
    }
    Some(out)
}

impl Settings {
    /// Reads one config file into these settings (it overrides what earlier files set).
    fn apply_file(&mut self, path: &Path, format: Format) -> anyhow::Result<()> {
        let file = ConfigFile::read(path, format)?;
        self.apply_parsed(path, file)
    }

    /// Lays one parsed source over these settings, noting its unknown keys under `name`.
    fn apply_parsed(&mut self, name: &Path, file: ConfigFile) -> anyhow::Result<()> {
        let nested = |block: &'static str, keys: Option<Vec<String>>| {
            keys.into_iter()
                .flatten()
                .map(move |k| format!("{block}.{k}"))
        };
        let keys = file
            .unknown
            .keys()
            .cloned()
            .chain(nested(
                "ports",
                file.ports
                    .as_ref()
                    .map(|p| p.unknown.keys().cloned().collect()),
            ))
            .chain(nested(
                "dns_config",
                file.dns_config
                    .as_ref()
                    .map(|d| d.unknown.keys().cloned().collect()),
            ))
            .chain(nested(
                "http_config",
                file.http_config
                    .as_ref()
                    .map(|h| h.unknown.keys().cloned().collect()),
            ));
        let keys: Vec<(PathBuf, String)> = keys.map(|k| (name.to_path_buf(), k)).collect();
        self.unsupported_keys.extend(keys);
        self.merge(file)
            .with_context(|| format!("config file {}", name.display()))
    }

    /// What start-up found worth a warning (unsupported keys, flags for features Concord
    /// lacks). Returned rather than logged, because the files say how to log: logging starts
    /// after they are read, and these are logged then.
    pub(crate) fn warnings(&self) -> Vec<String> {
        let keys = self.unsupported_keys.iter().map(|(file, key)| {
            format!(
                "config: ignoring unsupported config key {key:?} in {}",
                file.display()
            )
        });
        keys.chain(self.missing_features.iter().cloned()).collect()
    }

    /// Lays `file` over these settings: given values replace, lists and maps add up.
    fn merge(&mut self, file: ConfigFile) -> anyhow::Result<()> {
        let s = self;
        set(&mut s.datacenter, file.datacenter);
        set(&mut s.data_dir, file.data_dir);
        set(&mut s.node_name, file.node_name);
        set(&mut s.node_id, file.node_id);
        s.server = file.server.unwrap_or(s.server);
        if file.bootstrap == Some(true) {
            s.bootstrap_expect = Some(1);
        }
        set(&mut s.bootstrap_expect, file.bootstrap_expect);
        set(&mut s.bind, ip("bind_addr", file.bind_addr)?);
        set(&mut s.advertise, ip("advertise_addr", file.advertise_addr)?);
        set(&mut s.client, ip("client_addr", file.client_addr)?);
        set(&mut s.logging.level, file.log_level);
        set(&mut s.pid_file, file.pid_file);
        let log = &mut s.logging;
        log.json = file.log_json.unwrap_or(log.json);
        set(&mut log.file, file.log_file);
        set(&mut log.rotate_bytes, file.log_rotate_bytes);
        set(
            &mut log.rotate_duration,
            duration("log_rotate_duration", file.log_rotate_duration)?,
        );
        set(&mut log.rotate_max_files, file.log_rotate_max_files);
        log.syslog = file.enable_syslog.unwrap_or(log.syslog);
        set(&mut log.syslog_facility, file.syslog_facility);
        set(
            &mut s.default_query_time,
            duration("default_query_time", file.default_query_time)?,
        );
        set(
            &mut s.max_query_time,
            duration("max_query_time", file.max_query_time)?,
        );
        set(
            &mut s.session_ttl_min,
            duration("session_ttl_min", file.session_ttl_min)?,
        );
        set(&mut s.raft_snapshot_threshold, file.raft_snapshot_threshold);
        set(&mut s.raft_trailing_logs, file.raft_trailing_logs);
        // Concord's node IDs are random (or given) and never derived from the host, which is
        // what `disable_host_node_id = true` asks for; `false` cannot be honoured and needs not be.
        let _ = file.disable_host_node_id;
        if let Some(http) = file.http_config {
            s.response_headers
                .extend(http.response_headers.into_iter().flatten());
            for net in http.allow_write_http_from.into_iter().flatten() {
                s.allow_write_http_from
                    .push(cidr("http_config.allow_write_http_from", &net)?);
            }
        }
        s.enable_script_checks = file.enable_script_checks.unwrap_or(s.enable_script_checks);
        s.enable_local_script_checks = file
            .enable_local_script_checks
            .unwrap_or(s.enable_local_script_checks);
        set(&mut s.check_output_max_size, file.check_output_max_size);
        set(&mut s.domain, file.domain);
        match file.default_intention_policy.as_deref() {
            None => {}
            Some("allow") => s.default_intention_allow = Some(true),
            Some("deny") => s.default_intention_allow = Some(false),
            Some(other) => {
                anyhow::bail!("default_intention_policy: want \"allow\" or \"deny\", got {other:?}")
            }
        }
        set(&mut s.alt_domain, file.alt_domain);
        s.recursors.extend(file.recursors.into_iter().flatten());
        if let Some(ports) = file.ports {
            set(&mut s.http_port, port("http", ports.http)?);
            set(&mut s.https_port, port("https", ports.https)?);
            set(&mut s.grpc_port, port("grpc", ports.grpc)?);
            set(&mut s.grpc_tls_port, port("grpc_tls", ports.grpc_tls)?);
            set(&mut s.server_port, port("server", ports.server)?);
            set(&mut s.serf_lan_port, port("serf_lan", ports.serf_lan)?);
            set(&mut s.serf_wan_port, port("serf_wan", ports.serf_wan)?);
            set(&mut s.dns_port, port("dns", ports.dns)?);
        }
        s.node_meta.extend(file.node_meta.into_iter().flatten());
        if let Some(dns) = file.dns_config {
            set(&mut s.dns_node_ttl, duration("node_ttl", dns.node_ttl)?);
            for (name, ttl) in dns.service_ttl.into_iter().flatten() {
                if let Some(d) = duration(&name, Some(ttl))? {
                    s.dns_service_ttl.insert(name, d);
                }
            }
            set(&mut s.dns_udp_answer_limit, dns.udp_answer_limit);
            set(&mut s.dns_only_passing, dns.only_passing);
            set(&mut s.dns_enable_truncate, dns.enable_truncate);
            set(&mut s.dns_a_record_limit, dns.a_record_limit);
            set(
                &mut s.dns_recursor_timeout,
                duration("recursor_timeout", dns.recursor_timeout)?,
            );
            set(&mut s.dns_allow_stale, dns.allow_stale);
            set(&mut s.dns_max_stale, duration("max_stale", dns.max_stale)?);
            set(&mut s.dns_use_cache, dns.use_cache);
            set(
                &mut s.dns_cache_max_age,
                duration("cache_max_age", dns.cache_max_age)?,
            );
            if let Some(soa) = dns.soa {
                let values = [soa.refresh, soa.retry, soa.expire, soa.min_ttl];
                for (slot, value) in s.dns_soa.iter_mut().zip(values) {
                    set(slot, value);
                }
            }
        }
        let services = file
            .service
            .into_iter()
            .chain(file.services)
            .flat_map(OneOrMany::into_vec);
        s.services.extend(services.map(|ServiceEntry(def)| def));
        s.join.extend(file.start_join.into_iter().flatten());
        s.retry_join.extend(file.retry_join.into_iter().flatten());
        set(
            &mut s.retry_interval,
            duration("retry_interval", file.retry_interval)?,
        );
        set(&mut s.retry_max, file.retry_max);
        s.rejoin = file.rejoin_after_leave.unwrap_or(s.rejoin);
        set(&mut s.serf_lan_bind, ip("serf_lan", file.serf_lan)?);
        set(&mut s.encrypt, file.encrypt);
        set(&mut s.leave_on_terminate, file.leave_on_terminate);
        set(
            &mut s.reconnect_timeout,
            duration("reconnect_timeout", file.reconnect_timeout)?,
        );
        if let Some(acl) = file.acl {
            acl_block(&mut s.acl, acl)?;
        }
        if let Some(limits) = file.limits {
            let l = &mut s.limits;
            set(
                &mut l.http_max_conns_per_client,
                limits.http_max_conns_per_client,
            );
            set(
                &mut l.rpc_max_conns_per_client,
                limits.rpc_max_conns_per_client,
            );
            set(
                &mut l.http_max_blocking_queries_per_client,
                limits.http_max_blocking_queries_per_client,
            );
            duration(
                "limits.http_read_header_timeout",
                limits.http_read_header_timeout.clone(),
            )?;
            set(
                &mut l.http_read_header_timeout,
                limits.http_read_header_timeout,
            );
        }
        s.ui.merge(file.ui)?;
        s.tls.merge(file.tls);
        Ok(())
    }

    /// The agent's HTTP limits: the `limits` block over Consul's defaults.
    pub(super) fn http_limits(&self) -> anyhow::Result<concord_client_agent::HttpLimits> {
        let l = &self.limits;
        let mut limits = concord_client_agent::HttpLimits::default();
        set_some(
            &mut limits.http_max_conns_per_client,
            l.http_max_conns_per_client,
        );
        set_some(
            &mut limits.http_max_blocking_queries_per_client,
            l.http_max_blocking_queries_per_client,
        );
        let timeout = duration(
            "limits.http_read_header_timeout",
            l.http_read_header_timeout.clone(),
        )?;
        set_some(&mut limits.http_read_header_timeout, timeout);
        Ok(limits)
    }

    /// Lays the flags over these settings (flags win over files).
    fn apply_flags(&mut self, p: &Parsed) -> anyhow::Result<()> {
        let s = self;
        s.dev |= p.bool("dev");
        s.server |= p.bool("server") || s.dev;
        s.enable_script_checks |= p.bool("enable-script-checks");
        s.enable_local_script_checks |= p.bool("enable-local-script-checks");
        if p.bool("bootstrap") {
            s.bootstrap_expect = Some(1);
        }
        let text = |name: &str| p.value(name).map(str::to_string);
        let path = |name: &str| p.value(name).map(PathBuf::from);
        set(&mut s.bootstrap_expect, typed(p, "bootstrap-expect")?);
        set(&mut s.data_dir, path("data-dir"));
        set(&mut s.node_name, text("node"));
        set(&mut s.node_id, text("node-id"));
        set(&mut s.datacenter, text("datacenter"));
        set(&mut s.bind, typed(p, "bind")?);
        set(&mut s.advertise, typed(p, "advertise")?);
        set(&mut s.client, typed(p, "client")?);
        set(&mut s.http_port, typed(p, "http-port")?);
        set(&mut s.https_port, typed(p, "https-port")?);
        set(&mut s.grpc_port, typed(p, "grpc-port")?);
        set(&mut s.grpc_tls_port, typed(p, "grpc-tls-port")?);
        set(&mut s.dns_port, typed(p, "dns-port")?);
        set(&mut s.server_port, typed(p, "server-port")?);
        set(&mut s.serf_lan_port, typed(p, "serf-lan-port")?);
        set(&mut s.serf_wan_port, typed(p, "serf-wan-port")?);
        let log = &mut s.logging;
        set(&mut log.level, text("log-level"));
        log.json |= p.bool("log-json");
        set(&mut log.file, path("log-file"));
        set(&mut log.rotate_bytes, typed(p, "log-rotate-bytes")?);
        set(
            &mut log.rotate_duration,
            duration("-log-rotate-duration", text("log-rotate-duration"))?,
        );
        set(&mut log.rotate_max_files, typed(p, "log-rotate-max-files")?);
        log.syslog |= p.bool("syslog");
        set(
            &mut s.default_query_time,
            duration("-default-query-time", text("default-query-time"))?,
        );
        set(
            &mut s.max_query_time,
            duration("-max-query-time", text("max-query-time"))?,
        );
        set(&mut s.domain, text("domain"));
        set(&mut s.alt_domain, text("alt-domain"));
        s.recursors.extend(p.list("recursor").iter().cloned());
        set(&mut s.pid_file, path("pid-file"));
        s.join.extend(p.list("join").iter().cloned());
        s.retry_join.extend(p.list("retry-join").iter().cloned());
        set(
            &mut s.retry_interval,
            duration("-retry-interval", text("retry-interval"))?,
        );
        set(&mut s.retry_max, typed(p, "retry-max")?);
        set(
            &mut s.check_output_max_size,
            typed(p, "check_output_max_size")?,
        );
        s.rejoin |= p.bool("rejoin");
        set(&mut s.serf_lan_bind, typed(p, "serf-lan-bind")?);
        set(&mut s.encrypt, text("encrypt"));
        for net in p.list("allow-write-http-from") {
            s.allow_write_http_from
                .push(cidr("-allow-write-http-from", net)?);
        }
        s.note_missing_features(p);
        for kv in p.list("node-meta") {
            let (k, v) = kv
                .split_once(':')
                .with_context(|| format!("-node-meta {kv:?}: want key:value"))?;
            s.node_meta.push((k.to_string(), v.to_string()));
        }
        s.ui.apply_flags(p)?;
        Ok(())
    }
}

impl Settings {
    /// Checks what merging leaves unchecked: values only the agent's start would reject.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        if let Some(level) = &self.logging.level {
            level_directive(level)?;
        }
        if let Some(id) = &self.node_id {
            uuid::Uuid::parse_str(id).with_context(|| format!("node_id {id:?} is not a UUID"))?;
        }
        for (name, value) in &self.response_headers {
            header_check(name, value)?;
        }
        if self.check_output_max_size.is_some_and(|n| n < 1) {
            bail!("check_output_max_size must be positive, to discard check output use the discard_check_output flag");
        }
        Ok(())
    }
}

/// A response header must be a valid HTTP header name and value.
fn header_check(name: &str, value: &str) -> anyhow::Result<()> {
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    let value_ok = value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
    if !name_ok || !value_ok {
        bail!("http_config.response_headers: invalid header {name:?}: {value:?}");
    }
    Ok(())
}

/// Flags Consul's agent takes for features Concord has not built: accepted so tools that
/// pass Consul's full flag set still start an agent, and each named in a warning.
const MISSING: &[(&str, &str)] = &[
    ("advertise-wan", "WAN federation"),
    ("join-wan", "WAN federation"),
    ("retry-join-wan", "WAN federation"),
    ("retry-interval-wan", "WAN federation"),
    ("retry-max-wan", "WAN federation"),
    ("serf-wan-bind", "WAN federation"),
    ("serf-wan-allowed-cidrs", "WAN federation"),
    ("primary-gateway", "WAN federation through mesh gateways"),
    ("serf-lan-allowed-cidrs", "gossip network filtering"),
    (
        "allow-write-http-from",
        "HTTP write restrictions by network",
    ),
    (
        "auto-reload-config",
        "automatic config reload (use concord reload)",
    ),
    (
        "disable-keyring-file",
        "a gossip keyring file (the keyring is never written to disk)",
    ),
    ("non-voting-server", "read replicas (Consul Enterprise)"),
    ("read-replica", "read replicas (Consul Enterprise)"),
    ("segment", "network segments (Consul Enterprise)"),
    ("protocol", "other RPC protocol versions"),
    ("raft-protocol", "other Raft protocol versions"),
];

impl Settings {
    /// Notes each given flag of [`MISSING`], and listeners Concord cannot open yet (gRPC)
    /// unless disabled with a negative port.
    fn note_missing_features(&mut self, p: &Parsed) {
        for (flag, feature) in MISSING {
            if p.value(flag).is_some() {
                self.missing_features.push(format!(
                    "flag -{flag} accepted but ignored: {feature} is not built yet"
                ));
            }
        }
        for (port, feature) in [
            (
                self.grpc_port,
                "ports.grpc / -grpc-port: the gRPC (xDS for Envoy) API is not built yet",
            ),
            (
                self.grpc_tls_port,
                "ports.grpc_tls / -grpc-tls-port: the gRPC TLS API is not built yet",
            ),
        ] {
            if port.is_some_and(|p| p >= 0) {
                self.missing_features
                    .push(format!("{feature}; no listener is opened"));
            }
        }
    }
}

/// A network in CIDR form (`10.0.0.0/8`); a bare address is that one address.
fn cidr(key: &str, text: &str) -> anyhow::Result<ipnet::IpNet> {
    if let Ok(net) = text.parse() {
        return Ok(net);
    }
    let ip: IpAddr = text
        .parse()
        .with_context(|| format!("{key}: invalid CIDR {text:?}"))?;
    Ok(ipnet::IpNet::from(ip))
}

/// Replaces `slot` with `value` when one is given.
/// Replaces `slot` when a value is given (a default stays otherwise).
fn set_some<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn set<T>(slot: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *slot = value;
    }
}

/// A flag's value parsed as `T`, if given.
fn typed<T: std::str::FromStr>(p: &Parsed, name: &str) -> anyhow::Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    p.value(name)
        .map(|v| {
            v.parse::<T>()
                .map_err(|e| anyhow::anyhow!("invalid value {v:?} for -{name}: {e}"))
        })
        .transpose()
}

fn ip(key: &str, text: Option<String>) -> anyhow::Result<Option<IpAddr>> {
    text.map(|s| {
        s.parse()
            .with_context(|| format!("{key}: invalid IP address {s:?}"))
    })
    .transpose()
}

/// A port: 0 picks a free one, any negative number disables the listener (`-1`, as
/// Consul writes it).
fn port(key: &str, number: Option<i64>) -> anyhow::Result<Option<i32>> {
    match number {
        None => Ok(None),
        Some(p) if p < 0 => Ok(Some(-1)),
        Some(p) => {
            Ok(Some(i32::from(u16::try_from(p).with_context(|| {
                format!("ports.{key}: {p} is not a port")
            })?)))
        }
    }
}

fn duration(key: &str, text: Option<String>) -> anyhow::Result<Option<Duration>> {
    text.map(|s| parse_duration(&s).with_context(|| format!("{key}: invalid duration {s:?}")))
        .transpose()
}

/// Every config source of an agent, in merge order: the files, then the `-hcl` snippets.
/// Kept for `/v1/agent/reload` and `concord validate`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sources {
    /// Files with their formats.
    pub(crate) files: Vec<Source>,
    /// `-hcl` snippets, in the order given.
    pub(crate) hcl: Vec<String>,
}

impl Sources {
    /// The files and snippets the flags name.
    fn from_flags(p: &Parsed) -> anyhow::Result<Sources> {
        let format = p.value("config-format").map(Format::parse).transpose()?;
        let paths: Vec<PathBuf> = p
            .in_order(&["config-file", "config-dir"])
            .into_iter()
            .map(PathBuf::from)
            .collect();
        Ok(Sources {
            files: config_sources(&paths, format)?,
            hcl: p.list("hcl").to_vec(),
        })
    }

    /// Settings of these sources alone (no flags).
    pub(crate) fn read(&self) -> anyhow::Result<Settings> {
        let mut s = Settings::default();
        for (path, format) in &self.files {
            s.apply_file(path, *format)?;
        }
        for (i, text) in self.hcl.iter().enumerate() {
            let name = PathBuf::from(format!("-hcl #{}", i + 1));
            let file = ConfigFile::parse(text, Format::Hcl)
                .with_context(|| format!("{}", name.display()))?;
            s.apply_parsed(&name, file)?;
        }
        Ok(s)
    }
}

/// Service definitions of all config sources (for `/v1/agent/reload`).
pub(super) fn load_services(sources: &Sources) -> Result<Vec<ServiceDefinition>, String> {
    let s = sources.read().map_err(|e| format!("{e:#}"))?;
    for warning in s.warnings() {
        tracing::warn!("{warning}");
    }
    Ok(s.services)
}

/// Settings from the config sources named by the flags, then the flags themselves (flags
/// win), and the sources (read again on reload).
pub(super) fn settings(p: &Parsed) -> anyhow::Result<(Settings, Sources)> {
    let sources = Sources::from_flags(p)?;
    let mut s = sources.read()?;
    s.apply_flags(p)?;
    s.check()?;
    Ok((s, sources))
}

/// The `acl { ... }` block as written (Consul's keys). Kept apart, with [`acl_block`], so
/// it can move as one piece.
#[derive(Debug, Default, Deserialize)]
struct AclBlock {
    enabled: Option<bool>,
    default_policy: Option<String>,
    down_policy: Option<String>,
    enable_token_persistence: Option<bool>,
    token_ttl: Option<String>,
    tokens: Option<AclTokensBlock>,
}

/// `acl.tokens`.
#[derive(Debug, Default, Deserialize)]
struct AclTokensBlock {
    initial_management: Option<String>,
    /// Consul's pre-1.11 name of `initial_management`.
    master: Option<String>,
    default: Option<String>,
    agent: Option<String>,
    dns: Option<String>,
}

/// Lays one file's `acl` block over `acl`: given values replace.
fn acl_block(acl: &mut concord_client_agent::acl::AclConfig, b: AclBlock) -> anyhow::Result<()> {
    use concord_api::acl::authorizer::DefaultPolicy;
    use concord_client_agent::acl::DownPolicy;
    acl.enabled = b.enabled.unwrap_or(acl.enabled);
    if let Some(p) = b.default_policy {
        acl.default_policy = DefaultPolicy::parse(&p).with_context(|| {
            format!("acl.default_policy: want \"allow\" or \"deny\", got {p:?}")
        })?;
    }
    if let Some(p) = b.down_policy {
        acl.down_policy = DownPolicy::parse(&p).with_context(|| {
            format!("acl.down_policy: want allow, deny, extend-cache or async-cache, got {p:?}")
        })?;
    }
    acl.enable_token_persistence = b
        .enable_token_persistence
        .unwrap_or(acl.enable_token_persistence);
    if let Some(ttl) = duration("acl.token_ttl", b.token_ttl)? {
        acl.token_ttl = ttl;
    }
    if let Some(t) = b.tokens {
        set(
            &mut acl.tokens.initial_management,
            t.initial_management.or(t.master),
        );
        set(&mut acl.tokens.default, t.default);
        set(&mut acl.tokens.agent, t.agent);
        set(&mut acl.tokens.dns, t.dns);
    }
    Ok(())
}

/// The filter directive for a Consul log level (`err` is Consul's spelling of `error`).
pub(crate) fn level_directive(level: &str) -> anyhow::Result<&'static str> {
    Ok(match level.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warn" => "warn",
        "err" | "error" => "error",
        other => bail!("Invalid log level: {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::super::parse_args;
    use super::*;

    fn write(dir: &Path, name: &str, json: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, json).unwrap();
        path
    }

    fn flags(args: &[&str]) -> Parsed {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let Ok(p) = parse_args(&args) else {
            panic!("flags did not parse: {args:?}");
        };
        p
    }

    #[test]
    fn acl_tokens_include_dns() {
        let block: AclBlock = serde_json::from_str(
            r#"{"enabled": true, "tokens": {"default": "d", "agent": "a", "dns": "n"}}"#,
        )
        .unwrap();
        let mut acl = concord_client_agent::acl::AclConfig::default();
        acl_block(&mut acl, block).unwrap();
        assert!(acl.enabled);
        let t = &acl.tokens;
        assert_eq!(
            (t.default.as_deref(), t.agent.as_deref(), t.dns.as_deref()),
            (Some("d"), Some("a"), Some("n"))
        );
    }

    #[test]
    fn config_file_keys_and_flag_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "a.json",
            r#"{"datacenter":"east","node_name":"from-file","ports":{"http":9500},
                "dns_config":{"node_ttl":"5s","udp_answer_limit":5},
                "service":{"name":"web","port":80}}"#,
        );
        let dir_flag = format!("-config-dir={}", dir.path().display());
        let (s, paths) = settings(&flags(&["-node", "from-flag", &dir_flag])).unwrap();
        assert_eq!(paths.files, vec![(path.clone(), Format::Json)]);
        assert_eq!(s.datacenter.as_deref(), Some("east"));
        assert_eq!(s.node_name.as_deref(), Some("from-flag"));
        assert_eq!(s.http_port, Some(9500));
        assert_eq!(s.dns_node_ttl, Some(Duration::from_secs(5)));
        assert_eq!(s.dns_udp_answer_limit, Some(5));
        assert_eq!(s.services.len(), 1);
        assert_eq!(s.services[0].name, "web");
    }

    #[test]
    fn later_files_override_and_lists_add_up() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "1.json",
            r#"{"datacenter":"east","server":true,"bootstrap":true,"bind_addr":"10.0.0.1",
                "ports":{"http":9500,"dns":8601,"serf_lan":9301},
                "node_meta":{"rack":"r1"},
                "dns_config":{"node_ttl":"5s","service_ttl":{"web":"10s"},"only_passing":true},
                "services":[{"name":"a"},{"Name":"b","Port":1}],
                "enable_script_checks":true}"#,
        );
        write(
            dir.path(),
            "2.json",
            r#"{"datacenter":"west","server":false,"bootstrap_expect":3,
                "ports":{"dns":-1},
                "node_meta":{"zone":"z2"},
                "dns_config":{"service_ttl":{"*":"1m"},"enable_truncate":true},
                "service":{"name":"c","check":{"ttl":"30s"}},
                "enable_local_script_checks":true}"#,
        );
        // Neither JSON nor HCL by extension: config dirs read only `.json` and `.hcl` files.
        write(dir.path(), "3.yaml", "datacenter: north");
        let dir_flag = format!("-config-dir={}", dir.path().display());
        let (s, paths) = settings(&flags(&[&dir_flag])).unwrap();
        assert_eq!(paths.files.len(), 2, "{paths:?}");
        assert_eq!(s.datacenter.as_deref(), Some("west"));
        assert!(!s.server, "a later file's false overrides");
        assert_eq!(s.bootstrap_expect, Some(3));
        assert_eq!(s.bind, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(
            s.http_port,
            Some(9500),
            "kept: the later ports block has no http"
        );
        assert_eq!(s.dns_port, Some(-1), "negative disables DNS");
        assert_eq!(s.serf_lan_port, Some(9301));
        assert_eq!(
            s.node_meta,
            [("rack".into(), "r1".into()), ("zone".into(), "z2".into())]
        );
        assert_eq!(s.dns_node_ttl, Some(Duration::from_secs(5)));
        assert_eq!(
            s.dns_service_ttl,
            BTreeMap::from([
                ("*".to_string(), Duration::from_secs(60)),
                ("web".to_string(), Duration::from_secs(10)),
            ])
        );
        assert_eq!(s.dns_only_passing, Some(true));
        assert_eq!(s.dns_enable_truncate, Some(true));
        let names: Vec<&str> = s.services.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(s.services[1].port, Some(1));
        assert!(s.enable_script_checks && s.enable_local_script_checks);
    }

    #[test]
    fn check_output_max_size_from_file_and_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "a.json", r#"{"check_output_max_size":100}"#);
        let file_flag = format!("-config-file={}", file.display());
        let (s, _) = settings(&flags(&[&file_flag])).unwrap();
        assert_eq!(s.check_output_max_size, Some(100));
        let (s, _) = settings(&flags(&[&file_flag, "-check_output_max_size=7"])).unwrap();
        assert_eq!(s.check_output_max_size, Some(7), "the flag wins");
        assert!(!s.warnings().join("\n").contains("check_output_max_size"));
        let err = settings(&flags(&["-check_output_max_size=0"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "check_output_max_size must be positive, to discard check output use the \
             discard_check_output flag"
        );
    }

    #[test]
    fn flags_override_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "a.json",
            r#"{"datacenter":"east","bootstrap_expect":3,"client_addr":"10.0.0.5",
                "ports":{"http":9500,"dns":-1},"log_level":"debug","node_meta":{"a":"1"}}"#,
        );
        let file_flag = format!("-config-file={}", file.display());
        let (s, _) = settings(&flags(&[
            &file_flag,
            "-datacenter=dc9",
            "-bootstrap",
            "-client=127.0.0.2",
            "-http-port=0",
            "-dns-port=8653",
            "-node-meta=b:2",
        ]))
        .unwrap();
        assert_eq!(s.datacenter.as_deref(), Some("dc9"));
        assert_eq!(s.bootstrap_expect, Some(1));
        assert_eq!(s.client, Some("127.0.0.2".parse().unwrap()));
        assert_eq!(s.http_port, Some(0));
        assert_eq!(s.dns_port, Some(8653));
        assert_eq!(
            s.logging.level.as_deref(),
            Some("debug"),
            "files fill what flags leave"
        );
        assert_eq!(
            s.node_meta,
            [("a".into(), "1".into()), ("b".into(), "2".into())]
        );
    }

    #[test]
    fn dns_keys_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "a.json",
            r#"{"alt_domain":"mesh","recursors":["10.0.0.53"],
                "dns_config":{"a_record_limit":2,"recursor_timeout":"500ms","allow_stale":false,
                "max_stale":"10s","use_cache":true,"cache_max_age":"5s"}}"#,
        );
        let file_flag = format!("-config-file={}", file.display());
        let (s, _) = settings(&flags(&[
            &file_flag,
            "-recursor=10.0.0.54:5353",
            "-recursor=::1",
            "-alt-domain=other",
        ]))
        .unwrap();
        assert_eq!(s.alt_domain.as_deref(), Some("other"), "the flag wins");
        assert_eq!(s.recursors, ["10.0.0.53", "10.0.0.54:5353", "::1"]);
        assert_eq!(s.dns_a_record_limit, Some(2));
        assert_eq!(s.dns_recursor_timeout, Some(Duration::from_millis(500)));
        assert_eq!(s.dns_allow_stale, Some(false));
        assert_eq!(s.dns_max_stale, Some(Duration::from_secs(10)));
        assert_eq!(s.dns_use_cache, Some(true));
        assert_eq!(s.dns_cache_max_age, Some(Duration::from_secs(5)));
    }

    #[test]
    fn unknown_keys_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "a.json",
            r#"{"node_name":"n","audit":{"enabled":true},"telemetry":{},
                "ports":{"grpc":8502},"dns_config":{"prefer_namespace":true}}"#,
        );
        let file = ConfigFile::read(&path, Format::Json).unwrap();
        let unknown: Vec<&str> = file.unknown.keys().map(String::as_str).collect();
        assert_eq!(unknown, ["audit", "telemetry"]);
        let mut s = Settings::default();
        s.apply_file(&path, Format::Json).unwrap();
        assert_eq!(s.node_name.as_deref(), Some("n"));
        assert_eq!(
            s.unsupported_keys,
            [
                (path.clone(), "audit".into()),
                (path.clone(), "telemetry".into()),
                (path, "dns_config.prefer_namespace".into())
            ]
        );
    }

    #[test]
    fn gossip_keys_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "a.json",
            r#"{"start_join":["10.0.0.1"],"retry_join":["10.0.0.2"],"retry_interval":"5s",
                "retry_max":3,"rejoin_after_leave":true,"serf_lan":"127.0.0.9",
                "encrypt":"k1","reconnect_timeout":"9h","leave_on_terminate":false}"#,
        );
        let file_flag = format!("-config-file={}", file.display());
        let (s, _) = settings(&flags(&[
            &file_flag,
            "-join=10.0.0.3",
            "-retry-join",
            "10.0.0.4:9000",
            "-retry-join=10.0.0.5",
            "-retry-interval=1s",
            "-encrypt=k2",
        ]))
        .unwrap();
        assert_eq!(s.join, ["10.0.0.1", "10.0.0.3"]);
        assert_eq!(s.retry_join, ["10.0.0.2", "10.0.0.4:9000", "10.0.0.5"]);
        assert_eq!(s.retry_interval, Some(Duration::from_secs(1)));
        assert_eq!(s.retry_max, Some(3));
        assert!(s.rejoin);
        assert_eq!(s.serf_lan_bind, Some("127.0.0.9".parse().unwrap()));
        assert_eq!(s.encrypt.as_deref(), Some("k2"));
        assert_eq!(s.reconnect_timeout, Some(Duration::from_secs(9 * 3600)));
        assert_eq!(s.leave_on_terminate, Some(false));
    }

    #[test]
    fn bad_config_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = |json: &str| {
            let path = write(dir.path(), "bad.json", json);
            format!(
                "{:#}",
                Settings::default()
                    .apply_file(&path, Format::Json)
                    .unwrap_err()
            )
        };
        assert!(error("{not json").contains("parsing JSON"));
        assert!(error("[1]").contains("top level must be an object"));
        assert!(error(r#"{"bind_addr":"nope"}"#).contains("bind_addr: invalid IP address"));
        assert!(error(r#"{"ports":{"http":70000}}"#).contains("ports.http: 70000 is not a port"));
        assert!(error(r#"{"ports":{"dns":70000}}"#).contains("ports.dns: 70000 is not a port"));
        assert!(error(r#"{"dns_config":{"node_ttl":"5 parsecs"}}"#)
            .contains("node_ttl: invalid duration"));
        assert!(error(r#"{"service":{"name":7}}"#).contains("invalid service definition"));
        assert!(error(r#"{"node_name":7}"#).contains("bad.json"));
        assert!(
            error(r#"{"default_intention_policy":"maybe"}"#).contains("default_intention_policy")
        );
    }

    #[test]
    fn raft_snapshot_settings() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            dir.path(),
            "a.json",
            r#"{"raft_snapshot_threshold":64,"raft_trailing_logs":16}"#,
        );
        let (s, _) = settings(&flags(&["-config-file", a.to_str().unwrap()])).unwrap();
        assert_eq!(
            (s.raft_snapshot_threshold, s.raft_trailing_logs),
            (Some(64), Some(16))
        );
    }

    #[test]
    fn limits_block() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            dir.path(),
            "a.json",
            r#"{"limits":{"http_max_conns_per_client":5,"rpc_max_conns_per_client":7}}"#,
        );
        let b = write(
            dir.path(),
            "b.json",
            r#"{"limits":{"http_max_conns_per_client":6,"http_read_header_timeout":"2s"}}"#,
        );
        let p = flags(&[
            "-config-file",
            a.to_str().unwrap(),
            "-config-file",
            b.to_str().unwrap(),
        ]);
        let (s, _) = settings(&p).unwrap();
        assert_eq!(s.limits.rpc_max_conns_per_client, Some(7));
        let limits = s.http_limits().unwrap();
        assert_eq!(limits.http_max_conns_per_client, 6);
        assert_eq!(limits.http_read_header_timeout, Duration::from_secs(2));
        assert_eq!(limits.http_max_blocking_queries_per_client, 1000);
    }

    #[test]
    fn default_intention_policy_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settings::default();
        assert_eq!(
            s.default_intention_allow, None,
            "unset: the agent's default (allow)"
        );
        let path = write(
            dir.path(),
            "a.json",
            r#"{"default_intention_policy":"deny"}"#,
        );
        s.apply_file(&path, Format::Json).unwrap();
        assert_eq!(s.default_intention_allow, Some(false));
    }

    /// Consul's documented agent configuration example, in HCL and in JSON, gives the same
    /// settings; keys of features Concord lacks (`telemetry`, `watches`) are warned about.
    #[test]
    fn hcl_and_json_give_the_same_settings() {
        let hcl = r#"
datacenter = "east-aws"
data_dir = "/opt/consul"
log_level = "INFO"
node_name = "foobar"
server = true
bootstrap_expect = 3
client_addr = "0.0.0.0"
recursors = ["10.0.0.53"]
node_meta {
  rack = "r1"
}
ports {
  http = 8501
  dns = -1
  grpc = -1
  serf_wan = -1
}
dns_config {
  node_ttl = "10s"
  only_passing = true
  service_ttl {
    "*" = "5s"
  }
  soa {
    min_ttl = 30
  }
}
http_config {
  response_headers {
    "Access-Control-Allow-Origin" = "*"
  }
}
session_ttl_min = "1s"
default_query_time = "30s"
max_query_time = "2m"
log_json = true
log_file = "/var/log/consul/"
log_rotate_bytes = 1024
log_rotate_duration = "1h"
log_rotate_max_files = 3
enable_syslog = false
watches = [
  {
    type = "checks"
    handler = "/usr/bin/health-check-handler.sh"
  }
]
telemetry {
  statsite_address = "127.0.0.1:2180"
}
service {
  name = "web"
  port = 80
  tags = ["v1"]
  check {
    http = "http://localhost/health"
    interval = "10s"
  }
}
"#;
        let json = r#"{
"datacenter": "east-aws", "data_dir": "/opt/consul", "log_level": "INFO",
"node_name": "foobar", "server": true, "bootstrap_expect": 3, "client_addr": "0.0.0.0",
"recursors": ["10.0.0.53"], "node_meta": {"rack": "r1"},
"ports": {"http": 8501, "dns": -1, "grpc": -1, "serf_wan": -1},
"dns_config": {"node_ttl": "10s", "only_passing": true, "service_ttl": {"*": "5s"},
  "soa": {"min_ttl": 30}},
"http_config": {"response_headers": {"Access-Control-Allow-Origin": "*"}},
"session_ttl_min": "1s", "default_query_time": "30s", "max_query_time": "2m",
"log_json": true, "log_file": "/var/log/consul/", "log_rotate_bytes": 1024,
"log_rotate_duration": "1h", "log_rotate_max_files": 3, "enable_syslog": false,
"watches": [{"type": "checks", "handler": "/usr/bin/health-check-handler.sh"}],
"telemetry": {"statsite_address": "127.0.0.1:2180"},
"service": {"name": "web", "port": 80, "tags": ["v1"],
  "check": {"http": "http://localhost/health", "interval": "10s"}}
}"#;
        let dir = tempfile::tempdir().unwrap();
        let read = |name: &str, text: &str| {
            let path = write(dir.path(), name, text);
            let sources = Sources {
                files: config_sources(&[path], None).unwrap(),
                hcl: Vec::new(),
            };
            sources.read().unwrap()
        };
        let from_hcl = read("a.hcl", hcl);
        let from_json = read("a.json", json);
        for s in [&from_hcl, &from_json] {
            assert_eq!(s.datacenter.as_deref(), Some("east-aws"));
            assert_eq!(s.node_name.as_deref(), Some("foobar"));
            assert!(s.server);
            assert_eq!(s.bootstrap_expect, Some(3));
            assert_eq!(s.client, Some("0.0.0.0".parse().unwrap()));
            assert_eq!(s.http_port, Some(8501));
            assert_eq!(
                (s.dns_port, s.grpc_port, s.serf_wan_port),
                (Some(-1), Some(-1), Some(-1))
            );
            assert_eq!(s.node_meta, [("rack".into(), "r1".into())]);
            assert_eq!(s.dns_node_ttl, Some(Duration::from_secs(10)));
            assert_eq!(s.dns_only_passing, Some(true));
            assert_eq!(s.dns_service_ttl["*"], Duration::from_secs(5));
            assert_eq!(s.dns_soa, [None, None, None, Some(30)]);
            assert_eq!(s.response_headers["Access-Control-Allow-Origin"], "*");
            assert_eq!(s.session_ttl_min, Some(Duration::from_secs(1)));
            assert_eq!(s.default_query_time, Some(Duration::from_secs(30)));
            assert_eq!(s.max_query_time, Some(Duration::from_secs(120)));
            assert!(s.logging.json && !s.logging.syslog);
            assert_eq!(s.logging.level.as_deref(), Some("INFO"));
            assert_eq!(s.logging.rotate_bytes, Some(1024));
            assert_eq!(s.logging.rotate_duration, Some(Duration::from_secs(3600)));
            assert_eq!(s.logging.rotate_max_files, Some(3));
            assert_eq!(s.services.len(), 1);
            assert_eq!(s.services[0].name, "web");
            assert_eq!(s.services[0].port, Some(80));
            let keys: Vec<&str> = s.unsupported_keys.iter().map(|(_, k)| k.as_str()).collect();
            assert_eq!(keys, ["telemetry", "watches"]);
            s.check().unwrap();
        }
        assert_eq!(
            format!("{:?}", from_hcl.services[0]),
            format!("{:?}", from_json.services[0])
        );
    }

    #[test]
    fn hcl_snippets_config_format_and_dir_order() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "1.json",
            r#"{"datacenter":"one","node_name":"a"}"#,
        );
        write(dir.path(), "2.hcl", "datacenter = \"two\"");
        let odd = write(dir.path(), "agent.conf", "node_name = \"from-conf\"");
        let dir_flag = format!("-config-dir={}", dir.path().display());
        let (s, sources) = settings(&flags(&[&dir_flag, "-hcl", "log_level = \"debug\""])).unwrap();
        assert_eq!(
            s.datacenter.as_deref(),
            Some("two"),
            "files merge in name order"
        );
        assert_eq!(
            s.node_name.as_deref(),
            Some("a"),
            "agent.conf is skipped by extension"
        );
        assert_eq!(s.logging.level.as_deref(), Some("debug"));
        assert_eq!(sources.hcl, ["log_level = \"debug\""]);
        // -config-format reads any file in that format, whatever its extension.
        let file_flag = format!("-config-file={}", odd.display());
        let (s, _) = settings(&flags(&["-config-format=hcl", &file_flag])).unwrap();
        assert_eq!(s.node_name.as_deref(), Some("from-conf"));
        let error = settings(&flags(&[&file_flag])).unwrap_err().to_string();
        assert!(error.contains("unknown format"), "{error}");
        let error = settings(&flags(&["-config-format=yaml"]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("must be either 'hcl' or 'json'"), "{error}");
        // A bad snippet names itself.
        let error = format!("{:#}", settings(&flags(&["-hcl", "ports {"])).unwrap_err());
        assert!(error.contains("-hcl #1"), "{error}");
    }

    #[test]
    fn repeated_service_blocks() {
        let parse = |text: &str| {
            let file = ConfigFile::parse(text, Format::Hcl).unwrap();
            let mut s = Settings::default();
            s.merge(file).unwrap();
            s.services
                .iter()
                .map(|d| d.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            parse("services {\n name = \"a\"\n}\nservices {\n name = \"b\"\n}\n"),
            ["a", "b"]
        );
        assert_eq!(parse("services {\n name = \"a\"\n}\n"), ["a"]);
        assert_eq!(
            parse("service {\n name = \"a\"\n}\nservice {\n name = \"b\"\n}\n"),
            ["a", "b"]
        );
        assert_eq!(parse("services = [{ name = \"a\" }]"), ["a"]);
    }

    #[test]
    fn hcl1_quoted_keys_become_objects() {
        let parse = |text: &str| ConfigFile::parse(text, Format::Hcl).unwrap();
        let one_line = parse(r#"http_config { response_headers { "X-A" = "1" } }"#);
        let headers = one_line.http_config.unwrap().response_headers.unwrap();
        assert_eq!(headers["X-A"], "1");
        let nested = parse("dns_config {\n  # a comment with \"quotes\" = x\n  service_ttl {\n    \"*\" = \"5s\"\n  }\n}\n");
        assert_eq!(nested.dns_config.unwrap().service_ttl.unwrap()["*"], "5s");
        assert_eq!(hcl1_quoted_keys("a = \"x\"\nb { c = 1 }"), None);
    }

    #[test]
    fn every_consul_flag_is_accepted() {
        let (s, _) = settings(&flags(&[
            "-dev",
            "-serf-wan-port=-1",
            "-http-port=-1",
            "-dns-port=-1",
            "-grpc-port=-1",
            "-grpc-tls-port=8503",
            "-https-port=-1",
            "-log-json",
            "-log-file=/tmp/x/",
            "-log-rotate-bytes=100",
            "-log-rotate-duration=1h",
            "-log-rotate-max-files=-1",
            "-syslog",
            "-default-query-time=10s",
            "-max-query-time=1m",
            "-disable-host-node-id",
            "-config-format=json",
            "-alt-domain=alt",
            "-join-wan=10.0.0.1",
            "-retry-join-wan=10.0.0.2",
            "-advertise-wan=10.0.0.3",
            "-serf-wan-bind=0.0.0.0",
            "-primary-gateway=10.0.0.4:443",
            "-segment=s1",
            "-read-replica",
            "-non-voting-server",
            "-allow-write-http-from=10.0.0.0/8",
            "-auto-reload-config",
            "-disable-keyring-file",
            "-check_output_max_size=4096",
            "-protocol=2",
            "-raft-protocol=3",
            "-retry-interval-wan=30s",
            "-retry-max-wan=3",
            "-serf-lan-allowed-cidrs=10.0.0.0/8",
            "-serf-wan-allowed-cidrs=10.0.0.0/8",
        ]))
        .unwrap();
        assert_eq!(
            (s.http_port, s.dns_port, s.serf_wan_port),
            (Some(-1), Some(-1), Some(-1))
        );
        assert!(s.logging.json && s.logging.syslog);
        assert_eq!(s.logging.rotate_max_files, Some(-1));
        assert_eq!(s.default_query_time, Some(Duration::from_secs(10)));
        assert_eq!(s.max_query_time, Some(Duration::from_secs(60)));
        let warnings = s.warnings().join("\n");
        for missing in [
            "-join-wan",
            "-segment",
            "-read-replica",
            "gRPC TLS",
            "-allow-write-http-from",
        ] {
            assert!(warnings.contains(missing), "{missing}: {warnings}");
        }
        assert!(
            !warnings.contains("-grpc-port"),
            "a disabled port is no warning: {warnings}"
        );
    }

    #[test]
    fn ui_config_block_is_read_not_reported_unknown() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "ui.json",
            r#"{"ui_config":{"enabled":true,"dir":"/srv/ui"},"datacenter":"east"}"#,
        );
        let dir_flag = format!("-config-dir={}", dir.path().display());
        let (s, _) = settings(&flags(&[&dir_flag])).unwrap();
        let ui = s.ui.resolve(false);
        assert!(ui.enabled);
        assert_eq!(ui.dir, Some(PathBuf::from("/srv/ui")));
        assert!(s.unsupported_keys.is_empty(), "{:?}", s.unsupported_keys);
        assert_eq!(s.datacenter.as_deref(), Some("east"));
    }
}
