//! The agent's own log lines, fanned out to `/v1/agent/monitor` readers.
//!
//! The process that installs the tracing subscriber (the CLI) publishes every formatted line
//! into a [`LogFeed`]; each monitor request subscribes and keeps the lines at or above its
//! level. Lines are formatted only while someone watches ([`LogFeed::is_watched`]): the
//! subscriber's monitor filter turns its callsites off while nobody does, and the feed has
//! tracing re-ask it when the first reader comes and the last goes. A reader too slow to keep up loses
//! the oldest lines (the broadcast channel's lag), never blocks the agent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;

/// Lines buffered per reader before a slow reader starts losing the oldest.
const BUFFER: usize = 512;

/// One formatted log line (with its newline) and its level.
#[derive(Clone, Debug)]
pub struct LogLine {
    /// The event's level.
    pub level: tracing::Level,
    /// The line as the log shows it, text or one JSON object.
    pub line: Arc<str>,
}

/// Where the process's log lines go for monitor readers: one channel of text lines and one
/// of JSON lines (`?logjson`).
#[derive(Clone, Debug)]
pub struct LogFeed {
    text: broadcast::Sender<LogLine>,
    json: broadcast::Sender<LogLine>,
    watchers: Arc<Watchers>,
}

/// How many readers there are. The count changes under a lock so that tracing's interest
/// cache, rebuilt when it goes from or to 0, always ends up built from the latest count.
#[derive(Debug, Default)]
struct Watchers {
    count: AtomicUsize,
    change: Mutex<()>,
}

impl Watchers {
    /// Counts a reader in (`join`) or out and, when the feed went from or to unwatched,
    /// makes tracing ask the layers again which callsites they want (the monitor's filter
    /// answers by whether anyone watches).
    fn change(&self, join: bool) {
        let _change = self.change.lock().unwrap_or_else(PoisonError::into_inner);
        let before = if join {
            self.count.fetch_add(1, Ordering::Relaxed)
        } else {
            self.count.fetch_sub(1, Ordering::Relaxed)
        };
        if before == 0 || (before == 1 && !join) {
            tracing::callsite::rebuild_interest_cache();
        }
    }
}

impl Default for LogFeed {
    fn default() -> Self {
        LogFeed {
            text: broadcast::channel(BUFFER).0,
            json: broadcast::channel(BUFFER).0,
            watchers: Arc::default(),
        }
    }
}

/// A monitor reader's subscription; the feed stops formatting lines once the last is dropped.
#[derive(Debug)]
pub struct Subscription {
    /// The lines, in order.
    pub lines: broadcast::Receiver<LogLine>,
    watchers: Arc<Watchers>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.watchers.change(false);
    }
}

impl LogFeed {
    /// Whether any monitor reader is subscribed.
    pub fn is_watched(&self) -> bool {
        self.watchers.count.load(Ordering::Relaxed) > 0
    }

    /// Publishes a formatted line; `json` says which channel it belongs to.
    pub fn publish(&self, json: bool, level: tracing::Level, line: &str) {
        let tx = if json { &self.json } else { &self.text };
        // No receiver is not an error: the reader left between the check and the send.
        let _ = tx.send(LogLine {
            level,
            line: Arc::from(line),
        });
    }

    /// Subscribes to text lines, or JSON lines with `json`.
    pub fn subscribe(&self, json: bool) -> Subscription {
        let tx = if json { &self.json } else { &self.text };
        let lines = tx.subscribe();
        self.watchers.change(true);
        Subscription {
            lines,
            watchers: self.watchers.clone(),
        }
    }
}
