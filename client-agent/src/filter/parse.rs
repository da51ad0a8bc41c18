//! The filter grammar, parsed the way go-bexpr's PEG parses it: ordered alternatives with
//! backtracking, whitespace required around keywords, and the same semantic checks
//! (unterminated string, invalid number, unmatched parenthesis, invalid index or selector).
//!
//! Errors are reported as pigeon (go-bexpr's parser generator) reports them: a semantic
//! check's message if one fired, otherwise what was expected at the farthest offset any
//! alternative reached. Regular expressions compile after the syntax is known good, as go-bexpr
//! compiles them in its validation pass.

use std::fmt;

use super::{Expr, Match, Pattern, Test, MAX_NESTING};

/// Parses a non-empty expression; the error is the detail after Consul's prefix.
pub(super) fn parse(src: &str) -> Result<Expr, String> {
    let mut parser = Parser {
        src,
        pos: 0,
        nesting: 0,
        fail_pos: 0,
        expected: Vec::new(),
        quiet_at: None,
        errors: Vec::new(),
        invalid: Vec::new(),
    };
    let expr = parser.input();
    // As in pigeon, a semantic check that fired fails the parse even when some other
    // alternative went on to succeed.
    if let Some((pos, message)) = parser.errors.first() {
        return Err(format!("{}: {message}", parser.location(*pos)));
    }
    let Some(expr) = expr else {
        return Err(parser.no_match());
    };
    if let Some((pos, message)) = parser.invalid.first() {
        return Err(format!("{}: {message}", parser.location(*pos)));
    }
    Ok(expr)
}

/// Something the parser looked for, for "expected …" messages.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expected {
    /// Literal text, shown quoted.
    Token(&'static str),
    /// A description, shown as is.
    Thing(&'static str),
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Token(t) => write!(f, "\"{t}\""),
            Expected::Thing(t) => f.write_str(t),
        }
    }
}

const EXPRESSION: Expected = Expected::Thing("expression");
const SELECTOR: Expected = Expected::Thing("selector");
const VALUE: Expected = Expected::Thing("value");

/// The match operators that take a value on their right.
#[derive(Clone, Copy)]
enum ValueOp {
    Equal,
    Contains,
    Matches,
}

struct Parser<'a> {
    src: &'a str,
    /// Byte offset of the next unread input; always on a char boundary, as the parser only
    /// steps over ASCII or to the byte after an ASCII quote.
    pos: usize,
    /// Open parentheses and `not`s around `pos`, capped at [`MAX_NESTING`].
    nesting: usize,
    /// The farthest offset at which something failed to match, and what would have matched
    /// there.
    fail_pos: usize,
    expected: Vec<Expected>,
    /// The start of the innermost expression being parsed. Failures exactly there are
    /// summed up as "expression" instead of listing every way one can begin.
    quiet_at: Option<usize>,
    /// Semantic check failures, in the order they fired; the first is reported.
    errors: Vec<(usize, String)>,
    /// Validation failures (a bad regular expression), reported only if the syntax is fine.
    invalid: Vec<(usize, String)>,
}

impl<'a> Parser<'a> {
    // ---- The grammar, outermost rule first.

    /// `Input <- _? OrExpression _? EOF`
    fn input(&mut self) -> Option<Expr> {
        self.skip_whitespace();
        let expr = self.or_expr()?;
        self.skip_whitespace();
        if self.pos < self.src.len() {
            self.note_expected(self.pos, Expected::Thing("end of input"));
            return None;
        }
        Some(expr)
    }

    /// `OrExpression <- AndExpression _ "or" _ OrExpression / AndExpression`, as a loop: the
    /// terms are evaluated left to right either way.
    fn or_expr(&mut self) -> Option<Expr> {
        self.chain("or", Self::and_expr, Expr::Or)
    }

    /// `AndExpression <- NotExpression _ "and" _ AndExpression / NotExpression`
    fn and_expr(&mut self) -> Option<Expr> {
        self.chain("and", Self::not_expr, Expr::And)
    }

    /// One or more `term`s joined by `keyword`; a keyword not followed by a term is left
    /// unread (it may be a selector), as the PEG's ordered choice would.
    fn chain(
        &mut self,
        keyword: &'static str,
        term: fn(&mut Self) -> Option<Expr>,
        join: fn(Vec<Expr>) -> Expr,
    ) -> Option<Expr> {
        let mut terms = vec![term(self)?];
        loop {
            let before = self.pos;
            if self.words(&[keyword], Some(EXPRESSION)) {
                if let Some(next) = term(self) {
                    terms.push(next);
                    continue;
                }
            }
            self.pos = before;
            break;
        }
        if terms.len() == 1 {
            terms.pop()
        } else {
            Some(join(terms))
        }
    }

    /// `NotExpression <- "not" _ NotExpression / ParenthesizedExpression`. A failed `not`
    /// branch falls back to the other, where `not` may still be a selector (`not == 1`).
    fn not_expr(&mut self) -> Option<Expr> {
        let start = self.pos;
        self.note_expected(start, EXPRESSION);
        let outer_quiet = self.quiet_at.replace(start);
        let expr = self.negation().or_else(|| self.paren_expr());
        self.quiet_at = outer_quiet;
        if expr.is_none() {
            self.pos = start;
        }
        expr
    }

    fn negation(&mut self) -> Option<Expr> {
        let start = self.pos;
        if !(self.literal("not") && self.whitespace_before(EXPRESSION, true)) {
            self.pos = start;
            return None;
        }
        if !self.enter(start) {
            self.pos = start;
            return None;
        }
        let inner = self.not_expr();
        self.nesting -= 1;
        let Some(inner) = inner else {
            self.pos = start;
            return None;
        };
        // `not not x` is `x`, folded as go-bexpr folds it.
        Some(match inner {
            Expr::Not(inner) => *inner,
            other => Expr::Not(Box::new(other)),
        })
    }

    /// `ParenthesizedExpression <- "(" _? OrExpression _? ")" / MatchExpression`, and
    /// "Unmatched parentheses" when the inner expression parses but no `)` follows. A match
    /// expression never starts with `(`, so that check needs no second parse.
    fn paren_expr(&mut self) -> Option<Expr> {
        let open = self.pos;
        if !self.literal("(") {
            return self.match_expr();
        }
        if !self.enter(open) {
            self.pos = open;
            return None;
        }
        self.skip_whitespace();
        let inner = self.or_expr();
        self.nesting -= 1;
        let Some(inner) = inner else {
            self.pos = open;
            return None;
        };
        self.skip_whitespace();
        if self.literal(")") {
            return Some(inner);
        }
        let message = format!(
            "unmatched parenthesis: expected \")\" to close the \"(\" at {}",
            self.location(open)
        );
        self.error(self.pos, message);
        self.pos = open;
        None
    }

    /// `MatchExpression <- MatchSelectorOpValue / MatchSelectorOp / MatchValueOpSelector`
    fn match_expr(&mut self) -> Option<Expr> {
        if let Some(m) = self.attempt(Self::selector_op_value) {
            return Some(Expr::Match(m));
        }
        if let Some(m) = self.attempt(Self::selector_is_empty) {
            return Some(Expr::Match(m));
        }
        self.attempt(Self::value_in_selector).map(Expr::Match)
    }

    /// `Selector ("==" / "!=" / "contains" / "not contains" / "matches" / "not matches")
    /// Value`
    fn selector_op_value(&mut self) -> Option<Match> {
        let selector = self.selector(SELECTOR)?;
        let (op, negated) = self.value_op()?;
        let value_at = self.pos;
        let value = self.value()?;
        let test = match op {
            ValueOp::Equal => Test::Equal(value),
            ValueOp::Contains => Test::Contains(value),
            ValueOp::Matches => match regex::Regex::new(&value) {
                Ok(re) => Test::Matches(Pattern(re)),
                Err(e) => {
                    // The crate draws a caret diagram over several lines; its last line says
                    // what is wrong, which suits a one-line 400 body.
                    let e = e.to_string();
                    let why = e.lines().last().unwrap_or_default();
                    let why = why.strip_prefix("error: ").unwrap_or(why);
                    let message = format!("failed to compile regular expression {value:?}: {why}");
                    self.invalid.push((value_at, message));
                    // A stand-in so the syntax check runs to the end (a syntax error
                    // anywhere is reported first, as go-bexpr parses before it validates);
                    // the parse fails on `invalid` either way.
                    Test::Equal(value)
                }
            },
        };
        Some(Match {
            selector,
            test,
            negated,
        })
    }

    fn value_op(&mut self) -> Option<(ValueOp, bool)> {
        // `_? "==" _?` and `_? "!="_?`: the only operators that need no whitespace.
        let start = self.pos;
        self.skip_whitespace();
        for (token, negated) in [("==", false), ("!=", true)] {
            if self.literal(token) {
                self.skip_whitespace();
                return Some((ValueOp::Equal, negated));
            }
        }
        self.pos = start;
        let forms: [(&[&'static str], ValueOp, bool); 4] = [
            (&["contains"], ValueOp::Contains, false),
            (&["not", "contains"], ValueOp::Contains, true),
            (&["matches"], ValueOp::Matches, false),
            (&["not", "matches"], ValueOp::Matches, true),
        ];
        forms
            .into_iter()
            .find(|(words, _, _)| self.words(words, Some(VALUE)))
            .map(|(_, op, negated)| (op, negated))
    }

    /// `Selector ("is empty" / "is not empty")`
    fn selector_is_empty(&mut self) -> Option<Match> {
        let selector = self.selector(SELECTOR)?;
        let negated = if self.words(&["is", "empty"], None) {
            false
        } else if self.words(&["is", "not", "empty"], None) {
            true
        } else {
            return None;
        };
        Some(Match {
            selector,
            test: Test::IsEmpty,
            negated,
        })
    }

    /// `Value ("in" / "not in") Selector`, and "Invalid selector" when the operator is there
    /// but no selector follows.
    fn value_in_selector(&mut self) -> Option<Match> {
        let value = self.value()?;
        let negated = if self.words(&["in"], Some(SELECTOR)) {
            false
        } else if self.words(&["not", "in"], Some(SELECTOR)) {
            true
        } else {
            return None;
        };
        let at = self.pos;
        let Some(selector) = self.selector(SELECTOR) else {
            self.error(
                at,
                "invalid selector: \"in\" must be followed by a selector such as Service.Tags",
            );
            return None;
        };
        Some(Match {
            selector,
            test: Test::Contains(value),
            negated,
        })
    }

    /// `Selector <- Identifier ("." Identifier / "[" _? String _? "]")*`
    fn selector(&mut self, what: Expected) -> Option<Vec<String>> {
        let mut parts = vec![self.name(what)?];
        loop {
            if self.rest().starts_with('.') {
                let dot = self.pos;
                self.pos += 1;
                match self.name(Expected::Thing("field name")) {
                    Some(name) => parts.push(name),
                    None => {
                        self.pos = dot;
                        break;
                    }
                }
            } else if let Some(key) = self.index() {
                parts.push(key);
            } else {
                break;
            }
        }
        Some(parts)
    }

    /// `Identifier <- [a-zA-Z] [a-zA-Z0-9_]*`
    fn name(&mut self, what: Expected) -> Option<String> {
        let rest = self.rest();
        if !rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
            self.note_expected(self.pos, what);
            return None;
        }
        let len = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        self.pos += len;
        Some(rest[..len].to_string())
    }

    /// `IndexExpression <- "[" _? StringLiteral _? "]"`, with go-bexpr's "Invalid index" and
    /// "Unclosed index expression" checks.
    fn index(&mut self) -> Option<String> {
        let open = self.pos;
        if !self.rest().starts_with('[') {
            return None;
        }
        self.pos += 1;
        self.skip_whitespace();
        let key_at = self.pos;
        let Some(key) = self.string(Expected::Thing("quoted key")) else {
            self.error(
                key_at,
                "invalid index: \"[\" must be followed by a quoted key, as in Meta[\"key\"]",
            );
            self.pos = open;
            return None;
        };
        self.skip_whitespace();
        if self.rest().starts_with(']') {
            self.pos += 1;
            return Some(key);
        }
        self.error(self.pos, "unclosed index expression: expected \"]\"");
        self.pos = open;
        None
    }

    /// `Value <- Selector / NumberLiteral / StringLiteral`; a selector stands for its dotted
    /// text, which is how go-bexpr allows unquoted words.
    fn value(&mut self) -> Option<String> {
        if let Some(parts) = self.selector(VALUE) {
            return Some(parts.join("."));
        }
        if let Some(number) = self.number() {
            return Some(number);
        }
        self.string(VALUE)
    }

    /// `NumberLiteral <- "-"? ("0" / [1-9][0-9]*) ("." [0-9]+)? &(_ / EOF / ")")`, kept as
    /// text: it is coerced per element, to the type of the JSON value it meets.
    fn number(&mut self) -> Option<String> {
        let start = self.pos;
        let bytes = self.src.as_bytes();
        let digits_from = |mut i: usize| {
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let mut end = start;
        if bytes.get(end) == Some(&b'-') {
            end += 1;
        }
        end = match bytes.get(end) {
            Some(b'0') => end + 1,
            Some(b'1'..=b'9') => digits_from(end),
            _ => {
                let what = if end == start {
                    VALUE
                } else {
                    Expected::Thing("digit")
                };
                self.note_expected(end, what);
                return None;
            }
        };
        if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
            end = digits_from(end + 1);
        }
        match bytes.get(end) {
            None | Some(b' ' | b'\t' | b'\r' | b'\n' | b')') => {
                self.pos = end;
                Some(self.src[start..end].to_string())
            }
            Some(_) => {
                self.error(
                    end,
                    "invalid number literal: a number must be followed by whitespace, \")\" or \
                     the end; quote values such as \"10.0.0.1\"",
                );
                None
            }
        }
    }

    /// `StringLiteral <- "`" [^`]* "`" / "\"" [^"]* "\""`, unquoted as Go's
    /// `strconv.Unquote` does, and "Unterminated string literal" when the input ends first.
    fn string(&mut self, what: Expected) -> Option<String> {
        let start = self.pos;
        let quote = match self.src.as_bytes().get(start) {
            Some(&q @ (b'"' | b'`')) => q,
            _ => {
                self.note_expected(start, what);
                return None;
            }
        };
        let body_start = start + 1;
        let Some(len) = self.src[body_start..].bytes().position(|b| b == quote) else {
            self.error(start, "unterminated string literal");
            return None;
        };
        let body = &self.src[body_start..body_start + len];
        let end = body_start + len + 1;
        let text = if quote == b'`' {
            // Go drops carriage returns from raw strings.
            Ok(body.replace('\r', ""))
        } else {
            unquote(body)
        };
        match text {
            Ok(text) => {
                self.pos = end;
                Some(text)
            }
            Err(why) => {
                let message = format!("invalid string literal {}: {why}", &self.src[start..end]);
                self.error(start, message);
                None
            }
        }
    }

    // ---- Matching primitives.

    /// The unread input.
    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or_default()
    }

    /// Runs `rule`, rewinding to where it started if it fails.
    fn attempt<T>(&mut self, rule: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        let start = self.pos;
        let result = rule(self);
        if result.is_none() {
            self.pos = start;
        }
        result
    }

    fn literal(&mut self, token: &'static str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            self.note_expected(self.pos, Expected::Token(token));
            false
        }
    }

    /// Keywords each preceded by whitespace, then whitespace if `then` names what must
    /// follow: `_ "not" _ "in" _` is `words(&["not", "in"], Some(SELECTOR))`. Rewinds on
    /// failure.
    fn words(&mut self, words: &[&'static str], then: Option<Expected>) -> bool {
        let start = self.pos;
        let matched = words.iter().enumerate().all(|(i, &word)| {
            self.whitespace_before(Expected::Token(word), i > 0) && self.literal(word)
        }) && match then {
            Some(next) => self.whitespace_before(next, true),
            None => true,
        };
        if !matched {
            self.pos = start;
        }
        matched
    }

    /// `_ <- [ \t\r\n]+`, required before `next`. When it is missing, the error names what
    /// is really wrong: at the end of input, the missing `next` ("expected expression" after a
    /// trailing `and`); after a keyword (`after_keyword`) or right before `next` itself
    /// (`"x"and`), the whitespace; anywhere else, `next` (`a == 1)` lacks `and`, `or` or the
    /// end, not whitespace).
    fn whitespace_before(&mut self, next: Expected, after_keyword: bool) -> bool {
        let at = self.pos;
        self.skip_whitespace();
        if self.pos > at {
            return true;
        }
        let glued = match next {
            Expected::Token(token) => self.rest().starts_with(token),
            Expected::Thing(_) => false,
        };
        let what = if at == self.src.len() || !(after_keyword || glued) {
            next
        } else {
            Expected::Thing("whitespace")
        };
        self.note_expected(at, what);
        false
    }

    /// `_?`
    fn skip_whitespace(&mut self) {
        self.pos += self
            .rest()
            .bytes()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .count();
    }

    /// Enters one more level of parentheses or `not`, unless that is one too many.
    fn enter(&mut self, at: usize) -> bool {
        if self.nesting >= MAX_NESTING {
            let message = format!(
                "expression nests more than {MAX_NESTING} levels of parentheses and \"not\""
            );
            self.error(at, message);
            return false;
        }
        self.nesting += 1;
        true
    }

    // ---- Error reporting.

    /// Records that `what` would have matched at `pos`, if that is as far as any failure
    /// got.
    fn note_expected(&mut self, pos: usize, what: Expected) {
        if self.quiet_at == Some(pos) || pos < self.fail_pos {
            return;
        }
        if pos > self.fail_pos {
            self.fail_pos = pos;
            self.expected.clear();
        }
        if !self.expected.contains(&what) {
            self.expected.push(what);
        }
    }

    fn error(&mut self, pos: usize, message: impl Into<String>) {
        self.errors.push((pos, message.into()));
    }

    /// The error when no alternative matched: what was expected where parsing got
    /// farthest.
    fn no_match(&self) -> String {
        let expected: Vec<String> = self.expected.iter().map(ToString::to_string).collect();
        let expected = match expected.as_slice() {
            [] => "something else".to_string(),
            [only] => only.clone(),
            [init @ .., last] => format!("{} or {last}", init.join(", ")),
        };
        format!(
            "{}: syntax error: expected {expected}, found {}",
            self.location(self.fail_pos),
            self.found(self.fail_pos)
        )
    }

    /// The text at `pos` for an error message: one bracket, quote or whitespace character,
    /// or a word.
    fn found(&self, pos: usize) -> String {
        const SHOWN: usize = 20;
        let rest = self.src.get(pos..).unwrap_or_default();
        let Some(first) = rest.chars().next() else {
            return "end of input".to_string();
        };
        let delimiter = |c: char| matches!(c, '(' | ')' | '[' | ']' | '"' | '`');
        let token: String = if delimiter(first) || first.is_whitespace() {
            first.to_string()
        } else {
            rest.chars()
                .take_while(|&c| !c.is_whitespace() && !delimiter(c))
                .take(SHOWN)
                .collect()
        };
        format!("{token:?}")
    }

    /// pigeon's position format: 1-based line and column (in chars), then the byte offset.
    fn location(&self, pos: usize) -> String {
        let before = self.src.get(..pos).unwrap_or(self.src);
        let line = before.matches('\n').count() + 1;
        let column = before
            .rsplit('\n')
            .next()
            .unwrap_or_default()
            .chars()
            .count()
            + 1;
        format!("{line}:{column} ({pos})")
    }
}

/// Go's `strconv.Unquote` of a double-quoted string's body (the text between the quotes).
fn unquote(body: &str) -> Result<String, String> {
    if body.contains('\n') {
        return Err("a double-quoted string cannot span lines; use backticks".to_string());
    }
    let trailing_backslashes = body.bytes().rev().take_while(|&b| b == b'\\').count();
    if trailing_backslashes % 2 == 1 {
        return Err(
            "the string ends at the first '\"', even after a backslash; \
                    quote text containing '\"' with backticks"
                .to_string(),
        );
    }
    let bytes = body.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        // Not the last byte: an odd run of trailing backslashes was refused above.
        let escape = bytes.get(i + 1).copied().unwrap_or_default();
        i += 2;
        let simple = match escape {
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            b'\\' => Some(b'\\'),
            b'"' => Some(b'"'),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
            continue;
        }
        match escape {
            b'x' => {
                out.push(digits(bytes, i, 2, 16)? as u8);
                i += 2;
            }
            b'0'..=b'7' => {
                let value = digits(bytes, i - 1, 3, 8)?;
                let byte = u8::try_from(value)
                    .map_err(|_| format!("octal escape \\{value:o} is above \\377"))?;
                out.push(byte);
                i += 2;
            }
            b'u' | b'U' => {
                let width = if escape == b'u' { 4 } else { 8 };
                let code = digits(bytes, i, width, 16)?;
                let c = char::from_u32(code).ok_or_else(|| {
                    format!(
                        "\\{} escape {code:#x} is not a Unicode scalar value",
                        escape as char
                    )
                })?;
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += width;
            }
            _ => {
                let shown = body[i - 1..].chars().next().unwrap_or_default();
                return Err(format!("unknown escape sequence \\{shown}"));
            }
        }
    }
    String::from_utf8(out).map_err(|_| "its escapes spell invalid UTF-8".to_string())
}

/// `count` digits in `radix` from `bytes[start..]`, as an escape sequence's value.
fn digits(bytes: &[u8], start: usize, count: usize, radix: u32) -> Result<u32, String> {
    (0..count).try_fold(0u32, |acc, k| {
        bytes
            .get(start + k)
            .and_then(|&b| (b as char).to_digit(radix))
            .map(|d| acc * radix + d)
            .ok_or_else(|| format!("escape sequence needs {count} base-{radix} digits"))
    })
}
