//! Intentions: who may connect to whom. Stored as Consul 1.9+ stores them, in
//! `service-intentions` config entries (one per destination, a [`SourceIntention`] per
//! source); served also in the legacy per-intention shape ([`Intention`]).
//!
//! The evaluation here is pure (no runtime, no I/O) so the agent's authorize endpoint, the
//! `/check` endpoint and the proxy all decide the same way:
//! - [`precedence`]: Consul's precedence table (OSS: exact→exact 9, `*`→exact 8,
//!   exact→`*` 6, `*`→`*` 5; destination weighs more than source).
//! - [`sort_intentions`]: highest precedence first (Consul's `IntentionPrecedenceSorter`).
//! - [`evaluate`]: the first matching intention decides (deny wins a tie in precedence); an
//!   L7 intention is matched permission by permission against an HTTP request, and counts as
//!   deny for an L4 (connection-level) question; nothing matching means the default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config_entry::error::ConfigEntryError;

/// The wildcard name.
pub const WILDCARD: &str = "*";
/// The only source type (Consul: `consul`).
pub const SOURCE_TYPE_CONSUL: &str = "consul";
/// The namespace of every name in OSS.
pub const DEFAULT_NAMESPACE: &str = "default";
/// What Go's zero `time.Time` encodes as, for intentions without legacy timestamps.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// A header condition of an L7 permission.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct IntentionHttpHeaderPermission {
    /// Header name (case-insensitive).
    #[serde(default)]
    pub name: String,
    /// Header present (any value).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub present: bool,
    /// Value equals.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exact: String,
    /// Value starts with.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// Value ends with.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub suffix: String,
    /// Value matches this regular expression (whole value).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub regex: String,
    /// Negate the condition.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invert: bool,
}

/// The HTTP part of an L7 permission.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct IntentionHttpPermission {
    /// Path equals.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_exact: String,
    /// Path starts with.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_prefix: String,
    /// Path matches this regular expression (whole path).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_regex: String,
    /// Every header condition must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header: Vec<IntentionHttpHeaderPermission>,
    /// Method is one of these (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

/// An L7 permission: an action for requests that match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct IntentionPermission {
    /// `allow` or `deny`.
    #[serde(default)]
    pub action: String,
    /// Request criteria.
    #[serde(default, rename = "HTTP", skip_serializing_if = "Option::is_none")]
    pub http: Option<IntentionHttpPermission>,
}

/// One source of a `service-intentions` entry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct SourceIntention {
    /// Source service (or `*`).
    #[serde(default)]
    pub name: String,
    /// `allow`/`deny`; empty when `Permissions` are set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action: String,
    /// L7 permissions (only for HTTP-aware destinations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<IntentionPermission>,
    /// Computed on write; read-only.
    #[serde(default)]
    pub precedence: u32,
    /// Always `consul`.
    #[serde(default, rename = "Type")]
    pub source_type: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// ID of an intention made through the legacy API.
    #[serde(default, rename = "LegacyID", skip_serializing_if = "String::is_empty")]
    pub legacy_id: String,
    /// Meta of an intention made through the legacy API.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub legacy_meta: BTreeMap<String, String>,
    /// RFC 3339 creation time of a legacy intention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_create_time: Option<String>,
    /// RFC 3339 update time of a legacy intention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_update_time: Option<String>,
}

/// An intention in the per-intention shape of `/v1/connect/intentions*` (and the body of
/// the legacy create/update).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Intention {
    /// Legacy ID (empty for intentions made as config entries or through `/exact`).
    #[serde(default, rename = "ID", skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Always `default`.
    #[serde(default, rename = "SourceNS")]
    pub source_ns: String,
    /// Source service (or `*`).
    #[serde(default)]
    pub source_name: String,
    /// Always `default`.
    #[serde(default, rename = "DestinationNS")]
    pub destination_ns: String,
    /// Destination service (or `*`).
    #[serde(default)]
    pub destination_name: String,
    /// Always `consul`.
    #[serde(default)]
    pub source_type: String,
    /// `allow`/`deny`; empty for an L7 intention.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action: String,
    /// L7 permissions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<IntentionPermission>,
    /// User metadata (legacy intentions only).
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// Read-only: see [`precedence`].
    #[serde(default)]
    pub precedence: u32,
    /// RFC 3339 creation time.
    #[serde(default = "zero_time")]
    pub created_at: String,
    /// RFC 3339 update time.
    #[serde(default = "zero_time")]
    pub updated_at: String,
    /// Index of the config entry holding it.
    #[serde(default)]
    pub create_index: u64,
    /// Index of the config entry holding it.
    #[serde(default)]
    pub modify_index: u64,
}

fn zero_time() -> String {
    ZERO_TIME.to_string()
}

impl Intention {
    /// `SRC => DST (action)`, as Consul's CLI and authorize reasons print an intention.
    pub fn summary(&self) -> String {
        let action = if self.permissions.is_empty() {
            self.action.clone()
        } else {
            "L7".to_string()
        };
        format!(
            "{} => {} ({action})",
            self.source_name, self.destination_name
        )
    }

    /// The source-entry form of this intention (what the config entry stores).
    pub fn to_source(&self) -> SourceIntention {
        SourceIntention {
            name: self.source_name.clone(),
            action: self.action.clone(),
            permissions: self.permissions.clone(),
            precedence: precedence(&self.source_name, &self.destination_name),
            source_type: SOURCE_TYPE_CONSUL.to_string(),
            description: self.description.clone(),
            legacy_id: self.id.clone(),
            legacy_meta: self.meta.clone(),
            legacy_create_time: None,
            legacy_update_time: None,
        }
    }
}

/// Consul's precedence of an intention from `source` to `destination` (OSS table; the
/// Enterprise-only rows with wildcard namespaces do not exist here). Destination weighs more
/// than source: `*`→exact (8) beats exact→`*` (6).
pub fn precedence(source: &str, destination: &str) -> u32 {
    match (source == WILDCARD, destination == WILDCARD) {
        (false, false) => 9,
        (true, false) => 8,
        (false, true) => 6,
        (true, true) => 5,
    }
}

/// Sorts highest precedence first; ties by (source, destination) so the order is stable
/// (Consul's `IntentionPrecedenceSorter`).
pub fn sort_intentions(intentions: &mut [Intention]) {
    intentions.sort_by(|a, b| {
        b.precedence
            .cmp(&a.precedence)
            .then_with(|| a.source_name.cmp(&b.source_name))
            .then_with(|| a.destination_name.cmp(&b.destination_name))
    });
}

/// Every intention of a `service-intentions` entry in the per-intention shape.
pub fn entry_intentions(
    entry: &ServiceIntentions,
    create_index: u64,
    modify_index: u64,
) -> Vec<Intention> {
    entry
        .sources
        .iter()
        .map(|s| Intention {
            id: s.legacy_id.clone(),
            description: s.description.clone(),
            source_ns: DEFAULT_NAMESPACE.to_string(),
            source_name: s.name.clone(),
            destination_ns: DEFAULT_NAMESPACE.to_string(),
            destination_name: entry.name.clone(),
            source_type: SOURCE_TYPE_CONSUL.to_string(),
            action: s.action.clone(),
            permissions: s.permissions.clone(),
            meta: s.legacy_meta.clone(),
            precedence: precedence(&s.name, &entry.name),
            created_at: s.legacy_create_time.clone().unwrap_or_else(zero_time),
            updated_at: s.legacy_update_time.clone().unwrap_or_else(zero_time),
            create_index,
            modify_index,
        })
        .collect()
}

fn invalid(msg: impl Into<String>) -> ConfigEntryError {
    ConfigEntryError(msg.into())
}

fn check_name(field: &str, name: &str) -> Result<(), ConfigEntryError> {
    if name.is_empty() {
        return Err(invalid(format!("{field} must be set")));
    }
    if name != WILDCARD && name.contains('*') {
        return Err(invalid(format!(
            "{field}: wildcard character '*' cannot be used with partial values"
        )));
    }
    Ok(())
}

/// Validates a legacy/exact intention body (Consul's `Intention.Validate` texts).
pub fn validate_intention(ixn: &Intention) -> Result<(), ConfigEntryError> {
    check_name("SourceName", &ixn.source_name)?;
    check_name("DestinationName", &ixn.destination_name)?;
    if !ixn.source_type.is_empty() && ixn.source_type != SOURCE_TYPE_CONSUL {
        return Err(invalid("SourceType must be set to 'consul'"));
    }
    let mut source = ixn.to_source();
    validate_source(&mut source, &ixn.destination_name, "")
}

/// Checks one source of an entry for destination `destination`; `prefix` names it in errors
/// (`Sources[0].`, or empty for a single intention). Fills in precedence and type.
fn validate_source(
    s: &mut SourceIntention,
    destination: &str,
    prefix: &str,
) -> Result<(), ConfigEntryError> {
    if s.permissions.is_empty() {
        if s.action != "allow" && s.action != "deny" {
            return Err(invalid(format!(
                "{prefix}Action must be set to 'allow' or 'deny'"
            )));
        }
    } else {
        if !s.action.is_empty() {
            return Err(invalid(format!(
                "{prefix}Action must be omitted if Permissions are specified"
            )));
        }
        if destination == WILDCARD {
            return Err(invalid(format!(
                "{prefix}Permissions cannot be specified on intentions with wildcarded destinations"
            )));
        }
        if !permission_actions_valid(&s.permissions) {
            return Err(invalid(format!(
                "{prefix}Permissions[].Action must be set to 'allow' or 'deny'"
            )));
        }
        for (i, p) in s.permissions.iter().enumerate() {
            validate_permission(p, &format!("{prefix}Permissions[{i}]"))?;
        }
    }
    if !s.source_type.is_empty() && s.source_type != SOURCE_TYPE_CONSUL {
        return Err(invalid(format!("{prefix}Type must be set to 'consul'")));
    }
    s.source_type = SOURCE_TYPE_CONSUL.to_string();
    s.precedence = precedence(&s.name, destination);
    Ok(())
}

fn validate_permission(p: &IntentionPermission, at: &str) -> Result<(), ConfigEntryError> {
    let Some(http) = &p.http else {
        return Err(invalid(format!("{at}.HTTP is required")));
    };
    let paths = [&http.path_exact, &http.path_prefix, &http.path_regex]
        .iter()
        .filter(|p| !p.is_empty())
        .count();
    if paths > 1 {
        return Err(invalid(format!(
            "{at}.HTTP should only contain at most one of PathExact, PathPrefix, or PathRegex"
        )));
    }
    for (field, value) in [
        ("PathExact", &http.path_exact),
        ("PathPrefix", &http.path_prefix),
    ] {
        if !value.is_empty() && !value.starts_with('/') {
            return Err(invalid(format!(
                "{at}.HTTP.{field} doesn't start with '/': {value:?}"
            )));
        }
    }
    if !http.path_regex.is_empty() && regex::Regex::new(&http.path_regex).is_err() {
        return Err(invalid(format!(
            "{at}.HTTP.PathRegex is not a valid regular expression"
        )));
    }
    for (j, h) in http.header.iter().enumerate() {
        if h.name.is_empty() {
            return Err(invalid(format!(
                "{at}.HTTP.Header[{j}] missing required Name field"
            )));
        }
        let set = [
            h.present,
            !h.exact.is_empty(),
            !h.prefix.is_empty(),
            !h.suffix.is_empty(),
            !h.regex.is_empty(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set != 1 {
            return Err(invalid(format!(
                "{at}.HTTP.Header[{j}] should only contain one of Present, Exact, Prefix, Suffix, or Regex"
            )));
        }
        if !h.regex.is_empty() && regex::Regex::new(&h.regex).is_err() {
            return Err(invalid(format!(
                "{at}.HTTP.Header[{j}].Regex is not a valid regular expression"
            )));
        }
    }
    if http.path_exact.is_empty()
        && http.path_prefix.is_empty()
        && http.path_regex.is_empty()
        && http.header.is_empty()
        && http.methods.is_empty()
    {
        return Err(invalid(format!("{at}.HTTP should not be empty")));
    }
    Ok(())
}

/// Validates and normalizes a `service-intentions` entry: names, actions, permissions, no
/// duplicate source; fills in precedence and type and sorts sources highest first.
pub fn normalize_entry(entry: &mut ServiceIntentions) -> Result<(), ConfigEntryError> {
    check_name("Name", &entry.name)?;
    let destination = entry.name.clone();
    let mut seen = std::collections::BTreeSet::new();
    for (i, s) in entry.sources.iter_mut().enumerate() {
        check_name(&format!("Sources[{i}].Name"), &s.name)?;
        if !seen.insert(s.name.clone()) {
            return Err(invalid(format!(
                "Sources[{i}] defines {:?} more than once",
                s.name
            )));
        }
        validate_source(s, &destination, &format!("Sources[{i}]."))?;
    }
    entry.sources.sort_by(|a, b| {
        b.precedence
            .cmp(&a.precedence)
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(())
}

/// Refuses L7 permissions for a destination whose protocol is not HTTP-aware (Consul's
/// text). `protocol` is the destination's effective protocol
/// ([`crate::config_entry::effective_protocol`]).
pub fn check_l7_allowed(entry: &ServiceIntentions, protocol: &str) -> Result<(), ConfigEntryError> {
    if entry.sources.iter().any(|s| !s.permissions.is_empty()) && !is_l7_protocol(protocol) {
        return Err(invalid(format!(
            "service {:?} has protocol {protocol:?}, which is incompatible with L7 intentions permissions",
            entry.name
        )));
    }
    Ok(())
}

/// An HTTP request, for L7 evaluation.
#[derive(Clone, Copy, Debug)]
pub struct HttpRequest<'a> {
    /// Request path (no query string).
    pub path: &'a str,
    /// Method, upper case.
    pub method: &'a str,
    /// Headers (names in any case).
    pub headers: &'a [(String, String)],
}

/// The outcome of [`evaluate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Allowed or not.
    pub allowed: bool,
    /// Why, in Consul's words.
    pub reason: String,
    /// The intention that decided, if any.
    pub matched: Option<Intention>,
}

/// Whether an intention's names cover `source` → `destination` (`*` matches any name).
pub fn intention_matches(ixn: &Intention, source: &str, destination: &str) -> bool {
    let side = |pattern: &str, name: &str| pattern == WILDCARD || pattern == name;
    side(&ixn.source_name, source) && side(&ixn.destination_name, destination)
}

/// Decides whether `source` may reach `destination`.
///
/// The matching intention of highest precedence governs (on equal precedence a deny wins).
/// An L4 intention decides with its action. An L7 intention (with `Permissions`): for an
/// L4 question (`request` is `None`, as for `/v1/agent/connect/authorize` and `/check`) it
/// counts as deny, as Consul's does; for an HTTP request its permissions are tried in order
/// and the first that matches decides; when none does, the default applies (Consul: "traffic
/// that fails to match any of the provided permissions ... will be subject to the default").
/// Nothing matching means `default_allow`.
pub fn evaluate(
    intentions: &[Intention],
    source: &str,
    destination: &str,
    request: Option<&HttpRequest<'_>>,
    default_allow: bool,
) -> Decision {
    let best = intentions
        .iter()
        .filter(|i| intention_matches(i, source, destination))
        .fold(None::<&Intention>, |best, i| match best {
            None => Some(i),
            Some(b) => {
                let p_i = precedence(&i.source_name, &i.destination_name);
                let p_b = precedence(&b.source_name, &b.destination_name);
                if p_i > p_b || (p_i == p_b && i.action == "deny" && b.action != "deny") {
                    Some(i)
                } else {
                    Some(b)
                }
            }
        });
    let default = || Decision {
        allowed: default_allow,
        reason: default_reason(default_allow),
        matched: None,
    };
    let Some(ixn) = best else {
        return default();
    };
    if ixn.permissions.is_empty() {
        return Decision {
            allowed: ixn.action == "allow",
            reason: format!("Matched L4 intention: {}", ixn.summary()),
            matched: Some(ixn.clone()),
        };
    }
    let Some(req) = request else {
        return Decision {
            allowed: false,
            reason: format!("Matched L7 intention: {}", ixn.summary()),
            matched: Some(ixn.clone()),
        };
    };
    match ixn.permissions.iter().find(|p| permission_matches(p, req)) {
        Some(p) => Decision {
            allowed: p.action == "allow",
            reason: format!("Matched L7 intention: {}", ixn.summary()),
            matched: Some(ixn.clone()),
        },
        None => default(),
    }
}

/// The reason given when no intention matches.
pub fn default_reason(default_allow: bool) -> String {
    if default_allow {
        "ACLs disabled, access is allowed by default".to_string()
    } else {
        "Default behavior configured by ACLs".to_string()
    }
}

/// Whether an L7 permission's criteria all hold for `req`.
pub fn permission_matches(p: &IntentionPermission, req: &HttpRequest<'_>) -> bool {
    let Some(http) = &p.http else {
        return false;
    };
    if !http.path_exact.is_empty() && req.path != http.path_exact {
        return false;
    }
    if !http.path_prefix.is_empty() && !req.path.starts_with(&http.path_prefix) {
        return false;
    }
    if !http.path_regex.is_empty() && !full_match(&http.path_regex, req.path) {
        return false;
    }
    if !http.methods.is_empty()
        && !http
            .methods
            .iter()
            .any(|m| m.eq_ignore_ascii_case(req.method))
    {
        return false;
    }
    http.header.iter().all(|h| header_matches(h, req.headers))
}

/// Whether `re` matches all of `value` (Envoy's safe_regex semantics); an invalid pattern
/// (refused on write) never matches.
fn full_match(re: &str, value: &str) -> bool {
    regex::Regex::new(&format!("^(?:{re})$")).is_ok_and(|r| r.is_match(value))
}

fn header_matches(h: &IntentionHttpHeaderPermission, headers: &[(String, String)]) -> bool {
    let value = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&h.name))
        .map(|(_, v)| v.as_str());
    let hit = match value {
        None => false,
        Some(v) => {
            if h.present {
                true
            } else if !h.exact.is_empty() {
                v == h.exact
            } else if !h.prefix.is_empty() {
                v.starts_with(&h.prefix)
            } else if !h.suffix.is_empty() {
                v.ends_with(&h.suffix)
            } else if !h.regex.is_empty() {
                full_match(&h.regex, v)
            } else {
                false
            }
        }
    };
    hit != h.invert
}

/// A service identity from a SPIFFE URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpiffeService {
    /// Trust domain (host part).
    pub trust_domain: String,
    /// Namespace.
    pub namespace: String,
    /// Datacenter.
    pub datacenter: String,
    /// Service name.
    pub service: String,
}

/// Parses `spiffe://<trust-domain>/ns/<ns>/dc/<dc>/svc/<service>`; anything else (other
/// schemes, agent identities, missing parts) is refused.
pub fn parse_spiffe_service(uri: &str) -> Result<SpiffeService, String> {
    let bad = || "ClientCertURI not a valid Connect identifier".to_string();
    let rest = uri.strip_prefix("spiffe://").ok_or_else(bad)?;
    let (host, path) = rest.split_once('/').ok_or_else(bad)?;
    if host.is_empty() {
        return Err(bad());
    }
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["ns", ns, "dc", dc, "svc", svc] if !ns.is_empty() && !dc.is_empty() && !svc.is_empty() => {
            Ok(SpiffeService {
                trust_domain: host.to_string(),
                namespace: (*ns).to_string(),
                datacenter: (*dc).to_string(),
                service: (*svc).to_string(),
            })
        }
        ["agent", ..] => Err("ClientCertURI not a valid Service identifier".to_string()),
        _ => Err(bad()),
    }
}

/// The L7 protocols: only these carry intention `Permissions`, splitters and routers.
pub const L7_PROTOCOLS: [&str; 3] = ["http", "http2", "grpc"];

/// Whether `protocol` is HTTP-aware.
pub fn is_l7_protocol(protocol: &str) -> bool {
    L7_PROTOCOLS.contains(&protocol)
}

/// `service-intentions`: every intention whose destination is `name`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceIntentions {
    /// Destination service (or `*`).
    #[serde(default)]
    pub name: String,
    /// One per source, stored sorted by precedence (highest first).
    #[serde(default)]
    pub sources: Vec<SourceIntention>,
    /// User metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

/// A permission list's action values must be allow/deny; used by intention validation.
pub(crate) fn permission_actions_valid(perms: &[IntentionPermission]) -> bool {
    perms
        .iter()
        .all(|p| p.action == "allow" || p.action == "deny")
}

#[cfg(test)]
mod tests;

/// Formats Unix seconds as RFC 3339 UTC (`2006-01-02T15:04:05Z`), for legacy intention
/// timestamps (Howard Hinnant's civil-from-days algorithm).
pub fn rfc3339_utc(unix_secs: u64) -> String {
    let days = i64::try_from(unix_secs / 86_400).unwrap_or(0);
    let secs = unix_secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}
