//! The built-in CA's certificate work, pure (no state, no Raft): make a root, take a
//! supplied one, cross-sign a new root with the old, and check and sign a leaf CSR.
//!
//! Roots are ECDSA (P-256 by default), self-signed, `CA:TRUE` with key usages
//! `keyCertSign, cRLSign, digitalSignature`, and carry the URI SAN `spiffe://<trust-domain>`.
//! Leaves are `CA:FALSE`, EKU `serverAuth, clientAuth`, with exactly one URI SAN: the
//! service's SPIFFE identity. Everything a leaf carries is decided here, not taken from the
//! CSR: the CSR contributes its public key and must name exactly the identity asked for.

use concord_api::connect::{colon_hex, spiffe_service_uri, valid_service_name};
use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PublicKeyData, SanType, SerialNumber,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};
use x509_parser::public_key::PublicKey;

use crate::model::ca::CaRoot;

/// Name Consul gives its roots.
pub(crate) const ROOT_NAME: &str = "Consul CA Root Cert";

/// Certificates start this much in the past, so a peer whose clock runs a little behind
/// already accepts them.
const BACKDATE: time::Duration = time::Duration::minutes(1);

/// Why the CA refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CaError {
    /// The CSR does not parse or its signature does not verify.
    #[error("invalid CSR: {0}")]
    BadCsr(String),
    /// The CSR asks for an identity other than the service's.
    #[error("CSR SPIFFE ID {got:?} does not match the requested service identity {want:?}")]
    WrongIdentity {
        /// What the CSR names.
        got: String,
        /// What it must name.
        want: String,
    },
    /// The CSR's SPIFFE ID belongs to another trust domain.
    #[error("SPIFFE ID in CSR from a different trust domain: {got}, expected {want}")]
    OtherTrustDomain {
        /// The CSR's trust domain.
        got: String,
        /// This cluster's.
        want: String,
    },
    /// The service name cannot be an identity.
    #[error("Invalid service name {0:?}")]
    BadServiceName(String),
    /// A supplied root key or certificate is unusable.
    #[error("invalid root: {0}")]
    BadRoot(String),
    /// This CA cannot generate this kind of key (RSA without a supplied key).
    #[error("{0}")]
    Unsupported(String),
    /// Signing or encoding failed.
    #[error("CA: {0}")]
    Internal(String),
}

fn internal(e: impl std::fmt::Display) -> CaError {
    CaError::Internal(e.to_string())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// A positive random serial that fits Consul's `uint64` `SerialNumber`.
fn random_serial() -> (u64, SerialNumber) {
    let n: u64 = rand::thread_rng().gen_range(1..=i64::MAX as u64);
    (n, SerialNumber::from_slice(&n.to_be_bytes()))
}

/// DER of the first certificate in a PEM text.
fn pem_to_der(pem: &str) -> Result<Vec<u8>, CaError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| CaError::BadRoot(format!("certificate PEM: {e}")))?;
    if pem.label != "CERTIFICATE" {
        return Err(CaError::BadRoot(format!(
            "expected a CERTIFICATE, got {}",
            pem.label
        )));
    }
    Ok(pem.contents)
}

/// Reads what a root record reports from its certificate.
fn describe_root(
    cert_pem: &str,
    key: &KeyPair,
    private_key_pem: String,
) -> Result<CaRoot, CaError> {
    let der = pem_to_der(cert_pem)?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| CaError::BadRoot(format!("certificate: {e}")))?;
    if !cert.is_ca() {
        return Err(CaError::BadRoot("certificate is not a CA".into()));
    }
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(CaError::BadRoot(
            "private key does not match the certificate".into(),
        ));
    }
    let (key_type, bits) = match cert.public_key().parsed() {
        Ok(PublicKey::EC(ec)) => ("ec", ec.key_size()),
        Ok(PublicKey::RSA(rsa)) => ("rsa", rsa.key_size()),
        _ => return Err(CaError::BadRoot("unsupported public key type".into())),
    };
    let ski = cert
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
        .ok_or_else(|| CaError::BadRoot("certificate has no subject key identifier".into()))?;
    let serial = cert.raw_serial();
    // Consul reports big.Int.Uint64(): the low 64 bits.
    let low: u64 = serial
        .iter()
        .rev()
        .take(8)
        .rev()
        .fold(0, |acc, b| (acc << 8) | u64::from(*b));
    let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
    Ok(CaRoot {
        id: colon_hex(sha1.as_ref()),
        name: ROOT_NAME.to_string(),
        serial_number: low,
        signing_key_id: colon_hex(&ski),
        not_before: rfc3339(cert.validity().not_before.to_datetime()),
        not_after: rfc3339(cert.validity().not_after.to_datetime()),
        root_cert: ensure_newline(cert_pem),
        intermediate_certs: Vec::new(),
        private_key: private_key_pem,
        private_key_type: key_type.to_string(),
        private_key_bits: u32::try_from(bits).unwrap_or(0),
        active: true,
        create_index: 0,
        modify_index: 0,
        rotated_out_at_ms: None,
    })
}

fn ensure_newline(pem: &str) -> String {
    let mut s = pem.trim().to_string();
    s.push('\n');
    s
}

/// Generates a self-signed root for `trust_domain`.
pub(crate) fn generate_root(
    trust_domain: &str,
    key_type: &str,
    key_bits: u32,
    ttl: std::time::Duration,
    now: OffsetDateTime,
) -> Result<CaRoot, CaError> {
    let alg = match (key_type, key_bits) {
        ("ec", 256) => &rcgen::PKCS_ECDSA_P256_SHA256,
        ("ec", 384) => &rcgen::PKCS_ECDSA_P384_SHA384,
        _ => {
            return Err(CaError::Unsupported(format!(
                "this CA generates EC keys of 256 or 384 bits; for {key_type}/{key_bits} supply \
                 PrivateKey and RootCert"
            )))
        }
    };
    let key = KeyPair::generate_for(alg).map_err(internal)?;
    let mut params = CertificateParams::default();
    let tag: u32 = rand::thread_rng().gen();
    let short_td: String = trust_domain.chars().take(8).collect();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("pri-{tag:08x}.consul.ca.{short_td}.consul"),
    );
    params.subject_alt_names = vec![SanType::URI(
        format!("spiffe://{trust_domain}")
            .try_into()
            .map_err(internal)?,
    )];
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial().1);
    params.not_before = now - BACKDATE;
    params.not_after = now + time::Duration::try_from(ttl).map_err(internal)?;
    let cert = params.self_signed(&key).map_err(internal)?;
    describe_root(&cert.pem(), &key, key.serialize_pem())
}

/// Takes a supplied root (`PrivateKey` + `RootCert` of a configuration `PUT`): the key must
/// match the certificate, and the certificate must be a CA with a subject key identifier.
pub(crate) fn supplied_root(private_key_pem: &str, cert_pem: &str) -> Result<CaRoot, CaError> {
    let key = KeyPair::from_pem(private_key_pem)
        .map_err(|e| CaError::BadRoot(format!("private key: {e}")))?;
    describe_root(cert_pem, &key, key.serialize_pem())
}

/// The subject of a certificate as rcgen builds names, keeping each attribute's string type
/// (verifiers compare names byte for byte).
fn subject_of(cert: &X509Certificate<'_>) -> Result<DistinguishedName, CaError> {
    let mut dn = DistinguishedName::new();
    for attr in cert.subject().iter_attributes() {
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or_else(|| CaError::BadRoot("subject attribute OID".into()))?
            .collect();
        let text = attr
            .as_str()
            .map_err(|e| CaError::BadRoot(format!("subject attribute: {e}")))?;
        let value = match attr.attr_value().header.tag() {
            x509_parser::der_parser::asn1_rs::Tag::PrintableString => {
                DnValue::PrintableString(text.try_into().map_err(internal)?)
            }
            _ => DnValue::Utf8String(text.to_string()),
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

/// Re-issues `new`'s certificate (same subject, key and key identifier) signed by `old`'s
/// key, so peers that trust only `old` accept leaves of `new` (Consul's cross-signing on
/// rotation). The result belongs in `new`'s intermediates.
pub(crate) fn cross_sign(
    old: &CaRoot,
    new: &CaRoot,
    now: OffsetDateTime,
) -> Result<String, CaError> {
    let old_key = KeyPair::from_pem(&old.private_key).map_err(internal)?;
    let new_key = KeyPair::from_pem(&new.private_key).map_err(internal)?;
    let issuer = Issuer::from_ca_cert_pem(&old.root_cert, old_key).map_err(internal)?;
    let der = pem_to_der(&new.root_cert)?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(internal)?;
    let ski = cert
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
        .ok_or_else(|| CaError::BadRoot("new root has no subject key identifier".into()))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject_of(&cert)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params.key_identifier_method = KeyIdMethod::PreSpecified(ski);
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial().1);
    params.not_before = now - BACKDATE;
    // Never outlive the old root: past it the cross-signature means nothing.
    let old_der = pem_to_der(&old.root_cert)?;
    let (_, old_cert) = X509Certificate::from_der(&old_der).map_err(internal)?;
    params.not_after = cert
        .validity()
        .not_after
        .to_datetime()
        .min(old_cert.validity().not_after.to_datetime());
    let signed = params.signed_by(&new_key, &issuer).map_err(internal)?;
    Ok(signed.pem())
}

/// A signed leaf, before the agent adds its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignedLeaf {
    /// Leaf PEM followed by the signing root's intermediates.
    pub(crate) cert_pem: String,
    /// Serial, colon-hex.
    pub(crate) serial_hex: String,
    /// The SPIFFE URI.
    pub(crate) uri: String,
    /// RFC 3339.
    pub(crate) valid_after: String,
    /// RFC 3339.
    pub(crate) valid_before: String,
}

/// Checks a leaf CSR and signs it with `root`.
///
/// The CSR's signature must verify (proof that the requester holds the key) and its only
/// SAN must be exactly `spiffe://<trust_domain>/ns/default/dc/<datacenter>/svc/<service>`.
/// The leaf never outlives the root.
pub(crate) fn sign_leaf(
    root: &CaRoot,
    trust_domain: &str,
    datacenter: &str,
    service: &str,
    csr_pem: &str,
    ttl: std::time::Duration,
    now: OffsetDateTime,
) -> Result<SignedLeaf, CaError> {
    if !valid_service_name(service) {
        return Err(CaError::BadServiceName(service.to_string()));
    }
    let want = spiffe_service_uri(trust_domain, datacenter, service);
    let csr = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| CaError::BadCsr(e.to_string()))?;
    let uris: Vec<&str> = csr
        .params
        .subject_alt_names
        .iter()
        .filter_map(|san| match san {
            SanType::URI(uri) => Some(uri.as_str()),
            _ => None,
        })
        .collect();
    let [got] = uris.as_slice() else {
        return Err(CaError::BadCsr(format!(
            "CSR must carry exactly one URI SAN, found {}",
            uris.len()
        )));
    };
    if csr.params.subject_alt_names.len() != 1 {
        return Err(CaError::BadCsr(
            "CSR must carry no SAN but the SPIFFE ID".into(),
        ));
    }
    let csr_domain = got
        .strip_prefix("spiffe://")
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| CaError::BadCsr(format!("CSR URI {got:?} is not a SPIFFE ID")))?;
    if !csr_domain.eq_ignore_ascii_case(trust_domain) {
        return Err(CaError::OtherTrustDomain {
            got: csr_domain.to_string(),
            want: trust_domain.to_string(),
        });
    }
    if *got != want {
        return Err(CaError::WrongIdentity {
            got: (*got).to_string(),
            want,
        });
    }

    let mut params = CertificateParams::default();
    let short_td: String = trust_domain.chars().take(8).collect();
    let mut cn: String = format!("{service}.svc.default.{short_td}.consul");
    cn.truncate(64);
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.subject_alt_names = vec![SanType::URI(want.clone().try_into().map_err(internal)?)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyAgreement,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let (serial, serial_number) = random_serial();
    params.serial_number = Some(serial_number);
    params.not_before = now - BACKDATE;
    let root_not_after = OffsetDateTime::parse(&root.not_after, &Rfc3339).map_err(internal)?;
    params.not_after = (now + time::Duration::try_from(ttl).map_err(internal)?).min(root_not_after);
    let (not_before, not_after) = (params.not_before, params.not_after);

    let key = KeyPair::from_pem(&root.private_key).map_err(internal)?;
    let issuer = Issuer::from_ca_cert_pem(&root.root_cert, key).map_err(internal)?;
    let leaf = CertificateSigningRequestParams {
        params,
        public_key: csr.public_key,
    }
    .signed_by(&issuer)
    .map_err(internal)?;
    let mut cert_pem = ensure_newline(&leaf.pem());
    for intermediate in &root.intermediate_certs {
        cert_pem.push_str(&ensure_newline(intermediate));
    }
    Ok(SignedLeaf {
        cert_pem,
        serial_hex: colon_hex(&serial.to_be_bytes()),
        uri: want,
        valid_after: rfc3339(not_before),
        valid_before: rfc3339(not_after),
    })
}

/// The SPIFFE URIs of a certificate (for tests and the agent's own checks).
#[cfg(test)]
pub(crate) fn cert_uris(cert_pem: &str) -> Vec<String> {
    let der = pem_to_der(cert_pem).unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    cert.subject_alternative_name()
        .unwrap()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::prelude::GeneralName::URI(u) => Some(u.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
