//! The UI's settings (`-ui`, `-ui-dir`, `ui_config { enabled, dir, content_path }`).

use std::path::PathBuf;

/// The URL path the UI is served under. Consul's `ui_config.content_path` can move it;
/// Concord accepts only this value (the front end's links are absolute), and the CLI says so.
pub const CONTENT_PATH: &str = "/ui/";

/// Whether and from where the agent serves the web UI.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UiConfig {
    /// Serve the UI at `/ui/` and redirect `/` there (`-ui`, `ui_config.enabled`; on by
    /// default in `-dev`, off otherwise, as in Consul).
    pub enabled: bool,
    /// A directory whose files are served instead of the embedded ones, read on every
    /// request (`-ui-dir`, `ui_config.dir`), laid out as `ui/web/` in the source tree. A file
    /// the directory lacks falls back to the embedded copy.
    pub dir: Option<PathBuf>,
}
