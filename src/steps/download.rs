//! The download step into a directory: both result files fetched (each written under a
//! temporary name and renamed, so a crash never leaves a half file under the final name) and
//! counted line by line. Shared by `run -f` and the `sink` command a PVC Job runs.

use std::path::Path;

use super::{ResultIds, classify, summarise_errors, summarise_output};
use crate::engine::{Downloaded, ErrorClass, Outcome};
use crate::gateway::GatewayClient;
use crate::jsonl::IdDigest;

/// The output file name in a results directory.
const OUTPUT_FILE: &str = "output.jsonl";
/// The error file name in a results directory.
const ERRORS_FILE: &str = "errors.jsonl";

/// Fetches both files (either may be absent) into `dir` and counts them, custom_id by
/// custom_id against `expected` (the input's digest, when known: see [`ResultIds`]);
/// `location` is left for the caller to fill in. An absent output file is written empty
/// (every line failed); an absent error file is removed (a stale one from an earlier attempt
/// would mislead). Whatever the check finds, the files are kept as the gateway sent them.
pub async fn download_results(
    client: &GatewayClient,
    output_id: Option<&str>,
    error_id: Option<&str>,
    dir: &Path,
    expected: Option<IdDigest>,
) -> Result<Downloaded, Outcome> {
    tokio::fs::create_dir_all(dir).await.map_err(|e| io_failure(dir, e))?;
    let (output, errors) = (dir.join(OUTPUT_FILE), dir.join(ERRORS_FILE));
    let mut downloaded = Downloaded::default();
    let mut ids = ResultIds::new(expected);
    match output_id {
        Some(id) => {
            fetch(client, id, &output).await?;
            let summary = summarise_output(&output, &mut ids)
                .await
                .map_err(|e| io_failure(&output, e))?;
            summary.record(&mut downloaded);
        }
        None => tokio::fs::write(&output, b"")
            .await
            .map_err(|e| io_failure(&output, e))?,
    }
    match error_id {
        Some(id) => {
            fetch(client, id, &errors).await?;
            let summary = summarise_errors(&errors, &mut ids)
                .await
                .map_err(|e| io_failure(&errors, e))?;
            summary.record(&mut downloaded);
        }
        None => match tokio::fs::remove_file(&errors).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_failure(&errors, e)),
            _ => {}
        },
    }
    downloaded.results = Some(ids.finish());
    Ok(downloaded)
}

async fn fetch(client: &GatewayClient, file_id: &str, dest: &Path) -> Result<(), Outcome> {
    match client.download_file_to(file_id, dest).await {
        Ok(_) => Ok(()),
        Err(e) => Err(Outcome::GatewayError {
            class: classify(&e),
            message: e.to_string(),
        }),
    }
}

/// A local disk problem is worth retrying (space may be freed); it never fails the batch.
fn io_failure(path: &Path, e: std::io::Error) -> Outcome {
    Outcome::GatewayError {
        class: ErrorClass::Output,
        message: format!("cannot write {}: {e}", path.display()),
    }
}
