//! Rotation: a new key type, then a supplied key and certificate. Old leaves stay valid
//! against the published roots; the cached leaf is renewed from the new root and a blocked
//! reader sees it; the new root is cross-signed by the old.

use concord_integration::{init_tracing, TestAgent};
use serde_json::{json, Value};

use super::*;

fn active(roots: &Value) -> Value {
    roots["Roots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["Active"] == true)
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_old_leaves_valid_and_new_leaves_come_from_the_new_root() {
    init_tracing();
    if !require_openssl() {
        return;
    }
    let agent = TestAgent::dev().await.unwrap();
    let first = wait_for_roots(&agent).await;
    let (_, roots_index, _) = agent.get_json("/v1/agent/connect/ca/roots").await.unwrap();
    let (code, leaf_index, old_leaf) = agent
        .get_json("/v1/agent/connect/ca/leaf/web")
        .await
        .unwrap();
    assert_eq!(code, 200, "{old_leaf}");

    tracing::info!("a blocked reader of the leaf waits for the rotation");
    let waiter = {
        let client = agent.client.clone();
        let url = agent.url(&format!(
            "/v1/agent/connect/ca/leaf/web?index={leaf_index}&wait=60s"
        ));
        tokio::spawn(async move {
            let r = client.get(url).send().await.unwrap();
            r.json::<Value>().await.unwrap()
        })
    };

    tracing::info!("rotate by changing the key type: a new P-384 root");
    let (code, body) = agent
        .put(
            "/v1/connect/ca/configuration",
            json!({"Provider": "consul", "Config": {"PrivateKeyType": "ec", "PrivateKeyBits": 384}})
                .to_string(),
        )
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let (_, _, second) = agent
        .get_json(&format!(
            "/v1/agent/connect/ca/roots?index={roots_index}&wait=30s"
        ))
        .await
        .unwrap();
    assert_eq!(second["Roots"].as_array().unwrap().len(), 2, "{second}");
    assert_ne!(second["ActiveRootID"], first["ActiveRootID"]);
    let old_root = second["Roots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ID"] == first["ActiveRootID"])
        .cloned()
        .unwrap();
    assert_eq!(old_root["Active"], false, "the old root stays, inactive");
    let new_root = active(&second);
    assert_eq!(new_root["PrivateKeyBits"], 384);
    assert_eq!(
        new_root["IntermediateCerts"].as_array().unwrap().len(),
        1,
        "cross-signed by the old root"
    );

    tracing::info!("the blocked reader got a new leaf, signed by the new root");
    let new_leaf = tokio::time::timeout(std::time::Duration::from_secs(60), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(new_leaf["SerialNumber"], old_leaf["SerialNumber"]);
    assert!(new_leaf["ModifyIndex"].as_u64().unwrap() > leaf_index);
    let anchors = roots_pem(&second);
    let old_cert = old_leaf["CertPEM"].as_str().unwrap();
    let new_cert = new_leaf["CertPEM"].as_str().unwrap();
    for (name, cert) in [("old leaf", old_cert), ("new leaf", new_cert)] {
        assert!(webpki_accepts(cert, &anchors), "{name}: webpki");
        assert!(openssl_accepts(cert, &anchors), "{name}: openssl");
    }
    let new_root_pem = new_root["RootCert"].as_str().unwrap();
    let old_root_pem = old_root["RootCert"].as_str().unwrap();
    assert!(
        openssl_accepts(new_cert, new_root_pem),
        "new leaf: new root"
    );
    assert!(
        !openssl_accepts(new_cert, old_root_pem),
        "not the old root directly"
    );
    assert!(
        webpki_accepts(new_cert, old_root_pem),
        "a peer knowing only the old root accepts the new leaf through the cross-signature"
    );
    assert!(openssl_accepts(old_cert, old_root_pem));

    tracing::info!("rotate to a supplied key and certificate");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "operator supplied root");
    let cert = params.self_signed(&key).unwrap();
    let body = json!({
        "Provider": "consul",
        "Config": {"PrivateKey": key.serialize_pem(), "RootCert": cert.pem()},
    });
    let (code, text) = agent
        .put("/v1/connect/ca/configuration", body.to_string())
        .await
        .unwrap();
    assert_eq!(code, 200, "{text}");
    let (_, _, third) = agent.get_json("/v1/connect/ca/roots").await.unwrap();
    assert_eq!(third["Roots"].as_array().unwrap().len(), 3);
    let supplied = active(&third);
    assert_eq!(
        ders(supplied["RootCert"].as_str().unwrap())[0].as_ref(),
        cert.der().as_ref()
    );
    assert!(!third.to_string().contains("PRIVATE KEY"));
    let (_, _, config) = agent
        .get_json("/v1/connect/ca/configuration")
        .await
        .unwrap();
    assert!(!config.to_string().contains("PRIVATE KEY"), "{config}");

    tracing::info!("the agent renews the leaf from the supplied root");
    let anchors = roots_pem(&third);
    let supplied_pem = supplied["RootCert"].as_str().unwrap().to_string();
    assert_eventually!(
        {
            let (_, _, leaf) = agent
                .get_json("/v1/agent/connect/ca/leaf/web")
                .await
                .unwrap();
            let cert = leaf["CertPEM"].as_str().unwrap_or_default().to_string();
            !cert.is_empty() && openssl_accepts(&cert, &supplied_pem)
        },
        "leaf renewed from the supplied root"
    );
    assert!(
        openssl_accepts(old_cert, &anchors),
        "the first leaf still verifies"
    );
}
