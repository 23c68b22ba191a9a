//! OpenAI-shaped HTTP errors: `{"error":{"message","type","param","code"}}`, all four keys present.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered to the client with OpenAI's error body.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    param: Option<String>,
    code: Option<&'static str>,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400 `invalid_request_error`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 for a required parameter that is absent.
    pub fn missing_param(param: &str) -> Self {
        Self::bad_request(format!("Missing required parameter: '{param}'."))
            .with_param(param)
            .with_code("missing_required_parameter")
    }

    /// 404 for an unknown object id.
    pub fn no_such(kind: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("No such {kind} object: {id}"),
        )
        .with_param("id")
    }

    /// 404 for a route that does not exist (also used by `--no-batch-api`).
    pub fn invalid_url(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Invalid URL ({method} {path})"),
        )
    }

    /// 401 for a missing or wrong API key. Never echoes the key.
    pub fn invalid_api_key(missing: bool) -> Self {
        let message = if missing {
            "You didn't provide an API key. You need to provide your API key in an \
             Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        } else {
            "Incorrect API key provided."
        };
        Self::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message).with_code("invalid_api_key")
    }

    /// 409 for an operation not allowed in the object's current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "invalid_request_error", message)
    }

    /// 429 with `retry-after`.
    pub fn rate_limited(retry_after: u64) -> Self {
        let mut err = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "requests",
            "Rate limit reached for requests (simulated). Please try again later.",
        )
        .with_code("rate_limit_exceeded");
        err.retry_after = Some(retry_after);
        err
    }

    /// An injected or internal server error with the given 5xx status.
    pub fn server_error(status: StatusCode) -> Self {
        Self::new(
            status,
            "server_error",
            "The server had an error while processing your request (simulated).",
        )
        .with_code("server_error")
    }

    /// 500 for an unexpected failure inside the simulator (disk I/O etc.).
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::warn!("simulator internal error: {err}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "The simulator failed to process the request.",
        )
    }

    /// Sets `param`.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Sets `code`.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The HTTP status this error is answered with.
    #[cfg(test)]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error body as JSON.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            headers.insert("retry-after-ms", HeaderValue::from(secs * 1000));
        }
        response
    }
}

/// Handler result type.
pub type ApiResult<T> = Result<T, ApiError>;
