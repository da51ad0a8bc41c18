//! Connect CA records: the CA configuration and the roots, private keys included. They live
//! only in the servers' state (Raft log, snapshots); queries convert them to the API types,
//! which have no field for a key.

use concord_api::connect as api;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The CA configuration (Consul's `CAConfiguration` minus the provider's secrets, which sit
/// on the root they made).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CaConfig {
    /// Cluster UUID; the trust domain is `<cluster_id>.consul`. Never changes once set.
    pub(crate) cluster_id: String,
    /// Provider (`consul`).
    pub(crate) provider: String,
    /// Leaf lifetime, milliseconds.
    pub(crate) leaf_cert_ttl_ms: u64,
    /// Rotation period, milliseconds.
    pub(crate) rotation_period_ms: u64,
    /// Intermediate lifetime, milliseconds.
    pub(crate) intermediate_cert_ttl_ms: u64,
    /// Generated root lifetime, milliseconds.
    pub(crate) root_cert_ttl_ms: u64,
    /// `ec` or `rsa`.
    pub(crate) private_key_type: String,
    /// Key size in bits.
    pub(crate) private_key_bits: u32,
    /// Whether the last rotation skipped cross-signing.
    pub(crate) force_without_cross_signing: bool,
    /// Index that created it.
    pub(crate) create_index: u64,
    /// Index of its last change.
    pub(crate) modify_index: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl CaConfig {
    /// The stored form of a validated provider config.
    pub(crate) fn new(
        cluster_id: String,
        c: &api::CaProviderConfig,
        force_without_cross_signing: bool,
    ) -> Self {
        CaConfig {
            cluster_id,
            provider: api::PROVIDER_CONSUL.to_string(),
            leaf_cert_ttl_ms: ms(c.leaf_cert_ttl),
            rotation_period_ms: ms(c.rotation_period),
            intermediate_cert_ttl_ms: ms(c.intermediate_cert_ttl),
            root_cert_ttl_ms: ms(c.root_cert_ttl),
            private_key_type: c.private_key_type.clone(),
            private_key_bits: c.private_key_bits,
            force_without_cross_signing,
            create_index: 0,
            modify_index: 0,
        }
    }

    /// Leaf lifetime.
    pub(crate) fn leaf_cert_ttl(&self) -> Duration {
        Duration::from_millis(self.leaf_cert_ttl_ms)
    }

    /// The provider config as the API reads it (no key, no supplied certificate).
    pub(crate) fn provider_config(&self) -> api::CaProviderConfig {
        api::CaProviderConfig {
            leaf_cert_ttl: self.leaf_cert_ttl(),
            rotation_period: Duration::from_millis(self.rotation_period_ms),
            intermediate_cert_ttl: Duration::from_millis(self.intermediate_cert_ttl_ms),
            root_cert_ttl: Duration::from_millis(self.root_cert_ttl_ms),
            private_key_type: self.private_key_type.clone(),
            private_key_bits: self.private_key_bits,
            private_key: String::new(),
            root_cert: String::new(),
        }
    }

    pub(crate) fn to_api(&self) -> api::CaConfiguration {
        api::CaConfiguration {
            cluster_id: self.cluster_id.clone(),
            provider: self.provider.clone(),
            config: self.provider_config().to_public_map(),
            force_without_cross_signing: self.force_without_cross_signing,
            create_index: self.create_index,
            modify_index: self.modify_index,
        }
    }
}

/// A root CA and its private key.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
pub(crate) struct CaRoot {
    /// SHA-1 fingerprint of the certificate, colon-hex.
    pub(crate) id: String,
    /// Human name.
    pub(crate) name: String,
    /// Serial number (low 64 bits).
    pub(crate) serial_number: u64,
    /// Subject key identifier, colon-hex.
    pub(crate) signing_key_id: String,
    /// RFC 3339.
    pub(crate) not_before: String,
    /// RFC 3339.
    pub(crate) not_after: String,
    /// Certificate, PEM.
    pub(crate) root_cert: String,
    /// Intermediates shipped with its leaves (the cross-signed certificate after rotation).
    pub(crate) intermediate_certs: Vec<String>,
    /// Private key, PKCS#8 PEM. Never leaves the servers.
    pub(crate) private_key: String,
    /// `ec` or `rsa`.
    pub(crate) private_key_type: String,
    /// Key size in bits.
    pub(crate) private_key_bits: u32,
    /// Whether it signs new leaves.
    pub(crate) active: bool,
    /// Index that created it.
    pub(crate) create_index: u64,
    /// Index of its last change.
    pub(crate) modify_index: u64,
    /// Leader time (Unix ms) of the rotation that made it inactive; `None` while active, and
    /// for roots rotated out before this was recorded. Pruning counts from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rotated_out_at_ms: Option<u64>,
}

// By hand, so no log line or panic message can ever print the key.
impl std::fmt::Debug for CaRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaRoot")
            .field("id", &self.id)
            .field("serial_number", &self.serial_number)
            .field("active", &self.active)
            .field("private_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl CaRoot {
    pub(crate) fn to_api(&self) -> api::CaRoot {
        api::CaRoot {
            id: self.id.clone(),
            name: self.name.clone(),
            serial_number: self.serial_number,
            signing_key_id: self.signing_key_id.clone(),
            external_trust_domain: String::new(),
            not_before: self.not_before.clone(),
            not_after: self.not_after.clone(),
            root_cert: self.root_cert.clone(),
            intermediate_certs: self.intermediate_certs.clone(),
            active: self.active,
            private_key_type: self.private_key_type.clone(),
            private_key_bits: self.private_key_bits,
            create_index: self.create_index,
            modify_index: self.modify_index,
        }
    }
}
