//! `concord agent`: parses Consul's agent flags, reads the config files (through
//! [`config`]), starts logging ([`logging`]), binds the listeners, and runs the server (with
//! `-server`/`-dev`) and the agent in this process.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::net::{TcpListener, UdpSocket};

use crate::flags::{flag, parse_flags_with, report_usage, Flag, Kind, Parsed};

pub(crate) mod config;
mod gossip;
mod local_rpc;
pub(crate) mod logging;
mod tls;
mod ui;

use config::{load_services, settings};

/// Usage of `concord agent`.
const USAGE: &str = "Usage: concord agent [options]

  Starts an agent. With -server (or -dev) the agent also runs a server: a Raft voter
  holding the catalog, KV and sessions. Flags take one or two dashes, -flag value or
  -flag=value, as consul's do.

  -dev                     One process, one voter, in-memory state, fast timings.
  -server                  Run a server in this process.
  -bootstrap-expect=<n>    Servers to wait for (in the gossip pool) before forming the
                           cluster; ignored once the data dir holds Raft state.
  -bootstrap               Same as -bootstrap-expect=1.
  -data-dir=<path>         Raft log, snapshots, node ID, persisted services (required unless -dev).
  -node=<name>             Node name (default: hostname).
  -node-id=<uuid>          Node ID (default: generated, kept in -data-dir).
  -datacenter=<name>       Datacenter (default dc1).
  -bind=<ip>               Cluster address: server RPC and LAN gossip bind here
                           (default 127.0.0.1).
  -advertise=<ip>          Address advertised to the cluster and registered for the node.
  -client=<ip>             Address of the HTTP API and DNS (default 127.0.0.1).
  -http-port=<port>        HTTP API port (default 8500; 0 picks a free port).
  -dns-port=<port>         DNS port, UDP and TCP (default 8600; 0 picks one; -1 disables DNS).
  -server-port=<port>      Server RPC port (default 8300).
  -serf-lan-port=<port>    LAN gossip port, UDP and TCP (default 8301; 0 picks one).
  -serf-lan-bind=<ip>      Address LAN gossip binds to (default: -bind).
  -join=<addr>             Join this member at start (host[:port]; repeatable); fatal
                           if none answers.
  -retry-join=<addr>       Join in the background, retrying until one answers (repeatable).
  -retry-interval=<dur>    Wait between -retry-join attempts (default 30s).
  -retry-max=<n>           -retry-join attempts before the agent exits (default 0: forever).
  -rejoin                  Rejoin the last run's members even after a graceful leave.
  -encrypt=<key>           Gossip encryption key (base64 of 16, 24 or 32 bytes; concord
                           keygen makes one).
  -serf-wan-port=<port>    WAN gossip port reported for servers (default 8302).
  -log-level=<level>       trace, debug, info, warn, err (default info).
  -config-file=<path>      A config file, .json or .hcl (repeatable).
  -config-dir=<path>       A directory of .json and .hcl config files, read in name
                           order (repeatable).
  -config-format=<fmt>     json or hcl: read every config file in this format,
                           whatever its extension.
  -hcl=<text>              An HCL config snippet, read after the files (repeatable).
  -log-json                Log one JSON object per line.
  -log-file=<path>         Also log to this file (a path ending in / is a directory).
  -log-rotate-bytes=<n>    Rotate the log file when it reaches n bytes (0: never).
  -log-rotate-duration=<d> Rotate the log file this often (default 24h).
  -log-rotate-max-files=<n>
                           Rotated log files to keep (0: all; -1: none).
  -syslog                  Also log to the local syslog.
  -default-query-time=<d>  Blocking wait when a request has no ?wait (default 5m).
  -max-query-time=<d>      Longest ?wait honoured (default 10m).
  -https-port=<port>       HTTPS API port (default -1: off), with the certificate of
                           tls.https (or tls.defaults) in a config file. Plain HTTP
                           (-http-port) keeps running unless set to -1.
  -grpc-port, -grpc-tls-port
                           Accepted; these listeners are not built yet (a warning
                           says so unless the port is -1).
  -disable-host-node-id    Accepted: node IDs are never derived from the host.
  -allow-write-http-from=<cidr>
                           Only these networks may call write endpoints (repeatable);
                           others get 403 Access is restricted.

  Consul's WAN, Enterprise and other flags for features not built yet (-join-wan,
  -retry-join-wan, -advertise-wan, -serf-wan-bind, -primary-gateway, -segment,
  -read-replica, -auto-reload-config, ...) are accepted and
  each is named in a warning at start.

  Any port flag takes -1 to disable that listener.
  -node-meta=<key:value>   Node metadata (repeatable).
  -domain=<domain>         DNS domain (default consul).
  -alt-domain=<domain>     A second DNS domain answered like -domain.
  -recursor=<ip[:port]>    DNS resolver for names outside the domain (repeatable; port 53
                           by default); without one such names get REFUSED.
  -pid-file=<path>         Write the agent's PID here.
  -enable-script-checks    Run script checks (Args) from the API and config files.
  -enable-local-script-checks
                           Run script checks from config files only.";

/// Flags `concord agent` accepts (Consul's names).
const AGENT_FLAGS: &[Flag] = &[
    flag("dev", Kind::Bool),
    flag("server", Kind::Bool),
    flag("bootstrap-expect", Kind::Uint),
    flag("bootstrap", Kind::Bool),
    flag("data-dir", Kind::Str),
    flag("node", Kind::Str),
    flag("node-id", Kind::Str),
    flag("datacenter", Kind::Str),
    flag("bind", Kind::Str),
    flag("advertise", Kind::Str),
    flag("client", Kind::Str),
    flag("http-port", Kind::Str),
    flag("dns-port", Kind::Str),
    flag("server-port", Kind::Str),
    flag("serf-lan-port", Kind::Str),
    flag("serf-wan-port", Kind::Str),
    flag("log-level", Kind::Str),
    flag("config-file", Kind::List),
    flag("config-dir", Kind::List),
    flag("node-meta", Kind::List),
    flag("domain", Kind::Str),
    flag("alt-domain", Kind::Str),
    flag("recursor", Kind::List),
    flag("pid-file", Kind::Str),
    flag("enable-script-checks", Kind::Bool),
    flag("enable-local-script-checks", Kind::Bool),
    flag("join", Kind::List),
    flag("retry-join", Kind::List),
    flag("retry-interval", Kind::Str),
    flag("retry-max", Kind::Uint),
    flag("rejoin", Kind::Bool),
    flag("serf-lan-bind", Kind::Str),
    flag("encrypt", Kind::Str),
    flag("config-format", Kind::Str),
    flag("hcl", Kind::List),
    flag("https-port", Kind::Str),
    flag("grpc-port", Kind::Str),
    flag("grpc-tls-port", Kind::Str),
    flag("log-json", Kind::Bool),
    flag("log-file", Kind::Str),
    flag("log-rotate-bytes", Kind::Str),
    flag("log-rotate-duration", Kind::Str),
    flag("log-rotate-max-files", Kind::Str),
    flag("syslog", Kind::Bool),
    flag("default-query-time", Kind::Str),
    flag("max-query-time", Kind::Str),
    flag("disable-host-node-id", Kind::Bool),
    flag("allow-write-http-from", Kind::List),
    // Accepted for features Concord has not built; each is named in a warning at start
    // (`config::MISSING`).
    flag("advertise-wan", Kind::Str),
    flag("join-wan", Kind::List),
    flag("retry-join-wan", Kind::List),
    flag("retry-interval-wan", Kind::Str),
    flag("retry-max-wan", Kind::Str),
    flag("serf-wan-bind", Kind::Str),
    flag("serf-wan-allowed-cidrs", Kind::List),
    flag("serf-lan-allowed-cidrs", Kind::List),
    flag("primary-gateway", Kind::List),
    flag("auto-reload-config", Kind::Bool),
    flag("disable-keyring-file", Kind::Bool),
    flag("check_output_max_size", Kind::Str),
    flag("non-voting-server", Kind::Bool),
    flag("read-replica", Kind::Bool),
    flag("segment", Kind::Str),
    flag("protocol", Kind::Str),
    flag("raft-protocol", Kind::Str),
    // The web UI (cli/src/agent/ui.rs).
    flag("ui", Kind::Bool),
    flag("ui-dir", Kind::Str),
    flag("ui-content-path", Kind::Str),
];

/// Parses the flags; `Err` after printing help or a usage error, or for a stray argument.
fn parse_args(args: &[String]) -> Result<Parsed, ParseOutcome> {
    let p = report_usage(parse_flags_with(args, AGENT_FLAGS, &[]), USAGE)
        .map_err(ParseOutcome::Exit)?;
    if let Some(extra) = p.args.first() {
        return Err(ParseOutcome::Error(anyhow::anyhow!(
            "unexpected argument {extra:?}\n\n{USAGE}"
        )));
    }
    Ok(p)
}

/// Why flag parsing stopped.
enum ParseOutcome {
    /// Help was printed or the usage error reported: exit with this code.
    Exit(i32),
    /// The flags were well-formed but a value was not.
    Error(anyhow::Error),
}

/// The port to bind, or `None` when disabled (negative).
fn enabled_port(port: i32) -> anyhow::Result<Option<u16>> {
    if port < 0 {
        return Ok(None);
    }
    Ok(Some(
        u16::try_from(port).with_context(|| format!("{port} is not a port"))?,
    ))
}

/// The HTTPS API's port and TLS.
type HttpsListener = (u16, concord_net::serve::TlsListener);

/// The HTTPS port and listener's TLS (when `-https-port` is set) and internal RPC's (when
/// `tls.internal_rpc` asks for any), from the merged `tls` settings; logs what a TLS
/// version rustls lacks turned into.
fn tls_settings(
    s: &config::Settings,
    datacenter: &str,
    domain: &str,
) -> anyhow::Result<(Option<HttpsListener>, Option<concord_net::tls::InternalRpc>)> {
    let mut warnings = Vec::new();
    let https = match enabled_port(s.https_port.unwrap_or(-1))? {
        Some(port) => {
            let settings = s.tls.https(&mut warnings)?;
            if settings.cert_file.is_none() {
                bail!("ports.https is set but no certificate is: set tls.https (or tls.defaults) cert_file and key_file");
            }
            let config = settings
                .server_config(concord_net::tls::HTTPS_ALPN)
                .context("tls.https")?;
            Some((
                port,
                concord_net::serve::TlsListener {
                    config,
                    plain: concord_net::serve::Plain::Refuse,
                },
            ))
        }
        None => None,
    };
    let rpc = concord_net::tls::InternalRpc::from_settings(
        &s.tls.internal_rpc(&mut warnings)?,
        s.server,
        datacenter,
        domain,
    )
    .context("tls.internal_rpc")?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    if let Some(rpc) = &rpc {
        tracing::info!(
            listener = rpc.server.is_some(),
            outgoing = rpc.client.is_some(),
            refuse_plain = rpc.refuse_plain,
            raft_peer_name = rpc.raft_peer_name.as_deref().unwrap_or(""),
            "internal RPC TLS"
        );
    }
    Ok((https, rpc))
}

/// Raises the soft open-files limit to the hard limit, as Go's runtime does at start (and
/// so Consul): every client connection and every peer holds a descriptor, and the usual
/// soft limit of 1024 would cut the agent off long before the hard limit. Logs both.
fn raise_open_files_limit() {
    let (soft, hard) = match rlimit::Resource::NOFILE.get() {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open files limit");
            return;
        }
    };
    if soft >= hard {
        tracing::info!(soft, hard, "open files limit");
        return;
    }
    match rlimit::increase_nofile_limit(hard) {
        Ok(raised) => tracing::info!(
            soft = raised,
            hard,
            was = soft,
            "raised the open files limit"
        ),
        Err(e) => tracing::warn!(soft, hard, error = %e, "cannot raise the open files limit"),
    }
}

/// The node UUID: given, or persisted in the data dir, or fresh.
fn node_id(given: Option<String>, data_dir: Option<&Path>) -> anyhow::Result<String> {
    if let Some(id) = given {
        uuid::Uuid::parse_str(&id).with_context(|| format!("-node-id {id:?} is not a UUID"))?;
        return Ok(id);
    }
    let Some(dir) = data_dir else {
        return Ok(uuid::Uuid::new_v4().to_string());
    };
    let path = dir.join("node-id");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(existing.trim().to_string());
    }
    let id = uuid::Uuid::new_v4().to_string();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "concord".to_string())
}

/// A recursor as Consul accepts it: `ip`, `ip:port` or `[ipv6]:port`; port 53 by default.
fn recursor_addr(text: &str) -> anyhow::Result<std::net::SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let ip: IpAddr = text
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid recursor address {text:?}: want ip or ip:port"))?;
    Ok(std::net::SocketAddr::new(ip, 53))
}

/// Binds DNS on UDP and TCP at the same port; with port 0, finds one free for both.
async fn bind_dns(ip: IpAddr, port: u16) -> anyhow::Result<(UdpSocket, TcpListener)> {
    for _ in 0..20 {
        let udp = UdpSocket::bind(SocketAddr::new(ip, port))
            .await
            .with_context(|| format!("binding DNS (UDP) on {ip}:{port}"))?;
        let bound = udp.local_addr()?.port();
        match TcpListener::bind(SocketAddr::new(ip, bound)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if port == 0 => {
                tracing::debug!(error = %e, "DNS TCP port taken; trying another");
            }
            Err(e) => return Err(e).with_context(|| format!("binding DNS (TCP) on {ip}:{port}")),
        }
    }
    bail!("could not find a free port for DNS on {ip}")
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs `concord agent ARGS`.
pub(crate) async fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let parsed = match parse_args(&args) {
        Ok(p) => p,
        Err(ParseOutcome::Exit(code)) => return Ok(code),
        Err(ParseOutcome::Error(e)) => return Err(e),
    };
    let (s, sources) = settings(&parsed)?;
    let log_feed = concord_client_agent::logs::LogFeed::default();
    // Warnings found while reading the config are logged only now, once logging runs.
    logging::init(&s.logging, &log_feed, &s.warnings())?;
    raise_open_files_limit();

    let bootstrap_expect = if s.dev {
        1
    } else {
        s.bootstrap_expect.unwrap_or(0)
    };
    if s.server && bootstrap_expect == 0 {
        tracing::info!(
            "no -bootstrap-expect: this server waits to be added to an existing cluster"
        );
    }
    let data_dir = match (&s.data_dir, s.dev) {
        (Some(d), _) => Some(d.clone()),
        (None, true) => None,
        (None, false) => bail!("data_dir is required unless -dev: pass -data-dir DIR"),
    };
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let bind = s.bind.unwrap_or(localhost);
    let advertise = s.advertise.unwrap_or(if bind.is_unspecified() {
        localhost
    } else {
        bind
    });
    let client_ip = s.client.unwrap_or(localhost);
    let node_name = s.node_name.clone().unwrap_or_else(hostname);
    let node_id = node_id(s.node_id.clone(), data_dir.as_deref())?;
    let datacenter = s.datacenter.clone().unwrap_or_else(|| "dc1".to_string());

    let domain = s.domain.clone().unwrap_or_else(|| "consul".to_string());
    let (https_tls, rpc_tls) = tls_settings(&s, &datacenter, &domain)?;
    let https = match https_tls {
        Some((port, tls)) => Some((
            TcpListener::bind(SocketAddr::new(client_ip, port))
                .await
                .context("binding HTTPS API")?,
            tls,
        )),
        None => None,
    };
    let http = match enabled_port(s.http_port.unwrap_or(8500))? {
        Some(port) => Some(
            TcpListener::bind(SocketAddr::new(client_ip, port))
                .await
                .context("binding HTTP API")?,
        ),
        None => {
            if https.is_none() {
                tracing::warn!("HTTP API disabled (ports.http = -1): only DNS and gossip answer");
            }
            None
        }
    };
    let dns_sockets = match enabled_port(s.dns_port.unwrap_or(8600))? {
        Some(port) => Some(bind_dns(client_ip, port).await?),
        None => None,
    };
    let http_port = match &http {
        Some(l) => Some(l.local_addr()?.port()),
        None => None,
    };
    let https_port = match &https {
        Some((l, _)) => Some(l.local_addr()?.port()),
        None => None,
    };
    let dns_port = match &dns_sockets {
        Some((udp, _)) => Some(udp.local_addr()?.port()),
        None => None,
    };

    // The server's RPC listener is bound first: its port goes into the gossip tags, and the
    // pool is started before the server so the server's leader can reconcile it.
    let server_port = match enabled_port(s.server_port.unwrap_or(8300))? {
        Some(p) => p,
        None if s.server => bail!("ports.server cannot be -1 on a server: it serves Raft and RPC"),
        // A client has no server port; only its member tags mention one.
        None => 8300,
    };
    let rpc_listener = if s.server {
        Some(
            TcpListener::bind(SocketAddr::new(bind, server_port))
                .await
                .context("binding server RPC")?,
        )
    } else {
        None
    };
    let rpc_port = match &rpc_listener {
        Some(l) => Some(l.local_addr()?.port()),
        None => None,
    };
    let servers: Vec<SocketAddr> = rpc_port
        .map(|p| SocketAddr::new(advertise, p))
        .into_iter()
        .collect();

    let mut config = concord_client_agent::Config::new(node_name.clone(), servers.clone());
    config.node_id = node_id.clone();
    config.datacenter = datacenter.clone();
    config.advertise_addr = advertise;
    config.node_meta = s.node_meta.iter().cloned().collect();
    config.server = s.server;
    config.dev = s.dev;
    config.server_port = rpc_port.unwrap_or(server_port);
    // `-serf-wan-port=-1`: no WAN port, so `members -wan` lists nothing.
    config.serf_wan_port = enabled_port(s.serf_wan_port.unwrap_or(8302))?.unwrap_or(0);
    if let Some(t) = s.default_query_time {
        config.default_query_time = t;
    }
    if let Some(t) = s.max_query_time {
        config.max_query_time = t;
    }
    config.response_headers = s.response_headers.clone();
    config.allow_write_http_from = s.allow_write_http_from.clone();
    config.logs = log_feed.clone();
    config.services = s.services.clone();
    config.data_dir = s.data_dir.clone();
    config.enable_script_checks = s.enable_script_checks;
    // Consul derives the intention default from the ACL default policy when not set.
    let acl_denies =
        s.acl.enabled && s.acl.default_policy == concord_api::acl::authorizer::DefaultPolicy::Deny;
    config.default_intention_allow = s.default_intention_allow.unwrap_or(!acl_denies);
    config.acl = s.acl.clone();
    config.enable_local_script_checks = s.enable_local_script_checks;
    if let Some(max) = s.check_output_max_size {
        // `Settings::check` refused values below 1.
        config.check_output_max_size = usize::try_from(max).unwrap_or(usize::MAX);
    }
    config.limits = s.http_limits()?;
    config.ui = s.ui.resolve(s.dev);
    config.rpc_tls = rpc_tls.clone();
    if s.dev {
        // Dev mode favours fast feedback over load on the (local) server.
        config.ae_interval = Duration::from_secs(10);
        config.ae_retry = Duration::from_secs(1);
    }

    let tags = concord_client_agent::membership::member_tags(&config, bootstrap_expect);
    let pool = gossip::start(&s, bind, advertise, tags, &node_name).await?;
    config.serf_lan_port = pool.local_member().addr.port();

    // A client agent finds servers in the pool (`role=consul` members); until it has
    // joined one, catalog, KV and session requests fail with "No known Consul servers".
    let server = match rpc_listener {
        Some(rpc_listener) => {
            let server_config = concord_server::Config {
                node_name: node_name.clone(),
                node_id: node_id.clone(),
                datacenter: datacenter.clone(),
                data_dir: data_dir.clone(),
                rpc_advertise: SocketAddr::new(advertise, rpc_listener.local_addr()?.port()),
                bootstrap_expect,
                dev: s.dev,
                session_ttl_min: s.session_ttl_min.unwrap_or(concord_server::SESSION_TTL_MIN),
                rpc_max_conns_per_client: s
                    .limits
                    .rpc_max_conns_per_client
                    .unwrap_or(concord_server::DEFAULT_RPC_MAX_CONNS_PER_CLIENT),
                rpc_tls: rpc_tls.clone(),
                acl: s.acl.enabled.then_some(s.acl.default_policy),
                acl_initial_management: s
                    .acl
                    .tokens
                    .initial_management
                    .clone()
                    .map(concord_api::acl::SecretToken),
                raft_snapshot_threshold: s
                    .raft_snapshot_threshold
                    .unwrap_or(concord_server::DEFAULT_RAFT_SNAPSHOT_THRESHOLD),
                raft_trailing_logs: s
                    .raft_trailing_logs
                    .unwrap_or(concord_server::DEFAULT_RAFT_TRAILING_LOGS),
                group_commit: true,
            };
            let server = concord_server::Server::start_with_gossip(
                server_config,
                rpc_listener,
                pool.clone(),
            )
            .await
            .context("starting server")?;
            // A single server elects itself at once; a server of a larger cluster needs the
            // others first, which it only meets after joining the pool below.
            if bootstrap_expect == 1 {
                server
                    .wait_for_leader(Duration::from_secs(30))
                    .await
                    .context("waiting for a Raft leader")?;
            }
            Some(server)
        }
        None => None,
    };

    gossip::start_join(&pool, &s.join).await?;
    if let Some(dir) = &data_dir {
        let previous = gossip::previous_members(dir, s.rejoin);
        if !previous.is_empty() {
            // Best effort, once: the members of the last run may all be gone.
            let pool = pool.clone();
            tokio::spawn(async move {
                if let Err(e) = concord_client_agent::membership::join(&pool, &previous).await {
                    tracing::warn!(error = %e, "rejoining the members of the last run failed");
                }
            });
        }
        gossip::spawn_snapshot(pool.clone(), dir.clone());
    }
    let gave_up = gossip::spawn_retry_join(
        pool.clone(),
        s.retry_join.clone(),
        s.retry_interval,
        s.retry_max.unwrap_or(0),
    );

    let mut dns = concord_client_agent::dns::DnsConfig {
        datacenter: datacenter.clone(),
        ..Default::default()
    };
    if let Some(d) = &s.domain {
        dns.domain = format!("{}.", d.trim_end_matches('.'));
    }
    if let Some(t) = s.dns_node_ttl {
        dns.node_ttl = t;
    }
    dns.service_ttl_overrides = s.dns_service_ttl.clone();
    dns.advertise_addr = Some(advertise);
    if let Some(n) = s.dns_udp_answer_limit {
        dns.udp_answer_limit = n;
    }
    if let Some(b) = s.dns_only_passing {
        dns.only_passing = b;
    }
    if let Some(b) = s.dns_enable_truncate {
        dns.enable_truncate = b;
    }
    dns.alt_domain = s
        .alt_domain
        .as_ref()
        .map(|d| format!("{}.", d.trim_end_matches('.')));
    dns.recursors = s
        .recursors
        .iter()
        .map(|r| recursor_addr(r))
        .collect::<anyhow::Result<_>>()?;
    if let Some(n) = s.dns_a_record_limit {
        dns.a_record_limit = n;
    }
    if let Some(t) = s.dns_recursor_timeout {
        dns.recursor_timeout = t;
    }
    if let Some(b) = s.dns_allow_stale {
        dns.allow_stale = b;
    }
    if let Some(t) = s.dns_max_stale {
        dns.max_stale = t;
    }
    if let Some(b) = s.dns_use_cache {
        dns.use_cache = b;
    }
    if let Some(t) = s.dns_cache_max_age {
        dns.cache_max_age = t;
    }
    config.dns = dns;
    let [refresh, retry, expire, min_ttl] = s.dns_soa;
    for (slot, value) in [
        (&mut config.dns.soa_refresh, refresh),
        (&mut config.dns.soa_retry, retry),
        (&mut config.dns.soa_expire, expire),
        (&mut config.dns.soa_min_ttl, min_ttl),
    ] {
        if let Some(secs) = value {
            *slot = Duration::from_secs(secs);
        }
    }
    config.reload = Some(std::sync::Arc::new(move || load_services(&sources)));

    banner(
        &node_name,
        &datacenter,
        s.server,
        s.dev,
        client_ip,
        http_port,
        https_port,
        dns_port,
        advertise,
        rpc_port,
        pool.local_member().addr.port(),
    );
    let pid_file = s.pid_file.clone();
    if let Some(path) = &pid_file {
        std::fs::write(path, std::process::id().to_string())
            .with_context(|| format!("writing pid file {}", path.display()))?;
    }
    let listeners = concord_client_agent::Listeners {
        http,
        https,
        dns: dns_sockets,
        gossip: Some(pool.clone()),
    };
    let stop = async {
        tokio::select! {
            _ = shutdown_signal() => {},
            _ = gossip::exhausted(gave_up) => {},
        }
    };
    // With a server in this process the agent calls it directly; a client agent reaches
    // the servers over their RPC port.
    let agent_result = match &server {
        Some(server) => {
            let rpc = std::sync::Arc::new(local_rpc::InProcess(server.local_rpc()));
            concord_client_agent::serve::run_with(config, rpc, listeners, stop).await
        }
        None => concord_client_agent::run(config, listeners, stop).await,
    };
    // Consul's `leave_on_terminate`: by default a client leaves gracefully when stopped (the
    // others record Left and the leader deregisters it), a server does not (the others see
    // it fail, so a restart keeps its place). After `/v1/agent/leave` this is a no-op.
    let still_member = pool.local_member().status == concord_net::gossip::MemberStatus::Alive;
    if still_member && s.leave_on_terminate.unwrap_or(!s.server) {
        if let Err(e) = pool.leave(Duration::from_secs(5)).await {
            tracing::warn!(error = %e, "graceful leave failed");
        }
    }
    if let Some(server) = server {
        server.shutdown().await.context("stopping server")?;
    }
    if let Some(dir) = &data_dir {
        gossip::finish_snapshot(&pool, dir);
    }
    pool.shutdown();
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    agent_result.context("agent")?;
    tracing::info!("agent stopped");
    Ok(0)
}

#[allow(clippy::print_stdout, clippy::too_many_arguments)]
fn banner(
    node: &str,
    dc: &str,
    server: bool,
    dev: bool,
    client: IpAddr,
    http_port: Option<u16>,
    https_port: Option<u16>,
    dns_port: Option<u16>,
    advertise: IpAddr,
    rpc_port: Option<u16>,
    lan_port: u16,
) {
    let show = |p: Option<u16>| p.map_or_else(|| "-1".to_string(), |p| p.to_string());
    println!("==> Concord agent running!");
    println!(
        "           Version: 'v{}' (Consul API {})",
        concord_api::CONCORD_VERSION,
        concord_api::CONSUL_COMPAT_VERSION
    );
    println!("         Node name: '{node}'");
    println!("        Datacenter: '{dc}'");
    println!("            Server: {server} (Bootstrap: {server}, Dev: {dev})");
    println!(
        "       Client Addr: [{client}] (HTTP: {}, HTTPS: {}, DNS: {})",
        show(http_port),
        show(https_port),
        show(dns_port)
    );
    println!(
        "      Cluster Addr: {advertise} (LAN: {lan_port}, RPC: {})",
        show(rpc_port)
    );
    println!();
    println!("==> Log data will now stream in as it occurs:");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_accept_consul_styles() {
        let args = ["-dev", "-http-port=0", "--dns-port", "-1", "-node", "n1"];
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let Ok(p) = parse_args(&args) else {
            panic!("flags did not parse");
        };
        let (f, _) = settings(&p).unwrap();
        assert!(f.dev && f.server, "-dev implies a server");
        assert_eq!(f.http_port, Some(0));
        assert_eq!(f.dns_port, Some(-1));
        assert_eq!(f.node_name.as_deref(), Some("n1"));
    }

    #[test]
    fn https_needs_a_certificate_and_internal_rpc_follows_the_verify_flags() {
        let parse = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            let Ok(p) = parse_args(&args) else {
                panic!("flags did not parse");
            };
            settings(&p).unwrap().0
        };
        let s = parse(&["-dev", "-https-port", "0"]);
        let error = tls_settings(&s, "dc1", "consul").unwrap_err().to_string();
        assert!(
            error.starts_with("ports.https is set but no certificate is"),
            "{error}"
        );
        let (https, rpc) = tls_settings(&parse(&["-dev"]), "dc1", "consul").unwrap();
        assert!(https.is_none() && rpc.is_none(), "no TLS unless asked");
        let s = parse(&["-dev", "-hcl", "verify_outgoing = true"]);
        let error = format!("{:#}", tls_settings(&s, "dc1", "consul").unwrap_err());
        assert!(error.contains("needs ca_file or ca_path"), "{error}");
    }

    #[test]
    fn recursor_addresses() {
        assert_eq!(
            recursor_addr("10.0.0.1").unwrap(),
            "10.0.0.1:53".parse().unwrap()
        );
        assert_eq!(
            recursor_addr("10.0.0.1:5353").unwrap(),
            "10.0.0.1:5353".parse().unwrap()
        );
        assert_eq!(recursor_addr("::1").unwrap(), "[::1]:53".parse().unwrap());
        assert_eq!(
            recursor_addr("[::1]:54").unwrap(),
            "[::1]:54".parse().unwrap()
        );
        let error = recursor_addr("dns.example").unwrap_err().to_string();
        assert!(error.contains("invalid recursor address"), "{error}");
    }
}
