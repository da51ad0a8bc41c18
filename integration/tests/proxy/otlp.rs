//! `Proxy.Config.otlp_endpoint` applies live: a sidecar running without a collector starts
//! sending request spans when its registration names one, stops when it is removed, and
//! follows a move to another collector, with no restart.

use std::sync::{Arc, Mutex};

use concord_integration::apps::http_echo;
use concord_integration::sidecar::{free_port, TestProxy};
use concord_integration::{init_tracing, TestAgent};
use tokio::net::TcpListener;

use super::http::{config_entry, get, register_http_config};
use super::*;

/// A fake OTLP/HTTP collector: the `url.path` of every span POSTed to `/v1/traces`.
struct Collector {
    endpoint: String,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    async fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let paths: Arc<Mutex<Vec<String>>> = Arc::default();
        let store = paths.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, store.clone()));
            }
        });
        Collector { endpoint, paths }
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

/// Answers `200` to each request of one keep-alive connection, keeping the spans' paths.
async fn serve(mut conn: TcpStream, store: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + length {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Value =
            serde_json::from_slice(&buf[end + 4..end + 4 + length]).unwrap_or_default();
        buf.drain(..end + 4 + length);
        let spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"].clone();
        for span in spans.as_array().into_iter().flatten() {
            for attr in span["attributes"].as_array().into_iter().flatten() {
                if attr["key"] == "url.path" {
                    let path = attr["value"]["stringValue"].as_str().unwrap_or_default();
                    store.lock().unwrap().push(path.to_string());
                }
            }
        }
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        if conn.write_all(reply).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_endpoint_follows_the_registration() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    wait_for_ca(&agent).await;
    let db_app = http_echo("db").await.unwrap();
    let upstream = free_port().unwrap();
    let (first, second) = (Collector::start().await, Collector::start().await);
    config_entry(
        &agent,
        json!({"Kind": "service-defaults", "Name": "db", "Protocol": "http"}),
    )
    .await;
    register_http_config(&agent, "db", db_app.addr.port(), json!([]), json!({})).await;
    let web_app = free_port().unwrap();
    let web_public = free_port().unwrap();
    let upstreams = json!([{"DestinationName": "db", "LocalBindPort": upstream}]);
    // Re-registers web's sidecar (same ports) with `config` as its `Proxy.Config`.
    let register_web = |config: Value| {
        let mut proxy_config = json!({"bind_address": "127.0.0.1"});
        if let (Some(all), Some(more)) = (proxy_config.as_object_mut(), config.as_object()) {
            all.extend(more.clone());
        }
        let body = json!({
            "Kind": "connect-proxy", "ID": "web-sidecar-proxy", "Name": "web-sidecar-proxy",
            "Port": web_public, "Address": "127.0.0.1",
            "Proxy": {
                "DestinationServiceName": "web", "DestinationServiceID": "web",
                "LocalServiceAddress": "127.0.0.1", "LocalServicePort": web_app,
                "Config": proxy_config, "Upstreams": upstreams.clone(),
            },
        });
        let agent = &agent;
        async move {
            let (code, text) = agent
                .put("/v1/agent/service/register", body.to_string())
                .await
                .unwrap();
            assert_eq!(code, 200, "{text}");
        }
    };
    let (code, body) = agent
        .put(
            "/v1/agent/service/register",
            json!({"Name": "web", "Port": web_app}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    register_web(json!({})).await;
    let db = TestProxy::start(&agent, &["-sidecar-for", "db"]).unwrap();
    let web = TestProxy::start(&agent, &["-sidecar-for", "web"]).unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let upstream = loopback(upstream);

    tracing::info!("no collector: requests flow and make no span");
    assert_eventually!(
        get(&client, upstream, "/untraced").await.map(|r| r.0) == Some(200),
        "HTTP through the upstream; web:\n{}\ndb:\n{}",
        web.logs(),
        db.logs()
    );

    tracing::info!("the registration names a collector: spans go there, no restart");
    register_web(json!({"otlp_endpoint": first.endpoint})).await;
    assert_eventually!(
        {
            let _ = get(&client, upstream, "/traced").await;
            first.paths().iter().any(|p| p == "/traced")
        },
        "a span of /traced reaches the collector; web:\n{}",
        web.logs()
    );
    assert!(
        !first.paths().iter().any(|p| p == "/untraced"),
        "{:?}",
        first.paths()
    );

    tracing::info!("the key is removed: tracing stops");
    register_web(json!({})).await;
    assert_eventually!(
        web.logs().contains("no OTLP endpoint: request spans off"),
        "web applies the change:\n{}",
        web.logs()
    );
    assert_eq!(get(&client, upstream, "/off").await.map(|r| r.0), Some(200));

    tracing::info!("another collector: spans go to it");
    register_web(json!({"otlp_endpoint": second.endpoint})).await;
    assert_eventually!(
        {
            let _ = get(&client, upstream, "/second").await;
            second.paths().iter().any(|p| p == "/second")
        },
        "a span of /second reaches the second collector; web:\n{}",
        web.logs()
    );
    let (a, b) = (first.paths(), second.paths());
    assert!(!a.iter().chain(&b).any(|p| p == "/off"), "{a:?} {b:?}");
    assert!(!a.iter().any(|p| p == "/second"), "{a:?}");
    let started = web.logs().matches("starting proxy").count();
    assert_eq!(started, 1, "one process, never restarted:\n{}", web.logs());
}
