//! The I/O half of each engine step, shared by the two drivers (the controller and `run -f`):
//! talk to the gateway, adopt what an earlier attempt created, and turn what
//! happened into an engine [`Outcome`].

pub mod bucket;
mod download;
mod fresh;
mod mode;
mod perform;
mod results;
pub mod retry;

pub use download::download_results;
pub use fresh::{Call, Earlier, FreshAttempts};
pub use mode::{concluded, direct_failure, direct_failure_class, probe_batch_api, resolve_mode};
pub use perform::{Driver, Input, perform};
pub use results::{ErrorSummary, OutputSummary, ResultIds, summarise_errors, summarise_output};

use crate::engine::{self, BatchRequest, ErrorClass, Outcome, Upstream, UpstreamState};
use crate::gateway::{Batch, FindError, GatewayClient, GatewayError, ResponseLimits, UploadSource};

/// A fresh attempt token: short, random, stamped with the time the attempt starts (see
/// [`engine::attempt_token_at`]), carried in the upload's name and the batch metadata.
pub fn attempt_token() -> String {
    engine::attempt_token_at(k8s_openapi::jiff::Timestamp::now(), rand::random::<u32>())
}

/// The rewrite a Batch's `spec.input.overrides` ask for (model, custom_id prefix).
pub fn rewrite(input: &crate::api::BatchInput) -> crate::jsonl::Rewrite {
    let overrides = input.overrides.clone().unwrap_or_default();
    crate::jsonl::Rewrite {
        model: overrides.model,
        custom_id_prefix: overrides.custom_id_prefix,
    }
}

/// The input's id digest as the status keeps it.
pub fn input_ids(digest: Option<crate::jsonl::IdDigest>) -> Option<crate::api::InputIds> {
    digest.map(|d| crate::api::InputIds {
        key: d.key_hex(),
        sum: d.sum_hex(),
    })
}

/// What the results are checked against: the input's id digest and request count, from the
/// status; `None` when the input's ids are not known (`spec.input.fileId`, a sweep chunk).
pub fn expected_ids(status: &crate::api::BatchStatus) -> Option<crate::jsonl::IdDigest> {
    let input = status.input.as_ref()?;
    let ids = input.ids.as_ref()?;
    crate::jsonl::IdDigest::from_hex(&ids.key, &ids.sum, input.requests)
}

/// How an engine should treat a gateway error.
pub fn classify(err: &GatewayError) -> ErrorClass {
    if err.is_misconfiguration() {
        ErrorClass::Misconfigured
    } else if err.is_retryable() || err.is_unusable_answer() {
        ErrorClass::Transient
    } else if err.is_unauthorized() {
        ErrorClass::Unauthorized
    } else if err.is_not_found() {
        ErrorClass::NotFound
    } else {
        ErrorClass::Rejected
    }
}

/// What the client reads of this gateway's answers: the defaults, with the result-file size
/// and download time the BatchGateway sets.
pub fn response_limits(limits: &crate::api::GatewayLimits) -> Result<ResponseLimits, crate::api::InvalidField> {
    let mut bounds = ResponseLimits::default();
    if let Some(bytes) = limits.max_result_bytes()? {
        bounds.file_bytes = bytes;
    }
    if let Some(time) = limits.download_timeout()? {
        bounds.download_time = time;
    }
    Ok(bounds)
}

/// The engine outcome of a failed gateway call.
pub fn failure(err: GatewayError) -> Outcome {
    Outcome::GatewayError {
        class: classify(&err),
        message: err.to_string(),
    }
}

/// Longest status word kept from a gateway (ours are at most 11 characters).
const MAX_STATE_WORD: usize = 64;
/// Longest text kept of one of a batch's errors, and how many are kept.
const MAX_ERROR_TEXT: usize = 300;
const MAX_ERRORS: usize = 1000;

/// The engine's view of a gateway batch; the strings that reach the status are bounded.
pub fn upstream(batch: &Batch) -> Upstream {
    Upstream {
        id: batch.id.clone(),
        state: UpstreamState::from_wire(&crate::gateway::truncate(batch.status.to_string(), MAX_STATE_WORD)),
        output_file_id: batch.output_file_id.clone(),
        error_file_id: batch.error_file_id.clone(),
        counts: batch.request_counts.as_ref().map(|c| (c.total, c.completed, c.failed)),
        errors: batch
            .errors
            .iter()
            .flat_map(|e| &e.data)
            .take(MAX_ERRORS)
            .map(|e| {
                let mut text = String::new();
                if let Some(line) = e.line {
                    text.push_str(&format!("line {line}: "));
                }
                text.push_str(e.message.as_deref().or(e.code.as_deref()).unwrap_or("invalid"));
                if let Some(param) = &e.param {
                    text.push_str(&format!(" ({param})"));
                }
                crate::gateway::truncate(text, MAX_ERROR_TEXT)
            })
            .collect(),
        token_limited: is_token_limited(batch),
    }
}

/// Failed only for the enqueued-token limit (`token_limit_exceeded` on every error).
fn is_token_limited(batch: &Batch) -> bool {
    let codes: Vec<Option<&str>> = batch
        .errors
        .iter()
        .flat_map(|e| &e.data)
        .map(|e| e.code.as_deref())
        .collect();
    !codes.is_empty() && codes.iter().all(|c| *c == Some("token_limit_exceeded"))
}

/// Checks that a user-supplied input file (`spec.input.fileId`) is on the gateway.
pub async fn input_on_gateway(client: &GatewayClient, file_id: &str) -> Outcome {
    match client.get_file(file_id).await {
        Ok(file) => Outcome::InputOnGateway {
            file_id: file.id,
            bytes: file.bytes,
        },
        Err(e) if e.is_not_found() => Outcome::InputNotFound {
            message: format!("input file {file_id} is not on the gateway"),
        },
        Err(e) => failure(e),
    }
}

/// Adopts the file an earlier run of this attempt uploaded under `filename`, or uploads. The
/// search (skipped when no earlier upload can exist) looks back to the attempt's start (the
/// time in the name's token), however many newer files the key holds.
pub async fn upload_input(client: &GatewayClient, filename: &str, earlier: Earlier, source: UploadSource) -> Outcome {
    if earlier == Earlier::CannotExist {
        return upload(client, filename, source).await;
    }
    upload_input_since(client, filename, engine::upload_attempt_started(filename), source).await
}

/// [`upload_input`] for a name that carries no time: the search looks back to `since` (unix
/// seconds; the earliest the upload can have been made), or through the whole list without it.
pub async fn upload_input_since(
    client: &GatewayClient,
    filename: &str,
    since: Option<i64>,
    source: UploadSource,
) -> Outcome {
    match client
        .find_file("batch", |f| f.filename.as_deref() == Some(filename), since)
        .await
    {
        Ok(Some(file)) => {
            return Outcome::InputUploaded {
                file_id: file.id,
                adopted: true,
                ids: None,
            };
        }
        Ok(None) => {}
        // A gateway that cannot list files cannot have one to adopt either.
        Err(FindError::Gateway(e)) if matches!(classify(&e), ErrorClass::Rejected | ErrorClass::NotFound) => {
            tracing::debug!(error = %e, "listing files is not supported; uploading");
        }
        Err(e) => return find_failure(e),
    }
    upload(client, filename, source).await
}

async fn upload(client: &GatewayClient, filename: &str, source: UploadSource) -> Outcome {
    match client.upload_file(filename, "batch", source).await {
        Ok(file) => Outcome::InputUploaded {
            file_id: file.id,
            adopted: false,
            ids: None,
        },
        Err(e) => failure(e),
    }
}

/// Adopts the batch an earlier run of this attempt created, or creates it. The search (skipped
/// when no earlier batch can exist) looks back to the attempt's start (the time in its token),
/// however many newer batches the key holds.
pub async fn create_batch(client: &GatewayClient, request: &BatchRequest, earlier: Earlier) -> Outcome {
    if earlier == Earlier::MayExist
        && let Some(adopted) = find_batch(client, request).await
    {
        return adopted;
    }
    let create = crate::gateway::CreateBatch {
        input_file_id: request.input_file_id.clone(),
        endpoint: request.endpoint.clone(),
        completion_window: request.completion_window.clone(),
        metadata: request.metadata.clone(),
    };
    match client.create_batch(&create).await {
        Ok(batch) => Outcome::BatchSubmitted {
            batch: upstream(&batch),
            adopted: false,
        },
        Err(e) => failure(e),
    }
}

/// The batch an earlier run of this attempt created (`BatchSubmitted`, adopted), or why the
/// search has no answer; `None` when there is none.
async fn find_batch(client: &GatewayClient, request: &BatchRequest) -> Option<Outcome> {
    let uid = request.metadata.get(engine::UID_KEY);
    let ours = |b: &Batch| {
        let meta = b.metadata.as_ref();
        meta.and_then(|m| m.get(engine::ATTEMPT_KEY)) == Some(&request.attempt)
            && meta.and_then(|m| m.get(engine::UID_KEY)) == uid
    };
    match client.find_batch(ours, engine::attempt_started(&request.attempt)).await {
        Ok(Some(batch)) => Some(Outcome::BatchSubmitted {
            batch: upstream(&batch),
            adopted: true,
        }),
        Ok(None) => None,
        Err(e) => Some(find_failure(e)),
    }
}

/// The outcome of a search for what an attempt created that found no answer: the gateway's
/// error, or a walk that gave up before the attempt's start, which is retried later (never
/// taken for "not there", which would create a second object, billed twice).
fn find_failure(err: FindError) -> Outcome {
    match err {
        FindError::Gateway(e) => failure(e),
        gave_up @ FindError::GaveUp { .. } => Outcome::GatewayError {
            class: ErrorClass::Transient,
            message: gave_up.to_string(),
        },
    }
}

/// Retrieves the batch.
pub async fn poll(client: &GatewayClient, batch_id: &str) -> Outcome {
    match client.get_batch(batch_id).await {
        Ok(batch) => Outcome::Observed(upstream(&batch)),
        Err(e) => failure(e),
    }
}

/// Requests cancellation. A batch that already finished answers 409: then it is simply observed.
pub async fn cancel(client: &GatewayClient, batch_id: &str) -> Outcome {
    match client.cancel_batch(batch_id).await {
        Ok(batch) => Outcome::Observed(upstream(&batch)),
        Err(e) if e.status() == Some(409) => poll(client, batch_id).await,
        Err(e) => failure(e),
    }
}

/// Environment variable naming a step after which the process aborts, before the step's
/// result is saved: how the tests reproduce a crash in the worst window of every step
/// (`run -f` checks after every engine step; the object-store output also after its objects,
/// before `manifest.json`: step `write-result-objects`; a sweep's retry after uploading a
/// follow-up's input, before keeping its id: step `upload-retry-input`).
pub const CRASH_AFTER_ENV: &str = "LLM_BATCH_CRASH_AFTER";

/// Aborts the process when [`CRASH_AFTER_ENV`] names `step`.
pub fn crash_if_asked(step: &str) {
    if std::env::var(CRASH_AFTER_ENV).is_ok_and(|s| s == step) {
        eprintln!("{CRASH_AFTER_ENV}={step}: aborting");
        std::process::abort();
    }
}
