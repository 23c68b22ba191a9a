//! `report` benchmark (`cargo bench --bench report`, or `bench/report`): a generated results
//! directory of a two-model sweep as `run -f` writes it (`LLMB_BENCH_BYTES` of result lines,
//! 256 MiB unless told; set 1073741824 for the 1 GiB figure), reported three ways: a row per
//! request (CSV), the pivot (CSV) and the HTML page. Prints throughput over the result bytes
//! and this process's peak RSS for each. Figures, not assertions: nothing here fails on speed.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

#[allow(dead_code)] // the helpers the other benches share
mod support;

use llm_batch_operator::report::{self, Format, ReportOptions};

const MODELS: [&str; 2] = ["model-a", "model-b"];
/// Requests per chunk (OpenAI's ceiling per batch).
const CHUNK: u64 = 50_000;

fn main() -> anyhow::Result<()> {
    let bytes: u64 = std::env::var("LLMB_BENCH_BYTES")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(256 << 20);
    let work = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")?
    } else {
        tempfile::tempdir()?
    };
    let started = Instant::now();
    let (prompts, result_bytes) = generate(work.path(), bytes)?;
    println!(
        "generated {prompts} prompts x {} models: {:.1} MB of results in {:.1} s",
        MODELS.len(),
        result_bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<26} {:>10} {:>9} {:>12} {:>12}",
        "report", "rows", "MB/s", "peak RSS", "output MB"
    );
    for (label, format, pivot) in [
        ("rows, csv", Format::Csv, false),
        ("pivot by model, csv", Format::Csv, true),
        ("html page", Format::Html, false),
    ] {
        let out = work.path().join("report.out");
        let options = ReportOptions {
            paths: vec![work.path().join("sweep.yaml")],
            results: work.path().join("out"),
            name: None,
            input: Some(work.path().join("input.jsonl")),
            format,
            pivot,
            summary: false,
            key: None,
            output: Some(out.clone()),
            html_rows: report::DEFAULT_HTML_ROWS,
        };
        support::reset_peak_rss();
        let started = Instant::now();
        let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&out)?);
        let reported = report::write(&options, Box::new(file))?;
        let seconds = started.elapsed().as_secs_f64();
        let total = &reported.summary.total;
        anyhow::ensure!(total.requests == prompts * MODELS.len() as u64, "{total:?}");
        println!(
            "{label:<26} {:>10} {:>9.1} {:>8.1} MiB {:>12.1}",
            if pivot { prompts } else { total.requests },
            result_bytes as f64 / 1e6 / seconds,
            support::peak_rss_kib() as f64 / 1024.0,
            std::fs::metadata(&out)?.len() as f64 / 1e6
        );
    }
    Ok(())
}

/// The manifests, the input, the sweep's status, and each child's results (one
/// line in 50 failed, in the error file) until `bytes` of results; returns (prompts, bytes).
fn generate(dir: &Path, bytes: u64) -> anyhow::Result<(u64, u64)> {
    std::fs::write(
        dir.join("sweep.yaml"),
        "apiVersion: llmbatch.io/v1alpha1\nkind: BatchSweep\nmetadata:\n  name: bench\nspec:\n  input:\n    configMap:\n      \
         name: corpus\n      key: batch.jsonl\n  chunk:\n    maxRequests: 50000\n  matrix:\n    models: [model-a, model-b]\n  \
         template:\n    gatewayRef:\n      name: gw\n    endpoint: /v1/chat/completions\n---\n\
         apiVersion: llmbatch.io/v1alpha1\nkind: BatchGateway\nmetadata:\n  name: gw\nspec:\n  url: http://127.0.0.1:9/v1\n  \
         pricing:\n    models:\n    - model: model-a\n      inputPerMillion: \"0.15\"\n      outputPerMillion: \"0.60\"\n    \
         - model: model-b\n      inputPerMillion: \"2.50\"\n      outputPerMillion: \"10\"\n",
    )?;
    let answer = "The parcel should be replaced: ask the courier for a damage report, then send a new one. ".repeat(4);
    let per_prompt = result_line("model-a/c0000/req-1", "model-a", &answer, 1).len() as u64 * MODELS.len() as u64;
    let prompts = (bytes / per_prompt).max(1);
    let mut input = std::io::BufWriter::new(std::fs::File::create(dir.join("input.jsonl"))?);
    let mut written = 0u64;
    let out = dir.join("out/default");
    for chunk in 0..prompts.div_ceil(CHUNK) {
        let first = chunk * CHUNK + 1;
        let last = ((chunk + 1) * CHUNK).min(prompts);
        let mut files = Vec::new();
        for model in MODELS {
            let child = out.join(format!("bench-{model}-c{chunk:04}"));
            std::fs::create_dir_all(&child)?;
            std::fs::write(child.join("status.yaml"), "phase: Succeeded\nmode: Batch\n")?;
            let output = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(child.join("output.jsonl"))?);
            let errors = std::io::BufWriter::new(std::fs::File::create(child.join("errors.jsonl"))?);
            files.push((model, output, errors));
        }
        for i in first..=last {
            let line = format!(
                "{{\"custom_id\":\"req-{i}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"ticket {i}: the parcel arrived damaged\"}}],\"max_tokens\":64}}}}\n"
            );
            input.write_all(line.as_bytes())?;
            for (model, output, errors) in &mut files {
                let id = format!("{model}/c{chunk:04}/req-{i}");
                let line = if i % 50 == 0 {
                    format!(
                        "{{\"id\":\"batch_req_{i}\",\"custom_id\":\"{id}\",\"response\":{{\"status_code\":500,\"request_id\":\"r{i}\",\"body\":{{\"error\":{{\"message\":\"upstream failed\",\"type\":\"server_error\",\"param\":null,\"code\":null}}}}}},\"error\":null}}\n"
                    )
                } else {
                    result_line(&id, model, &answer, i)
                };
                written += line.len() as u64;
                if i % 50 == 0 {
                    errors.write_all(line.as_bytes())?
                } else {
                    output.write_all(line.as_bytes())?
                }
            }
        }
        for (_, mut output, mut errors) in files {
            output.flush()?;
            errors.flush()?;
        }
    }
    input.flush()?;
    // As run -f leaves it: the plan is in its state directory, so the report plans again.
    std::fs::create_dir_all(out.join("bench"))?;
    std::fs::write(out.join("bench/status.yaml"), "phase: Succeeded\n")?;
    Ok((prompts, written))
}

fn result_line(custom_id: &str, model: &str, answer: &str, i: u64) -> String {
    format!(
        "{{\"id\":\"batch_req_{i}\",\"custom_id\":\"{custom_id}\",\"response\":{{\"status_code\":200,\"request_id\":\"r{i}\",\"body\":{{\"id\":\"chatcmpl-{i}\",\"object\":\"chat.completion\",\"created\":1767225600,\"model\":\"{model}\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"{answer}\"}},\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":{},\"completion_tokens\":64,\"total_tokens\":{}}}}}}},\"error\":null}}\n",
        20 + i % 7,
        84 + i % 7
    )
}
