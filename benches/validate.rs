//! Validation benchmark (`cargo bench --bench validate`, or `bench/validate`): the release
//! `llm-batch-operator validate` on three corpora, each beside a plain Python loop (`json.loads`
//! of every line and a set of custom_ids: what a user would write instead) and beside
//! `cat FILE > /dev/null` (what reading the bytes costs at all). Every command runs as a
//! subprocess on the same file in the page cache, alternating, and the medians of their wall,
//! user and system seconds are printed with their peak RSS (from `wait4`). A last table
//! validates each corpus in process with and without the custom_id set, so the set's share of
//! the peak is reported apart. Figures, not assertions: nothing here fails on speed.
//!
//! Targets (issue 20): at least 4x the Python loop on every corpus, within 2x of `cat`, peak RSS
//! under 64 MiB apart from the custom_id set. `LLMB_BENCH_RUNS` sets the runs (3),
//! `LLMB_BENCH_SCALE` scales every corpus (1.0), `LLMB_PYTHON` the interpreter (python3).

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[allow(dead_code)] // the helpers the other benches share
mod support;

use llm_batch_operator::jsonl::{Limits, Preparer, Rewrite};

const MIB: u64 = 1 << 20;

/// The Python loop: what a user would write to check a file without this tool.
const PYTHON_LOOP: &str = r#"
import json, sys
seen = set()
with open(sys.argv[1], "rb") as f:
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        request = json.loads(line)
        custom_id = request["custom_id"]
        if custom_id in seen:
            sys.exit(f"line {n}: duplicate custom_id {custom_id}")
        seen.add(custom_id)
"#;

struct Corpus {
    label: &'static str,
    endpoint: &'static str,
    bytes: u64,
    line: fn(u64) -> String,
}

const CORPORA: [Corpus; 3] = [
    Corpus {
        label: "long chat lines",
        endpoint: "/v1/chat/completions",
        bytes: 195 * MIB,
        line: long_chat_line,
    },
    Corpus {
        label: "88-byte lines",
        endpoint: "/v1/embeddings",
        bytes: 1024 * MIB,
        line: short_line,
    },
    Corpus {
        label: "embeddings lines",
        endpoint: "/v1/embeddings",
        bytes: 200 * MIB,
        line: embeddings_line,
    },
];

/// One finished run of a command.
#[derive(Clone, Copy)]
struct Run {
    wall: f64,
    user: f64,
    sys: f64,
    peak_mib: f64,
}

fn main() -> anyhow::Result<()> {
    let runs: usize = env_or("LLMB_BENCH_RUNS", 3);
    let scale: f64 = env_or("LLMB_BENCH_SCALE", 1.0);
    let python = std::env::var("LLMB_PYTHON").unwrap_or_else(|_| "python3".into());
    let work = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")?
    } else {
        tempfile::tempdir()?
    };
    let script = work.path().join("loop.py");
    std::fs::write(&script, PYTHON_LOOP)?;
    let ours = env!("CARGO_BIN_EXE_llm-batch-operator");

    println!(
        "{:<18} {:>9} {:>10} | {:>7} {:>8} {:>8} | {:>7} {:>7} {:>7} {:>9} | {:>9} {:>8}",
        "median of runs",
        "MiB",
        "lines",
        "cat s",
        "python s",
        "py RSS",
        "ours s",
        "user",
        "sys",
        "peak RSS",
        "vs python",
        "vs cat"
    );
    let mut files = Vec::new();
    for corpus in &CORPORA {
        let path = work.path().join(format!("{}.jsonl", corpus.label.replace(' ', "-")));
        let lines = support::write_lines(&path, (corpus.bytes as f64 * scale) as u64, corpus.line)?;
        let size = std::fs::metadata(&path)?.len();
        let file = path.display().to_string();
        let (mut cat, mut py, mut us) = (vec![], vec![], vec![]);
        for _ in 0..runs {
            cat.push(run(Command::new("cat").arg(&file))?);
            py.push(run(Command::new(&python).arg(&script).arg(&file))?);
            us.push(run(Command::new(ours).args([
                "validate",
                &file,
                "--endpoint",
                corpus.endpoint,
                "--max-bytes",
                "4Gi",
                "--max-requests",
                "100000000",
            ]))?);
        }
        let (cat, py, us) = (median(&cat), median(&py), median(&us));
        println!(
            "{:<18} {:>9.1} {lines:>10} | {:>7.3} {:>8.3} {:>4.0} MiB | {:>7.3} {:>7.3} {:>7.3} {:>5.1} MiB | {:>8.2}x {:>7.2}x",
            corpus.label,
            size as f64 / MIB as f64,
            cat.wall,
            py.wall,
            py.peak_mib,
            us.wall,
            us.user,
            us.sys,
            us.peak_mib,
            py.wall / us.wall,
            us.wall / cat.wall,
        );
        files.push((corpus, path));
    }

    println!();
    println!(
        "{:<18} {:>22} {:>22} {:>14}",
        "in process", "peak RSS with the set", "peak RSS without it", "the set"
    );
    for (corpus, path) in &files {
        let with = validation_peak_mib(path, corpus.endpoint, true)?;
        let without = validation_peak_mib(path, corpus.endpoint, false)?;
        println!(
            "{:<18} {:>18.1} MiB {:>18.1} MiB {:>10.1} MiB",
            corpus.label,
            with,
            without,
            with - without
        );
    }
    Ok(())
}

/// Runs `command` to its end with its output discarded: wall time, CPU times and peak RSS.
fn run(command: &mut Command) -> anyhow::Result<Run> {
    let started = Instant::now();
    let child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for the child we spawned.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own unwaited child; status and usage are valid for writes.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_secs_f64();
    anyhow::ensure!(waited == pid, "wait4: {}", std::io::Error::last_os_error());
    let status = std::process::ExitStatus::from_raw(status);
    anyhow::ensure!(status.success(), "{command:?} failed: {status}");
    let seconds = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000).as_secs_f64();
    Ok(Run {
        wall,
        user: seconds(usage.ru_utime),
        sys: seconds(usage.ru_stime),
        peak_mib: usage.ru_maxrss as f64 / 1024.0,
    })
}

/// The run with the median wall time.
fn median(runs: &[Run]) -> Run {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    sorted[sorted.len() / 2]
}

/// This process's peak RSS while it validates `path` (read in 1 MiB blocks), with or without
/// the custom_id set (without it, uniqueness is trusted as in a second pass).
fn validation_peak_mib(path: &Path, endpoint: &str, with_set: bool) -> anyhow::Result<f64> {
    use std::io::Read;
    let limits = Limits {
        max_requests: u64::MAX,
        max_bytes: u64::MAX,
    };
    support::reset_peak_rss();
    let mut preparer = Preparer::new(endpoint, limits, Rewrite::default());
    if !with_set {
        preparer = preparer.trusting_unique_ids();
    }
    let mut file = std::fs::File::open(path)?;
    let (mut block, mut out) = (vec![0u8; MIB as usize], Vec::new());
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            break;
        }
        preparer.feed(&block[..n], &mut out);
        out.clear();
    }
    let report = preparer.finish(&mut out);
    anyhow::ensure!(report.is_valid(), "generated input is invalid: {}", report.render(3));
    let peak = support::peak_rss_kib() as f64 / 1024.0;
    drop(report);
    Ok(peak)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A chat request of about 4.7 KB: long message strings (the issue's 195 MiB corpus has 42,861).
fn long_chat_line(i: u64) -> String {
    let text = "The customer writes that the parcel arrived damaged and asks for a replacement. ".repeat(56);
    format!(
        "{{\"custom_id\":\"ticket-{i}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{{\"model\":\"gpt-4o-mini\",\"max_tokens\":64,\"messages\":[{{\"role\":\"system\",\"content\":\"Classify the ticket as refund, replacement or other. Answer with one word.\"}},{{\"role\":\"user\",\"content\":\"{text}\"}}]}}}}\n"
    )
}

/// An embeddings request of 88 bytes (for ids below a hundred million).
fn short_line(i: u64) -> String {
    format!(
        "{{\"custom_id\":\"rq-{i:08}\",\"method\":\"POST\",\"url\":\"/v1/embeddings\",\"body\":{{\"model\":\"m\"}}}}\n"
    )
}

/// An embeddings request with about 1 KB of input text.
fn embeddings_line(i: u64) -> String {
    let text = "Section 4.2: returns are accepted within thirty days of delivery, unopened. ".repeat(14);
    format!(
        "{{\"custom_id\":\"doc-{i}\",\"method\":\"POST\",\"url\":\"/v1/embeddings\",\"body\":{{\"model\":\"text-embedding-3-small\",\"input\":\"{text}\",\"encoding_format\":\"float\"}}}}\n"
    )
}
