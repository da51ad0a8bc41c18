//! The HTTPS API: `-https-port` with `tls.defaults` and `verify_incoming`, the refusals a
//! client without the right certificate meets, Go's answer to plain HTTP, the CLI over
//! HTTPS (flags and `CONSUL_*` variables), and `-http-port -1` leaving no plain listener.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use concord_integration::{assert_eventually, concord_bin, init_tracing, TestAgent};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{https_client, tls_client, Pki};

/// The `tls` stanza of an HTTPS agent demanding client certificates.
fn https_stanza(pki: &Pki) -> serde_json::Value {
    let (cert, key) = pki.leaf("server");
    json!({"defaults": {
        "ca_file": pki.ca(), "cert_file": cert, "key_file": key,
        "verify_incoming": true, "tls_min_version": "TLSv1_2"
    }})
}

#[tokio::test]
async fn https_api_refuses_what_it_should_and_serves_the_cli() {
    init_tracing();
    let pki = Pki::create();
    let config = pki.config("https.json", https_stanza(&pki));
    let config = config.to_str().expect("utf-8 path");
    let agent = TestAgent::start(&["-dev", "-config-file", config, "-https-port", "0"])
        .await
        .expect("agent");
    let https = agent.https.expect("HTTPS port in the banner");
    let url = format!("https://{https}/v1/agent/self");
    let (cli_cert, cli_key) = pki.leaf("cli");

    tracing::info!("a client with a certificate of the CA is served, over HTTP/1.1 and HTTP/2");
    for h2 in [false, true] {
        let tls = tls_client(
            &pki.ca(),
            Some((&cli_cert, &cli_key)),
            &[b"h2", b"http/1.1"],
        );
        let reply = https_client(tls, h2)
            .get(&url)
            .send()
            .await
            .expect("HTTPS GET");
        assert_eq!(reply.status(), 200);
        let body: serde_json::Value = reply.json().await.expect("JSON");
        assert_eq!(body["Config"]["NodeName"], agent.node.as_str());
    }

    tracing::info!("no client certificate: the handshake is refused");
    let anonymous = https_client(tls_client(&pki.ca(), None, &[b"http/1.1"]), false);
    let error = anonymous.get(&url).send().await.expect_err("refused");
    tracing::info!(error = ?error, "anonymous client");

    tracing::info!("a client certificate of another CA: refused");
    let other = Pki::create();
    let (foreign_cert, foreign_key) = other.leaf("client");
    let foreign = tls_client(
        &pki.ca(),
        Some((&foreign_cert, &foreign_key)),
        &[b"http/1.1"],
    );
    assert!(https_client(foreign, false).get(&url).send().await.is_err());

    tracing::info!("a client that does not trust the agent's CA refuses the agent");
    let distrustful = tls_client(&other.ca(), Some((&cli_cert, &cli_key)), &[b"http/1.1"]);
    assert!(https_client(distrustful, false)
        .get(&url)
        .send()
        .await
        .is_err());

    tracing::info!("plain HTTP on the HTTPS port gets Go's answer");
    let mut stream = tokio::net::TcpStream::connect(https)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /v1/agent/self HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.expect("read");
    assert_eq!(
        reply,
        "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
    );
    tracing::info!("plain HTTP still works on the HTTP port alongside");
    let (status, _, _) = agent.get_json("/v1/agent/self").await.expect("HTTP");
    assert_eq!(status, 200);

    tracing::info!("concord members with -ca-file, -client-cert and -client-key");
    let addr = format!("https://{https}");
    let ca = pki.ca();
    let flags = [
        "-http-addr",
        addr.as_str(),
        "-ca-file",
        ca.to_str().expect("utf-8"),
        "-client-cert",
        cli_cert.to_str().expect("utf-8"),
        "-client-key",
        cli_key.to_str().expect("utf-8"),
    ];
    let out = cli(&[&["members"], &flags[..]].concat(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&agent.node));
    let named = [
        &["members"],
        &flags[..],
        &["-tls-server-name", "server.dc1.consul"],
    ]
    .concat();
    assert!(cli(&named, &[]).status.success());
    let misnamed = [
        &["members"],
        &flags[..],
        &["-tls-server-name", "client.dc1.consul"],
    ]
    .concat();
    assert!(!cli(&misnamed, &[]).status.success());

    tracing::info!("kv put and get with CONSUL_HTTP_SSL, CONSUL_CACERT, CONSUL_CLIENT_*");
    let https_text = https.to_string();
    let env = [
        ("CONSUL_HTTP_ADDR", https_text.as_str()),
        ("CONSUL_HTTP_SSL", "true"),
        ("CONSUL_CACERT", ca.to_str().expect("utf-8")),
        ("CONSUL_CLIENT_CERT", cli_cert.to_str().expect("utf-8")),
        ("CONSUL_CLIENT_KEY", cli_key.to_str().expect("utf-8")),
    ];
    let out = cli(&["kv", "put", "tls/key", "over-https"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Success! Data written to: tls/key"
    );
    let out = cli(&["kv", "get", "tls/key"], &env);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "over-https");

    tracing::info!("the CLI without a client certificate is refused");
    let out = cli(&["kv", "get", "tls/key"], &env[..3]);
    assert!(!out.status.success());
    tracing::info!("CONSUL_HTTP_SSL_VERIFY=false trusts any server certificate");
    let (other_ca_env, verify_off) = (other.ca(), ("CONSUL_HTTP_SSL_VERIFY", "false"));
    let mut skip = env.to_vec();
    skip[2] = ("CONSUL_CACERT", other_ca_env.to_str().expect("utf-8"));
    assert!(!cli(&["kv", "get", "tls/key"], &skip).status.success());
    skip.push(verify_off);
    assert!(cli(&["kv", "get", "tls/key"], &skip).status.success());

    tracing::info!("concord connect proxy follows the agent over HTTPS (same flags)");
    let upstream = concord_integration::sidecar::free_port().expect("port");
    let upstream_flag = format!("db:{upstream}");
    let mut proxy = Command::new(concord_bin());
    proxy
        .args([
            "connect",
            "proxy",
            "-service",
            "web",
            "-upstream",
            &upstream_flag,
        ])
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for name in ["CONCORD_HTTP_ADDR", "CONSUL_HTTP_ADDR", "CONSUL_HTTP_SSL"] {
        proxy.env_remove(name);
    }
    let mut proxy = proxy.spawn().expect("spawning the proxy");
    let _proxy_guard = KillOnDrop(proxy.id());
    // The upstream listener is bound only once the proxy has its leaf certificate and
    // roots, read from the agent over HTTPS.
    let listening = SocketAddr::from(([127, 0, 0, 1], upstream));
    assert_eventually!(
        tokio::net::TcpStream::connect(listening).await.is_ok(),
        "the proxy's upstream listener is bound"
    );
    let _ = proxy.kill();
    let _ = proxy.wait();
}

/// Runs `concord ARGS` with exactly these `CONSUL_*` variables.
fn cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(concord_bin());
    cmd.args(args).stdin(Stdio::null());
    for name in [
        "CONCORD_HTTP_ADDR",
        "CONSUL_HTTP_ADDR",
        "CONSUL_HTTP_SSL",
        "CONSUL_CACERT",
        "CONSUL_CAPATH",
        "CONSUL_CLIENT_CERT",
        "CONSUL_CLIENT_KEY",
        "CONSUL_TLS_SERVER_NAME",
        "CONSUL_HTTP_SSL_VERIFY",
    ] {
        cmd.env_remove(name);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("running concord")
}

#[tokio::test]
async fn http_port_minus_one_leaves_only_https() {
    init_tracing();
    let pki = Pki::create();
    let config = pki.config("https.json", https_stanza(&pki));
    tracing::info!("an agent with -http-port -1 and -https-port 0");
    let mut child = Command::new(concord_bin())
        .arg("agent")
        .args(["-dev", "-node", "https-only", "-config-file"])
        .arg(&config)
        .args(["-http-port", "-1", "-https-port", "0", "-dns-port", "-1"])
        .args(["-server-port", "0", "-serf-lan-port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning the agent");
    let _guard = KillOnDrop(child.id());
    // Drained for the agent's whole life: a pipe closed after the `Client Addr:` line would
    // fail the banner's last `println!`s and stop the agent.
    let lines = concord_integration::drain_lines(child.stdout.take().expect("stdout"));
    let banner =
        tokio::task::spawn_blocking(move || lines.iter().find(|l| l.contains("Client Addr:")))
            .await
            .expect("banner reader")
            .expect("banner");
    assert!(banner.contains("(HTTP: -1, HTTPS: "), "{banner}");
    let port: u16 = banner
        .split("HTTPS: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|p| p.parse().ok())
        .expect("HTTPS port");
    let (cli_cert, cli_key) = pki.leaf("cli");
    let client = https_client(
        tls_client(&pki.ca(), Some((&cli_cert, &cli_key)), &[b"http/1.1"]),
        false,
    );
    let url = format!("https://127.0.0.1:{port}/v1/agent/self");
    assert_eventually!(
        matches!(client.get(&url).send().await, Ok(r) if r.status() == 200),
        "the HTTPS API answers"
    );
    tracing::info!("the process listens on HTTPS, server RPC and gossip only");
    let listening = listening_ports(child.id());
    let rpc_and_gossip: BTreeSet<u16> = listening.iter().copied().filter(|p| *p != port).collect();
    assert!(listening.contains(&port), "{listening:?}");
    assert_eq!(
        rpc_and_gossip.len(),
        2,
        "HTTPS + RPC + gossip only: {listening:?}"
    );
    for other in rpc_and_gossip {
        let addr = SocketAddr::from(([127, 0, 0, 1], other));
        let plain = concord_integration::http_client()
            .expect("client")
            .get(format!("http://{addr}/v1/agent/self"))
            .send()
            .await;
        assert!(
            !matches!(plain, Ok(ref r) if r.status() == 200),
            "port {other} serves the plain API"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// TCP ports the process `pid` listens on: its socket inodes matched against
/// `/proc/net/tcp{,6}` entries in state LISTEN (`0A`).
fn listening_ports(pid: u32) -> BTreeSet<u16> {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .map(str::to_string)
        })
        .collect();
    let mut ports = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && fields[3] == "0A" && inodes.contains(fields[9]) {
                let port = fields[1].rsplit(':').next().unwrap_or("0");
                ports.insert(u16::from_str_radix(port, 16).expect("hex port"));
            }
        }
    }
    ports
}

/// Kills a spawned process by id when the test ends, passing or not.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.0.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}
