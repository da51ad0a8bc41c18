//! The one error type of config entry decoding and validation (kept apart so that
//! `intention`, which `config_entry` builds on, can use it without importing back).

/// Why an entry is refused; the text is Consul's where Consul has one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigEntryError(pub String);
