//! `POST api::rpc::READ_PATH`: consistency modes, forwarding, blocking queries.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use concord_api::rpc::{
    Consistency, Query, QueryOptions, QueryResult, ReadRequest, ReadResponse, RpcError,
    MAX_JITTER_FRACTION, READ_PATH,
};
use openraft::error::{CheckIsLeaderError, RaftError};
use rand::Rng;
use tokio::time::Instant;

use super::error::{decode, RpcFailure};
use super::forward::{is_forwarded, to_leader, FORWARD_TIMEOUT};
use crate::node::Shared;
use crate::state::StoreHandle;

pub(super) async fn handle(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ReadResponse>, RpcFailure> {
    let req: ReadRequest = decode(&body)?;
    Ok(Json(read(&shared, req, is_forwarded(&headers)).await?))
}

/// Answers a read here or on the leader, per its consistency mode:
/// - `Stale`: from local state, whoever leads (or nobody).
/// - `Default`: the leader answers from its state; followers forward.
/// - `Consistent`: the leader first confirms with a quorum that it still leads.
pub(crate) async fn read(
    shared: &Shared,
    req: ReadRequest,
    forwarded: bool,
) -> Result<ReadResponse, RpcError> {
    let (token, query) = req.query.parts();
    if *query == Query::RaftStatus {
        let (leader, peers, applied) = shared.raft_peers();
        return Ok(ReadResponse {
            meta: shared.query_meta(applied),
            result: QueryResult::RaftStatus { leader, peers },
        });
    }
    if req.options.consistency != Consistency::Stale {
        let timeout = FORWARD_TIMEOUT + req.options.max_blocking();
        // Boxed, as the other rare branches below: a future is as large as its largest
        // branch, and every parked blocking query holds this one for its whole wait.
        if let Some(resp) = Box::pin(to_leader(shared, forwarded, READ_PATH, &req, timeout)).await?
        {
            return Ok(resp);
        }
        if req.options.consistency == Consistency::Consistent {
            Box::pin(ensure_leader(shared)).await?;
        }
    }
    // Judged where it runs, against the state it runs on: refused here, or cut down below.
    let authz = crate::acl::enforce::vet_read(
        &shared.store.current(),
        &crate::acl::enforce::AclSettings::of(&shared.config),
        token,
        query,
    )?;
    if *query == Query::Snapshot {
        return Box::pin(crate::archive::save(shared)).await;
    }
    if let Query::Operator(q) = query {
        let result = crate::autopilot::read(shared, q)?;
        let applied = shared
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index);
        return Ok(ReadResponse {
            meta: shared.query_meta(applied),
            result: QueryResult::Operator(result),
        });
    }
    let (index, mut result) =
        blocking_query(&shared.store, query, &req.options, shared.stopping()).await?;
    let mut meta = shared.query_meta(index);
    meta.results_filtered_by_acls = crate::acl::enforce::filter(authz.as_deref(), &mut result);
    Ok(ReadResponse { meta, result })
}

/// Confirms leadership with a quorum and waits until everything committed is applied.
async fn ensure_leader(shared: &Shared) -> Result<(), RpcError> {
    match shared.raft.ensure_linearizable().await {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
            Err(RpcError::NotLeader {
                leader_addr: f.leader_node.map(|n| n.addr),
            })
        }
        Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => Err(RpcError::NoLeader),
        Err(RaftError::Fatal(e)) => Err(RpcError::Internal(format!("raft: {e}"))),
    }
}

/// A blocking wait plus up to 1/[`MAX_JITTER_FRACTION`] random jitter, so watchers woken
/// together do not return together. The bound is [`QueryOptions::max_blocking`].
fn with_jitter(wait: Duration) -> Duration {
    let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    let jitter = rand::thread_rng().gen_range(0..=wait_ms / u64::from(MAX_JITTER_FRACTION));
    wait + Duration::from_millis(jitter)
}

/// Runs a query, blocking while its index is not above `options.min_index` (if non-zero):
/// re-runs it on every state change until the index moves, the wait elapses or `stop`
/// resolves, then returns the current result (Consul's `blockingQuery`).
pub(crate) async fn blocking_query(
    store: &StoreHandle,
    query: &Query,
    options: &QueryOptions,
    stop: impl Future<Output = ()>,
) -> Result<(u64, QueryResult), RpcError> {
    let Some(wait) = options.blocking_wait() else {
        return Ok(store.current().query(query)?);
    };
    let deadline = Instant::now() + with_jitter(wait);
    tokio::pin!(stop);
    loop {
        // Subscribe before querying so a change between the two is not missed. A restore
        // abandons the store (waking us), and the next round runs on the new one.
        let current = store.current();
        let mut changes = current.subscribe();
        let (index, result) = current.query(query)?;
        if index > options.min_index {
            return Ok((index, result));
        }
        tokio::select! {
            // `Err` means the store was dropped: also a reason to look again.
            _ = changes.changed() => continue,
            () = tokio::time::sleep_until(deadline) => {}
            () = &mut stop => {}
        }
        return Ok(store.current().query(query)?);
    }
}
