//! The L7 engine end to end against in-process hyper servers: over real loopback sockets
//! with the plain-TCP connector, or over in-memory duplex streams (a connector that maps
//! endpoint addresses to instances), which keeps many-request tests fast.
//!
//! Timing tests run on the real clock with short timeouts and wait on conditions: this
//! crate's dev-dependencies do not enable tokio's `test-util` (paused time). Each asserts a
//! lower bound exactly and an upper bound loosely, so a slow machine cannot fail them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use concord_api::config_entry::ConfigEntry;
use concord_api::discovery_chain::{compile, target_id, ChainEntries};
use concord_api::intention::Intention;
use futures::future::BoxFuture;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::client::TcpConnector;
use super::error::PROXY_ERROR_HEADER;
use super::*;
use crate::model::{BoxIo, Endpoint};

/// What a test instance does with a request.
#[derive(Clone, Copy, Debug)]
enum Behavior {
    /// 200 with the instance's name as body.
    Ok,
    /// This status, the name as body.
    Status(u16),
    /// Never answers.
    Hang,
}

/// An in-process upstream instance (or local app).
struct Instance {
    name: String,
    behavior: Mutex<Behavior>,
    hits: AtomicUsize,
    /// Path-and-query and headers of the last request.
    last: Mutex<Option<(String, HeaderMap)>>,
}

impl Instance {
    fn new(name: &str, behavior: Behavior) -> Arc<Instance> {
        Arc::new(Instance {
            name: name.to_string(),
            behavior: Mutex::new(behavior),
            hits: AtomicUsize::new(0),
            last: Mutex::new(None),
        })
    }

    fn set(&self, b: Behavior) {
        *self.behavior.lock().unwrap() = b;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn last(&self) -> (String, HeaderMap) {
        self.last.lock().unwrap().clone().unwrap()
    }

    /// Serves one connection in a task.
    fn serve_io<I: crate::model::Io>(self: &Arc<Self>, io: I) {
        let me = self.clone();
        let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let me = me.clone();
            async move {
                let pq = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                *me.last.lock().unwrap() = Some((pq, req.headers().clone()));
                let behavior = *me.behavior.lock().unwrap();
                let body_len = req
                    .into_body()
                    .collect()
                    .await
                    .map(|c| c.to_bytes().len())
                    .unwrap_or(0);
                me.hits.fetch_add(1, Ordering::SeqCst);
                let status = match behavior {
                    Behavior::Ok => 200,
                    Behavior::Status(s) => s,
                    Behavior::Hang => futures::future::pending().await,
                };
                let resp = http::Response::builder()
                    .status(status)
                    .header("x-body-len", body_len.to_string())
                    .body(Full::new(Bytes::from(me.name.clone())))
                    .unwrap();
                Ok::<_, Infallible>(resp)
            }
        });
        tokio::spawn(async move {
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(io), svc)
                .await;
        });
    }

    /// Listens on loopback.
    async fn listen(self: &Arc<Self>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok((io, _)) = listener.accept().await {
                me.serve_io(io);
            }
        });
        addr
    }
}

/// Dials in-memory instances by address; an unknown address is refused.
#[derive(Default)]
struct MemConnector(HashMap<SocketAddr, Arc<Instance>>);

impl Connector for MemConnector {
    fn connect(&self, endpoint: &Endpoint) -> BoxFuture<'static, std::io::Result<BoxIo>> {
        let instance = self.0.get(&endpoint.addr).cloned();
        Box::pin(async move {
            let instance = instance.ok_or(std::io::ErrorKind::ConnectionRefused)?;
            let (client, server) = tokio::io::duplex(64 * 1024);
            instance.serve_io(server);
            Ok(Box::new(client) as BoxIo)
        })
    }
}

fn endpoint(id: &str, addr: SocketAddr, service: &str) -> Endpoint {
    Endpoint {
        id: id.into(),
        addr,
        service: service.into(),
    }
}

fn mem_addr(n: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], n))
}

/// The snapshot of upstream `service` under config entries `entries`, with endpoints per
/// (service, subset).
fn snapshot(
    service: &str,
    entries: Vec<Value>,
    endpoints: Vec<((&str, &str), Vec<Endpoint>)>,
) -> UpstreamSnapshot {
    let e = ChainEntries::from_entries(entries.into_iter().map(|v| {
        let mut e = ConfigEntry::from_json(v).unwrap();
        e.validate().unwrap();
        e
    }));
    UpstreamSnapshot {
        chain: compile(service, "dc1", "", &e),
        endpoints: endpoints
            .into_iter()
            .map(|((svc, subset), eps)| (target_id(svc, subset, "dc1"), eps))
            .collect(),
    }
}

fn http_defaults(service: &str) -> Value {
    json!({"Kind": "service-defaults", "Name": service, "Protocol": "http"})
}

struct Harness {
    outbound: Outbound,
    registry: Registry,
    _snapshot: watch::Sender<UpstreamSnapshot>,
}

fn harness(policy: Value, snap: UpstreamSnapshot, connector: Arc<dyn Connector>) -> Harness {
    harness_with(policy, snap, connector, Options::default())
}

fn harness_with(
    policy: Value,
    snap: UpstreamSnapshot,
    connector: Arc<dyn Connector>,
    options: Options,
) -> Harness {
    let mut registry = Registry::default();
    let metrics = L7Metrics::new(&mut registry);
    let (tx, rx) = watch::channel(snap);
    let policy = UpstreamPolicy::from_config(&policy).unwrap();
    Harness {
        outbound: Outbound::with_options("db", policy, rx, connector, &metrics, options),
        registry,
        _snapshot: tx,
    }
}

impl Harness {
    /// Sends a request through the stack (what `serve_connection` does per request).
    async fn send(&self, method: &str, path: &str, body: Bytes) -> (StatusCode, HeaderMap, String) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "db")
            .body(full(body))
            .unwrap();
        let resp = self.outbound.stack.call_ref(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let (s, _, b) = self.send("GET", path, Bytes::new()).await;
        (s, b)
    }

    fn metric(&self, series: &str) -> f64 {
        metric(&self.registry, series)
    }
}

/// The value of one series in the text exposition (0 when absent).
fn metric(registry: &Registry, series: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn requests(class: &str) -> String {
    format!(
        r#"concord_proxy_http_requests_total{{direction="outbound",service="db",class="{class}"}}"#
    )
}

const RETRIES: &str = r#"concord_proxy_http_retries_total{upstream="db"}"#;

/// Waits (real or paused time) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A `db` upstream of two instances: `good`, which answers, and `dead`, a port nobody
/// listens on (every dial is refused).
async fn good_and_dead_db() -> (Arc<Instance>, UpstreamSnapshot) {
    let good = Instance::new("good", Behavior::Ok);
    let good_addr = good.listen().await;
    let dead_addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let endpoints = vec![
        endpoint("good", good_addr, "db"),
        endpoint("dead", dead_addr, "db"),
    ];
    let db = snapshot("db", vec![], vec![(("db", ""), endpoints)]);
    (good, db)
}

#[tokio::test]
async fn retries_hide_one_failing_instance_of_two() {
    tracing::info!("one live instance and one address nothing listens on");
    let (good, db) = good_and_dead_db().await;
    let h = harness(
        json!({"connect_timeout_ms": 1000}),
        db,
        Arc::new(TcpConnector),
    );
    tracing::info!("every request succeeds: connect failures are retried on the other instance");
    for _ in 0..50 {
        assert_eq!(h.get("/").await, (StatusCode::OK, "good".to_string()));
    }
    assert_eq!(good.hits(), 50);
    assert_eq!(h.metric(&requests("2xx")), 50.0);
    assert_eq!(h.metric(&requests("5xx")), 0.0);
    assert!(
        h.metric(RETRIES) >= 1.0,
        "the dead instance was tried and retried"
    );
}

/// Dials over TCP and counts the dials.
#[derive(Clone, Default)]
struct CountingConnector(Arc<AtomicUsize>);

impl Connector for CountingConnector {
    fn connect(&self, endpoint: &Endpoint) -> BoxFuture<'static, std::io::Result<BoxIo>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        TcpConnector.connect(endpoint)
    }
}

#[tokio::test]
async fn one_downstream_connection_keeps_one_upstream_connection_and_retries_dead_dials() {
    tracing::info!(
        "the app's keep-alive connection to the outbound listener; a live and a dead instance"
    );
    let (good, db) = good_and_dead_db().await;
    let dials = CountingConnector::default();
    let h = harness(
        json!({"connect_timeout_ms": 1000, "load_balancer": "round_robin"}),
        db,
        Arc::new(dials.clone()),
    );
    let outbound = h.outbound.clone();
    let addr = listen_with(move |io| outbound.serve_connection(io)).await;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    tracing::info!(
        "every request succeeds: a dial to the dead instance is retried on the live one"
    );
    for _ in 0..20 {
        send.ready().await.unwrap();
        let req = Request::get("/")
            .header("host", "db")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"good");
    }
    assert_eq!(good.hits(), 20);
    assert!(
        h.metric(RETRIES) >= 1.0,
        "the dead instance was tried and retried"
    );
    tracing::info!("one connection to the live instance carried all 20; the rest were dead dials");
    let to_dead = h.metric(RETRIES) as usize;
    assert_eq!(dials.0.load(Ordering::SeqCst), 1 + to_dead);
}

#[tokio::test]
async fn retries_on_status_codes_hide_a_503_instance() {
    let good = Instance::new("good", Behavior::Ok);
    let bad = Instance::new("bad", Behavior::Status(503));
    let mem = MemConnector([(mem_addr(1), good.clone()), (mem_addr(2), bad.clone())].into());
    let h = harness(
        json!({"retry_on_status_codes": [503], "passive_health_check": {"max_failures": 0}}),
        snapshot(
            "db",
            vec![],
            vec![(
                ("db", ""),
                vec![
                    endpoint("good", mem_addr(1), "db"),
                    endpoint("bad", mem_addr(2), "db"),
                ],
            )],
        ),
        Arc::new(mem),
    );
    for _ in 0..40 {
        assert_eq!(h.get("/").await.0, StatusCode::OK);
    }
    assert!(bad.hits() > 0, "the 503 instance got traffic");
    assert_eq!(
        h.metric(RETRIES),
        bad.hits() as f64,
        "each 503 was retried once"
    );
}

#[tokio::test]
async fn hung_instance_gives_504_after_the_request_timeout() {
    let hung = Instance::new("hung", Behavior::Hang);
    let mem = MemConnector([(mem_addr(1), hung.clone())].into());
    let h = harness(
        json!({"request_timeout_ms": 300}),
        snapshot(
            "db",
            vec![],
            vec![(("db", ""), vec![endpoint("hung", mem_addr(1), "db")])],
        ),
        Arc::new(mem),
    );
    let started = tokio::time::Instant::now();
    let (status, headers, body) = h.send("GET", "/slow", Bytes::new()).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(body.contains("timeout"), "{body}");
    assert_eq!(headers[PROXY_ERROR_HEADER], "timeout");
    assert_eq!(h.metric(&requests("5xx")), 1.0);
    assert_eq!(hung.hits(), 1, "a timeout is not retried");
}

#[tokio::test]
async fn router_timeout_overrides_the_upstream_default() {
    let hung = Instance::new("hung", Behavior::Hang);
    let mem = MemConnector([(mem_addr(1), hung)].into());
    let h = harness(
        json!({"request_timeout_ms": 60000}),
        snapshot(
            "db",
            vec![
                http_defaults("db"),
                json!({"Kind": "service-router", "Name": "db", "Routes": [
                    {"Match": {"HTTP": {"PathPrefix": "/fast"}}, "Destination": {"RequestTimeout": "300ms"}}]}),
            ],
            vec![(("db", ""), vec![endpoint("hung", mem_addr(1), "db")])],
        ),
        Arc::new(mem),
    );
    let started = tokio::time::Instant::now();
    assert_eq!(h.get("/fast/x").await.0, StatusCode::GATEWAY_TIMEOUT);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(30),
        "the upstream's 60 s did not apply: {elapsed:?}"
    );
}

#[tokio::test]
async fn a_5xx_instance_is_ejected_and_later_restored() {
    let good = Instance::new("good", Behavior::Ok);
    let bad = Instance::new("bad", Behavior::Status(500));
    let mem = MemConnector([(mem_addr(1), good.clone()), (mem_addr(2), bad.clone())].into());
    let h = harness(
        json!({"num_retries": 0, "passive_health_check": {"max_failures": 3, "base_ejection_time": "2s"}}),
        snapshot(
            "db",
            vec![],
            vec![(
                ("db", ""),
                vec![
                    endpoint("good", mem_addr(1), "db"),
                    endpoint("bad", mem_addr(2), "db"),
                ],
            )],
        ),
        Arc::new(mem),
    );
    const EJECTIONS: &str = r#"concord_proxy_http_ejections_total{upstream="db"}"#;
    tracing::info!("send until the bad instance has failed three times in a row");
    // `before_last` precedes the ejection, so time since it bounds time since ejection
    // from above.
    let mut before_last = tokio::time::Instant::now();
    let mut sent = 0;
    while h.metric(EJECTIONS) < 1.0 {
        before_last = tokio::time::Instant::now();
        h.get("/").await;
        sent += 1;
        assert!(sent < 200, "never ejected");
    }
    assert_eq!(bad.hits(), 3);
    tracing::info!("while ejected, the bad instance gets nothing");
    bad.set(Behavior::Ok);
    for _ in 0..20 {
        assert_eq!(h.get("/").await, (StatusCode::OK, "good".to_string()));
    }
    let hits = bad.hits();
    // Twenty in-memory requests take milliseconds; only a stalled machine outlasts 2 s.
    if before_last.elapsed() < Duration::from_secs(2) {
        assert_eq!(hits, 3);
    }
    tracing::info!("after the ejection time it is back in rotation");
    let mut restored = None;
    for _ in 0..1000 {
        assert_eq!(h.get("/").await.0, StatusCode::OK);
        if bad.hits() > 3 {
            // Taken after the restoring request was picked, so not earlier than it.
            restored = Some(tokio::time::Instant::now());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let restored = restored.expect("never restored");
    assert!(
        restored >= before_last + Duration::from_secs(2),
        "restored before its ejection time"
    );
    assert_eq!(h.metric(EJECTIONS), 1.0);
    assert_eq!(h.metric(&requests("5xx")), 3.0);
}

#[tokio::test]
async fn max_concurrent_requests_exceeded_gives_503() {
    let hung = Instance::new("hung", Behavior::Hang);
    let mem = MemConnector([(mem_addr(1), hung.clone())].into());
    let h = Arc::new(harness(
        json!({"limits": {"max_concurrent_requests": 1}}),
        snapshot(
            "db",
            vec![],
            vec![(("db", ""), vec![endpoint("hung", mem_addr(1), "db")])],
        ),
        Arc::new(mem),
    ));
    let first = tokio::spawn({
        let h = h.clone();
        async move { h.get("/").await }
    });
    eventually("the first request to reach the instance", || {
        hung.hits() == 1
    })
    .await;
    let (status, headers, body) = h.send("GET", "/", Bytes::new()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[PROXY_ERROR_HEADER], "overflow");
    assert!(body.contains("max_concurrent_requests"), "{body}");
    assert_eq!(
        h.metric(r#"concord_proxy_http_breaker_rejections_total{upstream="db",limit="max_concurrent_requests"}"#),
        1.0
    );
    assert_eq!(
        hung.hits(),
        1,
        "the rejected request never reached the upstream"
    );
    first.abort();
}

#[tokio::test]
async fn split_90_10_over_1000_requests_lands_within_3_points() {
    let v1 = Instance::new("v1", Behavior::Ok);
    let v2 = Instance::new("v2", Behavior::Ok);
    let mem = MemConnector([(mem_addr(1), v1.clone()), (mem_addr(2), v2.clone())].into());
    let h = harness(
        json!({}),
        snapshot(
            "db",
            vec![
                http_defaults("db"),
                json!({"Kind": "service-resolver", "Name": "db",
                    "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"}, "v2": {"Filter": "Service.Meta.version == v2"}}}),
                json!({"Kind": "service-splitter", "Name": "db", "Splits": [
                    {"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}]}),
            ],
            vec![
                (("db", "v1"), vec![endpoint("v1", mem_addr(1), "db")]),
                (("db", "v2"), vec![endpoint("v2", mem_addr(2), "db")]),
            ],
        ),
        Arc::new(mem),
    );
    for _ in 0..1000 {
        assert_eq!(h.get("/").await.0, StatusCode::OK);
    }
    let share = v2.hits() as f64 / 10.0;
    assert_eq!(v1.hits() + v2.hits(), 1000);
    assert!((share - 10.0).abs() <= 3.0, "v2 got {share}%");
}

#[tokio::test]
async fn router_sends_api_to_another_service_with_prefix_rewrite() {
    let web = Instance::new("web", Behavior::Ok);
    let api = Instance::new("api", Behavior::Ok);
    let mem = MemConnector([(mem_addr(1), web.clone()), (mem_addr(2), api.clone())].into());
    let h = harness(
        json!({}),
        snapshot(
            "web",
            vec![
                http_defaults("web"),
                http_defaults("api"),
                json!({"Kind": "service-router", "Name": "web", "Routes": [
                    {"Match": {"HTTP": {"PathPrefix": "/api/"}}, "Destination": {"Service": "api", "PrefixRewrite": "/"}}]}),
            ],
            vec![
                (("web", ""), vec![endpoint("web", mem_addr(1), "web")]),
                (("api", ""), vec![endpoint("api", mem_addr(2), "api")]),
            ],
        ),
        Arc::new(mem),
    );
    assert_eq!(
        h.get("/api/users?id=7").await,
        (StatusCode::OK, "api".to_string())
    );
    assert_eq!(api.last().0, "/users?id=7");
    assert_eq!(h.get("/home").await, (StatusCode::OK, "web".to_string()));
    assert_eq!(web.last().0, "/home");
    tracing::info!("a large streamed body is forwarded once, unbuffered");
    let big = Bytes::from(vec![b'x'; 200 * 1024]);
    let (status, headers, _) = h.send("POST", "/api/upload", big).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-body-len"], "204800");
}

#[tokio::test]
async fn no_endpoints_gives_503_and_failover_serves() {
    let backup = Instance::new("backup", Behavior::Ok);
    let mem = MemConnector([(mem_addr(9), backup.clone())].into());
    let (tx, rx) = watch::channel(snapshot(
        "db",
        vec![
            json!({"Kind": "service-resolver", "Name": "db", "Failover": {"*": {"Service": "db-backup"}}}),
        ],
        vec![],
    ));
    let mut registry = Registry::default();
    let metrics = L7Metrics::new(&mut registry);
    let out = Outbound::new("db", UpstreamPolicy::default(), rx, Arc::new(mem), &metrics);
    let h = Harness {
        outbound: out,
        registry,
        _snapshot: tx.clone(),
    };
    let (status, headers, _) = h.send("GET", "/", Bytes::new()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[PROXY_ERROR_HEADER], "no-endpoints");
    tracing::info!("a new snapshot applies to the next request: the failover target serves");
    tx.send_modify(|s| {
        s.endpoints.insert(
            target_id("db-backup", "", "dc1"),
            vec![endpoint("backup", mem_addr(9), "db-backup")],
        );
    });
    assert_eq!(h.get("/").await, (StatusCode::OK, "backup".to_string()));
}

#[tokio::test]
async fn retry_budget_caps_retries() {
    let a = Instance::new("a", Behavior::Status(503));
    let b = Instance::new("b", Behavior::Status(503));
    let mem = MemConnector([(mem_addr(1), a.clone()), (mem_addr(2), b.clone())].into());
    let h = harness(
        json!({"num_retries": 3, "retry_on_status_codes": [503],
            "retry_budget": {"percent": 20, "min_retries_per_second": 0},
            "passive_health_check": {"max_failures": 0}}),
        snapshot(
            "db",
            vec![],
            vec![(
                ("db", ""),
                vec![
                    endpoint("a", mem_addr(1), "db"),
                    endpoint("b", mem_addr(2), "db"),
                ],
            )],
        ),
        Arc::new(mem),
    );
    for _ in 0..100 {
        assert_eq!(h.get("/").await.0, StatusCode::SERVICE_UNAVAILABLE);
    }
    let retries = h.metric(RETRIES);
    assert!(
        retries > 0.0 && retries <= 20.0,
        "retries {retries}: at most 20% of 100"
    );
    assert_eq!((a.hits() + b.hits()) as f64, 100.0 + retries);
    assert!(h.metric(r#"concord_proxy_http_retries_budget_exhausted_total{upstream="db"}"#) > 0.0);
}

fn intentions(destination: &str, list: Vec<Value>) -> IntentionSnapshot {
    IntentionSnapshot {
        destination: destination.to_string(),
        intentions: list
            .into_iter()
            .map(|v| serde_json::from_value::<Intention>(v).unwrap())
            .collect(),
        default_allow: true,
    }
}

/// Sends `path` over an h1 connection to an inbound served on an in-memory stream.
async fn inbound_conn(
    inbound: &Inbound,
    source: &str,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    tokio::spawn(inbound.serve_connection(server, source.to_string(), None));
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn send_h1(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
) -> (StatusCode, String) {
    send.ready().await.unwrap();
    let req = Request::builder()
        .uri(path)
        .header("host", "db")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn l7_intention_path_rules_give_403_and_changes_apply_without_reconnect() {
    let app = Instance::new("db-app", Behavior::Ok);
    let app_addr = app.listen().await;
    let (tx, rx) = watch::channel(intentions(
        "db",
        vec![json!({"SourceName": "web", "DestinationName": "db",
            "Permissions": [{"Action": "deny", "HTTP": {"PathPrefix": "/admin"}}]})],
    ));
    let mut registry = Registry::default();
    let metrics = L7Metrics::new(&mut registry);
    let inbound = Inbound::new(app_addr, "http", rx, &metrics);
    let mut conn = inbound_conn(&inbound, "web").await;
    let (status, body) = send_h1(&mut conn, "/admin/users?x=1").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("denied by intentions"), "{body}");
    assert_eq!(
        send_h1(&mut conn, "/public").await,
        (StatusCode::OK, "db-app".to_string())
    );
    assert_eq!(app.hits(), 1, "the denied request never reached the app");
    tracing::info!("a deny-all intention applies to the next request on the same connection");
    tx.send_replace(intentions(
        "db",
        vec![json!({"SourceName": "web", "DestinationName": "db", "Action": "deny"})],
    ));
    assert_eq!(send_h1(&mut conn, "/public").await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        metric(
            &registry,
            r#"concord_proxy_http_intention_denials_total{source="web"}"#
        ),
        2.0
    );
    let series = |class: &str| {
        format!(
            r#"concord_proxy_http_requests_total{{direction="inbound",service="web",class="{class}"}}"#
        )
    };
    assert_eq!(metric(&registry, &series("4xx")), 2.0);
    assert_eq!(metric(&registry, &series("2xx")), 1.0);
}

/// Serves an [`Outbound`] or [`Inbound`] on a loopback listener.
async fn listen_with<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((io, _)) = listener.accept().await {
            tokio::spawn(serve(io));
        }
    });
    addr
}

#[tokio::test]
async fn trace_headers_pass_through_two_sidecars_over_h1_and_h2() {
    // (app speaks h2 to its outbound listener, outbound → inbound protocol, inbound → app)
    let cases = [
        (false, "http", "http"),
        (true, "http2", "http"),
        (false, "http2", "http2"),
        (true, "http", "grpc"),
    ];
    for (client_h2, upstream_protocol, app_protocol) in cases {
        tracing::info!(
            client_h2,
            upstream_protocol,
            app_protocol,
            "app → outbound → inbound → app"
        );
        let app = Instance::new("db-app", Behavior::Ok);
        let app_addr = app.listen().await;
        let mut registry = Registry::default();
        let metrics = L7Metrics::new(&mut registry);
        let (_itx, irx) = watch::channel(intentions("db", vec![]));
        let inbound = Inbound::with_options(
            app_addr,
            app_protocol,
            irx,
            &metrics,
            Options {
                access_log: true,
                local_request_timeout: Some(Duration::from_secs(5)),
                tracer: None,
            },
        );
        let inbound_addr =
            listen_with(move |io| inbound.serve_connection(io, "web".to_string(), None)).await;
        let (_utx, urx) = watch::channel(snapshot(
            "db",
            vec![],
            vec![(("db", ""), vec![endpoint("db-1", inbound_addr, "db")])],
        ));
        let policy = UpstreamPolicy::from_config(&json!({"protocol": upstream_protocol})).unwrap();
        let outbound = Outbound::with_options(
            "db",
            policy,
            urx,
            Arc::new(TcpConnector),
            &metrics,
            Options {
                access_log: true,
                ..Options::default()
            },
        );
        let outbound_addr = listen_with(move |io| outbound.serve_connection(io)).await;
        let mut builder = Client::builder(TokioExecutor::new());
        builder.http2_only(client_h2);
        let client: Client<HttpConnector, Full<Bytes>> = builder.build(HttpConnector::new());
        let trace = [
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "1"),
            ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
        ];
        for _ in 0..3 {
            let mut req = Request::builder().uri(format!("http://{outbound_addr}/orders?id=1"));
            for (k, v) in trace {
                req = req.header(k, v);
            }
            let resp = client
                .request(req.body(Full::new(Bytes::new())).unwrap())
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"db-app");
        }
        let (path, headers) = app.last();
        assert_eq!(path, "/orders?id=1");
        for (k, v) in trace {
            assert_eq!(
                headers[k], v,
                "{k} ({client_h2}, {upstream_protocol}, {app_protocol})"
            );
        }
        assert_eq!(app.hits(), 3);
        assert_eq!(
            metric(
                &registry,
                r#"concord_proxy_http_requests_total{direction="outbound",service="db",class="2xx"}"#
            ),
            3.0
        );
        assert_eq!(
            metric(
                &registry,
                r#"concord_proxy_http_requests_total{direction="inbound",service="web",class="2xx"}"#
            ),
            3.0
        );
        assert_eq!(
            metric(
                &registry,
                r#"concord_proxy_http_request_duration_seconds_count{direction="outbound",service="db"}"#
            ),
            3.0
        );
    }
}

/// Collects (target, message) of every event on this thread.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<(String, String)>>>);

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut m = Message(String::new());
        event.record(&mut m);
        self.0
            .lock()
            .unwrap()
            .push((event.metadata().target().to_string(), m.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn access_log_writes_one_json_line_per_request_when_on() {
    let capture = Capture::default();
    // The test runtime is single-threaded: the stack runs on this thread.
    let _guard = tracing::subscriber::set_default(capture.clone());
    let db = Instance::new("db", Behavior::Ok);
    let mem = MemConnector([(mem_addr(1), db)].into());
    let snap = || {
        snapshot(
            "db",
            vec![],
            vec![(("db", ""), vec![endpoint("db-1", mem_addr(1), "db")])],
        )
    };
    let on = harness_with(
        json!({}),
        snap(),
        Arc::new(mem),
        Options {
            access_log: true,
            ..Options::default()
        },
    );
    let req = Request::builder()
        .uri("/orders?id=1")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .body(full(Bytes::new()))
        .unwrap();
    let resp = on.outbound.stack.call_ref(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let off = harness(json!({}), snap(), Arc::new(MemConnector::default()));
    assert_eq!(off.get("/").await.0, StatusCode::SERVICE_UNAVAILABLE);
    let lines: Vec<Value> = capture
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(target, _)| target == "concord_proxy::access")
        .map(|(_, msg)| serde_json::from_str(msg).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "only the proxy with access logs on writes: {lines:?}"
    );
    let l = &lines[0];
    assert_eq!(l["direction"], "outbound");
    assert_eq!(l["service"], "db");
    assert_eq!(l["method"], "GET");
    assert_eq!(l["path"], "/orders");
    assert_eq!(l["status"], 200);
    assert_eq!(l["proxy_error"], Value::Null);
    assert_eq!(
        l["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert!(l["duration_ms"].as_f64().is_some());
}

#[tokio::test]
async fn only_replayable_bodies_are_retried() {
    let bad = Instance::new("bad", Behavior::Status(503));
    let mem = MemConnector([(mem_addr(1), bad.clone())].into());
    let h = harness(
        json!({"num_retries": 1, "retry_on_status_codes": [503],
            "passive_health_check": {"max_failures": 0}}),
        snapshot(
            "db",
            vec![],
            vec![(("db", ""), vec![endpoint("bad", mem_addr(1), "db")])],
        ),
        Arc::new(mem),
    );
    tracing::info!("a small body is buffered and replayed");
    let (status, headers, _) = h.send("POST", "/", Bytes::from(vec![b'x'; 1024])).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        headers["x-body-len"], "1024",
        "the replay carried the whole body"
    );
    assert_eq!(bad.hits(), 2);
    tracing::info!("a body over 64 KiB streams through once");
    let big = Bytes::from(vec![b'x'; super::retry::MAX_REPLAY_BODY as usize + 1]);
    let (status, headers, _) = h.send("POST", "/", big).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["x-body-len"], "65537");
    assert_eq!(bad.hits(), 3);
    assert_eq!(h.metric(RETRIES), 1.0);
}

#[tokio::test]
async fn inbound_requests_carry_forwarded_headers_for_the_app() {
    let app = Instance::new("db-app", Behavior::Ok);
    let app_addr = app.listen().await;
    let mut registry = Registry::default();
    let metrics = L7Metrics::new(&mut registry);
    let (_itx, irx) = watch::channel(intentions("db", vec![]));
    let inbound = Inbound::new(app_addr, "http", irx, &metrics);
    let downstream = forwarded::Downstream::with_element(
        "127.0.46.9:40000".parse().unwrap(),
        "By=spiffe://t/ns/default/dc/dc1/svc/db;Hash=ab;URI=spiffe://t/ns/default/dc/dc1/svc/web",
    );
    let (client, server) = tokio::io::duplex(64 * 1024);
    tokio::spawn(inbound.serve_connection(server, "web".to_string(), Some(downstream)));
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client))
        .await
        .unwrap();
    tokio::spawn(conn);

    // A request that already passed a proxy: both lists get this hop appended.
    let req = Request::builder()
        .uri("/x")
        .header("host", "db")
        .header("x-forwarded-for", "10.0.0.1")
        .header("x-forwarded-client-cert", "By=a;URI=b")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (_, headers) = app.last();
    assert_eq!(headers["x-forwarded-for"], "10.0.0.1,127.0.46.9");
    assert_eq!(headers["x-forwarded-proto"], "https");
    assert_eq!(
        headers["x-forwarded-client-cert"],
        "By=a;URI=b,By=spiffe://t/ns/default/dc/dc1/svc/db;Hash=ab;URI=spiffe://t/ns/default/dc/dc1/svc/web"
    );

    // A first hop: set, not appended.
    send.ready().await.unwrap();
    let req = Request::builder()
        .uri("/y")
        .header("host", "db")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(
        send.send_request(req).await.unwrap().status(),
        StatusCode::OK
    );
    let (_, headers) = app.last();
    assert_eq!(headers["x-forwarded-for"], "127.0.46.9");
    assert!(headers["x-forwarded-client-cert"]
        .to_str()
        .unwrap()
        .starts_with("By=spiffe://t/ns/default/dc/dc1/svc/db;"));
}

/// web's outbound sidecar → db's inbound sidecar (plain TCP, intentions allow all) → the
/// app at `app_addr` (HTTP/1.1); the address of the outbound listener. The sidecars talk
/// `between` (`http`: HTTP/1.1, `http2`: h2).
async fn two_http_sidecars(
    app_addr: SocketAddr,
    outbound_options: Options,
    inbound_options: Options,
) -> SocketAddr {
    two_sidecars_speaking("http", app_addr, outbound_options, inbound_options).await
}

/// [`two_http_sidecars`] with the protocol between the sidecars given.
async fn two_sidecars_speaking(
    between: &str,
    app_addr: SocketAddr,
    outbound_options: Options,
    inbound_options: Options,
) -> SocketAddr {
    let mut registry = Registry::default();
    let metrics = L7Metrics::new(&mut registry);
    let (itx, irx) = watch::channel(intentions("db", vec![]));
    let inbound = Inbound::with_options(app_addr, "http", irx, &metrics, inbound_options);
    let inbound_addr = listen_with(move |io| {
        let _keep = &itx;
        inbound.serve_connection(io, "web".to_string(), None)
    })
    .await;
    let (utx, urx) = watch::channel(snapshot(
        "db",
        vec![],
        vec![(("db", ""), vec![endpoint("db-1", inbound_addr, "db")])],
    ));
    let policy = UpstreamPolicy::from_config(&json!({ "protocol": between })).unwrap();
    let outbound = Outbound::with_options(
        "db",
        policy,
        urx,
        Arc::new(TcpConnector),
        &metrics,
        outbound_options,
    );
    listen_with(move |io| {
        let _keep = &utx;
        outbound.serve_connection(io)
    })
    .await
}

/// An app that accepts a websocket-style upgrade and then echoes bytes.
async fn upgrade_echo_app() -> SocketAddr {
    listen_with(|io| async move {
        let svc =
            hyper::service::service_fn(|mut req: Request<hyper::body::Incoming>| async move {
                let accepted = is_upgrade(&req) && req.headers()["upgrade"] == "websocket";
                if accepted {
                    let on = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        let mut io = TokioIo::new(on.await.unwrap());
                        let (mut r, mut w) = tokio::io::split(&mut io);
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    });
                }
                let status = if accepted { 101 } else { 400 };
                let resp = http::Response::builder()
                    .status(status)
                    .header("connection", "upgrade")
                    .header("upgrade", "websocket")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                Ok::<_, Infallible>(resp)
            });
        hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades()
            .await
            .map_err(Into::into)
    })
    .await
}

#[tokio::test]
async fn upgrades_pass_through_two_sidecars() {
    upgrade_through("http").await;
}

/// Sidecars that speak h2 to each other still carry a websocket: the upgrade takes an
/// HTTP/1.1 connection of its own between them.
#[tokio::test]
async fn upgrades_pass_between_sidecars_that_speak_h2() {
    upgrade_through("http2").await;
}

async fn upgrade_through(between: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app_addr = upgrade_echo_app().await;
    let outbound_addr =
        two_sidecars_speaking(between, app_addr, Options::default(), Options::default()).await;

    let tcp = tokio::net::TcpStream::connect(outbound_addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    let req = Request::builder()
        .uri("/chat")
        .header("host", "db")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(resp.headers()["upgrade"], "websocket");
    let mut io = TokioIo::new(hyper::upgrade::on(resp).await.unwrap());
    for msg in [&b"ping"[..], b"second frame"] {
        io.write_all(msg).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), io.read_exact(&mut buf))
            .await
            .expect("the echo comes back through both sidecars")
            .unwrap();
        assert_eq!(buf, msg);
    }
}

/// A fake OTLP/HTTP collector: every span of every `POST /v1/traces`, with its resource's
/// `service.name`.
async fn collector() -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
    let spans: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let store = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let store = store.clone();
            async move {
                for rs in body["resourceSpans"].as_array().into_iter().flatten() {
                    let service = rs["resource"]["attributes"][0]["value"]["stringValue"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                        for span in ss["spans"].as_array().into_iter().flatten() {
                            store.lock().unwrap().push((service.clone(), span.clone()));
                        }
                    }
                }
                "{}"
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

#[tokio::test]
async fn each_sidecar_exports_a_span_per_request_joined_to_the_callers_trace() {
    let (url, spans) = collector().await;
    let app = Instance::new("db-app", Behavior::Ok);
    let app_addr = app.listen().await;
    let traced = |service: &str| Options {
        tracer: Some(trace::Tracer::start(&url, service).unwrap()),
        ..Options::default()
    };
    let outbound_addr = two_http_sidecars(app_addr, traced("web"), traced("db")).await;
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let send = |traceparent: Option<&'static str>| {
        let client = client.clone();
        async move {
            let mut req = Request::builder().uri(format!("http://{outbound_addr}/orders"));
            if let Some(tp) = traceparent {
                req = req.header("traceparent", tp);
            }
            let resp = client
                .request(req.body(Full::new(Bytes::new())).unwrap())
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
        }
    };
    let wait_for = |n: usize| {
        let spans = spans.clone();
        async move {
            let wait = async {
                while spans.lock().unwrap().len() < n {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(10), wait)
                .await
                .expect("the collector receives the spans");
            spans.lock().unwrap().clone()
        }
    };

    // Not sampled: no span, and the header reaches the app as sent.
    let unsampled = "00-11111111111111111111111111111111-2222222222222222-00";
    send(Some(unsampled)).await;
    assert_eq!(app.last().1["traceparent"], unsampled);

    let trace = "0af7651916cd43dd8448eb211c80319c";
    let caller = "b7ad6b7169203331";
    send(Some(
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ))
    .await;
    let got = wait_for(2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let by = |service: &str| {
        got.iter()
            .find(|(s, _)| s == service)
            .map(|(_, span)| span.clone())
            .unwrap()
    };
    let (out, inb) = (by("web"), by("db"));
    assert_eq!(out["traceId"], trace);
    assert_eq!(inb["traceId"], trace);
    assert_eq!(
        out["parentSpanId"], caller,
        "the caller's span is the parent"
    );
    assert_eq!(
        inb["parentSpanId"], out["spanId"],
        "one sidecar's span is the other's parent"
    );
    assert_eq!(
        (out["kind"].as_u64(), inb["kind"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(out["name"], "GET");
    assert!(out["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["key"] == "http.response.status_code" && a["value"]["intValue"] == "200"));
    let inbound_span = inb["spanId"].as_str().unwrap();
    assert_eq!(
        app.last().1["traceparent"],
        format!("00-{trace}-{inbound_span}-01").as_str(),
        "the app's parent is the inbound span"
    );

    // No traceparent: the outbound span starts a trace the inbound one joins.
    send(None).await;
    let got = wait_for(4).await;
    let new: Vec<&Value> = got[2..].iter().map(|(_, s)| s).collect();
    assert_eq!(new[0]["traceId"], new[1]["traceId"]);
    assert_ne!(new[0]["traceId"], trace);
    assert_eq!(
        new.iter()
            .filter(|s| s.get("parentSpanId").is_none())
            .count(),
        1,
        "one root span: {new:?}"
    );
}
