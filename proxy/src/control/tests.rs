//! The control side's retry rules and its registration watch (against a fake agent).

use super::*;

#[test]
fn only_refusals_are_permanent() {
    let status = |code| ControlError::Status {
        path: "/x".into(),
        code,
        body: String::new(),
    };
    assert!(is_permanent(&status(400)));
    assert!(is_permanent(&status(403)));
    assert!(!is_permanent(&status(429)));
    assert!(!is_permanent(&status(500)));
    assert!(!is_permanent(&ControlError::Transport("refused".into())));
    assert!(!is_permanent(&ControlError::Decode("no roots yet".into())));
}

mod registration {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::extract::{Query, State};
    use axum::response::IntoResponse;
    use axum::routing::get;
    use axum::{Json, Router};
    use serde_json::json;

    use super::*;

    /// A fake agent: one proxy registration with a hash and a hash-blocking reader, and the
    /// service's discovery chain (index-blocking requests never answer).
    #[derive(Clone)]
    struct Fake {
        registration: Arc<Mutex<(String, Value)>>,
        changed: Arc<watch::Sender<u64>>,
        hashes_seen: Arc<Mutex<Vec<String>>>,
    }

    async fn service(
        State(f): State<Fake>,
        Query(q): Query<HashMap<String, String>>,
    ) -> impl IntoResponse {
        let mut changed = f.changed.subscribe();
        if let Some(h) = q.get("hash") {
            f.hashes_seen.lock().unwrap().push(h.clone());
            while f.registration.lock().unwrap().0 == *h {
                changed.changed().await.unwrap();
            }
        }
        let (hash, svc) = f.registration.lock().unwrap().clone();
        ([("x-consul-contenthash", hash)], Json(svc))
    }

    async fn chain(Query(q): Query<HashMap<String, String>>) -> impl IntoResponse {
        if q.contains_key("index") {
            std::future::pending::<()>().await;
        }
        (
            [("x-consul-index", "7")],
            Json(json!({"Chain": {"ServiceName": "web", "Protocol": "http"}})),
        )
    }

    fn proxy(upstreams: Value) -> Value {
        json!({
            "Kind": "connect-proxy", "ID": "web-sidecar-proxy", "Port": 21000,
            "Proxy": {"DestinationServiceName": "web", "LocalServicePort": 8080,
                      "Upstreams": upstreams},
        })
    }

    #[tokio::test]
    async fn follows_the_registration_and_the_chain_protocol_without_polling() {
        let fake = Fake {
            registration: Arc::new(Mutex::new(("h1".to_string(), proxy(json!([]))))),
            changed: Arc::new(watch::Sender::new(0)),
            hashes_seen: Arc::default(),
        };
        let app = Router::new()
            .route("/v1/agent/service/{id}", get(service))
            .route("/v1/discovery-chain/{name}", get(chain))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let _server = spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let client = AgentClient::new(&base, None).unwrap();

        // Read as at start-up: no protocol on the registration, so the chain's.
        let first = read_spec(&client, "web-sidecar-proxy").await.unwrap();
        assert_eq!(first.protocol, "http");
        let (tx, mut rx) = watch::channel(ProxySpec {
            protocol: "tcp".to_string(),
            ..first
        });
        let _watch = spawn(watch_registration(
            client,
            "web-sidecar-proxy".to_string(),
            tx,
        ));
        let next = |rx: &mut watch::Receiver<ProxySpec>| {
            let mut rx = rx.clone();
            async move {
                tokio::time::timeout(Duration::from_secs(5), rx.changed())
                    .await
                    .expect("the watch publishes the change")
                    .unwrap();
                rx.borrow_and_update().clone()
            }
        };
        let spec = next(&mut rx).await;
        assert_eq!(spec.protocol, "http", "the chain's protocol is followed");
        rx.borrow_and_update();

        // The watch now blocks on h1; a changed registration answers it at once.
        let blocking = async {
            while !fake.hashes_seen.lock().unwrap().contains(&"h1".to_string()) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), blocking)
            .await
            .expect("the watch asks with ?hash=h1");
        *fake.registration.lock().unwrap() = (
            "h2".to_string(),
            proxy(json!([{"DestinationName": "db", "LocalBindPort": 9191}])),
        );
        fake.changed.send_modify(|v| *v += 1);
        let spec = next(&mut rx).await;
        assert_eq!(spec.upstreams.len(), 1);
        assert_eq!(spec.upstreams[0].destination, "db");
        assert_eq!(spec.protocol, "http");
        let seen = fake.hashes_seen.lock().unwrap().clone();
        assert!(seen.iter().all(|h| h == "h1" || h == "h2"), "{seen:?}");
    }
}
