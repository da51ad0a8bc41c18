//! The HTTP client to the agent: finds the agent (flag, then environment, then the default
//! address), sends the token and datacenter, and reports errors as the `consul` CLI does.

use std::fmt;

use serde::de::DeserializeOwned;

use crate::flags::Parsed;

/// The agent's address when neither a flag nor the environment names one.
const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8500";

/// A failed API call, printed as the `consul` CLI prints it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClientError {
    /// The agent answered with an error status.
    Status {
        /// HTTP status code.
        code: u16,
        /// The plain-text body (Consul's error message).
        body: String,
    },
    /// No answer: connection refused, reset, ...
    Transport(String),
    /// An answer that is not what the endpoint returns.
    Decode(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Status { code, body } => {
                write!(f, "Unexpected response code: {code} ({body})")
            }
            ClientError::Transport(msg) => f.write_str(msg),
            ClientError::Decode(msg) => write!(f, "Error decoding response: {msg}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Talks to one agent's HTTP API.
#[derive(Debug)]
pub(crate) struct HttpClient {
    /// `http://host:port`, no trailing slash.
    base: String,
    token: Option<String>,
    datacenter: Option<String>,
    http: reqwest::Client,
}

impl HttpClient {
    /// A client configured from the HTTP flags and the process environment.
    pub(crate) fn from_flags(flags: &Parsed) -> anyhow::Result<HttpClient> {
        let env = |name: &str| std::env::var(name).ok();
        let base = agent_base_url(flags.value("http-addr"), &env)?;
        let token = token_from_flags(flags);
        let datacenter = flags
            .value("datacenter")
            .filter(|d| !d.is_empty())
            .map(str::to_string);
        // The CLI talks to a local agent: never through an HTTP proxy from the environment.
        let mut builder = reqwest::Client::builder().no_proxy();
        if base.starts_with("https://") {
            let tls = tls_from_flags(flags, &env)?;
            builder = builder.use_preconfigured_tls(rustls::ClientConfig::clone(&tls));
        }
        let http = builder.build()?;
        Ok(HttpClient {
            base,
            token,
            datacenter,
            http,
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url).query(query);
        if let Some(dc) = &self.datacenter {
            request = request.query(&[("dc", dc)]);
        }
        if let Some(token) = &self.token {
            request = request.header("X-Consul-Token", token);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        request
            .send()
            .await
            .map_err(|e| ClientError::Transport(transport_error(&method, &url, &e)))
    }

    /// Reads a response body, turning non-2xx statuses into [`ClientError::Status`].
    async fn ok_body(response: reqwest::Response) -> Result<Vec<u8>, ClientError> {
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(error_chain(&e)))?;
        if status.is_success() {
            Ok(body.to_vec())
        } else {
            Err(ClientError::Status {
                code: status.as_u16(),
                body: String::from_utf8_lossy(&body).trim_end().to_string(),
            })
        }
    }

    /// `GET`, decoding JSON; `None` on 404 (a missing key, node, ...).
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<T>, ClientError> {
        let response = self.send(reqwest::Method::GET, path, query, None).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = Self::ok_body(response).await?;
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `PUT` with a raw body; returns the response body.
    pub(crate) async fn put(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Vec<u8>, ClientError> {
        self.with_body(reqwest::Method::PUT, path, query, body)
            .await
    }

    /// `POST` with a raw body; returns the response body.
    pub(crate) async fn post(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Vec<u8>, ClientError> {
        self.with_body(reqwest::Method::POST, path, query, body)
            .await
    }

    async fn with_body(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Vec<u8>, ClientError> {
        let response = self.send(method, path, query, Some(body)).await?;
        Self::ok_body(response).await
    }

    /// Any method with an optional body; returns the response body.
    pub(crate) async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ClientError> {
        let response = self.send(method, path, query, body).await?;
        Self::ok_body(response).await
    }

    /// `GET` for a blocking query: the body (`None` on 404) and `X-Consul-Index` (0 when the
    /// answer has none).
    pub(crate) async fn get_indexed(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(Option<Vec<u8>>, u64), ClientError> {
        let response = self.send(reqwest::Method::GET, path, query, None).await?;
        let index = response
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok((None, index));
        }
        Ok((Some(Self::ok_body(response).await?), index))
    }

    /// `GET` whose body streams (`/v1/agent/monitor`): the response once its status is known
    /// to be a success.
    pub(crate) async fn get_stream(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<reqwest::Response, ClientError> {
        let response = self.send(reqwest::Method::GET, path, query, None).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        // A failed status always makes `ok_body` an error, which is what is returned.
        match Self::ok_body(response).await {
            Err(e) => Err(e),
            Ok(body) => Err(ClientError::Decode(
                String::from_utf8_lossy(&body).into_owned(),
            )),
        }
    }

    /// `DELETE`; returns the response body.
    pub(crate) async fn delete(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<u8>, ClientError> {
        let response = self
            .send(reqwest::Method::DELETE, path, query, None)
            .await?;
        Self::ok_body(response).await
    }
}

/// The ACL token: the `-token` flag, else `CONCORD_HTTP_TOKEN`, else `CONSUL_HTTP_TOKEN`;
/// empty values count as unset.
pub(crate) fn token_from_flags(flags: &Parsed) -> Option<String> {
    let env = |name: &str| std::env::var(name).ok();
    first_non_empty([
        flags.value("token").map(str::to_string),
        env("CONCORD_HTTP_TOKEN"),
        env("CONSUL_HTTP_TOKEN"),
    ])
}

/// The agent's base URL: the `-http-addr` flag, else `CONCORD_HTTP_ADDR`, else
/// `CONSUL_HTTP_ADDR`, else `127.0.0.1:8500`; empty values count as unset. Accepts
/// `host:port`, `http://host:port` and `https://host:port`; a bare `host:port` is HTTPS
/// when `CONSUL_HTTP_SSL` is true, as Consul's API client decides.
pub(crate) fn agent_base_url(
    flag: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    let raw = first_non_empty([
        flag.map(str::to_string),
        env("CONCORD_HTTP_ADDR"),
        env("CONSUL_HTTP_ADDR"),
    ])
    .unwrap_or_else(|| DEFAULT_HTTP_ADDR.to_string());
    let ssl = env_bool(env, "CONSUL_HTTP_SSL")?.unwrap_or(false);
    let (scheme, rest) = match raw.trim().split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None if ssl => ("https".to_string(), raw.trim()),
        None => ("http".to_string(), raw.trim()),
    };
    let rest = rest.trim_end_matches('/');
    match scheme.as_str() {
        "http" | "https" if rest.is_empty() => {
            anyhow::bail!("invalid agent address {raw:?}: no host")
        }
        "http" | "https" => Ok(format!("{scheme}://{rest}")),
        _ => {
            anyhow::bail!("invalid agent address {raw:?}: only http:// and https:// are supported")
        }
    }
}

/// A boolean environment variable as Go's `strconv.ParseBool` reads it; unset or empty is
/// `None`.
fn env_bool(env: &dyn Fn(&str) -> Option<String>, name: &str) -> anyhow::Result<Option<bool>> {
    match env(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => concord_api::decode::parse_go_bool(&v)
            .map(Some)
            .ok_or_else(|| anyhow::anyhow!("{name}={v:?} is not a boolean")),
    }
}

/// The TLS of an `https://` agent address, from the flags, else Consul's environment
/// variables: `-ca-file`/`CONSUL_CACERT`, `-ca-path`/`CONSUL_CAPATH`,
/// `-client-cert`/`CONSUL_CLIENT_CERT`, `-client-key`/`CONSUL_CLIENT_KEY`,
/// `-tls-server-name`/`CONSUL_TLS_SERVER_NAME`, and `CONSUL_HTTP_SSL_VERIFY=false` to
/// check nothing.
pub(crate) fn tls_from_flags(
    flags: &Parsed,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<std::sync::Arc<rustls::ClientConfig>> {
    use concord_net::tls::{ServerCheck, TlsSettings};
    let pick =
        |flag: &str, var: &str| first_non_empty([flags.value(flag).map(str::to_string), env(var)]);
    let path = |flag: &str, var: &str| pick(flag, var).map(std::path::PathBuf::from);
    let settings = TlsSettings {
        ca_file: path("ca-file", "CONSUL_CACERT"),
        ca_path: path("ca-path", "CONSUL_CAPATH"),
        cert_file: path("client-cert", "CONSUL_CLIENT_CERT"),
        key_file: path("client-key", "CONSUL_CLIENT_KEY"),
        ..TlsSettings::default()
    };
    let check = if env_bool(env, "CONSUL_HTTP_SSL_VERIFY")? == Some(false) {
        ServerCheck::Nothing
    } else {
        match pick("tls-server-name", "CONSUL_TLS_SERVER_NAME") {
            Some(name) => ServerCheck::Name(name),
            None => ServerCheck::Host,
        }
    };
    settings
        .client_config(check, &[b"http/1.1"])
        .map_err(|e| anyhow::anyhow!("HTTPS to the agent: {e}"))
}

fn first_non_empty<const N: usize>(candidates: [Option<String>; N]) -> Option<String> {
    candidates.into_iter().flatten().find(|s| !s.is_empty())
}

/// Go's `url.Error` shape: `Put "http://...": <cause>`.
fn transport_error(method: &reqwest::Method, url: &str, e: &reqwest::Error) -> String {
    let verb = method.as_str();
    let verb = format!("{}{}", &verb[..1], verb[1..].to_ascii_lowercase());
    // reqwest's own top-level message repeats the URL; its causes say what happened.
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let detail = if causes.is_empty() {
        e.to_string()
    } else {
        causes.join(": ")
    };
    format!("{verb} {url:?}: {detail}")
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Percent-encodes a path part (a KV key, a service name), keeping `/`: keys are paths.
pub(crate) fn escape_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses the bare `true`/`false` that KV writes answer with.
pub(crate) fn parse_bool_body(body: &[u8]) -> Result<bool, ClientError> {
    match String::from_utf8_lossy(body).trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(ClientError::Decode(format!(
            "expected true or false, got {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_address_priority_and_forms() {
        let env_with = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let both = env_with(&[
            ("CONCORD_HTTP_ADDR", "10.0.0.2:8500"),
            ("CONSUL_HTTP_ADDR", "10.0.0.3:8500"),
        ]);
        let consul_only = env_with(&[
            ("CONCORD_HTTP_ADDR", ""),
            ("CONSUL_HTTP_ADDR", "http://h:1/"),
        ]);
        let none = env_with(&[]);
        let url = |flag, env: &dyn Fn(&str) -> Option<String>| agent_base_url(flag, env).unwrap();
        assert_eq!(url(Some("10.0.0.1:1"), &both), "http://10.0.0.1:1");
        assert_eq!(url(Some(""), &both), "http://10.0.0.2:8500");
        assert_eq!(url(None, &both), "http://10.0.0.2:8500");
        assert_eq!(url(None, &consul_only), "http://h:1");
        assert_eq!(url(None, &none), "http://127.0.0.1:8500");
        assert_eq!(url(Some("http://[::1]:8500"), &none), "http://[::1]:8500");
        let err = |flag| agent_base_url(Some(flag), &none).unwrap_err().to_string();
        assert_eq!(url(Some("https://h:8501/"), &none), "https://h:8501");
        let ssl = env_with(&[("CONSUL_HTTP_SSL", "true")]);
        assert_eq!(url(Some("h:8501"), &ssl), "https://h:8501");
        assert_eq!(url(Some("http://h:8500"), &ssl), "http://h:8500");
        let bad = env_with(&[("CONSUL_HTTP_SSL", "yes please")]);
        assert!(agent_base_url(None, &bad).is_err());
        assert!(err("unix:///tmp/sock").contains("only http:// and https:// are supported"));
        assert!(err("http://").contains("no host"));
        assert_eq!(url(Some("HTTP://h:1//"), &none), "http://h:1");
    }

    #[test]
    fn errors_print_like_consul() {
        let e = ClientError::Status {
            code: 400,
            body: "Missing service name".into(),
        };
        assert_eq!(
            e.to_string(),
            "Unexpected response code: 400 (Missing service name)"
        );
        let e = ClientError::Status {
            code: 500,
            body: String::new(),
        };
        assert_eq!(e.to_string(), "Unexpected response code: 500 ()");
    }

    #[test]
    fn escapes_path_parts_but_not_slashes() {
        assert_eq!(escape_path("app/config"), "app/config");
        assert_eq!(escape_path("a b?c#d%"), "a%20b%3Fc%23d%25");
        assert_eq!(escape_path("é"), "%C3%A9");
    }

    #[test]
    fn kv_write_answers() {
        assert_eq!(parse_bool_body(b"true"), Ok(true));
        assert_eq!(parse_bool_body(b"false\n"), Ok(false));
        assert!(parse_bool_body(b"{}").is_err());
    }
}
