//! [`Gossip`]: the tokio driver of a [`Pool`] over real sockets. UDP carries SWIM probes,
//! gossip, RTT pings and metadata; TCP carries push-pull state exchanges (on join, so a
//! joiner learns everyone at once, and periodically), as memberlist does. Both use the same
//! port (Consul's `serf_lan` port, 8301).
//!
//! Three tasks run per pool: the UDP receiver, the timer loop (sleeps until the pool's next
//! deadline, or until an API call may have moved it), and the TCP acceptor. The pool sits
//! behind a std `Mutex`: every critical section is short and synchronous (no `.await` while
//! it is held), which is what the tokio docs recommend over an async mutex.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

use super::coordinate::Coordinate;
use super::pool::{Output, Pool, Stats};
use super::wire::{MAX_PACKET, MAX_STREAM};
use super::{Config, EventFilters, GossipError, KeyStatus, Member, MemberEvent, UserEvent};

/// Subscribers' event buffer; a subscriber that falls further behind loses the oldest
/// events (`RecvError::Lagged`) and should re-read [`Gossip::members`].
const EVENT_BUFFER: usize = 1024;
/// Bound on one push-pull exchange (connect, send, receive).
const STREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// Inbound push-pull exchanges handled at once; more are refused (closed) until one ends.
/// memberlist's cap: each exchange holds a whole member list (0.5 MB at 10,000 members), and
/// thousands of them stacked up once took a Consul server to 7 GB.
const MAX_INBOUND_STREAMS: usize = 128;
/// Tries at finding a port free for both UDP and TCP when binding port 0.
const BIND_ATTEMPTS: usize = 20;
/// How long a graceful leave lets its intent spread before going silent, at most.
const LEAVE_PROPAGATION_ROUNDS: u32 = 5;

struct Inner {
    pool: Mutex<Pool>,
    udp: UdpSocket,
    events: broadcast::Sender<MemberEvent>,
    wake: Notify,
    start: Instant,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    gossip_interval: Duration,
}

/// A running member of the LAN gossip pool. Cheap to clone; all clones drive the same pool.
#[derive(Clone)]
pub struct Gossip {
    inner: Arc<Inner>,
}

impl Gossip {
    /// Starts gossiping on `udp` and `tcp`, which must be bound to the same port. If
    /// `config.advertise` has port 0 or an unspecified IP, the UDP socket's local address
    /// fills them in (tests bind port 0). The member is alone until [`Gossip::join`].
    pub fn start(
        mut config: Config,
        udp: UdpSocket,
        tcp: TcpListener,
    ) -> Result<Gossip, GossipError> {
        let local = udp.local_addr()?;
        if config.advertise.port() == 0 {
            config.advertise.set_port(local.port());
        }
        if config.advertise.ip().is_unspecified() {
            config.advertise.set_ip(local.ip());
        }
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // Generation: seconds since the epoch, so a restart supersedes the previous process.
        let generation = u32::try_from(since_epoch.as_secs()).unwrap_or(u32::MAX);
        let seed = since_epoch.as_nanos() as u64
            ^ u64::from(std::process::id()) << 32
            ^ u64::from(local.port());
        let gossip_interval = config.timing.gossip_interval;
        let start = Instant::now();
        let pool = Pool::new(config, generation, seed, Duration::ZERO)?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (stop, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            pool: Mutex::new(pool),
            udp,
            events,
            wake: Notify::new(),
            start,
            stop,
            tasks: Mutex::new(Vec::new()),
            gossip_interval,
        });
        let tasks = vec![
            tokio::spawn(udp_loop(inner.clone())),
            tokio::spawn(timer_loop(inner.clone())),
            tokio::spawn(tcp_loop(inner.clone(), tcp)),
        ];
        *lock_tasks(&inner) = tasks;
        Ok(Gossip { inner })
    }

    /// Joins the pool through `addrs` (gossip addresses of existing members): a push-pull
    /// exchange over TCP with each, which brings the whole member list at once. Returns how
    /// many answered; an error if none did.
    pub async fn join(&self, addrs: &[SocketAddr]) -> Result<usize, GossipError> {
        let mut joined = 0;
        let mut last_error = String::from("no addresses given");
        for addr in addrs {
            let Some(frame) = self.inner.with_pool(|p| p.push_pull_request()) else {
                continue;
            };
            match exchange(*addr, &frame).await {
                Ok(reply) => {
                    let now = self.inner.now();
                    self.inner.with_pool(|p| {
                        p.handle_stream(&reply, now);
                        p.announce(*addr);
                    });
                    joined += 1;
                }
                Err(e) => last_error = format!("{addr}: {e}"),
            }
        }
        if joined == 0 {
            return Err(GossipError::JoinFailed(addrs.len(), last_error));
        }
        Ok(joined)
    }

    /// Leaves gracefully: broadcasts the leave intent, lets it spread (at most `limit`, and
    /// at most a few gossip rounds), tells the pool, and stops. Others record Left.
    pub async fn leave(&self, limit: Duration) -> Result<(), GossipError> {
        let now = self.inner.now();
        self.inner.with_pool(|p| p.leave_intent(now))?;
        let spread = (self.inner.gossip_interval * LEAVE_PROPAGATION_ROUNDS).min(limit);
        tokio::time::sleep(spread).await;
        let now = self.inner.now();
        self.inner.with_pool(|p| p.leave_cluster(now));
        self.shutdown();
        Ok(())
    }

    /// Stops all gossip at once, without a leave (others will see a failure).
    pub fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        for task in lock_tasks(&self.inner).drain(..) {
            task.abort();
        }
    }

    /// Every known member, this one first (alive, leaving, left and failed, until reaped).
    pub fn members(&self) -> Vec<Member> {
        self.inner.with_pool(|p| p.members())
    }

    /// This member.
    pub fn local_member(&self) -> Member {
        self.inner.with_pool(|p| p.local_member())
    }

    /// Replaces this member's tags; the pool learns them within a few gossip rounds.
    pub fn set_tags(&self, tags: BTreeMap<String, String>) -> Result<(), GossipError> {
        self.inner.with_pool(|p| p.set_tags(tags))
    }

    /// Member and user events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<MemberEvent> {
        self.inner.events.subscribe()
    }

    /// Fires a user event to every member (this one included).
    pub fn fire_event(
        &self,
        name: &str,
        payload: Vec<u8>,
        filters: EventFilters,
    ) -> Result<UserEvent, GossipError> {
        let now = self.inner.now();
        self.inner
            .with_pool(|p| p.fire_event(name, payload, filters, now))
    }

    /// The most recent user events, oldest first (`Config::event_ring` of them at most).
    pub fn recent_events(&self) -> Vec<UserEvent> {
        self.inner.with_pool(|p| p.recent_events())
    }

    /// Marks a failed member Left (with `prune`, forgets it) across the pool.
    pub fn force_leave(&self, name: &str, prune: bool) -> Result<(), GossipError> {
        let now = self.inner.now();
        self.inner.with_pool(|p| p.force_leave(name, prune, now))
    }

    /// Installs a gossip key (base64).
    pub fn install_key(&self, key: &str) -> Result<(), GossipError> {
        self.inner.with_pool(|p| p.install_key(key))
    }

    /// Makes an installed key the primary.
    pub fn use_key(&self, key: &str) -> Result<(), GossipError> {
        self.inner.with_pool(|p| p.use_key(key))
    }

    /// Removes a key (not the primary).
    pub fn remove_key(&self, key: &str) -> Result<(), GossipError> {
        self.inner.with_pool(|p| p.remove_key(key))
    }

    /// Replaces the whole keyring (base64 keys, primary first) in one step.
    pub fn set_keys(&self, keys: &[String]) -> Result<(), GossipError> {
        self.inner.with_pool(|p| p.set_keys(keys))
    }

    /// Installed keys and how many members hold each and use each as primary.
    pub fn list_keys(&self) -> Vec<KeyStatus> {
        self.inner.with_pool(|p| p.list_keys())
    }

    /// Every alive member (this one first) with its advertised key fingerprints, primary
    /// first (see [`Keyring::fingerprint_of`](super::Keyring::fingerprint_of)).
    pub fn member_keys(&self) -> Vec<(String, Vec<u64>)> {
        self.inner.with_pool(|p| p.member_keys())
    }

    /// This member's network coordinate.
    pub fn coordinate(&self) -> Coordinate {
        self.inner.with_pool(|p| p.coordinate())
    }

    /// Coordinates of this member and of every member it has measured, by name.
    pub fn coordinates(&self) -> Vec<(String, Coordinate)> {
        self.inner.with_pool(|p| p.coordinates())
    }

    /// Traffic and drop counters.
    pub fn stats(&self) -> Stats {
        self.inner.with_pool(|p| p.stats())
    }
}

/// Binds the UDP socket and TCP listener of a gossip address (same port for both, as
/// memberlist requires). With port 0, the UDP socket picks a free port and TCP binds the same
/// one, retrying a few times if another process took it in between (tests, dev mode).
pub async fn bind(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), GossipError> {
    if addr.port() != 0 {
        let udp = UdpSocket::bind(addr).await?;
        let tcp = TcpListener::bind(addr).await?;
        return Ok((udp, tcp));
    }
    let mut last = None;
    for _ in 0..BIND_ATTEMPTS {
        let udp = UdpSocket::bind(addr).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(
        || GossipError::Io(std::io::Error::other("no free gossip port")),
        GossipError::Io,
    ))
}

impl Inner {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Runs `f` on the pool, then sends what it produced and wakes the timer loop (the call
    /// may have scheduled something earlier than it sleeps for).
    fn with_pool<R>(self: &Arc<Self>, f: impl FnOnce(&mut Pool) -> R) -> R {
        let out = {
            let mut pool = lock_pool(self);
            let out = f(&mut pool);
            self.flush(&mut pool);
            out
        };
        self.wake.notify_one();
        out
    }

    fn flush(self: &Arc<Self>, pool: &mut MutexGuard<'_, Pool>) {
        while let Some(out) = pool.poll_output() {
            match out {
                // UDP is lossy anyway: a full socket buffer drops the datagram, as the
                // network would.
                Output::Packet { to, data } => {
                    let _ = self.udp.try_send_to(&data, to);
                }
                Output::Stream { to, data } => {
                    let inner = self.clone();
                    tokio::spawn(async move {
                        if let Ok(reply) = exchange(to, &data).await {
                            let now = inner.now();
                            inner.with_pool(|p| p.handle_stream(&reply, now));
                        }
                    });
                }
                Output::Event(event) => {
                    let _ = self.events.send(event);
                }
            }
        }
    }
}

fn lock_pool(inner: &Inner) -> MutexGuard<'_, Pool> {
    // Pool methods do not panic on input; if one ever did, the state is still the best we
    // have, so keep going rather than take the agent down.
    inner.pool.lock().unwrap_or_else(|p| p.into_inner())
}

fn lock_tasks(inner: &Inner) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
    inner.tasks.lock().unwrap_or_else(|p| p.into_inner())
}

async fn udp_loop(inner: Arc<Inner>) {
    // One byte more than the largest valid packet, so oversize ones are seen as such.
    let mut buf = vec![0u8; MAX_PACKET + 1];
    loop {
        match inner.udp.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let now = inner.now();
                inner.with_pool(|p| p.handle_packet(from, &buf[..n], now));
            }
            // ICMP errors surface here on some platforms; they are not fatal.
            Err(e) => tracing::debug!(error = %e, "gossip udp receive error"),
        }
    }
}

async fn timer_loop(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    loop {
        let deadline = lock_pool(&inner).next_deadline();
        let sleep = match deadline {
            Some(d) => tokio::time::sleep_until(inner.start + d),
            None => tokio::time::sleep(Duration::from_secs(3600)),
        };
        tokio::select! {
            _ = sleep => {}
            _ = inner.wake.notified() => {}
            _ = stop.changed() => return,
        }
        let now = inner.now();
        let mut pool = lock_pool(&inner);
        pool.tick(now);
        inner.flush(&mut pool);
    }
}

async fn tcp_loop(inner: Arc<Inner>, listener: TcpListener) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_INBOUND_STREAMS));
    loop {
        let Ok((mut conn, peer)) = listener.accept().await else {
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "gossip push-pull refused: {MAX_INBOUND_STREAMS} in progress");
            continue;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let answer = timeout(STREAM_TIMEOUT, async {
                let frame = read_frame(&mut conn).await?;
                let now = inner.now();
                if let Some(reply) = inner.with_pool(|p| p.handle_stream(&frame, now)) {
                    write_frame(&mut conn, &reply).await?;
                }
                Ok::<(), std::io::Error>(())
            })
            .await;
            if let Ok(Err(e)) = answer {
                tracing::debug!(error = %e, "gossip push-pull from a peer failed");
            }
        });
    }
}

/// One push-pull exchange as the initiator.
async fn exchange(to: SocketAddr, frame: &[u8]) -> std::io::Result<Vec<u8>> {
    let io = async {
        let mut conn = TcpStream::connect(to).await?;
        write_frame(&mut conn, frame).await?;
        read_frame(&mut conn).await
    };
    timeout(STREAM_TIMEOUT, io)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "push-pull timed out"))?
}

async fn write_frame(conn: &mut TcpStream, frame: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(frame.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    conn.write_all(&len.to_be_bytes()).await?;
    conn.write_all(frame).await?;
    conn.flush().await
}

/// Reads one length-prefixed frame, refusing lengths over [`MAX_STREAM`] before allocating.
async fn read_frame(conn: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    conn.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_STREAM {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "push-pull frame too large",
        ));
    }
    let mut buf = vec![0u8; len];
    conn.read_exact(&mut buf).await?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::super::{MemberStatus, Timing};
    use super::*;

    async fn start(name: &str) -> Gossip {
        let (udp, tcp) = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        // Port 0 in the advertise address: start() fills in the bound one.
        let mut config = Config::new(name, "127.0.0.1:0".parse().expect("addr"));
        config.timing = Timing::fast();
        Gossip::start(config, udp, tcp).expect("start")
    }

    async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn three_members_over_udp_and_tcp_join_and_detect_a_kill() {
        let a = start("a").await;
        let b = start("b").await;
        let c = start("c").await;
        let seed = a.local_member().addr;
        assert_eq!(b.join(&[seed]).await.expect("join"), 1);
        assert_eq!(c.join(&[seed]).await.expect("join"), 1);
        let alive = |g: &Gossip| {
            g.members()
                .iter()
                .filter(|m| m.status == MemberStatus::Alive)
                .count()
        };
        wait_for("all see all", || [&a, &b, &c].iter().all(|g| alive(g) == 3)).await;
        let mut events = a.subscribe();
        c.shutdown();
        let failed = |g: &Gossip| {
            g.members()
                .iter()
                .any(|m| m.name == "c" && m.status == MemberStatus::Failed)
        };
        wait_for("c failed", || failed(&a) && failed(&b)).await;
        let mut saw_failed = false;
        while let Ok(e) = events.try_recv() {
            saw_failed |= matches!(e, MemberEvent::Failed(m) if m.name == "c");
        }
        assert!(saw_failed);
        let err = Gossip::join(&a, &["127.0.0.1:1".parse().expect("addr")]).await;
        assert!(matches!(err, Err(GossipError::JoinFailed(1, _))));
        // A graceful leave is recorded as Left, not Failed.
        b.leave(Duration::from_secs(1)).await.expect("leave");
        let left = |g: &Gossip| {
            g.members()
                .iter()
                .any(|m| m.name == "b" && m.status == MemberStatus::Left)
        };
        wait_for("b left", || left(&a)).await;
        a.shutdown();
    }
}
