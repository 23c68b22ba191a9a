//! The per-line rules, and the bounded store of the problems they find.

use std::fmt;

use super::estimate::{self, Estimator};
use super::id_digest::IdDigest;
use super::ids::{CustomIds, Duplicate};
use super::lines::Line;
use super::report::Problem;
use super::request::{self, Body, ObjectOr, Request, Scalar};

/// Messages quote at most this many characters of a value from the file.
const MAX_QUOTED_CHARS: usize = 64;

/// Problems found so far: the first `cap` stored, all of them counted.
#[derive(Debug)]
pub(crate) struct Problems {
    pub stored: Vec<Problem>,
    pub count: u64,
    pub cap: usize,
}

impl Problems {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            stored: Vec::new(),
            count: 0,
            cap,
        }
    }

    /// Counts a problem; formats and stores it only while under the cap.
    fn add(&mut self, line: u64, field: Option<&str>, message: fmt::Arguments<'_>) {
        self.count += 1;
        if self.stored.len() < self.cap {
            self.stored.push(Problem::at_line(line, message.to_string(), field));
        }
    }

    /// Counts the duplicates (in line order) and stores the first of all problems by line: on
    /// one line, the duplicate comes first, as custom_id is the first field checked.
    fn merge_duplicates(&mut self, duplicates: &[Duplicate<'_>]) {
        self.count += duplicates.len() as u64;
        let as_problem = |d: &Duplicate<'_>| {
            let message = format!("custom_id {} is a duplicate of line {}", Quoted(d.id), d.first);
            Problem::at_line(d.line, message, Some("custom_id"))
        };
        let mut duplicates = duplicates.iter().take(self.cap).peekable();
        let mut merged = Vec::with_capacity(self.cap.min(self.stored.len() + duplicates.len()));
        for problem in std::mem::take(&mut self.stored) {
            while let Some(d) = duplicates.next_if(|d| Some(d.line) <= problem.line) {
                merged.push(as_problem(d));
            }
            merged.push(problem);
        }
        merged.extend(duplicates.map(as_problem));
        merged.truncate(self.cap);
        self.stored = merged;
    }
}

/// Applies the per-line rules and keeps the running tallies.
#[derive(Debug)]
pub(crate) struct LineChecker {
    endpoint: String,
    max_line: u64,
    ids: CustomIds,
    /// False when uniqueness was proved by an earlier pass over the same bytes.
    pub unique_ids: bool,
    /// The keyed digest of the custom_ids (as checked: after any rewrite).
    pub id_digest: IdDigest,
    pub requests: u64,
    /// The token estimate, by model.
    pub estimate: Estimator,
    pub problems: Problems,
}

impl LineChecker {
    pub(crate) fn new(endpoint: &str, max_line: u64, problem_cap: usize) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            max_line,
            ids: CustomIds::default(),
            unique_ids: true,
            id_digest: IdDigest::random(),
            requests: 0,
            estimate: Estimator::default(),
            problems: Problems::new(problem_cap),
        }
    }

    /// Checks one line. Blank lines (empty or whitespace only) are skipped: they are not
    /// requests, but they keep their place in the line numbering.
    pub(crate) fn check(&mut self, line: Line<'_>) {
        if line.is_blank() {
            return;
        }
        self.requests += 1;
        let n = line.number;
        if line.is_truncated() {
            self.estimate.add_unread(line.len);
            let (len, max) = (line.len, self.max_line);
            let msg = format_args!("the line is {len} bytes, longer than the {max}-byte limit");
            return self.problems.add(n, Some("line"), msg);
        }
        let text = match std::str::from_utf8(line.content) {
            Ok(text) => text,
            Err(e) => {
                self.estimate.add_unread(line.len);
                let at = e.valid_up_to() + 1;
                let msg = format_args!("invalid UTF-8 at byte {at} of the line");
                return self.problems.add(n, None, msg);
            }
        };
        if n == 1 && text.starts_with('\u{feff}') {
            self.estimate.add_unread(line.len);
            let msg = format_args!("the file starts with a byte order mark (BOM); remove it");
            return self.problems.add(n, Some("line"), msg);
        }
        match request::parse(text) {
            Ok(ObjectOr::Object(request)) => {
                self.estimate.add(estimated(text, &request));
                self.check_request(n, request);
            }
            Ok(ObjectOr::Other(kind)) => {
                self.estimate.add(estimate::Request::unnamed(text));
                let msg = format_args!("a request must be a JSON object, got {kind}");
                self.problems.add(n, Some("line"), msg);
            }
            Err(e) => {
                self.estimate.add(estimate::Request::unnamed(text));
                let msg = format_args!("not valid JSON: {}", JsonError(&e));
                self.problems.add(n, Some("line"), msg);
            }
        }
    }

    fn check_request(&mut self, n: u64, request: Request<'_>) {
        self.check_custom_id(n, request.custom_id);
        self.check_method(n, request.method);
        self.check_url(n, request.url);
        match request.body {
            None => self.missing(n, "body"),
            Some(ObjectOr::Other(kind)) => {
                let msg = format_args!("body must be an object, got {kind}");
                self.problems.add(n, Some("body"), msg);
            }
            Some(ObjectOr::Object(body)) => self.check_body(n, body),
        }
    }

    fn check_custom_id(&mut self, n: u64, custom_id: Option<Scalar<'_>>) {
        const FIELD: &str = "custom_id";
        match custom_id {
            None => self.missing(n, FIELD),
            Some(Scalar::Str(id)) if id.is_empty() => {
                self.problems.add(n, Some(FIELD), format_args!("custom_id is empty"));
            }
            Some(Scalar::Str(id)) => {
                let hash = self.id_digest.hash(id.as_bytes());
                self.id_digest.add_hash(hash);
                if self.unique_ids {
                    self.ids.add(&id, hash, n);
                }
            }
            Some(other) => self.not_a_string(n, FIELD, &other),
        }
    }

    fn check_method(&mut self, n: u64, method: Option<Scalar<'_>>) {
        const FIELD: &str = "method";
        match method {
            None => self.missing(n, FIELD),
            Some(Scalar::Str(m)) if m == "POST" => {}
            Some(Scalar::Str(m)) => {
                let msg = format_args!("method must be \"POST\", got {}", Quoted(&m));
                self.problems.add(n, Some(FIELD), msg);
            }
            Some(other) => {
                let msg = format_args!("method must be \"POST\", got {}", other.kind());
                self.problems.add(n, Some(FIELD), msg);
            }
        }
    }

    fn check_url(&mut self, n: u64, url: Option<Scalar<'_>>) {
        const FIELD: &str = "url";
        match url {
            None => self.missing(n, FIELD),
            Some(Scalar::Str(url)) if url == self.endpoint => {}
            Some(Scalar::Str(url)) => {
                let msg = format_args!(
                    "url {} does not match the batch endpoint {}",
                    Quoted(&url),
                    Quoted(&self.endpoint)
                );
                self.problems.add(n, Some(FIELD), msg);
            }
            Some(other) => self.not_a_string(n, FIELD, &other),
        }
    }

    fn check_body(&mut self, n: u64, body: Body<'_>) {
        const MODEL: &str = "body.model";
        match body.model {
            None => self.missing(n, MODEL),
            Some(Scalar::Str(model)) if model.is_empty() => {
                self.problems.add(n, Some(MODEL), format_args!("body.model is empty"));
            }
            Some(Scalar::Str(_)) => {}
            Some(other) => self.not_a_string(n, MODEL, &other),
        }
        if body.stream == Some(Scalar::Bool(true)) {
            let msg = format_args!("body.stream is true; streaming is not supported in a batch");
            self.problems.add(n, Some("body.stream"), msg);
        }
    }

    /// Adds the duplicate custom_ids, known once every line is in, to the problems found line
    /// by line, keeping them in line order.
    pub(crate) fn add_duplicates(&mut self) {
        if self.unique_ids {
            self.problems.merge_duplicates(&self.ids.duplicates());
        }
    }

    fn missing(&mut self, n: u64, field: &str) {
        self.problems.add(n, Some(field), format_args!("{field} is missing"));
    }

    fn not_a_string(&mut self, n: u64, field: &str, value: &Scalar<'_>) {
        let msg = format_args!("{field} must be a string, got {}", value.kind());
        self.problems.add(n, Some(field), msg);
    }
}

/// What the token estimate reads of a parsed request line.
fn estimated<'a>(text: &'a str, request: &'a Request<'_>) -> estimate::Request<'a> {
    let Some(ObjectOr::Object(body)) = &request.body else {
        return estimate::Request::unnamed(text);
    };
    let model = match &body.model {
        Some(Scalar::Str(model)) if !model.is_empty() => Some(model.as_ref()),
        _ => None,
    };
    estimate::Request {
        text,
        model,
        output_ceiling: body.max_output,
    }
}

/// A value from the file in double quotes, escaped, shortened when long.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(MAX_QUOTED_CHARS) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => {
                let quoted = format!("{:?}", &self.0[..cut]);
                write!(f, "{}…\"", &quoted[..quoted.len() - 1])
            }
        }
    }
}

/// A serde_json syntax error as "what at column N" (a line is one JSON text, so the line
/// number serde_json reports is always 1).
struct JsonError<'a>(&'a serde_json::Error);

impl fmt::Display for JsonError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = self.0.to_string();
        let position = format!(" at line {} column {}", self.0.line(), self.0.column());
        match full.strip_suffix(&position) {
            Some(what) => write!(f, "{what} at column {}", self.0.column()),
            None => f.write_str(&full),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_escapes_and_shortens() {
        assert_eq!(Quoted("a\"b\n").to_string(), r#""a\"b\n""#);
        assert_eq!(Quoted("日本😀").to_string(), "\"日本😀\"");
        let long = "é".repeat(100);
        let expected = format!("\"{}…\"", "é".repeat(MAX_QUOTED_CHARS));
        assert_eq!(Quoted(&long).to_string(), expected);
    }

    #[test]
    fn json_error_has_column_only() {
        let e = serde_json::from_str::<serde_json::Value>("{\"a\": x}").unwrap_err();
        assert_eq!(JsonError(&e).to_string(), "expected value at column 7");
        let e = serde_json::from_str::<serde_json::Value>("").unwrap_err();
        assert_eq!(JsonError(&e).to_string(), "EOF while parsing a value at column 0");
    }
}
