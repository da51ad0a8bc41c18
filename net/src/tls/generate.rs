//! Agent TLS certificates as `consul tls ca create` and `consul tls cert create` make them
//! (ECDSA P-256 keys): a self-signed CA, optionally name-constrained, and leaves signed by
//! it for a server (`server.<dc>.<domain>`), a client agent (`client.<dc>.<domain>`) or the
//! CLI (`cli.<dc>.<domain>`), each also valid for `localhost` (and, but for the CLI,
//! `127.0.0.1`). Keys are written as PKCS#8 (`PRIVATE KEY`), where Consul writes SEC1.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, NameConstraints, SanType,
};

use super::TlsError;

/// A PEM certificate and its PEM private key.
#[derive(Debug)]
pub struct Generated {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

/// What a leaf certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A server agent: may serve RPC and join Raft.
    Server,
    /// A client agent.
    Client,
    /// The CLI (client authentication to the HTTPS API).
    Cli,
}

impl Role {
    /// The first label of the certificate's name, and of its file name.
    pub fn label(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
            Role::Cli => "cli",
        }
    }
}

/// A leaf certificate to make.
#[derive(Debug)]
pub struct LeafRequest<'a> {
    /// Server, client or CLI.
    pub role: Role,
    /// Datacenter (`dc1`).
    pub datacenter: &'a str,
    /// Domain (`consul`).
    pub domain: &'a str,
    /// A server's node name: adds `<node>.server.<dc>.<domain>`.
    pub node: Option<&'a str>,
    /// Validity from now.
    pub days: u32,
    /// More DNS names, first in the SANs.
    pub dns_names: &'a [String],
    /// More IP addresses, first in the SANs.
    pub ip_addresses: &'a [IpAddr],
}

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn rcgen_error(e: rcgen::Error) -> TlsError {
    TlsError::Rustls(format!("generating a certificate: {e}"))
}

/// Validity from now for `days` days.
fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + DAY * days;
}

/// A new self-signed agent CA valid for `days`; with `name_constraints` non-empty, it may
/// sign DNS names under those domains only (Consul's `-name-constraint`).
pub fn ca(days: u32, name_constraints: &[String]) -> Result<Generated, TlsError> {
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
    let id: u64 = rand010::random();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("Concord Agent CA {id}"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Concord");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    if !name_constraints.is_empty() {
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: name_constraints
                .iter()
                .map(|d| GeneralSubtree::DnsName(d.clone()))
                .collect(),
            excluded_subtrees: Vec::new(),
        });
    }
    validity(&mut params, days);
    let cert = params.self_signed(&key).map_err(rcgen_error)?;
    Ok(Generated {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The name a leaf is made for: `<role>.<dc>.<domain>`.
pub fn leaf_name(role: Role, datacenter: &str, domain: &str) -> String {
    format!("{}.{datacenter}.{domain}", role.label())
}

/// A new leaf signed by the CA (`ca_cert_pem`, `ca_key_pem`), with Consul's SANs: the
/// extra names and addresses first, then (server) `<node>.server.<dc>.<domain>`, the
/// role's name, `localhost`, and (server, client) `127.0.0.1`. Servers and clients may
/// authenticate either end of a connection (server and client auth), as Consul's.
pub fn leaf(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    req: &LeafRequest<'_>,
) -> Result<Generated, TlsError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)
        .map_err(|e| TlsError::Invalid(format!("CA key: {e} (a PKCS#8 PEM key is expected)")))?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)
        .map_err(|e| TlsError::Invalid(format!("CA certificate: {e}")))?;
    let name = leaf_name(req.role, req.datacenter, req.domain);
    let mut dns: Vec<String> = req
        .dns_names
        .iter()
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect();
    if let (Role::Server, Some(node)) = (req.role, req.node) {
        dns.push(format!("{node}.{name}"));
    }
    dns.push(name.clone());
    dns.push("localhost".to_string());
    let mut ips = req.ip_addresses.to_vec();
    if req.role != Role::Cli {
        ips.push(IpAddr::from([127, 0, 0, 1]));
    }
    let mut sans = Vec::with_capacity(dns.len() + ips.len());
    for d in dns {
        let ia5 = d
            .as_str()
            .try_into()
            .map_err(|e| TlsError::Invalid(format!("DNS name {d:?}: {e}")))?;
        sans.push(SanType::DnsName(ia5));
    }
    sans.extend(ips.into_iter().map(SanType::IpAddress));
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match req.role {
        Role::Server | Role::Client => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Role::Cli => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, req.days);
    let cert = params.signed_by(&key, &issuer).map_err(rcgen_error)?;
    Ok(Generated {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}
