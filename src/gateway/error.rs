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
    /// A success response whose body is not the expected JSON (HTML from a proxy, a negative
    /// count, ...). Worth reading again later, never a verdict on the batch.
    #[error("{operation} failed: unexpected response body: {message}")]
    Decode {
        /// Operation that failed.
        operation: &'static str,
        /// The JSON error, with every configured secret removed (serde quotes the values it
        /// could not use).
        message: String,
    },
    /// The gateway answered with a redirect, which is never followed: it would send the key and
    /// headers to another origin, or let the gateway point us at an internal address.
    #[error(
        "{operation} failed: gateway answered HTTP {status} redirecting to {location}; redirects are not followed: set the BatchGateway's spec.url to the address that answers"
    )]
    Redirect {
        /// Operation that failed.
        operation: &'static str,
        /// The 3xx status.
        status: u16,
        /// The host the redirect pointed at (never the whole URL, which may carry tokens).
        location: String,
    },
    /// The gateway's address is one this operator does not connect to.
    #[error("{operation} refused: {refused}")]
    AddressRefused {
        /// Operation that was refused.
        operation: &'static str,
        /// Which host and address, and why.
        refused: crate::net::AddressRefused,
    },
    /// An answer larger than its limit; the rest of it was not read.
    #[error("{operation} failed: the gateway sent {what} larger than the limit of {limit} bytes")]
    TooLarge {
        /// Operation that failed.
        operation: &'static str,
        /// What was too large: "an answer", "a result file", ...
        what: &'static str,
        /// The limit, in bytes.
        limit: u64,
    },
    /// A result file line longer than the limit (no newline within it).
    #[error("{operation} failed: line {line} of the file is longer than the limit of {limit} bytes")]
    LineTooLong {
        /// Operation that failed.
        operation: &'static str,
        /// 1-based line number.
        line: u64,
        /// The limit, in bytes.
        limit: u64,
    },
    /// A transfer that went on past its overall deadline (a trickle keeps each gap short).
    #[error("{operation} failed: not finished within {}", humantime::format_duration(*after))]
    Deadline {
        /// Operation that failed.
        operation: &'static str,
        /// The deadline.
        after: std::time::Duration,
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
        if let Some(refused) = crate::net::refusal_in(&err) {
            return Self::AddressRefused {
                operation,
                refused: refused.clone(),
            };
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
            _ => false,
        }
    }

    /// True when the gateway's configuration must change before anything can work: a redirect,
    /// a refused address.
    pub fn is_misconfiguration(&self) -> bool {
        matches!(self, Self::Redirect { .. } | Self::AddressRefused { .. })
    }

    /// True for an answer that could not be used (garbled, too large, too slow): not retried on
    /// the spot (the same request may be answered the same way), but never a verdict on the
    /// batch either: the step is taken again later.
    pub fn is_unusable_answer(&self) -> bool {
        matches!(
            self,
            Self::Decode { .. } | Self::TooLarge { .. } | Self::LineTooLong { .. } | Self::Deadline { .. }
        )
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
            | Self::Redirect { operation, .. }
            | Self::AddressRefused { operation, .. }
            | Self::TooLarge { operation, .. }
            | Self::LineTooLong { operation, .. }
            | Self::Deadline { operation, .. }
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
            Self::Redirect { .. } => "redirect",
            Self::AddressRefused { .. } => "address_refused",
            Self::TooLarge { .. } | Self::LineTooLong { .. } => "too_large",
            Self::Deadline { .. } => "deadline",
            Self::Io { .. } => "io",
            Self::InvalidConfig(_) => "invalid_config",
        }
    }
}

/// `err` and its sources, joined with ": ".
pub(crate) fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
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
