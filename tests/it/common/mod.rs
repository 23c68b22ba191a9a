//! The harness all integration tests share: the project's binary, a simulator subprocess on
//! a free 127.0.0.1 port, temp workspaces with manifests, and the simulator's request journal.
#![allow(dead_code)]

pub mod cluster;
pub mod operations;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// The binary under test.
/// A file of this repository. Read at run time (cargo sets it for tests): `env!` would compile in
/// the path of whichever clone built the test binary last, which a shared target dir may not rebuild.
pub fn repo_path(relative: &str) -> String {
    format!("{}/{relative}", std::env::var("CARGO_MANIFEST_DIR").unwrap())
}

/// The condition of `type_` in a status written by `run -f` (status.yaml).
pub fn condition<'a>(status: &'a serde_yaml::Value, type_: &str) -> &'a serde_yaml::Value {
    status["conditions"]
        .as_sequence()
        .and_then(|all| all.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition: {status:?}"))
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_llm-batch-operator"))
}

/// A simulator subprocess with a temp directory of its own, stopped on drop with SIGTERM (as
/// a user's Ctrl-C would: it removes its data directory) and killed only if it does not end.
pub struct Simulator {
    child: Child,
    pub base_url: String,
    /// Its `TMPDIR`: whatever it leaves there goes with it.
    pub temp: tempfile::TempDir,
}

impl Simulator {
    /// Starts `llm-batch-operator simulator --addr 127.0.0.1:0 <args>` and waits until it listens.
    pub fn start(args: &[&str]) -> Simulator {
        let temp = tempfile::tempdir().expect("a temp dir for the simulator");
        let mut child = bin()
            .args(["simulator", "--addr", "127.0.0.1:0"])
            .args(args)
            .env("TMPDIR", temp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the simulator");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(20);
        let base_url = loop {
            assert!(Instant::now() < deadline, "the simulator did not say where it listens");
            let line = lines.next().expect("simulator output").expect("utf-8 line");
            if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://127.0.0.1:")) {
                break url.trim_end_matches('/').to_string();
            }
        };
        // Keep draining stdout so the simulator never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Simulator { child, base_url, temp }
    }

    /// Stops the simulator with SIGTERM and waits (at most 10 s) for it to end by itself;
    /// `None` when it had to be killed.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// Every /v1 request the simulator received, in order.
    pub fn journal(&self) -> Vec<JournalEntry> {
        let root = self.base_url.trim_end_matches("/v1");
        let body = http_get(&format!("{root}/__sim/journal"));
        serde_json::from_str(&body).expect("journal JSON")
    }

    /// Successful requests with this method and path.
    pub fn count_ok(&self, method: &str, path: &str) -> usize {
        self.journal()
            .iter()
            .filter(|e| e.method == method && e.path == path && e.status < 300)
            .count()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One request the simulator received.
#[derive(Debug, Deserialize)]
pub struct JournalEntry {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The `x-client-request-id` sent (direct mode sends the custom_id).
    #[serde(default)]
    pub client_request_id: Option<String>,
    /// When the simulator received the request and when its answer was ready (µs since the epoch).
    #[serde(default)]
    pub started_us: u64,
    #[serde(default)]
    pub ended_us: u64,
}

fn http_get(url: &str) -> String {
    reqwest::blocking::get(url)
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.text())
        .expect("GET from the simulator")
}

/// A temp directory with manifests, an output and a state directory.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    pub fn out(&self, name: &str) -> PathBuf {
        self.path().join("out/default").join(name)
    }

    /// `run -f <files> --out out --state-dir state --no-progress`.
    pub fn run_command(&self, files: &[&str]) -> Command {
        let mut cmd = bin();
        cmd.current_dir(self.path()).arg("run").arg("--no-progress");
        for f in files {
            cmd.args(["-f", f]);
        }
        cmd.args(["--out", "out", "--state-dir", "state"]);
        cmd
    }

    pub fn run(&self, files: &[&str]) -> Output {
        self.run_command(files).output().unwrap()
    }

    pub fn status_yaml(&self, name: &str) -> serde_yaml::Value {
        let text = std::fs::read_to_string(self.out(name).join("status.yaml")).expect("status.yaml");
        serde_yaml::from_str(&text).unwrap()
    }

    pub fn lines(&self, name: &str, file: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.out(name).join(file))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// `n` chat request lines as JSONL.
pub fn chat_lines(n: usize) -> String {
    (1..=n)
        .map(|i| {
            format!(
                r#"{{"custom_id":"req-{i}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"Ticket number {i}: my order is late"}}]}}}}"#
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A ConfigMap holding `jsonl` and a Batch reading it, sent to gateway `gw`.
pub fn batch_manifests(name: &str, jsonl: &str, extra_spec: &str) -> String {
    let indented: String = jsonl.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}-input\ndata:\n  batch.jsonl: |\n{indented}---\n\
         apiVersion: llmbatch.io/v1alpha1\nkind: Batch\nmetadata:\n  name: {name}\nspec:\n  gatewayRef:\n    name: gw\n  \
         endpoint: /v1/chat/completions\n  input:\n    configMap:\n      name: {name}-input\n      key: batch.jsonl\n{extra_spec}"
    )
}

/// A BatchGateway `gw` at `url` with key `key` in a Secret, polling fast.
pub fn gateway_manifests(url: &str, key: &str, headers: &[(&str, &str)]) -> String {
    let headers: String = headers.iter().map(|(k, v)| format!("    {k}: \"{v}\"\n")).collect();
    let headers = if headers.is_empty() {
        String::new()
    } else {
        format!("  headers:\n{headers}")
    };
    format!(
        "apiVersion: llmbatch.io/v1alpha1\nkind: BatchGateway\nmetadata:\n  name: gw\nspec:\n  url: {url}\n  auth:\n    secretRef:\n      name: gw-key\n      key: api-key\n  \
         polling:\n    initial: 100ms\n    max: 500ms\n{headers}---\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: gw-key\nstringData:\n  api-key: {key}\n"
    )
}

/// A CSV text as header-keyed records.
pub fn csv_rows(text: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(str::to_string))
                .collect()
        })
        .collect()
}

/// A typed object from JSON (manifests written inline in tests).
pub fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap()
}

/// The document of `kind` in deploy/rbac.yaml (a ClusterRole with every rule but Leases, and
/// the leader-election Role), as a typed object.
pub fn deploy_rbac<T: serde::de::DeserializeOwned>(kind: &str) -> T {
    let text = std::fs::read_to_string(repo_path("deploy/rbac.yaml")).unwrap();
    let doc = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .find(|doc| doc["kind"] == kind)
        .unwrap_or_else(|| panic!("deploy/rbac.yaml has no {kind}"));
    serde_yaml::from_value(doc).unwrap()
}

/// Stdout and stderr together, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub mod aimock;
pub mod apiserver;
#[allow(unused_imports)] // a re-export some test binaries do not use
pub use apiserver::free_port;
pub mod e2e;
pub mod faults;
pub mod hostile;
pub mod kubelet;
pub mod rejected;
pub mod requests;
pub mod s3;
pub mod tools;
pub mod wait;
#[allow(unused_imports)] // a re-export some test binaries do not use
pub use wait::{wait_until, wait_until_blocking};
