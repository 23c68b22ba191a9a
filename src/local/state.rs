//! Durable per-Batch state for `run -f`: the status the controller would keep in the
//! cluster, plus what a local run needs to resume (the object's UID, the gateway it used,
//! the digest of the input it validated). Written atomically after every step.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::paths::{self, UnsafePath};
use crate::api::BatchStatus;

/// What is kept for one Batch between runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BatchState {
    /// Stands in for `metadata.uid`: generated once, carried in the upstream metadata.
    pub uid: String,
    /// The gateway base URL the batch was sent to, or `builtin` for the in-process simulator.
    pub gateway: String,
    /// sha256 of the input bytes that were validated.
    pub input_digest: String,
    pub status: BatchStatus,
}

/// The state directory (`--state-dir`), locked for the lifetime of the value so two runs
/// never drive the same batches at once.
pub struct StateDir {
    root: PathBuf,
    _lock: File,
}

impl StateDir {
    /// Opens (creating) the directory and takes its lock.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)?;
        let lock = File::create(root.join(".lock"))?;
        lock.try_lock().map_err(|_| {
            anyhow::anyhow!(
                "{} is in use by another run (it holds .lock); wait for it or use another --state-dir",
                root.display()
            )
        })?;
        Ok(Self {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of object `namespace/name`: `<root>/<namespace>/<name>`.
    pub fn object_dir(&self, namespace: &str, name: &str) -> Result<PathBuf, UnsafePath> {
        paths::under(&self.root, &[namespace, name])
    }

    /// File `file` in the directory of object `namespace/name`.
    pub fn object_file(&self, namespace: &str, name: &str, file: &str) -> Result<PathBuf, UnsafePath> {
        paths::under(&self.root, &[namespace, name, file])
    }

    fn path(&self, namespace: &str, name: &str) -> Result<PathBuf, UnsafePath> {
        self.object_file(namespace, name, "state.json")
    }

    /// The saved state of a Batch, if any.
    pub fn load(&self, namespace: &str, name: &str) -> anyhow::Result<Option<BatchState>> {
        let path = self.path(namespace, name)?;
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{} is damaged ({e}); delete it to start that batch over",
                    path.display()
                )
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
        }
    }

    /// Saves the state: written to a temporary file, flushed to disk, then renamed over the
    /// old one, so a crash leaves either the old or the new state, never half of one.
    pub fn save(&self, namespace: &str, name: &str, state: &BatchState) -> anyhow::Result<()> {
        let path = self.path(namespace, name)?;
        let dir = path.parent().expect("state path has a parent");
        std::fs::create_dir_all(dir)?;
        write_atomically(&path, &serde_json::to_vec_pretty(state)?)
    }

    /// Forgets a Batch's state (to start it over).
    pub fn remove(&self, namespace: &str, name: &str) -> anyhow::Result<()> {
        match std::fs::remove_file(self.path(namespace, name)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// Writes `bytes` to `path` through a temporary sibling, fsync and rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_loads_and_locks() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = StateDir::open(dir.path()).unwrap();
        assert!(state_dir.load("ns", "b").unwrap().is_none());
        let state = BatchState {
            uid: "u".into(),
            gateway: "builtin".into(),
            input_digest: "d".into(),
            status: BatchStatus::default(),
        };
        state_dir.save("ns", "b", &state).unwrap();
        assert_eq!(state_dir.load("ns", "b").unwrap(), Some(state));
        let second = StateDir::open(dir.path()).err().unwrap().to_string();
        assert!(second.contains("in use by another run"), "{second}");
    }
}
