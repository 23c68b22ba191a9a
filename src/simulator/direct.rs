//! Synchronous endpoints (`POST /v1/chat/completions` …) answering like a batch line would,
//! for clients that talk to a gateway without a batch API.

use axum::Json;
use axum::body::Bytes;
use axum::extract::OriginalUri;
use serde_json::Value;

use super::answers;
use super::error::{ApiError, ApiResult};

/// Answers one request for the endpoint named by the request path.
pub async fn answer(OriginalUri(uri): OriginalUri, body: Bytes) -> ApiResult<Json<Value>> {
    let body: Value = serde_json::from_slice(&body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| ApiError::bad_request("We could not parse the JSON body of your request."))?;
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err(ApiError::bad_request("The simulator does not support streaming.").with_param("stream"));
    }
    // Off the async workers: the first answer for a model family loads its tokenizer.
    let path = uri.path().to_owned();
    let answered = tokio::task::spawn_blocking(move || answers::answer(&path, &body))
        .await
        .map_err(ApiError::internal)?;
    answered.map(|answer| Json(answer.body)).map_err(|refusal| {
        let mut err = ApiError::bad_request(refusal.message);
        if let Some(param) = refusal.param {
            err = err.with_param(param);
        }
        err
    })
}
