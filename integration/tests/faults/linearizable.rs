//! Linearizability under a nemesis: four clients do KV PUT, `?consistent` GET and `?cas=`
//! PUT on three keys, each through a different server, while a nemesis `kill -9`s servers
//! (the leader, a follower, or two at once, so the cluster also loses its quorum) and
//! restarts them. Every operation's invocation, completion and outcome is recorded and the
//! history checked against one register per key
//! ([`concord_integration::linearizability`]). Clients also write keys of their own, each
//! once; every acknowledged one must be there at the end.
//!
//! A second run does the same on a namespace LAN (10.248.0.x) against partitions and
//! snapshot installs: the clients run in-process on a thread moved into a namespace of
//! their own, so they reach the servers at full speed (no `curl` per request).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use concord_integration::linearizability::{self, Event, Op, Outcome};
use concord_integration::netns::{self, Lan};
use concord_integration::{assert_eventually, init_tracing, AgentSpec, TestAgent, TestCluster};

use super::common_leader;
use tokio::time::Instant;

/// The cluster's loopback network.
const NET: u8 = 22;
/// How long the nemesis runs.
const NEMESIS: Duration = Duration::from_secs(25);
/// Registers under test.
const KEYS: usize = 3;
const CLIENTS: usize = 4;
/// A client gives an operation up (outcome unknown) after this.
const TIMEOUT: Duration = Duration::from_secs(3);

/// A small xorshift generator: the schedule need not be cryptographic, only varied.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What one client recorded.
#[derive(Default)]
struct Record {
    history: Vec<Event>,
    /// Own keys acknowledged (each written once).
    acked: Vec<String>,
    failed: usize,
    /// Why outcomes were unknown or failed, counted (printed to explain the numbers).
    why: std::collections::BTreeMap<String, usize>,
}

/// Value and `ModifyIndex` from a `GET /v1/kv/KEY` body.
fn parse_read(body: &[u8]) -> Option<(u64, u64)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v[0]["Value"].as_str()?)
        .ok()?;
    let value = String::from_utf8(bytes).ok()?.parse().ok()?;
    Some((value, v[0]["ModifyIndex"].as_u64()?))
}

/// Whether `e` says the request never reached the server (so it cannot have taken effect).
fn never_sent(e: &reqwest::Error) -> bool {
    e.is_connect()
}

/// One client: until `stop`, random operations on the shared keys through server
/// `id % 3`, moving to the next server after a failure.
async fn client(
    id: usize,
    servers: Vec<SocketAddr>,
    start: Instant,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicUsize>,
) -> Record {
    // No pooled connections: a request on a connection to a killed server would otherwise
    // fail after sending (unknown) rather than on connect (known not done).
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(TIMEOUT)
        .build()
        .unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((id as u64 + 1) * 0x1234_5678_9abc_def1));
    let mut rec = Record::default();
    let mut server = id % servers.len();
    // The last value and ModifyIndex this client read per key (CAS needs an index).
    let mut last: Vec<Option<(Option<u64>, u64)>> = vec![None; KEYS];
    let mut seq = 0u64;
    let now = || u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let before = server;
        let value = (id as u64 + 1) * 1_000_000 + seq;
        let k = usize::try_from(rng.below(KEYS as u64)).unwrap();
        let key = format!("lin/k{k}");
        let base = format!("http://{}/v1/kv/", servers[server]);
        let dice = rng.below(100);
        let invoked = now();
        let (op, result) = if dice < 10 {
            // An own key, written once: must survive if acknowledged.
            let own = format!("lin/own/{id}-{seq}");
            let r = http.put(format!("{base}{own}")).body("x").send().await;
            let ok = match r {
                Ok(r) => r.status() == 200 && r.text().await.is_ok_and(|b| b.trim() == "true"),
                Err(_) => false,
            };
            if ok {
                rec.acked.push(own);
                progress.fetch_add(1, Ordering::Relaxed);
            } else {
                server = (server + 1) % servers.len();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            continue;
        } else if dice < 45 {
            let r = http.get(format!("{base}{key}?consistent")).send().await;
            let outcome = match r {
                Ok(r) if r.status() == 404 => Some(None),
                Ok(r) if r.status() == 200 => {
                    r.bytes().await.ok().and_then(|b| parse_read(&b)).map(Some)
                }
                _ => None,
            };
            match outcome {
                Some(read) => {
                    last[k] = Some(match read {
                        Some((v, index)) => (Some(v), index),
                        None => (None, 0),
                    });
                    (Op::Read(read.map(|(v, _)| v)), Some(Outcome::Ok(true)))
                }
                // A failed read has no effect: leave it out.
                None => (Op::Read(None), None),
            }
        } else {
            let (op, url) = match last[k].filter(|_| dice >= 75) {
                Some((expected, index)) => (
                    Op::Cas {
                        expected,
                        new: value,
                    },
                    format!("{base}{key}?cas={index}"),
                ),
                None => (Op::Write(value), format!("{base}{key}")),
            };
            let r = http.put(url).body(value.to_string()).send().await;
            let (outcome, why) = match r {
                Err(e) if never_sent(&e) => (None, "connect error".to_string()),
                Err(e) => (Some(Outcome::Unknown), format!("{e}")),
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body = r.text().await.unwrap_or_default();
                    match (status, body.trim()) {
                        (200, "true") => (Some(Outcome::Ok(true)), String::new()),
                        (200, "false") if matches!(op, Op::Cas { .. }) => {
                            (Some(Outcome::Ok(false)), String::new())
                        }
                        // A server error may come after the entry was proposed.
                        (status, body) => (Some(Outcome::Unknown), format!("{status} {body}")),
                    }
                }
            };
            if !why.is_empty() {
                *rec.why.entry(why.chars().take(80).collect()).or_default() += 1;
            }
            (op, outcome)
        };
        let completed = now();
        match result {
            Some(outcome) => {
                if outcome == Outcome::Unknown {
                    server = (server + 1) % servers.len();
                } else {
                    progress.fetch_add(1, Ordering::Relaxed);
                }
                rec.history.push(Event {
                    key,
                    op,
                    outcome,
                    invoked,
                    completed,
                });
            }
            None => {
                rec.failed += 1;
                server = (server + 1) % servers.len();
            }
        }
        if server != before {
            // A client backs off after a failure, as real ones do, rather than spinning
            // on a cluster without a leader.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    rec
}

/// Waits until clients completed `n` more operations than `from`.
async fn progressed(progress: &AtomicUsize, from: usize, n: usize, what: &str) {
    assert_eventually!(
        @timeout Duration::from_secs(60),
        progress.load(Ordering::Relaxed) >= from + n,
        "clients made no progress after {what}: {} -> {}",
        from,
        progress.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_stays_linearizable_while_servers_are_killed_and_restarted() {
    init_tracing();
    let mut cluster = TestCluster::start(NET, 3).await.unwrap();
    let servers: Vec<SocketAddr> = cluster.servers.iter().map(|s| s.http).collect();
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            tokio::spawn(client(
                id,
                servers.clone(),
                start,
                stop.clone(),
                progress.clone(),
            ))
        })
        .collect();

    // The nemesis: kill the leader, a follower, or two servers at once; wait until the
    // cluster serves again (a leader among the living, clients progressing) before each
    // restart and after it.
    let mut rng = Rng(0xdead_beef_cafe_f00d ^ u64::from(std::process::id()));
    let until = Instant::now() + NEMESIS;
    let mut faults = Vec::new();
    let mut round = 0;
    while Instant::now() < until {
        let leader = cluster.wait_leader(&[0, 1, 2], None).await.unwrap();
        let l = cluster.index_of(&leader).unwrap();
        let other = (l + 1 + usize::try_from(rng.below(2)).unwrap()) % 3;
        let victims: Vec<usize> = match round % 3 {
            0 => vec![l],
            1 => vec![other],
            _ => vec![l, other],
        };
        round += 1;
        let before = progress.load(Ordering::Relaxed);
        for &v in &victims {
            cluster.servers[v].kill9();
        }
        faults.push(format!("kill -9 {victims:?} (leader {l})"));
        eprintln!(
            "faults: nemesis at {:?}: {}",
            start.elapsed(),
            faults[faults.len() - 1]
        );
        if victims.len() == 1 {
            let living: Vec<usize> = (0..3).filter(|i| !victims.contains(i)).collect();
            let at = Instant::now();
            let not = victims.contains(&l).then_some(leader.as_str());
            cluster.wait_leader(&living, not).await.unwrap();
            faults.push(format!("leader among {living:?} in {:?}", at.elapsed()));
            progressed(&progress, before, 10, "a minority was killed").await;
        }
        for &v in &victims {
            cluster.servers[v].restart().await.unwrap();
        }
        cluster.wait_leader(&[0, 1, 2], None).await.unwrap();
        let after = progress.load(Ordering::Relaxed);
        progressed(&progress, after, 10, "the restart").await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut records = Vec::new();
    for c in clients {
        records.push(c.await.unwrap());
    }
    let http = concord_integration::http_client().unwrap();
    let (finals, stored) = final_reads(&http, &servers, start).await;
    verdict(records, finals, &stored, &faults);
}

/// After the run, through every server: a `?consistent` read of every key (added to the
/// history, after everything else) and the own keys stored.
async fn final_reads(
    http: &reqwest::Client,
    servers: &[SocketAddr],
    start: Instant,
) -> (Vec<Event>, std::collections::HashSet<String>) {
    let mut history = Vec::new();
    for s in servers {
        for k in 0..KEYS {
            let key = format!("lin/k{k}");
            let invoked = u64::try_from(start.elapsed().as_micros()).unwrap();
            let r = http
                .get(format!("http://{s}/v1/kv/{key}?consistent"))
                .send()
                .await
                .unwrap();
            let read = match r.status().as_u16() {
                404 => None,
                200 => Some(parse_read(&r.bytes().await.unwrap()).unwrap().0),
                other => panic!("final read of {key} via {s}: {other}"),
            };
            let completed = u64::try_from(start.elapsed().as_micros()).unwrap();
            history.push(Event {
                key,
                op: Op::Read(read),
                outcome: Outcome::Ok(true),
                invoked,
                completed,
            });
        }
    }
    let r = http
        .get(format!(
            "http://{}/v1/kv/lin/own/?recurse&consistent",
            servers[0]
        ))
        .send()
        .await
        .unwrap();
    let stored: Vec<serde_json::Value> = r.json().await.unwrap_or_default();
    let stored = stored
        .iter()
        .filter_map(|e| e["Key"].as_str().map(str::to_string))
        .collect();
    (history, stored)
}

/// Checks the clients' histories plus the final reads, prints the numbers, and fails on a
/// violation, an undecided history, too few operations, or a lost acknowledged own key.
fn verdict(
    records: Vec<Record>,
    finals: Vec<Event>,
    stored: &std::collections::HashSet<String>,
    faults: &[String],
) {
    let mut history = Vec::new();
    let mut acked = Vec::new();
    let mut failed = 0;
    let mut why = std::collections::BTreeMap::<String, usize>::new();
    for rec in records {
        for (k, v) in rec.why {
            *why.entry(k).or_default() += v;
        }
        history.extend(rec.history);
        acked.extend(rec.acked);
        failed += rec.failed;
    }
    history.extend(finals);
    let lost: Vec<&String> = acked.iter().filter(|k| !stored.contains(*k)).collect();
    let unknown = history
        .iter()
        .filter(|e| e.outcome == Outcome::Unknown)
        .count();
    eprintln!(
        "faults: checking {} operations; write failures: {why:?}",
        history.len()
    );
    let checked_at = Instant::now();
    let report = linearizability::check(&history);
    eprintln!("faults: nemesis: {}", faults.join("; "));
    eprintln!(
        "faults: linearizability: {} operations checked ({} acknowledged, {unknown} with unknown outcome, \
         {failed} failed before reaching a server, checked in {:?}), {} violations {:?}, \
         {} inconclusive; {} acknowledged own writes, {} lost",
        report.checked,
        report.checked - unknown,
        checked_at.elapsed(),
        report.violations.len(),
        report.violations,
        report.inconclusive.len(),
        acked.len(),
        lost.len()
    );
    assert!(
        report.checked > 100,
        "too few operations: {}",
        report.checked
    );
    for key in &report.violations {
        // The key's history, for whoever has to find out why.
        let mut events: Vec<&Event> = history.iter().filter(|e| &e.key == key).collect();
        events.sort_by_key(|e| e.invoked);
        for e in events {
            eprintln!(
                "faults: {key} {:>10}..{:>10} {:?} -> {:?}",
                e.invoked, e.completed, e.op, e.outcome
            );
        }
    }
    assert!(
        report.violations.is_empty(),
        "not linearizable: {:?}",
        report.violations
    );
    assert!(
        report.inconclusive.is_empty(),
        "undecided: {:?}",
        report.inconclusive
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}

/// The partition run's namespace LAN: servers on 10.248.0.1..3, the clients' namespace on .4.
const LAN_SUBNET: [u8; 3] = [10, 248, 0];
/// The partition run snapshots often (`raft_snapshot_threshold`), so a follower kept down
/// falls behind the leader's purge point within a few hundred client writes.
const SNAPSHOT_THRESHOLD: u64 = 128;
/// Entries the partition run keeps behind a snapshot (`raft_trailing_logs`).
const TRAILING_LOGS: u64 = 32;

/// The KV table's index as `agent` reports it on a `?consistent` read (0: no answer).
async fn kv_index(agent: &TestAgent) -> u64 {
    match agent.get_json("/v1/kv/lin/?recurse&consistent").await {
        Ok((200, index, _)) => index,
        _ => 0,
    }
}

/// The same clients and checker as above, on a namespace LAN (the clients run in-process,
/// on a thread moved into a namespace of their own, [`netns::enter`]), against a nemesis of
/// partitions and snapshot installs: the leader or a follower is cut off the LAN (clients
/// lose it too) and healed; a follower is killed, kept down until the leader has
/// snapshotted and purged its log past it, and restarted, so it must install a snapshot
/// while clients keep writing (its log must say so); and the leader is killed and
/// restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_stays_linearizable_through_partitions_and_snapshot_installs() {
    init_tracing();
    if !netns::available("the partition nemesis") {
        return;
    }
    let lan = Lan::on(&format!("cc-{}-lin", std::process::id()), LAN_SUBNET, 4).unwrap();
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = conf_dir.path().join("raft.json");
    std::fs::write(
        &conf,
        format!(
            r#"{{"raft_snapshot_threshold":{SNAPSHOT_THRESHOLD},"raft_trailing_logs":{TRAILING_LOGS}}}"#
        ),
    )
    .unwrap();
    let conf = conf.to_str().unwrap().to_string();
    let launches: Vec<_> = (0..3)
        .map(|i| {
            let mut spec = AgentSpec::at(&format!("s{}", i + 1), lan.ip(i))
                .netns(lan.ns(i))
                .args(&["-server", "-bootstrap-expect", "3", "-retry-interval", "1s"])
                .args(&["-config-file", &conf])
                .no_wait();
            for j in (0..3).filter(|&j| j != i) {
                spec = spec.args(&["-retry-join", &lan.ip(j).to_string()]);
            }
            tokio::spawn(TestAgent::launch(spec))
        })
        .collect();
    let mut servers = Vec::new();
    for launch in launches {
        servers.push(launch.await.unwrap().unwrap());
    }
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.http).collect();
    let index_of = |leader: &str| {
        (0..3)
            .find(|&i| leader.starts_with(&format!("{}:", lan.ip(i))))
            .unwrap()
    };
    common_leader(&servers.iter().collect::<Vec<_>>()).await;

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));
    let clients = {
        let (ns, addrs, stop, progress) = (
            lan.ns(3).to_string(),
            addrs.clone(),
            stop.clone(),
            progress.clone(),
        );
        std::thread::spawn(move || {
            netns::enter(&ns).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let tasks: Vec<_> = (0..CLIENTS)
                    .map(|id| {
                        tokio::spawn(client(
                            id,
                            addrs.clone(),
                            start,
                            stop.clone(),
                            progress.clone(),
                        ))
                    })
                    .collect();
                let mut records = Vec::new();
                for task in tasks {
                    records.push(task.await.unwrap());
                }
                let http = concord_integration::http_client().unwrap();
                let (finals, stored) = final_reads(&http, &addrs, start).await;
                (records, finals, stored)
            })
        })
    };

    let mut rng = Rng(0x5eed_0f9a_2717_1000 ^ u64::from(std::process::id()));
    let until = Instant::now() + NEMESIS;
    let mut faults = Vec::new();
    let mut round = 0;
    while round < 4 || Instant::now() < until {
        let leader = common_leader(&servers.iter().collect::<Vec<_>>()).await;
        let l = index_of(&leader);
        let f = (l + 1 + usize::try_from(rng.below(2)).unwrap()) % 3;
        let before = progress.load(Ordering::Relaxed);
        let at = Instant::now();
        match round % 4 {
            0 | 1 => {
                let v = if round % 4 == 0 { l } else { f };
                lan.cut(v).unwrap();
                let majority: Vec<&TestAgent> =
                    (0..3).filter(|&i| i != v).map(|i| &servers[i]).collect();
                assert_eventually!(
                    @timeout Duration::from_secs(60),
                    v != l || common_leader(&majority).await != leader,
                    "the majority elected a new leader"
                );
                progressed(&progress, before, 10, "a partition").await;
                lan.heal(v).unwrap();
                faults.push(format!(
                    "cut {v} off the LAN (leader {l}) for {:?}",
                    at.elapsed()
                ));
            }
            2 => {
                servers[f].kill9();
                let mut from = kv_index(&servers[l]).await;
                assert_eventually!(
                    {
                        from = from.max(kv_index(&servers[l]).await);
                        from > 0
                    },
                    "the leader answers"
                );
                let behind = from + 3 * SNAPSHOT_THRESHOLD;
                assert_eventually!(
                    @timeout Duration::from_secs(60),
                    kv_index(&servers[l]).await >= behind,
                    "clients wrote {} entries past the killed follower",
                    3 * SNAPSHOT_THRESHOLD
                );
                servers[f].restart().await.unwrap();
                assert_eventually!(
                    @timeout Duration::from_secs(60),
                    servers[f].logs().contains("installed snapshot"),
                    "{} caught up through a snapshot install",
                    servers[f].node
                );
                faults.push(format!(
                    "kill -9 {f}, {} entries later restart: installed a snapshot ({:?})",
                    3 * SNAPSHOT_THRESHOLD,
                    at.elapsed()
                ));
            }
            _ => {
                servers[l].kill9();
                let living: Vec<&TestAgent> =
                    (0..3).filter(|&i| i != l).map(|i| &servers[i]).collect();
                assert_eventually!(
                    @timeout Duration::from_secs(60),
                    common_leader(&living).await != leader,
                    "the survivors elected a new leader"
                );
                progressed(&progress, before, 10, "the leader was killed").await;
                servers[l].restart().await.unwrap();
                faults.push(format!("kill -9 leader {l}, restart ({:?})", at.elapsed()));
            }
        }
        eprintln!(
            "faults: partition nemesis at {:?}: {}",
            start.elapsed(),
            faults[faults.len() - 1]
        );
        common_leader(&servers.iter().collect::<Vec<_>>()).await;
        let after = progress.load(Ordering::Relaxed);
        progressed(&progress, after, 10, "healing").await;
        round += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let (records, finals, stored) = clients.join().unwrap();
    verdict(records, finals, &stored, &faults);
}
