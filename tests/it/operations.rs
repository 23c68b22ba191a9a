//! Operating the controller: metrics and health endpoints, JSON logs, several namespaces and
//! the start-up permission check. The controller runs as the real binary (or in-process)
//! against the test API server and the simulator. Leader election and SIGTERM: leader_election.rs.

use crate::common;

use common::cluster::RunningController;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::apiserver::{admin_client, fresh_namespace, server};
use common::object;
use common::operations::*;
use kube::Client;
use kube::api::{Api, PostParams};
use llm_batch_operator::api::Batch;
use llm_batch_operator::controller::{self, Context, Options};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_reconciles_gateway_calls_and_outcomes_without_batch_names_or_secrets() {
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
    let tokens = |type_: &str| {
        format!(r#"llmbatch_tokens_total{{namespace="{ns}",gateway="gw",model="gpt-4o-mini",type="{type_}"}}"#)
    };
    at_least(&tokens("input"), 1.0);
    at_least(&tokens("output"), 1.0);
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
    // The spend metrics name the namespace, gateway and model; nothing names the Batch, a
    // Secret, a URL or the key.
    for secret_or_name in ["tickets-abc", KEY, "gw-key", "127.0.0.1"] {
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
    let context =
        Arc::new(Context::new(client.clone()).with_addresses(llm_batch_operator::net::AddressPolicy::local()));
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
    let context = Arc::new(
        Context::new(faults.client(server().config().await))
            .with_addresses(llm_batch_operator::net::AddressPolicy::local()),
    );
    let running = RunningController::start_with(context.clone(), &ns);
    wait_succeeded(&client, &ns, "flaky", Duration::from_secs(90)).await;
    running.stop_within(Duration::from_secs(30)).await;

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
    use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
    let admin = admin_client().await;
    let granted = fresh_namespace(&admin, "ops-rbac-a").await;
    let other = fresh_namespace(&admin, "ops-rbac-b").await;
    let mut role: ClusterRole = common::deploy_rbac("ClusterRole");
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
    // The Lease rule is deploy/rbac.yaml's Role, in the Lease's namespace only.
    let mut leases: Role = common::deploy_rbac("Role");
    leases.metadata.namespace = Some(granted.clone());
    let lease_role = leases.metadata.name.clone().unwrap();
    Api::<Role>::namespaced(admin.clone(), &granted)
        .create(&PostParams::default(), &leases)
        .await
        .unwrap();
    let lease_binding: RoleBinding = object(json!({"metadata": {"name": "operator-leases"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": lease_role},
        "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": granted}]}));
    Api::<RoleBinding>::namespaced(admin.clone(), &granted)
        .create(&PostParams::default(), &lease_binding)
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

/// docs/operations.md documents every metric the controller registers, with its type, and no other.
#[test]
fn the_readme_metrics_table_matches_the_registry() {
    let readme = std::fs::read_to_string(common::repo_path("docs/operations.md")).unwrap();
    let metrics = llm_batch_operator::telemetry::Metrics::new();
    let registered = metrics.catalogue();
    assert!(registered.len() >= 10, "{registered:?}");
    for (name, kind) in registered {
        let row = format!("| `{name}` | {kind} |");
        assert!(readme.contains(&row), "docs/operations.md has no row starting {row:?}");
    }
    for line in readme.lines().filter(|l| l.starts_with("| `llmbatch_")) {
        let name = line.split('`').nth(1).unwrap();
        assert!(
            registered.iter().any(|(r, _)| r == name),
            "docs/operations.md documents {name}, which is not registered"
        );
    }
}

/// kube-runtime's graceful shutdown waits for a cache that never synced: stopping at once
/// must not hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_before_the_caches_synced_returns_at_once() {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "ops-early").await;
    let context = Arc::new(Context::new(client).with_addresses(llm_batch_operator::net::AddressPolicy::local()));
    let started = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(10),
        controller::run_with(context, Options::namespace(&ns), std::future::ready(())),
    )
    .await
    .expect("the controller hung on shutdown");
    println!("stopped in {:?}", started.elapsed());
}

/// The troubleshooting table names every reason a condition can carry when something is
/// wrong, and only reasons the code has.
#[test]
fn the_troubleshooting_table_covers_every_problem_reason_and_no_other() {
    let readme = std::fs::read_to_string(common::repo_path("docs/operations.md")).unwrap();
    let table = readme
        .split("## Troubleshooting by condition")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").find(|block| block.starts_with("| condition")))
        .expect("docs/operations.md has the troubleshooting table");
    let listed: std::collections::BTreeSet<&str> = table
        .lines()
        .skip(2)
        .filter_map(|row| row.split('|').nth(2))
        .flat_map(|cell| cell.split(','))
        .map(str::trim)
        .collect();
    let code = std::fs::read_to_string(common::repo_path("src/api/conditions.rs")).unwrap();
    let reasons_module = code
        .split("pub mod reasons {")
        .nth(1)
        .unwrap()
        .split("\n}")
        .next()
        .unwrap();
    let reasons: std::collections::BTreeSet<&str> = reasons_module
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split('"').nth(1))
        .collect();
    // Reasons of things going as they should.
    let healthy = [
        "InputValid",
        "Admitted",
        "InputOnGateway",
        "Uploading",
        "BatchCreated",
        "BatchAdopted",
        "SendingDirectly",
        "GatewayReachable",
        "Succeeded",
        "Stored",
        "ResultsMatchInput",
        "NoInputIds",
        "ResultsIncomplete",
        "Priced",
        "Running",
        "WithinBudget",
        "SuspendRequested",
        "Resumed",
    ];
    for reason in &reasons {
        if !healthy.contains(reason) {
            assert!(
                listed.contains(reason),
                "the troubleshooting table has no row for {reason}"
            );
        }
    }
    for reason in &listed {
        assert!(
            reasons.contains(reason),
            "the troubleshooting table names {reason}, which the code never sets"
        );
    }
}

/// Every relative link of README.md and docs/ points at a file of the repository (and an
/// anchor at a heading of that file).
#[test]
fn the_docs_links_resolve() {
    let root = std::path::PathBuf::from(common::repo_path(""));
    let mut pages = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        pages.push(entry.unwrap().path());
    }
    let slug = |heading: &str| -> String {
        let kept: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .collect();
        kept.replace(' ', "-")
    };
    let anchors = |page: &std::path::Path| -> Vec<String> {
        let text = std::fs::read_to_string(page).unwrap();
        text.lines()
            .filter_map(|l| {
                l.trim_start_matches('#')
                    .strip_prefix(' ')
                    .filter(|_| l.starts_with('#'))
            })
            .map(slug)
            .collect()
    };
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for link in text.split("](").skip(1).filter_map(|rest| rest.split(')').next()) {
            if link.contains("://") || link.starts_with("mailto:") || link.contains(' ') {
                continue;
            }
            let (path, anchor) = link.split_once('#').unwrap_or((link, ""));
            let target = match path {
                "" => page.clone(),
                path => page.parent().unwrap().join(path),
            };
            assert!(target.exists(), "{}: {link} points at nothing", page.display());
            if !anchor.is_empty() {
                assert!(
                    anchors(&target).iter().any(|a| a == anchor),
                    "{}: {link}: no such heading",
                    page.display()
                );
            }
        }
    }
}
