//! A leader change in the middle of a registration burst on several clients: once
//! anti-entropy settles, the catalog holds every local service exactly once, on its own node.
//! Three servers on `127.0.16.1..=3`, three clients on `127.0.16.11..=13`.

use std::collections::BTreeSet;
use std::time::Duration;

use concord_integration::{assert_eventually, init_tracing, TestAgent, TestCluster};
use serde_json::Value;

use super::{client_spec_in, register};

const NET: u8 = 16;
const SERVERS: usize = 3;
const CLIENTS: u8 = 3;
/// Registrations per client; the leader is killed after a third of them.
const PER_CLIENT: usize = 30;
/// Bound for anti-entropy to repair what the leader change interrupted: its retry (5 s) and
/// the resync after a new leader, well under the 60 s full sync.
const SETTLE: Duration = Duration::from_secs(45);

/// The service IDs the catalog holds for `node`, read from server `from` (`None` on error).
async fn catalog_ids(cluster: &TestCluster, from: usize, node: &str) -> Option<Vec<String>> {
    let path = format!("/v1/catalog/node/{node}");
    let (code, _, body) = cluster.servers[from].get_json(&path).await.ok()?;
    if code != 200 {
        return None;
    }
    let mut ids: Vec<String> = body["Services"]
        .as_object()?
        .values()
        .filter_map(|s| s["ID"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    Some(ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_change_during_a_registration_burst_loses_and_duplicates_nothing() {
    init_tracing();
    let mut cluster = TestCluster::start(NET, SERVERS).await.unwrap();
    let names: Vec<String> = (0..CLIENTS).map(|i| format!("burst{i}")).collect();
    let tasks: Vec<_> = names
        .iter()
        .zip(0u8..)
        .map(|(name, i)| tokio::spawn(TestAgent::launch(client_spec_in(NET, name, i))))
        .collect();
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await.unwrap().unwrap());
    }

    tracing::info!("every client registers its services while the leader is killed");
    let clients = std::sync::Arc::new(clients);
    let bursts: Vec<_> = (0..usize::from(CLIENTS))
        .map(|c| {
            let clients = clients.clone();
            tokio::spawn(async move {
                for n in 0..PER_CLIENT {
                    let definition = format!(
                        r#"{{"Name":"burst","ID":"burst-{c}-{n}","Port":{}}}"#,
                        1000 + n
                    );
                    register(&clients[c], &definition).await;
                }
            })
        })
        .collect();
    // Kill the leader once the burst is under way (a third of the registrations made).
    let leader = cluster.wait_leader(&[0, 1, 2], None).await.unwrap();
    let leader_i = cluster.index_of(&leader).unwrap();
    let survivors: Vec<usize> = (0..SERVERS).filter(|&i| i != leader_i).collect();
    assert_eventually!(
        {
            let mut made = 0;
            for c in clients.iter() {
                if let Ok((200, _, Value::Object(services))) =
                    c.get_json("/v1/agent/services").await
                {
                    made += services.len();
                }
            }
            made >= usize::from(CLIENTS) * PER_CLIENT / 3
        },
        "the burst never got under way"
    );
    cluster.servers[leader_i].kill9();
    for burst in bursts {
        burst.await.unwrap();
    }
    let new_leader = cluster
        .wait_leader(&survivors, Some(&leader))
        .await
        .unwrap();
    tracing::info!(%leader, %new_leader, "leader replaced; waiting for anti-entropy to settle");

    let started = tokio::time::Instant::now();
    for (c, node) in names.iter().enumerate() {
        let want: BTreeSet<String> = (0..PER_CLIENT).map(|n| format!("burst-{c}-{n}")).collect();
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let ids = catalog_ids(&cluster, survivors[0], node).await;
            let settled = ids.as_ref().is_some_and(|ids| {
                let unique: BTreeSet<String> = ids.iter().cloned().collect();
                unique.len() == ids.len() && unique == want
            });
            if settled {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let missing: Vec<&String> = want
                    .iter()
                    .filter(|w| !ids.iter().flatten().any(|i| i == *w))
                    .collect();
                panic!(
                    "{node}'s services never settled in the catalog: missing {missing:?}, \
                     catalog has {ids:?}; agent log:\n{}",
                    clients[c].logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eprintln!(
        "burst: catalog settled {:?} after the new leader",
        started.elapsed()
    );

    tracing::info!("every server, including the restarted old leader, agrees");
    cluster.servers[leader_i].restart().await.unwrap();
    let total = usize::from(CLIENTS) * PER_CLIENT;
    for i in 0..SERVERS {
        assert_eventually!(@timeout SETTLE,
            {
                match cluster.servers[i].get_json("/v1/catalog/service/burst?stale").await {
                    Ok((200, _, Value::Array(rows))) => {
                        let ids: BTreeSet<(String, String)> = rows
                            .iter()
                            .map(|r| (r["Node"].to_string(), r["ServiceID"].to_string()))
                            .collect();
                        rows.len() == total && ids.len() == total
                    }
                    _ => false,
                }
            },
            "server {i} never held every burst instance exactly once"
        );
    }
}
