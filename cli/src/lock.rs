//! `concord lock [options] PREFIX CHILD...`: runs CHILD while holding a lock (or, with
//! `-n` above 1, one of N semaphore slots) under PREFIX, as Consul's `lock` does: a session
//! with a TTL (renewed while held), `PREFIX/.lock` acquired with it; when the lock is lost
//! (the session destroyed or expired, the key taken) the child gets SIGTERM, then SIGKILL
//! after a grace period; when the child exits the lock is released and the session
//! destroyed.
//!
//! Semaphore mode follows Consul's `api.Semaphore` layout, so Consul's and Concord's
//! contenders agree: each contender holds `PREFIX/<session>` with its session, and
//! `PREFIX/.lock` holds `{"Limit": N, "Holders": {"<session>": true}}`, changed only by CAS.

use std::collections::BTreeMap;
use std::time::Duration;

use concord_api::kv::KvEntry;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::flags::{flag, parse_or_usage, Flag, Kind};
use crate::http::{escape_path, parse_bool_body, HttpClient};
use crate::output::fail;

const USAGE: &str = "Usage: concord lock [options] PREFIX CHILD...

  Acquires a lock (or semaphore slot) under PREFIX, runs CHILD while holding it, and
  releases it when CHILD exits. If the lock is lost, CHILD is sent SIGTERM (and SIGKILL
  five seconds later).

  -n=<int>             Slots of the semaphore (default 1: a lock).
  -name=<name>         Session name (default \"Consul lock\").
  -timeout=<duration>  Give up acquiring after this long (default 0: wait forever).
  -child-exit-code     Exit 2 if CHILD exits with an error.
  -shell               Run CHILD through sh -c (default true).
  -verbose             Say what happens.";

const FLAGS: &[Flag] = &[
    flag("n", Kind::Uint),
    flag("name", Kind::Str),
    flag("timeout", Kind::Str),
    flag("try", Kind::Str),
    flag("child-exit-code", Kind::Bool),
    flag("shell", Kind::Bool),
    flag("verbose", Kind::Bool),
    flag("pass-stdin", Kind::Bool),
    flag("monitor-retry", Kind::Uint),
];

/// The session's TTL, renewed at half of it (Consul's `DefaultLockSessionTTL`).
const SESSION_TTL: &str = "15s";
const RENEW_EVERY: Duration = Duration::from_millis(7_500);
/// How long a child has between SIGTERM and SIGKILL (Consul's `lockKillGracePeriod`).
const KILL_GRACE: Duration = Duration::from_secs(5);
/// Longest single blocking wait while acquiring or monitoring.
const BLOCK: &str = "15s";

/// The semaphore's `.lock` record (Consul's `semaphoreLock`).
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct SemaphoreRecord {
    #[serde(rename = "Limit")]
    pub(crate) limit: u64,
    #[serde(rename = "Holders")]
    pub(crate) holders: BTreeMap<String, bool>,
}

/// One contender, lock or semaphore.
struct Lock {
    client: HttpClient,
    prefix: String,
    session: String,
    limit: u64,
    verbose: bool,
}

impl Lock {
    fn lock_key(&self) -> String {
        format!("{}/.lock", self.prefix)
    }

    fn path(key: &str) -> String {
        format!("/v1/kv/{}", escape_path(key))
    }

    fn say(&self, text: &str) {
        if self.verbose {
            eprintln!("{text}");
        }
    }

    /// One entry (`None` when absent) and the index to block on.
    async fn entry(&self, key: &str, index: u64) -> anyhow::Result<(Option<KvEntry>, u64)> {
        let mut query = vec![("wait", BLOCK.to_string())];
        if index > 0 {
            query.push(("index", index.to_string()));
        }
        let (body, index) = self.client.get_indexed(&Self::path(key), &query).await?;
        let entry = match body {
            Some(b) => serde_json::from_slice::<Vec<KvEntry>>(&b)?
                .into_iter()
                .next(),
            None => None,
        };
        Ok((entry, index))
    }

    async fn acquire_key(&self, key: &str) -> anyhow::Result<bool> {
        let body = self
            .client
            .put(
                &Self::path(key),
                &[("acquire", self.session.clone())],
                Vec::new(),
            )
            .await?;
        Ok(parse_bool_body(&body)?)
    }

    /// Tries once; `Ok(index)` to block on when the lock is held by others.
    async fn try_acquire(&self) -> anyhow::Result<Result<(), u64>> {
        if self.limit <= 1 {
            if self.acquire_key(&self.lock_key()).await? {
                return Ok(Ok(()));
            }
            let (_, index) = self.entry(&self.lock_key(), 0).await?;
            return Ok(Err(index));
        }
        let (entry, _) = self.entry(&self.lock_key(), 0).await?;
        let mut record: SemaphoreRecord = match &entry {
            Some(e) => {
                serde_json::from_slice(e.value.as_deref().unwrap_or(b"{}")).unwrap_or_default()
            }
            None => SemaphoreRecord::default(),
        };
        if record.limit != 0 && record.limit != self.limit {
            anyhow::bail!(
                "semaphore limit conflict (lock: {}, local: {})",
                record.limit,
                self.limit
            );
        }
        record.limit = self.limit;
        // Holders whose contender key no longer carries their session have gone.
        let (live, prefix_index) = self.live_contenders().await?;
        record.holders.retain(|s, _| live.contains(s));
        if record.holders.contains_key(&self.session) {
            return Ok(Ok(()));
        }
        if record.holders.len() as u64 >= self.limit {
            return Ok(Err(prefix_index));
        }
        record.holders.insert(self.session.clone(), true);
        let cas = entry.as_ref().map_or(0, |e| e.modify_index);
        let body = self
            .client
            .put(
                &Self::path(&self.lock_key()),
                &[("cas", cas.to_string())],
                serde_json::to_vec(&record)?,
            )
            .await?;
        if parse_bool_body(&body)? {
            Ok(Ok(()))
        } else {
            // Someone else changed the record first: look again at once.
            Ok(Err(0))
        }
    }

    /// Every entry under the prefix (the record and the contender keys) and the index to
    /// block on: a semaphore waits on the whole prefix, since a holder going away deletes
    /// its contender key without touching the record.
    async fn prefix_entries(&self, index: u64) -> anyhow::Result<(Vec<KvEntry>, u64)> {
        let path = Self::path(&format!("{}/", self.prefix));
        let mut query = vec![("recurse", String::new()), ("wait", BLOCK.to_string())];
        if index > 0 {
            query.push(("index", index.to_string()));
        }
        let (body, index) = self.client.get_indexed(&path, &query).await?;
        let entries = match body {
            Some(b) => serde_json::from_slice(&b)?,
            None => Vec::new(),
        };
        Ok((entries, index))
    }

    /// Sessions holding their contender key under the prefix, and the prefix's index.
    async fn live_contenders(&self) -> anyhow::Result<(Vec<String>, u64)> {
        let (entries, index) = self.prefix_entries(0).await?;
        let live = entries
            .into_iter()
            .filter(|e| e.key != self.lock_key())
            .filter_map(|e| e.session)
            .collect();
        Ok((live, index))
    }

    /// Blocks until the lock is acquired, or `deadline` passes (`Ok(false)`).
    async fn acquire(&self, deadline: Option<Instant>) -> anyhow::Result<bool> {
        if self.limit > 1 {
            let contender = format!("{}/{}", self.prefix, self.session);
            if !self.acquire_key(&contender).await? {
                anyhow::bail!("failed to make contender entry {contender}");
            }
        }
        loop {
            let index = match self.try_acquire().await? {
                Ok(()) => return Ok(true),
                Err(index) => index,
            };
            self.say("Lock held by another; waiting");
            let wait = async {
                if self.limit > 1 {
                    self.prefix_entries(index).await.map(drop)
                } else {
                    self.entry(&self.lock_key(), index).await.map(drop)
                }
            };
            match deadline {
                Some(d) => match tokio::time::timeout_at(d, wait).await {
                    Ok(r) => r?,
                    Err(_) => return Ok(false),
                },
                None => wait.await?,
            }
        }
    }

    /// Returns once the lock is no longer ours: the key lost our session (lock), or our
    /// contender key or our place in the record is gone (semaphore).
    async fn lost(&self) {
        let mut index = 0;
        loop {
            let answer = if self.limit <= 1 {
                self.entry(&self.lock_key(), index)
                    .await
                    .map(|(e, i)| (e.into_iter().collect::<Vec<_>>(), i))
            } else {
                self.prefix_entries(index).await
            };
            let (entries, next) = match answer {
                Ok(a) => a,
                // The agent may be restarting: look again shortly rather than declare loss.
                Err(_) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if !self.holds(&entries) {
                return;
            }
            index = next;
        }
    }

    /// Whether these entries (the lock key, or the whole prefix) show the lock as ours.
    fn holds(&self, entries: &[KvEntry]) -> bool {
        let ours = |e: &KvEntry| e.session.as_deref() == Some(self.session.as_str());
        let lock_key = self.lock_key();
        if self.limit <= 1 {
            return entries.iter().any(|e| e.key == lock_key && ours(e));
        }
        let contender = format!("{}/{}", self.prefix, self.session);
        let in_record = entries.iter().any(|e| {
            e.key == lock_key
                && serde_json::from_slice::<SemaphoreRecord>(e.value.as_deref().unwrap_or(b"{}"))
                    .is_ok_and(|r| r.holders.contains_key(&self.session))
        });
        in_record && entries.iter().any(|e| e.key == contender && ours(e))
    }

    /// Renews the session every [`RENEW_EVERY`]; returns when the session is gone.
    async fn renew(&self) {
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            let path = format!("/v1/session/renew/{}", self.session);
            let renewed = self.client.put(&path, &[], Vec::new()).await;
            if let Err(crate::http::ClientError::Status { code: 404, .. }) = renewed {
                return;
            }
        }
    }

    /// Gives the lock back: the holder entry (semaphore) or the key, then the session.
    async fn release(&self) {
        if self.limit > 1 {
            for _ in 0..5 {
                let Ok((Some(entry), _)) = self.entry(&self.lock_key(), 0).await else {
                    break;
                };
                let mut record: SemaphoreRecord =
                    serde_json::from_slice(entry.value.as_deref().unwrap_or(b"{}"))
                        .unwrap_or_default();
                if record.holders.remove(&self.session).is_none() {
                    break;
                }
                let Ok(body) = serde_json::to_vec(&record) else {
                    break;
                };
                let put = self
                    .client
                    .put(
                        &Self::path(&self.lock_key()),
                        &[("cas", entry.modify_index.to_string())],
                        body,
                    )
                    .await;
                if put.is_ok_and(|b| parse_bool_body(&b).unwrap_or(false)) {
                    break;
                }
            }
            let contender = format!("{}/{}", self.prefix, self.session);
            let _ = self.client.delete(&Self::path(&contender), &[]).await;
        } else {
            let _ = self
                .client
                .put(
                    &Self::path(&self.lock_key()),
                    &[("release", self.session.clone())],
                    Vec::new(),
                )
                .await;
        }
        let path = format!("/v1/session/destroy/{}", self.session);
        let _ = self.client.put(&path, &[], Vec::new()).await;
    }
}

/// Runs `concord lock ARGS`.
pub(crate) async fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let p = match parse_or_usage(&args, FLAGS, USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let [prefix, child @ ..] = p.args.as_slice() else {
        return fail("Key prefix and child command must be specified");
    };
    if child.is_empty() {
        return fail("Key prefix and child command must be specified");
    }
    let limit = if p.value("n").is_some() {
        p.uint("n")
    } else {
        1
    };
    if limit == 0 {
        return fail("Command limit must be positive");
    }
    let timeout = match p.value("timeout").or(p.value("try")) {
        None | Some("") => None,
        Some(t) => match concord_api::duration::parse_duration(t) {
            Ok(d) if d.is_zero() => None,
            Ok(d) => Some(d),
            Err(e) => return fail(format!("Invalid timeout {t:?}: {e}")),
        },
    };
    let client = match HttpClient::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error connecting to agent: {e}")),
    };
    let name = p.value_or("name", "Consul lock");
    let behavior = if limit > 1 { "delete" } else { "release" };
    let created = client
        .put(
            "/v1/session/create",
            &[],
            serde_json::to_vec(&serde_json::json!({
                "Name": name, "TTL": SESSION_TTL, "Behavior": behavior,
            }))?,
        )
        .await;
    let session = match created.map(|b| serde_json::from_slice::<serde_json::Value>(&b)) {
        Ok(Ok(v)) => v["ID"].as_str().unwrap_or_default().to_string(),
        Ok(Err(e)) => return fail(format!("Error creating session: {e}")),
        Err(e) => return fail(format!("Error creating session: {e}")),
    };
    let lock = Lock {
        client,
        prefix: prefix.trim_end_matches('/').to_string(),
        session,
        limit,
        verbose: p.bool("verbose"),
    };
    let deadline = timeout.map(|t| Instant::now() + t);
    let acquired = tokio::select! {
        a = lock.acquire(deadline) => a,
        _ = crate::agent::shutdown_signal() => Ok(false),
    };
    match acquired {
        Ok(true) => {}
        Ok(false) => {
            lock.release().await;
            return fail("Shutdown triggered or timeout during lock acquisition");
        }
        Err(e) => {
            lock.release().await;
            return fail(format!("Lock acquisition failed: {e:#}"));
        }
    }
    lock.say("Lock acquisition successful");
    let shell = p.value("shell").is_none_or(|_| p.bool("shell"));
    let mut command = if shell {
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c").arg(child.join(" "));
        c
    } else {
        let mut c = tokio::process::Command::new(&child[0]);
        c.args(&child[1..]);
        c
    };
    if !p.bool("pass-stdin") {
        command.stdin(std::process::Stdio::null());
    }
    let mut process = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            lock.release().await;
            return fail(format!("Error running handler: {e}"));
        }
    };
    let outcome = tokio::select! {
        status = process.wait() => Some(status),
        _ = lock.lost() => None,
        _ = lock.renew() => None,
        // SIGINT or SIGTERM, as Consul's lock: the child stops and the lock is released.
        _ = crate::agent::shutdown_signal() => {
            terminate(&mut process).await;
            lock.release().await;
            return Ok(1);
        }
    };
    let code = match outcome {
        Some(Ok(status)) if !status.success() && p.bool("child-exit-code") => 2,
        Some(Ok(_)) => 0,
        Some(Err(e)) => {
            eprintln!("Error waiting for child: {e}");
            1
        }
        None => {
            eprintln!("Lock lost, killing child");
            terminate(&mut process).await;
            1
        }
    };
    lock.release().await;
    lock.say("Cleanup succeeded");
    Ok(code)
}

/// SIGTERM, then SIGKILL if the child is still running after [`KILL_GRACE`].
async fn terminate(child: &mut tokio::process::Child) {
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(KILL_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semaphore_record_is_consuls() {
        let r = SemaphoreRecord {
            limit: 2,
            holders: BTreeMap::from([("s1".to_string(), true)]),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"Limit":2,"Holders":{"s1":true}}"#
        );
    }
}
