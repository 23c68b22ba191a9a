//! Where a run's results are read from: the output directory of `run -f`
//! (`DIR/<namespace>/<name>/{output.jsonl,errors.jsonl,status.yaml}`), and for a Batch whose
//! `spec.output.objectStore` took its results, that prefix: its files are fetched to a scratch
//! directory while the report reads them, one group of Batches at a time, so the join never sees
//! where they came from ([`BatchFiles`]). In a cluster ([`Source::Cluster`]), the statuses come
//! from the API server and the results from each Batch's output Secret or object-store prefix.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use std::sync::Arc;

use super::ReportError;
use super::target::Attempt;
use crate::api::{BatchStatus, BatchSweepStatus};
use crate::io::object_output::{ERRORS_OBJECT, OUTPUT_OBJECT};
use crate::io::object_storage::{ObjectLocation, StorageErrorKind};

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
    /// The API server (`kubectl llmbatch report`).
    Cluster(super::cluster::Cluster),
}

/// One Batch's (one attempt's) result files on this machine.
#[derive(Debug, Clone, Default)]
pub struct BatchFiles {
    /// The Batch's name.
    pub name: String,
    pub output: Option<PathBuf>,
    pub errors: Option<PathBuf>,
    pub status: Option<BatchStatus>,
    /// The scratch directory holding `output` and `errors` when they were fetched.
    pub fetched: Option<Arc<Fetched>>,
}

/// A scratch directory of fetched result files, removed when the last reader drops it.
#[derive(Debug)]
pub struct Fetched {
    dir: PathBuf,
}

impl Drop for Fetched {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Source {
    /// Whether Batch `namespace/name` left anything (it ran).
    pub fn has_batch(&self, namespace: &str, name: &str) -> Result<bool, ReportError> {
        match self {
            Source::Directory(root) => Ok(object_dir(root, namespace, name)?.is_dir()),
            Source::Cluster(cluster) => cluster.has_batch(namespace, name),
        }
    }

    /// The results of `attempt` in `namespace`, or `None` when it left none (never ran).
    pub fn batch(&self, namespace: &str, attempt: &Attempt) -> Result<Option<BatchFiles>, ReportError> {
        match self {
            Source::Directory(root) => {
                let dir = object_dir(root, namespace, &attempt.name)?;
                if !dir.is_dir() {
                    return Ok(None);
                }
                let existing = |file: &str| Some(dir.join(file)).filter(|p| p.is_file());
                let mut files = BatchFiles {
                    name: attempt.name.clone(),
                    output: existing(OUTPUT_FILE),
                    errors: existing(ERRORS_FILE),
                    status: read_yaml(&dir.join(STATUS_FILE))?,
                    fetched: None,
                };
                if let Some(prefix) = &attempt.objects
                    && files.output.is_none()
                    && files.errors.is_none()
                {
                    fetch(prefix, &mut files)?;
                }
                Ok(Some(files))
            }
            Source::Cluster(cluster) => cluster.batch(namespace, attempt),
        }
    }

    /// What `run -f` wrote of BatchSweep `namespace/name`'s status.
    pub fn sweep_status(&self, namespace: &str, name: &str) -> Result<Option<BatchSweepStatus>, ReportError> {
        match self {
            Source::Directory(root) => read_yaml(&object_dir(root, namespace, name)?.join(STATUS_FILE)),
            Source::Cluster(cluster) => cluster.sweep_status(namespace, name),
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
            // The cluster's sweep status keeps the plan: nothing needs run -f's summary.
            Source::Cluster(_) => Ok(None),
        }
    }

    /// Where the results are, for messages.
    pub fn describe(&self, namespace: &str, name: &str) -> String {
        match self {
            Source::Directory(root) => root.join(namespace).join(name).display().to_string(),
            Source::Cluster(_) => format!("the API server's {namespace}/{name}"),
        }
    }
}

/// Fetches `output.jsonl` and `errors.jsonl` under `prefix` (those that exist) into a scratch
/// directory, each bounded by a result file's limit.
pub(super) fn fetch(prefix: &ObjectLocation, files: &mut BatchFiles) -> Result<(), ReportError> {
    let (dir, fetched) = scratch()?;
    let limit = crate::gateway::ResponseLimits::default().file_bytes;
    for (object, slot) in [(OUTPUT_OBJECT, &mut files.output), (ERRORS_OBJECT, &mut files.errors)] {
        let location = prefix.child(object);
        let path = dir.join(object);
        if block_on(download(&location, &path, limit))? {
            *slot = Some(path);
        }
    }
    files.fetched = Some(fetched);
    Ok(())
}

/// A new scratch directory under `TMPDIR`, removed when the last holder of its [`Fetched`] drops it.
pub(super) fn scratch() -> Result<(PathBuf, Arc<Fetched>), ReportError> {
    let dir = std::env::temp_dir().join(format!("llmb-report-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).map_err(|e| ReportError::io(&dir, e))?;
    Ok((dir.clone(), Arc::new(Fetched { dir })))
}

/// Writes the object at `location` to `path`; false when there is no such object.
async fn download(location: &ObjectLocation, path: &Path, limit: u64) -> Result<bool, ReportError> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let failed = |e: crate::io::object_storage::StorageError| ReportError::Fetch(format!("{}: {e}", location.url));
    let size = match location.size().await {
        Ok(size) => size,
        Err(e) if e.kind == StorageErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(failed(e)),
    };
    if size > limit {
        return Err(ReportError::Fetch(format!(
            "{}: {size} bytes, more than a result file may hold ({limit})",
            location.url
        )));
    }
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| ReportError::io(path, e))?;
    let mut stream = location.read_from(0, None, size);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ReportError::Fetch(format!("{}: {e}", location.url)))?;
        file.write_all(&chunk).await.map_err(|e| ReportError::io(path, e))?;
    }
    file.flush().await.map_err(|e| ReportError::io(path, e))?;
    Ok(true)
}

/// Runs `future` to its end from the report's (synchronous) walk: on the runtime it runs under
/// (from a blocking thread), or on one of its own.
pub(super) fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(future),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for object storage")
            .block_on(future),
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
