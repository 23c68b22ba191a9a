//! The controller's identity as the Helm chart and the kustomize base install it, against a real
//! kube-apiserver: its ServiceAccount holds Leases only in its own namespace, and with the
//! chart's ValidatingAdmissionPolicy it may create only the Jobs the operator builds.

use crate::common;
use common::wait_until;

use std::sync::Arc;
use std::time::Duration;

use common::apiserver::{admin_client, fresh_namespace, server, token_client};
use common::cluster::{RunningController, gateway_on_simulator};
use common::object;
use common::tools::{chart_dir, documents, succeed, tool};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use llm_batch_operator::api::{Batch, BatchGateway};
use llm_batch_operator::controller::Context;
use llm_batch_operator::simulator::SimulatorConfig;
use serde_json::{Value, json};

/// What `helm install` sees on a cluster serving ValidatingAdmissionPolicy.
const SERVES_VAP: &[&str] = &[
    "--api-versions",
    "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy",
];
/// The kinds that make up the controller's identity and its limits.
const IDENTITY: &[&str] = &[
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
];

/// The chart as release `release` in `namespace`, with `values`.
fn chart(release: &str, namespace: &str, values: &[&str]) -> Vec<serde_yaml::Value> {
    documents(&succeed(
        tool("LLMB_HELM")
            .args(["template", release, &chart_dir(), "--namespace", namespace])
            .args(values),
    ))
}

/// Applies the identity documents among `docs` (server-side, as the admin), and returns the
/// name and namespace of the ServiceAccount among them.
fn apply_identity(docs: &[serde_yaml::Value]) -> (String, String) {
    let picked: Vec<&serde_yaml::Value> = docs
        .iter()
        .filter(|d| IDENTITY.iter().any(|k| d["kind"] == *k))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server().kubeconfig_yaml()).unwrap();
    let manifests = dir.path().join("identity.yaml");
    let text: Vec<String> = picked.iter().map(|d| serde_yaml::to_string(d).unwrap()).collect();
    std::fs::write(&manifests, text.join("---\n")).unwrap();
    succeed(
        tool("LLMB_KUBECTL")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args([
                "apply",
                "--server-side",
                "--field-manager",
                "least-privilege-test",
                "-f",
            ])
            .arg(&manifests),
    );
    let account = picked
        .iter()
        .find(|d| d["kind"] == "ServiceAccount")
        .expect("a ServiceAccount");
    let meta = &account["metadata"];
    (
        meta["name"].as_str().unwrap().to_string(),
        meta["namespace"].as_str().unwrap().to_string(),
    )
}

fn lease(name: &str) -> Lease {
    object(json!({"metadata": {"name": name}, "spec": {"holderIdentity": "least-privilege-test"}}))
}

/// Creates a Lease as `client` in `ns`: Ok, or the API's status code.
async fn create_lease(client: &Client, ns: &str, name: &str) -> Result<(), u16> {
    match Api::<Lease>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &lease(name))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) => Err(e.code),
        Err(e) => panic!("{e}"),
    }
}

/// As `account` (a client of it), Leases work in `own` (RBAC caches may lag a moment after
/// the bindings are made) and are refused everywhere else.
async fn assert_leases_only_in(account: &Client, own: &str, elsewhere: &[&str]) {
    wait_until(
        &format!("no Lease in its own namespace {own}"),
        Duration::from_secs(20),
        async || create_lease(account, own, "llm-batch-operator").await,
    )
    .await;
    let own_leases = Api::<Lease>::namespaced(account.clone(), own);
    let mut held = own_leases.get("llm-batch-operator").await.unwrap();
    held.spec.as_mut().unwrap().lease_duration_seconds = Some(15);
    own_leases
        .replace("llm-batch-operator", &PostParams::default(), &held)
        .await
        .unwrap();
    for ns in elsewhere {
        assert_eq!(
            create_lease(account, ns, "llm-batch-operator").await,
            Err(403),
            "a Lease in {ns}"
        );
        let read = Api::<Lease>::namespaced(account.clone(), ns).get_opt("anything").await;
        assert!(
            matches!(read, Err(kube::Error::Api(ref e)) if e.code == 403),
            "{ns}: {read:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_service_account_holds_leases_only_in_its_own_namespace() {
    let admin = admin_client().await;
    let other = fresh_namespace(&admin, "lp-other").await;

    // The chart, watching every namespace (a ClusterRole), leader election in its namespace.
    let ns = fresh_namespace(&admin, "lp-chart").await;
    let (account, account_ns) = apply_identity(&chart(&ns, &ns, &[]));
    assert_eq!(account_ns, ns);
    let client = token_client(&admin, &ns, &account).await;
    assert_leases_only_in(&client, &ns, &["kube-system", "default", &other]).await;
    // What the ClusterRole does grant everywhere still works (so the 403s are about Leases).
    Api::<Batch>::namespaced(client.clone(), &other)
        .list(&ListParams::default())
        .await
        .unwrap();

    // The kustomize base (deploy/rbac.yaml and deploy/rbac-binding.yaml as installed).
    let base = documents(&succeed(
        tool("LLMB_KUBECTL").args(["kustomize", &common::repo_path("deploy")]),
    ));
    let (account, account_ns) = apply_identity(&base);
    let client = token_client(&admin, &account_ns, &account).await;
    assert_leases_only_in(&client, &account_ns, &["kube-system", "default", &other]).await;
}

const IMAGE: &str = "registry.example/llm-batch-operator:policy-test";

/// A Job shaped as src/controller/jobs.rs builds them, owned by Batch `owner`, with `change`
/// merged into it (JSON merge patch semantics: null removes).
fn job(name: &str, owner: &Batch, change: Value) -> Job {
    let labels = json!({"app.kubernetes.io/name": "llm-batch-operator", "app.kubernetes.io/component": "sink",
                        "app.kubernetes.io/managed-by": "llm-batch-operator", "llmbatch.io/batch": owner.name_any()});
    let mut job = json!({
        "metadata": {"name": name, "labels": labels,
            "ownerReferences": [{"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch", "name": owner.name_any(),
                                 "uid": owner.uid().unwrap(), "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": false,
                "enableServiceLinks": false,
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                                    "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "sink", "image": IMAGE, "args": ["sink"],
                    "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                        "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}],
                "volumes": [{"name": "tmp", "emptyDir": {}}]}}}
    });
    merge(&mut job, change);
    object(job)
}

/// Creates `job` as `client` with dryRun: Ok, or the refusal's message.
async fn try_create(client: &Client, ns: &str, job: &Job) -> Result<(), String> {
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    match Api::<Job>::namespaced(client.clone(), ns).create(&params, job).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) => Err(format!("{} {}", e.code, e.message)),
        Err(e) => panic!("{e}"),
    }
}

/// With the chart's ValidatingAdmissionPolicy installed, the controller's ServiceAccount is
/// refused every Job the operator would not build (other labels, image, a token, privileges),
/// while the controller itself, as that ServiceAccount, starts its sink and direct-mode Jobs;
/// other users are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admission_policy_admits_only_the_jobs_the_operator_builds() {
    let key = "sk-policy-test-key";
    let (admin, ns, sim) = gateway_on_simulator("lp-vap", SimulatorConfig::default(), key, json!({})).await;
    let (repository, tag) = IMAGE.rsplit_once(':').unwrap();
    let (repository, tag) = (format!("image.repository={repository}"), format!("image.tag={tag}"));
    let values = [SERVES_VAP, &["--set", &repository, "--set", &tag]].concat();
    let docs = chart(&ns, &ns, &values);
    assert!(docs.iter().any(|d| d["kind"] == "ValidatingAdmissionPolicy"));
    let (account, _) = apply_identity(&docs);
    let operator = token_client(&admin, &ns, &account).await;

    let pp = PostParams::default();
    let cm: ConfigMap = object(json!({"metadata": {"name": "input"}, "data": {"batch.jsonl": common::chat_lines(2)}}));
    Api::<ConfigMap>::namespaced(admin.clone(), &ns)
        .create(&pp, &cm)
        .await
        .unwrap();
    let direct: BatchGateway = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchGateway",
        "metadata": {"name": "direct"},
        "spec": {"url": sim.base_url(), "auth": {"secretRef": {"name": "gw-key", "key": "api-key"}},
                 "mode": "Direct", "polling": {"initial": "100ms", "max": "500ms"}}}));
    Api::<BatchGateway>::namespaced(admin.clone(), &ns)
        .create(&pp, &direct)
        .await
        .unwrap();
    let batches = Api::<Batch>::namespaced(admin.clone(), &ns);
    for (name, gateway) in [("sink", "gw"), ("direct", "direct")] {
        let batch: Batch = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
            "metadata": {"name": name},
            "spec": {"gatewayRef": {"name": gateway}, "endpoint": "/v1/chat/completions",
                     "input": {"configMap": {"name": "input", "key": "batch.jsonl"}},
                     "output": {"pvc": {"claimName": "results", "path": name}}}}));
        batches.create(&pp, &batch).await.unwrap();
    }
    let owner = batches.get("sink").await.unwrap();

    // The policy takes effect once the API server has loaded it: until a Job without the
    // labels is refused (dry runs: nothing is created either way).
    let unlabelled = json!({"metadata": {"labels": null}, "spec": {"template": {"metadata": {"labels": null}}}});
    let refused = wait_until(
        "the admission policy never took effect",
        Duration::from_secs(30),
        async || match try_create(&operator, &ns, &job("probe", &owner, unlabelled.clone())).await {
            Err(message) => Ok(message),
            Ok(()) => Err("admitted"),
        },
    )
    .await;
    assert!(refused.contains("labelled"), "{refused}");

    let container = |change: Value| {
        json!({"spec": {"template": {"spec": {"containers": [
        json_patch_merged(job("x", &owner, json!({})), change)]}}}})
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "not owned by a Batch",
            json!({"metadata": {"ownerReferences": null}}),
            "owned by a Batch",
        ),
        (
            "pods without the labels",
            json!({"spec": {"template": {"metadata": {"labels": {"app.kubernetes.io/managed-by": "someone"}}}}}),
            "labelled",
        ),
        (
            "another image",
            container(json!({"image": "busybox:1.36"})),
            "own image",
        ),
        (
            "another image in an init container",
            json!({"spec": {"template": {"spec": {"initContainers": [{"name": "init", "image": "busybox:1.36",
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}}}}),
            "own image",
        ),
        (
            "a ServiceAccount token",
            json!({"spec": {"template": {"spec": {"automountServiceAccountToken": true}}}}),
            "no ServiceAccount token",
        ),
        (
            "a token by default",
            json!({"spec": {"template": {"spec": {"automountServiceAccountToken": null}}}}),
            "no ServiceAccount token",
        ),
        (
            "another ServiceAccount",
            json!({"spec": {"template": {"spec": {"serviceAccountName": "builder"}}}}),
            "no ServiceAccount token",
        ),
        (
            "a projected token volume",
            json!({"spec": {"template": {"spec": {"volumes": [{"name": "tmp", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token"}}]}}]}}}}),
            "no ServiceAccount token",
        ),
        (
            "a host path",
            json!({"spec": {"template": {"spec": {"volumes": [{"name": "tmp", "hostPath": {"path": "/"}}]}}}}),
            "no ServiceAccount token",
        ),
        (
            "privilege escalation",
            container(json!({"securityContext": {"allowPrivilegeEscalation": true}})),
            "restricted",
        ),
        (
            "a container that may run as root",
            container(json!({"securityContext": {"runAsNonRoot": false}})),
            "restricted",
        ),
        (
            "no seccomp profile",
            json!({"spec": {"template": {"spec": {"securityContext": {"seccompProfile": {"type": "Unconfined"}}}}}}),
            "restricted",
        ),
        (
            "capabilities kept",
            container(json!({"securityContext": {"capabilities": {"drop": null, "add": ["NET_ADMIN"]}}})),
            "restricted",
        ),
        (
            "root",
            json!({"spec": {"template": {"spec": {"securityContext": {"runAsNonRoot": null, "runAsUser": 0}}}}}),
            "restricted",
        ),
        (
            "the host network",
            json!({"spec": {"template": {"spec": {"hostNetwork": true}}}}),
            "restricted",
        ),
    ];
    for (what, change, says) in cases {
        let refused = try_create(&operator, &ns, &job("bad", &owner, change.clone()))
            .await
            .expect_err(what);
        assert!(
            refused.starts_with("403") || refused.starts_with("422"),
            "{what}: {refused}"
        );
        assert!(refused.contains(says), "{what}: {refused}");
        // Other users are not matched by the policy.
        try_create(&admin, &ns, &job("bad", &owner, change))
            .await
            .unwrap_or_else(|e| panic!("{what}, by the admin: {e}"));
    }
    try_create(&operator, &ns, &job("fine", &owner, json!({})))
        .await
        .expect("a Job as the operator builds it");

    // The controller as that ServiceAccount: its own sink and direct-mode Jobs are admitted.
    let context = Context::new(operator.clone())
        .with_addresses(llm_batch_operator::net::AddressPolicy::local())
        .with_job_image(Some(IMAGE.into()));
    let controller = RunningController::start_with(Arc::new(context), &ns);
    let jobs = Api::<Job>::namespaced(admin.clone(), &ns);
    for batch in ["sink", "direct"] {
        let selector = format!("llmbatch.io/batch={batch}");
        let job = wait_until(
            &format!("no Job for Batch {batch}"),
            Duration::from_secs(60),
            async || {
                let found = jobs.list(&ListParams::default().labels(&selector)).await.unwrap();
                match found.items.into_iter().next() {
                    Some(job) => Ok(job),
                    None => Err(batches.get(batch).await.unwrap().status),
                }
            },
        )
        .await;
        let component = job.labels().get("app.kubernetes.io/component").cloned();
        assert_eq!(component.as_deref(), Some(batch), "{job:?}");
    }
    controller.stop().await;
}

/// The container of `job` with `change` merged into it.
fn json_patch_merged(job: Job, change: Value) -> Value {
    let mut container = serde_json::to_value(&job.spec.unwrap().template.spec.unwrap().containers[0]).unwrap();
    merge(&mut container, change);
    container
}

/// JSON merge patch (RFC 7386): `patch`'s fields replace `target`'s, objects merge, null removes.
fn merge(target: &mut Value, patch: Value) {
    let Value::Object(fields) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let object = target.as_object_mut().unwrap();
    for (key, value) in fields {
        if value.is_null() {
            object.remove(&key);
        } else {
            merge(object.entry(key).or_insert(Value::Null), value);
        }
    }
}
