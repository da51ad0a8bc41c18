//! Consul JSON compatibility: documented response and request shapes (in `fixtures/`, written
//! after Consul's API documentation) decode into our types, and what we encode uses Consul's
//! field names—no invented keys, no missing essentials.

// Helpers outside #[test] functions may unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use concord_api::acl::{AclPolicy, AclRole, AclToken};
use concord_api::agent::ServiceDefinition;
use concord_api::catalog::{CheckServiceNode, CheckStatus, ServiceNode};
use concord_api::config_entry::ConfigEntry;
use concord_api::decode::decode_lenient;
use concord_api::intention::Intention;
use concord_api::kv::KvEntry;
use concord_api::session::Session;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Every key of every object in `ours` must exist at the same place in `consul` (arrays are
/// compared element-wise by their first element; user maps are skipped).
fn assert_keys_subset(ours: &Value, consul: &Value, path: &str) {
    const USER_MAPS: &[&str] = &[
        "Meta",
        "NodeMeta",
        "ServiceMeta",
        "TaggedAddresses",
        "ServiceTaggedAddresses",
        "Definition",
    ];
    match (ours, consul) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let Some(theirs) = b.get(k) else {
                    panic!("{path}.{k}: key not in Consul's shape");
                };
                if !USER_MAPS.contains(&k.as_str()) {
                    assert_keys_subset(v, theirs, &format!("{path}.{k}"));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if let (Some(x), Some(y)) = (a.first(), b.first()) {
                assert_keys_subset(x, y, &format!("{path}[0]"));
            }
        }
        _ => {}
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(name: &str) -> (T, Value) {
    let consul = fixture(name);
    let ours: T = serde_json::from_value(consul.clone()).unwrap();
    let encoded = serde_json::to_value(&ours).unwrap();
    assert_keys_subset(&encoded, &consul, name);
    (ours, consul)
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn health_service_shape() {
    let (rows, consul): (Vec<CheckServiceNode>, _) = round_trip("health_service.json");
    assert_eq!(rows[0].service.weights.passing, 10);
    assert_eq!(rows[0].aggregate_status(), CheckStatus::Passing);
    let encoded = serde_json::to_value(&rows).unwrap();
    assert_eq!(
        keys(&encoded[0]["Node"]),
        keys(&consul[0]["Node"]),
        "node keys"
    );
    assert_eq!(
        keys(&encoded[0]["Checks"][0]),
        keys(&consul[0]["Checks"][0]),
        "check keys"
    );
}

#[test]
fn catalog_service_shape() {
    let (rows, consul): (Vec<ServiceNode>, _) = round_trip("catalog_service.json");
    assert_eq!(rows[0].service_port, 5000);
    let encoded = serde_json::to_value(&rows).unwrap();
    assert_eq!(keys(&encoded[0]), keys(&consul[0]));
}

#[test]
fn kv_shape() {
    let (entries, consul): (Vec<KvEntry>, _) = round_trip("kv_get.json");
    assert_eq!(entries[0].value.as_deref(), Some(&b"test"[..]));
    assert_eq!(serde_json::to_value(&entries).unwrap(), consul);
}

#[test]
fn session_shape() {
    let consul = fixture("session_info.json");
    // Consul writes `null` for an empty ServiceChecks; we write `[]`, which every client
    // treats the same. Compare the rest exactly.
    let mut normalized = consul.clone();
    normalized[0]["ServiceChecks"] = Value::Array(vec![]);
    let sessions: Vec<Session> = serde_json::from_value(normalized.clone()).unwrap();
    assert_eq!(sessions[0].lock_delay, 15_000_000_000);
    assert_eq!(serde_json::to_value(&sessions).unwrap(), normalized);
}

#[test]
fn service_registration_body_decodes() {
    let body = serde_json::to_vec(&fixture("agent_service_register.json")).unwrap();
    let def: ServiceDefinition = decode_lenient(&body).unwrap();
    assert_eq!(def.id.as_deref(), Some("redis1"));
    assert_eq!(def.weights.unwrap().passing, 10);
    let check = def.check.unwrap();
    assert_eq!(check.args.unwrap().len(), 1);
    assert_eq!(check.interval.unwrap().get().as_secs(), 10);
    assert_eq!(
        check
            .deregister_critical_service_after
            .unwrap()
            .get()
            .as_secs(),
        90 * 60
    );
}

#[test]
fn intention_shape() {
    let (ixn, consul): (Intention, _) = round_trip("intention_exact.json");
    assert_eq!(ixn.precedence, 9);
    // Every key Consul's OSS shape has, except the Enterprise partition fields.
    let mut theirs = keys(&consul);
    theirs.remove("SourcePartition");
    theirs.remove("DestinationPartition");
    assert_eq!(keys(&serde_json::to_value(&ixn).unwrap()), theirs);
}

#[test]
fn service_intentions_entry_round_trips() {
    let consul = fixture("config_service_intentions.json");
    let mut entry = ConfigEntry::from_json(consul.clone()).unwrap();
    entry.validate().unwrap();
    let mut without_indexes = consul;
    let obj = without_indexes.as_object_mut().unwrap();
    obj.remove("CreateIndex");
    obj.remove("ModifyIndex");
    // Sources come back sorted by precedence, then name: api before web.
    let sources = obj["Sources"].as_array_mut().unwrap();
    sources.swap(0, 1);
    assert_eq!(entry.to_json(), without_indexes);
}

/// ACL tokens, policies and roles as Consul's `/v1/acl/*` documents them: every field read,
/// and written back exactly (no invented keys, none dropped).
#[test]
fn acl_shapes() {
    let (token, consul): (AclToken, _) = round_trip("acl_token.json");
    assert_eq!(token.policies[1].name, "node-read");
    assert_eq!(token.node_identities[0].datacenter, "dc2");
    assert_eq!(serde_json::to_value(&token).unwrap(), consul);
    let (policy, consul): (AclPolicy, _) = round_trip("acl_policy.json");
    assert!(concord_api::acl::rules::Rules::parse(&policy.rules).is_ok());
    assert_eq!(serde_json::to_value(&policy).unwrap(), consul);
    let (role, consul): (AclRole, _) = round_trip("acl_role.json");
    assert!(role.service_identities[0].datacenters.is_empty());
    assert_eq!(serde_json::to_value(&role).unwrap(), consul);
    // A create body with only names links decodes (IDs filled in by the server).
    let body = br#"{"description": "x", "policies": [{"name": "node-read"}]}"#;
    let token: AclToken = decode_lenient(body).unwrap();
    assert_eq!(token.policies[0].name, "node-read");
}
