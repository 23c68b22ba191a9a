//! What a report covers, from the manifests `run -f` ran: one Batch, or a BatchSweep's
//! children (named as the sweep named them, from the plan its status keeps), each with the
//! custom_id prefix, model and chunk its lines carry; the input they are joined with; and the
//! gateway's prices.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::ReportError;
use super::source::Source;
use std::io::Read;

use crate::api::{BatchInput, BatchSweepSpec, Endpoint, GatewayLimits, SweepPlan};
use crate::io::object_storage::ObjectLocation;
use crate::jsonl::ChunkPlanner;
use crate::local::Manifests;
use crate::pricing::Prices;
use crate::sweep::ChildPlan;

/// Everything the report reads.
pub struct Target {
    /// `Batch` or `BatchSweep`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub endpoint: Endpoint,
    /// The sweep's matrix, in order: the pivot's column groups (empty without a matrix).
    pub models: Vec<String>,
    /// In input order: one per chunk (one in all for a Batch).
    pub groups: Vec<Group>,
    pub prices: Option<Arc<Prices>>,
    pub input: Input,
}

/// The part of the input one set of Batches ran: a chunk, for every model of the matrix.
pub struct Group {
    pub chunk: Option<u32>,
    /// Byte range of the input (`None`: all of it).
    pub range: Option<Range<u64>>,
    pub parts: Vec<Part>,
}

/// The Batch that ran a group's lines for one model, with its follow-ups.
pub struct Part {
    /// The first attempt's name.
    pub name: String,
    /// The model every line was sent with (a matrix's, or `spec.input.overrides.model`).
    pub model: Option<String>,
    /// Prepended to every input custom_id in the results.
    pub prefix: String,
    /// The attempts, first to last (follow-ups `<name>-r1`, ... under `spec.retry`).
    pub attempts: Vec<Attempt>,
}

/// One attempt of a part: a Batch of its own.
pub struct Attempt {
    pub name: String,
    /// Its `spec.output.objectStore` prefix, when its results went there.
    pub objects: Option<ObjectLocation>,
}

/// The input the results are joined with.
pub enum Input {
    /// Held in the files (ConfigMap, Secret, inline requests).
    Bytes(Bytes),
    /// A local JSONL file (`--input`).
    File(PathBuf),
    /// Not available here; the results are reported without the join (no `missing` rows).
    Unavailable(String),
}

/// Finds the object to report on: `name` (`NAME` or `NAMESPACE/NAME`) among the files' Batches
/// and BatchSweeps (sweep children are not listed on their own), or the only one there is.
pub fn find(
    manifests: &Manifests,
    name: Option<&str>,
    source: &Source,
    input_file: Option<PathBuf>,
) -> Result<Target, ReportError> {
    let mut candidates: Vec<(&'static str, String, String)> = Vec::new();
    for (namespace, sweep) in manifests.sweeps.keys() {
        candidates.push(("BatchSweep", namespace.clone(), sweep.clone()));
    }
    // Before `run -f` expands them, a sweep's children are not among the files' Batches.
    for (namespace, batch) in manifests.batches.keys() {
        candidates.push(("Batch", namespace.clone(), batch.clone()));
    }
    let wanted = |ns: &str, n: &str| match name {
        None => true,
        Some(full) => match full.split_once('/') {
            Some((want_ns, want)) => want_ns == ns && want == n,
            None => full == n,
        },
    };
    let matching: Vec<_> = candidates.iter().filter(|(_, ns, n)| wanted(ns, n)).collect();
    let (kind, namespace, name) = match matching.as_slice() {
        [one] => (*one).clone(),
        [] => {
            let all: Vec<String> = candidates.iter().map(|(k, ns, n)| format!("{k} {ns}/{n}")).collect();
            return Err(ReportError::Input(match name {
                Some(name) => format!("no Batch or BatchSweep {name} in the files (they hold: {})", list(&all)),
                None => "the files hold no Batch or BatchSweep".to_string(),
            }));
        }
        many => {
            let all: Vec<String> = many.iter().map(|(k, ns, n)| format!("{k} {ns}/{n}")).collect();
            return Err(ReportError::Input(format!(
                "the files hold {}: say which with --name",
                list(&all)
            )));
        }
    };
    match kind {
        "BatchSweep" => sweep(manifests, &namespace, &name, source, input_file),
        _ => batch(manifests, &namespace, &name, input_file),
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".to_string()
    } else {
        items.join(", ")
    }
}

fn batch(
    manifests: &Manifests,
    namespace: &str,
    name: &str,
    input_file: Option<PathBuf>,
) -> Result<Target, ReportError> {
    let located = &manifests.batches[&(namespace.to_string(), name.to_string())];
    let spec = &located.object.spec;
    let at = format!("{} Batch {namespace}/{name}", located.origin);
    let overrides = spec.input.overrides.clone().unwrap_or_default();
    let objects = match spec.output.as_ref().and_then(|o| o.object_store.as_ref()) {
        Some(reference) => Some(
            crate::local::object_location(manifests, namespace, reference, "spec.output.objectStore")
                .map_err(|e| ReportError::Input(format!("{at}: {e}")))?,
        ),
        None => None,
    };
    Ok(Target {
        kind: "Batch",
        namespace: namespace.to_string(),
        name: name.to_string(),
        endpoint: spec.endpoint,
        models: overrides.model.iter().cloned().collect(),
        groups: vec![Group {
            chunk: None,
            range: spec.input.byte_range.map(|r| r.start..r.end),
            parts: vec![Part {
                name: name.to_string(),
                model: overrides.model.clone(),
                prefix: overrides.custom_id_prefix.clone().unwrap_or_default(),
                attempts: vec![Attempt {
                    name: name.to_string(),
                    objects,
                }],
            }],
        }],
        prices: prices(manifests, namespace, &spec.gateway_ref.name, &at)?,
        input: input(manifests, namespace, &spec.input, spec.endpoint, input_file, &at)?,
    })
}

fn sweep(
    manifests: &Manifests,
    namespace: &str,
    name: &str,
    source: &Source,
    input_file: Option<PathBuf>,
) -> Result<Target, ReportError> {
    let located = &manifests.sweeps[&(namespace.to_string(), name.to_string())];
    let spec = &located.object.spec;
    let at = format!("{} BatchSweep {namespace}/{name}", located.origin);
    let input = input(
        manifests,
        namespace,
        &spec.input,
        spec.template.endpoint,
        input_file,
        &at,
    )?;
    let children = match source.sweep_status(namespace, name)?.and_then(|s| s.plan) {
        // A cluster's status keeps the plan.
        Some(plan) => crate::sweep::plan_children(name, spec, &plan),
        // run -f keeps it in its state directory: the same planner finds the same chunks again.
        None => match &input {
            Input::Unavailable(_) => summarised_children(source, namespace, name, &at)?,
            input => {
                let key = (namespace.to_string(), spec.template.gateway_ref.name.clone());
                let limits = manifests
                    .gateways
                    .get(&key)
                    .map(|g| g.object.spec.limits.clone())
                    .unwrap_or_default();
                let plan = replan(spec, &limits, input).map_err(|e| ReportError::Input(format!("{at}: {e}")))?;
                check_plan(source, namespace, name, &plan, &at)?;
                crate::sweep::plan_children(name, spec, &plan)
            }
        },
    };
    // One client for every child's prefix (a client per child would cost one each).
    let base = match spec.template.output.as_ref().and_then(|o| o.object_store.as_ref()) {
        Some(reference) => Some(
            crate::local::object_location(manifests, namespace, reference, "spec.template.output.objectStore")
                .map_err(|e| ReportError::Input(format!("{at}: {e}")))?,
        ),
        None => None,
    };
    let mut groups: Vec<Group> = Vec::new();
    for child in children {
        let mut attempts = Vec::new();
        for attempt in 1..=spec.max_attempts() {
            let plan = if attempt == 1 {
                child.clone()
            } else {
                child.follow_up(attempt)
            };
            if attempt > 1 && !source.has_batch(namespace, &plan.name)? {
                break;
            }
            let objects = match (&base, plan.batch_spec(name, spec).output.and_then(|o| o.object_store)) {
                (Some(base), Some(own)) => Some(
                    base.elsewhere(&own.url)
                        .map_err(|e| ReportError::Input(format!("{at}: {e}")))?,
                ),
                _ => None,
            };
            attempts.push(Attempt {
                name: plan.name,
                objects,
            });
        }
        let part = Part {
            name: child.name.clone(),
            model: child.model.clone(),
            prefix: child.custom_id_prefix.clone(),
            attempts,
        };
        let range = (child.range.end > child.range.start).then_some(child.range.start..child.range.end);
        match groups.last_mut() {
            Some(group) if group.chunk == Some(child.chunk) => group.parts.push(part),
            _ => groups.push(Group {
                chunk: Some(child.chunk),
                range,
                parts: vec![part],
            }),
        }
    }
    Ok(Target {
        kind: "BatchSweep",
        namespace: namespace.to_string(),
        name: name.to_string(),
        endpoint: spec.template.endpoint,
        models: spec.matrix.iter().flat_map(|m| m.models.clone()).collect(),
        groups,
        prices: prices(manifests, namespace, &spec.template.gateway_ref.name, &at)?,
        input,
    })
}

/// The sweep's chunks, found again as `run -f` found them: the same planner over the same input.
fn replan(spec: &BatchSweepSpec, limits: &GatewayLimits, input: &Input) -> Result<SweepPlan, String> {
    let mut planner = ChunkPlanner::new(crate::sweep::chunk_limits(spec, limits).map_err(|e| e.to_string())?);
    let size = match input {
        Input::Bytes(bytes) => {
            planner.feed(bytes);
            bytes.len() as u64
        }
        Input::File(path) => {
            let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut block = vec![0; 1 << 20];
            let mut size = 0u64;
            loop {
                let n = file.read(&mut block).map_err(|e| format!("{}: {e}", path.display()))?;
                if n == 0 {
                    break size;
                }
                size += n as u64;
                planner.feed(&block[..n]);
            }
        }
        Input::Unavailable(why) => return Err(why.clone()),
    };
    let chunks = planner.finish().map_err(|e| format!("spec.input: {e}"))?;
    crate::sweep::plan_of(spec, size, &chunks).map_err(|e| e.to_string())
}

/// Fails when the chunks found again do not hold the requests `summary.json` says each child
/// had: the input or the chunking changed since the sweep ran, and rows would be joined wrongly.
fn check_plan(source: &Source, namespace: &str, name: &str, plan: &SweepPlan, at: &str) -> Result<(), ReportError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Counts {
        total: u64,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Listed {
        name: String,
        chunk: u32,
        request_counts: Counts,
    }
    #[derive(serde::Deserialize)]
    struct Summary {
        children: Vec<Listed>,
    }
    let Some(summary) = source.sweep_summary::<Summary>(namespace, name)? else {
        return Ok(());
    };
    for child in summary.children {
        let planned = plan.chunks.get(child.chunk as usize).map(|c| c.requests);
        if child.request_counts.total > 0 && planned != Some(child.request_counts.total) {
            return Err(ReportError::Input(format!(
                "{at}: the input's chunk {} now holds {} requests, and {} ran {}: the input or the chunking \
                 changed since the sweep ran",
                child.chunk,
                planned.map_or("no".to_string(), |n| n.to_string()),
                child.name,
                child.request_counts.total
            )));
        }
    }
    Ok(())
}

/// The children `summary.json` lists, without their byte ranges (for results read without the
/// input).
fn summarised_children(source: &Source, namespace: &str, name: &str, at: &str) -> Result<Vec<ChildPlan>, ReportError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Listed {
        name: String,
        model: Option<String>,
        chunk: u32,
        custom_id_prefix: String,
    }
    #[derive(serde::Deserialize)]
    struct Summary {
        children: Vec<Listed>,
    }
    let Some(summary) = source.sweep_summary::<Summary>(namespace, name)? else {
        return Err(ReportError::Input(format!(
            "{at}: no summary.json in {}: run it with run -f first (same --out)",
            source.describe(namespace, name)
        )));
    };
    Ok(summary
        .children
        .into_iter()
        .map(|c| ChildPlan {
            name: c.name,
            model: c.model,
            chunk: c.chunk,
            range: Default::default(),
            custom_id_prefix: c.custom_id_prefix,
            attempt: 1,
            retry_of: None,
        })
        .collect())
}

fn prices(manifests: &Manifests, namespace: &str, gateway: &str, at: &str) -> Result<Option<Arc<Prices>>, ReportError> {
    crate::local::gateway_prices(manifests, namespace, gateway).map_err(|e| ReportError::Input(format!("{at}: {e}")))
}

fn input(
    manifests: &Manifests,
    namespace: &str,
    input: &BatchInput,
    endpoint: Endpoint,
    input_file: Option<PathBuf>,
    at: &str,
) -> Result<Input, ReportError> {
    if let Some(file) = input_file {
        return Ok(Input::File(file));
    }
    if input.object_store.is_some() {
        return Ok(Input::Unavailable(
            "the input is in object storage: pass a local copy with --input to join the results with it".into(),
        ));
    }
    if input.file_id.is_some() {
        return Ok(Input::Unavailable(
            "the input is a file on the gateway: pass a local copy with --input to join the results with it".into(),
        ));
    }
    crate::local::input_bytes(manifests, namespace, input, endpoint)
        .map(Input::Bytes)
        .map_err(|e| ReportError::Input(format!("{at}: {e}")))
}
