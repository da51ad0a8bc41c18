//! `concord`: one binary for the agent (client, server or `-dev`) and the Consul-style CLI.
//! Each subcommand group lives in its own module; this file only dispatches.
//!
//! # Layout
//! - `agent`: `concord agent` (flags, listeners, server + agent); `agent/config` reads config
//!   files into typed structs and merges them with the flags.
//! - `kv`, `catalog`, `services`, `members`, `intention`, `config` (config entries; not
//!   `agent/config`): one module per client command group (`members` also holds `join`,
//!   `leave` and `force-leave`); `event`; `keyring` (`keygen` and `keyring`); `rtt`; `snapshot` (`save`,
//!   `restore`, `inspect`); `operator` (`raft` peers and `autopilot`).
//! - What the client commands share, one concern per module: `flags` (the Go-style flag
//!   parser and the HTTP flags), `http` (the HTTP client to the agent and its errors),
//!   `output` (columns, stdout, failure messages).

/// jemalloc (with its background purge thread) instead of glibc's malloc: after a burst of
/// parked blocking queries (thousands of connections and futures freed together) glibc
/// kept the freed memory in its arenas and RSS stayed at the peak for good; jemalloc
/// returns it to the OS within seconds (10 s decay) and fragments less while parked.
/// Measured with `bench/src/bin/parked.rs`, see docs/benchmarks.md. (mimalloc was tried
/// and kept more.)
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod agent;
mod catalog;
mod config;
mod event;
mod flags;
mod http;
mod intention;
mod keyring;
mod kv;
mod members;
mod operator;
mod output;
mod rtt;
mod services;
mod snapshot;

const USAGE: &str = "Usage: concord [--version] [--help] <command> [<args>]

Available commands are:
    agent          Runs an agent (-dev for a one-process server and agent)
    catalog        Interact with the catalog
    config         Interact with config entries
    event          Fire a user event to the pool
    force-leave    Forces a failed member of the pool to leave
    intention      Interact with Connect service intentions
    join           Tell the agent to join the pool
    keygen         Generates a new gossip encryption key
    keyring        Manages gossip encryption keys
    kv             Interact with the key-value store
    leave          Gracefully leaves the pool and shuts down
    members        Lists the members of the cluster
    operator       Raft peers and autopilot of the servers
    rtt            Estimates network round trip time between nodes
    services       Interact with services
    snapshot       Saves, restores and inspects snapshots of the servers' state
    version        Prints the version";

fn main() -> std::process::ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!("{USAGE}");
        return std::process::ExitCode::from(1);
    }
    let command = args.remove(0);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error starting runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match command.as_str() {
            "agent" => agent::run(args).await,
            "catalog" => catalog::run(args).await,
            "config" => config::run(args).await,
            "event" => event::run(args).await,
            "force-leave" => members::force_leave(args).await,
            "intention" => intention::run(args).await,
            "join" => members::join(args).await,
            "keygen" => keyring::keygen(&args),
            "keyring" => keyring::run(args).await,
            "kv" => kv::run(args).await,
            "leave" => members::leave(args).await,
            "members" => members::run(args).await,
            "operator" => operator::run(args).await,
            "rtt" => rtt::run(args).await,
            "services" => services::run(args).await,
            "snapshot" => snapshot::run(args).await,
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
