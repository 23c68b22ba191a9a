//! What the operations tests share: a namespace with a gateway and input, Batches, the
//! leader-election Lease, and the controller binary as a subprocess with JSON logs.

use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::apiserver::server;
use super::wait::wait_until;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use llm_batch_operator::api::{Batch, BatchPhase};
use llm_batch_operator::controller::Context;
use llm_batch_operator::simulator::{RunningSimulator, SimulatorConfig};
use serde_json::{Value, json};

pub const KEY: &str = "sk-operations-test-key";
pub const LEASE: &str = "llm-batch-operator";

pub async fn simulator() -> RunningSimulator {
    let config = SimulatorConfig {
        api_key: Some(KEY.into()),
        ..SimulatorConfig::default()
    };
    RunningSimulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// A BatchGateway `gw` (with its key) and a ConfigMap `input` of four requests in `ns`.
pub async fn prepare(client: &Client, ns: &str, sim: &RunningSimulator) {
    super::cluster::create_gateway(client, ns, &sim.base_url(), KEY, json!({})).await;
    super::cluster::create_input(client, ns, "input", &super::chat_lines(4)).await;
}

pub async fn create_batch(client: &Client, ns: &str, name: &str) {
    super::cluster::create_batch(client, ns, name, "gw", "input").await;
}

pub fn phase(batch: &Batch) -> Option<BatchPhase> {
    batch.status.as_ref().and_then(|s| s.phase)
}

/// Waits (bounded) until Batch `ns/name` Succeeded.
pub async fn wait_succeeded(client: &Client, ns: &str, name: &str, within: Duration) {
    let api = Api::<Batch>::namespaced(client.clone(), ns);
    wait_until(&format!("{ns}/{name} never Succeeded"), within, async || {
        let batch = api.get(name).await.unwrap();
        if phase(&batch) == Some(BatchPhase::Succeeded) {
            Ok(())
        } else {
            Err(batch.status)
        }
    })
    .await
}

/// The holder of the leader-election Lease in `ns`, if any.
pub async fn lease_holder(client: &Client, ns: &str) -> Option<String> {
    let lease = Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt(LEASE)
        .await
        .unwrap()?;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

/// Waits (bounded) until `check` holds for the Lease holder, and returns it.
pub async fn wait_holder(
    client: &Client,
    ns: &str,
    within: Duration,
    check: impl Fn(&Option<String>) -> bool,
) -> Option<String> {
    wait_until("the Lease holder stayed", within, async || {
        let holder = lease_holder(client, ns).await;
        if check(&holder) { Ok(holder) } else { Err(holder) }
    })
    .await
}

/// `llm-batch-operator controller` as a subprocess with JSON logs, killed on drop.
pub struct ControllerProcess {
    child: Child,
    pub base: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl ControllerProcess {
    pub fn start(kubeconfig: &str, pod_name: &str, args: &[&str]) -> ControllerProcess {
        Self::start_logging(kubeconfig, pod_name, args, "info")
    }

    /// [`Self::start`] with `RUST_LOG` set to `filter`.
    pub fn start_logging(kubeconfig: &str, pod_name: &str, args: &[&str], filter: &str) -> ControllerProcess {
        let mut child = super::bin()
            .args(["controller", "--metrics-addr", "127.0.0.1:0", "--log-format", "json"])
            // The simulator is on loopback, which a controller refuses unless allowed.
            .args(["--allow-cidr", "127.0.0.0/8"])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", pod_name)
            .env("RUST_LOG", filter)
            .env_remove("WATCH_NAMESPACE")
            .env_remove("POD_NAMESPACE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the controller");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let kept = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(entry) = serde_json::from_str::<Value>(&line)
                    && entry["message"].as_str().is_some_and(|m| m.starts_with("serving"))
                {
                    let _ = addr_tx.send(entry["addr"].as_str().unwrap_or_default().to_string());
                }
                kept.lock().unwrap().push(line);
            }
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the controller never said where it serves: {:?}", logs.lock().unwrap()));
        ControllerProcess {
            child,
            base: format!("http://{addr}"),
            logs,
        }
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("{}{path}", self.base)).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    pub async fn metrics(&self) -> String {
        let (status, text) = self.get("/metrics").await;
        assert_eq!(status, 200, "{text}");
        text
    }

    /// Waits (bounded) until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        wait_until("never ready", Duration::from_secs(30), async || {
            let (status, text) = self.get("/readyz").await;
            if status == 200 { Ok(()) } else { Err(text) }
        })
        .await
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        wait_until("still running", within, async || {
            self.child.try_wait().unwrap().ok_or("running")
        })
        .await
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn admin_kubeconfig() -> String {
    server().dir.join("kubeconfig").display().to_string()
}

/// The value of the sample `name` (with its labels, as exposed), if present.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits (bounded) until the in-process controller's metrics satisfy `check`.
pub async fn wait_metrics(context: &Context, what: &str, check: impl Fn(&str) -> bool) {
    wait_until(&format!("never {what}"), Duration::from_secs(30), async || {
        let text = context.metrics.encode().unwrap();
        if check(&text) { Ok(()) } else { Err(text) }
    })
    .await
}
