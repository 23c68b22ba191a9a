//! Where a run's results are read from. Today the output directory of `run -f`
//! (`DIR/<namespace>/<name>/{output.jsonl,errors.jsonl,status.yaml}`); a cluster's sinks (the
//! output Secret, an object-store prefix) are further variants of [`Source`] that bring one
//! Batch's files to local paths ([`BatchFiles`]) while the report reads them, so the join
//! never sees where they came from.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::ReportError;
use crate::api::{BatchStatus, BatchSweepStatus};

/// The file of the answered requests in a Batch's results.
pub const OUTPUT_FILE: &str = "output.jsonl";
/// The file of the failed requests.
pub const ERRORS_FILE: &str = "errors.jsonl";
/// What `run -f` wrote of a sweep's children.
pub const SUMMARY_FILE: &str = "summary.json";
/// What `run -f` wrote of the object's status.
pub const STATUS_FILE: &str = "status.yaml";

/// Where results are.
#[derive(Debug, Clone)]
pub enum Source {
    /// `run -f --out DIR`.
    Directory(PathBuf),
}

/// One Batch's (one attempt's) result files on this machine.
#[derive(Debug, Clone, Default)]
pub struct BatchFiles {
    /// The Batch's name.
    pub name: String,
    pub output: Option<PathBuf>,
    pub errors: Option<PathBuf>,
    pub status: Option<BatchStatus>,
}

impl Source {
    /// The results of Batch `namespace/name`, or `None` when it left none (never ran).
    pub fn batch(&self, namespace: &str, name: &str) -> Result<Option<BatchFiles>, ReportError> {
        match self {
            Source::Directory(root) => {
                let dir = object_dir(root, namespace, name)?;
                if !dir.is_dir() {
                    return Ok(None);
                }
                let existing = |file: &str| Some(dir.join(file)).filter(|p| p.is_file());
                Ok(Some(BatchFiles {
                    name: name.to_string(),
                    output: existing(OUTPUT_FILE),
                    errors: existing(ERRORS_FILE),
                    status: read_yaml(&dir.join(STATUS_FILE))?,
                }))
            }
        }
    }

    /// What `run -f` wrote of BatchSweep `namespace/name`'s status.
    pub fn sweep_status(&self, namespace: &str, name: &str) -> Result<Option<BatchSweepStatus>, ReportError> {
        match self {
            Source::Directory(root) => read_yaml(&object_dir(root, namespace, name)?.join(STATUS_FILE)),
        }
    }

    /// `summary.json` of BatchSweep `namespace/name` (what `run -f` wrote of its children).
    pub fn sweep_summary<T: DeserializeOwned>(&self, namespace: &str, name: &str) -> Result<Option<T>, ReportError> {
        match self {
            Source::Directory(root) => {
                let path = object_dir(root, namespace, name)?.join(SUMMARY_FILE);
                let bytes = match std::fs::read(&path) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(ReportError::io(&path, e)),
                };
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| ReportError::Input(format!("{}: {e}", path.display())))
            }
        }
    }

    /// Where the results are, for messages.
    pub fn describe(&self, namespace: &str, name: &str) -> String {
        match self {
            Source::Directory(root) => root.join(namespace).join(name).display().to_string(),
        }
    }
}

/// `root/namespace/name`, when both are names (no separator, not `.` or `..`): they come from
/// manifests and sweep naming, and must not lead elsewhere.
fn object_dir(root: &Path, namespace: &str, name: &str) -> Result<PathBuf, ReportError> {
    for part in [namespace, name] {
        let plain = !part.is_empty() && part != "." && part != ".." && !part.contains(['/', '\\', '\0']);
        if !plain {
            return Err(ReportError::Input(format!("{part:?} is not an object name")));
        }
    }
    Ok(root.join(namespace).join(name))
}

/// A YAML file, or `None` when it does not exist; an error naming the file otherwise.
fn read_yaml<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, ReportError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReportError::io(path, e)),
    };
    serde_yaml::from_str(&text)
        .map(Some)
        .map_err(|e| ReportError::Input(format!("{}: {e}", path.display())))
}
