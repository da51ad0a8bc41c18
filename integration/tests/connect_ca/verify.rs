//! Roots and a leaf over HTTP, verified by webpki and openssl; the API never shows a key;
//! bad requests are refused (a 400, or Consul's 500 for what the servers refuse) and sign
//! nothing.

use concord_integration::{init_tracing, TestAgent};
use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roots_and_leaf_verify_with_webpki_and_openssl() {
    init_tracing();
    if !require_openssl() {
        return;
    }
    let agent = TestAgent::dev().await.unwrap();
    tracing::info!("the first leader made a root and a trust domain");
    let roots = wait_for_roots(&agent).await;
    let td = roots["TrustDomain"].as_str().unwrap().to_string();
    let cluster = td.strip_suffix(".consul").expect("<cluster-id>.consul");
    assert!(uuid_like(cluster), "{td}");
    let root = &roots["Roots"][0];
    assert_eq!(root["ID"], roots["ActiveRootID"]);
    assert_eq!(root["Active"], true);
    assert_eq!(root["Name"], "Consul CA Root Cert");
    for field in [
        "SerialNumber",
        "SigningKeyID",
        "NotBefore",
        "NotAfter",
        "CreateIndex",
    ] {
        assert!(!root[field].is_null(), "{field}");
    }
    assert!(
        !roots.to_string().contains("PRIVATE KEY"),
        "no key in roots"
    );

    tracing::info!("the agent's cached roots agree");
    let (code, _, agent_roots) = agent.get_json("/v1/agent/connect/ca/roots").await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(agent_roots["ActiveRootID"], roots["ActiveRootID"]);

    tracing::info!("the configuration shows defaults and no key");
    let (code, _, config) = agent
        .get_json("/v1/connect/ca/configuration")
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert_eq!(config["Provider"], "consul");
    assert_eq!(config["ClusterID"], cluster);
    assert_eq!(config["Config"]["LeafCertTTL"], "72h0m0s");
    assert!(config["Config"].get("PrivateKey").is_none());

    tracing::info!("a leaf for web carries web's SPIFFE identity and verifies");
    let (code, index, leaf) = agent
        .get_json("/v1/agent/connect/ca/leaf/web")
        .await
        .unwrap();
    assert_eq!(code, 200, "{leaf}");
    assert!(index > 0);
    let uri = format!("spiffe://{td}/ns/default/dc/dc1/svc/web");
    assert_eq!(leaf["ServiceURI"], uri.as_str());
    assert_eq!(leaf["Service"], "web");
    assert!(leaf["PrivateKeyPEM"]
        .as_str()
        .unwrap()
        .contains("PRIVATE KEY"));
    for field in ["SerialNumber", "ValidAfter", "ValidBefore", "ModifyIndex"] {
        assert!(!leaf[field].is_null(), "{field}");
    }
    let cert = leaf["CertPEM"].as_str().unwrap();
    let anchors = roots_pem(&roots);
    assert!(webpki_accepts(cert, &anchors));
    assert!(openssl_accepts(cert, &anchors));

    tracing::info!("the cached leaf comes back unchanged; a blocked read times out with it");
    let (_, again_index, again) = agent
        .get_json(&format!(
            "/v1/agent/connect/ca/leaf/web?index={index}&wait=200ms"
        ))
        .await
        .unwrap();
    assert_eq!(again_index, index);
    assert_eq!(again["SerialNumber"], leaf["SerialNumber"]);

    tracing::info!("?pem gives the roots as a PEM chain");
    let pem = agent
        .client
        .get(agent.url("/v1/connect/ca/roots?pem"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(ders(&pem).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_sign_nothing() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    let roots = wait_for_roots(&agent).await;
    let td = roots["TrustDomain"].as_str().unwrap().to_string();

    tracing::info!("a service name that cannot be an identity");
    let r = agent
        .client
        .get(agent.url("/v1/agent/connect/ca/leaf/web%20x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    tracing::info!("signing requests straight to the server's RPC port");
    let rpc = format!("http://{}/v1/internal/rpc/write", agent.rpc);
    let sign = |service: &str, csr: String| json!({"CaSign": {"service": service, "csr_pem": csr}});
    let csr_for = |uri: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
        params.serialize_request(&key).unwrap().pem().unwrap()
    };
    let cases = [
        ("garbage CSR", sign("web", "not a csr".into()), "invalid CSR"),
        (
            "another service's identity",
            sign("web", csr_for(&format!("spiffe://{td}/ns/default/dc/dc1/svc/db"))),
            "does not match",
        ),
        (
            "another trust domain",
            sign(
                "web",
                csr_for("spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/web"),
            ),
            "different trust domain",
        ),
        (
            "a malformed SPIFFE URI",
            sign("web", csr_for("spiffe:/web")),
            "not a SPIFFE ID",
        ),
    ];
    for (what, body, text) in cases {
        let r = agent.client.post(&rpc).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_eq!(status, 400, "{what}: {body}");
        assert!(body.contains(text), "{what}: {body}");
    }

    tracing::info!("a configuration that does not validate changes nothing (Consul's RPC 500)");
    let (code, body) = agent
        .put(
            "/v1/connect/ca/configuration",
            r#"{"Provider":"consul","Config":{"LeafCertTTL":"5m"}}"#,
        )
        .await
        .unwrap();
    assert_eq!(code, 500, "{body}");
    let (code, body) = agent
        .put(
            "/v1/connect/ca/configuration",
            r#"{"Provider":"vault","Config":{}}"#,
        )
        .await
        .unwrap();
    assert_eq!(code, 500, "{body}");
    let (_, _, after) = agent.get_json("/v1/connect/ca/roots").await.unwrap();
    assert_eq!(after, roots);
}

fn uuid_like(s: &str) -> bool {
    let parts: Vec<usize> = s.split('-').map(str::len).collect();
    parts == [8, 4, 4, 4, 12] && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}
