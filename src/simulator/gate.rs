//! Middleware in front of `/v1`: request ids, the journal, latency, auth and fault injection.

use std::time::Duration;

use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::config::parse_fraction;
use super::error::{ApiError, ApiResult};
use super::state::{JournalEntry, SimState};

const REQUEST_ID: &str = "x-request-id";

/// Adds an `x-request-id` to every response.
pub async fn request_id(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if !response.headers().contains_key(REQUEST_ID) {
        let id = format!("req_{}", uuid::Uuid::new_v4().simple());
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
    }
    response
}

/// Journals every `/v1` request with the status it finally got, faults included.
pub async fn gate(State(state): State<SimState>, request: Request, next: Next) -> Response {
    let started_us = unix_micros();
    let method = request.method().to_string();
    let client_request_id = request
        .headers()
        .get("x-client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let path = request
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| request.uri().path().to_owned(), |uri| uri.0.path().to_owned());
    let response = match admit(&state, request.method(), request.headers(), &path).await {
        Ok(()) => next.run(request).await,
        Err(err) => err.into_response(),
    };
    state.record(JournalEntry {
        method,
        path,
        status: response.status().as_u16(),
        client_request_id,
        started_us,
        ended_us: unix_micros(),
    });
    response
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Latency, auth, `--no-batch-api` and the random 429/5xx draws.
async fn admit(state: &SimState, method: &Method, headers: &HeaderMap, path: &str) -> ApiResult<()> {
    let config = state.config();
    let latency = header_value(headers, "x-sim-latency-ms", parse_u64)?.unwrap_or(config.latency_ms);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if let Some(key) = &config.api_key {
        check_key(headers, key)?;
    }
    let rate_429 = header_value(headers, "x-sim-rate-429", parse_fraction)?.unwrap_or(config.rate_429);
    let rate_5xx = header_value(headers, "x-sim-rate-5xx", parse_fraction)?.unwrap_or(config.rate_5xx);
    if rate_429 > 0.0 && state.draw() < rate_429 {
        return Err(ApiError::rate_limited(config.retry_after));
    }
    if rate_5xx > 0.0 && state.draw() < rate_5xx {
        let statuses = [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
        ];
        return Err(ApiError::server_error(statuses[state.draw_index(statuses.len())]));
    }
    let batch_api = ["/v1/files", "/v1/batches"]
        .iter()
        .any(|prefix| path == *prefix || path.starts_with(&format!("{prefix}/")));
    if config.no_batch_api && batch_api {
        return Err(ApiError::invalid_url(method.as_str(), path));
    }
    Ok(())
}

fn check_key(headers: &HeaderMap, expected: &str) -> ApiResult<()> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        None | Some("") => Err(ApiError::invalid_api_key(true)),
        Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::invalid_api_key(false)),
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn parse_u64(s: &str) -> Result<u64, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a non-negative integer"))
}

/// Parses an optional `x-sim-*` header; a malformed value is a 400 naming the header.
pub fn header_value<T>(
    headers: &HeaderMap,
    name: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> ApiResult<Option<T>> {
    let Some(raw) = headers.get(name) else {
        return Ok(None);
    };
    let text = raw
        .to_str()
        .map_err(|_| ApiError::bad_request(format!("Invalid header {name}.")).with_param(name))?;
    parse(text)
        .map(Some)
        .map_err(|why| ApiError::bad_request(format!("Invalid header {name}: {why}.")).with_param(name))
}

/// 404 for routes that do not exist, in OpenAI's words.
pub async fn unknown_route(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::invalid_url(method.as_str(), uri.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_check_distinguishes_missing_and_wrong() {
        let mut headers = HeaderMap::new();
        assert!(check_key(&headers, "k").is_err());
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer nope"));
        let err = check_key(&headers, "k").unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        assert!(!err.body().to_string().contains("nope"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k"));
        assert!(check_key(&headers, "k").is_ok());
    }

    #[test]
    fn bad_override_header_is_a_400_naming_it() {
        let mut headers = HeaderMap::new();
        headers.insert("x-sim-rate-429", HeaderValue::from_static("2"));
        let err = header_value(&headers, "x-sim-rate-429", parse_fraction).unwrap_err();
        assert_eq!(err.body()["error"]["param"], "x-sim-rate-429");
    }
}
