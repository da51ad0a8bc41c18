//! `serve` over real sockets on 127.0.0.1:0, queried with hickory-client and raw packets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_client::client::{AsyncClient, ClientHandle};
use hickory_client::tcp::TcpClientStream;
use hickory_client::udp::UdpClientStream;
use hickory_proto::iocompat::AsyncIoTokioAsStd;
use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_proto::xfer::DnsResponse;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::info;

use super::fixtures::{instance, many, node, snapshot};
use super::{serve, DnsConfig, DnsError, View};
use crate::catalog_cache::{CatalogSnapshot, Contact};

mod recursors;

/// A running DNS interface.
struct TestDns {
    udp: SocketAddr,
    tcp: SocketAddr,
    catalog: watch::Sender<Arc<CatalogSnapshot>>,
    contact: watch::Sender<Contact>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), DnsError>>,
}

impl TestDns {
    async fn start(catalog: CatalogSnapshot) -> Self {
        Self::start_with(DnsConfig::default(), catalog).await
    }

    async fn start_with(config: DnsConfig, catalog: CatalogSnapshot) -> Self {
        let udp_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tcp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let udp = udp_socket.local_addr().unwrap();
        let tcp = tcp_listener.local_addr().unwrap();
        let (catalog, catalog_view) = watch::channel(Arc::new(catalog));
        let (contact, contact_view) = watch::channel(Contact::default());
        let view = View {
            catalog: catalog_view,
            contact: contact_view,
        };
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(config, udp_socket, tcp_listener, view, async {
            let _ = stop.await;
        }));
        TestDns {
            udp,
            tcp,
            catalog,
            contact,
            shutdown,
            task,
        }
    }

    /// A hickory UDP client; `edns` advertises hickory's default 1232-byte payload.
    async fn udp_client(&self, edns: bool) -> AsyncClient {
        let stream = UdpClientStream::<UdpSocket>::new(self.udp);
        let (mut client, background) = AsyncClient::connect(stream).await.unwrap();
        tokio::spawn(background);
        if !edns {
            client.disable_edns();
        }
        client
    }

    async fn tcp_client(&self) -> AsyncClient {
        let (stream, sender) = TcpClientStream::<AsyncIoTokioAsStd<TcpStream>>::new(self.tcp);
        let (client, background) = AsyncClient::new(stream, sender, None).await.unwrap();
        tokio::spawn(background);
        client
    }

    async fn stop(self) {
        self.shutdown.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

async fn ask(client: &mut AsyncClient, name: &str, qtype: RecordType) -> DnsResponse {
    client
        .query(Name::from_ascii(name).unwrap(), DNSClass::IN, qtype)
        .await
        .unwrap()
}

/// A query message with a chosen id, as raw bytes.
fn raw_query(id: u16, name: &str, qtype: RecordType) -> Message {
    let mut message = Message::new();
    message
        .set_id(id)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    message
}

/// A header (id 0xBEEF, one question) followed by a name that points past the packet.
const HEADER_THEN_GARBAGE: &[u8] = &[
    0xBE, 0xEF, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF,
];

async fn udp_exchange(socket: &UdpSocket, packet: &[u8]) -> Message {
    socket.send(packet).await.unwrap();
    udp_receive(socket).await
}

async fn udp_receive(socket: &UdpSocket) -> Message {
    let mut buf = vec![0; 65535];
    let len = socket.recv(&mut buf).await.unwrap();
    Message::from_vec(&buf[..len]).unwrap()
}

async fn tcp_exchange(stream: &mut TcpStream, packet: &[u8]) -> Message {
    let len = u16::try_from(packet.len()).unwrap();
    stream.write_all(&len.to_be_bytes()).await.unwrap();
    stream.write_all(packet).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut buf = vec![0; usize::from(len)];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn catalog() -> CatalogSnapshot {
    let n1 = node("n1", "10.0.0.1");
    let n2 = node("n2", "10.0.0.2");
    let instances = vec![
        instance(&n1, "web1", "web"),
        instance(&n2, "web2", "web")
            .address("192.168.0.2")
            .port(8080),
    ];
    snapshot(vec![n1, n2], instances)
}

#[tokio::test]
async fn answers_over_udp_and_tcp() {
    let dns = TestDns::start(catalog()).await;
    let mut udp = dns.udp_client(false).await;
    let mut tcp = dns.tcp_client().await;

    for (transport, client) in [("udp", &mut udp), ("tcp", &mut tcp)] {
        info!(transport, "service A lookup answers authoritatively");
        let response = ask(client, "web.service.consul.", RecordType::A).await;
        assert_eq!(response.response_code(), ResponseCode::NoError);
        assert!(response.authoritative());
        assert!(!response.recursion_available());
        assert_eq!(response.answers().len(), 2);

        info!(
            transport,
            "SRV lookup carries target addresses in Additional"
        );
        let response = ask(client, "web.service.consul.", RecordType::SRV).await;
        assert_eq!(response.answers().len(), 2);
        assert_eq!(response.additionals().len(), 2);

        info!(transport, "node lookup");
        let response = ask(client, "n2.node.consul.", RecordType::A).await;
        assert_eq!(response.answers().len(), 1);

        info!(transport, "unknown service is NXDOMAIN with our SOA");
        let response = ask(client, "nope.service.consul.", RecordType::A).await;
        assert_eq!(response.response_code(), ResponseCode::NXDomain);
        assert_eq!(response.name_servers().len(), 1);
        assert_eq!(response.name_servers()[0].record_type(), RecordType::SOA);

        info!(transport, "names outside the domain are refused");
        let response = ask(client, "example.com.", RecordType::A).await;
        assert_eq!(response.response_code(), ResponseCode::Refused);
    }

    info!("an EDNS query gets an OPT record back");
    let mut edns = dns.udp_client(true).await;
    let response = ask(&mut edns, "web.service.consul.", RecordType::A).await;
    assert_eq!(response.answers().len(), 2);
    assert_eq!(
        response.extensions().as_ref().map(Edns::max_payload),
        Some(1232)
    );

    dns.stop().await;
}

#[tokio::test]
async fn many_instances_truncate_over_udp_and_complete_over_tcp() {
    let dns = TestDns::start(many("web", 200)).await;

    info!("plain UDP: Consul's three answers, and TC so the client retries over TCP");
    let mut udp = dns.udp_client(false).await;
    let response = ask(&mut udp, "web.service.consul.", RecordType::A).await;
    assert_eq!(response.answers().len(), 3);
    assert!(response.truncated());

    info!("UDP with EDNS (1232 bytes): as many as fit, still TC");
    let mut edns = dns.udp_client(true).await;
    let response = ask(&mut edns, "web.service.consul.", RecordType::A).await;
    let count = response.answers().len();
    assert!(count > 3 && count < 200, "{count} answers");
    assert!(response.truncated());

    info!("TCP: every instance, no TC");
    let mut tcp = dns.tcp_client().await;
    let response = ask(&mut tcp, "web.service.consul.", RecordType::A).await;
    assert_eq!(response.answers().len(), 200);
    assert!(!response.truncated());
    let response = ask(&mut tcp, "web.service.consul.", RecordType::SRV).await;
    assert_eq!(response.answers().len(), 200);
    assert_eq!(response.additionals().len(), 200);

    dns.stop().await;
}

#[tokio::test]
async fn malformed_udp_packets_get_formerr_and_the_server_survives() {
    let dns = TestDns::start(catalog()).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(dns.udp).await.unwrap();

    info!("shorter than a header: dropped (no id to answer; miekg/dns does the same)");
    socket.send(b"\x01\x02\x03").await.unwrap();
    let response = udp_exchange(
        &socket,
        &raw_query(1, "web.service.consul.", RecordType::A)
            .to_vec()
            .unwrap(),
    )
    .await;
    assert_eq!(response.id(), 1, "the short packet got a reply");
    assert_eq!(response.answers().len(), 2);

    info!("a header followed by garbage: FORMERR echoing the id");
    let response = udp_exchange(&socket, HEADER_THEN_GARBAGE).await;
    assert_eq!(response.id(), 0xBEEF);
    assert_eq!(response.response_code(), ResponseCode::FormErr);

    info!("two questions: FORMERR");
    let mut two = raw_query(2, "web.service.consul.", RecordType::A);
    two.add_query(Query::query(
        Name::from_ascii("n1.node.consul.").unwrap(),
        RecordType::A,
    ));
    let response = udp_exchange(&socket, &two.to_vec().unwrap()).await;
    assert_eq!(response.id(), 2);
    assert_eq!(response.response_code(), ResponseCode::FormErr);

    info!("an opcode other than QUERY: NOTIMP");
    let mut notify = raw_query(3, "consul.", RecordType::SOA);
    notify.set_op_code(OpCode::Notify);
    let response = udp_exchange(&socket, &notify.to_vec().unwrap()).await;
    assert_eq!(response.id(), 3);
    assert_eq!(response.response_code(), ResponseCode::NotImp);

    info!("opcodes hickory cannot decode (1, 3, 6-15): NOTIMP too, read from the raw reply");
    for opcode in [1u8, 3, 6, 15] {
        let mut packet = raw_query(5, "consul.", RecordType::SOA).to_vec().unwrap();
        packet[2] = (packet[2] & 0x87) | (opcode << 3);
        socket.send(&packet).await.unwrap();
        let mut buf = [0u8; 512];
        let len = socket.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..2], &[0, 5], "the id is echoed");
        assert_eq!((buf[2] >> 3) & 0x0f, opcode, "the opcode is echoed");
        assert_eq!(buf[3] & 0x0f, 4, "NOTIMP");
        assert_eq!(len, 12, "a header alone");
    }

    info!("EDNS version 1: BADVERS");
    let mut future_edns = raw_query(4, "web.service.consul.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_version(1);
    future_edns.set_edns(edns);
    let response = udp_exchange(&socket, &future_edns.to_vec().unwrap()).await;
    // Code 16 is both BADVERS and BADSIG (RFC 6891, RFC 2845); hickory decodes it as BADSIG.
    assert_eq!(
        u16::from(response.response_code()),
        u16::from(ResponseCode::BADVERS)
    );
    assert!(response.extensions().is_some());

    info!("a burst of random packets, half with a header that decodes");
    let burst = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    burst.connect(dns.udp).await.unwrap();
    let mut rng = StdRng::seed_from_u64(99);
    for _ in 0..300 {
        let len = rng.gen_range(0..80);
        let mut packet: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        if packet.len() > 2 && rng.gen_bool(0.5) {
            // A query (QR clear) with opcode QUERY, so hickory gets past the header.
            packet[2] &= 0b0000_0111;
        }
        burst.send(&packet).await.unwrap();
    }

    info!("a valid query still works, through hickory-client too");
    let mut client = dns.udp_client(false).await;
    let response = ask(&mut client, "web.service.consul.", RecordType::A).await;
    assert_eq!(response.answers().len(), 2);

    dns.stop().await;
}

#[tokio::test]
async fn malformed_tcp_messages_get_formerr_and_the_server_survives() {
    let dns = TestDns::start(catalog()).await;

    info!("a framed header followed by garbage: FORMERR, and the connection stays usable");
    let mut stream = TcpStream::connect(dns.tcp).await.unwrap();
    let response = tcp_exchange(&mut stream, HEADER_THEN_GARBAGE).await;
    assert_eq!(response.id(), 0xBEEF);
    assert_eq!(response.response_code(), ResponseCode::FormErr);
    let query = raw_query(5, "web.service.consul.", RecordType::A);
    let response = tcp_exchange(&mut stream, &query.to_vec().unwrap()).await;
    assert_eq!(response.id(), 5);
    assert_eq!(response.answers().len(), 2);

    info!("every opcode but QUERY gets NOTIMP over TCP too, on the same connection");
    for opcode in [1u8, 2, 3, 4, 5, 6, 15] {
        let mut packet = raw_query(6, "consul.", RecordType::SOA).to_vec().unwrap();
        packet[2] = (packet[2] & 0x87) | (opcode << 3);
        stream
            .write_all(&u16::try_from(packet.len()).unwrap().to_be_bytes())
            .await
            .unwrap();
        stream.write_all(&packet).await.unwrap();
        let len = stream.read_u16().await.unwrap();
        let mut buf = vec![0; usize::from(len)];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf[..2], &[0, 6], "the id is echoed");
        assert_eq!((buf[2] >> 3) & 0x0f, opcode, "the opcode is echoed");
        assert_eq!(buf[3] & 0x0f, 4, "NOTIMP for opcode {opcode}");
    }

    info!("unframed junk, then hang up mid-message");
    let mut junk = TcpStream::connect(dns.tcp).await.unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    drop(junk);

    info!("new connections still get answers");
    let mut client = dns.tcp_client().await;
    let response = ask(&mut client, "n1.node.consul.", RecordType::A).await;
    assert_eq!(response.answers().len(), 1);

    dns.stop().await;
}

#[tokio::test]
async fn answers_follow_catalog_updates() {
    let dns = TestDns::start(catalog()).await;
    let mut client = dns.udp_client(false).await;
    let response = ask(&mut client, "api.service.consul.", RecordType::A).await;
    assert_eq!(response.response_code(), ResponseCode::NXDomain);

    info!("publish a snapshot with an api instance; the next query sees it");
    let n3 = node("n3", "10.0.0.3");
    let next = snapshot(vec![n3.clone()], vec![instance(&n3, "api1", "api")]);
    dns.catalog.send_replace(Arc::new(next));
    let response = ask(&mut client, "api.service.consul.", RecordType::A).await;
    assert_eq!(response.response_code(), ResponseCode::NoError);
    assert_eq!(response.answers().len(), 1);

    dns.stop().await;
}

#[tokio::test]
async fn repeated_tcp_answers_are_whole_and_follow_catalog_updates() {
    let n1 = node("n1", "10.0.0.1");
    let many: Vec<_> = (0..40)
        .map(|i| instance(&n1, &format!("web{i}"), "web").address(&format!("10.1.0.{i}")))
        .collect();
    let dns = TestDns::start(snapshot(vec![n1.clone()], many)).await;
    let mut stream = TcpStream::connect(dns.tcp).await.unwrap();
    info!("more answers than a datagram holds, many times (kept answers replayed)");
    for id in 0..12 {
        let query = raw_query(id, "web.service.consul.", RecordType::A);
        let response = tcp_exchange(&mut stream, &query.to_vec().unwrap()).await;
        assert_eq!(response.id(), id);
        assert!(!response.truncated());
        assert_eq!(response.answers().len(), 40, "whole, not a UDP answer");
    }
    info!("a UDP query for the same name still gets the trimmed answer");
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(dns.udp).await.unwrap();
    let query = raw_query(99, "web.service.consul.", RecordType::A);
    let response = udp_exchange(&socket, &query.to_vec().unwrap()).await;
    assert!(response.answers().len() < 40);

    info!("a new catalog view is seen at once");
    let next = snapshot(vec![n1.clone()], vec![instance(&n1, "web0", "web")]);
    dns.catalog.send_replace(Arc::new(next));
    let query = raw_query(100, "web.service.consul.", RecordType::A);
    let response = tcp_exchange(&mut stream, &query.to_vec().unwrap()).await;
    assert_eq!(response.answers().len(), 1);

    dns.stop().await;
}

#[tokio::test]
async fn bad_config_fails_before_serving() {
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (_tx, catalog) = watch::channel(Arc::new(CatalogSnapshot::default()));
    let (_contact_tx, contact) = watch::channel(Contact::default());
    let view = View { catalog, contact };
    let config = DnsConfig {
        datacenter: "dc.1".into(),
        ..DnsConfig::default()
    };
    let result = serve(config, udp, tcp, view, std::future::pending()).await;
    assert!(matches!(result, Err(DnsError::InvalidDatacenter { .. })));
}

/// Servers failing since `failing_for` ago, the view last current `age` ago.
fn failing(age: Duration, failing_for: Duration) -> Contact {
    let now = tokio::time::Instant::now();
    Contact {
        current_at: Some(now - age),
        failing_since: Some(now - failing_for),
    }
}

#[tokio::test]
async fn stale_view_is_served_within_max_stale_then_servfail() {
    let config = DnsConfig {
        max_stale: Duration::from_secs(30),
        ..DnsConfig::default()
    };
    let dns = TestDns::start_with(config, catalog()).await;
    let mut client = dns.udp_client(false).await;

    info!("servers unreachable for 10 s, view 20 s old: still answered");
    dns.contact
        .send_replace(failing(Duration::from_secs(20), Duration::from_secs(10)));
    let response = ask(&mut client, "web.service.consul.", RecordType::A).await;
    assert_eq!(response.response_code(), ResponseCode::NoError);
    assert!(!response.answers().is_empty());

    info!("view older than max_stale: SERVFAIL for catalog names, not for the rest");
    dns.contact
        .send_replace(failing(Duration::from_secs(31), Duration::from_secs(21)));
    let response = ask(&mut client, "web.service.consul.", RecordType::A).await;
    assert_eq!(response.response_code(), ResponseCode::ServFail);
    let response = ask(&mut client, "1.0.0.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(response.response_code(), ResponseCode::ServFail);
    let response = ask(&mut client, "0a000001.addr.consul.", RecordType::A).await;
    assert_eq!(response.response_code(), ResponseCode::NoError);

    info!("servers back: current again");
    dns.contact.send_replace(Contact {
        current_at: Some(tokio::time::Instant::now()),
        failing_since: None,
    });
    let response = ask(&mut client, "web.service.consul.", RecordType::A).await;
    assert_eq!(response.response_code(), ResponseCode::NoError);
    dns.stop().await;
}

#[tokio::test]
async fn without_allow_stale_a_failing_server_means_servfail() {
    let config = DnsConfig {
        allow_stale: false,
        ..DnsConfig::default()
    };
    let dns = TestDns::start_with(config, catalog()).await;
    let mut client = dns.udp_client(false).await;
    let response = ask(&mut client, "web.service.consul.", RecordType::A).await;
    assert_eq!(response.response_code(), ResponseCode::NoError);
    dns.contact
        .send_replace(failing(Duration::from_millis(1), Duration::ZERO));
    let response = ask(&mut client, "web.service.consul.", RecordType::A).await;
    assert_eq!(response.response_code(), ResponseCode::ServFail);
    dns.stop().await;
}

#[test]
fn stale_bound_combines_max_stale_and_cache_max_age() {
    let config = |allow_stale, use_cache, cache_max_age| DnsConfig {
        allow_stale,
        max_stale: Duration::from_secs(60),
        use_cache,
        cache_max_age: Duration::from_secs(cache_max_age),
        ..DnsConfig::default()
    };
    assert_eq!(
        config(true, false, 5).stale_bound(),
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        config(true, true, 5).stale_bound(),
        Some(Duration::from_secs(5))
    );
    assert_eq!(
        config(true, true, 0).stale_bound(),
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        config(true, true, 600).stale_bound(),
        Some(Duration::from_secs(60))
    );
    assert_eq!(config(false, true, 5).stale_bound(), None);
    assert_eq!(
        DnsConfig::default().stale_bound(),
        Some(Duration::from_secs(87_600 * 3600)),
        "Consul's default max_stale"
    );
}
