//! BatchSweeps in `run -f`: each sweep is planned (one scan of its input, kept in the state
//! directory), expanded into its child Batches, which then run like any other Batch, at most
//! `parallelism` at a time and none started once the failure budget is spent. At the end each
//! sweep gets `summary.json` (counts and usage per model and per chunk) and `status.yaml`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::manifests::{Located, Manifests};
use super::runner::Ending;
use super::state::{StateDir, write_atomically};
use crate::api::{
    Batch, BatchInput, BatchStatus, BatchSweep, BatchSweepStatus, Endpoint, GatewayLimits, SweepPhase, SweepPlan,
};
use crate::io::scan_object;
use crate::io::storage::ObjectLocation;
use crate::jsonl::ChunkPlanner;
use crate::sweep::{self, ChildPlan, ObservedChild};

/// A sweep expanded into its children.
pub struct SweepRun {
    pub namespace: String,
    pub name: String,
    pub sweep: BatchSweep,
    pub children: Vec<ChildPlan>,
    gate: Arc<Gate>,
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
    /// failure budget is spent (or while the sweep is suspended) does not run.
    pub async fn gated(&self, child: impl Future<Output = (Ending, BatchStatus)>) -> (Ending, BatchStatus) {
        let gate = self.gate.clone();
        let _slot = gate.slots.acquire().await.expect("the semaphore is never closed");
        if gate.suspended {
            return (
                Ending::Stopped("not started: the sweep is suspended".into()),
                BatchStatus::default(),
            );
        }
        if gate.failed.load(Ordering::SeqCst) > gate.max_failed {
            let why = format!(
                "not started: more than maxFailedBatches {} children failed",
                gate.max_failed
            );
            return (Ending::Stopped(why), BatchStatus::default());
        }
        let (ending, status) = child.await;
        if matches!(ending, Ending::Finished(phase) if phase != crate::api::BatchPhase::Succeeded) {
            gate.failed.fetch_add(1, Ordering::SeqCst);
        }
        (ending, status)
    }

    /// The sweep's status and summary from its children's final statuses (by child name).
    pub fn finish(&self, statuses: &BTreeMap<String, BatchStatus>, out_dir: &Path) -> anyhow::Result<BatchSweepStatus> {
        let observed: BTreeMap<String, ObservedChild> = statuses
            .iter()
            .filter(|(_, s)| s.phase.is_some())
            .map(|(name, s)| {
                let child = ObservedChild {
                    phase: s.phase,
                    request_counts: s.request_counts.clone(),
                    usage: s.usage.clone(),
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
        let summary = sweep::summarise(&self.children, &observed);
        let dir = out_dir.join(&self.namespace).join(&self.name);
        std::fs::create_dir_all(&dir)?;
        write_atomically(&dir.join("summary.json"), &serde_json::to_vec_pretty(&summary)?)?;
        write_atomically(
            &dir.join("status.yaml"),
            serde_yaml::to_string(&decision.status)?.as_bytes(),
        )?;
        Ok(decision.status)
    }
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
            let origin = located.origin.clone();
            manifests.batches.insert(key, Located { object: batch, origin });
        }
        let gate = Gate {
            slots: Semaphore::new(sweep.spec.parallelism.max(1) as usize),
            failed: AtomicU32::new(0),
            max_failed: sweep.spec.max_failed_batches,
            suspended: sweep.spec.suspend,
        };
        runs.push(SweepRun {
            namespace,
            name,
            sweep: sweep.clone(),
            children,
            gate: Arc::new(gate),
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
    digest.update(format!("{chunking:?}"));
    let digest = format!("{:x}", digest.finalize());
    let path = state_dir.root().join(namespace).join(name).join("sweep-plan.json");
    if let Ok(text) = std::fs::read(&path)
        && let Ok(kept) = serde_json::from_slice::<KeptPlan>(&text)
        && kept.digest == digest
    {
        return Ok(kept.plan);
    }
    let (size, chunks) = match source {
        Source::Bytes(bytes) => {
            let mut planner = ChunkPlanner::new(chunking);
            planner.feed(&bytes);
            let chunks = planner.finish().map_err(|e| format!("spec.input: {e}"))?;
            (bytes.len() as u64, chunks)
        }
        Source::Object(location) => scan_object(&location, chunking).await.map_err(|e| e.to_string())?,
    };
    let plan = sweep::plan_of(size, &chunks)?;
    let kept = serde_json::to_vec(&KeptPlan {
        digest,
        plan: plan.clone(),
    })
    .expect("serialises");
    std::fs::create_dir_all(path.parent().expect("has a parent")).map_err(|e| e.to_string())?;
    write_atomically(&path, &kept).map_err(|e| e.to_string())?;
    Ok(plan)
}
