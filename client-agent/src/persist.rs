//! Services and checks registered over the HTTP API survive an agent restart: each
//! definition is written to `<data_dir>/services/` or `<data_dir>/checks/` as the JSON the user
//! sent (re-validated on load), as Consul does. Without this, the first anti-entropy sync
//! after a restart would remove them from the catalog.
//!
//! Files are named by the SHA-256 of the ID in hex (IDs may contain `/` or `:`, and may be
//! longer than a file name may be; Consul names them by a hash too). Files of earlier
//! versions, named by the hex of the ID itself, still load; a save or remove of that ID
//! removes the old name, so nothing comes back from it. A write goes to a
//! temporary name, is fsynced, renamed over the real name, and the directory is fsynced: a
//! crash leaves the old definition or the new one, never half of one, and an acknowledged
//! registration survives a power loss. All file work runs on tokio's blocking pool
//! (`spawn_blocking`), never on the async worker threads that serve requests.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use concord_api::agent::{CheckDefinition, ServiceDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Where definitions are kept; `None` (dev mode) keeps nothing.
#[derive(Debug, Clone)]
pub struct Persist {
    root: Option<PathBuf>,
}

/// The file of `id`: a fixed-length name whatever the ID's length.
fn file_name(id: &str) -> String {
    use sha2::Digest as _;
    hex(&sha2::Sha256::digest(id.as_bytes())) + ".json"
}

/// The file name of earlier versions: the hex of the ID (too long for IDs of 123 bytes or
/// more, which is why it was replaced).
fn legacy_file_name(id: &str) -> String {
    hex(id.as_bytes()) + ".json"
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Removes `dir/name`; a missing file (or a name the file system cannot hold, so never
/// written) is not an error.
fn remove_file(dir: &Path, name: &str) -> io::Result<()> {
    match std::fs::remove_file(dir.join(name)) {
        // `InvalidFilename` is ENAMETOOLONG: an old name for a long ID, never written.
        Err(e)
            if e.kind() != io::ErrorKind::NotFound
                && e.kind() != io::ErrorKind::InvalidFilename =>
        {
            Err(e)
        }
        _ => Ok(()),
    }
}

impl Persist {
    /// Persistence under `data_dir`, or none.
    pub fn new(data_dir: Option<&Path>) -> Self {
        Persist {
            root: data_dir.map(Path::to_path_buf),
        }
    }

    /// Runs `f` on the root directory on the blocking pool; without a root, does nothing.
    async fn blocking<T: Default + Send + 'static>(
        &self,
        f: impl FnOnce(&Path) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let Some(root) = self.root.clone() else {
            return Ok(T::default());
        };
        tokio::task::spawn_blocking(move || f(&root))
            .await
            .map_err(io::Error::other)?
    }

    async fn write<T: Serialize>(&self, kind: &'static str, id: &str, value: &T) -> io::Result<()> {
        // Encode here: the value is borrowed and the closure must own what it uses.
        let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
        let name = file_name(id);
        let legacy = legacy_file_name(id);
        self.blocking(move |root| {
            let dir = root.join(kind);
            write_durably(&dir, &name, &bytes)?;
            remove_file(&dir, &legacy)
        })
        .await
    }

    async fn remove(&self, kind: &'static str, id: &str) -> io::Result<()> {
        let name = file_name(id);
        let legacy = legacy_file_name(id);
        self.blocking(move |root| {
            let dir = root.join(kind);
            remove_file(&dir, &name)?;
            remove_file(&dir, &legacy)
        })
        .await
    }

    async fn load<T: DeserializeOwned + Send + 'static>(&self, kind: &'static str) -> Vec<T> {
        let loaded = self
            .blocking(move |root| Ok(load_dir(&root.join(kind))))
            .await;
        loaded.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not read persisted definitions");
            Vec::new()
        })
    }

    /// Records a service definition under its ID.
    pub async fn save_service(&self, id: &str, def: &ServiceDefinition) -> io::Result<()> {
        self.write("services", id, def).await
    }

    /// Forgets a service definition.
    pub async fn remove_service(&self, id: &str) -> io::Result<()> {
        self.remove("services", id).await
    }

    /// Records a standalone check definition under its ID.
    pub async fn save_check(&self, id: &str, def: &CheckDefinition) -> io::Result<()> {
        self.write("checks", id, def).await
    }

    /// Forgets a check definition.
    pub async fn remove_check(&self, id: &str) -> io::Result<()> {
        self.remove("checks", id).await
    }

    /// Every persisted service definition.
    pub async fn services(&self) -> Vec<ServiceDefinition> {
        self.load("services").await
    }

    /// Every persisted check definition.
    pub async fn checks(&self) -> Vec<CheckDefinition> {
        self.load("checks").await
    }
}

/// Writes `bytes` to `dir/name` so that a crash leaves either the old file or the new one:
/// temporary file, fsync, rename, fsync of the directory (which makes the rename durable).
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Every readable definition in `dir`, in file-name order; unreadable ones are logged and
/// skipped (a missing directory is simply empty).
fn load_dir<T: DeserializeOwned>(dir: &Path) -> Vec<T> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| {
            let parsed = std::fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
            parsed
                .map_err(|e| {
                    tracing::warn!(file = %p.display(), error = %e, "skipping unreadable definition")
                })
                .ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trips_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let p = Persist::new(Some(dir.path()));
        let def = ServiceDefinition {
            name: "web".into(),
            id: Some("web/1".into()),
            ..ServiceDefinition::default()
        };
        p.save_service("web/1", &def).await.unwrap();
        assert_eq!(p.services().await, vec![def.clone()]);
        tracing::info!("a second save replaces the first, leaving no temporary file");
        p.save_service("web/1", &def).await.unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path().join("services"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [file_name("web/1")]);
        p.remove_service("web/1").await.unwrap();
        p.remove_service("web/1").await.unwrap();
        assert!(p.services().await.is_empty());
    }

    #[tokio::test]
    async fn long_ids_persist_and_old_names_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = Persist::new(Some(dir.path()));
        let long = "s".repeat(300);
        let def = |id: &str| ServiceDefinition {
            name: "web".into(),
            id: Some(id.into()),
            ..ServiceDefinition::default()
        };
        p.save_service(&long, &def(&long)).await.unwrap();
        assert_eq!(p.services().await, vec![def(&long)]);
        p.remove_service(&long).await.unwrap();
        assert!(p.services().await.is_empty());

        tracing::info!("a file of an earlier version loads, and is replaced on the next save");
        let services = dir.path().join("services");
        let old = services.join(legacy_file_name("old"));
        std::fs::write(&old, serde_json::to_vec(&def("old")).unwrap()).unwrap();
        assert_eq!(p.services().await, vec![def("old")]);
        p.save_service("old", &def("old")).await.unwrap();
        assert!(!old.exists());
        assert_eq!(p.services().await, vec![def("old")]);
        std::fs::write(&old, serde_json::to_vec(&def("old")).unwrap()).unwrap();
        p.remove_service("old").await.unwrap();
        assert!(p.services().await.is_empty());
    }

    #[tokio::test]
    async fn without_a_dir_nothing_is_kept() {
        let p = Persist::new(None);
        p.save_service("x", &ServiceDefinition::default())
            .await
            .unwrap();
        assert!(p.services().await.is_empty());
    }
}
