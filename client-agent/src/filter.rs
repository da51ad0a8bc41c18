//! Consul's `?filter=` expression language: HashiCorp go-bexpr as Consul vendors it (v0.1.2),
//! parsed once per request and evaluated against list elements already serialized to Consul's
//! JSON.
//!
//! # The language
//! ```text
//! Expr     := Expr "or" Expr                 loosest
//!           | Expr "and" Expr
//!           | "not" Expr                     tightest
//!           | "(" Expr ")"
//!           | Match
//! Match    := Selector ("==" | "!=") Value
//!           | Selector ["not"] "contains" Value
//!           | Selector ["not"] "matches" Value          regular expression, unanchored
//!           | Selector "is" ["not"] "empty"
//!           | Value ["not"] "in" Selector               same test as `contains`
//! Selector := Name ("." Name | "[" String "]")*          Name := [A-Za-z][A-Za-z0-9_]*
//! Value    := Selector                                   its dotted text: `prod`, `true`
//!           | Number                                     -?(0|[1-9][0-9]*)(.[0-9]+)?
//!           | String                                     "…" with Go escapes, or `raw`
//! ```
//! `and` and `or` chain left to right and short-circuit. Keywords need whitespace on both
//! sides (`not(x == 1)` and `a == 1 or(b == 2)` are syntax errors in go-bexpr too); `==` and
//! `!=` need none. A number must be followed by whitespace, `)` or the end, so `10.0.0.1` must
//! be quoted. A double-quoted string ends at the first `"` whatever precedes it (go-bexpr's
//! grammar), so text containing `"` needs backticks. Bracketed parts select keys that are not
//! names: `ServiceMeta["app.kubernetes.io/name"]`.
//!
//! # Evaluation
//! - A selector walks JSON objects by exact, case-sensitive key: go-bexpr looks up Go field
//!   names and map keys exactly, and Consul's JSON names are its Go field names.
//! - Crossing an array on the way (`Checks.Status` over a health entry's `Checks`), the match
//!   is tried on every element and holds if it holds for any, as go-bexpr does for slices of
//!   structs. That includes the negated operators: `Checks.Status != passing` means "some check
//!   is not passing"; "no check is critical" is `not Checks.Status == critical`. Crossing an
//!   empty array matches nothing, whatever the operator.
//! - A missing key or a JSON `null` (Consul's nil maps and slices) behaves as go-bexpr's
//!   missing map key: `==`, `contains`/`in`, `matches` and `is not empty` are false, their
//!   negations and `is empty` are true.
//! - `==`: a string compares exactly; a number compares numerically with the value read as
//!   Go's `strconv.ParseInt(v, 0, 64)` (so `0x1F`, `0o17`, `1_000`) or else `ParseFloat`; a
//!   boolean with the value read as Go's `ParseBool` (`true`, `True`, `TRUE`, `t`, `1`, and
//!   the false forms). A value that does not read as the field's type is unequal.
//! - `contains` / `in`: an array holds an element equal to the value (as `==`), an object has
//!   the value as a key, a string has it as a substring.
//! - `matches` tests strings; `is empty` is zero length of a string, array or object.
//! - [`Filter::apply`] keeps the matching elements of an array, or the entries of an object
//!   whose value matches (the map results of `/v1/agent/services` and `/v1/agent/checks`).
//!
//! # Differences from Consul
//! - Consul checks selectors, operators and values against the Go type of the listed elements
//!   when it creates the filter, and answers 400 for an unknown field (`Selector "Foo" is not
//!   valid`), an operator the field's type lacks, or a value that does not coerce
//!   (`Port == abc`). We see only JSON, so those parse and are decided per element: an unknown
//!   field is a missing key (`Typo == x` is false, `Typo != x` true); an operator that does not
//!   apply to the JSON type found is false and its negation true (`==` on an array or object,
//!   `contains` on a number, `matches` on a non-string, `is empty` on a number); a value that
//!   does not coerce is unequal. `is empty` on a string, refused by Consul, is answered.
//! - Every JSON field is selectable, including those Consul's Go types hide from filtering.
//! - Selecting into a scalar (`Service.Port.x`) acts as a missing key, not an error.
//! - go-bexpr 0.1.2 calls both `matches` and `not matches` on a missing key true (fixed in
//!   later go-bexpr); here `matches` is false and `not matches` true.
//! - Regular expressions are the `regex` crate's dialect: RE2 syntax as in Go for ordinary
//!   patterns, but `\d`, `\w`, `\s` and `\b` are Unicode-aware where Go's are ASCII.
//! - `\x` and octal escapes that leave invalid UTF-8 are rejected; Go would keep the bytes.
//! - Parentheses and `not` nest at most 128 deep, bounding recursion; go-bexpr has no cap.
//! - Error texts keep Consul's prefix and pigeon's `line:col (offset)` position, with our own
//!   wording.
//! - Syntax from later go-bexpr releases that Consul does not vendor is not accepted: JSON
//!   pointer selectors (`"/a/b"`), `any`/`all` collection expressions, `is nil`, `a.0` indexes.
//!
//! An empty expression is the no-op filter, as in go-bexpr's `CreateFilter`; a blank but
//! non-empty one is a syntax error there and here.
//!
//! # Layout
//! - `parse`: the grammar as a backtracking recursive-descent parser (go-bexpr's is a PEG), Go
//!   string unquoting, and syntax error reporting.
//! - `eval`: walking selectors through JSON and Go's value coercions.

use std::fmt;

use serde_json::Value;

mod eval;
mod parse;

#[cfg(test)]
mod tests;

/// How deep parentheses and `not` may nest. Real filters nest a few levels; the cap keeps a
/// hostile `((((…` from overflowing the stack of the parser, evaluator or drop glue.
const MAX_NESTING: usize = 128;

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// `None` for the empty expression, which keeps everything.
    expr: Option<Expr>,
}

/// Why an expression did not parse; Display is the 400 body text, e.g. `Failed to create
/// boolean expression evaluator: 1:8 (7): unmatched parenthesis: expected ")"`, with Consul's
/// prefix.
#[derive(Debug, thiserror::Error)]
#[error("Failed to create boolean expression evaluator: {0}")]
pub struct FilterError(String);

impl Filter {
    /// Parses `expr`, compiling any regular expressions. The empty string gives the filter
    /// that keeps everything.
    pub fn parse(expr: &str) -> Result<Filter, FilterError> {
        if expr.is_empty() {
            return Ok(Filter { expr: None });
        }
        let expr = parse::parse(expr).map_err(FilterError)?;
        Ok(Filter { expr: Some(expr) })
    }

    /// Whether one element (already serialized to JSON with Consul's field names) matches.
    pub fn matches(&self, item: &Value) -> bool {
        match &self.expr {
            Some(expr) => expr.eval(item),
            None => true,
        }
    }

    /// Keeps matching elements of a JSON array, or for a JSON object (map results like
    /// /v1/agent/services and /v1/agent/checks) keeps matching values. Any other JSON value
    /// (`null` for an empty result, say) is returned unchanged.
    pub fn apply(&self, value: Value) -> Value {
        if self.expr.is_none() {
            return value;
        }
        match value {
            Value::Array(items) => {
                Value::Array(items.into_iter().filter(|i| self.matches(i)).collect())
            }
            Value::Object(mut entries) => {
                entries.retain(|_, v| self.matches(v));
                Value::Object(entries)
            }
            other => other,
        }
    }
}

/// A boolean expression over one element.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    /// Two or more terms, any of which must hold; evaluated left to right.
    Or(Vec<Expr>),
    /// Two or more terms, all of which must hold; evaluated left to right.
    And(Vec<Expr>),
    Not(Box<Expr>),
    Match(Match),
}

/// One matching expression: a selector, an operator and its value.
#[derive(Debug, Clone, PartialEq)]
struct Match {
    /// Object keys from the element down; never empty.
    selector: Vec<String>,
    test: Test,
    /// `!=`, `not contains`/`not in`, `not matches`, `is not empty`. Applied where the test
    /// meets a value, inside the any-element walk over arrays, as go-bexpr does.
    negated: bool,
}

/// The positive form of a match operator with its value.
#[derive(Debug, Clone, PartialEq)]
enum Test {
    /// `==` with the value's raw text (coerced per JSON type when compared).
    Equal(String),
    /// `contains` and `in` with the value's raw text.
    Contains(String),
    Matches(Pattern),
    IsEmpty,
}

/// A compiled `matches` pattern; equal when the source text is.
#[derive(Clone)]
struct Pattern(regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.0.as_str())
    }
}
