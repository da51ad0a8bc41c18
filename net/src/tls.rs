//! Agent TLS (Consul's `tls` stanza, not Connect's SPIFFE mTLS): PEM files in, rustls
//! configurations out, for the three places that speak it: the HTTPS API listener, the
//! server RPC listener, and the RPC client (agent to server, server to server).
//!
//! What each verify flag means, as Consul defines it:
//! - `verify_incoming`: a listener demands a client certificate signed by the CA; the RPC
//!   port then also refuses plain connections (without it, plain and TLS both work there).
//! - `verify_outgoing`: RPC is sent over TLS and the server's chain is checked against the
//!   CA (the name is not checked).
//! - `verify_server_hostname` (implies `verify_outgoing`): the server must also present
//!   `server.<datacenter>.<domain>`, whatever address was dialled; and, with
//!   `verify_incoming`, a server accepts Raft traffic only from a peer whose client
//!   certificate carries that name ([`peer_is`]), so a client agent's certificate
//!   (`client.<dc>.<domain>`) cannot pose as a server (Consul's `AuthorizeServerConn`).
//!
//! [`generate`] makes the CA and certificates (`concord tls ca|cert create`).
//!
//! rustls speaks TLS 1.2 and 1.3 only: a `tls_min_version` of `TLSv1_0` or `TLSv1_1` acts as
//! `TLSv1_2` (the caller warns).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A file holds no PEM block of the expected kind.
    #[error("{path}: no {what} found")]
    Missing {
        /// The file.
        path: PathBuf,
        /// `certificate` or `private key`.
        what: &'static str,
    },
    /// The settings contradict each other or name an unknown value.
    #[error("{0}")]
    Invalid(String),
    /// rustls refused the material (key not matching the certificate, bad CA, ...).
    #[error("{0}")]
    Rustls(String),
}

/// The lowest TLS version a listener or client accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3 (Consul's default `TLSv1_2`).
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl MinVersion {
    /// Parses Consul's names (`TLSv1_2`, `TLSv1_3`, and the older `tls12`, `tls13`).
    /// The second value is `true` when an older version was asked for and 1.2 is used
    /// instead (rustls has no TLS 1.0/1.1).
    pub fn parse(text: &str) -> Result<(MinVersion, bool), TlsError> {
        match text {
            "" | "TLSv1_2" | "tls12" => Ok((MinVersion::Tls12, false)),
            "TLSv1_3" | "tls13" => Ok((MinVersion::Tls13, false)),
            "TLSv1_0" | "TLSv1_1" | "tls10" | "tls11" => Ok((MinVersion::Tls12, true)),
            other => Err(TlsError::Invalid(format!(
                "tls_min_version: {other:?} is not one of TLSv1_0, TLSv1_1, TLSv1_2, TLSv1_3"
            ))),
        }
    }

    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static BOTH: &[&rustls::SupportedProtocolVersion] =
            &[&rustls::version::TLS13, &rustls::version::TLS12];
        static ONLY_13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
        match self {
            MinVersion::Tls12 => BOTH,
            MinVersion::Tls13 => ONLY_13,
        }
    }
}

/// One resolved TLS block (`tls.https` or `tls.internal_rpc`, already inheriting from
/// `tls.defaults`): where the PEM files are and what to verify.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// CA certificate(s) (PEM) that peers' certificates must chain to.
    pub ca_file: Option<PathBuf>,
    /// A directory of CA certificates (every PEM file in it), added to `ca_file`'s.
    pub ca_path: Option<PathBuf>,
    /// This agent's certificate chain (PEM).
    pub cert_file: Option<PathBuf>,
    /// This agent's private key (PEM: PKCS#8, SEC1 or PKCS#1).
    pub key_file: Option<PathBuf>,
    /// Demand a client certificate signed by the CA on incoming connections.
    pub verify_incoming: bool,
    /// Use TLS for outgoing RPC and check the server's chain.
    pub verify_outgoing: bool,
    /// Outgoing RPC also checks the server presents `server.<dc>.<domain>`; incoming Raft
    /// traffic must come from a certificate with that name (with `verify_incoming`).
    pub verify_server_hostname: bool,
    /// Lowest TLS version accepted.
    pub min_version: MinVersion,
}

/// The crypto provider every Concord TLS config uses (ring, as rcgen and the proxy).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Why a PEM text gave nothing usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// A block is malformed (bad base64, unterminated).
    #[error("{0}")]
    Malformed(String),
    /// No block of the wanted kind (`certificate` or `private key`).
    #[error("no {0} found")]
    Missing(&'static str),
}

/// Every certificate of a PEM text, as DER; other blocks are skipped. The one PEM parser
/// of Concord: the agent's `tls` files ([`load_certs`]) and the proxy's Connect roots and
/// leaves both read through it.
pub fn pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Malformed(e.to_string()))?;
    if certs.is_empty() {
        return Err(PemError::Missing("certificate"));
    }
    Ok(certs)
}

/// The first private key of a PEM text (PKCS#8, SEC1 or PKCS#1).
pub fn pem_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => PemError::Missing("private key"),
        e => PemError::Malformed(e.to_string()),
    })
}

/// A [`PemError`] of the file at `path`.
fn pem_file_error(path: &Path, e: PemError) -> TlsError {
    let path = path.to_path_buf();
    match e {
        PemError::Malformed(message) => TlsError::Read { path, message },
        PemError::Missing(what) => TlsError::Missing { path, what },
    }
}

/// Every certificate in a PEM file ([`pem_certs`] over the file).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    pem_certs(&read(path)?).map_err(|e| pem_file_error(path, e))
}

/// The first private key in a PEM file ([`pem_key`] over the file).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    pem_key(&read(path)?).map_err(|e| pem_file_error(path, e))
}

/// Implements the three handshake-signature methods of a rustls verifier trait
/// (`ServerCertVerifier`, `ClientCertVerifier`) by handing them to the [`Signatures`] at
/// `self.<path>`: `delegate_signatures!(signatures);` inside the `impl`.
#[macro_export]
macro_rules! delegate_signatures {
    ($($path:tt).+) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &::rustls::pki_types::CertificateDer<'_>,
            dss: &::rustls::DigitallySignedStruct,
        ) -> Result<::rustls::client::danger::HandshakeSignatureValid, ::rustls::Error> {
            $crate::tls::Signatures::tls12(&self.$($path).+, message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &::rustls::pki_types::CertificateDer<'_>,
            dss: &::rustls::DigitallySignedStruct,
        ) -> Result<::rustls::client::danger::HandshakeSignatureValid, ::rustls::Error> {
            $crate::tls::Signatures::tls13(&self.$($path).+, message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<::rustls::SignatureScheme> {
            $crate::tls::Signatures::schemes(&self.$($path).+)
        }
    };
}

/// The handshake signature checks every certificate verifier makes the same way: with its
/// crypto provider's algorithms. The verifiers (here and in the proxy) differ only in how
/// they judge the certificate, and hand these three to this.
#[derive(Clone, Debug)]
pub struct Signatures(pub Arc<CryptoProvider>);

impl Signatures {
    /// `verify_tls12_signature` of rustls's verifier traits.
    pub fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    /// `verify_tls13_signature` of rustls's verifier traits.
    pub fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    /// `supported_verify_schemes` of rustls's verifier traits.
    pub fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The CA roots of `ca_file` and every file in `ca_path`; `None` when neither is set.
pub fn load_roots(
    ca_file: Option<&Path>,
    ca_path: Option<&Path>,
) -> Result<Option<RootCertStore>, TlsError> {
    let mut files: Vec<PathBuf> = ca_file.map(Path::to_path_buf).into_iter().collect();
    if let Some(dir) = ca_path {
        let entries = std::fs::read_dir(dir).map_err(|e| TlsError::Read {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut in_dir: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        in_dir.sort();
        files.extend(in_dir);
    }
    if files.is_empty() {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    for file in &files {
        for cert in load_certs(file)? {
            roots
                .add(cert)
                .map_err(|e| TlsError::Rustls(format!("CA {}: {e}", file.display())))?;
        }
    }
    Ok(Some(roots))
}

impl TlsSettings {
    /// The CA roots, required: verifying anything needs them.
    fn roots(&self, why: &str) -> Result<Arc<RootCertStore>, TlsError> {
        load_roots(self.ca_file.as_deref(), self.ca_path.as_deref())?
            .map(Arc::new)
            .ok_or_else(|| TlsError::Invalid(format!("{why} needs ca_file or ca_path")))
    }

    /// This agent's certificate and key, if both are set (one without the other is an error).
    fn identity(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, TlsError> {
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Ok(Some((load_certs(cert)?, load_key(key)?))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(TlsError::Invalid(
                "cert_file is set but key_file is not".into(),
            )),
            (None, Some(_)) => Err(TlsError::Invalid(
                "key_file is set but cert_file is not".into(),
            )),
        }
    }

    /// A listener's configuration: this agent's certificate, a client certificate demanded
    /// with `verify_incoming`, and the ALPN protocols offered (`h2` before `http/1.1`).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
        let (chain, key) = self.identity()?.ok_or_else(|| {
            TlsError::Invalid("a TLS listener needs cert_file and key_file".into())
        })?;
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(self.min_version.versions())
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let builder = if self.verify_incoming {
            let roots = self.roots("verify_incoming")?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Rustls(format!("certificate and key: {e}")))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// A client's configuration: the server is checked as `check` says, this agent's
    /// certificate (when set) is offered, and `alpn` is asked for.
    pub fn client_config(
        &self,
        check: ServerCheck,
        alpn: &[&[u8]],
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = provider();
        let verifier: Arc<dyn ServerCertVerifier> = match check {
            ServerCheck::Nothing => Arc::new(NoCheck(Signatures(provider.clone()))),
            check => {
                let roots = self.roots("verifying the server")?;
                let inner = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| TlsError::Rustls(e.to_string()))?;
                Arc::new(Checked {
                    inner,
                    check,
                    signatures: Signatures(provider.clone()),
                })
            }
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(self.min_version.versions())
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match self.identity()? {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::Rustls(format!("client certificate and key: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// How a client checks the server's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerCheck {
    /// Chain to the CA and valid for the host dialled (the CLI's HTTPS, as any client).
    Host,
    /// Chain to the CA and valid for this name, whatever was dialled (`-tls-server-name`;
    /// RPC with `verify_server_hostname`: `server.<dc>.<domain>`).
    Name(String),
    /// Chain to the CA, any name (RPC with `verify_outgoing` only, as Consul).
    ChainOnly,
    /// Nothing (`CONSUL_HTTP_SSL_VERIFY=false`): encryption without authentication.
    Nothing,
}

/// The name every server of a datacenter presents: `server.<dc>.<domain>`.
pub fn server_name(datacenter: &str, domain: &str) -> String {
    format!(
        "server.{datacenter}.{}",
        domain.trim_end_matches('.').trim_start_matches('.')
    )
}

/// Checks a server's chain with webpki, and its name as [`ServerCheck`] says.
#[derive(Debug)]
struct Checked {
    inner: Arc<WebPkiServerVerifier>,
    check: ServerCheck,
    signatures: Signatures,
}

impl ServerCertVerifier for Checked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        dialled: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verify = |name: &ServerName<'_>| {
            self.inner
                .verify_server_cert(end_entity, intermediates, name, ocsp, now)
        };
        match &self.check {
            ServerCheck::Name(name) => {
                let name = ServerName::try_from(name.as_str())
                    .map_err(|e| rustls::Error::General(format!("server name {name:?}: {e}")))?;
                verify(&name)
            }
            // webpki checks the name only after the chain: a name error means the chain
            // was good.
            ServerCheck::ChainOnly => match verify(dialled) {
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            },
            ServerCheck::Host | ServerCheck::Nothing => verify(dialled),
        }
    }

    crate::delegate_signatures!(signatures);
}

/// Accepts any server certificate (the handshake signatures are still checked, so the
/// peer holds the key of the certificate it sent).
#[derive(Debug)]
struct NoCheck(Signatures);

impl ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _dialled: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    crate::delegate_signatures!(0);
}

/// The certificate chain a TLS peer presented (already verified against the CA when the
/// listener demands client certificates). [`crate::serve`] puts it in each request's
/// extensions; a plain connection's requests have none.
#[derive(Clone, Debug)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

/// Whether the peer's leaf certificate is valid for DNS name `name` (Consul's
/// `AuthorizeServerConn` with `server.<dc>.<domain>`). `false` without a certificate.
pub fn peer_is(peer: Option<&PeerCertificates>, name: &str) -> bool {
    let Some(leaf) = peer.and_then(|p| p.0.first()) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(name) else {
        return false;
    };
    webpki::EndEntityCert::try_from(leaf)
        .map(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
        .unwrap_or(false)
}

/// What the server RPC port and the RPC client do with TLS (`tls.internal_rpc`).
#[derive(Clone)]
pub struct InternalRpc {
    /// The listener's configuration (a server's RPC port).
    pub server: Option<Arc<ServerConfig>>,
    /// The client's configuration; `None`: outgoing RPC is plain (`verify_outgoing` off).
    pub client: Option<Arc<ClientConfig>>,
    /// Plain connections are refused on the RPC port (`verify_incoming`).
    pub refuse_plain: bool,
    /// Raft traffic must come from a peer certificate valid for this name
    /// (`verify_incoming` + `verify_server_hostname`: `server.<dc>.<domain>`).
    pub raft_peer_name: Option<String>,
}

impl std::fmt::Debug for InternalRpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalRpc")
            .field("server", &self.server.is_some())
            .field("client", &self.client.is_some())
            .field("refuse_plain", &self.refuse_plain)
            .field("raft_peer_name", &self.raft_peer_name)
            .finish()
    }
}

/// Two configurations are equal when they share their rustls configs (built once at start).
impl PartialEq for InternalRpc {
    fn eq(&self, other: &Self) -> bool {
        fn same<T>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
        }
        same(&self.server, &other.server)
            && same(&self.client, &other.client)
            && self.refuse_plain == other.refuse_plain
            && self.raft_peer_name == other.raft_peer_name
    }
}

impl Eq for InternalRpc {}

/// ALPN for server RPC: HTTP/2 only, as the plain port speaks it with prior knowledge.
pub const RPC_ALPN: &[&[u8]] = &[b"h2"];
/// ALPN of the HTTPS API: HTTP/2 or HTTP/1.1, as Go's HTTPS servers offer.
pub const HTTPS_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

impl InternalRpc {
    /// Resolves `tls.internal_rpc` for an agent of datacenter `dc` and DNS `domain`;
    /// `None` when nothing asks for TLS (no verify flag and no certificate). `server` says
    /// whether this agent serves RPC (then it needs a certificate).
    pub fn from_settings(
        s: &TlsSettings,
        server: bool,
        dc: &str,
        domain: &str,
    ) -> Result<Option<InternalRpc>, TlsError> {
        let verify_outgoing = s.verify_outgoing || s.verify_server_hostname;
        let has_cert = s.cert_file.is_some();
        if !verify_outgoing && !s.verify_incoming && !has_cert {
            return Ok(None);
        }
        let name = server_name(dc, domain);
        let listener = if server && (has_cert || s.verify_incoming) {
            Some(s.server_config(RPC_ALPN)?)
        } else {
            None
        };
        let client = if verify_outgoing {
            let check = if s.verify_server_hostname {
                ServerCheck::Name(name.clone())
            } else {
                ServerCheck::ChainOnly
            };
            Some(s.client_config(check, RPC_ALPN)?)
        } else {
            None
        };
        Ok(Some(InternalRpc {
            server: listener,
            client,
            refuse_plain: s.verify_incoming,
            raft_peer_name: (s.verify_incoming && s.verify_server_hostname).then_some(name),
        }))
    }
}

pub mod generate;
#[cfg(test)]
mod tests;
