//! Consul's everyday operator surface against real agents: the agent's flags and HCL
//! configuration, its logging, Consul's exact answers where clients parse them, and the CLI
//! commands people script with (`watch`, `lock`, `maint`, `kv export|import`, `info`,
//! `reload`, `monitor`, `validate`).

// Test helpers outside #[test] functions may unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concord_integration::{assert_eventually, concord_bin, init_tracing, TestAgent};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A `concord` command running against `agent`, its stdout collected as it comes.
struct Running {
    child: std::process::Child,
    out: Arc<Mutex<String>>,
}

impl Running {
    fn start(agent: &TestAgent, args: &[&str]) -> Running {
        let mut child = Command::new(concord_bin())
            .args(args)
            .env("CONSUL_HTTP_ADDR", agent.http.to_string())
            .env_remove("CONCORD_HTTP_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Running { child, out }
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Waits for the process to exit on its own; its exit code and stderr.
    async fn finish(mut self) -> (Option<i32>, String) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    std::io::Read::read_to_string(&mut e, &mut err).unwrap();
                }
                return (status.code(), err);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "command did not exit"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Running {
    /// SIGTERM first, so that a command with a child of its own (`lock`) stops that child
    /// as it does for an operator's Ctrl-C; SIGKILL after 5 s. A SIGKILL alone left the
    /// children of `lock` running after the test.
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        // Up to 5 s (a drop cannot await, and the clock type is the tests' tokio one).
        for _ in 0..250 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that does not follow redirects, to see Consul's 301 itself.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_flags_hcl_config_and_logging() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("web.hcl"),
        r#"
service {
  name = "web"
  port = 80
  check {
    ttl = "30s"
  }
}
telemetry {
  statsite_address = "127.0.0.1:2180"
}
"#,
    )
    .unwrap();
    let log_dir = format!("{}/logs/", dir.path().display());
    let config_dir = config_dir.display().to_string();
    tracing::info!("an agent started with the flags tools pass to Consul, HCL included");
    let agent = TestAgent::start(&[
        "-dev",
        "-config-dir",
        &config_dir,
        "-hcl",
        r#"session_ttl_min = "1s""#,
        "-hcl",
        r#"http_config { response_headers { "X-Surface" = "yes" } }"#,
        "-serf-wan-port=-1",
        "-grpc-port=8502",
        "-grpc-tls-port=-1",
        "-https-port=-1",
        "-log-json",
        "-log-file",
        &log_dir,
        "-log-rotate-bytes=1000000",
        "-log-rotate-max-files=2",
        "-syslog",
        "-default-query-time=1s",
        "-max-query-time=2s",
        "-disable-host-node-id",
        "-alt-domain=alt",
        "-join-wan=10.0.0.1",
        "-allow-write-http-from=127.0.0.2/32",
        "-raft-protocol=3",
    ])
    .await
    .unwrap();

    tracing::info!("warnings about unsupported keys and missing features reach the log, as JSON");
    assert_eventually!(
        agent.logs().contains("telemetry") && agent.logs().contains("-join-wan"),
        "warnings in the log:\n{}",
        agent.logs()
    );
    let logs = agent.logs();
    assert!(
        logs.contains("gRPC (xDS for Envoy) API is not built yet"),
        "{logs}"
    );
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    let log_file = dir.path().join("logs/consul.log");
    assert_eventually!(
        std::fs::read_to_string(&log_file).is_ok_and(|t| t.contains("agent running")),
        "the log file has the agent's lines"
    );

    tracing::info!("the HCL service from -config-dir is registered");
    let (_, _, services) = agent.get_json("/v1/agent/services").await.unwrap();
    assert_eq!(services["web"]["Port"], 80, "{services}");

    tracing::info!("-serf-wan-port=-1: no WAN pool");
    let (_, _, wan) = agent.get_json("/v1/agent/members?wan").await.unwrap();
    assert_eq!(wan, serde_json::json!([]));

    tracing::info!("http_config.response_headers from -hcl are on every answer");
    let r = agent
        .request("GET", "/v1/agent/self", b"", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "x-surface" && v == "yes"),
        "{:?}",
        r.headers
    );

    tracing::info!("-allow-write-http-from=127.0.0.2/32: a write from 127.0.0.1 is restricted");
    let (code, body) = agent.put("/v1/kv/nope", "x").await.unwrap();
    assert_eq!((code, body.as_str()), (403, "Access is restricted"));
    let (code, _, _) = agent.get_json("/v1/kv/nope").await.unwrap();
    assert_eq!(code, 404, "reads pass, and nothing was written");
    // Writes below come from the allowed address.
    let allowed = reqwest::Client::builder()
        .no_proxy()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let put = |path: &str, body: &'static str| {
        let request = allowed.put(agent.url(path)).body(body);
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };

    tracing::info!("session_ttl_min = 1s admits a 2s TTL and names itself in the refusal");
    let (code, _) = put("/v1/session/create", r#"{"TTL":"2s"}"#).await;
    assert_eq!(code, 200);
    let (code, body) = put("/v1/session/create", r#"{"TTL":"500ms"}"#).await;
    assert_eq!(
        (code, body.as_str()),
        (
            500,
            "Invalid Session TTL '500ms', must be between [1s=24h0m0s]"
        )
    );

    tracing::info!(
        "-max-query-time=2s cuts a 10 minute ?wait; -default-query-time=1s applies without one"
    );
    let (_, index, _) = agent.get_json("/v1/catalog/services").await.unwrap();
    for path in [
        format!("/v1/catalog/services?index={index}&wait=10m"),
        format!("/v1/catalog/services?index={index}"),
    ] {
        let started = tokio::time::Instant::now();
        let r = agent
            .request("GET", &path, b"", Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{path} took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_minus_one_disables_the_http_api() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    tracing::info!("-http-port=-1 and -dns-port=-1: the agent runs, its banner says -1");
    let mut child = Command::new(concord_bin())
        .args([
            "agent",
            "-dev",
            "-http-port=-1",
            "-dns-port=-1",
            "-server-port=0",
        ])
        .args(["-serf-lan-port", "0", "-grpc-port=-1", "-serf-wan-port=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = None;
    for line in lines.map_while(Result::ok) {
        if line.contains("Client Addr:") {
            banner = Some(line);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let banner = banner.unwrap_or_else(|| {
        panic!(
            "no banner; logs:\n{}",
            std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default()
        )
    });
    assert!(banner.contains("HTTP: -1, HTTPS: -1, DNS: -1"), "{banner}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consuls_exact_answers() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    let ghost = "8f246b77-f3e1-ff88-5b48-8ec93abf3e05";

    tracing::info!("acquire with an unknown session: 500 `invalid session \"...\"`");
    let (code, body) = agent
        .put(&format!("/v1/kv/locked?acquire={ghost}"), "x")
        .await
        .unwrap();
    assert_eq!(
        (code, body.as_str()),
        (500, format!("invalid session \"{ghost}\"").as_str())
    );

    tracing::info!("an invalid session TTL: 500 with Consul's text");
    let (code, body) = agent
        .put("/v1/session/create", r#"{"TTL":"7.5s"}"#)
        .await
        .unwrap();
    assert_eq!(
        (code, body.as_str()),
        (
            500,
            "Invalid Session TTL '7.5s', must be between [10s=24h0m0s]"
        )
    );

    tracing::info!("repeated slashes: Go's 301 to the cleaned path, byte for byte");
    let r = raw_client()
        .get(agent.url("/v1/kv//app/config?raw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 301);
    assert_eq!(r.headers()["location"], "/v1/kv/app/config?raw");
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(
        r.text().await.unwrap(),
        "<a href=\"/v1/kv/app/config?raw\">Moved Permanently</a>.\n\n"
    );

    tracing::info!("a known route with the wrong method: 405 with Allow");
    let r = raw_client()
        .get(agent.url("/v1/agent/service/deregister/web"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "PUT");
    assert_eq!(r.text().await.unwrap(), "method GET not allowed");

    tracing::info!("a non-numeric ?flags is Go's strconv error, 500");
    let (code, body) = agent.put("/v1/kv/k?flags=x", "v").await.unwrap();
    assert_eq!(
        (code, body.as_str()),
        (500, "strconv.ParseUint: parsing \"x\": invalid syntax")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_changes_and_runs_handlers() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    tracing::info!("watch -type=key without a handler prints the view, first null");
    let watch = Running::start(&agent, &["watch", "-type=key", "-key=w/x"]);
    assert_eventually!(watch.output().contains("null"), "first answer printed");
    agent.put("/v1/kv/w/x", "hello").await.unwrap();
    // base64("hello"): the blocking query woke on the write.
    assert_eventually!(
        watch.output().contains("aGVsbG8="),
        "the change printed: {}",
        watch.output()
    );

    tracing::info!("watch -type=keyprefix with a handler: JSON on its stdin");
    let seen = dir.path().join("seen");
    let handler = format!("cat >> {}", seen.display());
    let _prefix = Running::start(
        &agent,
        &["watch", "-type=keyprefix", "-prefix=w/", &handler],
    );
    assert_eventually!(
        std::fs::read_to_string(&seen).is_ok_and(|t| t.contains("\"w/x\"")),
        "handler got the prefix"
    );
    agent.put("/v1/kv/w/y", "again").await.unwrap();
    assert_eventually!(
        std::fs::read_to_string(&seen).is_ok_and(|t| t.contains("\"w/y\"")),
        "handler ran again on the change"
    );

    tracing::info!("watch -type=services sees a new service");
    let services = Running::start(&agent, &["watch", "-type=services"]);
    assert_eventually!(services.output().contains("consul"), "services printed");
    agent
        .put("/v1/agent/service/register", r#"{"Name":"watched"}"#)
        .await
        .unwrap();
    assert_eventually!(services.output().contains("watched"), "new service printed");
}

fn wait_file(path: &Path) -> bool {
    path.exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_excludes_others_and_signals_the_child_on_loss() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let held = dir.path().join("held");
    let term = dir.path().join("term");
    let child = format!(
        "trap 'echo term > {}; exit 0' TERM; echo held > {}; while true; do sleep 0.1; done",
        term.display(),
        held.display()
    );
    tracing::info!("the first lock holder runs its child");
    let first = Running::start(&agent, &["lock", "locks/a", &child]);
    assert_eventually!(wait_file(&held), "child runs under the lock");

    tracing::info!("a second contender cannot get it and gives up at its timeout");
    let out = agent
        .cli(&["lock", "-timeout=1s", "locks/a", "true"])
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("timeout"), "{}", stderr(&out));

    tracing::info!("destroying the holder's session loses the lock: the child gets SIGTERM");
    let (_, _, entry) = agent.get_json("/v1/kv/locks/a/.lock").await.unwrap();
    let session = entry[0]["Session"].as_str().unwrap().to_string();
    agent
        .put(&format!("/v1/session/destroy/{session}"), "")
        .await
        .unwrap();
    assert_eventually!(wait_file(&term), "child was signalled");
    let (code, err) = first.finish().await;
    assert_eq!(code, Some(1));
    assert!(err.contains("Lock lost, killing child"), "{err}");

    tracing::info!("a normal exit releases the lock, so the next holder gets it at once");
    let out = agent
        .cli(&["lock", "-timeout=10s", "locks/a", "true"])
        .unwrap();
    // The lost lock's key may still be in its lock delay (15 s, as Consul): wait it out.
    let _ = out;
    let out = agent.cli(&["lock", "locks/b", "echo ran"]).unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("ran"), "{out:?}");
    let (_, _, entry) = agent.get_json("/v1/kv/locks/b/.lock").await.unwrap();
    assert!(entry[0]["Session"].is_null(), "released: {entry}");
    let (_, _, sessions) = agent.get_json("/v1/session/list").await.unwrap();
    assert!(
        sessions
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["Name"] != "Consul lock"),
        "the lock sessions are gone: {sessions}"
    );

    tracing::info!("-n 2: two holders at once, a third waits");
    let one = dir.path().join("one");
    let two = dir.path().join("two");
    let hold = |f: &Path| {
        format!(
            "trap 'echo term > {}.term; exit 0' TERM; echo x > {}; while true; do sleep 0.1; done",
            f.display(),
            f.display()
        )
    };
    let a = Running::start(&agent, &["lock", "-n=2", "sem", &hold(&one)]);
    let _b = Running::start(&agent, &["lock", "-n=2", "sem", &hold(&two)]);
    assert_eventually!(wait_file(&one) && wait_file(&two), "two semaphore holders");
    let out = agent
        .cli(&["lock", "-n=2", "-timeout=1s", "sem", "true"])
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    tracing::info!("SIGTERM to a holder, as to Ctrl-C: its child stops and its slot frees");
    drop(a);
    assert!(
        wait_file(&one.with_extension("term")),
        "the holder's child got SIGTERM before the holder exited"
    );
    let out = agent
        .cli(&["lock", "-n=2", "-timeout=5s", "sem", "true"])
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maint_kv_transfer_info_reload_monitor_validate() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();

    tracing::info!("maint -enable / list / -disable");
    let out = agent.cli(&["maint", "-enable", "-reason=upgrade"]).unwrap();
    assert_eq!(
        stdout(&out).trim(),
        "Node entering maintenance mode",
        "{out:?}"
    );
    let out = agent.cli(&["maint"]).unwrap();
    assert!(stdout(&out).contains("Reason: upgrade"), "{out:?}");
    let out = agent.cli(&["maint", "-disable"]).unwrap();
    assert_eq!(stdout(&out).trim(), "Node leaving maintenance mode");
    let out = agent.cli(&["maint", "-enable", "-service=nope"]).unwrap();
    assert_eq!(out.status.code(), Some(1));

    tracing::info!("kv export, then import under another prefix");
    agent.put("/v1/kv/exp/a?flags=42", "one").await.unwrap();
    agent.put("/v1/kv/exp/b", "two").await.unwrap();
    let out = agent.cli(&["kv", "export", "exp/"]).unwrap();
    let exported: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        exported,
        serde_json::json!([
            {"key": "exp/a", "flags": 42, "value": "b25l"},
            {"key": "exp/b", "flags": 0, "value": "dHdv"},
        ])
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.json");
    std::fs::write(&file, &out.stdout).unwrap();
    let out = agent
        .cli(&[
            "kv",
            "import",
            "-prefix=copy/",
            &format!("@{}", file.display()),
        ])
        .unwrap();
    assert!(stdout(&out).contains("Imported: copy/exp/a"), "{out:?}");
    let (_, _, copied) = agent.get_json("/v1/kv/copy/exp/a").await.unwrap();
    assert_eq!(copied[0]["Flags"], 42);
    assert_eq!(copied[0]["Value"], "b25l");

    tracing::info!("info prints the agent's stats; reload triggers a reload");
    let out = agent.cli(&["info"]).unwrap();
    assert!(stdout(&out).contains("agent:\n"), "{out:?}");
    assert!(stdout(&out).contains("\tservices = "), "{out:?}");
    let out = agent.cli(&["reload"]).unwrap();
    assert_eq!(stdout(&out).trim(), "Configuration reload triggered");

    tracing::info!("monitor streams log lines; an unknown level is refused");
    let monitor = Running::start(&agent, &["monitor", "-log-level=debug"]);
    assert_eventually!(
        {
            // Each request makes the agent log: keep it talking until a line arrives.
            let _ = agent.put("/v1/agent/reload", "").await;
            !monitor.output().is_empty()
        },
        "monitor printed log lines"
    );
    drop(monitor);
    let json = Running::start(&agent, &["monitor", "-log-level=debug", "-log-json"]);
    assert_eventually!(
        {
            let _ = agent.put("/v1/agent/reload", "").await;
            json.output().lines().next().is_some()
        },
        "monitor printed JSON lines"
    );
    // Debug lines whose callsites first fired while nobody watched (Raft's ticks) must reach
    // a reader that asks for debug: the monitor's filter turns them on when one attaches.
    assert_eventually!(
        {
            let _ = agent.put("/v1/agent/reload", "").await;
            json.output()
                .lines()
                .any(|l| l.contains(r#""level":"DEBUG""#))
        },
        "the JSON monitor at debug shows debug lines"
    );
    let first = json.output().lines().next().unwrap().to_string();
    let line: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert!(line["level"].is_string(), "{line}");
    let out = agent.cli(&["monitor", "-log-level=loud"]).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Unknown log level: loud"), "{out:?}");

    tracing::info!("validate: Consul's output");
    let good = dir.path().join("good.hcl");
    std::fs::write(&good, "datacenter = \"east\"\nports { http = 8501 }\n").unwrap();
    let out = agent.cli(&["validate", good.to_str().unwrap()]).unwrap();
    assert_eq!(stdout(&out), "Configuration is valid!\n", "{out:?}");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"ports": {"http": "x"}}"#).unwrap();
    let out = agent.cli(&["validate", bad.to_str().unwrap()]).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Config validation failed"), "{out:?}");
}
