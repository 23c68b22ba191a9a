//! The object-storage half of the steps, for both drivers: validating and uploading an input
//! streamed from object storage, and writing the results under an object-store prefix.

use std::path::Path;

use crate::api::InputStatus;
use crate::engine::{Downloaded, ErrorClass, Outcome};
use crate::gateway::GatewayClient;
use crate::io::object_output::{self, ERRORS_OBJECT, Manifest, ManifestCounts, OUTPUT_OBJECT};
use crate::io::object_storage::{ObjectLocation, StorageError, StorageErrorKind};
use crate::io::{Checked, Digest, ObjectInput};
use crate::steps;
use crate::sweep::ValidatedInput;

/// Streams the object once through slicing, rewriting and validation; nothing goes upstream.
/// A sweep's child whose chunk the sweep's scan validated (`validated`) reads nothing: its
/// upload checks every line again as it streams.
pub async fn validate(input: &ObjectInput, validated: Option<ValidatedInput>) -> Outcome {
    if let Some(validated) = validated {
        match input.holds_slice().await {
            Ok(true) => {
                return Outcome::InputValidated {
                    requests: validated.requests,
                    bytes: validated.bytes,
                    estimated_tokens: validated.estimated_tokens,
                    estimates: validated.estimates,
                    digest: None,
                    ids: None,
                };
            }
            // The object shrank since the scan: the full check says what it holds now.
            Ok(false) => {}
            Err(e) => return input_failure(e),
        }
    }
    match input.check().await {
        Ok(Checked::Valid(report, digest)) => Outcome::InputValidated {
            requests: report.summary.requests,
            bytes: report.summary.bytes,
            estimated_tokens: report.summary.estimated_tokens,
            estimates: report.summary.estimates,
            digest: Some(digest),
            ids: steps::input_ids(report.summary.ids),
        },
        Ok(Checked::Invalid(message)) => Outcome::InputInvalid { message },
        Err(e) => input_failure(e),
    }
}

/// Uploads the object, prepared again while it streams; it must match what validation found.
pub async fn upload(
    client: &GatewayClient,
    filename: &str,
    earlier: steps::Earlier,
    input: &ObjectInput,
    validated: &InputStatus,
) -> Outcome {
    let digest = Digest::expected(validated.digest.as_deref());
    let upload = match input.upload(validated.bytes, digest).await {
        Ok(upload) => upload,
        Err(e) => return input_failure(e),
    };
    let outcome = steps::upload_input(client, filename, earlier, upload.source.clone()).await;
    match (outcome, upload.refusal()) {
        (Outcome::GatewayError { .. }, Some(why)) => Outcome::InputInvalid {
            message: format!("{}{}: {why}", input.location.url, input.line_note()),
        },
        // The pass that sent the input checked every custom_id: its digest is what the results
        // are checked against when validation read nothing (a sweep's chunk).
        (
            Outcome::InputUploaded {
                file_id,
                adopted: false,
                ids: None,
            },
            _,
        ) => Outcome::InputUploaded {
            file_id,
            adopted: false,
            ids: upload.report().and_then(|r| steps::input_ids(r.summary.ids)),
        },
        (outcome, _) => outcome,
    }
}

/// The outcome of a failed read of an input object (missing, refused, or worth retrying).
pub fn input_failure(e: StorageError) -> Outcome {
    match e.kind {
        // Both stop the run with the message; a rerun once it is fixed resumes.
        StorageErrorKind::NotFound | StorageErrorKind::Unauthorized => Outcome::InputNotFound { message: e.message },
        StorageErrorKind::Invalid => Outcome::InputInvalid { message: e.message },
        StorageErrorKind::Transient => Outcome::GatewayError {
            class: ErrorClass::Transient,
            message: e.message,
        },
    }
}

/// Writes the downloaded files under `prefix`, then `manifest.json`; the result's location
/// becomes the prefix's URL.
pub async fn store_results(
    prefix: &ObjectLocation,
    dir: &Path,
    mut downloaded: Downloaded,
    mut manifest: Manifest,
) -> Result<Outcome, Outcome> {
    let output_failure = |e: StorageError| Outcome::GatewayError {
        class: ErrorClass::Output,
        message: e.message,
    };
    let output = dir.join(OUTPUT_OBJECT);
    if !output.exists() {
        // Every line failed: an empty output object says so plainly.
        let empty = tokio::fs::write(&output, b"").await;
        empty.map_err(|e| output_failure(StorageError::local(&output, e)))?;
    }
    object_output::upload_file(&output, &prefix.child(OUTPUT_OBJECT))
        .await
        .map_err(output_failure)?;
    let errors = dir.join(ERRORS_OBJECT);
    if errors.exists() {
        object_output::upload_file(&errors, &prefix.child(ERRORS_OBJECT))
            .await
            .map_err(output_failure)?;
    } else {
        object_output::remove(prefix, ERRORS_OBJECT)
            .await
            .map_err(output_failure)?;
    }
    steps::crash_if_asked("write-result-objects");
    manifest.request_counts = ManifestCounts {
        output_lines: downloaded.output_lines,
        output_bytes: downloaded.output_bytes,
        error_lines: downloaded.error_lines,
        error_bytes: downloaded.error_bytes,
    };
    manifest.usage = downloaded.usage.clone();
    object_output::write_manifest(prefix, &manifest)
        .await
        .map_err(output_failure)?;
    downloaded.location = prefix.url.clone();
    Ok(Outcome::Downloaded(downloaded))
}

/// Where the input came from, for the manifest (no credentials: the URL and references only).
pub fn input_description(namespace: &str, input: &crate::api::BatchInput) -> String {
    let source = match (&input.object_store, &input.config_map, &input.secret, &input.file_id) {
        (Some(o), ..) => o.url.clone(),
        (_, Some(r), ..) => format!("ConfigMap {namespace}/{} key {}", r.name, r.key),
        (_, _, Some(r), _) => format!("Secret {namespace}/{} key {}", r.name, r.key),
        (.., Some(id)) => format!("gateway file {id}"),
        _ => "spec.input.requests".to_string(),
    };
    match input.byte_range {
        Some(r) => format!("{source} bytes {}..{}", r.start, r.end),
        None => source,
    }
}
