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
    /// `allow` or `deny`: Connect authorization when no intention matches.
    default_intention_policy: Option<String>,
    domain: Option<String>,
    alt_domain: Option<String>,
    /// DNS resolvers for names outside our domains (`ip` or `ip:port`).
    recursors: Option<Vec<String>>,
    ports: Option<Ports>,
    node_meta: Option<BTreeMap<String, String>>,
    dns_config: Option<DnsConfig>,
    service: Option<ServiceEntry>,
    services: Option<Vec<ServiceEntry>>,
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
    /// The web UI's keys (`ui_config`, `ui`, `ui_dir`). Declared before `unknown`: a
    /// flattened struct takes its keys first, so they are not reported as unsupported.
    #[serde(flatten)]
    ui: UiKeys,
    /// Keys this struct does not name: logged, then ignored.
    #[serde(flatten)]
    unknown: BTreeMap<String, IgnoredAny>,
}

/// The `ports` block.
#[derive(Debug, Default, Deserialize)]
struct Ports {
    /// Negative disables DNS (Consul's `ports { dns = -1 }`).
    dns: Option<i64>,
    http: Option<u64>,
    server: Option<u64>,
    serf_lan: Option<u64>,
    serf_wan: Option<u64>,
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
pub(super) struct Settings {
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
    /// HTTP API port; 0 picks a free one.
    pub(super) http_port: Option<u16>,
    /// DNS port (UDP and TCP); 0 picks a free one, negative disables DNS.
    pub(super) dns_port: Option<i32>,
    /// Server RPC port; 0 picks a free one.
    pub(super) server_port: Option<u16>,
    /// Gossip LAN port reported for this member.
    pub(super) serf_lan_port: Option<u16>,
    /// Gossip WAN port reported for servers.
    pub(super) serf_wan_port: Option<u16>,
    /// File the agent writes its PID to, removed on exit.
    pub(super) pid_file: Option<PathBuf>,
    /// trace, debug, info, warn or err.
    pub(super) log_level: Option<String>,
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
    /// The web UI (`-ui`, `ui_config`).
    pub(super) ui: UiSettings,
    /// Config file keys Concord does not support (file, key), skipped.
    pub(super) unsupported_keys: Vec<(PathBuf, String)>,
}

/// Every file named by `-config-file` and the `.json` files of each `-config-dir`.
fn config_paths(files: &[PathBuf], dirs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = files.to_vec();
    for dir in dirs {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading config dir {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        entries.sort();
        paths.extend(entries);
    }
    Ok(paths)
}

impl ConfigFile {
    /// Reads and parses one JSON config file.
    fn read(path: &Path) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let tree: serde_json::Value = serde_json::from_slice(&text).with_context(|| {
            format!(
                "parsing config file {} (only JSON is supported)",
                path.display()
            )
        })?;
        if !tree.is_object() {
            bail!(
                "config file {}: top level must be an object",
                path.display()
            );
        }
        // Typed from the text, not from `tree`: serde_json then says where a bad value is.
        serde_json::from_slice(&text).with_context(|| format!("config file {}", path.display()))
    }
}

impl Settings {
    /// Reads one config file into these settings (it overrides what earlier files set).
    fn apply_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let file = ConfigFile::read(path)?;
        self.unsupported_keys.extend(
            file.unknown
                .keys()
                .map(|key| (path.to_path_buf(), key.clone())),
        );
        self.merge(file)
            .with_context(|| format!("config file {}", path.display()))
    }

    /// Logs the config keys that were skipped. Separate from reading, because the files say
    /// the log level: logging starts after they are read.
    pub(super) fn warn_unsupported_keys(&self) {
        for (file, key) in &self.unsupported_keys {
            tracing::warn!(file = %file.display(), key = %key, "ignoring unsupported config key");
        }
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
        set(&mut s.log_level, file.log_level);
        set(&mut s.pid_file, file.pid_file);
        s.enable_script_checks = file.enable_script_checks.unwrap_or(s.enable_script_checks);
        s.enable_local_script_checks = file
            .enable_local_script_checks
            .unwrap_or(s.enable_local_script_checks);
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
            set(&mut s.server_port, port("server", ports.server)?);
            set(&mut s.serf_lan_port, port("serf_lan", ports.serf_lan)?);
            set(&mut s.serf_wan_port, port("serf_wan", ports.serf_wan)?);
            set(&mut s.dns_port, optional_port("dns", ports.dns)?);
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
        }
        let services = file
            .service
            .into_iter()
            .chain(file.services.into_iter().flatten());
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
        s.ui.merge(file.ui)?;
        Ok(())
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
        set(&mut s.dns_port, typed(p, "dns-port")?);
        set(&mut s.server_port, typed(p, "server-port")?);
        set(&mut s.serf_lan_port, typed(p, "serf-lan-port")?);
        set(&mut s.serf_wan_port, typed(p, "serf-wan-port")?);
        set(&mut s.log_level, text("log-level"));
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
        s.rejoin |= p.bool("rejoin");
        set(&mut s.serf_lan_bind, typed(p, "serf-lan-bind")?);
        set(&mut s.encrypt, text("encrypt"));
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

/// Replaces `slot` with `value` when one is given.
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

fn port(key: &str, number: Option<u64>) -> anyhow::Result<Option<u16>> {
    number
        .map(|p| u16::try_from(p).with_context(|| format!("ports.{key}: {p} is not a port")))
        .transpose()
}

/// A port that may be disabled with a negative number (Consul's `ports.dns = -1`).
fn optional_port(key: &str, number: Option<i64>) -> anyhow::Result<Option<i32>> {
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

/// Service definitions of all config files (for `/v1/agent/reload`).
pub(super) fn load_services(paths: &[PathBuf]) -> Result<Vec<ServiceDefinition>, String> {
    let mut s = Settings::default();
    for p in paths {
        s.apply_file(p).map_err(|e| format!("{e:#}"))?;
    }
    s.warn_unsupported_keys();
    Ok(s.services)
}

/// Settings from the config files named by the flags, then the flags themselves (flags win),
/// and the config file paths (read again on reload).
pub(super) fn settings(p: &Parsed) -> anyhow::Result<(Settings, Vec<PathBuf>)> {
    let to_paths =
        |name: &str| -> Vec<PathBuf> { p.list(name).iter().map(PathBuf::from).collect() };
    let paths = config_paths(&to_paths("config-file"), &to_paths("config-dir"))?;
    let mut s = Settings::default();
    for path in &paths {
        s.apply_file(path)?;
    }
    s.apply_flags(p)?;
    Ok((s, paths))
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
        assert_eq!(paths, vec![path.clone()]);
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
        // Not JSON by extension: config dirs read only `.json` files.
        write(dir.path(), "3.hcl", "datacenter = \"north\"");
        let dir_flag = format!("-config-dir={}", dir.path().display());
        let (s, paths) = settings(&flags(&[&dir_flag])).unwrap();
        assert_eq!(paths.len(), 2, "{paths:?}");
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
            s.log_level.as_deref(),
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
            r#"{"node_name":"n","acl":{"enabled":true},"telemetry":{},
                "ports":{"grpc":8502},"dns_config":{"prefer_namespace":true}}"#,
        );
        let file = ConfigFile::read(&path).unwrap();
        let unknown: Vec<&str> = file.unknown.keys().map(String::as_str).collect();
        assert_eq!(unknown, ["acl", "telemetry"]);
        let mut s = Settings::default();
        s.apply_file(&path).unwrap();
        assert_eq!(s.node_name.as_deref(), Some("n"));
        assert_eq!(
            s.unsupported_keys,
            [(path.clone(), "acl".into()), (path, "telemetry".into())]
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
            format!("{:#}", Settings::default().apply_file(&path).unwrap_err())
        };
        assert!(error("{not json").contains("only JSON is supported"));
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
        s.apply_file(&path).unwrap();
        assert_eq!(s.default_intention_allow, Some(false));
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
