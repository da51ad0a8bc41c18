//! Table tests: Consul's precedence table, wildcard matching, L7 permission matching and the
//! default.

use super::*;
use crate::config_entry::ConfigEntry;
use serde_json::json;

fn ixn(src: &str, dst: &str, action: &str) -> Intention {
    Intention {
        source_name: src.into(),
        destination_name: dst.into(),
        action: action.into(),
        precedence: precedence(src, dst),
        ..Intention::default()
    }
}

fn l7(src: &str, dst: &str, perms: Vec<IntentionPermission>) -> Intention {
    Intention {
        permissions: perms,
        ..ixn(src, dst, "")
    }
}

fn perm(action: &str, http: IntentionHttpPermission) -> IntentionPermission {
    IntentionPermission {
        action: action.into(),
        http: Some(http),
    }
}

#[test]
fn precedence_table_every_oss_row() {
    // Consul's documented table (OSS rows): source, destination, precedence.
    let rows = [
        ("web", "db", 9),
        ("*", "db", 8),
        ("web", "*", 6),
        ("*", "*", 5),
    ];
    for (src, dst, want) in rows {
        assert_eq!(precedence(src, dst), want, "{src} => {dst}");
    }
}

#[test]
fn sort_puts_highest_precedence_first_and_is_stable() {
    let mut list = vec![
        ixn("*", "*", "deny"),
        ixn("web", "*", "allow"),
        ixn("api", "db", "allow"),
        ixn("*", "db", "deny"),
        ixn("web", "db", "allow"),
    ];
    sort_intentions(&mut list);
    let order: Vec<(String, String)> = list
        .iter()
        .map(|i| (i.source_name.clone(), i.destination_name.clone()))
        .collect();
    let want = [
        ("api", "db"),
        ("web", "db"),
        ("*", "db"),
        ("web", "*"),
        ("*", "*"),
    ];
    assert_eq!(
        order,
        want.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    );
}

#[test]
fn evaluation_by_precedence_and_wildcards() {
    // Every precedence row beating every lower row, with the opposite action.
    let all = vec![
        ixn("web", "db", "allow"),
        ixn("*", "db", "deny"),
        ixn("web", "*", "allow"),
        ixn("*", "*", "deny"),
    ];
    let cases = [
        // (source, destination, allowed, matched pair)
        ("web", "db", true, ("web", "db")),   // 9 beats 8, 6, 5
        ("api", "db", false, ("*", "db")),    // 8 beats 5
        ("web", "cache", true, ("web", "*")), // 6 beats 5
        ("api", "cache", false, ("*", "*")),  // 5 only
    ];
    for (src, dst, allowed, (ms, md)) in cases {
        let d = evaluate(&all, src, dst, None, true);
        assert_eq!(d.allowed, allowed, "{src} => {dst}");
        let m = d.matched.expect("a match");
        assert_eq!(
            (m.source_name.as_str(), m.destination_name.as_str()),
            (ms, md)
        );
    }
    // Destination weighs more than source: *→db (8) beats web→* (6).
    let two = vec![ixn("*", "db", "allow"), ixn("web", "*", "deny")];
    assert!(evaluate(&two, "web", "db", None, false).allowed);
    let two = vec![ixn("*", "db", "deny"), ixn("web", "*", "allow")];
    assert!(!evaluate(&two, "web", "db", None, true).allowed);
}

#[test]
fn deny_wins_a_tie() {
    for list in [
        vec![ixn("web", "db", "allow"), ixn("web", "db", "deny")],
        vec![ixn("web", "db", "deny"), ixn("web", "db", "allow")],
    ] {
        let d = evaluate(&list, "web", "db", None, true);
        assert!(!d.allowed);
    }
}

#[test]
fn default_when_nothing_matches() {
    let list = vec![ixn("web", "db", "deny")];
    let d = evaluate(&list, "api", "cache", None, true);
    assert!(d.allowed);
    assert_eq!(d.reason, "ACLs disabled, access is allowed by default");
    assert!(d.matched.is_none());
    let d = evaluate(&[], "api", "cache", None, false);
    assert!(!d.allowed);
    assert_eq!(d.reason, "Default behavior configured by ACLs");
}

#[test]
fn l4_reason_text() {
    let d = evaluate(&[ixn("web", "db", "allow")], "web", "db", None, false);
    assert_eq!(d.reason, "Matched L4 intention: web => db (allow)");
}

#[test]
fn l7_intention_is_deny_for_l4_questions() {
    let list = vec![l7(
        "web",
        "db",
        vec![perm(
            "allow",
            IntentionHttpPermission {
                path_prefix: "/".into(),
                ..Default::default()
            },
        )],
    )];
    let d = evaluate(&list, "web", "db", None, true);
    assert!(!d.allowed);
    assert!(d.reason.starts_with("Matched L7 intention"), "{}", d.reason);
}

#[test]
fn l7_permission_matching_table() {
    let hdr = |f: fn(&mut IntentionHttpHeaderPermission)| {
        let mut h = IntentionHttpHeaderPermission {
            name: "X-Team".into(),
            ..Default::default()
        };
        f(&mut h);
        IntentionHttpPermission {
            header: vec![h],
            ..Default::default()
        }
    };
    let path_exact = IntentionHttpPermission {
        path_exact: "/v1/ok".into(),
        ..Default::default()
    };
    let path_prefix = IntentionHttpPermission {
        path_prefix: "/v1/".into(),
        ..Default::default()
    };
    let path_regex = IntentionHttpPermission {
        path_regex: "/v[0-9]+/items".into(),
        ..Default::default()
    };
    let methods = IntentionHttpPermission {
        methods: vec!["GET".into(), "HEAD".into()],
        ..Default::default()
    };
    let present = hdr(|h| h.present = true);
    let exact = hdr(|h| h.exact = "blue".into());
    let prefix = hdr(|h| h.prefix = "bl".into());
    let suffix = hdr(|h| h.suffix = "ue".into());
    let regex = hdr(|h| h.regex = "b.*e".into());
    let inverted = hdr(|h| {
        h.exact = "blue".into();
        h.invert = true;
    });
    let blue = vec![("x-team".to_string(), "blue".to_string())];
    let red = vec![("X-Team".to_string(), "red".to_string())];
    let none: Vec<(String, String)> = vec![];
    let req = |path: &'static str, method: &'static str, headers: &'static [(String, String)]| {
        HttpRequest {
            path,
            method,
            headers,
        }
    };
    let blue: &'static [(String, String)] = Box::leak(blue.into_boxed_slice());
    let red: &'static [(String, String)] = Box::leak(red.into_boxed_slice());
    let none: &'static [(String, String)] = Box::leak(none.into_boxed_slice());
    let cases: Vec<(&str, &IntentionHttpPermission, HttpRequest<'static>, bool)> = vec![
        ("exact hit", &path_exact, req("/v1/ok", "GET", none), true),
        (
            "exact miss",
            &path_exact,
            req("/v1/ok/more", "GET", none),
            false,
        ),
        (
            "prefix hit",
            &path_prefix,
            req("/v1/anything", "GET", none),
            true,
        ),
        (
            "prefix miss",
            &path_prefix,
            req("/v2/anything", "GET", none),
            false,
        ),
        (
            "regex hit",
            &path_regex,
            req("/v12/items", "GET", none),
            true,
        ),
        (
            "regex is anchored",
            &path_regex,
            req("/x/v1/items", "GET", none),
            false,
        ),
        ("method hit", &methods, req("/", "HEAD", none), true),
        ("method miss", &methods, req("/", "POST", none), false),
        ("present hit", &present, req("/", "GET", red), true),
        ("present miss", &present, req("/", "GET", none), false),
        ("exact header hit", &exact, req("/", "GET", blue), true),
        ("exact header miss", &exact, req("/", "GET", red), false),
        ("prefix header", &prefix, req("/", "GET", blue), true),
        ("suffix header", &suffix, req("/", "GET", blue), true),
        ("suffix header miss", &suffix, req("/", "GET", red), false),
        ("regex header", &regex, req("/", "GET", blue), true),
        ("invert hit", &inverted, req("/", "GET", red), true),
        ("invert miss", &inverted, req("/", "GET", blue), false),
        (
            "invert absent header",
            &inverted,
            req("/", "GET", none),
            true,
        ),
    ];
    for (name, http, request, want) in cases {
        let p = perm("allow", http.clone());
        assert_eq!(permission_matches(&p, &request), want, "{name}");
    }
}

#[test]
fn l7_first_matching_permission_decides_else_default() {
    let list = vec![l7(
        "web",
        "api",
        vec![
            perm(
                "deny",
                IntentionHttpPermission {
                    path_prefix: "/admin".into(),
                    ..Default::default()
                },
            ),
            perm(
                "allow",
                IntentionHttpPermission {
                    path_prefix: "/".into(),
                    methods: vec!["GET".into()],
                    ..Default::default()
                },
            ),
        ],
    )];
    let get = |path| HttpRequest {
        path,
        method: "GET",
        headers: &[],
    };
    assert!(!evaluate(&list, "web", "api", Some(&get("/admin/x")), true).allowed);
    assert!(evaluate(&list, "web", "api", Some(&get("/users")), false).allowed);
    let post = HttpRequest {
        path: "/users",
        method: "POST",
        headers: &[],
    };
    let d = evaluate(&list, "web", "api", Some(&post), false);
    assert!(!d.allowed);
    assert!(d.matched.is_none());
    assert!(evaluate(&list, "web", "api", Some(&post), true).allowed);
}

#[test]
fn entry_validation_texts() {
    let check = |v: serde_json::Value| {
        ConfigEntry::from_json(v)
            .and_then(|mut e| e.validate())
            .map_err(|e| e.0)
    };
    let base = |sources: serde_json::Value| json!({"Kind": "service-intentions", "Name": "db", "Sources": sources});
    assert!(check(base(json!([{"Name": "web", "Action": "allow"}]))).is_ok());
    assert_eq!(
        check(base(json!([{"Name": "web", "Action": "maybe"}]))).unwrap_err(),
        "Sources[0].Action must be set to 'allow' or 'deny'"
    );
    assert_eq!(
        check(base(
            json!([{"Name": "web", "Action": "allow"}, {"Name": "web", "Action": "deny"}])
        ))
        .unwrap_err(),
        "Sources[1] defines \"web\" more than once"
    );
    assert_eq!(
        check(base(json!([{"Name": "we*", "Action": "allow"}]))).unwrap_err(),
        "Sources[0].Name: wildcard character '*' cannot be used with partial values"
    );
    assert!(check(base(json!([{"Name": "web", "Action": "allow", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}]))).is_err());
    assert!(check(base(json!([{"Name": "web", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/", "PathExact": "/a"}}]}]))).is_err());
    assert!(check(base(
        json!([{"Name": "web", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}])
    ))
    .is_ok());
    assert!(check(json!({"Kind": "service-intentions", "Name": "*", "Sources": [{"Name": "web", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}]})).is_err());
}

#[test]
fn entry_sources_sorted_and_converted() {
    let mut e = ConfigEntry::from_json(
        json!({"Kind": "service-intentions", "Name": "db", "Sources": [
            {"Name": "*", "Action": "deny"}, {"Name": "web", "Action": "allow", "LegacyID": "abc"}
        ]}),
    )
    .unwrap();
    e.validate().unwrap();
    let ConfigEntry::ServiceIntentions(entry) = e else {
        panic!("kind")
    };
    assert_eq!(entry.sources[0].name, "web");
    assert_eq!(entry.sources[0].precedence, 9);
    assert_eq!(entry.sources[1].precedence, 8);
    let list = entry_intentions(&entry, 3, 7);
    assert_eq!(list[0].id, "abc");
    assert_eq!(list[0].destination_name, "db");
    assert_eq!(list[0].source_type, "consul");
    assert_eq!((list[0].create_index, list[0].modify_index), (3, 7));
}

#[test]
fn l7_needs_http_protocol() {
    let entry = ServiceIntentions {
        name: "db".into(),
        sources: vec![l7(
            "web",
            "db",
            vec![perm(
                "allow",
                IntentionHttpPermission {
                    path_prefix: "/".into(),
                    ..Default::default()
                },
            )],
        )
        .to_source()],
        ..Default::default()
    };
    assert!(check_l7_allowed(&entry, "http").is_ok());
    assert!(check_l7_allowed(&entry, "grpc").is_ok());
    assert!(check_l7_allowed(&entry, "tcp").is_err());
}

#[test]
fn spiffe_parsing() {
    let ok = parse_spiffe_service(
        "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/web",
    )
    .unwrap();
    assert_eq!(ok.service, "web");
    assert_eq!(ok.datacenter, "dc1");
    for bad in [
        "",
        "http://x/ns/default/dc/dc1/svc/web",
        "spiffe://td/ns/default/svc/web",
        "spiffe:///ns/a/dc/b/svc/c",
        "spiffe://td/ns/default/dc/dc1/svc/",
    ] {
        assert!(parse_spiffe_service(bad).is_err(), "{bad}");
    }
    assert_eq!(
        parse_spiffe_service("spiffe://td/agent/client/dc/dc1/id/x").unwrap_err(),
        "ClientCertURI not a valid Service identifier"
    );
}

#[test]
fn rfc3339_formatting() {
    assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
}
