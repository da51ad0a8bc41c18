//! The built-in Connect CA end to end on a real `concord agent -dev`: roots and leaves over
//! HTTP verify with webpki (the verifier rustls uses) and with `openssl verify`; a rotation
//! keeps old leaves valid and moves new ones to the new root; bad signing requests are
//! refused.

// Test helpers outside #[test] functions may unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod rotation;
mod verify;

use concord_integration::{assert_eventually, TestAgent};
use rustls_pki_types::{CertificateDer, UnixTime};
use serde_json::Value;

/// Waits until the leader has made the CA, and returns the roots.
async fn wait_for_roots(agent: &TestAgent) -> Value {
    assert_eventually!(
        agent
            .get_json("/v1/connect/ca/roots")
            .await
            .is_ok_and(|(_, _, r)| r["ActiveRootID"].as_str().is_some_and(|id| !id.is_empty())),
        "the leader initializes the CA; logs:\n{}",
        agent.logs()
    );
    agent.get_json("/v1/connect/ca/roots").await.unwrap().2
}

/// Every certificate in a PEM text, as DER.
fn ders(pem: &str) -> Vec<CertificateDer<'static>> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .map(|p| CertificateDer::from(p.unwrap().contents))
        .collect()
}

/// The roots' certificates (trust anchors) as one PEM text.
fn roots_pem(roots: &Value) -> String {
    roots["Roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["RootCert"].as_str().unwrap().to_string())
        .collect()
}

/// Whether webpki accepts the leaf (first certificate of `chain_pem`, the rest
/// intermediates) for both client and server use, anchored in `anchors_pem`.
fn webpki_accepts(chain_pem: &str, anchors_pem: &str) -> bool {
    let chain = ders(chain_pem);
    let anchor_ders = ders(anchors_pem);
    let anchors: Vec<_> = anchor_ders
        .iter()
        .map(|d| webpki::anchor_from_trusted_cert(d).unwrap())
        .collect();
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
            &chain[1..],
            UnixTime::now(),
            usage,
            None,
            None,
        )
        .is_ok()
    })
}

/// Whether `openssl verify -CAfile roots.pem leaf.pem` succeeds (the leaf is the first
/// certificate of `leaf_pem`).
fn openssl_accepts(leaf_pem: &str, roots_pem: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots.pem");
    let leaf = dir.path().join("leaf.pem");
    std::fs::write(&roots, roots_pem).unwrap();
    std::fs::write(&leaf, leaf_pem).unwrap();
    let out = std::process::Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&roots)
        .arg(&leaf)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    tracing::info!(
        stdout = %stdout,
        stderr = %String::from_utf8_lossy(&out.stderr),
        "openssl verify"
    );
    out.status.success() && stdout.contains(": OK")
}

/// Whether the openssl CLI is there (under CI its absence fails the test).
fn require_openssl() -> bool {
    concord_integration::tools::require("openssl", &["version"], "the openssl verify checks")
}
