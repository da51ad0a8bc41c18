//! Services and checks registered over the HTTP API survive an agent restart: each
//! definition is written to `<data_dir>/services/` or `<data_dir>/checks/` as the JSON the user
//! sent (re-validated on load), as Consul does. Without this, the first anti-entropy sync
//! after a restart would remove them from the catalog.
//!
//! Files are named by the hex of the ID (IDs may contain `/` or `:`), written to a temporary
//! name and renamed so a crash never leaves half a definition.

use std::io;
use std::path::{Path, PathBuf};

use concord_api::agent::{CheckDefinition, ServiceDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Where definitions are kept; `None` (dev mode) keeps nothing.
#[derive(Debug, Clone)]
pub struct Persist {
    root: Option<PathBuf>,
}

fn file_name(id: &str) -> String {
    id.bytes().map(|b| format!("{b:02x}")).collect::<String>() + ".json"
}

impl Persist {
    /// Persistence under `data_dir`, or none.
    pub fn new(data_dir: Option<&Path>) -> Self {
        Persist {
            root: data_dir.map(Path::to_path_buf),
        }
    }

    fn write<T: Serialize>(&self, kind: &str, id: &str, value: &T) -> io::Result<()> {
        let Some(root) = &self.root else {
            return Ok(());
        };
        let dir = root.join(kind);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(file_name(id));
        let tmp = dir.join(format!(".{}.tmp", file_name(id)));
        let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &path)
    }

    fn remove(&self, kind: &str, id: &str) -> io::Result<()> {
        let Some(root) = &self.root else {
            return Ok(());
        };
        match std::fs::remove_file(root.join(kind).join(file_name(id))) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn load<T: DeserializeOwned>(&self, kind: &str) -> Vec<T> {
        let Some(root) = &self.root else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(root.join(kind)) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        paths
            .into_iter()
            .filter_map(|p| match std::fs::read(&p).map(|b| serde_json::from_slice(&b)) {
                Ok(Ok(v)) => Some(v),
                Ok(Err(e)) => {
                    tracing::warn!(file = %p.display(), error = %e, "skipping unreadable definition");
                    None
                }
                Err(e) => {
                    tracing::warn!(file = %p.display(), error = %e, "skipping unreadable definition");
                    None
                }
            })
            .collect()
    }

    /// Records a service definition under its ID.
    pub fn save_service(&self, id: &str, def: &ServiceDefinition) -> io::Result<()> {
        self.write("services", id, def)
    }

    /// Forgets a service definition.
    pub fn remove_service(&self, id: &str) -> io::Result<()> {
        self.remove("services", id)
    }

    /// Records a standalone check definition under its ID.
    pub fn save_check(&self, id: &str, def: &CheckDefinition) -> io::Result<()> {
        self.write("checks", id, def)
    }

    /// Forgets a check definition.
    pub fn remove_check(&self, id: &str) -> io::Result<()> {
        self.remove("checks", id)
    }

    /// Every persisted service definition.
    pub fn services(&self) -> Vec<ServiceDefinition> {
        self.load("services")
    }

    /// Every persisted check definition.
    pub fn checks(&self) -> Vec<CheckDefinition> {
        self.load("checks")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let p = Persist::new(Some(dir.path()));
        let def = ServiceDefinition {
            name: "web".into(),
            id: Some("web/1".into()),
            ..ServiceDefinition::default()
        };
        p.save_service("web/1", &def).unwrap();
        assert_eq!(p.services(), vec![def]);
        p.remove_service("web/1").unwrap();
        p.remove_service("web/1").unwrap();
        assert!(p.services().is_empty());
    }

    #[test]
    fn without_a_dir_nothing_is_kept() {
        let p = Persist::new(None);
        p.save_service("x", &ServiceDefinition::default()).unwrap();
        assert!(p.services().is_empty());
    }
}
