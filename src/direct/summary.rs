//! What a concluded direct run reports: its conclusion and the result files counted (stdout
//! of `direct`, and the termination message the controller reads from its Job's pod).

use std::path::Path;

use super::{Conclusion, Counts, ERRORS_FILE, OUTPUT_FILE};
use crate::engine::Downloaded;
use crate::steps::{summarise_errors, summarise_output};

/// What a concluded run reports (stdout and `--summary-file`).
#[derive(serde::Serialize, serde::Deserialize, Debug)]
pub struct DirectSummary {
    pub conclusion: Conclusion,
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
    /// The result files in the checkpoint directory, counted.
    pub downloaded: Downloaded,
}

impl DirectSummary {
    /// Counts the result files in the checkpoint directory `dir` (`location` left empty).
    pub async fn read(dir: &Path, conclusion: Conclusion, total: u64, counts: Counts) -> std::io::Result<Self> {
        let mut downloaded = Downloaded::default();
        // Direct mode writes its own results: nothing to check them against.
        let ids = &mut crate::steps::ResultIds::new(None);
        summarise_output(&dir.join(OUTPUT_FILE), ids)
            .await?
            .record(&mut downloaded);
        let errors = dir.join(ERRORS_FILE);
        if tokio::fs::try_exists(&errors).await? {
            summarise_errors(&errors, ids).await?.record(&mut downloaded);
        }
        Ok(DirectSummary {
            conclusion,
            total,
            completed: counts.completed,
            failed: counts.failed,
            downloaded,
        })
    }
}
