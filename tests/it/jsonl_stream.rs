//! `validate_reader` over a generated ~20 MB batch input file on disk.

use std::io::Write;

use llm_batch_operator::jsonl::{Limits, Report, validate_reader};

const CHAT: &str = "/v1/chat/completions";
const MODELS: [&str; 3] = ["gpt-4o", "gpt-4o-mini", "llama-3.1-8b"];

/// A typical chat request line: a system prompt and a user message with multi-byte text and
/// escapes, about 900 bytes.
fn chat_line(n: usize) -> String {
    let model = MODELS[n % MODELS.len()];
    let user = format!(
        "Ticket #{n}: the customer writes \\\"my order hasn't arrived\\\" — 注文が届きません 📦. \
         Classify the ticket as billing, shipping, product or other, and give a one-line reason. \
         Order history:\\n- 2024-03-01 shipped\\n- 2024-03-04 in transit\\n- 2024-03-09 no update. \
         Customer tier: gold; language: ja; previous tickets: {}.",
        n % 7
    );
    format!(
        r#"{{"custom_id":"ticket-{n:08}","method":"POST","url":"{CHAT}","body":{{"model":"{model}","temperature":0,"max_tokens":64,"messages":[{{"role":"system","content":"You are a support triage assistant. Answer with JSON: {{\"label\": string, \"reason\": string}}. Be concise and never invent facts."}},{{"role":"user","content":"{user}"}}]}}}}"#
    )
}

/// Writes lines until the file reaches `target` bytes; returns (path, lines written, bytes).
fn write_file(dir: &tempfile::TempDir, target: usize) -> (std::path::PathBuf, usize, u64) {
    let path = dir.path().join("input.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let (mut n, mut bytes) = (0, 0);
    while bytes < target {
        let line = chat_line(n);
        writeln!(out, "{line}").unwrap();
        bytes += line.len() + 1;
        n += 1;
    }
    out.flush().unwrap();
    (path, n, bytes as u64)
}

async fn validate_file(path: &std::path::Path, limits: Limits) -> Report {
    let file = tokio::fs::File::open(path).await.unwrap();
    validate_reader(file, CHAT, limits).await.unwrap()
}

#[tokio::test]
async fn a_20_mb_file_streams_through_with_the_right_summary() {
    let dir = tempfile::tempdir().unwrap();
    let (path, lines, bytes) = write_file(&dir, 20 * 1024 * 1024);
    assert!(lines > 20_000, "{lines} lines");

    let limits = Limits {
        max_requests: lines as u64,
        ..Limits::default()
    };
    let report = validate_file(&path, limits).await;
    assert!(report.is_valid(), "{}", report.render(5));
    assert_eq!(report.summary.requests, lines as u64);
    assert_eq!(report.summary.bytes, bytes);
    assert_eq!(report.summary.models.len(), MODELS.len());
    assert_eq!(report.summary.models.values().sum::<u64>(), lines as u64);
    let per_model = (lines / MODELS.len()) as u64;
    for model in MODELS {
        let count = report.summary.models[model];
        assert!(count == per_model || count == per_model + 1, "{model}: {count}");
    }
}

#[tokio::test]
async fn limits_are_reported_while_every_line_is_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (path, lines, bytes) = write_file(&dir, 20 * 1024 * 1024);
    let limits = Limits {
        max_requests: 10_000,
        max_bytes: 10 * 1024 * 1024,
    };
    let report = validate_file(&path, limits).await;
    assert_eq!(report.problem_count, 2, "{}", report.render(5));
    assert_eq!(
        report.render(5),
        format!(
            "the file has {lines} requests; the limit is 10000 (use a BatchSweep to split it)\n\
             the file is {bytes} bytes; the limit is 10485760 (use a BatchSweep to split it)"
        )
    );
    assert_eq!(report.summary.requests, lines as u64);
}
