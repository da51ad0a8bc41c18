use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::generate::{self, LeafRequest, Role};
use super::*;
use crate::serve::{serve_with, Plain, ServeLimits, TlsListener};

/// A CA and files for it under a temp dir.
struct Pki {
    dir: tempfile::TempDir,
    ca: generate::Generated,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = generate::ca(30, &[]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
        Pki { dir, ca }
    }

    /// Writes a `role` leaf as `<file>.pem` / `<file>-key.pem`; returns settings using it.
    fn leaf(&self, role: Role, file: &str) -> TlsSettings {
        let leaf = generate::leaf(
            &self.ca.cert_pem,
            &self.ca.key_pem,
            &LeafRequest {
                role,
                datacenter: "dc1",
                domain: "consul",
                node: None,
                days: 30,
                dns_names: &[],
                ip_addresses: &[],
            },
        )
        .unwrap();
        let cert = self.dir.path().join(format!("{file}.pem"));
        let key = self.dir.path().join(format!("{file}-key.pem"));
        std::fs::write(&cert, leaf.cert_pem).unwrap();
        std::fs::write(&key, leaf.key_pem).unwrap();
        TlsSettings {
            ca_file: Some(self.dir.path().join("ca.pem")),
            cert_file: Some(cert),
            key_file: Some(key),
            ..TlsSettings::default()
        }
    }
}

/// Serves an echo of the peer's certificate name check on a TLS listener.
async fn start(config: Arc<ServerConfig>, plain: Plain) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/",
        get(
            |peer: Option<axum::Extension<PeerCertificates>>| async move {
                let peer = peer.map(|axum::Extension(p)| p);
                format!(
                    "server-peer={}",
                    peer_is(peer.as_ref(), "server.dc1.consul")
                )
            },
        ),
    );
    let tls = TlsListener { config, plain };
    tokio::spawn(serve_with(
        listener,
        app,
        ServeLimits::default(),
        Some(tls),
        std::future::pending(),
    ));
    addr
}

/// One HTTPS GET over HTTP/2 with this client config; the body, or the error text.
async fn fetch(addr: SocketAddr, host: &str, client: Arc<ClientConfig>) -> Result<String, String> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .use_preconfigured_tls(ClientConfig::clone(&client))
        .resolve(host, addr)
        .build()
        .unwrap();
    let reply = http
        .get(format!("https://{host}:{}/", addr.port()))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    reply.text().await.map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn verify_incoming_demands_a_certificate_from_the_ca() {
    let pki = Pki::new();
    let mut server = pki.leaf(Role::Server, "server");
    server.verify_incoming = true;
    let addr = start(server.server_config(HTTPS_ALPN).unwrap(), Plain::Refuse).await;

    tracing::info!("a server certificate is accepted and seen as a server's");
    let as_server = pki.leaf(Role::Server, "server2");
    let config = as_server
        .client_config(ServerCheck::Host, HTTPS_ALPN)
        .unwrap();
    assert_eq!(
        fetch(addr, "localhost", config).await.unwrap(),
        "server-peer=true"
    );

    tracing::info!("a client certificate is accepted but is not a server's");
    let as_client = pki.leaf(Role::Client, "client");
    let config = as_client
        .client_config(ServerCheck::Host, HTTPS_ALPN)
        .unwrap();
    assert_eq!(
        fetch(addr, "localhost", config).await.unwrap(),
        "server-peer=false"
    );

    tracing::info!("no certificate: refused");
    let anonymous = TlsSettings {
        cert_file: None,
        key_file: None,
        ..as_client.clone()
    };
    let config = anonymous
        .client_config(ServerCheck::Host, HTTPS_ALPN)
        .unwrap();
    assert!(fetch(addr, "localhost", config).await.is_err());

    tracing::info!("a certificate of another CA: refused");
    let other = Pki::new();
    let foreign = TlsSettings {
        ca_file: as_client.ca_file.clone(),
        ..other.leaf(Role::Client, "foreign")
    };
    let config = foreign
        .client_config(ServerCheck::Host, HTTPS_ALPN)
        .unwrap();
    assert!(fetch(addr, "localhost", config).await.is_err());
}

#[tokio::test]
async fn clients_check_the_server_name_as_asked() {
    let pki = Pki::new();
    let client_cert = pki.leaf(Role::Client, "client");
    tracing::info!("a listener presenting a client agent's certificate");
    let addr = start(client_cert.server_config(RPC_ALPN).unwrap(), Plain::Serve).await;
    let dialler = pki.leaf(Role::Server, "server");
    let name = server_name("dc1", "consul.");
    assert_eq!(name, "server.dc1.consul");
    let must_be_server = dialler
        .client_config(ServerCheck::Name(name), RPC_ALPN)
        .unwrap();
    let error = fetch(addr, "127.0.0.1", must_be_server).await.unwrap_err();
    assert!(error.contains("NotValidForName"), "{error}");
    tracing::info!("chain only: any name from the CA will do, even by IP");
    let chain_only = dialler
        .client_config(ServerCheck::ChainOnly, RPC_ALPN)
        .unwrap();
    fetch(addr, "127.0.0.1", chain_only).await.unwrap();
    tracing::info!("the dialled host must match by default; nothing checks nothing");
    let host = dialler.client_config(ServerCheck::Host, RPC_ALPN).unwrap();
    assert!(fetch(addr, "example.com", host).await.is_err());
    let other_pki = Pki::new();
    let other = other_pki.leaf(Role::Client, "x");
    let nothing = other.client_config(ServerCheck::Nothing, RPC_ALPN).unwrap();
    fetch(addr, "example.com", nothing).await.unwrap();
    let foreign = other
        .client_config(ServerCheck::ChainOnly, RPC_ALPN)
        .unwrap();
    assert!(fetch(addr, "127.0.0.1", foreign).await.is_err());
}

#[tokio::test]
async fn plain_http_on_the_https_port_gets_gos_answer() {
    let pki = Pki::new();
    let server = pki.leaf(Role::Server, "server");
    let addr = start(server.server_config(HTTPS_ALPN).unwrap(), Plain::Refuse).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /v1/agent/self HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert_eq!(
        reply,
        "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
    );
    tracing::info!("other bytes are closed unanswered");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"hello there\r\n").await.unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply).await;
    assert!(reply.is_empty());

    tracing::info!("Plain::Serve answers plain HTTP as HTTP");
    let addr = start(server.server_config(RPC_ALPN).unwrap(), Plain::Serve).await;
    let reply = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.text().await.unwrap(), "server-peer=false");
}

#[test]
fn settings_errors_and_versions() {
    assert_eq!(
        MinVersion::parse("TLSv1_3").unwrap(),
        (MinVersion::Tls13, false)
    );
    assert_eq!(
        MinVersion::parse("tls12").unwrap(),
        (MinVersion::Tls12, false)
    );
    assert_eq!(
        MinVersion::parse("TLSv1_0").unwrap(),
        (MinVersion::Tls12, true)
    );
    assert!(MinVersion::parse("SSLv3").is_err());
    let pki = Pki::new();
    let good = pki.leaf(Role::Server, "server");
    let no_key = TlsSettings {
        key_file: None,
        ..good.clone()
    };
    let e = no_key.server_config(HTTPS_ALPN).unwrap_err().to_string();
    assert_eq!(e, "cert_file is set but key_file is not");
    let no_ca = TlsSettings {
        ca_file: None,
        verify_incoming: true,
        ..good.clone()
    };
    let e = no_ca.server_config(HTTPS_ALPN).unwrap_err().to_string();
    assert_eq!(e, "verify_incoming needs ca_file or ca_path");
    let swapped = TlsSettings {
        key_file: good.cert_file.clone(),
        ..good.clone()
    };
    let e = swapped.server_config(HTTPS_ALPN).unwrap_err().to_string();
    assert!(e.contains("no private key found"), "{e}");
    let missing = TlsSettings {
        cert_file: Some(pki.dir.path().join("nope.pem")),
        ..good.clone()
    };
    let e = missing.server_config(HTTPS_ALPN).unwrap_err().to_string();
    assert!(e.starts_with("reading ") && e.contains("nope.pem"), "{e}");
    tracing::info!("ca_path reads every file of the directory");
    let roots = load_roots(None, Some(pki.dir.path()));
    // The directory holds keys too: a file without a certificate is an error.
    assert!(roots.is_err());
    let only_cas = tempfile::tempdir().unwrap();
    std::fs::write(only_cas.path().join("a.pem"), &pki.ca.cert_pem).unwrap();
    std::fs::write(only_cas.path().join("b.pem"), &Pki::new().ca.cert_pem).unwrap();
    let roots = load_roots(None, Some(only_cas.path())).unwrap().unwrap();
    assert_eq!(roots.len(), 2);
}

#[test]
fn internal_rpc_from_settings() {
    let pki = Pki::new();
    let mut s = pki.leaf(Role::Server, "server");
    tracing::info!("a certificate alone: TLS accepted, plain too, outgoing plain");
    let rpc = InternalRpc::from_settings(&s, true, "dc1", "consul")
        .unwrap()
        .unwrap();
    assert!(rpc.server.is_some() && rpc.client.is_none() && !rpc.refuse_plain);
    assert_eq!(rpc.raft_peer_name, None);
    tracing::info!(
        "verify_server_hostname implies verify_outgoing; with verify_incoming, Raft checks peers"
    );
    s.verify_server_hostname = true;
    s.verify_incoming = true;
    let rpc = InternalRpc::from_settings(&s, true, "dc1", "consul")
        .unwrap()
        .unwrap();
    assert!(rpc.client.is_some() && rpc.refuse_plain);
    assert_eq!(rpc.raft_peer_name.as_deref(), Some("server.dc1.consul"));
    assert_eq!(rpc, rpc.clone());
    let client_agent = InternalRpc::from_settings(&s, false, "dc1", "consul")
        .unwrap()
        .unwrap();
    assert!(client_agent.server.is_none());
    assert!(
        InternalRpc::from_settings(&TlsSettings::default(), true, "dc1", "consul")
            .unwrap()
            .is_none()
    );
}

#[test]
fn leaves_carry_consuls_names() {
    let pki = Pki::new();
    let leaf = generate::leaf(
        &pki.ca.cert_pem,
        &pki.ca.key_pem,
        &LeafRequest {
            role: Role::Server,
            datacenter: "east",
            domain: "example",
            node: Some("n1"),
            days: 1,
            dns_names: &["extra.example.net".to_string()],
            ip_addresses: &["10.0.0.1".parse().unwrap()],
        },
    )
    .unwrap();
    let certs = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let peer = PeerCertificates(Arc::new(certs));
    for name in [
        "server.east.example",
        "n1.server.east.example",
        "extra.example.net",
        "localhost",
        "127.0.0.1",
        "10.0.0.1",
    ] {
        assert!(peer_is(Some(&peer), name), "{name}");
    }
    assert!(!peer_is(Some(&peer), "client.east.example"));
    assert!(!peer_is(None, "server.east.example"));
}

#[test]
fn one_pem_parser_for_certificates_and_keys() {
    let pki = Pki::new();
    // A key block before the certificate, as bundles often have: skipped for certificates.
    let bundle = format!("{}{}", pki.ca.key_pem, pki.ca.cert_pem);
    assert_eq!(pem_certs(bundle.as_bytes()).unwrap().len(), 1);
    assert!(matches!(
        pem_key(bundle.as_bytes()),
        Ok(PrivateKeyDer::Pkcs8(_))
    ));
    assert_eq!(
        pem_certs(pki.ca.key_pem.as_bytes()),
        Err(PemError::Missing("certificate"))
    );
    assert_eq!(
        pem_key(pki.ca.cert_pem.as_bytes()).unwrap_err(),
        PemError::Missing("private key")
    );
    let broken = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        pem_certs(broken.as_bytes()),
        Err(PemError::Malformed(_))
    ));
    // The file readers say which file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.pem");
    std::fs::write(&path, &pki.ca.key_pem).unwrap();
    let err = load_certs(&path).unwrap_err().to_string();
    assert!(err.ends_with("key.pem: no certificate found"), "{err}");
    assert!(load_key(&path).is_ok());
}
