//! Parsing (every operator and quoting form, precedence, errors) and evaluation against the
//! JSON shapes of Consul's list endpoints.

use serde_json::{json, Value};

use super::*;

// ---- AST builders.

fn sel(path: &str) -> Vec<String> {
    path.split('.').map(String::from).collect()
}

fn m(path: &str, test: Test, negated: bool) -> Expr {
    Expr::Match(Match {
        selector: sel(path),
        test,
        negated,
    })
}

fn eq(path: &str, value: &str) -> Expr {
    m(path, Test::Equal(value.into()), false)
}

fn ne(path: &str, value: &str) -> Expr {
    m(path, Test::Equal(value.into()), true)
}

fn contains(path: &str, value: &str) -> Expr {
    m(path, Test::Contains(value.into()), false)
}

fn not_contains(path: &str, value: &str) -> Expr {
    m(path, Test::Contains(value.into()), true)
}

fn matches(path: &str, pattern: &str) -> Expr {
    let re = regex::Regex::new(pattern).unwrap();
    m(path, Test::Matches(Pattern(re)), false)
}

fn not_matches(path: &str, pattern: &str) -> Expr {
    let re = regex::Regex::new(pattern).unwrap();
    m(path, Test::Matches(Pattern(re)), true)
}

fn is_empty(path: &str, negated: bool) -> Expr {
    m(path, Test::IsEmpty, negated)
}

fn and(terms: Vec<Expr>) -> Expr {
    Expr::And(terms)
}

fn or(terms: Vec<Expr>) -> Expr {
    Expr::Or(terms)
}

fn not(inner: Expr) -> Expr {
    Expr::Not(Box::new(inner))
}

fn parsed(src: &str) -> Expr {
    match Filter::parse(src) {
        Ok(Filter { expr: Some(expr) }) => expr,
        other => panic!("{src:?} parsed to {other:?}"),
    }
}

fn assert_parses(cases: Vec<(&str, Expr)>) {
    for (src, want) in cases {
        assert_eq!(parsed(src), want, "{src:?}");
    }
}

// ---- Parsing.

#[test]
fn parses_every_operator() {
    assert_parses(vec![
        ("Node.Meta.env == prod", eq("Node.Meta.env", "prod")),
        ("Node.Meta.env==\"prod\"", eq("Node.Meta.env", "prod")),
        ("Node.Meta.env != prod", ne("Node.Meta.env", "prod")),
        ("Node.Meta.env!=prod", ne("Node.Meta.env", "prod")),
        (
            "Service.Tags contains \"v1\"",
            contains("Service.Tags", "v1"),
        ),
        (
            "Service.Tags not contains v1",
            not_contains("Service.Tags", "v1"),
        ),
        ("\"v1\" in Service.Tags", contains("Service.Tags", "v1")),
        ("v1 in Service.Tags", contains("Service.Tags", "v1")),
        ("v1 not in Service.Tags", not_contains("Service.Tags", "v1")),
        (
            "Service.Service matches \"^web-\"",
            matches("Service.Service", "^web-"),
        ),
        (
            "Service.Service not matches `\\d+$`",
            not_matches("Service.Service", "\\d+$"),
        ),
        ("NodeMeta is empty", is_empty("NodeMeta", false)),
        ("NodeMeta is not empty", is_empty("NodeMeta", true)),
        ("Service.Port == 8080", eq("Service.Port", "8080")),
        ("Service.Port == -1.5", eq("Service.Port", "-1.5")),
        ("Service.Port == 0", eq("Service.Port", "0")),
        ("A_b2.c == true", eq("A_b2.c", "true")),
    ]);
}

#[test]
fn parses_selector_and_value_forms() {
    let key = |parts: &[&str], test: Test| {
        Expr::Match(Match {
            selector: parts.iter().map(|p| p.to_string()).collect(),
            test,
            negated: false,
        })
    };
    assert_parses(vec![
        (
            "ServiceMeta[\"app.kubernetes.io/name\"] == web",
            key(
                &["ServiceMeta", "app.kubernetes.io/name"],
                Test::Equal("web".into()),
            ),
        ),
        (
            "ServiceMeta[ `a b` ].x is empty",
            key(&["ServiceMeta", "a b", "x"], Test::IsEmpty),
        ),
        (
            "x in Meta[\"k\"][\"l\"]",
            key(&["Meta", "k", "l"], Test::Contains("x".into())),
        ),
        // An unquoted value is a selector, standing for its dotted text.
        ("Name == a.b", eq("Name", "a.b")),
        ("Name == a[\"b c\"]", eq("Name", "a.b c")),
        // Go escapes in double quotes; backticks are raw, less carriage returns.
        ("Name == \"tab\\there\"", eq("Name", "tab\there")),
        (
            "Name == \"\\x41\\101\\u00e9\\U0001F600\\\\\"",
            eq("Name", "AAé😀\\"),
        ),
        (
            "Name == \"\\a\\b\\f\\n\\r\\v\"",
            eq("Name", "\x07\x08\x0c\n\r\x0b"),
        ),
        ("Name == `C:\\dir\\n`", eq("Name", "C:\\dir\\n")),
        ("Name == `a\r\nb`", eq("Name", "a\nb")),
        ("Name == \"\"", eq("Name", "")),
        (
            "Name == \"sp ace (and) more\"",
            eq("Name", "sp ace (and) more"),
        ),
        ("Name == \"ünï\"", eq("Name", "ünï")),
        // Whitespace anywhere between tokens, including newlines and tabs.
        (" \t\r\n Name == x \n", eq("Name", "x")),
        // Keywords are only keywords where the grammar wants one.
        ("not == 1", eq("not", "1")),
        ("notify == 1", eq("notify", "1")),
        (
            "order == 1 or android == 2",
            or(vec![eq("order", "1"), eq("android", "2")]),
        ),
        (
            "Name == and and in == or",
            and(vec![eq("Name", "and"), eq("in", "or")]),
        ),
        ("empty is empty", is_empty("empty", false)),
    ]);
}

#[test]
fn precedence_and_grouping() {
    let (a, b, c) = (eq("a", "1"), eq("b", "2"), eq("c", "3"));
    assert_parses(vec![
        (
            "a == 1 or b == 2 and c == 3",
            or(vec![a.clone(), and(vec![b.clone(), c.clone()])]),
        ),
        (
            "a == 1 and b == 2 or c == 3",
            or(vec![and(vec![a.clone(), b.clone()]), c.clone()]),
        ),
        (
            "not a == 1 and b == 2",
            and(vec![not(a.clone()), b.clone()]),
        ),
        (
            "not a == 1 or not b == 2",
            or(vec![not(a.clone()), not(b.clone())]),
        ),
        (
            "not (a == 1 and b == 2)",
            not(and(vec![a.clone(), b.clone()])),
        ),
        (
            "(a == 1 or b == 2) and c == 3",
            and(vec![or(vec![a.clone(), b.clone()]), c.clone()]),
        ),
        (
            "a == 1 or b == 2 or c == 3",
            or(vec![a.clone(), b.clone(), c.clone()]),
        ),
        (
            "a == 1 and (b == 2 and c == 3)",
            and(vec![a.clone(), and(vec![b.clone(), c.clone()])]),
        ),
        ("((a == 1))", a.clone()),
        ("( a == 1 )", a.clone()),
        ("not not a == 1", a.clone()),
        ("not not not a == 1", not(a.clone())),
        ("not (not a == 1)", a.clone()),
    ]);
}

#[test]
fn empty_expression_keeps_everything() {
    let filter = Filter::parse("").unwrap();
    assert_eq!(filter, Filter { expr: None });
    assert!(filter.matches(&json!({"Anything": 1})));
    let list = json!([1, {"a": 2}]);
    assert_eq!(filter.apply(list.clone()), list);
}

#[test]
fn filters_compare_by_source() {
    let src = "Service.Service matches \"^web\" and Service.Port == 80";
    assert_eq!(Filter::parse(src).unwrap(), Filter::parse(src).unwrap());
    assert_ne!(
        Filter::parse("A matches x").unwrap(),
        Filter::parse("A matches y").unwrap()
    );
}

#[test]
fn malformed_expressions_are_rejected_with_a_reason() {
    let deep_parens = format!("{}a == 1{}", "(".repeat(200), ")".repeat(200));
    let deep_nots = format!("{}a == 1", "not ".repeat(200));
    let cases: Vec<(&str, &str)> =
        vec![
        // Unbalanced parentheses.
        ("(a == 1", "1:8 (7): unmatched parenthesis: expected \")\" to close the \"(\" at 1:1 (0)"),
        ("((a == 1) and b == 2", "unmatched parenthesis"),
        ("a == 1)", "1:7 (6): syntax error: expected \"and\", \"or\" or end of input, found \")\""),
        ("()", "1:2 (1): syntax error: expected expression, found \")\""),
        // Missing pieces.
        ("a ==", "1:5 (4): syntax error: expected value, found end of input"),
        ("a == ", "1:6 (5): syntax error: expected value, found end of input"),
        ("a contains", "expected value, found end of input"),
        ("\"x\" in", "expected selector, found end of input"),
        ("a is", "expected \"empty\" or \"not\", found end of input"),
        ("a == 1 and", "1:11 (10): syntax error: expected expression, found end of input"),
        ("a == 1 or ", "expected expression, found end of input"),
        ("== 1", "1:1 (0): syntax error: expected expression, found \"==\""),
        ("   ", "1:4 (3): syntax error: expected expression, found end of input"),
        (
            "a",
            "expected \"==\", \"!=\", \"contains\", \"not\", \"matches\", \"is\" or \"in\", \
             found end of input",
        ),
        // Unknown operators.
        (
            "a = b",
            "1:3 (2): syntax error: expected \"==\", \"!=\", \"contains\", \"not\", \"matches\", \
             \"is\" or \"in\", found \"=\"",
        ),
        ("a equals b", "found \"equals\""),
        ("a == 1 xor b == 2", "expected \"and\", \"or\" or end of input, found \"xor\""),
        ("a. == 1", "1:3 (2): syntax error: expected field name, found \" \""),
        // An unquoted value is a selector, which cannot hold `-`.
        ("ServiceName == api-internal", "found \"-internal\""),
        // Keywords need whitespace around them, as in go-bexpr.
        ("not(a == 1)", "1:4 (3): syntax error: expected whitespace"),
        ("a == 1 or(b == 2)", "expected whitespace"),
        ("a == \"x\"and b == 2", "expected whitespace"),
        ("a contains\"x\"", "expected whitespace"),
        // Literals.
        ("a == \"unterminated", "1:6 (5): unterminated string literal"),
        ("a == `unterminated", "unterminated string literal"),
        ("a == 10.0.0.1", "1:10 (9): invalid number literal"),
        ("a == 1x", "invalid number literal"),
        ("a == 007", "invalid number literal"),
        ("a == -x", "expected digit"),
        ("a == \"a\\\"b\"", "ends at the first '\"'"),
        ("a == \"\\q\"", "unknown escape sequence \\q"),
        ("a == \"\\'\"", "unknown escape sequence \\'"),
        ("a == \"\\x4\"", "needs 2 base-16 digits"),
        ("a == \"\\xff\"", "invalid UTF-8"),
        ("a == \"\\400\"", "above \\377"),
        ("a == \"\\ud800\"", "not a Unicode scalar value"),
        ("a == \"two\nlines\"", "cannot span lines"),
        // Indexes and selectors.
        ("a[x] == 1", "1:3 (2): invalid index"),
        ("a[\"x\" == 1", "unclosed index expression"),
        ("a[\"x == 1", "unterminated string literal"),
        ("\"x\" in 5", "1:8 (7): invalid selector"),
        // Validation after parsing.
        (
            "a matches \"(\"",
            "1:11 (10): failed to compile regular expression \"(\": unclosed group",
        ),
        // A syntax error is reported ahead of a bad pattern earlier in the text.
        ("a matches \"(\" and", "expected expression"),
        (&deep_parens, "nests more than 128 levels"),
        (&deep_nots, "nests more than 128 levels"),
        // Line and column count lines and chars, the offset bytes.
        ("a == \"é\" and\n  b ==", "2:7 (20): syntax error: expected value"),
    ];
    for (src, want) in cases {
        let err = Filter::parse(src).expect_err(src).to_string();
        assert!(
            err.starts_with("Failed to create boolean expression evaluator: "),
            "{src:?}: {err}"
        );
        assert!(err.contains(want), "{src:?}:\n  got  {err}\n  want {want}");
    }
}

#[test]
fn nesting_up_to_the_cap_parses() {
    let parens = format!(
        "{}a == 1{}",
        "(".repeat(MAX_NESTING),
        ")".repeat(MAX_NESTING)
    );
    assert_eq!(parsed(&parens), eq("a", "1"));
    let nots = format!("{}a == 1", "not ".repeat(MAX_NESTING));
    assert_eq!(parsed(&nots), eq("a", "1"));
}

// ---- Evaluation.

/// One `/v1/health/service/web` entry: a passing node check and a critical service check.
fn health_entry() -> Value {
    json!({
        "Node": {
            "ID": "40e4a748-2192-161a-0510-9bf59fe950b5",
            "Node": "node-1",
            "Address": "10.1.10.12",
            "Datacenter": "dc1",
            "TaggedAddresses": {"lan": "10.1.10.12", "wan": "198.18.0.12"},
            "Meta": {"env": "prod", "instance_type": "t2.medium"},
            "CreateIndex": 5,
            "ModifyIndex": 7
        },
        "Service": {
            "ID": "web-1",
            "Service": "web",
            "Tags": ["v1", "primary"],
            "Address": "10.1.10.12",
            "TaggedAddresses": {"lan": {"Address": "10.1.10.12", "Port": 8080}},
            "Meta": {"version": "2", "app.kubernetes.io/name": "web"},
            "Port": 8080,
            "Weights": {"Passing": 10, "Warning": 1},
            "EnableTagOverride": false,
            "Proxy": {"MeshGateway": {}, "Expose": {}},
            "Connect": {},
            "CreateIndex": 10,
            "ModifyIndex": 12
        },
        "Checks": [
            {
                "Node": "node-1",
                "CheckID": "serfHealth",
                "Name": "Serf Health Status",
                "Status": "passing",
                "Notes": "",
                "Output": "Agent alive and reachable",
                "ServiceID": "",
                "ServiceName": "",
                "ServiceTags": [],
                "Type": "",
                "CreateIndex": 5,
                "ModifyIndex": 5
            },
            {
                "Node": "node-1",
                "CheckID": "service:web-1",
                "Name": "Service 'web' check",
                "Status": "critical",
                "Notes": "",
                "Output": "dial tcp 10.1.10.12:8080: connection refused",
                "ServiceID": "web-1",
                "ServiceName": "web",
                "ServiceTags": ["v1", "primary"],
                "Type": "http",
                "CreateIndex": 10,
                "ModifyIndex": 14
            }
        ]
    })
}

fn assert_evaluates(item: &Value, cases: &[(&str, bool)]) {
    for &(src, want) in cases {
        let filter = Filter::parse(src).unwrap_or_else(|e| panic!("{src:?}: {e}"));
        assert_eq!(filter.matches(item), want, "{src:?}");
    }
}

#[test]
fn health_service_entry() {
    assert_evaluates(
        &health_entry(),
        &[
            // Arrays of strings at the selector's end: membership.
            ("Service.Tags contains \"v1\"", true),
            ("Service.Tags contains v2", false),
            ("\"primary\" in Service.Tags", true),
            ("v2 not in Service.Tags", true),
            ("Service.Tags not contains v1", false),
            ("Service.Tags is not empty", true),
            // Maps: values by key, membership of keys.
            ("Node.Meta.env == prod", true),
            ("Node.Meta.env == \"staging\"", false),
            ("Node.Meta.env != staging", true),
            ("Node.Meta contains env", true),
            ("instance_type in Node.Meta", true),
            ("prod in Node.Meta", false),
            ("Service.Meta[\"app.kubernetes.io/name\"] == web", true),
            ("Service.TaggedAddresses.lan.Port == 8080", true),
            // Crossing the Checks array: true if any check matches.
            ("Checks.Status == critical", true),
            ("Checks.Status == warning", false),
            ("Checks.Status != passing", true),
            ("Checks.Status != critical", true),
            ("not Checks.Status == critical", false),
            ("not Checks.Status == warning", true),
            // Each term picks its own check.
            (
                "Checks.Status == passing and Checks.Status == critical",
                true,
            ),
            ("Checks.ServiceTags contains v1", true),
            ("Checks.ServiceTags is empty", true),
            ("Checks.Output matches \"refused$\"", true),
            ("Checks.CheckID == serfHealth", true),
            // Numbers and booleans compare after Go's coercion of the value.
            ("Service.Port == 8080", true),
            ("Service.Port == \"8080\"", true),
            ("Service.Port == \"0x1F90\"", true),
            ("Service.Port == 8080.0", true),
            ("Service.Port != 8080", false),
            ("Service.Port == 80", false),
            ("Service.Port == web", false),
            ("Service.Weights.Passing == 10", true),
            ("Service.EnableTagOverride == false", true),
            ("Service.EnableTagOverride == False", true),
            ("Service.EnableTagOverride == 0", true),
            ("Service.EnableTagOverride == true", false),
            ("Service.EnableTagOverride == yes", false),
            // Strings.
            ("Service.Service matches \"^we\"", true),
            ("Service.Service not matches \"^db\"", true),
            ("Service.Service matches \"^db\"", false),
            ("Service.Address contains \"10.1.\"", true),
            ("\"10.2.\" in Service.Address", false),
            ("Service.Service is not empty", true),
            ("Service.Proxy.Expose is empty", true),
            ("Service.Connect is empty", true),
            // Operators that do not apply to the JSON type found are false.
            ("Service.Port matches \"80\"", false),
            ("Service.Port not matches \"80\"", true),
            ("Service.Tags == v1", false),
            ("Service.Port contains 8", false),
            ("Service.Port is empty", false),
            // Missing fields: go-bexpr's missing map key.
            ("Node.Meta.missing == prod", false),
            ("Node.Meta.missing != prod", true),
            ("Node.Meta.missing contains x", false),
            ("Node.Meta.missing not contains x", true),
            ("Node.Meta.missing is empty", true),
            ("Node.Meta.missing is not empty", false),
            ("Node.Meta.missing matches \".*\"", false),
            ("Node.Meta.missing not matches \".*\"", true),
            ("Service.Port.Value == 8080", false),
            ("Service.Port.Value != 8080", true),
            // Field names are case-sensitive, as Go's are.
            ("service.port == 8080", false),
            ("Service.port == 8080", false),
            // Precedence.
            (
                "Service.Port == 80 or Node.Meta.env == prod and Checks.Status == critical",
                true,
            ),
            (
                "(Service.Port == 80 or Node.Meta.env == prod) and not Checks.Status == critical",
                false,
            ),
            ("not Service.Port == 80 and Service.Tags contains v1", true),
        ],
    );
}

#[test]
fn crossing_an_empty_array_matches_nothing() {
    let entry = json!({"Checks": []});
    assert_evaluates(
        &entry,
        &[
            ("Checks.Status == passing", false),
            ("Checks.Status != passing", false),
            ("Checks.ServiceTags is empty", false),
            ("Checks.ServiceTags is not empty", false),
            ("not Checks.Status == passing", true),
            ("Checks is empty", true),
        ],
    );
}

/// One `/v1/catalog/service/api-internal` row, with an empty and a null map.
fn catalog_row() -> Value {
    json!({
        "ID": "b4faf93a-5c7d-11e9-840d-8c8590bd0966",
        "Node": "node-2",
        "Address": "198.18.0.2",
        "Datacenter": "dc1",
        "TaggedAddresses": null,
        "NodeMeta": {},
        "ServiceKind": "",
        "ServiceID": "api-internal",
        "ServiceName": "api-internal",
        "ServiceTags": ["primary", "test"],
        "ServiceAddress": "",
        "ServiceWeights": {"Passing": 1, "Warning": 1},
        "ServiceMeta": {"version": "2"},
        "ServicePort": 9090,
        "ServiceEnableTagOverride": false,
        "ServiceProxy": {},
        "ServiceConnect": {},
        "CreateIndex": 29,
        "ModifyIndex": 29
    })
}

#[test]
fn catalog_service_row() {
    assert_evaluates(
        &catalog_row(),
        &[
            ("ServiceMeta.version == \"2\"", true),
            ("ServiceMeta.version == 2", true),
            ("ServiceMeta.version == 3", false),
            ("\"primary\" in ServiceTags", true),
            ("\"prim\" in ServiceTags", false),
            ("NodeMeta is empty", true),
            ("NodeMeta is not empty", false),
            ("NodeMeta.os == linux", false),
            ("NodeMeta.os != linux", true),
            // `null` (a nil map in Go) is missing, and empty.
            ("TaggedAddresses is empty", true),
            ("TaggedAddresses.lan == x", false),
            ("TaggedAddresses.lan != x", true),
            ("ServiceAddress is empty", true),
            ("ServiceKind == \"\"", true),
            ("ServicePort == 9090", true),
            ("CreateIndex == 29", true),
            (
                "ServiceName == \"api-internal\" and ServicePort != 8080",
                true,
            ),
            (
                "ServiceName == `api-internal` and ServicePort == 8080",
                false,
            ),
        ],
    );
}

#[test]
fn apply_keeps_matching_array_elements_in_order() {
    let rows = json!([
        {"Node": "node-1", "NodeMeta": {"os": "darwin"}, "ServiceMeta": {"environment": "qa"}},
        {"Node": "node-2", "NodeMeta": {"os": "linux"}, "ServiceMeta": {"environment": "production"}},
        {"Node": "node-4", "NodeMeta": {"os": "freebsd"}, "ServiceMeta": {"environment": "qa"}}
    ]);
    let nodes = |filter: &str| -> Vec<String> {
        let kept = Filter::parse(filter).unwrap().apply(rows.clone());
        let kept = kept.as_array().unwrap();
        kept.iter()
            .map(|r| r["Node"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(nodes("NodeMeta.os == \"linux\""), ["node-2"]);
    assert_eq!(nodes("ServiceMeta.environment == qa"), ["node-1", "node-4"]);
    assert_eq!(nodes("NodeMeta.os == windows"), Vec::<String>::new());
    assert_eq!(nodes("not NodeMeta.os == windows").len(), 3);
}

#[test]
fn apply_keeps_matching_values_of_a_map() {
    // `/v1/agent/services`, as in Consul's filtering docs.
    let services = json!({
        "redis1": {
            "ID": "redis1", "Service": "redis", "Tags": ["primary", "production"],
            "Meta": {"env": "production", "foo": "bar"}, "Port": 1234
        },
        "redis2": {
            "ID": "redis2", "Service": "redis", "Tags": ["secondary", "production"],
            "Meta": {"env": "production", "foo": "bar"}, "Port": 1235
        },
        "redis3": {
            "ID": "redis3", "Service": "redis", "Tags": ["primary", "qa"],
            "Meta": {"env": "qa"}, "Port": 1234
        }
    });
    let ids = |filter: &str| -> Vec<String> {
        let kept = Filter::parse(filter).unwrap().apply(services.clone());
        kept.as_object().unwrap().keys().cloned().collect()
    };
    assert_eq!(ids("Meta.env == \"qa\""), ["redis3"]);
    assert_eq!(ids("Tags contains primary"), ["redis1", "redis3"]);
    assert_eq!(ids("Port == 1234 and Meta.foo == bar"), ["redis1"]);
    assert_eq!(ids("foo in Meta"), ["redis1", "redis2"]);
    assert_eq!(ids("Meta.foo is empty"), ["redis3"]);

    let kept = Filter::parse("Meta.env == qa")
        .unwrap()
        .apply(services.clone());
    assert_eq!(kept, json!({"redis3": services["redis3"]}));
}

#[test]
fn apply_leaves_other_values_alone() {
    let filter = Filter::parse("Service == web").unwrap();
    for value in [json!(null), json!("web"), json!(7), json!(true)] {
        assert_eq!(filter.apply(value.clone()), value);
    }
    assert_eq!(filter.apply(json!([])), json!([]));
    assert_eq!(filter.apply(json!({})), json!({}));
}

#[test]
fn non_object_elements_have_no_fields() {
    let filter = Filter::parse("Status == passing").unwrap();
    assert_eq!(filter.apply(json!(["passing", 1, null])), json!([]));
    let negated = Filter::parse("Status != passing").unwrap();
    assert_eq!(negated.apply(json!(["passing"])), json!(["passing"]));
}
