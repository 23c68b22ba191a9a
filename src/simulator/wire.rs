//! The wire objects the simulator answers with (File, Batch, list pages), per the OpenAI API.

use serde::Serialize;
use serde_json::Value;

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

/// A File object.
#[derive(Debug, Clone, Serialize)]
pub struct FileObject {
    pub id: String,
    pub object: &'static str,
    pub bytes: u64,
    pub created_at: i64,
    pub filename: String,
    pub purpose: String,
    pub status: &'static str,
    pub expires_at: Option<i64>,
    pub status_details: Option<String>,
}

/// The lifecycle states of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    Validating,
    Failed,
    InProgress,
    Finalizing,
    Completed,
    Expired,
    Cancelling,
    Cancelled,
}

impl BatchStatus {
    /// The wire name, e.g. `in_progress`.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Validating => "validating",
            BatchStatus::Failed => "failed",
            BatchStatus::InProgress => "in_progress",
            BatchStatus::Finalizing => "finalizing",
            BatchStatus::Completed => "completed",
            BatchStatus::Expired => "expired",
            BatchStatus::Cancelling => "cancelling",
            BatchStatus::Cancelled => "cancelled",
        }
    }
}

/// One entry of `errors.data` (`line` is 1-based).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchError {
    pub code: String,
    pub message: String,
    pub param: Option<String>,
    pub line: Option<u64>,
}

/// `{object:"list", data:[BatchError]}`.
#[derive(Debug, Clone, Serialize)]
pub struct BatchErrors {
    pub object: &'static str,
    pub data: Vec<BatchError>,
}

/// `request_counts`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RequestCounts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

/// `usage` of a batch, summed over its output lines.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct BatchUsage {
    pub input_tokens: u64,
    pub input_tokens_details: CachedTokens,
    pub output_tokens: u64,
    pub output_tokens_details: ReasoningTokens,
    pub total_tokens: u64,
}

impl BatchUsage {
    /// Adds one answered request's tokens.
    pub fn add(&mut self, answer: &super::answers::Answer) {
        self.input_tokens += answer.input_tokens;
        self.input_tokens_details.cached_tokens += answer.cached_tokens;
        self.output_tokens += answer.output_tokens;
        self.output_tokens_details.reasoning_tokens += answer.reasoning_tokens;
        self.total_tokens += answer.input_tokens + answer.output_tokens;
    }
}

/// `input_tokens_details`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CachedTokens {
    pub cached_tokens: u64,
}

/// `output_tokens_details`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ReasoningTokens {
    pub reasoning_tokens: u64,
}

/// A Batch object.
#[derive(Debug, Clone, Serialize)]
pub struct Batch {
    pub id: String,
    pub object: &'static str,
    pub endpoint: String,
    pub model: Option<String>,
    pub errors: Option<BatchErrors>,
    pub input_file_id: String,
    pub completion_window: String,
    pub status: BatchStatus,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub created_at: i64,
    pub in_progress_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub finalizing_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub expired_at: Option<i64>,
    pub cancelling_at: Option<i64>,
    pub cancelled_at: Option<i64>,
    pub request_counts: RequestCounts,
    pub usage: BatchUsage,
    pub metadata: Option<serde_json::Map<String, Value>>,
}

/// `{object:"list", data, first_id, last_id, has_more}`.
#[derive(Debug, Serialize)]
pub struct ListPage<T> {
    pub object: &'static str,
    pub data: Vec<T>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

impl<T> ListPage<T> {
    /// Builds a page from already-cut items; `id` names each item for the cursors.
    pub fn new(data: Vec<T>, has_more: bool, id: impl Fn(&T) -> &str) -> Self {
        ListPage {
            object: "list",
            first_id: data.first().map(|item| id(item).to_owned()),
            last_id: data.last().map(|item| id(item).to_owned()),
            data,
            has_more,
        }
    }
}

/// Cuts one page out of `items` (already in answer order): the items after the `after` id,
/// at most `limit` of them. Returns the page and `has_more`.
pub fn paginate<T: Clone>(items: &[T], after: Option<&str>, limit: usize, id: impl Fn(&T) -> &str) -> (Vec<T>, bool) {
    let start = match after {
        Some(cursor) => items
            .iter()
            .position(|item| id(item) == cursor)
            .map_or(items.len(), |pos| pos + 1),
        None => 0,
    };
    let rest = &items[start..];
    let page = rest.iter().take(limit).cloned().collect();
    (page, rest.len() > limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paginate_walks_with_cursor() {
        let items: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let (page, more) = paginate(&items, None, 2, |s| s);
        assert_eq!(page, ["a", "b"]);
        assert!(more);
        let (page, more) = paginate(&items, Some("d"), 2, |s| s);
        assert_eq!(page, ["e"]);
        assert!(!more);
        let (page, more) = paginate(&items, Some("zz"), 2, |s| s);
        assert!(page.is_empty() && !more);
    }
}
