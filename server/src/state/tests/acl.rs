//! The ACL tables, driven through the leader's command builder (`crate::acl::command`) and
//! `apply`, as the write path does.

use concord_api::acl::{
    AclLink, AclPolicy, AclQuery, AclResult, AclRole, AclToken, AclWrite, ANONYMOUS_TOKEN_ID,
    GLOBAL_MANAGEMENT_POLICY_ID,
};

use super::*;

/// Builds the command on the current state and applies it at `index`.
fn acl_write(store: &StateStore, index: u64, write: AclWrite) -> Result<AclResult, RpcError> {
    let cmd = store.view(|t| crate::acl::command(t, write, 1_700_000_000_000))?;
    match store.apply(index, &cmd)? {
        WriteResult::Acl(r) => Ok(r),
        other => panic!("unexpected result {other:?}"),
    }
}

fn acl_query(store: &StateStore, q: AclQuery) -> AclResult {
    match query(store, Query::Acl(q)).1 {
        QueryResult::Acl(r) => r,
        other => panic!("unexpected result {other:?}"),
    }
}

#[test]
fn bootstrap_once_then_permission_denied_with_the_reset_index() {
    let store = StateStore::new();
    let AclResult::Token(Some(token)) = acl_write(&store, 5, AclWrite::Bootstrap).unwrap() else {
        panic!("no token")
    };
    assert_eq!(token.policies[0].name, "global-management");
    assert!(!token.secret_id.is_empty());
    assert_eq!(token.create_index, 5);
    let err = acl_write(&store, 6, AclWrite::Bootstrap).unwrap_err();
    assert_eq!(
        err,
        RpcError::PermissionDenied(
            "Permission denied: ACL bootstrap no longer allowed (reset index: 5)".into()
        )
    );
    // Two bootstraps proposed together: the second fails when it applies.
    let store = StateStore::new();
    let first = store
        .view(|t| crate::acl::command(t, AclWrite::Bootstrap, 1))
        .unwrap();
    let second = store
        .view(|t| crate::acl::command(t, AclWrite::Bootstrap, 1))
        .unwrap();
    apply_ok(&store, 3, first);
    assert!(matches!(
        apply_err(&store, 4, second),
        RpcError::PermissionDenied(_)
    ));
}

#[test]
fn builtins_exist_without_writes_and_resist_deletion() {
    let store = StateStore::new();
    let AclResult::Policy(Some(p)) = acl_query(
        &store,
        AclQuery::Policy {
            id: GLOBAL_MANAGEMENT_POLICY_ID.into(),
        },
    ) else {
        panic!("no builtin policy")
    };
    assert_eq!(p.name, "global-management");
    let AclResult::Token(Some(anon)) = acl_query(
        &store,
        AclQuery::Token {
            accessor_id: ANONYMOUS_TOKEN_ID.into(),
        },
    ) else {
        panic!("no anonymous token")
    };
    assert_eq!(anon.secret_id, "anonymous");
    let err = acl_write(
        &store,
        2,
        AclWrite::PolicyDelete {
            id: GLOBAL_MANAGEMENT_POLICY_ID.into(),
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("not permitted"), "{err}");
    assert!(acl_write(
        &store,
        3,
        AclWrite::TokenDelete {
            accessor_id: ANONYMOUS_TOKEN_ID.into()
        }
    )
    .is_err());
}

#[test]
fn policies_roles_and_tokens_link_and_resolve() {
    let store = StateStore::new();
    let policy = |name: &str, rules: &str| {
        AclWrite::PolicySet(AclPolicy {
            name: name.into(),
            rules: rules.into(),
            ..AclPolicy::default()
        })
    };
    let AclResult::Policy(Some(p)) = acl_write(
        &store,
        2,
        policy("app-read", r#"key_prefix "app/" { policy = "read" }"#),
    )
    .unwrap() else {
        panic!()
    };
    assert!(!p.hash.is_empty());
    // Names are unique; bad rules are refused with Consul's text.
    let dup = acl_write(&store, 3, policy("app-read", "")).unwrap_err();
    assert_eq!(
        dup.to_string(),
        "Invalid Policy: A Policy with Name \"app-read\" already exists"
    );
    let bad = acl_write(&store, 3, policy("bad", r#"key "a" { policy = "all" }"#)).unwrap_err();
    assert!(bad.to_string().starts_with("Invalid key policy"), "{bad}");
    let AclResult::Role(Some(role)) = acl_write(
        &store,
        4,
        AclWrite::RoleSet(AclRole {
            name: "reader".into(),
            policies: vec![AclLink {
                id: String::new(),
                name: "app-read".into(),
            }],
            ..AclRole::default()
        }),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(role.policies[0].id, p.id, "linked by name, stored by ID");
    let AclResult::Token(Some(token)) = acl_write(
        &store,
        5,
        AclWrite::TokenSet {
            token: AclToken {
                description: "through the role".into(),
                roles: vec![AclLink {
                    id: role.id.clone(),
                    name: String::new(),
                }],
                ..AclToken::default()
            },
            create: true,
        },
    )
    .unwrap() else {
        panic!()
    };
    let AclResult::Resolved(Some(resolved)) = acl_query(
        &store,
        AclQuery::Resolve {
            secret_id: token.secret_id.clone(),
        },
    ) else {
        panic!("token does not resolve")
    };
    assert_eq!(resolved.policies.len(), 1);
    assert_eq!(resolved.policies[0].name, "app-read");
    // Linking an unknown policy is refused; the token list filters by role.
    let missing = acl_write(
        &store,
        6,
        AclWrite::TokenSet {
            token: AclToken {
                policies: vec![AclLink {
                    id: String::new(),
                    name: "nope".into(),
                }],
                ..AclToken::default()
            },
            create: true,
        },
    )
    .unwrap_err();
    assert_eq!(missing.to_string(), "No such ACL policy with name \"nope\"");
    let AclResult::Tokens(list) = acl_query(
        &store,
        AclQuery::Tokens {
            policy: None,
            role: Some(role.id.clone()),
        },
    ) else {
        panic!()
    };
    assert_eq!(list.len(), 1);
    // Deleting the policy drops it from every link.
    acl_write(&store, 7, AclWrite::PolicyDelete { id: p.id.clone() }).unwrap();
    let AclResult::Role(Some(role)) = acl_query(&store, AclQuery::Role { id: role.id }) else {
        panic!()
    };
    assert!(role.policies.is_empty());
    let (index, _) = query(&store, Query::Acl(AclQuery::Policies));
    assert_eq!(index, 7, "ACL reads report the ACL tables' index");
}

#[test]
fn expired_tokens_do_not_resolve() {
    let store = StateStore::new();
    // The builder stamps 2023 as "now": one hour later has long passed.
    let AclResult::Token(Some(token)) = acl_write(
        &store,
        2,
        AclWrite::TokenSet {
            token: AclToken {
                expiration_ttl: "1h".into(),
                ..AclToken::default()
            },
            create: true,
        },
    )
    .unwrap() else {
        panic!()
    };
    assert!(token
        .expiration_time
        .as_deref()
        .unwrap()
        .starts_with("2023-11-14T23:13:20"));
    let resolved = acl_query(
        &store,
        AclQuery::Resolve {
            secret_id: token.secret_id,
        },
    );
    assert_eq!(resolved, AclResult::Resolved(None));
    // A second token with the same secret is refused, even when built before the first
    // applied (the check also runs at apply time).
    let store = StateStore::new();
    let with_secret = || AclWrite::TokenSet {
        token: AclToken {
            secret_id: "same".into(),
            ..AclToken::default()
        },
        create: true,
    };
    let first = store
        .view(|t| crate::acl::command(t, with_secret(), 1))
        .unwrap();
    let second = store
        .view(|t| crate::acl::command(t, with_secret(), 1))
        .unwrap();
    apply_ok(&store, 2, first);
    assert_eq!(
        apply_err(&store, 3, second).to_string(),
        "Invalid Token: SecretID is already in use"
    );
}
