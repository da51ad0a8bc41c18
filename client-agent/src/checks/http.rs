//! HTTP checks, as Consul's `CheckHTTP`: request the URL every interval; 2xx is passing,
//! 429 (Too Many Requests) warning, any other status or a failed request critical. The output
//! is `HTTP <method> <url>: <status> Output: <body>`, keeping the last 4 KiB of the body.

use std::collections::BTreeMap;
use std::time::Duration;

use concord_api::catalog::CheckStatus;
use concord_api::duration::format_duration;
use reqwest::header::{ACCEPT, USER_AGENT};
use reqwest::StatusCode;

use super::{run_every, Check, Reporter};

/// Consul's check user agent. Kept verbatim: services filter health-check noise out of their
/// access logs by it.
const CHECK_USER_AGENT: &str = "Consul Health Check";

/// An HTTP check: request `url` every `interval`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCheck {
    /// An `http://` URL.
    pub url: String,
    /// Request method (`GET` unless the definition says otherwise).
    pub method: String,
    /// Extra request headers.
    pub headers: BTreeMap<String, Vec<String>>,
    /// Request body (sent only when non-empty).
    pub body: String,
    /// Time between the end of one run and the start of the next.
    pub interval: Duration,
    /// Whole-request timeout, body included.
    pub timeout: Duration,
    /// Report a redirect as the result instead of following it (`DisableRedirects`).
    pub disable_redirects: bool,
}

impl Check for HttpCheck {
    async fn run(self, report: Reporter) {
        // One client per check with pooling off, as Consul disables keep-alives: a kept
        // connection that the service closed would fail the next run for no real reason.
        // No proxy: checks target the service itself (Go skips proxies for loopback too).
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .pool_max_idle_per_host(0)
            .no_proxy()
            // Consul follows up to 10 redirects unless `DisableRedirects` asks for the
            // redirect response itself to be the result.
            .redirect(if self.disable_redirects {
                reqwest::redirect::Policy::none()
            } else {
                reqwest::redirect::Policy::limited(10)
            })
            .build();
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(check = %report.check_id, error = %e, "cannot build HTTP client");
                let output = format!("{}: {}", self.prefix(), error_chain(&e));
                report.report(CheckStatus::Critical, output).await;
                return;
            }
        };
        let this = &self;
        let client = &client;
        run_every(self.interval, &report, || {
            this.probe(client, report.output_max_size)
        })
        .await;
    }
}

impl HttpCheck {
    fn prefix(&self) -> String {
        format!("HTTP {} {}", self.method, self.url)
    }

    async fn probe(&self, client: &reqwest::Client, max_output: usize) -> (CheckStatus, String) {
        let method = match reqwest::Method::from_bytes(self.method.as_bytes()) {
            Ok(m) => m,
            Err(e) => return (CheckStatus::Critical, format!("{}: {e}", self.prefix())),
        };
        let mut request = client.request(method, &self.url);
        for (name, values) in &self.headers {
            for value in values {
                request = request.header(name, value);
            }
        }
        let has = |h: &str| self.headers.keys().any(|k| k.eq_ignore_ascii_case(h));
        if !has(USER_AGENT.as_str()) {
            request = request.header(USER_AGENT, CHECK_USER_AGENT);
        }
        if !has(ACCEPT.as_str()) {
            request = request.header(ACCEPT, "text/plain, text/*, */*");
        }
        if !self.body.is_empty() {
            request = request.body(self.body.clone());
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                let output = format!(
                    "{}: timed out after {}",
                    self.prefix(),
                    format_duration(self.timeout)
                );
                return (CheckStatus::Critical, output);
            }
            Err(e) => {
                return (
                    CheckStatus::Critical,
                    format!("{}: {}", self.prefix(), error_chain(&e)),
                )
            }
        };
        let code = response.status();
        let body = self.read_tail(response, max_output).await;
        let output = format!("{}: {} Output: {body}", self.prefix(), status_line(code));
        (classify(code), output)
    }

    /// Reads the whole body but keeps only its last `max` bytes (Consul reads
    /// into a circular buffer). A body cut short by an error or the timeout still counts:
    /// the status line already decided the result.
    async fn read_tail(&self, mut response: reqwest::Response, max: usize) -> String {
        let mut tail: Vec<u8> = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    tail.extend_from_slice(&chunk);
                    if tail.len() > max {
                        tail.drain(..tail.len() - max);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(url = %self.url, error = %e, "check error while reading body");
                    break;
                }
            }
        }
        String::from_utf8_lossy(&tail).into_owned()
    }
}

/// 2xx passing, 429 warning, anything else critical.
fn classify(code: StatusCode) -> CheckStatus {
    if code.is_success() {
        CheckStatus::Passing
    } else if code == StatusCode::TOO_MANY_REQUESTS {
        CheckStatus::Warning
    } else {
        CheckStatus::Critical
    }
}

/// Go's `resp.Status`: `200 OK`.
fn status_line(code: StatusCode) -> String {
    match code.canonical_reason() {
        Some(reason) => format!("{} {reason}", code.as_u16()),
        None => code.as_u16().to_string(),
    }
}

/// An error and its causes, `outer: inner: root` (reqwest's own message names no cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use concord_api::catalog::CheckStatus;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;
    use crate::checks::{CheckResult, CheckSpec, Checks, HttpCheck, OUTPUT_MAX_SIZE};

    /// A tiny HTTP/1.1 server writing canned responses by path, and handing every raw
    /// request it reads to the test.
    async fn serve() -> (String, mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (seen_tx, seen_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen_tx.clone();
                tokio::spawn(async move {
                    let request = read_request(&mut conn).await;
                    let path = request.split(' ').nth(1).unwrap_or("").to_string();
                    let _ = seen.send(request);
                    let (status, body) = match path.as_str() {
                        "/ok" => ("200 OK", "all good".to_string()),
                        "/created" => ("201 Created", String::new()),
                        "/busy" => ("429 Too Many Requests", "slow down".to_string()),
                        "/down" => ("500 Internal Server Error", "boom".to_string()),
                        "/moved" => ("301 Moved Permanently", String::new()),
                        "/big" => (
                            "200 OK",
                            format!("{}{}", "a".repeat(1000), "b".repeat(4096)),
                        ),
                        "/hang" => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                        _ => ("404 Not Found", String::new()),
                    };
                    let location = if path == "/moved" {
                        "Location: /ok\r\n"
                    } else {
                        ""
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\n{location}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(response.as_bytes()).await;
                });
            }
        });
        (base, seen_rx)
    }

    /// Reads the head and, per Content-Length, the body.
    async fn read_request(conn: &mut tokio::net::TcpStream) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let length = text
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= head_end + 4 + length {
                    return text;
                }
            }
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return String::from_utf8_lossy(&buf).to_string(),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn spec(url: &str) -> CheckSpec {
        timed_spec(url, Duration::from_secs(3600), Duration::from_secs(5))
    }

    fn timed_spec(url: &str, interval: Duration, timeout: Duration) -> CheckSpec {
        CheckSpec::Http(HttpCheck {
            url: url.into(),
            method: "GET".into(),
            headers: Default::default(),
            body: String::new(),
            interval,
            timeout,
            disable_redirects: false,
        })
    }

    async fn first_result(spec: CheckSpec) -> CheckResult {
        first_result_kept(spec, OUTPUT_MAX_SIZE).await
    }

    async fn first_result_kept(spec: CheckSpec, output_max_size: usize) -> CheckResult {
        let (tx, mut rx) = mpsc::channel(16);
        let checks = Checks::new(tx);
        checks.add("web", spec, output_max_size);
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a result within 10s")
            .expect("channel open")
    }

    #[tokio::test]
    async fn status_codes_map_to_health() {
        let (base, _seen) = serve().await;
        let cases = [
            ("/ok", CheckStatus::Passing, "200 OK Output: all good"),
            ("/created", CheckStatus::Passing, "201 Created Output: "),
            (
                "/busy",
                CheckStatus::Warning,
                "429 Too Many Requests Output: slow down",
            ),
            (
                "/down",
                CheckStatus::Critical,
                "500 Internal Server Error Output: boom",
            ),
            ("/missing", CheckStatus::Critical, "404 Not Found Output: "),
        ];
        for (path, status, tail) in cases {
            tracing::info!(path, "one run against the local server");
            let url = format!("{base}{path}");
            let r = first_result(spec(&url)).await;
            assert_eq!(r.check_id, "web");
            assert_eq!(r.status, status, "{path}");
            assert_eq!(r.output, format!("HTTP GET {url}: {tail}"));
        }
    }

    #[tokio::test]
    async fn redirects_are_followed_unless_disabled() {
        let (base, _seen) = serve().await;
        let url = format!("{base}/moved");
        let followed = first_result(spec(&url)).await;
        assert_eq!(followed.status, CheckStatus::Passing, "{}", followed.output);
        let mut strict = spec(&url);
        if let CheckSpec::Http(check) = &mut strict {
            check.disable_redirects = true;
        }
        let r = first_result(strict).await;
        assert_eq!(r.status, CheckStatus::Critical);
        assert!(r.output.contains("301"), "{}", r.output);
    }

    #[tokio::test]
    async fn sends_method_headers_body_and_consul_user_agent() {
        let (base, mut seen) = serve().await;
        let url = format!("{base}/ok");
        let r = first_result(CheckSpec::Http(HttpCheck {
            url: url.clone(),
            method: "POST".into(),
            headers: [(
                "X-Probe".to_string(),
                vec!["1".to_string(), "2".to_string()],
            )]
            .into(),
            body: "ping".into(),
            interval: Duration::from_secs(3600),
            timeout: Duration::from_secs(5),
            disable_redirects: false,
        }))
        .await;
        assert_eq!(
            r.output,
            format!("HTTP POST {url}: 200 OK Output: all good")
        );
        let request = seen.recv().await.unwrap().to_ascii_lowercase();
        assert!(request.starts_with("post /ok http/1.1\r\n"), "{request}");
        assert!(request.contains("\r\nx-probe: 1\r\n"), "{request}");
        assert!(request.contains("\r\nx-probe: 2\r\n"), "{request}");
        assert!(request.contains("\r\nuser-agent: consul health check\r\n"));
        assert!(request.contains("\r\naccept: text/plain, text/*, */*\r\n"));
        assert!(request.ends_with("\r\n\r\nping"), "{request}");
    }

    #[tokio::test]
    async fn keeps_the_last_4k_of_the_body() {
        let (base, _seen) = serve().await;
        let r = first_result(spec(&format!("{base}/big"))).await;
        assert_eq!(r.status, CheckStatus::Passing);
        let body = r.output.split_once(" Output: ").unwrap().1;
        assert_eq!(body, "b".repeat(4096));
        let r = first_result_kept(spec(&format!("{base}/big")), 10).await;
        let body = r.output.split_once(" Output: ").unwrap().1;
        assert_eq!(body, "b".repeat(10), "the check's own limit");
    }

    #[tokio::test]
    async fn refused_connection_is_critical() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let r = first_result(spec(&url)).await;
        assert_eq!(r.status, CheckStatus::Critical);
        assert!(
            r.output.starts_with(&format!("HTTP GET {url}: ")),
            "{}",
            r.output
        );
    }

    #[tokio::test]
    async fn timeout_is_critical() {
        let (base, _seen) = serve().await;
        let url = format!("{base}/hang");
        let r = first_result(timed_spec(
            &url,
            Duration::from_secs(3600),
            Duration::from_millis(200),
        ))
        .await;
        assert_eq!(r.status, CheckStatus::Critical);
        assert_eq!(r.output, format!("HTTP GET {url}: timed out after 200ms"));
    }

    #[tokio::test]
    async fn runs_every_interval() {
        let (base, _seen) = serve().await;
        let (tx, mut rx) = mpsc::channel(16);
        let checks = Checks::new(tx);
        let url = format!("{base}/ok");
        checks.add(
            "web",
            timed_spec(&url, Duration::from_millis(20), Duration::from_secs(5)),
            OUTPUT_MAX_SIZE,
        );
        for _ in 0..3 {
            let r = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(r.status, CheckStatus::Passing);
        }
        tracing::info!("removing stops the runs");
        checks.remove("web");
        while rx.try_recv().is_ok() {}
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn classifies_like_consul() {
        assert_eq!(classify(StatusCode::OK), CheckStatus::Passing);
        assert_eq!(classify(StatusCode::NO_CONTENT), CheckStatus::Passing);
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS),
            CheckStatus::Warning
        );
        assert_eq!(
            classify(StatusCode::MOVED_PERMANENTLY),
            CheckStatus::Critical
        );
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE),
            CheckStatus::Critical
        );
        assert_eq!(status_line(StatusCode::OK), "200 OK");
        assert_eq!(status_line(StatusCode::from_u16(599).unwrap()), "599");
    }
}
