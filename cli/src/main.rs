//! `concord`: one binary for the agent (client, server or `-dev`) and the Consul-style CLI.
//! Each subcommand group lives in its own module; this file only dispatches.
//!
//! # Layout
//! - `agent`: `concord agent` (flags, listeners, server + agent); `agent/config` reads config
//!   files into typed structs and merges them with the flags.
//! - `acl`: `acl bootstrap`, `acl token|policy|role ...`.
//! - `agent_cmds`: `info`, `reload`, `maint`, `monitor` (the agent acting on itself);
//!   `watch` (blocking-query watches with handlers); `lock` (locks and semaphores around a
//!   child process); `validate` (config files, as the agent reads them).
//! - `kv`, `catalog`, `services`, `members`, `intention`, `config` (config entries; not
//!   `agent/config`): one module per client command group (`members` also holds `join`,
//!   `leave` and `force-leave`); `connect` (`connect proxy`, the sidecar proxy); `event`; `keyring` (`keygen` and `keyring`); `rtt`; `snapshot` (`save`,
//!   `restore`, `inspect`); `operator` (`raft` peers and `autopilot`); `tls` (`ca create`,
//!   `cert create`: agent TLS certificates).
//! - What the client commands share, one concern per module: `flags` (the Go-style flag
//!   parser and the HTTP flags), `http` (the HTTP client to the agent and its errors),
//!   `output` (columns, stdout, failure messages).

mod acl;
/// jemalloc (with its background purge thread) instead of glibc's malloc: after a burst of
/// parked blocking queries (thousands of connections and futures freed together) glibc
/// kept the freed memory in its arenas and RSS stayed at the peak for good; jemalloc
/// returns it to the OS within seconds (10 s decay) and fragments less while parked.
/// Measured with `bench/src/bin/parked.rs`, see docs/benchmarks.md. (mimalloc was tried
/// and kept more.)
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod agent;
mod agent_cmds;
mod catalog;
mod config;
mod connect;
mod event;
mod flags;
mod http;
mod intention;
mod keyring;
mod kv;
mod lock;
mod members;
mod operator;
mod output;
mod rtt;
mod services;
mod snapshot;
mod tls;
mod validate;
mod watch;

const USAGE: &str = "Usage: concord [--version] [--help] <command> [<args>]

Available commands are:
    acl            Manage ACL tokens, policies and roles
    agent          Runs an agent (-dev for a one-process server and agent)
    catalog        Interact with the catalog
    config         Interact with config entries
    connect        Runs the Connect sidecar proxy
    event          Fire a user event to the pool
    force-leave    Forces a failed member of the pool to leave
    info           Provides debugging information for operators
    intention      Interact with Connect service intentions
    join           Tell the agent to join the pool
    keygen         Generates a new gossip encryption key
    keyring        Manages gossip encryption keys
    kv             Interact with the key-value store
    leave          Gracefully leaves the pool and shuts down
    lock           Executes a command holding a lock (or semaphore slot)
    maint          Controls node or service maintenance mode
    members        Lists the members of the cluster
    monitor        Streams logs from an agent
    operator       Raft peers and autopilot of the servers
    reload         Triggers the agent to reload configuration files
    rtt            Estimates network round trip time between nodes
    services       Interact with services
    snapshot       Saves, restores and inspects snapshots of the servers' state
    tls            Creates an agent CA and agent certificates
    validate       Validates config files or directories
    version        Prints the version
    watch          Watches for changes in the catalog, KV or events";

fn main() -> std::process::ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!("{USAGE}");
        return std::process::ExitCode::from(1);
    }
    let command = args.remove(0);
    // `connect proxy` picks its thread count (-workers); everything else the default.
    let workers = match command.as_str() {
        "connect" => connect::runtime_workers(&args),
        _ => None,
    };
    let mut builder = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error starting runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match command.as_str() {
            "acl" => acl::run(args).await,
            "agent" => agent::run(args).await,
            "catalog" => catalog::run(args).await,
            "config" => config::run(args).await,
            "connect" => connect::run(args).await,
            "event" => event::run(args).await,
            "force-leave" => members::force_leave(args).await,
            "info" => agent_cmds::info(args).await,
            "intention" => intention::run(args).await,
            "join" => members::join(args).await,
            "keygen" => keyring::keygen(&args),
            "keyring" => keyring::run(args).await,
            "kv" => kv::run(args).await,
            "leave" => members::leave(args).await,
            "lock" => lock::run(args).await,
            "maint" => agent_cmds::maint(args).await,
            "members" => members::run(args).await,
            "monitor" => agent_cmds::monitor(args).await,
            "operator" => operator::run(args).await,
            "reload" => agent_cmds::reload(args).await,
            "rtt" => rtt::run(args).await,
            "services" => services::run(args).await,
            "snapshot" => snapshot::run(args).await,
            "tls" => tls::run(&args),
            "validate" => Ok(validate::run(&args)),
            "watch" => watch::run(args).await,
            "version" | "-version" | "--version" | "-v" => Ok(version()),
            "help" | "-help" | "--help" | "-h" => {
                #[allow(clippy::print_stdout)]
                {
                    println!("{USAGE}");
                }
                Ok(0)
            }
            other => {
                eprintln!("Unknown command: {other:?}\n\n{USAGE}");
                Ok(1)
            }
        }
    });
    match result {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

#[allow(clippy::print_stdout)]
fn version() -> i32 {
    println!("Concord v{}", concord_api::CONCORD_VERSION);
    println!(
        "Consul API compatibility: {}",
        concord_api::CONSUL_COMPAT_VERSION
    );
    0
}
