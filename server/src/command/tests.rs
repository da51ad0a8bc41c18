//! The wire shape of [`Command`]: one golden file per variant (`tests/fixtures/command/`).
//! The log is decoded by future versions, so the encoding must not drift.

use std::collections::BTreeMap;
use std::time::Duration;

use concord_api::catalog::{
    CheckStatus, DeregisterRequest, HealthCheck, HealthCheckDefinition, NodeService,
    RegisterRequest, ServiceAddress, Weights,
};
use concord_api::session::{ServiceCheckRef, Session, SessionBehavior};

use super::Command;
use crate::golden;
use crate::model::acl::{
    Identities, NodeIdentity, Policy, Role, ServiceIdentity, TemplatedPolicy, Token,
};
use crate::model::autopilot::AutopilotConfig;
use crate::model::ca::{CaConfig, CaRoot};
use crate::model::kv::KvOp;

/// The fixture of a variant. An exhaustive match: a new variant does not compile until it is
/// named here, and then [`samples`] must carry one (see the count check below).
fn fixture(cmd: &Command) -> &'static str {
    match cmd {
        Command::Register { .. } => "command/register.json",
        Command::Deregister { .. } => "command/deregister.json",
        Command::Kv { .. } => "command/kv.json",
        Command::Txn { .. } => "command/txn.json",
        Command::SessionCreate { .. } => "command/session_create.json",
        Command::SessionDestroy { .. } => "command/session_destroy.json",
        Command::ConfigEntrySet { .. } => "command/config_entry_set.json",
        Command::ConfigEntryDelete { .. } => "command/config_entry_delete.json",
        Command::CaInit { .. } => "command/ca_init.json",
        Command::CaSetConfig { .. } => "command/ca_set_config.json",
        Command::Restore { .. } => "command/restore.json",
        Command::CaPruneRoots { .. } => "command/ca_prune_roots.json",
        Command::AclBootstrap { .. } => "command/acl_bootstrap.json",
        Command::AclTokenSet { .. } => "command/acl_token_set.json",
        Command::AclTokenDelete { .. } => "command/acl_token_delete.json",
        Command::AclPolicySet { .. } => "command/acl_policy_set.json",
        Command::AclPolicyDelete { .. } => "command/acl_policy_delete.json",
        Command::AclRoleSet { .. } => "command/acl_role_set.json",
        Command::AclRoleDelete { .. } => "command/acl_role_delete.json",
        Command::KvReapTombstones { .. } => "command/kv_reap_tombstones.json",
        Command::Batch { .. } => "command/batch.json",
        Command::AutopilotSetConfig { .. } => "command/autopilot_set_config.json",
    }
}

/// One command per variant, with every field away from its default, in an order that
/// applies cleanly to an empty store (the snapshot golden test relies on it).
pub(crate) fn samples() -> Vec<Command> {
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let service = NodeService {
        id: "web-1".into(),
        service: "web".into(),
        tags: vec!["v1".into(), "primary".into()],
        address: "10.0.0.7".into(),
        tagged_addresses: BTreeMap::from([(
            "lan".to_string(),
            ServiceAddress {
                address: "10.0.0.7".into(),
                port: 8080,
            },
        )]),
        meta: map(&[("version", "1.2")]),
        port: 8080,
        weights: Weights {
            passing: 3,
            warning: 2,
        },
        enable_tag_override: true,
        kind: "connect-proxy".into(),
        proxy: Some(serde_json::json!({"DestinationServiceName": "web"})),
        connect: Some(serde_json::json!({"Native": false})),
        datacenter: "dc1".into(),
        ..NodeService::default()
    };
    let check = HealthCheck {
        node: "node-1".into(),
        check_id: "web-http".into(),
        name: "web HTTP".into(),
        status: CheckStatus::Passing,
        notes: "probes /health".into(),
        output: "HTTP 200".into(),
        service_id: "web-1".into(),
        service_name: "web".into(),
        service_tags: vec!["v1".into()],
        r#type: "http".into(),
        definition: HealthCheckDefinition {
            http: "http://10.0.0.7:8080/health".into(),
            method: "GET".into(),
            header: BTreeMap::from([("Accept".to_string(), vec!["text/plain".to_string()])]),
            body: "ping".into(),
            tcp: String::new(),
            interval: Some(Duration::from_secs(10).into()),
            timeout: Some(Duration::from_secs(1).into()),
            ttl: None,
            deregister_critical_service_after: Some(Duration::from_secs(90).into()),
            ..HealthCheckDefinition::default()
        },
        ..HealthCheck::default()
    };
    let node_check = HealthCheck {
        node: "node-1".into(),
        check_id: "serfHealth".into(),
        name: "Serf Health Status".into(),
        status: CheckStatus::Passing,
        r#type: "serf".into(),
        ..HealthCheck::default()
    };
    let old_check = HealthCheck {
        check_id: "old".into(),
        name: "old".into(),
        status: CheckStatus::Warning,
        ..HealthCheck::default()
    };
    vec![
        Command::Register {
            request: RegisterRequest {
                id: "8d3a2b1c-0000-4000-8000-00000000002a".into(),
                node: "node-1".into(),
                address: "10.0.0.7".into(),
                datacenter: "dc1".into(),
                tagged_addresses: map(&[("wan", "203.0.113.7")]),
                node_meta: map(&[("rack", "r1")]),
                service: Some(service),
                check: Some(old_check),
                checks: vec![check, node_check],
                skip_node_update: false,
            }
            .into(),
            now_ms: 1_700_000_000_000,
        },
        Command::Deregister {
            request: DeregisterRequest {
                node: "node-1".into(),
                datacenter: "dc1".into(),
                service_id: None,
                check_id: Some("old".into()),
            }
            .into(),
            now_ms: 1_700_000_000_001,
        },
        Command::SessionCreate {
            session: Session {
                id: "adf4238a-882b-9ddc-4a9d-5b6758e4159e".into(),
                name: "leader-lock".into(),
                node: "node-1".into(),
                lock_delay: 15_000_000_000,
                behavior: SessionBehavior::Release,
                ttl: "30s".into(),
                node_checks: vec!["serfHealth".into()],
                service_checks: vec![ServiceCheckRef {
                    id: "web-http".into(),
                    namespace: String::new(),
                }],
                create_index: 0,
                modify_index: 0,
            }
            .into(),
        },
        Command::Kv {
            op: KvOp::Lock {
                key: "service/web/leader".into(),
                value: b"node-1".to_vec(),
                flags: 42,
                session: "adf4238a-882b-9ddc-4a9d-5b6758e4159e".into(),
            },
            now_ms: 1_700_000_000_002,
        },
        Command::Txn {
            ops: vec![
                KvOp::Set {
                    key: "config/a".into(),
                    value: b"1".to_vec(),
                    flags: 0,
                },
                KvOp::Cas {
                    key: "config/b".into(),
                    value: b"2".to_vec(),
                    flags: 7,
                    index: 0,
                },
                KvOp::Delete {
                    key: "config/a".into(),
                },
                KvOp::Get {
                    key: "config/b".into(),
                },
            ],
            now_ms: 1_700_000_000_003,
        },
        Command::SessionDestroy {
            id: "adf4238a-882b-9ddc-4a9d-5b6758e4159e".into(),
            now_ms: 1_700_000_000_004,
        },
        Command::ConfigEntrySet {
            kind: "service-intentions".into(),
            name: "db".into(),
            body: serde_json::json!({
                "Kind": "service-intentions",
                "Name": "db",
                "Sources": [{"Name": "web", "Action": "allow", "Precedence": 9, "Type": "consul"}]
            }),
            cas: Some(0),
        },
        Command::ConfigEntryDelete {
            kind: "service-defaults".into(),
            name: "web".into(),
            cas: Some(7),
        },
        Command::CaInit {
            config: ca_config(256),
            root: ca_root("aa:bb", 256),
        },
        Command::CaSetConfig {
            config: CaConfig {
                force_without_cross_signing: true,
                ..ca_config(384)
            },
            new_root: Some(CaRoot {
                intermediate_certs: vec!["-----BEGIN CERTIFICATE-----\ncross\n".into()],
                ..ca_root("cc:dd", 384)
            }),
            prev_active_root: "aa:bb".into(),
            now_ms: Some(1_700_000_000_005),
        },
        // Names an unknown root and the active one: applies and changes nothing, so the
        // snapshot sample keeps both roots.
        Command::CaPruneRoots {
            ids: vec!["ee:ff".into(), "cc:dd".into()],
        },
        Command::Restore {
            state: r#"{"nodes":[],"services":[],"checks":[],"kvs":[],"tombstones":[],"lock_delays":[],"sessions":[],"indexes":{"kvs":9},"service_indexes":{}}"#.into(),
        },
        Command::AclBootstrap {
            token: Token {
                accessor_id: "b0000000-0000-4000-8000-000000000001".into(),
                secret_id: "b0000000-0000-4000-8000-000000000002".into(),
                description: "Bootstrap Token (Global Management)".into(),
                policies: vec!["00000000-0000-0000-0000-000000000001".into()],
                create_ms: 1_700_000_000_006,
                hash: "aGFzaA==".into(),
                ..Token::default()
            },
        },
        Command::AclPolicySet {
            policy: Policy {
                id: "p0000000-0000-4000-8000-000000000001".into(),
                name: "app-read".into(),
                description: "reads app/".into(),
                rules: "key_prefix \"app/\" {\n  policy = \"read\"\n}".into(),
                datacenters: vec!["dc1".into()],
                hash: "cG9saWN5".into(),
                ..Policy::default()
            },
        },
        Command::AclRoleSet {
            role: Role {
                id: "r0000000-0000-4000-8000-000000000001".into(),
                name: "web-role".into(),
                description: "web and its reads".into(),
                policies: vec!["p0000000-0000-4000-8000-000000000001".into()],
                identities: acl_identities(),
                hash: "cm9sZQ==".into(),
                ..Role::default()
            },
        },
        Command::AclTokenSet {
            token: Token {
                accessor_id: "t0000000-0000-4000-8000-000000000001".into(),
                secret_id: "t0000000-0000-4000-8000-000000000002".into(),
                description: "app reader".into(),
                policies: vec!["p0000000-0000-4000-8000-000000000001".into()],
                roles: vec!["r0000000-0000-4000-8000-000000000001".into()],
                identities: acl_identities(),
                local: true,
                expiration_ms: Some(1_800_000_000_000),
                create_ms: 1_700_000_000_007,
                hash: "dG9rZW4=".into(),
                ..Token::default()
            },
        },
        // The deletes name unknown records: they apply and change nothing, so the snapshot
        // sample keeps a record in every ACL table.
        Command::AclTokenDelete {
            accessor_id: "t-unknown".into(),
        },
        Command::AclPolicyDelete {
            id: "p-unknown".into(),
        },
        Command::AclRoleDelete {
            id: "r-unknown".into(),
        },
        // Below every tombstone of the samples: reaps nothing, so the snapshot sample keeps
        // its tombstone.
        Command::KvReapTombstones { index: 1 },
        Command::AutopilotSetConfig {
            config: AutopilotConfig {
                cleanup_dead_servers: false,
                last_contact_threshold_ns: 500_000_000,
                max_trailing_logs: 500,
                min_quorum: 3,
                server_stabilization_time_ns: 20_000_000_000,
                redundancy_zone_tag: "zone".into(),
                disable_upgrade_migration: true,
                upgrade_version_tag: "build".into(),
                create_index: 0,
                modify_index: 0,
            },
            cas: Some(0),
        },
        Command::Batch {
            commands: vec![
                Command::Kv {
                    op: KvOp::Set {
                        key: "batch/a".into(),
                        value: b"1".to_vec(),
                        flags: 0,
                    },
                    now_ms: 1_700_000_000_008,
                },
                Command::Kv {
                    op: KvOp::Cas {
                        key: "batch/a".into(),
                        value: b"2".to_vec(),
                        flags: 0,
                        index: 0,
                    },
                    now_ms: 1_700_000_000_009,
                },
            ],
        },
    ]
}

/// Identities of the ACL samples, one of each kind.
fn acl_identities() -> Identities {
    Identities {
        service: vec![ServiceIdentity {
            service_name: "web".into(),
            datacenters: vec!["dc1".into()],
        }],
        node: vec![NodeIdentity {
            node_name: "node-1".into(),
            datacenter: "dc1".into(),
        }],
        templated: vec![TemplatedPolicy {
            template_name: "builtin/service".into(),
            name: "api".into(),
            datacenters: vec![],
        }],
    }
}

/// A CA configuration sample (values only need to be distinct, not usable).
fn ca_config(bits: u32) -> CaConfig {
    CaConfig {
        cluster_id: "11111111-2222-3333-4444-555555555555".into(),
        provider: "consul".into(),
        leaf_cert_ttl_ms: 72 * 3_600_000,
        rotation_period_ms: 2_160 * 3_600_000,
        intermediate_cert_ttl_ms: 8_760 * 3_600_000,
        root_cert_ttl_ms: 87_600 * 3_600_000,
        private_key_type: "ec".into(),
        private_key_bits: bits,
        force_without_cross_signing: false,
        create_index: 0,
        modify_index: 0,
    }
}

/// A CA root sample.
fn ca_root(id: &str, bits: u32) -> CaRoot {
    CaRoot {
        id: id.into(),
        name: "Consul CA Root Cert".into(),
        serial_number: 7,
        signing_key_id: "01:02".into(),
        not_before: "2026-01-01T00:00:00Z".into(),
        not_after: "2036-01-01T00:00:00Z".into(),
        root_cert: "-----BEGIN CERTIFICATE-----\nroot\n".into(),
        intermediate_certs: vec![],
        private_key: "-----BEGIN PRIVATE KEY-----\nkey\n".into(),
        private_key_type: "ec".into(),
        private_key_bits: bits,
        active: true,
        create_index: 0,
        modify_index: 0,
        rotated_out_at_ms: None,
    }
}

/// `CaSetConfig` entries written before the rotation time was recorded still decode, with
/// no time.
#[test]
fn ca_set_config_without_a_rotation_time_decodes() {
    let mut v: serde_json::Value =
        serde_json::from_str(&golden::read("command/ca_set_config.json")).unwrap();
    v["CaSetConfig"].as_object_mut().unwrap().remove("now_ms");
    let Command::CaSetConfig { now_ms, .. } = serde_json::from_value(v).unwrap() else {
        panic!("wrong variant")
    };
    assert_eq!(now_ms, None);
}

#[test]
fn every_variant_matches_its_golden_file_and_decodes_back() {
    let samples = samples();
    let mut names: Vec<&str> = samples.iter().map(fixture).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), samples.len(), "one sample per variant");
    let on_disk = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/command"
    ))
    .map(|dir| dir.count())
    .unwrap_or(0);
    if std::env::var_os("CONCORD_BLESS").is_none() {
        assert_eq!(
            on_disk,
            samples.len(),
            "a fixture per variant, and no stale ones"
        );
    }
    for cmd in samples {
        let name = fixture(&cmd);
        golden::check(name, &serde_json::to_string_pretty(&cmd).unwrap());
        let back: Command = serde_json::from_str(&golden::read(name)).unwrap();
        assert_eq!(back, cmd, "{name} decodes back");
    }
}

/// The log is decoded by future versions: commands stay externally tagged.
#[test]
fn wire_shape_is_externally_tagged() {
    let cmd = Command::SessionDestroy {
        id: "abc".into(),
        now_ms: 7,
    };
    let v = serde_json::to_value(&cmd).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"SessionDestroy": {"id": "abc", "now_ms": 7}})
    );
}
