//! Reading the gateway's error bodies.

/// Longest gateway error message kept in an error (longer ones are cut).
pub(super) const MAX_ERROR_MESSAGE: usize = 500;

/// The interesting parts of an error body.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ErrorBody {
    pub(super) message: Option<String>,
    pub(super) code: Option<String>,
    pub(super) kind: Option<String>,
}

/// Reads `{"error": {"message", "type", "code"}}`, tolerating `{"error": "text"}`, `{"message"}`,
/// `{"detail"}` and non-JSON bodies (kept as a short excerpt).
pub(super) fn parse_error_body(body: &[u8]) -> ErrorBody {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        let text = String::from_utf8_lossy(body).trim().to_owned();
        return ErrorBody {
            message: (!text.is_empty()).then(|| truncate(text, MAX_ERROR_MESSAGE)),
            ..ErrorBody::default()
        };
    };
    let error = json.get("error").unwrap_or(&json);
    if let Some(text) = error.as_str() {
        return ErrorBody {
            message: Some(text.to_owned()),
            ..ErrorBody::default()
        };
    }
    let field = |name: &str| match error.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    };
    ErrorBody {
        message: field("message").or_else(|| field("detail")),
        code: field("code"),
        kind: field("type"),
    }
}

/// `text` cut to at most `max` bytes (at a character boundary), marked with an ellipsis.
pub(crate) fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_understood() {
        let openai = br#"{"error":{"message":"Incorrect API key","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        let parsed = parse_error_body(openai);
        assert_eq!(parsed.message.as_deref(), Some("Incorrect API key"));
        assert_eq!(parsed.code.as_deref(), Some("invalid_api_key"));
        assert_eq!(parsed.kind.as_deref(), Some("invalid_request_error"));
        assert_eq!(
            parse_error_body(br#"{"error":"plain"}"#).message.as_deref(),
            Some("plain")
        );
        assert_eq!(
            parse_error_body(br#"{"detail":"fastapi"}"#).message.as_deref(),
            Some("fastapi")
        );
        assert_eq!(
            parse_error_body(b"<html>bad gateway</html>").message.as_deref(),
            Some("<html>bad gateway</html>")
        );
        assert_eq!(parse_error_body(b"").message, None);
    }
}
