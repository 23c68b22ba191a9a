//! The report's rows: one per request, or with `--pivot model` one per prompt with a column
//! group per model; and the cells every format writes.

use super::answer::{Answer, Status};
use crate::pricing::LineTokens;

/// One request.
#[derive(Debug, Clone)]
pub struct Row {
    /// As in the results (with the sweep's prefix).
    pub custom_id: String,
    /// The input's custom_id (or `--key`'s `prompt`).
    pub prompt_id: String,
    /// The model the request was sent to (`""` when nothing says).
    pub model: String,
    pub chunk: Option<u32>,
    /// 1-based attempt that gave the result (0: none did).
    pub attempt: u32,
    pub status: Status,
    pub answer: Option<Answer>,
    pub error: Option<String>,
    /// The model that answered, as the gateway named it.
    pub answered_by: Option<String>,
    pub tokens: Option<LineTokens>,
    /// Exact decimal, when priced.
    pub cost: Option<String>,
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Cell {
    Empty,
    Text(String),
    /// A JSON answer: JSON in JSONL, compact JSON text elsewhere.
    Json(serde_json::Value),
    Int(u64),
    /// An exact decimal (cost, rate), written as it is.
    Decimal(String),
}

impl Cell {
    /// The cell as text (CSV, Markdown, HTML).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow;
        match self {
            Cell::Empty => Cow::Borrowed(""),
            Cell::Text(t) | Cell::Decimal(t) => Cow::Borrowed(t),
            Cell::Json(v) => Cow::Owned(v.to_string()),
            Cell::Int(n) => Cow::Owned(n.to_string()),
        }
    }

    /// The cell as a JSON value (JSONL): numbers stay numbers, decimals stay exact strings.
    pub fn json(&self) -> serde_json::Value {
        match self {
            Cell::Empty => serde_json::Value::Null,
            Cell::Text(t) | Cell::Decimal(t) => t.clone().into(),
            Cell::Json(v) => v.clone(),
            Cell::Int(n) => (*n).into(),
        }
    }

    /// Whether the cell is a number (right-aligned in tables).
    pub fn numeric(&self) -> bool {
        matches!(self, Cell::Int(_) | Cell::Decimal(_))
    }

    fn opt_text(text: Option<&str>) -> Cell {
        text.map_or(Cell::Empty, |t| Cell::Text(t.to_string()))
    }
}

/// The columns of a row per request.
pub const ROW_COLUMNS: &[&str] = &[
    "custom_id",
    "prompt_id",
    "model",
    "chunk",
    "attempt",
    "status",
    "answer",
    "error",
    "answered_by",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "total_tokens",
    "cost",
];

/// The columns each model has in a pivot row.
pub const PIVOT_GROUP: &[&str] = &["status", "answer", "error", "total_tokens", "cost"];

impl Row {
    /// The cells of [`ROW_COLUMNS`].
    pub fn cells(&self) -> Vec<Cell> {
        let tokens = self.tokens.as_ref();
        let count = |f: fn(&LineTokens) -> u64| tokens.map_or(Cell::Empty, |t| Cell::Int(f(t)));
        vec![
            Cell::Text(self.custom_id.clone()),
            Cell::Text(self.prompt_id.clone()),
            Cell::Text(self.model.clone()),
            self.chunk.map_or(Cell::Empty, |c| Cell::Int(c.into())),
            match self.attempt {
                0 => Cell::Empty,
                n => Cell::Int(n.into()),
            },
            Cell::Text(self.status.to_string()),
            self.answer_cell(),
            Cell::opt_text(self.error.as_deref()),
            Cell::opt_text(self.answered_by.as_deref()),
            count(|t| t.input),
            count(|t| t.cached_input),
            count(|t| t.output),
            count(total),
            self.cost.clone().map_or(Cell::Empty, Cell::Decimal),
        ]
    }

    fn answer_cell(&self) -> Cell {
        match &self.answer {
            None => Cell::Empty,
            Some(Answer::Json(v)) => Cell::Json(v.clone()),
            Some(other) => Cell::Text(other.text().into_owned()),
        }
    }

    /// The cells of this row's model group in a pivot row ([`PIVOT_GROUP`]).
    fn group_cells(&self) -> [Cell; 5] {
        [
            Cell::Text(self.status.to_string()),
            self.answer_cell(),
            Cell::opt_text(self.error.as_deref()),
            self.tokens.as_ref().map_or(Cell::Empty, |t| Cell::Int(total(t))),
            self.cost.clone().map_or(Cell::Empty, Cell::Decimal),
        ]
    }
}

/// A line's total tokens: the gateway's, or input + output.
pub fn total(tokens: &LineTokens) -> u64 {
    tokens.total.unwrap_or(tokens.input.saturating_add(tokens.output))
}

/// The columns of pivot rows for `models`.
pub fn pivot_columns(models: &[String]) -> Vec<String> {
    let mut columns = vec!["prompt_id".to_string(), "chunk".to_string()];
    for model in models {
        columns.extend(PIVOT_GROUP.iter().map(|c| format!("{model}/{c}")));
    }
    columns
}

/// One prompt's pivot row: `rows` holds at most one row per model of `models`, in any order.
pub fn pivot_cells(prompt_id: &str, chunk: Option<u32>, models: &[String], rows: &[Row]) -> Vec<Cell> {
    let mut cells = vec![
        Cell::Text(prompt_id.to_string()),
        chunk.map_or(Cell::Empty, |c| Cell::Int(c.into())),
    ];
    for model in models {
        match rows.iter().find(|r| &r.model == model) {
            Some(row) => cells.extend(row.group_cells()),
            None => cells.extend(std::iter::repeat_n(Cell::Empty, PIVOT_GROUP.len())),
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, answer: &str) -> Row {
        Row {
            custom_id: format!("{model}/c0000/p1"),
            prompt_id: "p1".into(),
            model: model.into(),
            chunk: Some(0),
            attempt: 1,
            status: Status::Succeeded,
            answer: Some(Answer::Text(answer.into())),
            error: None,
            answered_by: Some(model.into()),
            tokens: Some(LineTokens {
                input: 3,
                cached_input: 0,
                output: 2,
                total: None,
            }),
            cost: Some("0.0000025".into()),
        }
    }

    #[test]
    fn a_pivot_row_has_a_column_group_per_model_in_the_matrix_order() {
        let models = vec!["b".to_string(), "a".to_string(), "c".to_string()];
        let columns = pivot_columns(&models);
        assert_eq!(&columns[..4], ["prompt_id", "chunk", "b/status", "b/answer"]);
        let cells = pivot_cells("p1", Some(0), &models, &[row("a", "from a"), row("b", "from b")]);
        assert_eq!(cells.len(), columns.len());
        let at = |name: &str| {
            cells[columns.iter().position(|c| c == name).unwrap()]
                .text()
                .into_owned()
        };
        assert_eq!(
            (at("a/answer"), at("b/answer"), at("c/answer")),
            ("from a".into(), "from b".into(), String::new())
        );
        assert_eq!((at("a/total_tokens"), at("a/cost")), ("5".into(), "0.0000025".into()));
    }
}
