//! `/v1/batches`: create, get, list, cancel.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::HeaderMap;
use serde_json::{Map, Value};

use super::config::parse_fraction;
use super::error::{ApiError, ApiResult};
use super::gate::header_value;
use super::params::{Params, invalid_value};
use super::processor::{self, BatchPlan};
use super::state::SimState;
use super::wire::{Batch, BatchStatus, BatchUsage, ListPage, RequestCounts, now_secs, paginate};

/// Endpoints a batch may target.
pub const ENDPOINTS: &[&str] = &[
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
];
const MAX_METADATA_PAIRS: usize = 16;
const MAX_METADATA_KEY: usize = 64;
const MAX_METADATA_VALUE: usize = 512;
const COMPLETION_WINDOW_SECS: i64 = 86_400;

/// The validated fields of a create request.
struct CreateRequest {
    input_file_id: String,
    endpoint: String,
    metadata: Option<Map<String, Value>>,
}

/// A required string field of the create body.
fn required_str<'a>(body: &'a Map<String, Value>, name: &str) -> ApiResult<&'a str> {
    match body.get(name) {
        None | Some(Value::Null) => Err(ApiError::missing_param(name)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(
            ApiError::bad_request(format!("Invalid type for '{name}': expected a string."))
                .with_param(name)
                .with_code("invalid_type"),
        ),
    }
}

fn parse_create(raw: &[u8]) -> ApiResult<CreateRequest> {
    let body: Map<String, Value> = serde_json::from_slice(raw).map_err(|_| {
        ApiError::bad_request(
            "We could not parse the JSON body of your request. (HINT: This likely means you \
             aren't using your HTTP library correctly.)",
        )
    })?;
    let input_file_id = required_str(&body, "input_file_id")?.to_owned();
    let endpoint = required_str(&body, "endpoint")?;
    if !ENDPOINTS.contains(&endpoint) {
        return Err(invalid_value("endpoint", endpoint, ENDPOINTS));
    }
    let window = required_str(&body, "completion_window")?;
    if window != "24h" {
        return Err(invalid_value("completion_window", window, &["24h"]));
    }
    check_output_expiry(body.get("output_expires_after"))?;
    Ok(CreateRequest {
        input_file_id,
        endpoint: endpoint.to_owned(),
        metadata: check_metadata(body.get("metadata"))?,
    })
}

fn invalid_metadata(message: String, param: String, code: &'static str) -> ApiError {
    ApiError::bad_request(message).with_param(param).with_code(code)
}

/// metadata: null or ≤16 string pairs, keys ≤64 and values ≤512 characters.
fn check_metadata(value: Option<&Value>) -> ApiResult<Option<Map<String, Value>>> {
    let map = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(map)) => map,
        Some(_) => {
            let message = "Invalid type for 'metadata': expected an object.".to_owned();
            return Err(invalid_metadata(message, "metadata".into(), "invalid_type"));
        }
    };
    if map.len() > MAX_METADATA_PAIRS {
        let message = format!(
            "Invalid 'metadata': too many properties. Expected an object with at most \
             {MAX_METADATA_PAIRS} properties, but got an object with {} properties instead.",
            map.len()
        );
        return Err(invalid_metadata(
            message,
            "metadata".into(),
            "object_above_max_properties",
        ));
    }
    for (key, value) in map {
        if key.chars().count() > MAX_METADATA_KEY {
            let message = format!("Invalid 'metadata': key '{key}' is longer than {MAX_METADATA_KEY} characters.");
            return Err(invalid_metadata(message, "metadata".into(), "invalid_value"));
        }
        let Some(text) = value.as_str() else {
            let message = format!("Invalid type for 'metadata.{key}': expected a string.");
            return Err(invalid_metadata(message, format!("metadata.{key}"), "invalid_type"));
        };
        if text.chars().count() > MAX_METADATA_VALUE {
            let message = format!(
                "Invalid 'metadata.{key}': string too long. Expected a string with maximum \
                 length {MAX_METADATA_VALUE}."
            );
            return Err(invalid_metadata(
                message,
                format!("metadata.{key}"),
                "string_above_max_length",
            ));
        }
    }
    Ok(Some(map.clone()))
}

/// output_expires_after: `{anchor:"created_at", seconds:3600..2592000}` when given.
fn check_output_expiry(value: Option<&Value>) -> ApiResult<()> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(());
    };
    if value.get("anchor").and_then(Value::as_str) != Some("created_at") {
        let anchor = value.get("anchor").map(Value::to_string).unwrap_or_default();
        return Err(invalid_value("output_expires_after.anchor", &anchor, &["created_at"]));
    }
    let seconds = value.get("seconds").and_then(Value::as_i64);
    if !seconds.is_some_and(|s| (3600..=2_592_000).contains(&s)) {
        return Err(
            ApiError::bad_request("Invalid 'output_expires_after.seconds': must be between 3600 and 2592000.")
                .with_param("output_expires_after.seconds")
                .with_code("invalid_value"),
        );
    }
    Ok(())
}

/// The per-batch knobs: config defaults overridden by `x-sim-*` headers on create.
fn plan_for(state: &SimState, headers: &HeaderMap, batch_id: &str, request: &CreateRequest) -> ApiResult<BatchPlan> {
    let config = state.config();
    let parse_bool = |s: &str| match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("'{s}' is not a boolean")),
    };
    let parse_u64 = |s: &str| s.trim().parse::<u64>().map_err(|_| format!("'{s}' is not an integer"));
    let input_path = state
        .file(&request.input_file_id)
        .map(|_| state.file_path(&request.input_file_id));
    Ok(BatchPlan {
        batch_id: batch_id.to_owned(),
        endpoint: request.endpoint.clone(),
        input_file_id: request.input_file_id.clone(),
        input_path,
        line_failure_rate: header_value(headers, "x-sim-line-failure-rate", parse_fraction)?
            .unwrap_or(config.line_failure_rate),
        expire: header_value(headers, "x-sim-expire", parse_bool)?.unwrap_or(config.expire),
        lines_per_sec: header_value(headers, "x-sim-lines-per-sec", parse_u64)?.unwrap_or(config.lines_per_sec),
        validating: Duration::from_millis(config.validating_ms),
        finalizing: Duration::from_millis(config.finalizing_ms),
        cancelling: Duration::from_millis(config.cancelling_ms),
    })
}

/// `POST /v1/batches`.
pub async fn create(State(state): State<SimState>, headers: HeaderMap, body: Bytes) -> ApiResult<Json<Batch>> {
    let request = parse_create(&body)?;
    if let Some(file) = state.file(&request.input_file_id).filter(|f| f.purpose != "batch") {
        return Err(ApiError::bad_request(format!(
            "The input file {} must have purpose 'batch', not '{}'.",
            file.id, file.purpose
        ))
        .with_param("input_file_id"));
    }
    let id = format!("batch_{}", uuid::Uuid::new_v4().simple());
    let plan = plan_for(&state, &headers, &id, &request)?;
    let created_at = now_secs();
    let batch = Batch {
        id,
        object: "batch",
        endpoint: request.endpoint,
        model: None,
        errors: None,
        input_file_id: request.input_file_id,
        completion_window: "24h".into(),
        status: BatchStatus::Validating,
        output_file_id: None,
        error_file_id: None,
        created_at,
        in_progress_at: None,
        expires_at: Some(created_at + COMPLETION_WINDOW_SECS),
        finalizing_at: None,
        completed_at: None,
        failed_at: None,
        expired_at: None,
        cancelling_at: None,
        cancelled_at: None,
        request_counts: RequestCounts::default(),
        usage: BatchUsage::default(),
        metadata: request.metadata,
    };
    let cancel = state.insert_batch(batch.clone());
    state.spawn(processor::run(state.clone(), plan, cancel));
    Ok(Json(batch))
}

/// `GET /v1/batches/{id}`.
pub async fn get(State(state): State<SimState>, UrlPath(id): UrlPath<String>) -> ApiResult<Json<Batch>> {
    state
        .batch(&id)
        .map(Json)
        .ok_or_else(|| ApiError::no_such("Batch", &id))
}

/// `GET /v1/batches?after&limit`, newest first.
pub async fn list(State(state): State<SimState>, RawQuery(query): RawQuery) -> ApiResult<Json<ListPage<Batch>>> {
    let params = Params::parse(query.as_deref());
    let limit = params.limit("limit", 1..=100, 20)?;
    let mut batches = state.batches();
    batches.reverse();
    let (page, has_more) = paginate(&batches, params.get("after"), limit, |b| &b.id);
    Ok(Json(ListPage::new(page, has_more, |b| &b.id)))
}

/// `POST /v1/batches/{id}/cancel`: -> cancelling (the task then reaches cancelled).
pub async fn cancel(State(state): State<SimState>, UrlPath(id): UrlPath<String>) -> ApiResult<Json<Batch>> {
    state
        .update_batch_with_token(&id, |batch, token| match batch.status {
            BatchStatus::Completed | BatchStatus::Failed | BatchStatus::Expired => Err(ApiError::conflict(format!(
                "Cannot cancel a batch with status '{}'.",
                batch.status.as_str()
            ))),
            BatchStatus::Cancelling | BatchStatus::Cancelled => Ok(batch.clone()),
            BatchStatus::Validating | BatchStatus::InProgress | BatchStatus::Finalizing => {
                batch.status = BatchStatus::Cancelling;
                batch.cancelling_at = Some(now_secs());
                token.cancel();
                Ok(batch.clone())
            }
        })
        .ok_or_else(|| ApiError::no_such("Batch", &id))?
        .map(Json)
}
