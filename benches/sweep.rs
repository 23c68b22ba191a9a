//! BatchSweep benchmark (`bench/sweep`, issue 7): a JSONL object (1 GiB by default,
//! LLMB_BENCH_BYTES to change it) on a real S3 server (SeaweedFS), cut by a BatchSweep into
//! about 200 chunks (LLMB_BENCH_CHUNKS), each run by one child per model (LLMB_BENCH_MODELS,
//! default 1), against the simulator (a subprocess, so its memory is not counted):
//!
//! 1. by the release `llm-batch-operator run -f` (a subprocess): wall time and its peak RSS;
//! 2. by the controller, in this process, against the test kube-apiserver
//!    (tests/it/common/apiserver.rs): wall time and this process's peak RSS.
//!
//! The input is read through a counting proxy on 127.0.0.1 between the operator and SeaweedFS,
//! which parses the HTTP/1.1 exchanges and sums the body bytes of every GET response: the bytes
//! read from storage, exactly (headers apart, counted separately). Target: about 2x the source
//! (one scan to plan the chunks, one read per chunk; with models, one per chunk and model). Both
//! drivers run the same sweep, results to S3 included (each under its own prefix, directly, so
//! the proxy sees only input reads).
//!
//! Figures, never assertions; every wait is bounded; everything binds 127.0.0.1.

#[path = "../tests/it/common/apiserver.rs"]
#[allow(dead_code)]
mod apiserver;
#[path = "../tests/it/common/s3.rs"]
mod s3;
#[allow(dead_code)] // the curl pairing: this bench has no curl baseline
mod support;
#[path = "../tests/it/common/wait.rs"]
mod wait;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use s3::{ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedFs};
use serde_json::json;
use support::{Simulator, peak_rss_kib, reset_peak_rss};

use llm_batch_operator::api::{BatchGateway, BatchSweep};
use llm_batch_operator::controller::{self, Options};

const KEY: &str = "bench.jsonl";
const GATEWAY_KEY: &str = "sk-bench-sweep";
/// Upper bound on each sweep's run (and on every other wait).
const DEADLINE: Duration = Duration::from_secs(3600);

fn main() -> anyhow::Result<()> {
    let env = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let bytes = env("LLMB_BENCH_BYTES", 1 << 30);
    let chunks = env("LLMB_BENCH_CHUNKS", 200).max(1);
    let parallelism = env("LLMB_BENCH_PARALLELISM", 8).max(1);
    let models = env("LLMB_BENCH_MODELS", 1).clamp(1, 50);
    // On disk (not /dev/shm): the source, SeaweedFS's copy and the simulator's files add up to
    // a few times LLMB_BENCH_BYTES.
    let work = tempfile::tempdir()?;

    let s3 = SeaweedFs::start();
    let (size, lines) = {
        let input = work.path().join("input.jsonl");
        let lines = support::write_chat_jsonl(&input, bytes)?;
        let size = std::fs::metadata(&input)?.len();
        s3::curl(&[
            "-T",
            &input.display().to_string(),
            &format!("{}/{BUCKET}/{KEY}", s3.endpoint),
        ])?;
        std::fs::remove_file(&input)?;
        (size, lines)
    };
    let proxy = CountingProxy::start(s3.endpoint.trim_start_matches("http://"))?;
    // Leaves room for the custom_id prefix `cNNNN/` that each child adds to every line.
    let max_bytes = size.div_ceil(chunks) + lines.div_ceil(chunks) * 8 + 8192;
    println!(
        "{size} bytes of JSONL ({lines} chat request lines) in SeaweedFS; chunk.maxBytes {max_bytes} \
         (for about {chunks} chunks), {models} model(s), parallelism {parallelism}"
    );
    let sweep = SweepSpec {
        input_endpoint: proxy.endpoint.clone(),
        output_endpoint: s3.endpoint.clone(),
        max_bytes,
        parallelism,
        models: (1..=models).map(|i| format!("bench-model-{i}")).collect(),
    };

    let mut rows = Vec::new();
    {
        let sim_data = tempfile::tempdir_in(work.path())?;
        let sim = simulator(sim_data.path())?;
        proxy.counts.reset();
        let row = run_f(work.path(), &sim.base_url, &sweep)?;
        let upstream = upstream_batches(&sim.base_url)?;
        rows.push(Row { upstream, ..row }.with(&proxy.counts, size));
    }
    {
        let sim_data = tempfile::tempdir_in(work.path())?;
        let sim = simulator(sim_data.path())?;
        proxy.counts.reset();
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let row = runtime.block_on(in_controller(&sim.base_url, &sweep))?;
        let upstream = upstream_batches(&sim.base_url)?;
        rows.push(Row { upstream, ..row }.with(&proxy.counts, size));
    }

    println!();
    println!(
        "{:<12} {:>9} {:>10} {:>9} {:>13} {:>8} {:>6} {:>6} {:>10}",
        "driver", "children", "succeeded", "wall s", "read bytes", "x src", "GETs", "HEADs", "peak RSS"
    );
    for r in &rows {
        println!(
            "{:<12} {:>9} {:>10} {:>9.1} {:>13} {:>7.2}x {:>6} {:>6} {:>6.1} MiB",
            r.driver,
            r.children,
            r.succeeded,
            r.wall.as_secs_f64(),
            r.read_bytes,
            r.read_bytes as f64 / size as f64,
            r.gets,
            r.heads,
            r.peak_kib as f64 / 1024.0
        );
        println!("  read: {}; {} batches created upstream", r.breakdown, r.upstream);
        println!("  {}", r.note);
    }
    proxy.stop();
    Ok(())
}

/// What both drivers run: the same sweep, its input through the proxy.
struct SweepSpec {
    input_endpoint: String,
    output_endpoint: String,
    max_bytes: u64,
    parallelism: u64,
    /// `spec.matrix.models` (one child per chunk and model); none when there is one.
    models: Vec<String>,
}

impl SweepSpec {
    fn matrix(&self) -> Option<serde_json::Value> {
        (self.models.len() > 1).then(|| json!({"models": self.models}))
    }
}

struct Row {
    driver: &'static str,
    children: u64,
    succeeded: u64,
    wall: Duration,
    peak_kib: u64,
    note: String,
    read_bytes: u64,
    gets: u64,
    heads: u64,
    breakdown: String,
    /// Batches created on the simulator (POST /v1/batches answered 2xx).
    upstream: usize,
}

impl Row {
    /// Adds what the proxy counted, and a line about it to the note.
    fn with(mut self, counts: &Counts, size: u64) -> Row {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.read_bytes = get(&counts.get_body);
        self.gets = get(&counts.gets);
        self.heads = get(&counts.heads);
        let (reads, scan, needed, over) = counts.breakdown(size);
        self.breakdown = format!(
            "{:.2}x scan + {:.2}x chunk reads ({reads} GETs per chunk) + {:.2}x past the chunks' ends",
            scan as f64 / size as f64,
            needed as f64 / size as f64,
            over as f64 / size as f64
        );
        self.note = format!(
            "{}; proxy: {} responses, {} bytes from SeaweedFS in all (headers included), {} other requests, \
             {} responses cut short by the client, {} exchanges it could not parse; source {size} bytes",
            self.note,
            get(&counts.responses),
            get(&counts.raw_down),
            get(&counts.other),
            get(&counts.cut_short),
            get(&counts.unparsed),
        );
        self
    }
}

fn simulator(data: &Path) -> anyhow::Result<Simulator> {
    Simulator::start(&[
        "--api-key",
        GATEWAY_KEY,
        "--lines-per-sec",
        "10000000",
        "--data-dir",
        &data.display().to_string(),
    ])
}

/// The release `run -f` on the sweep: wall time, and its peak RSS (VmHWM, sampled every 20 ms
/// from /proc while it runs: the high-water mark only grows, so only growth in its last 20 ms
/// could be missed).
fn run_f(work: &Path, sim_url: &str, sweep: &SweepSpec) -> anyhow::Result<Row> {
    let dir = tempfile::tempdir_in(work)?;
    let SweepSpec {
        input_endpoint,
        output_endpoint,
        max_bytes,
        parallelism,
        ..
    } = sweep;
    let matrix = sweep.matrix().map_or_else(String::new, |m| format!("  matrix: {m}\n"));
    let manifests = format!(
        "apiVersion: llmbatch.io/v1alpha1\nkind: BatchSweep\nmetadata:\n  name: bench\nspec:\n  input:\n    objectStore:\n      \
         url: s3://{BUCKET}/{KEY}\n      endpoint: {input_endpoint}\n      secretRef:\n        name: s3\n  chunk:\n    \
         maxBytes: \"{max_bytes}\"\n  parallelism: {parallelism}\n{matrix}  template:\n    gatewayRef:\n      name: gw\n    \
         endpoint: /v1/chat/completions\n    output:\n      objectStore:\n        url: s3://{BUCKET}/results/run-f/\n        \
         endpoint: {output_endpoint}\n        secretRef:\n          name: s3\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s3\nstringData:\n  \
         AWS_ACCESS_KEY_ID: {ACCESS_KEY}\n  AWS_SECRET_ACCESS_KEY: {SECRET_KEY}\n---\n\
         apiVersion: llmbatch.io/v1alpha1\nkind: BatchGateway\nmetadata:\n  name: gw\nspec:\n  url: {sim_url}\n  auth:\n    \
         secretRef:\n      name: gw-key\n      key: api-key\n  polling:\n    initial: 100ms\n    max: 500ms\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: gw-key\nstringData:\n  api-key: {GATEWAY_KEY}\n"
    );
    std::fs::write(dir.path().join("sweep.yaml"), manifests)?;
    let log = std::fs::File::create(dir.path().join("run.log"))?;
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_llm-batch-operator"))
        .current_dir(dir.path())
        .args([
            "run",
            "--no-progress",
            "-f",
            "sweep.yaml",
            "--out",
            "out",
            "--state-dir",
            "state",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(&status_path)
            && let Some(kib) = support::vm_hwm_kib(&status)
        {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = started.elapsed();
    let summary: serde_json::Value = std::fs::read(dir.path().join("out/default/bench/summary.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let sweep_status: serde_yaml::Value = std::fs::read_to_string(dir.path().join("out/default/bench/status.yaml"))
        .ok()
        .and_then(|t| serde_yaml::from_str(&t).ok())
        .unwrap_or_default();
    let log = std::fs::read_to_string(dir.path().join("run.log")).unwrap_or_default();
    if !status.success() {
        println!("run -f exited {status}; its last lines:");
        for line in log.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev() {
            println!("  {line}");
        }
    }
    let counts = &sweep_status["batches"];
    let num = |v: &serde_yaml::Value| v.as_u64().unwrap_or(0);
    Ok(Row {
        driver: "run -f",
        children: num(&counts["total"]),
        succeeded: num(&counts["succeeded"]),
        wall,
        peak_kib,
        note: format!(
            "run -f exited {status}, phase {:?}, requests completed {} of {}",
            sweep_status["phase"].as_str().unwrap_or("?"),
            summary["requestCounts"]["completed"],
            summary["requestCounts"]["total"]
        ),
        read_bytes: 0,
        gets: 0,
        heads: 0,
        breakdown: String::new(),
        upstream: 0,
    })
}

/// The controller in this process against the test kube-apiserver: wall time from its start to
/// the sweep's final phase, and this process's peak RSS meanwhile (the proxy's threads and the
/// status polling are in it too; the API server, etcd, SeaweedFS and the simulator are not).
async fn in_controller(sim_url: &str, sweep: &SweepSpec) -> anyhow::Result<Row> {
    let client = apiserver::admin_client().await;
    println!("API server ready in {:?}", apiserver::startup_time());
    let ns = apiserver::fresh_namespace(&client, "bench-sweep").await;
    let pp = PostParams::default();
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    secrets
        .create(
            &pp,
            &object(json!({"metadata": {"name": "gw-key"}, "stringData": {"api-key": GATEWAY_KEY}})),
        )
        .await?;
    secrets
        .create(
            &pp,
            &object(json!({"metadata": {"name": "s3"},
            "stringData": {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}})),
        )
        .await?;
    let gateway: BatchGateway = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchGateway",
        "metadata": {"name": "gw"}, "spec": {"url": sim_url, "auth": {"secretRef": {"name": "gw-key", "key": "api-key"}},
        "polling": {"initial": "100ms", "max": "500ms"}}}));
    Api::<BatchGateway>::namespaced(client.clone(), &ns)
        .create(&pp, &gateway)
        .await?;
    let sweeps = Api::<BatchSweep>::namespaced(client.clone(), &ns);
    let batch_sweep: BatchSweep = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchSweep",
        "metadata": {"name": "bench"}, "spec": {
            "input": {"objectStore": {"url": format!("s3://{BUCKET}/{KEY}"), "endpoint": sweep.input_endpoint,
                                      "secretRef": {"name": "s3"}}},
            "chunk": {"maxBytes": sweep.max_bytes.to_string()},
            "parallelism": sweep.parallelism,
            "matrix": sweep.matrix(),
            "template": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                         "output": {"objectStore": {"url": format!("s3://{BUCKET}/results/controller/"),
                                                    "endpoint": sweep.output_endpoint, "secretRef": {"name": "s3"}}}}}}));
    sweeps.create(&pp, &batch_sweep).await?;

    reset_peak_rss();
    let started = Instant::now();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let context = Arc::new(
        controller::Context::new(client.clone()).with_addresses(llm_batch_operator::net::AddressPolicy::local()),
    );
    let running = tokio::spawn(controller::run_with(
        context,
        Options::namespace(ns.clone()),
        async move {
            let _ = stopped.await;
        },
    ));
    let status = loop {
        let status = sweeps.get_status("bench").await?.status.unwrap_or_default();
        if status.phase.is_some_and(|p| p.is_terminal()) || started.elapsed() > DEADLINE {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let wall = started.elapsed();
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), running).await;
    let peak_kib = peak_rss_kib();
    let status = serde_json::to_value(&status)?;
    Ok(Row {
        driver: "controller",
        children: status["batches"]["total"].as_u64().unwrap_or(0),
        succeeded: status["batches"]["succeeded"].as_u64().unwrap_or(0),
        wall,
        peak_kib,
        note: format!(
            "sweep phase {}, requests completed {} of {}",
            status["phase"], status["requestCounts"]["completed"], status["requestCounts"]["total"]
        ),
        read_bytes: 0,
        gets: 0,
        heads: 0,
        breakdown: String::new(),
        upstream: 0,
    })
}

/// Batches the simulator created, from its own journal.
fn upstream_batches(sim_url: &str) -> anyhow::Result<usize> {
    let root = sim_url.trim_end_matches('/').trim_end_matches("/v1");
    let journal: Vec<serde_json::Value> = reqwest::blocking::get(format!("{root}/__sim/journal"))?
        .error_for_status()?
        .json()?;
    Ok(journal
        .iter()
        .filter(|e| {
            e["method"] == "POST" && e["path"] == "/v1/batches" && e["status"].as_u64().is_some_and(|s| s < 300)
        })
        .count())
}

fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}

/// What the proxy saw since the last reset.
#[derive(Default)]
struct Counts {
    /// Body bytes of GET responses: the bytes read from storage.
    get_body: AtomicU64,
    gets: AtomicU64,
    heads: AtomicU64,
    /// Requests other than GET and HEAD.
    other: AtomicU64,
    responses: AtomicU64,
    /// Every byte from SeaweedFS to the operator, headers included.
    raw_down: AtomicU64,
    /// Responses whose body the client stopped reading before its end (the bytes it did
    /// receive are counted).
    cut_short: AtomicU64,
    /// Exchanges the parser gave up on (their bytes were still forwarded and counted raw).
    unparsed: AtomicU64,
    /// Every GET: the start of its range (0 without one) and its body bytes.
    get_log: std::sync::Mutex<Vec<(u64, u64)>>,
}

impl Counts {
    fn reset(&self) {
        for a in [
            &self.get_body,
            &self.gets,
            &self.heads,
            &self.other,
            &self.responses,
            &self.raw_down,
            &self.unparsed,
            &self.cut_short,
        ] {
            a.store(0, Ordering::Relaxed);
        }
        self.get_log.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The GET bytes split into what the reads needed and what came past it: a GET from offset
    /// `s` needed at most the bytes up to the next offset any GET started at (the chunk
    /// boundaries, the scan starting at 0) or the end of the object. Returns the reads per
    /// offset (most common count), the bytes of whole-object reads from 0 (the scan), and the
    /// needed and the over-read bytes of the others.
    fn breakdown(&self, size: u64) -> (usize, u64, u64, u64) {
        let log = self.get_log.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut starts: Vec<u64> = log.iter().map(|(s, _)| *s).collect();
        starts.sort();
        let mut per_start = std::collections::BTreeMap::<u64, usize>::new();
        for s in &starts {
            *per_start.entry(*s).or_default() += 1;
        }
        starts.dedup();
        let mut histogram = std::collections::BTreeMap::<usize, usize>::new();
        for n in per_start.values() {
            *histogram.entry(*n).or_default() += 1;
        }
        let typical = histogram.iter().max_by_key(|(_, k)| **k).map_or(0, |(n, _)| *n);
        let (mut scan, mut needed, mut over) = (0, 0, 0);
        for (start, body) in &log {
            if *start == 0 && *body == size {
                scan += body;
                continue;
            }
            let end = starts.iter().find(|s| **s > *start).copied().unwrap_or(size);
            let need = (*body).min(end - start);
            needed += need;
            over += body - need;
        }
        (typical, scan, needed, over)
    }
}

/// A TCP proxy on 127.0.0.1 in front of SeaweedFS's S3 port that follows each connection's
/// HTTP/1.1 requests and responses (no pipelining: the client waits for each response) and
/// counts them. Every socket read has a timeout, so no connection thread waits forever.
struct CountingProxy {
    /// `http://127.0.0.1:PORT`
    endpoint: String,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
}

const IO_TIMEOUT: Duration = Duration::from_secs(600);

impl CountingProxy {
    fn start(upstream: &str) -> anyhow::Result<CountingProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (upstream, c, s) = (upstream.to_string(), counts.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (upstream, c) = (upstream.clone(), c.clone());
                        std::thread::spawn(move || {
                            let _ = connection(client, &upstream, c);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(CountingProxy { endpoint, counts, stop })
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn connection(client: TcpStream, upstream: &str, counts: Arc<Counts>) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    let server = TcpStream::connect(upstream)?;
    for s in [&client, &server] {
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        s.set_nodelay(true)?;
    }
    let (methods_tx, methods_rx) = std::sync::mpsc::channel::<(String, Option<String>)>();
    let up = {
        let (client, mut server) = (client.try_clone()?, server.try_clone()?);
        let counts = counts.clone();
        std::thread::spawn(move || {
            let mut from = BufReader::with_capacity(64 * 1024, client);
            while let Ok(Some(head)) = read_head(&mut from) {
                if server.write_all(&head.raw).is_err() {
                    break;
                }
                let method = head.first.split(' ').next().unwrap_or_default().to_string();
                match method.as_str() {
                    "GET" => &counts.gets,
                    "HEAD" => &counts.heads,
                    _ => &counts.other,
                }
                .fetch_add(1, Ordering::Relaxed);
                let range = head.headers.iter().find(|(k, _)| k == "range").map(|(_, v)| v.clone());
                let _ = methods_tx.send((method, range));
                let copied = match body_kind(&head) {
                    Body::Length(n) => copy_exact(&mut from, &mut server, n).map(|m| m == n),
                    Body::Chunked => copy_chunked(&mut from, &mut server).map(|_| true),
                    Body::None => Ok(true),
                    Body::UntilClose => std::io::copy(&mut from, &mut server).map(|_| false),
                };
                if !copied.unwrap_or(false) {
                    break;
                }
            }
            let _ = server.shutdown(Shutdown::Write);
        })
    };
    let mut from = BufReader::with_capacity(64 * 1024, server);
    let mut to = client;
    while let Ok(Some(head)) = read_head(&mut from) {
        counts.raw_down.fetch_add(head.raw.len() as u64, Ordering::Relaxed);
        if to.write_all(&head.raw).is_err() {
            break;
        }
        let status: u16 = head.first.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        if (100..200).contains(&status) {
            continue; // an interim response: the final one follows for the same request
        }
        counts.responses.fetch_add(1, Ordering::Relaxed);
        let Ok((method, range)) = methods_rx.recv_timeout(IO_TIMEOUT) else {
            counts.unparsed.fetch_add(1, Ordering::Relaxed);
            break;
        };
        let kind = if method == "HEAD" || status == 204 || status == 304 {
            Body::None
        } else {
            body_kind(&head)
        };
        let start = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split('-').next())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        let trace = |body: u64, whole: bool| {
            if method == "GET" {
                counts
                    .get_log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((start, body));
            }
            if std::env::var_os("LLMB_BENCH_TRACE").is_some() {
                eprintln!(
                    "{method} {range:?} -> {status}, {body} body bytes{}",
                    if whole { "" } else { " (cut short)" }
                );
            }
        };
        let is_get = method == "GET";
        let counters: &[&AtomicU64] = if is_get {
            &[&counts.raw_down, &counts.get_body]
        } else {
            &[&counts.raw_down]
        };
        match kind {
            Body::None => trace(0, true),
            Body::Length(n) => {
                let (body, whole) = copy_counted(&mut from, &mut to, n, counters);
                trace(body, whole);
                if !whole {
                    counts.cut_short.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
            Body::Chunked => {
                let Ok(body) = copy_chunked(&mut from, &mut to) else {
                    counts.unparsed.fetch_add(1, Ordering::Relaxed);
                    break;
                };
                trace(body, true);
                for c in counters {
                    c.fetch_add(body, Ordering::Relaxed);
                }
            }
            Body::UntilClose => {
                let (body, _) = copy_counted(&mut from, &mut to, u64::MAX, counters);
                trace(body, true);
                counts.unparsed.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
    // Anything left (a response the parser gave up on) is still forwarded and counted raw.
    if let Ok(rest) = std::io::copy(&mut from, &mut to) {
        counts.raw_down.fetch_add(rest, Ordering::Relaxed);
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = up.join();
    Ok(())
}

struct Head {
    /// The request or status line.
    first: String,
    /// Header names lowercased, with their values.
    headers: Vec<(String, String)>,
    /// The bytes as received.
    raw: Vec<u8>,
}

enum Body {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// One message head (start line and headers, up to the blank line); `None` at a clean end of
/// the stream. At most 256 lines.
fn read_head(from: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut raw = Vec::new();
    let mut lines = Vec::new();
    for _ in 0..256 {
        let start = raw.len();
        if from.read_until(b'\n', &mut raw)? == 0 {
            return Ok(None);
        }
        let line = String::from_utf8_lossy(&raw[start..]).trim_end().to_string();
        if line.is_empty() {
            if lines.is_empty() {
                continue; // stray CRLF between messages
            }
            let first = lines.remove(0);
            let headers = lines
                .into_iter()
                .filter_map(|l: String| {
                    let (k, v) = l.split_once(':')?;
                    Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
                })
                .collect();
            return Ok(Some(Head { first, headers, raw }));
        }
        lines.push(line);
    }
    Err(std::io::Error::other("a message head of more than 256 lines"))
}

fn body_kind(head: &Head) -> Body {
    let header = |name: &str| head.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        return Body::Chunked;
    }
    match header("content-length").map(|v| v.parse::<u64>()) {
        Some(Ok(0)) => Body::None,
        Some(Ok(n)) => Body::Length(n),
        Some(Err(_)) => Body::UntilClose,
        // A request without a length has no body; a response without one runs to the close.
        None if !head.first.starts_with("HTTP/") => Body::None,
        None => Body::UntilClose,
    }
}

fn copy_exact(from: &mut impl Read, to: &mut impl Write, n: u64) -> std::io::Result<u64> {
    std::io::copy(&mut from.take(n), to)
}

/// Like [`copy_exact`], adding every byte forwarded to `counters` as it goes, so a body the
/// client stops reading halfway still counts what it received.
fn copy_counted(from: &mut impl Read, to: &mut impl Write, n: u64, counters: &[&AtomicU64]) -> (u64, bool) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0;
    while done < n {
        let want = buf.len().min((n - done) as usize);
        let got = match from.read(&mut buf[..want]) {
            Ok(0) | Err(_) => return (done, false),
            Ok(got) => got,
        };
        if to.write_all(&buf[..got]).is_err() {
            return (done, false);
        }
        for c in counters {
            c.fetch_add(got as u64, Ordering::Relaxed);
        }
        done += got as u64;
    }
    (done, true)
}

/// Forwards a chunked body (sizes, data, trailers); returns the data bytes.
fn copy_chunked(from: &mut impl BufRead, to: &mut impl Write) -> std::io::Result<u64> {
    let mut data = 0;
    // Each chunk is at least one byte, so a body has at most this many chunks we would follow.
    for _ in 0..u32::MAX {
        let mut line = Vec::new();
        if from.read_until(b'\n', &mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        to.write_all(&line)?;
        let text = String::from_utf8_lossy(&line);
        let size = u64::from_str_radix(text.trim().split(';').next().unwrap_or("").trim(), 16)
            .map_err(std::io::Error::other)?;
        if size == 0 {
            // Trailers, then the blank line.
            for _ in 0..256 {
                let mut t = Vec::new();
                if from.read_until(b'\n', &mut t)? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                to.write_all(&t)?;
                if t == b"\r\n" || t == b"\n" {
                    return Ok(data);
                }
            }
            return Err(std::io::Error::other("too many trailers"));
        }
        let copied = copy_exact(from, to, size + 2)?; // the data and its CRLF
        if copied < size + 2 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        data += size;
    }
    Err(std::io::Error::other("too many chunks"))
}
