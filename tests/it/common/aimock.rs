//! aimock (npm `@copilotkit/aimock`), an OpenAI-compatible batch peer nobody here wrote,
//! started on a free 127.0.0.1 port. `scripts/test-deps` installs it; `LLMB_AIMOCK_BIN`
//! overrides the path. A missing binary fails the test (it never skips).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::apiserver::free_port;
use super::wait::wait_until_blocking;

const DEFAULT_BIN: &str = "node/node_modules/.bin/llmock";
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// A running aimock, killed on drop.
pub struct Aimock {
    child: Child,
    _fixtures: tempfile::TempDir,
    /// `http://127.0.0.1:PORT/v1`
    pub base_url: String,
}

impl Aimock {
    pub fn start() -> Aimock {
        let bin = std::env::var_os("LLMB_AIMOCK_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
                home.join(".cache/llm-batch-operator").join(DEFAULT_BIN)
            });
        assert!(
            bin.exists(),
            "aimock binary not found at {}: run scripts/test-deps (or set LLMB_AIMOCK_BIN)",
            bin.display()
        );
        let fixtures = tempfile::tempdir().unwrap();
        let greeting = r#"{"fixtures":[{"match":{"userMessage":"hello"},"response":{"content":"Hi"}}]}"#;
        std::fs::write(fixtures.path().join("greeting.json"), greeting).unwrap();
        let port = free_port();
        let mut child = Command::new(&bin)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-f"])
            .arg(fixtures.path())
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        wait_listening(&mut child, port);
        Aimock {
            child,
            _fixtures: fixtures,
            base_url: format!("http://127.0.0.1:{port}/v1"),
        }
    }
}

impl Drop for Aimock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (bound to port 0, then released).
fn wait_listening(child: &mut Child, port: u16) {
    wait_until_blocking(&format!("aimock not listening on port {port}"), READY_DEADLINE, || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("aimock exited before listening: {status}");
        }
        std::net::TcpStream::connect(("127.0.0.1", port))
    });
}
