//! Operating the controller: metrics and health endpoints, JSON logs, several namespaces, the
//! start-up permission check, leader election and SIGTERM. The controller runs as the real
//! binary (or in-process) against the test API server and the simulator.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::apiserver::{admin_client, fresh_namespace, server};
use common::object;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::{Api, PostParams};
use llm_batch_operator::api::{Batch, BatchGateway, BatchPhase};
use llm_batch_operator::controller::{self, Context, Options};
use llm_batch_operator::simulator::{RunningSimulator, SimulatorConfig};
use serde_json::{Value, json};

const KEY: &str = "sk-operations-test-key";
const LEASE: &str = "llm-batch-operator";

async fn simulator() -> RunningSimulator {
    let config = SimulatorConfig {
        api_key: Some(KEY.into()),
        ..SimulatorConfig::default()
    };
    RunningSimulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// A BatchGateway `gw` (with its key) and a ConfigMap `input` of four requests in `ns`.
async fn prepare(client: &Client, ns: &str, sim: &RunningSimulator) {
    let pp = PostParams::default();
    let secret: Secret = object(json!({"metadata": {"name": "gw-key"}, "stringData": {"api-key": KEY}}));
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&pp, &secret)
        .await
        .unwrap();
    let gateway: BatchGateway = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchGateway",
        "metadata": {"name": "gw"},
        "spec": {"url": sim.base_url(), "auth": {"secretRef": {"name": "gw-key", "key": "api-key"}},
                 "polling": {"initial": "100ms", "max": "500ms"}}}));
    Api::<BatchGateway>::namespaced(client.clone(), ns)
        .create(&pp, &gateway)
        .await
        .unwrap();
    let cm: ConfigMap = object(json!({"metadata": {"name": "input"}, "data": {"batch.jsonl": common::chat_lines(4)}}));
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&pp, &cm)
        .await
        .unwrap();
}

async fn create_batch(client: &Client, ns: &str, name: &str) {
    let batch: Batch = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
        "metadata": {"name": name},
        "spec": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                 "input": {"configMap": {"name": "input", "key": "batch.jsonl"}},
                 "output": {"secret": {"name": format!("{name}-results")}}}}));
    Api::<Batch>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &batch)
        .await
        .unwrap();
}

fn phase(batch: &Batch) -> Option<BatchPhase> {
    batch.status.as_ref().and_then(|s| s.phase)
}

/// Waits (bounded) until Batch `ns/name` Succeeded.
async fn wait_succeeded(client: &Client, ns: &str, name: &str, within: Duration) {
    let api = Api::<Batch>::namespaced(client.clone(), ns);
    let deadline = Instant::now() + within;
    loop {
        let batch = api.get(name).await.unwrap();
        if phase(&batch) == Some(BatchPhase::Succeeded) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{ns}/{name} never Succeeded: {:?}",
            batch.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The holder of the leader-election Lease in `ns`, if any.
async fn lease_holder(client: &Client, ns: &str) -> Option<String> {
    let lease = Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt(LEASE)
        .await
        .unwrap()?;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

/// Waits (bounded) until `check` holds for the Lease holder, and returns it.
async fn wait_holder(
    client: &Client,
    ns: &str,
    within: Duration,
    check: impl Fn(&Option<String>) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        let holder = lease_holder(client, ns).await;
        if check(&holder) {
            return holder;
        }
        assert!(Instant::now() < deadline, "the Lease holder stayed {holder:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `llm-batch-operator controller` as a subprocess with JSON logs, killed on drop.
struct ControllerProcess {
    child: Child,
    base: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl ControllerProcess {
    fn start(kubeconfig: &str, pod_name: &str, args: &[&str]) -> ControllerProcess {
        let mut child = common::bin()
            .args(["controller", "--metrics-addr", "127.0.0.1:0", "--log-format", "json"])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", pod_name)
            .env("RUST_LOG", "info")
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

    async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("{}{path}", self.base)).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn metrics(&self) -> String {
        let (status, text) = self.get("/metrics").await;
        assert_eq!(status, 200, "{text}");
        text
    }

    /// Waits (bounded) until `/readyz` answers 200.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, text) = self.get("/readyz").await;
            if status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "never ready: {text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit.
    async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "still running after {within:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn admin_kubeconfig() -> String {
    server().dir.join("kubeconfig").display().to_string()
}

/// The value of the sample `name` (with its labels, as exposed), if present.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_reconciles_gateway_calls_and_outcomes_without_object_names() {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "ops-metrics").await;
    let sim = simulator().await;
    prepare(&client, &ns, &sim).await;
    create_batch(&client, &ns, "tickets-abc").await;
    let controller = ControllerProcess::start(&admin_kubeconfig(), "ops-metrics", &["--namespace", &ns]);
    wait_succeeded(&client, &ns, "tickets-abc", Duration::from_secs(60)).await;
    controller.wait_ready().await;
    assert_eq!(controller.get("/healthz").await, (200, "ok".to_string()));

    let text = controller.metrics().await;
    let at_least = |name: &str, min: f64| {
        let value = sample(&text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"));
        assert!(value >= min, "{name} = {value} < {min}");
    };
    at_least(r#"llmbatch_reconcile_total{controller="batch",result="success"}"#, 1.0);
    at_least(
        r#"llmbatch_reconcile_total{controller="batchgateway",result="success"}"#,
        1.0,
    );
    at_least(r#"llmbatch_reconcile_duration_seconds_count{controller="batch"}"#, 1.0);
    at_least(
        r#"llmbatch_gateway_requests_total{operation="upload_file",code="200"}"#,
        1.0,
    );
    at_least(
        r#"llmbatch_gateway_requests_total{operation="get_batch",code="200"}"#,
        1.0,
    );
    at_least(
        r#"llmbatch_gateway_request_duration_seconds_count{operation="get_batch"}"#,
        1.0,
    );
    at_least(r#"llmbatch_tokens_total{kind="prompt"}"#, 1.0);
    assert_eq!(
        sample(
            &text,
            r#"llmbatch_gateway_requests_total{operation="create_batch",code="200"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"llmbatch_request_lines_total{outcome="completed"}"#),
        Some(4.0)
    );
    assert_eq!(
        sample(&text, r#"llmbatch_request_lines_total{outcome="failed"}"#),
        Some(0.0)
    );
    assert_eq!(sample(&text, r#"llmbatch_batches{phase="Succeeded"}"#), Some(1.0));
    assert_eq!(sample(&text, "llmbatch_leader"), Some(1.0));
    for secret_or_name in ["tickets-abc", ns.as_str(), KEY, "gw-key", "127.0.0.1"] {
        assert!(
            !text.contains(secret_or_name),
            "{secret_or_name} in the metrics:\n{text}"
        );
    }

    // --log-format json: every line a JSON object with a level and a message, and no key.
    let logs = controller.logs();
    assert!(!logs.is_empty());
    for line in &logs {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(entry["level"].is_string() && entry["message"].is_string(), "{line}");
        assert!(!line.contains(KEY), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_two_namespaces_ignores_a_third() {
    let client = admin_client().await;
    let sim = simulator().await;
    let mut namespaces = Vec::new();
    for prefix in ["ops-watch-a", "ops-watch-b", "ops-watch-c"] {
        let ns = fresh_namespace(&client, prefix).await;
        prepare(&client, &ns, &sim).await;
        create_batch(&client, &ns, "job").await;
        namespaces.push(ns);
    }
    let context = Arc::new(Context::new(client.clone()));
    let options = Options {
        namespaces: namespaces[..2].to_vec(),
        ..Options::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controller::run_with(context.clone(), options, async move {
        let _ = stopped.await;
    }));
    for ns in &namespaces[..2] {
        wait_succeeded(&client, ns, "job", Duration::from_secs(60)).await;
    }
    let ignored = Api::<Batch>::namespaced(client.clone(), &namespaces[2])
        .get("job")
        .await
        .unwrap();
    assert_eq!(ignored.status, None, "the third namespace was reconciled");
    assert!(
        ignored.metadata.finalizers.is_none(),
        "{:?}",
        ignored.metadata.finalizers
    );
    let text = context.metrics.encode().unwrap();
    assert_eq!(
        sample(&text, r#"llmbatch_batches{phase="Succeeded"}"#),
        Some(2.0),
        "{text}"
    );
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .unwrap()
        .unwrap();
}

/// Status writes of Batches (not BatchGateways), so every second step of the one Batch loses
/// its record.
fn batch_status_writes(request: &http::Request<kube::client::Body>) -> bool {
    common::faults::status_writes(request) && request.uri().path().contains("/batches/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adoptions_after_lost_status_writes_are_counted_as_duplicates_prevented() {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "ops-adopt").await;
    let sim = simulator().await;
    prepare(&client, &ns, &sim).await;
    create_batch(&client, &ns, "flaky").await;
    let faults = common::faults::FailSome::every_second(batch_status_writes);
    let context = Arc::new(Context::new(faults.client(server().config().await)));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controller::run_with(
        context.clone(),
        Options::namespace(&ns),
        async move {
            let _ = stopped.await;
        },
    ));
    wait_succeeded(&client, &ns, "flaky", Duration::from_secs(90)).await;
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .unwrap()
        .unwrap();

    let text = context.metrics.encode().unwrap();
    let count = |name: &str| sample(&text, name).unwrap_or(0.0);
    let adopted = count(r#"llmbatch_duplicate_submissions_prevented_total{object="file"}"#)
        + count(r#"llmbatch_duplicate_submissions_prevented_total{object="batch"}"#);
    assert!(
        adopted >= 1.0,
        "{} writes dropped, no adoption counted:\n{text}",
        faults.failed()
    );
    assert!(
        count(r#"llmbatch_reconcile_errors_total{controller="batch",error="kube"}"#) >= 1.0,
        "{text}"
    );
    let journal: Vec<Value> = reqwest::get(format!("{}/__sim/journal", sim.base_url().trim_end_matches("/v1")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let created = journal
        .iter()
        .filter(|e| e["method"] == "POST" && e["path"] == "/v1/batches" && e["status"].as_u64() < Some(300))
        .count();
    assert_eq!(created, 1, "{journal:?}");
}

/// A kubeconfig acting as ServiceAccount `name` of `ns` (a TokenRequest token), as a file.
async fn service_account_kubeconfig(admin: &Client, ns: &str, name: &str, dir: &std::path::Path) -> String {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    let accounts = Api::<ServiceAccount>::namespaced(admin.clone(), ns);
    let account: ServiceAccount = object(json!({"metadata": {"name": name}}));
    accounts.create(&PostParams::default(), &account).await.unwrap();
    let request: TokenRequest = object(json!({"spec": {"expirationSeconds": 3600}}));
    let token = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, &server().ca_pem).unwrap();
    let path = dir.join("kubeconfig");
    let yaml = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: sa\n\
         clusters: [{{name: test, cluster: {{server: '{}', certificate-authority: '{}'}}}}]\n\
         users: [{{name: sa, user: {{token: '{token}'}}}}]\n\
         contexts: [{{name: sa, context: {{cluster: test, user: sa}}}}]\n",
        server().url,
        ca.display()
    );
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_up_check_names_each_namespace_where_a_permission_is_missing() {
    use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
    let admin = admin_client().await;
    let granted = fresh_namespace(&admin, "ops-rbac-a").await;
    let other = fresh_namespace(&admin, "ops-rbac-b").await;
    let mut role: ClusterRole =
        serde_yaml::from_str(&std::fs::read_to_string(common::repo_path("deploy/rbac.yaml")).unwrap()).unwrap();
    let role_name = format!("llm-batch-operator-{granted}");
    role.metadata.name = Some(role_name.clone());
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = object(json!({"metadata": {"name": "operator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": granted}]}));
    Api::<RoleBinding>::namespaced(admin.clone(), &granted)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = service_account_kubeconfig(&admin, &granted, "operator", dir.path()).await;

    let output = common::bin()
        .args([
            "controller",
            "--metrics-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--namespace",
            &granted,
            "--namespace",
            &other,
        ])
        .args(["--leader-elect", "--leader-election-namespace", &granted])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("WATCH_NAMESPACE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let failure = stderr
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .find(|entry| entry["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no ERROR line: {stderr}"));
    assert!(
        failure["error"].as_str().unwrap().contains("deploy/rbac.yaml"),
        "{failure}"
    );
    assert!(
        stderr.contains(&format!("get core/secrets in namespace {other}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("watch llmbatch.io/batches in namespace {other}")),
        "{stderr}"
    );
    assert!(!stderr.contains(&format!("in namespace {granted}")), "{stderr}");

    // Bound in both namespaces, it starts (and its Lease permissions are enough).
    let binding: RoleBinding = object(json!({"metadata": {"name": "operator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": granted}]}));
    Api::<RoleBinding>::namespaced(admin.clone(), &other)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let controller = ControllerProcess::start(
        &kubeconfig,
        "ops-rbac",
        &[
            "--namespace",
            &granted,
            "--namespace",
            &other,
            "--leader-elect",
            "--leader-election-namespace",
            &granted,
        ],
    );
    controller.wait_ready().await;
    wait_holder(&admin, &granted, Duration::from_secs(30), |h| {
        h.as_deref() == Some("ops-rbac")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_leader_election_only_the_leader_reconciles_and_a_standby_takes_over_when_it_dies() {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "ops-leader").await;
    let sim = simulator().await;
    prepare(&client, &ns, &sim).await;
    let args = [
        "--namespace",
        ns.as_str(),
        "--leader-elect",
        "--leader-election-namespace",
        ns.as_str(),
    ];
    let mut replicas = vec![
        (
            "replica-a",
            ControllerProcess::start(&admin_kubeconfig(), "replica-a", &args),
        ),
        (
            "replica-b",
            ControllerProcess::start(&admin_kubeconfig(), "replica-b", &args),
        ),
    ];
    let holder = wait_holder(&client, &ns, Duration::from_secs(30), Option::is_some)
        .await
        .unwrap();
    for (_, replica) in &replicas {
        replica.wait_ready().await;
    }
    create_batch(&client, &ns, "first").await;
    wait_succeeded(&client, &ns, "first", Duration::from_secs(60)).await;

    let leader_at = replicas.iter().position(|(name, _)| *name == holder).unwrap();
    let (standby_name, standby) = &replicas[1 - leader_at];
    let (_, leader) = &replicas[leader_at];
    let standby_text = standby.metrics().await;
    assert_eq!(sample(&standby_text, "llmbatch_leader"), Some(0.0), "{standby_text}");
    assert!(
        !standby_text.contains("llmbatch_reconcile_total{"),
        "the standby reconciled:\n{standby_text}"
    );
    let leader_text = leader.metrics().await;
    assert_eq!(sample(&leader_text, "llmbatch_leader"), Some(1.0), "{leader_text}");
    assert!(
        sample(
            &leader_text,
            r#"llmbatch_reconcile_total{controller="batch",result="success"}"#
        )
        .is_some()
    );
    let standby_name = standby_name.to_string();

    // The leader dies without releasing the Lease: the standby takes over once it expires.
    let (_, mut dead) = replicas.remove(leader_at);
    dead.signal("-KILL");
    let killed = Instant::now();
    dead.wait_exit(Duration::from_secs(10)).await;
    create_batch(&client, &ns, "second").await;
    wait_holder(&client, &ns, Duration::from_secs(40), |h| {
        h.as_deref() == Some(standby_name.as_str())
    })
    .await;
    println!(
        "the standby took the Lease {:?} after the leader was killed",
        killed.elapsed()
    );
    wait_succeeded(&client, &ns, "second", Duration::from_secs(60)).await;
    let text = replicas[0].1.metrics().await;
    assert_eq!(sample(&text, "llmbatch_leader"), Some(1.0), "{text}");
}

/// Waits (bounded) until the in-process controller's metrics satisfy `check`.
async fn wait_metrics(context: &Context, what: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = context.metrics.encode().unwrap();
        if check(&text) {
            return;
        }
        assert!(Instant::now() < deadline, "never {what}:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_taken_stops_reconciling_until_it_leads_again() {
    use llm_batch_operator::controller::{LeaderElection, LeaseTimings};
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "ops-lost").await;
    let sim = simulator().await;
    prepare(&client, &ns, &sim).await;
    let context = Arc::new(Context::new(client.clone()));
    let options = Options {
        namespaces: vec![ns.clone()],
        leader_election: Some(LeaderElection {
            namespace: ns.clone(),
            name: LEASE.into(),
            identity: "in-process".into(),
            timings: LeaseTimings::default(),
        }),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controller::run_with(context.clone(), options, async move {
        let _ = stopped.await;
    }));
    wait_holder(&client, &ns, Duration::from_secs(30), |h| {
        h.as_deref() == Some("in-process")
    })
    .await;
    create_batch(&client, &ns, "before").await;
    wait_succeeded(&client, &ns, "before", Duration::from_secs(60)).await;

    // Another identity takes the Lease over (as a partitioned-then-returning peer might).
    let leases = Api::<Lease>::namespaced(client.clone(), &ns);
    let mut lease = leases.get(LEASE).await.unwrap();
    let spec = lease.spec.as_mut().unwrap();
    spec.holder_identity = Some("intruder".into());
    spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    leases.replace(LEASE, &PostParams::default(), &lease).await.unwrap();
    // Stopped: not leading, and the controllers (whose caches feed llmbatch_batches) are gone.
    wait_metrics(&context, "stopped leading", |text| {
        sample(text, "llmbatch_leader") == Some(0.0) && !text.contains("llmbatch_batches{")
    })
    .await;
    create_batch(&client, &ns, "after").await;
    let after = Api::<Batch>::namespaced(client.clone(), &ns)
        .get("after")
        .await
        .unwrap();
    assert_eq!(after.status, None);

    // The intruder never renews: once its Lease expires, this replica leads and reconciles again.
    wait_holder(&client, &ns, Duration::from_secs(40), |h| {
        h.as_deref() == Some("in-process")
    })
    .await;
    wait_succeeded(&client, &ns, "after", Duration::from_secs(60)).await;
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease_holder(&client, &ns).await, None, "released on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_leader_cleanly_and_releases_the_lease() {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "ops-sigterm").await;
    let sim = simulator().await;
    prepare(&client, &ns, &sim).await;
    create_batch(&client, &ns, "job").await;
    let mut controller = ControllerProcess::start(
        &admin_kubeconfig(),
        "only-replica",
        &["--namespace", &ns, "--leader-elect", "--leader-election-namespace", &ns],
    );
    wait_holder(&client, &ns, Duration::from_secs(30), |h| {
        h.as_deref() == Some("only-replica")
    })
    .await;
    wait_succeeded(&client, &ns, "job", Duration::from_secs(60)).await;
    controller.wait_ready().await;

    controller.signal("-TERM");
    let signalled = Instant::now();
    let status = controller.wait_exit(Duration::from_secs(30)).await;
    println!("exited {:?} after SIGTERM", signalled.elapsed());
    assert!(status.success(), "{status:?}\n{:?}", controller.logs());
    assert_eq!(lease_holder(&client, &ns).await, None, "the Lease was not released");
}

/// README.md documents every metric the controller registers, with its type, and no other.
#[test]
fn the_readme_metrics_table_matches_the_registry() {
    let readme = std::fs::read_to_string(common::repo_path("README.md")).unwrap();
    let metrics = llm_batch_operator::telemetry::Metrics::new();
    let registered = metrics.catalogue();
    assert!(registered.len() >= 10, "{registered:?}");
    for (name, kind) in registered {
        let row = format!("| `{name}` | {kind} |");
        assert!(readme.contains(&row), "README.md has no row starting {row:?}");
    }
    for line in readme.lines().filter(|l| l.starts_with("| `llmbatch_")) {
        let name = line.split('`').nth(1).unwrap();
        assert!(
            registered.iter().any(|(r, _)| r == name),
            "README.md documents {name}, which is not registered"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_reconcile_in_flight_finish_and_record_its_step() {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "ops-drain").await;
    // Every gateway request takes 1.5 s, so a reconcile is mid-step when the signal comes.
    let config = SimulatorConfig {
        api_key: Some(KEY.into()),
        latency_ms: 1500,
        ..SimulatorConfig::default()
    };
    let sim = RunningSimulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    prepare(&client, &ns, &sim).await;
    // Polls 5 s apart: the drain ends after the first poll, with the batch still running.
    let polling = json!({"spec": {"polling": {"initial": "5s", "max": "5s"}}});
    Api::<BatchGateway>::namespaced(client.clone(), &ns)
        .patch(
            "gw",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&polling),
        )
        .await
        .unwrap();
    create_batch(&client, &ns, "slow").await;
    let mut controller = ControllerProcess::start(&admin_kubeconfig(), "drain", &["--namespace", &ns]);
    let batches = Api::<Batch>::namespaced(client.clone(), &ns);
    let deadline = Instant::now() + Duration::from_secs(60);
    while phase(&batches.get("slow").await.unwrap()) != Some(BatchPhase::Uploading) {
        assert!(Instant::now() < deadline, "never Uploading");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    controller.signal("-TERM");
    let signalled = Instant::now();
    let status = controller.wait_exit(Duration::from_secs(40)).await;
    assert!(status.success(), "{status:?}\n{:?}", controller.logs());
    println!("drained and exited {:?} after SIGTERM", signalled.elapsed());
    let slow = batches.get("slow").await.unwrap();
    let gateway = slow.status.as_ref().and_then(|s| s.gateway.clone()).unwrap_or_default();
    assert!(
        gateway.input_file_id.is_some(),
        "the upload in flight was not recorded: {:?}",
        slow.status
    );

    // A new controller carries on from the status: one upload, one batch.
    let context = Arc::new(Context::new(client.clone()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controller::run_with(context, Options::namespace(&ns), async move {
        let _ = stopped.await;
    }));
    wait_succeeded(&client, &ns, "slow", Duration::from_secs(90)).await;
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .unwrap()
        .unwrap();
    let journal: Vec<Value> = reqwest::get(format!("{}/__sim/journal", sim.base_url().trim_end_matches("/v1")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let posted = |path: &str| {
        journal
            .iter()
            .filter(|e| e["method"] == "POST" && e["path"] == path && e["status"].as_u64() < Some(300))
            .count()
    };
    assert_eq!((posted("/v1/files"), posted("/v1/batches")), (1, 1), "{journal:?}");
}

/// kube-runtime's graceful shutdown waits for a cache that never synced: stopping at once
/// must not hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_before_the_caches_synced_returns_at_once() {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "ops-early").await;
    let context = Arc::new(Context::new(client));
    let started = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(10),
        controller::run_with(context, Options::namespace(&ns), std::future::ready(())),
    )
    .await
    .expect("the controller hung on shutdown");
    println!("stopped in {:?}", started.elapsed());
}
