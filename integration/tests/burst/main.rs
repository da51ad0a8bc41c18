//! A burst of parked blocking reads through a client agent in front of 3 servers (issue
//! 18): 2,000 distinct reads (half KV, half health) parked at once through the agent, which
//! sends them over one multiplexed RPC connection to one server (a follower forwards them to
//! the leader over another); one write of each kind wakes them all, and every one is
//! answered with the new index.
//!
//! Before the fix the replies of such a burst, split into tiny HTTP/2 DATA frames by the
//! shared flow-control window, spent h2's budget of small frames; the follower's connection
//! to the leader was torn down (`GOAWAY ENHANCE_YOUR_CALM`) and most watchers got
//! `500 No cluster leader`.

// Test helpers outside #[test] functions may unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use concord_integration::{assert_eventually, init_tracing, AgentSpec, TestAgent, TestCluster};

/// This test's loopback network, 127.0.44.x.
const NET: u8 = 44;
/// Parked reads in the burst (half KV, half health).
const WATCHERS: usize = 2_000;
/// Reads per HTTP/2 connection to the agent (its API allows 256 streams per connection).
const PER_CONNECTION: usize = 250;

/// An HTTP/2 (prior knowledge) client to `addr` holding one connection, already open.
async fn h2_client(addr: SocketAddr) -> reqwest::Client {
    let client = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let reply = client
        .get(format!("http://{addr}/v1/status/leader"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.version(), reqwest::Version::HTTP_2);
    client
}

/// GET through `client`: status, `X-Consul-Index`, body.
async fn get(client: &reqwest::Client, url: &str) -> (u16, u64, String) {
    match client.get(url).send().await {
        Ok(reply) => {
            let status = reply.status().as_u16();
            let index = reply
                .headers()
                .get("x-consul-index")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            (status, index, reply.text().await.unwrap_or_default())
        }
        Err(e) => (0, 0, e.to_string()),
    }
}

/// Registers the watched service instance with this port.
async fn register(agent: &TestAgent, port: u16) {
    let body = format!(
        r#"{{"Node":"burst-node","Address":"10.0.0.1","Service":{{"Service":"burst","Port":{port}}}}}"#
    );
    let (status, text) = agent.put("/v1/catalog/register", body).await.unwrap();
    assert_eq!(status, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_parked_reads_through_a_follower_is_all_answered() {
    init_tracing();
    let cluster = TestCluster::start(NET, 3).await.unwrap();
    // The cap on parked queries per client is the test's signal that all are parked: one
    // more blocking read is refused (429) only while `WATCHERS` wait in the agent.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("limits.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"limits":{{"http_max_conns_per_client":0,"http_max_blocking_queries_per_client":{WATCHERS}}}}}"#
        ),
    )
    .unwrap();
    let mut spec = AgentSpec::at("burst", IpAddr::from([127, 0, NET, 11]))
        .args(&["-config-file", config.to_str().unwrap()]);
    for s in 0..3 {
        spec = spec.args(&["-retry-join", &TestCluster::ip(NET, s).to_string()]);
    }
    let agent = TestAgent::launch(spec).await.unwrap();

    // The agent keeps talking to one server until a call fails, usually the first of its
    // sorted list (127.0.44.1; which one depends on when gossip told it of each): make that
    // one a follower, so the reads are likely forwarded to the leader too.
    let first = TestCluster::ip(NET, 0).to_string();
    for _ in 0..5 {
        let leader = cluster.wait_leader(&[0, 1, 2], None).await.unwrap();
        if !leader.starts_with(&format!("{first}:")) {
            break;
        }
        let out = cluster.servers[0]
            .cli(&["operator", "raft", "transfer-leader"])
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        cluster
            .wait_leader(&[0, 1, 2], Some(&leader))
            .await
            .unwrap();
    }
    let leader = cluster.wait_leader(&[0, 1, 2], None).await.unwrap();
    assert!(!leader.starts_with(&format!("{first}:")), "{leader}");

    let (status, text) = agent.put("/v1/kv/burst/k", "1").await.unwrap();
    assert_eq!(status, 200, "{text}");
    register(&agent, 80).await;
    let kv_url = agent.url("/v1/kv/burst/k");
    let health_url = agent.url("/v1/health/service/burst");
    let (_, kv_index, _) = agent.get_json("/v1/kv/burst/k").await.unwrap();
    let (_, health_index, body) = agent.get_json("/v1/health/service/burst").await.unwrap();
    assert_eq!(body.as_array().map(Vec::len), Some(1), "{body}");

    tracing::info!("{WATCHERS} blocking reads through the agent");
    let mut clients = Vec::new();
    for _ in 0..WATCHERS.div_ceil(PER_CONNECTION) {
        clients.push(h2_client(agent.http).await);
    }
    let mut watchers = tokio::task::JoinSet::new();
    for i in 0..WATCHERS {
        let client = clients[i / PER_CONNECTION].clone();
        // A wait of its own (4 min and i ms) makes each read a distinct question: the agent
        // shares identical blocking reads in one server call, and this test wants each on
        // the RPC connections.
        let wait = 240_000 + i;
        let url = if i % 2 == 0 {
            format!("{kv_url}?index={kv_index}&wait={wait}ms")
        } else {
            format!("{health_url}?index={health_index}&wait={wait}ms")
        };
        let min = if i % 2 == 0 { kv_index } else { health_index };
        watchers.spawn(async move {
            // The probe below may hold a slot for a moment while the last reads arrive: a
            // read refused for that is sent again, as a client that backs off would.
            loop {
                let reply = get(&client, &url).await;
                if reply.0 != 429 {
                    return (min, reply);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    // Until every read is parked, the probe parks too: it gives up after a second (the
    // agent drops a reset stream, freeing its slot) and asks again.
    let probe = h2_client(agent.http).await;
    let probe_url = format!("{kv_url}?index={kv_index}&wait=5m");
    let probe_once = || async {
        match probe
            .get(&probe_url)
            .timeout(Duration::from_secs(1))
            .send()
            .await
        {
            Ok(reply) => reply.status().as_u16(),
            Err(_) => 0,
        }
    };
    assert_eventually!(@timeout Duration::from_secs(120),
        probe_once().await == 429,
        "all {WATCHERS} reads parked in the agent");
    assert!(
        watchers.try_join_next().is_none(),
        "no read answered before the write"
    );

    tracing::info!("one KV write and one catalog write wake them all");
    let (status, text) = agent.put("/v1/kv/burst/k", "2").await.unwrap();
    assert_eq!(status, 200, "{text}");
    register(&agent, 81).await;
    let mut failures = Vec::new();
    let mut answered = 0;
    while let Some(done) = watchers.join_next().await {
        let (min, (status, index, body)) = done.unwrap();
        if status == 200 && index > min {
            answered += 1;
        } else if failures.len() < 10 {
            failures.push(format!("{status} index {index} (after {min}): {body}"));
        }
    }
    assert_eq!(answered, WATCHERS, "failures (first 10): {failures:#?}");
    drop(cluster);
}
