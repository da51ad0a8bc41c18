//! Evaluation of a parsed filter against one JSON element, with go-bexpr's coercions of a raw
//! value to the type it is compared with.

use concord_api::decode::parse_go_bool;
use serde_json::{Number, Value};

use super::{Expr, Match, Test};

impl Expr {
    pub(super) fn eval(&self, item: &Value) -> bool {
        match self {
            Expr::Or(terms) => terms.iter().any(|t| t.eval(item)),
            Expr::And(terms) => terms.iter().all(|t| t.eval(item)),
            Expr::Not(inner) => !inner.eval(item),
            Expr::Match(m) => m.walk(item, &m.selector),
        }
    }
}

impl Match {
    /// Follows `path` down from `value`. Arrays on the way are crossed element by element
    /// (any match wins; none is false, so an empty array fails every operator), as go-bexpr
    /// crosses slices before the selector's end.
    fn walk(&self, value: &Value, path: &[String]) -> bool {
        let Some((key, rest)) = path.split_first() else {
            return self.at_end(value);
        };
        match value {
            Value::Object(fields) => match fields.get(key) {
                Some(next) => self.walk(next, rest),
                None => self.missing(),
            },
            Value::Array(items) => items.iter().any(|item| self.walk(item, path)),
            // Nothing to select from: the key is as absent as from an object without it.
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => self.missing(),
        }
    }

    /// The test on the value the selector ends at; the selector's end is never crossed as
    /// an array (`Tags contains x` looks at `Tags` as a whole).
    fn at_end(&self, value: &Value) -> bool {
        if value.is_null() {
            return self.missing();
        }
        self.test.holds(value) != self.negated
    }

    /// go-bexpr's result for a missing map key: nothing equals, contains or matches it, and it
    /// is empty.
    fn missing(&self) -> bool {
        matches!(self.test, Test::IsEmpty) != self.negated
    }
}

impl Test {
    /// Whether the positive test holds for a non-null value.
    fn holds(&self, value: &Value) -> bool {
        match self {
            Test::Equal(raw) => equals(value, raw),
            Test::Contains(raw) => match value {
                Value::Array(items) => items.iter().any(|item| equals(item, raw)),
                Value::Object(fields) => fields.contains_key(raw),
                Value::String(s) => s.contains(raw.as_str()),
                Value::Null | Value::Bool(_) | Value::Number(_) => false,
            },
            Test::Matches(pattern) => match value {
                Value::String(s) => pattern.0.is_match(s),
                _ => false,
            },
            Test::IsEmpty => match value {
                Value::String(s) => s.is_empty(),
                Value::Array(items) => items.is_empty(),
                Value::Object(fields) => fields.is_empty(),
                Value::Null => true,
                Value::Bool(_) | Value::Number(_) => false,
            },
        }
    }
}

/// Whether a JSON scalar equals a raw expression value coerced to its type, as go-bexpr
/// coerces the value to the Go field's type. Objects, arrays and `null` equal nothing.
fn equals(value: &Value, raw: &str) -> bool {
    match value {
        Value::String(s) => s == raw,
        Value::Bool(b) => parse_go_bool(raw) == Some(*b),
        Value::Number(n) => number_equals(n, raw),
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

/// Integers compare exactly when `raw` reads as a Go integer; otherwise both sides compare as
/// `f64`. go-bexpr would refuse a float value for an integer field; comparing is kinder and
/// cannot make a wrong match.
fn number_equals(n: &Number, raw: &str) -> bool {
    if let Some(wanted) = parse_go_int(raw) {
        if let Some(i) = n.as_i64() {
            return i128::from(i) == wanted;
        }
        if let Some(u) = n.as_u64() {
            return i128::from(u) == wanted;
        }
    }
    match (raw.parse::<f64>(), n.as_f64()) {
        (Ok(wanted), Some(f)) => f == wanted,
        _ => false,
    }
}

/// Go's `strconv.ParseInt(raw, 0, 64)`, widened to also take `ParseUint`'s `u64` range (the
/// type of Consul's raft indexes): optional sign, base prefixes `0x`, `0o`, `0b` and a bare
/// leading `0` for octal, and `_` between digits.
fn parse_go_int(raw: &str) -> Option<i128> {
    let (negative, body) = match raw.strip_prefix('-') {
        Some(body) => (true, body),
        None => (false, raw.strip_prefix('+').unwrap_or(raw)),
    };
    if body.is_empty() || (body.contains('_') && !underscores_ok(body)) {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    // A prefix with nothing after it ("0x") is not one: Go reads it as octal and fails.
    let prefixed = [("0x", 16), ("0o", 8), ("0b", 2)]
        .into_iter()
        .find_map(|(prefix, radix)| {
            let digits = lower.strip_prefix(prefix)?;
            (!digits.is_empty()).then_some((radix, digits))
        });
    let (radix, digits) = match (prefixed, lower.strip_prefix('0')) {
        (Some(prefixed), _) => prefixed,
        (None, Some(octal)) => (8, octal),
        (None, None) => (10, lower.as_str()),
    };
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    // A lone "0" leaves no octal digits: zero, as in Go.
    let magnitude = if digits.is_empty() {
        0
    } else {
        u128::from_str_radix(&digits, radix).ok()?
    };
    let magnitude = i128::try_from(magnitude).ok()?;
    let value = if negative { -magnitude } else { magnitude };
    (i128::from(i64::MIN)..=i128::from(u64::MAX))
        .contains(&value)
        .then_some(value)
}

/// Go's `underscoreOK`: each `_` sits between digits, or between a base prefix and a digit.
fn underscores_ok(body: &str) -> bool {
    let bytes = body.as_bytes();
    let lower = |i: usize| bytes.get(i).map(u8::to_ascii_lowercase);
    let (start, hex) = match (lower(0), lower(1)) {
        (Some(b'0'), Some(b'b' | b'o')) => (2, false),
        (Some(b'0'), Some(b'x')) => (2, true),
        _ => (0, false),
    };
    // What the previous byte was: a digit (or the base prefix), an underscore, or other.
    #[derive(PartialEq)]
    enum Saw {
        Start,
        Digit,
        Underscore,
        Other,
    }
    let mut saw = if start == 2 { Saw::Digit } else { Saw::Start };
    for &b in &bytes[start..] {
        if b.is_ascii_digit() || (hex && b.is_ascii_hexdigit()) {
            saw = Saw::Digit;
        } else if b == b'_' {
            if saw != Saw::Digit {
                return false;
            }
            saw = Saw::Underscore;
        } else if saw == Saw::Underscore {
            return false;
        } else {
            saw = Saw::Other;
        }
    }
    saw != Saw::Underscore
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_int_parsing() {
        let cases = [
            ("0", Some(0)),
            ("8080", Some(8080)),
            ("-5", Some(-5)),
            ("+5", Some(5)),
            ("0x1F", Some(31)),
            ("0X1f", Some(31)),
            ("0o17", Some(15)),
            ("017", Some(15)),
            ("0b101", Some(5)),
            ("1_000", Some(1000)),
            ("0x_1F", Some(31)),
            ("18446744073709551615", Some(i128::from(u64::MAX))),
            ("-9223372036854775808", Some(i128::from(i64::MIN))),
            ("18446744073709551616", None),
            ("", None),
            ("-", None),
            ("08", None),
            ("0x", None),
            ("1__0", None),
            ("_1", None),
            ("1_", None),
            ("1.5", None),
            ("1e3", None),
            (" 1", None),
            ("abc", None),
        ];
        for (raw, want) in cases {
            assert_eq!(parse_go_int(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn scalar_equality() {
        let cases = [
            (serde_json::json!("web"), "web", true),
            (serde_json::json!("web"), "Web", false),
            (serde_json::json!("2"), "2", true),
            (serde_json::json!(8080), "8080", true),
            (serde_json::json!(8080), "0x1F90", true),
            (serde_json::json!(8080), "8080.0", true),
            (serde_json::json!(8080), "8081", false),
            (serde_json::json!(8080), "web", false),
            (serde_json::json!(u64::MAX), "18446744073709551615", true),
            (serde_json::json!(1.5), "1.5", true),
            (serde_json::json!(1.5), "1", false),
            (serde_json::json!(true), "true", true),
            (serde_json::json!(true), "True", true),
            (serde_json::json!(true), "1", true),
            (serde_json::json!(false), "f", true),
            (serde_json::json!(false), "true", false),
            (serde_json::json!(false), "no", false),
            (serde_json::json!(null), "", false),
            (serde_json::json!([]), "", false),
            (serde_json::json!({}), "", false),
        ];
        for (value, raw, want) in cases {
            assert_eq!(equals(&value, raw), want, "{value} == {raw:?}");
        }
    }
}
