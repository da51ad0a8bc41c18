//! The server cluster's promises under faults, with real processes: a minority partition
//! (network namespaces) cannot commit and says so on `?stale` reads, while the majority
//! keeps serving, and all converge after healing; a full-cluster `kill -9` and restart keeps
//! every acknowledged write; and concurrent KV clients stay linearizable while a nemesis
//! kills and restarts servers, and again while another partitions them and makes a lagging
//! follower install a snapshot ([`linearizable`]).
//!
//! Each test has its own addresses (private namespace LANs 10.99.0.x and 10.248.0.x,
//! 127.0.21.x, 127.0.22.x), so the tests of this binary run in parallel.

// Test helpers outside #[test] functions may unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod linearizable;

use std::time::Duration;

use base64::Engine as _;
use concord_integration::netns::{self, Lan};
use concord_integration::{assert_eventually, init_tracing, AgentSpec, TestAgent, TestCluster};
use tokio::time::Instant;

/// How long a request to a server may take before the test calls it timed out.
const REQUEST: Duration = Duration::from_secs(3);

/// The value of `key` in a `GET /v1/kv/KEY` JSON body.
fn kv_value(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v[0]["Value"].as_str()?)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// `key` as `agent` holds it locally (`?stale`), if it answers.
async fn stale(agent: &TestAgent, key: &str) -> Option<String> {
    let r = agent
        .request("GET", &format!("/v1/kv/{key}?stale"), b"", REQUEST)
        .await
        .ok()?;
    (r.status == 200).then(|| kv_value(&r.body)).flatten()
}

/// `/v1/status/leader` of `agent` (`""` when none or unreachable).
async fn leader_of(agent: &TestAgent) -> String {
    match agent.get_json("/v1/status/leader").await {
        Ok((200, _, serde_json::Value::String(s))) => s,
        _ => String::new(),
    }
}

/// Waits until all `agents` name the same, non-empty leader; returns it.
async fn common_leader(agents: &[&TestAgent]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut seen = Vec::new();
        for a in agents {
            seen.push(leader_of(a).await);
        }
        if !seen[0].is_empty() && seen.iter().all(|l| *l == seen[0]) {
            return seen[0].clone();
        }
        assert!(Instant::now() < deadline, "no common leader: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A PUT through `agent`: `Some(true)` only when acknowledged (`200 true`).
async fn put(agent: &TestAgent, key: &str, value: &str) -> anyhow::Result<(u16, String)> {
    let r = agent
        .request("PUT", &format!("/v1/kv/{key}"), value.as_bytes(), REQUEST)
        .await?;
    Ok((
        r.status,
        String::from_utf8_lossy(&r.body).trim().to_string(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_partition_cannot_commit_and_heals() {
    init_tracing();
    if !netns::available("the minority partition test") {
        return;
    }
    let lan = Lan::new("f", 3).unwrap();
    let specs: Vec<AgentSpec> = (0..3)
        .map(|i| {
            let mut spec = AgentSpec::at(&format!("s{}", i + 1), lan.ip(i))
                .netns(lan.ns(i))
                .args(&["-server", "-bootstrap-expect", "3", "-retry-interval", "1s"])
                .no_wait();
            for j in (0..3).filter(|&j| j != i) {
                spec = spec.args(&["-retry-join", &lan.ip(j).to_string()]);
            }
            spec
        })
        .collect();
    let tasks: Vec<_> = specs
        .into_iter()
        .map(|s| tokio::spawn(TestAgent::launch(s)))
        .collect();
    let mut servers = Vec::new();
    for t in tasks {
        servers.push(t.await.unwrap().unwrap());
    }
    let all: Vec<&TestAgent> = servers.iter().collect();
    let leader = common_leader(&all).await;
    let leader_ip = leader.split(':').next().unwrap_or_default().to_string();
    let l = (0..3)
        .find(|&i| lan.ip(i).to_string() == leader_ip)
        .unwrap();
    // A follower is isolated: an isolated leader would keep reporting itself as leader
    // until it notices it lost its quorum, which is a different promise.
    let victim = (0..3).find(|&i| i != l).unwrap();
    let majority: Vec<usize> = (0..3).filter(|&i| i != victim).collect();

    assert_eq!(put(&servers[l], "fault/before", "b").await.unwrap().0, 200);
    for s in &servers {
        assert_eventually!(
            stale(s, "fault/before").await.as_deref() == Some("b"),
            "{} has the first write",
            s.node
        );
    }

    lan.cut(victim).unwrap();
    let cut_at = Instant::now();
    let isolated = &servers[victim];

    // Writes sent to the isolated server fail or time out, never succeed. One that was
    // refused with an answer must never apply; one the client gave up on is indeterminate:
    // the server holds it while no leader is reachable (Consul's `rpc_hold_timeout`), so it
    // may apply once the partition heals, as docs/operations.md says of timed-out writes.
    let mut refused = Vec::new();
    let mut answered = Vec::new();
    for k in 0..3 {
        let outcome = put(isolated, &format!("fault/minority{k}"), "m").await;
        assert!(
            !matches!(&outcome, Ok((200, body)) if body == "true"),
            "an isolated server acknowledged a write: {outcome:?}"
        );
        answered.push(outcome.is_ok());
        refused.push(match outcome {
            Ok((status, body)) => format!("{status} {body}"),
            Err(e) => format!("{e:#}"),
        });
    }
    eprintln!("faults: writes to the isolated server: {refused:?}");

    // Its stale reads still answer, with no known leader and a growing last contact.
    let contact = |r: &netns::Response| -> Option<(bool, u64)> {
        Some((
            r.header("X-Consul-KnownLeader")? == "true",
            r.header("X-Consul-LastContact")?.parse().ok()?,
        ))
    };
    let read = || isolated.request("GET", "/v1/kv/fault/before?stale", b"", REQUEST);
    let mut first: Option<(bool, u64)>;
    assert_eventually!(
        {
            let r = read().await.ok();
            first = r.as_ref().filter(|r| r.status == 200).and_then(contact);
            first.is_some_and(|(known, _)| !known)
        },
        "the isolated server stops knowing a leader: {first:?}"
    );
    let (_, c1) = first.unwrap();
    eprintln!(
        "faults: isolated server lost its leader after {:?} (LastContact {c1} ms)",
        cut_at.elapsed()
    );
    let mut later: Option<(bool, u64)>;
    assert_eventually!(
        {
            let r = read().await.ok();
            later = r.as_ref().filter(|r| r.status == 200).and_then(|r| {
                assert_eq!(kv_value(&r.body).as_deref(), Some("b"), "stale read value");
                contact(r)
            });
            later.is_some_and(|(known, c2)| !known && c2 > c1)
        },
        "LastContact grows on the isolated server: {c1} then {later:?}"
    );
    eprintln!("faults: LastContact {c1} ms -> {later:?}");

    // The majority keeps serving writes.
    let m: Vec<&TestAgent> = majority.iter().map(|&i| &servers[i]).collect();
    common_leader(&m).await;
    for (n, s) in m.iter().enumerate() {
        let (status, body) = put(s, "fault/majority", &format!("w{n}")).await.unwrap();
        assert_eq!(
            (status, body.as_str()),
            (200, "true"),
            "majority write via {}",
            s.node
        );
    }

    // While partitioned, none of the isolated server's writes can have committed.
    for s in &m {
        for k in 0..3 {
            let r = s
                .request("GET", &format!("/v1/kv/fault/minority{k}"), b"", REQUEST)
                .await
                .unwrap();
            assert_eq!(r.status, 404, "a minority write committed on {}", s.node);
        }
    }

    // Healed, all converge: the majority's writes everywhere, the refused ones nowhere.
    lan.heal(victim).unwrap();
    let healed_at = Instant::now();
    common_leader(&all).await;
    for s in &servers {
        assert_eventually!(
            stale(s, "fault/majority").await.as_deref() == Some("w1"),
            "{} converged",
            s.node
        );
        for k in (0..3).filter(|&k| answered[k]) {
            let r = s
                .request(
                    "GET",
                    &format!("/v1/kv/fault/minority{k}?stale"),
                    b"",
                    REQUEST,
                )
                .await
                .unwrap();
            assert_eq!(r.status, 404, "a refused write took effect on {}", s.node);
        }
    }
    eprintln!("faults: converged {:?} after healing", healed_at.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_cluster_kill9_and_restart_keeps_acknowledged_writes() {
    init_tracing();
    let mut cluster = TestCluster::start(21, 3).await.unwrap();
    const N: usize = 60;
    let mut acked = Vec::new();
    for i in 0..N {
        let s = &cluster.servers[i % 3];
        let (status, body) = put(s, &format!("durable/{i}"), &format!("v{i}"))
            .await
            .unwrap();
        assert_eq!(
            (status, body.as_str()),
            (200, "true"),
            "PUT {i} via {}",
            s.node
        );
        acked.push(i);
    }

    // All at once, no chance to flush.
    for s in &mut cluster.servers {
        s.kill9();
    }
    let tasks: Vec<_> = cluster
        .servers
        .drain(..)
        .map(|mut s| {
            tokio::spawn(async move {
                s.restart().await?;
                anyhow::Ok(s)
            })
        })
        .collect();
    for t in tasks {
        cluster.servers.push(t.await.unwrap().unwrap());
    }
    let restarted_at = Instant::now();
    cluster.wait_leader(&[0, 1, 2], None).await.unwrap();
    eprintln!(
        "faults: cluster restarted, leader after {:?}",
        restarted_at.elapsed()
    );

    let mut lost = Vec::new();
    for &i in &acked {
        let path = format!("/v1/kv/durable/{i}?consistent");
        let r = cluster.servers[i % 3]
            .request("GET", &path, b"", Duration::from_secs(10))
            .await
            .unwrap();
        if r.status != 200 || kv_value(&r.body) != Some(format!("v{i}")) {
            lost.push(i);
        }
    }
    eprintln!(
        "faults: full-cluster kill -9: {} acknowledged writes, {} lost",
        acked.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    // Every server has all of them in its own copy.
    for s in &cluster.servers {
        for &i in &acked {
            assert_eventually!(
                stale(s, &format!("durable/{i}")).await == Some(format!("v{i}")),
                "{} has durable/{i}",
                s.node
            );
        }
    }
}
