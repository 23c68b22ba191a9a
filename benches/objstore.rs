//! Object-storage benchmark (`bench/objstore`): a 1 GiB JSONL object (LLMB_BENCH_BYTES to
//! change it) on a real S3 server (SeaweedFS) through the steps `run -f` and the controller
//! take: the validation pass (ranged streaming read, every line checked), the upload pass (read
//! from S3, validated again, streamed to the simulator), and writing a 1 GiB result file back to
//! S3 (multipart). Each beside `curl` moving the same bytes between the same servers in the same
//! run. Prints MB/s and this process's peak RSS per step: figures, never assertions. Last, the
//! validator alone on as many bytes of short lines, for the memory of the custom_id set.
//!
//! Target (issue 6): peak RSS under 64 MiB whatever the size (the custom_id set apart).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

#[path = "../tests/it/common/s3.rs"]
mod s3;
mod support;
#[path = "../tests/it/common/wait.rs"]
mod wait;

use s3::{ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedFs};
use support::Simulator;

use llm_batch_operator::api::ObjectStoreRef;
use llm_batch_operator::gateway::{GatewayClient, GatewayConfig};
use llm_batch_operator::io::object_output::upload_file;
use llm_batch_operator::io::object_storage;
use llm_batch_operator::io::{Checked, ObjectInput};
use llm_batch_operator::jsonl::{Limits, Rewrite, Validator};

const KEY: &str = "bench.jsonl";
/// The bench measures; it does not split files.
const UNLIMITED: Limits = Limits {
    max_requests: u64::MAX,
    max_bytes: u64::MAX,
};

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
    support::write_chat_jsonl(&input, bytes)?;
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
    s3::curl(&["-T", &input.display().to_string(), &object_url])?;

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
    let location = object_storage::open(
        &reference(format!("s3://{BUCKET}/{KEY}")),
        &credentials,
        "bench",
        &Default::default(),
    )?;
    let object = ObjectInput {
        location,
        range: None,
        rewrite: Rewrite::default(),
        endpoint: "/v1/chat/completions".into(),
        limits: UNLIMITED,
        ends_at_a_line: false,
    };

    println!("{size} bytes of JSONL; median of {RUNS} runs");
    println!(
        "{:<34} {:>9} {:>9} {:>8} {:>12} {:>12}",
        "step", "curl MB/s", "MB/s", "vs curl", "peak RSS", "RSS before"
    );
    paired(
        "S3 read + validate",
        size,
        || s3::curl(&["-o", "/dev/null", &object_url]),
        || {
            let checked = runtime.block_on(object.check())?;
            anyhow::ensure!(matches!(checked, Checked::Valid(..)), "the generated input is invalid");
            Ok(())
        },
    )?;
    // The upload pass checks its bytes against the validation's digest, as the drivers do.
    let Checked::Valid(_, digest) = runtime.block_on(object.check())? else {
        anyhow::bail!("the generated input is invalid");
    };
    paired(
        "S3 read + validate + upload",
        size,
        // Each run deletes its upload, so the simulator's --data-dir holds one copy at most.
        || {
            let (id, bytes) = curl_s3_to_gateway(&object_url, &sim.base_url)?;
            runtime.block_on(client.delete_file(&id))?;
            anyhow::ensure!(bytes == Some(size), "curl uploaded {bytes:?} bytes, not {size}");
            Ok(())
        },
        || {
            runtime.block_on(async {
                let upload = object.upload(size, Some(digest.clone())).await?;
                let file = client
                    .upload_file("bench.jsonl", "batch", upload.source.clone())
                    .await?;
                client.delete_file(&file.id).await?;
                anyhow::ensure!(upload.report().is_some_and(|r| r.is_valid()), "not validated");
                anyhow::ensure!(file.bytes == Some(size), "uploaded {:?} bytes, not {size}", file.bytes);
                Ok(())
            })
        },
    )?;
    let results = object_storage::open(
        &reference(format!("s3://{BUCKET}/results/")),
        &credentials,
        "bench",
        &Default::default(),
    )?;
    paired(
        "results file -> S3 (multipart)",
        size,
        || {
            s3::curl(&[
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
    short_lines(bytes)
}

/// Runs per measurement; curl and ours alternate and medians are reported.
const RUNS: usize = 3;

/// One row: the pairing's figures, with the resident set this process had before the step
/// (what earlier steps left resident counts in every later peak).
fn paired(
    step: &str,
    bytes: u64,
    curl: impl FnMut() -> anyhow::Result<()>,
    ours: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let before = rss_mib();
    let p = support::paired(RUNS, bytes, curl, ours)?;
    println!(
        "{step:<34} {:>9.0} {:>9.0} {:>7.2}x {:>8.1} MiB {:>8.1} MiB",
        p.curl_mb_s, p.ours_mb_s, p.ratio, p.peak_mib, before
    );
    Ok(())
}

/// This process's resident set now, in MiB (the peak, just reset to it).
fn rss_mib() -> f64 {
    support::reset_peak_rss();
    support::peak_rss_kib() as f64 / 1024.0
}

/// `curl` GET from S3 piped into `curl -F` to the gateway; returns the new file's id and size.
///
/// The file part is `@/dev/stdin`, not `@-`: curl reads `@-` from a pipe wholly into memory
/// before sending and refuses 1 GiB or more ("option -F: is badly used here", exit 2), whereas
/// `/dev/stdin` is opened as a file of unknown size and streamed (chunked), as ours is.
fn curl_s3_to_gateway(object_url: &str, base_url: &str) -> anyhow::Result<(String, Option<u64>)> {
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
            "file=@/dev/stdin;filename=bench.jsonl",
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
    Ok((
        file["id"].as_str().unwrap_or_default().to_string(),
        file["bytes"].as_u64(),
    ))
}

/// Validates `bytes` of short request lines, each with its own custom_id, generated in memory
/// and fed to the validator in 64 KiB chunks (no S3, no disk). The set of custom_ids is the one
/// part of validation that grows with the file, and short lines make it largest for the bytes:
/// this prints our peak RSS beside the byte count.
fn short_lines(bytes: u64) -> anyhow::Result<()> {
    const CHUNK: usize = 64 * 1024;
    let mut validator = Validator::new("/v1/embeddings", UNLIMITED);
    let mut chunk = Vec::with_capacity(CHUNK + 128);
    let (mut fed, mut i) = (0u64, 0u64);
    let before = rss_mib();
    let start = std::time::Instant::now();
    while fed < bytes {
        i += 1;
        writeln!(
            chunk,
            r#"{{"custom_id":"req-{i}","method":"POST","url":"/v1/embeddings","body":{{"model":"m"}}}}"#
        )?;
        if chunk.len() >= CHUNK || fed + chunk.len() as u64 >= bytes {
            validator.feed(&chunk);
            fed += chunk.len() as u64;
            chunk.clear();
        }
    }
    let report = validator.finish();
    let seconds = start.elapsed().as_secs_f64();
    anyhow::ensure!(report.is_valid(), "the generated short lines are invalid");
    println!(
        "validate only, {fed} bytes of short lines ({} custom_ids, {:.0} B each): \
         {:.0} MB/s, peak RSS {:.1} MiB (RSS before {before:.1} MiB)",
        report.summary.requests,
        fed as f64 / report.summary.requests as f64,
        fed as f64 / 1_000_000.0 / seconds,
        support::peak_rss_kib() as f64 / 1024.0
    );
    Ok(())
}
