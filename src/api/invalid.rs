//! The error of a spec value the operator cannot use, named by its field path.

/// A field whose value cannot be used (`spec.polling.max: "5 minutes" is not a duration ...`):
/// the path says what to fix, the problem says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidField {
    /// The field's path from the object's root, e.g. `spec.limits.maxBytesPerBatch`.
    pub field: &'static str,
    pub problem: String,
}

impl InvalidField {
    pub fn new(field: &'static str, problem: impl ToString) -> Self {
        InvalidField {
            field,
            problem: problem.to_string(),
        }
    }
}
