//! Connect CA wire types: the roots (`/v1/connect/ca/roots`), the CA configuration
//! (`/v1/connect/ca/configuration`), issued leaf certificates
//! (`/v1/agent/connect/ca/leaf/:service`), the internal signing request, and the SPIFFE
//! service identity every leaf carries.
//!
//! Field names and shapes follow Consul's `structs.CARoots`, `structs.CAConfiguration` and
//! `structs.IssuedCert`. No private key of a CA ever appears in these types: the servers keep
//! it in their own state, and what a caller sees has no field to carry it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::duration::{format_duration, parse_duration};

/// The only CA provider Concord has (Consul's built-in one).
pub const PROVIDER_CONSUL: &str = "consul";

/// The namespace of every service identity (Consul OSS has only `default`).
pub const DEFAULT_NAMESPACE: &str = "default";

/// `GET /v1/connect/ca/roots`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct CaRoots {
    /// `ID` of the root that signs new leaves.
    #[serde(rename = "ActiveRootID")]
    pub active_root_id: String,
    /// `<cluster-id>.consul`.
    pub trust_domain: String,
    /// Every root still trusted: the active one and those rotated out.
    pub roots: Vec<CaRoot>,
}

/// One trusted root.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct CaRoot {
    /// SHA-1 fingerprint of the DER certificate, lowercase colon-hex (Consul's
    /// `CalculateCertFingerprint`).
    #[serde(rename = "ID")]
    pub id: String,
    /// Human name (`Consul CA Root Cert`).
    pub name: String,
    /// Certificate serial number.
    pub serial_number: u64,
    /// Subject key identifier, lowercase colon-hex.
    #[serde(rename = "SigningKeyID")]
    pub signing_key_id: String,
    /// Trust domain of an external provider (always empty here).
    #[serde(default)]
    pub external_trust_domain: String,
    /// Start of validity, RFC 3339.
    pub not_before: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// The root certificate, PEM.
    pub root_cert: String,
    /// Certificates a verifier may need between a leaf and a root; after a rotation the new
    /// root carries its certificate cross-signed by the previous root.
    pub intermediate_certs: Vec<String>,
    /// Whether this root signs new leaves.
    pub active: bool,
    /// `ec` or `rsa`.
    #[serde(default)]
    pub private_key_type: String,
    /// Key size in bits.
    #[serde(default)]
    pub private_key_bits: u32,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// Default lifetime of a leaf certificate (Consul: 72h).
pub const DEFAULT_LEAF_CERT_TTL: std::time::Duration = std::time::Duration::from_secs(72 * 3600);
/// Default root certificate lifetime (Consul: 87600h, ten years).
pub const DEFAULT_ROOT_CERT_TTL: std::time::Duration =
    std::time::Duration::from_secs(87_600 * 3600);
/// Default intermediate lifetime (Consul: 8760h).
pub const DEFAULT_INTERMEDIATE_CERT_TTL: std::time::Duration =
    std::time::Duration::from_secs(8_760 * 3600);
/// Default rotation period (Consul: 2160h).
pub const DEFAULT_ROTATION_PERIOD: std::time::Duration =
    std::time::Duration::from_secs(2_160 * 3600);
/// Shortest accepted `LeafCertTTL` (Consul: 1h).
pub const MIN_LEAF_CERT_TTL: std::time::Duration = std::time::Duration::from_secs(3600);
/// Longest accepted `LeafCertTTL` (Consul: 1 year).
pub const MAX_LEAF_CERT_TTL: std::time::Duration = std::time::Duration::from_secs(8_760 * 3600);

/// `GET`/`PUT /v1/connect/ca/configuration`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct CaConfiguration {
    /// Cluster ID (the trust domain is `<ClusterID>.consul`); ignored on `PUT`.
    #[serde(rename = "ClusterID", default)]
    pub cluster_id: String,
    /// Provider name; only `consul`.
    #[serde(default)]
    pub provider: String,
    /// Provider configuration: a map, as Consul keeps it (keys are case- and
    /// underscore-insensitive on input; see [`CaProviderConfig::from_map`]).
    #[serde(default)]
    pub config: Map<String, Value>,
    /// Rotate without cross-signing the new root with the old one.
    #[serde(default)]
    pub force_without_cross_signing: bool,
    /// Raft index of creation.
    #[serde(default)]
    pub create_index: u64,
    /// Raft index of the last change.
    #[serde(default)]
    pub modify_index: u64,
}

/// The typed form of [`CaConfiguration::config`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaProviderConfig {
    /// Leaf lifetime.
    pub leaf_cert_ttl: std::time::Duration,
    /// How often the root should rotate (recorded and reported; see docs/api.md).
    pub rotation_period: std::time::Duration,
    /// Intermediate lifetime (recorded and reported).
    pub intermediate_cert_ttl: std::time::Duration,
    /// Lifetime of a root this CA generates.
    pub root_cert_ttl: std::time::Duration,
    /// `ec` or `rsa`.
    pub private_key_type: String,
    /// Key size in bits.
    pub private_key_bits: u32,
    /// A root key to use instead of generating one (PEM; never returned).
    pub private_key: String,
    /// The certificate of [`Self::private_key`] (PEM).
    pub root_cert: String,
}

impl Default for CaProviderConfig {
    fn default() -> Self {
        CaProviderConfig {
            leaf_cert_ttl: DEFAULT_LEAF_CERT_TTL,
            rotation_period: DEFAULT_ROTATION_PERIOD,
            intermediate_cert_ttl: DEFAULT_INTERMEDIATE_CERT_TTL,
            root_cert_ttl: DEFAULT_ROOT_CERT_TTL,
            private_key_type: "ec".to_string(),
            private_key_bits: 256,
            private_key: String::new(),
            root_cert: String::new(),
        }
    }
}

/// Why a CA configuration was refused (Consul's texts where it has one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCaConfig {
    /// A field has the wrong JSON type or an unparsable value.
    #[error("error decoding config: {field}: {reason}")]
    Field {
        /// Canonical field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `LeafCertTTL` out of range.
    #[error("LeafCertTTL must be between 1h0m0s and 8760h0m0s")]
    LeafTtlRange,
    /// Unknown key type.
    #[error("private key type must be either 'ec' or 'rsa'")]
    KeyType,
    /// Unsupported key size for the type.
    #[error("{0}")]
    KeyBits(String),
    /// Only one of `PrivateKey` / `RootCert`.
    #[error("must provide both RootCert and PrivateKey, or neither")]
    KeyWithoutCert,
}

/// Folds a config key as Consul's mapstructure decoding does (case- and `_`-insensitive).
fn fold(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn duration_field(field: &'static str, v: &Value) -> Result<std::time::Duration, InvalidCaConfig> {
    let bad = |reason: String| InvalidCaConfig::Field { field, reason };
    match v {
        Value::String(s) => parse_duration(s).map_err(|e| bad(e.to_string())),
        Value::Number(n) => n
            .as_u64()
            .map(std::time::Duration::from_nanos)
            .ok_or_else(|| bad(format!("invalid duration {n}"))),
        other => Err(bad(format!("expected a duration, got {other}"))),
    }
}

fn string_field(field: &'static str, v: &Value) -> Result<String, InvalidCaConfig> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| InvalidCaConfig::Field {
            field,
            reason: format!("expected a string, got {v}"),
        })
}

impl CaProviderConfig {
    /// Reads a provider config map over the defaults, then validates it. Unknown keys are
    /// ignored (Consul keeps provider-specific keys it does not use).
    pub fn from_map(map: &Map<String, Value>) -> Result<Self, InvalidCaConfig> {
        let mut c = CaProviderConfig::default();
        for (key, v) in map {
            match fold(key).as_str() {
                "leafcertttl" => c.leaf_cert_ttl = duration_field("LeafCertTTL", v)?,
                "rotationperiod" => c.rotation_period = duration_field("RotationPeriod", v)?,
                "intermediatecertttl" => {
                    c.intermediate_cert_ttl = duration_field("IntermediateCertTTL", v)?
                }
                "rootcertttl" => c.root_cert_ttl = duration_field("RootCertTTL", v)?,
                "privatekeytype" => c.private_key_type = string_field("PrivateKeyType", v)?,
                "privatekeybits" => {
                    let bits = match v {
                        Value::Number(n) => n.as_u64(),
                        Value::String(s) => s.parse().ok(),
                        _ => None,
                    };
                    c.private_key_bits =
                        bits.and_then(|b| u32::try_from(b).ok()).ok_or_else(|| {
                            InvalidCaConfig::Field {
                                field: "PrivateKeyBits",
                                reason: format!("expected a number, got {v}"),
                            }
                        })?;
                }
                "privatekey" => c.private_key = string_field("PrivateKey", v)?,
                "rootcert" => c.root_cert = string_field("RootCert", v)?,
                _ => {}
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// Consul's `CommonCAProviderConfig.Validate` and `ConsulCAProviderConfig` checks.
    pub fn validate(&self) -> Result<(), InvalidCaConfig> {
        if !(MIN_LEAF_CERT_TTL..=MAX_LEAF_CERT_TTL).contains(&self.leaf_cert_ttl) {
            return Err(InvalidCaConfig::LeafTtlRange);
        }
        match self.private_key_type.as_str() {
            "ec" => {
                if ![224, 256, 384, 521].contains(&self.private_key_bits) {
                    return Err(InvalidCaConfig::KeyBits(format!(
                        "EC key length must be one of (224, 256, 384, 521) bits, got {}",
                        self.private_key_bits
                    )));
                }
            }
            "rsa" => {
                if self.private_key_bits != 2048 && self.private_key_bits != 4096 {
                    return Err(InvalidCaConfig::KeyBits(format!(
                        "RSA key length must be 2048 or 4096 bits, got {}",
                        self.private_key_bits
                    )));
                }
            }
            _ => return Err(InvalidCaConfig::KeyType),
        }
        if self.private_key.is_empty() != self.root_cert.is_empty() {
            return Err(InvalidCaConfig::KeyWithoutCert);
        }
        Ok(())
    }

    /// The map form reported by `GET`: never the private key or the supplied certificate.
    pub fn to_public_map(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let d = |d: std::time::Duration| Value::String(format_duration(d));
        m.insert("LeafCertTTL".into(), d(self.leaf_cert_ttl));
        m.insert("RotationPeriod".into(), d(self.rotation_period));
        m.insert("IntermediateCertTTL".into(), d(self.intermediate_cert_ttl));
        m.insert("RootCertTTL".into(), d(self.root_cert_ttl));
        m.insert(
            "PrivateKeyType".into(),
            Value::String(self.private_key_type.clone()),
        );
        m.insert("PrivateKeyBits".into(), Value::from(self.private_key_bits));
        m
    }
}

/// `GET /v1/agent/connect/ca/leaf/:service`: a leaf certificate and its key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct IssuedCert {
    /// Serial number, lowercase colon-hex.
    pub serial_number: String,
    /// The leaf, PEM, followed by the intermediates of the root that signed it.
    #[serde(rename = "CertPEM")]
    pub cert_pem: String,
    /// The leaf's private key, PEM (made by the agent; servers never see it, so it is empty
    /// in the server's signing reply).
    #[serde(rename = "PrivateKeyPEM")]
    pub private_key_pem: String,
    /// Service name.
    pub service: String,
    /// The SPIFFE URI in the certificate.
    #[serde(rename = "ServiceURI")]
    pub service_uri: String,
    /// Start of validity, RFC 3339.
    pub valid_after: String,
    /// End of validity, RFC 3339.
    pub valid_before: String,
    /// Namespace (always `default`).
    #[serde(default)]
    pub namespace: String,
    /// Index of the issue.
    pub create_index: u64,
    /// Index of the issue; moves every time the agent replaces the certificate.
    pub modify_index: u64,
}

/// The internal signing request an agent sends a server (never an HTTP API of its own).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SignRequest {
    /// The service whose identity is asked for; the CSR must carry exactly its SPIFFE URI.
    pub service: String,
    /// PKCS#10 request, PEM.
    pub csr_pem: String,
}

/// Whether `name` can be a service identity: non-empty, and only characters that need no
/// escaping in a SPIFFE URI path segment (letters, digits, `-`, `_`, `.`).
pub fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The trust domain of a cluster: `<cluster-id>.consul`.
pub fn trust_domain(cluster_id: &str) -> String {
    format!("{cluster_id}.consul")
}

/// The SPIFFE identity of a service:
/// `spiffe://<trust-domain>/ns/default/dc/<dc>/svc/<service>`.
pub fn spiffe_service_uri(trust_domain: &str, datacenter: &str, service: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{DEFAULT_NAMESPACE}/dc/{datacenter}/svc/{service}")
}

/// Bytes as lowercase colon-separated hex (`ab:01:...`), Consul's `connect.HexString`.
pub fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn provider_config_reads_any_key_case_and_validates() {
        let map = json!({"leaf_cert_ttl": "24h", "PRIVATEKEYTYPE": "ec", "PrivateKeyBits": 384});
        let c = CaProviderConfig::from_map(map.as_object().unwrap()).unwrap();
        assert_eq!(c.leaf_cert_ttl, std::time::Duration::from_secs(24 * 3600));
        assert_eq!(c.private_key_bits, 384);

        let bad = |v: serde_json::Value| CaProviderConfig::from_map(v.as_object().unwrap());
        assert_eq!(
            bad(json!({"LeafCertTTL": "10m"})),
            Err(InvalidCaConfig::LeafTtlRange)
        );
        assert_eq!(
            bad(json!({"PrivateKeyType": "dsa"})),
            Err(InvalidCaConfig::KeyType)
        );
        assert!(matches!(
            bad(json!({"PrivateKeyBits": 100})),
            Err(InvalidCaConfig::KeyBits(_))
        ));
        assert_eq!(
            bad(json!({"PrivateKey": "x"})),
            Err(InvalidCaConfig::KeyWithoutCert)
        );
        assert!(matches!(
            bad(json!({"LeafCertTTL": true})),
            Err(InvalidCaConfig::Field { .. })
        ));
    }

    #[test]
    fn public_map_never_shows_the_key() {
        let c = CaProviderConfig {
            private_key: "secret".into(),
            root_cert: "cert".into(),
            ..CaProviderConfig::default()
        };
        let m = c.to_public_map();
        assert_eq!(m["LeafCertTTL"], json!("72h0m0s"));
        assert!(!m.contains_key("PrivateKey") && !m.contains_key("RootCert"));
    }

    #[test]
    fn identities_and_hex() {
        assert_eq!(
            spiffe_service_uri("abc.consul", "dc1", "web"),
            "spiffe://abc.consul/ns/default/dc/dc1/svc/web"
        );
        assert_eq!(colon_hex(&[0xab, 0x01]), "ab:01");
        assert!(valid_service_name("web-1.v2_x"));
        for bad in ["", "a/b", "a b", "..", "web%2f"] {
            assert!(!valid_service_name(bad), "{bad}");
        }
    }

    #[test]
    fn roots_json_field_names() {
        let roots = CaRoots {
            active_root_id: "aa".into(),
            trust_domain: "x.consul".into(),
            roots: vec![CaRoot::default()],
        };
        let v = serde_json::to_value(&roots).unwrap();
        assert!(v.get("ActiveRootID").is_some() && v.get("TrustDomain").is_some());
        let r = &v["Roots"][0];
        for k in [
            "ID",
            "Name",
            "SerialNumber",
            "SigningKeyID",
            "NotBefore",
            "NotAfter",
            "RootCert",
            "IntermediateCerts",
            "Active",
            "CreateIndex",
            "ModifyIndex",
        ] {
            assert!(r.get(k).is_some(), "{k}");
        }
    }
}
