//! Query-string parsing with OpenAI-shaped 400s.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use super::error::{ApiError, ApiResult};

/// Decoded query parameters (the last value wins).
pub struct Params(HashMap<String, String>);

impl Params {
    /// Parses a raw query string (`None` = no query).
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes());
        Params(pairs.into_owned().collect())
    }

    /// A string parameter, empty values counting as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// An integer parameter within `range`, or `default` when absent.
    pub fn limit(&self, name: &str, range: RangeInclusive<usize>, default: usize) -> ApiResult<usize> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        raw.parse::<usize>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
            let message = format!(
                "Invalid '{name}': expected an integer between {} and {}, got '{raw}'.",
                range.start(),
                range.end()
            );
            ApiError::bad_request(message)
                .with_param(name)
                .with_code("invalid_value")
        })
    }

    /// A parameter restricted to `allowed` values, or `default` when absent.
    pub fn one_of<'a>(&'a self, name: &str, allowed: &[&'a str], default: &'a str) -> ApiResult<&'a str> {
        match self.get(name) {
            None => Ok(default),
            Some(value) if allowed.contains(&value) => Ok(value),
            Some(value) => Err(invalid_value(name, value, allowed)),
        }
    }
}

/// 400 `invalid_value` listing the supported values.
pub fn invalid_value(param: &str, value: &str, allowed: &[&str]) -> ApiError {
    let supported = allowed.iter().map(|v| format!("'{v}'")).collect::<Vec<_>>().join(", ");
    ApiError::bad_request(format!("Invalid value: '{value}'. Supported values are: {supported}."))
        .with_param(param)
        .with_code("invalid_value")
}
