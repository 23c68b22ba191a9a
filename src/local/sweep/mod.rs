//! BatchSweeps in `run -f`: each sweep is planned (one scan of its input, kept in the state
//! directory) and expanded into its child Batches, which `sweep::decide` then creates as in
//! the cluster (see [`drive`]); each runs like any other Batch. At the end each sweep gets
//! `summary.json` (counts and usage per model and per chunk) and `status.yaml`.
//!
//! With `spec.retry`, a child that finished with lines failed retryably is followed by
//! `<child>-r1`, `-r2`, ... holding only those lines (made on the gateway from the attempt's
//! error and input files), until `maxAttempts` ([`follow_up`]). What was decided is kept in
//! the state directory beside each attempt's state ([`attempts`]).

mod attempts;
mod drive;
mod follow_up;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::manifests::{Located, Manifests};
use super::paths;
use super::state::{StateDir, write_atomically};
use crate::api::{Batch, BatchInput, BatchSweep, Endpoint, GatewayLimits, SweepPlan};
use crate::io::object_storage::ObjectLocation;
use crate::io::scan_object;
use crate::sweep::{self, ChildPlan};

pub use drive::Driven;

/// A sweep expanded into its children.
pub struct SweepRun {
    pub namespace: String,
    pub name: String,
    pub sweep: BatchSweep,
    pub children: Vec<ChildPlan>,
    /// The chunks, as planned (with the scan's estimate, for `spec.budget`).
    plan: SweepPlan,
    /// `spec.template.output.objectStore`, resolved: follow-ups write under it.
    output_base: Option<ObjectLocation>,
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

    /// Writes `summary.json` and `status.yaml` of a run of this sweep under `out_dir`; returns
    /// their directory.
    pub fn write(&self, driven: &Driven, out_dir: &Path) -> anyhow::Result<PathBuf> {
        let dir = paths::under(out_dir, &[&self.namespace, &self.name])?;
        std::fs::create_dir_all(&dir)?;
        write_atomically(&dir.join("summary.json"), &serde_json::to_vec_pretty(&driven.summary)?)?;
        write_atomically(
            &dir.join("status.yaml"),
            serde_yaml::to_string(&driven.status)?.as_bytes(),
        )?;
        Ok(dir)
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
        if sweep.spec.parallelism == 0 {
            // The CRD's minimum: with no slot, no child would ever start.
            problems.push(format!("{at}: spec.parallelism is 0: it must be at least 1"));
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
            output_base,
            plan,
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
    let chunking = sweep::chunk_limits(&sweep.spec, limits).map_err(|e| e.to_string())?;
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
    let mut planner = sweep::chunk_planner(&sweep.spec, limits).map_err(|e| e.to_string())?;
    let (size, chunks) = match source {
        Source::Bytes(bytes) => {
            planner.feed(&bytes);
            let chunks = planner.finish().map_err(|e| format!("spec.input: {e}"))?;
            (bytes.len() as u64, chunks)
        }
        Source::Object(location) => scan_object(&location, planner).await.map_err(|e| e.to_string())?,
    };
    let plan = sweep::plan_of(&sweep.spec, size, &chunks).map_err(|e| e.to_string())?;
    let kept = serde_json::to_vec(&KeptPlan {
        digest,
        plan: plan.clone(),
    })
    .expect("serialises");
    std::fs::create_dir_all(path.parent().expect("has a parent")).map_err(|e| e.to_string())?;
    write_atomically(&path, &kept).map_err(|e| e.to_string())?;
    Ok(plan)
}
