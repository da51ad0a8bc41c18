use std::collections::BTreeMap;
use std::net::SocketAddr;

use concord_api::catalog::{CONSUL_SERVICE, SERF_HEALTH_CHECK_ID};
use concord_net::gossip::{Member, MemberStatus};

use super::*;
use crate::command::Command;
use crate::model::catalog::{Check, CheckStatus, Register};
use crate::state::StateStore;

const DC: &str = "dc1";
const LEADER: &str = "server-1";

fn member(name: &str, ip: &str, role: &str, status: MemberStatus) -> Member {
    let mut tags = BTreeMap::from([
        ("role".to_string(), role.to_string()),
        ("dc".to_string(), DC.to_string()),
        (
            "id".to_string(),
            format!("00000000-0000-4000-8000-{:0>12}", ip.replace('.', "")),
        ),
        ("build".to_string(), "1.15.2:5e08e229".to_string()),
        ("segment".to_string(), String::new()),
    ]);
    if role == "consul" {
        tags.insert("port".to_string(), "8300".to_string());
        tags.insert("raft_vsn".to_string(), "3".to_string());
    }
    Member {
        name: name.to_string(),
        addr: SocketAddr::new(ip.parse().unwrap(), 8301),
        tags,
        status,
    }
}

/// Applies every planned change to the store, as Raft would, at increasing indexes.
fn apply(store: &StateStore, changes: Vec<Change>, index: &mut u64) {
    for change in changes {
        *index += 1;
        store.apply(*index, &change.into_command(1_000)).unwrap();
    }
}

fn plan_for(store: &StateStore, members: &[Member]) -> Vec<Change> {
    store.view(|t| plan(members, LEADER, DC, t))
}

fn serf_status(store: &StateStore, node: &str) -> Option<(CheckStatus, String)> {
    store.view(|t| {
        t.check(node, SERF_HEALTH_CHECK_ID)
            .map(|c| (c.status, c.output.clone()))
    })
}

#[test]
fn alive_members_are_registered_once() {
    let store = StateStore::new();
    let members = vec![
        member("client-a", "10.0.0.11", "node", MemberStatus::Alive),
        member("server-2", "10.0.0.12", "consul", MemberStatus::Alive),
    ];
    let changes = plan_for(&store, &members);
    assert_eq!(changes.len(), 2);
    let mut index = 10;
    apply(&store, changes, &mut index);

    let node = store.view(|t| t.node("client-a").cloned()).unwrap();
    assert_eq!(node.address, "10.0.0.11");
    assert_eq!(node.id, members[0].tags["id"]);
    assert_eq!(node.datacenter, DC);
    assert_eq!(
        serf_status(&store, "client-a"),
        Some((
            CheckStatus::Passing,
            "Agent alive and reachable".to_string()
        ))
    );
    assert!(store.view(|t| t.service("client-a", CONSUL_SERVICE).is_none()));

    let svc = store
        .view(|t| t.service("server-2", CONSUL_SERVICE).cloned())
        .unwrap();
    assert_eq!(svc.port, 8300);
    assert_eq!(svc.meta["version"], "1.15.2");
    assert_eq!(svc.meta["raft_version"], "3");
    assert_eq!(svc.meta["non_voter"], "false");
    assert_eq!((svc.weights.passing, svc.weights.warning), (1, 1));

    assert!(
        plan_for(&store, &members).is_empty(),
        "no churn once in sync"
    );
}

#[test]
fn anti_entropy_fields_are_kept() {
    let store = StateStore::new();
    let members = vec![member("client-a", "10.0.0.11", "node", MemberStatus::Alive)];
    let mut index = 10;
    // The agent registered itself first, with metadata and a service of its own.
    let agent = Register {
        id: members[0].tags["id"].clone(),
        node: "client-a".into(),
        address: "10.0.0.11".to_string(),
        datacenter: DC.to_string(),
        node_meta: BTreeMap::from([("rack".to_string(), "r1".to_string())]),
        tagged_addresses: BTreeMap::from([("lan".to_string(), "10.0.0.11".to_string())]),
        ..Register::default()
    };
    index += 1;
    store
        .apply(
            index,
            &Command::Register {
                request: agent,
                now_ms: 0,
            },
        )
        .unwrap();
    apply(&store, plan_for(&store, &members), &mut index);
    let node = store.view(|t| t.node("client-a").cloned()).unwrap();
    assert_eq!(node.meta["rack"], "r1");
    assert_eq!(node.tagged_addresses["lan"], "10.0.0.11");
    assert!(plan_for(&store, &members).is_empty());
}

#[test]
fn failed_member_turns_critical_and_keeps_the_node() {
    let store = StateStore::new();
    let mut members = vec![member("client-a", "10.0.0.11", "node", MemberStatus::Alive)];
    let mut index = 10;
    apply(&store, plan_for(&store, &members), &mut index);
    // A session tied to serfHealth (Consul's default) dies with it.
    index += 1;
    let session = crate::model::session::Session {
        id: "5b5a4f6e-6e0b-4e8e-9e0e-000000000001".into(),
        node: "client-a".into(),
        node_checks: vec![SERF_HEALTH_CHECK_ID.into()],
        ..Default::default()
    };
    store
        .apply(index, &Command::SessionCreate { session })
        .unwrap();
    assert_eq!(store.sessions().len(), 1);

    members[0].status = MemberStatus::Failed;
    let changes = plan_for(&store, &members);
    assert_eq!(changes.len(), 1);
    let Change::Register(r) = &changes[0] else {
        panic!("expected a register, got {changes:?}");
    };
    assert!(r.skip_node_update);
    apply(&store, changes, &mut index);
    assert_eq!(
        serf_status(&store, "client-a"),
        Some((
            CheckStatus::Critical,
            "Agent not live or unreachable".to_string()
        ))
    );
    let node = store.view(|t| t.node("client-a").cloned()).unwrap();
    assert_eq!(node.address, "10.0.0.11", "node untouched");
    assert!(
        store.sessions().is_empty(),
        "session tied to serfHealth invalidated"
    );
    assert!(
        plan_for(&store, &members).is_empty(),
        "critical once, no churn"
    );

    // Back alive: passing again.
    members[0].status = MemberStatus::Alive;
    apply(&store, plan_for(&store, &members), &mut index);
    assert_eq!(
        serf_status(&store, "client-a").unwrap().0,
        CheckStatus::Passing
    );
}

#[test]
fn failed_member_not_in_catalog_is_ignored() {
    let store = StateStore::new();
    let members = vec![member(
        "client-a",
        "10.0.0.11",
        "node",
        MemberStatus::Failed,
    )];
    assert!(plan_for(&store, &members).is_empty());
}

#[test]
fn left_and_reaped_members_are_deregistered() {
    let store = StateStore::new();
    let mut members = vec![
        member("client-a", "10.0.0.11", "node", MemberStatus::Alive),
        member("client-b", "10.0.0.12", "node", MemberStatus::Alive),
    ];
    let mut index = 10;
    apply(&store, plan_for(&store, &members), &mut index);

    members[0].status = MemberStatus::Left;
    members[1].status = MemberStatus::Leaving;
    let changes = plan_for(&store, &members);
    assert_eq!(changes.len(), 1, "leaving is not left yet: {changes:?}");
    assert_eq!(changes[0].node(), "client-a");
    apply(&store, changes, &mut index);
    assert!(store.view(|t| t.node("client-a").is_none()));

    // client-b reaped: no longer a member at all.
    members.truncate(0);
    let changes = plan_for(&store, &members);
    assert!(matches!(&changes[..], [Change::Deregister(d)] if d.node.as_str() == "client-b"));
    apply(&store, changes, &mut index);
    assert!(store.view(|t| t.node("client-b").is_none()));
    assert!(plan_for(&store, &members).is_empty());
}

#[test]
fn nodes_without_serf_health_and_the_leader_are_left_alone() {
    let store = StateStore::new();
    let mut index = 10;
    // An external node registered through the catalog API: no serfHealth, not a member.
    for (node, checks) in [
        ("external", vec![]),
        (LEADER, vec![serf_health(LEADER, CheckStatus::Passing)]),
    ] {
        index += 1;
        let request = Register {
            node: node.into(),
            address: "10.9.9.9".to_string(),
            checks,
            ..Register::default()
        };
        store
            .apply(index, &Command::Register { request, now_ms: 0 })
            .unwrap();
    }
    assert!(plan_for(&store, &[]).is_empty());
    // Even reported as left, the leader never deregisters itself.
    let me = member(LEADER, "10.0.0.5", "consul", MemberStatus::Left);
    assert!(plan_for(&store, &[me]).is_empty());
}

#[test]
fn other_datacenters_segments_and_bad_servers_are_ignored() {
    let store = StateStore::new();
    let mut other_dc = member("client-x", "10.1.0.11", "node", MemberStatus::Alive);
    other_dc.tags.insert("dc".to_string(), "dc2".to_string());
    let mut segment = member("server-s", "10.0.0.21", "consul", MemberStatus::Alive);
    segment
        .tags
        .insert("segment".to_string(), "alpha".to_string());
    let mut no_port = member("server-p", "10.0.0.22", "consul", MemberStatus::Alive);
    no_port.tags.remove("port");
    let mut no_role = member("thing", "10.0.0.23", "node", MemberStatus::Alive);
    no_role.tags.remove("role");
    assert!(plan_for(&store, &[other_dc, segment, no_port, no_role]).is_empty());
}

#[test]
fn address_or_port_change_reregisters() {
    let store = StateStore::new();
    let mut members = vec![member(
        "server-2",
        "10.0.0.12",
        "consul",
        MemberStatus::Alive,
    )];
    let mut index = 10;
    apply(&store, plan_for(&store, &members), &mut index);
    members[0]
        .tags
        .insert("port".to_string(), "8310".to_string());
    members[0].addr = "10.0.0.13:8301".parse().unwrap();
    apply(&store, plan_for(&store, &members), &mut index);
    let node = store.view(|t| t.node("server-2").cloned()).unwrap();
    assert_eq!(node.address, "10.0.0.13");
    let svc = store
        .view(|t| t.service("server-2", CONSUL_SERVICE).cloned())
        .unwrap();
    assert_eq!(svc.port, 8310);
    assert!(plan_for(&store, &members).is_empty());
}

#[test]
fn serf_health_check_matches_consul() {
    let c: Check = serf_health("n", CheckStatus::Critical);
    assert_eq!(c.name, "Serf Health Status");
    assert_eq!(c.check_id.as_str(), "serfHealth");
    assert_eq!(c.output, "Agent not live or unreachable");
}
