//! What each child Batch of a sweep runs: its chunk, its model, its custom_id prefix.

use crate::api::MAX_CHUNKS;
use crate::api::{
    BatchOutput, BatchSpec, BatchSweepSpec, ByteRange, GatewayLimits, InputOverrides, InvalidField, LocalObjectRef,
    ModelEstimate, PlannedChunk, PvcSink, SweepPlan,
};
use crate::jsonl::{Chunk, ChunkLimits, ChunkPlanner, Rewrite};

use super::child_name;

/// One child Batch the sweep will have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildPlan {
    /// The Batch's name (deterministic).
    pub name: String,
    /// The model replacing `body.model` in every line (matrix sweeps).
    pub model: Option<String>,
    /// Index into the plan's chunks.
    pub chunk: u32,
    /// The chunk's byte range of the input.
    pub range: PlannedChunk,
    /// Prepended to every `custom_id`, so results pivot by model and chunk:
    /// `<model>/c<chunk>/` (`c<chunk>/` without a matrix).
    pub custom_id_prefix: String,
    /// 1 for the child itself; 2, 3, ... for the follow-ups retrying its failed lines.
    pub attempt: u32,
    /// The attempt whose retryable lines this follow-up holds.
    pub retry_of: Option<String>,
}

/// Annotation on a child whose input the sweep's scan validated: what its upload will be
/// (JSON, [`ValidatedInput`]). The child then skips its own validation read of the chunk; its
/// upload still checks every line as it streams, and must come out this long.
pub const VALIDATED_INPUT_ANNOTATION: &str = "llmbatch.io/validated-input";

/// What the sweep's scan found a child's input to be, once prepared for that child.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidatedInput {
    pub requests: u64,
    pub bytes: u64,
    pub estimated_tokens: u64,
    /// The chunk's share of the scan's estimate by model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub estimates: Vec<ModelEstimate>,
}

impl ValidatedInput {
    /// The annotation carrying it.
    pub fn annotation(&self) -> (String, String) {
        let json = serde_json::to_string(self).expect("plain numbers serialise");
        (VALIDATED_INPUT_ANNOTATION.to_string(), json)
    }

    /// What a Batch's annotation says its input is, when a sweep validated it.
    pub fn of(batch: &crate::api::Batch) -> Option<Self> {
        let json = batch.metadata.annotations.as_ref()?.get(VALIDATED_INPUT_ANNOTATION)?;
        serde_json::from_str(json).ok()
    }
}

/// The share `part / whole` of a scan's estimate (rounded up), under `model` when a matrix
/// child replaces every line's model.
fn share(estimates: &[ModelEstimate], part: u64, whole: u64, model: Option<&str>) -> Vec<ModelEstimate> {
    let scale = |n: u64| {
        let scaled = (u128::from(n) * u128::from(part)).div_ceil(u128::from(whole.max(1)));
        u64::try_from(scaled).unwrap_or(u64::MAX)
    };
    let shares: Vec<ModelEstimate> = estimates
        .iter()
        .map(|e| ModelEstimate {
            model: model.unwrap_or(&e.model).to_string(),
            requests: scale(e.requests),
            input_tokens: scale(e.input_tokens),
            output_tokens: scale(e.output_tokens),
            without_output_ceiling: scale(e.without_output_ceiling),
            counted_by: format!("{}, the chunk's share of the sweep's scan", e.counted_by),
        })
        .collect();
    // Under a matrix model every entry is renamed to it: adding them merges them into one.
    let mut merged = Vec::new();
    crate::jsonl::add_estimates(&mut merged, &shares);
    merged
}

/// The rewrite the sweep's scan validates every chunk with: the first child's of chunk 0.
/// Every child's rewrite sets the same fields, so the scan's figures give each child's
/// ([`Rewrite::growth_over`]).
pub fn scan_rewrite(spec: &BatchSweepSpec) -> Rewrite {
    let model = spec.matrix.as_ref().and_then(|m| m.models.first());
    checked_with(model.cloned())
}

/// The rewrite of the first child of chunk 0 running `model`.
fn checked_with(model: Option<String>) -> Rewrite {
    Rewrite {
        custom_id_prefix: Some(custom_id_prefix(model.as_deref(), 0)),
        model,
    }
}

impl ChildPlan {
    /// How the child's lines are rewritten (`spec.input.overrides`).
    pub fn rewrite(&self) -> Rewrite {
        Rewrite {
            model: self.model.clone(),
            custom_id_prefix: Some(self.custom_id_prefix.clone()),
        }
    }

    /// The child's input as the scan validated it, for a first attempt reading object storage
    /// (other sources come whole from the API server: reading them again costs no storage read).
    pub fn validated_input(&self, spec: &BatchSweepSpec, plan: &SweepPlan) -> Option<ValidatedInput> {
        if spec.input.object_store.is_none() || self.retry_of.is_some() {
            return None;
        }
        let (bytes, tokens) = (self.range.upload_bytes?, self.range.estimated_tokens?);
        let growth = self.rewrite().growth_over(&checked_with(plan.checked_model.clone()))?;
        let requests = i64::try_from(self.range.requests).ok()?;
        let add = |base: u64, per_line: i64| u64::try_from(i64::try_from(base).ok()? + requests * per_line).ok();
        // The estimate counts the text the model reads: renaming the model or prefixing the
        // custom_ids changes none of it (another model's tokenizer may count it differently).
        let estimated_tokens = tokens;
        Some(ValidatedInput {
            requests: self.range.requests,
            bytes: add(bytes, growth)?,
            estimated_tokens,
            estimates: self.planned_estimates(plan),
        })
    }

    /// The child's share of the scan's estimate: its chunk's tokens of the whole input's.
    pub fn planned_estimates(&self, plan: &SweepPlan) -> Vec<ModelEstimate> {
        let scanned: u64 = plan.chunks.iter().filter_map(|c| c.estimated_tokens).sum();
        let part = self.range.estimated_tokens.unwrap_or(0);
        share(&plan.estimates, part, scanned, self.model.as_deref())
    }

    /// The child's Batch spec: the sweep's input sliced to the chunk and rewritten for the model,
    /// the template's gateway and endpoint, results under a name or path of the child's own, and
    /// the sweep, chunk and model in the gateway batch metadata.
    pub fn batch_spec(&self, sweep: &str, spec: &BatchSweepSpec) -> BatchSpec {
        let template = &spec.template;
        let mut input = spec.input.clone();
        input.byte_range = Some(ByteRange {
            start: self.range.start,
            end: self.range.end,
        });
        let rewrite = self.rewrite();
        input.overrides = Some(InputOverrides {
            model: rewrite.model,
            custom_id_prefix: rewrite.custom_id_prefix,
        });
        let mut metadata = template.metadata.clone();
        metadata.insert("sweep".to_string(), sweep.to_string());
        metadata.insert("chunk".to_string(), self.chunk.to_string());
        if let Some(model) = &self.model {
            metadata.insert("model".to_string(), model.clone());
        }
        BatchSpec {
            gateway_ref: template.gateway_ref.clone(),
            endpoint: template.endpoint,
            completion_window: template.completion_window.clone().unwrap_or_else(|| "24h".to_string()),
            input,
            output: template.output.as_ref().map(|o| self.own_output(sweep, o)),
            metadata,
            cancel: false,
            deletion_policy: template.deletion_policy,
            ttl_seconds_after_finished: None,
            notify: None,
        }
    }

    /// The template's sink, narrowed to this child: Secret `<name>-<suffix>`, object-store prefix
    /// `<prefix><suffix>/`, or volume path `<path>/<suffix>/`, where the suffix is the child's
    /// name without the sweep's (`gpt-4o-c0003`).
    fn own_output(&self, sweep: &str, output: &BatchOutput) -> BatchOutput {
        let suffix = self
            .name
            .strip_prefix(sweep)
            .and_then(|rest| rest.strip_prefix('-'))
            .unwrap_or(&self.name);
        let under = |base: &str| match base {
            "" => format!("{suffix}/"),
            b if b.ends_with('/') => format!("{b}{suffix}/"),
            b => format!("{b}/{suffix}/"),
        };
        BatchOutput {
            secret: output.secret.as_ref().map(|s| LocalObjectRef {
                name: format!("{}-{suffix}", s.name),
            }),
            object_store: output.object_store.as_ref().map(|o| {
                let mut own = o.clone();
                own.url = under(&o.url);
                own
            }),
            pvc: output.pvc.as_ref().map(|p| PvcSink {
                claim_name: p.claim_name.clone(),
                path: under(&p.path),
            }),
        }
    }
}

/// Every child of the sweep, chunk by chunk and, within a chunk, model by model: the order in
/// which they are created.
pub fn plan_children(sweep: &str, spec: &BatchSweepSpec, plan: &SweepPlan) -> Vec<ChildPlan> {
    let models: Vec<Option<&str>> = match &spec.matrix {
        Some(m) => m.models.iter().map(|m| Some(m.as_str())).collect(),
        None => vec![None],
    };
    let mut children = Vec::with_capacity(plan.chunks.len() * models.len());
    for (index, range) in plan.chunks.iter().enumerate() {
        let chunk = u32::try_from(index).expect("plans hold at most MAX_CHUNKS chunks");
        for model in &models {
            children.push(ChildPlan {
                name: child_name(sweep, *model, chunk),
                model: model.map(str::to_string),
                chunk,
                range: *range,
                custom_id_prefix: custom_id_prefix(*model, chunk),
                attempt: 1,
                retry_of: None,
            });
        }
    }
    children
}

fn custom_id_prefix(model: Option<&str>, chunk: u32) -> String {
    match model {
        Some(m) => format!("{m}/c{chunk:04}/"),
        None => format!("c{chunk:04}/"),
    }
}

/// The chunk ceilings: the sweep's own, never above the gateway's, with room for the bytes the
/// rewrite adds to each line (the longest custom_id prefix and model name, JSON-escaped).
pub fn chunk_limits(spec: &BatchSweepSpec, gateway: &GatewayLimits) -> Result<ChunkLimits, InvalidField> {
    let max_requests = spec.chunk.max_requests.unwrap_or(u64::MAX).min(gateway.max_requests());
    let gateway_bytes = gateway.max_bytes()?;
    let max_bytes = match &spec.chunk.max_bytes {
        Some(q) => crate::api::parse_bytes(q).map_err(|e| InvalidField::new("spec.chunk.maxBytes", e))?,
        None => gateway_bytes,
    }
    .min(gateway_bytes);
    let longest_model = spec
        .matrix
        .iter()
        .flat_map(|m| &m.models)
        .map(|m| serde_json::Value::from(m.as_str()).to_string().len() as u64)
        .max();
    let prefix = custom_id_prefix(Some(""), 0).len() as u64;
    let growth_per_line = match longest_model {
        // The model appears in the prefix and replaces body.model (which may have been shorter).
        Some(model) => prefix + 2 * model,
        None => prefix,
    };
    Ok(ChunkLimits {
        max_requests,
        max_bytes,
        growth_per_line,
    })
}

/// The planner of the sweep's one scan: it cuts the chunks within [`chunk_limits`] and validates
/// each as its first child will upload it.
pub fn chunk_planner(spec: &BatchSweepSpec, gateway: &GatewayLimits) -> Result<ChunkPlanner, InvalidField> {
    let planner = ChunkPlanner::new(chunk_limits(spec, gateway)?);
    Ok(planner.checking(spec.template.endpoint.path(), scan_rewrite(spec)))
}

/// An input cut into more chunks than a sweep's status can hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the input makes {0} chunks, more than {MAX_CHUNKS}: raise spec.chunk.maxRequests or maxBytes")]
pub struct TooManyChunks(pub usize);

/// The sweep plan of an input of `bytes` cut into `chunks` (checked with [`scan_rewrite`]); too
/// many chunks for the status to hold is the user's to fix.
pub fn plan_of(spec: &BatchSweepSpec, bytes: u64, chunks: &[Chunk]) -> Result<SweepPlan, TooManyChunks> {
    if chunks.len() > MAX_CHUNKS {
        return Err(TooManyChunks(chunks.len()));
    }
    Ok(SweepPlan {
        bytes,
        checked_model: scan_rewrite(spec).model,
        requests: chunks.iter().map(|c| c.requests).sum(),
        estimates: chunks
            .iter()
            .filter_map(|c| c.checked.as_ref())
            .fold(Vec::new(), |mut all, c| {
                crate::jsonl::add_estimates(&mut all, &c.estimates);
                all
            }),
        chunks: chunks
            .iter()
            .map(|c| PlannedChunk {
                start: c.start,
                end: c.end,
                requests: c.requests,
                upload_bytes: c.checked.as_ref().map(|c| c.bytes),
                estimated_tokens: c.checked.as_ref().map(|c| c.estimated_tokens),
            })
            .collect(),
    })
}
