//! KV tombstone GC (Consul's `TombstoneGC`): deletes leave tombstones so prefix indexes move
//! forward; once a tombstone is older than [`TOMBSTONE_TTL`] the leader reaps it through Raft
//! ([`Command::KvReapTombstones`]), so every server drops the same ones.
//!
//! The leader does not see applies as they happen, so instead of Consul's per-apply hints it
//! samples the tombstone table's index every [`TOMBSTONE_GRANULARITY`]: every tombstone at or
//! below an index sampled at `t` existed at `t`, so it is at least `TTL` old at `t + TTL`.
//! A new leader's first sample covers the tombstones of earlier terms, whose age it cannot
//! know: they get a full TTL from then, as in Consul (`Hint(lastIndex)` on leadership).

use std::collections::VecDeque;
use std::time::Duration;

use concord_api::rpc::RpcError;
use tokio::time::Instant;

use crate::command::Command;
use crate::node::Shared;
use crate::state::schema::TOMBSTONES;

/// How long a tombstone outlives its delete (Consul's `TombstoneTTL`): long enough for a
/// blocking query on the prefix to see the delete.
pub(crate) const TOMBSTONE_TTL: Duration = Duration::from_secs(15 * 60);
/// How often the leader samples and reaps (Consul's `TombstoneTTLGranularity`): tombstones
/// are reaped in batches, at most this much after their TTL.
pub(crate) const TOMBSTONE_GRANULARITY: Duration = Duration::from_secs(30);

/// Samples of the tombstone table index, oldest first, each waiting for its TTL.
#[derive(Debug)]
pub(crate) struct TombstoneGc {
    ttl: Duration,
    pending: VecDeque<(Instant, u64)>,
    /// Highest index sampled so far (a sample that did not move is not kept twice).
    sampled: u64,
}

impl TombstoneGc {
    pub(crate) fn new(ttl: Duration) -> Self {
        TombstoneGc {
            ttl,
            pending: VecDeque::new(),
            sampled: 0,
        }
    }

    /// Records that every tombstone at or below `index` exists at `now`.
    pub(crate) fn hint(&mut self, now: Instant, index: u64) {
        if index > self.sampled {
            self.sampled = index;
            self.pending.push_back((now, index));
        }
    }

    /// The highest sampled index whose tombstones are all at least the TTL old at `now`,
    /// taking it (and every older sample) out of the queue.
    pub(crate) fn expired(&mut self, now: Instant) -> Option<u64> {
        let mut up_to = None;
        while let Some(&(at, index)) = self.pending.front() {
            if now.saturating_duration_since(at) < self.ttl {
                break;
            }
            up_to = Some(index);
            self.pending.pop_front();
        }
        up_to
    }

    /// Puts back a reap that did not commit, to be retried on the next round.
    pub(crate) fn retry(&mut self, at: Instant, index: u64) {
        self.pending.push_front((at, index));
    }
}

/// Samples and reaps every [`TOMBSTONE_GRANULARITY`] for as long as this server leads.
pub(crate) async fn gc_forever(shared: &Shared) {
    let mut gc = TombstoneGc::new(TOMBSTONE_TTL);
    let mut tick = tokio::time::interval(TOMBSTONE_GRANULARITY);
    loop {
        tick.tick().await;
        let now = Instant::now();
        gc.hint(
            now,
            shared.store.current().view(|t| t.table_index(TOMBSTONES)),
        );
        let Some(up_to) = gc.expired(now) else {
            continue;
        };
        if let Err(e) = reap(shared, up_to).await {
            tracing::warn!(error = %e, up_to, "could not reap KV tombstones; retrying");
            gc.retry(now, up_to);
        }
    }
}

/// Proposes reaping the tombstones at or below `up_to`, unless there are none. Returns
/// whether a reap was proposed.
pub(crate) async fn reap(shared: &Shared, up_to: u64) -> Result<bool, RpcError> {
    let due = shared
        .store
        .current()
        .view(|t| t.kv_tombstones_up_to(up_to));
    if due == 0 {
        return Ok(false);
    }
    tracing::debug!(due, up_to, "reaping KV tombstones");
    shared
        .propose(Command::KvReapTombstones { index: up_to })
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn samples_expire_after_the_ttl_in_order() {
        let ttl = Duration::from_secs(60);
        let mut gc = TombstoneGc::new(ttl);
        let t0 = Instant::now();
        gc.hint(t0, 0);
        assert_eq!(gc.expired(t0 + ttl), None, "index 0: nothing to reap");
        gc.hint(t0, 5);
        gc.hint(t0 + Duration::from_secs(10), 5);
        gc.hint(t0 + Duration::from_secs(30), 9);
        assert_eq!(gc.pending.len(), 2, "an unmoved index is not sampled twice");

        assert_eq!(gc.expired(t0 + ttl - Duration::from_millis(1)), None);
        assert_eq!(gc.expired(t0 + ttl), Some(5));
        assert_eq!(gc.expired(t0 + ttl), None, "taken once");
        assert_eq!(
            gc.expired(t0 + ttl * 3),
            Some(9),
            "late: everything due at once, the highest wins"
        );

        gc.retry(t0, 9);
        assert_eq!(gc.expired(t0 + ttl), Some(9), "a failed reap comes back");
    }
}
