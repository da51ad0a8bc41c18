//! CSR validation, signing, cross-signing: every leaf checked with webpki (the verifier
//! rustls uses) against the roots a client would hold.

use std::time::Duration;

use rcgen::{CertificateParams, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;

use super::*;

const TD: &str = "11111111-2222-3333-4444-555555555555.consul";
const LEAF_TTL: Duration = Duration::from_secs(72 * 3600);
const ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

fn root() -> CaRoot {
    generate_root(TD, "ec", 256, ROOT_TTL, OffsetDateTime::now_utc()).unwrap()
}

fn csr_with(sans: Vec<SanType>) -> String {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn csr(uri: &str) -> String {
    csr_with(vec![SanType::URI(uri.try_into().unwrap())])
}

fn web_uri() -> String {
    spiffe_service_uri(TD, "dc1", "web")
}

fn sign(root: &CaRoot, service: &str, csr: &str) -> Result<SignedLeaf, CaError> {
    sign_leaf(
        root,
        TD,
        "dc1",
        service,
        csr,
        LEAF_TTL,
        OffsetDateTime::now_utc(),
    )
}

fn ders(pem: &str) -> Vec<CertificateDer<'static>> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .map(|p| CertificateDer::from(p.unwrap().contents))
        .collect()
}

/// Verifies the first certificate of `chain_pem` (the rest are intermediates) against
/// `anchors` for client and server use.
fn verify(chain_pem: &str, anchors: &[&CaRoot], extra_intermediates: &[String]) -> bool {
    let chain = ders(chain_pem);
    let anchor_ders: Vec<CertificateDer<'static>> =
        anchors.iter().flat_map(|r| ders(&r.root_cert)).collect();
    let anchors: Vec<_> = anchor_ders
        .iter()
        .map(|d| webpki::anchor_from_trusted_cert(d).unwrap())
        .collect();
    let mut intermediates: Vec<CertificateDer<'static>> = chain[1..].to_vec();
    intermediates.extend(extra_intermediates.iter().flat_map(|p| ders(p)));
    let ee = webpki::EndEntityCert::try_from(&chain[0]).unwrap();
    [
        webpki::KeyUsage::client_auth(),
        webpki::KeyUsage::server_auth(),
    ]
    .into_iter()
    .all(|usage| {
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            UnixTime::now(),
            usage,
            None,
            None,
        )
        .is_ok()
    })
}

#[test]
fn generated_root_reports_consul_ids() {
    let r = root();
    // SHA-1 fingerprint: 20 bytes of colon-hex.
    assert_eq!(r.id.len(), 20 * 3 - 1);
    assert!(r.id.chars().all(|c| c == ':' || c.is_ascii_hexdigit()));
    assert!(r.signing_key_id.contains(':'));
    assert_eq!(
        (r.private_key_type.as_str(), r.private_key_bits),
        ("ec", 256)
    );
    assert!(r.root_cert.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(r.private_key.contains("PRIVATE KEY"));
    assert!(r.serial_number > 0);
    assert_eq!(cert_uris(&r.root_cert), vec![format!("spiffe://{TD}")]);
    // Debug output never shows the key.
    assert!(!format!("{r:?}").contains("PRIVATE"));
}

#[test]
fn signs_a_valid_csr_with_exactly_the_service_identity() {
    let r = root();
    let leaf = sign(&r, "web", &csr(&web_uri())).unwrap();
    assert_eq!(leaf.uri, web_uri());
    assert_eq!(cert_uris(&leaf.cert_pem), vec![web_uri()]);
    assert!(verify(&leaf.cert_pem, &[&r], &[]));
    let other = root();
    assert!(!verify(&leaf.cert_pem, &[&other], &[]), "only its own root");
    assert_eq!(leaf.serial_hex.len(), 8 * 3 - 1);
}

#[test]
fn refuses_bad_csrs() {
    let r = root();
    assert!(matches!(
        sign(&r, "web", "garbage"),
        Err(CaError::BadCsr(_))
    ));
    // A tampered CSR: its signature no longer verifies.
    let good = csr(&web_uri());
    let der = &ders_any(&good)[0];
    let mut tampered = der.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x01;
    let tampered_pem = pem_wrap("CERTIFICATE REQUEST", &tampered);
    assert!(matches!(
        sign(&r, "web", &tampered_pem),
        Err(CaError::BadCsr(_))
    ));
    // Another service's identity.
    let db = spiffe_service_uri(TD, "dc1", "db");
    assert!(matches!(
        sign(&r, "web", &csr(&db)),
        Err(CaError::WrongIdentity { .. })
    ));
    // Another datacenter.
    let dc2 = spiffe_service_uri(TD, "dc2", "web");
    assert!(matches!(
        sign(&r, "web", &csr(&dc2)),
        Err(CaError::WrongIdentity { .. })
    ));
    // Another trust domain.
    let foreign = spiffe_service_uri("other.consul", "dc1", "web");
    assert!(matches!(
        sign(&r, "web", &csr(&foreign)),
        Err(CaError::OtherTrustDomain { .. })
    ));
    // Not SPIFFE, no URI, two URIs, an extra DNS name.
    assert!(matches!(
        sign(&r, "web", &csr("https://example.com/web")),
        Err(CaError::BadCsr(_))
    ));
    assert!(matches!(
        sign(&r, "web", &csr_with(vec![])),
        Err(CaError::BadCsr(_))
    ));
    let two = csr_with(vec![
        SanType::URI(web_uri().try_into().unwrap()),
        SanType::URI(web_uri().try_into().unwrap()),
    ]);
    assert!(matches!(sign(&r, "web", &two), Err(CaError::BadCsr(_))));
    let dns = csr_with(vec![
        SanType::URI(web_uri().try_into().unwrap()),
        SanType::DnsName("evil.example.com".try_into().unwrap()),
    ]);
    assert!(matches!(sign(&r, "web", &dns), Err(CaError::BadCsr(_))));
    // Names that cannot be a URI path segment.
    assert!(matches!(
        sign(&r, "a/b", &csr(&web_uri())),
        Err(CaError::BadServiceName(_))
    ));
}

#[test]
fn leaf_never_outlives_its_root() {
    let now = OffsetDateTime::now_utc();
    let r = generate_root(TD, "ec", 256, Duration::from_secs(3600), now).unwrap();
    let leaf = sign(&r, "web", &csr(&web_uri())).unwrap();
    assert_eq!(leaf.valid_before, r.not_after);
}

#[test]
fn rotation_cross_signs_so_old_and_new_leaves_verify() {
    let now = OffsetDateTime::now_utc();
    let old = root();
    let old_leaf = sign(&old, "web", &csr(&web_uri())).unwrap();

    let mut new = generate_root(TD, "ec", 384, ROOT_TTL, now).unwrap();
    let cross = cross_sign(&old, &new, now).unwrap();
    new.intermediate_certs = vec![cross.clone()];
    let new_leaf = sign(&new, "web", &csr(&web_uri())).unwrap();
    // The cross-signed certificate rides along with new leaves.
    assert_eq!(ders(&new_leaf.cert_pem).len(), 2);

    // A client holding both roots accepts both leaves.
    assert!(verify(&old_leaf.cert_pem, &[&old, &new], &[]));
    assert!(verify(&new_leaf.cert_pem, &[&old, &new], &[]));
    // A client that only knows the old root accepts the new leaf through the cross-signature.
    assert!(verify(&new_leaf.cert_pem, &[&old], &[]));
    // Without the cross-signature it would not.
    let bare = CaRoot {
        intermediate_certs: vec![],
        ..new.clone()
    };
    let bare_leaf = sign(&bare, "web", &csr(&web_uri())).unwrap();
    assert!(!verify(&bare_leaf.cert_pem, &[&old], &[]));
}

#[test]
fn supplied_root_must_match_its_key_and_be_a_ca() {
    let a = root();
    let b = root();
    let taken = supplied_root(&a.private_key, &a.root_cert).unwrap();
    assert_eq!(taken.id, a.id);
    assert!(matches!(
        supplied_root(&a.private_key, &b.root_cert),
        Err(CaError::BadRoot(_))
    ));
    assert!(matches!(
        supplied_root("nope", &a.root_cert),
        Err(CaError::BadRoot(_))
    ));
    let key = KeyPair::generate().unwrap();
    let not_ca = CertificateParams::new(vec!["x.example".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    assert!(matches!(
        supplied_root(&key.serialize_pem(), &not_ca.pem()),
        Err(CaError::BadRoot(_))
    ));
}

#[test]
fn rsa_generation_is_refused_with_a_clear_message() {
    let err = generate_root(TD, "rsa", 2048, ROOT_TTL, OffsetDateTime::now_utc()).unwrap_err();
    assert!(err.to_string().contains("supply PrivateKey and RootCert"));
}

fn ders_any(pem: &str) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .map(|p| p.unwrap().contents)
        .collect()
}

fn pem_wrap(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
