//! Descriptors, slow clients and greedy clients.

use std::time::Duration;

use concord_integration::{assert_eventually, init_tracing, TestAgent};
use tokio::io::AsyncWriteExt;

use super::{closed, connect_from, dev_with_config, get_status};

/// `Max open files` soft and hard limits from `/proc/<pid>/limits`.
fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_string(), fields[4].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_open_files_limit_is_raised_to_the_hard_limit() {
    init_tracing();
    tracing::info!("start the agent with a soft limit below the hard one (children inherit it)");
    let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
    let lowered = (hard / 2).max(1024).min(hard);
    if lowered < hard {
        rlimit::Resource::NOFILE.set(lowered, hard).unwrap();
    }
    let agent = TestAgent::dev().await;
    if lowered < hard {
        rlimit::Resource::NOFILE.set(soft, hard).unwrap();
    }
    let agent = agent.unwrap();
    let (agent_soft, agent_hard) = open_files_limits(agent.pid().unwrap());
    assert_eq!(agent_soft, agent_hard, "{}", agent.logs());
    assert_eq!(agent_hard, hard.to_string());
    assert!(
        agent.logs().contains("open files limit"),
        "both limits are logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_do_not_stop_a_normal_client() {
    init_tracing();
    let (agent, _config) = dev_with_config(r#"{"limits":{"http_read_header_timeout":"3s"}}"#).await;
    tracing::info!("2,000 connections from 10 addresses each send half a request head");
    let mut slow = Vec::new();
    for i in 0..2000u32 {
        let host = 2 + u8::try_from(i % 10).unwrap();
        let mut s = connect_from(host, agent.http).await.unwrap();
        s.write_all(b"GET /v1/kv/x HTTP/1.1\r\nhost: ag")
            .await
            .unwrap();
        slow.push(s);
    }
    tracing::info!("a normal client is served meanwhile");
    let mut normal = connect_from(1, agent.http).await.unwrap();
    let status = tokio::time::timeout(
        Duration::from_secs(5),
        get_status(&mut normal, "/v1/status/leader"),
    )
    .await
    .unwrap();
    assert_eq!(status, Some(200), "{}", agent.logs());
    tracing::info!("and every slow connection is closed once the header timeout passes");
    for s in &mut slow {
        assert!(
            tokio::time::timeout(Duration::from_secs(20), closed(s))
                .await
                .unwrap(),
            "a half-sent head was kept open"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_per_client_cap_are_refused_while_others_are_served() {
    init_tracing();
    let (agent, _config) = dev_with_config(r#"{"limits":{"http_max_conns_per_client":20}}"#).await;
    tracing::info!("127.0.0.2 opens its 20 connections (each served once, then kept)");
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = connect_from(2, agent.http).await.unwrap();
        assert_eq!(get_status(&mut s, "/v1/status/leader").await, Some(200));
        held.push(s);
    }
    tracing::info!("its 21st is closed unanswered");
    let mut extra = connect_from(2, agent.http).await.unwrap();
    assert_eq!(get_status(&mut extra, "/v1/status/leader").await, None);
    tracing::info!("127.0.0.3 is served");
    let mut other = connect_from(3, agent.http).await.unwrap();
    assert_eq!(get_status(&mut other, "/v1/status/leader").await, Some(200));
    tracing::info!("once 127.0.0.2 closes one, it may open another");
    drop(held.pop());
    assert_eventually!(
        {
            let mut s = connect_from(2, agent.http).await.unwrap();
            get_status(&mut s, "/v1/status/leader").await == Some(200)
        },
        "a freed slot was not given back"
    );
}

/// Open descriptors of a process.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_queries_cost_one_descriptor_each_and_none_after() {
    init_tracing();
    let (agent, _config) = dev_with_config(r#"{"limits":{"http_max_conns_per_client":0}}"#).await;
    let pid = agent.pid().unwrap();
    let (_, index, _) = agent.get_json("/v1/kv/watched").await.unwrap();
    let idle = descriptors(pid);
    tracing::info!(
        idle,
        "park 300 blocking queries, each on its own connection"
    );
    let mut watchers = Vec::new();
    for _ in 0..300 {
        let mut s = connect_from(2, agent.http).await.unwrap();
        let request =
            format!("GET /v1/kv/watched?index={index}&wait=5m HTTP/1.1\r\nhost: agent\r\n\r\n");
        s.write_all(request.as_bytes()).await.unwrap();
        watchers.push(s);
    }
    tracing::info!("the agent holds one descriptor per watcher (no loopback pair to its server)");
    assert_eventually!(
        descriptors(pid) >= idle + 300,
        "the watchers' connections were not all accepted"
    );
    let parked = descriptors(pid);
    assert!(
        parked < idle + 300 + 20,
        "{parked} descriptors for 300 parked queries (idle {idle})"
    );
    tracing::info!("one write wakes them all; once they leave, descriptors are back to idle");
    let (code, _) = agent.put("/v1/kv/watched", "1").await.unwrap();
    assert_eq!(code, 200);
    for s in &mut watchers {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(
            Duration::from_secs(20),
            tokio::io::AsyncReadExt::read(s, &mut buf),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    }
    drop(watchers);
    assert_eventually!(
        descriptors(pid) <= idle + 2,
        "descriptors stayed up after the watchers left: {} (idle {idle})",
        descriptors(pid)
    );
}
