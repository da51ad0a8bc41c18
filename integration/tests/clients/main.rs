//! The client-agent tier end to end (issue 14): three servers on `127.0.14.1..=3` and four
//! client agents on `127.0.14.11..=14`, each client with its own DNS on port 8600, all real
//! processes. Every wait is bounded and its measured time printed. `burst` runs a leader
//! change under a registration burst on its own addresses (`127.0.16.x`).

mod burst;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;

use concord_integration::dns::{query, Transport};
use concord_integration::{assert_eventually, init_tracing, AgentSpec, TestAgent, TestCluster};
use hickory_proto::rr::RecordType;
use serde_json::Value;

const NET: u8 = 14;
const SERVERS: usize = 3;
const DNS_PORT: u16 = 8600;

/// Bound for a registration or deregistration to show in another agent's DNS.
const PROPAGATION: Duration = Duration::from_secs(10);
/// Bound for a killed agent's services to leave passing health elsewhere (gossip failure
/// detection, then the leader marks serfHealth critical).
const FAILURE: Duration = Duration::from_secs(30);
/// Bound for anti-entropy to repair data the servers lost: well under the 60 s full-sync
/// interval, so only the resync watch can meet it.
const RESYNC: Duration = Duration::from_secs(20);

fn client_ip(i: u8) -> IpAddr {
    client_ip_in(NET, i)
}

fn client_ip_in(net: u8, i: u8) -> IpAddr {
    IpAddr::from([127, 0, net, 11 + i])
}

fn client_spec(name: &str, i: u8) -> AgentSpec {
    client_spec_in(NET, name, i)
}

fn client_spec_in(net: u8, name: &str, i: u8) -> AgentSpec {
    let mut spec = AgentSpec::at(name, client_ip_in(net, i)).args(&[
        "-retry-interval",
        "1s",
        "-dns-port",
        &DNS_PORT.to_string(),
    ]);
    for s in 0..SERVERS {
        spec = spec.args(&["-retry-join", &TestCluster::ip(net, s).to_string()]);
    }
    spec
}

fn dns_of(i: u8) -> SocketAddr {
    SocketAddr::new(client_ip(i), DNS_PORT)
}

/// A records the agent's DNS gives for `name` (0 on NXDOMAIN or any error).
async fn a_records(dns: SocketAddr, name: &str) -> usize {
    match query(dns, Transport::Udp, name, RecordType::A).await {
        Ok(m) => m.answers().len(),
        Err(_) => 0,
    }
}

/// Passing instances of `service` as `agent` reports them (`None` when the read fails).
async fn passing(agent: &TestAgent, service: &str) -> Option<usize> {
    let path = format!("/v1/health/service/{service}?passing");
    match agent.get_json(&path).await {
        Ok((200, _, Value::Array(rows))) => Some(rows.len()),
        _ => None,
    }
}

/// The `Age` of a `?cached` HIT (`None` for a miss, an error or no header).
async fn cached_age(agent: &TestAgent, url: &str) -> Option<u64> {
    let response = agent.client.get(url).send().await.ok()?;
    let headers = response.headers();
    if response.status() != 200 || headers.get("x-cache")? != "HIT" {
        return None;
    }
    headers.get("age")?.to_str().ok()?.parse().ok()
}

/// Registers a service on `agent` through its HTTP API.
async fn register(agent: &TestAgent, definition: &str) {
    let path = "/v1/agent/service/register";
    match agent.put(path, definition.to_string()).await {
        Ok((200, _)) => {}
        other => panic!("registering {definition} on {}: {other:?}", agent.node),
    }
}

/// Waits until `cond` holds (at most `bound`) and returns how long it took.
macro_rules! measure {
    ($bound:expr, $cond:expr, $($msg:tt)+) => {{
        let started = Instant::now();
        assert_eventually!(@timeout $bound, $cond, $($msg)+);
        started.elapsed()
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_sync_resolve_fail_restart_and_outlive_their_servers() {
    init_tracing();
    let mut cluster = TestCluster::start(NET, SERVERS).await.unwrap();
    let tasks: Vec<_> = ["ca", "cb", "cc", "cd"]
        .iter()
        .zip(0u8..)
        .map(|(name, i)| tokio::spawn(TestAgent::launch(client_spec(name, i))))
        .collect();
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await.unwrap().unwrap());
    }
    let (b, dns_b) = (1, dns_of(1));

    tracing::info!("a service registered on A resolves through B's and C's DNS");
    register(&clients[0], r#"{"Name":"web","Port":8080}"#).await;
    let on_b = measure!(
        PROPAGATION,
        a_records(dns_b, "web.service.consul").await == 1,
        "web on A resolves through B"
    );
    let on_c = measure!(
        PROPAGATION,
        a_records(dns_of(2), "web.service.consul").await == 1,
        "web on A resolves through C"
    );
    let on_d = measure!(
        PROPAGATION,
        a_records(dns_of(3), "web.service.consul").await == 1,
        "web on A resolves through D"
    );
    eprintln!(
        "clients: registration on A visible in B's DNS after {on_b:?}, C's after {on_c:?} \
         more, D's after {on_d:?} more"
    );

    tracing::info!("?cached on B: a MISS, then HITs kept current in the background");
    let url = clients[b].url("/v1/health/service/web?cached");
    let first = clients[b].client.get(&url).send().await.unwrap();
    assert_eq!(first.headers()["x-cache"], "MISS");
    let again = clients[b].client.get(&url).send().await.unwrap();
    assert_eq!(again.headers()["x-cache"], "HIT");
    assert_eq!(again.headers()["age"], "0");

    tracing::info!("a second service, deregistered: it leaves B's DNS");
    register(&clients[0], r#"{"Name":"tmp","Port":9}"#).await;
    let _ = measure!(
        PROPAGATION,
        a_records(dns_b, "tmp.service.consul").await == 1,
        "tmp resolves"
    );
    let (code, body) = clients[0]
        .put("/v1/agent/service/deregister/tmp", "")
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let gone = measure!(
        PROPAGATION,
        a_records(dns_b, "tmp.service.consul").await == 0,
        "tmp leaves B's DNS"
    );
    eprintln!("clients: deregistration on A gone from B's DNS after {gone:?}");

    tracing::info!("kill -9 of A: web leaves passing health and DNS on B");
    clients[0].kill9();
    let failed = measure!(
        FAILURE,
        passing(&clients[b], "web").await == Some(0),
        "web leaves passing health on B"
    );
    let failed_dns = measure!(
        PROPAGATION,
        a_records(dns_b, "web.service.consul").await == 0,
        "web leaves B's DNS"
    );
    assert_eventually!(
        a_records(dns_of(2), "web.service.consul").await == 0,
        "web leaves C's DNS"
    );
    eprintln!(
        "clients: kill -9 of A: web out of passing health on B after {failed:?}, out of DNS {failed_dns:?} later"
    );

    tracing::info!("A restarted on its data dir: web is back without re-registration");
    let restarted = Instant::now();
    clients[0].restart().await.unwrap();
    assert_eventually!(@timeout FAILURE, passing(&clients[b], "web").await == Some(1),
        "web passing again on B");
    assert_eventually!(@timeout PROPAGATION, a_records(dns_b, "web.service.consul").await == 1,
        "web back in B's DNS");
    eprintln!(
        "clients: restarted A's web passing and in B's DNS {:?} after the restart began",
        restarted.elapsed()
    );

    tracing::info!("a snapshot restore drops a service C synced: C resyncs at once");
    let snapshot = cluster.servers[0]
        .client
        .get(cluster.servers[0].url("/v1/snapshot"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    register(&clients[2], r#"{"Name":"late","Port":6060}"#).await;
    assert_eventually!(@timeout PROPAGATION, a_records(dns_b, "late.service.consul").await == 1,
        "late resolves through B");
    assert!(
        !clients[2].logs().contains("full sync now"),
        "no resync before the restore"
    );
    let restore = Instant::now();
    let (code, body) = cluster.servers[0]
        .put("/v1/snapshot", snapshot.to_vec())
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eventually!(@timeout RESYNC,
        clients[2].logs().contains("full sync now")
            && a_records(dns_b, "late.service.consul").await == 1,
        "C notices the lost service and registers it again");
    eprintln!(
        "clients: snapshot restore: C resynced and late resolves again {:?} after the restore began (full-sync interval 60s)",
        restore.elapsed()
    );

    tracing::info!("every server killed: B's DNS answers from its last view, HTTP reads fail");
    for server in &mut cluster.servers {
        server.kill9();
    }
    let outage = Instant::now();
    assert_eventually!(
        matches!(
            clients[b].get_json("/v1/catalog/services").await,
            Ok((500, _, _))
        ),
        "catalog reads on B fail"
    );
    let response = clients[b]
        .client
        .get(clients[b].url("/v1/catalog/services"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("No cluster leader") || text.contains("rpc error making call"),
        "Consul's error text: {text}"
    );
    assert_eq!(
        a_records(dns_b, "web.service.consul").await,
        1,
        "DNS keeps its last view"
    );
    tracing::info!("?cached keeps answering from the cache, with an Age once contact is lost");
    assert_eventually!(
        cached_age(&clients[b], &url)
            .await
            .is_some_and(|age| age >= 1),
        "a cached HIT whose Age counts from the lost contact"
    );
    eprintln!(
        "clients: servers down {:?}: DNS still answers, HTTP says {text:?}",
        outage.elapsed()
    );

    tracing::info!("servers back: reads work again and a new registration propagates");
    let back = Instant::now();
    for server in &mut cluster.servers {
        server.restart().await.unwrap();
    }
    cluster.wait_leader(&[0, 1, 2], None).await.unwrap();
    assert_eventually!(@timeout FAILURE, passing(&clients[b], "web").await == Some(1),
        "web passing through B after the outage");
    register(&clients[2], r#"{"Name":"api","Port":7070}"#).await;
    assert_eventually!(@timeout PROPAGATION, a_records(dns_b, "api.service.consul").await == 1,
        "api on C resolves through B");
    assert_eq!(a_records(dns_b, "web.service.consul").await, 1);
    eprintln!(
        "clients: converged {:?} after the servers came back",
        back.elapsed()
    );
}
