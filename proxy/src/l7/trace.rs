//! Distributed tracing: one span per L7 request, exported over OTLP/HTTP (JSON encoding,
//! `POST <endpoint>/v1/traces`) when a collector is configured (`-otlp-endpoint` or the
//! sidecar's `Proxy.Config.otlp_endpoint`).
//!
//! The span joins the request's W3C trace: its parent is the incoming `traceparent`'s span
//! (a request without one starts a sampled trace), and the request leaves with `traceparent`
//! naming this span, so the next hop's span is its child. `tracestate` and B3 headers pass
//! unchanged. A request whose `traceparent` is not sampled gets no span and keeps its header.
//! Without a collector nothing is touched.
//!
//! The exporter is hand-written rather than the opentelemetry crates: their OTLP exporter
//! brings prost and the generated protocol types into the build for what is one JSON POST.
//! Spans queue in a bounded channel ([`QUEUE`]); when it is full a span is dropped and
//! counted, so a slow or dead collector never slows a request. A background task sends
//! batches of up to [`MAX_BATCH`] spans, at least every [`FLUSH_INTERVAL`].
//!
//! The collector can change while the proxy runs ([`Tracer::set_endpoint`]: the sidecar's
//! registration changed `otlp_endpoint`): the next batch goes to the new one, and with no
//! endpoint the layer does nothing at all, as without a tracer.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::{forward, Inner, Middleware, Req, ResponseFuture, SourceService};

/// Spans waiting for the exporter; past this they are dropped.
pub const QUEUE: usize = 4096;
/// Most spans in one export request.
pub const MAX_BATCH: usize = 512;
/// Longest a span waits for its batch to fill.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// Timeout of one export request.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// A W3C trace context (`traceparent`, version 00).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// 16-byte trace id.
    pub trace_id: [u8; 16],
    /// 8-byte id of the span that sent the request.
    pub span_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

fn hex_bytes<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl TraceContext {
    /// Parses a `traceparent` value; `None` if it is not a valid version-00 context (all-zero
    /// ids are invalid).
    pub fn parse(value: &str) -> Option<TraceContext> {
        let mut parts = value.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let trace_id = hex_bytes::<16>(trace).filter(|t| t.iter().any(|b| *b != 0))?;
        let span_id = hex_bytes::<8>(span).filter(|s| s.iter().any(|b| *b != 0))?;
        let [flags] = hex_bytes::<1>(flags)?;
        Some(TraceContext {
            trace_id,
            span_id,
            flags,
        })
    }

    /// The `traceparent` value.
    pub fn header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.span_id),
            self.flags
        )
    }

    fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// One finished span.
#[derive(Clone, Debug)]
pub struct Span {
    /// Its context (trace id, own span id).
    pub context: TraceContext,
    /// The parent span, when the request came with one.
    pub parent: Option<[u8; 8]>,
    /// Span name (the HTTP method, as OpenTelemetry's HTTP conventions name spans).
    pub name: String,
    /// `inbound` (server span) or `outbound` (client span).
    pub direction: &'static str,
    /// Start and end, nanoseconds since the Unix epoch.
    pub start: u64,
    /// See `start`.
    pub end: u64,
    /// String attributes.
    pub attributes: Vec<(&'static str, String)>,
    /// The response status (0 when the proxy failed before one).
    pub status: u16,
}

impl Span {
    fn to_otlp(&self) -> Value {
        let mut attributes: Vec<Value> = self
            .attributes
            .iter()
            .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
            .collect();
        if self.status != 0 {
            attributes.push(json!({"key": "http.response.status_code",
                "value": {"intValue": self.status.to_string()}}));
        }
        let mut span = json!({
            "traceId": hex(&self.context.trace_id),
            "spanId": hex(&self.context.span_id),
            "name": self.name,
            // SPAN_KIND_SERVER = 2, SPAN_KIND_CLIENT = 3.
            "kind": if self.direction == "inbound" { 2 } else { 3 },
            "startTimeUnixNano": self.start.to_string(),
            "endTimeUnixNano": self.end.to_string(),
            "attributes": attributes,
            // STATUS_CODE_ERROR = 2 for 5xx and proxy failures, else UNSET.
            "status": {"code": if self.status == 0 || self.status >= 500 { 2 } else { 0 }},
        });
        if let Some(parent) = self.parent {
            span["parentSpanId"] = json!(hex(&parent));
        }
        span
    }
}

struct TracerInner {
    queue: mpsc::Sender<Span>,
    dropped: AtomicU64,
    /// Whether an endpoint is set (read per request, so kept apart from the URL).
    enabled: AtomicBool,
    /// `<endpoint>/v1/traces`, read by the exporter per batch.
    url: watch::Sender<Option<String>>,
}

/// The span sink of one proxy: cheap to clone; the exporter task stops when the last clone
/// is dropped (its queue closes).
#[derive(Clone)]
pub struct Tracer(Arc<TracerInner>);

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl PartialEq for Tracer {
    fn eq(&self, other: &Tracer) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Tracer {}

impl Tracer {
    /// Starts an exporter to the OTLP/HTTP collector at `endpoint` (`http://host:4318`),
    /// spans carrying `service.name` = `service`.
    pub fn start(endpoint: &str, service: &str) -> Result<Tracer, String> {
        let tracer = Tracer::idle(service)?;
        tracer.set_endpoint(Some(endpoint));
        Ok(tracer)
    }

    /// Starts an exporter with no collector yet: spans are made only once
    /// [`Tracer::set_endpoint`] names one.
    pub fn idle(service: &str) -> Result<Tracer, String> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        let (queue, rx) = mpsc::channel(QUEUE);
        let (url, url_rx) = watch::channel(None);
        tokio::spawn(export(http, url_rx, service.to_string(), rx));
        Ok(Tracer(Arc::new(TracerInner {
            queue,
            dropped: AtomicU64::new(0),
            enabled: AtomicBool::new(false),
            url,
        })))
    }

    /// Sends spans to `endpoint` from the next batch on (`None` or empty: tracing off).
    /// Returns whether the endpoint changed.
    pub fn set_endpoint(&self, endpoint: Option<&str>) -> bool {
        let url = endpoint
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| format!("{}/v1/traces", e.trim_end_matches('/')));
        self.0.enabled.store(url.is_some(), Ordering::Relaxed);
        self.0.url.send_if_modified(|current| {
            let changed = *current != url;
            *current = url;
            changed
        })
    }

    /// Whether a collector is set (spans are made only then).
    pub fn enabled(&self) -> bool {
        self.0.enabled.load(Ordering::Relaxed)
    }

    /// Queues a finished span (dropped, and counted, when the queue is full).
    pub fn record(&self, span: Span) {
        if self.0.queue.try_send(span).is_err() {
            self.0.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Spans dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

/// Sends batches to the current URL until every [`Tracer`] clone is gone.
async fn export(
    http: reqwest::Client,
    url: watch::Receiver<Option<String>>,
    service: String,
    mut rx: mpsc::Receiver<Span>,
) {
    let resource = json!({"attributes": [
        {"key": "service.name", "value": {"stringValue": service}},
        {"key": "telemetry.sdk.name", "value": {"stringValue": "concord-proxy"}},
    ]});
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + FLUSH_INTERVAL;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        // Spans made before the endpoint was cleared go nowhere.
        let Some(url) = url.borrow().clone() else {
            continue;
        };
        let body = json!({"resourceSpans": [{
            "resource": resource,
            "scopeSpans": [{
                "scope": {"name": "concord-proxy"},
                "spans": batch.iter().map(Span::to_otlp).collect::<Vec<_>>(),
            }],
        }]});
        match http.post(&url).json(&body).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::warn!(status = %r.status(), spans = batch.len(), "OTLP export refused; spans dropped")
            }
            Err(e) => {
                tracing::warn!(error = %e, spans = batch.len(), "OTLP export failed; spans dropped")
            }
        }
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The layer: a span per request, the request's `traceparent` pointing at it (a no-op
/// without a tracer).
pub struct Traced {
    /// Where spans go (`None`: tracing off).
    pub tracer: Option<Tracer>,
    /// `outbound` or `inbound`.
    pub direction: &'static str,
    /// The upstream's name (outbound); inbound requests carry their source instead.
    pub upstream: Option<String>,
}

impl Middleware for Traced {
    fn call<S: Inner>(self: Arc<Self>, next: S, mut req: Req) -> ResponseFuture {
        let Some(tracer) = self.tracer.as_ref().filter(|t| t.enabled()).cloned() else {
            return forward(next, req);
        };
        let incoming = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(TraceContext::parse);
        if incoming.is_some_and(|c| !c.sampled()) {
            return forward(next, req);
        }
        let context = TraceContext {
            trace_id: incoming.map_or_else(rand::random, |c| c.trace_id),
            span_id: rand::random(),
            flags: incoming.map_or(1, |c| c.flags),
        };
        if let Ok(v) = HeaderValue::from_str(&context.header()) {
            req.headers_mut().insert("traceparent", v);
        }
        let peer = match &self.upstream {
            Some(u) => ("concord.upstream", u.clone()),
            None => (
                "concord.source",
                req.extensions()
                    .get::<SourceService>()
                    .map(|s| s.0.to_string())
                    .unwrap_or_default(),
            ),
        };
        let mut span = Span {
            context,
            parent: incoming.map(|c| c.span_id),
            name: req.method().to_string(),
            direction: self.direction,
            start: now_nanos(),
            end: 0,
            attributes: vec![
                ("http.request.method", req.method().to_string()),
                ("url.path", req.uri().path().to_string()),
                ("concord.direction", self.direction.to_string()),
                peer,
            ],
            status: 0,
        };
        Box::pin(async move {
            let result = forward(next, req).await;
            span.end = now_nanos();
            span.status = match &result {
                Ok(resp) => resp.status().as_u16(),
                Err(e) => e.clone().into_response().status().as_u16(),
            };
            if let Err(e) = &result {
                span.attributes.push(("error.type", e.kind().to_string()));
            }
            tracer.record(span);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_garbage() {
        let text = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let c = TraceContext::parse(text).unwrap();
        assert_eq!(c.header(), text);
        assert!(c.sampled());
        for bad in [
            "",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            "00-zzf7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        // Current-thread runtime: the exporter cannot drain while this loop runs.
        let tracer = Tracer::start("http://127.0.0.1:1", "web").unwrap();
        let span = Span {
            context: TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
                .unwrap(),
            parent: None,
            name: "GET".to_string(),
            direction: "outbound",
            start: 1,
            end: 2,
            attributes: Vec::new(),
            status: 200,
        };
        for _ in 0..QUEUE + 5 {
            tracer.record(span.clone());
        }
        assert_eq!(tracer.dropped(), 5);
        let otlp = span.to_otlp();
        assert_eq!(otlp["status"]["code"], 0);
        assert!(otlp.get("parentSpanId").is_none());
    }
}
