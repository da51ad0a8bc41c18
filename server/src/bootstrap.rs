//! `-bootstrap-expect N` with N > 1 (Consul's `maybeBootstrap`): a server without Raft state
//! watches the gossip pool until N servers expecting N are alive; the one with the lowest
//! Raft id asks every other one whether it already holds Raft state (a stale
//! `RaftStatus` read: any peer or leader means a cluster exists) and, if none does,
//! initializes all N as voters. The others wait to be replicated to. A server with Raft
//! state never runs this: it rejoins its cluster with its data.

use std::sync::Arc;
use std::time::Duration;

use concord_api::rpc::{
    Consistency, Query, QueryOptions, QueryResult, ReadRequest, ReadResponse, READ_PATH,
};
use openraft::error::{InitializeError, RaftError};

use crate::cluster::{self, Bootstrap};
use crate::node::Shared;

/// How often the pool is looked at while waiting.
const LOOK_INTERVAL: Duration = Duration::from_millis(500);
/// Timeout of the "do you have Raft state?" question to a peer.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits for the expected servers and bootstraps once; returns when this server has Raft
/// state (bootstrapped here or joined by a leader), or when a peer already had some.
pub(crate) async fn run(shared: Arc<Shared>, expect: usize) {
    let mut last_reason = String::new();
    'look: loop {
        match shared.raft.is_initialized().await {
            Ok(true) => {
                tracing::info!("raft state present; bootstrap done");
                return;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "raft stopped; not bootstrapping");
                return;
            }
        }
        let servers = shared.gossip.as_ref().map_or_else(Vec::new, |g| {
            cluster::pool_servers(&g.members(), &shared.config.datacenter)
        });
        match cluster::bootstrap_decision(shared.id, expect, &servers) {
            Bootstrap::Wait(reason) => {
                if reason != last_reason {
                    tracing::info!(%reason, "waiting to bootstrap");
                    last_reason = reason;
                }
            }
            Bootstrap::Follow(lowest) => {
                let reason = format!("server with raft id {lowest} bootstraps the cluster");
                if reason != last_reason {
                    tracing::info!(%reason, "waiting to be replicated to");
                    last_reason = reason;
                }
            }
            Bootstrap::Initialize(voters) => {
                let mut existing = None;
                for (id, node) in &voters {
                    if *id == shared.id {
                        continue;
                    }
                    match has_raft_state(&shared, &node.addr).await {
                        Ok(true) => existing = Some(node.addr.clone()),
                        Ok(false) => {}
                        Err(e) => {
                            tracing::info!(peer = %node.addr, error = %e, "peer not answering yet");
                            last_reason = String::new();
                            tokio::time::sleep(LOOK_INTERVAL).await;
                            continue 'look;
                        }
                    }
                }
                if let Some(addr) = existing {
                    tracing::warn!(
                        peer = %addr,
                        "a peer already holds Raft state; not bootstrapping (waiting to be added)"
                    );
                    return;
                }
                tracing::info!(
                    servers = voters.len(),
                    "bootstrapping a {expect}-server cluster"
                );
                match shared.raft.initialize(voters).await {
                    Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => return,
                    Err(e) => tracing::warn!(error = %e, "bootstrap failed; retrying"),
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(LOOK_INTERVAL) => {}
            () = shared.stopping() => return,
        }
    }
}

/// Whether the server at `addr` reports a leader or voters (i.e. holds Raft state).
async fn has_raft_state(shared: &Shared, addr: &str) -> Result<bool, String> {
    let req = ReadRequest {
        query: Query::RaftStatus,
        options: QueryOptions {
            consistency: Consistency::Stale,
            ..QueryOptions::default()
        },
    };
    let resp: ReadResponse = shared
        .http
        .post(addr, READ_PATH, &req, &[], ASK_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    Ok(match resp.result {
        QueryResult::RaftStatus { leader, peers } => !leader.is_empty() || !peers.is_empty(),
        _ => false,
    })
}
