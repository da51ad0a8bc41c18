//! The agent's configuration. The CLI builds it from flags and config files.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use concord_api::agent::ServiceDefinition;

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
    /// Where API-registered services and checks are kept across restarts (`None`: dev
    /// mode, nothing is kept).
    pub data_dir: Option<std::path::PathBuf>,
    /// Server RPC port reported in member tags (`-server-port`).
    pub server_port: u16,
    /// WAN gossip port reported for this server in `?wan` members (`-serf-wan-port`).
    pub serf_wan_port: u16,
    /// LAN gossip port of this member (`-serf-lan-port`; the bound port when 0 was asked),
    /// reported by `/v1/agent/self` when the agent runs without a pool.
    pub serf_lan_port: u16,
    /// What Connect authorization answers when no intention matches (`true`: allow).
    /// Consul derives this from the ACL default policy, and with ACLs disabled (Concord has
    /// no ACLs) that is allow, so allow is the default; `default_intention_policy = "deny"`
    /// makes the mesh deny-by-default.
    pub default_intention_allow: bool,
    /// The web UI at `/ui/` (`-ui`, `ui_config`); off unless enabled (on in `-dev`).
    pub ui: concord_ui::UiConfig,
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
            data_dir: None,
            server_port: 8300,
            serf_lan_port: 8301,
            serf_wan_port: 8302,
            default_intention_allow: true,
            ui: concord_ui::UiConfig::default(),
        }
    }
}
