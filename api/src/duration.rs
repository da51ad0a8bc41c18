//! Go-style durations (`"10s"`, `"1m30s"`, `"500ms"`, `"72h"`), as Consul reads and writes them.
//!
//! JSON may carry a duration as a Go string or as a number of nanoseconds (Go's
//! `time.Duration` is an int64 of ns); both decode. Encoding always writes the string form.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration that (de)serializes the way Consul's Go code does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(pub Duration);

/// A Go duration string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time: invalid duration \"{0}\"")]
pub struct InvalidDuration(pub String);

impl GoDuration {
    /// The wrapped duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// Whether the duration is zero (Go's "unset").
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl From<Duration> for GoDuration {
    fn from(d: Duration) -> Self {
        GoDuration(d)
    }
}

/// Parses a Go duration string: a sequence of decimal numbers with optional fraction and a
/// unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), e.g. `"1h2m3.5s"`. A bare `"0"` is allowed.
/// Negative durations are rejected: nothing in Consul's API gives them meaning.
pub fn parse_duration(input: &str) -> Result<Duration, InvalidDuration> {
    let err = || InvalidDuration(input.to_string());
    let s = input.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.is_empty() || s.starts_with('-') {
        return Err(err());
    }
    let mut total_nanos: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total_nanos += value * nanos_per_unit;
    }
    if !total_nanos.is_finite() || total_nanos > u64::MAX as f64 {
        return Err(err());
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

/// Formats a duration as Go's `time.Duration.String()` does: `"1h2m3s"`, `"1.5s"`, `"500ms"`, `"0s"`.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_fraction(nanos as f64 / 1e3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_fraction(nanos as f64 / 1e6));
    }
    let total_secs = d.as_secs();
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let secs = (total_secs % 60) as f64 + f64::from(d.subsec_nanos()) / 1e9;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{}s", trim_fraction(secs)));
    out
}

fn trim_fraction(v: f64) -> String {
    let s = format!("{v:.9}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl std::str::FromStr for GoDuration {
    type Err = InvalidDuration;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(GoDuration)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Nanos(u64),
            Float(f64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) if s.is_empty() => Ok(GoDuration(Duration::ZERO)),
            Raw::Text(s) => parse_duration(&s)
                .map(GoDuration)
                .map_err(serde::de::Error::custom),
            Raw::Nanos(n) => Ok(GoDuration(Duration::from_nanos(n))),
            Raw::Float(f) if f >= 0.0 && f.is_finite() => {
                Ok(GoDuration(Duration::from_nanos(f as u64)))
            }
            Raw::Float(f) => Err(serde::de::Error::custom(format!(
                "time: invalid duration {f}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("10s", Duration::from_secs(10)),
            ("1m30s", Duration::from_secs(90)),
            ("500ms", Duration::from_millis(500)),
            ("72h", Duration::from_secs(72 * 3600)),
            ("1.5s", Duration::from_millis(1500)),
            ("0", Duration::ZERO),
            ("100us", Duration::from_micros(100)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in ["", "10", "s", "10x", "-5s", "1..5s", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn decodes_strings_and_nanoseconds() {
        let d: GoDuration = serde_json::from_str("\"15s\"").unwrap();
        assert_eq!(d.0, Duration::from_secs(15));
        let d: GoDuration = serde_json::from_str("2000000000").unwrap();
        assert_eq!(d.0, Duration::from_secs(2));
        assert!(serde_json::from_str::<GoDuration>("\"nope\"").is_err());
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"2s\"");
    }
}
