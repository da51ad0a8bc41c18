//! The DNS interface of a real agent, queried over UDP and TCP with a real DNS client
//! (and with `dig`; without it that test skips, or fails when `CI` is set).

// Test helpers outside #[test] functions may unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};

use concord_integration::dns::{query, Transport};
use concord_integration::{assert_eventually, init_tracing, tools, TestAgent};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use serde_json::json;

async fn register(agent: &TestAgent, body: serde_json::Value) {
    let (code, text) = agent
        .put("/v1/agent/service/register", body.to_string())
        .await
        .unwrap();
    assert_eq!(code, 200, "{text}");
}

fn a_records(msg: &hickory_proto::op::Message) -> Vec<IpAddr> {
    msg.answers()
        .iter()
        .filter_map(|r| match r.data() {
            Some(RData::A(a)) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_resolve_over_udp_and_tcp() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    register(
        &agent,
        json!({"ID": "web1", "Name": "web", "Port": 8080, "Tags": ["v1"], "Address": "10.0.0.1",
        "Check": {"TTL": "1h", "Status": "passing"}}),
    )
    .await;
    register(
        &agent,
        json!({"ID": "web2", "Name": "web", "Port": 8081, "Tags": ["v2"], "Address": "10.0.0.2",
        "Check": {"TTL": "1h", "Status": "passing"}}),
    )
    .await;
    register(
        &agent,
        json!({"ID": "web3", "Name": "web", "Port": 8082, "Address": "10.0.0.3",
        "Check": {"CheckID": "web3-ttl", "TTL": "1h", "Status": "passing"}}),
    )
    .await;

    tracing::info!("the agent's DNS cache catches up with the catalog");
    assert_eventually!(
        a_records(
            &query(
                agent.dns,
                Transport::Udp,
                "web.service.consul.",
                RecordType::A
            )
            .await
            .unwrap()
        )
        .len()
            == 3,
        "DNS never saw the three instances"
    );

    for transport in [Transport::Udp, Transport::Tcp] {
        tracing::info!(
            ?transport,
            "A, tag filter, datacenter label, SRV with additional A"
        );
        let msg = query(agent.dns, transport, "web.service.consul.", RecordType::A)
            .await
            .unwrap();
        assert_eq!(msg.response_code(), ResponseCode::NoError);
        assert!(msg.authoritative());
        let msg = query(
            agent.dns,
            transport,
            "v1.web.service.consul.",
            RecordType::A,
        )
        .await
        .unwrap();
        assert_eq!(
            a_records(&msg),
            vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))]
        );
        let msg = query(
            agent.dns,
            transport,
            "web.service.dc1.consul.",
            RecordType::A,
        )
        .await
        .unwrap();
        assert_eq!(a_records(&msg).len(), 3);
        let msg = query(
            agent.dns,
            transport,
            "_web._v2.service.consul.",
            RecordType::SRV,
        )
        .await
        .unwrap();
        let srv: Vec<_> = msg
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                Some(RData::SRV(s)) => Some(s.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(srv.len(), 1, "{msg:?}");
        assert_eq!(srv[0].port(), 8081);
        assert!(msg
            .additionals()
            .iter()
            .any(|r| matches!(r.data(), Some(RData::A(a)) if a.0 == Ipv4Addr::new(10, 0, 0, 2))));
        let msg = query(agent.dns, transport, "WEB.Service.Consul.", RecordType::SRV)
            .await
            .unwrap();
        assert_eq!(msg.answers().len(), 3, "names are case-insensitive");
    }

    tracing::info!("a critical instance drops out");
    agent
        .put("/v1/agent/check/fail/web3-ttl", "")
        .await
        .unwrap();
    assert_eventually!(
        a_records(
            &query(
                agent.dns,
                Transport::Udp,
                "web.service.consul.",
                RecordType::A
            )
            .await
            .unwrap()
        )
        .len()
            == 2,
        "critical instance still answered"
    );

    tracing::info!("node lookups, NXDOMAIN with SOA, wrong DC");
    let msg = query(
        agent.dns,
        Transport::Udp,
        &format!("{}.node.consul.", agent.node),
        RecordType::A,
    )
    .await
    .unwrap();
    assert_eq!(a_records(&msg), vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    for name in [
        "nope.service.consul.",
        "web.service.mars.consul.",
        "ghost.node.consul.",
    ] {
        let msg = query(agent.dns, Transport::Udp, name, RecordType::A)
            .await
            .unwrap();
        assert_eq!(msg.response_code(), ResponseCode::NXDomain, "{name}");
        assert!(
            msg.name_servers()
                .iter()
                .any(|r| r.record_type() == RecordType::SOA),
            "{name}: SOA in authority"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_truncate_on_udp_and_complete_on_tcp() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    for i in 0..20 {
        register(
            &agent,
            json!({"ID": format!("big{i}"), "Name": "big", "Port": 9000 + i,
            "Address": format!("10.1.0.{}", i + 1)}),
        )
        .await;
    }
    assert_eventually!(
        a_records(
            &query(
                agent.dns,
                Transport::Tcp,
                "big.service.consul.",
                RecordType::A
            )
            .await
            .unwrap()
        )
        .len()
            == 20,
        "TCP never returned all 20 instances"
    );
    tracing::info!("plain UDP (no EDNS) gets Consul's 3-answer limit, with TC set");
    let udp = concord_integration::dns::query_udp_no_edns(
        agent.dns,
        "big.service.consul.",
        RecordType::A,
    )
    .await
    .unwrap();
    assert!(udp.truncated(), "UDP answer trimmed without TC");
    assert_eq!(a_records(&udp).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_packets_do_not_break_dns() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for garbage in [&b"\x00"[..], b"hello world, not dns", &[0xff; 600]] {
        sock.send_to(garbage, agent.dns).await.unwrap();
    }
    let mut tcp = tokio::net::TcpStream::connect(agent.dns).await.unwrap();
    use tokio::io::AsyncWriteExt as _;
    tcp.write_all(b"\x00\x05abcde").await.unwrap();
    drop(tcp);
    let msg = query(
        agent.dns,
        Transport::Udp,
        "consul.service.consul.",
        RecordType::A,
    )
    .await
    .unwrap();
    assert_eq!(msg.response_code(), ResponseCode::NoError);
    assert_eq!(a_records(&msg), vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_resolves_services() {
    init_tracing();
    // .ci/run installs dnsutils; a developer machine may lack it (then this test skips).
    if !tools::require("dig", &["-v"], "the dig test") {
        return;
    }
    let agent = TestAgent::dev().await.unwrap();
    register(
        &agent,
        json!({"Name": "api", "Port": 7000, "Address": "10.9.9.9"}),
    )
    .await;
    let port = agent.dns.port().to_string();
    assert_eventually!(
        {
            let out = std::process::Command::new("dig")
                .args([
                    "@127.0.0.1",
                    "-p",
                    &port,
                    "api.service.consul",
                    "SRV",
                    "+tcp",
                ])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            text.contains("7000") && text.contains("10.9.9.9")
        },
        "dig never saw the SRV answer"
    );
    let out = std::process::Command::new("dig")
        .args(["@127.0.0.1", "-p", &port, "+short", "api.service.consul"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "10.9.9.9");
}
