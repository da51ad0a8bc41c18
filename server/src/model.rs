//! The state store's own record types: what the tables hold, what a Raft [`Command`]
//! carries, and so what logs and snapshots store on disk.
//!
//! They mirror the Consul JSON types of `concord_api` but are deliberately separate: a
//! change to the HTTP/RPC wire (a renamed field, a new rename) must not change the on-disk
//! format, and the reverse. Conversions sit at the edges: `From<api type>` in the write path
//! (`rpc::write::to_command`), `to_api()` where a query answers. Field names serialize as
//! plain snake_case; the encoding is pinned by the golden tests (`crate::golden`), so, like
//! [`Command`], add fields only with `#[serde(default)]` and never rename or remove one.
//!
//! [`Command`]: crate::command::Command
//!
//! # Layout
//! - `catalog`: [`Node`](catalog::Node), [`Service`](catalog::Service),
//!   [`Check`](catalog::Check) and the register/deregister operations.
//! - `config_entry`: [`ConfigEntry`](config_entry::ConfigEntry), kept as Consul's JSON.
//! - `id`: the identifier newtypes ([`NodeName`](id::NodeName), [`ServiceId`](id::ServiceId),
//!   [`CheckId`](id::CheckId), [`SessionId`](id::SessionId)), plain strings on disk.
//! - `kv`: [`KvEntry`](kv::KvEntry) and [`KvOp`](kv::KvOp).
//! - `session`: [`Session`](session::Session).
//! - `acl`: [`Token`](acl::Token), [`Policy`](acl::Policy), [`Role`](acl::Role) (secrets
//!   redacted in `Debug`).
//! - `ca`: [`CaConfig`](ca::CaConfig), [`CaRoot`](ca::CaRoot) (Connect CA, keys included).
//! - `autopilot`: [`AutopilotConfig`](autopilot::AutopilotConfig), the one autopilot record.

pub(crate) mod acl;
pub(crate) mod autopilot;
pub(crate) mod ca;
pub(crate) mod catalog;
pub(crate) mod config_entry;
pub(crate) mod id;
pub(crate) mod kv;
pub(crate) mod session;
