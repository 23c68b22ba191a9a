//! Transfer benchmark (`cargo bench --bench transfer`, or `bench/transfer`): validate + upload
//! of a 20 MB and a 200 MB JSONL file to the simulator, and the download of a 200 MB file,
//! each beside `curl` moving the same bytes to the same simulator in the same run. Prints
//! MB/s and this process's peak RSS per step. Figures, not assertions: nothing here fails on
//! speed. Everything goes to 127.0.0.1 and every loop is bounded.
//!
//! Targets (issue 3): at least 0.7x curl's throughput both ways; peak RSS under 64 MiB
//! whatever the file size.

use std::path::Path;
use std::process::Command;

mod support;

use support::Simulator;

use llm_batch_operator::gateway::{GatewayClient, GatewayConfig, UploadSource};
use llm_batch_operator::io::validated_file_upload;
use llm_batch_operator::jsonl::{self, Limits};

fn main() -> anyhow::Result<()> {
    // In memory where possible: the figures are about the transfer path, not disk writeback.
    let work = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")?
    } else {
        tempfile::tempdir()?
    };
    let data_dir = work.path().join("sim-data");
    std::fs::create_dir_all(&data_dir)?;
    let data_dir = data_dir.display().to_string();
    let sim = Simulator::start(&["--max-file-bytes", "300000000", "--data-dir", &data_dir])?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let client = GatewayClient::new(GatewayConfig::new(sim.base_url.parse()?))?;
    let upload_and_delete = |source: UploadSource| -> anyhow::Result<()> {
        runtime.block_on(async {
            let id = client.upload_file("bench.jsonl", "batch", source).await?.id;
            Ok(client.delete_file(&id).await?)
        })
    };

    println!(
        "{:<30} {:>10} {:>9} {:>9} {:>8} {:>12}",
        "median of 5 runs", "bytes", "curl MB/s", "MB/s", "vs curl", "peak RSS"
    );
    for (label, bytes) in [("20 MB", 20_000_000u64), ("200 MB", 200_000_000u64)] {
        let path = work.path().join(format!("input-{}.jsonl", bytes / 1_000_000));
        support::write_chat_jsonl(&path, bytes)?;
        let size = std::fs::metadata(&path)?.len();
        let curl = || {
            let id = curl_upload(&sim.base_url, &path)?;
            Ok(runtime.block_on(client.delete_file(&id))?)
        };
        let validate = || {
            runtime.block_on(async {
                let file = tokio::fs::File::open(&path).await?;
                let report = jsonl::validate_reader(file, "/v1/chat/completions", Limits::default()).await?;
                anyhow::ensure!(report.is_valid(), "generated input is invalid: {}", report.render(3));
                Ok(())
            })
        };
        let upload = || upload_and_delete(UploadSource::Path(path.clone()));
        let validated_upload = || {
            let upload = validated_file_upload(path.clone(), size, "/v1/chat/completions", Limits::default());
            upload_and_delete(upload.source.clone())?;
            anyhow::ensure!(
                upload.report().is_some_and(|r| r.is_valid()),
                "the upload was not validated"
            );
            Ok(())
        };
        paired(&format!("validate only {label}"), size, curl, validate)?;
        paired(&format!("upload only {label}"), size, curl, upload)?;
        paired(&format!("validate + upload {label}"), size, curl, validated_upload)?;
    }

    let path = work.path().join("input-200.jsonl");
    let file_id = runtime
        .block_on(client.upload_file("download.jsonl", "batch", UploadSource::Path(path.clone())))?
        .id;
    let size = std::fs::metadata(&path)?.len();
    let out = work.path().join("download.jsonl");
    let curl = || curl_download(&sim.base_url, &file_id, &out);
    let ours = || runtime.block_on(async { Ok(client.download_file_to(&file_id, &out).await.map(|_| ())?) });
    paired("download 200 MB", size, curl, ours)?;
    Ok(())
}

/// Runs per measurement. Loopback figures on a shared 2-core machine drift, so curl and ours
/// run alternately and the medians are reported, with the median of the per-run ratios.
const RUNS: usize = 5;

/// Measures `curl` and `ours` alternately and prints one row.
fn paired(
    step: &str,
    bytes: u64,
    curl: impl FnMut() -> anyhow::Result<()>,
    ours: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let p = support::paired(RUNS, bytes, curl, ours)?;
    println!(
        "{step:<30} {bytes:>10} {:>9.0} {:>9.0} {:>7.2}x {:>8.1} MiB",
        p.curl_mb_s, p.ours_mb_s, p.ratio, p.peak_mib
    );
    Ok(())
}

/// Uploads with `curl -F` and returns the new file's id.
fn curl_upload(base_url: &str, path: &Path) -> anyhow::Result<String> {
    let output = Command::new("curl")
        .args(["-sS", "--fail", "-F", "purpose=batch", "-F"])
        .arg(format!("file=@{}", path.display()))
        .arg(format!("{base_url}/files"))
        .output()?;
    anyhow::ensure!(output.status.success(), "curl upload failed: {}", output.status);
    let file: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    Ok(file["id"].as_str().unwrap_or_default().to_string())
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
