//! Handshakes over in-memory pipes with test CAs made by rcgen: who is accepted, who is
//! refused, and what identity each side sees.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use concord_api::connect::{CaRoot, CaRoots, IssuedCert};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType,
};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const TD: &str = "11111111-2222-3333-4444-555555555555.consul";

/// A test CA: its root PEM and key.
struct TestCa {
    pem: String,
    key: KeyPair,
}

impl TestCa {
    fn new() -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa { pem, key }
    }

    fn roots(cas: &[&TestCa]) -> CaRoots {
        CaRoots {
            active_root_id: "r0".into(),
            trust_domain: TD.into(),
            roots: cas
                .iter()
                .enumerate()
                .map(|(i, ca)| CaRoot {
                    id: format!("r{i}"),
                    root_cert: ca.pem.clone(),
                    active: i == 0,
                    ..CaRoot::default()
                })
                .collect(),
        }
    }

    /// A leaf for `service` in dc1 of the test trust domain.
    fn leaf(&self, service: &str) -> IssuedCert {
        let uri = spiffe_service_uri(TD, "dc1", service);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::URI(uri.clone().try_into().unwrap())];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let issuer = Issuer::from_ca_cert_pem(&self.pem, &self.key).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        IssuedCert {
            cert_pem: cert.pem(),
            private_key_pem: key.serialize_pem(),
            service: service.into(),
            service_uri: uri,
            ..IssuedCert::default()
        }
    }
}

fn material(roots: &[&TestCa], leaf: &IssuedCert) -> Arc<TlsMaterial> {
    let m = TlsMaterial::new();
    m.set_roots(&TestCa::roots(roots)).unwrap();
    m.set_leaf(leaf).unwrap();
    m
}

/// Runs one handshake; returns the server's view of the client's service (or its error)
/// and whether the client finished.
async fn handshake(
    server: &Arc<TlsMaterial>,
    client: Arc<ClientConfig>,
) -> (Result<String, String>, bool) {
    let (c, s) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server.server_config().unwrap());
    let server_side = tokio::spawn(async move {
        let mut tls = acceptor.accept(s).await.map_err(|e| e.to_string())?;
        let peer = peer_service(tls.get_ref().1.peer_certificates()).map_err(|e| e.to_string())?;
        tls.write_all(b"ok").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<String, String>(peer.service)
    });
    let name = ServerName::try_from("db.example").unwrap();
    let client_ok = match tokio_rustls::TlsConnector::from(client)
        .connect(name, c)
        .await
    {
        // TLS 1.3 clients learn about a refused certificate on their first read.
        Ok(mut tls) => {
            let mut buf = Vec::new();
            tls.read_to_end(&mut buf).await.is_ok() && buf == b"ok"
        }
        Err(_) => false,
    };
    (server_side.await.unwrap(), client_ok)
}

#[tokio::test]
async fn mutual_tls_carries_the_client_service_identity() {
    let ca = TestCa::new();
    let db = material(&[&ca], &ca.leaf("db"));
    let web = material(&[&ca], &ca.leaf("web"));
    let (server_view, client_ok) = handshake(&db, web.client_config("db").unwrap()).await;
    assert_eq!(server_view, Ok("web".to_string()));
    assert!(client_ok);
}

#[tokio::test]
async fn client_refuses_a_server_with_another_identity() {
    let ca = TestCa::new();
    let api = material(&[&ca], &ca.leaf("api"));
    let web = material(&[&ca], &ca.leaf("web"));
    let (server_view, client_ok) = handshake(&api, web.client_config("db").unwrap()).await;
    assert!(!client_ok);
    assert!(server_view.is_err(), "{server_view:?}");
}

#[tokio::test]
async fn server_refuses_a_client_of_another_ca_or_without_certificate() {
    let ca = TestCa::new();
    let other = TestCa::new();
    let db = material(&[&ca], &ca.leaf("db"));

    // Signed by a CA the server does not trust (the client trusts both, so only the
    // server side can refuse).
    let stranger = material(&[&ca, &other], &other.leaf("web"));
    let (server_view, client_ok) = handshake(&db, stranger.client_config("db").unwrap()).await;
    assert!(server_view.is_err(), "{server_view:?}");
    assert!(!client_ok);

    // No certificate at all.
    let mut roots = RootCertStore::empty();
    roots.add(pem_certs(&ca.pem).unwrap().remove(0)).unwrap();
    let anonymous =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ExpectedServer {
                material: db.clone(),
                expected: db.expected_uri("db"),
            }))
            .with_no_client_auth();
    let (server_view, client_ok) = handshake(&db, Arc::new(anonymous)).await;
    assert!(server_view.is_err(), "{server_view:?}");
    assert!(!client_ok);
}

/// One handshake with these configs, the server's answer read to the end (so the client
/// has processed any session ticket); how the client's handshake went.
async fn handshake_kind(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> rustls::HandshakeKind {
    let (c, s) = tokio::io::duplex(64 * 1024);
    let server_side = tokio::spawn(async move {
        let mut tls = tokio_rustls::TlsAcceptor::from(server)
            .accept(s)
            .await
            .unwrap();
        tls.write_all(b"ok").await.unwrap();
        tls.shutdown().await.unwrap();
    });
    let name = ServerName::try_from("db.example").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(client)
        .connect(name, c)
        .await
        .unwrap();
    let mut buf = Vec::new();
    tls.read_to_end(&mut buf).await.unwrap();
    assert_eq!(buf, b"ok");
    server_side.await.unwrap();
    tls.get_ref().1.handshake_kind().unwrap()
}

#[tokio::test]
async fn every_connection_makes_a_full_handshake_on_either_side() {
    use rustls::HandshakeKind::{Full, Resumed};
    let ca = TestCa::new();
    let db = material(&[&ca], &ca.leaf("db"));
    let web = material(&[&ca], &ca.leaf("web"));
    let ours_server = db.server_config().unwrap();
    let ours_client = web.client_config("db").unwrap();
    // The same configs with resumption on, as rustls has it by default.
    let mut resuming_server = ServerConfig::clone(&ours_server);
    resuming_server.send_tls13_tickets = 2;
    resuming_server.session_storage = rustls::server::ServerSessionMemoryCache::new(16);
    let resuming_server = Arc::new(resuming_server);
    let mut resuming_client = ClientConfig::clone(&ours_client);
    resuming_client.resumption = rustls::client::Resumption::in_memory_sessions(16);
    let resuming_client = Arc::new(resuming_client);

    // Both willing: the second connection resumes (what the checks below would see).
    assert_eq!(
        handshake_kind(resuming_server.clone(), resuming_client.clone()).await,
        Full
    );
    assert_eq!(
        handshake_kind(resuming_server.clone(), resuming_client.clone()).await,
        Resumed
    );
    // Our server issues no ticket to a client that would resume.
    for _ in 0..2 {
        assert_eq!(
            handshake_kind(ours_server.clone(), resuming_client.clone()).await,
            Full
        );
    }
    // Our client keeps no ticket from a server that issues them.
    for _ in 0..2 {
        assert_eq!(
            handshake_kind(resuming_server.clone(), ours_client.clone()).await,
            Full
        );
    }
}

#[tokio::test]
async fn new_roots_and_leaf_apply_to_the_next_handshake() {
    let old = TestCa::new();
    let new = TestCa::new();
    let db = material(&[&old], &old.leaf("db"));
    let web_new = material(&[&new, &old], &new.leaf("web"));
    let (server_view, _) = handshake(&db, web_new.client_config("db").unwrap()).await;
    assert!(server_view.is_err(), "the new root is not trusted yet");

    tracing::info!("rotation: the server trusts both roots and presents a new leaf");
    db.set_roots(&TestCa::roots(&[&new, &old])).unwrap();
    db.set_leaf(&new.leaf("db")).unwrap();
    let (server_view, client_ok) = handshake(&db, web_new.client_config("db").unwrap()).await;
    assert_eq!(server_view, Ok("web".to_string()));
    assert!(client_ok);
    // A client still on the old leaf is accepted as long as the old root is listed.
    let web_old = material(&[&old, &new], &old.leaf("web"));
    let (server_view, client_ok) = handshake(&db, web_old.client_config("db").unwrap()).await;
    assert_eq!(server_view, Ok("web".to_string()));
    assert!(client_ok);
}

#[test]
fn identities_from_certificates() {
    let ca = TestCa::new();
    let leaf = ca.leaf("web");
    let der = pem_certs(&leaf.cert_pem).unwrap();
    assert_eq!(peer_service(Some(&der)).unwrap().service, "web");
    assert!(peer_service(None).is_err());
    // A CA certificate has no URI SAN.
    let root = pem_certs(&ca.pem).unwrap();
    assert!(matches!(
        peer_service(Some(&root)),
        Err(TlsError::Identity(_))
    ));
    assert!(pem_certs("nothing here").is_err());
    assert!(pem_key(&leaf.cert_pem).is_err());
    let empty = TlsMaterial::new();
    assert!(!empty.is_ready());
}

#[tokio::test(start_paused = true)]
async fn a_dial_gives_up_after_the_connect_timeout() {
    let ca = TestCa::new();
    let web = material(&[&ca], &ca.leaf("web"));
    // Accepts TCP (the kernel's backlog) but never answers the TLS handshake.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = Endpoint {
        id: "n1/db".into(),
        addr: hung.local_addr().unwrap(),
        service: "db".into(),
    };
    let connector = MtlsConnector::new(web.clone(), Some(Duration::from_millis(250)), None);
    let started = tokio::time::Instant::now();
    let err = match connector.connect(&endpoint).await {
        Ok(_) => panic!("a hung endpoint cannot complete a handshake"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    assert!(started.elapsed() >= Duration::from_millis(250));

    // Without a fixed timeout the chain's resolver decides, else 5 s.
    let chain = serde_json::json!({"StartNode": "r", "Nodes": {"r": {"Resolver": {"ConnectTimeout": "3s"}}}});
    let (_tx, rx) = watch::channel(UpstreamSnapshot {
        chain,
        ..UpstreamSnapshot::default()
    });
    assert_eq!(
        MtlsConnector::new(web.clone(), None, Some(rx.clone())).timeout(),
        Duration::from_secs(3)
    );
    assert_eq!(
        MtlsConnector::new(web.clone(), Some(Duration::from_secs(1)), Some(rx)).timeout(),
        Duration::from_secs(1)
    );
    assert_eq!(
        MtlsConnector::new(web, None, None).timeout(),
        DEFAULT_CONNECT_TIMEOUT
    );
}
