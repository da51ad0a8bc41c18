//! Work only the leader does, started when this server gains leadership and stopped when it
//! loses it (Consul's `establishLeadership` / `revokeLeadership`):
//! - session TTL timers ([`SessionTimers`](crate::timers::SessionTimers)): a session expires `TTL × 2` after its last
//!   renewal unless renewed; expiry proposes a destroy.
//! - reconciling this server into the catalog ([`reconcile`]), and the LAN gossip pool's
//!   members with their `serfHealth` checks ([`members`]): on gaining leadership, on every
//!   pool change, and every [`RECONCILE_INTERVAL`] in case a change was missed.
//! - bootstrapping the Connect CA on first leadership ([`init_ca`]), and pruning roots rotated
//!   out once their leaves have expired, on gaining leadership and every
//!   [`CA_ROOT_PRUNE_INTERVAL`] ([`prune_ca_roots`]).
//! - reaping KV tombstones older than the tombstone TTL ([`tombstones`]).

mod members;
mod reconcile;
pub(crate) mod tombstones;

use std::sync::Arc;
use std::time::Duration;

use concord_api::rpc::RpcError;
use concord_net::gossip::MemberEvent;
use openraft::ServerState;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::task::JoinHandle;

use crate::command::{now_ms, Command, UnixMillis};
use crate::node::Shared;
use crate::raft::Raft;
use crate::state::{parse_session_ttl, StoreHandle};

/// Retry period of the leadership barrier while it fails (e.g. a quorum is not reachable yet).
const BARRIER_RETRY: Duration = Duration::from_millis(200);
/// How often the leader re-checks its own and the pool's catalog registrations even
/// without a pool change (Consul's `ReconcileInterval`).
const RECONCILE_INTERVAL: Duration = Duration::from_secs(60);
/// Retry period of a failed reconcile.
const RECONCILE_RETRY: Duration = Duration::from_secs(1);
/// How often the leader looks for CA roots to prune (Consul's `caRootPruneInterval`). Roots
/// are kept for twice the leaf TTL (days by default), so an hour late costs nothing.
const CA_ROOT_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

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
    let _autopilot = AbortOnDrop(tokio::spawn(crate::autopilot::run(shared.clone())));
    // Subscribed before the barrier, so no pool change from here on is missed.
    let pool_events = shared.gossip.as_ref().map(|g| g.subscribe());
    // Barrier: apply everything earlier leaders committed before acting on the state, so no
    // session created under the previous leader is missed below.
    while let Err(e) = shared.raft.ensure_linearizable().await {
        tracing::debug!(error = %e, "leadership barrier failed; retrying");
        tokio::time::sleep(BARRIER_RETRY).await;
    }
    arm_session_timers(&shared);
    init_ca(&shared).await;
    // The loops run forever and end together when the term's task is aborted.
    tokio::join!(
        reconcile_forever(&shared, pool_events),
        prune_ca_roots_forever(&shared),
        tombstones::gc_forever(&shared)
    );
}

/// Reconciles the catalog on every pool change, and every [`RECONCILE_INTERVAL`] anyway.
async fn reconcile_forever(
    shared: &Shared,
    mut pool_events: Option<broadcast::Receiver<MemberEvent>>,
) {
    loop {
        let next = match reconcile_catalog(shared).await {
            Ok(()) => RECONCILE_INTERVAL,
            Err(e) => {
                tracing::warn!(error = %e, "could not reconcile the catalog");
                RECONCILE_RETRY
            }
        };
        tokio::select! {
            () = tokio::time::sleep(next) => {}
            () = pool_changed(&mut pool_events) => {}
        }
    }
}

/// Aborts the task when the leader's term ends (`lead` is aborted, dropping it).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Registers this server, then brings the pool's members in line.
async fn reconcile_catalog(shared: &Shared) -> Result<(), RpcError> {
    reconcile::reconcile_self(shared).await?;
    members::reconcile_pool(shared).await?;
    Ok(())
}

/// Resolves on the next membership change (or a missed one: the receiver lagged), after
/// taking every change already queued, so a burst (many joins at once) costs one pass.
/// Never resolves without a pool, or once the pool has shut down.
async fn pool_changed(events: &mut Option<broadcast::Receiver<MemberEvent>>) {
    let Some(rx) = events else {
        return std::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(MemberEvent::User(_)) => continue,
            Ok(_) | Err(RecvError::Lagged(_)) => break,
            Err(RecvError::Closed) => {
                *events = None;
                return std::future::pending().await;
            }
        }
    }
    while !matches!(
        rx.try_recv(),
        Err(TryRecvError::Empty | TryRecvError::Closed)
    ) {}
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

/// Prunes CA roots now and every [`CA_ROOT_PRUNE_INTERVAL`]; a failure waits for the next
/// round (nothing depends on a root being gone on time).
async fn prune_ca_roots_forever(shared: &Shared) {
    loop {
        if let Err(e) = prune_ca_roots(shared, now_ms()).await {
            tracing::warn!(error = %e, "could not prune CA roots");
        }
        tokio::time::sleep(CA_ROOT_PRUNE_INTERVAL).await;
    }
}

/// Proposes removing the roots rotated out long enough ago, as of `now_ms` (the leader's
/// clock, injected for tests). Returns whether a removal was proposed.
pub(crate) async fn prune_ca_roots(shared: &Shared, now_ms: UnixMillis) -> Result<bool, RpcError> {
    let Some(cmd) = crate::connect::prune_command(shared, now_ms) else {
        return Ok(false);
    };
    if let Command::CaPruneRoots { ids } = &cmd {
        tracing::info!(?ids, "pruning CA roots whose leaves have all expired");
    }
    shared.propose(cmd).await?;
    Ok(true)
}

/// Starts a full TTL for every session that has one (a new leader does not know when they
/// were last renewed, so it gives them the benefit of the doubt, as Consul does).
pub(crate) fn arm_session_timers(shared: &Shared) {
    let sessions = shared.store.current().sessions();
    let mut armed = 0;
    for session in sessions {
        if let Ok(Some(ttl)) = parse_session_ttl(&session.ttl, Duration::ZERO) {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use concord_net::gossip::{EventFilters, Member, MemberStatus, UserEvent};

    use super::*;

    fn member() -> Member {
        Member {
            name: "n".to_string(),
            addr: "127.0.0.1:8301".parse().unwrap(),
            tags: BTreeMap::new(),
            status: MemberStatus::Alive,
        }
    }

    fn user_event() -> MemberEvent {
        MemberEvent::User(UserEvent {
            id: 1,
            name: "deploy".to_string(),
            payload: Vec::new(),
            filters: EventFilters::default(),
            ltime: 1,
            origin: "n".to_string(),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn pool_changes_wake_the_reconcile_and_bursts_coalesce() {
        let (tx, rx) = broadcast::channel(16);
        let mut events = Some(rx);
        let wait = Duration::from_secs(3600);

        tx.send(user_event()).unwrap();
        let woke = tokio::time::timeout(wait, pool_changed(&mut events)).await;
        assert!(woke.is_err(), "user events are not membership changes");

        for _ in 0..3 {
            tx.send(MemberEvent::Join(member())).unwrap();
        }
        tokio::time::timeout(wait, pool_changed(&mut events))
            .await
            .unwrap();
        let again = tokio::time::timeout(wait, pool_changed(&mut events)).await;
        assert!(again.is_err(), "a burst costs one pass");

        drop(tx);
        let closed = tokio::time::timeout(wait, pool_changed(&mut events)).await;
        assert!(closed.is_err(), "a stopped pool never wakes it");
        assert!(events.is_none());
        let without = tokio::time::timeout(wait, pool_changed(&mut None)).await;
        assert!(without.is_err(), "no pool, no wake-ups");
    }
}
