//! `cancel NAME`: `spec.cancel: true` on a Batch that has not ended (a merge patch). The
//! controller cancels the upstream batch and still collects the lines that completed.

use std::process::ExitCode;

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};

use super::lookup;
use super::{KubeFlags, PluginError, api_error, config};
use crate::api::Batch;

/// Flags of `cancel`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  kubectl llmbatch cancel ticket-triage
  kubectl llmbatch get ticket-triage        # Cancelled once the gateway has stopped it")]
pub struct CancelArgs {
    /// The Batch: NAME or batch/NAME.
    pub name: String,
}

pub async fn run(flags: &KubeFlags, args: CancelArgs) -> Result<ExitCode, PluginError> {
    let (client, namespace) = config::connect(flags).await?;
    let batch = lookup::batch(&client, &namespace, &args.name, sweep_refusal).await?;
    let name = batch.name_any();
    let phase = batch.status.as_ref().and_then(|s| s.phase).unwrap_or_default();
    if phase.is_terminal() {
        return Err(PluginError::Usage(format!(
            "Batch {namespace}/{name} already ended {phase}: there is nothing to cancel"
        )));
    }
    if batch.spec.cancel {
        println!("batch.llmbatch.io/{name} is already being cancelled (phase {phase})");
        return Ok(ExitCode::SUCCESS);
    }
    let patch = serde_json::json!({"spec": {"cancel": true}});
    Api::<Batch>::namespaced(client, &namespace)
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(api_error(format!("patching Batch {namespace}/{name}")))?;
    println!("batch.llmbatch.io/{name} cancel requested (it was {phase}; lines that completed are still collected)");
    Ok(ExitCode::SUCCESS)
}

/// Why a sweep is not cancelled this way, and what stops one.
fn sweep_refusal(name: &str) -> String {
    format!(
        "BatchSweep {name} has no spec.cancel: suspend it so that no new child starts \
         (kubectl patch batchsweep {name} --type merge -p '{{\"spec\":{{\"suspend\":true}}}}'), and cancel its \
         running children one by one (kubectl llmbatch describe sweep/{name} lists them; \
         kubectl llmbatch cancel CHILD)"
    )
}
