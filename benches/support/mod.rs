//! What the benchmarks share: the release simulator as a subprocess (so its memory is not
//! counted as ours), peak resident sets and the chat JSONL they move.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// `llm-batch-operator simulator --addr 127.0.0.1:0 <args>`, killed on drop.
pub struct Simulator {
    child: Child,
    /// `http://127.0.0.1:PORT/v1`
    pub base_url: String,
}

impl Simulator {
    pub fn start(args: &[&str]) -> anyhow::Result<Simulator> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_llm-batch-operator"))
            .args(["simulator", "--addr", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let base_url = lines
            .by_ref()
            .take(50)
            .map_while(Result::ok)
            .find_map(|l| {
                l.split_whitespace()
                    .find(|w| w.starts_with("http://"))
                    .map(str::to_string)
            })
            .ok_or_else(|| anyhow::anyhow!("the simulator did not say where it listens"))?;
        std::thread::spawn(move || for _ in lines {});
        Ok(Simulator { child, base_url })
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resets VmHWM (the peak resident set) of this process.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// VmHWM of this process, in KiB.
pub fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    vm_hwm_kib(&status).unwrap_or(0)
}

/// VmHWM (peak resident set, KiB) from a `/proc/<pid>/status` text.
pub fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Chat request lines of about 4.2 KB (200 MB stays under OpenAI's 50,000 requests per batch)
/// until `bytes` is reached; returns the line count.
pub fn write_chat_jsonl(path: &std::path::Path, bytes: u64) -> anyhow::Result<u64> {
    let filler = "The customer writes that the parcel arrived damaged and asks for a replacement. ".repeat(50);
    write_lines(path, bytes, |i| {
        format!(
            "{{\"custom_id\":\"req-{i}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{{\"model\":\"gpt-4o-mini\",\"max_tokens\":64,\"messages\":[{{\"role\":\"user\",\"content\":\"{filler}\"}}]}}}}\n"
        )
    })
}

/// Lines `line(1)`, `line(2)`, ... until `bytes` is reached; returns the line count.
pub fn write_lines(path: &std::path::Path, bytes: u64, line: impl Fn(u64) -> String) -> anyhow::Result<u64> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let (mut written, mut i) = (0u64, 0u64);
    while written < bytes {
        i += 1;
        let line = line(i);
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
    }
    out.flush()?;
    Ok(i)
}

/// curl and ours moving the same bytes: median throughputs, the median of the per-run ratios
/// (curl time / our time) and our peak resident set.
pub struct Paired {
    pub curl_mb_s: f64,
    pub ours_mb_s: f64,
    pub ratio: f64,
    pub peak_mib: f64,
}

/// Measures `curl` and `ours` alternately `runs` times: loopback figures on a shared machine
/// drift, so alternating and taking medians keeps the comparison fair.
pub fn paired(
    runs: usize,
    bytes: u64,
    mut curl: impl FnMut() -> anyhow::Result<()>,
    mut ours: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Paired> {
    let (mut curl_s, mut ours_s, mut ratios, mut peak_kib) = (vec![], vec![], vec![], 0);
    for _ in 0..runs {
        let c = seconds(&mut curl)?;
        reset_peak_rss();
        let o = seconds(&mut ours)?;
        peak_kib = peak_kib.max(peak_rss_kib());
        curl_s.push(c);
        ours_s.push(o);
        ratios.push(c / o);
    }
    let mb_s = |s: f64| bytes as f64 / 1_000_000.0 / s;
    Ok(Paired {
        curl_mb_s: mb_s(median(curl_s)),
        ours_mb_s: mb_s(median(ours_s)),
        ratio: median(ratios),
        peak_mib: peak_kib as f64 / 1024.0,
    })
}

fn seconds(f: &mut impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let start = std::time::Instant::now();
    f()?;
    Ok(start.elapsed().as_secs_f64())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
