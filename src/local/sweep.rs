//! BatchSweeps in `run -f`: each sweep is planned (one scan of its input, kept in the state
//! directory), expanded into its child Batches, which then run like any other Batch, at most
//! `parallelism` at a time and none started once the failure budget is spent. At the end each
//! sweep gets `summary.json` (counts and usage per model and per chunk) and `status.yaml`.
//!
//! With `spec.retry`, a child that finished with lines failed retryably is followed, in the
//! same parallelism slot, by `<child>-r1`, `-r2`, ... holding only those lines (made on the
//! gateway from the attempt's error and input files), until `maxAttempts`. What was decided
//! is kept in the state directory beside each attempt's state, so a rerun neither uploads nor
//! creates a follow-up twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::manifests::{Located, Manifests};
use super::paths;
use super::progress::Reporter;
use super::resolve::{Plan, PvcOutput};
use super::runner::{BatchRun, Ending, write_status_yaml};
use super::state::{BatchState, StateDir, write_atomically};
use crate::api::{
    Batch, BatchInput, BatchPhase, BatchStatus, BatchSweep, BatchSweepStatus, Endpoint, GatewayLimits, SweepPhase,
    SweepPlan,
};
use crate::driver::retry::{RetryInput, follow_up_input};
use crate::io::scan_object;
use crate::io::storage::ObjectLocation;
use crate::sweep::{self, ChildPlan, ObservedChild, attempt_name};

/// A sweep expanded into its children.
pub struct SweepRun {
    pub namespace: String,
    pub name: String,
    pub sweep: BatchSweep,
    pub children: Vec<ChildPlan>,
    gate: Arc<Gate>,
    /// `spec.template.output.objectStore`, resolved: follow-ups write under it.
    output_base: Option<ObjectLocation>,
    /// What the retries did, by attempt name (follow-ups, and first attempts that were read).
    attempts: Mutex<BTreeMap<String, Attempt>>,
}

/// One attempt as the retries saw it.
#[derive(Clone, Debug, Default)]
struct Attempt {
    /// Its final status (follow-ups; first attempts' come from the run itself).
    status: Option<BatchStatus>,
    /// For a follow-up: the lines it holds.
    lines: Option<u64>,
    /// Its lines that failed retryably, once its error file was read.
    retryable: Option<u64>,
}

/// Kept in a follow-up's state directory once its input is on the gateway.
#[derive(Serialize, Deserialize)]
struct KeptRetryInput {
    file_id: String,
    lines: u64,
}

/// Kept in an attempt's state directory once its error file was read.
#[derive(Serialize, Deserialize)]
struct KeptRetryable {
    retryable: u64,
}

/// What lets a child start: a parallelism slot, and a failure budget not yet spent.
struct Gate {
    slots: Semaphore,
    failed: AtomicU32,
    max_failed: u32,
    suspended: bool,
}

/// The plan kept between runs, with what it was computed from.
#[derive(Serialize, Deserialize)]
struct KeptPlan {
    digest: String,
    plan: SweepPlan,
}

impl SweepRun {
    /// The object `namespace/name`.
    pub fn object(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether `batch` (namespace, name) is one of this sweep's children.
    pub fn owns(&self, namespace: &str, name: &str) -> bool {
        namespace == self.namespace && self.children.iter().any(|c| c.name == name)
    }

    /// Runs a child when the sweep lets it: waits for a slot; a child whose turn comes after the
    /// failure budget is spent (or while the sweep is suspended) does not run. With
    /// `spec.retry`, its follow-ups run after it in the same slot. Returns the ending of the
    /// child's last attempt and the child's own status.
    pub async fn gated(&self, child: BatchRun<'_>, reporter: &Reporter) -> (Ending, BatchStatus) {
        let gate = self.gate.clone();
        let _slot = gate.slots.acquire().await.expect("the semaphore is never closed");
        if gate.suspended {
            return (
                Ending::Stopped("not started: the sweep is suspended".into()),
                BatchStatus::default(),
            );
        }
        if let Some(why) = gate.over_budget() {
            return (Ending::Stopped(why), BatchStatus::default());
        }
        let follow = FollowUp {
            parent: child.plan,
            state_gateway: child.state.gateway.clone(),
            client: child.client.clone(),
            polling: child.polling,
            out_dir: child.out_dir.clone(),
            state_dir: child.state_dir,
            cancel: child.cancel.clone(),
            board: child.board,
            order: child.order,
        };
        let (ending, status) = child.run().await;
        let ending = self.retry(follow, ending, &status, reporter).await;
        if matches!(ending, Ending::Finished(phase) if phase != BatchPhase::Succeeded) {
            gate.failed.fetch_add(1, Ordering::SeqCst);
        }
        (ending, status)
    }

    /// Runs the follow-ups of a finished child, one after another, while lines are left to
    /// retry and attempts remain; returns the ending of the last attempt.
    async fn retry(
        &self,
        follow: FollowUp<'_>,
        mut ending: Ending,
        first: &BatchStatus,
        reporter: &Reporter,
    ) -> Ending {
        let max = self.sweep.spec.max_attempts();
        let Some(plan) = self.children.iter().find(|c| c.name == follow.parent.name) else {
            return ending;
        };
        let mut latest = first.clone();
        for attempt in 2..=max {
            let previous = attempt_name(&plan.name, attempt - 1);
            let failed = latest.request_counts.as_ref().map_or(0, |c| c.failed);
            match &ending {
                Ending::Finished(phase) if *phase != BatchPhase::Cancelled && failed > 0 => {}
                _ => break,
            }
            if let Some(why) = self.gate.over_budget() {
                reporter.say(format!("{}/{previous}: not retried: {why}", self.namespace));
                break;
            }
            let follow_up = plan.follow_up(attempt);
            let input = match self.retry_input(&follow, &previous, &follow_up.name, &latest).await {
                Ok(Some(input)) => input,
                Ok(None) => break,
                Err(why) => {
                    ending = Ending::Stopped(format!("retrying {previous}: {why}"));
                    break;
                }
            };
            reporter.say(format!(
                "{}/{previous}: {} lines failed retryably; retrying them as {} (attempt {attempt} of {max})",
                self.namespace, input.lines, follow_up.name
            ));
            let (next_ending, status) = self.run_follow_up(&follow, &follow_up, &input, reporter).await;
            if let Ok(dir) = paths::beside(&follow.out_dir, &follow_up.name) {
                let _ = write_status_yaml(&dir, &status);
            }
            self.record(&follow_up.name, |a| {
                a.status = Some(status.clone());
                a.lines = Some(input.lines);
            });
            ending = next_ending;
            latest = status;
        }
        ending
    }

    /// The input of follow-up `name` retrying `previous`: kept from an earlier run, or made on
    /// the gateway now. `None` when none of `previous`'s lines is worth retrying.
    async fn retry_input(
        &self,
        follow: &FollowUp<'_>,
        previous: &str,
        name: &str,
        previous_status: &BatchStatus,
    ) -> Result<Option<RetryInput>, String> {
        let kept = |name: &str, file: &str| {
            follow
                .state_dir
                .object_file(&self.namespace, name, file)
                .map_err(|e| e.to_string())
        };
        let kept_input = kept(name, "retry-input.json")?;
        let kept_retryable = kept(previous, "retryable.json")?;
        if let Some(kept) = read_json::<KeptRetryInput>(&kept_input) {
            self.record(previous, |a| a.retryable = Some(kept.lines));
            return Ok(Some(RetryInput {
                file_id: kept.file_id,
                lines: kept.lines,
            }));
        }
        if let Some(kept) = read_json::<KeptRetryable>(&kept_retryable)
            && kept.retryable == 0
        {
            self.record(previous, |a| a.retryable = Some(0));
            return Ok(None);
        }
        let made = follow_up_input(&follow.client, previous_status)
            .await
            .map_err(|e| e.message)?;
        crate::driver::crash_if_asked("upload-retry-input");
        let lines = made.as_ref().map_or(0, |m| m.lines);
        self.record(previous, |a| a.retryable = Some(lines));
        let save = |path: &Path, bytes: Vec<u8>| {
            std::fs::create_dir_all(path.parent().expect("has a parent"))
                .and_then(|()| write_atomically(path, &bytes).map_err(std::io::Error::other))
                .map_err(|e| format!("cannot save state: {e}"))
        };
        if let Some(input) = &made {
            let kept = KeptRetryInput {
                file_id: input.file_id.clone(),
                lines: input.lines,
            };
            save(&kept_input, serde_json::to_vec(&kept).expect("serialises"))?;
        }
        save(
            &kept_retryable,
            serde_json::to_vec(&KeptRetryable { retryable: lines }).expect("serialises"),
        )?;
        Ok(made)
    }

    /// Runs one follow-up to its end, resuming its kept state.
    async fn run_follow_up(
        &self,
        follow: &FollowUp<'_>,
        child: &ChildPlan,
        input: &RetryInput,
        reporter: &Reporter,
    ) -> (Ending, BatchStatus) {
        let parent = follow.parent;
        let mut batch = Batch::new(
            &child.name,
            child.follow_up_spec(&self.name, &self.sweep.spec, &input.file_id),
        );
        batch.metadata.namespace = Some(self.namespace.clone());
        let suffix = |name: &str| {
            name.strip_prefix(&self.name)
                .and_then(|rest| rest.strip_prefix('-'))
                .unwrap_or(name)
                .to_string()
        };
        let out_dir = paths::beside(&follow.out_dir, &child.name);
        let pvc_dir = parent
            .pvc_output
            .as_ref()
            .map(|p| paths::beside(&p.dir, &suffix(&child.name)))
            .transpose();
        let (out_dir, pvc_dir) = match (out_dir, pvc_dir) {
            (Ok(out), Ok(pvc)) => (out, pvc),
            (Err(e), _) | (_, Err(e)) => return (Ending::Stopped(e.to_string()), BatchStatus::default()),
        };
        let plan = Plan {
            namespace: self.namespace.clone(),
            name: child.name.clone(),
            batch: Located {
                object: batch,
                origin: parent.batch.origin.clone(),
            },
            input: Bytes::new(),
            input_digest: format!("fileId:{}", input.file_id),
            gateway: parent.gateway.clone(),
            object_input: None,
            object_output: self.output_base.as_ref().map(|base| base.child(&suffix(&child.name))),
            pvc_output: parent.pvc_output.as_ref().zip(pvc_dir).map(|(p, dir)| PvcOutput {
                dir,
                location: format!(
                    "{}/{}/",
                    p.location
                        .trim_end_matches('/')
                        .rsplit_once('/')
                        .map_or("", |(base, _)| base),
                    suffix(&child.name)
                ),
            }),
        };
        let state = match follow.state_dir.load(&plan.namespace, &plan.name) {
            Ok(Some(saved)) if saved.input_digest == plan.input_digest => saved,
            Ok(_) => BatchState {
                uid: uuid::Uuid::new_v4().to_string(),
                gateway: follow.state_gateway.clone(),
                input_digest: plan.input_digest.clone(),
                status: Default::default(),
            },
            Err(e) => return (Ending::Stopped(e.to_string()), BatchStatus::default()),
        };
        BatchRun {
            plan: &plan,
            state,
            client: follow.client.clone(),
            polling: follow.polling,
            validated: Default::default(),
            out_dir,
            state_dir: follow.state_dir,
            progress: reporter.batch(&plan.object()),
            cancel: follow.cancel.clone(),
            board: follow.board,
            order: follow.order,
        }
        .run()
        .await
    }

    fn record(&self, name: &str, f: impl FnOnce(&mut Attempt)) {
        let mut attempts = self.attempts.lock().expect("never poisoned");
        f(attempts.entry(name.to_string()).or_default());
    }

    /// The sweep's status and summary from its children's final statuses (by child name).
    pub fn finish(&self, statuses: &BTreeMap<String, BatchStatus>, out_dir: &Path) -> anyhow::Result<BatchSweepStatus> {
        let attempts = self.attempts.lock().expect("never poisoned").clone();
        let mut statuses = statuses.clone();
        for (name, attempt) in &attempts {
            if let Some(status) = &attempt.status {
                statuses.insert(name.clone(), status.clone());
            }
        }
        let observed: BTreeMap<String, ObservedChild> = statuses
            .iter()
            .filter(|(_, s)| s.phase.is_some())
            .map(|(name, s)| {
                let attempt = attempts.get(name).cloned().unwrap_or_default();
                let child = ObservedChild {
                    phase: s.phase,
                    request_counts: s.request_counts.clone(),
                    usage: s.usage.clone(),
                    lines: attempt.lines,
                    retryable: attempt.retryable,
                };
                (name.clone(), child)
            })
            .collect();
        let spec = &self.sweep.spec;
        let mut status = self.sweep.status.clone().unwrap_or_default();
        status.plan = None; // the plan is kept in the state directory; the summary names the chunks
        let mut decision = sweep::decide(spec, None, &status, &self.children, &observed, Timestamp::now());
        if decision.status.phase == Some(SweepPhase::Running) {
            // Nothing more runs in this invocation: children that never started stay waiting.
            decision.status.phase = Some(SweepPhase::Failed);
        }
        let summary = sweep::summarise(&self.children, &observed, spec.max_attempts());
        let dir = paths::under(out_dir, &[&self.namespace, &self.name])?;
        std::fs::create_dir_all(&dir)?;
        write_atomically(&dir.join("summary.json"), &serde_json::to_vec_pretty(&summary)?)?;
        write_atomically(
            &dir.join("status.yaml"),
            serde_yaml::to_string(&decision.status)?.as_bytes(),
        )?;
        Ok(decision.status)
    }
}

impl Gate {
    /// Why no more child may start, once more than `maxFailedBatches` failed.
    fn over_budget(&self) -> Option<String> {
        (self.failed.load(Ordering::SeqCst) > self.max_failed).then(|| {
            format!(
                "not started: more than maxFailedBatches {} children failed",
                self.max_failed
            )
        })
    }
}

/// What a child's follow-ups share with it.
struct FollowUp<'a> {
    parent: &'a Plan,
    state_gateway: String,
    client: crate::gateway::GatewayClient,
    polling: crate::engine::PollingPolicy,
    out_dir: PathBuf,
    state_dir: &'a StateDir,
    cancel: tokio_util::sync::CancellationToken,
    /// The run's admission board; a follow-up queues in its first attempt's place.
    board: &'a super::admission::Board,
    order: usize,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Plans every sweep and adds its children to `manifests.batches`. `read` gives the bytes of an
/// input held in the files (ConfigMap, Secret, inline requests); an input in object storage is
/// streamed through the planner.
pub async fn expand(
    manifests: &mut Manifests,
    state_dir: &StateDir,
    read: impl Fn(&Manifests, &str, &BatchInput, Endpoint) -> Result<Bytes, String>,
) -> Result<Vec<SweepRun>, Vec<String>> {
    let mut runs = Vec::new();
    let mut problems = Vec::new();
    let sweeps: Vec<_> = manifests.sweeps.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for ((namespace, name), located) in sweeps {
        let at = format!("{} BatchSweep {namespace}/{name}", located.origin);
        let sweep = &located.object;
        if let Some(retry) = &sweep.spec.retry
            && !(1..=crate::api::MAX_ATTEMPTS).contains(&retry.max_attempts)
        {
            problems.push(format!(
                "{at}: spec.retry.maxAttempts is {}: it counts the first attempt too, from 1 (no retry) to {}",
                retry.max_attempts,
                crate::api::MAX_ATTEMPTS
            ));
            continue;
        }
        let limits = gateway_limits(manifests, &namespace, sweep);
        let source = match &sweep.spec.input.object_store {
            Some(reference) => {
                super::resolve::location(manifests, &namespace, reference, "spec.input.objectStore").map(Source::Object)
            }
            None => read(manifests, &namespace, &sweep.spec.input, sweep.spec.template.endpoint).map(Source::Bytes),
        };
        let planned = match source {
            Ok(source) => kept_or_new_plan(state_dir, &namespace, &name, sweep, &limits, source).await,
            Err(why) => Err(why),
        };
        let plan = match planned {
            Ok(plan) => plan,
            Err(why) => {
                problems.push(format!("{at}: {why}"));
                continue;
            }
        };
        let children = sweep::plan_children(&name, &sweep.spec, &plan);
        for child in &children {
            let key = (namespace.clone(), child.name.clone());
            if let Some(other) = manifests.batches.get(&key) {
                problems.push(format!(
                    "{at}: its child Batch {} clashes with the Batch in {}",
                    child.name, other.origin
                ));
                continue;
            }
            let mut batch = Batch::new(&child.name, child.batch_spec(&name, &sweep.spec));
            batch.metadata.namespace = Some(namespace.clone());
            batch.metadata.annotations = child
                .validated_input(&sweep.spec, &plan)
                .map(|v| BTreeMap::from([v.annotation()]));
            let origin = located.origin.clone();
            manifests.batches.insert(key, Located { object: batch, origin });
        }
        let gate = Gate {
            slots: Semaphore::new(sweep.spec.parallelism.max(1) as usize),
            failed: AtomicU32::new(0),
            max_failed: sweep.spec.max_failed_batches,
            suspended: sweep.spec.suspend,
        };
        let output = sweep.spec.template.output.as_ref();
        let output_base = match output.and_then(|o| o.object_store.as_ref()) {
            Some(reference) if sweep.spec.max_attempts() > 1 => {
                match super::resolve::location(manifests, &namespace, reference, "spec.template.output.objectStore") {
                    Ok(location) => Some(location),
                    Err(why) => {
                        problems.push(format!("{at}: {why}"));
                        continue;
                    }
                }
            }
            _ => None,
        };
        runs.push(SweepRun {
            namespace,
            name,
            sweep: sweep.clone(),
            children,
            gate: Arc::new(gate),
            output_base,
            attempts: Mutex::default(),
        });
    }
    if problems.is_empty() { Ok(runs) } else { Err(problems) }
}

/// Where a sweep's input is read from.
enum Source {
    Bytes(Bytes),
    Object(ObjectLocation),
}

fn gateway_limits(manifests: &Manifests, namespace: &str, sweep: &BatchSweep) -> GatewayLimits {
    let key = (namespace.to_string(), sweep.spec.template.gateway_ref.name.clone());
    manifests
        .gateways
        .get(&key)
        .map(|g| g.object.spec.limits.clone())
        .unwrap_or_default()
}

/// The plan kept from an earlier run of the same input and chunking, or a fresh scan. An
/// object's content is not hashed (that would be a second read): its URL identifies it.
async fn kept_or_new_plan(
    state_dir: &StateDir,
    namespace: &str,
    name: &str,
    sweep: &BatchSweep,
    limits: &GatewayLimits,
    source: Source,
) -> Result<SweepPlan, String> {
    let chunking = sweep::chunk_limits(&sweep.spec, limits)?;
    let mut digest = Sha256::new();
    match &source {
        Source::Bytes(bytes) => digest.update(bytes),
        Source::Object(location) => digest.update(&location.url),
    }
    digest.update(format!("{chunking:?} {:?}", sweep::scan_rewrite(&sweep.spec)));
    let digest = format!("{:x}", digest.finalize());
    let path = state_dir
        .object_file(namespace, name, "sweep-plan.json")
        .map_err(|e| e.to_string())?;
    if let Ok(text) = std::fs::read(&path)
        && let Ok(kept) = serde_json::from_slice::<KeptPlan>(&text)
        && kept.digest == digest
    {
        return Ok(kept.plan);
    }
    let mut planner = sweep::chunk_planner(&sweep.spec, limits)?;
    let (size, chunks) = match source {
        Source::Bytes(bytes) => {
            planner.feed(&bytes);
            let chunks = planner.finish().map_err(|e| format!("spec.input: {e}"))?;
            (bytes.len() as u64, chunks)
        }
        Source::Object(location) => scan_object(&location, planner).await.map_err(|e| e.to_string())?,
    };
    let plan = sweep::plan_of(&sweep.spec, size, &chunks)?;
    let kept = serde_json::to_vec(&KeptPlan {
        digest,
        plan: plan.clone(),
    })
    .expect("serialises");
    std::fs::create_dir_all(path.parent().expect("has a parent")).map_err(|e| e.to_string())?;
    write_atomically(&path, &kept).map_err(|e| e.to_string())?;
    Ok(plan)
}
