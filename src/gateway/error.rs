//! The gateway client's error type.

use std::path::PathBuf;

/// What went wrong talking to the gateway. Every variant names the operation ("create batch",
/// "upload file", ...). No variant ever carries the API key, a header value or a request URL.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The gateway answered with a non-success HTTP status.
    #[error("{operation} failed: gateway returned HTTP {status}: {message}")]
    Api {
        /// Operation that failed, e.g. "create batch".
        operation: &'static str,
        /// HTTP status code.
        status: u16,
        /// The gateway's `error.message` (or a short excerpt of the body).
        message: String,
        /// The gateway's `error.code`, e.g. `invalid_api_key`.
        code: Option<String>,
        /// The gateway's `error.type`, e.g. `invalid_request_error`.
        kind: Option<String>,
    },
    /// The request could not be sent or the response could not be read (connection refused/reset, ...).
    ///
    /// `detail` is the underlying error's whole cause chain (e.g. "error sending request: client
    /// error (Connect): tcp connect error: Connection refused"), so the display stands alone; the
    /// reqwest error is kept in `error` (URL removed) rather than exposed as `source()`, which
    /// would print the chain twice.
    #[error("{operation} failed: {detail}")]
    Transport {
        /// Operation that failed.
        operation: &'static str,
        /// Whether a retry could help (connection errors, resets, truncated bodies).
        retryable: bool,
        /// The cause chain, joined with ": ".
        detail: String,
        /// The underlying error, with its URL removed.
        error: reqwest::Error,
    },
    /// No response (or no further body bytes) within the configured time.
    #[error("{operation} failed: timed out waiting for the gateway")]
    Timeout {
        /// Operation that failed.
        operation: &'static str,
    },
    /// A success response whose body is not the expected JSON.
    #[error("{operation} failed: unexpected response body: {source}")]
    Decode {
        /// Operation that failed.
        operation: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A local file could not be read or written.
    #[error("{operation} failed: {}: {source}", path.display())]
    Io {
        /// Operation that failed.
        operation: &'static str,
        /// The local file involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration cannot be used (bad base URL, a key or header not valid in HTTP, ...).
    #[error("invalid gateway configuration: {0}")]
    InvalidConfig(String),
}

impl GatewayError {
    /// Builds a transport error from a reqwest error, dropping its URL and classifying it.
    pub(crate) fn transport(operation: &'static str, err: reqwest::Error) -> Self {
        if err.is_timeout() {
            return Self::Timeout { operation };
        }
        let retryable = err.is_connect() || err.is_request() || err.is_body() || err.is_decode();
        let err = err.without_url();
        Self::Transport {
            operation,
            retryable,
            detail: cause_chain(&err),
            error: err,
        }
    }

    /// True for failures worth retrying: 408, 429, 5xx, timeouts, connection errors and resets.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { status, .. } => is_retryable_status(*status),
            Self::Transport { retryable, .. } => *retryable,
            Self::Timeout { .. } => true,
            Self::Decode { .. } | Self::Io { .. } | Self::InvalidConfig(_) => false,
        }
    }

    /// True when the gateway rejected the credentials (401 or 403).
    pub fn is_unauthorized(&self) -> bool {
        matches!(self.status(), Some(401 | 403))
    }

    /// True when the gateway answered 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// The HTTP status, for errors that came with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The gateway's error code (`error.code`), if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The operation that failed, if the error belongs to one.
    pub fn operation(&self) -> Option<&'static str> {
        match self {
            Self::Api { operation, .. }
            | Self::Transport { operation, .. }
            | Self::Timeout { operation }
            | Self::Decode { operation, .. }
            | Self::Io { operation, .. } => Some(operation),
            Self::InvalidConfig(_) => None,
        }
    }

    /// A short label from a fixed set, for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Api { status, .. } => match *status {
                400 | 422 => "bad_request",
                401 | 403 => "unauthorized",
                404 => "not_found",
                409 => "conflict",
                408 => "timeout",
                429 => "rate_limited",
                500..=599 => "server_error",
                _ => "http_error",
            },
            Self::Transport { .. } => "transport",
            Self::Timeout { .. } => "timeout",
            Self::Decode { .. } => "decode",
            Self::Io { .. } => "io",
            Self::InvalidConfig(_) => "invalid_config",
        }
    }
}

/// `err` and its sources, joined with ": ".
fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

/// Statuses that are transient by nature: 408, 429 and every 5xx.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> GatewayError {
        GatewayError::Api {
            operation: "create batch",
            status,
            message: "nope".into(),
            code: None,
            kind: None,
        }
    }

    #[test]
    fn classification() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(api(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 422] {
            assert!(!api(s).is_retryable(), "{s}");
        }
        assert!(api(401).is_unauthorized() && api(403).is_unauthorized());
        assert!(api(404).is_not_found() && !api(400).is_not_found());
        assert!(GatewayError::Timeout { operation: "x" }.is_retryable());
        assert_eq!(api(429).metric_label(), "rate_limited");
        assert_eq!(api(503).status(), Some(503));
    }

    #[test]
    fn display_names_operation_and_message() {
        let text = api(400).to_string();
        assert_eq!(text, "create batch failed: gateway returned HTTP 400: nope");
    }
}
