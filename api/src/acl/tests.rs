//! The rules language and the authorizer, table-tested against Consul's documented
//! precedence (developer.hashicorp.com/consul/docs/security/acl/acl-rules).

use super::authorizer::{Authorizer, DefaultPolicy, Level};
use super::rules::{Access, Global, Resource, Rules};
use super::*;

fn authz(policies: &[&str], default: DefaultPolicy) -> Authorizer {
    let rules: Vec<Rules> = policies.iter().map(|p| Rules::parse(p).unwrap()).collect();
    Authorizer::from_rules("a1b2", &rules, default)
}

#[test]
fn hcl_and_json_parse_to_the_same_rules() {
    let hcl = r#"
        key_prefix "app/" { policy = "read" }
        key "app/secret" { policy = "deny" }
        service "web" {
          policy = "write"
          intentions = "read"
        }
        operator = "read"
        mesh = "write"
    "#;
    let json = r#"{
        "key_prefix": {"app/": {"policy": "read"}},
        "key": [{"app/secret": {"policy": "deny"}}],
        "service": {"web": {"policy": "write", "intentions": "read"}},
        "operator": "read",
        "mesh": "write"
    }"#;
    let (a, b) = (Rules::parse(hcl).unwrap(), Rules::parse(json).unwrap());
    assert_eq!(a.global, b.global);
    let sorted = |r: &Rules| {
        let mut v: Vec<_> = r
            .named
            .iter()
            .map(|n| (n.resource, n.prefix, n.name.clone(), n.policy, n.intentions))
            .collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&a), sorted(&b));
    assert_eq!(a.named.len(), 3);
    assert_eq!(a.global.get(&Global::Operator), Some(&Access::Read));
    assert_eq!(Rules::parse("").unwrap(), Rules::default());
}

#[test]
fn invalid_rules_fail_with_consuls_texts() {
    let cases = [
        (
            r#"key "foo" { policy = "nope" }"#,
            "Invalid key policy: &acl.KeyRule{Prefix:\"foo\", Policy:\"nope\"}",
        ),
        (
            r#"service_prefix "" { policy = "list" }"#,
            "Invalid service_prefix policy: &acl.ServiceRule{Name:\"\", Policy:\"list\", Intentions:\"\"}",
        ),
        (
            "service \"web\" {\n policy = \"read\"\n intentions = \"all\"\n}",
            "Invalid service intentions policy: &acl.ServiceRule{Name:\"web\", Policy:\"read\", Intentions:\"all\"}",
        ),
        (r#"operator = "admin""#, "Invalid operator policy: \"admin\""),
        (r#"acl = "list""#, "Invalid acl policy: \"list\""),
        (
            r#"node_prefix "" { }"#,
            "Invalid node_prefix policy: &acl.NodeRule{Name:\"\", Policy:\"\"}",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(Rules::parse(input).unwrap_err().0, want, "{input}");
    }
    for broken in [
        "key \"a\" {",
        "{\"key\": 3}",
        "key \"a\" \"b\" { policy = \"read\" }",
    ] {
        let err = Rules::parse(broken).unwrap_err().0;
        assert!(
            err.starts_with("Failed to parse ACL rules: "),
            "{broken}: {err}"
        );
    }
    // `list` is a key policy.
    assert!(Rules::parse(r#"key_prefix "" { policy = "list" }"#).is_ok());
}

#[test]
fn precedence_table() {
    use DefaultPolicy::{Allow, Deny};
    use Level::{List, Read, Write};
    use Resource::{Key, Node, Service};
    // The docs' KV example: a broad read, a writable subtree, a denied corner, and an exact
    // rule inside the denied corner.
    let kv = r#"
        key_prefix "" { policy = "read" }
        key_prefix "foo/" { policy = "write" }
        key_prefix "foo/private/" { policy = "deny" }
        key "foo/private/readme" { policy = "read" }
        key "bar" { policy = "deny" }
    "#;
    // Two policies naming the same thing: deny beats write beats read.
    let merged_a = r#"service "web" { policy = "write" }
                      service_prefix "db" { policy = "read" }"#;
    let merged_b = r#"service "web" { policy = "deny" }
                      service_prefix "db" { policy = "write" }"#;
    // (policies, default, resource, name, level, allowed?)
    type Case<'a> = (&'a [&'a str], DefaultPolicy, Resource, &'a str, Level, bool);
    let table: &[Case<'_>] = &[
        // Longest prefix wins.
        (&[kv], Deny, Key, "anything", Read, true),
        (&[kv], Deny, Key, "anything", Write, false),
        (&[kv], Deny, Key, "foo/x", Write, true),
        (&[kv], Deny, Key, "foo/private/x", Read, false),
        (&[kv], Allow, Key, "foo/private/x", Read, false),
        // Exact beats prefix, even a longer-matching denied prefix.
        (&[kv], Deny, Key, "foo/private/readme", Read, true),
        (&[kv], Deny, Key, "foo/private/readme", Write, false),
        (&[kv], Deny, Key, "bar", Read, false),
        (&[kv], Deny, Key, "barn", Read, true),
        // Deny beats allow at equal match, across policies.
        (&[merged_a, merged_b], Allow, Service, "web", Read, false),
        (&[merged_a, merged_b], Deny, Service, "db-1", Write, true),
        // No rule: the default policy.
        (&[merged_a], Allow, Node, "n1", Write, true),
        (&[merged_a], Deny, Node, "n1", Read, false),
        // `list` grants read and list, not write; `read` does not grant list.
        (
            &[r#"key_prefix "l/" { policy = "list" }"#],
            Deny,
            Key,
            "l/a",
            List,
            true,
        ),
        (
            &[r#"key_prefix "l/" { policy = "list" }"#],
            Deny,
            Key,
            "l/a",
            Read,
            true,
        ),
        (
            &[r#"key_prefix "l/" { policy = "list" }"#],
            Deny,
            Key,
            "l/a",
            Write,
            false,
        ),
        (
            &[r#"key_prefix "r/" { policy = "read" }"#],
            Deny,
            Key,
            "r/a",
            List,
            false,
        ),
        // The empty prefix matches everything.
        (
            &[r#"node_prefix "" { policy = "write" }"#],
            Deny,
            Node,
            "x",
            Write,
            true,
        ),
    ];
    for (policies, default, resource, name, level, want) in table {
        let a = authz(policies, *default);
        assert_eq!(
            a.allows(*resource, name, *level),
            *want,
            "{resource:?} {name:?} {level:?} with {policies:?} (default {default:?})"
        );
    }
}

#[test]
fn globals_intentions_and_recursive_writes() {
    let a = authz(
        &[r#"
        operator = "read"
        service "web" { policy = "write" }
        service "api" {
          policy = "read"
          intentions = "write"
        }
        key_prefix "app/" { policy = "write" }
        key "app/locked" { policy = "read" }
    "#],
        DefaultPolicy::Allow,
    );
    assert!(a.allows_global(Global::Operator, Level::Read));
    assert!(!a.allows_global(Global::Operator, Level::Write));
    // `mesh` falls back to `operator`; `acl` never falls back to the default.
    assert!(a.allows_global(Global::Mesh, Level::Read));
    assert!(!a.allows_global(Global::Mesh, Level::Write));
    assert!(!a.allows_global(Global::Acl, Level::Read));
    assert!(a.allows_global(Global::Keyring, Level::Write));
    // Intentions derive read from a write service rule unless given.
    assert!(a.allows_intention("web", Level::Read));
    assert!(!a.allows_intention("web", Level::Write));
    assert!(a.allows_intention("api", Level::Write));
    // A recursive delete needs write on everything below.
    assert!(!a.allows_key_write_prefix("app/"));
    assert!(a.allows_key_write_prefix("app/other/"));
    let m = Authorizer::management("m");
    assert!(m.allows_global(Global::Acl, Level::Write));
    assert!(m.allows_key_write_prefix(""));
}

#[test]
fn denials_read_as_consuls() {
    let a = authz(&[], DefaultPolicy::Deny);
    assert_eq!(
        a.require(Resource::Key, "foo", Level::Write)
            .unwrap_err()
            .to_string(),
        "Permission denied: token with AccessorID 'a1b2' lacks permission 'key:write' on \"foo\""
    );
    assert_eq!(
        a.require_global(Global::Acl, Level::Read)
            .unwrap_err()
            .to_string(),
        "Permission denied: token with AccessorID 'a1b2' lacks permission 'acl:read'"
    );
    let anon = Authorizer::default_only(ANONYMOUS_TOKEN_ID, DefaultPolicy::Deny);
    assert_eq!(
        anon.require(Resource::Key, "k", Level::Read)
            .unwrap_err()
            .to_string(),
        "Permission denied: anonymous token lacks permission 'key:read' on \"k\". The anonymous \
         token is used implicitly when a request does not specify a token."
    );
}

#[test]
fn tokens_resolve_through_identities_templates_and_management() {
    let token = AclToken {
        accessor_id: "t".into(),
        ..AclToken::default()
    };
    let resolved = |policies: Vec<AclPolicy>| ResolvedToken {
        token: token.clone(),
        policies,
        service_identities: vec![AclServiceIdentity {
            service_name: "web".into(),
            datacenters: vec![],
        }],
        node_identities: vec![AclNodeIdentity {
            node_name: "n1".into(),
            datacenter: "dc2".into(),
        }],
        templated_policies: vec![AclTemplatedPolicy {
            template_name: templated::DNS.into(),
            template_variables: None,
            datacenters: vec![],
        }],
    };
    let a = Authorizer::for_token(&resolved(vec![]), "dc1", DefaultPolicy::Deny);
    assert!(a.allows(Resource::Service, "web-sidecar-proxy", Level::Write));
    assert!(a.allows(Resource::Service, "other", Level::Read));
    assert!(!a.allows(Resource::Service, "other", Level::Write));
    assert!(a.allows(Resource::Query, "q", Level::Read));
    // The node identity is for another datacenter.
    assert!(!a.allows(Resource::Node, "n1", Level::Write));
    let scoped = AclPolicy {
        rules: r#"key_prefix "" { policy = "write" }"#.into(),
        datacenters: vec!["dc2".into()],
        ..AclPolicy::default()
    };
    let a = Authorizer::for_token(&resolved(vec![scoped]), "dc1", DefaultPolicy::Deny);
    assert!(!a.allows(Resource::Key, "k", Level::Read));
    let m = Authorizer::for_token(
        &resolved(vec![AclPolicy::global_management()]),
        "dc1",
        DefaultPolicy::Deny,
    );
    assert!(m.is_management());
    // The management policy's own rules parse and grant everything too.
    let rules = Rules::parse(GLOBAL_MANAGEMENT_RULES).unwrap();
    let r = Authorizer::from_rules("x", &[rules], DefaultPolicy::Deny);
    assert!(r.allows_global(Global::Acl, Level::Write));
    assert!(r.allows_intention("any", Level::Write));
}

#[test]
fn templated_policies_render_and_require_their_name() {
    let with = |name: &str| AclTemplatedPolicy {
        template_name: templated::SERVICE.into(),
        template_variables: Some(AclTemplatedPolicyVariables { name: name.into() }),
        datacenters: vec![],
    };
    let rules = templated::render(&with("api")).unwrap();
    assert!(rules.contains("service \"api-sidecar-proxy\""));
    assert!(Rules::parse(&rules).is_ok());
    assert!(templated::render(&with("")).is_err());
    assert!(templated::render(&AclTemplatedPolicy {
        template_name: "builtin/nope".into(),
        ..AclTemplatedPolicy::default()
    })
    .is_err());
    assert_eq!(templated::list().len(), 3);
}

#[test]
fn secrets_never_show_in_debug() {
    let token = AclToken {
        secret_id: "s3cr3t".into(),
        ..AclToken::default()
    };
    assert!(!format!("{token:?}").contains("s3cr3t"));
    let q = AclQuery::Resolve {
        secret_id: "s3cr3t".into(),
    };
    assert!(!format!("{q:?}").contains("s3cr3t"));
}
