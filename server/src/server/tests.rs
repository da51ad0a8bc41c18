//! Servers over real sockets: forwarding between two servers, restart from a snapshot.

use std::net::SocketAddr;
use std::time::Duration;

use concord_api::kv::KvOp;
use concord_api::rpc::{
    Consistency, Query, QueryOptions, QueryResult, ReadRequest, ReadResponse, RpcError,
    WriteRequest, WriteResponse, READ_PATH, WRITE_PATH,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;

use super::*;

const WAIT: Duration = Duration::from_secs(10);

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

fn config(
    name: &str,
    id: u8,
    addr: SocketAddr,
    bootstrap_expect: usize,
    data_dir: Option<&Path>,
) -> Config {
    Config {
        data_dir: data_dir.map(Path::to_path_buf),
        bootstrap_expect,
        dev: true,
        rpc_max_conns_per_client: 0,
        ..Config::new(
            name,
            &format!("8d3a2b1c-0000-4000-8000-0000000000{id:02x}"),
            addr,
        )
    }
}

async fn rpc<Req: Serialize, Resp: DeserializeOwned>(
    addr: SocketAddr,
    path: &str,
    req: &Req,
) -> Result<Resp, RpcError> {
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .json(req)
        .send()
        .await
        .unwrap();
    if resp.status().is_success() {
        Ok(resp.json().await.unwrap())
    } else {
        Err(resp.json().await.unwrap())
    }
}

fn set(key: &str, value: &str) -> WriteRequest {
    WriteRequest::Kv(KvOp::Set {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        flags: 0,
    })
}

async fn keys(addr: SocketAddr, consistency: Consistency) -> Vec<String> {
    let req = ReadRequest {
        query: Query::KvKeys {
            prefix: String::new(),
            separator: None,
        },
        options: QueryOptions {
            consistency,
            ..QueryOptions::default()
        },
    };
    let resp: ReadResponse = rpc(addr, READ_PATH, &req).await.unwrap();
    let QueryResult::Keys(keys) = resp.result else {
        panic!()
    };
    keys
}

/// A single-server cluster `a`, then `b` joining it as a learner (a follower that does not
/// vote), each with its RPC address.
async fn leader_and_follower() -> ((Server, SocketAddr), (Server, SocketAddr)) {
    let (la, a_addr) = listener().await;
    let a = Server::start(config("a", 1, a_addr, 1, None), la)
        .await
        .unwrap();
    a.wait_for_leader(WAIT).await.unwrap();
    let (lb, b_addr) = listener().await;
    let b = Server::start(config("b", 2, b_addr, 0, None), lb)
        .await
        .unwrap();
    a.shared
        .raft
        .add_learner(b.shared.id, Node::new(b_addr), true)
        .await
        .unwrap();
    b.wait_for_leader(WAIT).await.unwrap();
    ((a, a_addr), (b, b_addr))
}

#[tokio::test]
async fn follower_forwards_to_the_leader() {
    tracing::info!("a single-server cluster, then a second server joining as a learner");
    let ((a, a_addr), (b, b_addr)) = leader_and_follower().await;
    assert_eq!(
        b.shared.leadership(),
        Leadership::Follower {
            leader_addr: a_addr.to_string()
        }
    );

    tracing::info!("a write sent to the follower is forwarded and applied by the leader");
    let written: WriteResponse = rpc(b_addr, WRITE_PATH, &set("k", "v")).await.unwrap();
    assert!(written.index > 0);
    assert_eq!(
        keys(b_addr, Consistency::Default).await,
        ["k"],
        "default reads forward too"
    );

    tracing::info!("the write replicates, so a stale read on the follower sees it");
    b.shared
        .raft
        .wait(Some(WAIT))
        .applied_index_at_least(Some(written.index), "replicated")
        .await
        .unwrap();
    assert_eq!(keys(b_addr, Consistency::Stale).await, ["k"]);
    let status: ReadResponse = rpc(
        b_addr,
        READ_PATH,
        &ReadRequest {
            query: Query::RaftStatus,
            options: QueryOptions::default(),
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(status.result, QueryResult::RaftStatus { leader, .. } if leader == a_addr.to_string())
    );

    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}

#[tokio::test]
async fn restart_recovers_snapshot_and_log_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (l1, addr1) = listener().await;
    let server = Server::start(config("s", 1, addr1, 1, Some(dir.path())), l1)
        .await
        .unwrap();
    server.wait_for_leader(WAIT).await.unwrap();

    tracing::info!("writes, a snapshot, then more writes only in the log");
    for i in 0..5 {
        let _: WriteResponse = rpc(addr1, WRITE_PATH, &set(&format!("a{i}"), "x"))
            .await
            .unwrap();
    }
    server.shared.raft.trigger().snapshot().await.unwrap();
    server
        .shared
        .raft
        .wait(Some(WAIT))
        .metrics(|m| m.snapshot.is_some(), "snapshot built")
        .await
        .unwrap();
    for i in 0..3 {
        let _: WriteResponse = rpc(addr1, WRITE_PATH, &set(&format!("b{i}"), "y"))
            .await
            .unwrap();
    }
    server.shutdown().await.unwrap();

    tracing::info!("a restart on the same dir (another port) recovers everything");
    let (l2, addr2) = listener().await;
    let server = Server::start(config("s", 1, addr2, 1, Some(dir.path())), l2)
        .await
        .unwrap();
    server.wait_for_leader(WAIT).await.unwrap();
    assert!(server.shared.raft.metrics().borrow().snapshot.is_some());
    assert_eq!(
        keys(addr2, Consistency::Default).await,
        ["a0", "a1", "a2", "a3", "a4", "b0", "b1", "b2"]
    );
    server.shutdown().await.unwrap();
}

/// `open_db` waits only on a held lock, which sled reports by text alone: pin the text.
#[test]
fn a_held_database_lock_is_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let config = sled::Config::new().path(dir.path().join("raft"));
    let _held = config.open().unwrap();
    let err = config.open().unwrap_err();
    assert!(lock_held(&err), "{err}");
    assert!(!lock_held(&sled::Error::Unsupported("x".into())));
}

#[tokio::test]
async fn opening_waits_for_a_held_lock_to_be_released() {
    let dir = tempfile::tempdir().unwrap();
    let held = open_db(Some(dir.path())).await.unwrap();
    let opening = tokio::spawn({
        let dir = dir.path().to_path_buf();
        async move { open_db(Some(&dir)).await }
    });
    drop(held);
    opening.await.unwrap().unwrap();
}

/// A gossip member on 127.0.0.1 with fast timings and Consul's tags for `role`.
async fn gossip_member(name: &str, role: &str, id: u8, rpc_port: u16) -> Gossip {
    use concord_net::gossip::{bind, Config as GossipConfig, Timing};
    let (udp, tcp) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut config = GossipConfig::new(name, udp.local_addr().unwrap());
    config.timing = Timing::fast();
    config.tags = [
        ("role", role.to_string()),
        ("dc", "dc1".to_string()),
        ("id", format!("8d3a2b1c-0000-4000-8000-0000000000{id:02x}")),
        ("port", rpc_port.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if role != "consul" {
        config.tags.remove("port");
    }
    Gossip::start(config, udp, tcp).unwrap()
}

/// Waits until `cond` holds on the server's store.
async fn store_until(server: &Server, what: &str, cond: impl Fn(&crate::state::Tables) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        if server.shared.store.current().view(&cond) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn leader_reconciles_gossip_members_into_the_catalog() {
    use crate::model::catalog::CheckStatus;
    use concord_api::catalog::SERF_HEALTH_CHECK_ID;
    let serf = |t: &crate::state::Tables, node: &str| {
        t.check(node, SERF_HEALTH_CHECK_ID)
            .map(|c| (c.status, c.output.clone()))
    };

    let (l, addr) = listener().await;
    let pool = gossip_member("a", "consul", 1, addr.port()).await;
    let server = Server::start_with_gossip(config("a", 1, addr, 1, None), l, pool.clone())
        .await
        .unwrap();
    server.wait_for_leader(WAIT).await.unwrap();
    let seed = pool.local_member().addr;

    tracing::info!("a client agent joins: registered with a passing serfHealth");
    let client = gossip_member("client", "node", 2, 0).await;
    client.join(&[seed]).await.unwrap();
    store_until(&server, "client registered", |t| {
        t.node("client").is_some_and(|n| n.address == "127.0.0.1")
            && serf(t, "client").is_some_and(|(s, _)| s == CheckStatus::Passing)
    })
    .await;

    tracing::info!("another server joins: also gets the consul service");
    let other = gossip_member("b", "consul", 3, 8300).await;
    other.join(&[seed]).await.unwrap();
    store_until(&server, "server b registered", |t| {
        t.service("b", "consul").is_some_and(|s| s.port == 8300)
    })
    .await;

    tracing::info!("the client stops without leaving: serfHealth critical, node kept");
    client.shutdown();
    store_until(&server, "client critical", |t| {
        serf(t, "client")
            == Some((
                CheckStatus::Critical,
                "Agent not live or unreachable".to_string(),
            ))
    })
    .await;
    assert!(server
        .shared
        .store
        .current()
        .view(|t| t.node("client").is_some()));

    tracing::info!("server b leaves gracefully: deregistered");
    other.leave(Duration::from_secs(1)).await.unwrap();
    store_until(&server, "b deregistered", |t| t.node("b").is_none()).await;

    tracing::info!("the leader itself stays registered throughout");
    store_until(&server, "leader registered", |t| {
        serf(t, "a").is_some_and(|(s, _)| s == CheckStatus::Passing)
    })
    .await;

    server.shutdown().await.unwrap();
    pool.shutdown();
}

#[tokio::test]
async fn connect_ca_is_replicated_so_any_server_can_sign() {
    use concord_api::connect::SignRequest;
    use concord_api::rpc::WriteResult;

    tracing::info!("two servers; the leader makes the CA on first leadership");
    let (la, a_addr) = listener().await;
    let a = Server::start(config("a", 1, a_addr, 1, None), la)
        .await
        .unwrap();
    a.wait_for_leader(WAIT).await.unwrap();
    let (lb, b_addr) = listener().await;
    let b = Server::start(config("b", 2, b_addr, 0, None), lb)
        .await
        .unwrap();
    a.shared
        .raft
        .add_learner(b.shared.id, Node::new(b_addr), true)
        .await
        .unwrap();
    let roots = |addr| async move {
        let r: ReadResponse = rpc(
            addr,
            READ_PATH,
            &ReadRequest {
                query: Query::CaRoots,
                options: QueryOptions {
                    consistency: Consistency::Stale,
                    ..QueryOptions::default()
                },
            },
        )
        .await
        .unwrap();
        match r.result {
            QueryResult::CaRoots(roots) => roots,
            other => panic!("{other:?}"),
        }
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while roots(b_addr).await.active_root_id.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "CA never replicated"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(roots(a_addr).await, roots(b_addr).await);

    tracing::info!("a signing request sent to the follower is forwarded and signed");
    let td = roots(b_addr).await.trust_domain;
    let csr_pem = {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        let uri = format!("spiffe://{td}/ns/default/dc/dc1/svc/web");
        params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
        params.serialize_request(&key).unwrap().pem().unwrap()
    };
    let request = SignRequest {
        service: "web".into(),
        csr_pem,
    };
    let signed: WriteResponse = rpc(b_addr, WRITE_PATH, &WriteRequest::CaSign(request.clone()))
        .await
        .unwrap();
    assert!(matches!(signed.result, WriteResult::CaLeaf(ref c) if c.service == "web"));

    tracing::info!("the follower holds the key too: it could sign after a failover");
    let local = crate::connect::sign(&b.shared, &request).unwrap();
    assert!(matches!(local.result, WriteResult::CaLeaf(_)));
}

#[tokio::test]
async fn snapshot_restore_through_a_follower_replaces_state_on_every_server() {
    tracing::info!("a leader and a follower (learner) sharing one key");
    let ((a, a_addr), (b, b_addr)) = leader_and_follower().await;
    let _: WriteResponse = rpc(b_addr, WRITE_PATH, &set("saved", "1")).await.unwrap();

    tracing::info!("a save sent to the follower is answered by the leader");
    let save = ReadRequest {
        query: Query::Snapshot,
        options: QueryOptions::default(),
    };
    let saved: ReadResponse = rpc(b_addr, READ_PATH, &save).await.unwrap();
    let QueryResult::Snapshot(archive) = saved.result else {
        panic!("{:?}", saved.result)
    };
    let meta = crate::archive::read(&archive.0).unwrap().meta;
    assert_eq!(meta.index, saved.meta.index);

    tracing::info!("a later write, and a stale blocking read parked on the follower");
    let later: WriteResponse = rpc(b_addr, WRITE_PATH, &set("later", "2")).await.unwrap();
    b.shared
        .raft
        .wait(Some(WAIT))
        .applied_index_at_least(Some(later.index), "replicated")
        .await
        .unwrap();
    let parked = ReadRequest {
        query: Query::KvKeys {
            prefix: String::new(),
            separator: None,
        },
        options: QueryOptions {
            min_index: later.index,
            max_wait_ms: 60_000,
            consistency: Consistency::Stale,
        },
    };
    let waiter = tokio::spawn(async move {
        let resp: ReadResponse = rpc(b_addr, READ_PATH, &parked).await.unwrap();
        resp
    });

    tracing::info!("the restore, sent to the follower, applies on both servers");
    let restored: WriteResponse = rpc(
        b_addr,
        WRITE_PATH,
        &WriteRequest::SnapshotRestore(archive.clone()),
    )
    .await
    .unwrap();
    assert!(restored.index > later.index);
    let woke = tokio::time::timeout(WAIT, waiter).await.unwrap().unwrap();
    assert_eq!(woke.result, QueryResult::Keys(vec!["saved".into()]));
    assert!(woke.meta.index >= restored.index, "the index moved forward");
    assert_eq!(keys(a_addr, Consistency::Stale).await, ["saved"]);

    tracing::info!("a corrupt archive is refused and changes nothing");
    let mut corrupt = archive.clone();
    let middle = corrupt.0.len() / 2;
    corrupt.0[middle] ^= 0xff;
    let err = rpc::<_, WriteResponse>(a_addr, WRITE_PATH, &WriteRequest::SnapshotRestore(corrupt))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::Invalid(m) if m.starts_with("snapshot archive")),
        "{err:?}"
    );
    assert_eq!(keys(a_addr, Consistency::Stale).await, ["saved"]);

    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}

#[tokio::test]
async fn tombstone_reaps_go_through_raft_to_every_server() {
    tracing::info!("a leader and a follower; a key set then deleted leaves a tombstone");
    let ((a, a_addr), (b, _)) = leader_and_follower().await;
    let _: WriteResponse = rpc(a_addr, WRITE_PATH, &set("gc/k", "v")).await.unwrap();
    let deleted: WriteResponse = rpc(
        a_addr,
        WRITE_PATH,
        &WriteRequest::Kv(KvOp::Delete { key: "gc/k".into() }),
    )
    .await
    .unwrap();
    let has_tombstone = |t: &crate::state::Tables| t.kv_tombstones_up_to(u64::MAX) == 1;
    store_until(&b, "the tombstone replicated", has_tombstone).await;

    tracing::info!("nothing below the delete: no entry is proposed");
    let reap = crate::leader::tombstones::reap;
    assert!(!reap(&a.shared, deleted.index - 1).await.unwrap());

    tracing::info!("the reap applies on both servers");
    assert!(reap(&a.shared, deleted.index).await.unwrap());
    let reaped = |t: &crate::state::Tables| t.kv_tombstones_up_to(u64::MAX) == 0;
    store_until(&a, "reaped on the leader", reaped).await;
    store_until(&b, "reaped on the follower", reaped).await;
    for server in [&a, &b] {
        let (index, _) = server
            .shared
            .store
            .current()
            .query(&Query::KvList {
                prefix: "gc/".into(),
            })
            .unwrap();
        assert_eq!(index, deleted.index, "the prefix keeps the delete's index");
    }
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}

/// Group commit: concurrent writes on the leader share Raft entries (`proposer`), each still
/// gets its own answer, a CAS race inside a batch has one winner, and the batches replicate
/// to (and decode on) a follower.
#[tokio::test]
async fn concurrent_writes_share_entries_and_replicate() {
    let ((a, _), (b, b_addr)) = leader_and_follower().await;
    let before = a.shared.raft.metrics().borrow().last_log_index.unwrap_or(0);
    const WRITERS: usize = 64;
    let writes: Vec<_> = (0..WRITERS)
        .map(|i| {
            let shared = a.shared.clone();
            tokio::spawn(async move {
                let cmd = if i % 8 == 0 {
                    // Eight writers race to create the same key.
                    crate::command::Command::Kv {
                        op: crate::model::kv::KvOp::Cas {
                            key: "race".into(),
                            value: i.to_string().into_bytes(),
                            flags: 0,
                            index: 0,
                        },
                        now_ms: 0,
                    }
                } else {
                    crate::command::Command::Kv {
                        op: crate::model::kv::KvOp::Set {
                            key: format!("k{i:02}"),
                            value: b"v".to_vec(),
                            flags: 0,
                        },
                        now_ms: 0,
                    }
                };
                (i, shared.propose(cmd).await.unwrap())
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for write in writes {
        outcomes.push(write.await.unwrap());
    }
    let after = a.shared.raft.metrics().borrow().last_log_index.unwrap_or(0);
    let mut indexes: Vec<u64> = outcomes.iter().map(|(_, (index, _))| *index).collect();
    indexes.sort_unstable();
    indexes.dedup();
    assert!(
        indexes.len() < WRITERS && after - before < WRITERS as u64,
        "{WRITERS} writes in {} entries: none shared one",
        after - before
    );
    let race_wins = outcomes
        .iter()
        .filter(|(i, (_, result))| {
            i % 8 == 0 && *result == concord_api::rpc::WriteResult::Bool(true)
        })
        .count();
    assert_eq!(race_wins, 1, "one CAS creates the key: {outcomes:?}");
    for (i, (_, result)) in &outcomes {
        if i % 8 != 0 {
            assert_eq!(
                *result,
                concord_api::rpc::WriteResult::Bool(true),
                "write {i}"
            );
        }
    }
    b.shared
        .raft
        .wait(Some(WAIT))
        .applied_index_at_least(Some(after), "replicated")
        .await
        .unwrap();
    let follower_keys = keys(b_addr, Consistency::Stale).await;
    assert_eq!(
        follower_keys.len(),
        WRITERS - WRITERS / 8 + 1,
        "{follower_keys:?}"
    );
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}

/// Servers `a` (the leader, bootstrapped alone, on `a_dir` if given), then `b`, `c`, ...
/// joined as voters; each with its RPC address.
async fn voters(n: u8, a_dir: Option<&Path>) -> Vec<(Server, SocketAddr)> {
    let (la, a_addr) = listener().await;
    let a = Server::start(config("a", 1, a_addr, 1, a_dir), la)
        .await
        .unwrap();
    a.wait_for_leader(WAIT).await.unwrap();
    let mut servers = vec![(a, a_addr)];
    for i in 1..n {
        let (l, addr) = listener().await;
        let name = char::from(b'a' + i).to_string();
        let s = Server::start(config(&name, i + 1, addr, 0, None), l)
            .await
            .unwrap();
        servers[0]
            .0
            .shared
            .raft
            .add_learner(s.shared.id, Node::new(addr), true)
            .await
            .unwrap();
        servers.push((s, addr));
    }
    let ids: Vec<_> = servers.iter().map(|(s, _)| s.shared.id).collect();
    servers[0]
        .0
        .shared
        .raft
        .change_membership(ids, false)
        .await
        .unwrap();
    servers
}

/// A leader that restarts (crash or shutdown) stands for election again; it never resumes
/// leading in its old term. openraft 0.9 would restart it as leader at once, with the commit
/// point it had persisted, which can lag what it acknowledged before the crash, and its
/// `?consistent` reads would then miss those writes (see `LogStore::forget_leading`).
#[tokio::test]
async fn a_restarted_leader_is_elected_again_in_a_new_term() {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = voters(2, Some(dir.path())).await;
    let (b, _) = servers.pop().unwrap();
    let (a, a_addr) = servers.pop().unwrap();
    let _: WriteResponse = rpc(a_addr, WRITE_PATH, &set("k", "v")).await.unwrap();
    let term = a.shared.raft.metrics().borrow().current_term;
    assert_eq!(a.shared.leadership(), Leadership::Leader);
    a.shutdown().await.unwrap();

    tracing::info!("the leader restarts on its data dir and address");
    let la = TcpListener::bind(a_addr).await.unwrap();
    let a = Server::start(config("a", 1, a_addr, 1, Some(dir.path())), la)
        .await
        .unwrap();
    a.wait_for_leader(WAIT).await.unwrap();
    let m = a.shared.raft.metrics().borrow().clone();
    assert!(
        m.current_term > term,
        "leading again in term {} (was {term}) without an election",
        m.current_term
    );
    assert_eq!(keys(a_addr, Consistency::Consistent).await, ["k"]);
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}

/// Holds a server's Raft log syncs (on a thread of its own) until the returned sender is
/// dropped.
fn stall_syncs(server: &Server) -> std::sync::mpsc::Sender<()> {
    let gate = server.shared.log_gate.clone();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (held, holding) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _held = gate.lock().unwrap();
        held.send(()).unwrap();
        let _ = released.recv();
    });
    holding.recv().unwrap();
    release
}

/// The leader sends an entry to its followers while it syncs its own copy (vendored
/// openraft's patch 1): with three voters a write commits on the two followers' synced
/// copies even while the leader's sync is stalled. Unpatched, the leader waited for its
/// own sync before it replicated, and the write waited with it.
#[tokio::test]
async fn a_leader_replicates_while_its_own_sync_is_stalled() {
    let servers = voters(3, None).await;
    let (leader, leader_addr) = &servers[0];
    let stalled = stall_syncs(leader);
    let write = tokio::time::timeout(
        WAIT,
        rpc::<_, WriteResponse>(*leader_addr, WRITE_PATH, &set("k", "v")),
    )
    .await;
    assert!(
        matches!(write, Ok(Ok(_))),
        "the write waited for the leader's stalled sync: {write:?}"
    );
    assert_eq!(keys(*leader_addr, Consistency::Consistent).await, ["k"]);
    drop(stalled);
    for (s, _) in servers {
        s.shutdown().await.unwrap();
    }
}

/// ... but a commit still needs a quorum of synced copies: with two voters the leader's own
/// copy is one of them, so a write the follower already synced is acknowledged only once
/// the leader's sync completes.
#[tokio::test]
async fn a_leader_counts_its_own_copy_only_once_synced() {
    let mut servers = voters(2, None).await;
    let (follower, _) = servers.pop().unwrap();
    let (leader, leader_addr) = servers.pop().unwrap();
    let before = leader
        .shared
        .raft
        .metrics()
        .borrow()
        .last_log_index
        .unwrap_or(0);
    let stalled = stall_syncs(&leader);
    let write = tokio::spawn(async move {
        rpc::<_, WriteResponse>(leader_addr, WRITE_PATH, &set("k", "v")).await
    });
    tracing::info!("the follower has synced the entry and told the leader");
    leader
        .shared
        .raft
        .wait(Some(WAIT))
        .metrics(
            |m| {
                m.replication.as_ref().is_some_and(|r| {
                    r.get(&follower.shared.id)
                        .is_some_and(|l| l.is_some_and(|l| l.index > before))
                })
            },
            "the follower's copy acknowledged",
        )
        .await
        .unwrap();
    let applied = leader.shared.raft.metrics().borrow().last_applied;
    assert!(
        !write.is_finished() && applied.is_none_or(|a| a.index <= before),
        "acknowledged before the leader's own copy was synced (applied {applied:?})"
    );
    drop(stalled);
    let written = tokio::time::timeout(WAIT, write)
        .await
        .expect("the write completes once the leader's sync does")
        .unwrap()
        .unwrap();
    assert!(written.index > before);
    follower.shutdown().await.unwrap();
    leader.shutdown().await.unwrap();
}
