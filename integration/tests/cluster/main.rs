//! A 3-server cluster of real processes on 127.0.13.1..3 (default ports) formed with
//! `-bootstrap-expect 3` through the gossip pool: one leader, three voters; a write through
//! one server is readable on all; `kill -9` of the leader elects a new one (the time is
//! printed) and the survivors keep taking writes; the old leader restarts with its data,
//! catches up and does not bootstrap again; a 4th server joins as a learner and becomes a
//! voter; leadership transfers on request; with four voters a failed one is cleaned up and
//! added back when it restarts; `concord leave` removes a server from the Raft
//! configuration.

use std::time::Duration;

use concord_integration::{assert_eventually, init_tracing, AgentSpec, TestAgent, TestCluster};

/// The cluster's loopback network, 127.0.13.x: apart from the other tests' addresses.
const NET: u8 = 13;

/// `/v1/operator/raft/configuration` of `agent`: (address, voter) per server.
async fn raft_servers(agent: &TestAgent) -> Vec<(String, bool)> {
    match agent.get_json("/v1/operator/raft/configuration").await {
        Ok((200, _, v)) => v["Servers"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|s| {
                        (
                            s["Address"].as_str().unwrap_or_default().to_string(),
                            s["Voter"].as_bool().unwrap_or(false),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The value of `key` as `agent` reads it (`?stale`: its own copy), if any.
async fn kv_stale(agent: &TestAgent, key: &str) -> Option<String> {
    match agent.get_json(&format!("/v1/kv/{key}?stale")).await {
        Ok((200, _, v)) => {
            let b64 = v[0]["Value"].as_str()?;
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(bytes).ok()
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_bootstrap_survive_leader_loss_and_change_membership() {
    init_tracing();
    let mut cluster = TestCluster::start(NET, 3).await.unwrap();
    let leader = cluster.wait_leader(&[0, 1, 2], None).await.unwrap();

    // Three voters, in the API and in `concord operator raft list-peers`.
    assert_eventually!(
        raft_servers(&cluster.servers[0])
            .await
            .iter()
            .filter(|(_, v)| *v)
            .count()
            == 3,
        "three voters"
    );
    let (_, _, peers) = cluster.servers[1]
        .get_json("/v1/status/peers")
        .await
        .unwrap();
    assert_eq!(peers.as_array().map(Vec::len), Some(3), "{peers}");
    let out = cluster.servers[2]
        .cli(&["operator", "raft", "list-peers"])
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.lines().count(), 4, "{text}");
    assert_eq!(text.matches("leader").count(), 1, "{text}");

    // A write through one server is readable on all.
    let (status, body) = cluster.servers[1]
        .put("/v1/kv/config/db", "pg://one")
        .await
        .unwrap();
    assert_eq!((status, body.trim()), (200, "true"));
    for s in &cluster.servers {
        assert_eventually!(
            kv_stale(s, "config/db").await.as_deref() == Some("pg://one"),
            "{} has the write",
            s.node
        );
    }

    // kill -9 the leader: the survivors elect a new one.
    let old = cluster.index_of(&leader).unwrap();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let killed_at = tokio::time::Instant::now();
    cluster.servers[old].kill9();
    let new_leader = cluster
        .wait_leader(&survivors, Some(&leader))
        .await
        .unwrap();
    let took = killed_at.elapsed();
    eprintln!("cluster: leader kill -9 -> new leader {new_leader} in {took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    let (status, body) = cluster.servers[survivors[0]]
        .put("/v1/kv/config/db", "pg://two")
        .await
        .unwrap();
    assert_eq!((status, body.trim()), (200, "true"));

    // The old leader restarts with its data (still -bootstrap-expect 3), catches up and
    // rejoins the same cluster rather than bootstrapping another.
    cluster.servers[old].restart().await.unwrap();
    assert_eventually!(
        kv_stale(&cluster.servers[old], "config/db")
            .await
            .as_deref()
            == Some("pg://two"),
        "the restarted server caught up"
    );
    cluster.wait_leader(&[0, 1, 2], None).await.unwrap();
    assert!(
        cluster.servers[old]
            .logs()
            .contains("ignoring -bootstrap-expect"),
        "a server with data does not bootstrap again"
    );
    assert_eq!(raft_servers(&cluster.servers[old]).await.len(), 3);

    // Leadership moves on request.
    let before = cluster.wait_leader(&[0, 1, 2], None).await.unwrap();
    let out = cluster.servers[0]
        .cli(&["operator", "raft", "transfer-leader"])
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.trim(), "Success: true");
    let after = cluster
        .wait_leader(&[0, 1, 2], Some(&before))
        .await
        .unwrap();
    eprintln!("cluster: transfer-leader {before} -> {after}");

    // Autopilot sees three healthy voters.
    assert_eventually!(
        matches!(
            cluster.servers[1].get_json("/v1/operator/autopilot/health").await,
            Ok((200, _, h)) if h["Healthy"] == true && h["FailureTolerance"] == 1
        ),
        "three healthy servers: {:?}",
        cluster.servers[1]
            .get_json("/v1/operator/autopilot/health")
            .await
    );

    // Promote quickly: autopilot's stabilization time through the API (with CAS).
    let (_, _, config) = cluster.servers[0]
        .get_json("/v1/operator/autopilot/configuration")
        .await
        .unwrap();
    assert_eq!(config["CleanupDeadServers"], true, "{config}");
    let mut fast = config.clone();
    fast["ServerStabilizationTime"] = "1s".into();
    let cas = config["ModifyIndex"].as_u64().unwrap_or(0);
    let (status, body) = cluster.servers[0]
        .put(
            &format!("/v1/operator/autopilot/configuration?cas={cas}"),
            fast.to_string(),
        )
        .await
        .unwrap();
    assert_eq!((status, body.trim()), (200, "true"));

    // A 4th server joins as a learner and becomes a voter.
    let ip4 = TestCluster::ip(NET, 3).to_string();
    let fourth = AgentSpec::at("s4", TestCluster::ip(NET, 3))
        .args(&[
            "-server",
            "-retry-join",
            &TestCluster::ip(NET, 0).to_string(),
        ])
        .args(&["-retry-interval", "1s"])
        .no_wait();
    let mut fourth = TestAgent::launch(fourth).await.unwrap();
    let addr4 = format!("{ip4}:8300");
    assert_eventually!(
        @timeout Duration::from_secs(60),
        raft_servers(&cluster.servers[0]).await.contains(&(addr4.clone(), true)),
        "the 4th server became a voter: {:?}",
        raft_servers(&cluster.servers[0]).await
    );
    assert_eventually!(
        kv_stale(&fourth, "config/db").await.as_deref() == Some("pg://two"),
        "the 4th server has the data"
    );

    // With four voters, a failed one is cleaned up (fewer than half failed); it comes back
    // as a new server when it restarts.
    let leader = cluster.wait_leader(&[0, 1, 2], None).await.unwrap();
    let victim = (0..3)
        .find(|&i| Some(i) != cluster.index_of(&leader))
        .unwrap();
    let victim_addr = format!("{}:8300", TestCluster::ip(NET, victim));
    let live: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    cluster.servers[victim].kill9();
    assert_eventually!(
        @timeout Duration::from_secs(60),
        !raft_servers(&cluster.servers[live[0]]).await.iter().any(|(a, _)| *a == victim_addr),
        "dead-server cleanup removed {victim_addr}: {:?}",
        raft_servers(&cluster.servers[live[0]]).await
    );

    // `concord leave` on it removes it from the Raft configuration.
    let out = fourth.cli(&["leave"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An empty list is a failed read (the configuration always has members), not a leave.
    assert_eventually!(
        @timeout Duration::from_secs(60),
        {
            let servers = raft_servers(&cluster.servers[live[0]]).await;
            !servers.is_empty() && !servers.iter().any(|(a, _)| *a == addr4)
        },
        "the 4th server left the configuration: {:?}",
        raft_servers(&cluster.servers[live[0]]).await
    );
    fourth.kill9();
    assert_eventually!(
        raft_servers(&cluster.servers[live[0]])
            .await
            .iter()
            .filter(|(_, v)| *v)
            .count()
            == 2,
        "two voters remain: {:?}",
        raft_servers(&cluster.servers[live[0]]).await
    );

    // The cleaned-up server restarts with its old data and is added back.
    cluster.servers[victim].restart().await.unwrap();
    assert_eventually!(
        @timeout Duration::from_secs(60),
        raft_servers(&cluster.servers[live[0]]).await.contains(&(victim_addr.clone(), true)),
        "{victim_addr} is a voter again: {:?}",
        raft_servers(&cluster.servers[live[0]]).await
    );
    let (status, body) = cluster.servers[victim]
        .put("/v1/kv/config/db", "pg://three")
        .await
        .unwrap();
    assert_eq!((status, body.trim()), (200, "true"));
    for s in &cluster.servers {
        assert_eventually!(
            kv_stale(s, "config/db").await.as_deref() == Some("pg://three"),
            "{} has the last write",
            s.node
        );
    }
}

/// The autopilot test's loopback network, 127.0.48.x.
const NET_AUTOPILOT: u8 = 48;

/// `GET /v1/operator/autopilot/configuration` through `agent` (`?stale`: its server's own
/// copy).
async fn autopilot_config(agent: &TestAgent) -> serde_json::Value {
    match agent
        .get_json("/v1/operator/autopilot/configuration?stale")
        .await
    {
        Ok((200, _, v)) => v,
        other => panic!("autopilot configuration: {other:?}"),
    }
}

/// Autopilot's settings are a Raft command: a `PUT` through one server is what another
/// reads, `?cas=` refuses a stale index, and after `kill -9` of the leader the new leader
/// runs with them: with a one-hour stabilization time a new server that has been healthy
/// for well over the default 10 s stays a learner, until the setting is shortened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autopilot_settings_are_replicated_and_survive_leader_loss() {
    init_tracing();
    let mut cluster = TestCluster::start(NET_AUTOPILOT, 3).await.unwrap();
    let leader = cluster.wait_leader(&[0, 1, 2], None).await.unwrap();
    let old = cluster.index_of(&leader).unwrap();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let (writer, reader) = (survivors[0], survivors[1]);

    let config = autopilot_config(&cluster.servers[writer]).await;
    assert_eq!(config["ServerStabilizationTime"], "10s", "{config}");
    let cas = config["ModifyIndex"].as_u64().unwrap();
    let mut slow = config.clone();
    slow["ServerStabilizationTime"] = "1h".into();
    slow["MaxTrailingLogs"] = 777.into();
    let path = format!("/v1/operator/autopilot/configuration?cas={cas}");
    let put = cluster.servers[writer]
        .put(&path, slow.to_string())
        .await
        .unwrap();
    assert_eq!((put.0, put.1.trim()), (200, "true"));
    let again = cluster.servers[reader]
        .put(&path, slow.to_string())
        .await
        .unwrap();
    assert_eq!((again.0, again.1.trim()), (200, "false"), "a stale ?cas=");
    assert_eventually!(
        autopilot_config(&cluster.servers[reader]).await["MaxTrailingLogs"] == 777,
        "another server reads the setting: {}",
        autopilot_config(&cluster.servers[reader]).await
    );
    let stored = autopilot_config(&cluster.servers[reader]).await;
    assert!(stored["ModifyIndex"].as_u64().unwrap() > cas, "{stored}");

    // The leader dies; the new one reads and applies the same settings.
    cluster.servers[old].kill9();
    let new_leader = cluster
        .wait_leader(&survivors, Some(&leader))
        .await
        .unwrap();
    let new = cluster.index_of(&new_leader).unwrap();
    let on_new = autopilot_config(&cluster.servers[new]).await;
    assert_eq!(on_new["MaxTrailingLogs"], 777, "{on_new}");
    assert_eq!(
        on_new["ServerStabilizationTime"],
        stored["ServerStabilizationTime"]
    );

    let ip4 = TestCluster::ip(NET_AUTOPILOT, 3);
    let fourth = AgentSpec::at("s4", ip4)
        .args(&[
            "-server",
            "-retry-join",
            &TestCluster::ip(NET_AUTOPILOT, new).to_string(),
        ])
        .args(&["-retry-interval", "1s"])
        .no_wait();
    let _fourth = TestAgent::launch(fourth).await.unwrap();
    let addr4 = format!("{ip4}:8300");
    let healthy4 = || async {
        match cluster.servers[new]
            .get_json("/v1/operator/autopilot/health")
            .await
        {
            // 429 while any server is unhealthy (the dead old leader), with the same body.
            Ok((200 | 429, _, h)) => h["Servers"].as_array().is_some_and(|list| {
                list.iter()
                    .any(|s| s["Address"] == addr4.as_str() && s["Healthy"] == true)
            }),
            _ => false,
        }
    };
    assert_eventually!(
        @timeout Duration::from_secs(60),
        healthy4().await,
        "the 4th server joined and is healthy: {:?}",
        cluster.servers[new]
            .get_json("/v1/operator/autopilot/health")
            .await
    );
    // Healthy for 15 s (the default stabilization is 10 s) and still not a voter.
    let healthy_since = tokio::time::Instant::now();
    while healthy_since.elapsed() < Duration::from_secs(15) {
        let servers = raft_servers(&cluster.servers[new]).await;
        assert!(
            !servers.contains(&(addr4.clone(), true)),
            "promoted despite the one-hour stabilization time: {servers:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        raft_servers(&cluster.servers[new])
            .await
            .contains(&(addr4.clone(), false)),
        "the 4th server is a learner"
    );
    // The control: a short stabilization time through the new leader promotes it.
    let mut fast = autopilot_config(&cluster.servers[new]).await;
    fast["ServerStabilizationTime"] = "1s".into();
    let put = cluster.servers[new]
        .put("/v1/operator/autopilot/configuration", fast.to_string())
        .await
        .unwrap();
    assert_eq!((put.0, put.1.trim()), (200, "true"));
    assert_eventually!(
        @timeout Duration::from_secs(60),
        raft_servers(&cluster.servers[new]).await.contains(&(addr4.clone(), true)),
        "promoted once the stabilization time is short: {:?}",
        raft_servers(&cluster.servers[new]).await
    );
}
