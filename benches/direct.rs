//! Direct-mode benchmark (`cargo bench --bench direct`, or `bench/direct`): 10,000 chat lines
//! sent by the `direct` subcommand to the simulator (a subprocess, `--no-batch-api`) with a
//! fixed per-request latency, beside the same lines sent by the official `openai` Python SDK
//! in an asyncio loop bounded by a semaphore, in the same run against the same simulator.
//! Prints requests/s beside concurrency / latency. Figures, not assertions; everything goes
//! to 127.0.0.1 and every run is bounded.
//!
//! Target (issue 9): within 10% of concurrency / latency.

#[allow(dead_code)] // the peak-RSS helpers: our client runs as a subprocess here
mod support;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::Simulator;

const LINES: usize = 10_000;
const LATENCY_MS: u64 = 50;
const CONCURRENCY: [u32; 2] = [16, 50];
const PYTHON_LOOP: &str = r#"
import asyncio, json, sys, time
from openai import AsyncOpenAI

async def main(base_url, path, concurrency):
    client = AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=8)
    lines = [json.loads(l) for l in open(path) if l.strip()]
    gate = asyncio.Semaphore(concurrency)
    async def one(line):
        async with gate:
            await client.chat.completions.create(**line["body"])
    start = time.monotonic()
    await asyncio.gather(*(one(l) for l in lines))
    print(time.monotonic() - start)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"#;

fn main() -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let input = work.path().join("input.jsonl");
    write_lines(&input)?;
    let python = std::env::var("LLMB_PYTHON").ok();
    let script = work.path().join("loop.py");
    std::fs::write(&script, PYTHON_LOOP)?;
    println!("{LINES} chat lines, {LATENCY_MS} ms per request at the simulator");
    println!(
        "{:>11} {:>14} {:>10} {:>9} {:>14} {:>9}",
        "concurrency", "target req/s", "ours req/s", "vs target", "python req/s", "vs target"
    );
    for concurrency in CONCURRENCY {
        let target = f64::from(concurrency) * 1000.0 / LATENCY_MS as f64;
        let ours = LINES as f64 / ours(&input, work.path(), concurrency)?.as_secs_f64();
        let python = match &python {
            Some(python) => {
                let rate = LINES as f64 / python_loop(python, &script, &input, concurrency)?.as_secs_f64();
                format!("{rate:>14.0} {:>8.2}x", rate / target)
            }
            None => format!("{:>14} {:>9}", "(no LLMB_PYTHON)", "-"),
        };
        println!(
            "{concurrency:>11} {target:>14.0} {ours:>10.0} {:>8.2}x {python}",
            ours / target
        );
    }
    Ok(())
}

/// A fresh simulator per measurement, so neither client pays for the other's journal.
fn simulator() -> anyhow::Result<Simulator> {
    Simulator::start(&["--no-batch-api", "--latency-ms", &LATENCY_MS.to_string()])
}

fn ours(input: &Path, work: &Path, concurrency: u32) -> anyhow::Result<Duration> {
    let sim = simulator()?;
    let checkpoint = work.join(format!("checkpoint-{concurrency}"));
    let start = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_llm-batch-operator"))
        .args(["direct", "--url", &sim.base_url, "--input"])
        .arg(input)
        .arg("--checkpoint-dir")
        .arg(&checkpoint)
        .args(["--max-concurrent-requests", &concurrency.to_string()])
        .output()?;
    let elapsed = start.elapsed();
    anyhow::ensure!(
        output.status.success(),
        "direct run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    anyhow::ensure!(summary["completed"] == LINES, "not every line completed: {summary}");
    Ok(elapsed)
}

fn python_loop(python: &str, script: &Path, input: &Path, concurrency: u32) -> anyhow::Result<Duration> {
    let sim = simulator()?;
    let output = Command::new(python)
        .arg(script)
        .arg(&sim.base_url)
        .arg(input)
        .arg(concurrency.to_string())
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "python loop failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seconds: f64 = String::from_utf8_lossy(&output.stdout).trim().parse()?;
    Ok(Duration::from_secs_f64(seconds))
}

fn write_lines(path: &Path) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 1..=LINES {
        writeln!(
            out,
            r#"{{"custom_id":"req-{i}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o-mini","max_tokens":64,"messages":[{{"role":"user","content":"Ticket {i}: the parcel arrived damaged, please send a replacement."}}]}}}}"#
        )?;
    }
    Ok(out.flush()?)
}
