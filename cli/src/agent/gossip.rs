//! The LAN gossip pool of `concord agent`: binds and starts it with Consul's member tags,
//! joins (`-join` once and fatally; `-retry-join` in the background), and keeps the
//! members' addresses in `<data-dir>/serf/local.snapshot` so a restarted agent rejoins
//! them, unless its last run ended with a graceful leave and `-rejoin` is not set (Consul's
//! `rejoin_after_leave`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use concord_client_agent::membership::{self, DEFAULT_SERF_LAN_PORT};
use concord_net::gossip::{self, Gossip, MemberStatus, Timing};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::config::Settings;

/// Consul's default `retry_interval`.
const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(30);
/// Consul refuses a shorter `reconnect_timeout`.
const MIN_RECONNECT_TIMEOUT: Duration = Duration::from_secs(8 * 3600);

/// Binds the gossip port on `bind` (or `-serf-lan-bind`) and starts the pool, advertising
/// `advertise` and the bound port.
pub(super) async fn start(
    s: &Settings,
    bind: IpAddr,
    advertise: IpAddr,
    tags: std::collections::BTreeMap<String, String>,
    node_name: &str,
) -> anyhow::Result<Gossip> {
    let bind_ip = s.serf_lan_bind.unwrap_or(bind);
    let port = match s.serf_lan_port {
        None => DEFAULT_SERF_LAN_PORT,
        Some(p) => u16::try_from(p).map_err(|_| {
            anyhow::anyhow!("ports.serf_lan cannot be -1: the agent needs its LAN gossip pool")
        })?,
    };
    let (udp, tcp) = gossip::bind(SocketAddr::new(bind_ip, port))
        .await
        .with_context(|| format!("binding the LAN gossip port {bind_ip}:{port}"))?;
    let bound = udp.local_addr()?.port();
    let mut config = gossip::Config::new(node_name, SocketAddr::new(advertise, bound));
    config.tags = tags;
    config.timing = if s.dev { Timing::fast() } else { Timing::lan() };
    if let Some(key) = &s.encrypt {
        config.keys = vec![key.trim().to_string()];
    }
    if let Some(t) = s.reconnect_timeout {
        if t < MIN_RECONNECT_TIMEOUT {
            bail!("reconnect_timeout must be >= 8h (got {t:?})");
        }
        config.reconnect_timeout = t;
    }
    Gossip::start(config, udp, tcp).context("starting LAN gossip")
}

/// `-join`: every address is tried; failing them all stops the agent, as in Consul.
pub(super) async fn start_join(g: &Gossip, addrs: &[String]) -> anyhow::Result<()> {
    if addrs.is_empty() {
        return Ok(());
    }
    let n = membership::join(g, addrs)
        .await
        .map_err(|e| anyhow::anyhow!("Failed to join {addrs:?}: {e}"))?;
    tracing::info!(contacted = n, "joined the LAN pool");
    Ok(())
}

/// `-retry-join`: tries every `interval` until one address answers. After `max` failed
/// attempts (0: never) it gives up and fires the returned receiver, which stops the agent
/// (Consul exits too).
pub(super) fn spawn_retry_join(
    g: Gossip,
    addrs: Vec<String>,
    interval: Option<Duration>,
    max: u64,
) -> oneshot::Receiver<()> {
    let (give_up, rx) = oneshot::channel();
    if addrs.is_empty() {
        // Never fires; the sender is dropped, which `exhausted` treats as "never".
        return rx;
    }
    let interval = interval.unwrap_or(DEFAULT_RETRY_INTERVAL);
    tokio::spawn(async move {
        let mut attempt = 0u64;
        loop {
            attempt += 1;
            match membership::join(&g, &addrs).await {
                Ok(n) => {
                    tracing::info!(contacted = n, "retry-join: joined the LAN pool");
                    return;
                }
                Err(e) => tracing::warn!(attempt, error = %e, "retry-join failed"),
            }
            if max > 0 && attempt >= max {
                tracing::error!("max join retry exhausted, exiting");
                let _ = give_up.send(());
                return;
            }
            tokio::time::sleep(interval).await;
        }
    });
    rx
}

/// Resolves when retry-join gave up; pending forever otherwise.
pub(super) async fn exhausted(rx: oneshot::Receiver<()>) {
    if rx.await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// What the snapshot file keeps.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Snapshot {
    /// Gossip addresses of the other members last seen alive.
    members: Vec<String>,
    /// The agent left gracefully.
    left: bool,
}

fn snapshot_path(data_dir: &Path) -> PathBuf {
    data_dir.join("serf").join("local.snapshot")
}

/// Addresses to rejoin from the previous run: none without a snapshot, or after a graceful
/// leave unless `rejoin`.
pub(super) fn previous_members(data_dir: &Path, rejoin: bool) -> Vec<String> {
    let Ok(text) = std::fs::read(snapshot_path(data_dir)) else {
        return Vec::new();
    };
    match serde_json::from_slice::<Snapshot>(&text) {
        Ok(snap) if !snap.left || rejoin => snap.members,
        Ok(_) => {
            tracing::info!("left the pool last time; not rejoining (pass -rejoin to rejoin)");
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(error = %e, "unreadable gossip snapshot; ignoring it");
            Vec::new()
        }
    }
}

fn write_snapshot(data_dir: &Path, snap: &Snapshot) {
    let path = snapshot_path(data_dir);
    let result = (|| -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(snap).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "writing the gossip snapshot");
    }
}

fn current(g: &Gossip, left: bool) -> Snapshot {
    let me = g.local_member().name;
    Snapshot {
        members: g
            .members()
            .into_iter()
            .filter(|m| m.name != me && m.status == MemberStatus::Alive)
            .map(|m| m.addr.to_string())
            .collect(),
        left,
    }
}

/// Rewrites the snapshot on every membership change until the pool stops.
pub(super) fn spawn_snapshot(g: Gossip, data_dir: PathBuf) {
    let mut events = g.subscribe();
    tokio::spawn(async move {
        let mut last = Snapshot::default();
        loop {
            match events.recv().await {
                Ok(gossip::MemberEvent::User(_)) => continue,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
            let snap = current(&g, false);
            if snap != last && !snap.members.is_empty() {
                write_snapshot(&data_dir, &snap);
                last = snap;
            }
        }
    });
}

/// Records at exit whether this member left gracefully.
pub(super) fn finish_snapshot(g: &Gossip, data_dir: &Path) {
    let left = g.local_member().status != MemberStatus::Alive;
    let mut snap = current(g, left);
    if snap.members.is_empty() {
        // Keep the addresses of the last write: at exit the view may already be empty.
        if let Ok(text) = std::fs::read(snapshot_path(data_dir)) {
            if let Ok(old) = serde_json::from_slice::<Snapshot>(&text) {
                snap.members = old.members;
            }
        }
    }
    write_snapshot(data_dir, &snap);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejoin_follows_the_last_exit() {
        let dir = tempfile::tempdir().unwrap();
        assert!(previous_members(dir.path(), false).is_empty());
        let members = vec!["127.0.0.2:8301".to_string()];
        write_snapshot(
            dir.path(),
            &Snapshot {
                members: members.clone(),
                left: false,
            },
        );
        assert_eq!(previous_members(dir.path(), false), members);
        write_snapshot(
            dir.path(),
            &Snapshot {
                members: members.clone(),
                left: true,
            },
        );
        assert!(previous_members(dir.path(), false).is_empty());
        assert_eq!(previous_members(dir.path(), true), members);
    }
}
