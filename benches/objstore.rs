//! Object-storage benchmark (`bench/objstore`): a 1 GiB JSONL object (LLMB_BENCH_BYTES to
//! change it) on a real S3 server (SeaweedFS) through the steps `run -f` and the controller
//! take: the validation pass (ranged streaming read, every line checked), the upload pass (read
//! from S3, validated again, streamed to the simulator), and writing a 1 GiB result file back to
//! S3 (multipart). Each beside `curl` moving the same bytes between the same servers in the same
//! run. Prints MB/s and this process's peak RSS per step: figures, never assertions.
//!
//! Target (issue 6): peak RSS under 64 MiB whatever the size.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

#[path = "../tests/common/s3.rs"]
mod s3;
mod support;

use s3::{ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedFs};
use support::Simulator;

use llm_batch_operator::api::ObjectStoreRef;
use llm_batch_operator::gateway::{GatewayClient, GatewayConfig};
use llm_batch_operator::io::object_output::upload_file;
use llm_batch_operator::io::storage;
use llm_batch_operator::io::{Checked, ObjectInput};
use llm_batch_operator::jsonl::{Limits, Rewrite};

const KEY: &str = "bench.jsonl";

fn main() -> anyhow::Result<()> {
    let bytes: u64 = std::env::var("LLMB_BENCH_BYTES")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(1 << 30);
    let work = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")?
    } else {
        tempfile::tempdir()?
    };
    let input = work.path().join("input.jsonl");
    write_jsonl(&input, bytes)?;
    let size = std::fs::metadata(&input)?.len();

    let s3 = SeaweedFs::start();
    let sim_data = work.path().join("sim-data");
    std::fs::create_dir_all(&sim_data)?;
    let sim = Simulator::start(&[
        "--max-file-bytes",
        &(size * 2).to_string(),
        "--data-dir",
        &sim_data.display().to_string(),
    ])?;
    let object_url = format!("{}/{BUCKET}/{KEY}", s3.endpoint);
    curl_s3(&["-T", &input.display().to_string(), &object_url])?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let client = GatewayClient::new(GatewayConfig::new(sim.base_url.parse()?))?;
    let credentials = [
        ("AWS_ACCESS_KEY_ID".to_string(), ACCESS_KEY.to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), SECRET_KEY.to_string()),
    ]
    .into();
    let reference = |url: String| ObjectStoreRef {
        url,
        endpoint: Some(s3.endpoint.clone()),
        ..Default::default()
    };
    let location = storage::open(&reference(format!("s3://{BUCKET}/{KEY}")), &credentials, "bench")?;
    let object = ObjectInput {
        location,
        range: None,
        rewrite: Rewrite::default(),
        endpoint: "/v1/chat/completions".into(),
        limits: Limits {
            max_requests: u64::MAX,
            max_bytes: u64::MAX,
        },
    };

    println!("{size} bytes of JSONL; median of {RUNS} runs");
    println!(
        "{:<34} {:>9} {:>9} {:>8} {:>12}",
        "step", "curl MB/s", "MB/s", "vs curl", "peak RSS"
    );
    let fetched = work.path().join("fetched.jsonl");
    paired(
        "S3 read + validate",
        size,
        || curl_s3(&["-o", &fetched.display().to_string(), &object_url]),
        || {
            let checked = runtime.block_on(object.check())?;
            anyhow::ensure!(matches!(checked, Checked::Valid(_)), "the generated input is invalid");
            Ok(())
        },
    )?;
    let _ = std::fs::remove_file(&fetched);
    paired(
        "S3 read + validate + upload",
        size,
        || {
            let id = curl_s3_to_gateway(&object_url, &sim.base_url)?;
            Ok(runtime.block_on(client.delete_file(&id))?)
        },
        || {
            runtime.block_on(async {
                let upload = object.upload(size).await?;
                let file = client
                    .upload_file("bench.jsonl", "batch", upload.source.clone())
                    .await?;
                anyhow::ensure!(upload.report().is_some_and(|r| r.is_valid()), "not validated");
                Ok(client.delete_file(&file.id).await?)
            })
        },
    )?;
    let results = storage::open(&reference(format!("s3://{BUCKET}/results/")), &credentials, "bench")?;
    paired(
        "results file -> S3 (multipart)",
        size,
        || {
            curl_s3(&[
                "-T",
                &input.display().to_string(),
                &format!("{}/{BUCKET}/curl-output.jsonl", s3.endpoint),
            ])
        },
        || {
            Ok(runtime
                .block_on(upload_file(&input, &results.child("output.jsonl")))
                .map(|_| ())?)
        },
    )?;
    Ok(())
}

/// Runs per measurement; curl and ours alternate and medians are reported.
const RUNS: usize = 3;

fn paired(
    step: &str,
    bytes: u64,
    curl: impl FnMut() -> anyhow::Result<()>,
    ours: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let p = support::paired(RUNS, bytes, curl, ours)?;
    println!(
        "{step:<34} {:>9.0} {:>9.0} {:>7.2}x {:>8.1} MiB",
        p.curl_mb_s, p.ours_mb_s, p.ratio, p.peak_mib
    );
    Ok(())
}

/// `curl` with SigV4 against the S3 server.
fn curl_s3(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("curl")
        .args(["-sS", "--fail", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
        .arg(format!("{ACCESS_KEY}:{SECRET_KEY}"))
        .args(args)
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "curl {args:?} failed: {status}");
    Ok(())
}

/// `curl` GET from S3 piped into `curl -F` to the gateway; returns the new file's id.
fn curl_s3_to_gateway(object_url: &str, base_url: &str) -> anyhow::Result<String> {
    let mut get = Command::new("curl")
        .args(["-sS", "--fail", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
        .arg(format!("{ACCESS_KEY}:{SECRET_KEY}"))
        .arg(object_url)
        .stdout(Stdio::piped())
        .spawn()?;
    let output = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "-F",
            "purpose=batch",
            "-F",
            "file=@-;filename=bench.jsonl",
        ])
        .arg(format!("{base_url}/files"))
        .stdin(get.stdout.take().expect("piped"))
        .output()?;
    let got = get.wait()?;
    anyhow::ensure!(
        got.success() && output.status.success(),
        "curl S3 -> gateway failed (GET {got}, POST {}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let file: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    Ok(file["id"].as_str().unwrap_or_default().to_string())
}

/// Chat request lines of about 4.2 KB until `bytes` is reached.
fn write_jsonl(path: &Path, bytes: u64) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
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
