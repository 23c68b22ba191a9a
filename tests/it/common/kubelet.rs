//! Plays the kubelet for the Jobs the controller starts (the harness API server has no nodes):
//! kube-controller-manager's Job controller creates the pods; this runs a pod's one container as
//! a local process of this build's binary, with its environment resolved from Secrets and the
//! downward API (its IP is 127.0.0.1), `$(VAR)` expanded in its arguments and its volume mounts
//! mapped to local directories; reports it Running, then its end (exit code, termination message)
//! in the pod status, from which the real Job controller concludes the Job.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Volume};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::wait::wait_until;

/// Every pod's IP: its processes run on this machine, and every test connection stays on it.
pub const POD_IP: &str = "127.0.0.1";

pub struct Kubelet {
    client: Client,
    ns: String,
    /// Claim C is this directory's `C/`.
    pub claims: PathBuf,
    scratch: tempfile::TempDir,
}

impl Kubelet {
    pub fn new(client: &Client, ns: &str, claims: &Path) -> Self {
        Kubelet {
            client: client.clone(),
            ns: ns.to_string(),
            claims: claims.to_path_buf(),
            scratch: tempfile::tempdir().unwrap(),
        }
    }

    /// Waits (bounded) for a pod of Job `job` that has not run yet, other than those in `seen`.
    pub async fn next_pod(&self, job: &str, seen: &[String], within: Duration) -> Pod {
        let pods = Api::<Pod>::namespaced(self.client.clone(), &self.ns);
        let selector = format!("batch.kubernetes.io/job-name={job}");
        wait_until(&format!("no new pod of Job {job}"), within, async || {
            let list = pods.list(&ListParams::default().labels(&selector)).await.unwrap();
            let names: Vec<String> = list.items.iter().map(|p| p.name_any()).collect();
            let fresh = list.items.into_iter().find(|p| {
                !seen.contains(&p.name_any())
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending") == "Pending"
            });
            fresh.ok_or(names)
        })
        .await
    }

    /// Runs the pod's container to its end and reports it; returns the exit code.
    pub async fn run(&self, pod: &Pod) -> i32 {
        self.run_for(pod, None).await
    }

    /// Runs the pod's container, SIGKILLed after `kill_after` if it runs that long (what a
    /// node failure does), and reports its end; returns the exit code (137 when killed).
    pub async fn run_for(&self, pod: &Pod, kill_after: Option<Duration>) -> i32 {
        let spec = pod.spec.clone().unwrap();
        let container = &spec.containers[0];
        let mut paths: Vec<(String, PathBuf)> = Vec::new();
        for mount in container.volume_mounts.clone().unwrap_or_default() {
            let volume = spec.volumes.iter().flatten().find(|v| v.name == mount.name).unwrap();
            paths.push((mount.mount_path.clone(), self.local_volume(volume).await));
        }
        let message_path = container.termination_message_path.clone().unwrap();
        let message_file = self.scratch.path().join(format!("{}-termination", pod.name_any()));
        paths.push((message_path, message_file.clone()));
        let env = self.environment(pod).await;
        let args: Vec<String> = container
            .args
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|arg| mapped(&expand(&arg, &env), &paths))
            .collect();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_llm-batch-operator"));
        command
            .args(&args)
            .env_clear()
            .envs(&env)
            .stdout(std::process::Stdio::null());
        let started = k8s_openapi::jiff::Timestamp::now();
        self.report_running(pod, started).await;
        let mut child = command.spawn().unwrap();
        let limit = kill_after.unwrap_or(Duration::from_secs(120));
        let code = match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => status.unwrap().code().unwrap_or(137),
            Err(_) => {
                assert!(kill_after.is_some(), "the container ran past {limit:?}");
                child.kill().await.unwrap();
                137
            }
        };
        let message = std::fs::read_to_string(&message_file).unwrap_or_default();
        self.report(pod, code, &message, started).await;
        code
    }

    /// The container's variables: values, Secret keys (an optional one that is missing is left
    /// out), and `status.podIP` from the downward API, which is [`POD_IP`].
    async fn environment(&self, pod: &Pod) -> BTreeMap<String, String> {
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let mut env = BTreeMap::new();
        for var in container.env.clone().unwrap_or_default() {
            let from = var.value_from.unwrap_or_default();
            let value = match (var.value, from.secret_key_ref, from.field_ref) {
                (Some(value), _, _) => value,
                (None, Some(r), _) => match self.secret_value(&r.name, &r.key).await {
                    Some(value) => value,
                    None if r.optional == Some(true) => continue,
                    None => panic!(
                        "Secret {} has no key {} (a real kubelet would not start the pod)",
                        r.name, r.key
                    ),
                },
                (None, None, Some(field)) => {
                    assert_eq!(field.field_path, "status.podIP", "field not mapped by this kubelet");
                    POD_IP.to_string()
                }
                _ => continue,
            };
            env.insert(var.name, value);
        }
        env
    }

    /// The pod started: phase Running at [`POD_IP`], as a kubelet reports it.
    async fn report_running(&self, pod: &Pod, started: k8s_openapi::jiff::Timestamp) {
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let status = json!({"status": {
            "phase": "Running",
            "podIP": POD_IP,
            "podIPs": [{"ip": POD_IP}],
            "startTime": started.to_string(),
            "containerStatuses": [{
                "name": container.name,
                "image": container.image,
                "imageID": "",
                "ready": true,
                "restartCount": 0,
                "started": true,
                "state": {"running": {"startedAt": started.to_string()}},
            }],
        }});
        Api::<Pod>::namespaced(self.client.clone(), &self.ns)
            .patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }

    /// Where a volume is on this machine: claims under `claims`; ConfigMap and Secret items
    /// written out; an emptyDir in scratch space.
    async fn local_volume(&self, volume: &Volume) -> PathBuf {
        if let Some(claim) = &volume.persistent_volume_claim {
            let dir = self.claims.join(&claim.claim_name);
            std::fs::create_dir_all(&dir).unwrap();
            return dir;
        }
        let dir = self
            .scratch
            .path()
            .join(format!("{}-{}", volume.name, rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(source) = &volume.config_map {
            let cm = Api::<ConfigMap>::namespaced(self.client.clone(), &self.ns)
                .get(&source.name)
                .await
                .unwrap();
            for item in source.items.iter().flatten() {
                std::fs::write(dir.join(&item.path), &cm.data.as_ref().unwrap()[&item.key]).unwrap();
            }
        } else if let Some(source) = &volume.secret {
            for item in source.items.iter().flatten() {
                let value = self
                    .secret_value(source.secret_name.as_deref().unwrap(), &item.key)
                    .await;
                std::fs::write(dir.join(&item.path), value.expect("the Secret has the key")).unwrap();
            }
        } else {
            assert!(
                volume.empty_dir.is_some(),
                "volume {} is not mapped by this kubelet",
                volume.name
            );
        }
        dir
    }

    async fn secret_value(&self, name: &str, key: &str) -> Option<String> {
        let secret = Api::<Secret>::namespaced(self.client.clone(), &self.ns)
            .get(name)
            .await
            .unwrap();
        let data: BTreeMap<_, _> = secret.data.unwrap_or_default();
        data.get(key).map(|v| String::from_utf8(v.0.clone()).unwrap())
    }

    async fn report(&self, pod: &Pod, code: i32, message: &str, started: k8s_openapi::jiff::Timestamp) {
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let phase = if code == 0 { "Succeeded" } else { "Failed" };
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let status = json!({"status": {
            "phase": phase,
            "startTime": started.to_string(),
            "containerStatuses": [{
                "name": container.name,
                "image": container.image,
                "imageID": "",
                "ready": false,
                "restartCount": 0,
                "started": false,
                "state": {"terminated": {
                    "exitCode": code,
                    "reason": if code == 0 { "Completed" } else { "Error" },
                    "message": message,
                    "startedAt": started.to_string(),
                    "finishedAt": now,
                }},
            }],
        }});
        Api::<Pod>::namespaced(self.client.clone(), &self.ns)
            .patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }
}

/// `$(VAR)` in `arg` replaced by the value of VAR when `env` defines it, as Kubernetes expands a
/// container's arguments: an undefined `$(VAR)` stays as it is, `$$` is a literal `$` (so
/// `$$(VAR)` is the text `$(VAR)`), and any other `$` is kept.
pub fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(escaped) = after.strip_prefix('$') {
            out.push('$');
            rest = escaped;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|r| r.split_once(')')) {
            match env.get(name) {
                Some(value) => out.push_str(value),
                None => out.push_str(&format!("$({name})")),
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// `arg` with a mounted path replaced by its local directory.
fn mapped(arg: &str, paths: &[(String, PathBuf)]) -> String {
    for (mount, local) in paths {
        if let Some(rest) = arg.strip_prefix(mount.as_str())
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return format!("{}{rest}", local.display());
        }
    }
    arg.to_string()
}
