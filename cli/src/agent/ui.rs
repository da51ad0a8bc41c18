//! The web UI's settings: Consul's `ui_config { enabled, dir, content_path }` block, its
//! older top-level keys `ui` and `ui_dir`, and the flags `-ui`, `-ui-dir` and
//! `-ui-content-path`. On by default in `-dev`, as in Consul.

use std::path::PathBuf;

use serde::Deserialize;

use crate::flags::Parsed;

/// The `ui_config` block of a config file.
#[derive(Debug, Default, Deserialize)]
pub(super) struct UiConfigFile {
    enabled: Option<bool>,
    dir: Option<PathBuf>,
    content_path: Option<String>,
}

/// UI keys of one config file.
#[derive(Debug, Default, Deserialize)]
pub(super) struct UiKeys {
    ui_config: Option<UiConfigFile>,
    /// Consul's pre-1.9 `ui = true`.
    ui: Option<bool>,
    /// Consul's pre-1.9 `ui_dir`.
    ui_dir: Option<PathBuf>,
}

/// UI settings merged from files and flags; `None` is "not given".
#[derive(Debug, Default)]
pub(super) struct UiSettings {
    enabled: Option<bool>,
    dir: Option<PathBuf>,
}

impl UiSettings {
    /// Lays a file's UI keys over these settings (`ui_config` wins over the older keys).
    pub(super) fn merge(&mut self, keys: UiKeys) -> anyhow::Result<()> {
        let block = keys.ui_config.unwrap_or_default();
        check_content_path("ui_config.content_path", block.content_path.as_deref())?;
        if let Some(on) = block.enabled.or(keys.ui) {
            self.enabled = Some(on);
        }
        if let Some(dir) = block.dir.or(keys.ui_dir) {
            self.dir = Some(dir);
        }
        Ok(())
    }

    /// Lays the flags over these settings.
    pub(super) fn apply_flags(&mut self, p: &Parsed) -> anyhow::Result<()> {
        if p.bool("ui") {
            self.enabled = Some(true);
        }
        if let Some(dir) = p.value("ui-dir") {
            self.dir = Some(PathBuf::from(dir));
        }
        check_content_path("-ui-content-path", p.value("ui-content-path"))
    }

    /// The agent's UI config: enabled when asked, or in dev mode unless turned off.
    pub(super) fn resolve(&self, dev: bool) -> concord_ui::UiConfig {
        concord_ui::UiConfig {
            enabled: self.enabled.unwrap_or(dev),
            dir: self.dir.clone(),
        }
    }
}

/// Consul can serve its UI under another URL path; Concord's pages link to `/ui/`, so only
/// that path is accepted, with an error that says so rather than a UI with broken links.
fn check_content_path(key: &str, path: Option<&str>) -> anyhow::Result<()> {
    match path {
        None | Some("/ui/" | "/ui") => Ok(()),
        Some(other) => anyhow::bail!(
            "{key} {other:?}: Concord serves the UI only at {}",
            concord_ui::config::CONTENT_PATH
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(json: &str) -> UiKeys {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn on_in_dev_unless_turned_off() {
        let s = UiSettings::default();
        assert!(s.resolve(true).enabled);
        assert!(!s.resolve(false).enabled);
        let mut off = UiSettings::default();
        off.merge(keys(r#"{"ui_config":{"enabled":false}}"#))
            .unwrap();
        assert!(!off.resolve(true).enabled);
    }

    #[test]
    fn block_and_legacy_keys() {
        let mut s = UiSettings::default();
        s.merge(keys(r#"{"ui":true,"ui_dir":"/old"}"#)).unwrap();
        assert_eq!(s.resolve(false).dir, Some(PathBuf::from("/old")));
        assert!(s.resolve(false).enabled);
        s.merge(keys(
            r#"{"ui_config":{"dir":"/new","content_path":"/ui/"}}"#,
        ))
        .unwrap();
        assert_eq!(s.resolve(false).dir, Some(PathBuf::from("/new")));
    }

    #[test]
    fn flags() {
        let args: Vec<String> = ["-ui", "-ui-dir", "/srv/ui", "-ui-content-path", "/ui/"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let Ok(p) = super::super::parse_args(&args) else {
            panic!("flags did not parse");
        };
        let mut s = UiSettings::default();
        s.apply_flags(&p).unwrap();
        let config = s.resolve(false);
        assert!(config.enabled);
        assert_eq!(config.dir, Some(PathBuf::from("/srv/ui")));
        let args = vec!["-ui-content-path".to_string(), "/x/".to_string()];
        let Ok(p) = super::super::parse_args(&args) else {
            panic!("flags did not parse");
        };
        assert!(UiSettings::default().apply_flags(&p).is_err());
    }

    #[test]
    fn another_content_path_is_an_error() {
        let mut s = UiSettings::default();
        let err = s
            .merge(keys(r#"{"ui_config":{"content_path":"/consul/"}}"#))
            .unwrap_err();
        assert!(err.to_string().contains("only at /ui/"), "{err}");
    }
}
