//! The simulator's shared state: file and batch stores, the request journal, the fault RNG and
//! the background batch tasks.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::config::SimulatorConfig;
use super::wire::{Batch, BatchStatus, FileObject};

/// Shared, cheaply clonable state behind the simulator's router.
#[derive(Clone)]
pub struct SimState {
    inner: Arc<Inner>,
}

struct Inner {
    config: SimulatorConfig,
    data_dir: DataDir,
    files: Mutex<Vec<FileObject>>,
    batches: Mutex<Vec<BatchRecord>>,
    journal: Mutex<VecDeque<JournalEntry>>,
    rng: Mutex<StdRng>,
    shutdown: CancellationToken,
    tasks: Mutex<JoinSet<()>>,
}

impl fmt::Debug for SimState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimState")
            .field("config", &self.inner.config)
            .field("data_dir", &self.inner.data_dir.path)
            .finish_non_exhaustive()
    }
}

/// A batch and the token that asks its background task to cancel.
struct BatchRecord {
    batch: Batch,
    cancel: CancellationToken,
    /// Its tokens, counted against `--enqueued-token-limit` while it is in progress.
    enqueued_tokens: u64,
}

/// One `/v1` request as seen by `GET /__sim/journal`.
#[derive(Debug, Clone, Serialize)]
pub struct JournalEntry {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The client's `x-client-request-id` header, when sent (direct mode sends the custom_id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
    /// When the request arrived and when its answer was ready, in microseconds since the Unix
    /// epoch: tests read concurrency and request rates from these.
    pub started_us: u64,
    pub ended_us: u64,
}

/// The directory holding file contents; removed on drop when the simulator created it.
struct DataDir {
    path: PathBuf,
    owned: bool,
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Locks a mutex, recovering from poisoning (a panicked handler must not wedge the simulator).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SimState {
    /// Creates the state: prepares the data directory and seeds the fault RNG.
    pub fn new(config: SimulatorConfig) -> anyhow::Result<SimState> {
        let data_dir = match &config.data_dir {
            Some(path) => {
                std::fs::create_dir_all(path).with_context(|| format!("creating data dir {}", path.display()))?;
                DataDir {
                    path: path.clone(),
                    owned: false,
                }
            }
            None => {
                let path = std::env::temp_dir().join(format!("llmb-sim-{}", uuid::Uuid::new_v4()));
                std::fs::create_dir_all(&path).with_context(|| format!("creating data dir {}", path.display()))?;
                DataDir { path, owned: true }
            }
        };
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Ok(SimState {
            inner: Arc::new(Inner {
                config,
                data_dir,
                files: Mutex::default(),
                batches: Mutex::default(),
                journal: Mutex::default(),
                rng: Mutex::new(rng),
                shutdown: CancellationToken::new(),
                tasks: Mutex::default(),
            }),
        })
    }

    /// The configuration the simulator runs with.
    pub fn config(&self) -> &SimulatorConfig {
        &self.inner.config
    }

    /// Where file contents are stored.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir.path
    }

    /// The on-disk path of a file's content.
    pub(crate) fn file_path(&self, id: &str) -> PathBuf {
        self.inner.data_dir.path.join(id)
    }

    pub(crate) fn insert_file(&self, file: FileObject) {
        lock(&self.inner.files).push(file);
    }

    pub(crate) fn file(&self, id: &str) -> Option<FileObject> {
        lock(&self.inner.files).iter().find(|f| f.id == id).cloned()
    }

    pub(crate) fn remove_file(&self, id: &str) -> Option<FileObject> {
        let mut files = lock(&self.inner.files);
        let pos = files.iter().position(|f| f.id == id)?;
        Some(files.remove(pos))
    }

    /// All files, oldest first.
    pub(crate) fn files(&self) -> Vec<FileObject> {
        lock(&self.inner.files).clone()
    }

    /// Stores a new batch and returns the token its task watches for cancellation.
    pub(crate) fn insert_batch(&self, batch: Batch) -> CancellationToken {
        let cancel = self.inner.shutdown.child_token();
        lock(&self.inner.batches).push(BatchRecord {
            batch,
            cancel: cancel.clone(),
            enqueued_tokens: 0,
        });
        cancel
    }

    pub(crate) fn batch(&self, id: &str) -> Option<Batch> {
        lock(&self.inner.batches)
            .iter()
            .find(|r| r.batch.id == id)
            .map(|r| r.batch.clone())
    }

    /// All batches, oldest first.
    pub(crate) fn batches(&self) -> Vec<Batch> {
        lock(&self.inner.batches).iter().map(|r| r.batch.clone()).collect()
    }

    /// Runs `f` on a batch under the store's lock; `None` if the id is unknown.
    pub(crate) fn update_batch<R>(&self, id: &str, f: impl FnOnce(&mut Batch) -> R) -> Option<R> {
        let mut batches = lock(&self.inner.batches);
        let record = batches.iter_mut().find(|r| r.batch.id == id)?;
        Some(f(&mut record.batch))
    }

    /// Runs `start` on a validated batch, unless its `tokens` on top of those of the batches in
    /// progress would pass `limit`: then `Err` with the tokens already enqueued. Atomic over
    /// all batches, so two batches validating at once cannot both slip under the limit.
    pub(crate) fn start_batch(
        &self,
        id: &str,
        tokens: u64,
        limit: Option<u64>,
        start: impl FnOnce(&mut Batch) -> bool,
    ) -> Result<bool, u64> {
        let mut batches = lock(&self.inner.batches);
        let enqueued: u64 = batches
            .iter()
            .filter(|r| matches!(r.batch.status, BatchStatus::InProgress | BatchStatus::Finalizing))
            .map(|r| r.enqueued_tokens)
            .sum();
        if limit.is_some_and(|limit| enqueued + tokens > limit) {
            return Err(enqueued);
        }
        let Some(record) = batches.iter_mut().find(|r| r.batch.id == id) else {
            return Ok(false);
        };
        record.enqueued_tokens = tokens;
        Ok(start(&mut record.batch))
    }

    /// Like [`Self::update_batch`], also handing out the batch's cancellation token.
    pub(crate) fn update_batch_with_token<R>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Batch, &CancellationToken) -> R,
    ) -> Option<R> {
        let mut batches = lock(&self.inner.batches);
        let record = batches.iter_mut().find(|r| r.batch.id == id)?;
        Some(f(&mut record.batch, &record.cancel))
    }

    /// Journals a request; past the configured capacity the oldest entries go.
    pub(crate) fn record(&self, entry: JournalEntry) {
        let mut journal = lock(&self.inner.journal);
        if journal.len() >= self.inner.config.journal_capacity.max(1) {
            journal.pop_front();
        }
        journal.push_back(entry);
    }

    pub(crate) fn journal(&self) -> Vec<JournalEntry> {
        lock(&self.inner.journal).iter().cloned().collect()
    }

    pub(crate) fn clear_journal(&self) {
        lock(&self.inner.journal).clear();
    }

    /// A uniform draw in `0..1` from the (possibly seeded) fault RNG.
    pub(crate) fn draw(&self) -> f64 {
        lock(&self.inner.rng).random()
    }

    /// A uniform index in `0..n` from the fault RNG.
    pub(crate) fn draw_index(&self, n: usize) -> usize {
        lock(&self.inner.rng).random_range(0..n)
    }

    /// Spawns a background task that [`Self::shutdown`] waits for.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = lock(&self.inner.tasks);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Cancelled when the simulator shuts down.
    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Stops every background batch task and waits for them.
    pub(crate) async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let mut tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        while tasks.join_next().await.is_some() {}
    }
}
