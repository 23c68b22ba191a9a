//! Transfer benchmark (`cargo bench --bench transfer`, or `bench/transfer`): validate + upload
//! of a 20 MB and a 200 MB JSONL file to the simulator, and the download of a 200 MB file,
//! each beside `curl` moving the same bytes to the same simulator in the same run. Prints
//! MB/s and this process's peak RSS per step. Figures, not assertions: nothing here fails on
//! speed. Everything goes to 127.0.0.1 and every loop is bounded.
//!
//! Targets (issue 3): at least 0.7x curl's throughput both ways; peak RSS under 64 MiB
//! whatever the file size.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use llm_batch_operator::gateway::{GatewayClient, GatewayConfig, UploadSource};
use llm_batch_operator::io::validated_file_upload;
use llm_batch_operator::jsonl::{self, Limits};

const MB: f64 = 1_000_000.0;

fn main() -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let sim = Simulator::start(&work.path().join("sim-data"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let client = GatewayClient::new(GatewayConfig::new(sim.base_url.parse()?))?;

    println!(
        "{:<34} {:>10} {:>10} {:>12} {:>8}",
        "step", "bytes", "MB/s", "peak RSS", "vs curl"
    );
    let mut largest_file_id = String::new();
    for (label, bytes) in [("20 MB", 20_000_000u64), ("200 MB", 200_000_000u64)] {
        let path = work.path().join(format!("input-{label}.jsonl").replace(' ', ""));
        write_jsonl(&path, bytes)?;
        let size = std::fs::metadata(&path)?.len();

        let curl = time(|| curl_upload(&sim.base_url, &path))?;
        let validate = time(|| {
            runtime.block_on(async {
                let file = tokio::fs::File::open(&path).await?;
                let report = jsonl::validate_reader(file, "/v1/chat/completions", Limits::default()).await?;
                anyhow::ensure!(report.is_valid(), "generated input is invalid: {}", report.render(3));
                Ok(())
            })
        })?;
        let upload = time(|| {
            runtime.block_on(async {
                client
                    .upload_file("bench.jsonl", "batch", UploadSource::Path(path.clone()))
                    .await?;
                Ok(())
            })
        })?;
        reset_peak_rss();
        let ours = time(|| {
            runtime.block_on(async {
                let upload = validated_file_upload(path.clone(), size, "/v1/chat/completions", Limits::default());
                largest_file_id = client
                    .upload_file("bench.jsonl", "batch", upload.source.clone())
                    .await?
                    .id;
                anyhow::ensure!(
                    upload.report().is_some_and(|r| r.is_valid()),
                    "the upload was not validated"
                );
                Ok(())
            })
        })?;
        let rss = peak_rss_kib();
        row(&format!("curl -F upload {label}"), size, curl, None, None);
        row(&format!("  validate only {label}"), size, validate, None, None);
        row(&format!("  upload only {label}"), size, upload, None, None);
        row(
            &format!("validate + upload {label}"),
            size,
            ours,
            Some(rss),
            Some(curl_ratio(curl, ours)),
        );
    }

    let size = 200_000_000u64;
    let out = work.path().join("download.jsonl");
    let curl = time(|| curl_download(&sim.base_url, &largest_file_id, &out))?;
    reset_peak_rss();
    let ours = time(|| {
        runtime
            .block_on(async { Ok(client.download_file_to(&largest_file_id, &out).await?) })
            .map(|_| ())
    })?;
    let rss = peak_rss_kib();
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(size);
    row("curl download 200 MB", size, curl, None, None);
    row("download 200 MB", size, ours, Some(rss), Some(curl_ratio(curl, ours)));
    Ok(())
}

fn row(step: &str, bytes: u64, seconds: f64, rss_kib: Option<u64>, ratio: Option<f64>) {
    let rss = rss_kib
        .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
        .unwrap_or_default();
    let ratio = ratio.map(|r| format!("{r:.2}x")).unwrap_or_default();
    println!(
        "{step:<34} {bytes:>10} {:>10.0} {rss:>12} {ratio:>8}",
        bytes as f64 / MB / seconds
    );
}

/// Our throughput as a multiple of curl's (1.0 = as fast).
fn curl_ratio(curl_seconds: f64, our_seconds: f64) -> f64 {
    curl_seconds / our_seconds
}

/// Runs per measurement; the median is reported (loopback figures on a shared machine are noisy).
const RUNS: usize = 3;

/// The median wall time of `RUNS` runs of `f`, in seconds.
fn time(mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let mut seconds = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        f()?;
        seconds.push(start.elapsed().as_secs_f64());
    }
    seconds.sort_by(f64::total_cmp);
    Ok(seconds[RUNS / 2])
}

/// Chat request lines of about 700 bytes until `bytes` is reached.
fn write_jsonl(path: &Path, bytes: u64) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    // ~4.2 KB lines: 200 MB stays under OpenAI's 50,000 requests per batch.
    let filler = "The customer writes that the parcel arrived damaged and asks for a replacement. ".repeat(50);
    let (mut written, mut i) = (0u64, 0u64);
    while written < bytes {
        i += 1;
        let line = format!(
            "{{\"custom_id\":\"req-{i}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{{\"model\":\"gpt-4o-mini\",\"max_tokens\":64,\"messages\":[{{\"role\":\"user\",\"content\":\"{filler}\"}}]}}}}\n"
        );
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
    }
    out.flush()?;
    Ok(())
}

fn curl_upload(base_url: &str, path: &Path) -> anyhow::Result<()> {
    let status = Command::new("curl")
        .args(["-sS", "--fail", "-o", "/dev/null", "-F", "purpose=batch", "-F"])
        .arg(format!("file=@{}", path.display()))
        .arg(format!("{base_url}/files"))
        .status()?;
    anyhow::ensure!(status.success(), "curl upload failed: {status}");
    Ok(())
}

fn curl_download(base_url: &str, file_id: &str, out: &Path) -> anyhow::Result<()> {
    let status = Command::new("curl")
        .args(["-sS", "--fail", "-o"])
        .arg(out)
        .arg(format!("{base_url}/files/{file_id}/content"))
        .status()?;
    anyhow::ensure!(status.success(), "curl download failed: {status}");
    Ok(())
}

/// Resets VmHWM (the peak resident set) of this process.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The release simulator as a subprocess (so its memory is not counted as ours).
struct Simulator {
    child: Child,
    base_url: String,
}

impl Simulator {
    fn start(data_dir: &PathBuf) -> anyhow::Result<Simulator> {
        std::fs::create_dir_all(data_dir)?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_llm-batch-operator"))
            .args([
                "simulator",
                "--addr",
                "127.0.0.1:0",
                "--max-file-bytes",
                "300000000",
                "--data-dir",
            ])
            .arg(data_dir)
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
