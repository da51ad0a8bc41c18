//! Group commit at the proposal layer: concurrent writes share one Raft entry, so they share
//! the leader's `fdatasync`, the followers' and one replication round trip.
//!
//! openraft 0.9's core takes one client write per entry, and a follower waits for each
//! append's flush before it takes the next (`RaftCore::append_to_log`; the leader no longer
//! does since vendored openraft's patch 1, but it still appends and replicates entry by
//! entry). With one entry per write every write paid a sync of its own on each follower,
//! and its own append-entries round trip, however many were waiting. So the batching
//! happens before Raft: the proposer keeps at most [`MAX_IN_FLIGHT`] proposals in Raft at a
//! time; writes arriving meanwhile queue here, and when a proposal completes, everything
//! queued becomes the next entry, a [`Command::Batch`]. A lone write is proposed as itself,
//! at once: one client pays no latency for this.
//!
//! Every write still gets its answer only once its entry is committed and applied, which
//! (the log's contract) is after the entry was synced on a quorum (the leader's copy counts
//! once it is synced).
//! The writes of a batch share the entry's index, as the operations of a transaction do;
//! the state store applies them atomically for readers (`StateStore::apply_batch`).
//!
//! A [`Command::Restore`] replaces the whole state and is large: it is never batched.

use std::sync::Arc;

use concord_api::rpc::{RpcError, WriteResult};
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::command::Command;
use crate::model::kv::KvOp;
use crate::raft::{NodeId, Raft};

/// Proposals in Raft at once. One keeps batches largest, but leaves the leader idle while
/// the followers sync and answer; two let the next entry be appended and sent while the
/// one before is still being acknowledged.
pub(crate) const MAX_IN_FLIGHT: usize = 2;
/// Most writes in one entry.
pub(crate) const MAX_BATCH: usize = 256;
/// Most KV value bytes in one entry (a batch of large values stays far below the RPC body
/// limit even when openraft sends many entries per append-entries).
pub(crate) const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// What a write gets: the index it applied at, and its result.
pub(crate) type Outcome = Result<(u64, WriteResult), RpcError>;

type Queued = (Command, oneshot::Sender<Outcome>);

/// The write path into Raft. The batching task stops when it is dropped.
pub(crate) struct Proposer {
    raft: Raft,
    /// The batching task's queue, when writes are batched ([`crate::Config::group_commit`]);
    /// without it each write is proposed alone at once.
    queue: Option<mpsc::UnboundedSender<Queued>>,
}

impl std::fmt::Debug for Proposer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proposer").finish_non_exhaustive()
    }
}

impl Proposer {
    /// Starts the batching task if `batch` (call inside the runtime).
    pub(crate) fn start(raft: Raft, batch: bool) -> Self {
        let queue = batch.then(|| {
            let (queue, rx) = mpsc::unbounded_channel();
            tokio::spawn(run(raft.clone(), rx));
            queue
        });
        Proposer { raft, queue }
    }

    /// Proposes `cmd` (alone or in a batch) and waits until it applied.
    pub(crate) async fn propose(&self, cmd: Command) -> Outcome {
        let queue = match &self.queue {
            Some(queue) if !matches!(cmd, Command::Restore { .. } | Command::Batch { .. }) => queue,
            _ => {
                return commit(&self.raft, vec![cmd])
                    .await
                    .into_iter()
                    .next()
                    .unwrap_or_else(missing_result)
            }
        };
        let (tx, rx) = oneshot::channel();
        queue
            .send((cmd, tx))
            .map_err(|_| RpcError::Internal("raft: the proposer has stopped".to_string()))?;
        rx.await
            .map_err(|_| RpcError::Internal("raft: the proposer has stopped".to_string()))?
    }
}

/// The batching loop: waits for a free slot, then takes the first queued write and every
/// write queued behind it (up to the limits) as one proposal.
async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<Queued>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut carried: Option<Queued> = None;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(queued) => queued,
            None => match rx.recv().await {
                Some(queued) => queued,
                None => return,
            },
        };
        let mut bytes = value_bytes(&first.0);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let Ok(next) = rx.try_recv() else { break };
            let more = value_bytes(&next.0);
            if bytes + more > MAX_BATCH_BYTES {
                carried = Some(next);
                break;
            }
            bytes += more;
            batch.push(next);
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let (commands, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let outcomes = commit(&raft, commands).await;
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                // The caller may have given up waiting (its request was dropped).
                let _ = reply.send(outcome);
            }
            drop(slot);
        });
    }
}

/// Proposes `commands` as one entry (a batch if more than one) and returns one outcome per
/// command, in order.
async fn commit(raft: &Raft, mut commands: Vec<Command>) -> Vec<Outcome> {
    let count = commands.len();
    let entry = match commands.len() {
        1 => commands.remove(0),
        _ => Command::Batch { commands },
    };
    match raft.client_write(entry).await {
        Ok(resp) => {
            let index = resp.log_id.index;
            let mut outcomes: Vec<Outcome> = resp
                .data
                .into_iter()
                .map(|result| result.map(|r| (index, r)))
                .collect();
            // One result per command is the state machine's contract; never leave a
            // caller without an answer if that were broken.
            outcomes.resize_with(count, missing_result);
            outcomes
        }
        Err(e) => {
            let e = write_error(e);
            (0..count).map(|_| Err(e.clone())).collect()
        }
    }
}

fn missing_result() -> Outcome {
    Err(RpcError::Internal(
        "invariant: the state machine returned no result for a write".to_string(),
    ))
}

/// A failed proposal as the caller sees it. Losing leadership meanwhile is Consul's
/// `leadership lost while committing log`, deliberately not `NotLeader`: the entry may
/// already be in the log and commit under the next leader, so nobody may retry it as if it
/// had never been sent (a forwarding server retries `NotLeader`, see
/// `rpc::forward::to_leader`).
fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, crate::raft::Node>>) -> RpcError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            tracing::debug!(leader = ?f.leader_id, "leadership lost while committing a write");
            RpcError::Internal("leadership lost while committing log".to_string())
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            RpcError::Internal(e.to_string())
        }
        RaftError::Fatal(e) => RpcError::Internal(format!("raft: {e}")),
    }
}

/// The KV value bytes a command carries (what makes an entry large).
fn value_bytes(cmd: &Command) -> usize {
    let op_bytes = |op: &KvOp| match op {
        KvOp::Set { value, .. }
        | KvOp::Cas { value, .. }
        | KvOp::Lock { value, .. }
        | KvOp::Unlock { value, .. } => value.len(),
        _ => 0,
    };
    match cmd {
        Command::Kv { op, .. } => op_bytes(op),
        Command::Txn { ops, .. } => ops.iter().map(op_bytes).sum(),
        _ => 0,
    }
}
