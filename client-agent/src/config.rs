//! The agent's configuration. The CLI builds it from flags and config files.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use concord_api::agent::ServiceDefinition;
use concord_api::rpc::QueryOptions;

use crate::dns::DnsConfig;

/// Re-reads the service definitions of the agent's config files (`/v1/agent/reload`).
pub type ReloadFn = Arc<dyn Fn() -> Result<Vec<ServiceDefinition>, String> + Send + Sync>;

/// Everything the agent needs to run.
#[derive(Clone)]
pub struct Config {
    /// This node's name in the catalog (`-node`).
    pub node_name: String,
    /// This node's UUID.
    pub node_id: String,
    /// Datacenter (`-datacenter`), e.g. `dc1`.
    pub datacenter: String,
    /// Address registered for this node in the catalog; services without an address use it.
    pub advertise_addr: IpAddr,
    /// Node metadata registered with the node (`-node-meta`).
    pub node_meta: BTreeMap<String, String>,
    /// RPC addresses of servers known without gossip (the server in this process); the
    /// servers found in the gossip pool are added to them as they come and go.
    pub servers: Vec<SocketAddr>,
    /// Whether this agent runs in a server process (reported by `/v1/agent/self`, members).
    pub server: bool,
    /// Dev mode: JSON responses are always pretty-printed, as Consul's `-dev` does.
    pub dev: bool,
    /// Full anti-entropy sync period (Consul: 1 minute for small clusters); each run is
    /// staggered by up to an eighth of it so agents don't sync in lockstep.
    pub ae_interval: Duration,
    /// Delay before retrying a failed sync.
    pub ae_retry: Duration,
    /// How often critical services are checked against `DeregisterCriticalServiceAfter`
    /// (Consul: 30s).
    pub reap_interval: Duration,
    /// DNS server settings.
    pub dns: DnsConfig,
    /// Services defined in config files, registered at start.
    pub services: Vec<ServiceDefinition>,
    /// How `/v1/agent/reload` re-reads config-file services; `None` makes reload a no-op.
    pub reload: Option<ReloadFn>,
    /// Run script checks (`Args`) registered over the API or in config files
    /// (`enable_script_checks`; off by default, as in Consul: it is remote code execution).
    pub enable_script_checks: bool,
    /// Run script checks only from config files (`enable_local_script_checks`).
    pub enable_local_script_checks: bool,
    /// Most bytes of output a check keeps (`check_output_max_size`, Consul's default 4096):
    /// script and TTL output beyond it is cut with a `... (captured N of M bytes)` note, an
    /// HTTP check keeps the body's last bytes. A check's `OutputMaxSize` can only lower it.
    pub check_output_max_size: usize,
    /// Where API-registered services and checks are kept across restarts (`None`: dev
    /// mode, nothing is kept).
    pub data_dir: Option<std::path::PathBuf>,
    /// Server RPC port reported in member tags (`-server-port`).
    pub server_port: u16,
    /// WAN gossip port reported for this server in `?wan` members (`-serf-wan-port`); 0 when
    /// disabled (`-1`), which makes `?wan` members empty.
    pub serf_wan_port: u16,
    /// LAN gossip port of this member (`-serf-lan-port`; the bound port when 0 was asked),
    /// reported by `/v1/agent/self` when the agent runs without a pool.
    pub serf_lan_port: u16,
    /// What Connect authorization answers when no intention matches (`true`: allow).
    /// Consul derives this from the ACL default policy: with ACLs disabled (the default)
    /// that is allow; the CLI sets deny for `acl.default_policy = "deny"`, and
    /// `default_intention_policy` overrides either.
    pub default_intention_allow: bool,
    /// Ports a `Connect.SidecarService` registration without a port is given, lowest free
    /// first (`ports.sidecar_min_port`..=`ports.sidecar_max_port`, Consul's 21000-21255).
    pub sidecar_ports: std::ops::RangeInclusive<u16>,
    /// The `acl { ... }` block: enforcement, default and down policies, the agent's tokens
    /// (see [`crate::acl`]). Disabled by default.
    pub acl: crate::acl::AclConfig,
    /// Blocking wait of a read that gives `?index` but no `?wait` (Consul's
    /// `default_query_time`, 5 minutes).
    pub default_query_time: Duration,
    /// Longest `?wait` honoured (Consul's `max_query_time`, 10 minutes); servers never hold a
    /// read longer than 10 minutes, whatever this says.
    pub max_query_time: Duration,
    /// Headers added to every HTTP API response (`http_config.response_headers`).
    pub response_headers: BTreeMap<String, String>,
    /// Networks allowed to call write endpoints (anything but GET, HEAD and OPTIONS);
    /// empty allows every network (`http_config.allow_write_http_from`).
    pub allow_write_http_from: Vec<ipnet::IpNet>,
    /// The process's log lines for `/v1/agent/monitor`; the CLI's subscriber feeds it.
    pub logs: crate::logs::LogFeed,
    /// What one HTTP client may hold (the `limits` block).
    pub limits: HttpLimits,
    /// The web UI at `/ui/` (`-ui`, `ui_config`); off unless enabled (on in `-dev`).
    pub ui: concord_ui::UiConfig,
    /// TLS for calls to the servers (`tls.internal_rpc` with `verify_outgoing`); `None` or
    /// no client config: plain.
    pub rpc_tls: Option<concord_net::tls::InternalRpc>,
}

/// What one client of the HTTP API may hold at once (Consul's `limits` block).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Open connections per remote IP; a new one beyond it is closed at once
    /// (`limits.http_max_conns_per_client`, Consul's default 200). `0`: no limit.
    pub http_max_conns_per_client: usize,
    /// A request head not complete within this closes the connection; also the idle
    /// keep-alive timeout (`limits.http_read_header_timeout`, default 10 s).
    pub http_read_header_timeout: Duration,
    /// Blocking queries one remote IP may have parked at once; one more is answered `429`
    /// (`limits.http_max_blocking_queries_per_client`, Concord's own, default 1000). With
    /// HTTP/1.1 each parked query holds a connection, so the connection cap bites first;
    /// this bounds HTTP/2 clients, whose queries share connections. `0`: no limit.
    pub http_max_blocking_queries_per_client: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            http_max_conns_per_client: 200,
            http_read_header_timeout: Duration::from_secs(10),
            http_max_blocking_queries_per_client: 1000,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("node_name", &self.node_name)
            .field("datacenter", &self.datacenter)
            .field("advertise_addr", &self.advertise_addr)
            .field("servers", &self.servers)
            .field("server", &self.server)
            .field("dev", &self.dev)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A read's blocking options with the agent's query times applied: no `?wait` waits
    /// [`default_query_time`](Self::default_query_time), a longer one is cut to
    /// [`max_query_time`](Self::max_query_time).
    pub fn bound_wait(&self, mut options: QueryOptions) -> QueryOptions {
        if options.min_index == 0 {
            return options;
        }
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        options.max_wait_ms = match options.max_wait_ms {
            0 => ms(self.default_query_time),
            wait => wait,
        }
        .min(ms(self.max_query_time));
        options
    }

    /// A configuration with Consul's defaults for one node talking to `servers`.
    pub fn new(node_name: impl Into<String>, servers: Vec<SocketAddr>) -> Self {
        Config {
            node_name: node_name.into(),
            node_id: String::new(),
            datacenter: "dc1".to_string(),
            advertise_addr: IpAddr::from([127, 0, 0, 1]),
            node_meta: BTreeMap::new(),
            servers,
            server: false,
            dev: false,
            ae_interval: Duration::from_secs(60),
            ae_retry: Duration::from_secs(5),
            reap_interval: Duration::from_secs(30),
            dns: DnsConfig::default(),
            services: Vec::new(),
            reload: None,
            enable_script_checks: false,
            enable_local_script_checks: false,
            check_output_max_size: crate::checks::OUTPUT_MAX_SIZE,
            data_dir: None,
            server_port: 8300,
            serf_lan_port: 8301,
            serf_wan_port: 8302,
            default_intention_allow: true,
            sidecar_ports: 21000..=21255,
            acl: crate::acl::AclConfig::default(),
            default_query_time: Duration::from_millis(concord_api::rpc::DEFAULT_WAIT_MS),
            max_query_time: Duration::from_millis(concord_api::rpc::MAX_WAIT_MS),
            response_headers: BTreeMap::new(),
            allow_write_http_from: Vec::new(),
            logs: crate::logs::LogFeed::default(),
            limits: HttpLimits::default(),
            ui: concord_ui::UiConfig::default(),
            rpc_tls: None,
        }
    }
}
