//! The Helm chart: lint, render with default and non-default values, validate what it renders
//! against the Kubernetes schemas, and check that its RBAC grants exactly deploy/rbac.yaml's
//! rules (Leases only in the leader-election namespace, Jobs only for PVC output and direct
//! mode), its CRDs are crds/'s, its pods meet the "restricted" Pod Security Standard, and its
//! NetworkPolicies and admission policy render as documented.

use crate::common;

use std::collections::BTreeSet;

use common::tools::{
    chart_dir, documents, helm_template, helm_template_output, kubernetes_validate, numbers_as_floats, succeed, tool,
};
use common::{repo_path, text};
use serde_yaml::Value;

const NAMESPACE: &str = "llmb-system";

/// Non-default values touching every optional part of the chart.
const EVERYTHING: &[&str] = &[
    "--set",
    "replicas=2",
    "--set",
    "watchNamespaces={team-a,team-b}",
    "--set",
    "jobs.enabled=true",
    "--set",
    "jobs.progressPort=9797",
    "--set",
    "serviceMonitor.enabled=true",
    "--set",
    "prometheusRule.enabled=true",
    "--set",
    "grafanaDashboard.enabled=true",
    "--set",
    "simulator.enabled=true",
    "--set",
    "leaderElection.namespace=llmb-leases",
    "--set",
    "crds.keep=false",
    "--set",
    "logFormat=text",
    "--set",
    "gateways.allowCidrs={10.96.0.0/12,fd00:10:96::/112}",
    "--set",
    "gateways.denyCidrs={203.0.113.0/24}",
    "--set",
    "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
];

const MINIMAL: &[&str] = &["--set", "leaderElection.enabled=false", "--set", "jobs.enabled=false"];

/// What `helm install` sees on a cluster serving ValidatingAdmissionPolicy (Kubernetes 1.30+);
/// `helm template` without a cluster knows only group versions.
const SERVES_VAP: &[&str] = &[
    "--api-versions",
    "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy",
];

/// `values` and `more` together.
fn with(values: &[&'static str], more: &[&'static str]) -> Vec<&'static str> {
    [values, more].concat()
}

fn kinds(docs: &[Value]) -> Vec<String> {
    docs.iter().map(|d| d["kind"].as_str().unwrap().to_string()).collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|s| s.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn the_chart_lints_strictly_with_default_and_non_default_values() {
    for values in [&[][..], EVERYTHING, MINIMAL] {
        succeed(tool("LLMB_HELM").args(["lint", "--strict", &chart_dir()]).args(values));
    }
}

#[test]
fn rendered_manifests_pass_strict_schema_validation() {
    let dir = tempfile::tempdir().unwrap();
    let everything = with(EVERYTHING, SERVES_VAP);
    for (name, values) in [
        ("default", &[][..]),
        ("everything", &everything[..]),
        ("minimal", MINIMAL),
    ] {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, helm_template(NAMESPACE, values)).unwrap();
        let output = kubernetes_validate(&path);
        assert!(output.status.success(), "{name} values: {}", text(&output));
    }
}

/// The validator is strict: the same Deployment with one unknown field fails.
#[test]
fn schema_validation_catches_an_unknown_field() {
    let rendered = helm_template(NAMESPACE, &[]);
    let broken = rendered.replacen("terminationGracePeriodSeconds:", "terminationGracePeriod:", 1);
    assert_ne!(broken, rendered, "the Deployment sets terminationGracePeriodSeconds");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, broken).unwrap();
    let output = kubernetes_validate(&path);
    assert!(!output.status.success(), "an unknown field passed:\n{}", text(&output));
}

#[test]
fn unknown_or_mistyped_values_are_rejected_by_the_schema() {
    for (values, says) in [
        (&["--set", "replica=2"][..], "replica"),
        (&["--set", "image.tagg=v1"][..], "tagg"),
        (&["--set", "serviceMonitor.enabled=yes"][..], "serviceMonitor"),
        (&["--set", "logFormat=xml"][..], "logFormat"),
        (&["--set", "watchNamespaces={Team_A}"][..], "watchNamespaces"),
        (&["--set", "jobs.progressPort=80"][..], "progressPort"),
        (&["--set", "networkPolicy.enabled=yes"][..], "networkPolicy"),
        (&["--set", "networkPolicy.jobNamespaces={Team_A}"][..], "jobNamespaces"),
        (&["--set", "admissionPolicy.enable=true"][..], "enable"),
        (&["--set", "prometheusRule.enabled=yes"][..], "prometheusRule"),
        (&["--set", "prometheusRule.budgetThreshold=2"][..], "budgetThreshold"),
        (&["--set", "prometheusRule.job=a\"b"][..], "job"),
        (&["--set", "grafanaDashboard.lable=x"][..], "lable"),
    ] {
        let output = helm_template_output(NAMESPACE, values);
        assert!(!output.status.success(), "{values:?} was accepted");
        assert!(text(&output).contains(says), "{values:?}: {}", text(&output));
    }
}

#[test]
fn the_chart_crds_are_crds_directory_generated_from_the_types() {
    let copy = std::fs::read_to_string(repo_path("charts/llm-batch-operator/files/crds.yaml")).unwrap_or_default();
    assert!(
        copy == llm_batch_operator::api::crds_yaml(),
        "charts/llm-batch-operator/files/crds.yaml is stale: regenerate it with\n  \
         cargo run -- crd > charts/llm-batch-operator/files/crds.yaml"
    );

    let expected = documents(&copy);
    let rendered = documents(&helm_template(NAMESPACE, &[]));
    let crds = of_kind(&rendered, "CustomResourceDefinition");
    assert_eq!(crds.len(), expected.len());
    for (crd, source) in crds.iter().zip(&expected) {
        let meta = &crd["metadata"];
        assert_eq!(meta["annotations"]["helm.sh/resource-policy"], "keep");
        assert_eq!(meta["labels"]["app.kubernetes.io/managed-by"], "Helm");
        let mut stripped = (*crd).clone();
        let m = stripped["metadata"].as_mapping_mut().unwrap();
        m.remove("labels");
        m.remove("annotations");
        assert!(
            numbers_as_floats(&stripped) == numbers_as_floats(source),
            "the chart changed CRD {:?} beyond labels and annotations",
            meta["name"]
        );
    }

    let not_kept = documents(&helm_template(NAMESPACE, &["--set", "crds.keep=false"]));
    assert!(
        of_kind(&not_kept, "CustomResourceDefinition")
            .iter()
            .all(|c| c["metadata"]["annotations"]["helm.sh/resource-policy"].is_null())
    );
    let without = documents(&helm_template(NAMESPACE, &["--set", "crds.enabled=false"]));
    assert!(of_kind(&without, "CustomResourceDefinition").is_empty());
}

/// One permission: where (`*` for cluster-wide), API group, resource, verb.
type Permission = (String, String, String, String);

fn permissions_of(scope: &str, rules: &Value) -> BTreeSet<Permission> {
    let mut out = BTreeSet::new();
    for rule in rules.as_sequence().unwrap() {
        assert!(rule["resourceNames"].is_null() && rule["nonResourceURLs"].is_null());
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    assert!(group != "*" && resource != "*" && verb != "*", "a wildcard in {rule:?}");
                    out.insert((scope.to_string(), group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    out
}

/// What the rendered Roles and ClusterRoles grant the chart's ServiceAccount, through the
/// rendered bindings (a role nobody is bound to grants nothing, and fails the test).
fn granted(docs: &[Value]) -> BTreeSet<Permission> {
    let account = "llm-batch-operator";
    let mut out = BTreeSet::new();
    for binding in of_kind(docs, "ClusterRoleBinding")
        .into_iter()
        .chain(of_kind(docs, "RoleBinding"))
    {
        let subjects = binding["subjects"].as_sequence().unwrap();
        assert_eq!(subjects.len(), 1, "{binding:?}");
        assert_eq!(subjects[0]["kind"], "ServiceAccount");
        assert_eq!(subjects[0]["name"], account);
        assert_eq!(subjects[0]["namespace"], NAMESPACE);
        let role_kind = binding["roleRef"]["kind"].as_str().unwrap();
        let namespace = binding["metadata"]["namespace"].as_str();
        let role = docs
            .iter()
            .find(|d| {
                d["kind"] == role_kind
                    && d["metadata"]["name"] == binding["roleRef"]["name"]
                    && d["metadata"]["namespace"].as_str() == namespace
            })
            .unwrap_or_else(|| panic!("{binding:?} binds a role the chart does not render"));
        out.extend(permissions_of(namespace.unwrap_or("*"), &role["rules"]));
    }
    let bound = of_kind(docs, "ClusterRoleBinding").len() + of_kind(docs, "RoleBinding").len();
    assert_eq!(bound, of_kind(docs, "ClusterRole").len() + of_kind(docs, "Role").len());
    out
}

/// deploy/rbac.yaml's ClusterRole rules where the controller reconciles (its Job rules only
/// with `jobs`), its leader-election Role's rules (Leases) in the leader-election namespace.
fn expected(scopes: &[&str], lease_namespace: Option<&str>, jobs: bool) -> BTreeSet<Permission> {
    let source = documents(&std::fs::read_to_string(repo_path("deploy/rbac.yaml")).unwrap());
    let rules = |kind: &str| source.iter().find(|d| d["kind"] == kind).unwrap()["rules"].clone();
    let is_lease = |p: &Permission| p.1 == "coordination.k8s.io";
    let is_job = |p: &Permission| (p.1 == "batch" && p.2 == "jobs") || (p.1.is_empty() && p.2 == "pods");
    // Cluster-scoped: granted cluster-wide whatever namespaces are watched.
    let cluster_scoped = |p: &Permission| p.1 == "llmbatch.io" && p.2 == "pricelists";
    let mut out = BTreeSet::new();
    for scope in scopes {
        for mut p in permissions_of(scope, &rules("ClusterRole")) {
            assert!(!is_lease(&p), "deploy/rbac.yaml's ClusterRole grants Leases: {p:?}");
            if cluster_scoped(&p) {
                p.0 = "*".to_string();
            }
            if jobs || !is_job(&p) {
                out.insert(p);
            }
        }
    }
    if let Some(ns) = lease_namespace {
        let leases = permissions_of(ns, &rules("Role"));
        assert!(leases.iter().all(is_lease), "{leases:?}");
        out.extend(leases);
    }
    out
}

#[test]
fn rendered_rbac_grants_exactly_the_listed_rules() {
    let cases: [(&[&str], BTreeSet<Permission>); 3] = [
        (&[], expected(&["*"], Some(NAMESPACE), true)),
        (EVERYTHING, expected(&["team-a", "team-b"], Some("llmb-leases"), true)),
        (MINIMAL, expected(&["*"], None, false)),
    ];
    for (values, want) in cases {
        let docs = documents(&helm_template(NAMESPACE, values));
        let got = granted(&docs);
        let extra: Vec<_> = got.difference(&want).collect();
        let missing: Vec<_> = want.difference(&got).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{values:?}: beyond the list {extra:?}; missing {missing:?}"
        );
        for secret_verb in ["list", "watch"] {
            assert!(!got.iter().any(|p| p.2 == "secrets" && p.3 == secret_verb));
        }
        assert!(
            !got.iter().any(|p| p.1 == "coordination.k8s.io" && p.0 == "*"),
            "{values:?}: Leases granted cluster-wide"
        );
    }
    let namespaced = documents(&helm_template(NAMESPACE, EVERYTHING));
    let cluster_roles = of_kind(&namespaced, "ClusterRole");
    assert_eq!(
        cluster_roles.len(),
        1,
        "watchNamespaces needs a ClusterRole for PriceLists only"
    );
    let only = permissions_of("*", &cluster_roles[0]["rules"]);
    assert!(only.iter().all(|p| p.2 == "pricelists" && p.3 == "get"), "{only:?}");
}

#[test]
fn every_pod_meets_the_restricted_pod_security_standard() {
    let docs = documents(&helm_template(NAMESPACE, EVERYTHING));
    let deployments = of_kind(&docs, "Deployment");
    assert_eq!(deployments.len(), 2, "controller and simulator");
    for deployment in deployments {
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
        for container in pod["containers"].as_sequence().unwrap() {
            let sc = &container["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{container:?}");
            assert_eq!(sc["readOnlyRootFilesystem"], true);
            assert_eq!(sc["runAsNonRoot"], true);
            assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
            assert!(sc["privileged"].is_null() && sc["capabilities"]["add"].is_null());
            assert!(!container["resources"]["requests"].is_null());
            assert!(!container["resources"]["limits"]["memory"].is_null());
        }
        assert!(pod["hostNetwork"].is_null() && pod["hostPID"].is_null());
    }
}

#[test]
fn the_controller_gets_the_contract_flags() {
    let args = |values: &[&str]| {
        let docs = documents(&helm_template(NAMESPACE, values));
        let deployment = of_kind(&docs, "Deployment")
            .into_iter()
            .find(|d| d["metadata"]["labels"]["app.kubernetes.io/component"] == "controller")
            .unwrap()
            .clone();
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let env: Vec<String> = container["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect();
        assert!(env.contains(&"POD_NAME".into()) && env.contains(&"POD_NAMESPACE".into()));
        assert_eq!(container["ports"][0]["name"], "http-metrics");
        assert_eq!(container["ports"][0]["containerPort"], 8080);
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        (
            strings(&container["args"]),
            container["image"].as_str().unwrap().to_string(),
        )
    };
    let (default, image) = args(&[]);
    assert_eq!(image, "ghcr.io/llm-batch-operator/llm-batch-operator:0.1.0");
    assert_eq!(
        default,
        [
            "controller",
            "--metrics-addr=0.0.0.0:8080",
            "--log-format=json",
            "--leader-elect",
            &format!("--leader-election-namespace={NAMESPACE}"),
            "--leader-election-id=llm-batch-operator",
            &format!("--job-image={image}"),
            "--direct-progress-port=8686",
        ]
    );
    let (everything, image) = args(EVERYTHING);
    assert!(image.contains("@sha256:"));
    for flag in [
        "--namespace=team-a",
        "--namespace=team-b",
        "--leader-election-namespace=llmb-leases",
        "--log-format=text",
        &format!("--job-image={image}"),
        "--direct-progress-port=9797",
        "--allow-cidr=10.96.0.0/12",
        "--allow-cidr=fd00:10:96::/112",
        "--deny-cidr=203.0.113.0/24",
    ] {
        assert!(
            everything.contains(&flag.to_string()),
            "{flag} missing from {everything:?}"
        );
    }
    let (plain, _) = args(MINIMAL);
    assert!(!plain.iter().any(|a| a.starts_with("--leader-elect")
        || a.starts_with("--job-image")
        || a.starts_with("--direct-progress")));
}

#[test]
fn optional_parts_render_only_when_asked() {
    let default = kinds(&documents(&helm_template(NAMESPACE, &[])));
    for kind in ["PodDisruptionBudget", "ServiceMonitor", "PrometheusRule", "ConfigMap"] {
        assert!(!default.contains(&kind.to_string()), "{kind} rendered by default");
    }
    assert_eq!(default.iter().filter(|k| *k == "Deployment").count(), 1);
    let everything = kinds(&documents(&helm_template(NAMESPACE, EVERYTHING)));
    for kind in ["PodDisruptionBudget", "ServiceMonitor", "PrometheusRule", "ConfigMap"] {
        assert!(everything.contains(&kind.to_string()), "{kind} missing");
    }
    let two_without_lease = helm_template_output(
        NAMESPACE,
        &["--set", "replicas=2", "--set", "leaderElection.enabled=false"],
    );
    assert!(!two_without_lease.status.success());
    assert!(text(&two_without_lease).contains("leaderElection.enabled"));
}

#[test]
fn every_object_carries_the_recommended_labels() {
    let docs = documents(&helm_template(NAMESPACE, &with(EVERYTHING, SERVES_VAP)));
    assert!(kinds(&docs).contains(&"ValidatingAdmissionPolicy".to_string()));
    for doc in docs {
        let labels = &doc["metadata"]["labels"];
        for key in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/part-of",
            "helm.sh/chart",
        ] {
            assert!(
                !labels[key].is_null(),
                "{:?} {:?} lacks {key}",
                doc["kind"],
                doc["metadata"]["name"]
            );
        }
    }
}

#[test]
fn hand_written_yaml_passes_yamllint() {
    let root = repo_path("");
    succeed(
        tool("LLMB_YAMLLINT")
            .current_dir(&root)
            .args(["--strict", "-c", ".yamllint.yaml"])
            .args([".github", "deploy", "crds", "charts", "resource_customizations"]),
    );
}

/// NOTES.txt as `helm install` prints it (client-side dry run: no cluster needed).
fn notes(values: &[&str]) -> String {
    let output = succeed(
        tool("LLMB_HELM")
            .env("KUBECONFIG", "/nonexistent")
            .args(["install", "llm-batch-operator", &chart_dir(), "--namespace", NAMESPACE])
            .args(["--dry-run=client"])
            .args(values),
    );
    output
        .split_once("NOTES:\n")
        .expect("helm prints the notes")
        .1
        .to_string()
}

#[test]
fn the_notes_tell_the_next_commands() {
    let default = notes(&[]);
    for command in [
        "kubectl -n llmb-system rollout status deployment/llm-batch-operator",
        "kubectl apply -f examples/cluster/gateway.yaml",
        "kubectl wait --for=condition=Complete batch/ticket-triage",
    ] {
        assert!(default.contains(command), "{command} missing from:\n{default}");
    }

    // The dashboard and the alerts, when on: where they are and which job the alerts select.
    assert!(
        !default.contains("Grafana") && !default.contains("PrometheusRule"),
        "{default}"
    );
    let monitored = notes(&[
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "grafanaDashboard.enabled=true",
    ]);
    for line in [
        "ConfigMap llmb-system/llm-batch-operator-dashboard",
        "labelled grafana_dashboard=1",
        "PrometheusRule llmb-system/llm-batch-operator",
        "\"llm-batch-operator-metrics\"",
        "docs/operations.md#alerts",
        "serviceMonitor.enabled is false",
    ] {
        assert!(monitored.contains(line), "{line} missing from:\n{monitored}");
    }

    // With the simulator, the notes carry a BatchGateway for it: valid, and naming the
    // Service the chart renders.
    let with_simulator = notes(&["--set", "simulator.enabled=true"]);
    let manifest = with_simulator
        .split_once("<<'YAML'\n")
        .and_then(|(_, rest)| rest.split_once("\nYAML\n"))
        .expect("a here-document holding a BatchGateway")
        .0;
    let gateway: llm_batch_operator::api::BatchGateway = serde_yaml::from_str(manifest).unwrap();
    assert_eq!(
        gateway.spec.url,
        "http://llm-batch-operator-simulator.llmb-system.svc:8080/v1"
    );
    let docs = documents(&helm_template(NAMESPACE, &["--set", "simulator.enabled=true"]));
    let service = of_kind(&docs, "Service")
        .into_iter()
        .find(|s| s["metadata"]["name"] == "llm-batch-operator-simulator")
        .expect("the simulator Service");
    assert_eq!(service["metadata"]["namespace"], NAMESPACE);
    assert_eq!(service["spec"]["ports"][0]["port"], 8080);
}

#[test]
fn the_chart_is_released_with_the_operator() {
    let chart: Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo_path("charts/llm-batch-operator/Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"), "Chart.yaml appVersion");
    let deploy = std::fs::read_to_string(repo_path("deploy/kustomization.yaml")).unwrap();
    assert!(
        deploy.contains(&format!("newTag: {}", env!("CARGO_PKG_VERSION"))),
        "deploy/kustomization.yaml pins another image tag"
    );
}

/// The egress every pod of the operator gets: DNS anywhere, everything else anywhere but the
/// link-local / cloud-metadata ranges.
fn assert_egress_excepts_metadata(policy: &Value) {
    let egress = policy["spec"]["egress"].as_sequence().unwrap();
    assert_eq!(egress.len(), 2, "{egress:?}");
    let dns: Vec<(u64, String)> = egress[0]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| (p["port"].as_u64().unwrap(), p["protocol"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(dns, [(53, "UDP".to_string()), (53, "TCP".to_string())]);
    assert!(
        egress[0]["to"].is_null(),
        "DNS to any resolver (node-local caches included)"
    );
    let blocks: Vec<(String, Vec<String>)> = egress[1]["to"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|to| {
            let block = &to["ipBlock"];
            (block["cidr"].as_str().unwrap().to_string(), strings(&block["except"]))
        })
        .collect();
    assert_eq!(
        blocks,
        [
            ("0.0.0.0/0".to_string(), vec!["169.254.0.0/16".to_string()]),
            (
                "::/0".to_string(),
                vec!["fe80::/10".to_string(), "fd00:ec2::254/128".to_string()]
            ),
        ]
    );
    assert!(egress[1]["ports"].is_null());
}

#[test]
fn network_policies_let_the_pods_reach_dns_the_api_and_gateways_but_never_metadata() {
    let policies = |values: &[&str]| -> Vec<Value> {
        of_kind(&documents(&helm_template(NAMESPACE, values)), "NetworkPolicy")
            .into_iter()
            .cloned()
            .collect()
    };
    let default = policies(&[]);
    assert_eq!(
        default.len(),
        1,
        "the controller's only: no namespace is known for the Jobs"
    );
    let controller = &default[0];
    assert_eq!(controller["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        controller["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
        "controller"
    );
    assert_eq!(strings(&controller["spec"]["policyTypes"]), ["Ingress", "Egress"]);
    let ingress = controller["spec"]["ingress"].as_sequence().unwrap();
    assert_eq!(ingress.len(), 1);
    assert!(ingress[0]["from"].is_null());
    assert_eq!(ingress[0]["ports"].as_sequence().unwrap().len(), 1);
    assert_eq!(ingress[0]["ports"][0]["port"], 8080, "the metrics and health port only");
    assert_egress_excepts_metadata(controller);

    // The Jobs' pods, by the labels src/controller/jobs.rs gives them, where they run.
    for (values, namespaces) in [
        (EVERYTHING, vec!["team-a", "team-b"]),
        (
            &["--set", "networkPolicy.jobNamespaces={batch-a,batch-b}"][..],
            vec!["batch-a", "batch-b"],
        ),
    ] {
        let rendered = policies(values);
        let jobs: Vec<&Value> = rendered
            .iter()
            .filter(|p| p["metadata"]["name"].as_str().unwrap().ends_with("-jobs"))
            .collect();
        let placed: Vec<&str> = jobs
            .iter()
            .map(|p| p["metadata"]["namespace"].as_str().unwrap())
            .collect();
        assert_eq!(placed, namespaces, "{values:?}");
        for policy in jobs {
            let selector = &policy["spec"]["podSelector"]["matchLabels"];
            assert_eq!(selector["app.kubernetes.io/managed-by"], "llm-batch-operator");
            assert_eq!(selector["app.kubernetes.io/name"], "llm-batch-operator");
            assert_eq!(strings(&policy["spec"]["policyTypes"]), ["Egress"]);
            assert_egress_excepts_metadata(policy);
        }
    }
    let without_jobs = policies(&["--set", "jobs.enabled=false", "--set", "watchNamespaces={team-a}"]);
    assert_eq!(without_jobs.len(), 1);
    assert!(policies(&["--set", "networkPolicy.enabled=false"]).is_empty());
}

#[test]
fn the_admission_policy_renders_where_the_cluster_serves_it_unless_turned_off() {
    let policy_kinds = |values: &[&str]| -> Vec<String> {
        kinds(&documents(&helm_template(NAMESPACE, values)))
            .into_iter()
            .filter(|k| k.starts_with("ValidatingAdmissionPolicy"))
            .collect()
    };
    assert!(policy_kinds(&[]).is_empty(), "rendered without the API");
    assert_eq!(
        policy_kinds(SERVES_VAP),
        ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    );
    assert!(policy_kinds(&with(SERVES_VAP, &["--set", "admissionPolicy.enabled=false"])).is_empty());
    assert!(policy_kinds(&with(SERVES_VAP, &["--set", "jobs.enabled=false"])).is_empty());

    let values = with(
        SERVES_VAP,
        &["--set", "image.tag=9.9.9", "--set", "serviceAccount.name=op"],
    );
    let docs = documents(&helm_template(NAMESPACE, &values));
    let policy = of_kind(&docs, "ValidatingAdmissionPolicy")[0];
    let binding = of_kind(&docs, "ValidatingAdmissionPolicyBinding")[0];
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(strings(&binding["spec"]["validationActions"]), ["Deny"]);
    assert!(binding["spec"]["matchResources"].is_null(), "every namespace");
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");
    let condition = policy["spec"]["matchConditions"][0]["expression"].as_str().unwrap();
    assert_eq!(
        condition,
        format!("request.userInfo.username == 'system:serviceaccount:{NAMESPACE}:op'")
    );
    let image = policy["spec"]["variables"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "image")
        .unwrap();
    assert_eq!(
        image["expression"],
        "'ghcr.io/llm-batch-operator/llm-batch-operator:9.9.9'"
    );
    let controller = of_kind(&docs, "Deployment")[0];
    let args = strings(&controller["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(
        args.contains(&"--job-image=ghcr.io/llm-batch-operator/llm-batch-operator:9.9.9".to_string()),
        "the policy admits the image the controller gives its Jobs: {args:?}"
    );
}
