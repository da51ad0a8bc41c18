//! Work only the leader does, started when this server gains leadership and stopped when it
//! loses it (Consul's `establishLeadership` / `revokeLeadership`):
//! - session TTL timers ([`SessionTimers`](crate::timers::SessionTimers)): a session expires `TTL × 2` after its last
//!   renewal unless renewed; expiry proposes a destroy.
//! - reconciling this server into the catalog ([`reconcile`]).
//! - bootstrapping the Connect CA on first leadership ([`init_ca`]).

mod reconcile;

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use tokio::task::JoinHandle;

use crate::command::{now_ms, Command};
use crate::node::Shared;
use crate::raft::Raft;
use crate::state::{parse_session_ttl, StoreHandle};

/// Retry period of the leadership barrier while it fails (e.g. a quorum is not reachable yet).
const BARRIER_RETRY: Duration = Duration::from_millis(200);
/// How often the leader re-checks its own catalog registration.
const RECONCILE_INTERVAL: Duration = Duration::from_secs(60);
/// Retry period of a failed reconcile.
const RECONCILE_RETRY: Duration = Duration::from_secs(1);

/// Watches Raft's state and runs [`lead`] exactly while this server is the leader.
pub(crate) fn spawn(shared: Arc<Shared>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut metrics = shared.raft.metrics();
        let mut term: Option<JoinHandle<()>> = None;
        loop {
            let leading = metrics.borrow_and_update().state == ServerState::Leader;
            match (leading, term.is_some()) {
                (true, false) => term = Some(tokio::spawn(lead(shared.clone()))),
                (false, true) => {
                    tracing::info!("lost leadership; stopping leader tasks");
                    if let Some(task) = term.take() {
                        task.abort();
                    }
                    shared.timers.clear();
                }
                _ => {}
            }
            if metrics.changed().await.is_err() {
                break; // Raft stopped.
            }
        }
        if let Some(task) = term {
            task.abort();
        }
        shared.timers.clear();
    })
}

/// The leader's duties for one term; aborted when leadership is lost.
async fn lead(shared: Arc<Shared>) {
    tracing::info!(node = %shared.config.node_name, "gained leadership");
    // Barrier: apply everything earlier leaders committed before acting on the state, so no
    // session created under the previous leader is missed below.
    while let Err(e) = shared.raft.ensure_linearizable().await {
        tracing::debug!(error = %e, "leadership barrier failed; retrying");
        tokio::time::sleep(BARRIER_RETRY).await;
    }
    arm_session_timers(&shared);
    init_ca(&shared).await;
    loop {
        let next = match reconcile::reconcile_self(&shared).await {
            Ok(()) => RECONCILE_INTERVAL,
            Err(e) => {
                tracing::warn!(error = %e, "could not register this server in the catalog");
                RECONCILE_RETRY
            }
        };
        tokio::time::sleep(next).await;
    }
}

/// Makes the cluster's CA (a cluster ID and a root) if the state has none, retrying until a
/// proposal applies. After the barrier the state is current, so an existing CA is seen and
/// kept; and `CaInit` applies only to a store without a CA, so a repeat changes nothing.
async fn init_ca(shared: &Shared) {
    loop {
        let outcome = match crate::connect::init_command(shared) {
            Ok(None) => return,
            Ok(Some(cmd)) => shared.propose(cmd).await.map(|_| ()),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {
                tracing::info!("initialized the Connect CA");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not initialize the Connect CA; retrying");
                tokio::time::sleep(RECONCILE_RETRY).await;
            }
        }
    }
}

/// Starts a full TTL for every session that has one (a new leader does not know when they
/// were last renewed, so it gives them the benefit of the doubt, as Consul does).
fn arm_session_timers(shared: &Shared) {
    let sessions = shared.store.current().sessions();
    let mut armed = 0;
    for session in sessions {
        if let Ok(Some(ttl)) = parse_session_ttl(&session.ttl) {
            shared.timers.reset(session.id.as_str(), ttl);
            armed += 1;
        }
    }
    tracing::debug!(armed, "armed session TTL timers");
}

/// What a session timer does on expiry: propose destroying the session (unless a check or
/// node invalidation already removed it).
pub(crate) fn expire_session(
    raft: Raft,
    store: StoreHandle,
) -> impl Fn(String) + Send + Sync + 'static {
    move |id: String| {
        if store.current().session(&id).is_none() {
            return;
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            tracing::info!(session = %id, "session TTL expired; invalidating");
            let cmd = Command::SessionDestroy {
                id: id.clone().into(),
                now_ms: now_ms(),
            };
            if let Err(e) = raft.client_write(cmd).await {
                tracing::warn!(session = %id, error = %e, "could not invalidate expired session");
            }
        });
    }
}
