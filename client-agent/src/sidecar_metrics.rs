//! The local sidecars' metrics in `/v1/agent/metrics`. A sidecar registered here with
//! `Proxy.Config.envoy_prometheus_bind_addr` (Consul's key; `concord connect proxy` serves its
//! metrics there when `-metrics-addr` is not given) is scraped at request time, so the agent
//! keeps no copy that could go stale:
//! - `?format=prometheus`: the sidecars' families appended to the agent's, every sample
//!   labelled `proxy_id` (families merged, so each is declared once);
//! - JSON: each sidecar's HTTP request counters as Consul-shaped `Counters` with `source`
//!   (the sidecar's service) and `destination` (the upstream) labels, and a `Rate` per
//!   second since the previous scrape of the same series (the web UI's topology reads them).
//!
//! A sidecar that does not answer within [`SCRAPE_TIMEOUT`] is left out (the agent's own
//! metrics never wait on a dead proxy longer than that). Each sidecar's answer (or its
//! failure) is kept for [`CACHE_TTL`], and concurrent reads of one sidecar share one
//! scrape, so a dashboard polling `/v1/agent/metrics` does not fan out to every sidecar on
//! every request.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concord_api::catalog::NodeService;
use serde_json::{json, Value};
use tokio::time::Instant;

/// How long one sidecar's scrape may take.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long one sidecar's answer is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(1);

/// The sidecar family the JSON form turns into request counters.
const REQUESTS: &str = "concord_proxy_http_requests_total";

/// One local sidecar whose metrics the agent can read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// The proxy's service ID.
    pub proxy_id: String,
    /// The service it fronts.
    pub service: String,
    /// Where it serves `/metrics` (an unspecified bind address is read on loopback).
    pub addr: SocketAddr,
}

/// One sidecar's answer.
#[derive(Clone, Debug)]
pub struct Scraped {
    /// Which sidecar.
    pub target: Target,
    /// Its Prometheus/OpenMetrics text.
    pub text: String,
    /// When it was read (a cached answer keeps its time, so rates are not skewed).
    pub at: Instant,
}

/// One sidecar's last scrape: when, and its text (`None`: it failed).
type Cached = Option<(Instant, Option<String>)>;

/// The local sidecars that publish a metrics address.
pub fn targets(services: &[NodeService]) -> Vec<Target> {
    services
        .iter()
        .filter(|s| s.kind == "connect-proxy")
        .filter_map(|s| {
            let proxy = s.proxy.as_ref()?;
            let text = proxy["Config"]["envoy_prometheus_bind_addr"].as_str()?;
            let mut addr: SocketAddr = text.parse().ok()?;
            if addr.ip().is_unspecified() {
                addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
            }
            Some(Target {
                proxy_id: s.id.clone(),
                service: proxy["DestinationServiceName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                addr,
            })
        })
        .collect()
}

/// Scrapes the sidecars and remembers counter values for the next [`Scraper::json`] rate.
#[derive(Debug)]
pub struct Scraper {
    http: Option<reqwest::Client>,
    /// How long an answer is reused.
    ttl: Duration,
    /// Per target: its last scrape. The async lock makes concurrent reads of one sidecar
    /// wait for one scrape instead of each sending its own.
    cache: Mutex<HashMap<Target, Arc<tokio::sync::Mutex<Cached>>>>,
    /// Per `proxy_id` + series: the scrape time, value and rate last computed.
    last: Mutex<HashMap<String, (Instant, f64, f64)>>,
}

impl Default for Scraper {
    fn default() -> Self {
        Scraper::with_ttl(CACHE_TTL)
    }
}

impl Scraper {
    /// A scraper that reuses each sidecar's answer for `ttl`.
    pub fn with_ttl(ttl: Duration) -> Scraper {
        Scraper {
            // Local sidecars: never through an HTTP proxy from the environment.
            http: reqwest::Client::builder().no_proxy().build().ok(),
            ttl,
            cache: Mutex::default(),
            last: Mutex::default(),
        }
    }

    /// Reads every target's `/metrics` concurrently (or its answer of the last
    /// [`CACHE_TTL`]); failures are left out.
    pub async fn scrape(&self, targets: Vec<Target>) -> Vec<Scraped> {
        let Some(http) = &self.http else {
            return Vec::new();
        };
        let slots: Vec<_> = {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            // Sidecars no longer registered are forgotten.
            cache.retain(|t, _| targets.contains(t));
            targets
                .into_iter()
                .map(|t| {
                    let slot = cache.entry(t.clone()).or_default().clone();
                    (t, slot)
                })
                .collect()
        };
        let reads = slots.into_iter().map(|(target, slot)| async move {
            let mut slot = slot.lock().await;
            let (at, text) = match &*slot {
                Some((at, text)) if at.elapsed() < self.ttl => (*at, text.clone()),
                _ => {
                    let text = read(http, &target).await;
                    let at = Instant::now();
                    *slot = Some((at, text.clone()));
                    (at, text)
                }
            };
            text.map(|text| Scraped { target, text, at })
        });
        futures::future::join_all(reads)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The JSON `Counters` for the sidecars' requests: one per proxy, direction, peer and
    /// response class, `Count` the total so far and `Rate` per second since the last scrape
    /// (0 the first time a series is seen).
    pub fn json(&self, scraped: &[Scraped]) -> Vec<Value> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut counters = Vec::new();
        for s in scraped {
            for (name, labels, value) in samples(&s.text) {
                if name != REQUESTS {
                    continue;
                }
                let peer = labels.get("service").cloned().unwrap_or_default();
                let inbound = labels.get("direction").is_some_and(|d| d == "inbound");
                let (source, destination) = if inbound {
                    (peer, s.target.service.clone())
                } else {
                    (s.target.service.clone(), peer)
                };
                let key = format!("{}\u{0}{labels:?}", s.target.proxy_id);
                let now = s.at;
                let rate = match last.get(&key) {
                    // The same scrape again (a cached answer): its rate stands.
                    Some((then, _, rate)) if *then == now => *rate,
                    Some((then, before, _)) if now > *then && value >= *before => {
                        (value - before) / (now - *then).as_secs_f64()
                    }
                    _ => 0.0,
                };
                last.insert(key, (now, value, rate));
                let mut l = labels.clone();
                l.insert("proxy_id".to_string(), s.target.proxy_id.clone());
                l.insert("source".to_string(), source);
                l.insert("destination".to_string(), destination);
                counters.push(json!({
                    "Name": "concord.proxy.http.requests",
                    "Count": value, "Rate": rate, "Sum": value,
                    "Min": 1, "Max": 1, "Mean": 1, "Stddev": 0,
                    "Labels": l,
                }));
            }
        }
        counters
    }
}

/// One sidecar's `/metrics` text, `None` when it fails or takes over [`SCRAPE_TIMEOUT`].
async fn read(http: &reqwest::Client, target: &Target) -> Option<String> {
    let url = format!("http://{}/metrics", target.addr);
    let read = async {
        http.get(&url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await
    };
    match tokio::time::timeout(SCRAPE_TIMEOUT, read).await {
        Ok(Ok(text)) => Some(text),
        Ok(Err(e)) => {
            tracing::debug!(proxy_id = %target.proxy_id, error = %e, "sidecar metrics unreadable");
            None
        }
        Err(_) => {
            tracing::debug!(proxy_id = %target.proxy_id, "sidecar metrics: timed out");
            None
        }
    }
}

/// The agent's exposition with the sidecars' families appended, each sample labelled with
/// its `proxy_id`; one `# EOF` at the end.
pub fn merge_prometheus(agent: &str, scraped: &[Scraped]) -> String {
    let mut out: String = agent
        .lines()
        .filter(|l| *l != "# EOF")
        .flat_map(|l| [l, "\n"])
        .collect();
    // Family name -> (metadata lines, samples), in first-seen order.
    let mut order: Vec<String> = Vec::new();
    let mut families: HashMap<String, (Vec<String>, Vec<String>)> = HashMap::new();
    for s in scraped {
        let mut current = String::new();
        for line in s.text.lines() {
            if line == "# EOF" || line.is_empty() {
                continue;
            }
            if let Some(meta) = line.strip_prefix("# ") {
                let mut words = meta.split_whitespace();
                let (_kind, name) = (words.next(), words.next().unwrap_or_default());
                current = name.to_string();
                let entry = families.entry(current.clone()).or_insert_with(|| {
                    order.push(current.clone());
                    (Vec::new(), Vec::new())
                });
                if !entry.0.iter().any(|m| m == line) {
                    entry.0.push(line.to_string());
                }
                continue;
            }
            let labelled = with_label(line, "proxy_id", &s.target.proxy_id);
            families
                .entry(current.clone())
                .or_insert_with(|| {
                    order.push(current.clone());
                    (Vec::new(), Vec::new())
                })
                .1
                .push(labelled);
        }
    }
    for name in order {
        if let Some((meta, samples)) = families.remove(&name) {
            for line in meta.iter().chain(&samples) {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// A sample line with one more label first in its set.
fn with_label(line: &str, key: &str, value: &str) -> String {
    let value = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let (name, rest) = line.split_at(name_end);
    match rest.strip_prefix('{') {
        Some(inner) if inner.starts_with('}') => format!("{name}{{{key}=\"{value}\"{inner}"),
        Some(inner) => format!("{name}{{{key}=\"{value}\",{inner}"),
        None => format!("{name}{{{key}=\"{value}\"}}{rest}"),
    }
}

/// The samples of an exposition: name, labels, value (lines that do not parse are skipped).
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(parse_sample)
        .collect()
}

fn parse_sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            inner = inner.trim_start_matches(',');
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = inner.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break i,
                    c => value.push(c),
                }
            };
            labels.insert(key.to_string(), value);
            inner = &after[end + 1..];
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name.to_string(), labels, value))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const SIDECAR: &str = "# HELP concord_proxy_http_requests HTTP requests.\n\
        # TYPE concord_proxy_http_requests counter\n\
        concord_proxy_http_requests_total{direction=\"outbound\",service=\"db\",class=\"2xx\"} 4\n\
        concord_proxy_http_requests_total{direction=\"inbound\",service=\"a \\\"q\\\"\",class=\"5xx\"} 1\n\
        # HELP concord_proxy_up Up.\n\
        # TYPE concord_proxy_up gauge\n\
        concord_proxy_up 1\n\
        # EOF\n";

    fn scraped(proxy_id: &str, service: &str, text: &str) -> Scraped {
        Scraped {
            target: Target {
                proxy_id: proxy_id.to_string(),
                service: service.to_string(),
                addr: "127.0.0.1:1".parse().unwrap(),
            },
            text: text.to_string(),
            at: Instant::now(),
        }
    }

    /// A sidecar `/metrics` on loopback that counts the scrapes it answers.
    async fn counting_sidecar() -> (Target, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                        if got.windows(4).any(|w| w == b"\r\n\r\n") {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let body = SIDECAR;
                            let reply = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if conn.write_all(reply.as_bytes()).await.is_err() {
                                return;
                            }
                            got.clear();
                        }
                    }
                });
            }
        });
        let target = Target {
            proxy_id: "web-sidecar-proxy".to_string(),
            service: "web".to_string(),
            addr,
        };
        (target, hits)
    }

    #[tokio::test]
    async fn answers_are_reused_for_the_ttl() {
        use std::sync::atomic::Ordering;
        let (target, hits) = counting_sidecar().await;
        let cached = Scraper::with_ttl(Duration::from_secs(3600));
        let first = cached.scrape(vec![target.clone()]).await;
        let (a, b) = tokio::join!(
            cached.scrape(vec![target.clone()]),
            cached.scrape(vec![target.clone()])
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1, "one scrape for three reads");
        assert_eq!((first.len(), a.len(), b.len()), (1, 1, 1));
        assert_eq!(a[0].at, first[0].at);
        // The same scrape seen again keeps its rate rather than reading as 0/s.
        let rates = |s: &[Scraped]| -> Vec<Value> {
            cached.json(s).iter().map(|c| c["Rate"].clone()).collect()
        };
        assert_eq!(rates(&first), rates(&a));

        let fresh = Scraper::with_ttl(Duration::ZERO);
        fresh.scrape(vec![target.clone()]).await;
        fresh.scrape(vec![target]).await;
        assert_eq!(hits.load(Ordering::SeqCst), 3, "no reuse with a zero TTL");
    }

    #[tokio::test]
    async fn a_failed_scrape_is_cached_and_left_out() {
        let dead = Target {
            proxy_id: "gone".to_string(),
            service: "web".to_string(),
            // Nothing listens on port 1 of loopback.
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        let scraper = Scraper::with_ttl(Duration::from_secs(3600));
        assert!(scraper.scrape(vec![dead.clone()]).await.is_empty());
        let cache = scraper.cache.lock().unwrap().get(&dead).cloned().unwrap();
        assert!(matches!(&*cache.lock().await, Some((_, None))));
        // Unregistered sidecars leave the cache.
        scraper.scrape(Vec::new()).await;
        assert!(scraper.cache.lock().unwrap().is_empty());
    }

    #[test]
    fn merges_families_once_with_a_proxy_label() {
        let agent = "# HELP concord_agent_services S.\n# TYPE concord_agent_services gauge\nconcord_agent_services 2\n# EOF\n";
        let text = merge_prometheus(
            agent,
            &[
                scraped("web-sidecar-proxy", "web", SIDECAR),
                scraped("api-sidecar-proxy", "api", SIDECAR),
            ],
        );
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(
            text.matches("# TYPE concord_proxy_http_requests counter")
                .count(),
            1
        );
        assert!(text.contains("concord_agent_services 2\n"));
        assert!(text.contains(
            "concord_proxy_http_requests_total{proxy_id=\"api-sidecar-proxy\",direction=\"outbound\",service=\"db\",class=\"2xx\"} 4\n"
        ));
        assert!(text.contains("concord_proxy_up{proxy_id=\"web-sidecar-proxy\"} 1\n"));
        // The sidecars' samples stay inside their family, after its metadata.
        let ty = text.find("# TYPE concord_proxy_up").unwrap();
        let web = text.find("concord_proxy_up{proxy_id=\"web").unwrap();
        let api = text.find("concord_proxy_up{proxy_id=\"api").unwrap();
        assert!(ty < web && web < api);
    }

    #[test]
    fn parses_escaped_labels_and_skips_garbage() {
        let s = samples(SIDECAR);
        assert_eq!(s.len(), 3);
        assert_eq!(s[1].1["service"], "a \"q\"");
        assert_eq!(s[1].2, 1.0);
        assert!(samples("x{a=\"unterminated} 1\nx{a=\"b\"} nope\n").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn json_counters_name_both_ends_and_rate_since_the_last_scrape() {
        let scraper = Scraper::default();
        let first = scraper.json(&[scraped("web-sidecar-proxy", "web", SIDECAR)]);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0]["Labels"]["source"], "web");
        assert_eq!(first[0]["Labels"]["destination"], "db");
        assert_eq!(first[0]["Rate"], 0.0);
        assert_eq!(first[1]["Labels"]["source"], "a \"q\"");
        assert_eq!(first[1]["Labels"]["destination"], "web");
        tokio::time::advance(Duration::from_secs(2)).await;
        let later = SIDECAR.replace("class=\"2xx\"} 4", "class=\"2xx\"} 10");
        let second = scraper.json(&[scraped("web-sidecar-proxy", "web", &later)]);
        assert_eq!(second[0]["Count"], 10.0);
        assert_eq!(second[0]["Rate"], 3.0);
    }

    #[test]
    fn targets_are_sidecars_with_a_metrics_address() {
        let proxy = |id: &str, config: Value| NodeService {
            id: id.to_string(),
            kind: "connect-proxy".to_string(),
            proxy: Some(json!({"DestinationServiceName": "web", "Config": config})),
            ..NodeService::default()
        };
        let found = targets(&[
            proxy("a", json!({"envoy_prometheus_bind_addr": "0.0.0.0:9102"})),
            proxy("b", json!({})),
            proxy("c", json!({"envoy_prometheus_bind_addr": "nonsense"})),
            NodeService::default(),
        ]);
        assert_eq!(
            found,
            vec![Target {
                proxy_id: "a".to_string(),
                service: "web".to_string(),
                addr: "127.0.0.1:9102".parse().unwrap(),
            }]
        );
    }
}
