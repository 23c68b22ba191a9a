//! The one scan a BatchSweep makes of an input in object storage: streamed through the
//! [`ChunkPlanner`] (which cuts and validates the chunks), never held in memory.

use futures::StreamExt;

use super::object_storage::{ObjectLocation, StorageError};
use crate::jsonl::{Chunk, ChunkError, ChunkPlanner};

/// Why an object could not be cut into chunks.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Reading failed (missing object, refused credentials, server errors).
    #[error("{0}")]
    Storage(StorageError),
    /// The content cannot be chunked (a line over the budget, invalid lines, no requests).
    #[error("spec.input: {0}")]
    Chunks(ChunkError),
}

/// The object's size and its line-aligned chunks, as `planner` cuts (and checks) them; reading
/// stops at the first chunk that cannot pass.
pub async fn scan_object(location: &ObjectLocation, mut planner: ChunkPlanner) -> Result<(u64, Vec<Chunk>), ScanError> {
    let size = location.size().await.map_err(ScanError::Storage)?;
    let mut stream = location.read_from(0, None, size);
    while let Some(bytes) = stream.next().await {
        let bytes = bytes.map_err(|e| match e.downcast::<StorageError>() {
            Ok(storage) => ScanError::Storage(storage),
            Err(other) => ScanError::Storage(StorageError::local(std::path::Path::new(&location.url), other)),
        })?;
        planner.feed(&bytes);
        if planner.has_failed() {
            break;
        }
    }
    let chunks = planner.finish().map_err(ScanError::Chunks)?;
    Ok((size, chunks))
}
