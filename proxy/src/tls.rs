//! mTLS between sidecars with the built-in CA's SPIFFE identities (rustls, TLS 1.3 only).
//!
//! [`TlsMaterial`] holds the current trust roots and this proxy's leaf. The control side
//! replaces them as the agent reports rotations; the rustls configurations never copy them
//! but read them through a resolver (our leaf) and verifiers (the roots) at every
//! handshake, so new handshakes use new material while open connections, whose handshake
//! is done, are never touched.
//!
//! - Inbound ([`TlsMaterial::server_config`]): a client certificate is required and must
//!   chain to a current root (the peer's service is then read from its SPIFFE URI SAN with
//!   [`peer_service`]).
//! - Outbound ([`TlsMaterial::client_config`]): we present our leaf, and the server must
//!   chain to a current root AND carry exactly the SPIFFE id of the service we meant to
//!   reach; anything else fails the handshake.

use std::fmt;
use std::io;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use concord_api::connect::{spiffe_service_uri, CaRoots, IssuedCert};
use concord_api::intention::{parse_spiffe_service, SpiffeService};
use concord_net::tls::Signatures;
use futures::future::BoxFuture;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::model::{BoxIo, Connector, Endpoint, UpstreamSnapshot};

/// Why TLS material or a peer was refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM text held no usable certificate or key.
    #[error("bad PEM: {0}")]
    Pem(String),
    /// rustls refused the material (unsupported key, empty root store, ...).
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The peer's certificate carries no service SPIFFE id.
    #[error("peer identity: {0}")]
    Identity(String),
}

/// The current roots and leaf, swapped whole under a lock that is never held across an
/// await (a std `RwLock`: handshakes only copy `Arc`s out of it).
pub struct TlsMaterial {
    /// The crypto provider, with the handshake signature checks every verifier here uses.
    signatures: Signatures,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    roots: Option<Arc<RootCertStore>>,
    /// Built from `roots` when they change, so a handshake does not rebuild it.
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    leaf: Option<Arc<CertifiedKey>>,
    trust_domain: String,
    /// The datacenter of our own identity (from the leaf's SPIFFE id).
    datacenter: String,
    /// Our own SPIFFE id (the leaf's URI SAN).
    own_uri: String,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ready, td) = match self.state.read() {
            Ok(s) => (
                s.roots.is_some() && s.leaf.is_some(),
                s.trust_domain.clone(),
            ),
            Err(_) => (false, String::new()),
        };
        f.debug_struct("TlsMaterial")
            .field("ready", &ready)
            .field("trust_domain", &td)
            .finish()
    }
}

impl TlsMaterial {
    /// Empty material: every handshake fails until roots and a leaf are set.
    pub fn new() -> Arc<TlsMaterial> {
        Arc::new(TlsMaterial {
            signatures: Signatures(Arc::new(rustls::crypto::ring::default_provider())),
            state: RwLock::new(State::default()),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-written (every write
        // replaces whole fields), so a poisoned lock is still consistent.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Trusts exactly these roots (every root listed, active or rotated out) from the next
    /// handshake on.
    pub fn set_roots(&self, roots: &CaRoots) -> Result<(), TlsError> {
        let mut store = RootCertStore::empty();
        for root in &roots.roots {
            for der in pem_certs(&root.root_cert)? {
                store
                    .add(der)
                    .map_err(|e| TlsError::Config(format!("root {}: {e}", root.id)))?;
            }
        }
        let store = Arc::new(store);
        let verifier =
            WebPkiClientVerifier::builder_with_provider(store.clone(), self.signatures.0.clone())
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut state = self.write();
        state.roots = Some(store);
        state.client_verifier = Some(verifier);
        state.trust_domain = roots.trust_domain.clone();
        Ok(())
    }

    /// Presents this leaf (its PEM chain and key) from the next handshake on.
    pub fn set_leaf(&self, leaf: &IssuedCert) -> Result<(), TlsError> {
        let chain = pem_certs(&leaf.cert_pem)?;
        let key = pem_key(&leaf.private_key_pem)?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| TlsError::Config(format!("leaf key: {e}")))?;
        let id = parse_spiffe_service(&leaf.service_uri).map_err(TlsError::Identity)?;
        let mut state = self.write();
        state.leaf = Some(Arc::new(CertifiedKey::new(chain, signer)));
        state.datacenter = id.datacenter;
        state.own_uri = leaf.service_uri.clone();
        Ok(())
    }

    /// Whether both roots and a leaf are set (handshakes can succeed).
    pub fn is_ready(&self) -> bool {
        let s = self.read();
        s.roots.is_some() && s.leaf.is_some()
    }

    /// Our own SPIFFE id (empty before the first leaf).
    pub fn own_uri(&self) -> String {
        self.read().own_uri.clone()
    }

    /// The SPIFFE id a server of `service` must present: our trust domain and datacenter.
    pub fn expected_uri(&self, service: &str) -> String {
        let s = self.read();
        spiffe_service_uri(&s.trust_domain, &s.datacenter, service)
    }

    /// The inbound (server) configuration: TLS 1.3, client certificate required, no session
    /// resumption (see [`TlsMaterial::client_config`]): it issues no tickets and keeps no
    /// session cache.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.signatures.0.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(Arc::new(CurrentRoots(self.clone())))
            .with_cert_resolver(Arc::new(CurrentLeaf(self.clone())));
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(Arc::new(config))
    }

    /// The outbound (client) configuration for dialling an instance of `service`.
    ///
    /// Without session resumption, on both sides: every connection's handshake checks both
    /// certificates against the roots and identities current at that moment (a resumed
    /// session would skip that after a root rotation), and sidecar connections live long, so
    /// a full handshake per connection costs little. It also saves memory: each config held
    /// its own 256-entry session cache and stored the server's tickets in it, ~16 KB per
    /// upstream connection (each dial builds a config).
    pub fn client_config(self: &Arc<Self>, service: &str) -> Result<Arc<ClientConfig>, TlsError> {
        let verifier = ExpectedServer {
            material: self.clone(),
            expected: self.expected_uri(service),
        };
        let mut config = ClientConfig::builder_with_provider(self.signatures.0.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(CurrentLeaf(self.clone())));
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    }
}

/// Every certificate of a PEM text, as DER ([`concord_net::tls::pem_certs`]).
fn pem_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    concord_net::tls::pem_certs(pem.as_bytes()).map_err(|e| TlsError::Pem(e.to_string()))
}

/// The first private key of a PEM text ([`concord_net::tls::pem_key`]).
fn pem_key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    concord_net::tls::pem_key(pem.as_bytes()).map_err(|e| TlsError::Pem(e.to_string()))
}

/// The URI SANs of a DER certificate.
pub fn uri_sans(der: &[u8]) -> Result<Vec<String>, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| TlsError::Identity(format!("unparsable certificate: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| TlsError::Identity(format!("bad SAN extension: {e}")))?;
    Ok(san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::URI(uri) => Some((*uri).to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The service identity of a verified peer: the SPIFFE service id in its leaf's URI SAN.
pub fn peer_service(certs: Option<&[CertificateDer<'_>]>) -> Result<SpiffeService, TlsError> {
    let leaf = certs
        .and_then(|c| c.first())
        .ok_or_else(|| TlsError::Identity("no peer certificate".to_string()))?;
    let uris = uri_sans(leaf)?;
    let uri = uris
        .iter()
        .find(|u| u.starts_with("spiffe://"))
        .ok_or_else(|| TlsError::Identity("no SPIFFE URI SAN".to_string()))?;
    parse_spiffe_service(uri).map_err(TlsError::Identity)
}

/// Resolves to the current leaf, for both ends of a connection.
#[derive(Debug)]
struct CurrentLeaf(Arc<TlsMaterial>);

impl ResolvesServerCert for CurrentLeaf {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().leaf.clone()
    }
}

impl ResolvesClientCert for CurrentLeaf {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.read().leaf.clone()
    }

    fn has_certs(&self) -> bool {
        self.0.read().leaf.is_some()
    }
}

/// Verifies a client against the current roots (webpki's client verifier, rebuilt on each
/// root change).
#[derive(Debug)]
struct CurrentRoots(Arc<TlsMaterial>);

impl ClientCertVerifier for CurrentRoots {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional; the current list cannot outlive the lock, and peers have one
        // leaf anyway.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verifier = self
            .0
            .read()
            .client_verifier
            .clone()
            .ok_or_else(|| rustls::Error::General("no trusted roots yet".to_string()))?;
        verifier.verify_client_cert(end_entity, intermediates, now)
    }

    concord_net::delegate_signatures!(0.signatures);
}

/// Verifies a server against the current roots and one expected SPIFFE id. The TLS server
/// name is not used: Connect identities live in the URI SAN, not in DNS names.
#[derive(Debug)]
struct ExpectedServer {
    material: Arc<TlsMaterial>,
    expected: String,
}

impl ServerCertVerifier for ExpectedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let roots = self
            .material
            .read()
            .roots
            .clone()
            .ok_or_else(|| rustls::Error::General("no trusted roots yet".to_string()))?;
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &roots,
            intermediates,
            now,
            self.material
                .signatures
                .0
                .signature_verification_algorithms
                .all,
        )?;
        let uris = uri_sans(end_entity).map_err(|e| rustls::Error::General(e.to_string()))?;
        if uris.contains(&self.expected) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server identity {uris:?} is not the expected {}",
                self.expected
            )))
        }
    }

    concord_net::delegate_signatures!(material.signatures);
}

/// Default TCP connect timeout (Consul's resolver default).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The production [`Connector`]: TCP (bounded by a connect timeout) then mTLS with our
/// leaf, refusing a server that is not the endpoint's service.
#[derive(Clone, Debug)]
pub struct MtlsConnector {
    material: Arc<TlsMaterial>,
    /// A fixed timeout (the upstream's `connect_timeout_ms`), which wins over the chain's.
    fixed_timeout: Option<Duration>,
    /// The upstream's latest chain, whose start resolver's `ConnectTimeout` applies.
    chain: Option<watch::Receiver<UpstreamSnapshot>>,
}

impl MtlsConnector {
    /// Dials with `material`; the TCP connect + handshake timeout is `fixed_timeout`, else
    /// the `ConnectTimeout` of `chain`'s start resolver at dial time, else 5 s.
    pub fn new(
        material: Arc<TlsMaterial>,
        fixed_timeout: Option<Duration>,
        chain: Option<watch::Receiver<UpstreamSnapshot>>,
    ) -> MtlsConnector {
        MtlsConnector {
            material,
            fixed_timeout,
            chain,
        }
    }

    fn timeout(&self) -> Duration {
        self.fixed_timeout
            .or_else(|| {
                self.chain
                    .as_ref()
                    .and_then(|c| chain_connect_timeout(&c.borrow().chain))
            })
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
    }
}

/// The chain's start resolver `ConnectTimeout` (`"5s"`), if it parses.
pub fn chain_connect_timeout(chain: &serde_json::Value) -> Option<Duration> {
    let start = chain["StartNode"].as_str()?;
    let text = chain["Nodes"][start]["Resolver"]["ConnectTimeout"].as_str()?;
    concord_api::duration::parse_duration(text).ok()
}

impl Connector for MtlsConnector {
    fn connect(&self, endpoint: &Endpoint) -> BoxFuture<'static, io::Result<BoxIo>> {
        let material = self.material.clone();
        let timeout = self.timeout();
        let endpoint = endpoint.clone();
        Box::pin(async move {
            let config = material
                .client_config(&endpoint.service)
                .map_err(io::Error::other)?;
            let dial = async {
                let tcp = TcpStream::connect(endpoint.addr).await?;
                let _ = tcp.set_nodelay(true);
                let name = ServerName::IpAddress(endpoint.addr.ip().into());
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await?;
                Ok::<BoxIo, io::Error>(Box::new(tls))
            };
            match tokio::time::timeout(timeout, dial).await {
                Ok(result) => result,
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect to {} timed out after {timeout:?}", endpoint.addr),
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests;
