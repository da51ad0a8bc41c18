//! Power-loss durability, shown with the syscalls themselves: every write the server
//! acknowledges was preceded by an `fdatasync` of the Raft log.
//!
//! The test re-runs this test binary as a child process (running only [`durability_child`])
//! under `strace -f`, which records the child's sync calls and its socket writes in order.
//! Sequential writes: between each write request leaving the client and its `200` response
//! leaving the server there must be a completed `fdatasync`, and there must be exactly as
//! many responses as writes, so a run that acknowledged nothing, or whose syncs were not
//! seen, fails instead of passing. Concurrent writes: the syncs per acknowledgment are
//! measured (see [`concurrent_writers_sync_at_most_once_per_acknowledgment`]).
//!
//! strace is a Debian package: without it the test is skipped locally and fails under CI
//! (`CI` set).

// A test binary: its helpers panic on failure by design.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use concord_api::kv::KvOp;
use concord_api::rpc::{
    Query, QueryOptions, QueryResult, ReadRequest, ReadResponse, WriteRequest, WriteResponse,
    READ_PATH, WRITE_PATH,
};
use concord_server::{Config, Server};
use tokio::net::TcpListener;

const DIR_ENV: &str = "CONCORD_DURABILITY_TEST_DIR";
const CLIENTS_ENV: &str = "CONCORD_DURABILITY_TEST_CLIENTS";
const WRITES_ENV: &str = "CONCORD_DURABILITY_TEST_WRITES";

/// The child: starts a server, prints `BEGIN`, makes `clients × writes` acknowledged writes,
/// prints `END` and exits. The markers are write syscalls strace records in order.
#[test]
#[ignore = "runs only as the child process of the strace tests"]
fn durability_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let clients: usize = std::env::var(CLIENTS_ENV).unwrap().parse().unwrap();
    let writes: usize = std::env::var(WRITES_ENV).unwrap().parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Config {
            node_name: "durable".into(),
            node_id: "6b1d2f4e-8c3a-4f9b-8d7e-2e3f4a5b6c7d".into(),
            datacenter: "dc1".into(),
            data_dir: Some(Path::new(&dir).to_path_buf()),
            rpc_advertise: addr,
            bootstrap_expect: 1,
            dev: true,
            session_ttl_min: concord_server::SESSION_TTL_MIN,
            rpc_max_conns_per_client: 0,
            rpc_tls: None,
            acl: None,
        };
        let server = Server::start(config, listener).await.unwrap();
        server
            .wait_for_leader(Duration::from_secs(10))
            .await
            .unwrap();
        let client = Arc::new(reqwest::Client::new());
        let url = Arc::new(format!("http://{addr}{WRITE_PATH}"));
        let put = |client: Arc<reqwest::Client>, url: Arc<String>, key: String| async move {
            let req = WriteRequest::Kv(KvOp::Set {
                key,
                value: b"v".to_vec(),
                flags: 0,
            });
            let resp = client.post(url.as_str()).json(&req).send().await.unwrap();
            assert!(resp.status().is_success(), "{}", resp.status());
            let _: WriteResponse = resp.json().await.unwrap();
        };
        // Warm up (connection) and wait out the leader's own startup writes (its catalog
        // registration, the Connect CA bootstrap) before measuring, so every sync counted
        // belongs to a measured write.
        put(client.clone(), url.clone(), "warmup".into()).await;
        let read_url = format!("http://{addr}{READ_PATH}");
        let read = |query: Query| {
            let (client, read_url) = (client.clone(), read_url.clone());
            async move {
                let req = ReadRequest {
                    query,
                    options: QueryOptions::default(),
                };
                let resp = client.post(&read_url).json(&req).send().await.unwrap();
                resp.json::<ReadResponse>().await.unwrap().result
            }
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let ca_ready = matches!(
                read(Query::CaRoots).await,
                QueryResult::CaRoots(r) if !r.active_root_id.is_empty()
            );
            let registered = matches!(
                read(Query::NodeServices {
                    node: "durable".into()
                })
                .await,
                QueryResult::NodeServices(Some(_))
            );
            if ca_ready && registered {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "leader startup writes"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        marker("BEGIN");
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    for i in 0..writes {
                        put(client.clone(), url.clone(), format!("c{c}/k{i}")).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        marker("END");
    });
    // Exit without shutting down: what follows the last acknowledgment is not measured.
    std::process::exit(0);
}

fn marker(text: &str) {
    let mut out = std::io::stdout();
    writeln!(out, "{text}").unwrap();
    out.flush().unwrap();
}

/// What strace saw between `BEGIN` and `END`.
#[derive(Debug, Default)]
struct Trace {
    /// Write requests sent by the clients.
    requests: usize,
    /// `200` responses sent by the server: acknowledgments.
    acks: usize,
    /// Completed `fdatasync` calls (the Raft log).
    fdatasyncs: usize,
    /// Completed `fsync` calls (vote file, directories, sled).
    fsyncs: usize,
    /// `sync_file_range` calls (sled).
    sync_file_ranges: usize,
    /// Acknowledgments with no completed `fdatasync` since the request they answer (only
    /// meaningful for one client at a time).
    unsynced_acks: usize,
}

/// A completed call of `name`: its whole line, or the line that resumes it.
fn completed(line: &str, name: &str) -> bool {
    (line.contains(&format!(" {name}(")) && !line.contains("<unfinished"))
        || line.contains(&format!("<... {name} resumed>"))
}

fn parse(strace: &str) -> Trace {
    let request = format!("\"POST {WRITE_PATH}");
    let mut trace = Trace::default();
    let mut measuring = false;
    let mut synced_since_request = true;
    for line in strace.lines() {
        if line.contains("\"BEGIN\\n\"") {
            measuring = true;
            continue;
        }
        if line.contains("\"END\\n\"") {
            break;
        }
        if !measuring {
            continue;
        }
        if line.contains(&request) {
            trace.requests += 1;
            synced_since_request = false;
        } else if line.contains("\"HTTP/1.1 200") {
            trace.acks += 1;
            if !synced_since_request {
                trace.unsynced_acks += 1;
            }
        } else if completed(line, "fdatasync") {
            trace.fdatasyncs += 1;
            synced_since_request = true;
        } else if completed(line, "fsync") {
            trace.fsyncs += 1;
        } else if completed(line, "sync_file_range") {
            trace.sync_file_ranges += 1;
        }
    }
    trace
}

/// Runs the child under strace with `clients` concurrent clients making `writes` writes
/// each; `None` if strace is not installed (and this is not CI).
fn traced_run(clients: usize, writes: usize) -> Option<Trace> {
    if Command::new("strace").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "strace is required in CI (Debian package `strace`)"
        );
        eprintln!("skipping: strace is not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("strace.txt");
    let data = dir.path().join("data");
    let status = Command::new("strace")
        .args(["-f", "-qq", "-s", "48", "-o"])
        .arg(&out)
        .args([
            "-e",
            "trace=fdatasync,fsync,sync_file_range,write,writev,sendto,sendmsg",
        ])
        .arg(std::env::current_exe().unwrap())
        .args(["durability_child", "--exact", "--ignored", "--nocapture"])
        .env(DIR_ENV, &data)
        .env(CLIENTS_ENV, clients.to_string())
        .env(WRITES_ENV, writes.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "traced child failed: {status}");
    let trace = parse(&std::fs::read_to_string(&out).unwrap());
    println!("{clients} client(s) x {writes} writes: {trace:?}");
    Some(trace)
}

#[test]
fn every_acknowledged_write_was_fdatasynced_first() {
    const WRITES: usize = 40;
    let Some(trace) = traced_run(1, WRITES) else {
        return;
    };
    assert_eq!(trace.requests, WRITES, "every request was seen: {trace:?}");
    assert_eq!(
        trace.acks, WRITES,
        "every acknowledgment was seen: {trace:?}"
    );
    assert_eq!(
        trace.unsynced_acks, 0,
        "acknowledged without an fdatasync since the request: {trace:?}"
    );
    assert!(trace.fdatasyncs >= WRITES, "{trace:?}");
}

/// Measures syncs per acknowledgment with 16 concurrent clients. The log's writer shares one
/// sync among everything queued behind the one in flight (`log_store` tests show it), but
/// openraft 0.9's core awaits each `append`'s flush before it takes the next client write
/// (`RaftCore::append_to_log`), so with one entry per client write syncs cannot be shared
/// below the proposal layer yet: this asserts the count is bounded and reports it.
#[test]
fn concurrent_writers_sync_at_most_once_per_acknowledgment() {
    const CLIENTS: usize = 16;
    const WRITES: usize = 10;
    let Some(trace) = traced_run(CLIENTS, WRITES) else {
        return;
    };
    assert_eq!(trace.requests, CLIENTS * WRITES, "{trace:?}");
    assert_eq!(trace.acks, CLIENTS * WRITES, "{trace:?}");
    assert!(
        (1..=trace.acks).contains(&trace.fdatasyncs),
        "{} syncs for {} acknowledgments",
        trace.fdatasyncs,
        trace.acks
    );
}

#[test]
fn the_parser_counts_completions_and_catches_an_unsynced_ack() {
    let request = format!("1 sendto(9, \"POST {WRITE_PATH} HTTP/1.1\\r\"..., 200) = 200");
    let ack = "2 writev(12, [{iov_base=\"HTTP/1.1 200 OK\\r\\n\"...}], 2) = 100";
    let lines = [
        "1 write(1, \"BEGIN\\n\", 6) = 6".to_string(),
        request.clone(),
        "3 fdatasync(7 <unfinished ...>".into(),
        ack.into(),
        "3 <... fdatasync resumed>) = 0".into(),
        request,
        "3 fdatasync(7) = 0".into(),
        "3 fsync(8) = 0".into(),
        ack.into(),
        "1 write(1, \"END\\n\", 4) = 4".into(),
        ack.into(),
    ];
    let trace = parse(&lines.join("\n"));
    assert_eq!(trace.requests, 2);
    assert_eq!(trace.acks, 2);
    assert_eq!(trace.fdatasyncs, 2);
    assert_eq!(trace.fsyncs, 1);
    assert_eq!(
        trace.unsynced_acks, 1,
        "the first ack went out before its sync completed"
    );
}
