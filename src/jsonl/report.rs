//! What validation produces: limits in, problems and a summary out.

use std::collections::BTreeMap;
use std::fmt;

/// Size limits of one batch input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most requests (non-blank lines) in one file.
    pub max_requests: u64,
    /// Most bytes in one file.
    pub max_bytes: u64,
}

impl Limits {
    /// OpenAI's limit on requests per batch.
    pub const DEFAULT_MAX_REQUESTS: u64 = 50_000;
    /// OpenAI's limit on the size of a batch input file (200 MiB).
    pub const DEFAULT_MAX_BYTES: u64 = 209_715_200;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_requests: Self::DEFAULT_MAX_REQUESTS,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

/// One thing wrong with a file: on a line, or with the file as a whole (`line: None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line number; `None` for file-level problems.
    pub line: Option<u64>,
    /// What is wrong, without the line prefix or the field suffix.
    pub message: String,
    /// The offending field (`custom_id`, `body.model`, `line` for the line as a whole…).
    pub field: Option<String>,
}

impl Problem {
    /// A problem on line `line` about `field`.
    pub fn at_line(line: u64, message: impl Into<String>, field: Option<&str>) -> Self {
        Self {
            line: Some(line),
            message: message.into(),
            field: field.map(str::to_owned),
        }
    }

    /// A problem with the file as a whole.
    pub fn file(message: impl Into<String>) -> Self {
        Self {
            line: None,
            message: message.into(),
            field: None,
        }
    }
}

impl fmt::Display for Problem {
    /// `line N: message (field)`; the parts that are absent are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(field) = &self.field {
            write!(f, " ({field})")?;
        }
        Ok(())
    }
}

/// What the file holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Requests: non-blank lines, valid or not.
    pub requests: u64,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// Requests per `body.model`, over lines whose `body.model` is a string.
    pub models: BTreeMap<String, u64>,
    /// Estimated tokens (what `tokensPerHour` admission counts): the input tokens of
    /// `estimates` plus each line's `max_completion_tokens`/`max_tokens`/`max_output_tokens`.
    pub estimated_tokens: u64,
    /// The token estimate by model (see [`super::estimate`]).
    pub estimates: Vec<crate::api::ModelEstimate>,
    /// The keyed digest of the custom_ids (see [`super::IdDigest`]); `None` where no lines
    /// were checked here.
    pub ids: Option<super::IdDigest>,
}

/// The outcome of validating one file.
#[derive(Debug, Clone)]
pub struct Report {
    /// What the file holds.
    pub summary: Summary,
    /// The first problems found (file-level problems first), at most the validator's cap.
    pub problems: Vec<Problem>,
    /// How many problems there are in all, stored or not.
    pub problem_count: u64,
}

impl Report {
    /// Whether the file has no problems at all.
    pub fn is_valid(&self) -> bool {
        self.problem_count == 0
    }

    /// One line per problem, at most `cap`, then "and K more problems" when more.
    /// Empty when the file is valid; no trailing newline.
    pub fn render(&self, cap: usize) -> String {
        let shown = &self.problems[..self.problems.len().min(cap)];
        let mut lines: Vec<String> = shown.iter().map(Problem::to_string).collect();
        let more = self.problem_count.saturating_sub(shown.len() as u64);
        if more > 0 {
            let noun = if more == 1 { "problem" } else { "problems" };
            lines.push(format!("and {more} more {noun}"));
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_are_openai_limits() {
        let limits = Limits::default();
        assert_eq!(limits.max_requests, 50_000);
        assert_eq!(limits.max_bytes, 209_715_200);
    }

    #[test]
    fn problem_display() {
        let p = Problem::at_line(3, "custom_id \"a\" is a duplicate of line 1", Some("custom_id"));
        assert_eq!(
            p.to_string(),
            "line 3: custom_id \"a\" is a duplicate of line 1 (custom_id)"
        );
        let p = Problem::at_line(5, "invalid UTF-8 at byte 17 of the line", None);
        assert_eq!(p.to_string(), "line 5: invalid UTF-8 at byte 17 of the line");
        assert_eq!(
            Problem::file("the file has no requests").to_string(),
            "the file has no requests"
        );
    }

    fn report(stored: u64, total: u64) -> Report {
        Report {
            summary: Summary::default(),
            problems: (1..=stored).map(|n| Problem::at_line(n, "bad", Some("line"))).collect(),
            problem_count: total,
        }
    }

    #[test]
    fn render_caps_and_counts_the_rest() {
        assert_eq!(report(0, 0).render(10), "");
        assert!(report(0, 0).is_valid());
        assert_eq!(report(2, 2).render(10), "line 1: bad (line)\nline 2: bad (line)");
        assert_eq!(
            report(3, 3).render(2),
            "line 1: bad (line)\nline 2: bad (line)\nand 1 more problem"
        );
        // Problems beyond the stored ones are counted too.
        assert_eq!(report(3, 1000).render(1), "line 1: bad (line)\nand 999 more problems");
        assert_eq!(report(3, 1000).render(0), "and 1000 more problems");
        assert!(!report(3, 1000).is_valid());
    }
}
