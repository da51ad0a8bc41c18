//! Hash-based blocking of `GET /v1/agent/service/:id`.

use std::time::Duration;

use tokio::time::Instant;

use axum::http::{Method, StatusCode};
use serde_json::Value;

use super::super::tests::{app, call, call_with_headers};

const WEB: &str = r#"{"Name":"web","ID":"web-1","Port":80}"#;

/// `GET uri`: status, `X-Consul-ContentHash`, JSON body (Null when not JSON).
async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String, Value) {
    let (code, headers, body) = call_with_headers(app, Method::GET, uri, "").await;
    let hash = headers
        .get("x-consul-contenthash")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (
        code,
        hash,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn service_blocks_until_its_hash_changes() {
    let (app, _) = app();
    let (code, _) = call(&app, Method::PUT, "/v1/agent/service/register", WEB).await;
    assert_eq!(code, StatusCode::OK);
    let (code, hash, body) = get(&app, "/v1/agent/service/web-1").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["ContentHash"], hash.as_str(), "header and body agree");

    // A stale hash answers at once; the current one waits out `wait` and answers unchanged.
    let (code, same, _) = get(&app, "/v1/agent/service/web-1?hash=stale&wait=10s").await;
    assert_eq!((code, same.as_str()), (StatusCode::OK, hash.as_str()));
    let started = Instant::now();
    let uri = format!("/v1/agent/service/web-1?hash={hash}&wait=300ms");
    let (code, same, _) = get(&app, &uri).await;
    assert_eq!((code, same.as_str()), (StatusCode::OK, hash.as_str()));
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A change elsewhere does not answer it; a change of this service does, at once.
    let blocked = {
        let (app, uri) = (
            app.clone(),
            format!("/v1/agent/service/web-1?hash={hash}&wait=30s"),
        );
        tokio::spawn(async move { get(&app, &uri).await })
    };
    let other = r#"{"Name":"db","Port":5432}"#;
    call(&app, Method::PUT, "/v1/agent/service/register", other).await;
    let mut blocked = blocked;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut blocked)
            .await
            .is_err(),
        "another service's change leaves the hash as it was"
    );
    let moved = r#"{"Name":"web","ID":"web-1","Port":81}"#;
    call(&app, Method::PUT, "/v1/agent/service/register", moved).await;
    let (code, new_hash, body) = tokio::time::timeout(Duration::from_secs(5), blocked)
        .await
        .expect("the change answers the blocked query")
        .unwrap();
    assert_eq!(code, StatusCode::OK);
    assert_ne!(new_hash, hash);
    assert_eq!(body["Port"], 81);
    assert_eq!(body["ContentHash"], new_hash.as_str());

    // Removed while waiting: a 404.
    let blocked = {
        let (app, uri) = (
            app.clone(),
            format!("/v1/agent/service/web-1?hash={new_hash}"),
        );
        tokio::spawn(async move { get(&app, &uri).await })
    };
    call(&app, Method::PUT, "/v1/agent/service/deregister/web-1", "").await;
    let (code, _, _) = tokio::time::timeout(Duration::from_secs(5), blocked)
        .await
        .expect("the removal answers the blocked query")
        .unwrap();
    assert_eq!(code, StatusCode::NOT_FOUND);

    let (code, body) = call(
        &app,
        Method::GET,
        "/v1/agent/service/db?hash=x&wait=soon",
        "",
    )
    .await;
    assert_eq!(
        (code, body.trim()),
        (StatusCode::BAD_REQUEST, "Invalid wait time")
    );
}
