//! Concord's web UI, served by every agent at `/ui/` on the HTTP port.
//!
//! The front end is static: HTML, one stylesheet and JavaScript ES modules (no build step, no
//! npm, no CDN), compiled into the binary so an agent is one self-contained file that works
//! offline. In the browser it talks only to the public HTTP API (`/v1/...`), following
//! changes with blocking queries; this crate only hands out the files. Every `/ui/*` path
//! that is not under `/ui/assets/` answers `index.html`, so Consul's UI URLs
//! (`/ui/dc1/services`, `/ui/dc1/kv/app/`) load the app, which routes on the client side.
//! `ui_config.content_path` names a directory whose files replace the embedded ones at run
//! time (for working on the UI without rebuilding). docs/ui.md says why this stack.
//!
//! # Layout
//! - [`config`]: [`UiConfig`], whether the UI is served and from where.
//! - [`assets`]: the embedded files and their content types.
//! - [`serve`]: [`router`], the axum routes under `/ui`, the disk override and the
//!   index fallback.

pub mod assets;
pub mod config;
pub mod serve;

pub use config::UiConfig;
pub use serve::{router, ROOT_REDIRECT};
