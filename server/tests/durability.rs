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
            data_dir: Some(Path::new(&dir).to_path_buf()),
            dev: true,
            rpc_max_conns_per_client: 0,
            ..Config::new("durable", "6b1d2f4e-8c3a-4f9b-8d7e-2e3f4a5b6c7d", addr)
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
                        put(client.clone(), url.clone(), key(c, i)).await;
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

/// The key of client `c`'s write `i`: fixed width, so no key is part of another and the
/// trace can follow each one.
fn key(c: usize, i: usize) -> String {
    format!("c{c:02}/k{i:03}")
}

/// The keys [`key`] made that `line` mentions.
fn keys_in(line: &str) -> Vec<String> {
    let b = line.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    (0..b.len())
        .filter(|&i| {
            b[i] == b'c'
                && digits(i + 1..i + 3)
                && b.get(i + 3..i + 5) == Some(b"/k")
                && digits(i + 5..i + 8)
        })
        .map(|i| line[i..i + 8].to_string())
        .collect()
}

/// The pid and the first argument (a file descriptor) of a traced call of `name`.
fn call_fd(line: &str, name: &str) -> Option<(String, String)> {
    let start = line.find(&format!(" {name}("))? + name.len() + 2;
    let fd: String = line[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let pid = line.split_whitespace().next()?.to_string();
    (!fd.is_empty()).then_some((pid, fd))
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
    /// Acknowledgments followed through the trace, whatever the concurrency: the request's
    /// key was read on a connection, then written to a synced file, then an `fdatasync` of
    /// that file started after the write and completed, then the `200` left on that same
    /// connection.
    proven_acks: usize,
}

fn parse(strace: &str) -> Trace {
    use std::collections::{BTreeMap, BTreeSet};
    let request = format!("\"POST {WRITE_PATH}");
    // The files the log syncs: their writes are the log's.
    let synced_fds: BTreeSet<String> = strace
        .lines()
        .filter_map(|line| call_fd(line, "fdatasync").map(|(_, fd)| fd))
        .collect();
    let mut trace = Trace::default();
    let mut measuring = false;
    let mut synced_since_request = true;
    let mut unfinished = BTreeMap::new();
    // Connection (server fd) -> the key of the request last read on it.
    let mut reading: BTreeMap<String, String> = BTreeMap::new();
    // Key -> line of its first write to a synced file.
    let mut written: BTreeMap<String, usize> = BTreeMap::new();
    // pid -> line its unfinished `fdatasync` started on.
    let mut sync_started: BTreeMap<String, usize> = BTreeMap::new();
    // The latest start line among the completed syncs.
    let mut latest_synced_start: Option<usize> = None;
    for (n, line) in strace.lines().enumerate() {
        let Some(call) = traced_call(line, &mut unfinished) else {
            continue;
        };
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
        match call.name.as_str() {
            // Received bytes: the request's key, on the server's side of a connection (what
            // was read is counted where it was sent).
            "recvfrom" | "read" => {
                if let Some(key) = keys_in(line).pop() {
                    reading.insert(call.fd, key);
                }
            }
            "write" | "writev" | "sendto" | "sendmsg" => {
                if call.name == "write" && synced_fds.contains(&call.fd) {
                    for key in keys_in(line) {
                        written.entry(key).or_insert(n);
                    }
                }
                if line.contains(&request) {
                    trace.requests += 1;
                    synced_since_request = false;
                } else if line.contains("\"HTTP/1.1 200") {
                    trace.acks += 1;
                    if !synced_since_request {
                        trace.unsynced_acks += 1;
                    }
                    let proven = reading
                        .get(&call.fd)
                        .and_then(|key| written.get(key))
                        .is_some_and(|w| latest_synced_start.is_some_and(|s| s > *w));
                    trace.proven_acks += usize::from(proven);
                }
            }
            "fdatasync" if !call.done => {
                sync_started.insert(call.pid, n);
            }
            "fdatasync" => {
                trace.fdatasyncs += 1;
                synced_since_request = true;
                let start = sync_started.remove(&call.pid).unwrap_or(n);
                latest_synced_start = latest_synced_start.max(Some(start));
            }
            "fsync" if call.done => trace.fsyncs += 1,
            "sync_file_range" if call.done => trace.sync_file_ranges += 1,
            _ => {}
        }
    }
    trace
}

/// One traced line's call.
struct Call {
    pid: String,
    name: String,
    /// The first argument (a file descriptor for every call traced here).
    fd: String,
    /// The call returned on this line (not `<unfinished ...>`).
    done: bool,
}

/// Reads a line of `strace -f`: `PID name(fd, ...) = ret`, `PID name(fd, ... <unfinished
/// ...>` (remembered in `unfinished`, by pid) or `PID <... name resumed>...`.
fn traced_call(
    line: &str,
    unfinished: &mut std::collections::BTreeMap<String, String>,
) -> Option<Call> {
    let (pid, rest) = line.split_once(char::is_whitespace)?;
    let rest = rest.trim_start();
    let pid = pid.to_string();
    if let Some(resumed) = rest.strip_prefix("<... ") {
        let name = resumed.split_whitespace().next()?.to_string();
        let fd = unfinished.remove(&pid)?;
        return Some(Call {
            pid,
            name,
            fd,
            done: true,
        });
    }
    let (name, args) = rest.split_once('(')?;
    let fd: String = args.chars().take_while(char::is_ascii_digit).collect();
    let done = !line.contains("<unfinished");
    if !done {
        unfinished.insert(pid.clone(), fd.clone());
    }
    Some(Call {
        pid,
        name: name.to_string(),
        fd,
        done,
    })
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
        .args(["-f", "-qq", "-s", "65536", "-o"])
        .arg(&out)
        .args([
            "-e",
            "trace=fdatasync,fsync,sync_file_range,write,writev,sendto,sendmsg,read,recvfrom",
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
    assert_eq!(trace.proven_acks, WRITES, "{trace:?}");
}

/// Group commit, shown with the syscalls: 16 concurrent clients get their writes
/// acknowledged with fewer `fdatasync`s than writes (concurrent writes share an entry, and
/// so a sync; see `proposer`), and every acknowledgment still follows a sync of its own
/// write (each one followed through the trace by its key, see [`Trace::proven_acks`]).
#[test]
fn concurrent_writers_share_fdatasyncs_and_each_ack_follows_its_sync() {
    const CLIENTS: usize = 16;
    const WRITES: usize = 10;
    let Some(trace) = traced_run(CLIENTS, WRITES) else {
        return;
    };
    assert_eq!(trace.requests, CLIENTS * WRITES, "{trace:?}");
    assert_eq!(trace.acks, CLIENTS * WRITES, "{trace:?}");
    assert_eq!(
        trace.proven_acks, trace.acks,
        "every acknowledgment follows an fdatasync of its write: {trace:?}"
    );
    assert!(
        trace.fdatasyncs >= 1 && trace.fdatasyncs * 2 <= trace.acks,
        "{} syncs for {} acknowledgments: concurrent writes do not share syncs",
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

#[test]
fn the_parser_follows_each_ack_to_a_sync_that_started_after_its_write() {
    let lines = [
        "1 write(1, \"BEGIN\\n\", 6) = 6",
        // Two requests read on two connections.
        "2 recvfrom(20, \"POST /x HTTP/1.1 {\\\"key\\\":\\\"c00/k000\\\"}\", 8192, 0, NULL, NULL) = 90",
        "2 recvfrom(21, \"POST /x HTTP/1.1 {\\\"key\\\":\\\"c01/k000\\\"}\", 8192, 0, NULL, NULL) = 90",
        // A sync starts before c01's write: it cannot cover it.
        "3 write(7, \"{\\\"key\\\":\\\"c00/k000\\\"}\", 30) = 30",
        "3 fdatasync(7 <unfinished ...>",
        "4 write(7, \"{\\\"key\\\":\\\"c01/k000\\\"}\", 30) = 30",
        "3 <... fdatasync resumed>) = 0",
        "2 writev(20, [{iov_base=\"HTTP/1.1 200 OK\\r\\n\"...}], 2) = 100",
        "2 writev(21, [{iov_base=\"HTTP/1.1 200 OK\\r\\n\"...}], 2) = 100",
        "3 fdatasync(7) = 0",
        "2 writev(21, [{iov_base=\"HTTP/1.1 200 OK\\r\\n\"...}], 2) = 100",
        "1 write(1, \"END\\n\", 4) = 4",
    ];
    let trace = parse(&lines.join("\n"));
    assert_eq!(trace.acks, 3);
    assert_eq!(
        trace.proven_acks, 2,
        "c00's ack and c01's second ack follow a sync of their write; c01's first does not"
    );
    assert_eq!(
        keys_in("x c00/k001 c1/k2 c12/k345"),
        ["c00/k001", "c12/k345"]
    );
}
