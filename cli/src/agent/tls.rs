//! The agent's TLS settings: Consul's `tls { defaults { } https { } internal_rpc { } grpc { } }`
//! stanza, each block inheriting key by key from `defaults` as Consul's do, and the older
//! top-level keys (`ca_file`, `cert_file`, `key_file`, `verify_incoming`,
//! `verify_incoming_rpc`, `verify_incoming_https`, `verify_outgoing`,
//! `verify_server_hostname`, `tls_min_version`) that Consul still maps onto it. Resolved into
//! [`concord_net::tls::TlsSettings`] for the HTTPS listener and internal RPC.

use std::path::PathBuf;

use concord_net::tls::{MinVersion, TlsSettings};
use serde::Deserialize;

/// One block of the `tls` stanza, as written (every key optional).
#[derive(Clone, Debug, Default, Deserialize)]
pub(super) struct TlsBlock {
    ca_file: Option<PathBuf>,
    ca_path: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    verify_incoming: Option<bool>,
    verify_outgoing: Option<bool>,
    /// `internal_rpc` only, as in Consul.
    verify_server_hostname: Option<bool>,
    tls_min_version: Option<String>,
}

impl TlsBlock {
    /// Lays `later` over this block: given keys replace.
    fn over(&mut self, later: TlsBlock) {
        fn set<T>(slot: &mut Option<T>, value: Option<T>) {
            if value.is_some() {
                *slot = value;
            }
        }
        set(&mut self.ca_file, later.ca_file);
        set(&mut self.ca_path, later.ca_path);
        set(&mut self.cert_file, later.cert_file);
        set(&mut self.key_file, later.key_file);
        set(&mut self.verify_incoming, later.verify_incoming);
        set(&mut self.verify_outgoing, later.verify_outgoing);
        set(
            &mut self.verify_server_hostname,
            later.verify_server_hostname,
        );
        set(&mut self.tls_min_version, later.tls_min_version);
    }

    /// This block with `defaults` filling the keys it does not give.
    fn inheriting(&self, defaults: &TlsBlock) -> TlsBlock {
        let mut merged = defaults.clone();
        merged.over(self.clone());
        merged
    }

    /// The block as the runtime takes it; `warnings` notes a TLS version rustls lacks.
    fn resolve(&self, name: &str, warnings: &mut Vec<String>) -> anyhow::Result<TlsSettings> {
        let (min_version, raised) = match &self.tls_min_version {
            Some(v) => MinVersion::parse(v).map_err(|e| anyhow::anyhow!("tls.{name}.{e}"))?,
            None => (MinVersion::default(), false),
        };
        if raised {
            warnings.push(format!(
                "tls.{name}.tls_min_version {:?}: TLS 1.0 and 1.1 are not offered; TLS 1.2 is the minimum",
                self.tls_min_version.as_deref().unwrap_or_default()
            ));
        }
        Ok(TlsSettings {
            ca_file: self.ca_file.clone(),
            ca_path: self.ca_path.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            verify_incoming: self.verify_incoming.unwrap_or(false),
            verify_outgoing: self.verify_outgoing.unwrap_or(false),
            verify_server_hostname: self.verify_server_hostname.unwrap_or(false),
            min_version,
        })
    }
}

/// The `tls` stanza.
#[derive(Debug, Default, Deserialize)]
pub(super) struct TlsStanza {
    defaults: Option<TlsBlock>,
    https: Option<TlsBlock>,
    internal_rpc: Option<TlsBlock>,
    /// Accepted; there is no gRPC listener to use it.
    grpc: Option<serde::de::IgnoredAny>,
}

/// TLS keys of one config file: the stanza and the older top-level keys.
#[derive(Debug, Default, Deserialize)]
pub(super) struct TlsKeys {
    tls: Option<TlsStanza>,
    ca_file: Option<PathBuf>,
    ca_path: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    verify_incoming: Option<bool>,
    verify_incoming_rpc: Option<bool>,
    verify_incoming_https: Option<bool>,
    verify_outgoing: Option<bool>,
    verify_server_hostname: Option<bool>,
    tls_min_version: Option<String>,
}

/// TLS settings merged from the files in order; resolved per listener by
/// [`TlsConfig::https`] and [`TlsConfig::internal_rpc`].
#[derive(Debug, Default)]
pub(super) struct TlsConfig {
    defaults: TlsBlock,
    https: TlsBlock,
    internal_rpc: TlsBlock,
}

impl TlsConfig {
    /// Lays one file's TLS keys over these settings. The older top-level keys go where
    /// Consul maps them: most into `defaults`, `verify_incoming_rpc` and
    /// `verify_server_hostname` into `internal_rpc`, `verify_incoming_https` into `https`.
    pub(super) fn merge(&mut self, keys: TlsKeys) {
        self.defaults.over(TlsBlock {
            ca_file: keys.ca_file,
            ca_path: keys.ca_path,
            cert_file: keys.cert_file,
            key_file: keys.key_file,
            verify_incoming: keys.verify_incoming,
            verify_outgoing: keys.verify_outgoing,
            verify_server_hostname: None,
            tls_min_version: keys.tls_min_version,
        });
        self.internal_rpc.over(TlsBlock {
            verify_incoming: keys.verify_incoming_rpc,
            verify_server_hostname: keys.verify_server_hostname,
            ..TlsBlock::default()
        });
        self.https.over(TlsBlock {
            verify_incoming: keys.verify_incoming_https,
            ..TlsBlock::default()
        });
        if let Some(stanza) = keys.tls {
            let _ = stanza.grpc;
            if let Some(mut d) = stanza.defaults {
                // Consul reads verify_server_hostname from internal_rpc only.
                d.verify_server_hostname = None;
                self.defaults.over(d);
            }
            if let Some(h) = stanza.https {
                self.https.over(h);
            }
            if let Some(r) = stanza.internal_rpc {
                self.internal_rpc.over(r);
            }
        }
    }

    /// `tls.https` over `tls.defaults`.
    pub(super) fn https(&self, warnings: &mut Vec<String>) -> anyhow::Result<TlsSettings> {
        self.https
            .inheriting(&self.defaults)
            .resolve("https", warnings)
    }

    /// `tls.internal_rpc` over `tls.defaults`.
    pub(super) fn internal_rpc(&self, warnings: &mut Vec<String>) -> anyhow::Result<TlsSettings> {
        self.internal_rpc
            .inheriting(&self.defaults)
            .resolve("internal_rpc", warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(json: &str) -> TlsKeys {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn blocks_inherit_from_defaults_key_by_key() {
        let mut c = TlsConfig::default();
        c.merge(keys(
            r#"{"tls":{"defaults":{"ca_file":"ca.pem","cert_file":"d.pem","key_file":"d-key.pem",
                "verify_incoming":true,"tls_min_version":"TLSv1_3","verify_server_hostname":true},
              "https":{"verify_incoming":false},
              "internal_rpc":{"verify_outgoing":true,"verify_server_hostname":true}}}"#,
        ));
        let mut warnings = Vec::new();
        let https = c.https(&mut warnings).unwrap();
        assert_eq!(https.ca_file, Some(PathBuf::from("ca.pem")));
        assert_eq!(https.cert_file, Some(PathBuf::from("d.pem")));
        assert!(!https.verify_incoming, "https overrides defaults");
        assert!(!https.verify_server_hostname, "not read from defaults");
        assert_eq!(https.min_version, MinVersion::Tls13);
        let rpc = c.internal_rpc(&mut warnings).unwrap();
        assert!(rpc.verify_incoming && rpc.verify_outgoing && rpc.verify_server_hostname);
        assert!(warnings.is_empty());

        tracing::info!("a later file overrides one key only");
        c.merge(keys(r#"{"tls":{"defaults":{"cert_file":"later.pem"}}}"#));
        let https = c.https(&mut warnings).unwrap();
        assert_eq!(https.cert_file, Some(PathBuf::from("later.pem")));
        assert_eq!(https.key_file, Some(PathBuf::from("d-key.pem")));
    }

    #[test]
    fn older_top_level_keys_map_as_consul_maps_them() {
        let mut c = TlsConfig::default();
        c.merge(keys(
            r#"{"ca_file":"ca.pem","cert_file":"c.pem","key_file":"k.pem","verify_incoming_https":true,
                "verify_incoming_rpc":true,"verify_server_hostname":true,"verify_outgoing":true,
                "tls_min_version":"tls10"}"#,
        ));
        let mut warnings = Vec::new();
        let https = c.https(&mut warnings).unwrap();
        assert!(https.verify_incoming && !https.verify_server_hostname);
        let rpc = c.internal_rpc(&mut warnings).unwrap();
        assert!(rpc.verify_incoming && rpc.verify_outgoing && rpc.verify_server_hostname);
        assert_eq!(rpc.min_version, MinVersion::Tls12);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("TLS 1.2 is the minimum"));
        c.merge(keys(r#"{"tls":{"defaults":{"tls_min_version":"SSLv3"}}}"#));
        let e = c.https(&mut warnings).unwrap_err().to_string();
        assert!(e.starts_with("tls.https.tls_min_version"), "{e}");
    }
}
