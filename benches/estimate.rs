//! Token-estimate benchmark (`cargo bench --bench estimate`, or `bench/estimate`): the
//! tokenizer alone (OpenAI's `o200k_base`, counted as the estimate counts it) on the text of a chat
//! corpus, and the validation pass, which estimates as it checks, on a 200 MB corpus of long
//! chat lines and on 1 GiB of short ones (`LLMB_BENCH_BYTES` sets that size). Prints MB/s and
//! this process's peak RSS. Figures, not assertions: nothing here fails on speed.
//!
//! Targets (issue 17): validation with estimation within 20% of validation's pace before it
//! (docs/development.md has the before and after); the tokenizer's own pace, beside it.

use std::path::Path;
use std::time::Instant;

#[allow(dead_code)] // the helpers the other benches share
mod support;

use llm_batch_operator::jsonl::{self, Limits};

fn main() -> anyhow::Result<()> {
    let work = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")?
    } else {
        tempfile::tempdir()?
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;

    let text = "The customer writes that the parcel arrived damaged and asks for a replacement. ".repeat(250_000);
    let started = Instant::now();
    let tokens = llm_batch_operator::bpe::O200K_BASE.count(&text);
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "tokenizer o200k_base: {:.1} MB of text, {tokens} tokens, {:.1} MB/s",
        text.len() as f64 / 1e6,
        text.len() as f64 / 1e6 / seconds
    );

    let short_bytes = std::env::var("LLMB_BENCH_BYTES")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(1 << 30);
    let long = work.path().join("long.jsonl");
    support::write_chat_jsonl(&long, 200_000_000)?;
    let short = work.path().join("short.jsonl");
    write_short_lines(&short, short_bytes)?;
    println!(
        "{:<34} {:>12} {:>9} {:>12}",
        "validation with estimation", "bytes", "MB/s", "peak RSS"
    );
    for (label, path) in [("200 MB of 4.2 KB chat lines", &long), ("short chat lines", &short)] {
        support::reset_peak_rss();
        let started = Instant::now();
        let report = runtime.block_on(async {
            let file = tokio::fs::File::open(path).await?;
            let limits = Limits {
                max_requests: u64::MAX,
                max_bytes: u64::MAX,
            };
            anyhow::Ok(jsonl::validate_reader(file, "/v1/chat/completions", limits).await?)
        })?;
        let seconds = started.elapsed().as_secs_f64();
        anyhow::ensure!(report.is_valid(), "generated input is invalid: {}", report.render(3));
        let bytes = report.summary.bytes;
        println!(
            "{label:<34} {bytes:>12} {:>9.1} {:>9.1} MiB",
            bytes as f64 / 1e6 / seconds,
            support::peak_rss_kib() as f64 / 1024.0
        );
        for e in &report.summary.estimates {
            println!("  {}: {} input tokens ({})", e.model, e.input_tokens, e.counted_by);
        }
    }
    Ok(())
}

/// Short chat lines (about 170 bytes) until `bytes` is reached.
fn write_short_lines(path: &Path, bytes: u64) -> anyhow::Result<()> {
    support::write_lines(path, bytes, |i| {
        format!(
            "{{\"custom_id\":\"{i}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"ticket {i}: refund please\"}}],\"max_tokens\":5}}}}\n"
        )
    })?;
    Ok(())
}
