//! LAN gossip membership with real processes: agents on distinct loopback addresses with
//! Consul's default ports find each other, notice a `kill -9` (and the leader marks the
//! node's `serfHealth` critical), welcome it back, let a member leave gracefully, deliver user
//! events to exactly the matching nodes, refuse members without the gossip key, survive a
//! key rotation, and notice a real network partition (network namespaces) and its healing.
//!
//! Client agents run Consul's LAN timings (probe every 1 s, suspicion 4 probe intervals,
//! down to 1 once two other members' probes failed too), so
//! the failure detection times printed here are what a default deployment sees; they are
//! recorded in `docs/operations.md`.
//!
//! Each test uses its own addresses (127.0.0.2-6, 127.0.0.12-15, and private namespaces), so
//! the tests of this binary run in parallel.

// Test helpers outside #[test] functions may unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::Duration;

use concord_integration::netns::{self, Lan};
use concord_integration::{assert_eventually, init_tracing, AgentSpec, TestAgent};
use serde_json::Value;
use tokio::time::Instant;

/// Bound on everything gossip should achieve (all-see-all, failure noticed, rejoin). Generous
/// for 2 shared cores; the measured times are printed.
const BOUND: Duration = Duration::from_secs(30);

/// Serf's status numbers in `/v1/agent/members`.
const ALIVE: u64 = 1;
const LEFT: u64 = 3;
const FAILED: u64 = 4;

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Starts all specs at once (each waits until registered in the catalog).
async fn launch_all(specs: Vec<AgentSpec>) -> Vec<TestAgent> {
    let tasks: Vec<_> = specs
        .into_iter()
        .map(|spec| tokio::spawn(TestAgent::launch(spec)))
        .collect();
    let mut agents = Vec::new();
    for task in tasks {
        agents.push(task.await.unwrap().unwrap());
    }
    agents
}

/// Name to status, as `agent` reports its pool.
async fn members(agent: &TestAgent) -> Vec<(String, u64)> {
    let Ok((200, _, Value::Array(list))) = agent.get_json("/v1/agent/members").await else {
        return Vec::new();
    };
    let mut out: Vec<(String, u64)> = list
        .iter()
        .map(|m| {
            let name = m["Name"].as_str().unwrap_or_default().to_string();
            (name, m["Status"].as_u64().unwrap_or(0))
        })
        .collect();
    out.sort();
    out
}

/// Whether `agent` sees `node` with `status`.
async fn sees(agent: &TestAgent, node: &str, status: u64) -> bool {
    members(agent)
        .await
        .iter()
        .any(|(n, s)| n == node && *s == status)
}

/// The `serfHealth` status of `node` in the catalog, as `agent` reads it.
async fn serf_health(agent: &TestAgent, node: &str) -> Option<String> {
    let (code, _, checks) = agent
        .get_json(&format!("/v1/health/node/{node}"))
        .await
        .ok()?;
    if code != 200 {
        return None;
    }
    checks.as_array()?.iter().find_map(|c| {
        (c["CheckID"] == "serfHealth").then(|| c["Status"].as_str().unwrap_or_default().to_string())
    })
}

/// How many instances of `service` pass their checks (node checks included), as `agent`
/// reads the catalog.
async fn passing_instances(agent: &TestAgent, service: &str) -> usize {
    let path = format!("/v1/health/service/{service}?passing");
    match agent.get_json(&path).await {
        Ok((200, _, Value::Array(list))) => list.len(),
        _ => usize::MAX,
    }
}

/// Bound on a partition's healing: members retry failed members every `reconnect_interval`
/// (10 s with LAN timings, Serf's reconnect), each with probability failed/alive, so a tick
/// may pass with no attempt. The simulation (`net`'s gossip tests) heals 5 members in 0.9 s
/// to 22.5 s; this bound leaves room for two idle ticks plus a loaded CI machine.
const HEAL_BOUND: Duration = Duration::from_secs(45);

/// Waits until `cond` holds for every agent in `agents`; returns how long it took.
async fn until_all<'a, F, Fut>(agents: &'a [&'a TestAgent], what: &str, cond: F) -> Duration
where
    F: Fn(&'a TestAgent) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    until_all_within(BOUND, agents, what, cond).await
}

/// [`until_all`] within `bound`.
async fn until_all_within<'a, F, Fut>(
    bound: Duration,
    agents: &'a [&'a TestAgent],
    what: &str,
    cond: F,
) -> Duration
where
    F: Fn(&'a TestAgent) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    for agent in agents {
        assert_eventually!(@timeout bound.saturating_sub(start.elapsed()), cond(agent).await,
            "{what} (on {}); logs:\n{}", agent.node, agent.logs());
    }
    start.elapsed()
}

/// Fires a user event through `agent` (`query`: name and filters); returns its ID.
async fn fire(agent: &TestAgent, query: &str) -> String {
    let path = format!("/v1/event/fire/{query}");
    let (code, body) = agent.put(&path, "payload").await.unwrap();
    assert_eq!(code, 200, "{path}: {body}");
    let event: Value = serde_json::from_str(&body).unwrap();
    event["ID"].as_str().unwrap().to_string()
}

/// A fresh gossip key from `concord keygen`.
fn keygen() -> String {
    let out = std::process::Command::new(concord_integration::concord_bin())
        .arg("keygen")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Runs `concord keyring FLAG KEY` against the first agent of `pool`, then waits until
/// `done` holds for every agent's own `/v1/operator/keyring` answer.
async fn keyring_step(pool: &[&TestAgent], flag: &str, key: &str, done: fn(&Value, &str) -> bool) {
    let out = pool[0].cli(&["keyring", flag, key]).unwrap();
    assert!(
        out.status.success(),
        "keyring {flag}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for agent in pool {
        let (_, _, list) = agent.get_json("/v1/operator/keyring").await.unwrap();
        assert!(
            done(&list[0], key),
            "keyring {flag} not yet applied on {} when the command returned: {list}\n{}",
            agent.node,
            keyring_log(agent)
        );
    }
}

/// The keyring lines of an agent's log.
fn keyring_log(agent: &TestAgent) -> String {
    let logs = agent.logs();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains("keyring")).collect();
    lines.join("\n")
}

/// Ids of the events named `name` in `agent`'s event list.
async fn event_ids(agent: &TestAgent, name: &str) -> Vec<String> {
    let Ok((200, _, Value::Array(list))) =
        agent.get_json(&format!("/v1/event/list?name={name}")).await
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|e| e["ID"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_agents_join_fail_return_leave_and_get_events() {
    init_tracing();
    let names = ["ma", "mb", "mc", "md", "me"];
    let server = AgentSpec::at(names[0], loopback(2)).args(&["-server", "-bootstrap-expect", "1"]);
    let mut agents = launch_all(vec![server]).await;
    let join = loopback(2).to_string();
    let clients = (1..5)
        .map(|i| {
            AgentSpec::at(names[i], loopback(2 + i as u8)).args(&[
                "-retry-join",
                &join,
                "-retry-interval",
                "1s",
            ])
        })
        .collect();
    let started = Instant::now();
    agents.extend(launch_all(clients).await);

    tracing::info!("every agent sees all five alive; the catalog has each with serfHealth passing");
    let all: Vec<&TestAgent> = agents.iter().collect();
    until_all(&all, "all five alive", |a| async move {
        let m = members(a).await;
        m.len() == 5 && m.iter().all(|(_, s)| *s == ALIVE)
    })
    .await;
    for name in names {
        assert_eventually!(
            serf_health(&agents[0], name).await.as_deref() == Some("passing"),
            "serfHealth of {name} passing"
        );
    }
    let converged = started.elapsed();
    eprintln!("membership: 5 agents converged {converged:?} after the clients started");

    tracing::info!("a service on me is in passing health queries");
    let (code, body) = agents[4]
        .put("/v1/agent/service/register", r#"{"Name":"db","Port":5432}"#)
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eventually!(
        passing_instances(&agents[0], "db").await == 1,
        "db on me passing"
    );

    tracing::info!("kill -9 of me: everyone else reports it failed, its serfHealth goes critical");
    agents[4].kill9();
    let killed = Instant::now();
    let others: Vec<&TestAgent> = agents[..4].iter().collect();
    let all_failed = until_all(&others, "me failed", |a| sees(a, "me", FAILED)).await;
    let first_critical = {
        assert_eventually!(@timeout BOUND,
            serf_health(&agents[0], "me").await.as_deref() == Some("critical"),
            "serfHealth of me critical");
        killed.elapsed()
    };
    eprintln!(
        "membership: kill -9 noticed by all 4 others in {all_failed:?}; serfHealth critical in the catalog {first_critical:?} after the kill"
    );
    let (_, _, node) = agents[0].get_json("/v1/catalog/node/me").await.unwrap();
    assert!(!node.is_null(), "a failed node stays in the catalog");
    let (_, _, checks) = agents[0].get_json("/v1/health/node/me").await.unwrap();
    let serf = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["CheckID"] == "serfHealth")
        .unwrap();
    assert_eq!(serf["Output"], "Agent not live or unreachable");
    assert_eq!(serf["Name"], "Serf Health Status");

    assert_eq!(
        passing_instances(&agents[0], "db").await,
        0,
        "a failed node's services leave passing health queries"
    );

    tracing::info!("restarted, it is alive again everywhere and passing");
    let restarted = Instant::now();
    agents[4].restart().await.unwrap();
    let all: Vec<&TestAgent> = agents.iter().collect();
    until_all(&all, "me alive again", |a| sees(a, "me", ALIVE)).await;
    assert_eventually!(
        serf_health(&agents[0], "me").await.as_deref() == Some("passing"),
        "serfHealth of me passing again"
    );
    assert_eventually!(
        passing_instances(&agents[0], "db").await == 1,
        "db on me passing again (the agent kept its registration)"
    );
    eprintln!(
        "membership: restarted agent alive everywhere and passing {:?} after the restart began",
        restarted.elapsed()
    );

    tracing::info!("events reach exactly the matching nodes, once");
    let (code, body) = agents[2]
        .put(
            "/v1/agent/service/register",
            r#"{"Name":"web","Tags":["blue"],"Port":80}"#,
        )
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let all_id = fire(&agents[1], "deploy").await;
    let node_id = fire(&agents[1], "bynode?node=m[cd]").await;
    let svc_id = fire(&agents[3], "bysvc?service=web&tag=blue").await;
    fire(&agents[3], "bytag?service=web&tag=green").await;
    until_all(&all, "the unfiltered event everywhere", |a| {
        let id = all_id.clone();
        async move { event_ids(a, "deploy").await == [id] }
    })
    .await;
    let matching = [&agents[2], &agents[3]];
    until_all(&matching, "the node-filtered event on mc and md", |a| {
        let id = node_id.clone();
        async move { event_ids(a, "bynode").await == [id] }
    })
    .await;
    until_all(&[&agents[2]], "the service-filtered event on mc", |a| {
        let id = svc_id.clone();
        async move { event_ids(a, "bysvc").await == [id] }
    })
    .await;
    // A last unfiltered event, fired after the others: once it is everywhere, the filtered
    // ones have had their chance, so their absence elsewhere means they were filtered.
    let marker = fire(&agents[3], "marker").await;
    until_all(&all, "the marker everywhere", |a| {
        let id = marker.clone();
        async move { event_ids(a, "marker").await == [id] }
    })
    .await;
    for (i, agent) in agents.iter().enumerate() {
        let by_node = event_ids(agent, "bynode").await;
        let by_svc = event_ids(agent, "bysvc").await;
        assert_eq!(
            by_node.len(),
            usize::from(i == 2 || i == 3),
            "{}: {by_node:?}",
            agent.node
        );
        assert_eq!(
            by_svc.len(),
            usize::from(i == 2),
            "{}: {by_svc:?}",
            agent.node
        );
        assert!(
            event_ids(agent, "bytag").await.is_empty(),
            "tag filter on {}",
            agent.node
        );
        assert_eq!(
            event_ids(agent, "deploy").await,
            std::slice::from_ref(&all_id),
            "once, on {}",
            agent.node
        );
    }

    tracing::info!("md leaves gracefully: left everywhere, and gone from the catalog");
    let (code, body) = agents[3].put("/v1/agent/leave", "").await.unwrap();
    assert_eq!(code, 200, "leave: {body}");
    let stayers: Vec<&TestAgent> = [0, 1, 2, 4].iter().map(|&i| &agents[i]).collect();
    until_all(&stayers, "md left", |a| sees(a, "md", LEFT)).await;
    assert_eventually!(
        agents[0]
            .get_json("/v1/catalog/node/md")
            .await
            .unwrap()
            .2
            .is_null(),
        "md deregistered"
    );
    assert_eventually!(!agents[3].is_running(), "md exited after leaving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_key_is_required_and_rotation_keeps_the_pool() {
    init_tracing();
    let (k1, k2) = (keygen(), keygen());
    let seed = loopback(12).to_string();
    let server = AgentSpec::at("ka", loopback(12)).args(&[
        "-server",
        "-bootstrap-expect",
        "1",
        "-encrypt",
        &k1,
    ]);
    let server = launch_all(vec![server]).await.remove(0);
    assert_ne!(k1, k2);
    let member = AgentSpec::at("kb", loopback(13)).args(&[
        "-encrypt",
        &k1,
        "-retry-join",
        &seed,
        "-retry-interval",
        "1s",
    ]);
    let member = launch_all(vec![member]).await.remove(0);
    assert_eventually!(sees(&server, "kb", ALIVE).await, "kb joined with the key");

    tracing::info!("members without the key, or with another key, are refused");
    let plain = AgentSpec::at("kc", loopback(14)).no_wait();
    let wrong = AgentSpec::at("kd", loopback(15))
        .args(&["-encrypt", &k2])
        .no_wait();
    let outsiders = launch_all(vec![plain, wrong]).await;
    for outsider in &outsiders {
        let (code, body) = outsider
            .put(&format!("/v1/agent/join/{seed}"), "")
            .await
            .unwrap();
        assert_ne!(
            code, 200,
            "{} joined without the right key: {body}",
            outsider.node
        );
        assert!(
            !members(&server)
                .await
                .iter()
                .any(|(n, _)| *n == outsider.node),
            "the server lists {}",
            outsider.node
        );
    }

    tracing::info!("rotation with the CLI: install k2, use it, remove k1");
    // As Consul's, each keyring command returns only once every alive member reports the new
    // state, so the steps run back to back and each is already visible everywhere on return.
    let pool = [&server, &member];
    keyring_step(&pool, "-install", &k2, |e, k| e["Keys"].get(k).is_some()).await;
    keyring_step(&pool, "-use", &k2, |e, k| e["PrimaryKeys"].get(k).is_some()).await;
    keyring_step(&pool, "-remove", &k1, |e, k| e["Keys"].get(k).is_none()).await;
    let out = member.cli(&["keyring", "-list"]).unwrap();
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(listed.contains(&k2) && !listed.contains(&k1), "{listed}");

    tracing::info!("the pool is whole on k2 alone: kd (k2 only) joins and both old members see it");
    let (code, body) = outsiders[1]
        .put(&format!("/v1/agent/join/{seed}"), "")
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    for agent in [&server, &member, &outsiders[1]] {
        assert_eventually!(@timeout BOUND,
            sees(agent, "kd", ALIVE).await && sees(agent, "kb", ALIVE).await && sees(agent, "ka", ALIVE).await,
            "ka, kb, kd alive as {} sees it: {:?}", agent.node, members(agent).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_marks_the_cut_off_member_failed_and_healing_restores_it() {
    init_tracing();
    if !netns::available("the partition test") {
        return;
    }
    // CONCORD_NETNS_PREFIX names the namespaces (a shared machine may reserve a prefix).
    let lan = match std::env::var("CONCORD_NETNS_PREFIX") {
        Ok(prefix) => Lan::on(&format!("{prefix}{}p", std::process::id()), [10, 99, 0], 3),
        Err(_) => Lan::new("p", 3),
    }
    .unwrap();
    let seed = lan.ip(0).to_string();
    let server = AgentSpec::at("pa", lan.ip(0)).netns(lan.ns(0)).args(&[
        "-server",
        "-bootstrap-expect",
        "1",
    ]);
    let mut agents = launch_all(vec![server]).await;
    let clients = (1..3)
        .map(|i| {
            AgentSpec::at(&format!("p{}", ["a", "b", "c"][i]), lan.ip(i))
                .netns(lan.ns(i))
                .args(&["-retry-join", &seed, "-retry-interval", "1s"])
        })
        .collect();
    agents.extend(launch_all(clients).await);
    let all: Vec<&TestAgent> = agents.iter().collect();
    until_all(&all, "all three alive", |a| async move {
        let m = members(a).await;
        m.len() == 3 && m.iter().all(|(_, s)| *s == ALIVE)
    })
    .await;

    tracing::info!("cut pc off: the others see it failed, its serfHealth goes critical");
    lan.cut(2).unwrap();
    let cut = Instant::now();
    let rest: Vec<&TestAgent> = agents[..2].iter().collect();
    let noticed = until_all(&rest, "pc failed", |a| sees(a, "pc", FAILED)).await;
    assert_eventually!(@timeout BOUND,
        serf_health(&agents[0], "pc").await.as_deref() == Some("critical"),
        "serfHealth of pc critical");
    eprintln!(
        "membership: partition noticed by both others in {noticed:?}; serfHealth critical {:?} after the cut",
        cut.elapsed()
    );

    tracing::info!("heal: pc is alive again everywhere and passing");
    lan.heal(2).unwrap();
    let healed = Instant::now();
    until_all_within(HEAL_BOUND, &all, "pc alive again", |a| async move {
        let m = members(a).await;
        m.len() == 3 && m.iter().all(|(_, s)| *s == ALIVE)
    })
    .await;
    assert_eventually!(@timeout BOUND,
        serf_health(&agents[0], "pc").await.as_deref() == Some("passing"),
        "serfHealth of pc passing again");
    eprintln!("membership: partition healed in {:?}", healed.elapsed());
    drop(agents);
    drop(lan);
}
