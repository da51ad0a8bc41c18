//! Forwarding to recursors: fake recursors are hickory servers on 127.0.0.1:0, never the
//! real internet.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Header, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Protocol, Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::ServerFuture;
use tokio::net::{TcpListener, UdpSocket};

use super::{ask, catalog, TestDns};
use crate::dns::DnsConfig;

/// The address every fake recursor answers for `example.org.`.
const EXAMPLE_ORG: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// A recursor answering `example.org.` A with [`EXAMPLE_ORG`], or only with `rcode` when it
/// is not NOERROR; it records the transport of each query it gets.
#[derive(Clone)]
struct FakeRecursor {
    rcode: ResponseCode,
    seen: Arc<Mutex<Vec<&'static str>>>,
}

#[async_trait::async_trait]
impl RequestHandler for FakeRecursor {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let transport = match request.protocol() {
            Protocol::Udp => "udp",
            _ => "tcp",
        };
        self.seen.lock().unwrap().push(transport);
        let mut header = Header::response_from_request(request.header());
        header.set_response_code(self.rcode);
        header.set_recursion_available(true);
        let name = Name::from(request.query().name().clone());
        let answers = if self.rcode == ResponseCode::NoError {
            vec![Record::from_rdata(name, 60, RData::A(A(EXAMPLE_ORG)))]
        } else {
            Vec::new()
        };
        let message = MessageResponseBuilder::from_message_request(request).build(
            header,
            answers.iter(),
            [].iter(),
            [].iter(),
            [].iter(),
        );
        response.send_response(message).await.unwrap()
    }
}

/// A UDP socket and a TCP listener on the same free port (a recursor has one address). The
/// port the UDP bind picked may be taken for TCP by some other process: then try another.
async fn bind_pair() -> (SocketAddr, UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return (addr, udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// Starts a fake recursor on one port, UDP and TCP; returns its address and query log.
async fn fake_recursor(rcode: ResponseCode) -> (SocketAddr, Arc<Mutex<Vec<&'static str>>>) {
    let (addr, udp, tcp) = bind_pair().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut server = ServerFuture::new(FakeRecursor {
        rcode,
        seen: seen.clone(),
    });
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5));
    tokio::spawn(async move {
        let _keep_running = server.block_until_done().await;
    });
    (addr, seen)
}

/// A recursor that never answers: a UDP socket nobody reads and a TCP listener nobody
/// accepts on (connections complete in the backlog, then hang).
async fn silent_recursor() -> (SocketAddr, UdpSocket, TcpListener) {
    bind_pair().await
}

fn with_recursors(recursors: Vec<SocketAddr>) -> DnsConfig {
    DnsConfig {
        recursors,
        recursor_timeout: Duration::from_millis(500),
        ..DnsConfig::default()
    }
}

#[tokio::test]
async fn other_names_go_to_the_next_recursor_over_the_clients_transport() {
    let (silent, _udp, _tcp) = silent_recursor().await;
    let (failing, failing_seen) = fake_recursor(ResponseCode::ServFail).await;
    let (good, good_seen) = fake_recursor(ResponseCode::NoError).await;
    let dns = TestDns::start_with(with_recursors(vec![silent, failing, good]), catalog()).await;

    for (mut client, transport) in [
        (dns.udp_client(false).await, "udp"),
        (dns.tcp_client().await, "tcp"),
    ] {
        let response = ask(&mut client, "example.org.", RecordType::A).await;
        assert_eq!(
            response.response_code(),
            ResponseCode::NoError,
            "{transport}"
        );
        assert!(response.recursion_available());
        assert!(!response.authoritative());
        let ips: Vec<_> = response
            .answers()
            .iter()
            .filter_map(|r| r.data()?.as_a())
            .collect();
        assert_eq!(ips, [&A(EXAMPLE_ORG)], "{transport}");
        assert_eq!(good_seen.lock().unwrap().last(), Some(&transport));
    }
    // SERVFAIL from the second recursor made us move on, each time.
    assert_eq!(*failing_seen.lock().unwrap(), ["udp", "tcp"]);

    // Our own names never leave the agent, and say RA now that recursors exist.
    let mut client = dns.udp_client(false).await;
    let response = ask(&mut client, "web.service.consul.", RecordType::A).await;
    assert!(response.authoritative() && response.recursion_available());
    assert_eq!(good_seen.lock().unwrap().len(), 2);
    // So do reverse names of known addresses; unknown ones are forwarded.
    let response = ask(&mut client, "1.0.0.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(response.answers().len(), 1);
    assert_eq!(good_seen.lock().unwrap().len(), 2);
    let response = ask(&mut client, "9.9.9.9.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(response.response_code(), ResponseCode::NoError);
    assert_eq!(good_seen.lock().unwrap().len(), 3);
    dns.stop().await;
}

#[tokio::test]
async fn nxdomain_from_a_recursor_is_final() {
    let (nx, _) = fake_recursor(ResponseCode::NXDomain).await;
    let (good, good_seen) = fake_recursor(ResponseCode::NoError).await;
    let dns = TestDns::start_with(with_recursors(vec![nx, good]), catalog()).await;
    let mut client = dns.udp_client(true).await;
    let response = ask(&mut client, "missing.example.org.", RecordType::A).await;
    assert_eq!(response.response_code(), ResponseCode::NXDomain);
    assert!(good_seen.lock().unwrap().is_empty());
    dns.stop().await;
}

#[tokio::test]
async fn all_recursors_failing_is_servfail() {
    let (silent, _udp, _tcp) = silent_recursor().await;
    let (refusing, _) = fake_recursor(ResponseCode::Refused).await;
    let dns = TestDns::start_with(with_recursors(vec![silent, refusing]), catalog()).await;
    let mut client = dns.tcp_client().await;
    let response = ask(&mut client, "example.org.", RecordType::A).await;
    assert_eq!(response.response_code(), ResponseCode::ServFail);
    assert!(response.recursion_available());
    dns.stop().await;
}

#[tokio::test]
async fn without_recursors_other_names_are_refused() {
    let dns = TestDns::start(catalog()).await;
    let mut client = dns.udp_client(false).await;
    let response = ask(&mut client, "example.org.", RecordType::A).await;
    assert_eq!(response.response_code(), ResponseCode::Refused);
    assert!(!response.recursion_available());
    // An unknown reverse name: Consul's recursion finds no resolver, SERVFAIL.
    let response = ask(&mut client, "9.9.9.9.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(response.response_code(), ResponseCode::ServFail);
    dns.stop().await;
}
