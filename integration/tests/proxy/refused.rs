//! The public listener refuses clients without a certificate, or with one from another
//! CA (even with the right SPIFFE id), and accepts one with a leaf from the cluster's CA.

use std::sync::Arc;

use concord_integration::apps::tcp_echo;
use concord_integration::sidecar::TestProxy;
use concord_integration::{init_tracing, TestAgent};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::*;

/// Accepts any server: these tests are about what the server refuses.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn builder() -> rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
}

fn ders(pem: &str) -> Vec<CertificateDer<'static>> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .map(|p| CertificateDer::from(p.unwrap().contents))
        .collect()
}

fn key(pem: &str) -> PrivateKeyDer<'static> {
    let p = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    PrivateKeyDer::Pkcs8(p.contents.into())
}

/// Connects over TLS with `config` and tries an echo: whether it came back.
async fn tls_echo(addr: SocketAddr, config: ClientConfig) -> bool {
    let Ok(tcp) = TcpStream::connect(addr).await else {
        return false;
    };
    let name = ServerName::try_from("db.example").unwrap();
    match tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
    {
        Ok(mut tls) => echo_on(&mut tls, b"ping").await.is_some(),
        Err(_) => false,
    }
}

/// A leaf for `uri` signed by a fresh CA no cluster trusts: (chain PEM, key PEM).
fn foreign_leaf(uri: &str) -> (String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::URI(uri.to_string().try_into().unwrap())];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_listener_refuses_clients_without_a_cluster_certificate() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    wait_for_ca(&agent).await;
    let db_app = tcp_echo().await.unwrap();
    let public = register_with_sidecar(&agent, "db", db_app.addr.port(), json!([])).await;
    let db = TestProxy::start(&agent, &["-sidecar-for", "db"]).unwrap();

    tracing::info!("a client with a leaf from the cluster's CA gets through (the control)");
    let (_, _, leaf) = agent
        .get_json("/v1/agent/connect/ca/leaf/web")
        .await
        .unwrap();
    let cert_pem = leaf["CertPEM"].as_str().unwrap().to_string();
    let key_pem = leaf["PrivateKeyPEM"].as_str().unwrap().to_string();
    assert_eventually!(
        tls_echo(
            loopback(public),
            builder()
                .with_client_auth_cert(ders(&cert_pem), key(&key_pem))
                .unwrap()
        )
        .await,
        "a cluster leaf is accepted; db:\n{}",
        db.logs()
    );

    tracing::info!("no client certificate: refused");
    assert!(!tls_echo(loopback(public), builder().with_no_client_auth()).await);

    tracing::info!("a certificate with web's SPIFFE id from another CA: refused");
    let (chain, key_pem) = foreign_leaf(leaf["ServiceURI"].as_str().unwrap());
    let foreign = builder()
        .with_client_auth_cert(ders(&chain), key(&key_pem))
        .unwrap();
    assert!(!tls_echo(loopback(public), foreign).await);

    assert_eventually!(
        db.metric("concord_proxy_tls_handshake_failures_total{direction=\"inbound\"}")
            .await
            >= 2.0,
        "both refusals are counted:\n{}",
        db.metrics().await
    );
    assert!(db.logs().contains("TLS handshake refused"), "{}", db.logs());
}
